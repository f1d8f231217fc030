//! The run's clock: `tap_withings::run` in-process on a virtual clock (the one its `Cancel`
//! carries), against the simulator. Extraction times, the sync's end, token expiry and the
//! request pacing follow that clock; none of it waits real time.

use std::collections::BTreeMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use clap::Parser;
use serde_json::{json, Value};
use tap_withings::api::cancel::Cancel;
use tap_withings::cli::Cli;
use tap_withings::clock::{Clock, ManualClock};
use withings_sim::SimConfig;

use crate::support::{sim_config, World};

/// stdout for an in-process run, readable afterwards.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// 2021-06-15 00:00 UTC: far from the real date, so anything read from the real clock shows.
const ANCHOR: i64 = 1_623_715_200;

#[test]
fn a_run_on_a_virtual_clock_takes_its_time_from_it_and_waits_no_real_time() {
    let cfg = SimConfig {
        anchor: Some(ANCHOR),
        ..sim_config(1, 5)
    };
    // Six requests a minute: each request after the first waits ~10 virtual seconds.
    let world = World::with_settings(cfg, json!({ "max_requests_per_minute": 6 }));
    let catalog = world.catalog(&["measures", "activity", "sleep_summaries", "devices"]);
    let start = chrono::DateTime::from_timestamp(ANCHOR + 3_600, 0).unwrap();
    let clock = ManualClock::new(start);
    let cli = Cli::try_parse_from([
        "tap-withings",
        "--config",
        &world.config.display().to_string(),
        "--catalog",
        &catalog.display().to_string(),
    ])
    .unwrap();
    let out = Captured::default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let real = Instant::now();
    runtime
        .block_on(tap_withings::run(
            &cli,
            &BTreeMap::new(),
            out.clone(),
            Cancel::with_clock(clock.shared()),
        ))
        .unwrap();
    let real = real.elapsed().as_secs_f64();
    let virtual_end = clock.now().timestamp();
    let requests = world.sim.requests().len();
    assert!(requests >= 4, "{requests} requests");
    // Paced on the virtual clock: at least (requests - 2) gaps of 10 s (the first request is
    // free; the token call may or may not share the budget), none of it in real time.
    let waited = (virtual_end - (ANCHOR + 3_600)) as f64;
    assert!(
        waited >= (requests as f64 - 2.0) * 10.0 - 1.0,
        "{requests} requests in {waited} virtual seconds"
    );
    assert!(real < 30.0, "{real} real seconds");
    eprintln!("{requests} requests, {waited} virtual s, {real:.2} real s");

    let text = String::from_utf8(out.0.lock().unwrap().clone()).unwrap();
    let messages: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let records: Vec<&Value> = messages.iter().filter(|m| m["type"] == "RECORD").collect();
    assert!(records.len() > 10, "{} records", records.len());
    for r in &records {
        // Extracted on the virtual day, between the run's virtual start and end.
        let t = chrono::DateTime::parse_from_rfc3339(r["time_extracted"].as_str().unwrap())
            .unwrap()
            .timestamp();
        assert!((ANCHOR + 3_600..=virtual_end).contains(&t), "{r}");
    }
    // The table version is the run's virtual start, in milliseconds.
    for m in &messages {
        if m["type"] == "ACTIVATE_VERSION" {
            let v = m["version"].as_i64().unwrap() / 1000;
            assert_eq!(v, ANCHOR + 3_600, "{m}");
        }
    }
    // The token stored: its expiry is the virtual now plus its lifetime.
    let store: Value =
        serde_json::from_slice(&std::fs::read(world.path("tokens.json")).unwrap()).unwrap();
    let mut expiries = Vec::new();
    collect(&store, "expires_at", &mut expiries);
    assert!(!expiries.is_empty(), "{store}");
    let ttl = world.sim.config().access_token_ttl_secs as i64;
    for e in expiries {
        assert!(
            (ANCHOR + 3_600 + ttl..=virtual_end + ttl).contains(&e),
            "expires_at {e}, virtual start {}",
            ANCHOR + 3_600
        );
    }
}

fn collect(v: &Value, key: &str, into: &mut Vec<i64>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m {
                match x.as_i64() {
                    Some(n) if k == key => into.push(n),
                    _ => collect(x, key, into),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|x| collect(x, key, into)),
        _ => {}
    }
}
