//! Retry arithmetic: exponential backoff with jitter, bounded by a count and a total time, and
//! never repeating an identical request within the repeat guard (Withings answers 601 to the
//! same arguments within 10 s). Pure.

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
}
