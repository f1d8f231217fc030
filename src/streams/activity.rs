//! Records of the `activity` (Measure v2 getactivity) and `intraday_activity` (Measure v2
//! getintradayactivity) streams, built from a reply's `body`. Pure: no I/O, no clock; epoch
//! values stay integers (the tap formats them from the schema).

use serde_json::Value;

use super::shape::{entries, epoch_key, items, kind, record_from};
use super::{Record, ReplyError};

/// Every `data_fields` value of Measure v2 getactivity (Withings API reference,
/// measurev2-getactivity); fields outside `data_fields` are only guaranteed when requested.
pub const GETACTIVITY_DATA_FIELDS: &[&str] = &[
    "steps",
    "distance",
    "elevation",
    "soft",
    "moderate",
    "intense",
    "active",
    "calories",
    "totalcalories",
    "hr_average",
    "hr_min",
    "hr_max",
    "hr_zone_0",
    "hr_zone_1",
    "hr_zone_2",
    "hr_zone_3",
];

/// Every `data_fields` value of Measure v2 getintradayactivity (Withings API reference,
/// measurev2-getintradayactivity).
pub const GETINTRADAYACTIVITY_DATA_FIELDS: &[&str] = &[
    "steps",
    "elevation",
    "calories",
    "distance",
    "stroke",
    "pool_lap",
    "duration",
    "heart_rate",
    "spo2_auto",
    "rmssd",
    "sdnn1",
    "hrv_quality",
    "core_body_temperature",
    "rr",
    "chest_movement_rate",
];

/// One `activity` record per item of getactivity's `body.activities`: the item's fields plus
/// `userid`, keyed on `date` (the local `YYYY-MM-DD` day).
///
/// `activities` may be a list, a single object (one day), `[]`, `{}`, null or absent. Fails when
/// it is a scalar. An item without `date` is kept without it: the tap skips it when emitting.
/// A `data_fields` value (all numeric) sent as `false`, as Withings does for a zero (`intense`),
/// becomes 0.
pub fn activity_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "getactivity";
    Ok(items(body, ACTION, "activities")?
        .into_iter()
        .map(|item| {
            let mut record = record_from(item, userid);
            for field in GETACTIVITY_DATA_FIELDS {
                if let Some(v @ Value::Bool(false)) = record.get_mut(*field) {
                    *v = Value::from(0);
                }
            }
            record
        })
        .collect())
}

/// One `intraday_activity` record per entry of getintradayactivity's `body.series`, an object
/// keyed by epoch-second strings: `timestamp` (the key, as an integer) plus the sample's fields
/// (`deviceid`, `model`, `model_id`, the data_fields values) and `userid`, in timestamp order.
///
/// Null samples are skipped; `series` may be `{}`, `[]`, null or absent. Fails when `series`
/// is not a map, a key is not an integer epoch or a sample is not an object.
pub fn intraday_activity_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "getintradayactivity";
    let mut records = Vec::new();
    for (key, sample) in entries(body, ACTION, "series")? {
        let timestamp = epoch_key(key, ACTION, "series")?;
        let sample = match sample {
            Value::Object(sample) => sample,
            Value::Null => continue,
            other => {
                return Err(ReplyError(format!(
                    "{ACTION}: series[{key:?}] is {}, expected an object",
                    kind(other)
                )))
            }
        };
        let mut record = record_from(sample, userid);
        record.insert("timestamp".to_owned(), Value::from(timestamp));
        records.push((timestamp, record));
    }
    records.sort_by_key(|(timestamp, _)| *timestamp);
    Ok(records.into_iter().map(|(_, record)| record).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    const ACTIVITY: &str = include_str!("../../tests/fixtures/aiowithings/activity.json");

    fn body(fixture: &str) -> Value {
        let envelope: Value = serde_json::from_str(fixture).unwrap();
        envelope["body"].clone()
    }

    #[test]
    fn activity_fixture_gives_one_record_per_day() {
        let records = activity_records(&body(ACTIVITY), 42).unwrap();
        assert_eq!(records.len(), 2);
        let first = &records[0];
        assert_eq!(first["userid"], json!(42));
        assert_eq!(first["date"], json!("2023-10-20"));
        assert_eq!(first["steps"], json!(1209));
        assert_eq!(first["distance"], json!(1028.559));
        assert_eq!(first["modified"], json!(1_697_884_856));
        assert_eq!(first["modelid"], json!(1055));
        assert_eq!(first["hr_zone_3"], json!(400));
        assert_eq!(first["deviceid"], Value::Null);
        let second = &records[1];
        assert_eq!(second["date"], json!("2023-10-21"));
        assert_eq!(second["totalcalories"], json!(2357.149));
        assert!(second.get("hr_average").is_none());
    }

    #[test]
    fn activity_reads_false_as_zero_in_numeric_fields() {
        let body = json!({"activities": [{"date": "2024-01-02", "intense": false, "soft": 3,
                                           "is_tracker": false}]});
        let records = activity_records(&body, 1).unwrap();
        assert_eq!(records[0]["intense"], json!(0));
        assert_eq!(records[0]["soft"], json!(3));
        assert_eq!(records[0]["is_tracker"], json!(false));
    }

    #[test]
    fn activity_accepts_every_list_shape() {
        let day = json!({"date": "2024-01-02", "steps": 5});
        let cases = [
            (json!({"activities": [day.clone()], "more": false}), 1),
            (json!({"activities": day.clone()}), 1),
            (json!({"activities": []}), 0),
            (json!({"activities": {}}), 0),
            (json!({"activities": null}), 0),
            (json!({"more": false, "offset": 0}), 0),
        ];
        for (body, want) in cases {
            assert_eq!(activity_records(&body, 1).unwrap().len(), want, "{body}");
        }
    }

    #[test]
    fn activity_rejects_impossible_shapes() {
        let cases = [(
            json!({"activities": "2024-01-02"}),
            "getactivity: activities is a string, expected a list of objects",
        )];
        for (body, want) in cases {
            assert_eq!(activity_records(&body, 1), Err(ReplyError(want.to_owned())));
        }
    }

    #[test]
    fn intraday_gives_one_record_per_epoch_key_in_time_order() {
        let body = json!({"series": {
            "1700000120": {"deviceid": null, "model": null, "model_id": 1057, "steps": 11,
                           "calories": 5.274, "duration": 2},
            "1700000060": {"deviceid": "abc", "model": "ScanWatch", "model_id": 93,
                           "heart_rate": 61, "spo2_auto": 97.5},
            "1700000180": null
        }});
        let records = intraday_activity_records(&body, 7).unwrap();
        let got: Vec<Value> = records.into_iter().map(Value::Object).collect();
        assert_eq!(
            got,
            vec![
                json!({"deviceid": "abc", "model": "ScanWatch", "model_id": 93, "heart_rate": 61,
                       "spo2_auto": 97.5, "userid": 7, "timestamp": 1_700_000_060}),
                json!({"deviceid": null, "model": null, "model_id": 1057, "steps": 11,
                       "calories": 5.274, "duration": 2, "userid": 7, "timestamp": 1_700_000_120}),
            ]
        );
    }

    #[test]
    fn intraday_accepts_empty_shapes_and_rejects_impossible_ones() {
        for body in [
            json!({}),
            json!({"series": []}),
            json!({"series": {}}),
            json!(null),
        ] {
            assert_eq!(intraday_activity_records(&body, 1), Ok(vec![]), "{body}");
        }
        let cases = [
            (
                json!({"series": "x"}),
                "getintradayactivity: series is a string, expected a map",
            ),
            (
                json!({"series": [{"steps": 1}]}),
                "getintradayactivity: series is an array, expected a map",
            ),
            (
                json!({"series": {"1700000000": 5}}),
                "getintradayactivity: series[\"1700000000\"] is a number, expected an object",
            ),
            (
                json!({"series": {"noon": {"steps": 1}}}),
                "getintradayactivity: series has the key \"noon\", expected epoch seconds",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                intraday_activity_records(&body, 1),
                Err(ReplyError(want.to_owned()))
            );
        }
    }

    #[test]
    fn data_field_lists_have_no_duplicates() {
        for list in [GETACTIVITY_DATA_FIELDS, GETINTRADAYACTIVITY_DATA_FIELDS] {
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len());
        }
        assert_eq!(GETACTIVITY_DATA_FIELDS.len(), 16);
        assert_eq!(GETINTRADAYACTIVITY_DATA_FIELDS.len(), 15);
    }
}
