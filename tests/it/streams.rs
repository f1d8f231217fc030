//! Every stream against withings-sim's ground truth, every field: full syncs, incremental
//! syncs after changes (exactly the changes with no lookback), progress kept across empty
//! windows, signals fetched once, local-calendar bounds of the YMD streams, records on window
//! boundaries, deselected properties, cleared goals, rows without their key, and the API's
//! quirks (lying `more`, reply-shape variants, unknown fields, `[]` goals, two devices on one
//! night, 24 h truncation, replies without `modified`).

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use withings_sim::{Faults, SimConfig};

use crate::support::{sim_config, Run, World};

/// Every stream of the tap (checked against its table by `all_is_the_taps_stream_table`).
pub(crate) const ALL: &[&str] = &[
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
    "goals",
];

/// `ALL` is a constant for the tests' call sites; it is the tap's own stream table, in order.
#[test]
fn all_is_the_taps_stream_table() {
    let table: Vec<&str> = tap_withings::streams::STREAMS
        .iter()
        .map(|d| d.name)
        .collect();
    assert_eq!(ALL, table.as_slice());
}

pub(crate) fn ts(secs: i64) -> Value {
    json!(chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string())
}

/// A ground-truth row as the tap emits it, from the stream's schema: nested objects whose
/// schema has properties flattened into `parent__child` columns, epoch integers of date-time
/// properties as RFC 3339 text. Every field of the row is kept (a field the schema lacks stays,
/// so a schema gap shows as a difference).
fn as_emitted(props: &serde_json::Map<String, Value>, prefix: &str, row: &Value, out: &mut Value) {
    for (k, v) in row.as_object().into_iter().flatten() {
        let column = format!("{prefix}{k}");
        let prop = props.get(k);
        match (prop.and_then(|p| p["properties"].as_object()), v) {
            (Some(inner), Value::Object(_)) => as_emitted(inner, &format!("{column}__"), v, out),
            _ if prop.is_some_and(|p| p["format"] == "date-time") && v.is_i64() => {
                out[&column] = ts(v.as_i64().unwrap())
            }
            _ => out[&column] = v.clone(),
        }
    }
}

/// Expected records per stream for one user: key (without userid) → every field of the
/// ground truth, in the emitted form.
pub(crate) fn expected(
    world: &World,
    userid: u64,
) -> BTreeMap<&'static str, BTreeMap<String, Value>> {
    let truth = |m: &str| world.sim.truth(m, userid);
    let arr = |m: &str| truth(m).as_array().cloned().unwrap_or_default();
    let key = |parts: &[&Value]| serde_json::to_string(parts).unwrap();
    let form = |stream: &str, row: &Value| {
        let schema = tap_withings::streams::find(stream).unwrap().schema();
        let mut out = json!({});
        as_emitted(schema["properties"].as_object().unwrap(), "", row, &mut out);
        out
    };
    let rows = |stream: &'static str, module: &str, key_of: &dyn Fn(&Value) -> String| {
        arr(module)
            .iter()
            .map(|r| (key_of(r), form(stream, r)))
            .collect::<BTreeMap<String, Value>>()
    };
    let mut out: BTreeMap<&'static str, BTreeMap<String, Value>> = BTreeMap::new();
    out.insert(
        "activity",
        rows("activity", "getactivity", &|a| key(&[&a["date"]])),
    );
    out.insert(
        "intraday_activity",
        truth("getintradayactivity")
            .as_object()
            .unwrap()
            .iter()
            .map(|(t, s)| {
                let t: i64 = t.parse().unwrap();
                let mut row = s.clone();
                row["timestamp"] = json!(t);
                (key(&[&ts(t)]), form("intraday_activity", &row))
            })
            .collect(),
    );
    out.insert(
        "workouts",
        rows("workouts", "getworkouts", &|w| key(&[&w["id"]])),
    );
    let segments = arr("sleep_get");
    const METRICS: &[&str] = &[
        "hr",
        "rr",
        "snoring",
        "sdnn_1",
        "rmssd",
        "hrv_quality",
        "mvt_score",
        "chest_movement_rate",
        "withings_index",
        "breathing_sounds",
    ];
    out.insert(
        "sleep_series",
        segments
            .iter()
            .map(|s| {
                let mut row = s.clone();
                for m in METRICS {
                    row.as_object_mut().unwrap().remove(*m);
                }
                (
                    key(&[&ts(s["startdate"].as_i64().unwrap()), &s["hash_deviceid"]]),
                    form("sleep_series", &row),
                )
            })
            .collect(),
    );
    let mut vitals = BTreeMap::new();
    for s in &segments {
        for metric in METRICS {
            for (t, v) in s
                .get(*metric)
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
            {
                let t: i64 = t.parse().unwrap();
                let k = key(&[&ts(t), &s["hash_deviceid"]]);
                let entry = vitals.entry(k).or_insert_with(|| {
                    json!({"timestamp": ts(t), "hash_deviceid": s["hash_deviceid"],
                           "model_id": s["model_id"]})
                });
                entry[*metric] = v.clone();
            }
        }
    }
    out.insert("sleep_vitals", vitals);
    out.insert(
        "sleep_summaries",
        rows("sleep_summaries", "getsummary", &|s| key(&[&s["id"]])),
    );
    let recordings = arr("heart_list");
    out.insert(
        "ecg_recordings",
        rows("ecg_recordings", "heart_list", &|r| {
            key(&[&r["ecg"]["signalid"]])
        }),
    );
    let signals = truth("heart_get");
    out.insert(
        "ecg_signals",
        recordings
            .iter()
            .map(|r| {
                let id = &r["ecg"]["signalid"];
                let mut row = signals[id.to_string()].clone();
                row["timestamp"] = r["timestamp"].clone();
                (key(&[id]), form("ecg_signals", &row))
            })
            .collect(),
    );
    let stetho = arr("stetho_list");
    let stetho_signals = truth("stetho_get");
    out.insert(
        "stetho_recordings",
        rows("stetho_recordings", "stetho_list", &|r| {
            key(&[&r["signalid"]])
        }),
    );
    out.insert(
        "stetho_signals",
        stetho
            .iter()
            .map(|r| {
                let mut row = stetho_signals[r["signalid"].to_string()].clone();
                row["timestamp"] = r["timestamp"].clone();
                (key(&[&r["signalid"]]), form("stetho_signals", &row))
            })
            .collect(),
    );
    out.insert(
        "devices",
        rows("devices", "getdevice", &|d| key(&[&d["hash_deviceid"]])),
    );
    // `[]` (no goals) or an object whose keys may be missing: one record, nulls where unset.
    let goals = truth("getgoals");
    let mut row = json!({"steps": null, "sleep": null, "weight": {"value": null, "unit": null}});
    for (k, v) in goals.as_object().into_iter().flatten() {
        row[k] = v.clone();
    }
    out.insert("goals", [(String::from("[]"), form("goals", &row))].into());
    out
}

/// What a run emitted for one user: key (without userid) → record.
pub(crate) fn emitted(run: &Run, stream: &str, userid: u64) -> BTreeMap<String, Value> {
    let keys: Vec<String> = run
        .messages
        .iter()
        .find_map(|m| match m {
            crate::support::Msg::Schema {
                stream: s,
                key_properties,
                ..
            } if s == stream => Some(key_properties.clone()),
            _ => None,
        })
        .unwrap_or_default();
    run.records(stream)
        .into_iter()
        .filter(|r| r["userid"] == json!(userid))
        .map(|r| {
            let parts: Vec<&Value> = keys
                .iter()
                .filter(|k| *k != "userid")
                .map(|k| &r[k])
                .collect();
            (serde_json::to_string(&parts).unwrap(), r.clone())
        })
        .collect()
}

/// The fields of `got` that `want` has (absent as null), to compare with `want`.
pub(crate) fn project(got: &Value, want: &Value) -> Value {
    let mut out = json!({});
    for k in want.as_object().into_iter().flatten().map(|(k, _)| k) {
        out[k] = got.get(k).cloned().unwrap_or(Value::Null);
    }
    out
}

/// Normalises JSON numbers so 477.0 and 477 compare equal, and absent equals null. The
/// simulator's unknown field is dropped: values kept as sent (ECG `intervals`) carry it.
pub(crate) fn norm(v: &Value) -> Value {
    match v {
        Value::Number(n) => json!(n.as_f64()),
        Value::Object(o) => Value::Object(
            o.iter()
                .filter(|(k, _)| *k != "sim_future_field")
                .map(|(k, v)| (k.clone(), norm(v)))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.iter().map(norm).collect()),
        v => v.clone(),
    }
}

/// Every record of the stream for the user equals the ground truth in every field.
pub(crate) fn assert_stream_equals(
    run: &Run,
    world: &World,
    userid: u64,
    stream: &str,
    expected: &BTreeMap<String, Value>,
) {
    let got = emitted(run, stream, userid);
    let got_keys: BTreeSet<&String> = got.keys().collect();
    let want_keys: BTreeSet<&String> = expected.keys().collect();
    assert_eq!(
        got_keys, want_keys,
        "{stream} (user {userid}) keys differ from the ground truth"
    );
    for (k, v) in expected {
        assert_eq!(
            norm(&project(&got[k], v)),
            norm(v),
            "{stream} (user {userid}) record {k}"
        );
    }
    let _ = world;
}

fn two_users() -> World {
    let cfg = SimConfig {
        seed: 7,
        ..sim_config(2, 12)
    };
    let sim_probe = withings_sim::Sim::start(cfg.clone()).unwrap();
    let second = sim_probe.refresh_token(sim_probe.userids()[1]);
    drop(sim_probe);
    World::with_settings(cfg, json!({"users": [{"refresh_token": second}]}))
}

#[test]
fn full_sync_of_every_stream_equals_ground_truth_for_every_user() {
    let world = two_users();
    let run = world.sync(ALL, None);
    for userid in world.sim.userids() {
        for (stream, want) in expected(&world, userid) {
            assert!(
                !want.is_empty(),
                "the simulator has {stream} data for user {userid}"
            );
            assert_stream_equals(&run, &world, userid, stream, &want);
        }
    }
    // The second user has no goals: the API answers `[]`, the stream still has its record.
    assert_eq!(
        world.sim.truth("getgoals", world.sim.userids()[1]),
        json!([])
    );
    // Two devices record the same nights for the second user.
    let series = run.records("sleep_series");
    let devices: BTreeSet<String> = series
        .iter()
        .filter(|r| r["userid"] == json!(world.sim.userids()[1]))
        .map(|r| r["device"].to_string())
        .collect();
    assert!(devices.len() >= 2, "two devices on the same nights");
    // One partition per user in the state.
    let state = run.last_state();
    let parts = state["bookmarks"]["measures"]["partitions"]
        .as_array()
        .unwrap();
    assert_eq!(parts.len(), 2);
}

#[test]
fn every_documented_data_field_is_requested() {
    let world = World::new(sim_config(1, 3));
    world.sync(ALL, None);
    let requests = world.sim.requests();
    for (action, field) in [
        ("getactivity", "hr_zone_3"),
        ("getintradayactivity", "spo2_auto"),
        ("getworkouts", "pool_length"),
        ("sleep_get", "mvt_score"),
        ("getsummary", "sleep_score"),
    ] {
        let r = requests
            .iter()
            .find(|r| r.action == action)
            .unwrap_or_else(|| panic!("{action} was called"));
        let asked = r.params.get("data_fields").cloned().unwrap_or_default();
        assert!(
            asked.split(',').any(|f| f == field),
            "{action} asked {asked}"
        );
    }
}

#[test]
fn windows_never_exceed_24_hours_and_ymd_and_lastupdate_are_never_mixed() {
    let world = World::new(sim_config(1, 5));
    world.sync(ALL, None);
    for r in world.sim.requests() {
        let p = &r.params;
        if let (Some(s), Some(e)) = (p.get("startdate"), p.get("enddate")) {
            if r.action == "getintradayactivity" || r.action == "sleep_get" {
                let span: i64 = e.parse::<i64>().unwrap() - s.parse::<i64>().unwrap();
                assert!(span <= 86_400, "{} window of {span} s", r.action);
            }
        }
        assert!(
            !(p.contains_key("lastupdate") && p.contains_key("startdateymd")),
            "{r:?}"
        );
    }
}

#[test]
fn quirky_replies_lose_nothing() {
    let mut cfg = sim_config(1, 15);
    cfg.faults = Faults {
        lying_more: true,
        shape_quirks: true,
        unknown_fields: true,
        repeat_guard_secs: 0.0,
        ..Faults::default()
    };
    cfg.page_getmeas = 7;
    cfg.page_getactivity = 4;
    cfg.page_getworkouts = 3;
    cfg.page_getsummary = 5;
    cfg.page_heart_list = 1;
    let world = World::new(cfg);
    let run = world.sync(ALL, None);
    let userid = world.userid();
    for (stream, want) in expected(&world, userid) {
        assert_stream_equals(&run, &world, userid, stream, &want);
    }
}

/// Sets (or, with null, removes) a setting of the world's tap config.
pub(crate) fn set_setting(world: &World, key: &str, value: Value) {
    let mut config: Value = serde_json::from_slice(&std::fs::read(&world.config).unwrap()).unwrap();
    match value {
        Value::Null => {
            config.as_object_mut().unwrap().remove(key);
        }
        v => config[key] = v,
    }
    std::fs::write(&world.config, serde_json::to_vec_pretty(&config).unwrap()).unwrap();
}

#[test]
fn a_second_run_reads_only_what_changed() {
    // The data ends two days ago and the first run reads up to an hour after its end, so
    // whole new nights fit between the first run's scan and now: with no lookback, data that
    // reaches Withings after the scan of its window is late data (see the lookback tests).
    let mut cfg = sim_config(1, 10);
    let data_end = chrono::Utc::now().timestamp().div_euclid(86_400) * 86_400 - 2 * 86_400;
    cfg.anchor = Some(data_end);
    let first_end = data_end + 3_600;
    // The calendar walk with no lookback (index-driven reads:
    // index::a_second_run_reads_the_days_and_nights_that_changed).
    let world = World::with_settings(
        cfg,
        json!({"lookback_hours": 0, "end_date": rfc3339(first_end), "calendar_walk": true}),
    );
    let userid = world.userid();
    let first = world.sync(ALL, None);
    let before = expected(&world, userid);
    set_setting(&world, "end_date", Value::Null);
    for module in [
        "getactivity",
        "getworkouts",
        "sleep_get",
        "getintradayactivity",
        "heart_list",
        "stetho_list",
    ] {
        let at = first_end + if module == "sleep_get" { 3_600 } else { 60 };
        let count = if module == "sleep_get" { 1 } else { 2 };
        world.add(module, userid, count, Some(at));
    }
    for module in ["getactivity", "getworkouts", "getsummary"] {
        world.modify(module, userid, 1);
    }
    world.sim.reset_stats();
    let second = world.sync(ALL, Some(&first.last_state()));
    let after = expected(&world, userid);
    for stream in ALL.iter().filter(|s| **s != "measures") {
        let got = emitted(&second, stream, userid);
        // Window streams have no `modified`: a change to an event the first run had read
        // (the modified night's vitals) is late data, left to the lookback.
        let frontier = ts(first_end);
        let windowed = matches!(
            *stream,
            "intraday_activity" | "sleep_series" | "sleep_vitals"
        );
        let changed: BTreeSet<&String> = after[stream]
            .iter()
            .filter(|(k, v)| before[stream].get(*k) != Some(*v))
            .filter(|(k, _)| !windowed || k[2..22] >= frontier.as_str().unwrap()[..20])
            .map(|(k, _)| k)
            .collect();
        let got_keys: BTreeSet<&String> = got.keys().collect();
        match *stream {
            // full-table streams: everything again.
            "devices" | "goals" => assert_eq!(got_keys, after[stream].keys().collect(), "{stream}"),
            // Every other stream: exactly the new and changed records.
            _ => {
                assert!(!changed.is_empty(), "{stream} has new data");
                let missing: Vec<_> = changed.difference(&got_keys).take(3).collect();
                let extra: Vec<_> = got_keys.difference(&changed).take(3).collect();
                assert!(
                    missing.is_empty() && extra.is_empty(),
                    "{stream}: {} emitted, {} changed; missing e.g. {missing:?}, extra e.g. {extra:?}",
                    got_keys.len(),
                    changed.len()
                );
                for k in changed {
                    assert_eq!(
                        norm(&project(&got[k], &after[stream][k])),
                        norm(&after[stream][k]),
                        "{stream} {k}"
                    );
                }
            }
        }
    }
    // An incremental run asks only for what changed: a handful of requests per stream.
    let requests = world.sim.requests();
    assert!(
        requests.len() < 40,
        "{} requests for an incremental run",
        requests.len()
    );
}

#[test]
fn late_data_inside_the_lookback_is_picked_up_by_the_next_run() {
    let world = World::with_settings(sim_config(1, 6), json!({"lookback_hours": 72}));
    let userid = world.userid();
    let first = world.sync(
        &["intraday_activity", "sleep_series", "ecg_recordings"],
        None,
    );
    let before = expected(&world, userid);
    // Data stamped before the first run's bookmarks, as a watch synced late would add it.
    let late = world.sim.anchor() - 30 * 3600;
    for module in ["getintradayactivity", "heart_list", "sleep_get"] {
        world.add(module, userid, 1, Some(late));
    }
    let second = world.sync(
        &["intraday_activity", "sleep_series", "ecg_recordings"],
        Some(&first.last_state()),
    );
    let after = expected(&world, userid);
    for stream in ["intraday_activity", "sleep_series", "ecg_recordings"] {
        let got = emitted(&second, stream, userid);
        let new: Vec<&String> = after[stream]
            .keys()
            .filter(|k| !before[stream].contains_key(*k))
            .collect();
        assert!(!new.is_empty(), "{stream}: the simulator added late data");
        for k in new {
            assert!(got.contains_key(k), "{stream}: late record {k} not emitted");
        }
        // Bookmarks never move back.
        let mark = |run: &Run| {
            run.last_state()["bookmarks"][stream]["partitions"][0]["replication_key_value"].clone()
        };
        assert!(mark(&second).as_str() >= mark(&first).as_str(), "{stream}");
    }
}

#[test]
fn deletions_in_withings_become_tombstones_on_the_next_rescan() {
    let world = World::with_settings(sim_config(1, 8), json!({"reconcile_every_hours": 0}));
    let userid = world.userid();
    let streams = ["measures", "workouts", "sleep_summaries"];
    let first = world.sync(&streams, None);
    let before = expected(&world, userid);
    let groups_before: BTreeSet<i64> = world
        .sim
        .truth("getmeas", userid)
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grpid"].as_i64().unwrap())
        .collect();
    for module in ["getmeas", "getworkouts", "getsummary"] {
        world.delete(module, userid, 1);
    }
    let second = world.sync(&streams, Some(&first.last_state()));
    let after = expected(&world, userid);
    for (stream, module_key) in [
        ("workouts", "workouts"),
        ("sleep_summaries", "sleep_summaries"),
    ] {
        let gone: BTreeSet<&String> = before[module_key]
            .keys()
            .filter(|k| !after[module_key].contains_key(*k))
            .collect();
        assert_eq!(gone.len(), 1, "{stream}: the simulator deleted one");
        let tombstones: BTreeSet<String> = second
            .records(stream)
            .into_iter()
            .filter(|r| !r["_sdc_deleted_at"].is_null())
            .map(|r| serde_json::to_string(&[&r["id"]]).unwrap())
            .collect();
        assert_eq!(tombstones.iter().collect::<BTreeSet<_>>(), gone, "{stream}");
    }
    let groups_after: BTreeSet<i64> = world
        .sim
        .truth("getmeas", userid)
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grpid"].as_i64().unwrap())
        .collect();
    let deleted: Vec<&i64> = groups_before.difference(&groups_after).collect();
    assert_eq!(deleted.len(), 1);
    let tomb_groups: BTreeSet<i64> = second
        .records("measures")
        .iter()
        .filter(|r| !r["_sdc_deleted_at"].is_null())
        .map(|r| r["grpid"].as_i64().unwrap())
        .collect();
    assert_eq!(tomb_groups.iter().collect::<Vec<_>>(), deleted);
    // A third run does not emit the tombstones again.
    let third = world.sync(&streams, Some(&second.last_state()));
    assert!(third
        .records("measures")
        .iter()
        .all(|r| r["_sdc_deleted_at"].is_null()));
}

#[test]
fn full_table_streams_are_versioned_and_activated_after_a_complete_read() {
    let world = World::new(sim_config(1, 2));
    let run = world.sync(&["devices", "goals", "measures"], None);
    let versions: BTreeSet<i64> = run
        .messages
        .iter()
        .filter_map(|m| match m {
            crate::support::Msg::Record {
                stream, version, ..
            } if stream == "devices" || stream == "goals" => {
                Some(version.expect("full-table records carry a version"))
            }
            crate::support::Msg::Record { version, .. } => {
                assert!(version.is_none(), "incremental records carry no version");
                None
            }
            _ => None,
        })
        .collect();
    assert_eq!(versions.len(), 1);
    let activated: Vec<(String, i64)> = run
        .messages
        .iter()
        .filter_map(|m| match m {
            crate::support::Msg::ActivateVersion { stream, version } => {
                Some((stream.clone(), *version))
            }
            _ => None,
        })
        .collect();
    let v = *versions.iter().next().unwrap();
    assert_eq!(
        activated,
        vec![("devices".to_string(), v), ("goals".to_string(), v)]
    );
}

#[test]
fn ecg_signals_ask_for_the_filtered_signal_and_intervals_and_emit_them() {
    let world = World::new(sim_config(1, 10));
    let userid = world.userid();
    let run = world.sync(&["ecg_recordings", "ecg_signals"], None);
    let gets: Vec<_> = world
        .sim
        .requests()
        .into_iter()
        .filter(|r| r.action == "heart_get")
        .collect();
    assert!(!gets.is_empty(), "heart get was called");
    for r in &gets {
        assert_eq!(
            r.params.get("with_filtered").map(String::as_str),
            Some("true")
        );
        assert_eq!(
            r.params.get("with_intervals").map(String::as_str),
            Some("true")
        );
    }
    let truth = world.sim.truth("heart_get", userid);
    let records = run.records("ecg_signals");
    assert_eq!(records.len(), gets.len());
    for r in records {
        let want = &truth[r["signalid"].to_string()];
        assert!(want["filtered_signal"].is_array() && want["intervals"].is_object());
        for field in ["signal", "filtered_signal", "intervals"] {
            assert_eq!(r[field], want[field], "{field} of signal {}", r["signalid"]);
        }
    }
}

/// RFC 3339 text of an epoch (a config date).
fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .to_rfc3339()
}

#[test]
fn windows_without_data_are_not_walked_again_on_the_next_run() {
    const WINDOWED: &[&str] = &[
        "intraday_activity",
        "sleep_series",
        "sleep_vitals",
        "ecg_recordings",
        "ecg_signals",
        "stetho_recordings",
        "stetho_signals",
    ];
    let cfg = sim_config(1, 5);
    let probe = withings_sim::Sim::start(cfg.clone()).unwrap();
    let data_start = probe.data_start();
    drop(probe);
    // 150 days that hold no data at all (a user without a watch).
    let (start, end) = (data_start - 200 * 86_400, data_start - 50 * 86_400);
    // The calendar walk (index-driven reads walk no window at all here:
    // index::a_scale_only_user_costs_no_window_at_all).
    let world = World::with_settings(
        cfg,
        json!({"start_date": rfc3339(start), "end_date": rfc3339(end), "calendar_walk": true}),
    );
    let data_calls = |world: &World| {
        world
            .sim
            .requests()
            .into_iter()
            .filter(|r| r.action != "requesttoken")
            .count()
    };
    let first = world.sync(WINDOWED, None);
    assert!(first.records("intraday_activity").is_empty());
    assert!(data_calls(&world) > 300, "the first run walks every window");
    let state = first.last_state();
    for stream in WINDOWED {
        let part = &state["bookmarks"][*stream]["partitions"][0];
        assert_eq!(part["context"]["userid"], json!(world.userid()), "{stream}");
        if stream.contains("ecg") || stream.contains("stetho") {
            // Lists are re-read from their newest page: nothing listed, complete from start.
            assert_eq!(part["listed_from"], json!(start), "{stream}: {part}");
        } else {
            assert_eq!(part["scanned_until"], json!(end), "{stream}: {part}");
        }
    }
    world.sim.reset_stats();
    let second = world.sync(WINDOWED, Some(&state));
    // One window of lookback per windowed module, one list call per list.
    let calls = data_calls(&world);
    assert!(calls <= 4, "{calls} requests for a second run over no data");
    assert_eq!(second.last_state(), state);
}

#[test]
fn signals_are_fetched_once_even_when_their_recordings_are_read_again() {
    // The second run re-lists every recording (its first page holds them all).
    let world = World::new(sim_config(1, 12));
    let streams = [
        "ecg_recordings",
        "ecg_signals",
        "stetho_recordings",
        "stetho_signals",
    ];
    let first = world.sync(&streams, None);
    let gets = |world: &World| {
        world
            .sim
            .requests()
            .into_iter()
            .filter(|r| r.action == "heart_get" || r.action == "stetho_get")
            .count()
    };
    let recordings =
        first.records("ecg_recordings").len() + first.records("stetho_recordings").len();
    assert!(recordings >= 4, "{recordings} recordings");
    assert_eq!(gets(&world), recordings, "one signal call per recording");
    world.sim.reset_stats();
    let second = world.sync(&streams, Some(&first.last_state()));
    assert_eq!(
        second.records("ecg_recordings").len() + second.records("stetho_recordings").len(),
        0,
        "a recording re-listed is not emitted again"
    );
    assert_eq!(gets(&world), 0, "no signal is fetched again");
    assert!(second.records("ecg_signals").is_empty());
    assert!(second.records("stetho_signals").is_empty());
    // A new recording costs exactly its own signal call.
    world.add(
        "heart_list",
        world.userid(),
        1,
        Some(world.sim.anchor() - 3_600),
    );
    world.sim.reset_stats();
    let third = world.sync(&streams, Some(&second.last_state()));
    assert_eq!(gets(&world), 1);
    assert_eq!(third.records("ecg_signals").len(), 1);
}

#[test]
fn ymd_streams_keep_only_the_range_in_the_users_local_calendar() {
    use chrono::TimeZone;
    let cfg = SimConfig {
        seed: 11,
        ..sim_config(2, 20)
    };
    let probe = withings_sim::Sim::start(cfg.clone()).unwrap();
    let second = probe.refresh_token(probe.userids()[1]);
    let anchor = probe.anchor();
    drop(probe);
    // One UTC day in the middle of the data, as in a config `2026-11-29` .. `2026-11-30`.
    let (start, end) = (anchor - 10 * 86_400, anchor - 9 * 86_400);
    let world = World::with_settings(
        cfg,
        json!({"users": [{"refresh_token": second}],
               "start_date": rfc3339(start), "end_date": rfc3339(end)}),
    );
    let streams = ["activity", "workouts", "sleep_summaries"];
    let run = world.sync(&streams, None);
    let local = |t: i64, tz: &str| {
        let tz: chrono_tz::Tz = tz.parse().unwrap();
        tz.from_utc_datetime(&chrono::DateTime::from_timestamp(t, 0).unwrap().naive_utc())
            .format("%Y-%m-%d")
            .to_string()
    };
    let mut zones = BTreeSet::new();
    for userid in world.sim.userids() {
        let tz = world.sim.user_timezone(userid).unwrap();
        zones.insert(tz.clone());
        let (first_day, last_day) = (local(start, &tz), local(end, &tz));
        let want_days: BTreeSet<String> = world
            .sim
            .truth("getactivity", userid)
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["date"].as_str().unwrap().to_string())
            .filter(|d| *d >= first_day && *d <= last_day)
            .collect();
        let got_days: BTreeSet<String> = run
            .records("activity")
            .iter()
            .filter(|r| r["userid"] == json!(userid))
            .map(|r| r["date"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(got_days, want_days, "activity of user {userid} ({tz})");
        assert_eq!(want_days.len(), 2, "{tz}: the range touches two local days");
        for (stream, module, instant) in [
            ("workouts", "getworkouts", "startdate"),
            ("sleep_summaries", "getsummary", "enddate"),
        ] {
            let want: BTreeSet<i64> = world
                .sim
                .truth(module, userid)
                .as_array()
                .unwrap()
                .iter()
                .filter(|r| (start..=end).contains(&r[instant].as_i64().unwrap()))
                .map(|r| r["id"].as_i64().unwrap())
                .collect();
            let got: BTreeSet<i64> = run
                .records(stream)
                .iter()
                .filter(|r| r["userid"] == json!(userid))
                .map(|r| r["id"].as_i64().unwrap())
                .collect();
            assert_eq!(got, want, "{stream} of user {userid} ({tz})");
        }
        let nights = run
            .records("sleep_summaries")
            .iter()
            .filter(|r| r["userid"] == json!(userid))
            .count();
        assert!(nights >= 1, "{tz}: a night ends in the range");
    }
    assert_eq!(zones.len(), 2, "two users in two timezones");
    // Under `lastupdate` too: changes dated outside the range are not emitted.
    let userid = world.userid();
    for module in ["getactivity", "getworkouts", "getsummary"] {
        world.modify(module, userid, 1);
    }
    for module in ["getactivity", "getworkouts"] {
        world.add(module, userid, 1, Some(end + 2 * 86_400));
    }
    world.sim.reset_stats();
    let second = world.sync(&streams, Some(&run.last_state()));
    assert!(world
        .sim
        .requests()
        .iter()
        .filter(|r| r.action == "getactivity")
        .all(|r| r.params.contains_key("lastupdate")));
    for stream in streams {
        assert_eq!(second.records(stream), Vec::<Value>::new(), "{stream}");
    }
}

#[test]
fn activity_without_modified_resumes_by_lastupdate_instead_of_the_whole_range_again() {
    let mut cfg = sim_config(1, 40);
    cfg.faults.no_modified = true;
    // Data that ended a day ago: no generated row was modified within the hour of safety
    // margin behind the run (with today's anchor, a run in the first hour after midnight UTC
    // would rightly re-read the rows stamped then).
    cfg.anchor = Some(chrono::Utc::now().timestamp().div_euclid(86_400) * 86_400 - 86_400);
    let world = World::new(cfg);
    let userid = world.userid();
    let started = chrono::Utc::now().timestamp();
    let first = world.sync(&["activity"], None);
    let finished = chrono::Utc::now().timestamp();
    let days = first.records("activity").len();
    assert_eq!(
        days,
        world
            .sim
            .truth("getactivity", userid)
            .as_array()
            .unwrap()
            .len()
    );
    assert!(first
        .records("activity")
        .iter()
        .all(|r| r["modified"].is_null()));
    // The bookmark is the run's start less the safety margin: nothing changed before it was
    // left unread.
    let mark = first.last_state()["bookmarks"]["activity"]["partitions"][0]
        ["replication_key_value"]
        .clone();
    let mark = chrono::DateTime::parse_from_rfc3339(mark.as_str().expect("a bookmark"))
        .unwrap()
        .timestamp();
    assert!(
        (started - 3_600..=finished - 3_600).contains(&mark),
        "{mark} for a run from {started} to {finished}"
    );
    // The next run asks `lastupdate` and gets exactly what changed since.
    world.modify("getactivity", userid, 2);
    world.sim.reset_stats();
    let second = world.sync(&["activity"], Some(&first.last_state()));
    let requests = world.sim.requests();
    let calls: Vec<_> = requests
        .iter()
        .filter(|r| r.action == "getactivity")
        .collect();
    assert!(
        calls.iter().all(|r| r.params.contains_key("lastupdate")),
        "{calls:?}"
    );
    assert_eq!(second.records("activity").len(), 2);
}

#[test]
fn switching_on_objectives_later_backfills_category_2() {
    let world = World::new(sim_config(1, 20));
    let userid = world.userid();
    let groups = |category: i64| -> BTreeSet<i64> {
        world
            .sim
            .truth("getmeas", userid)
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| g["category"] == json!(category))
            .map(|g| g["grpid"].as_i64().unwrap())
            .collect()
    };
    let emitted_groups = |run: &Run| -> BTreeSet<i64> {
        run.records("measures")
            .iter()
            .map(|r| r["grpid"].as_i64().unwrap())
            .collect()
    };
    let objectives = groups(2);
    assert!(!objectives.is_empty(), "the simulator has objectives");
    let first = world.sync(&["measures"], None);
    assert_eq!(emitted_groups(&first), groups(1));
    set_setting(&world, "include_objectives", json!(true));
    let second = world.sync(&["measures"], Some(&first.last_state()));
    assert_eq!(
        emitted_groups(&second),
        objectives,
        "every objective, none of category 1"
    );
    let part = &second.last_state()["bookmarks"]["measures"]["partitions"][0];
    assert_eq!(
        part["replication_key_value"],
        first.last_state()["bookmarks"]["measures"]["partitions"][0]["replication_key_value"]
    );
    assert!(part["objectives_modified"].is_i64(), "{part}");
    let third = world.sync(&["measures"], Some(&second.last_state()));
    assert!(third.records("measures").is_empty());
}

#[test]
fn rows_without_their_key_are_skipped_counted_and_the_sync_goes_on() {
    let mut cfg = sim_config(1, 30);
    cfg.faults.keyless_rows = true;
    cfg.page_getactivity = 10;
    let world = World::new(cfg);
    let userid = world.userid();
    let streams = [
        "activity",
        "workouts",
        "sleep_summaries",
        "ecg_recordings",
        "ecg_signals",
    ];
    let run = world.sync(&streams, None);
    let mut skipped_total = 0;
    for (stream, module, key) in [
        ("activity", "getactivity", "/date"),
        ("workouts", "getworkouts", "/id"),
        ("sleep_summaries", "getsummary", "/id"),
        ("ecg_recordings", "heart_list", "/ecg/signalid"),
        ("ecg_signals", "heart_list", "/ecg/signalid"),
    ] {
        let truth = world.sim.truth(module, userid);
        let rows = truth.as_array().unwrap();
        let keep: BTreeSet<String> = rows
            .iter()
            .filter(|r| !withings_sim::faults::keyless(module, r))
            .map(|r| r.pointer(key).unwrap().to_string())
            .collect();
        let skipped = rows.len() - keep.len();
        assert!(
            skipped > 0 && !keep.is_empty(),
            "{stream}: {skipped} keyless"
        );
        if stream != "ecg_signals" {
            skipped_total += skipped;
        }
        let field = key.rsplit('/').next().unwrap();
        let got: BTreeSet<String> = run
            .records(stream)
            .iter()
            .map(|r| r[field].to_string())
            .collect();
        assert_eq!(got, keep, "{stream}");
    }
    // One warning per page naming the stream and the count, and the count in the summary.
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("without a key property"))
        .collect();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("stream workouts: skipped")),
        "{}",
        run.stderr
    );
    let activity_warnings = warnings
        .iter()
        .filter(|l| l.contains("stream activity"))
        .count();
    assert!(activity_warnings >= 2, "one per page: {warnings:?}");
    let summed: usize = run
        .stderr
        .lines()
        .filter(|l| l.contains("Stream summary:"))
        .filter_map(|l| l.split("skipped=").nth(1))
        .map(|v| {
            v.split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse::<usize>()
                .unwrap()
        })
        .sum();
    assert_eq!(summed, skipped_total, "{}", run.stderr);
}

#[test]
fn a_record_exactly_on_a_window_boundary_is_emitted_once() {
    let cfg = sim_config(1, 8);
    let probe = withings_sim::Sim::start(cfg.clone()).unwrap();
    let t0 = probe.anchor() - 5 * 86_400;
    drop(probe);
    // The calendar walk's windows (the index-driven ones: index::a_sample_at_local_midnight_is_emitted_once).
    let world = World::with_settings(
        cfg,
        json!({"start_date": rfc3339(t0), "end_date": rfc3339(t0 + 3 * 86_400), "calendar_walk": true}),
    );
    let userid = world.userid();
    // The first window is [t0, t0 + 24 h]; the second starts a minute before its end.
    let (end1, start2) = (t0 + 86_400, t0 + 86_400 - 60);
    for at in [end1, start2] {
        let added = world.add("getintradayactivity", userid, 1, Some(at));
        assert_eq!(added["timestamps"], json!([at]), "no sample was there yet");
    }
    // A night whose first segment starts exactly at the end of the first window.
    world.add("sleep_get", userid, 1, Some(end1));
    let run = world.sync(&["intraday_activity", "sleep_series", "sleep_vitals"], None);
    let requests = world.sim.requests();
    for action in ["getintradayactivity", "sleep_get"] {
        let windows: Vec<(String, String)> = requests
            .iter()
            .filter(|r| r.action == action)
            .map(|r| (r.params["startdate"].clone(), r.params["enddate"].clone()))
            .collect();
        assert!(
            windows.contains(&(t0.to_string(), end1.to_string())),
            "{action} {windows:?}"
        );
        assert!(
            windows.iter().any(|w| w.0 == start2.to_string()),
            "{action} {windows:?}"
        );
    }
    // (Run::check already refuses a key emitted twice; count them anyway.)
    let count = |stream: &str, field: &str, t: i64| {
        run.records(stream)
            .iter()
            .filter(|r| r[field] == ts(t))
            .count()
    };
    // Intraday's enddate is exclusive: the sample at end1 comes from the second window only;
    // the one at start2 lies in both.
    assert_eq!(count("intraday_activity", "timestamp", end1), 1);
    assert_eq!(count("intraday_activity", "timestamp", start2), 1);
    // Sleep get's enddate is inclusive: the segment at end1 lies in both windows, once per
    // device that recorded the night.
    let devices = world
        .sim
        .truth("sleep_get", userid)
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["startdate"] == json!(end1))
        .count();
    assert!(devices >= 1);
    assert_eq!(count("sleep_series", "startdate", end1), devices);
    assert_eq!(count("sleep_vitals", "timestamp", end1), devices);
    assert_stream_equals(
        &run,
        &world,
        userid,
        "intraday_activity",
        &expected(&world, userid)["intraday_activity"]
            .clone()
            .into_iter()
            .filter(|(k, _)| {
                k[2..22] >= ts(t0).as_str().unwrap()[..20]
                    && k[2..22] < ts(t0 + 3 * 86_400).as_str().unwrap()[..20]
            })
            .collect(),
    );
}

#[test]
fn a_deselected_property_disappears_from_schema_and_records() {
    let world = World::new(sim_config(1, 5));
    let mut catalog = crate::support::discover();
    for entry in catalog["streams"].as_array_mut().unwrap() {
        let name = entry["tap_stream_id"].as_str().unwrap().to_string();
        let selected = name == "activity" || name == "workouts";
        for m in entry["metadata"].as_array_mut().unwrap() {
            let crumb = m["breadcrumb"].clone();
            if crumb == json!([]) {
                m["metadata"]["selected"] = json!(selected);
            } else if crumb == json!(["properties", "steps"]) && name == "activity"
                || crumb == json!(["properties", "data"]) && name == "workouts"
            {
                m["metadata"]["selected"] = json!(false);
            }
        }
    }
    let catalog_path = crate::support::write_json(world.dir.path(), "deselect.json", &catalog);
    let run = crate::support::tap(&[
        "--config",
        world.config.to_str().unwrap(),
        "--catalog",
        catalog_path.to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{}", run.stderr);
    run.check();
    let schema = |stream: &str| -> Value {
        run.messages
            .iter()
            .find_map(|m| match m {
                crate::support::Msg::Schema {
                    stream: s, schema, ..
                } if s == stream => Some(schema["properties"].clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("a SCHEMA for {stream}"))
    };
    let activity = schema("activity");
    assert!(activity.get("steps").is_none(), "{activity}");
    assert!(activity.get("distance").is_some() && activity.get("date").is_some());
    let workouts = schema("workouts");
    let columns: Vec<&String> = workouts.as_object().unwrap().keys().collect();
    assert!(
        columns.iter().all(|c| !c.starts_with("data")),
        "{columns:?}"
    );
    assert!(workouts.get("category").is_some());
    let days = run.records("activity");
    assert!(!days.is_empty());
    assert!(days
        .iter()
        .all(|r| r.get("steps").is_none() && r.get("distance").is_some()));
    let sessions = run.records("workouts");
    assert!(!sessions.is_empty());
    for r in sessions {
        assert!(
            r.as_object()
                .unwrap()
                .keys()
                .all(|k| !k.starts_with("data")),
            "{r}"
        );
    }
}

#[test]
fn goals_cleared_between_runs_reach_the_target_as_a_record_of_nulls() {
    let world = World::new(sim_config(1, 3));
    let userid = world.userid();
    let first = world.sync(&["goals"], None);
    let before = first.records("goals");
    assert_eq!(before.len(), 1);
    assert!(
        before[0]["steps"].is_i64(),
        "the user has goals: {}",
        before[0]
    );
    world.delete("getgoals", userid, 1);
    assert_eq!(world.sim.truth("getgoals", userid), json!([]));
    let second = world.sync(&["goals"], Some(&first.last_state()));
    let after = second.records("goals");
    assert_eq!(after.len(), 1, "still one record for the user");
    assert_eq!(after[0]["userid"], json!(userid));
    for field in ["steps", "sleep", "weight__value", "weight__unit"] {
        assert!(after[0][field].is_null(), "{field}: {}", after[0]);
    }
}

#[test]
fn switching_objectives_off_again_makes_no_tombstones() {
    let world = World::with_settings(
        sim_config(1, 20),
        json!({"include_objectives": true, "reconcile_every_hours": 0}),
    );
    let first = world.sync(&["measures"], None);
    assert!(
        first
            .records("measures")
            .iter()
            .any(|r| r["category"] == json!(2)),
        "objectives were extracted"
    );
    set_setting(&world, "include_objectives", json!(false));
    // The re-scan of the deletion window is due on every run here.
    let second = world.sync(&["measures"], Some(&first.last_state()));
    let tombstones = second
        .records("measures")
        .into_iter()
        .filter(|r| !r["_sdc_deleted_at"].is_null())
        .count();
    assert_eq!(tombstones, 0, "nothing was deleted in Withings");
}

#[test]
fn a_watch_that_syncs_days_late_is_still_read_from_its_latest_record() {
    // The device's data ends 5 days ago (it went quiet); a first sync reads it all. Then it
    // uploads samples recorded 2 days ago, later than the 24 h lookback behind that scan but
    // within late_sync_days (3). This is the calendar walk's fallback; the index-driven reads
    // find late data at any delay (index::late_data_is_read_at_any_delay_with_the_default_settings).
    let now = chrono::Utc::now().timestamp();
    let cfg = SimConfig {
        anchor: Some(now - 5 * 86_400),
        ..sim_config(1, 6)
    };
    let world = World::with_settings(cfg, json!({"calendar_walk": true}));
    let userid = world.userid();
    let streams = ["intraday_activity", "sleep_series", "ecg_recordings"];
    let first = world.sync(&streams, None);
    let before = expected(&world, userid);
    for module in ["getintradayactivity", "heart_list", "sleep_get"] {
        world.add(module, userid, 1, Some(now - 2 * 86_400));
    }
    let second = world.sync(&streams, Some(&first.last_state()));
    let after = expected(&world, userid);
    for stream in streams {
        let got = emitted(&second, stream, userid);
        let late: Vec<&String> = after[stream]
            .keys()
            .filter(|k| !before[stream].contains_key(*k))
            .collect();
        assert!(!late.is_empty(), "{stream}: the simulator added late data");
        for k in late {
            assert!(got.contains_key(k), "{stream}: late record {k} not emitted");
        }
    }
    // With late_sync_days 0 only the lookback behind the last scan is read again.
    set_setting(&world, "late_sync_days", json!(0));
    let third = world.sync(&streams, Some(&first.last_state()));
    assert!(
        third.records("intraday_activity").is_empty(),
        "the lookback alone does not reach 2 days back"
    );
}
