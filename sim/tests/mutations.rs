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
