//! OAuth state: authorization codes, access tokens and rotating refresh tokens.
//!
//! Rotation follows Withings: every grant returns a new refresh token; the old one stays usable
//! until an access token issued with its successor is used for a data call, or for 8 h after
//! the successor was issued, whichever comes first.

use crate::prng::Prng;
use std::collections::{BTreeMap, HashMap};

/// All scopes a user can grant.
pub const ALL_SCOPES: &str = "user.info,user.metrics,user.activity,user.sleepevents";
/// How long an old refresh token survives its successor.
pub const ROTATION_GRACE_SECS: f64 = 8.0 * 3600.0;
/// Lifetime of a refresh token.
pub const REFRESH_TTL_SECS: f64 = 365.0 * 86_400.0;

#[derive(Debug, Clone)]
struct RefreshToken {
    userid: u64,
    scope: String,
    expires_at: f64,
    dead: bool,
}

#[derive(Debug, Clone)]
struct AccessToken {
    userid: u64,
    scope: String,
    expires_at: f64,
    calls: u32,
    /// The refresh token that was rotated to obtain this pair; it dies on first use.
    parent: Option<String>,
}

#[derive(Debug, Clone)]
struct Code {
    userid: u64,
    scope: String,
    redirect_uri: String,
    expires_at: f64,
}

/// A token grant.
#[derive(Debug, Clone, PartialEq)]
pub struct Issued {
    pub userid: u64,
    pub access_token: String,
    pub refresh_token: String,
    pub expires_in: u64,
    pub scope: String,
}

/// Why a data call is not authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFail {
    Invalid,
    /// The token exceeded `access_token_max_calls`.
    MaxCalls,
}

#[derive(Debug)]
pub struct AuthStore {
    refresh: HashMap<String, RefreshToken>,
    access: HashMap<String, AccessToken>,
    codes: HashMap<String, Code>,
    prng: Prng,
    /// Initial refresh token per user.
    pub initial: BTreeMap<u64, String>,
    access_ttl: f64,
    code_ttl: f64,
}

/// The initial refresh token of a user.
pub fn initial_refresh_token(userid: u64) -> String {
    format!("sim-refresh-{userid}")
}

impl AuthStore {
    pub fn new(seed: u64, userids: &[u64], access_ttl: u64, code_ttl: u64, now: f64) -> Self {
        let mut store = AuthStore {
            refresh: HashMap::new(),
            access: HashMap::new(),
            codes: HashMap::new(),
            prng: Prng::derive(seed, "tokens", 0),
            initial: BTreeMap::new(),
            access_ttl: access_ttl as f64,
            code_ttl: code_ttl as f64,
        };
        for &u in userids {
            let t = initial_refresh_token(u);
            store.refresh.insert(
                t.clone(),
                RefreshToken {
                    userid: u,
                    scope: ALL_SCOPES.to_string(),
                    expires_at: now + REFRESH_TTL_SECS,
                    dead: false,
                },
            );
            store.initial.insert(u, t);
        }
        store
    }

    fn issue(&mut self, userid: u64, scope: &str, parent: Option<String>, now: f64) -> Issued {
        let access_token = self.prng.hex40();
        let refresh_token = self.prng.hex40();
        self.access.insert(
            access_token.clone(),
            AccessToken {
                userid,
                scope: scope.to_string(),
                expires_at: now + self.access_ttl,
                calls: 0,
                parent,
            },
        );
        self.refresh.insert(
            refresh_token.clone(),
            RefreshToken {
                userid,
                scope: scope.to_string(),
                expires_at: now + REFRESH_TTL_SECS,
                dead: false,
            },
        );
        Issued {
            userid,
            access_token,
            refresh_token,
            expires_in: self.access_ttl as u64,
            scope: scope.to_string(),
        }
    }

    /// `grant_type=refresh_token`.
    pub fn refresh(&mut self, token: &str, now: f64) -> Option<Issued> {
        self.refresh_with_grace(token, now, ROTATION_GRACE_SECS)
    }

    /// `grant_type=refresh_token`, the old token surviving its successor `grace` seconds
    /// (0: it dies at once).
    pub fn refresh_with_grace(&mut self, token: &str, now: f64, grace: f64) -> Option<Issued> {
        let old = self.refresh.get_mut(token)?;
        if old.dead || old.expires_at <= now {
            return None;
        }
        if grace <= 0.0 {
            old.dead = true;
        }
        old.expires_at = old.expires_at.min(now + grace);
        let (userid, scope) = (old.userid, old.scope.clone());
        Some(self.issue(userid, &scope, Some(token.to_string()), now))
    }

    /// Creates an authorization code for a consenting user.
    pub fn new_code(&mut self, userid: u64, scope: &str, redirect_uri: &str, now: f64) -> String {
        let code = self.prng.hex40();
        self.codes.insert(
            code.clone(),
            Code {
                userid,
                scope: scope.to_string(),
                redirect_uri: redirect_uri.to_string(),
                expires_at: now + self.code_ttl,
            },
        );
        code
    }

    /// `grant_type=authorization_code`: single use, must present the same redirect_uri.
    pub fn exchange(&mut self, code: &str, redirect_uri: &str, now: f64) -> Option<Issued> {
        let c = self.codes.remove(code)?;
        if c.expires_at <= now || c.redirect_uri != redirect_uri {
            return None;
        }
        Some(self.issue(c.userid, &c.scope, None, now))
    }

    /// Who a bearer token belongs to (without counting a call).
    pub fn peek(&self, token: &str) -> Option<u64> {
        self.access.get(token).map(|a| a.userid)
    }

    /// Authenticates a data call: returns (userid, granted scope). The first use of an access
    /// token issued by a rotation kills the rotated refresh token.
    pub fn authenticate(
        &mut self,
        token: &str,
        now: f64,
        max_calls: Option<u32>,
    ) -> Result<(u64, String), AuthFail> {
        let a = self.access.get_mut(token).ok_or(AuthFail::Invalid)?;
        if a.expires_at <= now {
            return Err(AuthFail::Invalid);
        }
        a.calls += 1;
        if max_calls.is_some_and(|m| a.calls > m) {
            return Err(AuthFail::MaxCalls);
        }
        let out = (a.userid, a.scope.clone());
        if let Some(parent) = a.parent.take() {
            if let Some(r) = self.refresh.get_mut(&parent) {
                r.dead = true;
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store() -> AuthStore {
        AuthStore::new(1, &[7], 10_800, 30, 0.0)
    }

    #[test]
    fn rotation_kills_old_refresh_token_on_first_use_of_successor() {
        let mut s = store();
        let first = s.refresh("sim-refresh-7", 0.0).unwrap();
        // Still alive: a second refresh with the same token works.
        let second = s.refresh("sim-refresh-7", 1.0).unwrap();
        assert_ne!(first.refresh_token, second.refresh_token);
        assert!(s.authenticate(&second.access_token, 2.0, None).is_ok());
        assert!(s.refresh("sim-refresh-7", 3.0).is_none());
        // The successors still work.
        assert!(s.refresh(&first.refresh_token, 4.0).is_some());
    }

    #[test]
    fn with_no_grace_an_old_refresh_token_dies_when_its_successor_is_issued() {
        let mut s = store();
        let first = s.refresh_with_grace("sim-refresh-7", 0.0, 0.0).unwrap();
        assert!(s.refresh_with_grace("sim-refresh-7", 0.0, 0.0).is_none());
        assert!(s
            .refresh_with_grace(&first.refresh_token, 0.0, 0.0)
            .is_some());
    }

    #[test]
    fn old_refresh_token_dies_after_8_hours() {
        let mut s = store();
        s.refresh("sim-refresh-7", 0.0).unwrap();
        assert!(s
            .refresh("sim-refresh-7", ROTATION_GRACE_SECS - 1.0)
            .is_some());
        assert!(s
            .refresh("sim-refresh-7", ROTATION_GRACE_SECS + 1.0)
            .is_none());
    }

    #[test]
    fn codes_are_single_use_short_lived_and_bound_to_redirect_uri() {
        let mut s = store();
        let c = s.new_code(7, "user.metrics", "https://x/cb", 0.0);
        assert!(s.exchange(&c, "https://other/cb", 1.0).is_none());
        let c = s.new_code(7, "user.metrics", "https://x/cb", 0.0);
        assert!(s.exchange(&c, "https://x/cb", 31.0).is_none());
        let c = s.new_code(7, "user.metrics", "https://x/cb", 0.0);
        let got = s.exchange(&c, "https://x/cb", 1.0).unwrap();
        assert_eq!(got.scope, "user.metrics");
        assert!(s.exchange(&c, "https://x/cb", 2.0).is_none());
    }

    #[test]
    fn access_tokens_expire_and_count_calls() {
        let mut s = store();
        let t = s.refresh("sim-refresh-7", 0.0).unwrap();
        assert!(s.authenticate(&t.access_token, 1.0, Some(2)).is_ok());
        assert!(s.authenticate(&t.access_token, 1.0, Some(2)).is_ok());
        assert_eq!(
            s.authenticate(&t.access_token, 1.0, Some(2)),
            Err(AuthFail::MaxCalls)
        );
        assert_eq!(
            s.authenticate(&t.access_token, 10_801.0, None),
            Err(AuthFail::Invalid)
        );
        assert_eq!(s.authenticate("nope", 1.0, None), Err(AuthFail::Invalid));
    }
}
