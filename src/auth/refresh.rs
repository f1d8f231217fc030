//! The one token refresh (`grant_type=refresh_token`), used by the sync's session and by
//! `auth --refresh`: the request, its failures worded once, the reply read and checked, and
//! the store written before any new token is used. Also the token reply shared with the code
//! exchange, and the debug pause hook of every token exchange.
//!
//! The caller holds the store's lock (`token_store::lock`) from re-reading the store, across
//! [`rotate`], through [`store_reply`]: one process at a time rotates a store's tokens.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use super::token_store::{self, StoredUser};
use crate::api::client::{ApiClient, CallError};
use crate::api::envelope::{ApiFailure, Endpoint, FailKind};
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Test hook: set to `token_reply` or `store_written` and the token exchange of `auth`,
/// `auth --refresh` and a sync's own refresh announces `tap-withings: debug pause at <point>`
/// on stderr and sleeps for [`DEBUG_PAUSE`] at that point, so a test can SIGKILL the process
/// there. It only sleeps: requests, the store and the output are the same with or without it.
pub const DEBUG_PAUSE_VAR: &str = "TAP_WITHINGS_DEBUG_PAUSE";

/// How long the [`DEBUG_PAUSE_VAR`] hook sleeps.
pub const DEBUG_PAUSE: Duration = Duration::from_secs(30);

/// The [`DEBUG_PAUSE_VAR`] point of `env`, if any.
pub fn pause_point(env: &BTreeMap<String, String>) -> Option<&str> {
    env.get(DEBUG_PAUSE_VAR).map(String::as_str)
}

/// Sleeps [`DEBUG_PAUSE`] at `point` when it is the chosen one (see [`DEBUG_PAUSE_VAR`]).
/// Real time on purpose, not the run's clock: the hook exists so a test can kill the real
/// process while it waits.
pub(crate) async fn debug_pause(chosen: Option<&str>, point: &str) {
    if chosen == Some(point) {
        eprintln!("tap-withings: debug pause at {point}");
        tokio::time::sleep(DEBUG_PAUSE).await;
    }
}

/// The fields of a token reply the tap needs.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenReply {
    pub userid: i64,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: i64,
    pub scope: String,
}

/// Reads a token reply body; `userid` may be a number or a string. The tokens it holds are
/// secrets of this process from now on (see [`crate::secret::redact`]).
pub fn parse_token_reply(body: &Value) -> std::result::Result<TokenReply, String> {
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let access_token = text("access_token");
    let refresh_token = text("refresh_token");
    // Known before any check can fail: a reply missing one token still holds the other.
    for token in access_token.iter().chain(&refresh_token) {
        crate::secret::redact::register(token);
    }
    let userid = match body.get("userid") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or("the token reply has no userid")?;
    Ok(TokenReply {
        userid,
        access_token: access_token.ok_or("the token reply has no access_token")?,
        refresh_token: refresh_token.ok_or("the token reply has no refresh_token")?,
        // Bounded to ten years so expiry arithmetic cannot overflow.
        expires_in: body
            .get("expires_in")
            .and_then(Value::as_i64)
            .unwrap_or(10_800)
            .clamp(0, 10 * 366 * 86_400),
        scope: text("scope").unwrap_or_default(),
    })
}

/// The app's credentials, sent with every token request.
#[derive(Clone, Copy)]
pub struct App<'a> {
    pub client_id: &'a str,
    pub client_secret: &'a Secret,
}

/// Rotates `refresh_token` (of `expected` when the user is known; `store` is where its chain
/// lives, for the advice): the new tokens, not stored yet. Fails with [`Error::Auth`] when
/// Withings refuses the token (the account must be linked again), [`Error::Interrupted`]
/// when the run is cancelled, else [`Error::Api`].
pub async fn rotate(
    client: &ApiClient,
    app: App<'_>,
    refresh_token: &Secret,
    expected: Option<i64>,
    store: &Path,
) -> Result<TokenReply> {
    let params = [
        ("action", "requesttoken".to_string()),
        ("grant_type", "refresh_token".to_string()),
        ("client_id", app.client_id.to_string()),
        ("client_secret", app.client_secret.expose().to_string()),
        ("refresh_token", refresh_token.expose().to_string()),
    ];
    let body = client
        .request("/v2/oauth2", &params, None, Endpoint::Token)
        .await
        .map_err(|e| match e {
            CallError::Failed(ApiFailure {
                kind: FailKind::Auth,
                status,
                message,
            }) => Error::Auth(format!(
                "Withings refused the refresh token (status {status}: {message}); {}",
                super::refused_refresh_advice(store, client.base())
            )),
            other => token_call_error("the token refresh", other),
        })?;
    let reply = parse_token_reply(&body)
        .map_err(|why| Error::Api(format!("the token refresh failed: {why}")))?;
    if let Some(expected) = expected.filter(|u| *u != reply.userid) {
        return Err(Error::Api(format!(
            "the token refresh answered for user {} instead of {expected}; the store is unchanged",
            reply.userid
        )));
    }
    Ok(reply)
}

/// A failed token call (`what`: "the token refresh", "the code exchange"), other than a
/// refused token or code, which each caller words for itself.
pub(crate) fn token_call_error(what: &str, e: CallError) -> Error {
    match e {
        CallError::Failed(f) => Error::Api(format!(
            "{what} failed (status {}: {})",
            f.status, f.message
        )),
        CallError::Refresh => {
            Error::Auth(format!("{what} was refused: run `tap-withings auth` again"))
        }
        CallError::Exhausted { reason, attempts } => Error::Api(format!(
            "{what} failed after {attempts} attempts ({reason})"
        )),
        CallError::Cancelled => Error::Interrupted,
    }
}

/// Writes a token reply into the store (keeping the other users), atomically, mode 0600,
/// under the caller's store lock. A chain replaced this way (a new consent) leaves its seed
/// behind as superseded, so an older configured token of that chain gives way to the stored
/// one. `now` (epoch seconds, the run's clock) dates the reply and its expiry.
pub fn store_reply(
    path: &Path,
    reply: &TokenReply,
    seeded_from: String,
    now: i64,
) -> Result<StoredUser> {
    let mut file = token_store::load(path)?;
    let stored = file.put(StoredUser {
        userid: reply.userid,
        access_token: reply.access_token.clone(),
        refresh_token: reply.refresh_token.clone(),
        expires_at: now + reply.expires_in,
        scope: reply.scope.clone(),
        updated_at: now,
        seeded_from,
        previous_seeds: Vec::new(),
    });
    token_store::save(path, &file).map_err(|e| {
        Error::Io(format!("{e}; the new tokens were not used, so the previous refresh token stays valid for 8 hours"))
    })?;
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_replies_accept_string_userids() {
        let r = parse_token_reply(&json!({"userid": "27718374", "access_token": "a", "refresh_token": "r", "expires_in": 10800, "scope": "user.info"}))
            .unwrap();
        assert_eq!(r.userid, 27718374);
        assert!(parse_token_reply(&json!({"userid": 1, "access_token": "a"})).is_err());
    }

    #[test]
    fn the_tokens_of_a_reply_are_secrets_even_when_the_reply_is_refused() {
        let reply = json!({"access_token": "access-of-a-reply-without-userid"});
        assert!(parse_token_reply(&reply).is_err());
        assert_eq!(
            crate::secret::redact::server_text("echo access-of-a-reply-without-userid"),
            "echo [redacted]"
        );
    }
}
