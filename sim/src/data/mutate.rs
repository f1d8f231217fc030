//! Mutations between runs: add, modify or delete items of a module, stamped with a
//! `modified` strictly after every existing one so `lastupdate` syncs see them.

use super::gen_activity::{activity_metrics, external, intraday_values, workout_data};
use super::gen_heart::{new_ecg, new_stetho};
use super::gen_sleep::{build_nights, random_plan, sleep_sources, summarize};
use super::generate::src;
use super::model::{
    Activity, Dataset, Device, Goals, IntradaySample, Measure, MeasureGroup, UserData, Workout,
};
use crate::clock;
use crate::prng::Prng;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

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
}

#[derive(Clone, Copy, PartialEq)]
enum Op {
    Add(Option<i64>),
    Modify,
    Delete,
}

/// The largest `modified` of a module (0 when it has none).
fn max_modified(user: &UserData, module: &str) -> i64 {
    let m = match module {
        "getmeas" => user.meas.groups.iter().map(|g| g.modified).max(),
        "getactivity" => user.activities.iter().map(|a| a.modified).max(),
        "getworkouts" => user.workouts.iter().map(|w| w.modified).max(),
        "sleep_get" | "getsummary" => user.nights.iter().map(|n| n.modified).max(),
        "heart_list" | "heart_get" => user.ecgs.iter().map(|e| e.modified).max(),
        _ => None,
    };
    m.unwrap_or(0)
}

/// Applies a mutation; returns the affected keys.
pub fn apply(data: &mut Dataset, mutation: &Mutation, real_now: i64) -> Result<Value, String> {
    let (module, userid, count, op) = match mutation {
        Mutation::Add {
            module,
            userid,
            count,
            at,
        } => (module, *userid, *count, Op::Add(*at)),
        Mutation::Modify {
            module,
            userid,
            count,
        } => (module, *userid, *count, Op::Modify),
        Mutation::Delete {
            module,
            userid,
            count,
        } => (module, *userid, *count, Op::Delete),
    };
    let anchor = data.anchor;
    let user = data
        .user_mut(userid)
        .ok_or_else(|| format!("unknown userid {userid}"))?;
    let now = real_now.max(anchor + 1).max(max_modified(user, module) + 1);
    let mut prng = Prng::derive(user.seed, "mutate", user.next_id as u64);
    let at = match op {
        Op::Add(Some(t)) => t,
        _ => now - 43_200,
    };
    let n = count as usize;
    let keys = match module.as_str() {
        "getmeas" => (
            "grpids",
            Value::Array(meas(user, op, n, at, now, &mut prng)),
        ),
        "getactivity" => (
            "dates",
            Value::Array(activity(user, op, n, at, now, &mut prng)),
        ),
        "getintradayactivity" => (
            "timestamps",
            Value::Array(intraday(user, op, n, at, &mut prng)),
        ),
        "getworkouts" => (
            "ids",
            Value::Array(workouts(user, op, n, at, now, &mut prng)),
        ),
        "sleep_get" | "getsummary" => ("ids", Value::Array(sleep(user, op, n, at, now, &mut prng))),
        "heart_list" | "heart_get" => (
            "signalids",
            Value::Array(heart(user, op, n, at, now, &mut prng)),
        ),
        "stetho_list" | "stetho_get" => (
            "signalids",
            Value::Array(stetho(user, op, n, at, &mut prng)),
        ),
        "getdevice" => ("deviceids", Value::Array(devices(user, op, n, &mut prng))),
        "getgoals" => ("goals", goals(user, op)),
        other => return Err(format!("unknown module {other}")),
    };
    user.reindex();
    Ok(json!({
        "module": module,
        "userid": userid,
        "modified": now,
        keys.0: keys.1,
    }))
}

fn meas(user: &mut UserData, op: Op, n: usize, at: i64, now: i64, prng: &mut Prng) -> Vec<Value> {
    match op {
        Op::Add(_) => (0..n)
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
            .collect(),
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

fn activity(
    user: &mut UserData,
    op: Op,
    n: usize,
    at: i64,
    now: i64,
    prng: &mut Prng,
) -> Vec<Value> {
    let with_hr = !external(user);
    let ymd = |a: &Activity| json!(a.date.format("%Y-%m-%d").to_string());
    match op {
        Op::Add(_) => {
            let first = clock::local_date(at, user.tz);
            (0..n)
                .filter_map(|k| first.checked_add_days(chrono::Days::new(k as u64)))
                .map(|date| {
                    let metrics = activity_metrics(prng, with_hr);
                    if let Some(a) = user.activities.iter_mut().find(|a| a.date == date) {
                        a.metrics = metrics;
                        a.modified = now;
                    } else {
                        let source = if with_hr {
                            src::SCANWATCH
                        } else {
                            src::GOOGLE_FIT
                        };
                        user.activities.push(Activity {
                            date,
                            src: source,
                            modified: now,
                            metrics,
                        });
                    }
                    json!(date.format("%Y-%m-%d").to_string())
                })
                .collect()
        }
        Op::Modify => user
            .activities
            .iter_mut()
            .take(n)
            .map(|a| {
                a.metrics = activity_metrics(prng, with_hr);
                a.modified = now;
                ymd(a)
            })
            .collect(),
        Op::Delete => {
            let n = n.min(user.activities.len());
            user.activities.drain(..n).map(|a| ymd(&a)).collect()
        }
    }
}

fn intraday(user: &mut UserData, op: Op, n: usize, at: i64, prng: &mut Prng) -> Vec<Value> {
    match op {
        Op::Add(_) => {
            let source = if external(user) {
                src::HEALTHKIT
            } else {
                src::SCANWATCH
            };
            (0..n)
                .map(|k| {
                    let mut ts = at + 60 * k as i64;
                    while user.intraday.iter().any(|s| s.ts == ts) {
                        ts += 1;
                    }
                    user.intraday.push(IntradaySample {
                        ts,
                        src: source,
                        values: intraday_values(prng, 0),
                    });
                    json!(ts)
                })
                .collect()
        }
        Op::Modify => user
            .intraday
            .iter_mut()
            .take(n)
            .map(|s| {
                s.values = intraday_values(prng, 4);
                json!(s.ts)
            })
            .collect(),
        Op::Delete => {
            let n = n.min(user.intraday.len());
            user.intraday.drain(..n).map(|s| json!(s.ts)).collect()
        }
    }
}

fn workouts(
    user: &mut UserData,
    op: Op,
    n: usize,
    at: i64,
    now: i64,
    prng: &mut Prng,
) -> Vec<Value> {
    match op {
        Op::Add(_) => {
            let source = if external(user) {
                src::GOOGLE_FIT
            } else {
                src::SCANWATCH
            };
            (0..n)
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
                .collect()
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

fn sleep(user: &mut UserData, op: Op, n: usize, at: i64, now: i64, prng: &mut Prng) -> Vec<Value> {
    match op {
        Op::Add(explicit) => {
            let sources = sleep_sources(user);
            let first = if explicit.is_some() {
                at
            } else {
                now - 20 * 3_600
            };
            let mut ids = Vec::new();
            for k in 0..n {
                let plan = random_plan(prng);
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
            ids.into_iter().map(|id| json!(id)).collect()
        }
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
        Op::Delete => {
            let n = n.min(user.nights.len());
            user.nights
                .drain(..n)
                .map(|night| json!(night.id))
                .collect()
        }
    }
}

fn heart(user: &mut UserData, op: Op, n: usize, at: i64, now: i64, prng: &mut Prng) -> Vec<Value> {
    match op {
        Op::Add(_) => (0..n)
            .map(|k| json!(new_ecg(user, prng, at + 600 * k as i64, now)))
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

fn stetho(user: &mut UserData, op: Op, n: usize, at: i64, prng: &mut Prng) -> Vec<Value> {
    match op {
        Op::Add(_) => (0..n)
            .map(|k| json!(new_stetho(user, prng, at + 600 * k as i64)))
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
