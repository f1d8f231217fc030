//! The clock seam: wall time, monotonic seconds and sleeping, behind one trait so tests can run
//! the time logic (backoff, pacing, throttles) on a virtual clock that takes no real time.
//! `SystemClock` is the real one; `ManualClock` advances its own time when slept on.

use std::fmt::Debug;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};

/// A boxed sleep future.
pub type Sleep = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Wall time, monotonic time and sleep.
pub trait Clock: Send + Sync + Debug {
    /// The wall-clock time.
    fn now(&self) -> DateTime<Utc>;
    /// Seconds since this clock started (monotonic).
    fn elapsed(&self) -> f64;
    /// Sleeps `secs` (non-positive or non-finite: returns at once).
    fn sleep(&self, secs: f64) -> Sleep;
}

/// The shared handle passed around.
pub type SharedClock = Arc<dyn Clock>;

/// The real clock.
pub fn system() -> SharedClock {
    Arc::new(SystemClock::new())
}

/// The real clock: `Utc::now`, `Instant`, `tokio::time::sleep`.
#[derive(Debug, Clone, Copy)]
pub struct SystemClock {
    start: Instant,
}

impl SystemClock {
    /// A clock whose monotonic seconds count from now.
    pub fn new() -> Self {
        SystemClock {
            start: Instant::now(),
        }
    }
}

impl Default for SystemClock {
    fn default() -> Self {
        Self::new()
    }
}

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
    fn elapsed(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
    fn sleep(&self, secs: f64) -> Sleep {
        let d = if secs > 0.0 && secs.is_finite() {
            Duration::from_secs_f64(secs)
        } else {
            Duration::ZERO
        };
        Box::pin(tokio::time::sleep(d))
    }
}

/// A virtual clock for tests: sleeping advances its time at once and yields to other tasks.
#[derive(Debug, Clone)]
pub struct ManualClock {
    inner: Arc<Mutex<(DateTime<Utc>, f64)>>,
}

impl ManualClock {
    /// A virtual clock showing `start` with zero monotonic seconds elapsed.
    pub fn new(start: DateTime<Utc>) -> Self {
        ManualClock {
            inner: Arc::new(Mutex::new((start, 0.0))),
        }
    }

    /// Moves the clock forward `secs` (ignored unless positive and finite).
    pub fn advance(&self, secs: f64) {
        if !(secs > 0.0 && secs.is_finite()) {
            return;
        }
        let mut g = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        g.1 += secs;
        let micros = (secs * 1e6).round() as i64;
        g.0 += chrono::Duration::microseconds(micros);
    }

    /// This clock as the shared handle.
    pub fn shared(&self) -> SharedClock {
        Arc::new(self.clone())
    }
}

impl Clock for ManualClock {
    fn now(&self) -> DateTime<Utc> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0
    }
    fn elapsed(&self) -> f64 {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).1
    }
    fn sleep(&self, secs: f64) -> Sleep {
        let me = self.clone();
        Box::pin(async move {
            me.advance(secs);
            tokio::task::yield_now().await;
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_manual_sleep_advances_virtual_time_and_takes_no_real_time() {
        let start = DateTime::from_timestamp(1_700_000_000, 0).unwrap();
        let c = ManualClock::new(start);
        let real = Instant::now();
        c.sleep(60.0).await;
        c.sleep(-1.0).await;
        c.sleep(f64::NAN).await;
        assert_eq!(c.elapsed(), 60.0);
        assert_eq!(c.now().timestamp(), 1_700_000_060);
        assert!(real.elapsed() < Duration::from_secs(1));
    }

    #[tokio::test]
    async fn the_system_clock_sleeps_for_real() {
        let c = SystemClock::new();
        let before = c.elapsed();
        c.sleep(0.02).await;
        assert!(c.elapsed() - before >= 0.019);
        assert!((c.now() - Utc::now()).num_seconds().abs() < 5);
    }
}
