//! Cooperative cancellation for SIGTERM/SIGINT: the signal handler trips it; the client stops
//! sending, wakes from any backoff sleep, and the sync writes its final STATE and stops.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use tokio::sync::Notify;

use crate::clock::{self, SharedClock};

/// A cloneable cancellation flag; its sleeps run on its clock (the real one unless given).
#[derive(Debug, Clone)]
pub struct Cancel {
    inner: Arc<(AtomicBool, Notify)>,
    clock: SharedClock,
}

impl Default for Cancel {
    fn default() -> Self {
        Cancel::with_clock(clock::system())
    }
}

impl Cancel {
    /// A cancellation flag whose `sleep` runs on `clock`.
    pub fn with_clock(clock: SharedClock) -> Self {
        Cancel {
            inner: Arc::default(),
            clock,
        }
    }

    /// The clock this flag sleeps on.
    pub fn clock(&self) -> &SharedClock {
        &self.clock
    }

    /// Trips the flag and wakes every waiter.
    pub fn cancel(&self) {
        self.inner.0.store(true, Ordering::SeqCst);
        self.inner.1.notify_waiters();
    }

    /// Has the run been cancelled?
    pub fn is_cancelled(&self) -> bool {
        self.inner.0.load(Ordering::SeqCst)
    }

    /// Waits until cancelled.
    pub async fn cancelled(&self) {
        loop {
            let notified = self.inner.1.notified();
            if self.is_cancelled() {
                return;
            }
            notified.await;
        }
    }

    /// Sleeps `secs`, returning false early if cancelled.
    pub async fn sleep(&self, secs: f64) -> bool {
        if self.is_cancelled() {
            return false;
        }
        if !(secs > 0.0 && secs.is_finite()) {
            return true;
        }
        tokio::select! {
            _ = self.clock.sleep(secs) => true,
            _ = self.cancelled() => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::Clock;
    use std::time::Duration;

    #[tokio::test]
    async fn cancelling_wakes_a_sleeper_at_once() {
        let c = Cancel::default();
        let c2 = c.clone();
        let started = std::time::Instant::now();
        let sleeper = tokio::spawn(async move { c2.sleep(30.0).await });
        tokio::time::sleep(Duration::from_millis(20)).await;
        c.cancel();
        assert!(!sleeper.await.unwrap());
        assert!(started.elapsed() < Duration::from_secs(5));
        assert!(!c.sleep(0.0).await);
    }

    #[tokio::test]
    async fn on_a_manual_clock_a_long_sleep_is_virtual() {
        let m = crate::clock::ManualClock::new(chrono::Utc::now());
        let c = Cancel::with_clock(m.shared());
        let started = std::time::Instant::now();
        assert!(c.sleep(3600.0).await);
        assert_eq!(m.elapsed(), 3600.0);
        assert!(started.elapsed() < Duration::from_secs(1));
        c.cancel();
        assert!(!c.sleep(10.0).await);
        assert_eq!(m.elapsed(), 3600.0);
    }
}
