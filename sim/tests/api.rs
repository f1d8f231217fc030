//! Module behaviour over HTTP: paging and more/offset shapes, windows, inclusion rules,
//! data_fields, and consistency with `truth`.

mod common;

use common::*;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use withings_sim::{Faults, SimConfig};

fn by_key(rows: &[Value], key: &str) -> BTreeMap<String, Value> {
    rows.iter()
        .map(|r| (r[key].to_string(), r.clone()))
        .collect()
}

#[test]
fn getmeas_lastupdate_backfill_pages_match_truth() {
    let sim = start(SimConfig {
        measures_per_user: Some(3_000),
        page_getmeas: withings_sim::config::SMALL_PAGE_GETMEAS,
        ..cfg()
    });
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let mut rows = Vec::new();
    let mut offset = 0;
    let mut pages = 0;
    loop {
        let r = call(
            &sim,
            "/measure",
            &[
                ("action", "getmeas"),
                ("lastupdate", "0"),
                ("offset", &s(offset)),
            ],
            &t,
        );
        assert_eq!(r["status"], 0);
        let b = &r["body"];
        assert!(b["updatetime"].is_i64());
        assert_eq!(b["timezone"], "Europe/Paris");
        let grps = b["measuregrps"].as_array().unwrap();
        rows.extend(grps.iter().cloned());
        pages += 1;
        if b["more"] == json!(1) {
            assert_eq!(grps.len(), 200, "full pages only when more");
            assert_eq!(b["offset"], json!(offset + 200));
            offset = b["offset"].as_i64().unwrap();
        } else {
            assert_eq!(b["more"], json!(0), "more is the integer 0/1");
            break;
        }
    }
    assert!(pages > 3);
    // modified ascending
    let modified: Vec<i64> = rows
        .iter()
        .map(|g| g["modified"].as_i64().unwrap())
        .collect();
    assert!(modified.windows(2).all(|w| w[0] <= w[1]));
    let truth = sim.truth("getmeas", uid);
    let truth = truth.as_array().unwrap();
    assert_eq!(by_key(&rows, "grpid"), by_key(truth, "grpid"));
    let measures: usize = truth
        .iter()
        .map(|g| g["measures"].as_array().unwrap().len())
        .sum();
    assert!((3_000..3_100).contains(&measures), "{measures}");
}

#[test]
fn getmeas_date_range_is_date_descending_and_enddate_inclusive() {
    let sim = start(cfg());
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let truth = sim.truth("getmeas", uid);
    let truth = truth.as_array().unwrap();
    let dates: Vec<i64> = truth.iter().map(|g| g["date"].as_i64().unwrap()).collect();
    let (lo, hi) = (dates[dates.len() - 1], dates[10]);
    let r = call(
        &sim,
        "/measure",
        &[
            ("action", "getmeas"),
            ("startdate", &s(lo)),
            ("enddate", &s(hi)),
        ],
        &t,
    );
    let b = &r["body"];
    let got: Vec<i64> = b["measuregrps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["date"].as_i64().unwrap())
        .collect();
    assert_eq!(got.first(), Some(&hi), "enddate is inclusive");
    assert_eq!(got.last(), Some(&lo), "startdate is inclusive");
    assert!(got.windows(2).all(|w| w[0] >= w[1]), "date descending");
    // A single page from offset 0 carries neither more nor offset.
    assert!(b.get("more").is_none() && b.get("offset").is_none(), "{b}");
    // Type filter keeps only the asked types.
    let r = call(
        &sim,
        "/measure",
        &[("action", "getmeas"), ("meastypes", "9,10")],
        &t,
    );
    for g in r["body"]["measuregrps"].as_array().unwrap() {
        for m in g["measures"].as_array().unwrap() {
            assert!(m["type"] == 9 || m["type"] == 10);
        }
    }
    // Shapes seen in real captures.
    let all: Vec<&Value> = truth
        .iter()
        .flat_map(|g| g["measures"].as_array().unwrap())
        .collect();
    assert!(all.iter().any(|m| m.get("position").is_some()));
    assert!(all.iter().any(|m| m.get("algo_params").is_some()));
    assert!(all.iter().any(|m| m.get("apppfmid").is_some()));
    assert!(truth.iter().any(|g| g["attrib"] == 8));
    assert!(truth
        .iter()
        .any(|g| g["attrib"] == 2 && g["deviceid"].is_null() && g["modelid"].is_null()));
    assert!(truth.iter().any(|g| g["category"] == 2));
    let weight_units: BTreeSet<i64> = all
        .iter()
        .filter(|m| m["type"] == 1)
        .map(|m| m["unit"].as_i64().unwrap())
        .collect();
    assert!(weight_units.len() >= 2, "{weight_units:?}");
}

#[test]
fn getactivity_date_rules_fields_and_truth() {
    let sim = start(cfg());
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let truth = sim.truth("getactivity", uid);
    let truth = truth.as_array().unwrap();
    let d0 = truth[3]["date"].as_str().unwrap().to_string();
    let d1 = truth[5]["date"].as_str().unwrap().to_string();
    let ymd = [
        ("action", "getactivity"),
        ("startdateymd", d0.as_str()),
        ("enddateymd", d1.as_str()),
    ];
    let r = call(&sim, "/v2/measure", &ymd, &t);
    let rows = r["body"]["activities"].as_array().unwrap();
    assert_eq!(rows.len(), 3, "both ends inclusive");
    assert_eq!(r["body"]["more"], json!(false));
    assert!(r["body"]["offset"].is_i64());
    assert!(
        rows[0].get("hr_average").is_none(),
        "default subset has no hr fields"
    );
    assert!(rows[0].get("steps").is_some());
    assert_eq!(rows[0]["timezone"], "Europe/Paris");
    // ymd + lastupdate: zero rows; neither: 503.
    let mut both = ymd.to_vec();
    both.push(("lastupdate", "0"));
    let r = call(&sim, "/v2/measure", &both, &t);
    assert_eq!(r["status"], 0);
    assert_eq!(r["body"]["activities"], json!([]));
    let r = call(&sim, "/v2/measure", &[("action", "getactivity")], &t);
    assert_eq!(r["status"], 503);
    let r = call(
        &sim,
        "/v2/measure",
        &[
            ("action", "getactivity"),
            ("startdateymd", "2023/01/01"),
            ("enddateymd", "2023-01-02"),
        ],
        &t,
    );
    assert_eq!(r["status"], 503);
    // Every field via data_fields + lastupdate equals the truth.
    let fields = "steps,distance,elevation,soft,moderate,intense,active,calories,totalcalories,hr_average,hr_min,hr_max,hr_zone_0,hr_zone_1,hr_zone_2,hr_zone_3";
    let r = call(
        &sim,
        "/v2/measure",
        &[
            ("action", "getactivity"),
            ("lastupdate", "0"),
            ("data_fields", fields),
        ],
        &t,
    );
    assert_eq!(&r["body"]["activities"], &Value::Array(truth.clone()));
}

#[test]
fn intraday_first_24h_only_exclusive_end_and_epoch_keys() {
    let sim = start(cfg());
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let start_ts = ANCHOR - 10 * 86_400;
    let r = call(
        &sim,
        "/v2/measure",
        &[
            ("action", "getintradayactivity"),
            ("startdate", &s(start_ts)),
            ("enddate", &s(start_ts + 3 * 86_400)),
        ],
        &t,
    );
    let series = r["body"]["series"]
        .as_object()
        .expect("series is an object");
    assert!(series.len() > 50);
    let keys: Vec<i64> = series.keys().map(|k| k.parse().unwrap()).collect();
    assert!(
        keys.iter()
            .all(|k| *k >= start_ts && *k < start_ts + 86_400),
        "first 24 h only"
    );
    assert!(r["body"].get("more").is_none() && r["body"].get("offset").is_none());
    let sample = series.values().next().unwrap();
    assert!(sample.get("model_id").is_some() && sample.get("deviceid").is_some());
    // enddate exclusive
    let last = *keys.iter().max().unwrap();
    let r = call(
        &sim,
        "/v2/measure",
        &[
            ("action", "getintradayactivity"),
            ("startdate", &s(start_ts)),
            ("enddate", &s(last)),
            (
                "data_fields",
                "steps,heart_rate,calories,distance,elevation,duration,stroke,pool_lap",
            ),
        ],
        &t,
    );
    assert!(r["body"]["series"].get(last.to_string()).is_none());
    // empty window: []
    let r = call(
        &sim,
        "/v2/measure",
        &[
            ("action", "getintradayactivity"),
            ("startdate", "1000"),
            ("enddate", "2000"),
        ],
        &t,
    );
    assert_eq!(r["body"]["series"], json!([]));
    // truth holds every sample, including fields outside the default subset
    let truth = sim.truth("getintradayactivity", uid);
    assert!(truth
        .as_object()
        .unwrap()
        .values()
        .any(|v| v.get("spo2_auto").is_some()));
}

#[test]
fn sleep_get_requires_both_dates_truncates_and_honours_data_fields() {
    let sim = start(SimConfig { users: 2, ..cfg() });
    let uid = sim.userids()[1];
    let t = token(&sim, uid);
    let r = call(
        &sim,
        "/v2/sleep",
        &[("action", "get"), ("startdate", "1")],
        &t,
    );
    assert_eq!(r["status"], 503);
    let summary = sim.truth("getsummary", uid);
    let night = &summary.as_array().unwrap()[5];
    let (ns, ne) = (
        night["startdate"].as_i64().unwrap(),
        night["enddate"].as_i64().unwrap(),
    );
    // 48 h window: only the first 24 h
    let r = call(
        &sim,
        "/v2/sleep",
        &[
            ("action", "get"),
            ("startdate", &s(ns)),
            ("enddate", &s(ns + 2 * 86_400)),
        ],
        &t,
    );
    let segs = r["body"]["series"].as_array().unwrap();
    assert!(!segs.is_empty());
    assert!(segs
        .iter()
        .all(|x| x["startdate"].as_i64().unwrap() <= ns + 86_400));
    assert!(
        segs.iter().all(|x| x.get("hr").is_none()),
        "no maps without data_fields"
    );
    assert!(segs[0]["model"].is_string());
    assert!(r["body"]["model"].is_i64());
    // The second user has two devices with the same segment startdates.
    let starts: Vec<i64> = segs
        .iter()
        .map(|x| x["startdate"].as_i64().unwrap())
        .collect();
    assert_eq!(starts[0], starts[1]);
    assert_ne!(segs[0]["hash_deviceid"], segs[1]["hash_deviceid"]);
    // night window, inclusive enddate, all maps == truth for that window
    let last_seg_start = *starts.iter().filter(|x| **x <= ne).max().unwrap();
    let all = "hr,rr,snoring,sdnn_1,rmssd,mvt_score";
    let r = call(
        &sim,
        "/v2/sleep",
        &[
            ("action", "get"),
            ("startdate", &s(ns)),
            ("enddate", &s(last_seg_start)),
            ("data_fields", all),
        ],
        &t,
    );
    let segs = r["body"]["series"].as_array().unwrap().clone();
    assert_eq!(
        segs.last().unwrap()["startdate"],
        json!(last_seg_start),
        "enddate inclusive"
    );
    let truth = sim.truth("sleep_get", uid);
    let expected: Vec<Value> = truth
        .as_array()
        .unwrap()
        .iter()
        .filter(|x| (ns..=last_seg_start).contains(&x["startdate"].as_i64().unwrap()))
        .cloned()
        .collect();
    assert_eq!(segs, expected);
    assert_eq!(
        segs[0]["hr"].as_object().unwrap().len() as i64 * 60,
        segs[0]["enddate"].as_i64().unwrap() - segs[0]["startdate"].as_i64().unwrap()
    );
}

#[test]
fn getsummary_pages_without_more_or_offset() {
    let sim = start(SimConfig { days: 400, ..cfg() });
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let r = call(
        &sim,
        "/v2/sleep",
        &[("action", "getsummary"), ("lastupdate", "0")],
        &t,
    );
    let b = &r["body"];
    assert!(
        b.get("more").is_none() && b.get("offset").is_none(),
        "{}",
        b.as_object()
            .unwrap()
            .keys()
            .cloned()
            .collect::<Vec<_>>()
            .join(",")
    );
    let first = b["series"].as_array().unwrap().clone();
    assert_eq!(first.len(), 300);
    assert!(
        first[0]["data"].get("hr_average").is_none(),
        "default subset has no hr"
    );
    assert!(first[0]["data"].get("total_timeinbed").is_some());
    assert!(first[0]["model"].is_i64());
    let r = call(
        &sim,
        "/v2/sleep",
        &[
            ("action", "getsummary"),
            ("lastupdate", "0"),
            ("offset", "300"),
        ],
        &t,
    );
    let second = r["body"]["series"].as_array().unwrap().clone();
    assert!(!second.is_empty() && second.len() < 300);
    let total = sim.truth("getsummary", uid).as_array().unwrap().len();
    assert_eq!(first.len() + second.len(), total);
    let modified: Vec<i64> = first
        .iter()
        .chain(&second)
        .map(|x| x["modified"].as_i64().unwrap())
        .collect();
    assert!(modified.windows(2).all(|w| w[0] <= w[1]));
    // ymd on the local end date, inclusive
    let d = first[10]["date"].as_str().unwrap();
    let r = call(
        &sim,
        "/v2/sleep",
        &[
            ("action", "getsummary"),
            ("startdateymd", d),
            ("enddateymd", d),
        ],
        &t,
    );
    assert_eq!(r["body"]["series"].as_array().unwrap().len(), 1);
    assert_eq!(r["body"]["series"][0]["id"], first[10]["id"]);
    let both = [
        ("action", "getsummary"),
        ("startdateymd", d),
        ("enddateymd", d),
        ("lastupdate", "0"),
    ];
    assert_eq!(
        call(&sim, "/v2/sleep", &both, &t)["body"]["series"],
        json!([])
    );
}

#[test]
fn heart_list_is_descending_and_paged_and_signals_are_served() {
    let sim = start(SimConfig {
        days: 120,
        page_heart_list: 10,
        ..cfg()
    });
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let mut rows = Vec::new();
    let mut offset = 0;
    loop {
        let r = call(
            &sim,
            "/v2/heart",
            &[("action", "list"), ("offset", &s(offset))],
            &t,
        );
        let b = &r["body"];
        rows.extend(b["series"].as_array().unwrap().iter().cloned());
        if b["more"] == json!(true) {
            offset = b["offset"].as_i64().unwrap();
        } else {
            assert_eq!(b["more"], json!(false));
            break;
        }
    }
    let ts: Vec<i64> = rows
        .iter()
        .map(|x| x["timestamp"].as_i64().unwrap())
        .collect();
    assert!(ts.windows(2).all(|w| w[0] >= w[1]));
    assert_eq!(Value::Array(rows.clone()), sim.truth("heart_list", uid));
    let id = rows[0]["ecg"]["signalid"].as_i64().unwrap();
    let r = call(
        &sim,
        "/v2/heart",
        &[("action", "get"), ("signalid", &s(id))],
        &t,
    );
    let signal = r["body"]["signal"].as_array().unwrap();
    assert!(signal.len() >= 9_000);
    // Without the options: neither the filtered signal nor the intervals.
    let truth = sim.truth("heart_get", uid)[id.to_string()].clone();
    let mut plain = truth.clone();
    plain.as_object_mut().unwrap().remove("filtered_signal");
    plain.as_object_mut().unwrap().remove("intervals");
    assert_eq!(r["body"], plain);
    let r = call(
        &sim,
        "/v2/heart",
        &[
            ("action", "get"),
            ("signalid", &s(id)),
            ("with_filtered", "true"),
            ("with_intervals", "1"),
        ],
        &t,
    );
    assert_eq!(r["body"], truth);
    assert_eq!(
        r["body"]["filtered_signal"].as_array().unwrap().len(),
        signal.len()
    );
    assert!(r["body"]["intervals"]["qtc"].is_i64());
    let r = call(
        &sim,
        "/v2/heart",
        &[
            ("action", "get"),
            ("signalid", &s(id)),
            ("with_filtered", "yes"),
        ],
        &t,
    );
    assert_eq!(r["status"], 503);
    let r = call(
        &sim,
        "/v2/heart",
        &[("action", "get"), ("signalid", "1")],
        &t,
    );
    assert_eq!(r["status"], 503);
    let st = sim.truth("stetho_list", uid);
    let sid = st[0]["signalid"].as_i64().unwrap();
    let r = call(
        &sim,
        "/v2/stetho",
        &[("action", "get"), ("signalid", &s(sid))],
        &t,
    );
    assert_eq!(r["body"]["frequency"], 4000);
}

#[test]
fn workouts_devices_and_goals() {
    let sim = start(SimConfig { users: 2, ..cfg() });
    let (u1, u2) = (sim.userids()[0], sim.userids()[1]);
    let t1 = token(&sim, u1);
    let t2 = token(&sim, u2);
    let r = call(&sim, "/v2/user", &[("action", "getgoals")], &t2);
    assert_eq!(r["body"]["goals"], json!([]));
    let r = call(&sim, "/v2/user", &[("action", "getgoals")], &t1);
    assert_eq!(r["body"]["goals"]["weight"]["unit"], -3);
    let r = call(&sim, "/v2/user", &[("action", "getdevice")], &t1);
    let devices = r["body"]["devices"].as_array().unwrap();
    assert!(devices.iter().any(|d| d["battery"] == "unknown"));
    assert!(devices.iter().any(|d| d["first_session_date"].is_null()));
    assert_eq!(r["body"]["devices"], sim.truth("getdevice", u1));
    let r = call(
        &sim,
        "/v2/measure",
        &[("action", "getworkouts"), ("lastupdate", "0")],
        &t1,
    );
    let rows = r["body"]["series"].as_array().unwrap();
    assert!(rows
        .iter()
        .all(|w| w["model"].is_i64() && w["date"].is_string()));
    assert!(rows.iter().all(|w| w["data"].get("hr_average").is_none()));
    let starts: Vec<i64> = rows
        .iter()
        .map(|w| w["startdate"].as_i64().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] <= w[1]));
    assert_eq!(r["body"]["more"], json!(false));
}

#[test]
fn same_seed_same_data_other_seed_other_data() {
    let a = start(SimConfig { users: 2, ..cfg() });
    let b = start(SimConfig { users: 2, ..cfg() });
    let c = start(SimConfig {
        users: 2,
        seed: 7,
        ..cfg()
    });
    for m in [
        "getmeas",
        "getactivity",
        "getintradayactivity",
        "getworkouts",
        "sleep_get",
        "getsummary",
        "heart_list",
        "stetho_list",
        "getdevice",
        "getgoals",
    ] {
        for u in a.userids() {
            assert_eq!(a.truth(m, u), b.truth(m, u), "{m} {u}");
        }
    }
    assert_ne!(a.truth("getmeas", 1_000_001), c.truth("getmeas", 1_000_001));
    assert_eq!(
        a.user_timezone(1_000_002).as_deref(),
        Some("America/New_York")
    );
    assert!(a.truth("nope", 1_000_001).is_null());
}

#[test]
fn lying_more_full_pages_claim_no_more() {
    let sim = start(SimConfig {
        page_getactivity: 10,
        page_getmeas: 10,
        faults: Faults {
            lying_more: true,
            repeat_guard_secs: 0.0,
            ..Faults::default()
        },
        ..cfg()
    });
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let r = call(
        &sim,
        "/v2/measure",
        &[("action", "getactivity"), ("lastupdate", "0")],
        &t,
    );
    assert_eq!(r["body"]["activities"].as_array().unwrap().len(), 10);
    assert_eq!(r["body"]["more"], json!(false));
    assert_eq!(r["body"]["offset"], json!(0));
    let r = call(
        &sim,
        "/v2/measure",
        &[
            ("action", "getactivity"),
            ("lastupdate", "0"),
            ("offset", "10"),
        ],
        &t,
    );
    assert_eq!(
        r["body"]["activities"].as_array().unwrap().len(),
        10,
        "the next page exists"
    );
    let r = call(
        &sim,
        "/measure",
        &[("action", "getmeas"), ("lastupdate", "0")],
        &t,
    );
    assert_eq!(r["body"]["more"], json!(0));
    assert_eq!(r["body"]["offset"], json!(0));
    assert_eq!(r["body"]["measuregrps"].as_array().unwrap().len(), 10);
}

#[test]
fn shape_quirks_and_unknown_fields() {
    let sim = start(SimConfig {
        faults: Faults {
            shape_quirks: true,
            unknown_fields: true,
            repeat_guard_secs: 0.0,
            ..Faults::default()
        },
        ..cfg()
    });
    let uid = sim.userids()[0];
    let r = refresh(&sim, &sim.refresh_token(uid));
    assert_eq!(r["body"]["userid"], json!(uid.to_string()));
    let t = r["body"]["access_token"].as_str().unwrap().to_string();
    let truth = sim.truth("getactivity", uid);
    let d = truth[0]["date"].as_str().unwrap();
    let r = call(
        &sim,
        "/v2/measure",
        &[
            ("action", "getactivity"),
            ("startdateymd", d),
            ("enddateymd", d),
        ],
        &t,
    );
    assert!(r["body"]["activities"].is_object(), "one day is an object");
    assert_eq!(r["body"]["activities"]["sim_future_field"], "unknown");
    let r = call(
        &sim,
        "/v2/measure",
        &[("action", "getactivity"), ("lastupdate", "0")],
        &t,
    );
    let rows = r["body"]["activities"].as_array().unwrap();
    assert!(rows.iter().any(|a| a["intense"] == json!(false)));
    let r = call(&sim, "/measure", &[("action", "getmeas")], &t);
    let g = &r["body"]["measuregrps"][0];
    assert_eq!(g["sim_future_field"], "unknown");
    assert_eq!(g["measures"][0]["sim_future_field"], "unknown");
}

#[test]
fn sim_handle_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<withings_sim::Sim>();
    check::<withings_sim::RequestLog>();
}

/// Local calendar day of an epoch for a user, and its day number (days since 0001-01-01).
fn local_day(sim: &withings_sim::Sim, uid: u64, ts: i64) -> chrono::NaiveDate {
    use chrono::TimeZone;
    let tz: chrono_tz::Tz = sim.user_timezone(uid).unwrap().parse().unwrap();
    tz.timestamp_opt(ts, 0).unwrap().date_naive()
}

fn day_number(d: chrono::NaiveDate) -> i32 {
    use chrono::Datelike;
    d.num_days_from_ce()
}

fn ymd_day(v: &Value) -> chrono::NaiveDate {
    chrono::NaiveDate::parse_from_str(v.as_str().unwrap(), "%Y-%m-%d").unwrap()
}

fn rows(v: Value) -> Vec<Value> {
    match v {
        Value::Array(a) => a,
        Value::Object(o) => o
            .into_iter()
            .map(|(k, mut v)| {
                v["_ts"] = json!(k.parse::<i64>().unwrap());
                v
            })
            .collect(),
        other => panic!("not rows: {other}"),
    }
}

#[test]
fn profiles_thin_the_full_data_as_their_devices_would() {
    use withings_sim::Profile;
    let base = SimConfig {
        users: 4,
        days: 20,
        ..cfg()
    };
    let full = start(base.clone());
    let sim = start(SimConfig {
        profiles: vec![
            Profile::Full,
            Profile::ScaleOnly,
            Profile::EveryOtherDay,
            Profile::ActivityNoIntraday,
        ],
        ..base
    });
    let ids = sim.userids();
    let modules = [
        "getmeas",
        "getactivity",
        "getintradayactivity",
        "getworkouts",
        "sleep_get",
        "getsummary",
        "heart_list",
        "stetho_list",
        "getdevice",
        "getgoals",
    ];
    // full: exactly the default data.
    assert_eq!(sim.user_profile(ids[0]), Some(Profile::Full));
    assert_eq!(full.user_profile(ids[3]), Some(Profile::Full));
    for m in modules {
        assert_eq!(sim.truth(m, ids[0]), full.truth(m, ids[0]), "{m}");
    }
    // scale_only: measures of scales (and manual entries), the scales as devices, nothing else.
    let uid = ids[1];
    assert_eq!(sim.user_profile(uid), Some(Profile::ScaleOnly));
    for m in [
        "getactivity",
        "getworkouts",
        "sleep_get",
        "getsummary",
        "heart_list",
        "stetho_list",
    ] {
        assert_eq!(sim.truth(m, uid), json!([]), "{m}");
    }
    assert_eq!(sim.truth("getintradayactivity", uid), json!({}));
    let devices = rows(sim.truth("getdevice", uid));
    assert!(!devices.is_empty());
    assert!(devices.iter().all(|d| d["type"] == "Scale"), "{devices:?}");
    let scale_ids: Vec<Value> = devices.iter().map(|d| d["deviceid"].clone()).collect();
    let groups = rows(sim.truth("getmeas", uid));
    assert!(groups.len() > 20, "{}", groups.len());
    assert!(groups
        .iter()
        .all(|g| g["deviceid"].is_null() || scale_ids.contains(&g["deviceid"])));
    let kept: Vec<Value> = rows(full.truth("getmeas", uid))
        .into_iter()
        .filter(|g| g["deviceid"].is_null() || scale_ids.contains(&g["deviceid"]))
        .collect();
    assert_eq!(groups, kept, "the full user's scale measures, no others");
    // every_other_day: the watch's data only on even local days, otherwise the same.
    let uid = ids[2];
    let worn = |d: chrono::NaiveDate| day_number(d) % 2 == 0;
    let days = rows(sim.truth("getactivity", uid));
    let want: Vec<Value> = rows(full.truth("getactivity", uid))
        .into_iter()
        .filter(|a| worn(ymd_day(&a["date"])))
        .collect();
    assert_eq!(days, want);
    assert!((9..=12).contains(&days.len()), "{}", days.len());
    let samples = rows(sim.truth("getintradayactivity", uid));
    let want: Vec<Value> = rows(full.truth("getintradayactivity", uid))
        .into_iter()
        .filter(|s| worn(local_day(&sim, uid, s["_ts"].as_i64().unwrap())))
        .collect();
    assert_eq!(samples, want);
    let nights = rows(sim.truth("getsummary", uid));
    assert!(!nights.is_empty());
    assert!(nights
        .iter()
        .all(|n| worn(local_day(&sim, uid, n["startdate"].as_i64().unwrap()))));
    assert!(rows(sim.truth("getworkouts", uid))
        .iter()
        .all(|w| worn(local_day(&sim, uid, w["startdate"].as_i64().unwrap()))));
    // activity_no_intraday: every row kept, no samples on one day in five.
    let uid = ids[3];
    let days = rows(sim.truth("getactivity", uid));
    assert_eq!(days, rows(full.truth("getactivity", uid)));
    let sampled: BTreeSet<chrono::NaiveDate> = rows(sim.truth("getintradayactivity", uid))
        .iter()
        .map(|s| local_day(&sim, uid, s["_ts"].as_i64().unwrap()))
        .collect();
    let bare: Vec<chrono::NaiveDate> = days
        .iter()
        .map(|a| ymd_day(&a["date"]))
        .filter(|d| !sampled.contains(d))
        .collect();
    assert!((3..=5).contains(&bare.len()), "{bare:?}");
    assert!(bare.iter().all(|d| day_number(*d) % 5 == 0), "{bare:?}");
    // The API agrees: a phone-only day's intraday window is empty, its activity row is there.
    let t = token(&sim, uid);
    let tz: chrono_tz::Tz = sim.user_timezone(uid).unwrap().parse().unwrap();
    let day = bare[1];
    let from = withings_sim::clock::local_ts(day, 0, tz);
    let to = withings_sim::clock::local_ts(day, 86_400, tz);
    let r = call(
        &sim,
        "/v2/measure",
        &[
            ("action", "getintradayactivity"),
            ("startdate", &s(from)),
            ("enddate", &s(to)),
        ],
        &t,
    );
    assert_eq!(r["body"]["series"], json!([]), "{r}");
    let ymd = day.format("%Y-%m-%d").to_string();
    let r = call(
        &sim,
        "/v2/measure",
        &[
            ("action", "getactivity"),
            ("startdateymd", &ymd),
            ("enddateymd", &ymd),
        ],
        &t,
    );
    assert_eq!(r["body"]["activities"].as_array().unwrap().len(), 1, "{r}");
}

#[test]
fn a_history_can_start_years_after_the_taps_default_start_date() {
    // Data placed in 2019 by the anchor: every item lies in [data_start, anchor], and a range
    // from 2009-01-01 finds exactly it.
    let anchor = 1_559_347_200; // 2019-06-01 00:00 UTC
    let sim = start(SimConfig {
        anchor: Some(anchor),
        ..cfg()
    });
    let uid = sim.userids()[0];
    assert_eq!(sim.data_start(), anchor - 30 * 86_400);
    let t = token(&sim, uid);
    let inside = |ts: i64| (sim.data_start()..=anchor).contains(&ts);
    assert!(rows(sim.truth("getmeas", uid))
        .iter()
        .all(|g| inside(g["date"].as_i64().unwrap())));
    assert!(rows(sim.truth("getintradayactivity", uid))
        .iter()
        .all(|s| inside(s["_ts"].as_i64().unwrap())));
    assert!(rows(sim.truth("getsummary", uid)).iter().all(|n| inside(
        n["startdate"].as_i64().unwrap()
    ) && inside(
        n["enddate"].as_i64().unwrap()
    )));
    let r = call(
        &sim,
        "/v2/measure",
        &[
            ("action", "getactivity"),
            ("startdateymd", "2009-01-01"),
            ("enddateymd", "2019-06-01"),
        ],
        &t,
    );
    let got = r["body"]["activities"].as_array().unwrap();
    assert_eq!(
        got,
        &rows(sim.truth("getactivity", uid))
            .iter()
            .map(|a| {
                let mut a = a.clone();
                for k in [
                    "hr_average",
                    "hr_min",
                    "hr_max",
                    "hr_zone_0",
                    "hr_zone_1",
                    "hr_zone_2",
                    "hr_zone_3",
                ] {
                    a.as_object_mut().unwrap().remove(k);
                }
                a
            })
            .collect::<Vec<_>>()
    );
    assert!(got
        .iter()
        .all(|a| a["date"].as_str().unwrap() >= "2019-05-01"));
    // The default anchor (today 00:00 UTC) with 30 days.
    let today = start(SimConfig {
        anchor: None,
        ..cfg()
    });
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    assert_eq!(today.anchor(), now - now % 86_400);
    let days = rows(today.truth("getactivity", today.userids()[0]));
    assert!((30..=31).contains(&days.len()), "{}", days.len());
}

#[test]
fn every_data_call_is_counted_under_its_action() {
    let sim = start(cfg());
    let uid = sim.userids()[0];
    let t = token(&sim, uid);
    let ecg = sim.truth("heart_list", uid)[0]["ecg"]["signalid"].to_string();
    let stetho = sim.truth("stetho_list", uid)[0]["signalid"].to_string();
    let (a, b) = (s(ANCHOR - 86_400), s(ANCHOR));
    sim.reset_stats();
    type Call<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);
    let calls: Vec<Call> = vec![
        (
            "getmeas",
            "/measure",
            vec![("action", "getmeas"), ("lastupdate", "0")],
        ),
        (
            "getactivity",
            "/v2/measure",
            vec![("action", "getactivity"), ("lastupdate", "0")],
        ),
        (
            "getintradayactivity",
            "/v2/measure",
            vec![
                ("action", "getintradayactivity"),
                ("startdate", &a),
                ("enddate", &b),
            ],
        ),
        (
            "getworkouts",
            "/v2/measure",
            vec![("action", "getworkouts"), ("lastupdate", "0")],
        ),
        (
            "sleep_get",
            "/v2/sleep",
            vec![("action", "get"), ("startdate", &a), ("enddate", &b)],
        ),
        // A refused call (503: enddate missing) is counted under its action too.
        (
            "sleep_get",
            "/v2/sleep",
            vec![("action", "get"), ("startdate", &a)],
        ),
        (
            "getsummary",
            "/v2/sleep",
            vec![("action", "getsummary"), ("lastupdate", "0")],
        ),
        ("heart_list", "/v2/heart", vec![("action", "list")]),
        (
            "heart_get",
            "/v2/heart",
            vec![("action", "get"), ("signalid", &ecg)],
        ),
        ("stetho_list", "/v2/stetho", vec![("action", "list")]),
        (
            "stetho_get",
            "/v2/stetho",
            vec![("action", "get"), ("signalid", &stetho)],
        ),
        ("getdevice", "/v2/user", vec![("action", "getdevice")]),
        ("getgoals", "/v2/user", vec![("action", "getgoals")]),
    ];
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for (action, path, params) in &calls {
        call(&sim, path, params, &t);
        *want.entry(action.to_string()).or_default() += 1;
    }
    let stats = sim.stats();
    let got: BTreeMap<String, u64> = serde_json::from_value(stats["by_action"].clone()).unwrap();
    assert_eq!(got, want);
    assert_eq!(stats["requests_total"], json!(calls.len()));
    let log = sim.requests();
    let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).collect();
    let expected: Vec<&str> = calls.iter().map(|c| c.0).collect();
    assert_eq!(actions, expected);
    assert!(log.iter().all(|r| r.userid == Some(uid)));
    assert_eq!(log[5].status, 503);
}
