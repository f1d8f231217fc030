//! Mutations between runs are visible to an incremental (`lastupdate`) sync and in `truth`.

mod common;

use common::*;
use serde_json::{json, Value};
use withings_sim::{Mutation, SimConfig};

fn max_modified(rows: &Value) -> i64 {
    rows.as_array()
        .unwrap()
        .iter()
        .map(|r| r["modified"].as_i64().unwrap())
        .max()
        .unwrap()
}

#[test]
fn getmeas_add_modify_delete_seen_by_lastupdate() {
    let sim = start(cfg());
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let before = sim.truth("getmeas", uid);
    let bookmark = max_modified(&before);
    let added = sim
        .mutate(Mutation::Add {
            module: "getmeas".into(),
            userid: uid,
            count: 2,
            at: Some(ANCHOR - 3_600),
        })
        .unwrap();
    let modified = sim
        .mutate(Mutation::Modify {
            module: "getmeas".into(),
            userid: uid,
            count: 3,
        })
        .unwrap();
    let r = call(
        &sim,
        "/measure",
        &[("action", "getmeas"), ("lastupdate", &s(bookmark))],
        &t,
    );
    let ids: Vec<Value> = r["body"]["measuregrps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["grpid"].clone())
        .collect();
    assert_eq!(ids.len(), 5, "{r}");
    for id in added["grpids"]
        .as_array()
        .unwrap()
        .iter()
        .chain(modified["grpids"].as_array().unwrap())
    {
        assert!(ids.contains(id));
    }
    let new = r["body"]["measuregrps"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["grpid"] == added["grpids"][0])
        .unwrap()
        .clone();
    assert_eq!(new["date"], json!(ANCHOR - 3_600));
    assert!(new["modified"].as_i64().unwrap() > bookmark);
    assert!(new["measures"].as_array().unwrap().len() > 1);
    let deleted = sim
        .mutate(Mutation::Delete {
            module: "getmeas".into(),
            userid: uid,
            count: 1,
        })
        .unwrap();
    let gone = &deleted["grpids"][0];
    let truth = sim.truth("getmeas", uid);
    assert!(!truth
        .as_array()
        .unwrap()
        .iter()
        .any(|g| &g["grpid"] == gone));
    assert_eq!(
        truth.as_array().unwrap().len(),
        before.as_array().unwrap().len() + 1
    );
    // A second mutation is strictly later than the first.
    let m2 = sim
        .mutate(Mutation::Modify {
            module: "getmeas".into(),
            userid: uid,
            count: 1,
        })
        .unwrap();
    assert!(m2["modified"].as_i64().unwrap() > modified["modified"].as_i64().unwrap());
}

#[test]
fn other_modules_mutations() {
    let sim = start(SimConfig { users: 2, ..cfg() });
    let uid = sim.userids()[1];
    let t = token(&sim, uid);
    for module in ["getactivity", "getworkouts", "getsummary"] {
        let bookmark = max_modified(&sim.truth(module, uid));
        let r = sim
            .mutate(Mutation::Modify {
                module: module.into(),
                userid: uid,
                count: 2,
            })
            .unwrap();
        let (path, action) = match module {
            "getactivity" => ("/v2/measure", "getactivity"),
            "getworkouts" => ("/v2/measure", "getworkouts"),
            _ => ("/v2/sleep", "getsummary"),
        };
        let body = call(
            &sim,
            path,
            &[("action", action), ("lastupdate", &s(bookmark))],
            &t,
        )["body"]
            .clone();
        let rows = body
            .get("activities")
            .or(body.get("series"))
            .unwrap()
            .as_array()
            .unwrap()
            .clone();
        assert_eq!(rows.len(), 2, "{module}: {r}");
    }
    let r = sim
        .mutate(Mutation::Add {
            module: "sleep_get".into(),
            userid: uid,
            count: 1,
            at: None,
        })
        .unwrap();
    assert_eq!(
        r["ids"].as_array().unwrap().len(),
        2,
        "two devices, one night each"
    );
    let r = sim
        .mutate(Mutation::Delete {
            module: "getgoals".into(),
            userid: 1_000_001,
            count: 1,
        })
        .unwrap();
    assert_eq!(r["goals"], json!([]));
    assert_eq!(sim.truth("getgoals", 1_000_001), json!([]));
    let r = sim
        .mutate(Mutation::Add {
            module: "heart_list".into(),
            userid: uid,
            count: 2,
            at: Some(ANCHOR - 100),
        })
        .unwrap();
    assert_eq!(
        sim.truth("heart_list", uid)[0]["ecg"]["signalid"],
        r["signalids"][1]
    );
    let r = sim
        .mutate(Mutation::Delete {
            module: "getdevice".into(),
            userid: uid,
            count: 1,
        })
        .unwrap();
    assert!(!sim
        .truth("getdevice", uid)
        .as_array()
        .unwrap()
        .iter()
        .any(|d| d["deviceid"] == r["deviceids"][0]));
    let r = sim
        .mutate(Mutation::Add {
            module: "getintradayactivity".into(),
            userid: uid,
            count: 3,
            at: Some(ANCHOR + 10),
        })
        .unwrap();
    assert!(sim
        .truth("getintradayactivity", uid)
        .get(r["timestamps"][2].to_string())
        .is_some());
    assert!(sim
        .mutate(Mutation::Add {
            module: "nope".into(),
            userid: uid,
            count: 1,
            at: None
        })
        .is_err());
    assert!(sim
        .mutate(Mutation::Add {
            module: "getmeas".into(),
            userid: 5,
            count: 1,
            at: None
        })
        .is_err());
    let m: Mutation =
        serde_json::from_str(r#"{"op":"delete","module":"getmeas","userid":1000001}"#).unwrap();
    assert_eq!(
        m,
        Mutation::Delete {
            module: "getmeas".into(),
            userid: 1_000_001,
            count: 1
        }
    );
}

/// `YYYY-MM-DD` of `ts` in the user's timezone.
fn local_ymd(sim: &withings_sim::Sim, uid: u64, ts: i64) -> String {
    let tz: chrono_tz::Tz = sim.user_timezone(uid).unwrap().parse().unwrap();
    withings_sim::clock::local_ymd(ts, tz)
}

fn activity_row(sim: &withings_sim::Sim, uid: u64, date: &str) -> Option<Value> {
    sim.truth("getactivity", uid)
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["date"] == date)
        .cloned()
}

/// Sum of a field over the intraday samples at the given timestamps.
fn samples_sum(sim: &withings_sim::Sim, uid: u64, stamps: &Value, field: &str) -> f64 {
    let truth = sim.truth("getintradayactivity", uid);
    stamps
        .as_array()
        .unwrap()
        .iter()
        .map(|t| truth[t.to_string()][field].as_f64().unwrap_or(0.0))
        .sum()
}

#[test]
fn late_intraday_samples_recompute_and_restamp_their_local_day() {
    let sim = start(SimConfig { users: 3, ..cfg() });
    for uid in sim.userids() {
        let t = token(&sim, uid);
        let bookmark = max_modified(&sim.truth("getactivity", uid));
        // Samples late in the evening (local) of a day that has a row.
        let at = ANCHOR - 3 * 86_400 + 3_600;
        let day = local_ymd(&sim, uid, at);
        let before = activity_row(&sim, uid, &day).expect("a generated day has a row");
        let r = sim
            .mutate(Mutation::Add {
                module: "getintradayactivity".into(),
                userid: uid,
                count: 3,
                at: Some(at),
            })
            .unwrap();
        assert_eq!(r["activity_dates"], json!([day]), "{r}");
        let after = activity_row(&sim, uid, &day).unwrap();
        assert_eq!(after["modified"], r["modified"]);
        let added = samples_sum(&sim, uid, &r["timestamps"], "steps");
        assert!(added > 0.0, "walk samples carry steps");
        assert_eq!(
            after["steps"].as_f64().unwrap(),
            before["steps"].as_f64().unwrap() + added,
            "the day's steps grew by the new samples'"
        );
        // An incremental getactivity sees exactly that day.
        let rows = call(
            &sim,
            "/v2/measure",
            &[("action", "getactivity"), ("lastupdate", &s(bookmark))],
            &t,
        )["body"]["activities"]
            .clone();
        let dates: Vec<&Value> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|a| &a["date"])
            .collect();
        assert_eq!(dates, vec![&json!(day)], "{uid}");
    }
}

#[test]
fn samples_on_a_day_without_a_row_create_it_from_the_samples() {
    let sim = start(cfg());
    let uid = sim.userids()[0];
    let at = ANCHOR + 2 * 86_400 + 36_000;
    let day = local_ymd(&sim, uid, at);
    assert!(activity_row(&sim, uid, &day).is_none());
    let r = sim
        .mutate(Mutation::Add {
            module: "getintradayactivity".into(),
            userid: uid,
            count: 5,
            at: Some(at),
        })
        .unwrap();
    let row = activity_row(&sim, uid, &day).expect("the day's row was created");
    assert_eq!(row["modified"], r["modified"]);
    assert_eq!(
        row["steps"].as_f64().unwrap(),
        samples_sum(&sim, uid, &r["timestamps"], "steps")
    );
    let distance = samples_sum(&sim, uid, &r["timestamps"], "distance");
    assert!((row["distance"].as_f64().unwrap() - distance).abs() < 1e-6);
    assert!(row["hr_average"].is_i64(), "a watch day has hr fields");
    // Deleting the oldest sample re-stamps the first day (and lowers its totals, or not).
    let first_day = sim.truth("getactivity", uid)[0]["date"].clone();
    let r = sim
        .mutate(Mutation::Delete {
            module: "getintradayactivity".into(),
            userid: uid,
            count: 1,
        })
        .unwrap();
    assert_eq!(r["activity_dates"], json!([first_day]));
    assert_eq!(sim.truth("getactivity", uid)[0]["modified"], r["modified"]);
}

#[test]
fn generated_intraday_and_activity_cover_the_same_local_days() {
    // Every timezone, a short history: each sample lies on a local day that has a row and
    // (the `full` profile) each row's day has samples.
    let sim = start(SimConfig {
        users: 8,
        days: 4,
        ..cfg()
    });
    for uid in sim.userids() {
        let rows: std::collections::BTreeSet<String> = sim
            .truth("getactivity", uid)
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["date"].as_str().unwrap().to_string())
            .collect();
        let sampled: std::collections::BTreeSet<String> = sim
            .truth("getintradayactivity", uid)
            .as_object()
            .unwrap()
            .keys()
            .map(|k| local_ymd(&sim, uid, k.parse().unwrap()))
            .collect();
        assert_eq!(rows, sampled, "user {uid}");
    }
}

#[test]
fn a_night_comes_with_its_summary_and_a_nap_is_a_short_session() {
    let sim = start(SimConfig { users: 2, ..cfg() });
    let uid = sim.userids()[1]; // two sleep devices
    let t = token(&sim, uid);
    let bookmark = max_modified(&sim.truth("getsummary", uid));
    let summaries = |since: i64| {
        call(
            &sim,
            "/v2/sleep",
            &[
                ("action", "getsummary"),
                ("lastupdate", &s(since)),
                ("data_fields", "total_timeinbed"),
            ],
            &t,
        )["body"]["series"]
            .as_array()
            .unwrap()
            .clone()
    };
    let segments = |from: i64, to: i64| {
        call(
            &sim,
            "/v2/sleep",
            &[
                ("action", "get"),
                ("startdate", &s(from)),
                ("enddate", &s(to)),
            ],
            &t,
        )["body"]["series"]
            .as_array()
            .unwrap()
            .clone()
    };
    // After the generated data, so no generated night overlaps.
    let night_at = ANCHOR + 3_600;
    let night = sim
        .mutate(Mutation::Add {
            module: "sleep_get".into(),
            userid: uid,
            count: 1,
            at: Some(night_at),
        })
        .unwrap();
    let nap_at = ANCHOR + 2 * 86_400 + 13 * 3_600;
    let nap = sim.mutate(Mutation::nap(uid, nap_at, 25)).unwrap();
    assert!(nap["modified"].as_i64() > night["modified"].as_i64());
    let rows = summaries(bookmark);
    assert_eq!(rows.len(), 4, "two devices, a night and a nap each");
    for row in &rows {
        let is_nap = nap["ids"].as_array().unwrap().contains(&row["id"]);
        let m = if is_nap { &nap } else { &night };
        assert_eq!(row["modified"], m["modified"]);
        let (start, end) = (
            row["startdate"].as_i64().unwrap(),
            row["enddate"].as_i64().unwrap(),
        );
        assert_eq!(start, if is_nap { nap_at } else { night_at });
        let segs: Vec<Value> = segments(start, end)
            .into_iter()
            .filter(|sg| sg["hash_deviceid"] == row["hash_deviceid"])
            .filter(|sg| sg["startdate"].as_i64().unwrap() >= start)
            .collect();
        assert!(!segs.is_empty(), "the session's segments lie inside it");
        assert_eq!(segs.last().unwrap()["enddate"], json!(end));
        if is_nap {
            assert_eq!(row["data"]["total_timeinbed"], json!(25 * 60));
            assert_eq!(segs.len(), 3, "awake, light, awake");
        }
    }
}

#[test]
fn an_upload_moves_the_recording_devices_last_session_date() {
    let sim = start(SimConfig { users: 3, ..cfg() });
    let watch_user = sim.userids()[0];
    let devices = |uid: u64| -> std::collections::BTreeMap<String, Value> {
        sim.truth("getdevice", uid)
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["deviceid"].as_str().unwrap().to_string(),
                    d["last_session_date"].clone(),
                )
            })
            .collect()
    };
    let device_of = |module: &str, uid: u64, key: &Value| -> String {
        let truth = sim.truth(module, uid);
        let rows = truth.as_array().unwrap();
        let row = match module {
            "getmeas" => rows.iter().find(|g| &g["grpid"] == key),
            "heart_list" => rows.iter().find(|e| &e["ecg"]["signalid"] == key),
            "stetho_list" => rows.iter().find(|e| &e["signalid"] == key),
            _ => rows.iter().find(|n| &n["id"] == key),
        };
        let row = row.unwrap();
        row.get("deviceid")
            .or(row.get("hash_deviceid"))
            .and_then(Value::as_str)
            .unwrap()
            .to_string()
    };
    let at = ANCHOR - 86_400;
    for (module, key) in [
        ("getmeas", "grpids"),
        ("heart_list", "signalids"),
        ("stetho_list", "signalids"),
        ("getsummary", "ids"),
        ("getintradayactivity", "timestamps"),
    ] {
        let before = devices(watch_user);
        let r = sim
            .mutate(Mutation::Add {
                module: module.into(),
                userid: watch_user,
                count: 1,
                at: Some(at),
            })
            .unwrap();
        let recorder = if module == "getintradayactivity" {
            let ts = &r["timestamps"][0];
            sim.truth("getintradayactivity", watch_user)[ts.to_string()]["deviceid"]
                .as_str()
                .unwrap()
                .to_string()
        } else {
            device_of(module, watch_user, &r[key][0])
        };
        assert_eq!(r["synced_devices"], json!([recorder]), "{module}: {r}");
        let after = devices(watch_user);
        for (id, last) in &after {
            if *id == recorder {
                assert_eq!(last, &r["modified"], "{module}");
            } else {
                assert_eq!(last, &before[id], "{module}: another device moved");
            }
        }
    }
    // HealthKit samples (the third user) come from no device: nothing moves.
    let app_user = sim.userids()[2];
    let before = devices(app_user);
    let r = sim
        .mutate(Mutation::Add {
            module: "getintradayactivity".into(),
            userid: app_user,
            count: 2,
            at: Some(at),
        })
        .unwrap();
    assert!(r.get("synced_devices").is_none(), "{r}");
    assert_eq!(devices(app_user), before);
}

fn lastupdate_rows(
    sim: &withings_sim::Sim,
    t: &str,
    path: &str,
    action: &str,
    since: i64,
) -> Vec<Value> {
    let body = call(
        sim,
        path,
        &[("action", action), ("lastupdate", &s(since))],
        t,
    )["body"]
        .clone();
    body.get("activities")
        .or(body.get("series"))
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
}

#[test]
fn a_watch_that_syncs_weeks_late_uploads_days_of_samples_and_restamps_each_day() {
    let sim = start(cfg());
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let bookmark = max_modified(&sim.truth("getactivity", uid));
    let watch = sim
        .truth("getdevice", uid)
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["model"] == "ScanWatch")
        .unwrap()["deviceid"]
        .clone();
    // Five days recorded three weeks before the data's end, then three days after it (days
    // the API had no row for), all uploaded now.
    let early = ANCHOR - 21 * 86_400;
    let r1 = sim
        .mutate(Mutation::upload("getintradayactivity", uid, early, 5))
        .unwrap();
    let r2 = sim
        .mutate(Mutation::Upload {
            module: "getintradayactivity".into(),
            userid: uid,
            from: ANCHOR,
            days: 3,
            count: Some(48),
            minutes: None,
        })
        .unwrap();
    assert!(r2["modified"].as_i64() > r1["modified"].as_i64());
    assert_eq!(r1["timestamps"].as_array().unwrap().len(), 5 * 96);
    assert_eq!(r2["timestamps"].as_array().unwrap().len(), 3 * 48);
    assert_eq!(r2["synced_devices"], json!([watch]));
    let truth = sim.truth("getintradayactivity", uid);
    for r in [&r1, &r2] {
        for ts in r["timestamps"].as_array().unwrap() {
            assert!(truth.get(ts.to_string()).is_some());
        }
    }
    // Each upload's samples cover each of its 24 h spans.
    for k in 0..5 {
        let from = early + k * 86_400;
        let n = r1["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| (from..from + 86_400).contains(&v.as_i64().unwrap()))
            .count();
        assert_eq!(n, 96, "day {k}");
    }
    // Every touched local day's row was re-stamped (or created) by its upload, and an
    // incremental getactivity returns exactly those days.
    let mut touched: Vec<Value> = Vec::new();
    for (r, spans) in [(&r1, 5..=6), (&r2, 3..=4)] {
        let days: std::collections::BTreeSet<String> = r["timestamps"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| local_ymd(&sim, uid, v.as_i64().unwrap()))
            .collect();
        let listed: Vec<String> = r["activity_dates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| d.as_str().unwrap().to_string())
            .collect();
        assert_eq!(listed, days.iter().cloned().collect::<Vec<_>>());
        assert!(spans.contains(&days.len()), "{days:?}");
        touched.extend(r["activity_dates"].as_array().unwrap().iter().cloned());
    }
    let rows = lastupdate_rows(&sim, &t, "/v2/measure", "getactivity", bookmark);
    let got: Vec<Value> = rows.iter().map(|a| a["date"].clone()).collect();
    touched.sort_by_key(|d| d.as_str().unwrap().to_string());
    touched.dedup();
    assert_eq!(got, touched);
    let last = &rows[rows.len() - 1];
    assert_eq!(last["modified"], r2["modified"]);
    assert!(
        last["steps"].as_i64().unwrap() > 0,
        "a created day sums its samples"
    );
    let device = sim.truth("getdevice", uid);
    let device = device
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["deviceid"] == watch)
        .unwrap();
    assert_eq!(device["last_session_date"], r2["modified"]);
}

#[test]
fn late_nights_and_recordings_dated_before_the_latest_one() {
    let sim = start(SimConfig { users: 2, ..cfg() });
    let uid = sim.userids()[1]; // two sleep devices
    let t = token(&sim, uid);
    let night_mark = max_modified(&sim.truth("getsummary", uid));
    let ecg_mark = max_modified(&sim.truth("heart_list", uid));
    let latest_ecg = sim.truth("heart_list", uid)[0]["timestamp"]
        .as_i64()
        .unwrap();
    let latest_stetho = sim.truth("stetho_list", uid)[0]["timestamp"]
        .as_i64()
        .unwrap();
    // Three nights from three weeks before the end, uploaded now, with their summaries.
    let from = ANCHOR - 21 * 86_400 + 14 * 3_600;
    let nights = sim
        .mutate(Mutation::upload("sleep_get", uid, from, 3))
        .unwrap();
    assert_eq!(
        nights["ids"].as_array().unwrap().len(),
        6,
        "3 nights x 2 devices"
    );
    let rows = lastupdate_rows(&sim, &t, "/v2/sleep", "getsummary", night_mark);
    assert_eq!(rows.len(), 6);
    let mut starts: Vec<i64> = rows
        .iter()
        .map(|n| n["startdate"].as_i64().unwrap())
        .collect();
    starts.dedup();
    assert_eq!(starts, [from, from + 86_400, from + 2 * 86_400]);
    assert!(rows.iter().all(|n| n["modified"] == nights["modified"]));
    assert_eq!(nights["synced_devices"].as_array().unwrap().len(), 2);
    // Recordings dated before the latest one, uploaded now.
    let ecgs = sim
        .mutate(Mutation::upload(
            "heart_list",
            uid,
            latest_ecg - 14 * 86_400,
            4,
        ))
        .unwrap();
    let stethos = sim
        .mutate(Mutation::upload(
            "stetho_list",
            uid,
            latest_stetho - 14 * 86_400,
            2,
        ))
        .unwrap();
    let list = sim.truth("heart_list", uid);
    assert_eq!(
        list[0]["timestamp"],
        json!(latest_ecg),
        "the newest is still the newest"
    );
    for (k, id) in ecgs["signalids"].as_array().unwrap().iter().enumerate() {
        let e = list
            .as_array()
            .unwrap()
            .iter()
            .find(|e| &e["ecg"]["signalid"] == id)
            .unwrap();
        assert_eq!(
            e["timestamp"],
            json!(latest_ecg - 14 * 86_400 + k as i64 * 86_400)
        );
        assert_eq!(e["modified"], ecgs["modified"]);
        assert!(e["modified"].as_i64().unwrap() > ecg_mark);
    }
    let r = call(
        &sim,
        "/v2/heart",
        &[
            ("action", "list"),
            ("startdate", &s(latest_ecg - 15 * 86_400)),
            ("enddate", &s(latest_ecg - 10 * 86_400)),
        ],
        &t,
    );
    let listed: Vec<&Value> = r["body"]["series"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["ecg"]["signalid"])
        .collect();
    for id in ecgs["signalids"].as_array().unwrap() {
        assert!(listed.contains(&id), "{id} listed in its range");
    }
    let slist = sim.truth("stetho_list", uid);
    assert_eq!(slist[0]["timestamp"], json!(latest_stetho));
    for id in stethos["signalids"].as_array().unwrap() {
        assert!(slist
            .as_array()
            .unwrap()
            .iter()
            .any(|s| &s["signalid"] == id));
    }
    // Bad uploads are refused, and the JSON form takes its defaults.
    assert!(sim
        .mutate(Mutation::upload("getdevice", uid, from, 1))
        .is_err());
    assert!(sim
        .mutate(Mutation::upload("sleep_get", uid, from, 0))
        .is_err());
    assert!(sim.mutate(Mutation::upload("nope", uid, from, 1)).is_err());
    let m: Mutation = serde_json::from_str(
        r#"{"op":"upload","module":"getintradayactivity","userid":1000001,"from":1700000000}"#,
    )
    .unwrap();
    assert_eq!(
        m,
        Mutation::upload("getintradayactivity", 1_000_001, 1_700_000_000, 1)
    );
}
