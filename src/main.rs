use std::process::ExitCode;

use clap::Parser;
use restful_auth::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    let _logging = restful_auth::telemetry::init(&cli.config.log_level, cli.config.log_format);
    match restful_auth::cli::run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "restful-auth stopped");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
