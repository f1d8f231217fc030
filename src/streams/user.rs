//! Records of the `devices` (User v2 getdevice) and `goals` (User v2 getgoals) streams, built
//! from a reply's `body`. Pure: no I/O, no clock; session dates stay epoch integers (the tap
//! formats them from the schema).

use serde_json::{Map, Value};

use super::shape::{field, items, kind, nested_object, record_from};
use super::{Record, ReplyError};

/// One `devices` record per item of User v2 getdevice's `body.devices`: the device's fields
/// (`type`, `model` name, possibly `""`, `model_id`, `battery` high/medium/low/unknown,
/// `deviceid`, `hash_deviceid`, `timezone`, `first_session_date`/`last_session_date` epochs or
/// null, partner-only extras) plus `userid`, keyed on `hash_deviceid`, which falls back to
/// `deviceid` when absent, null or empty.
///
/// `devices` may be a list, a single object, `[]`, `{}`, null or absent. Fails when it is a
/// scalar. A device with neither id keeps a null `hash_deviceid`: like any row without its
/// key, it is skipped (and counted) when written.
pub fn devices_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "getdevice";
    Ok(items(body, ACTION, "devices")?
        .into_iter()
        .map(|item| {
            let mut record = record_from(item, userid);
            let key = [item.get("hash_deviceid"), item.get("deviceid")]
                .into_iter()
                .flatten()
                .find(|id| !id.is_null() && id.as_str() != Some(""))
                .cloned()
                .unwrap_or(Value::Null);
            record.insert("hash_deviceid".to_owned(), key);
            record
        })
        .collect())
}

/// The one `goals` record of a User v2 getgoals reply: `userid`, `steps` (per day), `sleep`
/// (seconds) and `weight` {value, unit}, each null when the user has not set it.
///
/// Withings answers `"goals": []` when the user has no goals (aiowithings fixture
/// `no_goals.json`); that, `{}`, null and absent all give one record of nulls. Fails when
/// `goals` is a scalar or a non-empty array.
pub fn goals_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "getgoals";
    let empty = Map::new();
    let goals = match field(body, ACTION, "goals")? {
        None => &empty,
        Some(Value::Object(goals)) => goals,
        Some(Value::Array(list)) if list.is_empty() => &empty,
        Some(other) => {
            return Err(ReplyError(format!(
                "{ACTION}: goals is {}, expected an object",
                kind(other)
            )))
        }
    };
    let mut record = Record::new();
    record.insert("userid".to_owned(), Value::from(userid));
    for key in ["steps", "sleep", "weight"] {
        record.insert(key.to_owned(), Value::Null);
    }
    record.extend(goals.iter().map(|(k, v)| (k.clone(), v.clone())));
    record.insert("userid".to_owned(), Value::from(userid));
    nested_object(&mut record, ACTION, "goals", "weight")?;
    Ok(vec![record])
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    const DEVICE: &str = include_str!("../../tests/fixtures/aiowithings/device.json");
    const NEW_DEVICE: &str = include_str!("../../tests/fixtures/aiowithings/new_device.json");
    const GOALS: &str = include_str!("../../tests/fixtures/aiowithings/goals.json");
    const GOALS_1: &str = include_str!("../../tests/fixtures/aiowithings/goals_1.json");
    const GOALS_2: &str = include_str!("../../tests/fixtures/aiowithings/goals_2.json");
    const NO_GOALS: &str = include_str!("../../tests/fixtures/aiowithings/no_goals.json");
    const HASH: &str = "f998be4b9ccc9e136fd8cd8e8e344c31ec3b271d";

    fn body(fixture: &str) -> Value {
        let envelope: Value = serde_json::from_str(fixture).unwrap();
        envelope["body"].clone()
    }

    fn goals(body: &Value) -> Value {
        let records = goals_records(body, 6).unwrap();
        assert_eq!(records.len(), 1);
        Value::Object(records[0].clone())
    }

    #[test]
    fn device_fixtures_give_one_record_per_device() {
        let records = devices_records(&body(DEVICE), 6).unwrap();
        assert_eq!(records.len(), 5);
        assert_eq!(
            Value::Object(records[0].clone()),
            json!({"type": "Scale", "battery": "high", "model": "Body+", "model_id": 5,
                   "timezone": "Europe/Amsterdam", "first_session_date": null,
                   "last_session_date": 1_693_867_179, "deviceid": HASH,
                   "hash_deviceid": HASH, "userid": 6})
        );
        assert_eq!(records[2]["battery"], json!("unknown"));
        assert_eq!(records[4]["model"], json!(""));
        let new = devices_records(&body(NEW_DEVICE), 6).unwrap();
        assert_eq!(new.len(), 1);
        assert_eq!(new[0]["model_id"], json!(696_969));
        assert_eq!(new[0]["type"], json!("Futuristic device"));
    }

    #[test]
    fn devices_key_falls_back_to_deviceid() {
        let cases = [
            (json!({"hash_deviceid": "h", "deviceid": "d"}), "h"),
            (json!({"deviceid": "d"}), "d"),
            (json!({"hash_deviceid": null, "deviceid": "d"}), "d"),
            (json!({"hash_deviceid": "", "deviceid": "d"}), "d"),
        ];
        for (device, want) in cases {
            let records = devices_records(&json!({"devices": [device.clone()]}), 1).unwrap();
            assert_eq!(records[0]["hash_deviceid"], json!(want), "{device}");
        }
        // Neither id: the row has no key (the output plan skips and counts it).
        let keyless = devices_records(&json!({"devices": [{"type": "Scale"}]}), 1).unwrap();
        assert_eq!(keyless[0]["hash_deviceid"], Value::Null);
    }

    #[test]
    fn devices_accepts_every_list_shape() {
        let device = json!({"hash_deviceid": "h"});
        let cases = [
            (json!({"devices": [device.clone()]}), 1),
            (json!({"devices": device.clone()}), 1),
            (json!({"devices": []}), 0),
            (json!({"devices": {}}), 0),
            (json!({"devices": null}), 0),
            (json!({}), 0),
        ];
        for (body, want) in cases {
            assert_eq!(devices_records(&body, 1).unwrap().len(), want, "{body}");
        }
        assert_eq!(
            devices_records(&json!({"devices": "Scale"}), 1),
            Err(ReplyError(
                "getdevice: devices is a string, expected a list of objects".to_owned()
            ))
        );
    }

    #[test]
    fn goals_fixtures_give_exactly_one_record() {
        let weight = json!({"value": 70500, "unit": -3});
        let cases = [
            (
                GOALS,
                json!({"userid": 6, "steps": 10000, "sleep": 28800, "weight": weight}),
            ),
            (
                GOALS_1,
                json!({"userid": 6, "steps": null, "sleep": null, "weight": weight}),
            ),
            (
                GOALS_2,
                json!({"userid": 6, "steps": 10000, "sleep": 28800, "weight": null}),
            ),
            (
                NO_GOALS,
                json!({"userid": 6, "steps": null, "sleep": null, "weight": null}),
            ),
        ];
        for (fixture, want) in cases {
            assert_eq!(goals(&body(fixture)), want);
        }
    }

    #[test]
    fn goals_accepts_every_empty_shape() {
        let nulls = json!({"userid": 6, "steps": null, "sleep": null, "weight": null});
        for body in [
            json!({"goals": []}),
            json!({"goals": {}}),
            json!({"goals": null}),
            json!({}),
            json!(null),
        ] {
            assert_eq!(goals(&body), nulls, "{body}");
        }
        assert_eq!(
            goals(&json!({"goals": {"weight": []}})),
            json!({"userid": 6, "steps": null, "sleep": null, "weight": {}})
        );
    }

    #[test]
    fn goals_rejects_impossible_shapes() {
        let cases = [
            (
                json!({"goals": "x"}),
                "getgoals: goals is a string, expected an object",
            ),
            (
                json!({"goals": [1]}),
                "getgoals: goals is an array, expected an object",
            ),
            (
                json!({"goals": {"weight": 70}}),
                "getgoals: goals.weight is a number, expected an object",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(goals_records(&body, 1), Err(ReplyError(want.to_owned())));
        }
    }
}
