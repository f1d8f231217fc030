//! `--discover`: works without credentials, and matches the reviewed golden catalog.

use serde_json::Value;

use crate::support::{discover, tap};

const GOLDEN: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/discover.json");

#[test]
fn discover_matches_the_golden_catalog() {
    let catalog = discover();
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(
            GOLDEN,
            serde_json::to_string_pretty(&catalog).unwrap() + "\n",
        )
        .unwrap();
    }
    let golden: Value = serde_json::from_str(
        &std::fs::read_to_string(GOLDEN).expect("golden file (UPDATE_GOLDEN=1 writes it)"),
    )
    .unwrap();
    pretty_assertions::assert_eq!(catalog, golden);
}

#[test]
fn discover_needs_no_credentials_and_ignores_state_and_catalog() {
    let run = tap(&[
        "--discover",
        "--config",
        "ENV",
        "--state",
        "/nonexistent",
        "--catalog",
        "/nonexistent",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    let catalog: Value = serde_json::from_str(&run.stdout).unwrap();
    let names: Vec<&str> = catalog["streams"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["tap_stream_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "measures",
            "activity",
            "intraday_activity",
            "workouts",
            "sleep_series",
            "sleep_vitals",
            "sleep_summaries",
            "ecg_recordings",
            "ecg_signals",
            "stetho_recordings",
            "stetho_signals",
            "devices",
            "goals"
        ]
    );
}
