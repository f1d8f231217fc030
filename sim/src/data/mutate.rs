//! Mutations between runs: add, modify or delete items of a module, or upload days of data
//! late, stamped with a `modified` strictly after every existing one so `lastupdate` syncs see
//! them. As on Withings, changed intraday samples recompute and re-stamp their day's activity
//! row, and an upload moves the recording device's `last_session_date`.

use super::gen_activity::{activity_metrics, external, intraday_values, workout_data};
use super::gen_heart::{new_ecg, new_stetho};
use super::gen_sleep::{build_nights, metric, random_plan, sleep_sources, summarize};
use super::generate::src;
use super::model::{
    Activity, Dataset, Device, Fields, Goals, IntradaySample, Measure, MeasureGroup, UserData,
    Workout,
};
use crate::clock;
use crate::prng::Prng;
use chrono::NaiveDate;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet, HashSet};

fn one() -> u32 {
    1
}

/// A change to a user's data, as accepted by `Sim::mutate` and `POST /_sim/mutate`
/// (`{"op": "add", "module": "getmeas", "userid": 1000001, "count": 3, "at": 1700000000}`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "lowercase")]
pub enum Mutation {
    /// Creates `count` items; `at` is the event time of the new items (default: within the day
    /// before the sim's now).
    Add {
        module: String,
        userid: u64,
        #[serde(default = "one")]
        count: u32,
        #[serde(default)]
        at: Option<i64>,
    },
    /// Changes values of the `count` oldest items and bumps their `modified`.
    Modify {
        module: String,
        userid: u64,
        #[serde(default = "one")]
        count: u32,
    },
    /// Removes the `count` oldest items.
    Delete {
        module: String,
        userid: u64,
        #[serde(default = "one")]
        count: u32,
    },
    /// A device that syncs late: `days` days of data recorded from `from` on (day k at
    /// `from + k * 86400`), all reaching Withings now. Per day: `count` items (intraday: default
    /// 96 samples spread over the 24 h; other modules: default 1); sleep: a night per device, or a
    /// nap of `minutes` minutes.
    Upload {
        module: String,
        userid: u64,
        from: i64,
        #[serde(default = "one")]
        days: u32,
        #[serde(default)]
        count: Option<u32>,
        #[serde(default)]
        minutes: Option<u32>,
    },
}

impl Mutation {
    /// `days` days of `module` data from `from` on, uploaded now (defaults per day).
    pub fn upload(module: &str, userid: u64, from: i64, days: u32) -> Self {
        Mutation::Upload {
            module: module.to_string(),
            userid,
            from,
            days,
            count: None,
            minutes: None,
        }
    }

    /// A nap of `minutes` minutes starting at `at` (a sleep session with its summary), uploaded
    /// now.
    pub fn nap(userid: u64, at: i64, minutes: u32) -> Self {
        Mutation::Upload {
            module: "sleep_get".to_string(),
            userid,
            from: at,
            days: 1,
            count: None,
            minutes: Some(minutes),
        }
    }
}

/// Intraday samples per day of an `upload` without `count`.
pub const UPLOAD_SAMPLES_PER_DAY: u32 = 96;

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Add(Option<i64>),
    Modify,
    Delete,
}

/// What a mutation changed besides its own module (reported in the reply).
#[derive(Default)]
struct Effects {
    /// Local dates whose getactivity row was recomputed and re-stamped (intraday changes).
    activity_dates: BTreeSet<NaiveDate>,
    /// Devices whose `last_session_date` moved to now (they uploaded the new items).
    synced: BTreeSet<String>,
}

impl Effects {
    /// The device behind `source` (if it is one of the user's devices) synced at `now`.
    fn synced(&mut self, user: &mut UserData, source: u8, now: i64) {
        let Some(id) = user.source(source).and_then(|s| s.deviceid.clone()) else {
            return;
        };
        for d in user.devices.iter_mut().filter(|d| d.deviceid == id) {
            d.last_session_date = Some(d.last_session_date.map_or(now, |t| t.max(now)));
            self.synced.insert(id.clone());
        }
    }
}

/// The largest `modified` of a module (0 when it has none); intraday changes re-stamp
/// getactivity rows, so they count those.
fn max_modified(user: &UserData, module: &str) -> i64 {
    let m = match module {
        "getmeas" => user.meas.groups.iter().map(|g| g.modified).max(),
        "getactivity" | "getintradayactivity" => user.activities.iter().map(|a| a.modified).max(),
        "getworkouts" => user.workouts.iter().map(|w| w.modified).max(),
        "sleep_get" | "getsummary" => user.nights.iter().map(|n| n.modified).max(),
        "heart_list" | "heart_get" => user.ecgs.iter().map(|e| e.modified).max(),
        _ => None,
    };
    m.unwrap_or(0)
}

/// Most days one `upload` may span (over a year; each day rescans the user's samples, so the
/// cap keeps one mutation short).
pub const MAX_UPLOAD_DAYS: u32 = 400;

/// Applies a mutation; returns the affected keys.
pub fn apply(data: &mut Dataset, mutation: &Mutation, real_now: i64) -> Result<Value, String> {
    let (module, userid) = match mutation {
        Mutation::Add { module, userid, .. }
        | Mutation::Modify { module, userid, .. }
        | Mutation::Delete { module, userid, .. }
        | Mutation::Upload { module, userid, .. } => (module.as_str(), *userid),
    };
    let anchor = data.anchor;
    let user = data
        .user_mut(userid)
        .ok_or_else(|| format!("unknown userid {userid}"))?;
    let now = real_now.max(anchor + 1).max(max_modified(user, module) + 1);
    let mut prng = Prng::derive(user.seed, "mutate", user.next_id as u64);
    let mut fx = Effects::default();
    let (key, values) = match mutation {
        Mutation::Add { count, at, .. } => {
            let when = at.unwrap_or(now - 43_200);
            change(
                user,
                module,
                Op::Add(*at),
                *count,
                when,
                now,
                &mut prng,
                &mut fx,
            )?
        }
        Mutation::Modify { count, .. } => change(
            user,
            module,
            Op::Modify,
            *count,
            now,
            now,
            &mut prng,
            &mut fx,
        )?,
        Mutation::Delete { count, .. } => change(
            user,
            module,
            Op::Delete,
            *count,
            now,
            now,
            &mut prng,
            &mut fx,
        )?,
        Mutation::Upload {
            from,
            days,
            count,
            minutes,
            ..
        } => {
            let u = Upload {
                from: *from,
                days: *days,
                count: *count,
                minutes: *minutes,
            };
            upload(user, module, u, now, &mut prng, &mut fx)?
        }
    };
    user.reindex();
    let mut reply = json!({
        "module": module,
        "userid": userid,
        "modified": now,
        key: values,
    });
    if !fx.activity_dates.is_empty() {
        reply["activity_dates"] = fx.activity_dates.iter().map(ymd).collect();
    }
    if !fx.synced.is_empty() {
        reply["synced_devices"] = fx.synced.into_iter().collect();
    }
    Ok(reply)
}

fn ymd(d: &NaiveDate) -> Value {
    json!(d.format("%Y-%m-%d").to_string())
}

/// One add/modify/delete of `count` items of a module.
#[allow(clippy::too_many_arguments)]
fn change(
    user: &mut UserData,
    module: &str,
    op: Op,
    count: u32,
    at: i64,
    now: i64,
    prng: &mut Prng,
    fx: &mut Effects,
) -> Result<(&'static str, Value), String> {
    let n = count as usize;
    let (key, values) = match module {
        "getmeas" => ("grpids", meas(user, op, n, at, now, prng, fx)),
        "getactivity" => ("dates", activity(user, op, n, at, now, prng, fx)),
        "getintradayactivity" => {
            let values = match op {
                Op::Add(_) => intraday_add(user, at, n, 60, now, prng, fx),
                _ => intraday(user, op, n, now, prng, fx),
            };
            ("timestamps", values)
        }
        "getworkouts" => ("ids", workouts(user, op, n, at, now, prng, fx)),
        "sleep_get" | "getsummary" => {
            let values = match op {
                Op::Add(explicit) => {
                    let first = explicit.unwrap_or(now - 20 * 3_600);
                    sleep_add(user, first, n, None, now, prng, fx)
                }
                _ => sleep(user, op, n, now),
            };
            ("ids", values)
        }
        "heart_list" | "heart_get" => ("signalids", heart(user, op, n, at, now, prng, fx)),
        "stetho_list" | "stetho_get" => ("signalids", stetho(user, op, n, at, now, prng, fx)),
        "getdevice" => ("deviceids", devices(user, op, n, prng)),
        "getgoals" => return Ok(("goals", goals(user, op))),
        other => return Err(format!("unknown module {other}")),
    };
    Ok((key, Value::Array(values)))
}

/// The settings of an `upload`.
#[derive(Clone, Copy)]
struct Upload {
    from: i64,
    days: u32,
    count: Option<u32>,
    minutes: Option<u32>,
}

/// `days` days of items from `from` on, all stamped `now` (a device that syncs late).
fn upload(
    user: &mut UserData,
    module: &str,
    u: Upload,
    now: i64,
    prng: &mut Prng,
    fx: &mut Effects,
) -> Result<(&'static str, Value), String> {
    if u.days == 0 || u.days > MAX_UPLOAD_DAYS {
        return Err(format!(
            "upload days must be 1..={MAX_UPLOAD_DAYS}, got {}",
            u.days
        ));
    }
    let mut key = "";
    let mut all = Vec::new();
    for k in 0..i64::from(u.days) {
        let at = u.from + k * 86_400;
        let (kk, values) = match module {
            "getintradayactivity" => {
                let n = u.count.unwrap_or(UPLOAD_SAMPLES_PER_DAY).clamp(1, 86_400);
                let step = 86_400 / i64::from(n);
                let values = intraday_add(user, at, n as usize, step, now, prng, fx);
                ("timestamps", Value::Array(values))
            }
            "sleep_get" | "getsummary" => {
                let values = sleep_add(user, at, 1, u.minutes, now, prng, fx);
                ("ids", Value::Array(values))
            }
            "getdevice" | "getgoals" => {
                return Err(format!("{module} has no dated items to upload"));
            }
            _ => {
                let n = u.count.unwrap_or(1);
                change(user, module, Op::Add(Some(at)), n, at, now, prng, fx)?
            }
        };
        key = kk;
        if let Value::Array(v) = values {
            all.extend(v);
        }
    }
    Ok((key, Value::Array(all)))
}

fn meas(
    user: &mut UserData,
    op: Op,
    n: usize,
    at: i64,
    now: i64,
    prng: &mut Prng,
    fx: &mut Effects,
) -> Vec<Value> {
    match op {
        Op::Add(_) => {
            let ids = (0..n)
                .map(|k| {
                    let w = prng.range(55_000, 95_000);
                    let fat = w * prng.range(15, 25) / 100;
                    let measures = [
                        (w, 1u16, -3i8),
                        (fat * 100_000 / w, 6, -3),
                        (fat / 10, 8, -2),
                        ((w - fat) / 10, 76, -2),
                    ]
                    .iter()
                    .map(|&(value, mtype, unit)| Measure {
                        value,
                        mtype,
                        unit,
                        algo: Some(3),
                        fm: Some(131),
                        position: None,
                        algo_params: false,
                        app: false,
                    })
                    .collect();
                    let grpid = user.new_id();
                    user.meas.groups.push(MeasureGroup {
                        grpid,
                        attrib: 0,
                        date: at + 60 * k as i64,
                        created: now,
                        modified: now,
                        category: 1,
                        src: Some(src::BODY_CARDIO),
                        measures,
                    });
                    json!(grpid)
                })
                .collect();
            if n > 0 {
                fx.synced(user, src::BODY_CARDIO, now);
            }
            ids
        }
        Op::Modify => user
            .meas
            .groups
            .iter_mut()
            .take(n)
            .map(|g| {
                if let Some(m) = g.measures.first_mut() {
                    m.value += 100;
                }
                g.modified = now;
                json!(g.grpid)
            })
            .collect(),
        Op::Delete => {
            let n = n.min(user.meas.groups.len());
            user.meas
                .groups
                .drain(..n)
                .map(|g| json!(g.grpid))
                .collect()
        }
    }
}

/// The source of a user's activity rows and workouts (a watch, or Google Fit).
fn activity_source(user: &UserData) -> u8 {
    if external(user) {
        src::GOOGLE_FIT
    } else {
        src::SCANWATCH
    }
}

/// The source of a user's intraday samples (a watch, or HealthKit).
fn intraday_source(user: &UserData) -> u8 {
    if external(user) {
        src::HEALTHKIT
    } else {
        src::SCANWATCH
    }
}

fn activity(
    user: &mut UserData,
    op: Op,
    n: usize,
    at: i64,
    now: i64,
    prng: &mut Prng,
    fx: &mut Effects,
) -> Vec<Value> {
    let with_hr = !external(user);
    match op {
        Op::Add(_) => {
            let first = clock::local_date(at, user.tz);
            let source = activity_source(user);
            let dates: Vec<Value> = (0..n)
                .filter_map(|k| first.checked_add_days(chrono::Days::new(k as u64)))
                .map(|date| {
                    let metrics = activity_metrics(prng, with_hr);
                    if let Some(a) = user.activities.iter_mut().find(|a| a.date == date) {
                        a.metrics = metrics;
                        a.modified = now;
                    } else {
                        user.activities.push(Activity {
                            date,
                            src: source,
                            modified: now,
                            metrics,
                        });
                    }
                    ymd(&date)
                })
                .collect();
            if !dates.is_empty() {
                fx.synced(user, source, now);
            }
            dates
        }
        Op::Modify => user
            .activities
            .iter_mut()
            .take(n)
            .map(|a| {
                a.metrics = activity_metrics(prng, with_hr);
                a.modified = now;
                ymd(&a.date)
            })
            .collect(),
        Op::Delete => {
            let n = n.min(user.activities.len());
            user.activities.drain(..n).map(|a| ymd(&a.date)).collect()
        }
    }
}

/// The day totals an intraday sample contributes to (getactivity metric names).
const SUMMED: [&str; 4] = ["steps", "distance", "elevation", "calories"];

fn sample_sums(values: &Fields) -> [f64; 4] {
    SUMMED.map(|name| metric(values, name).and_then(Value::as_f64).unwrap_or(0.0))
}

fn add_sums(into: &mut [f64; 4], sums: [f64; 4], sign: f64) {
    for (a, b) in into.iter_mut().zip(sums) {
        *a += sign * b;
    }
}

/// `v + d`, never below 0, keeping integers integers and floats at three decimals.
fn plus(v: &Value, d: f64) -> Value {
    if d == 0.0 {
        return v.clone();
    }
    match v.as_i64() {
        Some(i) if d.fract() == 0.0 => json!((i + d as i64).max(0)),
        _ => {
            let x = (v.as_f64().unwrap_or(0.0) + d).max(0.0);
            json!((x * 1000.0).round() / 1000.0)
        }
    }
}

/// A getactivity row's metrics computed from the day's intraday samples (a day the API had
/// no row for until samples arrived): totals summed, the walked duration as `soft`.
fn day_metrics(user: &UserData, date: NaiveDate) -> Fields {
    let day: Vec<&IntradaySample> = user
        .intraday
        .iter()
        .filter(|s| clock::local_date(s.ts, user.tz) == date)
        .collect();
    let mut sums = [0.0; 4];
    let mut soft = 0;
    let mut hr: Vec<i64> = Vec::new();
    for s in &day {
        add_sums(&mut sums, sample_sums(&s.values), 1.0);
        if metric(&s.values, "steps").is_some() {
            soft += metric(&s.values, "duration")
                .and_then(Value::as_i64)
                .unwrap_or(0);
        }
        hr.extend(metric(&s.values, "heart_rate").and_then(Value::as_i64));
    }
    let [steps, distance, elevation, calories] = sums;
    let calories = json!((calories * 1000.0).round() / 1000.0);
    let mut f: Fields = vec![
        ("steps", json!(steps as i64)),
        ("distance", json!((distance * 1000.0).round() / 1000.0)),
        ("elevation", json!(elevation as i64)),
        ("soft", json!(soft)),
        ("moderate", json!(0)),
        ("intense", json!(0)),
        ("active", json!(0)),
        ("calories", calories.clone()),
        ("totalcalories", calories),
    ];
    if !external(user) {
        let avg = if hr.is_empty() {
            0
        } else {
            hr.iter().sum::<i64>() / hr.len() as i64
        };
        f.extend([
            ("hr_average", json!(avg)),
            ("hr_min", json!(hr.iter().min().copied().unwrap_or(0))),
            ("hr_max", json!(hr.iter().max().copied().unwrap_or(0))),
            ("hr_zone_0", json!(0)),
            ("hr_zone_1", json!(0)),
            ("hr_zone_2", json!(0)),
            ("hr_zone_3", json!(0)),
        ]);
    }
    f
}

/// Withings recomputes a day's totals when its samples change: `delta` is added to the
/// existing row (or, with `create`, a row is built from the day's samples) and the row's
/// `modified` becomes now.
fn recompute_day(
    user: &mut UserData,
    date: NaiveDate,
    delta: [f64; 4],
    create: bool,
    now: i64,
    fx: &mut Effects,
) {
    if let Some(a) = user.activities.iter_mut().find(|a| a.date == date) {
        for (name, d) in SUMMED.iter().zip(delta) {
            if let Some((_, v)) = a.metrics.iter_mut().find(|(k, _)| k == name) {
                *v = plus(v, d);
            }
        }
        a.modified = now;
    } else if create {
        let metrics = day_metrics(user, date);
        let source = activity_source(user);
        user.activities.push(Activity {
            date,
            src: source,
            modified: now,
            metrics,
        });
    } else {
        return;
    }
    fx.activity_dates.insert(date);
}

/// `n` new samples from `at`, `step` seconds apart (with up to half a step of jitter and
/// every kind of sample when `step` exceeds a minute); their days are recomputed.
fn intraday_add(
    user: &mut UserData,
    at: i64,
    n: usize,
    step: i64,
    now: i64,
    prng: &mut Prng,
    fx: &mut Effects,
) -> Vec<Value> {
    let source = intraday_source(user);
    let spread = step > 60;
    let mut taken: HashSet<i64> = user.intraday.iter().map(|s| s.ts).collect();
    let mut days: BTreeMap<NaiveDate, [f64; 4]> = BTreeMap::new();
    let mut out = Vec::with_capacity(n);
    for k in 0..n as i64 {
        let mut ts = at + step * k + if spread { prng.range(0, step / 2) } else { 0 };
        while !taken.insert(ts) {
            ts += 1;
        }
        let kind = if spread { prng.next_u64() } else { 0 };
        let values = intraday_values(prng, kind);
        let date = clock::local_date(ts, user.tz);
        add_sums(days.entry(date).or_default(), sample_sums(&values), 1.0);
        user.intraday.push(IntradaySample {
            ts,
            src: source,
            values,
        });
        out.push(json!(ts));
    }
    if n > 0 {
        fx.synced(user, source, now);
    }
    for (date, delta) in days {
        recompute_day(user, date, delta, true, now, fx);
    }
    out
}

/// Modify or delete the `n` oldest samples; their days' rows are recomputed.
fn intraday(
    user: &mut UserData,
    op: Op,
    n: usize,
    now: i64,
    prng: &mut Prng,
    fx: &mut Effects,
) -> Vec<Value> {
    let tz = user.tz;
    let mut days: BTreeMap<NaiveDate, [f64; 4]> = BTreeMap::new();
    let out = match op {
        Op::Modify => user
            .intraday
            .iter_mut()
            .take(n)
            .map(|s| {
                let new = intraday_values(prng, 4);
                let delta = days.entry(clock::local_date(s.ts, tz)).or_default();
                add_sums(delta, sample_sums(&s.values), -1.0);
                add_sums(delta, sample_sums(&new), 1.0);
                s.values = new;
                json!(s.ts)
            })
            .collect(),
        _ => {
            let n = n.min(user.intraday.len());
            user.intraday
                .drain(..n)
                .map(|s| {
                    let delta = days.entry(clock::local_date(s.ts, tz)).or_default();
                    add_sums(delta, sample_sums(&s.values), -1.0);
                    json!(s.ts)
                })
                .collect()
        }
    };
    for (date, delta) in days {
        recompute_day(user, date, delta, false, now, fx);
    }
    out
}

fn workouts(
    user: &mut UserData,
    op: Op,
    n: usize,
    at: i64,
    now: i64,
    prng: &mut Prng,
    fx: &mut Effects,
) -> Vec<Value> {
    match op {
        Op::Add(_) => {
            let source = activity_source(user);
            let ids = (0..n)
                .map(|k| {
                    let id = user.new_id();
                    let start = at + 3_600 * k as i64;
                    let duration = prng.range(20, 60) * 60;
                    user.workouts.push(Workout {
                        id,
                        category: 2,
                        src: source,
                        attrib: 7,
                        startdate: start,
                        enddate: start + duration,
                        modified: now,
                        data: workout_data(prng, 2, duration),
                    });
                    json!(id)
                })
                .collect();
            if n > 0 {
                fx.synced(user, source, now);
            }
            ids
        }
        Op::Modify => user
            .workouts
            .iter_mut()
            .take(n)
            .map(|w| {
                for (k, v) in w.data.iter_mut() {
                    if *k == "calories" {
                        *v = json!(v.as_i64().unwrap_or(0) + 10);
                    }
                }
                w.modified = now;
                json!(w.id)
            })
            .collect(),
        Op::Delete => {
            let n = n.min(user.workouts.len());
            user.workouts.drain(..n).map(|w| json!(w.id)).collect()
        }
    }
}

/// The stage plan of a nap of `minutes` minutes: light sleep between two minutes awake.
pub fn nap_plan(minutes: u32) -> Vec<(i64, i64)> {
    let m = i64::from(minutes.max(1));
    if m < 5 {
        vec![(1, m)]
    } else {
        vec![(0, 1), (1, m - 2), (0, 1)]
    }
}

/// `n` sleep sessions (a night per sleep device, or naps of `minutes`), one a day from
/// `first`, each with its segments and summary, created and modified now.
fn sleep_add(
    user: &mut UserData,
    first: i64,
    n: usize,
    minutes: Option<u32>,
    now: i64,
    prng: &mut Prng,
    fx: &mut Effects,
) -> Vec<Value> {
    let sources = sleep_sources(user);
    let mut ids = Vec::new();
    for k in 0..n {
        let plan = minutes.map_or_else(|| random_plan(prng), nap_plan);
        let before = user.nights.len();
        ids.extend(build_nights(
            user,
            prng,
            first + 86_400 * k as i64,
            &plan,
            &sources,
            now,
        ));
        for night in &mut user.nights[before..] {
            night.created = now;
            night.modified = now;
        }
    }
    if n > 0 {
        for &s in &sources {
            fx.synced(user, s, now);
        }
    }
    ids.into_iter().map(|id| json!(id)).collect()
}

fn sleep(user: &mut UserData, op: Op, n: usize, now: i64) -> Vec<Value> {
    match op {
        Op::Modify => user
            .nights
            .iter_mut()
            .take(n)
            .map(|night| {
                for seg in &mut night.segments {
                    for (name, values) in &mut seg.maps {
                        if *name == "hr" {
                            values.iter_mut().for_each(|v| *v += 1);
                        }
                    }
                }
                night.summary = summarize(&night.segments);
                night.modified = now;
                json!(night.id)
            })
            .collect(),
        _ => {
            let n = n.min(user.nights.len());
            user.nights
                .drain(..n)
                .map(|night| json!(night.id))
                .collect()
        }
    }
}

fn heart(
    user: &mut UserData,
    op: Op,
    n: usize,
    at: i64,
    now: i64,
    prng: &mut Prng,
    fx: &mut Effects,
) -> Vec<Value> {
    match op {
        Op::Add(_) => (0..n)
            .map(|k| {
                let id = new_ecg(user, prng, at + 600 * k as i64, now);
                if let Some(source) = user.ecgs.last().map(|e| e.src) {
                    fx.synced(user, source, now);
                }
                json!(id)
            })
            .collect(),
        Op::Modify => user
            .ecgs
            .iter_mut()
            .take(n)
            .map(|e| {
                e.heart_rate += 1;
                e.afib = (e.afib + 1) % 3;
                e.modified = now;
                json!(e.signalid)
            })
            .collect(),
        Op::Delete => {
            let n = n.min(user.ecgs.len());
            user.ecgs.drain(..n).map(|e| json!(e.signalid)).collect()
        }
    }
}

fn stetho(
    user: &mut UserData,
    op: Op,
    n: usize,
    at: i64,
    now: i64,
    prng: &mut Prng,
    fx: &mut Effects,
) -> Vec<Value> {
    match op {
        Op::Add(_) => (0..n)
            .map(|k| {
                let id = new_stetho(user, prng, at + 600 * k as i64);
                if let Some(source) = user.stethos.last().map(|s| s.src) {
                    fx.synced(user, source, now);
                }
                json!(id)
            })
            .collect(),
        Op::Modify => user
            .stethos
            .iter_mut()
            .take(n)
            .map(|s| {
                s.vhd = (s.vhd + 1) % 3;
                json!(s.signalid)
            })
            .collect(),
        Op::Delete => {
            let n = n.min(user.stethos.len());
            user.stethos.drain(..n).map(|s| json!(s.signalid)).collect()
        }
    }
}

fn devices(user: &mut UserData, op: Op, n: usize, prng: &mut Prng) -> Vec<Value> {
    match op {
        Op::Add(_) => (0..n)
            .map(|_| {
                let deviceid = prng.hex40();
                user.devices.push(Device {
                    kind: "Scale",
                    battery: "high",
                    model: "Body Comp",
                    model_id: 18,
                    deviceid: deviceid.clone(),
                    first_session_date: None,
                    last_session_date: None,
                });
                json!(deviceid)
            })
            .collect(),
        Op::Modify => user
            .devices
            .iter_mut()
            .take(n)
            .map(|d| {
                d.battery = match d.battery {
                    "high" => "medium",
                    "medium" => "low",
                    _ => "high",
                };
                json!(d.deviceid)
            })
            .collect(),
        Op::Delete => {
            let n = n.min(user.devices.len());
            user.devices.drain(..n).map(|d| json!(d.deviceid)).collect()
        }
    }
}

fn goals(user: &mut UserData, op: Op) -> Value {
    match op {
        Op::Delete => user.goals = None,
        _ => {
            let old = user.goals.clone();
            let steps = old.as_ref().and_then(|g| g.steps).unwrap_or(9_500) + 500;
            let sleep = old.as_ref().and_then(|g| g.sleep).unwrap_or(27_000) + 900;
            let weight = old
                .as_ref()
                .and_then(|g| g.weight)
                .map_or((70_000, -3), |(v, u)| (v - 500, u));
            user.goals = Some(Goals {
                steps: Some(steps),
                sleep: Some(sleep),
                weight: Some(weight),
            });
        }
    }
    super::render::goals(user)
}
