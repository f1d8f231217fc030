//! getactivity (one row per local day), getintradayactivity (irregular samples) and
//! getworkouts.

use super::generate::{src, Span};
use super::model::{Activity, Fields, IntradaySample, UserData, Workout};
use crate::clock;
use crate::prng::Prng;
use serde_json::{json, Value};

/// A float with three decimals, as the API sends distances and calories.
pub fn milli(v: i64) -> Value {
    json!(v as f64 / 1000.0)
}

/// Whether this user's activity comes from an external app (Google Fit / HealthKit).
pub fn external(user: &UserData) -> bool {
    user.index % 3 == 2
}

pub fn generate(user: &mut UserData, span: Span, samples_per_day: u32) {
    activities(user, span);
    intraday(user, span, samples_per_day);
    workouts(user, span);
}

/// Metrics of one activity day (in API order).
pub fn activity_metrics(prng: &mut Prng, with_hr: bool) -> Fields {
    let steps = prng.range(1_500, 16_000);
    let soft = prng.range(1_000, 12_000);
    let moderate = prng.range(0, 3_000);
    let intense = if prng.chance(0.25) {
        0
    } else {
        prng.range(60, 1_500)
    };
    let calories = (moderate + 2 * intense) * 90 + prng.range(0, 999);
    let mut f: Fields = vec![
        ("steps", json!(steps)),
        ("distance", milli(steps * 750 + prng.range(0, 999))),
        ("elevation", json!(prng.range(0, 25))),
        ("soft", json!(soft)),
        ("moderate", json!(moderate)),
        ("intense", json!(intense)),
        ("active", json!(moderate + intense)),
        ("calories", milli(calories)),
        (
            "totalcalories",
            milli(calories + prng.range(1_500_000, 2_200_000)),
        ),
    ];
    if with_hr {
        let avg = prng.range(62, 85);
        f.extend([
            ("hr_average", json!(avg)),
            ("hr_min", json!(avg - prng.range(10, 20))),
            ("hr_max", json!(avg + prng.range(30, 80))),
            ("hr_zone_0", json!(prng.range(20_000, 40_000))),
            ("hr_zone_1", json!(prng.range(1_000, 8_000))),
            ("hr_zone_2", json!(prng.range(0, 2_000))),
            ("hr_zone_3", json!(prng.range(0, 600))),
        ]);
    }
    f
}

fn activities(user: &mut UserData, span: Span) {
    let mut prng = Prng::derive(user.seed, "getactivity", 0);
    let ext = external(user);
    let source = if ext { src::GOOGLE_FIT } else { src::SCANWATCH };
    for date in span.local_dates() {
        let day_end = clock::local_ts(date, 86_400, span.tz);
        let modified = (day_end + prng.range(600, 7_200)).min(span.anchor);
        user.activities.push(Activity {
            date,
            src: source,
            modified,
            metrics: activity_metrics(&mut prng, !ext),
        });
    }
}

/// The values of one intraday sample; which keys appear depends on the sample kind.
pub fn intraday_values(prng: &mut Prng, kind: u64) -> Fields {
    let steps = prng.range(0, 180);
    let walk: Fields = vec![
        ("steps", json!(steps)),
        ("elevation", json!(prng.range(0, 1))),
        ("calories", milli(steps * 40 + prng.range(0, 999))),
        ("distance", milli(steps * 760 + prng.range(0, 999))),
        ("duration", json!(prng.range(10, 300))),
    ];
    match kind % 8 {
        0..=2 => walk,
        3 => vec![("heart_rate", json!(prng.range(55, 120)))],
        4 => {
            let mut f = walk;
            f.push(("heart_rate", json!(prng.range(70, 130))));
            f
        }
        5 => vec![
            ("heart_rate", json!(prng.range(50, 70))),
            ("rmssd", milli(prng.range(20_000, 90_000))),
            ("sdnn1", milli(prng.range(20_000, 80_000))),
            ("hrv_quality", json!(prng.range(0, 3))),
        ],
        6 => vec![("spo2_auto", milli(prng.range(93_000, 99_900)))],
        _ => vec![
            ("stroke", json!(prng.range(10, 40))),
            ("pool_lap", json!(prng.range(0, 2))),
            ("duration", json!(prng.range(30, 120))),
        ],
    }
}

fn intraday(user: &mut UserData, span: Span, per_day: u32) {
    if per_day == 0 {
        return;
    }
    let mut prng = Prng::derive(user.seed, "getintradayactivity", 0);
    let source = if external(user) {
        src::HEALTHKIT
    } else {
        src::SCANWATCH
    };
    let step = (86_400 / i64::from(per_day)).max(2);
    let mut t = span.start;
    let mut k: u64 = 0;
    let mut last = i64::MIN;
    while t < span.anchor {
        let ts = (t + prng.range(0, step / 2)).max(last + 1);
        if ts >= span.anchor {
            break;
        }
        last = ts;
        let kind = prng.next_u64() ^ k;
        user.intraday.push(IntradaySample {
            ts,
            src: source,
            values: intraday_values(&mut prng, kind),
        });
        k += 1;
        t += step;
    }
}

/// Workout categories used (walk, run, cycling, swimming, weights, yoga, rowing, indoor
/// running, HIIT, and a code newer than most clients know).
const CATEGORIES: [i64; 10] = [1, 2, 6, 7, 16, 28, 187, 307, 550, 568];

/// The `data` object of one workout.
pub fn workout_data(prng: &mut Prng, category: i64, duration: i64) -> Fields {
    let avg = prng.range(95, 150);
    let mut f: Fields = vec![
        ("calories", json!(duration / 60 * prng.range(5, 12))),
        ("intensity", json!(prng.range(20, 90))),
        ("manual_distance", json!(0)),
        ("manual_calories", json!(0)),
        ("hr_average", json!(avg)),
        ("hr_min", json!(avg - prng.range(20, 40))),
        ("hr_max", json!(avg + prng.range(10, 40))),
        ("hr_zone_0", json!(prng.range(0, duration / 3))),
        ("hr_zone_1", json!(prng.range(0, duration / 3))),
        ("hr_zone_2", json!(prng.range(0, duration / 4))),
        ("hr_zone_3", json!(prng.range(0, duration / 8))),
        ("pause_duration", json!(prng.range(0, 300))),
        ("algo_pause_duration", Value::Null),
        (
            "spo2_average",
            if prng.chance(0.5) {
                Value::Null
            } else {
                json!(prng.range(94, 99))
            },
        ),
    ];
    if category == 7 {
        let laps = prng.range(10, 60);
        f.extend([
            ("pool_laps", json!(laps)),
            ("strokes", json!(laps * prng.range(14, 22))),
            ("pool_length", json!(25)),
        ]);
    } else {
        let steps = duration * prng.range(1, 3);
        f.extend([
            ("steps", json!(steps)),
            ("distance", json!(steps * 8 / 10)),
            ("elevation", json!(prng.range(0, 40))),
        ]);
    }
    f
}

fn workouts(user: &mut UserData, span: Span) {
    let mut prng = Prng::derive(user.seed, "getworkouts", 0);
    let ext = external(user);
    let source = if ext { src::GOOGLE_FIT } else { src::SCANWATCH };
    for (i, date) in span.local_dates().into_iter().enumerate() {
        if i % 2 == 1 && !prng.chance(0.3) {
            continue;
        }
        let start = clock::local_ts(date, prng.range(7 * 3_600, 19 * 3_600), span.tz);
        let duration = prng.range(15, 90) * 60 + prng.range(0, 59);
        let end = start + duration;
        if start < span.start || end > span.anchor {
            continue;
        }
        let category = CATEGORIES[prng.range(0, CATEGORIES.len() as i64 - 1) as usize];
        let id = user.new_id();
        user.workouts.push(Workout {
            id,
            category,
            src: source,
            attrib: if prng.chance(0.7) { 7 } else { 0 },
            startdate: start,
            enddate: end,
            modified: (end + prng.range(60, 3_600)).min(span.anchor),
            data: workout_data(&mut prng, category, duration),
        });
    }
}
