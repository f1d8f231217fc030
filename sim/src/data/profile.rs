//! User profiles: which devices a user owns, applied by removing from the generated `full`
//! data what those devices would not have recorded (so `full` stays exactly as generated, and
//! the other profiles are the same data with holes, deterministic from the seed).

use super::generate::src;
use super::model::UserData;
use crate::clock;
use crate::config::Profile;
use chrono::{Datelike, NaiveDate};

/// The day number of a local date (days since 0001-01-01): parity and "one in five" are
/// properties of the date, not of where the data starts.
pub fn day_number(date: NaiveDate) -> i32 {
    date.num_days_from_ce()
}

/// Whether the watch is worn on this local date under `every_other_day`.
pub fn worn(date: NaiveDate) -> bool {
    day_number(date) % 2 == 0
}

/// Whether this local date has an activity row but no intraday under `activity_no_intraday`.
pub fn phone_only(date: NaiveDate) -> bool {
    day_number(date) % 5 == 0
}

/// Removes what the profile's devices would not have recorded.
pub fn apply(user: &mut UserData, profile: Profile) {
    let tz = user.tz;
    let local = |ts: i64| clock::local_date(ts, tz);
    match profile {
        Profile::Full => {}
        Profile::ScaleOnly => {
            user.activities.clear();
            user.intraday.clear();
            user.workouts.clear();
            user.nights.clear();
            user.ecgs.clear();
            user.stethos.clear();
            let scales: Vec<bool> = user.sources.iter().map(|s| s.kind == "Scale").collect();
            user.meas
                .groups
                .retain(|g| g.src.is_none_or(|s| scales.get(s as usize) == Some(&true)));
            user.devices.retain(|d| d.kind == "Scale");
        }
        Profile::EveryOtherDay => {
            user.activities.retain(|a| worn(a.date));
            user.intraday.retain(|s| worn(local(s.ts)));
            user.workouts.retain(|w| worn(local(w.startdate)));
            user.nights.retain(|n| worn(local(n.start)));
            user.ecgs
                .retain(|e| e.src != src::SCANWATCH || worn(local(e.timestamp)));
        }
        Profile::ActivityNoIntraday => {
            user.intraday.retain(|s| !phone_only(local(s.ts)));
        }
    }
}
