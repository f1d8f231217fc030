//! Every getmeas capture of `tests/fixtures/aiowithings` (MIT, see its LICENSE) through both
//! readers and the measures output plan: each record validates against the SCHEMA the tap
//! sends, keys are unique, and no measure of the capture is lost.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Value};
use tap_withings::conform::{Flattening, OutputPlan};
use tap_withings::streams::{self, measure};

const CAPTURES: &[(&str, &str)] = &[
    (
        "measurement.json",
        include_str!("../fixtures/aiowithings/measurement.json"),
    ),
    (
        "measurement_list.json",
        include_str!("../fixtures/aiowithings/measurement_list.json"),
    ),
    (
        "measurement_list_2.json",
        include_str!("../fixtures/aiowithings/measurement_list_2.json"),
    ),
    (
        "measurement_positions.json",
        include_str!("../fixtures/aiowithings/measurement_positions.json"),
    ),
];

/// A capture as a whole getmeas reply (the list captures are `measuregrps` alone).
fn reply(capture: &str) -> Value {
    let v: Value = serde_json::from_str(capture).unwrap();
    if v.is_array() {
        json!({"status": 0, "body": {"timezone": "Europe/Paris", "measuregrps": v, "more": 0}})
    } else {
        v
    }
}

#[test]
fn every_getmeas_capture_gives_valid_unique_records_for_every_measure() {
    let def = streams::find("measures").unwrap();
    for flattening in [
        Flattening {
            enabled: true,
            max_depth: 10,
        },
        Flattening {
            enabled: false,
            max_depth: 0,
        },
    ] {
        let plan = OutputPlan::new(&def.schema(), def.keys, None, flattening).unwrap();
        let validator = jsonschema::options()
            .should_validate_formats(true)
            .build(plan.schema())
            .unwrap();
        for (name, capture) in CAPTURES {
            let reply = reply(capture);
            let text = serde_json::to_vec(&reply).unwrap();
            let groups = reply["body"]["measuregrps"].as_array().unwrap();
            let measures: usize = groups
                .iter()
                .map(|g| g["measures"].as_array().unwrap().len())
                .sum();
            assert!(measures > 0, "{name}");
            // The reader production uses first, and the lenient one.
            let fast = measure::fast_reply(&text).unwrap_or_else(|| panic!("{name}: typed read"));
            let typed: Vec<Value> = fast
                .rows(7)
                .map(|row| {
                    let mut line = Vec::new();
                    plan.write(&row, &mut line).unwrap();
                    serde_json::from_slice(&line).unwrap()
                })
                .collect();
            let (records, _) = measure::measures_records(&reply["body"], 7).unwrap();
            let lenient: Vec<Value> = records
                .iter()
                .map(|r| {
                    let mut line = Vec::new();
                    plan.write(r, &mut line).unwrap();
                    serde_json::from_slice(&line).unwrap()
                })
                .collect();
            assert_eq!(
                typed, lenient,
                "{name}: both readers write the same records"
            );
            assert_eq!(typed.len(), measures, "{name}: one record per measure");
            // The sync keeps the first record of a key (a capture can list one group twice,
            // attrib 0 and 8, "the same as 0"): a later record of the key must repeat its
            // measure, so dropping it loses nothing.
            let mut first_of: BTreeMap<String, &Value> = BTreeMap::new();
            for record in &typed {
                let errors: Vec<String> = validator
                    .iter_errors(record)
                    .map(|e| e.to_string())
                    .collect();
                assert!(errors.is_empty(), "{name}: {errors:?} in {record}");
                let key: Vec<&Value> = def.keys.iter().map(|k| &record[*k]).collect();
                assert!(
                    key.iter().all(|v| !v.is_null()),
                    "{name}: null key in {record}"
                );
                assert!(
                    record["value"].is_number(),
                    "{name}: scaled value in {record}"
                );
                let first = first_of.entry(format!("{key:?}")).or_insert(record);
                for field in ["value", "raw_value", "unit", "date", "modified"] {
                    assert_eq!(
                        first[field], record[field],
                        "{name}: key {key:?} repeats differ"
                    );
                }
            }
        }
    }
}

#[test]
fn segmental_measures_keep_one_record_per_position() {
    let reply = reply(CAPTURES[2].1);
    let (records, _) = measure::measures_records(&reply["body"], 7).unwrap();
    for kind in [173, 174, 175] {
        let positions: BTreeSet<i64> = records
            .iter()
            .filter(|r| r["type"] == json!(kind))
            .map(|r| r["position"].as_i64().unwrap())
            .collect();
        assert!(
            positions.len() > 1,
            "type {kind}: several body positions, got {positions:?}"
        );
    }
}
