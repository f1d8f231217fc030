//! Fault injection state: the deterministic every-Nth counter, the rolling 60 s rate limit
//! and the repeat guard.

use crate::config::Faults;
use std::collections::{HashMap, VecDeque};

/// A fault that replaces the real reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Gateway {
    /// HTTP 502 with an HTML body.
    Html5xx,
    /// Envelope status 522.
    Status522,
}

/// Whether the `keyless_rows` fault strips the key of this full row of `module` (as
/// `truth` renders it): one row in three, chosen by the key itself, so tests can tell which.
pub fn keyless(module: &str, row: &serde_json::Value) -> bool {
    let pick = |n: Option<i64>| n.is_some_and(|n| n.rem_euclid(3) == 0);
    match module {
        "getworkouts" | "getsummary" => pick(row["id"].as_i64()),
        "heart_list" => pick(row["ecg"]["signalid"].as_i64()),
        "getactivity" => row["date"]
            .as_str()
            .and_then(|d| d.get(8..10))
            .and_then(|d| d.parse().ok())
            .is_some_and(|day: i64| pick(Some(day))),
        _ => false,
    }
}

/// Removes the key of the rows [`keyless`] picks from a reply body of `module`.
pub fn strip_keys(module: &str, body: &mut serde_json::Value) {
    let list = match module {
        "getworkouts" | "getsummary" | "heart_list" => "series",
        "getactivity" => "activities",
        _ => return,
    };
    for row in body[list].as_array_mut().into_iter().flatten() {
        if !keyless(module, row) {
            continue;
        }
        if let Some(o) = row.as_object_mut() {
            match module {
                "getactivity" => {
                    o.remove("date");
                }
                "heart_list" => {
                    if let Some(ecg) = o.get_mut("ecg").and_then(|e| e.as_object_mut()) {
                        ecg.remove("signalid");
                    }
                }
                _ => {
                    o.remove("id");
                }
            }
        }
    }
}

#[derive(Debug, Default)]
pub struct FaultState {
    /// API requests since the faults were last set.
    counter: u64,
    /// Arrival times of requests let through by the rate limiter.
    accepted: VecDeque<f64>,
    /// Last accepted time per identical request.
    last_seen: HashMap<String, f64>,
}

fn every(n: Option<u32>, counter: u64) -> bool {
    matches!(n, Some(n) if n > 0 && counter % u64::from(n) == 0)
}

/// Seconds to wait, rounded up, at least 1.
fn wait_secs(secs: f64) -> u64 {
    (secs.ceil() as u64).max(1)
}

impl FaultState {
    /// Restarts the every-Nth counter (called when faults change).
    pub fn restart_counter(&mut self) {
        self.counter = 0;
    }

    /// Counts one API request; returns its 1-based number for every-Nth faults.
    pub fn tick(&mut self) -> u64 {
        self.counter += 1;
        self.counter
    }

    /// The gateway fault for request number `n`, if any.
    pub fn gateway(faults: &Faults, n: u64) -> Option<Gateway> {
        if every(faults.html_5xx_every, n) {
            Some(Gateway::Html5xx)
        } else if every(faults.status_522_every, n) {
            Some(Gateway::Status522)
        } else {
            None
        }
    }

    /// Whether request number `n` gets a truncated body.
    pub fn truncated(faults: &Faults, n: u64) -> bool {
        every(faults.truncated_every, n)
    }

    /// Rolling 60 s limit over all users: `Err(wait_seconds)` when the request is over it.
    pub fn rate_limit(&mut self, now: f64, limit: Option<u32>) -> Result<(), u64> {
        let Some(limit) = limit else {
            return Ok(());
        };
        while self.accepted.front().is_some_and(|t| *t <= now - 60.0) {
            self.accepted.pop_front();
        }
        if self.accepted.len() >= limit as usize {
            let oldest = self.accepted.front().copied().unwrap_or(now);
            return Err(wait_secs(oldest + 60.0 - now));
        }
        self.accepted.push_back(now);
        Ok(())
    }

    /// Identical request within `guard` seconds: `Err(wait_seconds)`.
    pub fn repeat_guard(&mut self, key: String, now: f64, guard: f64) -> Result<(), u64> {
        if guard <= 0.0 {
            return Ok(());
        }
        if self.last_seen.len() > 50_000 {
            self.last_seen.retain(|_, t| *t > now - guard);
        }
        if let Some(last) = self.last_seen.get(&key) {
            if now - last < guard {
                return Err(wait_secs(last + guard - now));
            }
        }
        self.last_seen.insert(key, now);
        Ok(())
    }
}

/// Adds to a getintradayactivity or sleep get reply a copy of its last sample or segment dated
/// 9 days after the window asked for (`enddate`), when the reply holds any.
pub fn outside_window(module: &str, enddate: Option<i64>, body: &mut serde_json::Value) {
    const LATER: i64 = 9 * 86_400;
    let Some(end) = enddate else {
        return;
    };
    match module {
        "getintradayactivity" => {
            if let Some(series) = body.get_mut("series").and_then(|s| s.as_object_mut()) {
                if let Some(last) = series.values().next_back().cloned() {
                    series.insert((end + LATER).to_string(), last);
                }
            }
        }
        "sleep_get" => {
            if let Some(series) = body.get_mut("series").and_then(|s| s.as_array_mut()) {
                if let Some(mut last) = series.last().cloned() {
                    let (s, e) = (last["startdate"].as_i64(), last["enddate"].as_i64());
                    if let (Some(s), Some(e)) = (s, e) {
                        last["startdate"] = serde_json::json!(end + LATER);
                        last["enddate"] = serde_json::json!(end + LATER + (e - s));
                        series.push(last);
                    }
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limit_rolls_over_60_seconds() {
        let mut f = FaultState::default();
        assert!(f.rate_limit(0.0, Some(2)).is_ok());
        assert!(f.rate_limit(1.0, Some(2)).is_ok());
        assert_eq!(f.rate_limit(30.0, Some(2)), Err(30));
        assert!(f.rate_limit(60.5, Some(2)).is_ok());
        assert_eq!(f.rate_limit(60.6, Some(2)), Err(1));
    }

    #[test]
    fn repeat_guard_blocks_identical_requests() {
        let mut f = FaultState::default();
        assert!(f.repeat_guard("a".into(), 0.0, 10.0).is_ok());
        assert_eq!(f.repeat_guard("a".into(), 2.5, 10.0), Err(8));
        assert!(f.repeat_guard("b".into(), 2.5, 10.0).is_ok());
        assert!(f.repeat_guard("a".into(), 10.0, 10.0).is_ok());
        assert!(f.repeat_guard("a".into(), 10.0, 0.0).is_ok());
    }

    #[test]
    fn every_nth() {
        let faults = Faults {
            html_5xx_every: Some(3),
            status_522_every: Some(2),
            ..Faults::default()
        };
        let got: Vec<_> = (1..=6).map(|n| FaultState::gateway(&faults, n)).collect();
        assert_eq!(
            got,
            vec![
                None,
                Some(Gateway::Status522),
                Some(Gateway::Html5xx),
                Some(Gateway::Status522),
                None,
                Some(Gateway::Html5xx)
            ]
        );
    }
}
