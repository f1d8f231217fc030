//! Sleep nights: segments with 60 s maps (sleep get) and one summary per night and device
//! (getsummary). The second user has two devices recording the same nights.

use super::generate::{src, Span};
use super::model::{Fields, Night, Segment, UserData};
use crate::clock;
use crate::prng::Prng;
use serde_json::{json, Value};

/// Names of the per-minute maps, in API order.
pub const MAPS: [&str; 6] = ["hr", "rr", "snoring", "sdnn_1", "rmssd", "mvt_score"];

/// The sleep devices of a user.
pub fn sleep_sources(user: &UserData) -> Vec<u8> {
    match user.index {
        1 => vec![src::AURA, src::SCANWATCH],
        i if i % 4 == 3 => vec![src::SCANWATCH],
        _ => vec![src::AURA],
    }
}

/// `model` category of a sleep source: 32 sleep monitor, 16 tracker.
pub fn sleep_model(source: u8) -> i64 {
    if source == src::AURA {
        32
    } else {
        16
    }
}

/// A plan of (state, minutes) for one night.
fn plan(prng: &mut Prng) -> Vec<(i64, i64)> {
    let mut p = vec![(0, prng.range(4, 25))];
    let cycles = prng.range(4, 6);
    for c in 0..cycles {
        p.push((1, prng.range(15, 45)));
        p.push((2, prng.range(10, 40)));
        p.push((1, prng.range(5, 20)));
        p.push((3, prng.range(8, 30)));
        if c + 1 < cycles && prng.chance(0.3) {
            p.push((0, prng.range(2, 15)));
        }
    }
    p.push((0, prng.range(3, 15)));
    p
}

/// Per-minute values of one segment for one device.
fn maps(prng: &mut Prng, state: i64, minutes: i64) -> Vec<(&'static str, Vec<i64>)> {
    let n = minutes as usize;
    let base_hr = match state {
        0 => 68,
        2 => 52,
        3 => 60,
        _ => 56,
    };
    let mut out: Vec<(&'static str, Vec<i64>)> =
        MAPS.iter().map(|k| (*k, Vec::with_capacity(n))).collect();
    for _ in 0..n {
        let snore = if state != 0 && prng.chance(0.1) {
            prng.range(1, 40)
        } else {
            0
        };
        let vals = [
            base_hr + prng.range(-4, 6),
            prng.range(11, 18),
            snore,
            prng.range(20, 80),
            prng.range(20, 95),
            if state == 0 {
                prng.range(30, 200)
            } else {
                prng.range(0, 40)
            },
        ];
        for (slot, v) in out.iter_mut().zip(vals) {
            slot.1.push(v);
        }
    }
    out
}

fn avg(v: &[i64]) -> i64 {
    if v.is_empty() {
        0
    } else {
        v.iter().sum::<i64>() / v.len() as i64
    }
}

fn map_values(segments: &[Segment], name: &str) -> Vec<i64> {
    segments
        .iter()
        .flat_map(|s| {
            s.maps
                .iter()
                .filter(|(k, _)| *k == name)
                .flat_map(|(_, v)| v.iter().copied())
        })
        .collect()
}

/// The getsummary `data` of a night, computed from its segments (every metric).
pub fn summarize(segments: &[Segment]) -> Fields {
    let (Some(first), Some(last)) = (segments.first(), segments.last()) else {
        return Vec::new();
    };
    let dur = |s: &Segment| s.end - s.start;
    let tib = last.end - first.start;
    let by_state = |st: i64| {
        segments
            .iter()
            .filter(|s| s.state == st)
            .map(dur)
            .sum::<i64>()
    };
    let awake = by_state(0);
    let light = by_state(1);
    let deep = by_state(2);
    let rem = by_state(3);
    let latency = if first.state == 0 { dur(first) } else { 0 };
    let wake_latency = if last.state == 0 && segments.len() > 1 {
        dur(last)
    } else {
        0
    };
    let waso = awake - latency - wake_latency;
    let inner_wakes = segments[1..segments.len().saturating_sub(1)]
        .iter()
        .filter(|s| s.state == 0)
        .count() as i64;
    let tst = light + deep + rem;
    let hr = map_values(segments, "hr");
    let rr = map_values(segments, "rr");
    let snoring = map_values(segments, "snoring");
    let mvt = map_values(segments, "mvt_score");
    let rmssd = map_values(segments, "rmssd");
    let snore_minutes = snoring.iter().filter(|v| **v > 0).count() as i64;
    let episodes = snoring.windows(2).filter(|w| w[0] == 0 && w[1] > 0).count() as i64;
    let efficiency = if tib > 0 {
        (tst * 100 / tib) as f64 / 100.0
    } else {
        0.0
    };
    let head = &rmssd[..rmssd.len().min(30)];
    let tail = &rmssd[rmssd.len().saturating_sub(30)..];
    vec![
        ("wakeupduration", json!(awake)),
        ("wakeupcount", json!(inner_wakes)),
        ("durationtosleep", json!(latency)),
        ("remsleepduration", json!(rem)),
        ("durationtowakeup", json!(wake_latency)),
        ("total_timeinbed", json!(tib)),
        ("total_sleep_time", json!(tst)),
        ("sleep_efficiency", json!(efficiency)),
        ("sleep_latency", json!(latency)),
        ("wakeup_latency", json!(wake_latency)),
        ("waso", json!(waso)),
        (
            "nb_rem_episodes",
            json!(segments.iter().filter(|s| s.state == 3).count()),
        ),
        ("out_of_bed_count", json!(0)),
        ("lightsleepduration", json!(light)),
        ("deepsleepduration", json!(deep)),
        ("hr_average", json!(avg(&hr))),
        ("hr_min", json!(hr.iter().min().copied().unwrap_or(0))),
        ("hr_max", json!(hr.iter().max().copied().unwrap_or(0))),
        ("rr_average", json!(avg(&rr))),
        ("rr_min", json!(rr.iter().min().copied().unwrap_or(0))),
        ("rr_max", json!(rr.iter().max().copied().unwrap_or(0))),
        ("breathing_disturbances_intensity", json!(episodes.min(60))),
        ("snoring", json!(snore_minutes * 60)),
        ("snoringepisodecount", json!(episodes)),
        (
            "sleep_score",
            json!((30.0 + efficiency * 60.0) as i64 + (deep * 10 / tib.max(1))),
        ),
        ("apnea_hypopnea_index", json!(episodes / 4)),
        (
            "night_events",
            json!({
                "1": [0],
                "2": [latency],
                "3": [tib - wake_latency],
                "4": [tib],
            }),
        ),
        ("mvt_score_avg", json!(avg(&mvt))),
        (
            "mvt_active_duration",
            json!(mvt.iter().filter(|v| **v > 50).count() as i64 * 60),
        ),
        ("rmssd_start_avg", json!(avg(head))),
        ("rmssd_end_avg", json!(avg(tail))),
    ]
}

/// Builds the nights (one per source) starting at `start` with the given stage plan.
pub fn build_nights(
    user: &mut UserData,
    prng: &mut Prng,
    start: i64,
    plan: &[(i64, i64)],
    sources: &[u8],
    anchor: i64,
) -> Vec<i64> {
    let end = start + plan.iter().map(|(_, m)| m * 60).sum::<i64>();
    let mut ids = Vec::new();
    for &source in sources {
        let mut t = start;
        let segments: Vec<Segment> = plan
            .iter()
            .map(|&(state, minutes)| {
                let s = Segment {
                    start: t,
                    end: t + minutes * 60,
                    state,
                    maps: maps(prng, state, minutes),
                };
                t += minutes * 60;
                s
            })
            .collect();
        let created = (end + prng.range(300, 5_400)).min(anchor.max(end));
        let id = user.new_id();
        ids.push(id);
        user.nights.push(Night {
            id,
            src: source,
            start,
            end,
            created,
            modified: created,
            summary: summarize(&segments),
            segments,
        });
    }
    ids
}

/// A random stage plan (exposed for mutations).
pub fn random_plan(prng: &mut Prng) -> Vec<(i64, i64)> {
    plan(prng)
}

pub fn generate(user: &mut UserData, span: Span) {
    let mut prng = Prng::derive(user.seed, "sleep", 0);
    let sources = sleep_sources(user);
    for date in span.local_dates() {
        let start = clock::local_ts(
            date,
            prng.range(21 * 3_600 + 1_800, 23 * 3_600 + 3_000),
            span.tz,
        );
        let p = plan(&mut prng);
        let end = start + p.iter().map(|(_, m)| m * 60).sum::<i64>();
        if start < span.start || end > span.anchor {
            continue;
        }
        build_nights(user, &mut prng, start, &p, &sources, span.anchor);
    }
}

/// The value of a summary metric (for tests and mutations).
pub fn metric<'a>(fields: &'a Fields, name: &str) -> Option<&'a Value> {
    fields.iter().find(|(k, _)| *k == name).map(|(_, v)| v)
}
