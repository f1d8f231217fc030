//! Metrics on stderr in the Meltano SDK's shape (`singer_sdk/metrics.py`): log lines
//! `METRIC: {"type": "timer"|"counter", "metric": ..., "value": ..., "tags": {...}}` for
//! `http_request_duration` (per request: stream, endpoint, http_status_code, status, context),
//! `record_count` (per stream and user: stream, context; the records since its last point,
//! every [`RECORD_COUNT_INTERVAL`] during a long sync and the rest at the end) and
//! `sync_duration` (per stream and user: stream, context, status). Like the SDK's meters, the
//! counter and the stream timer carry a `pid` tag. The summary lines' messages
//! ([`stream_summary`], [`sync_summary`]) carry their figures in the text, as the SDK's do, for
//! consoles that show only the message.
//!
//! The stream a request or log line belongs to is the task's [`StreamScope`], set by
//! [`in_stream`]: a task-local (for the metric tags and the per-stream tallies) and a tracing
//! span named `stream` (for the `stream_name` of JSON log lines, see `logging`).

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};

use serde_json::{json, Value};
use tracing::Instrument;

/// The tracing target of METRIC lines.
pub const TARGET: &str = "tap_withings::metrics";
/// The tracing target of the per-stream spans (always enabled, see `logging::choose`; not a
/// prefix of any module path, since filter targets match by prefix).
pub const SPAN_TARGET: &str = "tap_withings::task";
/// How often `record_count` is reported during a sync (the SDK's `DEFAULT_LOG_INTERVAL`).
pub const RECORD_COUNT_INTERVAL: f64 = 60.0;

/// One measurement in the SDK's `Point.to_dict()` shape.
pub fn point(kind: &str, metric: &str, value: Value, tags: Value) -> Value {
    json!({"type": kind, "metric": metric, "value": value, "tags": tags})
}

/// Logs a measurement as the SDK does (`METRIC: <compact JSON>`, at info level). A point of a
/// stream logged outside that stream's work (the counts at the end, the timer of a task's
/// second stream) gets its own `stream` span, so its log line names the stream too.
pub fn log(point: &Value) {
    match point["tags"]["stream"].as_str() {
        Some(stream) if current().is_none_or(|s| s.stream != stream) => {
            tracing::info_span!(target: SPAN_TARGET, "stream", stream)
                .in_scope(|| tracing::info!(target: TARGET, "METRIC: {point}"));
        }
        _ => tracing::info!(target: TARGET, "METRIC: {point}"),
    }
}

fn status(ok: bool) -> &'static str {
    if ok {
        "succeeded"
    } else {
        "failed"
    }
}

/// Requests and retries made for one stream.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub requests: u64,
    pub retries: u64,
}

/// Per-stream tallies of a run, shared by its tasks.
#[derive(Debug, Default)]
pub struct Tallies(Mutex<BTreeMap<&'static str, Tally>>);

impl Tallies {
    fn bump(&self, stream: &'static str, f: impl FnOnce(&mut Tally)) {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        f(map.entry(stream).or_default());
    }

    /// A copy of the tallies so far.
    pub fn snapshot(&self) -> BTreeMap<&'static str, Tally> {
        self.0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }
}

/// The stream (and user) the current work is for.
#[derive(Debug, Clone)]
pub struct StreamScope {
    pub stream: &'static str,
    pub userid: i64,
    pub tallies: Arc<Tallies>,
}

impl StreamScope {
    /// The SDK's `context` tag: the state partition of the work.
    pub fn context(&self) -> Value {
        json!({"userid": self.userid})
    }
}

tokio::task_local! {
    static SCOPE: StreamScope;
}

/// Runs `fut` as work of `scope`: its requests are tagged and counted for the stream, and its
/// log lines are inside a `stream` span carrying the stream name.
pub async fn in_stream<F: Future>(scope: StreamScope, fut: F) -> F::Output {
    let span = tracing::info_span!(target: SPAN_TARGET, "stream", stream = scope.stream, userid = scope.userid);
    SCOPE.scope(scope, fut.instrument(span)).await
}

/// Runs `fut` as work of another stream of the same task (a child stream, e.g. the signals
/// of the recordings being listed); outside any scope it just runs `fut`.
pub async fn in_child_stream<F: Future>(stream: &'static str, fut: F) -> F::Output {
    match SCOPE.try_with(|s| StreamScope {
        stream,
        ..s.clone()
    }) {
        Ok(scope) => in_stream(scope, fut).await,
        Err(_) => fut.await,
    }
}

/// `fut` as work of the current stream scope and log span, wherever it is polled (a task
/// spawned for the current stream's work).
pub fn carry<F: Future>(fut: F) -> impl Future<Output = F::Output> {
    let scope = current();
    let fut = fut.instrument(tracing::Span::current());
    async move {
        match scope {
            Some(scope) => SCOPE.scope(scope, fut).await,
            None => fut.await,
        }
    }
}

fn current() -> Option<StreamScope> {
    SCOPE.try_with(StreamScope::clone).ok()
}

/// The user of the current stream scope (None outside any).
pub fn current_userid() -> Option<i64> {
    SCOPE.try_with(|s| s.userid).ok()
}

/// Counts a request for the current stream.
pub fn count_request() {
    if let Some(s) = current() {
        s.tallies.bump(s.stream, |t| t.requests += 1);
    }
}

/// Counts a retry for the current stream.
pub fn count_retry() {
    if let Some(s) = current() {
        s.tallies.bump(s.stream, |t| t.retries += 1);
    }
}

/// The `http_request_duration` point of one request (the SDK's tags, plus the Withings
/// `action`). `stream` is null for requests made for no stream (the token refresh that
/// identifies a user before its streams start, `--test`).
pub fn http_request_duration(
    endpoint: &str,
    action: &str,
    http_status_code: Option<u16>,
    ok: bool,
    seconds: f64,
) -> Value {
    let scope = current();
    let mut tags = json!({
        "stream": scope.as_ref().map(|s| s.stream),
        "endpoint": endpoint,
        "http_status_code": http_status_code,
        "status": status(ok),
        "action": action,
    });
    if let Some(s) = &scope {
        tags["context"] = s.context();
    }
    point("timer", "http_request_duration", json!(seconds), tags)
}

/// The `sync_duration` point of one stream for one user.
pub fn sync_duration(stream: &str, userid: i64, ok: bool, seconds: f64) -> Value {
    point(
        "timer",
        "sync_duration",
        json!(seconds),
        json!({"stream": stream, "context": {"userid": userid}, "status": status(ok), "pid": std::process::id()}),
    )
}

/// A `record_count` series: a stream, and the user whose partition the records are of (None
/// for records counted outside any user's work).
pub type CountKey<'a> = (&'a str, Option<i64>);

/// `record_count` per stream and user as the SDK's counter reports it, with the partition as
/// its `context` tag: the records since the series' previous point, when
/// [`RECORD_COUNT_INTERVAL`] has passed, and the rest at the end. Pure: the caller passes the
/// time (seconds on any monotonic clock) and the running totals.
#[derive(Debug, Clone)]
pub struct RecordCounter {
    interval: f64,
    last: f64,
    reported: BTreeMap<(String, Option<i64>), u64>,
}

impl RecordCounter {
    /// A counter started at `now`, reporting every `interval` seconds.
    pub fn new(now: f64, interval: f64) -> Self {
        RecordCounter {
            interval,
            last: now,
            reported: BTreeMap::new(),
        }
    }

    fn delta(&mut self, (stream, userid): CountKey, total: u64) -> u64 {
        let seen = self
            .reported
            .entry((stream.to_string(), userid))
            .or_default();
        let delta = total.saturating_sub(*seen);
        *seen = total.max(*seen);
        delta
    }

    fn counter((stream, userid): CountKey, value: u64) -> Value {
        let mut tags = json!({"stream": stream, "pid": std::process::id()});
        if let Some(userid) = userid {
            tags["context"] = json!({"userid": userid});
        }
        point("counter", "record_count", json!(value), tags)
    }

    /// The points due at `now`: one per series with records since its last point, once the
    /// interval has passed (none before).
    pub fn poll<'a>(
        &mut self,
        now: f64,
        totals: impl IntoIterator<Item = (CountKey<'a>, u64)>,
    ) -> Vec<Value> {
        if now - self.last < self.interval {
            return Vec::new();
        }
        self.last = now;
        totals
            .into_iter()
            .filter_map(|(key, total)| {
                let delta = self.delta(key, total);
                (delta > 0).then(|| Self::counter(key, delta))
            })
            .collect()
    }

    /// The final points: one per series given (also those without records), with the rest of
    /// its count; the values of a series' points add up to its total.
    pub fn finish<'a>(
        &mut self,
        totals: impl IntoIterator<Item = (CountKey<'a>, u64)>,
    ) -> Vec<Value> {
        totals
            .into_iter()
            .map(|(key, total)| {
                let delta = self.delta(key, total);
                Self::counter(key, delta)
            })
            .collect()
    }
}

/// `n` with thousands separators (`4,200`).
fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1 request` / `12 requests`.
fn counted(n: u64, one: &str, many: &str) -> String {
    format!("{} {}", thousands(n), if n == 1 { one } else { many })
}

/// What one stream cost, by kind of figure.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct StreamFigures {
    pub records: u64,
    pub skipped: u64,
    pub requests: u64,
    pub retries: u64,
    pub seconds: f64,
}

/// The message of a stream's summary line: `Stream summary: measures: 4,200 records,
/// 12 requests, 0 retries, 3.2 s` (with `, N skipped` after the records when some were).
pub fn stream_summary(stream: &str, f: &StreamFigures) -> String {
    let skipped = if f.skipped > 0 {
        format!(" ({} skipped)", thousands(f.skipped))
    } else {
        String::new()
    };
    format!(
        "Stream summary: {stream}: {}{skipped}, {}, {}, {:.1} s",
        counted(f.records, "record", "records"),
        counted(f.requests, "request", "requests"),
        counted(f.retries, "retry", "retries"),
        f.seconds
    )
}

/// The message of the run's summary line: `Sync summary: 5,210 records in 13 streams,
/// 40 requests, 2 retries (http_503: 2), 12.3 s`.
pub fn sync_summary(
    records: u64,
    streams: usize,
    requests: u64,
    retries: u64,
    retry_reasons: &BTreeMap<String, u64>,
    seconds: f64,
) -> String {
    let reasons = if retry_reasons.is_empty() {
        String::new()
    } else {
        let list: Vec<String> = retry_reasons
            .iter()
            .map(|(why, n)| format!("{why}: {}", thousands(*n)))
            .collect();
        format!(" ({})", list.join(", "))
    };
    format!(
        "Sync summary: {} in {}, {}, {}{reasons}, {seconds:.1} s",
        counted(records, "record", "records"),
        counted(streams as u64, "stream", "streams"),
        counted(requests, "request", "requests"),
        counted(retries, "retry", "retries"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn values(points: &[Value]) -> Vec<(String, u64)> {
        points
            .iter()
            .map(|p| {
                assert_eq!(p["type"], "counter");
                assert_eq!(p["metric"], "record_count");
                assert_eq!(p["tags"]["pid"], std::process::id());
                let stream = p["tags"]["stream"].as_str().unwrap();
                let name = match p["tags"].get("context") {
                    Some(c) => format!("{stream}/{}", c["userid"]),
                    None => stream.to_string(),
                };
                (name, p["value"].as_u64().unwrap())
            })
            .collect()
    }

    #[test]
    fn record_count_reports_deltas_per_interval_and_the_rest_at_the_end() {
        let mut c = RecordCounter::new(100.0, 60.0);
        // (time, totals, expected points)
        // Stream a of users 1 and 2, stream b of user 1.
        type Totals<'a> = &'a [(CountKey<'a>, u64)];
        type Want<'a> = &'a [(&'a str, u64)];
        let (a1, a2, b1) = (("a", Some(1)), ("a", Some(2)), ("b", Some(1)));
        let steps: &[(f64, Totals, Want)] = &[
            (110.0, &[(a1, 5)], &[]),
            (159.9, &[(a1, 50), (b1, 1)], &[]),
            (160.0, &[(a1, 50), (b1, 1)], &[("a/1", 50), ("b/1", 1)]),
            (170.0, &[(a1, 80), (a2, 7), (b1, 1)], &[]),
            (
                220.5,
                &[(a1, 80), (a2, 7), (b1, 1)],
                &[("a/1", 30), ("a/2", 7)],
            ),
            (281.0, &[(a1, 80), (a2, 7), (b1, 1)], &[]),
        ];
        for (now, totals, want) in steps {
            let got = values(&c.poll(*now, totals.iter().copied()));
            let want: Vec<(String, u64)> = want.iter().map(|(s, n)| (s.to_string(), *n)).collect();
            assert_eq!(got, want, "at {now}");
        }
        let end = values(&c.finish([(a1, 95), (a2, 7), (b1, 1), (("c", None), 0)]));
        assert_eq!(
            end,
            vec![
                ("a/1".into(), 15),
                ("a/2".into(), 0),
                ("b/1".into(), 0),
                ("c".into(), 0)
            ]
        );
    }

    #[test]
    fn points_have_the_sdk_shape() {
        let p = sync_duration("measures", 7, false, 1.5);
        assert_eq!(
            p,
            json!({"type": "timer", "metric": "sync_duration", "value": 1.5,
                   "tags": {"stream": "measures", "context": {"userid": 7}, "status": "failed", "pid": std::process::id()}})
        );
        let p = http_request_duration("/measure", "getmeas", Some(200), true, 0.25);
        assert_eq!(p["type"], "timer");
        assert_eq!(p["tags"]["stream"], Value::Null, "outside a stream scope");
        assert_eq!(p["tags"]["http_status_code"], 200);
        assert_eq!(p["tags"]["status"], "succeeded");
        assert_eq!(p["tags"].get("context"), None);
    }

    #[test]
    fn record_count_carries_the_partition_as_context() {
        let mut c = RecordCounter::new(0.0, 60.0);
        let points = c.finish([(("measures", Some(42)), 3), (("goals", None), 0)]);
        assert_eq!(
            points,
            vec![
                json!({"type": "counter", "metric": "record_count", "value": 3,
                       "tags": {"stream": "measures", "context": {"userid": 42}, "pid": std::process::id()}}),
                json!({"type": "counter", "metric": "record_count", "value": 0,
                       "tags": {"stream": "goals", "pid": std::process::id()}}),
            ]
        );
    }

    #[test]
    fn summaries_carry_their_figures_in_the_text() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(4200), "4,200");
        assert_eq!(thousands(1_234_567), "1,234,567");
        let f = StreamFigures {
            records: 4200,
            skipped: 0,
            requests: 12,
            retries: 1,
            seconds: 3.21,
        };
        assert_eq!(
            stream_summary("measures", &f),
            "Stream summary: measures: 4,200 records, 12 requests, 1 retry, 3.2 s"
        );
        let f = StreamFigures {
            records: 1,
            skipped: 2,
            requests: 1,
            ..f
        };
        assert_eq!(
            stream_summary("activity", &f),
            "Stream summary: activity: 1 record (2 skipped), 1 request, 1 retry, 3.2 s"
        );
        let reasons = BTreeMap::from([("http 503".to_string(), 2), ("timeout".to_string(), 1)]);
        assert_eq!(
            sync_summary(5210, 13, 40, 3, &reasons, 12.34),
            "Sync summary: 5,210 records in 13 streams, 40 requests, 3 retries (http 503: 2, timeout: 1), 12.3 s"
        );
        assert_eq!(
            sync_summary(0, 1, 0, 0, &BTreeMap::new(), 0.0),
            "Sync summary: 0 records in 1 stream, 0 requests, 0 retries, 0.0 s"
        );
    }

    #[tokio::test]
    async fn scopes_tag_requests_and_count_them_per_stream() {
        let tallies = Arc::new(Tallies::default());
        let scope = StreamScope {
            stream: "ecg_recordings",
            userid: 3,
            tallies: Arc::clone(&tallies),
        };
        let (parent, child) = in_stream(scope, async {
            count_request();
            count_retry();
            assert_eq!(current_userid(), Some(3));
            let parent = http_request_duration("/v2/heart", "list", None, false, 0.1);
            let child = in_child_stream("ecg_signals", async {
                count_request();
                http_request_duration("/v2/heart", "get", Some(200), true, 0.1)
            })
            .await;
            (parent, child)
        })
        .await;
        assert_eq!(parent["tags"]["stream"], "ecg_recordings");
        assert_eq!(parent["tags"]["context"], json!({"userid": 3}));
        assert_eq!(parent["tags"]["http_status_code"], Value::Null);
        assert_eq!(child["tags"]["stream"], "ecg_signals");
        assert_eq!(child["tags"]["context"], json!({"userid": 3}));
        count_request(); // outside any scope: not counted
        assert_eq!(current_userid(), None);
        assert_eq!(
            tallies.snapshot().into_iter().collect::<Vec<_>>(),
            vec![
                (
                    "ecg_recordings",
                    Tally {
                        requests: 1,
                        retries: 1
                    }
                ),
                (
                    "ecg_signals",
                    Tally {
                        requests: 1,
                        retries: 0
                    }
                ),
            ]
        );
    }
}
