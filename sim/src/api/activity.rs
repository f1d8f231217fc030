//! `POST /v2/measure`: getactivity (YMD pair or lastupdate, date ascending, 200 per page),
//! getintradayactivity (epochs, first 24 h only, `series` keyed by epoch strings) and
//! getworkouts (YMD pair or lastupdate, startdate ascending, 300 per page).

use super::params::{page, ymd_or_lastupdate, ApiError, DateFilter, Params};
use super::{Body, Opts};
use crate::clock;
use crate::data::model::UserData;
use crate::data::render;
use serde_json::{json, Map, Value};

/// Fields getactivity returns without `data_fields` (no heart-rate fields).
pub const ACTIVITY_DEFAULT: &[&str] = &[
    "steps",
    "distance",
    "elevation",
    "soft",
    "moderate",
    "intense",
    "active",
    "calories",
    "totalcalories",
];

/// Fields getintradayactivity returns without `data_fields`.
pub const INTRADAY_DEFAULT: &[&str] = &[
    "steps",
    "elevation",
    "calories",
    "distance",
    "stroke",
    "pool_lap",
    "duration",
    "heart_rate",
];

/// `data` fields getworkouts returns without `data_fields` (no heart-rate fields).
pub const WORKOUT_DEFAULT: &[&str] = &[
    "calories",
    "intensity",
    "manual_distance",
    "manual_calories",
    "pause_duration",
    "algo_pause_duration",
    "spo2_average",
    "steps",
    "distance",
    "elevation",
    "pool_laps",
    "strokes",
    "pool_length",
];

/// Rows of a v2 list reply with `more` (bool) and `offset`.
pub fn paged(key: &str, rows: Vec<Value>, offset: usize, size: usize, lying: bool) -> Value {
    let pg = page(rows.len(), offset, size, lying);
    let slice: Vec<Value> = rows[pg.start..pg.end].to_vec();
    json!({ key: slice, "more": pg.said_more, "offset": pg.said_offset })
}

pub fn getactivity(user: &UserData, p: &Params, opts: &Opts) -> Result<Body, ApiError> {
    let filter = ymd_or_lastupdate(p)?;
    let sel = p.data_fields(ACTIVITY_DEFAULT);
    let offset = p.offset()?;
    let rows: Vec<Value> = user
        .activities
        .iter()
        .filter(|a| match filter {
            DateFilter::Ymd(s, e) => s <= a.date && a.date <= e,
            DateFilter::LastUpdate(t) => a.modified > t,
            DateFilter::Nothing => false,
        })
        .map(|a| render::activity(a, user, &sel))
        .collect();
    let mut body = paged(
        "activities",
        rows,
        offset,
        opts.page_getactivity,
        opts.lying_more,
    );
    if opts.no_modified {
        for row in body["activities"].as_array_mut().into_iter().flatten() {
            if let Some(row) = row.as_object_mut() {
                row.remove("modified");
            }
        }
    }
    if opts.shape_quirks {
        quirk_activities(&mut body);
    }
    Ok(Body::Value(body))
}

/// `intense: 0` becomes `false`, and a single row is sent as an object, not an array.
fn quirk_activities(body: &mut Value) {
    if let Some(rows) = body.get_mut("activities").and_then(Value::as_array_mut) {
        for row in rows.iter_mut() {
            if row.get("intense") == Some(&json!(0)) {
                row["intense"] = json!(false);
            }
        }
        if rows.len() == 1 {
            let only = rows[0].clone();
            body["activities"] = only;
        }
    }
}

pub fn getintradayactivity(user: &UserData, p: &Params) -> Result<Body, ApiError> {
    let start = p.int("startdate")?;
    let end = p.int("enddate")?;
    let latest = user.intraday.last().map_or(0, |s| s.ts);
    // [from, to): only the first 24 h after startdate; no dates: the most recent 24 h.
    let (from, to) = match (start, end) {
        (Some(s), Some(e)) => (s, e.min(s + 86_400)),
        (Some(s), None) => (s, s + 86_400),
        (None, Some(e)) => (e - 86_400, e),
        (None, None) => (latest - 86_400 + 1, latest + 1),
    };
    let sel = p.data_fields(INTRADAY_DEFAULT);
    let lo = user.intraday.partition_point(|s| s.ts < from);
    let hi = user.intraday.partition_point(|s| s.ts < to).max(lo);
    let series: Map<String, Value> = user.intraday[lo..hi]
        .iter()
        .filter_map(|s| Some((s.ts.to_string(), render::intraday_sample(s, user, &sel)?)))
        .collect();
    let series = if series.is_empty() {
        json!([])
    } else {
        Value::Object(series)
    };
    Ok(Body::Value(json!({ "series": series })))
}

pub fn getworkouts(user: &UserData, p: &Params, opts: &Opts) -> Result<Body, ApiError> {
    let filter = ymd_or_lastupdate(p)?;
    let sel = p.data_fields(WORKOUT_DEFAULT);
    let offset = p.offset()?;
    let rows: Vec<Value> = user
        .workouts
        .iter()
        .filter(|w| match filter {
            DateFilter::Ymd(s, e) => {
                let d = clock::local_date(w.startdate, user.tz);
                s <= d && d <= e
            }
            DateFilter::LastUpdate(t) => w.modified > t,
            DateFilter::Nothing => false,
        })
        .map(|w| render::workout(w, user, &sel))
        .collect();
    Ok(Body::Value(paged(
        "series",
        rows,
        offset,
        opts.page_getworkouts,
        opts.lying_more,
    )))
}
