//! Inline stream maps (`stream_maps`, `stream_map_config`) through the real binary against the
//! simulator: alias, dropped property, salted hash, filter, a new key, dropped streams,
//! `__else__: null`. Every run's records are checked against the SCHEMA sent for them
//! (`Run::check`); a bad map ends the run with one line before any request.

use std::collections::BTreeSet;

use md5::Digest as _;
use serde_json::{json, Value};

use crate::support::{schemas, sim_config, tap, Msg, Run, World};

fn md5_hex(text: &str) -> String {
    md5::Md5::digest(text)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A world whose config carries `maps` (settings merged into the tap's config).
fn world(maps: Value) -> World {
    World::with_settings(sim_config(1, 20), maps)
}

/// Every stream name any message carries.
fn streams_named(run: &Run) -> BTreeSet<String> {
    run.messages
        .iter()
        .filter_map(|m| match m {
            Msg::Schema { stream, .. }
            | Msg::Record { stream, .. }
            | Msg::ActivateVersion { stream, .. }
            | Msg::Batch { stream, .. } => Some(stream.clone()),
            Msg::State { .. } => None,
        })
        .collect()
}

#[test]
fn devices_are_aliased_hashed_and_lose_their_mac_address() {
    let w = world(json!({
        "stream_maps": {"devices": {
            "__alias__": "withings_devices",
            "mac_address": null,
            "userid": "md5(config['salt'] + str(userid))",
        }},
        "stream_map_config": {"salt": "pepper"},
    }));
    let run = w.sync(&["devices", "goals"], None);
    assert_eq!(
        streams_named(&run),
        BTreeSet::from(["withings_devices".to_string(), "goals".to_string()])
    );
    let records = run.records("withings_devices");
    assert!(!records.is_empty());
    let hashed = md5_hex(&format!("pepper{}", w.userid()));
    for r in &records {
        assert_eq!(r["userid"], json!(hashed), "{r}");
        assert!(r.get("mac_address").is_none(), "{r}");
        assert!(r["hash_deviceid"].is_string(), "{r}");
    }
    let (_, schema, keys, _) = schemas(&run.messages)
        .into_iter()
        .find(|(s, ..)| s == "withings_devices")
        .unwrap();
    assert!(schema["properties"].get("mac_address").is_none());
    assert_eq!(schema["properties"]["userid"], json!({"type": "string"}));
    assert_eq!(keys, ["userid", "hash_deviceid"]);
    // A full-table stream's ACTIVATE_VERSION goes under its new name.
    assert!(run
        .messages
        .iter()
        .any(|m| matches!(m, Msg::ActivateVersion { stream, .. } if stream == "withings_devices")));
    // Unmapped streams are untouched.
    assert!(run
        .records("goals")
        .iter()
        .all(|r| r["userid"] == json!(w.userid())));
}

#[test]
fn a_filter_a_computed_key_and_bookmarks_under_the_tap_name() {
    let w = world(json!({"stream_maps": {"measures": {
        "__alias__": "weights",
        "__filter__": "type == 1",
        "kg": "float(value)",
        "measure_key": "str(grpid) + '-' + str(type) + '-' + str(position)",
        "__key_properties__": ["measure_key"],
    }}}));
    let run = w.sync(&["measures"], None);
    let records = run.records("weights");
    assert!(!records.is_empty());
    assert!(records.iter().all(|r| r["type"] == json!(1)), "filtered");
    for r in &records {
        assert_eq!(r["kg"], r["value"], "{r}");
        let key = format!("{}-1-{}", r["grpid"], r["position"]);
        assert_eq!(r["measure_key"], json!(key));
    }
    let (_, schema, keys, bookmarks) = schemas(&run.messages).pop().unwrap();
    assert_eq!(keys, ["measure_key"]);
    assert_eq!(bookmarks, ["modified"]);
    assert_eq!(schema["properties"]["kg"], json!({"type": "number"}));
    // The same data unmapped: the filter kept exactly the weights.
    let unmapped = tap(&[
        "--config",
        &crate::support::write_json(w.dir.path(), "plain.json", &{
            let mut c: Value = serde_json::from_slice(&std::fs::read(&w.config).unwrap()).unwrap();
            c.as_object_mut().unwrap().remove("stream_maps");
            c
        })
        .display()
        .to_string(),
        "--catalog",
        &w.catalog(&["measures"]).display().to_string(),
    ]);
    assert_eq!(unmapped.code, 0, "{}", unmapped.stderr);
    let weights = unmapped
        .records("measures")
        .iter()
        .filter(|r| r["type"] == json!(1))
        .count();
    assert_eq!(records.len(), weights);
    // STATE is the tap's: the bookmark stays under `measures`.
    let state = run.last_state();
    assert!(state["bookmarks"].get("measures").is_some(), "{state}");
    assert!(state["bookmarks"].get("weights").is_none(), "{state}");
    // The next run reads the bookmark back and sends nothing old.
    let state_path = crate::support::write_json(w.dir.path(), "state.json", &state);
    let again = tap(&[
        "--config",
        &w.config.display().to_string(),
        "--catalog",
        &w.catalog(&["measures"]).display().to_string(),
        "--state",
        &state_path.display().to_string(),
    ]);
    assert_eq!(again.code, 0, "{}", again.stderr);
    again.check();
    assert!(again.records("weights").len() < records.len());
}

#[test]
fn else_null_keeps_named_properties_and_drops_unnamed_streams() {
    let w = world(json!({"stream_maps": {
        "goals": {"__else__": null, "daily_steps": "steps", "has_sleep_goal": "sleep is not None"},
        "__else__": null,
    }}));
    let run = w.sync(&["goals", "devices"], None);
    assert_eq!(
        streams_named(&run),
        BTreeSet::from(["goals".to_string()]),
        "devices is dropped by the top-level __else__"
    );
    let records = run.records("goals");
    assert!(!records.is_empty());
    for r in &records {
        let names: BTreeSet<&str> = r.as_object().unwrap().keys().map(String::as_str).collect();
        assert_eq!(
            names,
            BTreeSet::from(["userid", "daily_steps", "has_sleep_goal"]),
            "{r}"
        );
    }
    let (_, schema, ..) = schemas(&run.messages).pop().unwrap();
    let types: Value = schema["properties"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v["type"].clone()))
        .collect::<serde_json::Map<_, _>>()
        .into();
    assert_eq!(
        types,
        json!({"userid": "integer", "daily_steps": ["integer", "null"], "has_sleep_goal": "boolean"})
    );
}

#[test]
fn a_null_map_drops_one_stream_and_globs_match_many() {
    let w = world(json!({"stream_maps": {
        "devices": null,
        "go*": {"__alias__": "'my_' + __stream_name__"},
    }}));
    let run = w.sync(&["goals", "devices"], None);
    assert_eq!(
        streams_named(&run),
        BTreeSet::from(["my_goals".to_string()])
    );
    assert!(!run.records("my_goals").is_empty());
}

#[test]
fn bad_maps_stop_the_run_with_one_line_before_any_request() {
    let cases = [
        (
            json!({"devices": {"x": "sha1(userid)"}}),
            "stream_maps.devices.x: unknown function `sha1`",
        ),
        (
            json!({"devices": {"x": "nosuch + 1"}}),
            "stream_maps.devices.x: unknown name `nosuch`",
        ),
        (
            json!({"devices": {"x": "(userid +"}}),
            "stream_maps.devices.x: cannot parse",
        ),
        (
            json!({"devices": 3}),
            "stream_maps.devices: must be an object",
        ),
        (
            json!({"devices": {"hash_deviceid": null}}),
            "stream_maps.devices.hash_deviceid: cannot drop a key property",
        ),
        (
            json!({"devices": {"__key_properties__": ["nope"]}}),
            "key property `nope` is not a property",
        ),
        (
            json!({"devices": {"__alias__": "goals"}}),
            "streams devices and goals would both be sent as `goals`",
        ),
        (json!([1]), "setting `stream_maps` must be a JSON object"),
    ];
    for (maps, expected) in cases {
        let w = world(json!({"stream_maps": maps}));
        let run = tap(&[
            "--config",
            &w.config.display().to_string(),
            "--catalog",
            &w.catalog(&["devices", "goals"]).display().to_string(),
        ]);
        assert_ne!(run.code, 0, "{maps}");
        let lines: Vec<&str> = run
            .stderr
            .lines()
            .filter(|l| l.starts_with("tap-withings:"))
            .collect();
        assert_eq!(lines.len(), 1, "{maps}: {}", run.stderr);
        assert!(lines[0].contains(expected), "{maps}: {}", lines[0]);
        assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
        assert!(
            run.messages.iter().all(|m| matches!(m, Msg::Schema { .. })) || run.messages.is_empty(),
            "{maps}: no data before the error"
        );
        let data_requests = w
            .sim
            .requests()
            .into_iter()
            .filter(|r| !format!("{r:?}").contains("oauth2"))
            .count();
        assert_eq!(data_requests, 0, "{maps}: no data request was made");
    }
}

#[test]
fn a_map_failing_on_a_record_fails_the_stream_with_its_name() {
    let w = world(json!({"stream_maps": {"devices": {"n": "int(hash_deviceid)"}}}));
    let run = tap(&[
        "--config",
        &w.config.display().to_string(),
        "--catalog",
        &w.catalog(&["devices"]).display().to_string(),
    ]);
    assert_ne!(run.code, 0);
    assert!(
        run.stderr
            .contains("stream_maps.devices.n: `int(hash_deviceid)` failed"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("panicked"));
    assert!(run.records("devices").is_empty());
}
