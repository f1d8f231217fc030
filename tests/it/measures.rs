//! The `measures` stream end to end against withings-sim's ground truth.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use withings_sim::Faults;

use crate::support::{sim_config, World};

type Key = (i64, i64, i64);

/// (grpid, type, position or -1) → (raw value, unit) of the truth's groups of `categories`.
fn truth_measures(world: &World, categories: &[i64]) -> BTreeMap<Key, (i64, i64)> {
    let mut out = BTreeMap::new();
    for g in world
        .sim
        .truth("getmeas", world.userid())
        .as_array()
        .unwrap()
    {
        if !categories.contains(&g["category"].as_i64().unwrap()) {
            continue;
        }
        for m in g["measures"].as_array().unwrap() {
            let key = (
                g["grpid"].as_i64().unwrap(),
                m["type"].as_i64().unwrap(),
                m["position"].as_i64().unwrap_or(-1),
            );
            assert!(
                out.insert(
                    key,
                    (m["value"].as_i64().unwrap(), m["unit"].as_i64().unwrap())
                )
                .is_none(),
                "truth key {key:?} unique"
            );
        }
    }
    out
}

fn emitted(records: &[Value]) -> BTreeMap<Key, (i64, i64)> {
    records
        .iter()
        .map(|r| {
            let raw = r["raw_value"].as_i64().unwrap();
            let unit = r["unit"].as_i64().unwrap();
            let value = r["value"].as_f64().unwrap();
            let expected = raw as f64 * 10f64.powi(unit as i32);
            assert!(
                (value - expected).abs() <= expected.abs() * 1e-12,
                "{value} vs {raw}e{unit}"
            );
            (
                (
                    r["grpid"].as_i64().unwrap(),
                    r["type"].as_i64().unwrap(),
                    r["position"].as_i64().unwrap(),
                ),
                (raw, unit),
            )
        })
        .collect()
}

/// The groups of category 1 in the simulator's truth.
fn real_groups(world: &World) -> Vec<Value> {
    let truth = world.sim.truth("getmeas", world.userid());
    let groups = truth.as_array().unwrap().iter();
    groups.filter(|g| g["category"] == 1).cloned().collect()
}

fn max_modified(world: &World) -> i64 {
    real_groups(world)
        .iter()
        .filter_map(|g| g["modified"].as_i64())
        .max()
        .unwrap()
}

fn rfc3339(secs: i64) -> String {
    chrono::DateTime::from_timestamp(secs, 0)
        .unwrap()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

#[test]
fn full_sync_of_measures_equals_ground_truth() {
    let world = World::new(sim_config(1, 20));
    let run = world.sync(&["measures"], None);
    let records = run.records("measures");
    assert_eq!(emitted(&records), truth_measures(&world, &[1]));
    assert!(
        records
            .iter()
            .any(|r| r["type"] == 173 && r["position"] != -1),
        "segmental measures keep their position"
    );
    let state = run.last_state();
    let partition = &state["bookmarks"]["measures"]["partitions"][0];
    assert_eq!(partition["context"], json!({"userid": world.userid()}));
    assert_eq!(partition["replication_key"], "modified");
    assert_eq!(
        partition["replication_key_value"],
        rfc3339(max_modified(&world))
    );
}

#[test]
fn a_second_run_after_changes_emits_exactly_the_new_and_changed_measures() {
    let world = World::new(sim_config(1, 20));
    let first = world.sync(&["measures"], None);
    let before: BTreeMap<i64, Value> = world
        .sim
        .truth("getmeas", world.userid())
        .as_array()
        .unwrap()
        .iter()
        .map(|g| (g["grpid"].as_i64().unwrap(), g.clone()))
        .collect();
    world.add("getmeas", world.userid(), 3, None);
    world.modify("getmeas", world.userid(), 2);
    let changed: Vec<i64> = world
        .sim
        .truth("getmeas", world.userid())
        .as_array()
        .unwrap()
        .iter()
        .filter(|g| before.get(&g["grpid"].as_i64().unwrap()) != Some(g))
        .map(|g| g["grpid"].as_i64().unwrap())
        .collect();
    assert_eq!(changed.len(), 5);
    let second = world.sync(&["measures"], Some(&first.last_state()));
    let expected: BTreeMap<Key, (i64, i64)> = truth_measures(&world, &[1])
        .into_iter()
        .filter(|((g, _, _), _)| changed.contains(g))
        .collect();
    assert_eq!(emitted(&second.records("measures")), expected);
    let bookmark =
        &second.last_state()["bookmarks"]["measures"]["partitions"][0]["replication_key_value"];
    assert_eq!(bookmark, &json!(rfc3339(max_modified(&world))));
    // A third run with nothing new emits nothing.
    let third = world.sync(&["measures"], Some(&second.last_state()));
    assert!(third.records("measures").is_empty());
}

#[test]
fn a_lying_more_on_full_pages_loses_nothing() {
    let mut cfg = sim_config(1, 40);
    cfg.faults = Faults {
        lying_more: true,
        repeat_guard_secs: 0.0,
        ..Faults::default()
    };
    cfg.page_getmeas = 50;
    let world = World::new(cfg);
    let truth = truth_measures(&world, &[1]);
    let run = world.sync(&["measures"], None);
    assert_eq!(emitted(&run.records("measures")), truth);
    let groups = real_groups(&world).len();
    let pages = world
        .sim
        .requests()
        .iter()
        .filter(|r| r.action == "getmeas")
        .count();
    assert_eq!(
        pages,
        groups.div_ceil(50) + 1,
        "one request per page plus the empty page that ends the chain"
    );
}

#[test]
fn objectives_are_extracted_when_asked() {
    let world = World::with_settings(sim_config(1, 20), json!({"include_objectives": true}));
    let run = world.sync(&["measures"], None);
    let truth = truth_measures(&world, &[1, 2]);
    assert!(
        truth.len() > truth_measures(&world, &[1]).len(),
        "the simulator has objectives"
    );
    assert_eq!(emitted(&run.records("measures")), truth);
}

#[test]
fn a_measure_dated_after_the_run_started_is_kept_when_no_end_date_is_set() {
    // A device whose clock runs ahead: a group dated two days from now, changed now.
    let world = World::new(sim_config(1, 3));
    let userid = world.userid();
    let first = world.sync(&["measures"], None);
    let ahead = chrono::Utc::now().timestamp() + 2 * 86_400;
    world.add("getmeas", userid, 1, Some(ahead));
    let second = world.sync(&["measures"], Some(&first.last_state()));
    let dates: Vec<String> = second
        .records("measures")
        .iter()
        .filter_map(|r| r["date"].as_str().map(str::to_owned))
        .collect();
    let want = tap_withings::timefmt::rfc3339(ahead).unwrap();
    assert!(dates.contains(&want), "{want} not in {dates:?}");
}

/// A simulator with `faults` and more than two pages of the API's real size (4,096 groups,
/// the simulator's default), and a tap config with `extra` settings.
fn several_full_pages(faults: Faults, extra: Value) -> World {
    let mut cfg = sim_config(1, 30);
    cfg.measures_per_user = Some(40_000);
    cfg.faults = faults;
    let world = World::with_settings(cfg, extra);
    let groups = real_groups(&world).len();
    assert!(groups > 2 * 4096, "{groups} groups");
    world
}

/// Pages are written as they arrive: a 4,096-group reply cut off halfway is asked again
/// after its first half was written, and every record still comes once, none missing.
#[test]
fn a_full_size_page_cut_off_halfway_gives_each_record_once() {
    let faults = Faults {
        truncated_every: Some(2),
        ..sim_config(1, 1).faults
    };
    let world = several_full_pages(faults, json!({}));
    let truth = truth_measures(&world, &[1]);
    let run = world.sync(&["measures"], None);
    let records = run.records("measures");
    let got = emitted(&records);
    assert_eq!(records.len(), got.len(), "a record written twice");
    assert_eq!(got, truth);
    let cut = world
        .sim
        .requests()
        .iter()
        .filter(|r| r.action == "getmeas" && r.fault.as_deref() == Some("truncated"))
        .count();
    assert!(cut >= 3, "{cut} getmeas replies cut");
    assert!(run.stderr.contains("reply body cut off"), "{}", run.stderr);
}

/// A writer that stalls (a target flushing) for longer than the request timeout while a
/// page downloads: the download waits for it at most half the timeout and then goes on, so
/// the request is neither timed out nor retried, and nothing is lost.
#[test]
fn a_writer_stalling_past_the_request_timeout_costs_no_retry() {
    use std::io::Read;
    let world = several_full_pages(
        sim_config(1, 1).faults,
        json!({"request_timeout_seconds": 2}),
    );
    let truth = truth_measures(&world, &[1]);
    let catalog = world.catalog(&["measures"]);
    let mut child = crate::support::tap_command(&[
        "--config".as_ref(),
        world.config.as_os_str(),
        "--catalog".as_ref(),
        catalog.as_os_str(),
    ])
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let errors = std::thread::spawn(move || {
        let mut text = String::new();
        stderr.read_to_string(&mut text).unwrap();
        text
    });
    let mut stdout = child.stdout.take().unwrap();
    let mut out = vec![0; 256 * 1024];
    stdout.read_exact(&mut out).unwrap();
    // The first page is mid-way: 256 KiB of its ~5 MB of records are out.
    std::thread::sleep(std::time::Duration::from_millis(3500));
    stdout.read_to_end(&mut out).unwrap();
    let status = child.wait().unwrap();
    let errors = errors.join().unwrap();
    assert!(status.success(), "{errors}");
    assert!(!errors.contains("Retrying"), "{errors}");
    let records: Vec<Value> = String::from_utf8(out)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|m| m["type"] == "RECORD" && m["stream"] == "measures")
        .map(|m| m["record"].clone())
        .collect();
    let got = emitted(&records);
    assert_eq!(records.len(), got.len(), "a record written twice");
    assert_eq!(got, truth);
}
