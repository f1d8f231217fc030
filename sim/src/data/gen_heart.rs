//! Heart (ECG) and stethoscope recordings, with their signals derived on demand.

use super::generate::{src, Span};
use super::model::{Ecg, Stetho, UserData};
use crate::prng::Prng;

/// A new ECG recording at `timestamp` (Move-ECG-like watch or BPM Core, alternately).
pub fn new_ecg(user: &mut UserData, prng: &mut Prng, timestamp: i64, modified: i64) -> i64 {
    let core = prng.chance(0.4);
    let signalid = user.new_id();
    let afib = match prng.range(0, 19) {
        0 => 1,
        1 => 2,
        _ => 0,
    };
    user.ecgs.push(Ecg {
        signalid,
        src: if core { src::BPM_CORE } else { src::SCANWATCH },
        timestamp,
        modified,
        afib,
        heart_rate: prng.range(55, 98),
        bloodpressure: core.then(|| (prng.range(65, 92), prng.range(105, 145))),
        wearposition: if core {
            prng.range(2, 3)
        } else {
            prng.range(0, 1)
        },
        sampling_frequency: if core { 500 } else { 300 },
        duration_secs: if core { 20 } else { 30 },
    });
    signalid
}

/// A new stethoscope recording at `timestamp`.
pub fn new_stetho(user: &mut UserData, prng: &mut Prng, timestamp: i64) -> i64 {
    let signalid = user.new_id();
    user.stethos.push(Stetho {
        signalid,
        src: if prng.chance(0.5) {
            src::BEAMO
        } else {
            src::BPM_CORE
        },
        timestamp,
        vhd: prng.range(0, 2),
        position: prng.range(15, 28),
    });
    signalid
}

pub fn generate(user: &mut UserData, span: Span) {
    let mut prng = Prng::derive(user.seed, "heart", 0);
    let mut t = span.start + prng.range(3_600, 3 * 86_400);
    while t < span.anchor {
        let modified = (t + prng.range(30, 900)).min(span.anchor);
        new_ecg(user, &mut prng, t, modified);
        t += prng.range(2 * 86_400, 4 * 86_400);
    }
    let mut prng = Prng::derive(user.seed, "stetho", 0);
    let mut t = span.start + prng.range(3_600, 5 * 86_400);
    while t < span.anchor {
        new_stetho(user, &mut prng, t);
        t += prng.range(5 * 86_400, 9 * 86_400);
    }
}

/// The ECG waveform (µV) of a recording: a synthetic P-QRS-T beat train.
pub fn ecg_signal(seed: u64, ecg: &Ecg) -> Vec<i64> {
    let mut prng = Prng::derive(seed, "ecg-signal", ecg.signalid as u64);
    let fs = ecg.sampling_frequency;
    let n = fs * ecg.duration_secs;
    let beat = (fs * 60 / ecg.heart_rate.max(30)).max(1);
    (0..n)
        .map(|i| {
            let p = i % beat;
            let x = p as f64 / beat as f64;
            let wave = if (0.30..0.33).contains(&x) {
                1_100.0 * (1.0 - ((x - 0.315) / 0.015).abs())
            } else if (0.10..0.18).contains(&x) {
                120.0 * ((x - 0.10) / 0.08 * std::f64::consts::PI).sin()
            } else if (0.45..0.60).contains(&x) {
                250.0 * ((x - 0.45) / 0.15 * std::f64::consts::PI).sin()
            } else {
                0.0
            };
            wave as i64 + prng.range(-15, 15)
        })
        .collect()
}

/// The filtered waveform of a signal: a 5-sample moving average (the baseline noise removed),
/// rounded to whole µV.
pub fn ecg_filtered(signal: &[i64]) -> Vec<i64> {
    (0..signal.len())
        .map(|i| {
            let window = &signal[i.saturating_sub(2)..(i + 3).min(signal.len())];
            let sum: i64 = window.iter().sum();
            (sum as f64 / window.len() as f64).round() as i64
        })
        .collect()
}

/// The intervals of a recording (ms): PR, QRS, QT and the corrected QT (Bazett).
pub fn ecg_intervals(seed: u64, ecg: &Ecg) -> serde_json::Value {
    let mut prng = Prng::derive(seed, "ecg-intervals", ecg.signalid as u64);
    let pr = prng.range(120, 200);
    let qrs = prng.range(70, 110);
    let qt = prng.range(340, 440);
    let rr = 60.0 / ecg.heart_rate.max(30) as f64;
    let qtc = (qt as f64 / rr.sqrt()).round() as i64;
    serde_json::json!({"pr": pr, "qrs": qrs, "qt": qt, "qtc": qtc})
}

/// Stethoscope audio as A-law bytes (0..=255), 4 kHz.
pub fn stetho_signal(seed: u64, st: &Stetho) -> Vec<i64> {
    let mut prng = Prng::derive(seed, "stetho-signal", st.signalid as u64);
    (0..STETHO_FREQUENCY * STETHO_DURATION)
        .map(|i| {
            let beat = (i % 3_200) < 400;
            let base = if beat { 170 } else { 213 };
            base + prng.range(-6, 6)
        })
        .collect()
}

pub const STETHO_FREQUENCY: i64 = 4_000;
pub const STETHO_DURATION: i64 = 8;
