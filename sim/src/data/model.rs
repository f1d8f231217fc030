//! Typed storage of one user's data, one collection per API module.

use crate::config::Profile;
use chrono::NaiveDate;
use chrono_tz::Tz;
use serde_json::Value;

/// A data source (device or external app) that items refer to by index.
#[derive(Debug, Clone)]
pub struct Source {
    /// `type` string of getdevice.
    pub kind: &'static str,
    /// Model name (`None` for external sources in modules that send null).
    pub model: Option<&'static str>,
    pub model_id: i64,
    /// `None` for external sources (Google Fit, HealthKit).
    pub deviceid: Option<String>,
    /// 1 = Withings, 18 = external.
    pub brand: i64,
    pub is_tracker: bool,
}

/// One row of getdevice.
#[derive(Debug, Clone)]
pub struct Device {
    pub kind: &'static str,
    pub battery: &'static str,
    pub model: &'static str,
    pub model_id: i64,
    pub deviceid: String,
    pub first_session_date: Option<i64>,
    pub last_session_date: Option<i64>,
}

/// One measure inside a measure group.
#[derive(Debug, Clone, Copy)]
pub struct Measure {
    pub value: i64,
    pub mtype: u16,
    pub unit: i8,
    pub algo: Option<u32>,
    pub fm: Option<u8>,
    pub position: Option<u8>,
    /// Carries `algo_params: {"1": 1}` (type 130).
    pub algo_params: bool,
    /// Manual app entry: carries `apppfmid`/`appliver`.
    pub app: bool,
}

/// One getmeas measure group.
#[derive(Debug, Clone)]
pub struct MeasureGroup {
    pub grpid: i64,
    pub attrib: u32,
    pub date: i64,
    pub created: i64,
    pub modified: i64,
    pub category: u8,
    /// Index into `UserData::sources`; `None` for manual entries (null device fields).
    pub src: Option<u8>,
    pub measures: Vec<Measure>,
}

/// Measure groups with the indexes that keep paging cheap.
#[derive(Debug, Clone, Default)]
pub struct MeasStore {
    /// Sorted by (date, grpid) ascending.
    pub groups: Vec<MeasureGroup>,
    /// Indexes into `groups`, sorted by (modified, grpid) ascending.
    pub by_modified: Vec<u32>,
    /// `by_modified` restricted to category 1 and to category 2 (the tap always asks one
    /// category, so its pages are slices, not scans).
    pub by_modified_cat: [Vec<u32>; 2],
}

impl MeasStore {
    /// Restores both orders after a change.
    pub fn reindex(&mut self) {
        self.groups.sort_by_key(|g| (g.date, g.grpid));
        let mut idx: Vec<u32> = (0..self.groups.len() as u32).collect();
        let groups = &self.groups;
        idx.sort_by_key(|&i| (groups[i as usize].modified, groups[i as usize].grpid));
        self.by_modified_cat = [1u8, 2].map(|c| {
            idx.iter()
                .copied()
                .filter(|&i| groups[i as usize].category == c)
                .collect()
        });
        self.by_modified = idx;
    }

    pub fn measure_count(&self) -> usize {
        self.groups.iter().map(|g| g.measures.len()).sum()
    }
}

/// Named values in a fixed order (`data` objects, intraday samples, summary metrics).
pub type Fields = Vec<(&'static str, Value)>;

/// One getactivity row (one local day).
#[derive(Debug, Clone)]
pub struct Activity {
    pub date: NaiveDate,
    pub src: u8,
    pub modified: i64,
    /// Metrics in API order (`steps` ... `hr_zone_3`); hr fields absent for external sources.
    pub metrics: Fields,
}

/// One getintradayactivity sample.
#[derive(Debug, Clone)]
pub struct IntradaySample {
    pub ts: i64,
    pub src: u8,
    pub values: Fields,
}

/// One getworkouts row.
#[derive(Debug, Clone)]
pub struct Workout {
    pub id: i64,
    pub category: i64,
    pub src: u8,
    pub attrib: i64,
    pub startdate: i64,
    pub enddate: i64,
    pub modified: i64,
    pub data: Fields,
}

/// One sleep-get segment with its per-minute maps.
#[derive(Debug, Clone)]
pub struct Segment {
    pub start: i64,
    pub end: i64,
    pub state: i64,
    /// (`hr`, values one per minute from `start`), (`rr`, ...), ...
    pub maps: Vec<(&'static str, Vec<i64>)>,
}

/// One night recorded by one device: the getsummary row and the sleep-get segments.
#[derive(Debug, Clone)]
pub struct Night {
    pub id: i64,
    pub src: u8,
    pub start: i64,
    pub end: i64,
    pub created: i64,
    pub modified: i64,
    pub segments: Vec<Segment>,
    pub summary: Fields,
}

/// One heart (ECG) recording.
#[derive(Debug, Clone)]
pub struct Ecg {
    pub signalid: i64,
    pub src: u8,
    pub timestamp: i64,
    pub modified: i64,
    pub afib: i64,
    pub heart_rate: i64,
    pub bloodpressure: Option<(i64, i64)>,
    pub wearposition: i64,
    pub sampling_frequency: i64,
    pub duration_secs: i64,
}

/// One stethoscope recording.
#[derive(Debug, Clone)]
pub struct Stetho {
    pub signalid: i64,
    pub src: u8,
    pub timestamp: i64,
    pub vhd: i64,
    pub position: i64,
}

/// getgoals values (each may be missing).
#[derive(Debug, Clone, PartialEq)]
pub struct Goals {
    pub steps: Option<i64>,
    pub sleep: Option<i64>,
    pub weight: Option<(i64, i64)>,
}

/// Everything the simulator knows about one user.
#[derive(Debug, Clone)]
pub struct UserData {
    pub userid: u64,
    pub index: u32,
    pub tz: Tz,
    pub tz_name: &'static str,
    pub sources: Vec<Source>,
    pub devices: Vec<Device>,
    pub meas: MeasStore,
    /// Sorted by date.
    pub activities: Vec<Activity>,
    /// Sorted by ts (unique).
    pub intraday: Vec<IntradaySample>,
    /// Sorted by (startdate, id).
    pub workouts: Vec<Workout>,
    /// Sorted by (start, src).
    pub nights: Vec<Night>,
    /// Sorted by timestamp.
    pub ecgs: Vec<Ecg>,
    /// Sorted by timestamp.
    pub stethos: Vec<Stetho>,
    pub goals: Option<Goals>,
    /// Which devices the user owns (the generated data was thinned to match).
    pub profile: Profile,
    /// Next id for new items (grpids, workout/night/signal ids); unique across users.
    pub next_id: i64,
    /// Seed of this user's generators (signals are derived on demand).
    pub seed: u64,
}

impl UserData {
    pub fn source(&self, src: u8) -> Option<&Source> {
        self.sources.get(src as usize)
    }

    /// Restores the sort orders of every collection after a mutation.
    pub fn reindex(&mut self) {
        self.meas.reindex();
        self.activities.sort_by_key(|a| a.date);
        self.intraday.sort_by_key(|s| s.ts);
        self.workouts.sort_by_key(|w| (w.startdate, w.id));
        self.nights.sort_by_key(|n| (n.start, n.src));
        self.ecgs.sort_by_key(|e| (e.timestamp, e.signalid));
        self.stethos.sort_by_key(|s| (s.timestamp, s.signalid));
    }

    pub fn new_id(&mut self) -> i64 {
        self.next_id += 1;
        self.next_id
    }
}

/// All users.
#[derive(Debug, Clone, Default)]
pub struct Dataset {
    pub anchor: i64,
    pub days: u32,
    pub users: Vec<UserData>,
}

impl Dataset {
    pub fn user(&self, userid: u64) -> Option<&UserData> {
        self.users.iter().find(|u| u.userid == userid)
    }

    pub fn user_mut(&mut self, userid: u64) -> Option<&mut UserData> {
        self.users.iter_mut().find(|u| u.userid == userid)
    }
}
