//! `POST /v2/sleep`: get (both epochs required, first 24 h only, enddate inclusive, no paging)
//! and getsummary (YMD pair on the night's local end date, or lastupdate; 300 per page; the
//! reply carries neither `more` nor `offset`).

use super::params::{page, ymd_or_lastupdate, ApiError, DateFilter, Params};
use super::{Body, Opts};
use crate::clock;
use crate::data::gen_sleep::{sleep_model, sleep_sources};
use crate::data::model::UserData;
use crate::data::render;
use serde_json::{json, Value};

/// getsummary `data` fields without `data_fields` (no HR/RR/score/snoring).
pub const SUMMARY_DEFAULT: &[&str] = &[
    "wakeupduration",
    "wakeupcount",
    "durationtosleep",
    "remsleepduration",
    "durationtowakeup",
    "total_timeinbed",
    "total_sleep_time",
    "sleep_efficiency",
    "sleep_latency",
    "wakeup_latency",
    "waso",
    "nb_rem_episodes",
    "out_of_bed_count",
    "lightsleepduration",
    "deepsleepduration",
];

pub fn get(user: &UserData, p: &Params) -> Result<Body, ApiError> {
    let start = p.required_int("startdate")?;
    let end = p.required_int("enddate")?;
    let end = end.min(start + 86_400);
    // Without data_fields only the stage fields come back.
    let sel = p.data_fields(&[]);
    let mut segs: Vec<(i64, u8, Value)> = user
        .nights
        .iter()
        .filter(|n| n.end >= start && n.start <= end)
        .flat_map(|n| {
            n.segments
                .iter()
                .filter(|s| s.start >= start && s.start <= end)
                .map(|s| (s.start, n.src, render::segment(s, n, user, &sel)))
                .collect::<Vec<_>>()
        })
        .collect();
    segs.sort_by_key(|(s, src, _)| (*s, *src));
    let model = sleep_sources(user).first().map_or(32, |s| sleep_model(*s));
    let series: Vec<Value> = segs.into_iter().map(|(_, _, v)| v).collect();
    Ok(Body::Value(json!({ "series": series, "model": model })))
}

pub fn getsummary(user: &UserData, p: &Params, opts: &Opts) -> Result<Body, ApiError> {
    let filter = ymd_or_lastupdate(p)?;
    let sel = p.data_fields(SUMMARY_DEFAULT);
    let offset = p.offset()?;
    let mut nights: Vec<_> = user
        .nights
        .iter()
        .filter(|n| match filter {
            DateFilter::Ymd(s, e) => {
                let d = clock::local_date(n.end, user.tz);
                s <= d && d <= e
            }
            DateFilter::LastUpdate(t) => n.modified > t,
            DateFilter::Nothing => false,
        })
        .collect();
    if let DateFilter::LastUpdate(_) = filter {
        nights.sort_by_key(|n| (n.modified, n.id));
    }
    let pg = page(nights.len(), offset, opts.page_getsummary, opts.lying_more);
    let series: Vec<Value> = nights[pg.start..pg.end]
        .iter()
        .map(|n| render::summary(n, user, &sel))
        .collect();
    Ok(Body::Value(json!({ "series": series })))
}
