//! One user's session: starts from the chain the roster chose, refreshes single-flight before
//! expiry or after a refused access token, and writes every token reply to the store before
//! the new access token is used (Withings kills the old refresh token as soon as the new
//! access token is used).
//!
//! A refused access token costs one refresh per call, then the call is retried once. The
//! first call with a newly issued access token is its trial: the user's other calls wait for
//! it, and a new token Withings refuses at once ends the user's sync. So does a refresh token
//! Withings refuses: the session remembers either failure and answers every later call with
//! it, without asking Withings again.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::{Mutex, Notify};
use tracing::{info, warn};

use super::refresh::{self, debug_pause, App};
use super::roster::{self, Start};
use super::token_store::{self, StoredUser};
use crate::api::client::{ApiClient, Body, CallError, ReadReply, Whole};
use crate::api::envelope::{ApiFailure, Endpoint, FailKind, Reply};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::secret::Secret;

/// Serialises read-modify-write cycles of token stores within the process.
static STORE_LOCK: Mutex<()> = Mutex::const_new(());

/// Refresh this long before the access token expires.
pub const EXPIRY_MARGIN: i64 = 300;

/// A call swaps to a token another task refreshed at most this many times (no refresh is
/// spent on a swap; the bound only stops a call that is always late to a short-lived token).
const MAX_SWAPS: usize = 32;

/// The message of a newly issued access token that Withings refuses.
const NEW_TOKEN_REFUSED: &str = "Withings refused the access token it had just issued; run `tap-withings auth` again to re-link the account";

#[derive(Debug, Clone)]
struct Tokens {
    userid: Option<i64>,
    access: Option<Secret>,
    expires_at: i64,
    refresh: Secret,
    seeded_from: String,
    /// Another chain of this user is the run's: this one is neither refreshed nor used.
    superseded: bool,
}

/// Whether the current access token has been accepted yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Trial {
    /// Accepted, or loaded from the store (a refusal then means: refresh it).
    Proven,
    /// Issued by a refresh of this run and not tried yet: the next call tries it.
    Pending,
    /// A call is trying it; the others wait for the verdict.
    Running,
}

#[derive(Debug)]
struct Gate {
    /// Refreshes so far in this run.
    generation: u64,
    trial: Trial,
    /// A failure no retry can fix: every later call gets it at once.
    failed: Option<String>,
}

/// A data call's verdict on a token it tried.
enum Verdict {
    Accepted,
    Refused,
    Undecided,
}

/// Which session of the run owns a user (the first to write its tokens).
#[derive(Debug, Clone)]
struct Claim {
    index: usize,
    store: PathBuf,
}

/// What the sessions of one run share.
#[derive(Debug, Default)]
struct RunShared {
    claims: std::sync::Mutex<BTreeMap<i64, Claim>>,
    /// The `TAP_WITHINGS_DEBUG_PAUSE` point, if any (see [`super::refresh::DEBUG_PAUSE_VAR`]).
    pause: Option<String>,
}

/// A user's authenticated session.
pub struct Session {
    client_id: String,
    client_secret: Secret,
    store: PathBuf,
    tokens: Mutex<Tokens>,
    gate: std::sync::Mutex<Gate>,
    /// Woken when a trial ends.
    settled: Notify,
    /// Where this user comes from, for messages before its userid is known.
    label: String,
    index: usize,
    run: Arc<RunShared>,
}

/// The sessions of a run and the configured users that cannot be opened.
pub struct Opened {
    pub sessions: Vec<Session>,
    pub failures: Vec<(String, Error)>,
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

/// A token handed to a call.
struct Checkout {
    access: Secret,
    generation: u64,
    /// This call is the token's trial.
    trial: bool,
    /// This checkout refreshed the token.
    refreshed: bool,
}

/// Ends a trial as undecided when the call is dropped before its verdict.
struct TrialGuard<'a> {
    session: &'a Session,
    generation: u64,
    done: bool,
}

impl TrialGuard<'_> {
    fn settle(mut self, verdict: Verdict) {
        self.done = true;
        self.session.settle(self.generation, verdict);
    }
}

impl Drop for TrialGuard<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.session.settle(self.generation, Verdict::Undecided);
        }
    }
}

/// The run's wall time in epoch seconds (the client's clock, virtual in tests).
fn now_epoch(client: &ApiClient) -> i64 {
    client.clock().now().timestamp()
}

fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // Plain flags: a panic while holding the lock cannot leave them inconsistent.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Session {
    /// Every user of the run (see [`roster::plan`]): the sessions, seeds first, and the
    /// configured users that cannot be opened (an empty or unreadable token store), which the
    /// caller reports while the others go on. `pause` is the debug pause point, if any.
    pub fn open_all(cfg: &Config, pause: Option<String>) -> Result<Opened> {
        let plan = roster::plan(cfg, token_store::load);
        let run = Arc::new(RunShared {
            pause,
            ..RunShared::default()
        });
        let sessions: Vec<Session> = plan
            .users
            .into_iter()
            .enumerate()
            .map(|(index, p)| {
                let tokens = match p.start {
                    Start::Stored(u) => tokens_from_store(&u),
                    Start::Seed {
                        refresh,
                        fingerprint,
                    } => Tokens {
                        userid: None,
                        access: None,
                        expires_at: 0,
                        refresh,
                        seeded_from: fingerprint,
                        superseded: false,
                    },
                };
                Session {
                    client_id: cfg.client_id.clone(),
                    client_secret: cfg.client_secret.clone(),
                    store: p.store,
                    tokens: Mutex::new(tokens),
                    gate: std::sync::Mutex::new(Gate {
                        generation: 0,
                        trial: Trial::Proven,
                        failed: None,
                    }),
                    settled: Notify::new(),
                    label: p.label,
                    index,
                    run: Arc::clone(&run),
                }
            })
            .collect();
        if sessions.is_empty() && plan.failures.is_empty() {
            return Err(Error::Auth(format!(
                "no user to sync: set `refresh_token` (or `users`), or run `tap-withings auth` (token store {} is empty)",
                cfg.token_store.display()
            )));
        }
        Ok(Opened {
            sessions,
            failures: plan.failures,
        })
    }

    /// Names the user in messages: `user N` once known, else where its token came from.
    pub async fn describe(&self) -> String {
        match self.userid().await {
            Some(id) => format!("user {id}"),
            None => format!("the user of {}", self.label),
        }
    }

    /// The user's id, once known (from the store or the first token reply).
    pub async fn userid(&self) -> Option<i64> {
        self.tokens.lock().await.userid
    }

    fn gate(&self) -> std::sync::MutexGuard<'_, Gate> {
        lock(&self.gate)
    }

    fn failed(&self) -> Option<SessionError> {
        self.gate().failed.clone().map(SessionError::Auth)
    }

    /// Remembers a failure no retry can fix and wakes the calls waiting for a trial.
    fn fail_for_good(&self, message: &str) {
        self.gate()
            .failed
            .get_or_insert_with(|| message.to_string());
        self.settled.notify_waiters();
    }

    /// The user's id, refreshing first when there is no usable access token (a configured
    /// token's user is known only from its reply). A configured token whose user another
    /// session of the run already covers is not stored: its id is returned, and the caller
    /// skips the user.
    pub async fn identify(&self, client: &ApiClient) -> std::result::Result<i64, SessionError> {
        let mut tokens = self.tokens.lock().await;
        if let Some(e) = self.failed() {
            return Err(e);
        }
        if !tokens.superseded && !usable(&tokens, now_epoch(client)) {
            self.refresh_locked(client, &mut tokens).await?;
        }
        tokens
            .userid
            .ok_or_else(|| SessionError::Failed("the token reply had no userid".into()))
    }

    /// A token for a call: refreshed first when expiring, or when `refused` is still the
    /// current token (single flight: a token another task already replaced is swapped). A
    /// refused token is refreshed only when `may_refresh`. A token on trial elsewhere is
    /// waited for.
    async fn checkout(
        &self,
        client: &ApiClient,
        refused: Option<&Secret>,
        may_refresh: bool,
    ) -> std::result::Result<Checkout, SessionError> {
        loop {
            let settled = self.settled.notified();
            tokio::pin!(settled);
            settled.as_mut().enable();
            // Checked under the lock: a call waiting for it may find the user failed since.
            let mut tokens = self.tokens.lock().await;
            if let Some(e) = self.failed() {
                return Err(e);
            }
            if tokens.superseded {
                return Err(SessionError::Failed(
                    "another token chain of this user is the one synced".into(),
                ));
            }
            let is_refused = refused.is_some_and(|r| tokens.access.as_ref() == Some(r));
            let mut refreshed = false;
            if is_refused && !may_refresh {
                return Err(SessionError::Auth(
                    "Withings refused the access token again right after a refresh; run `tap-withings auth` again to re-link the account".into(),
                ));
            }
            if is_refused || !usable(&tokens, now_epoch(client)) {
                self.refresh_locked(client, &mut tokens).await?;
                refreshed = true;
            }
            let Some(access) = tokens.access.clone().filter(|_| !tokens.superseded) else {
                return Err(SessionError::Failed(
                    "another token chain of this user is the one synced".into(),
                ));
            };
            // None: another call is trying this token; wait for its verdict.
            let decided = {
                let mut gate = self.gate();
                if let Some(m) = &gate.failed {
                    return Err(SessionError::Auth(m.clone()));
                }
                let trial = match gate.trial {
                    Trial::Proven => Some(false),
                    Trial::Pending => {
                        gate.trial = Trial::Running;
                        Some(true)
                    }
                    Trial::Running => None,
                };
                trial.map(|trial| (trial, gate.generation))
            };
            let Some((trial, generation)) = decided else {
                drop(tokens);
                settled.await;
                continue;
            };
            return Ok(Checkout {
                access,
                generation,
                trial,
                refreshed,
            });
        }
    }

    /// Records a trial's verdict on generation `generation` and wakes the waiting calls.
    fn settle(&self, generation: u64, verdict: Verdict) {
        {
            let mut gate = self.gate();
            if gate.generation == generation && gate.trial == Trial::Running {
                gate.trial = match verdict {
                    Verdict::Accepted => Trial::Proven,
                    Verdict::Undecided => Trial::Pending,
                    Verdict::Refused => {
                        gate.failed
                            .get_or_insert_with(|| NEW_TOKEN_REFUSED.to_string());
                        Trial::Proven
                    }
                };
            }
        }
        self.settled.notify_waiters();
    }

    /// Whether this session owns `userid` in this run (claiming it when nobody does).
    fn claim(&self, userid: i64) -> Option<Claim> {
        let mut claims = lock(&self.run.claims);
        let claim = claims.entry(userid).or_insert_with(|| Claim {
            index: self.index,
            store: self.store.clone(),
        });
        (claim.index != self.index).then(|| claim.clone())
    }

    async fn refresh_locked(
        &self,
        client: &ApiClient,
        tokens: &mut Tokens,
    ) -> std::result::Result<(), SessionError> {
        // A stored chain of a user another chain of this run covers is left alone.
        if let Some(id) = tokens.userid {
            if self.claim(id).is_some() {
                tokens.superseded = true;
                return Ok(());
            }
        }
        // One process at a time rotates a store's tokens: held from re-reading the store,
        // across the token call, through the write of the new store.
        let store_lock = token_store::lock(&self.store)
            .await
            .map_err(|e| SessionError::Failed(e.to_string()))?;
        // Another process may have rotated this chain since it was read: its refresh token is
        // then dead, the stored one is the chain's.
        if let Ok(file) = token_store::load(&self.store) {
            if let Some(u) = token_store::rotated_elsewhere(
                &file,
                tokens.userid,
                &tokens.seeded_from,
                tokens.refresh.expose(),
            ) {
                info!(
                    userid = u.userid,
                    "Another process rotated this user's refresh token; using the stored one."
                );
                tokens.refresh = Secret::new(u.refresh_token.clone());
                if tokens.userid.is_none_or(|id| id == u.userid)
                    && u.expires_at > now_epoch(client) + 300
                {
                    tokens.userid = Some(u.userid);
                    tokens.access = Some(Secret::new(u.access_token));
                    tokens.expires_at = u.expires_at;
                    let mut gate = self.gate();
                    gate.generation += 1;
                    gate.trial = Trial::Pending;
                    return Ok(());
                }
            }
        }
        let app = App {
            client_id: &self.client_id,
            client_secret: &self.client_secret,
        };
        let reply =
            match refresh::rotate(client, app, &tokens.refresh, tokens.userid, &self.store).await {
                Ok(reply) => reply,
                Err(e) => {
                    let e = session_error(e);
                    if let SessionError::Auth(m) = &e {
                        self.fail_for_good(m);
                    }
                    return Err(e);
                }
            };
        if tokens.userid.is_none() {
            if let Some(owner) = self.claim(reply.userid) {
                // Another configured token of this user came first: its chain is the run's.
                // This reply is not stored (its access token is never used, so this token
                // stays valid), and the token is remembered as superseded.
                drop(store_lock);
                self.supersede(&owner.store, reply.userid, &tokens.seeded_from)
                    .await;
                tokens.userid = Some(reply.userid);
                tokens.access = None;
                tokens.superseded = true;
                return Ok(());
            }
        }
        debug_pause(self.run.pause.as_deref(), "token_reply").await;
        // The rotated refresh token must be on disk before the new access token is used.
        // Users of one run may share a store: one writer at a time.
        let stored = {
            let _guard = STORE_LOCK.lock().await;
            refresh::store_reply(
                &self.store,
                &reply,
                tokens.seeded_from.clone(),
                now_epoch(client),
            )
            .map_err(|e| SessionError::Failed(e.to_string()))?
        };
        drop(store_lock);
        debug_pause(self.run.pause.as_deref(), "store_written").await;
        info!(
            userid = reply.userid,
            expires_in = reply.expires_in,
            "Refreshed the access token and stored the rotated refresh token."
        );
        tokens.userid = Some(reply.userid);
        tokens.access = Some(Secret::new(reply.access_token));
        tokens.refresh = Secret::new(reply.refresh_token);
        tokens.expires_at = stored.expires_at;
        let mut gate = self.gate();
        gate.generation += 1;
        gate.trial = Trial::Pending;
        Ok(())
    }

    /// Notes in `store` that the configured token of fingerprint `fp` is older than
    /// `userid`'s stored chain, so later runs use the stored chain instead of refreshing it.
    async fn supersede(&self, store: &Path, userid: i64, fp: &str) {
        // The order of the two locks is the same everywhere: the store's, then the process's.
        let _store_lock = match token_store::lock(store).await {
            Ok(lock) => lock,
            Err(e) => {
                warn!(userid, error = %e, "Cannot note the superseded refresh token.");
                return;
            }
        };
        let _guard = STORE_LOCK.lock().await;
        let result = token_store::load(store).and_then(|mut file| {
            if file.supersede(userid, fp) {
                token_store::save(store, &file)?;
            }
            Ok(())
        });
        if let Err(e) = result {
            warn!(userid, error = %e, "Cannot note the superseded refresh token.");
        }
    }

    /// A data call with the user's token: a refused token is refreshed once (or swapped for
    /// the one another task refreshed), then the call is retried once.
    pub async fn call(
        &self,
        client: &ApiClient,
        path: &str,
        params: &[(&str, String)],
    ) -> std::result::Result<Value, SessionError> {
        let no_reader = Whole::new(|_: &[u8]| None::<std::convert::Infallible>);
        match self.call_read(client, path, params, no_reader).await? {
            Body::Typed(never) => match never {},
            Body::Reply(reply) => Self::reply_value(reply),
        }
    }

    /// A reply's body as a JSON value, failing as [`Session::call`] does.
    pub fn reply_value(reply: Reply) -> std::result::Result<Value, SessionError> {
        reply
            .into_value()
            .map_err(|m| describe(crate::api::client::unreadable(m)))
    }

    /// As [`Session::call`], reading the reply with `read` first (see
    /// [`ApiClient::request_read`]); a reply it does not read is kept as a [`Reply`] (an
    /// object body as text, for a typed parser).
    pub async fn call_read<R: ReadReply>(
        &self,
        client: &ApiClient,
        path: &str,
        params: &[(&str, String)],
        mut read: R,
    ) -> std::result::Result<Body<R::Out>, SessionError> {
        let mut token = self.checkout(client, None, true).await?;
        let mut own_refresh = token.refreshed;
        let mut swaps = 0;
        loop {
            let guard = token.trial.then_some(TrialGuard {
                session: self,
                generation: token.generation,
                done: false,
            });
            let result = client
                .request_read(path, params, Some(&token.access), Endpoint::Data, &mut read)
                .await;
            if let Some(guard) = guard {
                guard.settle(match &result {
                    Ok(_) => Verdict::Accepted,
                    Err(CallError::Refresh) => Verdict::Refused,
                    Err(_) => Verdict::Undecided,
                });
            }
            match result {
                Ok(body) => return Ok(body),
                Err(CallError::Refresh) if token.trial => {
                    return Err(SessionError::Auth(NEW_TOKEN_REFUSED.into()))
                }
                Err(CallError::Refresh) if swaps < MAX_SWAPS => {
                    let next = self.checkout(client, Some(&token.access), !own_refresh).await?;
                    own_refresh |= next.refreshed;
                    swaps += usize::from(!next.refreshed);
                    token = next;
                }
                Err(CallError::Refresh) => {
                    return Err(SessionError::Auth(
                        "Withings kept refusing the access tokens other calls had just used; run `tap-withings auth` again to re-link the account".into(),
                    ))
                }
                Err(e) => return Err(describe(e)),
            }
        }
    }
}

/// An access token that can be used now (not expiring within [`EXPIRY_MARGIN`]).
fn usable(tokens: &Tokens, now: i64) -> bool {
    tokens.access.is_some() && tokens.userid.is_some() && tokens.expires_at - EXPIRY_MARGIN > now
}

/// A failed token refresh (see [`refresh::rotate`]) as a session failure: a refused token
/// means the user must link the account again.
fn session_error(e: Error) -> SessionError {
    match e {
        Error::Auth(m) => SessionError::Auth(m),
        Error::Interrupted => SessionError::Cancelled,
        other => SessionError::Failed(other.to_string()),
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
        superseded: false,
    }
}
