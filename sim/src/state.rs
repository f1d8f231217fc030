//! The simulator's shared state and the operations behind both the library handle and the
//! admin interface.

use crate::auth::AuthStore;
use crate::clock;
use crate::config::{Faults, SimConfig};
use crate::data::generate;
use crate::data::model::Dataset;
use crate::data::mutate::{self, Mutation};
use crate::data::truth;
use crate::faults::FaultState;
use crate::stats::{RequestLog, Stats};
use serde_json::{json, Value};
use std::sync::{Mutex, MutexGuard};

/// Mutable state, behind one mutex.
#[derive(Debug)]
pub struct State {
    pub data: Dataset,
    pub auth: AuthStore,
    pub faults: Faults,
    pub fault_state: FaultState,
    pub stats: Stats,
    /// Sequence number of the last API request.
    pub seq: u64,
}

/// Configuration plus state; shared by the server tasks and the `Sim` handle.
#[derive(Debug)]
pub struct Shared {
    pub cfg: SimConfig,
    state: Mutex<State>,
}

impl Shared {
    /// Generates the data and the initial tokens.
    pub fn new(cfg: SimConfig) -> Self {
        let data = generate::generate(&cfg);
        let userids: Vec<u64> = data.users.iter().map(|u| u.userid).collect();
        let auth = AuthStore::new(
            cfg.seed,
            &userids,
            cfg.access_token_ttl_secs,
            cfg.code_ttl_secs,
            clock::now(),
        );
        let state = State {
            data,
            auth,
            faults: cfg.faults.clone(),
            fault_state: FaultState::default(),
            stats: Stats::default(),
            seq: 0,
        };
        Shared {
            cfg,
            state: Mutex::new(state),
        }
    }

    /// Locks the state (a panic in another holder does not make it unusable).
    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn anchor(&self) -> i64 {
        self.lock().data.anchor
    }

    pub fn userids(&self) -> Vec<u64> {
        self.lock().data.users.iter().map(|u| u.userid).collect()
    }

    pub fn user_timezone(&self, userid: u64) -> Option<String> {
        self.lock().data.user(userid).map(|u| u.tz_name.to_string())
    }

    /// `[{userid, timezone, refresh_token}]` (the initial refresh tokens).
    pub fn users_json(&self) -> Value {
        let st = self.lock();
        Value::Array(
            st.data
                .users
                .iter()
                .map(|u| {
                    json!({
                        "userid": u.userid,
                        "timezone": u.tz_name,
                        "refresh_token": st.auth.initial.get(&u.userid),
                    })
                })
                .collect(),
        )
    }

    /// The complete data of a module; `Null` for an unknown module or user.
    pub fn truth(&self, module: &str, userid: u64) -> Value {
        let st = self.lock();
        st.data
            .user(userid)
            .and_then(|u| truth::truth(module, u))
            .unwrap_or(Value::Null)
    }

    pub fn stats(&self) -> Value {
        self.lock().stats.to_json()
    }

    pub fn requests(&self) -> Vec<RequestLog> {
        self.lock().stats.log.clone()
    }

    pub fn reset_stats(&self) {
        self.lock().stats = Stats::default();
    }

    pub fn mutate(&self, m: &Mutation) -> Result<Value, String> {
        mutate::apply(&mut self.lock().data, m, clock::now_secs())
    }

    pub fn faults(&self) -> Faults {
        self.lock().faults.clone()
    }

    /// Switches faults; every-Nth counters restart from the next request.
    pub fn set_faults(&self, faults: Faults) {
        let mut st = self.lock();
        st.faults = faults;
        st.fault_state.restart_counter();
    }
}
