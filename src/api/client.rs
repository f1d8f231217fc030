//! [`ApiClient`], the only user of reqwest: POSTs form-encoded calls, paces them within the
//! app-wide budget, classifies replies (see `envelope::classify`) and retries transient
//! failures within the [`RetryPolicy`], never repeating an identical request within the
//! repeat guard. It knows nothing about tokens beyond the bearer it is handed.

use std::collections::{BTreeMap, HashMap};
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{debug, warn};

use super::cancel::Cancel;
use super::envelope::{classify_owned, ApiFailure, Endpoint, FailKind, Outcome, Reply};
use super::rate_limit::Pacer;
use super::retry::RetryPolicy;
use crate::config::Config;
use crate::error::{Error, Result};
use crate::metrics;
use crate::secret::Secret;

/// Why a request did not produce a body.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The access token was refused: refresh it and call again.
    Refresh,
    /// Withings refused the call for good.
    Failed(ApiFailure),
    /// Transient failures outlasted the retry budget.
    Exhausted { reason: String, attempts: u32 },
    /// The run was cancelled (SIGTERM/SIGINT) before the call completed.
    Cancelled,
}

/// A reply read by a caller's typed reader, or kept as a [`Reply`].
#[derive(Debug)]
pub enum Body<T> {
    Typed(T),
    Reply(Reply),
}

/// Counters for the end-of-run summary.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientStats {
    pub requests: u64,
    pub retries: u64,
    pub retry_reasons: BTreeMap<String, u64>,
}

/// The HTTP client of one run, shared by every stream and user.
pub struct ApiClient {
    http: reqwest::Client,
    base: String,
    policy: RetryPolicy,
    pacer: Mutex<Pacer>,
    sent: Mutex<HashMap<u64, f64>>,
    stats: Mutex<ClientStats>,
    epoch: Instant,
    rng: Mutex<u64>,
    cancel: Cancel,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data inconsistent (plain
    // counters and maps), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ApiClient {
    /// A client for the configured API root and budget.
    pub fn new(cfg: &Config, cancel: Cancel) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.request_timeout_seconds))
            .connect_timeout(Duration::from_secs(cfg.request_timeout_seconds.min(30)))
            .user_agent(concat!("tap-withings/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::io("cannot create the HTTP client", e))?;
        let mut seed = [0u8; 8];
        let _ = getrandom::getrandom(&mut seed);
        Ok(ApiClient {
            http,
            base: cfg.api_url.clone(),
            policy: RetryPolicy {
                max_retries: cfg.max_retries,
                max_elapsed: cfg.max_retry_seconds as f64,
                base: 1.0,
                cap: 60.0,
                repeat_guard: cfg.repeat_guard_seconds,
            },
            pacer: Mutex::new(Pacer::new(cfg.max_requests_per_minute)),
            sent: Mutex::new(HashMap::new()),
            stats: Mutex::new(ClientStats::default()),
            epoch: Instant::now(),
            rng: Mutex::new(u64::from_le_bytes(seed) | 1),
            cancel,
        })
    }

    /// Stops every request of the run (the writer failed, or a signal arrived).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The API root.
    pub fn base(&self) -> &str {
        &self.base
    }

    /// A copy of the counters so far.
    pub fn stats(&self) -> ClientStats {
        lock(&self.stats).clone()
    }

    fn now(&self) -> f64 {
        self.epoch.elapsed().as_secs_f64()
    }

    fn jitter(&self) -> f64 {
        let mut s = lock(&self.rng);
        *s ^= *s << 13;
        *s ^= *s >> 7;
        *s ^= *s << 17;
        (*s >> 11) as f64 / (1u64 << 53) as f64
    }

    fn fingerprint(path: &str, params: &[(&str, String)], bearer: Option<&Secret>) -> u64 {
        let mut h = std::collections::hash_map::DefaultHasher::new();
        path.hash(&mut h);
        params.hash(&mut h);
        bearer.map(Secret::expose).hash(&mut h);
        h.finish()
    }

    /// Waits for a budget slot and for the repeat guard of this exact request, then marks it
    /// sent. Returns how long ago the identical request was last sent (infinity if never).
    async fn admit(&self, fp: u64) -> bool {
        let wait = lock(&self.pacer).acquire(self.now());
        if !self.cancel.sleep(wait).await {
            return false;
        }
        let guard = self.policy.repeat_guard;
        let last = lock(&self.sent).get(&fp).copied();
        if let Some(last) = last {
            let since = self.now() - last;
            if since < guard && !self.cancel.sleep(guard - since).await {
                return false;
            }
        }
        let now = self.now();
        let mut sent = lock(&self.sent);
        if sent.len() > 4096 {
            sent.retain(|_, t| now - *t < guard);
        }
        sent.insert(fp, now);
        true
    }

    async fn send_once<T>(
        &self,
        path: &str,
        params: &[(&str, String)],
        bearer: Option<&Secret>,
        endpoint: Endpoint,
        read: &impl Fn(&[u8]) -> Option<T>,
    ) -> Outcome<Body<T>> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.post(&url).form(params);
        if let Some(token) = bearer {
            req = req.bearer_auth(token.expose());
        }
        let started = Instant::now();
        let result = match req.send().await {
            Ok(resp) => {
                let status = resp.status().as_u16();
                match resp.bytes().await {
                    // The caller's typed reader first: a reply it accepts is a complete
                    // status-0 envelope, read in one pass; anything else is classified.
                    Ok(body) => match (200..300).contains(&status).then(|| read(&body)) {
                        Some(Some(typed)) => (Some(status), Outcome::Ok(Body::Typed(typed))),
                        _ => (
                            Some(status),
                            classify_owned(status, Vec::from(body), endpoint).map(Body::Reply),
                        ),
                    },
                    Err(e) => (
                        Some(status),
                        Outcome::Retry(format!("reply body cut off ({})", short(&e))),
                    ),
                }
            }
            Err(e) if e.is_timeout() => (None, Outcome::Retry("request timed out".into())),
            Err(e) => (
                None,
                Outcome::Retry(format!("transport error ({})", short(&e))),
            ),
        };
        lock(&self.stats).requests += 1;
        metrics::count_request();
        metrics::log(&metrics::http_request_duration(
            path,
            action_of(params),
            result.0,
            matches!(result.1, Outcome::Ok(_)),
            started.elapsed().as_secs_f64(),
        ));
        result.1
    }

    /// Calls `path` with form `params`, retrying transient failures within the policy; the
    /// reply's body as a value.
    pub async fn request(
        &self,
        path: &str,
        params: &[(&str, String)],
        bearer: Option<&Secret>,
        endpoint: Endpoint,
    ) -> std::result::Result<Value, CallError> {
        let reply = self.request_reply(path, params, bearer, endpoint).await?;
        reply.into_value().map_err(unreadable)
    }

    /// As [`ApiClient::request`], with the body kept as text when it is an object.
    pub async fn request_reply(
        &self,
        path: &str,
        params: &[(&str, String)],
        bearer: Option<&Secret>,
        endpoint: Endpoint,
    ) -> std::result::Result<Reply, CallError> {
        let no_reader = |_: &[u8]| None::<Infallible>;
        match self
            .request_read(path, params, bearer, endpoint, no_reader)
            .await?
        {
            Body::Typed(never) => match never {},
            Body::Reply(reply) => Ok(reply),
        }
    }

    /// As [`ApiClient::request_reply`], reading a reply with `read` first: `read` takes the
    /// whole reply text and gives a value only for a complete status-0 envelope of the shape
    /// it knows (e.g. a typed getmeas page, read in one pass); every other reply (errors, 601,
    /// truncated bodies, other shapes) is classified and retried as usual.
    pub async fn request_read<T>(
        &self,
        path: &str,
        params: &[(&str, String)],
        bearer: Option<&Secret>,
        endpoint: Endpoint,
        read: impl Fn(&[u8]) -> Option<T>,
    ) -> std::result::Result<Body<T>, CallError> {
        let fp = Self::fingerprint(path, params, bearer);
        let started = self.now();
        let mut attempt = 0u32;
        loop {
            if !self.admit(fp).await {
                return Err(CallError::Cancelled);
            }
            debug!(path, action = action_of(params), params = %loggable(params), "Request.");
            let outcome = tokio::select! {
                outcome = self.send_once(path, params, bearer, endpoint, &read) => outcome,
                _ = self.cancel.cancelled() => return Err(CallError::Cancelled),
            };
            // The API times its repeat guard from when it took the request, which is after
            // we sent it: count from the reply, which comes after both.
            let sent_at = self.now();
            lock(&self.sent).insert(fp, sent_at);
            let (asked, reason) = match outcome {
                Outcome::Ok(body) => return Ok(body),
                Outcome::Refresh(_) => return Err(CallError::Refresh),
                Outcome::Fail(f) => return Err(CallError::Failed(f)),
                Outcome::Wait(secs, reason) => {
                    lock(&self.pacer).pause_until(self.now() + secs);
                    (Some(secs), reason)
                }
                Outcome::Retry(reason) => (None, reason),
            };
            attempt += 1;
            let now = self.now();
            let Some(wait) =
                self.policy
                    .next_wait(attempt, asked, now - sent_at, now - started, self.jitter())
            else {
                warn!(
                    path,
                    action = action_of(params),
                    reason,
                    attempts = attempt,
                    "Giving up after retries."
                );
                return Err(CallError::Exhausted {
                    reason,
                    attempts: attempt,
                });
            };
            {
                let mut stats = lock(&self.stats);
                stats.retries += 1;
                metrics::count_retry();
                *stats
                    .retry_reasons
                    .entry(reason_family(&reason))
                    .or_default() += 1;
            }
            warn!(
                path,
                action = action_of(params),
                reason,
                attempt,
                wait_seconds = wait,
                "Retrying."
            );
            if !self.cancel.sleep(wait).await {
                return Err(CallError::Cancelled);
            }
        }
    }
}

/// A kept body that does not parse (it was checked as JSON already: only nesting limits).
pub fn unreadable(message: String) -> CallError {
    CallError::Failed(ApiFailure {
        kind: FailKind::Fatal,
        status: 0,
        message,
    })
}

fn short(e: &reqwest::Error) -> String {
    // reqwest errors can carry the URL; ours has no secrets in it, but keep messages short.
    let mut text = e.to_string();
    if let Some(src) = std::error::Error::source(e) {
        text = format!("{text}: {src}");
    }
    text.chars().take(200).collect()
}

fn action_of<'a>(params: &'a [(&str, String)]) -> &'a str {
    params
        .iter()
        .find(|(k, _)| *k == "action")
        .map_or("", |(_, v)| v.as_str())
}

/// Params as `k=v` text with secrets left out.
fn loggable(params: &[(&str, String)]) -> String {
    params
        .iter()
        .map(|(k, v)| match *k {
            "client_secret" | "refresh_token" | "code" | "access_token" => {
                format!("{k}=[redacted]")
            }
            _ => format!("{k}={v}"),
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// Groups retry reasons for the summary ("status 601 Same arguments..." → "status 601").
fn reason_family(reason: &str) -> String {
    let mut words = reason.split_whitespace();
    match (words.next(), words.next()) {
        (Some(a @ ("status" | "HTTP")), Some(b)) => format!("{a} {b}"),
        _ => reason.split(" (").next().unwrap_or(reason).to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_left_out_of_logged_params() {
        let params = [
            ("action", "requesttoken".to_string()),
            ("client_secret", "s3cr3t".to_string()),
            ("refresh_token", "rt".to_string()),
        ];
        let text = loggable(&params);
        assert_eq!(
            text,
            "action=requesttoken&client_secret=[redacted]&refresh_token=[redacted]"
        );
    }

    #[test]
    fn retry_reasons_are_grouped() {
        assert_eq!(
            reason_family("status 601 Same arguments in less than 10 seconds"),
            "status 601"
        );
        assert_eq!(reason_family("HTTP 502"), "HTTP 502");
        assert_eq!(
            reason_family("transport error (connection refused)"),
            "transport error"
        );
    }
}
