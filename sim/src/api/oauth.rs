//! OAuth 2: `GET /oauth2_user/authorize2` (immediate consent, 302 with a code) and
//! `POST /v2/oauth2 action=requesttoken` (code exchange and refresh-token rotation).

use super::params::{encode, ApiError, Params};
use crate::auth::{AuthStore, Issued};
use crate::config::SimConfig;
use serde_json::{json, Value};

/// Scopes a user can grant.
const KNOWN_SCOPES: &[&str] = &[
    "user.info",
    "user.metrics",
    "user.activity",
    "user.sleepevents",
];

/// Consents at once for the user named by the sim-only `userid` parameter (default: the first
/// user) and returns (redirect location, userid); `Err` is the text of a 400 page.
pub fn authorize(
    p: &Params,
    cfg: &SimConfig,
    store: &mut AuthStore,
    userids: &[u64],
    now: f64,
) -> Result<(String, u64), String> {
    if p.get("response_type") != Some("code") {
        return Err("invalid response_type (expected code)".into());
    }
    if p.get("client_id") != Some(cfg.client_id.as_str()) {
        return Err("invalid client_id".into());
    }
    let redirect_uri = p.get("redirect_uri").ok_or("missing redirect_uri")?;
    let state = p.get("state").ok_or("missing state")?;
    let requested = p.get("scope").ok_or("missing scope")?;
    // Scopes are comma-separated; a space-separated list names no known scope.
    let granted: Vec<&str> = requested
        .split(',')
        .map(str::trim)
        .filter(|s| KNOWN_SCOPES.contains(s))
        .collect();
    if granted.is_empty() {
        return Err(format!(
            "invalid scope {requested:?} (comma-separated list expected)"
        ));
    }
    let userid = match p.int("userid").ok().flatten() {
        Some(u) => u64::try_from(u)
            .ok()
            .filter(|u| userids.contains(u))
            .ok_or("unknown userid")?,
        None => *userids.first().ok_or("no users")?,
    };
    let code = store.new_code(userid, &granted.join(","), redirect_uri, now);
    let sep = if redirect_uri.contains('?') { '&' } else { '?' };
    Ok((
        format!(
            "{redirect_uri}{sep}code={}&state={}",
            encode(&code),
            encode(state)
        ),
        userid,
    ))
}

/// Which grant a successful token request was.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Grant {
    Code,
    Refresh,
}

/// `action=requesttoken`: the reply body, the grant kind and the user. An old refresh token
/// survives its successor `grace` seconds (see [`AuthStore::refresh_with_grace`]).
pub fn requesttoken(
    p: &Params,
    cfg: &SimConfig,
    store: &mut AuthStore,
    now: f64,
    userid_as_string: bool,
    grace: f64,
) -> Result<(Value, Grant, u64), ApiError> {
    let client_id = p
        .get("client_id")
        .ok_or_else(|| ApiError::missing("client_id"))?;
    if client_id != cfg.client_id {
        return Err(ApiError::invalid("client_id"));
    }
    let secret = p
        .get("client_secret")
        .ok_or_else(|| ApiError::missing("client_secret"))?;
    if secret != cfg.client_secret {
        return Err(ApiError::invalid("client_secret"));
    }
    let (issued, grant): (Issued, Grant) = match p.get("grant_type") {
        Some("authorization_code") => {
            let code = p.get("code").ok_or_else(|| ApiError::missing("code"))?;
            let redirect = p
                .get("redirect_uri")
                .ok_or_else(|| ApiError::missing("redirect_uri"))?;
            let issued = store
                .exchange(code, redirect, now)
                .ok_or_else(|| ApiError::invalid("code"))?;
            (issued, Grant::Code)
        }
        Some("refresh_token") => {
            let token = p
                .get("refresh_token")
                .ok_or_else(|| ApiError::missing("refresh_token"))?;
            let issued = store
                .refresh_with_grace(token, now, grace)
                .ok_or_else(|| ApiError::invalid("refresh_token"))?;
            (issued, Grant::Refresh)
        }
        Some(_) => return Err(ApiError::invalid("grant_type")),
        None => return Err(ApiError::missing("grant_type")),
    };
    let userid = if userid_as_string {
        json!(issued.userid.to_string())
    } else {
        json!(issued.userid)
    };
    let body = json!({
        "userid": userid,
        "access_token": issued.access_token,
        "refresh_token": issued.refresh_token,
        "scope": issued.scope,
        "expires_in": issued.expires_in,
        "token_type": "Bearer",
    });
    Ok((body, grant, issued.userid))
}
