//! Talking to Withings: reply classification, retry and pacing arithmetic (pure), and the
//! HTTP client that applies them.

pub mod cancel;
pub mod client;
pub mod envelope;
pub mod rate_limit;
pub mod retry;
