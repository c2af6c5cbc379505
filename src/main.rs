use std::process::ExitCode;

use clap::Parser;
use restful_auth::config::Config;

#[tokio::main]
async fn main() -> ExitCode {
    let config = Config::parse();
    restful_auth::telemetry::init(&config.log_level);
    match restful_auth::run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!(%error, "restful-auth stopped");
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
