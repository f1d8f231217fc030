//! Wall-clock time and calendar helpers (user-local dates, YMD strings).

use chrono::{NaiveDate, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;
use std::time::{SystemTime, UNIX_EPOCH};

/// Real time, epoch seconds with fractions.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

/// Real time, whole epoch seconds.
pub fn now_secs() -> i64 {
    now() as i64
}

/// Today 00:00 UTC as epoch seconds.
pub fn today_midnight_utc() -> i64 {
    let t = now_secs();
    t - t.rem_euclid(86_400)
}

/// The calendar date of `ts` in `tz`.
pub fn local_date(ts: i64, tz: Tz) -> NaiveDate {
    match Utc.timestamp_opt(ts, 0).single() {
        Some(dt) => dt.with_timezone(&tz).date_naive(),
        None => NaiveDate::default(),
    }
}

/// `YYYY-MM-DD` of `ts` in `tz`.
pub fn local_ymd(ts: i64, tz: Tz) -> String {
    local_date(ts, tz).format("%Y-%m-%d").to_string()
}

/// Epoch seconds of `date` at `secs` seconds after local midnight in `tz` (DST gaps are
/// skipped forward by an hour).
pub fn local_ts(date: NaiveDate, secs: i64, tz: Tz) -> i64 {
    let base: NaiveDateTime = date.and_hms_opt(0, 0, 0).unwrap_or_default();
    let naive = base + chrono::Duration::seconds(secs);
    match tz.from_local_datetime(&naive).earliest() {
        Some(dt) => dt.timestamp(),
        None => tz
            .from_local_datetime(&(naive + chrono::Duration::hours(1)))
            .earliest()
            .map(|dt| dt.timestamp())
            .unwrap_or_else(|| naive.and_utc().timestamp()),
    }
}

/// Parses a strict `YYYY-MM-DD`.
pub fn parse_ymd(s: &str) -> Option<NaiveDate> {
    if s.len() != 10 {
        return None;
    }
    NaiveDate::parse_from_str(s, "%Y-%m-%d").ok()
}

/// `YYYY-MM-DD` of a UTC epoch.
pub fn utc_ymd(ts: i64) -> String {
    local_ymd(ts, Tz::UTC)
}

/// RFC 3339 (UTC, `Z`) of an epoch.
pub fn rfc3339(ts: i64) -> String {
    match Utc.timestamp_opt(ts, 0).single() {
        Some(dt) => dt.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => "1970-01-01T00:00:00Z".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_dates_follow_the_timezone() {
        // 2024-01-01 23:30 UTC is 2024-01-02 in Tokyo and 2024-01-01 in New York.
        let ts = 1_704_151_800;
        assert_eq!(local_ymd(ts, chrono_tz::Asia::Tokyo), "2024-01-02");
        assert_eq!(local_ymd(ts, chrono_tz::America::New_York), "2024-01-01");
        let d = parse_ymd("2024-01-02").unwrap();
        assert_eq!(local_ts(d, 0, chrono_tz::Asia::Tokyo), 1_704_121_200);
        assert!(parse_ymd("2024-1-2").is_none());
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
    }
}
