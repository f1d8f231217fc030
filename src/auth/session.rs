//! One user's session: picks the newest refresh token (token store or config), refreshes
//! single-flight before expiry or after a refused access token, and writes every token reply
//! to the store before the new access token is used (Withings kills the old refresh token as
//! soon as the new access token is used).

use std::path::PathBuf;

use serde_json::Value;
use tokio::sync::Mutex;
use tracing::info;

use super::token_store::{self, fingerprint, StoredUser, TokenFile};
use crate::api::client::{ApiClient, CallError};
use crate::api::envelope::{ApiFailure, Endpoint, FailKind, Reply};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Serialises read-modify-write cycles of token stores within the process.
static STORE_LOCK: Mutex<()> = Mutex::const_new(());

/// Refresh this long before the access token expires.
const EXPIRY_MARGIN: i64 = 300;

#[derive(Debug, Clone)]
struct Tokens {
    userid: Option<i64>,
    access: Option<Secret>,
    expires_at: i64,
    refresh: Secret,
    seeded_from: String,
}

/// A user's authenticated session.
pub struct Session {
    client_id: String,
    client_secret: Secret,
    store: PathBuf,
    tokens: Mutex<Tokens>,
    /// Where this user comes from, for messages before its userid is known.
    label: String,
}

/// What a data call can fail with, worded for the user.
#[derive(Debug, Clone, PartialEq)]
pub enum SessionError {
    /// The user must authorize again.
    Auth(String),
    /// The call is not allowed (scope/plan).
    Unauthorized { status: i64, message: String },
    /// Any other failure.
    Failed(String),
    /// The run was cancelled.
    Cancelled,
}

fn now_epoch() -> i64 {
    chrono::Utc::now().timestamp()
}

impl Session {
    /// Chooses the tokens to start from: the stored chain that grew from the configured
    /// refresh token (or the only stored user when none is configured), else the config's.
    pub fn open(cfg: &Config) -> Result<Self> {
        Self::open_with(cfg, cfg.refresh_token.as_ref(), &cfg.token_store)
    }

    /// As [`Session::open`] for a given refresh token and token store.
    pub fn open_with(
        cfg: &Config,
        refresh_token: Option<&Secret>,
        store: &std::path::Path,
    ) -> Result<Self> {
        let file = token_store::load(store)?;
        let tokens = choose_tokens(&file, refresh_token).ok_or_else(|| {
            Error::Auth(format!(
                "no refresh token: set `refresh_token` or run `tap-withings auth` (token store {} has {} user(s))",
                store.display(),
                file.users.len()
            ))
        })?;
        Ok(Self::with_tokens(cfg, store, tokens))
    }

    fn with_tokens(cfg: &Config, store: &std::path::Path, tokens: Tokens) -> Self {
        Session {
            client_id: cfg.client_id.clone(),
            client_secret: cfg.client_secret.clone(),
            store: store.to_path_buf(),
            tokens: Mutex::new(tokens),
            label: "the configured refresh_token".to_string(),
        }
    }

    /// Names the user in messages: `user N` once known, else where its token came from.
    pub async fn describe(&self) -> String {
        match self.userid().await {
            Some(id) => format!("user {id}"),
            None => format!("the user of {}", self.label),
        }
    }

    fn labelled(mut self, label: String) -> Self {
        self.label = label;
        self
    }

    /// Every user of the run: the configured refresh token, each `users` entry, and every
    /// other user already in the main token store. Users known by id are listed once.
    pub fn open_all(cfg: &Config) -> Result<Vec<Self>> {
        let mut sessions = Vec::new();
        let mut known: std::collections::BTreeSet<i64> = Default::default();
        fn push(
            s: Session,
            known: &mut std::collections::BTreeSet<i64>,
            sessions: &mut Vec<Session>,
        ) {
            // Nothing else holds the lock of a session that was just created.
            let id = s.tokens.try_lock().ok().and_then(|t| t.userid);
            if id.is_none_or(|id| known.insert(id)) {
                sessions.push(s);
            }
        }
        if cfg.refresh_token.is_some() {
            push(Self::open(cfg)?, &mut known, &mut sessions);
        }
        for (i, user) in cfg.users.iter().enumerate() {
            let store = user.token_store.as_deref().unwrap_or(&cfg.token_store);
            push(
                Self::open_with(cfg, user.refresh_token.as_ref(), store)?
                    .labelled(format!("users[{i}]")),
                &mut known,
                &mut sessions,
            );
        }
        let file = token_store::load(&cfg.token_store)?;
        for stored in file.users.values() {
            if !known.contains(&stored.userid) {
                push(
                    Self::with_tokens(cfg, &cfg.token_store, tokens_from_store(stored)),
                    &mut known,
                    &mut sessions,
                );
            }
        }
        if sessions.is_empty() {
            return Err(Error::Auth(format!(
                "no user to sync: set `refresh_token` (or `users`), or run `tap-withings auth` (token store {} is empty)",
                cfg.token_store.display()
            )));
        }
        Ok(sessions)
    }

    /// The user's id, once known (from the store or the first token reply).
    pub async fn userid(&self) -> Option<i64> {
        self.tokens.lock().await.userid
    }

    /// A usable access token and the userid, refreshing first when it is missing or expiring.
    pub async fn access(
        &self,
        client: &ApiClient,
    ) -> std::result::Result<(Secret, i64), SessionError> {
        let mut tokens = self.tokens.lock().await;
        let fresh = tokens.access.is_some()
            && tokens.expires_at - EXPIRY_MARGIN > now_epoch()
            && tokens.userid.is_some();
        if !fresh {
            self.refresh_locked(client, &mut tokens).await?;
        }
        match (&tokens.access, tokens.userid) {
            (Some(a), Some(u)) => Ok((a.clone(), u)),
            _ => Err(SessionError::Auth(
                "the token reply had no access token or userid".into(),
            )),
        }
    }

    /// Refreshes unless another task already replaced `stale` (single flight).
    /// Refreshes unless another task already replaced `stale` (single flight). The flag
    /// tells whether this call did the refresh.
    async fn refresh_after(
        &self,
        client: &ApiClient,
        stale: &Secret,
    ) -> std::result::Result<(Secret, bool), SessionError> {
        let mut tokens = self.tokens.lock().await;
        let mine = tokens.access.as_ref() == Some(stale);
        if mine {
            self.refresh_locked(client, &mut tokens).await?;
        }
        match &tokens.access {
            Some(a) => Ok((a.clone(), mine)),
            None => Err(SessionError::Auth(
                "the token reply had no access token".into(),
            )),
        }
    }

    async fn refresh_locked(
        &self,
        client: &ApiClient,
        tokens: &mut Tokens,
    ) -> std::result::Result<(), SessionError> {
        let params = [
            ("action", "requesttoken".to_string()),
            ("grant_type", "refresh_token".to_string()),
            ("client_id", self.client_id.clone()),
            ("client_secret", self.client_secret.expose().to_string()),
            ("refresh_token", tokens.refresh.expose().to_string()),
        ];
        let body = client.request("/v2/oauth2", &params, None, Endpoint::Token).await.map_err(|e| match e {
            CallError::Failed(ApiFailure { kind: FailKind::Auth, status, message }) => SessionError::Auth(format!(
                "Withings refused the refresh token (status {status}: {message}); run `tap-withings auth` again to re-link the account"
            )),
            CallError::Failed(f) => SessionError::Failed(format!("token refresh failed (status {}: {})", f.status, f.message)),
            CallError::Refresh => SessionError::Auth("token refresh was refused".into()),
            CallError::Cancelled => SessionError::Cancelled,
            CallError::Exhausted { reason, attempts } => {
                SessionError::Failed(format!("token refresh failed after {attempts} attempts ({reason})"))
            }
        })?;
        let reply = parse_token_reply(&body).map_err(SessionError::Failed)?;
        let stored = StoredUser {
            userid: reply.userid,
            access_token: reply.access_token.clone(),
            refresh_token: reply.refresh_token.clone(),
            expires_at: now_epoch() + reply.expires_in,
            scope: reply.scope.clone(),
            updated_at: now_epoch(),
            seeded_from: tokens.seeded_from.clone(),
        };
        // The rotated refresh token must be on disk before the new access token is used.
        // Users of one run may share a store: one writer at a time.
        let _guard = STORE_LOCK.lock().await;
        let mut file =
            token_store::load(&self.store).map_err(|e| SessionError::Failed(e.to_string()))?;
        file.version = 1;
        file.users.insert(reply.userid.to_string(), stored);
        token_store::save(&self.store, &file).map_err(|e| {
            SessionError::Failed(format!(
                "{e}; the new tokens were not used, so the previous refresh token stays valid for 8 hours"
            ))
        })?;
        info!(
            userid = reply.userid,
            expires_in = reply.expires_in,
            "Refreshed the access token and stored the rotated refresh token."
        );
        tokens.userid = Some(reply.userid);
        tokens.access = Some(Secret::new(reply.access_token));
        tokens.refresh = Secret::new(reply.refresh_token);
        tokens.expires_at = now_epoch() + reply.expires_in;
        Ok(())
    }

    /// A data call with the user's token: refreshes once on a refused token, then retries once.
    pub async fn call(
        &self,
        client: &ApiClient,
        path: &str,
        params: &[(&str, String)],
    ) -> std::result::Result<Value, SessionError> {
        let reply = self.call_reply(client, path, params).await?;
        reply
            .into_value()
            .map_err(|m| describe(crate::api::client::unreadable(m)))
    }

    /// As [`Session::call`], with an object body kept as text for a typed parser.
    pub async fn call_reply(
        &self,
        client: &ApiClient,
        path: &str,
        params: &[(&str, String)],
    ) -> std::result::Result<Reply, SessionError> {
        let (mut token, _) = self.access(client).await?;
        // A refused token is refreshed (once per refusal of a token this call refreshed
        // itself; a token another task already replaced is simply swapped), within a bound.
        let (mut own_refreshes, mut attempts) = (0, 0);
        loop {
            match client.request_reply(path, params, Some(&token), Endpoint::Data).await {
                Ok(body) => return Ok(body),
                Err(CallError::Refresh) if own_refreshes < 3 && attempts < 10 => {
                    attempts += 1;
                    let (fresh, mine) = self.refresh_after(client, &token).await?;
                    own_refreshes += usize::from(mine);
                    token = fresh;
                }
                Err(CallError::Refresh) => {
                    return Err(SessionError::Auth(
                        "Withings refused freshly refreshed access tokens; run `tap-withings auth` again".into(),
                    ))
                }
                Err(e) => return Err(describe(e)),
            }
        }
    }
}

fn describe(e: CallError) -> SessionError {
    match e {
        CallError::Failed(ApiFailure {
            kind: FailKind::Unauthorized,
            status,
            message,
        }) => SessionError::Unauthorized { status, message },
        CallError::Failed(ApiFailure {
            kind: FailKind::Auth,
            status,
            message,
        }) => SessionError::Auth(format!(
            "authentication failed (status {status}: {message})"
        )),
        CallError::Failed(f) => {
            SessionError::Failed(format!("Withings status {}: {}", f.status, f.message))
        }
        CallError::Refresh => SessionError::Auth("access token refused".into()),
        CallError::Cancelled => SessionError::Cancelled,
        CallError::Exhausted { reason, attempts } => {
            SessionError::Failed(format!("gave up after {attempts} attempts: {reason}"))
        }
    }
}

fn tokens_from_store(u: &StoredUser) -> Tokens {
    Tokens {
        userid: Some(u.userid),
        access: (!u.access_token.is_empty()).then(|| Secret::new(u.access_token.clone())),
        expires_at: u.expires_at,
        refresh: Secret::new(u.refresh_token.clone()),
        seeded_from: u.seeded_from.clone(),
    }
}

fn choose_tokens(file: &TokenFile, configured: Option<&Secret>) -> Option<Tokens> {
    let from_store = tokens_from_store;
    match configured {
        Some(rt) => {
            let fp = fingerprint(rt.expose());
            match file
                .users
                .values()
                .find(|u| u.seeded_from == fp || u.refresh_token == rt.expose())
            {
                Some(u) => Some(from_store(u)),
                None => Some(Tokens {
                    userid: None,
                    access: None,
                    expires_at: 0,
                    refresh: rt.clone(),
                    seeded_from: fp,
                }),
            }
        }
        None if file.users.len() == 1 => file.users.values().next().map(from_store),
        None => None,
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

/// Reads a token reply body; `userid` may be a number or a string.
pub fn parse_token_reply(body: &Value) -> std::result::Result<TokenReply, String> {
    let text = |k: &str| {
        body.get(k)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    };
    let userid = match body.get("userid") {
        Some(Value::Number(n)) => n.as_i64(),
        Some(Value::String(s)) => s.trim().parse().ok(),
        _ => None,
    }
    .ok_or("the token reply has no userid")?;
    Ok(TokenReply {
        userid,
        access_token: text("access_token").ok_or("the token reply has no access_token")?,
        refresh_token: text("refresh_token").ok_or("the token reply has no refresh_token")?,
        // Bounded to ten years so expiry arithmetic cannot overflow.
        expires_in: body
            .get("expires_in")
            .and_then(Value::as_i64)
            .unwrap_or(10_800)
            .clamp(0, 10 * 366 * 86_400),
        scope: text("scope").unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn stored(userid: i64, rt: &str, seeded_from: &str) -> StoredUser {
        StoredUser {
            userid,
            access_token: "a".into(),
            refresh_token: rt.into(),
            expires_at: 0,
            scope: String::new(),
            updated_at: 0,
            seeded_from: seeded_from.into(),
        }
    }

    fn file(users: &[StoredUser]) -> TokenFile {
        TokenFile {
            version: 1,
            users: users
                .iter()
                .map(|u| (u.userid.to_string(), u.clone()))
                .collect(),
        }
    }

    #[test]
    fn the_stored_rotation_of_the_configured_token_wins() {
        let f = file(&[
            stored(1, "rotated", &fingerprint("configured")),
            stored(2, "other", "x"),
        ]);
        let t = choose_tokens(&f, Some(&Secret::new("configured"))).unwrap();
        assert_eq!(t.refresh.expose(), "rotated");
        assert_eq!(t.userid, Some(1));
    }

    #[test]
    fn a_new_configured_token_wins_over_an_older_chain() {
        let f = file(&[stored(1, "rotated", &fingerprint("old-consent"))]);
        let t = choose_tokens(&f, Some(&Secret::new("new-consent"))).unwrap();
        assert_eq!(t.refresh.expose(), "new-consent");
        assert_eq!(t.userid, None);
        assert_eq!(t.seeded_from, fingerprint("new-consent"));
    }

    #[test]
    fn without_a_configured_token_the_only_stored_user_is_used() {
        assert!(choose_tokens(&file(&[stored(1, "r", "")]), None).is_some());
        assert!(choose_tokens(&file(&[]), None).is_none());
        assert!(choose_tokens(&file(&[stored(1, "r", ""), stored(2, "s", "")]), None).is_none());
    }

    #[test]
    fn token_replies_accept_string_userids() {
        let r = parse_token_reply(&json!({"userid": "27718374", "access_token": "a", "refresh_token": "r", "expires_in": 10800, "scope": "user.info"}))
            .unwrap();
        assert_eq!(r.userid, 27718374);
        assert!(parse_token_reply(&json!({"userid": 1, "access_token": "a"})).is_err());
    }
}
