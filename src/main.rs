//! The `tap-withings` binary: logging to stderr, the runtime, one-line errors, exit codes.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use tap_withings::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("RUST_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt().with_writer(std::io::stderr).with_env_filter(filter).with_target(false).init();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tap-withings: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let stdout = std::io::stdout().lock();
    match runtime.block_on(tap_withings::run(&cli, &env, stdout)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tap-withings: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
