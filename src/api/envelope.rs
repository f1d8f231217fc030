//! Classifies one HTTP reply from Withings into what to do next. Pure; the client acts.

use std::ops::Range;

use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::Value;

/// A successful reply's `body`. An object body is kept as its JSON text, so a typed parser
/// can borrow from it (see `streams::measure`); anything else is normalized to a value.
#[derive(Debug, Clone)]
pub struct Reply(Repr);

#[derive(Debug, Clone)]
enum Repr {
    /// The whole reply and where its `body` object lies in it.
    Raw {
        text: Vec<u8>,
        body: Range<usize>,
    },
    Parsed(Value),
}

impl Reply {
    /// The body's JSON text, when it was kept (an object).
    pub fn raw_body(&self) -> Option<&[u8]> {
        match &self.0 {
            Repr::Raw { text, body } => Some(&text[body.clone()]),
            Repr::Parsed(_) => None,
        }
    }

    /// The body as a JSON value, leaving the reply as it is.
    pub fn to_value(&self) -> Result<Value, String> {
        match &self.0 {
            Repr::Raw { text, body } => serde_json::from_slice(&text[body.clone()])
                .map_err(|e| format!("reply body cannot be read ({e})")),
            Repr::Parsed(v) => Ok(v.clone()),
        }
    }

    /// The body as a JSON value.
    pub fn into_value(self) -> Result<Value, String> {
        match self.0 {
            Repr::Raw { text, body } => serde_json::from_slice(&text[body])
                .map_err(|e| format!("reply body cannot be read ({e})")),
            Repr::Parsed(v) => Ok(v),
        }
    }
}

impl From<Value> for Reply {
    fn from(v: Value) -> Self {
        Reply(Repr::Parsed(v))
    }
}

impl PartialEq for Reply {
    fn eq(&self, other: &Self) -> bool {
        self.clone().into_value() == other.clone().into_value()
    }
}

/// The envelope of a status-0 reply, read without building the body.
#[derive(Deserialize)]
struct FastEnvelope<'a> {
    status: i64,
    #[serde(borrow)]
    body: Option<&'a RawValue>,
}

/// Where the body of a status-0 reply whose body is an object lies in the reply text (None:
/// classify it the slow way).
fn fast_ok(body: &[u8]) -> Option<Range<usize>> {
    // Checking the text as UTF-8 once is cheaper than string by string.
    let text = std::str::from_utf8(body).ok()?;
    let env: FastEnvelope = serde_json::from_str(text).ok()?;
    let raw = env.body?.get();
    if env.status != 0 || !raw.starts_with('{') {
        return None;
    }
    let start = raw.as_ptr() as usize - text.as_ptr() as usize;
    Some(start..start + raw.len())
}

/// Why a call failed for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FailKind {
    /// Invalid parameters, unknown action, bad reply that retries did not fix.
    Fatal,
    /// The app or user is not allowed to call this service (missing scope or plan).
    Unauthorized,
    /// Authentication failed for good (token endpoint refused the refresh token or code).
    Auth,
}

/// A Withings failure with its status and text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiFailure {
    pub kind: FailKind,
    /// The envelope status (or the HTTP status for non-envelope replies).
    pub status: i64,
    pub message: String,
}

/// What to do with a reply.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome<B = Reply> {
    /// Status 0: the reply's `body`.
    Ok(B),
    /// Transient: retry after a backoff.
    Retry(String),
    /// Throttled: wait this many seconds, then retry.
    Wait(f64, String),
    /// The access token was refused: refresh it once, then retry.
    Refresh(String),
    /// Give up.
    Fail(ApiFailure),
}

impl<B> Outcome<B> {
    /// The same outcome with the body of a success mapped.
    pub fn map<C>(self, f: impl FnOnce(B) -> C) -> Outcome<C> {
        match self {
            Outcome::Ok(b) => Outcome::Ok(f(b)),
            Outcome::Retry(r) => Outcome::Retry(r),
            Outcome::Wait(s, r) => Outcome::Wait(s, r),
            Outcome::Refresh(r) => Outcome::Refresh(r),
            Outcome::Fail(f) => Outcome::Fail(f),
        }
    }
}

/// Which endpoint answered (the token endpoint's 503 means "invalid refresh_token/code").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    Data,
    Token,
}

/// Seconds to wait after a 601 that carries no `wait_seconds`.
pub const DEFAULT_601_WAIT: f64 = 60.0;
/// Longest `wait_seconds` honoured as given (longer ones are capped: retries are bounded).
pub const MAX_601_WAIT: f64 = 900.0;

/// Classifies a reply by the Withings status families (fact sheet §3):
///
/// | reply | outcome |
/// |---|---|
/// | HTTP 200, JSON, status 0 | `Ok(body)` |
/// | status 601 (too many requests) | `Wait(body.wait_seconds, else 60 s)` |
/// | status 100-102, 200, 401 (authentication failed) on a data call | `Refresh` |
/// | same on the token endpoint, or 503 there (invalid refresh_token / code) | `Fail(Auth)` |
/// | status 214, 277, 2553, 2555 (unauthorized: scope or plan) | `Fail(Unauthorized)` |
/// | invalid-params family (201-213, ..., 501-511, 523, 532, 3017-3019), 2554 not implemented | `Fail(Fatal)` |
/// | 522 timeout, 524 bad state, "an error occurred" family, any other status | `Retry` |
/// | HTTP 5xx, 408, non-JSON or truncated body, missing status | `Retry` |
/// | HTTP 429 | `Wait(60 s)` |
/// | HTTP 401/403 | `Refresh` (data) / `Fail(Auth)` (token) |
/// | other HTTP 4xx | `Fail(Fatal)` |
pub fn classify(http_status: u16, body: &[u8], endpoint: Endpoint) -> Outcome {
    classify_owned(http_status, body.to_vec(), endpoint)
}

/// [`classify`] of a reply text the caller gives away: a successful object body is kept
/// without a copy.
pub fn classify_owned(http_status: u16, text: Vec<u8>, endpoint: Endpoint) -> Outcome {
    let body = &text[..];
    match http_status {
        200..=299 => {}
        429 => return Outcome::Wait(DEFAULT_601_WAIT, "HTTP 429".into()),
        401 | 403 if endpoint == Endpoint::Data => {
            return Outcome::Refresh(format!("HTTP {http_status}"))
        }
        401 | 403 => {
            return Outcome::Fail(ApiFailure {
                kind: FailKind::Auth,
                status: i64::from(http_status),
                message: format!("HTTP {http_status}"),
            })
        }
        408 | 500..=599 => return Outcome::Retry(format!("HTTP {http_status}")),
        _ => {
            return Outcome::Fail(ApiFailure {
                kind: FailKind::Fatal,
                status: i64::from(http_status),
                message: format!("unexpected HTTP {http_status}"),
            })
        }
    }
    if let Some(range) = fast_ok(body) {
        return Outcome::Ok(Reply(Repr::Raw { text, body: range }));
    }
    let envelope: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) if body.is_empty() => return Outcome::Retry("empty reply body".into()),
        Err(_) if looks_like_html(body) => return Outcome::Retry("HTML instead of JSON".into()),
        Err(e) if e.is_eof() => return Outcome::Retry("truncated JSON reply".into()),
        Err(_) => return Outcome::Retry("reply is not JSON".into()),
    };
    let Some(status) = envelope.get("status").and_then(Value::as_i64) else {
        return Outcome::Retry("reply without an integer `status`".into());
    };
    // Server text: it reaches logs and error messages only through the redaction gate.
    let message = crate::secret::redact::server_text(
        envelope.get("error").and_then(Value::as_str).unwrap_or(""),
    );
    let body = envelope.get("body").cloned().unwrap_or(Value::Null);
    let fail = |kind| {
        Outcome::Fail(ApiFailure {
            kind,
            status,
            message: message.clone(),
        })
    };
    match status {
        0 if !(body.is_object()
            || body.is_null()
            || body.as_array().is_some_and(Vec::is_empty)) =>
        {
            Outcome::Retry("reply body is not an object".into())
        }
        0 => Outcome::Ok(Reply::from(if body.is_null() || body.is_array() {
            Value::Object(Default::default())
        } else {
            body
        })),
        601 => {
            let wait = body
                .get("wait_seconds")
                .and_then(Value::as_f64)
                .filter(|w| w.is_finite() && *w >= 0.0);
            Outcome::Wait(
                wait.unwrap_or(DEFAULT_601_WAIT).min(MAX_601_WAIT),
                format!("status 601 {message}").trim().to_string(),
            )
        }
        100..=102 | 200 | 401 if endpoint == Endpoint::Data => {
            Outcome::Refresh(format!("status {status}"))
        }
        100..=102 | 200 | 401 | 503 if endpoint == Endpoint::Token => fail(FailKind::Auth),
        214 | 277 | 2553 | 2555 => fail(FailKind::Unauthorized),
        2554 => fail(FailKind::Fatal),
        s if is_invalid_params(s) => fail(FailKind::Fatal),
        s => Outcome::Retry(format!("status {s} {message}").trim().to_string()),
    }
}

fn looks_like_html(body: &[u8]) -> bool {
    let start = body
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    body.get(start) == Some(&b'<')
}

/// The "invalid params" status family.
fn is_invalid_params(s: i64) -> bool {
    const RANGES: &[(i64, i64)] = &[
        (201, 213),
        (216, 218),
        (220, 221),
        (223, 223),
        (225, 225),
        (227, 230),
        (234, 236),
        (238, 238),
        (240, 252),
        (254, 254),
        (260, 267),
        (271, 272),
        (275, 276),
        (283, 288),
        (290, 290),
        (293, 295),
        (297, 297),
        (300, 304),
        (321, 321),
        (323, 353),
        (380, 382),
        (400, 400),
        (501, 511),
        (523, 523),
        (532, 532),
        (3017, 3019),
    ];
    RANGES.iter().any(|(lo, hi)| (*lo..=*hi).contains(&s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn data(http: u16, body: &str) -> Outcome {
        classify(http, body.as_bytes(), Endpoint::Data)
    }

    #[test]
    fn classification_table() {
        assert_eq!(
            data(200, r#"{"status":0,"body":{"a":1}}"#),
            Outcome::Ok(json!({"a": 1}).into())
        );
        assert_eq!(data(200, r#"{"status":0}"#), Outcome::Ok(json!({}).into()));
        assert_eq!(
            data(200, r#"{"status":0,"body":[]}"#),
            Outcome::Ok(json!({}).into())
        );
        // An object body is kept as text, exactly the bytes of the reply.
        let Outcome::Ok(reply) = data(
            200,
            r#"{"error":"", "body": {"a": [1, {"b": 2}]} ,"status":0}"#,
        ) else {
            panic!("not ok")
        };
        assert_eq!(reply.raw_body(), Some(&br#"{"a": [1, {"b": 2}]}"#[..]));
        // Duplicate or odd envelope fields go the careful way.
        assert!(matches!(
            data(200, r#"{"status":0,"status":0,"body":{}}"#),
            Outcome::Ok(_) | Outcome::Retry(_)
        ));
        assert_eq!(
            data(
                200,
                r#"{"status":601,"body":{"wait_seconds":188},"error":"Same arguments in less than 10 seconds"}"#
            ),
            Outcome::Wait(
                188.0,
                "status 601 Same arguments in less than 10 seconds".into()
            )
        );
        assert_eq!(
            data(200, r#"{"status":601,"body":{}}"#),
            Outcome::Wait(60.0, "status 601".into())
        );
        assert_eq!(
            data(200, r#"{"status":601,"body":{"wait_seconds":99999}}"#),
            Outcome::Wait(900.0, "status 601".into())
        );
        assert_eq!(
            data(200, r#"{"status":401,"body":{},"error":"invalid_token"}"#),
            Outcome::Refresh("status 401".into())
        );
        assert!(matches!(
            data(200, r#"{"status":522,"body":{}}"#),
            Outcome::Retry(_)
        ));
        assert!(matches!(data(200, r#"{"status":2556}"#), Outcome::Retry(_)));
        assert!(
            matches!(data(502, "<html>Bad gateway</html>"), Outcome::Retry(r) if r == "HTTP 502")
        );
        assert!(
            matches!(data(200, "<html>oops</html>"), Outcome::Retry(r) if r == "HTML instead of JSON")
        );
        assert!(
            matches!(data(200, r#"{"status":0,"body":{"measuregrps":[{"#), Outcome::Retry(r) if r == "truncated JSON reply")
        );
        assert!(matches!(data(200, ""), Outcome::Retry(r) if r == "empty reply body"));
        assert!(matches!(data(200, r#"{"status":"0"}"#), Outcome::Retry(_)));
        assert!(matches!(
            data(404, ""),
            Outcome::Fail(ApiFailure {
                kind: FailKind::Fatal,
                status: 404,
                ..
            })
        ));
        assert!(matches!(
            data(200, r#"{"status":503,"error":"Invalid Params"}"#),
            Outcome::Fail(ApiFailure {
                kind: FailKind::Fatal,
                status: 503,
                ..
            })
        ));
        assert!(matches!(
            data(200, r#"{"status":277}"#),
            Outcome::Fail(ApiFailure {
                kind: FailKind::Unauthorized,
                ..
            })
        ));
        assert!(matches!(
            data(200, r#"{"status":2554}"#),
            Outcome::Fail(ApiFailure {
                kind: FailKind::Fatal,
                ..
            })
        ));
    }

    #[test]
    fn the_error_text_of_a_reply_is_escaped_bounded_and_redacted() {
        let _secret = crate::secret::Secret::new("envelope-test-client-secret");
        let text = format!(
            "Invalid Params: envelope-test-client-secret\n2026-01-01 ERROR forged\u{1b}[2K{}",
            "x".repeat(500)
        );
        let body = json!({"status": 503, "body": {}, "error": text}).to_string();
        let Outcome::Fail(failure) = classify(200, body.as_bytes(), Endpoint::Token) else {
            panic!("not a failure")
        };
        assert!(
            failure
                .message
                .starts_with("Invalid Params: [redacted]\\n2026-01-01 ERROR forged\\u{1b}[2K"),
            "{}",
            failure.message
        );
        assert!(!failure.message.contains(['\n', '\u{1b}']));
        assert_eq!(failure.message.chars().count(), 201);
        // The reasons of retries and waits carry the same text.
        let wait = json!({"status": 601, "body": {}, "error": "slow\ndown"}).to_string();
        assert_eq!(
            data(200, &wait),
            Outcome::Wait(60.0, "status 601 slow\\ndown".into())
        );
    }

    #[test]
    fn the_token_endpoint_503_means_re_authorize() {
        let out = classify(
            200,
            br#"{"status":503,"body":{},"error":"Invalid Params: invalid refresh_token"}"#,
            Endpoint::Token,
        );
        assert_eq!(
            out,
            Outcome::Fail(ApiFailure {
                kind: FailKind::Auth,
                status: 503,
                message: "Invalid Params: invalid refresh_token".into()
            })
        );
        assert!(matches!(
            classify(
                200,
                br#"{"status":601,"body":{"wait_seconds":3}}"#,
                Endpoint::Token
            ),
            Outcome::Wait(..)
        ));
    }
}
