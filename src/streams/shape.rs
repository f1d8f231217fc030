//! Reply-shape helpers shared by the record builders: lists that arrive as one object, `[]`, `{}`
//! or null, maps keyed by epoch-second strings, nested objects sent as `[]`, integer arrays sent as
//! strings. Pure: no I/O, no clock; errors name the Withings action and the field.

use serde_json::{Map, Value};

use super::{Record, ReplyError};

/// The JSON kind of `value`, for error messages ("a string", "a number", ...).
pub use crate::conform::found as kind;

/// Field `key` of a reply `body`, or `None` when it is absent or null.
///
/// A body that is null, `[]` or `{}` counts as empty: Withings answers `"body": {}` for calls
/// without data (e.g. notify revoke), and its PHP backend serialises empty maps as `[]` (as in
/// getgoals' `"goals": []`). Any other non-object body is an error.
pub fn field<'a>(
    body: &'a Value,
    action: &str,
    key: &str,
) -> Result<Option<&'a Value>, ReplyError> {
    match body {
        Value::Object(map) => Ok(map.get(key).filter(|v| !v.is_null())),
        Value::Null => Ok(None),
        Value::Array(list) if list.is_empty() => Ok(None),
        other => Err(ReplyError(format!(
            "{action}: body is {}, expected an object",
            kind(other)
        ))),
    }
}

/// The objects of the list `key` in `body` (e.g. getactivity `activities`, getworkouts `series`).
///
/// Normalises the shapes seen or expected from Withings: absent, null, `[]` and `{}` are an empty
/// list; a single object (a one-day `activities`) is a list of one; null elements are skipped.
/// Fails when the value is a string, number or boolean, or an element is not an object.
pub fn items<'a>(
    body: &'a Value,
    action: &str,
    key: &str,
) -> Result<Vec<&'a Map<String, Value>>, ReplyError> {
    list_items(field(body, action, key)?, action, key)
}

/// [`items`] for a value already taken out of its parent; `path` names it in errors.
pub fn list_items<'a>(
    value: Option<&'a Value>,
    action: &str,
    path: &str,
) -> Result<Vec<&'a Map<String, Value>>, ReplyError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) if map.is_empty() => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(vec![map]),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .filter(|(_, v)| !v.is_null())
            .map(|(i, v)| match v {
                Value::Object(map) => Ok(map),
                other => Err(ReplyError(format!(
                    "{action}: {path}[{i}] is {}, expected an object",
                    kind(other)
                ))),
            })
            .collect(),
        Some(other) => Err(ReplyError(format!(
            "{action}: {path} is {}, expected a list of objects",
            kind(other)
        ))),
    }
}

/// The entries of the map `key` in `body` (e.g. getintradayactivity `series`, keyed by epoch
/// seconds), in reply order.
///
/// Absent, null, `{}` and `[]` are an empty map. Fails on any other shape.
pub fn entries<'a>(
    body: &'a Value,
    action: &str,
    key: &str,
) -> Result<Vec<(&'a str, &'a Value)>, ReplyError> {
    map_entries(field(body, action, key)?, action, key)
}

/// [`entries`] for a value already taken out of its parent; `path` names it in errors.
pub fn map_entries<'a>(
    value: Option<&'a Value>,
    action: &str,
    path: &str,
) -> Result<Vec<(&'a str, &'a Value)>, ReplyError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) if list.is_empty() => Ok(Vec::new()),
        Some(Value::Object(map)) => Ok(map.iter().map(|(k, v)| (k.as_str(), v)).collect()),
        Some(other) => Err(ReplyError(format!(
            "{action}: {path} is {}, expected a map",
            kind(other)
        ))),
    }
}

/// Parses an epoch-second map key such as `"1618691453"` (getintradayactivity `series`, sleep
/// get `hr`/`rr`/...). Fails, naming the action and the map `path`, for anything that is not
/// an integer: the value under it cannot be placed in time, and is not dropped silently.
pub fn epoch_key(key: &str, action: &str, path: &str) -> Result<i64, ReplyError> {
    key.trim().parse().map_err(|_| {
        ReplyError(format!(
            "{action}: {path} has the key {key:?}, expected epoch seconds"
        ))
    })
}

/// A record made of `item`'s fields plus `userid` (Withings list items do not carry the user).
pub fn record_from(item: &Map<String, Value>, userid: i64) -> Record {
    let mut record = item.clone();
    record.insert("userid".to_owned(), Value::from(userid));
    record
}

/// Normalises the nested object `record[key]` (getworkouts `data`, heart list `ecg`, getgoals
/// `weight`, ...): an empty array, the PHP encoding of an empty map, becomes `{}`; absent and
/// null stay as they are. Fails when the value is a scalar or a non-empty array.
pub fn nested_object(
    record: &mut Record,
    action: &str,
    path: &str,
    key: &str,
) -> Result<(), ReplyError> {
    match record.get(key) {
        None | Some(Value::Null) | Some(Value::Object(_)) => Ok(()),
        Some(Value::Array(list)) if list.is_empty() => {
            record.insert(key.to_owned(), Value::Object(Map::new()));
            Ok(())
        }
        Some(other) => Err(ReplyError(format!(
            "{action}: {path}.{key} is {}, expected an object",
            kind(other)
        ))),
    }
}

/// An integer array out of the shapes Withings uses for sample arrays (Heart v2 get `signal`):
/// a JSON array of integers, the string of a JSON array (`"[1,2,3]"`, the doc example), a
/// comma-separated string (`"1,2,3"`). Absent, null, `""`, `[]` and `{}` are empty. Elements may
/// be integral floats or numeric strings; anything else fails.
pub fn int_array(value: Option<&Value>, action: &str, path: &str) -> Result<Vec<i64>, ReplyError> {
    let bad = |what: String| ReplyError(format!("{action}: {path}{what}, expected integers"));
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Object(map)) if map.is_empty() => Ok(Vec::new()),
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| int_element(v).ok_or_else(|| bad(format!("[{i}] is {}", kind(v)))))
            .collect(),
        Some(Value::String(text)) => {
            let text = text.trim();
            if text.starts_with('[') {
                let parsed: Value = serde_json::from_str(text)
                    .map_err(|e| bad(format!(" is a string that is not a JSON array ({e})")))?;
                int_array(Some(&parsed), action, path)
            } else {
                text.split(',')
                    .map(str::trim)
                    .filter(|piece| !piece.is_empty())
                    .map(|piece| piece.parse().map_err(|_| bad(format!(" holds {piece:?}"))))
                    .collect()
            }
        }
        Some(other) => Err(bad(format!(" is {}", kind(other)))),
    }
}

fn int_element(value: &Value) -> Option<i64> {
    match value {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn item_count(body: Value) -> Result<usize, ReplyError> {
        items(&body, "getworkouts", "series").map(|v| v.len())
    }

    #[test]
    fn items_normalises_every_list_shape() {
        let cases = [
            (json!({}), 0),
            (json!({"series": null}), 0),
            (json!({"series": []}), 0),
            (json!({"series": {}}), 0),
            (json!({"series": [{"id": 1}, {"id": 2}]}), 2),
            (json!({"series": {"id": 1}}), 1),
            (json!({"series": [{"id": 1}, null]}), 1),
            (json!(null), 0),
            (json!([]), 0),
        ];
        for (body, want) in cases {
            assert_eq!(item_count(body.clone()), Ok(want), "{body}");
        }
    }

    #[test]
    fn items_rejects_impossible_shapes_naming_action_and_field() {
        let cases = [
            (
                json!({"series": "x"}),
                "getworkouts: series is a string, expected a list of objects",
            ),
            (
                json!({"series": 3}),
                "getworkouts: series is a number, expected a list of objects",
            ),
            (
                json!({"series": [1]}),
                "getworkouts: series[0] is a number, expected an object",
            ),
            (
                json!("body"),
                "getworkouts: body is a string, expected an object",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(item_count(body), Err(ReplyError(want.to_owned())));
        }
    }

    #[test]
    fn entries_normalises_every_map_shape() {
        let cases = [
            (json!({}), Ok(0)),
            (json!({"series": null}), Ok(0)),
            (json!({"series": []}), Ok(0)),
            (json!({"series": {}}), Ok(0)),
            (json!({"series": {"1": {}, "2": {}}}), Ok(2)),
            (
                json!({"series": "x"}),
                Err(ReplyError(
                    "intraday: series is a string, expected a map".to_owned(),
                )),
            ),
            (
                json!({"series": [1]}),
                Err(ReplyError(
                    "intraday: series is an array, expected a map".to_owned(),
                )),
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                entries(&body, "intraday", "series").map(|e| e.len()),
                want,
                "{body}"
            );
        }
    }

    #[test]
    fn epoch_key_accepts_only_integers() {
        let cases = [
            ("1618691453", Some(1_618_691_453)),
            (" 42 ", Some(42)),
            ("-5", Some(-5)),
            ("1.5", None),
            ("", None),
            ("abc", None),
        ];
        for (key, want) in cases {
            assert_eq!(epoch_key(key, "a", "series").ok(), want, "{key:?}");
        }
        assert_eq!(
            epoch_key("x", "sleep get", "series[0].hr"),
            Err(ReplyError(
                "sleep get: series[0].hr has the key \"x\", expected epoch seconds".into()
            ))
        );
    }

    #[test]
    fn int_array_reads_every_signal_encoding() {
        let cases = [
            (json!([1, -2, 3]), vec![1, -2, 3]),
            (
                json!("[1,2,3,4,5,6,7,8,9]"),
                vec![1, 2, 3, 4, 5, 6, 7, 8, 9],
            ),
            (json!("1, -2,3"), vec![1, -2, 3]),
            (json!("1,2,"), vec![1, 2]),
            (json!(""), vec![]),
            (json!([]), vec![]),
            (json!({}), vec![]),
            (json!(null), vec![]),
            (json!([1.0, "2"]), vec![1, 2]),
        ];
        for (value, want) in cases {
            assert_eq!(
                int_array(Some(&value), "heart get", "signal"),
                Ok(want),
                "{value}"
            );
        }
        assert_eq!(int_array(None, "heart get", "signal"), Ok(vec![]));
    }

    #[test]
    fn int_array_rejects_non_integers() {
        let cases = [
            json!(5),
            json!(true),
            json!([1.5]),
            json!(["a"]),
            json!("1,x"),
            json!("[1,"),
            json!({"a": 1}),
        ];
        for value in cases {
            let got = int_array(Some(&value), "heart get", "signal");
            assert!(
                matches!(&got, Err(ReplyError(m)) if m.starts_with("heart get: signal")),
                "{value}: {got:?}"
            );
        }
    }

    #[test]
    fn nested_object_turns_empty_array_into_empty_map() {
        let cases = [
            (json!({"data": []}), Ok(json!({"data": {}}))),
            (json!({"data": {"a": 1}}), Ok(json!({"data": {"a": 1}}))),
            (json!({"data": null}), Ok(json!({"data": null}))),
            (json!({}), Ok(json!({}))),
            (
                json!({"data": 1}),
                Err(ReplyError(
                    "getworkouts: series[0].data is a number, expected an object".to_owned(),
                )),
            ),
            (
                json!({"data": [1]}),
                Err(ReplyError(
                    "getworkouts: series[0].data is an array, expected an object".to_owned(),
                )),
            ),
        ];
        for (input, want) in cases {
            let Value::Object(mut record) = input else {
                panic!("case is not an object")
            };
            let got = nested_object(&mut record, "getworkouts", "series[0]", "data")
                .map(|()| Value::Object(record));
            assert_eq!(got, want);
        }
    }

    #[test]
    fn record_from_adds_userid() {
        let item = json!({"id": 7, "date": null});
        let record = record_from(item.as_object().unwrap(), 12);
        assert_eq!(
            Value::Object(record.clone()),
            json!({"id": 7, "date": null, "userid": 12})
        );
    }
}

/// Checks over every builder at once: keys present and non-null, every emitted field declared in
/// the stream's schema with a type wide enough for it, key columns declared non-null.
#[cfg(test)]
mod conformance {
    use pretty_assertions::assert_eq;
    use serde_json::{json, Value};

    use crate::streams::{activity, heart, sleep, user, workouts, Record};

    macro_rules! fixture_body {
        ($file:literal) => {{
            let envelope: Value = serde_json::from_str(include_str!(concat!(
                "../../tests/fixtures/aiowithings/",
                $file
            )))
            .unwrap();
            envelope["body"].clone()
        }};
    }

    /// Records of one stream built from fixtures; its schema and keys are the stream's own.
    struct Case {
        stream: &'static str,
        records: Vec<Record>,
    }

    impl Case {
        fn def(&self) -> &'static crate::streams::StreamDef {
            crate::streams::STREAMS
                .iter()
                .find(|d| d.name == self.stream)
                .expect("a case names a stream of the tap")
        }
    }

    fn intraday_body() -> Value {
        json!({"series": {
            "1700000000": {"deviceid": "d", "model": "ScanWatch", "model_id": 93, "steps": 12,
                           "elevation": 0.5, "calories": 1.25, "distance": 9.6, "stroke": 3,
                           "pool_lap": 1, "duration": 60, "heart_rate": 70, "spo2_auto": 97.5,
                           "rmssd": 41.2, "sdnn1": 50.1, "hrv_quality": 2,
                           "core_body_temperature": 36.9, "rr": 14, "chest_movement_rate": 15},
            "1700000060": {"deviceid": null, "model": null, "model_id": 1057, "steps": 11}
        }})
    }

    fn heart_list_body() -> Value {
        json!({"series": [
            {"deviceid": "d", "model": 44, "ecg": {"signalid": 48, "afib": 1},
             "bloodpressure": {"diastole": 80, "systole": 120},
             "stetho": {"signalid": 3, "vhd": 0}, "heart_rate": 82,
             "timestamp": 1_594_159_644, "modified": 1_594_159_700}
        ]})
    }

    fn sleep_vitals_body() -> Value {
        json!({"model": 32, "series": [
            {"startdate": 100, "enddate": 160, "state": 1, "model": "Aura Sensor V2",
             "model_id": 63, "hash_deviceid": "h",
             "hr": {"100": 60}, "rr": {"100": 14}, "snoring": {"100": 0},
             "sdnn_1": {"100": 35.5}, "rmssd": {"100": 41}, "hrv_quality": {"100": 3},
             "mvt_score": {"100": 12}, "chest_movement_rate": {"100": 15},
             "withings_index": {"100": 4}, "breathing_sounds": {"100": 0}}
        ]})
    }

    fn cases() -> Vec<Case> {
        let activity = fixture_body!("activity.json");
        let workouts = fixture_body!("workouts.json");
        let sleep = fixture_body!("sleep.json");
        let summary = fixture_body!("sleep_summary.json");
        let summary_plain = fixture_body!("sleep_summary_no_datafields.json");
        let devices = fixture_body!("device.json");
        let new_device = fixture_body!("new_device.json");
        let mut goals = Vec::new();
        for body in [
            fixture_body!("goals.json"),
            fixture_body!("goals_1.json"),
            fixture_body!("goals_2.json"),
            fixture_body!("no_goals.json"),
        ] {
            goals.extend(user::goals_records(&body, 1).unwrap());
        }
        let mut summaries = sleep::sleep_summaries_records(&summary, 1).unwrap();
        summaries.extend(sleep::sleep_summaries_records(&summary_plain, 1).unwrap());
        summaries.extend(
            sleep::sleep_summaries_records(
                &json!({"series": [{"id": 9, "completed": true,
                                    "data": {"night_events": {"1": [0]}, "rmssd_start_avg": 40.5,
                                             "core_body_temperature_status": "usual"}}]}),
                1,
            )
            .unwrap(),
        );
        let mut vitals = sleep::sleep_vitals_records(&sleep, 1).unwrap();
        vitals.extend(sleep::sleep_vitals_records(&sleep_vitals_body(), 1).unwrap());
        let mut device_records = user::devices_records(&devices, 1).unwrap();
        device_records.extend(user::devices_records(&new_device, 1).unwrap());
        vec![
            Case {
                stream: "activity",
                records: activity::activity_records(&activity, 1).unwrap(),
            },
            Case {
                stream: "intraday_activity",
                records: activity::intraday_activity_records(&intraday_body(), 1).unwrap(),
            },
            Case {
                stream: "workouts",
                records: workouts::workouts_records(&workouts, 1).unwrap(),
            },
            Case {
                stream: "sleep_series",
                records: sleep::sleep_series_records(&sleep, 1).unwrap(),
            },
            Case {
                stream: "sleep_vitals",
                records: vitals,
            },
            Case {
                stream: "sleep_summaries",
                records: summaries,
            },
            Case {
                stream: "ecg_recordings",
                records: heart::ecg_recordings_records(&heart_list_body(), 1).unwrap(),
            },
            Case {
                stream: "ecg_signals",
                records: heart::ecg_signals_records(
                    &json!({"signal": "[1,2,3]", "sampling_frequency": 500, "wearposition": 1,
                            "model": 44, "heart_rate": 82}),
                    1,
                    48,
                )
                .unwrap(),
            },
            Case {
                stream: "devices",
                records: device_records,
            },
            Case {
                stream: "goals",
                records: goals,
            },
        ]
    }

    fn types(schema: &Value) -> Vec<&str> {
        match &schema["type"] {
            Value::String(t) => vec![t.as_str()],
            Value::Array(list) => list.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        }
    }

    /// Type problems of `value` against property schema `schema`; an epoch integer fits a
    /// `date-time` string because the tap formats it from the schema.
    fn problems(value: &Value, schema: &Value, path: &str, out: &mut Vec<String>) {
        let allowed = types(schema);
        let date_time = schema["format"] == "date-time" && allowed.contains(&"string");
        let fits = match value {
            Value::Null => allowed.contains(&"null"),
            Value::Bool(_) => allowed.contains(&"boolean"),
            Value::Number(n) if n.is_i64() || n.is_u64() => {
                allowed.contains(&"integer") || allowed.contains(&"number") || date_time
            }
            Value::Number(_) => allowed.contains(&"number"),
            Value::String(_) => allowed.contains(&"string"),
            Value::Array(_) => allowed.contains(&"array"),
            Value::Object(_) => allowed.contains(&"object"),
        };
        if !fits {
            out.push(format!("{path}: {value} does not fit {allowed:?}"));
        }
        match value {
            Value::Object(map) if schema.get("properties").is_some() => {
                for (key, inner) in map {
                    match schema["properties"].get(key) {
                        Some(prop) => problems(inner, prop, &format!("{path}.{key}"), out),
                        None => out.push(format!("{path}.{key}: not declared")),
                    }
                }
            }
            Value::Array(list) if schema.get("items").is_some() => {
                for (i, inner) in list.iter().enumerate() {
                    problems(inner, &schema["items"], &format!("{path}[{i}]"), out);
                }
            }
            _ => {}
        }
    }

    #[test]
    fn the_fixture_cases_cover_every_stream_but_those_tested_elsewhere() {
        // measures: its typed and lenient readers have their own fixture tests
        // (`streams::measure`); stetho: no capture exists, the simulator's replies are checked
        // against the schemas by the integration tests.
        let elsewhere = ["measures", "stetho_recordings", "stetho_signals"];
        let covered: Vec<&str> = cases().iter().map(|c| c.stream).collect();
        for def in crate::streams::STREAMS {
            assert_eq!(
                covered.contains(&def.name),
                !elsewhere.contains(&def.name),
                "{}: a fixture case, unless tested elsewhere",
                def.name
            );
        }
    }

    #[test]
    fn every_builder_emits_non_null_keys() {
        for case in cases() {
            assert!(!case.records.is_empty(), "{}: no records", case.stream);
            for record in &case.records {
                for key in case.def().keys {
                    assert!(
                        record.get(*key).is_some_and(|v| !v.is_null()),
                        "{}: key {key} missing or null in {record:?}",
                        case.stream
                    );
                }
            }
        }
    }

    #[test]
    fn every_key_is_declared_non_null_in_its_schema() {
        for def in crate::streams::STREAMS {
            let case = Case {
                stream: def.name,
                records: Vec::new(),
            };
            let schema: Value = def.schema();
            assert_eq!(schema["type"], json!("object"), "{}", case.stream);
            for key in case.def().keys {
                let prop = &schema["properties"][*key];
                assert!(
                    prop["type"].is_string(),
                    "{}: key {key} is nullable or missing",
                    case.stream
                );
            }
            let non_null: Vec<&String> = schema["properties"]
                .as_object()
                .unwrap()
                .iter()
                .filter(|(_, prop)| prop["type"].is_string())
                .map(|(name, _)| name)
                .collect();
            let mut keys: Vec<&str> = case.def().keys.to_vec();
            keys.sort_unstable();
            let mut non_null: Vec<&str> = non_null.into_iter().map(String::as_str).collect();
            non_null.sort_unstable();
            assert_eq!(non_null, keys, "{}: only keys may be non-null", case.stream);
        }
    }

    #[test]
    fn every_emitted_field_is_declared_with_a_wide_enough_type() {
        for case in cases() {
            let schema: Value = case.def().schema();
            let mut out = Vec::new();
            for record in &case.records {
                problems(
                    &Value::Object(record.clone()),
                    &schema,
                    case.stream,
                    &mut out,
                );
            }
            out.dedup();
            assert_eq!(out, Vec::<String>::new());
        }
    }

    #[test]
    fn every_schema_property_has_a_description() {
        fn walk(props: &Value, path: &str, out: &mut Vec<String>) {
            for (name, prop) in props.as_object().into_iter().flatten() {
                if prop["description"].as_str().is_none_or(|d| d.is_empty()) {
                    out.push(format!("{path}.{name}"));
                }
                if let Some(inner) = prop.get("properties") {
                    walk(inner, &format!("{path}.{name}"), out);
                }
            }
        }
        let mut out = Vec::new();
        for def in crate::streams::STREAMS {
            let schema: Value = def.schema();
            assert!(schema.get("$schema").is_none() && schema.get("required").is_none());
            walk(&schema["properties"], def.name, &mut out);
        }
        assert_eq!(out, Vec::<String>::new());
    }

    #[test]
    fn data_field_lists_are_declared_in_the_nested_schemas() {
        let lists: [(&str, &str, &[&str]); 3] = [
            (
                include_str!("../../schemas/activity.json"),
                "",
                activity::GETACTIVITY_DATA_FIELDS,
            ),
            (
                include_str!("../../schemas/workouts.json"),
                "data",
                workouts::GETWORKOUTS_DATA_FIELDS,
            ),
            (
                include_str!("../../schemas/sleep_summaries.json"),
                "data",
                sleep::GETSUMMARY_DATA_FIELDS,
            ),
        ];
        for (schema, nested, fields) in lists {
            let schema: Value = serde_json::from_str(schema).unwrap();
            let props = if nested.is_empty() {
                &schema["properties"]
            } else {
                &schema["properties"][nested]["properties"]
            };
            for field in fields {
                assert!(props.get(*field).is_some(), "{field} not declared");
            }
        }
        let intraday: Value =
            serde_json::from_str(include_str!("../../schemas/intraday_activity.json")).unwrap();
        let vitals: Value =
            serde_json::from_str(include_str!("../../schemas/sleep_vitals.json")).unwrap();
        for (schema, fields) in [
            (&intraday, activity::GETINTRADAYACTIVITY_DATA_FIELDS),
            (&vitals, sleep::SLEEP_GET_DATA_FIELDS),
        ] {
            for field in fields {
                assert!(
                    schema["properties"].get(*field).is_some(),
                    "{field} not declared"
                );
            }
        }
    }
}
