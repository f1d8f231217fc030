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
