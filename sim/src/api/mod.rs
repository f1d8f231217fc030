//! The Withings API surface: routing of path + action to a module, and the per-module
//! handlers (pure functions of the stored data and the request parameters).

pub mod activity;
pub mod heart;
pub mod measure;
pub mod oauth;
pub mod params;
pub mod sleep;
pub mod user;

use crate::config::SimConfig;
use crate::data::model::UserData;
use params::{ApiError, Params};
use serde_json::Value;

/// A successful reply body: a `Value`, or JSON already serialized (large getmeas pages).
#[derive(Debug, Clone)]
pub enum Body {
    Value(Value),
    Raw(String),
}

impl Body {
    pub fn into_string(self) -> String {
        match self {
            Body::Value(v) => v.to_string(),
            Body::Raw(s) => s,
        }
    }

    pub fn into_value(self) -> Value {
        match self {
            Body::Value(v) => v,
            Body::Raw(s) => serde_json::from_str(&s).unwrap_or(Value::Null),
        }
    }
}

/// Per-request settings the handlers need.
#[derive(Debug, Clone)]
pub struct Opts {
    pub page_getmeas: usize,
    pub page_getactivity: usize,
    pub page_getworkouts: usize,
    pub page_getsummary: usize,
    pub page_heart_list: usize,
    pub page_stetho_list: usize,
    pub lying_more: bool,
    pub shape_quirks: bool,
    /// getactivity rows without `modified`.
    pub no_modified: bool,
    /// Server time (getmeas `updatetime`).
    pub now: i64,
}

impl Opts {
    pub fn new(cfg: &SimConfig, lying_more: bool, shape_quirks: bool, now: i64) -> Self {
        Opts {
            page_getmeas: cfg.page_getmeas,
            page_getactivity: cfg.page_getactivity,
            page_getworkouts: cfg.page_getworkouts,
            page_getsummary: cfg.page_getsummary,
            page_heart_list: cfg.page_heart_list,
            page_stetho_list: cfg.page_stetho_list,
            lying_more,
            shape_quirks,
            no_modified: false,
            now,
        }
    }
}

/// Where a request goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// A data module (name as in `truth`) and the scope it needs.
    Data(&'static str, &'static str),
    /// `POST /v2/oauth2 action=requesttoken`.
    Token,
}

/// API paths (service URLs).
pub const PATHS: &[&str] = &[
    "/measure",
    "/v2/measure",
    "/v2/sleep",
    "/v2/heart",
    "/v2/stetho",
    "/v2/user",
    "/v2/oauth2",
];

/// Resolves a path and action.
pub fn route(path: &str, action: &str) -> Option<Route> {
    let data = |m, s| Some(Route::Data(m, s));
    match (path, action) {
        ("/measure", "getmeas") => data("getmeas", "user.metrics"),
        ("/v2/measure", "getactivity") => data("getactivity", "user.activity"),
        ("/v2/measure", "getintradayactivity") => data("getintradayactivity", "user.activity"),
        ("/v2/measure", "getworkouts") => data("getworkouts", "user.activity"),
        ("/v2/sleep", "get") => data("sleep_get", "user.activity"),
        ("/v2/sleep", "getsummary") => data("getsummary", "user.activity"),
        ("/v2/heart", "list") => data("heart_list", "user.metrics"),
        ("/v2/heart", "get") => data("heart_get", "user.metrics"),
        ("/v2/stetho", "list") => data("stetho_list", "user.metrics"),
        ("/v2/stetho", "get") => data("stetho_get", "user.metrics"),
        ("/v2/user", "getdevice") => data("getdevice", "user.info"),
        ("/v2/user", "getgoals") => data("getgoals", "user.info"),
        ("/v2/oauth2", "requesttoken") => Some(Route::Token),
        _ => None,
    }
}

/// Whether a comma-separated scope list grants `scope`.
pub fn has_scope(granted: &str, scope: &str) -> bool {
    granted.split(',').any(|s| s.trim() == scope)
}

/// Serves a data module for an authenticated user.
pub fn serve(module: &str, user: &UserData, p: &Params, opts: &Opts) -> Result<Body, ApiError> {
    match module {
        "getmeas" => measure::getmeas(user, p, opts),
        "getactivity" => activity::getactivity(user, p, opts),
        "getintradayactivity" => activity::getintradayactivity(user, p),
        "getworkouts" => activity::getworkouts(user, p, opts),
        "sleep_get" => sleep::get(user, p),
        "getsummary" => sleep::getsummary(user, p, opts),
        "heart_list" => heart::heart_list(user, p, opts),
        "heart_get" => heart::heart_get(user, p),
        "stetho_list" => heart::stetho_list(user, p, opts),
        "stetho_get" => heart::stetho_get(user, p),
        "getdevice" => Ok(user::getdevice(user)),
        "getgoals" => Ok(user::getgoals(user)),
        other => Err(ApiError::new(2554, format!("Not implemented: {other}"))),
    }
}

/// Adds an unknown field to every record object (maps keyed by numbers are left alone).
pub fn add_unknown_fields(v: &mut Value) {
    match v {
        Value::Array(items) => items.iter_mut().for_each(add_unknown_fields),
        Value::Object(map) => {
            let numeric_keys = !map.is_empty() && map.keys().all(|k| k.parse::<i64>().is_ok());
            map.values_mut().for_each(add_unknown_fields);
            if !numeric_keys {
                map.insert(
                    "sim_future_field".to_string(),
                    Value::String("unknown".to_string()),
                );
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn routes_and_scopes() {
        assert_eq!(
            route("/v2/sleep", "get"),
            Some(Route::Data("sleep_get", "user.activity"))
        );
        assert_eq!(route("/v2/measure", "getmeas"), None);
        assert!(has_scope("user.info,user.metrics", "user.metrics"));
        assert!(!has_scope("user.info", "user.metrics"));
    }

    #[test]
    fn unknown_fields_skip_epoch_maps() {
        let mut v = json!({"series": {"1700000000": {"steps": 1}}, "more": false});
        add_unknown_fields(&mut v);
        assert_eq!(v["sim_future_field"], "unknown");
        assert!(v["series"].get("sim_future_field").is_none());
        assert_eq!(v["series"]["1700000000"]["sim_future_field"], "unknown");
    }
}
