//! Ground truth: the complete raw data of a module, as the API sends it with every field.

use super::model::UserData;
use super::render::{self, Sel};
use serde_json::{Map, Value};

/// Module names accepted by `truth` (the Withings action names).
pub const MODULES: &[&str] = &[
    "getmeas",
    "getactivity",
    "getintradayactivity",
    "getworkouts",
    "sleep_get",
    "getsummary",
    "heart_list",
    "heart_get",
    "stetho_list",
    "stetho_get",
    "getdevice",
    "getgoals",
];

/// The complete data of `module` for `user`; `None` for an unknown module.
///
/// Orders follow the API's default order: getmeas by `date` descending, heart/stetho lists by
/// `timestamp` descending, everything else ascending by time.
pub fn truth(module: &str, user: &UserData) -> Option<Value> {
    let all = Sel::all();
    let v = match module {
        "getmeas" => Value::Array(
            user.meas
                .groups
                .iter()
                .rev()
                .map(|g| render::meas_group(g, user))
                .collect(),
        ),
        "getactivity" => Value::Array(
            user.activities
                .iter()
                .map(|a| render::activity(a, user, &all))
                .collect(),
        ),
        "getintradayactivity" => Value::Object(
            user.intraday
                .iter()
                .filter_map(|s| Some((s.ts.to_string(), render::intraday_sample(s, user, &all)?)))
                .collect(),
        ),
        "getworkouts" => Value::Array(
            user.workouts
                .iter()
                .map(|w| render::workout(w, user, &all))
                .collect(),
        ),
        "sleep_get" => {
            let mut segs: Vec<(i64, u8, Value)> = user
                .nights
                .iter()
                .flat_map(|n| {
                    let all = &all;
                    n.segments
                        .iter()
                        .map(move |s| (s.start, n.src, render::segment(s, n, user, all)))
                })
                .collect();
            segs.sort_by_key(|(start, src, _)| (*start, *src));
            Value::Array(segs.into_iter().map(|(_, _, v)| v).collect())
        }
        "getsummary" => Value::Array(
            user.nights
                .iter()
                .map(|n| render::summary(n, user, &all))
                .collect(),
        ),
        "heart_list" => Value::Array(
            user.ecgs
                .iter()
                .rev()
                .map(|e| render::ecg(e, user))
                .collect(),
        ),
        "heart_get" => Value::Object(
            user.ecgs
                .iter()
                .map(|e| {
                    (
                        e.signalid.to_string(),
                        render::ecg_body(e, user, render::EcgOptions::all()),
                    )
                })
                .collect::<Map<String, Value>>(),
        ),
        "stetho_list" => Value::Array(
            user.stethos
                .iter()
                .rev()
                .map(|s| render::stetho(s, user))
                .collect(),
        ),
        "stetho_get" => Value::Object(
            user.stethos
                .iter()
                .map(|s| (s.signalid.to_string(), render::stetho_body(s, user)))
                .collect::<Map<String, Value>>(),
        ),
        "getdevice" => Value::Array(
            user.devices
                .iter()
                .map(|d| render::device(d, user))
                .collect(),
        ),
        "getgoals" => render::goals(user),
        _ => return None,
    };
    Some(v)
}
