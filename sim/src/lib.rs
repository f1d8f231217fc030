//! `withings-sim`: a faithful local Withings health-data API with deterministic synthetic
//! data and fault switches, for tap-withings' tests, demo and benchmarks.
//!
//! ```no_run
//! use withings_sim::{Sim, SimConfig};
//! let sim = Sim::start(SimConfig { users: 2, ..SimConfig::default() }).unwrap();
//! println!("{} {}", sim.url(), sim.refresh_token(sim.userids()[0]));
//! ```

pub mod admin;
pub mod api;
pub mod auth;
pub mod clock;
pub mod config;
pub mod data;
pub mod faults;
pub mod prng;
pub mod server;
pub mod state;
pub mod stats;

pub use config::{Faults, Profile, SimConfig};
pub use data::mutate::Mutation;
pub use stats::RequestLog;

use serde_json::Value;
use state::Shared;
use std::sync::Arc;

/// A running simulator. Dropping it shuts the server down.
pub struct Sim {
    shared: Arc<Shared>,
    url: String,
    running: Option<server::Running>,
}

impl Sim {
    /// Generates the data and serves it on its own thread and runtime; returns once listening.
    pub fn start(cfg: SimConfig) -> Result<Sim, String> {
        let host = cfg.host.clone();
        let port = cfg.port;
        let shared = Arc::new(Shared::new(cfg));
        let running = server::spawn(shared.clone(), &host, port)?;
        Ok(Sim {
            shared,
            url: format!("http://{}", running.addr),
            running: Some(running),
        })
    }

    /// API root, e.g. `http://127.0.0.1:PORT` (token endpoint: `{url}/v2/oauth2`).
    pub fn url(&self) -> String {
        self.url.clone()
    }

    pub fn config(&self) -> &SimConfig {
        &self.shared.cfg
    }

    pub fn client_id(&self) -> &str {
        &self.shared.cfg.client_id
    }

    pub fn client_secret(&self) -> &str {
        &self.shared.cfg.client_secret
    }

    /// User ids, ascending.
    pub fn userids(&self) -> Vec<u64> {
        self.shared.userids()
    }

    /// The user's initial refresh token (`sim-refresh-<userid>`).
    pub fn refresh_token(&self, userid: u64) -> String {
        auth::initial_refresh_token(userid)
    }

    /// End of the generated data (epoch seconds).
    pub fn anchor(&self) -> i64 {
        self.shared.anchor()
    }

    /// Start of the generated data: `anchor - days * 86400`.
    pub fn data_start(&self) -> i64 {
        self.anchor() - i64::from(self.shared.cfg.days) * 86_400
    }

    /// The user's IANA timezone.
    pub fn user_timezone(&self, userid: u64) -> Option<String> {
        self.shared.user_timezone(userid)
    }

    /// The user's data profile (`None` for an unknown user).
    pub fn user_profile(&self, userid: u64) -> Option<Profile> {
        self.shared.lock().data.user(userid).map(|u| u.profile)
    }

    /// The complete raw data of a module (`Null` for an unknown module or user).
    pub fn truth(&self, module: &str, userid: u64) -> Value {
        self.shared.truth(module, userid)
    }

    /// Request statistics (same as `GET /_sim/stats`).
    pub fn stats(&self) -> Value {
        self.shared.stats()
    }

    /// Every API request received since the start (or the last `reset_stats`), in order.
    pub fn requests(&self) -> Vec<RequestLog> {
        self.shared.requests()
    }

    /// Adds, modifies, deletes or uploads (late) data; returns the affected keys.
    pub fn mutate(&self, m: Mutation) -> Result<Value, String> {
        self.shared.mutate(&m)
    }

    pub fn faults(&self) -> Faults {
        self.shared.faults()
    }

    /// Switches faults at run time (every-Nth counters restart).
    pub fn set_faults(&self, faults: Faults) {
        self.shared.set_faults(faults);
    }

    /// Clears statistics and the request log.
    pub fn reset_stats(&self) {
        self.shared.reset_stats();
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        if let Some(r) = self.running.take() {
            let _ = r.shutdown.send(());
            let _ = r.thread.join();
        }
    }
}
