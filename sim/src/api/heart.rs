//! `POST /v2/heart` and `/v2/stetho`: list (optional epochs, inclusive, timestamp descending,
//! 200 per page for heart, 100 for stetho) and get (one signal by `signalid`; heart get adds
//! `filtered_signal` with `with_filtered` and `intervals` with `with_intervals`).

use super::activity::paged;
use super::params::{ApiError, Params};
use super::{Body, Opts};
use crate::data::model::UserData;
use crate::data::render;
use serde_json::Value;

fn in_range(ts: i64, start: Option<i64>, end: Option<i64>) -> bool {
    start.is_none_or(|s| ts >= s) && end.is_none_or(|e| ts <= e)
}

pub fn heart_list(user: &UserData, p: &Params, opts: &Opts) -> Result<Body, ApiError> {
    let (start, end) = (p.int("startdate")?, p.int("enddate")?);
    let offset = p.offset()?;
    let rows: Vec<Value> = user
        .ecgs
        .iter()
        .rev()
        .filter(|e| in_range(e.timestamp, start, end))
        .map(|e| render::ecg(e, user))
        .collect();
    Ok(Body::Value(paged(
        "series",
        rows,
        offset,
        opts.page_heart_list,
        opts.lying_more,
    )))
}

/// A boolean parameter: `true`/`1` (any case) is set; absent, `false` and `0` are not.
fn flag(p: &Params, name: &str) -> Result<bool, ApiError> {
    match p.get(name).map(|v| v.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) if v == "true" || v == "1" => Ok(true),
        Some(v) if v == "false" || v == "0" => Ok(false),
        Some(_) => Err(ApiError::invalid(name)),
    }
}

pub fn heart_get(user: &UserData, p: &Params) -> Result<Body, ApiError> {
    let id = p.required_int("signalid")?;
    let opts = render::EcgOptions {
        filtered: flag(p, "with_filtered")?,
        intervals: flag(p, "with_intervals")?,
    };
    user.ecgs
        .iter()
        .find(|e| e.signalid == id)
        .map(|e| Body::Value(render::ecg_body(e, user, opts)))
        .ok_or_else(|| ApiError::invalid("signalid"))
}

pub fn stetho_list(user: &UserData, p: &Params, opts: &Opts) -> Result<Body, ApiError> {
    let (start, end) = (p.int("startdate")?, p.int("enddate")?);
    let offset = p.offset()?;
    let rows: Vec<Value> = user
        .stethos
        .iter()
        .rev()
        .filter(|s| in_range(s.timestamp, start, end))
        .map(|s| render::stetho(s, user))
        .collect();
    Ok(Body::Value(paged(
        "series",
        rows,
        offset,
        opts.page_stetho_list,
        opts.lying_more,
    )))
}

pub fn stetho_get(user: &UserData, p: &Params) -> Result<Body, ApiError> {
    let id = p.required_int("signalid")?;
    user.stethos
        .iter()
        .find(|s| s.signalid == id)
        .map(|s| Body::Value(render::stetho_body(s, user)))
        .ok_or_else(|| ApiError::invalid("signalid"))
}
