//! Retry arithmetic: exponential backoff with jitter, bounded by a count and a total time, and
//! never repeating an identical request within the repeat guard (Withings answers 601 to the
//! same arguments within 10 s): [`RepeatGuard`] admits one identical request at a time. Pure.

use std::collections::HashMap;

/// Bounds of the retry loop for one request.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    pub max_retries: u32,
    pub max_elapsed: f64,
    pub base: f64,
    pub cap: f64,
    pub repeat_guard: f64,
}

impl RetryPolicy {
    /// Backoff before retry number `attempt` (1-based): `base * 2^(attempt-1)` capped, scaled
    /// by `0.5 + 0.5 * jitter` (jitter in [0, 1)).
    pub fn backoff(&self, attempt: u32, jitter: f64) -> f64 {
        let exp = self.base * 2f64.powi(attempt.saturating_sub(1).min(30) as i32);
        exp.min(self.cap) * (0.5 + 0.5 * jitter.clamp(0.0, 1.0))
    }

    /// The wait before retry `attempt`, or None when the retry budget is spent.
    /// `asked` is a wait the server asked for (601); `since_identical` is how long ago the
    /// identical request was sent; `elapsed` is the time spent on this request so far.
    pub fn next_wait(
        &self,
        attempt: u32,
        asked: Option<f64>,
        since_identical: f64,
        elapsed: f64,
        jitter: f64,
    ) -> Option<f64> {
        if attempt > self.max_retries {
            return None;
        }
        let wait = asked
            .unwrap_or_else(|| self.backoff(attempt, jitter))
            .max(self.repeat_guard - since_identical)
            .max(0.0);
        (elapsed + wait <= self.max_elapsed).then_some(wait)
    }
}

/// What [`RepeatGuard::reserve`] decided.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Admit {
    /// Send now: the request is reserved (in flight) until [`RepeatGuard::release`].
    Go,
    /// The identical request was answered too recently: try again after this many seconds.
    Wait(f64),
    /// The identical request is in flight: try again once it is released.
    InFlight,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mark {
    InFlight,
    Answered(f64),
}

/// When each request (by fingerprint) was last answered, or that it is in flight. Checking
/// and reserving are one step, so two tasks can never both send an identical request.
#[derive(Debug, Default)]
pub struct RepeatGuard {
    guard: f64,
    marks: HashMap<u64, Mark>,
}

/// How many marks are kept before answered ones older than the guard are dropped.
const KEEP: usize = 4096;

impl RepeatGuard {
    /// A guard of `guard` seconds between an identical request's reply and the next send.
    pub fn new(guard: f64) -> Self {
        RepeatGuard {
            guard,
            marks: HashMap::new(),
        }
    }

    /// Reserves request `fp` at `now` unless an identical one is in flight or was answered
    /// less than the guard ago.
    pub fn reserve(&mut self, fp: u64, now: f64) -> Admit {
        match self.marks.get(&fp) {
            Some(Mark::InFlight) => return Admit::InFlight,
            Some(Mark::Answered(at)) if now - at < self.guard => {
                return Admit::Wait(self.guard - (now - at))
            }
            _ => {}
        }
        if self.marks.len() >= KEEP {
            let guard = self.guard;
            self.marks
                .retain(|_, m| !matches!(m, Mark::Answered(at) if now - *at >= guard));
        }
        self.marks.insert(fp, Mark::InFlight);
        Admit::Go
    }

    /// The reserved request `fp` was answered (or abandoned) at `now`: the API times its guard
    /// from when it took the request, which is before its reply, so the reply time is safe.
    pub fn release(&mut self, fp: u64, now: f64) {
        self.marks.insert(fp, Mark::Answered(now));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: RetryPolicy = RetryPolicy {
        max_retries: 3,
        max_elapsed: 100.0,
        base: 1.0,
        cap: 8.0,
        repeat_guard: 10.0,
    };

    #[test]
    fn backoff_grows_and_is_capped() {
        let waits: Vec<f64> = (1..=6).map(|a| P.backoff(a, 1.0)).collect();
        assert_eq!(waits, [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]);
        assert_eq!(P.backoff(3, 0.0), 2.0);
    }

    #[test]
    fn identical_requests_wait_out_the_repeat_guard() {
        assert_eq!(P.next_wait(1, None, 0.5, 0.0, 1.0), Some(9.5));
        assert_eq!(P.next_wait(1, None, 20.0, 0.0, 1.0), Some(1.0));
        assert_eq!(P.next_wait(1, Some(30.0), 0.0, 0.0, 0.0), Some(30.0));
    }

    #[test]
    fn retries_are_bounded_by_count_and_time() {
        assert_eq!(P.next_wait(4, None, 60.0, 0.0, 0.0), None);
        assert_eq!(P.next_wait(1, Some(50.0), 60.0, 60.0, 0.0), None);
        assert_eq!(P.next_wait(2, Some(40.0), 60.0, 60.0, 0.0), Some(40.0));
    }

    #[test]
    fn an_identical_request_waits_for_the_one_in_flight_then_the_guard() {
        let mut g = RepeatGuard::new(10.0);
        let steps: Vec<(&str, u64, f64, Admit)> = vec![
            ("reserve", 1, 0.0, Admit::Go),
            ("reserve", 1, 0.5, Admit::InFlight),
            ("reserve", 2, 0.5, Admit::Go),
            ("release", 1, 3.0, Admit::Go),
            ("reserve", 1, 4.0, Admit::Wait(9.0)),
            ("reserve", 1, 13.0, Admit::Go),
            ("reserve", 1, 13.0, Admit::InFlight),
            ("release", 2, 20.0, Admit::Go),
            ("reserve", 2, 30.0, Admit::Go),
        ];
        for (op, fp, now, want) in steps {
            match op {
                "reserve" => assert_eq!(g.reserve(fp, now), want, "{op} {fp} at {now}"),
                _ => g.release(fp, now),
            }
        }
    }

    #[test]
    fn without_a_guard_identical_requests_still_go_one_at_a_time() {
        let mut g = RepeatGuard::new(0.0);
        assert_eq!(g.reserve(7, 0.0), Admit::Go);
        assert_eq!(g.reserve(7, 0.0), Admit::InFlight);
        g.release(7, 1.0);
        assert_eq!(g.reserve(7, 1.0), Admit::Go);
    }

    #[test]
    fn old_marks_are_dropped_but_in_flight_and_recent_ones_kept() {
        let mut g = RepeatGuard::new(10.0);
        for fp in 0..KEEP as u64 {
            assert_eq!(g.reserve(fp, 0.0), Admit::Go);
            if fp > 0 {
                g.release(fp, if fp == 1 { 95.0 } else { 1.0 });
            }
        }
        assert_eq!(g.reserve(u64::MAX, 100.0), Admit::Go);
        assert_eq!(
            g.marks.len(),
            3,
            "fp 0 (in flight), 1 (recent) and the new one"
        );
        assert_eq!(g.reserve(0, 100.0), Admit::InFlight);
        assert_eq!(g.reserve(1, 100.0), Admit::Wait(5.0));
        assert_eq!(g.reserve(2, 100.0), Admit::Go);
    }
}
