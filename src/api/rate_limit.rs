//! The app-wide request budget as an even pacer: one request every `60 / budget` seconds
//! (plus a 1 % margin against arrival jitter), so no rolling minute ever holds more than the
//! budget. A 601 pauses everyone. Pure: it takes `now` and returns the wait; the client sleeps.

/// Spaces requests evenly within a per-minute budget.
#[derive(Debug, Clone)]
pub struct Pacer {
    interval: f64,
    next_slot: f64,
}

impl Pacer {
    /// A pacer for `per_minute` requests per minute.
    pub fn new(per_minute: u32) -> Self {
        Pacer {
            interval: 60.0 / f64::from(per_minute.max(1)) * 1.01,
            next_slot: f64::MIN,
        }
    }

    /// Reserves the next slot at or after `now`; returns how long to wait for it.
    pub fn acquire(&mut self, now: f64) -> f64 {
        let slot = self.next_slot.max(now);
        self.next_slot = slot + self.interval;
        slot - now
    }

    /// Nobody sends before `until` (a 601 with `wait_seconds`).
    pub fn pause_until(&mut self, until: f64) {
        self.next_slot = self.next_slot.max(until);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_spaced_evenly() {
        let mut p = Pacer::new(120);
        assert_eq!(p.acquire(100.0), 0.0);
        let w = p.acquire(100.0);
        assert!((w - 0.505).abs() < 1e-9, "{w}");
        // Idle time is not banked into a burst.
        assert_eq!(p.acquire(200.0), 0.0);
        assert!(p.acquire(200.0) > 0.5);
    }

    #[test]
    fn no_rolling_minute_exceeds_the_budget() {
        let mut p = Pacer::new(60);
        let mut t = 0.0;
        let mut sent = Vec::new();
        for _ in 0..300 {
            t += p.acquire(t);
            sent.push(t);
        }
        for (i, start) in sent.iter().enumerate() {
            let in_window = sent[i..].iter().take_while(|s| **s < start + 60.0).count();
            assert!(in_window <= 60, "{in_window}");
        }
    }

    #[test]
    fn a_pause_delays_everyone() {
        let mut p = Pacer::new(120);
        p.acquire(0.0);
        p.pause_until(30.0);
        assert_eq!(p.acquire(1.0), 29.0);
    }
}
