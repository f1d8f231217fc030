//! The `start_date`/`end_date` bounds applied to rows of the YMD modules (getactivity,
//! getworkouts, getsummary). Withings dates those rows by the user's local calendar day
//! (`date`, in the row's IANA `timezone`), so the bounds are converted with that timezone,
//! never with UTC. Pure: no I/O, no clock.
//!
//! A row is kept when its instant (getworkouts `startdate`, getsummary `enddate`: the instant
//! Withings' own YMD filter dates the row by) lies in `[start, end]`, or, for a row without one
//! (getactivity's days), when its local `date` lies between the local dates of `start` and
//! `end`. With no timezone known for a row (none on it, none seen before), the UTC dates
//! widened by a day on each side are used, which keeps every row that could be in range in
//! some timezone (UTC-12 to UTC+14): a row is never lost for want of a timezone.

use chrono::{DateTime, NaiveDate, TimeZone};
use chrono_tz::Tz;
use serde_json::Value;

use super::Record;
use crate::conform::integer;

/// An IANA timezone name as Withings sends it (`Europe/Paris`); `None` when unknown.
pub fn parse_tz(name: &str) -> Option<Tz> {
    name.trim().parse().ok()
}

/// The local calendar date of an epoch in `tz`.
pub fn local_date(epoch: i64, tz: Tz) -> Option<NaiveDate> {
    DateTime::from_timestamp(epoch, 0).map(|t| tz.from_utc_datetime(&t.naive_utc()).date_naive())
}

fn utc_date(epoch: i64) -> Option<NaiveDate> {
    DateTime::from_timestamp(epoch, 0).map(|t| t.date_naive())
}

/// The sync's range in epoch seconds, both ends inclusive.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub start: i64,
    pub end: i64,
}

/// The timezone of a row (its `timezone` field).
pub fn row_tz(row: &Record) -> Option<Tz> {
    row.get("timezone")
        .and_then(Value::as_str)
        .and_then(parse_tz)
}

impl Bounds {
    /// Whether `row` lies in the range. `instant_field` names the row's instant, if the module
    /// has one; `fallback_tz` is the timezone seen on earlier rows, used when the row has none.
    pub fn keeps(
        &self,
        row: &Record,
        instant_field: Option<&str>,
        fallback_tz: Option<Tz>,
    ) -> bool {
        if let Some(t) = instant_field.and_then(|f| row.get(f)).and_then(integer) {
            return self.start <= t && t <= self.end;
        }
        let Some(date) = row
            .get("date")
            .and_then(Value::as_str)
            .and_then(|d| NaiveDate::parse_from_str(d.trim(), "%Y-%m-%d").ok())
        else {
            // No way to place the row: keep it rather than lose it.
            return true;
        };
        // A bound no date can hold (no end_date: i64::MAX) limits nothing.
        let (first, last) = match row_tz(row).or(fallback_tz) {
            Some(tz) => (local_date(self.start, tz), local_date(self.end, tz)),
            None => (
                utc_date(self.start).and_then(|d| d.pred_opt()),
                utc_date(self.end).and_then(|d| d.succ_opt()),
            ),
        };
        first.is_none_or(|first| first <= date) && last.is_none_or(|last| date <= last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    fn row(v: Value) -> Record {
        v.as_object().unwrap().clone()
    }

    #[test]
    fn an_unbounded_end_still_keeps_the_start() {
        let bounds = Bounds {
            start: START,
            end: i64::MAX,
        };
        let paris = row(json!({"date": "2026-11-27", "timezone": "Europe/Paris"}));
        let later = row(json!({"date": "2099-01-01", "timezone": "Europe/Paris"}));
        assert!(!bounds.keeps(&paris, None, None));
        assert!(bounds.keeps(&later, None, None));
        assert!(bounds.keeps(
            &row(json!({"startdate": 4_102_444_800i64})),
            Some("startdate"),
            None
        ));
    }

    /// 2026-11-29T00:00:00Z and 2026-11-30T00:00:00Z.
    const START: i64 = 1_795_910_400;
    const END: i64 = 1_795_996_800;

    #[test]
    fn local_dates_follow_the_timezone() {
        let paris = parse_tz("Europe/Paris").unwrap();
        let la = parse_tz("America/Los_Angeles").unwrap();
        let ymd = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
        assert_eq!(local_date(START, paris), Some(ymd(2026, 11, 29)));
        assert_eq!(local_date(START, la), Some(ymd(2026, 11, 28)));
        assert_eq!(local_date(START - 3_600, paris), Some(ymd(2026, 11, 29)));
        assert_eq!(parse_tz("Mars/Olympus"), None);
        assert_eq!(parse_tz(" UTC "), Some(Tz::UTC));
    }

    #[test]
    fn days_are_kept_between_the_local_dates_of_the_bounds() {
        let b = Bounds {
            start: START,
            end: END,
        };
        let paris = |d: &str| row(json!({"date": d, "timezone": "Europe/Paris"}));
        let la = |d: &str| row(json!({"date": d, "timezone": "America/Los_Angeles"}));
        let bare = |d: &str| row(json!({"date": d}));
        // (row, fallback timezone, kept)
        let cases = [
            // Paris: the range starts 01:00 on the 29th and ends 01:00 on the 30th.
            (paris("2026-11-28"), None, false),
            (paris("2026-11-29"), None, true),
            (paris("2026-11-30"), None, true),
            (paris("2026-12-01"), None, false),
            // Los Angeles: 16:00 on the 28th to 16:00 on the 29th.
            (la("2026-11-28"), None, true),
            (la("2026-11-30"), None, false),
            // No timezone on the row: the one seen before, else UTC widened by a day.
            (bare("2026-11-28"), parse_tz("Europe/Paris"), false),
            (bare("2026-11-28"), None, true),
            (bare("2026-12-01"), None, true),
            (bare("2026-12-02"), None, false),
            (bare("2026-11-27"), None, false),
            // A date that cannot be read, or none at all: kept.
            (bare("29/11/2026"), None, true),
            (row(json!({"steps": 1})), None, true),
        ];
        for (r, fallback, want) in cases {
            assert_eq!(b.keeps(&r, None, fallback), want, "{r:?} {fallback:?}");
        }
    }

    #[test]
    fn rows_with_an_instant_are_kept_by_it() {
        let b = Bounds {
            start: START,
            end: END,
        };
        let w =
            |t: i64| row(json!({"startdate": t, "date": "2026-11-29", "timezone": "Europe/Paris"}));
        assert!(b.keeps(&w(START), Some("startdate"), None));
        assert!(b.keeps(&w(END), Some("startdate"), None));
        assert!(!b.keeps(&w(START - 1), Some("startdate"), None));
        assert!(!b.keeps(&w(END + 1), Some("startdate"), None));
        // Without the instant, the local date decides.
        assert!(b.keeps(&row(json!({"date": "2026-11-29"})), Some("startdate"), None));
    }
}
