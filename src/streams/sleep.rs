//! Records of the `sleep_series` and `sleep_vitals` streams (Sleep v2 get) and of the
//! `sleep_summaries` stream (Sleep v2 getsummary), built from a reply's `body`. Pure: no I/O, no
//! clock; epoch values stay integers (the tap formats them from the schema).

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::shape::{epoch_key, field, items, map_entries, nested_object, record_from};
use super::{Record, ReplyError};

/// Every `data_fields` value of Sleep v2 get (Withings API reference, sleepv2-get). Each is an
/// epoch-second → value map on a segment, present only when requested.
pub const SLEEP_GET_DATA_FIELDS: &[&str] = &[
    "hr",
    "rr",
    "snoring",
    "sdnn_1",
    "rmssd",
    "hrv_quality",
    "mvt_score",
    "chest_movement_rate",
    "withings_index",
    "breathing_sounds",
];

/// Every `data_fields` value of Sleep v2 getsummary (Withings API reference,
/// sleepv2-getsummary), including the deprecated `durationtosleep` and `durationtowakeup`.
/// Without `data_fields` only a default subset comes back (no HR, RR, score or snoring).
pub const GETSUMMARY_DATA_FIELDS: &[&str] = &[
    "total_timeinbed",
    "total_sleep_time",
    "asleepduration",
    "lightsleepduration",
    "remsleepduration",
    "deepsleepduration",
    "sleep_efficiency",
    "sleep_latency",
    "wakeup_latency",
    "wakeupduration",
    "wakeupcount",
    "waso",
    "nb_rem_episodes",
    "breathing_disturbances_intensity",
    "apnea_hypopnea_index",
    "withings_index",
    "durationtosleep",
    "durationtowakeup",
    "out_of_bed_count",
    "hr_average",
    "hr_min",
    "hr_max",
    "rr_average",
    "rr_min",
    "rr_max",
    "breathing_quality_assessment",
    "snoring",
    "snoringepisodecount",
    "sleep_score",
    "night_events",
    "mvt_score_avg",
    "mvt_active_duration",
    "rmssd_start_avg",
    "rmssd_end_avg",
    "chest_movement_rate_wellness_average",
    "chest_movement_rate_wellness_min",
    "chest_movement_rate_wellness_max",
    "breathing_sounds",
    "breathing_sounds_episode_count",
    "chest_movement_rate_average",
    "chest_movement_rate_min",
    "chest_movement_rate_max",
    "core_body_temperature_min",
    "core_body_temperature_max",
    "core_body_temperature_avg",
    "core_body_temperature_status",
];

const GET: &str = "sleep get";

/// The `device` key of a Sleep v2 get segment: its `hash_deviceid` when present and non-empty,
/// else `"model_id:<n>"`, else `"unknown"`. Withings documents `hash_deviceid` on every segment,
/// but the key column must never be null.
pub fn segment_device(segment: &Map<String, Value>) -> String {
    match segment.get("hash_deviceid") {
        Some(Value::String(hash)) if !hash.is_empty() => return hash.clone(),
        _ => {}
    }
    match segment.get("model_id") {
        Some(Value::Number(n)) => format!("model_id:{n}"),
        Some(Value::String(id)) if !id.is_empty() => format!("model_id:{id}"),
        _ => "unknown".to_owned(),
    }
}

/// One `sleep_series` record per segment of Sleep v2 get's `body.series`: `startdate`,
/// `enddate`, `state`, `model` (a string here), `model_id`, `hash_deviceid`, `device` (see
/// [`segment_device`]), `body_model` (the reply's `body.model`: 16 tracker, 32 sleep monitor) and
/// `userid`, keyed on (`startdate`, `device`). The per-minute metric maps go to
/// [`sleep_vitals_records`] instead.
///
/// `series` may be a list, a single object, `[]`, `{}`, null or absent. Fails when it is a scalar
/// (a segment without `startdate` is kept without it: the tap skips it when emitting).
pub fn sleep_series_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    let body_model = field(body, GET, "model")?.cloned().unwrap_or(Value::Null);
    Ok(items(body, GET, "series")?
        .into_iter()
        .map(|segment| {
            let mut record = record_from(segment, userid);
            for metric in SLEEP_GET_DATA_FIELDS {
                record.remove(*metric);
            }
            record.insert("device".to_owned(), Value::from(segment_device(segment)));
            record.insert("body_model".to_owned(), body_model.clone());
            record
        })
        .collect())
}

/// `sleep_vitals` records from Sleep v2 get: the metric maps (`hr`, `rr`, `snoring`, ... see
/// [`SLEEP_GET_DATA_FIELDS`]) of all segments merged into one row per (`device`, `timestamp`),
/// a column per metric, plus `hash_deviceid`, `model_id` and `userid`, in timestamp order.
///
/// A map may be `{}`, `[]`, null or absent. Fails when `series` or a metric map is a scalar,
/// or a map key is not an integer epoch.
pub fn sleep_vitals_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    let mut rows: BTreeMap<(i64, String), Record> = BTreeMap::new();
    for (i, segment) in items(body, GET, "series")?.into_iter().enumerate() {
        let device = segment_device(segment);
        for metric in SLEEP_GET_DATA_FIELDS {
            let path = format!("series[{i}].{metric}");
            for (key, value) in map_entries(segment.get(*metric), GET, &path)? {
                let timestamp = epoch_key(key, GET, &path)?;
                let row = rows
                    .entry((timestamp, device.clone()))
                    .or_insert_with(|| vitals_row(segment, userid, timestamp, &device));
                row.insert((*metric).to_owned(), value.clone());
            }
        }
    }
    Ok(rows.into_values().collect())
}

fn vitals_row(segment: &Map<String, Value>, userid: i64, timestamp: i64, device: &str) -> Record {
    let mut row = Record::new();
    row.insert("userid".to_owned(), Value::from(userid));
    row.insert("timestamp".to_owned(), Value::from(timestamp));
    row.insert("device".to_owned(), Value::from(device));
    for key in ["hash_deviceid", "model_id"] {
        row.insert(
            key.to_owned(),
            segment.get(key).cloned().unwrap_or(Value::Null),
        );
    }
    row
}

/// One `sleep_summaries` record per item of Sleep v2 getsummary's `body.series`: the night's
/// fields (`id`, `model` 16/32, `model_id`, epochs, local `date` of the night's end, nested
/// `data` with the data_fields values) plus `userid`, keyed on `id`. `data.night_events` is left
/// as sent (documented as a map, typed as an array, `[]` in the doc example).
///
/// `series` may be a list, a single object, `[]`, `{}`, null or absent; `data: []` becomes `{}`.
/// Fails when `series` or `data` is a scalar. A night without `id` (the Withings
/// documentation's own example has none) is kept without it: the tap skips it when emitting.
pub fn sleep_summaries_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "sleep getsummary";
    items(body, ACTION, "series")?
        .into_iter()
        .enumerate()
        .map(|(i, item)| {
            let path = format!("series[{i}]");
            let mut record = record_from(item, userid);
            nested_object(&mut record, ACTION, &path, "data")?;
            Ok(record)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;
    use std::collections::BTreeSet;

    const SLEEP: &str = include_str!("../../tests/fixtures/aiowithings/sleep.json");
    const SLEEP_NO_DATAFIELDS: &str =
        include_str!("../../tests/fixtures/aiowithings/sleep_no_datafields.json");
    const SUMMARY: &str = include_str!("../../tests/fixtures/aiowithings/sleep_summary.json");
    const SUMMARY_NO_DATAFIELDS: &str =
        include_str!("../../tests/fixtures/aiowithings/sleep_summary_no_datafields.json");
    const HASH: &str = "201d0b9a0556d6b755166b2cf8d22d3bdf0487ee";

    fn body(fixture: &str) -> Value {
        let envelope: Value = serde_json::from_str(fixture).unwrap();
        envelope["body"].clone()
    }

    #[test]
    fn sleep_fixture_gives_one_series_record_per_segment() {
        let records = sleep_series_records(&body(SLEEP), 9).unwrap();
        assert_eq!(records.len(), 613);
        assert_eq!(
            Value::Object(records[0].clone()),
            json!({"startdate": 1_618_691_453, "state": 0, "enddate": 1_618_691_573,
                   "model": "Aura Sensor V2", "hash_deviceid": HASH, "model_id": 63,
                   "userid": 9, "device": HASH, "body_model": 32})
        );
        let without = sleep_series_records(&body(SLEEP_NO_DATAFIELDS), 9).unwrap();
        assert_eq!(without.len(), 613);
        assert_eq!(without, records);
    }

    #[test]
    fn sleep_fixture_gives_one_vitals_record_per_timestamp() {
        let body = body(SLEEP);
        let mut distinct = BTreeSet::new();
        for segment in body["series"].as_array().unwrap() {
            for metric in ["hr", "rr", "snoring"] {
                for key in segment[metric].as_object().unwrap().keys() {
                    distinct.insert(key.parse::<i64>().unwrap());
                }
            }
        }
        let records = sleep_vitals_records(&body, 9).unwrap();
        assert_eq!(distinct.len(), 2872);
        assert_eq!(records.len(), 2872);
        assert_eq!(
            Value::Object(records[0].clone()),
            json!({"userid": 9, "timestamp": 1_618_691_453, "device": HASH,
                   "hash_deviceid": HASH, "model_id": 63, "hr": 70, "rr": 15, "snoring": 0})
        );
        let timestamps: Vec<i64> = records
            .iter()
            .map(|r| r["timestamp"].as_i64().unwrap())
            .collect();
        assert_eq!(timestamps, distinct.into_iter().collect::<Vec<_>>());
        assert_eq!(records.last().unwrap()["timestamp"], json!(1_619_296_237));
    }

    #[test]
    fn sleep_without_data_fields_gives_no_vitals() {
        assert_eq!(
            sleep_vitals_records(&body(SLEEP_NO_DATAFIELDS), 9),
            Ok(vec![])
        );
    }

    #[test]
    fn vitals_merge_metrics_per_device_and_timestamp() {
        let body = json!({"model": 32, "series": [
            {"startdate": 100, "hash_deviceid": "b", "model_id": 63,
             "hr": {"160": 60, "100": 58}, "rmssd": {"100": 41.5}, "snoring": []},
            {"startdate": 100, "model_id": 93, "hr": {"100": 70}},
            {"startdate": 220, "hash_deviceid": "b", "model_id": 63,
             "rr": {"160": 14}, "sdnn_1": null},
            {"startdate": 300}
        ]});
        let got: Vec<Value> = sleep_vitals_records(&body, 3)
            .unwrap()
            .into_iter()
            .map(Value::Object)
            .collect();
        assert_eq!(
            got,
            vec![
                json!({"userid": 3, "timestamp": 100, "device": "b", "hash_deviceid": "b",
                       "model_id": 63, "hr": 58, "rmssd": 41.5}),
                json!({"userid": 3, "timestamp": 100, "device": "model_id:93",
                       "hash_deviceid": null, "model_id": 93, "hr": 70}),
                json!({"userid": 3, "timestamp": 160, "device": "b", "hash_deviceid": "b",
                       "model_id": 63, "hr": 60, "rr": 14}),
            ]
        );
    }

    #[test]
    fn a_vitals_key_that_is_no_epoch_refuses_the_reply() {
        let body = json!({"series": [{"startdate": 100, "rr": {"160": 14, "x": 1}}]});
        assert_eq!(
            sleep_vitals_records(&body, 3),
            Err(ReplyError(
                "sleep get: series[0].rr has the key \"x\", expected epoch seconds".into()
            ))
        );
    }

    #[test]
    fn segment_device_falls_back_to_model_id_then_unknown() {
        let cases = [
            (json!({"hash_deviceid": "abc", "model_id": 63}), "abc"),
            (json!({"hash_deviceid": "", "model_id": 63}), "model_id:63"),
            (
                json!({"hash_deviceid": null, "model_id": 16}),
                "model_id:16",
            ),
            (json!({"model_id": "61"}), "model_id:61"),
            (json!({"model_id": null}), "unknown"),
            (json!({}), "unknown"),
        ];
        for (segment, want) in cases {
            assert_eq!(
                segment_device(segment.as_object().unwrap()),
                want,
                "{segment}"
            );
        }
    }

    #[test]
    fn sleep_get_accepts_every_list_shape() {
        let segment = json!({"startdate": 1, "enddate": 61, "state": 1, "hr": {"1": 50}});
        let cases = [
            (json!({"model": 16, "series": [segment.clone()]}), 1),
            (json!({"model": 16, "series": segment.clone()}), 1),
            (json!({"series": []}), 0),
            (json!({"series": {}}), 0),
            (json!({"series": null}), 0),
            (json!({}), 0),
            (json!([]), 0),
        ];
        for (body, want) in cases {
            assert_eq!(
                sleep_series_records(&body, 1).unwrap().len(),
                want,
                "{body}"
            );
            assert_eq!(
                sleep_vitals_records(&body, 1).unwrap().len(),
                want,
                "{body}"
            );
        }
        let records = sleep_series_records(&json!({"series": segment}), 1).unwrap();
        assert_eq!(records[0]["body_model"], Value::Null);
        assert_eq!(records[0]["device"], json!("unknown"));
        assert!(records[0].get("hr").is_none());
    }

    #[test]
    fn sleep_get_rejects_impossible_shapes() {
        let cases = [
            (
                json!({"series": "x"}),
                "sleep get: series is a string, expected a list of objects",
            ),
            (
                json!({"series": [{"startdate": 1, "hr": 5}]}),
                "sleep get: series[0].hr is a number, expected a map",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                sleep_vitals_records(&body, 1),
                Err(ReplyError(want.to_owned()))
            );
        }
        let keyless = sleep_series_records(&json!({"series": [{"state": 1}]}), 1).unwrap();
        assert!(keyless[0].get("startdate").is_none());
        assert_eq!(
            sleep_series_records(&json!({"series": 7}), 1),
            Err(ReplyError(
                "sleep get: series is a number, expected a list of objects".to_owned()
            ))
        );
    }

    #[test]
    fn summary_fixture_gives_one_record_per_night() {
        let records = sleep_summaries_records(&body(SUMMARY), 4).unwrap();
        assert_eq!(records.len(), 300);
        let first = &records[0];
        assert_eq!(first["userid"], json!(4));
        assert_eq!(first["model"], json!(32));
        assert_eq!(first["model_id"], json!(63));
        assert_eq!(first["timezone"], json!("Europe/Paris"));
        assert!(first["id"].is_i64());
        assert!(first["data"]["sleep_efficiency"].is_f64());
        assert!(first["data"]["sleep_score"].is_i64());
        let ids: BTreeSet<i64> = records.iter().map(|r| r["id"].as_i64().unwrap()).collect();
        assert_eq!(ids.len(), 300);
        let without = sleep_summaries_records(&body(SUMMARY_NO_DATAFIELDS), 4).unwrap();
        assert_eq!(without.len(), 300);
        assert!(without[0]["data"].get("sleep_score").is_none());
        assert!(without[0]["data"]["total_timeinbed"].is_i64());
    }

    #[test]
    fn summary_keeps_night_events_and_normalises_empty_data() {
        let body = json!({"series": [
            {"id": 1, "data": {"night_events": {"1": [0], "2": [620]}}},
            {"id": 2, "data": {"night_events": []}},
            {"id": 3, "data": []}
        ]});
        let records = sleep_summaries_records(&body, 1).unwrap();
        assert_eq!(
            records[0]["data"]["night_events"],
            json!({"1": [0], "2": [620]})
        );
        assert_eq!(records[1]["data"]["night_events"], json!([]));
        assert_eq!(records[2]["data"], json!({}));
    }

    #[test]
    fn summary_accepts_list_shapes_and_rejects_impossible_ones() {
        let night = json!({"id": 5, "data": {}});
        for (body, want) in [
            (json!({"series": night.clone()}), 1),
            (json!({"series": []}), 0),
            (json!({"series": {}}), 0),
            (json!({"more": false}), 0),
        ] {
            assert_eq!(
                sleep_summaries_records(&body, 1).unwrap().len(),
                want,
                "{body}"
            );
        }
        let cases = [
            (
                json!({"series": true}),
                "sleep getsummary: series is a boolean, expected a list of objects",
            ),
            (
                json!({"series": [{"id": 1, "data": 3}]}),
                "sleep getsummary: series[0].data is a number, expected an object",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(
                sleep_summaries_records(&body, 1),
                Err(ReplyError(want.to_owned()))
            );
        }
    }

    #[test]
    fn data_field_lists_have_no_duplicates() {
        for list in [SLEEP_GET_DATA_FIELDS, GETSUMMARY_DATA_FIELDS] {
            let mut sorted = list.to_vec();
            sorted.sort_unstable();
            sorted.dedup();
            assert_eq!(sorted.len(), list.len());
        }
        assert_eq!(SLEEP_GET_DATA_FIELDS.len(), 10);
        assert_eq!(GETSUMMARY_DATA_FIELDS.len(), 46);
    }
}
