//! Simulator configuration: data shape, OAuth client, page sizes and faults.

use serde::{Deserialize, Serialize};

/// Groups per getmeas page by default.
pub const PAGE_GETMEAS: usize = 4096;

/// Groups per getmeas page of [`SimConfig::small_pages`]: many pages from little data.
pub const SMALL_PAGE_GETMEAS: usize = 200;

/// Everything `Sim::start` needs. `SimConfig::default()` gives one user, 30 days of data ending
/// today 00:00 UTC, seed 42, the real page sizes and no faults.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// PRNG seed: the same seed (and the same other settings) gives the same data.
    pub seed: u64,
    /// Number of users (ids 1000001, 1000002, ...).
    pub users: u32,
    /// Days of data before `anchor`.
    pub days: u32,
    /// Approximate number of getmeas measures per user (default: about 16 per day).
    pub measures_per_user: Option<u64>,
    /// End of the generated data (epoch seconds); default today 00:00 UTC.
    pub anchor: Option<i64>,
    /// Interface to bind; must be a loopback address.
    pub host: String,
    /// Port to bind (0: any free port).
    pub port: u16,
    pub client_id: String,
    pub client_secret: String,
    /// Lifetime of access tokens (`expires_in`).
    pub access_token_ttl_secs: u64,
    /// Lifetime of authorization codes.
    pub code_ttl_secs: u64,
    /// Groups per getmeas page: 4096 by default (the chunk the seed documents; the real API
    /// documents none), [`SMALL_PAGE_GETMEAS`] in [`SimConfig::small_pages`].
    pub page_getmeas: usize,
    pub page_getactivity: usize,
    pub page_getworkouts: usize,
    pub page_getsummary: usize,
    pub page_heart_list: usize,
    pub page_stetho_list: usize,
    /// Intraday samples per day (irregular spacing).
    pub intraday_samples_per_day: u32,
    /// Data profiles handed to users in turn (user i gets `profiles[i % len]`); empty: every
    /// user is `Profile::Full`.
    pub profiles: Vec<Profile>,
    pub faults: Faults,
}

/// Which devices a user owns, i.e. which data exists (`--profiles`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Profile {
    /// Everything (the default data).
    #[default]
    Full,
    /// Only scales: getmeas without blood pressure, the scales in getdevice; no activity,
    /// intraday, workouts, sleep, ECG or stethoscope data.
    ScaleOnly,
    /// A watch worn every other local day: activity rows, intraday samples, workouts, nights
    /// and watch ECGs only on local days with an even day number (days since 0001-01-01).
    EveryOtherDay,
    /// One local day in five (day number divisible by 5) has its activity row but no intraday
    /// samples (steps counted by the phone or entered by hand).
    ActivityNoIntraday,
}

impl Profile {
    pub const ALL: [Profile; 4] = [
        Profile::Full,
        Profile::ScaleOnly,
        Profile::EveryOtherDay,
        Profile::ActivityNoIntraday,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Profile::Full => "full",
            Profile::ScaleOnly => "scale_only",
            Profile::EveryOtherDay => "every_other_day",
            Profile::ActivityNoIntraday => "activity_no_intraday",
        }
    }
}

impl std::str::FromStr for Profile {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Profile::ALL
            .into_iter()
            .find(|p| p.name() == s.trim())
            .ok_or_else(|| {
                let names: Vec<&str> = Profile::ALL.iter().map(|p| p.name()).collect();
                format!("unknown profile {s:?} (known: {})", names.join(", "))
            })
    }
}

impl SimConfig {
    /// The profile of the user with this index (0-based).
    pub fn profile(&self, index: u32) -> Profile {
        if self.profiles.is_empty() {
            Profile::Full
        } else {
            self.profiles[index as usize % self.profiles.len()]
        }
    }
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            seed: 42,
            users: 1,
            days: 30,
            measures_per_user: None,
            anchor: None,
            host: "127.0.0.1".to_string(),
            port: 0,
            client_id: "sim-client-id".to_string(),
            client_secret: "sim-client-secret".to_string(),
            access_token_ttl_secs: 10_800,
            code_ttl_secs: 30,
            page_getmeas: PAGE_GETMEAS,
            page_getactivity: 200,
            page_getworkouts: 300,
            page_getsummary: 300,
            page_heart_list: 200,
            page_stetho_list: 100,
            intraday_samples_per_day: 96,
            profiles: Vec::new(),
            faults: Faults::default(),
        }
    }
}

impl SimConfig {
    /// The defaults with small getmeas pages ([`SMALL_PAGE_GETMEAS`] groups), for tests that
    /// need many pages from little data; the other page sizes are the defaults (already
    /// small).
    pub fn small_pages() -> Self {
        SimConfig {
            page_getmeas: SMALL_PAGE_GETMEAS,
            ..SimConfig::default()
        }
    }
}

/// Fault switches. All off by default except the 10 s repeat guard of the real API.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Faults {
    /// At most N API requests (token endpoint included) in any rolling 60 s, all users together.
    pub rate_limit_per_minute: Option<u32>,
    /// An identical request (path, params, bearer token) within this many seconds gets 601
    /// (0 disables).
    pub repeat_guard_secs: f64,
    /// Full pages say there is no more (`more` false/0, `offset` 0).
    pub lying_more: bool,
    /// Every Nth API request: HTTP 502 with an HTML body.
    pub html_5xx_every: Option<u32>,
    /// Every Nth API request: envelope status 522.
    pub status_522_every: Option<u32>,
    /// Every Nth API request: the JSON body is cut short.
    pub truncated_every: Option<u32>,
    /// Delay before each API reply.
    pub delay_ms: u64,
    /// Access tokens expire (401) after N data calls.
    pub access_token_max_calls: Option<u32>,
    /// userid as a string in token replies, an integer field as `false`, a one-day
    /// `activities` as an object.
    pub shape_quirks: bool,
    /// Extra unknown fields on every object.
    pub unknown_fields: bool,
    /// getactivity rows without `modified` (the shape of a 2021 capture); `lastupdate` still
    /// selects by the stored `modified`.
    pub no_modified: bool,
    /// Some rows lack their key (see `faults::keyless`): getworkouts and getsummary rows
    /// without `id` (as in the API reference's examples), getactivity rows without `date`,
    /// heart list rows without `ecg.signalid`.
    pub keyless_rows: bool,
    /// getintradayactivity and sleep get replies that hold data also carry a copy of their
    /// last sample or segment dated 9 days after the window's end (a reply outside the range
    /// asked for).
    pub rows_outside_window: bool,
    /// How long an old refresh token survives its successor (None: 8 h, as Withings). 0: it
    /// dies as soon as its successor is issued, so a store that lost a rotation holds a dead
    /// token (a strict check of every rotation a client stores).
    pub rotation_grace_secs: Option<f64>,
    /// Every error envelope's `error` text also echoes the request's `client_secret`,
    /// `refresh_token`, `code` and bearer token, then a newline, an ANSI escape and a forged
    /// log line (a hostile or broken server).
    pub echo_secrets_in_errors: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            rate_limit_per_minute: None,
            repeat_guard_secs: 10.0,
            lying_more: false,
            html_5xx_every: None,
            status_522_every: None,
            truncated_every: None,
            delay_ms: 0,
            access_token_max_calls: None,
            shape_quirks: false,
            unknown_fields: false,
            no_modified: false,
            keyless_rows: false,
            rows_outside_window: false,
            rotation_grace_secs: None,
            echo_secrets_in_errors: false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn profiles_parse_by_name_and_go_to_users_in_turn() {
        for p in Profile::ALL {
            assert_eq!(p.name().parse::<Profile>(), Ok(p));
        }
        let err = "watch".parse::<Profile>().unwrap_err();
        assert!(err.contains("unknown profile \"watch\"") && err.contains("scale_only"));
        let cfg = SimConfig {
            profiles: vec![Profile::ScaleOnly, Profile::EveryOtherDay],
            ..SimConfig::default()
        };
        let got: Vec<Profile> = (0..3).map(|i| cfg.profile(i)).collect();
        assert_eq!(
            got,
            [
                Profile::ScaleOnly,
                Profile::EveryOtherDay,
                Profile::ScaleOnly
            ]
        );
        assert_eq!(SimConfig::default().profile(7), Profile::Full);
    }
}
