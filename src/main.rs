use std::process::ExitCode;

use clap::Parser;
use restful_auth::StartupError;
use restful_auth::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // `--help` and `--version` print and succeed. A command line clap refuses exits
            // with USAGE (1) rather than clap's own 2, which here means "not found".
            let _ = error.print();
            return if error.use_stderr() {
                ExitCode::from(StartupError::USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    let _logging = restful_auth::telemetry::init(
        &restful_auth::telemetry::filter(cli.config.log_level.as_deref()),
        restful_auth::telemetry::format(cli.config.log_format),
    );
    match restful_auth::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "restful-auth stopped");
            eprintln!("error: {error}");
            ExitCode::from(error.exit_code())
        }
    }
}
