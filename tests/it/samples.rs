//! sample-config/: every file parses and validates, the example catalog is the discovered one
//! (every stream) with a few streams and a property deselected, the example state has the
//! shape the tap writes, and the files work with the binary: the real-API config passes
//! `--test` with only its placeholders replaced, and the simulator config with the example
//! catalog and state syncs from withings-sim with only `api_url` (the port) changed.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use serde_json::{json, Value};
use tap_withings::config::{RawConfig, SETTINGS};
use tap_withings::singer::catalog::Selection;
use tap_withings::singer::state::State;
use tap_withings::streams::{Replication, STREAMS};

use crate::support::{discover, sim_config, tap, write_json, Msg, Run, World};

fn sample(name: &str) -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/sample-config")).join(name)
}

fn read(name: &str) -> String {
    std::fs::read_to_string(sample(name)).unwrap_or_else(|e| panic!("sample-config/{name}: {e}"))
}

fn json_of(name: &str) -> Value {
    serde_json::from_str(&read(name)).unwrap_or_else(|e| panic!("sample-config/{name}: {e}"))
}

#[test]
fn every_sample_config_validates_and_the_real_one_names_every_setting() {
    for name in ["config.json", "sim-config.json"] {
        let mut raw = RawConfig::default();
        raw.add_file(name, &read(name))
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        raw.validate(&BTreeMap::new(), chrono::Utc::now())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
    let config = json_of("config.json");
    let keys: Vec<&str> = config
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    let settings: Vec<&str> = SETTINGS.iter().map(|s| s.name).collect();
    assert_eq!(
        keys, settings,
        "sample-config/config.json shows every setting, in --about order"
    );
}

#[test]
fn the_sample_state_has_a_bookmark_of_the_right_key_for_every_incremental_stream() {
    State::parse("state.json", &read("state.json")).expect("the tap accepts it");
    let state = json_of("state.json");
    let bookmarks = state["bookmarks"].as_object().unwrap();
    let incremental: BTreeSet<&str> = STREAMS
        .iter()
        .filter(|d| matches!(d.replication, Replication::Incremental(_)))
        .map(|d| d.name)
        .collect();
    assert_eq!(
        bookmarks
            .keys()
            .map(String::as_str)
            .collect::<BTreeSet<_>>(),
        incremental
    );
    for (stream, entry) in bookmarks {
        let def = tap_withings::streams::find(stream).unwrap();
        for p in entry["partitions"].as_array().unwrap() {
            assert_eq!(
                p["replication_key"],
                json!(def.replication_key()),
                "{stream}"
            );
            assert!(p["context"]["userid"].is_i64(), "{stream}");
            assert!(
                chrono::DateTime::parse_from_rfc3339(p["replication_key_value"].as_str().unwrap())
                    .is_ok(),
                "{stream}"
            );
        }
    }
}

/// A catalog without its `selected` flags.
fn unselected(mut catalog: Value) -> Value {
    for stream in catalog["streams"].as_array_mut().unwrap() {
        for entry in stream["metadata"].as_array_mut().unwrap() {
            entry["metadata"]
                .as_object_mut()
                .unwrap()
                .remove("selected");
        }
    }
    catalog
}

/// (deselected streams, deselected stream.property) of a catalog.
fn deselected(catalog: &Value) -> (BTreeSet<String>, BTreeSet<(String, String)>) {
    let (mut streams, mut properties) = (BTreeSet::new(), BTreeSet::new());
    for stream in catalog["streams"].as_array().unwrap() {
        let name = stream["tap_stream_id"].as_str().unwrap().to_string();
        for entry in stream["metadata"].as_array().unwrap() {
            if entry["metadata"]["selected"] != json!(false) {
                continue;
            }
            match entry["breadcrumb"].as_array().unwrap().last() {
                None => {
                    streams.insert(name.clone());
                }
                Some(p) => {
                    properties.insert((name.clone(), p.as_str().unwrap().to_string()));
                }
            }
        }
    }
    (streams, properties)
}

#[test]
fn the_sample_catalog_is_the_discovered_one_with_a_few_streams_deselected() {
    let catalog = json_of("catalog.json");
    Selection::from_catalog("catalog.json", &catalog).expect("the tap accepts it");
    assert!(
        unselected(catalog.clone()) == unselected(discover()),
        "sample-config/catalog.json differs from --discover beyond `selected`: run scripts/sample-catalog"
    );
    let (streams, properties) = deselected(&catalog);
    assert!(
        !streams.is_empty() && streams.len() < STREAMS.len(),
        "{streams:?}"
    );
    assert!(!properties.is_empty());
}

#[test]
fn the_sample_files_work_with_the_binary() {
    let world = World::new(sim_config(1, 3));
    // One token store for both runs: the first rotates the refresh token.
    let tokens = world.path("sample-tokens.json").display().to_string();
    // The real-API config, with only its placeholders (and the API root) replaced.
    let userid = world.userid();
    let placeholders = write_json(
        world.dir.path(),
        "placeholders.json",
        &json!({
            "client_id": world.sim.client_id(),
            "client_secret": world.sim.client_secret(),
            "refresh_token": world.sim.refresh_token(userid),
            "api_url": world.sim.url(),
            "token_store": tokens,
        }),
    );
    let run = tap(&[
        "--config",
        &sample("config.json").display().to_string(),
        "--config",
        &placeholders.display().to_string(),
        "--test",
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    assert!(
        run.stderr.contains("connection test succeeded"),
        "{}",
        run.stderr
    );

    // The simulator config (written for `withings-sim --port 8787`) on this simulator's port,
    // with the example catalog and state.
    assert_eq!(
        json_of("sim-config.json")["api_url"],
        "http://127.0.0.1:8787",
        "README: start withings-sim with --port 8787 for sim-config.json"
    );
    let port = write_json(
        world.dir.path(),
        "port.json",
        &json!({"api_url": world.sim.url(), "token_store": tokens}),
    );
    let run: Run = tap(&[
        "--config",
        &sample("sim-config.json").display().to_string(),
        "--config",
        &port.display().to_string(),
        "--catalog",
        &sample("catalog.json").display().to_string(),
        "--state",
        &sample("state.json").display().to_string(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.check();
    let (streams, properties) = deselected(&json_of("catalog.json"));
    let mut written = BTreeSet::new();
    for m in &run.messages {
        if let Msg::Record { stream, record, .. } = m {
            assert!(!streams.contains(stream), "records of deselected {stream}");
            for (s, p) in &properties {
                assert!(
                    s != stream || record.get(p).is_none(),
                    "deselected {s}.{p} written"
                );
            }
            written.insert(stream.clone());
        }
    }
    assert!(
        written.contains("devices") && written.contains("goals"),
        "{written:?}"
    );
}
