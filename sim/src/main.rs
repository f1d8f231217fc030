//! `withings-sim` binary: serves the simulator until SIGINT/SIGTERM.

use clap::Parser;
use serde_json::json;
use std::io::Write;
use std::path::PathBuf;
use withings_sim::{clock, Faults, Profile, Sim, SimConfig};

/// A faithful local Withings health-data API with synthetic deterministic data.
#[derive(Debug, Parser)]
#[command(name = "withings-sim", version)]
struct Cli {
    /// Interface to bind (loopback only).
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    #[arg(long, default_value_t = 1)]
    users: u32,
    #[arg(long, default_value_t = 30)]
    days: u32,
    /// About N getmeas measures per user (default: 16 per day).
    #[arg(long)]
    measures_per_user: Option<u64>,
    /// End of the data, epoch seconds (default: today 00:00 UTC).
    #[arg(long)]
    anchor: Option<i64>,
    /// Data profiles given to users in turn: full, scale_only, every_other_day,
    /// activity_no_intraday (default: every user full).
    #[arg(long, value_delimiter = ',')]
    profiles: Vec<Profile>,
    /// Groups per getmeas page (default 4096, the chunk the seed documents).
    #[arg(long, default_value_t = withings_sim::config::PAGE_GETMEAS)]
    page_getmeas: usize,
    /// Small getmeas pages (200 groups): many pages from little data. Overrides
    /// --page-getmeas.
    #[arg(long)]
    small_pages: bool,
    #[arg(long)]
    rate_limit_per_minute: Option<u32>,
    #[arg(long, default_value_t = 10.0)]
    repeat_guard_secs: f64,
    #[arg(long)]
    lying_more: bool,
    #[arg(long)]
    html_5xx_every: Option<u32>,
    #[arg(long)]
    status_522_every: Option<u32>,
    #[arg(long)]
    truncated_every: Option<u32>,
    #[arg(long, default_value_t = 0)]
    delay_ms: u64,
    #[arg(long)]
    access_token_max_calls: Option<u32>,
    /// userid as a string, an integer as false, a one-day activities as an object.
    #[arg(long)]
    shape_quirks: bool,
    /// Extra unknown fields on every object.
    #[arg(long)]
    unknown_fields: bool,
    /// getactivity rows without `modified` (a 2021 capture's shape).
    #[arg(long)]
    no_modified: bool,
    /// Some rows without their key (workout/summary id, activity date, ECG signalid).
    #[arg(long)]
    keyless_rows: bool,
    /// Intraday and sleep get replies also carry a row dated 9 days after the window.
    #[arg(long)]
    rows_outside_window: bool,
    /// Seconds an old refresh token survives its successor (default 8 h; 0: dies at once).
    #[arg(long)]
    rotation_grace_secs: Option<f64>,
    /// Error texts echo the request's secrets and a forged log line (a hostile server).
    #[arg(long)]
    echo_secrets_in_errors: bool,
    /// Write a ready tap config (JSON) to this file.
    #[arg(long)]
    write_tap_config: Option<PathBuf>,
    /// token_store of the written tap config (default: tokens.json next to the config).
    #[arg(long)]
    token_store: Option<PathBuf>,
}

impl Cli {
    fn config(&self) -> SimConfig {
        SimConfig {
            seed: self.seed,
            users: self.users,
            days: self.days,
            measures_per_user: self.measures_per_user,
            anchor: self.anchor,
            profiles: self.profiles.clone(),
            host: self.host.clone(),
            port: self.port,
            page_getmeas: if self.small_pages {
                withings_sim::config::SMALL_PAGE_GETMEAS
            } else {
                self.page_getmeas
            },
            faults: Faults {
                rate_limit_per_minute: self.rate_limit_per_minute,
                repeat_guard_secs: self.repeat_guard_secs,
                lying_more: self.lying_more,
                html_5xx_every: self.html_5xx_every,
                status_522_every: self.status_522_every,
                truncated_every: self.truncated_every,
                delay_ms: self.delay_ms,
                access_token_max_calls: self.access_token_max_calls,
                shape_quirks: self.shape_quirks,
                unknown_fields: self.unknown_fields,
                no_modified: self.no_modified,
                keyless_rows: self.keyless_rows,
                rows_outside_window: self.rows_outside_window,
                rotation_grace_secs: self.rotation_grace_secs,
                echo_secrets_in_errors: self.echo_secrets_in_errors,
            },
            ..SimConfig::default()
        }
    }
}

fn write_tap_config(
    sim: &Sim,
    file: &PathBuf,
    token_store: Option<&PathBuf>,
) -> Result<(), String> {
    let first = sim.userids().first().copied().ok_or("no users")?;
    let store = match token_store {
        Some(p) => p.clone(),
        None => file
            .parent()
            .map_or_else(|| PathBuf::from("tokens.json"), |d| d.join("tokens.json")),
    };
    let config = json!({
        "api_url": sim.url(),
        "client_id": sim.client_id(),
        "client_secret": sim.client_secret(),
        "refresh_token": sim.refresh_token(first),
        // One extra day so every user's local dates are covered.
        "start_date": clock::utc_ymd(sim.data_start() - 86_400),
        "end_date": clock::rfc3339(sim.anchor()),
        "token_store": store.to_string_lossy(),
    });
    let text = serde_json::to_string_pretty(&config).map_err(|e| e.to_string())?;
    std::fs::write(file, text + "\n").map_err(|e| format!("cannot write {}: {e}", file.display()))
}

async fn wait_for_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

fn run(cli: Cli) -> Result<(), String> {
    let sim = Sim::start(cli.config())?;
    if let Some(file) = &cli.write_tap_config {
        write_tap_config(&sim, file, cli.token_store.as_ref())?;
    }
    let users: Vec<_> = sim
        .userids()
        .into_iter()
        .map(|u| json!({"userid": u, "refresh_token": sim.refresh_token(u)}))
        .collect();
    let ready = json!({
        "url": sim.url(),
        "client_id": sim.client_id(),
        "client_secret": sim.client_secret(),
        "users": users,
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{ready}")
        .and_then(|_| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(out);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| format!("cannot start runtime: {e}"))?;
    rt.block_on(wait_for_signal());
    drop(sim);
    Ok(())
}

fn main() {
    if let Err(e) = run(Cli::parse()) {
        eprintln!("withings-sim: {e}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_flag_takes_a_comma_separated_list() {
        let cli = Cli::try_parse_from(["withings-sim", "--profiles", "scale_only,full"]).unwrap();
        assert_eq!(cli.config().profiles, [Profile::ScaleOnly, Profile::Full]);
        assert!(Cli::try_parse_from(["withings-sim"])
            .unwrap()
            .config()
            .profiles
            .is_empty());
        assert!(Cli::try_parse_from(["withings-sim", "--profiles", "full,nope"]).is_err());
    }
}
