//! [`ApiClient`], the only user of reqwest: POSTs form-encoded calls, paces them within the
//! app-wide budget, classifies replies (see `envelope::classify`) and retries transient
//! failures within the [`RetryPolicy`], never repeating an identical request within the
//! repeat guard. It knows nothing about tokens beyond the bearer it is handed.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::hash::{Hash, Hasher};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;
use tracing::{debug, warn};

use super::cancel::Cancel;
use super::envelope::{classify_owned, ApiFailure, Endpoint, FailKind, Outcome, Reply};
use super::rate_limit::Pacer;
use super::retry::{Admit, RepeatGuard, RetryPolicy};
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
    /// Identical requests in flight or answered recently (checked and reserved in one lock).
    sent: Mutex<RepeatGuard>,
    /// Woken when a reserved request is released.
    released: tokio::sync::Notify,
    stats: Mutex<ClientStats>,
    /// The clock's monotonic seconds when the client was made (`now` counts from it).
    epoch: f64,
    rng: Mutex<u64>,
    cancel: Cancel,
    /// The largest reply body (decompressed) accepted: `max_reply_megabytes`.
    max_reply: usize,
    /// How long one request may take, its body included: `request_timeout_seconds`.
    timeout: Duration,
    /// A refused connection fails at once instead of being retried (a connection test:
    /// a server that is down does not come up within its retries).
    connect_fails_fast: bool,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding one of these locks cannot leave the data inconsistent (plain
    // counters and maps), so a poisoned lock is still usable.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ApiClient {
    /// A client for the configured API root and budget.
    pub fn new(cfg: &Config, cancel: Cancel) -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .timeout(Duration::from_secs(cfg.request_timeout_seconds))
            .connect_timeout(Duration::from_secs(cfg.request_timeout_seconds.min(30)))
            .user_agent(concat!("tap-withings/", env!("CARGO_PKG_VERSION")))
            // No call follows a redirect: a token request re-posted to another origin would
            // carry the client secret and the refresh token there. A 3xx is a failure.
            .redirect(reqwest::redirect::Policy::none());
        // A loopback API (withings-sim) is never reached through HTTPS_PROXY/HTTP_PROXY.
        if crate::config::api_url_is_loopback(&cfg.api_url) {
            builder = builder.no_proxy();
        }
        let http = builder
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
            sent: Mutex::new(RepeatGuard::new(cfg.repeat_guard_seconds)),
            released: tokio::sync::Notify::new(),
            stats: Mutex::new(ClientStats::default()),
            epoch: cancel.clock().elapsed(),
            rng: Mutex::new(u64::from_le_bytes(seed) | 1),
            cancel,
            connect_fails_fast: false,
            timeout: Duration::from_secs(cfg.request_timeout_seconds),
            max_reply: usize::try_from(cfg.max_reply_megabytes)
                .unwrap_or(usize::MAX)
                .saturating_mul(1 << 20),
        })
    }

    /// Stops every request of the run (the writer failed, or a signal arrived).
    pub fn cancel(&self) {
        self.cancel.cancel();
    }

    /// The client of a connection test: a refused connection is not retried.
    pub fn failing_fast_on_connect(mut self) -> Self {
        self.connect_fails_fast = true;
        self
    }

    /// The run's clock (the one its [`Cancel`] carries): token expiry and extraction times
    /// read it, so they follow a virtual clock in tests.
    pub fn clock(&self) -> &crate::clock::SharedClock {
        self.cancel.clock()
    }

    /// How long one request may take, its body included (real time, as the HTTP client
    /// counts it).
    pub fn request_timeout(&self) -> Duration {
        self.timeout
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
        // The Cancel's clock: virtual in tests, so the guard and pacer logic takes no real time.
        self.cancel.clock().elapsed() - self.epoch
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

    /// Waits until no identical request is in flight or was answered within the repeat guard
    /// and reserves this one (check and reserve under one lock, so concurrent tasks never
    /// send the same request twice), then waits for a budget slot. The reservation ends, at
    /// the reply, when the returned value is dropped. None: cancelled.
    async fn admit(&self, fp: u64) -> Option<Reservation<'_>> {
        loop {
            // Registered before the check, so a release between the two is not missed.
            let released = self.released.notified();
            let admit = lock(&self.sent).reserve(fp, self.now());
            match admit {
                Admit::Go => break,
                Admit::Wait(secs) => {
                    if !self.cancel.sleep(secs).await {
                        return None;
                    }
                }
                Admit::InFlight => {
                    tokio::select! {
                        _ = released => {}
                        _ = self.cancel.cancelled() => return None,
                    }
                }
            }
        }
        let reservation = Reservation { client: self, fp };
        let wait = lock(&self.pacer).acquire(self.now());
        self.cancel.sleep(wait).await.then_some(reservation)
    }

    async fn send_once<R: ReadReply>(
        &self,
        path: &str,
        params: &[(&str, String)],
        bearer: Option<&Secret>,
        endpoint: Endpoint,
        read: &mut R,
    ) -> Outcome<Body<R::Out>> {
        let url = format!("{}{}", self.base, path);
        let mut req = self.http.post(&url).form(params);
        if let Some(token) = bearer {
            req = req.bearer_auth(token.expose());
        }
        let started = Instant::now();
        let result = match req.send().await {
            Ok(resp) if resp.status().is_redirection() => {
                let status = resp.status().as_u16();
                (Some(status), redirected(status, &resp))
            }
            Ok(resp) => {
                // A 2xx reply goes to the caller's reader as it arrives: a reply it reads is
                // a complete status-0 envelope of the shape it knows; it hands anything else
                // back whole, to be classified. Any other reply is read whole and classified.
                let status = resp.status().as_u16();
                let fed = if resp.status().is_success() {
                    feed_body(resp, self.max_reply, started, read).await
                } else {
                    let mut plain = Whole::new(|_: &[u8]| None::<R::Out>);
                    feed_body(resp, self.max_reply, started, &mut plain).await
                };
                (Some(status), self.outcome(status, endpoint, fed))
            }
            Err(e) if e.is_timeout() => (None, Outcome::Retry("request timed out".into())),
            Err(e) if e.is_connect() && self.connect_fails_fast => (
                None,
                Outcome::Fail(ApiFailure {
                    kind: FailKind::Fatal,
                    status: 0,
                    message: format!("cannot connect to {} ({})", self.base, short(&e)),
                }),
            ),
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

    /// What a reply fed to a reader comes to.
    fn outcome<T>(
        &self,
        status: u16,
        endpoint: Endpoint,
        fed: Result<End<T>, FeedFailure>,
    ) -> Outcome<Body<T>> {
        match fed {
            Ok(End::Read(typed)) => Outcome::Ok(Body::Typed(typed)),
            Ok(End::Whole(body)) => classify_owned(status, body, endpoint).map(Body::Reply),
            Ok(End::Retry(reason)) | Err(FeedFailure::Retry(reason)) => Outcome::Retry(reason),
            Ok(End::Fail(f)) | Err(FeedFailure::Fail(f)) => Outcome::Fail(f),
            Err(FeedFailure::Body(BodyError::TooLarge)) => Outcome::Fail(ApiFailure {
                kind: FailKind::Fatal,
                status: i64::from(status),
                message: format!(
                    "the reply is larger than max_reply_megabytes ({} MiB); refused without retrying (raise the setting if the reply is genuine)",
                    self.max_reply >> 20
                ),
            }),
            Err(FeedFailure::Body(BodyError::Cut(e))) => {
                Outcome::Retry(format!("reply body cut off ({})", short(&e)))
            }
        }
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
        let mut no_reader = Whole::new(|_: &[u8]| None::<Infallible>);
        match self
            .request_read(path, params, bearer, endpoint, &mut no_reader)
            .await?
        {
            Body::Typed(never) => match never {},
            Body::Reply(reply) => reply.into_value().map_err(unreadable),
        }
    }

    /// As [`ApiClient::request`], reading a 2xx reply with `read` as it arrives (see
    /// [`ReadReply`]): it gives a value only for a complete status-0 envelope of the shape it
    /// knows (e.g. a typed getmeas page, read in one pass); every other reply (errors, 601,
    /// truncated bodies, other shapes) is classified and retried as usual.
    pub async fn request_read<R: ReadReply>(
        &self,
        path: &str,
        params: &[(&str, String)],
        bearer: Option<&Secret>,
        endpoint: Endpoint,
        read: &mut R,
    ) -> std::result::Result<Body<R::Out>, CallError> {
        let fp = Self::fingerprint(path, params, bearer);
        let started = self.now();
        let mut attempt = 0u32;
        loop {
            let Some(reservation) = self.admit(fp).await else {
                return Err(CallError::Cancelled);
            };
            debug!(path, action = action_of(params), params = %loggable(params), "Request.");
            let outcome = tokio::select! {
                outcome = self.send_once(path, params, bearer, endpoint, read) => outcome,
                _ = self.cancel.cancelled() => return Err(CallError::Cancelled),
            };
            // The API times its repeat guard from when it took the request, which is after
            // we sent it: count from the reply, which comes after both.
            drop(reservation);
            let sent_at = self.now();
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

/// The most a reply's Content-Length may make [`read_body`] reserve at once (a larger reply
/// still arrives whole: the buffer grows as its chunks come).
const RESERVE_MAX: usize = 16 << 20;

/// Why a reply body was not read whole.
pub enum BodyError {
    /// The transfer broke off.
    Cut(reqwest::Error),
    /// It grew past the cap (decompressed: a small gzip bomb is caught as it inflates).
    TooLarge,
}

/// Feeds a reply's body to `read` chunk by chunk as it arrives, each chunk dropped once fed
/// (reqwest's `bytes()` keeps every chunk until the body is complete and then copies them
/// into one buffer, twice the body), stopping at `cap` bytes.
async fn feed_body<R: ReadReply>(
    mut resp: reqwest::Response,
    cap: usize,
    sent: Instant,
    read: &mut R,
) -> Result<End<R::Out>, FeedFailure> {
    let expected = resp.content_length().unwrap_or(0);
    if usize::try_from(expected).map_or(true, |n| n > cap) {
        return Err(FeedFailure::Body(BodyError::TooLarge));
    }
    read.begin(expected, sent);
    let mut fed = 0usize;
    while let Some(chunk) = resp
        .chunk()
        .await
        .map_err(|e| FeedFailure::Body(BodyError::Cut(e)))?
    {
        fed += chunk.len();
        if fed > cap {
            return Err(FeedFailure::Body(BodyError::TooLarge));
        }
        read.feed(&chunk).await?;
    }
    Ok(read.end())
}

/// How a reply's reader ended (see [`ReadReply::end`]).
pub enum End<T> {
    /// Read: a complete status-0 reply of the reader's shape.
    Read(T),
    /// Not read: the whole body, to be classified.
    Whole(Vec<u8>),
    /// The reply was cut off or is not JSON, after the reader gave some of it away: retry.
    Retry(String),
    /// The reply is refused for good, after the reader gave some of it away.
    Fail(ApiFailure),
}

/// Why feeding a reply stopped before its end.
pub enum FeedFailure {
    /// The transfer broke off or the reply is too large.
    Body(BodyError),
    /// Transient: the reply is not JSON after all (retry).
    Retry(String),
    /// Withings' reply is refused for good (a value no reader can take).
    Fail(ApiFailure),
}

/// A reader of 2xx reply bodies, fed as they arrive. Every attempt of a request starts with
/// [`ReadReply::begin`] (what an earlier, failed attempt fed is void) and, when the body
/// arrived whole, ends with [`ReadReply::end`].
pub trait ReadReply: Send {
    type Out: Send;
    /// A body begins (`expected`: its Content-Length, 0 when unknown), of a request sent at
    /// `sent` (real time: the request's timeout counts from then).
    fn begin(&mut self, expected: u64, sent: Instant);
    /// The next chunk of the body.
    fn feed(
        &mut self,
        chunk: &[u8],
    ) -> impl std::future::Future<Output = Result<(), FeedFailure>> + Send;
    /// The body is complete.
    fn end(&mut self) -> End<Self::Out>;
}

/// A reader of whole bodies: the body is gathered in one buffer and handed to a function
/// reading it in one pass (a typed reader of one shape), else handed back to be classified.
/// The buffer is sized from Content-Length when the reply gives one; a page-sized reply
/// reuses a spare buffer (see `prefetch::BODIES`, given back once the function read it).
pub struct Whole<F> {
    read: F,
    body: Vec<u8>,
}

impl<F> Whole<F> {
    pub fn new(read: F) -> Self {
        Whole {
            read,
            body: Vec::new(),
        }
    }
}

impl<T: Send, F: Fn(&[u8]) -> Option<T> + Send> ReadReply for Whole<F> {
    type Out = T;

    fn begin(&mut self, expected: u64, _sent: Instant) {
        self.body = if expected >= crate::prefetch::POOLED_BODY {
            crate::prefetch::BODIES.take()
        } else {
            Vec::new()
        };
        self.body
            .reserve_exact(usize::try_from(expected).map_or(0, |n| n.min(RESERVE_MAX)));
    }

    async fn feed(&mut self, chunk: &[u8]) -> Result<(), FeedFailure> {
        self.body.extend_from_slice(chunk);
        Ok(())
    }

    fn end(&mut self) -> End<T> {
        let body = std::mem::take(&mut self.body);
        match (self.read)(&body) {
            Some(typed) => {
                crate::prefetch::BODIES.give(body);
                End::Read(typed)
            }
            None => End::Whole(body),
        }
    }
}

/// An identical request in flight: dropping it records when its reply came (or when it was
/// abandoned) and wakes the tasks waiting to send the same request.
struct Reservation<'a> {
    client: &'a ApiClient,
    fp: u64,
}

impl Drop for Reservation<'_> {
    fn drop(&mut self) {
        let now = self.client.now();
        lock(&self.client.sent).release(self.fp, now);
        self.client.released.notify_waiters();
    }
}

/// A 3xx reply: never followed (see [`ApiClient::new`]); the failure names where it pointed
/// (its host only: the rest of the location may carry parameters).
fn redirected<T>(status: u16, resp: &reqwest::Response) -> Outcome<T> {
    let host = resp
        .headers()
        .get(reqwest::header::LOCATION)
        .and_then(|l| l.to_str().ok())
        .and_then(|l| resp.url().join(l).ok())
        .and_then(|u| u.host_str().map(crate::secret::redact::server_text))
        .unwrap_or_else(|| "an unknown place".into());
    Outcome::Fail(ApiFailure {
        kind: FailKind::Fatal,
        status: i64::from(status),
        message: format!("HTTP {status}: the server redirects to {host}; redirects are not followed (check api_url)"),
    })
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
    // reqwest errors carry the URL (ours has no secrets in it) and what the connection or
    // the server did: through the redaction gate, which also keeps them short.
    let mut text = e.to_string();
    if let Some(src) = std::error::Error::source(e) {
        text = format!("{text}: {src}");
    }
    crate::secret::redact::server_text(&text)
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
    use serde_json::json;
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::Arc;

    /// A loopback server answering every request with an empty status-0 body after `delay`;
    /// gives its URL and the arrival times of the requests.
    fn slow_server(delay: Duration) -> (String, Arc<Mutex<Vec<Instant>>>) {
        scripted_server(delay, &[r#"{"status":0,"body":{}}"#])
    }

    /// As [`slow_server`], answering the n-th request with `replies[n]` (the last one after).
    fn scripted_server(
        delay: Duration,
        replies: &[&'static str],
    ) -> (String, Arc<Mutex<Vec<Instant>>>) {
        let replies = replies.to_vec();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let arrivals = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&arrivals);
        std::thread::spawn(move || {
            for stream in listener.incoming().map_while(|s| s.ok()) {
                let seen = Arc::clone(&seen);
                let replies = replies.clone();
                std::thread::spawn(move || {
                    let mut reader = BufReader::new(stream);
                    let mut length = 0;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    let _ = reader.read_exact(&mut body);
                    let n = {
                        let mut seen = lock(&seen);
                        seen.push(Instant::now());
                        seen.len() - 1
                    };
                    std::thread::sleep(delay);
                    let reply = replies[n.min(replies.len() - 1)];
                    let _ = write!(
                        reader.into_inner(),
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{reply}",
                        reply.len()
                    );
                });
            }
        });
        (url, arrivals)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_identical_requests_go_one_at_a_time_a_guard_apart() {
        let (url, arrivals) = slow_server(Duration::from_millis(300));
        let cfg = test_config(
            &url,
            json!({"repeat_guard_seconds": 1, "max_requests_per_minute": 100000}),
        );
        let client = Arc::new(ApiClient::new(&cfg, Cancel::default()).unwrap());
        three_identical_calls(&client).await;
        let mut at = lock(&arrivals).clone();
        at.sort();
        assert_eq!(at.len(), 3);
        for pair in at.windows(2) {
            // The previous reply (300 ms after its arrival) plus the 1 s guard.
            let gap = pair[1] - pair[0];
            assert!(
                gap >= Duration::from_millis(1_300),
                "{gap:?} between identical requests"
            );
        }
        // A different request is not held back.
        let started = Instant::now();
        let other = [("action", "getgoals".to_string())];
        client
            .request("/v2/user", &other, None, Endpoint::Data)
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_secs(1));
    }

    /// A config for a client of `url` with `extra` settings.
    fn test_config(url: &str, extra: serde_json::Value) -> crate::config::Config {
        let mut settings = serde_json::json!({"client_id": "i", "client_secret": "s",
            "refresh_token": "r", "api_url": url});
        for (k, v) in extra.as_object().unwrap() {
            settings[k] = v.clone();
        }
        let mut raw = crate::config::RawConfig::default();
        raw.add_file("c.json", &settings.to_string()).unwrap();
        raw.validate(&BTreeMap::new(), chrono::Utc::now()).unwrap()
    }

    /// Three identical requests sent at once; each must get the empty status-0 body.
    async fn three_identical_calls(client: &Arc<ApiClient>) {
        let params = [("action", "getdevice".to_string())];
        let calls: Vec<_> = (0..3)
            .map(|_| {
                let (client, params) = (Arc::clone(client), params.clone());
                tokio::spawn(async move {
                    client
                        .request("/v2/user", &params, None, Endpoint::Data)
                        .await
                })
            })
            .collect();
        for call in calls {
            assert_eq!(call.await.unwrap(), Ok(json!({})));
        }
    }

    /// The test's real time since `real` stayed under `secs`: its waits were virtual.
    fn assert_took_under(real: Instant, secs: u64) {
        let took = real.elapsed();
        assert!(took < Duration::from_secs(secs), "{took:?} real");
    }

    /// A client on a virtual clock against `url` with extra settings.
    fn virtual_client(
        url: &str,
        extra: serde_json::Value,
    ) -> (ApiClient, crate::clock::ManualClock) {
        let cfg = test_config(url, extra);
        let clock = crate::clock::ManualClock::new(chrono::Utc::now());
        let client = ApiClient::new(&cfg, Cancel::with_clock(clock.shared())).unwrap();
        (client, clock)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn on_a_virtual_clock_a_long_repeat_guard_takes_no_real_time() {
        use crate::clock::Clock;
        let (url, arrivals) = slow_server(Duration::from_millis(20));
        let (client, clock) = virtual_client(
            &url,
            json!({"repeat_guard_seconds": 30, "max_requests_per_minute": 100000}),
        );
        let client = Arc::new(client);
        let real = Instant::now();
        three_identical_calls(&client).await;
        assert_eq!(lock(&arrivals).len(), 3);
        // Two 30 s guards between three identical requests, in virtual seconds only.
        assert!(clock.elapsed() >= 60.0, "{} virtual s", clock.elapsed());
        assert_took_under(real, 5);
    }

    #[tokio::test]
    async fn on_a_virtual_clock_the_request_budget_paces_in_virtual_seconds() {
        use crate::clock::Clock;
        let (url, arrivals) = slow_server(Duration::ZERO);
        let (client, clock) = virtual_client(&url, json!({"max_requests_per_minute": 6}));
        let real = Instant::now();
        for i in 0..4 {
            let params = [("action", "getdevice".to_string()), ("n", i.to_string())];
            client
                .request("/v2/user", &params, None, Endpoint::Data)
                .await
                .unwrap();
        }
        assert_eq!(lock(&arrivals).len(), 4);
        // 6 a minute: three 10 s (+1 %) slots after the first request.
        assert!(clock.elapsed() >= 30.0, "{} virtual s", clock.elapsed());
        assert_took_under(real, 3);
    }

    #[tokio::test]
    async fn on_a_virtual_clock_a_601_waits_its_wait_seconds_once() {
        use crate::clock::Clock;
        let (url, arrivals) = scripted_server(
            Duration::ZERO,
            &[
                r#"{"status":601,"body":{"wait_seconds":45}}"#,
                r#"{"status":0,"body":{}}"#,
            ],
        );
        let (client, clock) = virtual_client(&url, json!({"max_requests_per_minute": 100000}));
        let real = Instant::now();
        let params = [("action", "getdevice".to_string())];
        let got = client
            .request("/v2/user", &params, None, Endpoint::Data)
            .await;
        assert_eq!(got, Ok(json!({})));
        assert_eq!(lock(&arrivals).len(), 2);
        assert_eq!(client.stats().retries, 1);
        // 45 s asked, waited once (not twice: pacer pause and backoff overlap).
        let waited = clock.elapsed();
        assert!((45.0..90.0).contains(&waited), "{waited} virtual s");
        assert_took_under(real, 3);
    }

    #[tokio::test]
    async fn on_a_virtual_clock_retries_stop_within_max_retry_seconds() {
        use crate::clock::Clock;
        // An empty body is retryable, every time.
        let (url, arrivals) = scripted_server(Duration::ZERO, &[""]);
        let (client, clock) = virtual_client(
            &url,
            json!({"max_requests_per_minute": 100000, "max_retries": 100, "max_retry_seconds": 100}),
        );
        let real = Instant::now();
        let params = [("action", "getdevice".to_string())];
        let got = client
            .request("/v2/user", &params, None, Endpoint::Data)
            .await;
        assert!(matches!(got, Err(CallError::Exhausted { .. })), "{got:?}");
        let waited = clock.elapsed();
        // It retried for a while (10 s guards, growing backoff) but never past the bound.
        assert!((40.0..=100.0).contains(&waited), "{waited} virtual s");
        assert!(lock(&arrivals).len() >= 4);
        assert_took_under(real, 3);
    }

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
