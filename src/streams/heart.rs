//! Records of the `ecg_recordings` (Heart v2 list) and `ecg_signals` (Heart v2 get) streams,
//! built from a reply's `body`. Pure: no I/O, no clock; `timestamp`/`modified` stay epoch
//! integers (the tap formats them from the schema).
//!
//! Heart v2 has no `data_fields` parameter, so this module exports no field list.

use serde_json::Value;

use super::shape::{field, int_array, items, kind, nested_object, record_from};
use super::{Record, ReplyError};

/// One `ecg_recordings` record per item of Heart v2 list's `body.series`: the recording's fields
/// (`deviceid`, `model` 44 BPM Core / 91 Move ECG, nested `ecg` {signalid, afib},
/// `bloodpressure` {diastole, systole} for BPM Core, `stetho` {signalid, vhd}, `heart_rate`,
/// `timestamp`, `modified`) plus `userid` and a top-level `signalid` copied from `ecg.signalid`,
/// the key (and the parameter of Heart v2 get).
///
/// `series` may be a list, a single object, `[]`, `{}`, null or absent; nested `[]` becomes
/// `{}`. Fails when `series` or a nested object is a scalar or an item has no `ecg.signalid`.
pub fn ecg_recordings_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "heart list";
    items(body, ACTION, "series")?
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("series[{i}]");
            let mut record = record_from(item, userid);
            for key in ["ecg", "bloodpressure", "stetho"] {
                nested_object(&mut record, ACTION, &path, key)?;
            }
            let signalid = record
                .get("ecg")
                .and_then(|ecg| ecg.get("signalid"))
                .filter(|id| !id.is_null())
                .cloned()
                .ok_or_else(|| ReplyError(format!("{ACTION}: {path} has no ecg.signalid")))?;
            record.insert("signalid".to_owned(), signalid);
            Ok(record)
        })
        .collect()
}

/// The one `ecg_signals` record of a Heart v2 get reply for `signalid`: `signal` (samples in µV
/// as an integer array), `sampling_frequency` (Hz), `wearposition`, `model`, `heart_rate`, plus
/// `userid` and `signalid`.
///
/// `signal` is normalised to an integer array from a JSON array, a JSON-array string (the
/// Withings doc example sends `"[1,2,3]"`) or a comma-separated string; absent or null gives `[]`.
/// Fails when the body is not an object or `signal` holds non-integers.
pub fn ecg_signals_records(
    body: &Value,
    userid: i64,
    signalid: i64,
) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "heart get";
    let mut record = match body {
        Value::Object(map) => map.clone(),
        Value::Null => Record::new(),
        Value::Array(list) if list.is_empty() => Record::new(),
        other => {
            return Err(ReplyError(format!(
                "{ACTION}: body is {}, expected an object",
                kind(other)
            )))
        }
    };
    let signal = int_array(field(body, ACTION, "signal")?, ACTION, "signal")?;
    record.insert("signal".to_owned(), Value::from(signal));
    record.insert("userid".to_owned(), Value::from(userid));
    record.insert("signalid".to_owned(), Value::from(signalid));
    Ok(vec![record])
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn objects(records: Vec<Record>) -> Vec<Value> {
        records.into_iter().map(Value::Object).collect()
    }

    #[test]
    fn heart_list_copies_ecg_signalid_to_the_top() {
        let body = json!({"series": [
            {"deviceid": "d1", "model": 44, "ecg": {"signalid": 48, "afib": 0},
             "bloodpressure": {"diastole": 80, "systole": 120}, "heart_rate": 64,
             "timestamp": 1_700_000_000, "modified": 1_700_000_100},
            {"deviceid": "d2", "model": 91, "ecg": {"signalid": 49, "afib": 2},
             "heart_rate": 71, "timestamp": 1_700_001_000}
        ], "more": false, "offset": 0});
        assert_eq!(
            objects(ecg_recordings_records(&body, 8).unwrap()),
            vec![
                json!({"deviceid": "d1", "model": 44, "ecg": {"signalid": 48, "afib": 0},
                       "bloodpressure": {"diastole": 80, "systole": 120}, "heart_rate": 64,
                       "timestamp": 1_700_000_000, "modified": 1_700_000_100,
                       "userid": 8, "signalid": 48}),
                json!({"deviceid": "d2", "model": 91, "ecg": {"signalid": 49, "afib": 2},
                       "heart_rate": 71, "timestamp": 1_700_001_000, "userid": 8, "signalid": 49}),
            ]
        );
    }

    #[test]
    fn heart_list_accepts_every_list_shape() {
        let item = json!({"ecg": {"signalid": 1, "afib": 1}, "bloodpressure": []});
        let cases = [
            (json!({"series": [item.clone()]}), 1),
            (json!({"series": item.clone()}), 1),
            (json!({"series": []}), 0),
            (json!({"series": {}}), 0),
            (json!({"series": null}), 0),
            (json!({}), 0),
        ];
        for (body, want) in cases {
            assert_eq!(
                ecg_recordings_records(&body, 1).unwrap().len(),
                want,
                "{body}"
            );
        }
        let records = ecg_recordings_records(&json!({"series": item}), 1).unwrap();
        assert_eq!(records[0]["bloodpressure"], json!({}));
    }

    #[test]
    fn heart_list_rejects_impossible_shapes() {
        let cases = [
            (
                json!({"series": "x"}),
                "heart list: series is a string, expected a list of objects",
            ),
            (
                json!({"series": [{"model": 44}]}),
                "heart list: series[0] has no ecg.signalid",
            ),
            (
                json!({"series": [{"ecg": {"afib": 1}}]}),
                "heart list: series[0] has no ecg.signalid",
            ),
            (
                json!({"series": [{"ecg": 5}]}),
                "heart list: series[0].ecg is a number, expected an object",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                ecg_recordings_records(&body, 1),
                Err(ReplyError(want.to_owned()))
            );
        }
    }

    #[test]
    fn heart_get_normalises_signal_to_integers() {
        let cases = [
            (
                json!({"signal": [1, -2, 3], "sampling_frequency": 500}),
                json!([1, -2, 3]),
            ),
            (
                json!({"signal": "[1,2,3,4,5,6,7,8,9]"}),
                json!([1, 2, 3, 4, 5, 6, 7, 8, 9]),
            ),
            (json!({"signal": "10,-20,30"}), json!([10, -20, 30])),
            (json!({"signal": []}), json!([])),
            (json!({"signal": null}), json!([])),
            (json!({}), json!([])),
            (json!([]), json!([])),
        ];
        for (body, want) in cases {
            let records = ecg_signals_records(&body, 2, 48).unwrap();
            assert_eq!(records.len(), 1);
            assert_eq!(records[0]["signal"], want, "{body}");
            assert_eq!(records[0]["signalid"], json!(48));
            assert_eq!(records[0]["userid"], json!(2));
        }
    }

    #[test]
    fn heart_get_keeps_the_documented_fields() {
        let body = json!({"signal": [5, 6], "sampling_frequency": 300, "wearposition": 1,
                          "model": 91, "heart_rate": 72});
        assert_eq!(
            objects(ecg_signals_records(&body, 3, 77).unwrap()),
            vec![
                json!({"signal": [5, 6], "sampling_frequency": 300, "wearposition": 1,
                        "model": 91, "heart_rate": 72, "userid": 3, "signalid": 77})
            ]
        );
    }

    #[test]
    fn heart_get_rejects_impossible_shapes() {
        let cases = [
            (
                json!({"signal": 5}),
                "heart get: signal is a number, expected integers",
            ),
            (
                json!({"signal": "1,a"}),
                "heart get: signal holds \"a\", expected integers",
            ),
            (
                json!({"signal": [1, 2.5]}),
                "heart get: signal[1] is a number, expected integers",
            ),
            (
                json!("x"),
                "heart get: body is a string, expected an object",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                ecg_signals_records(&body, 1, 1),
                Err(ReplyError(want.to_owned()))
            );
        }
    }
}
