//! Deterministic generation of the users and their data from a `SimConfig`.

use super::model::{Dataset, Device, Goals, MeasStore, Source, UserData};
use super::{gen_activity, gen_heart, gen_meas, gen_sleep, profile};
use crate::clock;
use crate::config::{Profile, SimConfig};
use crate::prng::Prng;
use chrono::NaiveDate;
use chrono_tz::Tz;

/// First userid; users are numbered consecutively from it.
pub const FIRST_USERID: u64 = 1_000_001;

/// Timezones handed out to users in turn (none is UTC).
pub const TIMEZONES: &[(&str, Tz)] = &[
    ("Europe/Paris", chrono_tz::Europe::Paris),
    ("America/New_York", chrono_tz::America::New_York),
    ("Asia/Tokyo", chrono_tz::Asia::Tokyo),
    ("Australia/Sydney", chrono_tz::Australia::Sydney),
    ("America/Los_Angeles", chrono_tz::America::Los_Angeles),
    ("Asia/Kolkata", chrono_tz::Asia::Kolkata),
    ("America/Sao_Paulo", chrono_tz::America::Sao_Paulo),
    ("Europe/Berlin", chrono_tz::Europe::Berlin),
];

/// Indexes into `UserData::sources`.
pub mod src {
    pub const BODY_CARDIO: u8 = 0;
    pub const BODY_SCAN: u8 = 1;
    pub const BPM_CONNECT: u8 = 2;
    pub const SCANWATCH: u8 = 3;
    pub const AURA: u8 = 4;
    pub const BPM_CORE: u8 = 5;
    pub const BEAMO: u8 = 6;
    pub const GOOGLE_FIT: u8 = 7;
    pub const HEALTHKIT: u8 = 8;
}

/// What every per-module generator needs to know about the time range.
#[derive(Debug, Clone, Copy)]
pub struct Span {
    /// First second of data (`anchor - days * 86400`).
    pub start: i64,
    /// Last second of data.
    pub anchor: i64,
    pub tz: Tz,
}

impl Span {
    /// Local calendar dates touched by the data, in order.
    pub fn local_dates(&self) -> Vec<NaiveDate> {
        let first = clock::local_date(self.start, self.tz);
        let last = clock::local_date(self.anchor - 1, self.tz);
        first.iter_days().take_while(|d| *d <= last).collect()
    }

    /// Clamps a time into the data range.
    pub fn clamp(&self, t: i64) -> i64 {
        t.clamp(self.start, self.anchor)
    }
}

/// The anchor a config resolves to.
pub fn resolve_anchor(cfg: &SimConfig) -> i64 {
    cfg.anchor.unwrap_or_else(clock::today_midnight_utc)
}

/// Builds the whole dataset.
pub fn generate(cfg: &SimConfig) -> Dataset {
    let anchor = resolve_anchor(cfg);
    let start = anchor - i64::from(cfg.days) * 86_400;
    let users = (0..cfg.users)
        .map(|i| generate_user(cfg, i, start, anchor))
        .collect();
    Dataset {
        anchor,
        days: cfg.days,
        users,
    }
}

fn generate_user(cfg: &SimConfig, index: u32, start: i64, anchor: i64) -> UserData {
    let (tz_name, tz) = TIMEZONES[index as usize % TIMEZONES.len()];
    let seed = Prng::derive(cfg.seed, "user", u64::from(index)).next_u64();
    let mut prng = Prng::derive(seed, "sources", 0);
    let sources = sources(&mut prng);
    let devices = devices(&sources, start, anchor, &mut prng);
    let mut user = UserData {
        userid: FIRST_USERID + u64::from(index),
        index,
        tz,
        tz_name,
        sources,
        devices,
        meas: MeasStore::default(),
        activities: Vec::new(),
        intraday: Vec::new(),
        workouts: Vec::new(),
        nights: Vec::new(),
        ecgs: Vec::new(),
        stethos: Vec::new(),
        goals: goals(index),
        profile: Profile::Full,
        next_id: 3_000_000_000 + i64::from(index) * 1_000_000_000,
        seed,
    };
    let span = Span { start, anchor, tz };
    let target = cfg.measures_per_user.unwrap_or(u64::from(cfg.days) * 16);
    gen_meas::generate(&mut user, span, target);
    gen_activity::generate(&mut user, span, cfg.intraday_samples_per_day);
    gen_sleep::generate(&mut user, span);
    gen_heart::generate(&mut user, span);
    user.profile = cfg.profile(index);
    let p = user.profile;
    profile::apply(&mut user, p);
    user.reindex();
    user
}

fn source(
    kind: &'static str,
    model: &'static str,
    model_id: i64,
    tracker: bool,
    prng: &mut Prng,
) -> Source {
    Source {
        kind,
        model: Some(model),
        model_id,
        deviceid: Some(prng.hex40()),
        brand: 1,
        is_tracker: tracker,
    }
}

fn sources(prng: &mut Prng) -> Vec<Source> {
    vec![
        source("Scale", "Body Cardio", 6, false, prng),
        source("Scale", "Body Scan", 10, false, prng),
        source("Blood Pressure Monitor", "BPM Connect", 45, false, prng),
        source("Activity Tracker", "ScanWatch", 93, true, prng),
        source("Sleep Monitor", "Aura Sensor V2", 63, false, prng),
        source("Blood Pressure Monitor", "BPM Core", 44, false, prng),
        source("Smart Connected Thermometer", "BeamO", 71, false, prng),
        Source {
            kind: "Activity Tracker",
            model: Some("GoogleFit tracker"),
            model_id: 1055,
            deviceid: None,
            brand: 18,
            is_tracker: false,
        },
        Source {
            kind: "HealthKit Apple",
            model: None,
            model_id: 1057,
            deviceid: None,
            brand: 18,
            is_tracker: false,
        },
    ]
}

fn devices(sources: &[Source], start: i64, anchor: i64, prng: &mut Prng) -> Vec<Device> {
    const BATTERIES: [&str; 7] = ["high", "medium", "unknown", "high", "low", "high", "medium"];
    sources
        .iter()
        .enumerate()
        .filter_map(|(i, s)| {
            let deviceid = s.deviceid.clone()?;
            let first = start - prng.range(86_400, 400 * 86_400);
            let last = anchor - prng.range(600, 86_400);
            Some(Device {
                kind: s.kind,
                battery: BATTERIES[i % BATTERIES.len()],
                model: s.model.unwrap_or(""),
                model_id: s.model_id,
                deviceid,
                // Some devices have never reported a session date (observed in real replies).
                first_session_date: if i == 2 { None } else { Some(first) },
                last_session_date: if i == 6 { None } else { Some(last) },
            })
        })
        .collect()
}

fn goals(index: u32) -> Option<Goals> {
    match index % 3 {
        1 => None,
        2 => Some(Goals {
            steps: None,
            sleep: None,
            weight: Some((68_000, -3)),
        }),
        _ => Some(Goals {
            steps: Some(10_000),
            sleep: Some(28_800),
            weight: Some((70_500, -3)),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn users_differ_in_timezone_and_ids() {
        let cfg = SimConfig {
            users: 3,
            days: 5,
            anchor: Some(1_700_000_000 - 1_700_000_000 % 86_400),
            ..SimConfig::default()
        };
        let d = generate(&cfg);
        let ids: Vec<u64> = d.users.iter().map(|u| u.userid).collect();
        assert_eq!(ids, vec![1_000_001, 1_000_002, 1_000_003]);
        assert_ne!(d.users[0].tz_name, d.users[1].tz_name);
        assert!(d.users[1].goals.is_none());
    }
}
