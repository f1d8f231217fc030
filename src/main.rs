//! The `tap-withings` binary: logging to stderr, the runtime, one-line errors, exit codes.

use std::collections::BTreeMap;
use std::process::ExitCode;

use clap::Parser;
use tap_withings::api::cancel::Cancel;
use tap_withings::cli::{Cli, Command};

/// Resolves on SIGTERM or SIGINT (Ctrl-C).
async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => std::future::pending::<()>().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let env: BTreeMap<String, String> = std::env::vars().collect();
    tap_withings::logging::init(&tap_withings::logging::choose(
        cli.log_level.as_deref(),
        cli.log_format.as_deref(),
        &env,
        |path| std::fs::read_to_string(path).ok(),
    ));
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("tap-withings: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let stdout = std::io::stdout().lock();
    let cancel = Cancel::default();
    let on_signal = cancel.clone();
    runtime.spawn(async move {
        wait_for_signal().await;
        tracing::warn!("Signal received: stopping after writing the last complete state.");
        on_signal.cancel();
    });
    let result = match &cli.command {
        Some(Command::Auth(args)) => {
            let stdin = std::io::BufReader::new(std::io::stdin());
            runtime.block_on(tap_withings::auth::consent::run(
                &cli, args, &env, stdout, stdin, cancel,
            ))
        }
        None => runtime.block_on(tap_withings::run(&cli, &env, stdout, cancel)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tap-withings: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
