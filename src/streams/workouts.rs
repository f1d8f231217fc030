//! Records of the `workouts` stream (Measure v2 getworkouts), built from a reply's `body`.
//! Pure: no I/O, no clock; `data` stays nested (the tap flattens it to `data__calories`).

use serde_json::Value;

use super::shape::{items, nested_object, record_from};
use super::{Record, ReplyError};

/// Every `data_fields` value of Measure v2 getworkouts (Withings API reference,
/// measurev2-getworkouts). Swim-only: `pool_laps`, `strokes`, `pool_length`,
/// `algo_pause_duration`.
pub const GETWORKOUTS_DATA_FIELDS: &[&str] = &[
    "calories",
    "intensity",
    "manual_intensity",
    "manual_distance",
    "manual_calories",
    "hr_average",
    "hr_min",
    "hr_max",
    "hr_zone_0",
    "hr_zone_1",
    "hr_zone_2",
    "hr_zone_3",
    "pause_duration",
    "algo_pause_duration",
    "spo2_average",
    "core_body_temperature_avg",
    "core_body_temperature_min",
    "core_body_temperature_max",
    "core_body_temperature_status",
    "steps",
    "distance",
    "elevation",
    "pool_laps",
    "strokes",
    "pool_length",
];

/// One `workouts` record per item of getworkouts' `body.series`: the workout's fields (`id`,
/// `category`, `model` as an int, `startdate`/`enddate`/`modified` epochs, local `date`, nested
/// `data` with the data_fields values, which may be null) plus `userid`, keyed on `id`.
///
/// `series` may be a list, a single object, `[]`, `{}`, null or absent; `data: []` becomes
/// `{}`. Fails when `series` or `data` is a scalar. A workout without `id` (the Withings
/// documentation's own example has none) is kept without it: the tap skips it when emitting.
pub fn workouts_records(body: &Value, userid: i64) -> Result<Vec<Record>, ReplyError> {
    const ACTION: &str = "getworkouts";
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

    const WORKOUTS: &str = include_str!("../../tests/fixtures/aiowithings/workouts.json");

    fn body(fixture: &str) -> Value {
        let envelope: Value = serde_json::from_str(fixture).unwrap();
        envelope["body"].clone()
    }

    #[test]
    fn workouts_fixture_gives_one_record_per_workout() {
        let records = workouts_records(&body(WORKOUTS), 5).unwrap();
        assert_eq!(records.len(), 11);
        let first = &records[0];
        assert_eq!(first["userid"], json!(5));
        assert_eq!(first["id"], json!(3_661_300_277_i64));
        assert_eq!(first["model"], json!(1055));
        assert_eq!(first["date"], json!("2023-08-29"));
        assert_eq!(first["startdate"], json!(1_693_336_011));
        assert_eq!(first["modified"], json!(1_693_481_873));
        assert_eq!(first["data"]["steps"], json!(779));
        assert_eq!(first["data"]["spo2_average"], json!(15));
        assert_eq!(first["data"]["algo_pause_duration"], Value::Null);
        assert_eq!(records[1]["data"], json!({"algo_pause_duration": null}));
    }

    #[test]
    fn workouts_accepts_every_list_shape() {
        let workout = json!({"id": 1, "category": 2, "data": {"steps": 3}});
        let cases = [
            (json!({"series": [workout.clone(), workout.clone()]}), 2),
            (json!({"series": workout.clone()}), 1),
            (json!({"series": []}), 0),
            (json!({"series": {}}), 0),
            (json!({"series": null}), 0),
            (json!({}), 0),
        ];
        for (body, want) in cases {
            assert_eq!(workouts_records(&body, 1).unwrap().len(), want, "{body}");
        }
    }

    #[test]
    fn workouts_turns_empty_data_array_into_map() {
        let body = json!({"series": [{"id": 1, "data": []}]});
        let records = workouts_records(&body, 1).unwrap();
        assert_eq!(records[0]["data"], json!({}));
    }

    #[test]
    fn workouts_rejects_impossible_shapes() {
        let cases = [
            (
                json!({"series": 4}),
                "getworkouts: series is a number, expected a list of objects",
            ),
            (
                json!({"series": [{"id": 1, "data": "x"}]}),
                "getworkouts: series[0].data is a string, expected an object",
            ),
        ];
        for (body, want) in cases {
            assert_eq!(workouts_records(&body, 1), Err(ReplyError(want.to_owned())));
        }
    }

    #[test]
    fn data_field_list_has_no_duplicates() {
        let mut sorted = GETWORKOUTS_DATA_FIELDS.to_vec();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted.len(), GETWORKOUTS_DATA_FIELDS.len());
        assert_eq!(GETWORKOUTS_DATA_FIELDS.len(), 25);
    }
}
