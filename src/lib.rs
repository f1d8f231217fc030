//! tap-withings: a Singer tap for the Withings health-data API.
//!
//! [`run`] is the whole program given its world (flags, environment, stdout); `main.rs` only
//! sets up logging and turns an error into one stderr line and an exit code.

pub mod about;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod conform;
pub mod error;
pub mod index;
pub mod logging;
pub mod maps;
pub mod metrics;
pub mod output;
pub mod plan;
pub mod prefetch;
pub mod reconcile;
pub mod secret;
pub mod singer;
pub mod streams;
pub mod sync;
pub mod timefmt;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tracing::info;

use crate::api::cancel::Cancel;
use crate::api::client::ApiClient;
use crate::auth::session::{Opened, Session, SessionError};
use crate::cli::{AboutFormat, Cli, TestMode};
use crate::config::RawConfig;
use crate::error::{Error, Result};
use crate::singer::catalog::{build_catalog, Selection};
use crate::singer::state::State;
use crate::sync::session_error;

fn read_file(kind: &str, path: &Path) -> Result<String> {
    std::fs::read_to_string(path)
        .map_err(|e| Error::input(format!("cannot read {kind} file {}: {e}", path.display())))
}

/// Merges `--config` files (or `ENV`) and the environment.
pub fn load_raw_config(cli: &Cli, env: &BTreeMap<String, String>) -> Result<RawConfig> {
    let mut raw = RawConfig::default();
    for name in &cli.config {
        if name == "ENV" {
            continue;
        }
        let text = read_file("config", Path::new(name))?;
        raw.add_file(name, &text)?;
    }
    raw.add_env(env)?;
    Ok(raw)
}

fn write_json_line<W: Write>(out: &mut W, value: &Value) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, value)?;
    writeln!(out)?;
    out.flush()
}

/// The outcome of writing `--about` or `--discover`: a reader that closed stdout early
/// (`--about | head`) wanted no more, which is not an error (the Singer convention for these
/// commands). A sync whose stdout closes fails instead: its data was not delivered.
fn informational(written: std::io::Result<()>) -> Result<()> {
    match written {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        other => other.map_err(|e| Error::io("cannot write to stdout", e)),
    }
}

/// Runs the tap: `--about`, `--discover`, `--test` or a sync. Its I/O is `stdout`; its time is
/// `cancel`'s clock ([`Cancel::with_clock`]): config validation, token expiry, extraction
/// times, the STATE throttle, the table version, request pacing and every sleep read that
/// clock, so a test on a virtual clock waits no real time. METRIC timings (request and sync
/// durations) stay on real time: they measure this process, not the run's logic.
pub async fn run<W: Write>(
    cli: &Cli,
    env: &BTreeMap<String, String>,
    mut stdout: W,
    cancel: Cancel,
) -> Result<()> {
    if cli.about {
        return informational(match cli.format {
            AboutFormat::Json => write_json_line(&mut stdout, &about::about_json()),
            AboutFormat::Markdown => stdout
                .write_all(about::about_markdown().as_bytes())
                .and_then(|()| stdout.flush()),
        });
    }
    if cli.discover {
        // Discovery needs no credentials and ignores --catalog/--state (Meltano passes them).
        return informational(write_json_line(&mut stdout, &build_catalog()));
    }
    let clock = cancel.clock().clone();
    let now = clock.now();
    let mut cfg = load_raw_config(cli, env)?.validate(env, now)?;
    if cli.test == Some(TestMode::Schema) {
        return write_schemas(&cfg, stdout, clock);
    }
    let connection_test = cli.test == Some(TestMode::All);
    if connection_test {
        // A connection test answers within seconds: a couple of quick retries at most.
        cfg.max_retries = cfg.max_retries.min(2);
        cfg.max_retry_seconds = cfg.max_retry_seconds.min(30);
    }
    let client = ApiClient::new(&cfg, cancel)?;
    let client = Arc::new(if connection_test {
        client.failing_fast_on_connect()
    } else {
        client
    });
    let pause = crate::auth::consent::pause_point(env).map(str::to_string);
    let opened = Session::open_all(&cfg, pause)?;
    if connection_test {
        return connection_tests(&client, opened).await;
    }
    let state = match &cli.state {
        // A first run named the file the next runs will use: no state yet.
        Some(path) if !path.exists() => {
            tracing::warn!(
                "state file {} does not exist yet: a first sync from start_date (keep the last STATE message's value there for the next run)",
                path.display()
            );
            State::default()
        }
        Some(path) => State::parse(&path.display().to_string(), &read_file("state", path)?)
            .map_err(Error::Input)?,
        None => State::default(),
    };
    let selection = match cli.catalog.as_ref().or(cli.properties.as_ref()) {
        Some(path) => {
            let name = path.display().to_string();
            let text = read_file("catalog", path)?;
            let value: Value = serde_json::from_str(&text)
                .map_err(|e| Error::input(format!("cannot parse catalog file {name}: {e}")))?;
            Selection::from_catalog(&name, &value).map_err(Error::Input)?
        }
        None => {
            tracing::warn!(
                "no --catalog given: syncing every stream (`--discover > catalog.json`, then deselect streams in it)"
            );
            Selection::all()
        }
    };
    sync::driver::sync(
        &cfg,
        client,
        opened,
        state,
        &selection,
        stdout,
        now.timestamp(),
    )
    .await
}

/// `--test schema`: the SCHEMA message of every stream, as a sync sends it (with the
/// config's flattening), and nothing else (the Meltano SDK's `--test=schema`).
fn write_schemas<W: Write>(
    cfg: &config::Config,
    stdout: W,
    clock: clock::SharedClock,
) -> Result<()> {
    let flattening = conform::Flattening {
        enabled: cfg.flattening_enabled,
        max_depth: cfg.flattening_max_depth,
    };
    let writer = singer::message::MessageWriter::new(stdout);
    let mut out = output::Output::new(
        writer,
        State::default(),
        &Selection::all(),
        flattening,
        clock,
    )?;
    out.announce()?;
    out.into_writer().map(|_| ())
}

/// `--test`: one call per user (each user once); an entry that cannot be opened fails it
/// after the others were tested.
async fn connection_tests(client: &ApiClient, opened: Opened) -> Result<()> {
    let mut tested = BTreeSet::new();
    for session in &opened.sessions {
        if let Some(id) = session.userid().await {
            if tested.contains(&id) {
                continue;
            }
        }
        let userid = match session.identify(client).await {
            Ok(id) => id,
            Err(e) => {
                return Err(sync::driver::prefix_error(
                    &session.describe().await,
                    session_error(None, e),
                ))
            }
        };
        if tested.insert(userid) {
            connection_test(client, session).await?;
        }
    }
    match opened.failures.into_iter().next() {
        Some((who, e)) => Err(sync::driver::prefix_error(&who, e)),
        None => Ok(()),
    }
}

async fn connection_test(client: &ApiClient, session: &Session) -> Result<()> {
    let body = session
        .call(client, "/v2/user", &[("action", "getdevice".to_string())])
        .await
        .map_err(|e| match e {
            SessionError::Auth(m) => Error::Auth(format!("connection test failed: {m}")),
            SessionError::Unauthorized { status, message } => Error::Api(format!(
                "connection test failed: not allowed (status {status}: {message})"
            )),
            SessionError::Failed(m) => Error::Api(format!("connection test failed: {m}")),
            SessionError::Cancelled => Error::Interrupted,
        })?;
    let userid = session.userid().await.unwrap_or_default();
    let devices = body
        .get("devices")
        .and_then(Value::as_array)
        .map_or(0, Vec::len);
    info!(userid, devices, "Connection test succeeded.");
    eprintln!("tap-withings: connection test succeeded (user {userid}, {devices} device(s))");
    Ok(())
}
