//! Index-driven reads, as a user runs the tap: the default `start_date` (2009-01-01), data
//! that starts years after it, late uploads at any delay. getintradayactivity is read for the
//! local days getactivity lists as new or changed, sleep get for the sessions sleep
//! getsummary lists, heart and stetho lists are re-read from their newest page.

use std::collections::BTreeMap;

use serde_json::{json, Value};
use withings_sim::{Mutation, Profile, SimConfig};

use crate::streams::{emitted, expected, ALL};
use crate::support::{sim_config, Run, World};

/// A world whose tap config has the defaults a user has: no `start_date` (2009-01-01).
pub(crate) fn with_defaults(cfg: SimConfig) -> World {
    World::with_settings(cfg, json!({"start_date": null}))
}

/// Data requests of the last run(s), by action (token calls left out).
pub(crate) fn requests(world: &World) -> BTreeMap<String, u64> {
    let stats = world.sim.stats();
    stats["by_action"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(a, _)| !matches!(a.as_str(), "requesttoken" | "authorize2"))
        .map(|(a, n)| (a.clone(), n.as_u64().unwrap()))
        .collect()
}

fn count(reqs: &BTreeMap<String, u64>, action: &str) -> u64 {
    reqs.get(action).copied().unwrap_or(0)
}

/// The fewest windows of at most 24 h that touch every instant (greedy from the earliest).
pub(crate) fn fewest_windows(mut instants: Vec<i64>) -> u64 {
    instants.sort_unstable();
    let mut n = 0;
    let mut end: Option<i64> = None;
    for t in instants {
        if end.is_none_or(|e| t >= e) {
            n += 1;
            end = Some(t + 86_400);
        }
    }
    n
}

/// Requests a paged chain of `rows` rows needs: its pages and the empty one that ends it.
fn chain(rows: usize, page: usize) -> u64 {
    rows.div_ceil(page) as u64 + 1
}

fn truth_rows(world: &World, module: &str, userid: u64) -> Vec<Value> {
    world
        .sim
        .truth(module, userid)
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// What a first sync of every stream of a user needs, by action: the pages of each paged
/// chain, one call per signal, and the fewest windows for intraday and sleep get.
pub(crate) fn minimum(world: &World, userid: u64) -> BTreeMap<&'static str, u64> {
    let cfg = world.sim.config();
    let meas = truth_rows(world, "getmeas", userid)
        .iter()
        .filter(|g| g["category"] == json!(1))
        .count();
    let heart = truth_rows(world, "heart_list", userid).len();
    let stetho = truth_rows(world, "stetho_list", userid).len();
    let intraday: Vec<i64> = world
        .sim
        .truth("getintradayactivity", userid)
        .as_object()
        .map(|o| o.keys().map(|k| k.parse().unwrap()).collect())
        .unwrap_or_default();
    let segments: Vec<i64> = truth_rows(world, "sleep_get", userid)
        .iter()
        .map(|s| s["startdate"].as_i64().unwrap())
        .collect();
    BTreeMap::from([
        ("getmeas", chain(meas, cfg.page_getmeas)),
        (
            "getactivity",
            chain(
                truth_rows(world, "getactivity", userid).len(),
                cfg.page_getactivity,
            ),
        ),
        (
            "getworkouts",
            chain(
                truth_rows(world, "getworkouts", userid).len(),
                cfg.page_getworkouts,
            ),
        ),
        (
            "getsummary",
            chain(
                truth_rows(world, "getsummary", userid).len(),
                cfg.page_getsummary,
            ),
        ),
        ("heart_list", chain(heart, cfg.page_heart_list)),
        ("heart_get", heart as u64),
        ("stetho_list", chain(stetho, cfg.page_stetho_list)),
        ("stetho_get", stetho as u64),
        ("getdevice", 1),
        ("getgoals", 1),
        ("getintradayactivity", fewest_windows(intraday)),
        ("sleep_get", fewest_windows(segments)),
    ])
}

/// Checks a first sync's requests against what the data needs: at most 1.1 x in all, and per
/// windowed module.
pub(crate) fn assert_near_minimum(world: &World, userid: u64, what: &str) {
    let min = minimum(world, userid);
    let got = requests(world);
    let total_min: u64 = min.values().sum();
    let total: u64 = got.values().sum();
    eprintln!("{what}: {total} data requests, minimum {total_min}: got {got:?}, minimum {min:?}");
    assert!(
        total * 10 <= total_min * 11,
        "{what}: {total} requests for data that needs {total_min} ({got:?} vs {min:?})"
    );
    for action in ["getintradayactivity", "sleep_get"] {
        let (g, m) = (count(&got, action), min[action]);
        assert!(
            g * 10 <= m * 11 + 10,
            "{what}: {g} {action} requests, the data needs {m}"
        );
    }
}

/// Every record of `stream` the simulator holds now for the user and `before` did not, is in
/// the run's output.
fn assert_new_emitted(
    world: &World,
    run: &Run,
    stream: &str,
    before: &BTreeMap<&'static str, BTreeMap<String, Value>>,
) -> usize {
    let userid = world.userid();
    let after = expected(world, userid);
    let got = emitted(run, stream, userid);
    let late: Vec<&String> = after[stream]
        .keys()
        .filter(|k| !before[stream].contains_key(*k))
        .collect();
    assert!(!late.is_empty(), "{stream}: the simulator added late data");
    for k in &late {
        assert!(
            got.contains_key(*k),
            "{stream}: late record {k} not emitted"
        );
    }
    late.len()
}

#[test]
fn a_first_sync_from_the_default_start_date_costs_the_data_not_the_calendar() {
    let world = with_defaults(sim_config(1, 30));
    let run = world.sync(ALL, None);
    assert_near_minimum(&world, world.userid(), "30 days of data from 2009-01-01");
    // And everything is there.
    let userid = world.userid();
    for (stream, want) in expected(&world, userid) {
        let got = emitted(&run, stream, userid);
        assert_eq!(
            got.len(),
            want.len(),
            "{stream}: every record of the simulator is emitted"
        );
    }
}

#[test]
fn a_history_that_starts_years_after_start_date_costs_only_its_data() {
    // Data in the spring of 2019, the default start_date, a run today.
    let cfg = SimConfig {
        anchor: Some(1_559_347_200), // 2019-06-01T00:00:00Z
        ..sim_config(1, 20)
    };
    let world = with_defaults(cfg);
    world.sync(ALL, None);
    assert_near_minimum(&world, world.userid(), "20 days of 2019 from 2009-01-01");
}

#[test]
fn an_idle_incremental_run_reads_no_window_and_one_page_per_module() {
    let world = with_defaults(sim_config(1, 10));
    let first = world.sync(ALL, None);
    world.sim.reset_stats();
    let second = world.sync(ALL, Some(&first.last_state()));
    let got = requests(&world);
    assert_eq!(count(&got, "getintradayactivity"), 0, "{got:?}");
    assert_eq!(count(&got, "sleep_get"), 0, "{got:?}");
    for (action, n) in &got {
        assert!(*n <= 1, "{action}: {n} requests in an idle run ({got:?})");
    }
    for stream in ["intraday_activity", "sleep_series", "sleep_vitals"] {
        assert!(
            second.records(stream).is_empty(),
            "{stream}: nothing new, nothing emitted"
        );
    }
}

#[test]
fn late_data_is_read_at_any_delay_with_the_default_settings() {
    let world = with_defaults(sim_config(1, 40));
    let userid = world.userid();
    let now = chrono::Utc::now().timestamp();
    let mut state = world.sync(ALL, None).last_state();
    // A watch that syncs 1, 5 and 30 days late: a day of samples recorded then, uploaded now.
    for days in [1, 5, 30] {
        let before = expected(&world, userid);
        world
            .sim
            .mutate(Mutation::upload(
                "getintradayactivity",
                userid,
                now - days * 86_400,
                1,
            ))
            .unwrap();
        let run = world.sync(ALL, Some(&state));
        assert_new_emitted(&world, &run, "intraday_activity", &before);
        state = run.last_state();
    }
    // A nap recorded 31 h ago, a night three weeks ago, and an ECG and a stethoscope
    // recording dated before the newest one, all uploaded now.
    let before = expected(&world, userid);
    world
        .sim
        .mutate(Mutation::nap(userid, now - 31 * 3_600, 40))
        .unwrap();
    world
        .sim
        .mutate(Mutation::upload("sleep_get", userid, now - 21 * 86_400, 1))
        .unwrap();
    world.add("heart_list", userid, 1, Some(now - 10 * 86_400));
    world.add("stetho_list", userid, 1, Some(now - 12 * 86_400));
    let run = world.sync(ALL, Some(&state));
    for stream in [
        "sleep_series",
        "sleep_vitals",
        "sleep_summaries",
        "ecg_recordings",
        "ecg_signals",
        "stetho_recordings",
        "stetho_signals",
    ] {
        assert_new_emitted(&world, &run, stream, &before);
    }
}

#[test]
fn an_index_is_read_for_the_streams_it_feeds_even_when_its_own_stream_is_deselected() {
    let world = with_defaults(sim_config(1, 10));
    let userid = world.userid();
    let run = world.sync(&["intraday_activity", "sleep_vitals"], None);
    assert!(run.records("activity").is_empty());
    assert!(run.records("sleep_summaries").is_empty());
    let want = expected(&world, userid);
    for stream in ["intraday_activity", "sleep_vitals"] {
        assert_eq!(
            emitted(&run, stream, userid).len(),
            want[stream].len(),
            "{stream}: every record"
        );
    }
    let got = requests(&world);
    assert!(count(&got, "getactivity") >= 1 && count(&got, "getsummary") >= 1);
    // The index's requests are counted under the stream they serve.
    let summary = run
        .stderr
        .lines()
        .filter(|l| l.contains("Stream summary:") && l.contains("intraday_activity"))
        .collect::<Vec<_>>()
        .join("\n");
    let activity_calls = count(&got, "getactivity") + count(&got, "getintradayactivity");
    assert!(
        summary.contains(&format!("requests={activity_calls}")),
        "intraday_activity's summary counts the getactivity pages: {summary}"
    );
    // A later run with activity selected too: its first sync reads its own range chain.
    let second = world.sync(
        &["activity", "intraday_activity", "sleep_vitals"],
        Some(&run.last_state()),
    );
    assert_eq!(
        emitted(&second, "activity", userid).len(),
        want["activity"].len()
    );
}

#[test]
fn an_active_users_daily_run_costs_no_more_than_the_calendar_walk() {
    // The same day of new data read by an index run and by a calendar-walk run from the same
    // state.
    let world = with_defaults(sim_config(1, 10));
    let userid = world.userid();
    let now = chrono::Utc::now().timestamp();
    let state = world.sync(ALL, None).last_state();
    world
        .sim
        .mutate(Mutation::upload(
            "getintradayactivity",
            userid,
            now - 86_400,
            1,
        ))
        .unwrap();
    world
        .sim
        .mutate(Mutation::upload("sleep_get", userid, now - 20 * 3_600, 1))
        .unwrap();
    world.add("getmeas", userid, 1, None);
    world.sim.reset_stats();
    world.sync(ALL, Some(&state));
    let index: u64 = requests(&world).values().sum();
    crate::streams::set_setting(&world, "calendar_walk", json!(true));
    world.sim.reset_stats();
    world.sync(ALL, Some(&state));
    let calendar: u64 = requests(&world).values().sum();
    assert!(
        index <= calendar,
        "index run {index} requests, calendar walk {calendar}"
    );
}

fn profiled(users: u32, days: u32, profiles: &[Profile]) -> World {
    let cfg = SimConfig {
        profiles: profiles.to_vec(),
        ..sim_config(users, days)
    };
    with_defaults(cfg)
}

#[test]
fn a_scale_only_user_costs_no_window_at_all() {
    let world = profiled(1, 30, &[Profile::ScaleOnly]);
    let run = world.sync(ALL, None);
    let got = requests(&world);
    assert_eq!(count(&got, "getintradayactivity"), 0, "{got:?}");
    assert_eq!(count(&got, "sleep_get"), 0, "{got:?}");
    assert!(!run.records("measures").is_empty());
    assert_near_minimum(&world, world.userid(), "a scale-only user");
}

#[test]
fn a_watch_worn_every_other_day_costs_a_window_per_day_worn() {
    let world = profiled(1, 30, &[Profile::EveryOtherDay]);
    let run = world.sync(ALL, None);
    assert_near_minimum(&world, world.userid(), "a watch every other day");
    let userid = world.userid();
    let want = expected(&world, userid);
    for stream in ["intraday_activity", "sleep_series", "sleep_vitals"] {
        assert_eq!(
            emitted(&run, stream, userid).len(),
            want[stream].len(),
            "{stream}: every record"
        );
    }
}

#[test]
fn users_with_different_devices_in_one_run_each_cost_their_own_data() {
    // Three users in one run: a full set of devices, a scale only, days of activity without
    // intraday samples (phone steps).
    let cfg = SimConfig {
        profiles: vec![
            Profile::Full,
            Profile::ScaleOnly,
            Profile::ActivityNoIntraday,
        ],
        seed: 11,
        ..sim_config(3, 20)
    };
    let probe = withings_sim::Sim::start(cfg.clone()).unwrap();
    let users: Vec<Value> = probe.userids()[1..]
        .iter()
        .map(|u| json!({"refresh_token": probe.refresh_token(*u)}))
        .collect();
    drop(probe);
    let world = World::with_settings(cfg, json!({"start_date": null, "users": users}));
    let run = world.sync(ALL, None);
    let mut min_total = 0;
    for userid in world.sim.userids() {
        min_total += minimum(&world, userid).values().sum::<u64>();
        let want = expected(&world, userid);
        for (stream, rows) in &want {
            assert_eq!(
                emitted(&run, stream, userid).len(),
                rows.len(),
                "user {userid}, {stream}: every record"
            );
        }
    }
    let total: u64 = requests(&world).values().sum();
    assert!(
        total * 10 <= min_total * 11,
        "{total} requests for data that needs {min_total}"
    );
}

fn local_day(t: i64, tz: &str) -> chrono::NaiveDate {
    let tz: chrono_tz::Tz = tz.parse().unwrap();
    chrono::DateTime::from_timestamp(t, 0)
        .unwrap()
        .with_timezone(&tz)
        .date_naive()
}

fn epoch_of(rfc3339: &Value) -> i64 {
    chrono::DateTime::parse_from_rfc3339(rfc3339.as_str().unwrap())
        .unwrap()
        .timestamp()
}

#[test]
fn a_sample_at_local_midnight_is_emitted_once() {
    let world = with_defaults(sim_config(1, 8));
    let userid = world.userid();
    let tz = world.sim.user_timezone(userid).unwrap();
    // Local midnight between two days of data, in the user's timezone.
    let day = local_day(world.sim.anchor() - 3 * 86_400, &tz);
    let next = day.succ_opt().unwrap();
    let zone: chrono_tz::Tz = tz.parse().unwrap();
    let midnight = tap_withings::index::day_start(next, zone).unwrap();
    let added = world.add("getintradayactivity", userid, 1, Some(midnight));
    assert_eq!(
        added["timestamps"],
        json!([midnight]),
        "no sample was there yet"
    );
    let run = world.sync(&["intraday_activity"], None);
    let windows: Vec<(i64, i64)> = world
        .sim
        .requests()
        .iter()
        .filter(|r| r.action == "getintradayactivity")
        .map(|r| {
            (
                r.params["startdate"].parse().unwrap(),
                r.params["enddate"].parse().unwrap(),
            )
        })
        .collect();
    // One window ends there and the next starts there (a shared instant, read by both).
    assert!(windows.iter().any(|w| w.1 == midnight), "{windows:?}");
    assert!(windows.iter().any(|w| w.0 == midnight), "{windows:?}");
    assert!(windows.iter().all(|(s, e)| e - s <= 86_400));
    let at_midnight = run
        .records("intraday_activity")
        .iter()
        .filter(|r| epoch_of(&r["timestamp"]) == midnight)
        .count();
    assert_eq!(at_midnight, 1);
}

#[test]
fn a_second_run_reads_the_days_and_nights_that_changed() {
    let world = with_defaults(sim_config(1, 12));
    let userid = world.userid();
    let tz = world.sim.user_timezone(userid).unwrap();
    let now = chrono::Utc::now().timestamp();
    let first = world.sync(ALL, None);
    let before = expected(&world, userid);
    // A day re-stamped by a late upload 4 days back, and a nap yesterday.
    let upload = world
        .sim
        .mutate(Mutation::upload(
            "getintradayactivity",
            userid,
            now - 4 * 86_400,
            1,
        ))
        .unwrap();
    world
        .sim
        .mutate(Mutation::nap(userid, now - 30 * 3_600, 25))
        .unwrap();
    world.sim.reset_stats();
    let second = world.sync(ALL, Some(&first.last_state()));
    let after = expected(&world, userid);
    let changed_days: Vec<chrono::NaiveDate> = upload["activity_dates"]
        .as_array()
        .expect("the upload names the days it re-stamped")
        .iter()
        .map(|d| d.as_str().unwrap().parse().unwrap())
        .collect();
    assert!(!changed_days.is_empty());
    // Every new sample is emitted, and nothing outside the re-stamped days.
    let got = emitted(&second, "intraday_activity", userid);
    for (k, _) in after["intraday_activity"].iter() {
        if !before["intraday_activity"].contains_key(k) {
            assert!(got.contains_key(k), "new sample {k} emitted");
        }
    }
    for r in got.values() {
        let day = local_day(epoch_of(&r["timestamp"]), &tz);
        assert!(changed_days.contains(&day), "{day}: not a changed day");
    }
    // The nap's segments, and no night that did not change.
    let sessions = truth_rows(&world, "getsummary", userid);
    let napped: Vec<(i64, i64)> = sessions
        .iter()
        .filter(|s| s["modified"].as_i64().unwrap() > now - 600)
        .map(|s| {
            (
                s["startdate"].as_i64().unwrap(),
                s["enddate"].as_i64().unwrap(),
            )
        })
        .collect();
    assert!(!napped.is_empty(), "the nap has a summary");
    for r in second.records("sleep_series") {
        let t = epoch_of(&r["startdate"]);
        assert!(
            napped.iter().any(|(s, e)| *s - 60 <= t && t <= *e + 60),
            "segment at {t} outside the changed sessions"
        );
    }
    assert!(!second.records("sleep_series").is_empty());
    let got = requests(&world);
    assert_eq!(
        count(&got, "getintradayactivity") as usize,
        changed_days.len()
    );
    assert_eq!(count(&got, "sleep_get"), 1, "{got:?}");
}

#[test]
fn records_dated_outside_the_window_asked_for_are_dropped_and_said() {
    for calendar in [false, true] {
        let mut cfg = sim_config(1, 5);
        cfg.faults.rows_outside_window = true;
        let world = World::with_settings(cfg, json!({"calendar_walk": calendar}));
        let userid = world.userid();
        let streams = ["intraday_activity", "sleep_series", "sleep_vitals"];
        let run = world.sync(&streams, None);
        let want = expected(&world, userid);
        for stream in ["intraday_activity", "sleep_series"] {
            let got = emitted(&run, stream, userid);
            let extra: Vec<&String> = got
                .keys()
                .filter(|k| !want[stream].contains_key(*k))
                .collect();
            assert!(
                extra.is_empty(),
                "calendar {calendar}: {stream} emitted {extra:?}"
            );
            assert_eq!(
                got.len(),
                want[stream].len(),
                "calendar {calendar}: {stream}"
            );
        }
        assert!(
            run.stderr.contains("dated outside the window asked for"),
            "calendar {calendar}: the drop is said"
        );
        let now = chrono::Utc::now().timestamp();
        let state = run.last_state();
        for stream in ["intraday_activity", "sleep_series"] {
            let mark = &state["bookmarks"][stream]["partitions"][0]["replication_key_value"];
            assert!(
                epoch_of(mark) <= now,
                "calendar {calendar}: {stream}'s bookmark {mark} is not in the future"
            );
        }
    }
}

#[test]
fn every_selected_stream_gets_its_schema_on_every_run_records_or_not() {
    // A scale-only user: no activity, sleep, ECG or stethoscope data at all; then an idle
    // incremental run (nothing new) that does not re-scan for deletions yet.
    let world = profiled(1, 10, &[Profile::ScaleOnly]);
    let first = world.sync(ALL, None);
    let second = world.sync(ALL, Some(&first.last_state()));
    for (run, what) in [(&first, "first run"), (&second, "idle incremental run")] {
        let schemas: BTreeMap<&str, &Value> = run
            .messages
            .iter()
            .filter_map(|m| match m {
                crate::support::Msg::Schema { stream, schema, .. } => {
                    Some((stream.as_str(), schema))
                }
                _ => None,
            })
            .collect();
        for stream in ALL {
            assert!(
                schemas.contains_key(stream),
                "{what}: no SCHEMA for {stream}"
            );
        }
        // Tables keep their shape from run to run: the tombstone column is always declared.
        for stream in ["measures", "workouts", "sleep_summaries"] {
            assert!(
                schemas[stream]["properties"]
                    .get("_sdc_deleted_at")
                    .is_some(),
                "{what}: {stream}'s SCHEMA declares _sdc_deleted_at"
            );
        }
    }
    assert!(second.records("measures").is_empty(), "nothing new");
}
