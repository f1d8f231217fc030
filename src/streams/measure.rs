//! `measures`: getmeas replies (`body.measuregrps[].measures[]`) → one record per measure with
//! its group's fields alongside. Pure.

use serde_json::{Map, Value};

use super::{Record, ReplyError};

/// Group fields copied onto every measure record, verbatim.
const GROUP_FIELDS: &[&str] = &[
    "grpid",
    "attrib",
    "date",
    "created",
    "modified",
    "category",
    "deviceid",
    "hash_deviceid",
    "model",
    "comment",
    "brand",
    "devtype",
];

/// Measure fields copied verbatim (besides value/unit/type/position, handled apart).
const MEASURE_FIELDS: &[&str] = &["algo", "fm", "algo_params", "apppfmid", "appliver"];

/// Readable names of the measure type codes Withings documents (fact sheet §6.1).
pub fn type_name(code: i64) -> Option<&'static str> {
    Some(match code {
        1 => "weight",
        4 => "height",
        5 => "fat_free_mass",
        6 => "fat_ratio",
        8 => "fat_mass_weight",
        9 => "diastolic_blood_pressure",
        10 => "systolic_blood_pressure",
        11 => "heart_pulse",
        12 => "temperature",
        54 => "spo2",
        71 => "body_temperature",
        73 => "skin_temperature",
        76 => "muscle_mass",
        77 => "hydration",
        88 => "bone_mass",
        91 => "pulse_wave_velocity",
        123 => "vo2_max",
        130 => "atrial_fibrillation_result",
        135 => "qrs_interval",
        136 => "pr_interval",
        137 => "qt_interval",
        138 => "corrected_qt_interval",
        139 => "atrial_fibrillation_result_ppg",
        155 => "vascular_age",
        158 => "nerve_health_score_left_foot",
        159 => "nerve_health_score_right_foot",
        167 => "nerve_health_score_feet",
        168 => "extracellular_water",
        169 => "intracellular_water",
        170 => "visceral_fat",
        173 => "fat_free_mass_segment",
        174 => "fat_mass_segment",
        175 => "muscle_mass_segment",
        196 => "electrodermal_activity_feet",
        197 => "electrodermal_activity_left_foot",
        198 => "electrodermal_activity_right_foot",
        226 => "basal_metabolic_rate",
        227 => "metabolic_age",
        229 => "electrochemical_skin_conductance",
        _ => return None,
    })
}

/// `raw × 10^unit` as the double nearest to the exact decimal, so 7235 × 10^-2 is 72.35
/// (not 72.35000000000001, which `7235.0 * 0.01` gives).
pub fn scale(raw: i64, unit: i64) -> Option<f64> {
    if !(-30..=30).contains(&unit) {
        return None;
    }
    let digits = raw.unsigned_abs().to_string();
    let sign = if raw < 0 { "-" } else { "" };
    let text = if unit >= 0 {
        format!("{sign}{digits}{}", "0".repeat(unit as usize))
    } else {
        let shift = unit.unsigned_abs() as usize;
        let padded = format!("{digits:0>width$}", width = shift + 1);
        let (int, frac) = padded.split_at(padded.len() - shift);
        format!("{sign}{int}.{frac}")
    };
    text.parse::<f64>().ok().filter(|v| v.is_finite())
}

/// Integer view of a reply value that may arrive as a number or a numeric string.
pub fn lenient_i64(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Turns one getmeas `body` into measure records. `measuregrps` may be absent or empty (no
/// data); a group without an integer `grpid` or a measure without an integer `type` cannot
/// be keyed: the reply is refused (no data is dropped silently). The second vector is kept
/// for callers that log notes about a page.
pub fn measures_records(
    body: &Value,
    userid: i64,
) -> Result<(Vec<Record>, Vec<String>), ReplyError> {
    let groups = match body.get("measuregrps") {
        None | Some(Value::Null) => return Ok((Vec::new(), Vec::new())),
        Some(Value::Array(groups)) => groups,
        Some(Value::Object(o)) if o.is_empty() => return Ok((Vec::new(), Vec::new())),
        Some(_) => {
            return Err(ReplyError(
                "getmeas reply: `measuregrps` is not a list".into(),
            ))
        }
    };
    let timezone = body.get("timezone").cloned().unwrap_or(Value::Null);
    let mut records = Vec::new();
    let mut skipped = Vec::new();
    for group in groups {
        let Some(g) = group.as_object() else {
            skipped.push("a measure group that is not an object".to_string());
            continue;
        };
        let Some(grpid) = g.get("grpid").and_then(lenient_i64) else {
            skipped.push("a measure group without an integer grpid".to_string());
            continue;
        };
        let measures: &[Value] = match g.get("measures") {
            Some(Value::Array(m)) => m,
            _ => &[],
        };
        for measure in measures {
            let Some(m) = measure.as_object() else {
                skipped.push(format!("group {grpid}: a measure that is not an object"));
                continue;
            };
            let Some(kind) = m.get("type").and_then(lenient_i64) else {
                skipped.push(format!("group {grpid}: a measure without an integer type"));
                continue;
            };
            records.push(measure_record(userid, grpid, kind, g, m, &timezone));
        }
    }
    if let Some(first) = skipped.first() {
        return Err(ReplyError(format!("getmeas reply: {first}")));
    }
    Ok((records, skipped))
}

fn measure_record(
    userid: i64,
    grpid: i64,
    kind: i64,
    group: &Map<String, Value>,
    measure: &Map<String, Value>,
    timezone: &Value,
) -> Record {
    let mut r = Record::new();
    r.insert("userid".into(), userid.into());
    r.insert("grpid".into(), grpid.into());
    r.insert("type".into(), kind.into());
    let position = measure.get("position").and_then(lenient_i64).unwrap_or(-1);
    r.insert("position".into(), position.into());
    r.insert(
        "type_name".into(),
        type_name(kind).map_or(Value::Null, Value::from),
    );
    let raw = measure.get("value").and_then(lenient_i64);
    let unit = measure.get("unit").and_then(lenient_i64);
    let value = match (raw, unit) {
        (Some(raw), Some(unit)) => scale(raw, unit).map_or(Value::Null, Value::from),
        _ => Value::Null,
    };
    r.insert("value".into(), value);
    r.insert("raw_value".into(), raw.map_or(Value::Null, Value::from));
    r.insert("unit".into(), unit.map_or(Value::Null, Value::from));
    for field in MEASURE_FIELDS {
        if let Some(v) = measure.get(*field) {
            r.insert((*field).into(), v.clone());
        }
    }
    for field in GROUP_FIELDS {
        if *field == "grpid" {
            continue;
        }
        if let Some(v) = group.get(*field) {
            r.insert((*field).into(), v.clone());
        }
    }
    let modelid = group
        .get("modelid")
        .or_else(|| group.get("model_id"))
        .cloned()
        .unwrap_or(Value::Null);
    r.insert("modelid".into(), modelid);
    r.insert("timezone".into(), timezone.clone());
    r
}

/// The group's change time for bookmarks: `modified`, else `created`, else `date` (older
/// replies lack `modified`).
pub fn change_time(record: &Record) -> Option<i64> {
    ["modified", "created", "date"]
        .iter()
        .find_map(|f| record.get(*f).and_then(lenient_i64))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn scaling_is_exact_to_the_decimal() {
        let cases = [
            (7235, -2, 72.35),
            (72350, -3, 72.35),
            (723500, -4, 72.35),
            (5, -3, 0.005),
            (-125, -1, -12.5),
            (120, 0, 120.0),
            (12, 2, 1200.0),
            (0, -2, 0.0),
            (1, -10, 1e-10),
        ];
        for (raw, unit, expected) in cases {
            let got = scale(raw, unit).unwrap();
            assert_eq!(got, expected, "{raw}e{unit}");
            assert_eq!(
                serde_json::to_string(&got).unwrap(),
                serde_json::to_string(&expected).unwrap()
            );
        }
        assert_eq!(
            serde_json::to_string(&scale(7235, -2).unwrap()).unwrap(),
            "72.35"
        );
        assert_eq!(scale(1, 400), None);
    }

    #[test]
    fn one_record_per_measure_with_group_fields_alongside() {
        let body = json!({
            "updatetime": 1700000000, "timezone": "Europe/Paris",
            "measuregrps": [{
                "grpid": 10, "attrib": 0, "date": 1699990000, "created": 1699990100, "modified": 1699990200,
                "category": 1, "deviceid": "d1", "hash_deviceid": "d1", "modelid": 6, "model": "Body Cardio",
                "comment": null,
                "measures": [
                    {"value": 7235, "type": 1, "unit": -2, "algo": 3, "fm": 131},
                    {"value": 151, "type": 173, "unit": -1, "position": 2},
                    {"value": 152, "type": 173, "unit": -1, "position": 3},
                    {"value": 5, "type": 9999, "unit": 0}
                ]
            }]
        });
        let (records, skipped) = measures_records(&body, 42).unwrap();
        assert!(skipped.is_empty());
        assert_eq!(records.len(), 4);
        assert_eq!(
            Value::Object(records[0].clone()),
            json!({
                "userid": 42, "grpid": 10, "type": 1, "position": -1, "type_name": "weight", "value": 72.35,
                "raw_value": 7235, "unit": -2, "algo": 3, "fm": 131, "attrib": 0, "date": 1699990000,
                "created": 1699990100, "modified": 1699990200, "category": 1, "deviceid": "d1",
                "hash_deviceid": "d1", "model": "Body Cardio", "comment": null, "modelid": 6,
                "timezone": "Europe/Paris"
            })
        );
        let positions: Vec<_> = records
            .iter()
            .map(|r| (r["type"].clone(), r["position"].clone()))
            .collect();
        assert_eq!(
            positions[1..3],
            [(json!(173), json!(2)), (json!(173), json!(3))]
        );
        assert_eq!(records[3]["type_name"], Value::Null);
    }

    #[test]
    fn model_id_spelling_and_string_numbers_are_accepted() {
        let body = json!({"measuregrps": [{"grpid": "11", "model_id": 45, "measures": [{"value": "120", "type": "10", "unit": 0}]}]});
        let (records, _) = measures_records(&body, 1).unwrap();
        assert_eq!(records[0]["grpid"], json!(11));
        assert_eq!(records[0]["modelid"], json!(45));
        assert_eq!(records[0]["value"], json!(120.0));
    }

    #[test]
    fn empty_and_odd_replies() {
        for body in [
            json!({}),
            json!({"measuregrps": []}),
            json!({"measuregrps": null}),
            json!({"measuregrps": {}}),
        ] {
            assert_eq!(measures_records(&body, 1).unwrap().0.len(), 0, "{body}");
        }
        assert!(measures_records(&json!({"measuregrps": "x"}), 1).is_err());
        for groups in [
            json!([{"measures": []}]),
            json!([3]),
            json!([{"grpid": 1, "measures": [{"value": 1}]}]),
        ] {
            let err = measures_records(&json!({ "measuregrps": groups }), 1).unwrap_err();
            assert!(err.0.starts_with("getmeas reply: "), "{err}");
        }
    }

    #[test]
    fn every_captured_getmeas_reply_parses_without_loss() {
        let list: Value = serde_json::from_str(include_str!(
            "../../tests/fixtures/aiowithings/measurement_list.json"
        ))
        .unwrap();
        let total: usize = list
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["measures"].as_array().unwrap().len())
            .sum();
        let (records, skipped) = measures_records(&json!({"measuregrps": list}), 7).unwrap();
        assert_eq!(records.len(), total);
        assert!(skipped.is_empty());
        let mut keys: Vec<_> = records
            .iter()
            .map(|r| {
                (
                    r["grpid"].clone().to_string(),
                    r["type"].to_string(),
                    r["position"].to_string(),
                )
            })
            .collect();
        keys.sort();
        keys.dedup();
        assert_eq!(keys.len(), total, "keys are unique");
    }
}
