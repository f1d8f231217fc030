//! Fast, allocation-free conversions between epoch seconds and RFC 3339 / YYYY-MM-DD text
//! (Howard Hinnant's civil-from-days algorithm). Pure.

/// Days since 1970-01-01 → (year, month, day) in the proleptic Gregorian calendar.
pub fn civil_from_days(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// (year, month, day) → days since 1970-01-01.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// Largest epoch accepted (year 9999), so every output has a four-digit year.
pub const MAX_EPOCH: i64 = 253_402_300_799;

/// Whether `secs` lies in the years 0000-9999 (what [`write_rfc3339`] writes).
pub fn representable(secs: i64) -> bool {
    (-62_167_219_200..=MAX_EPOCH).contains(&secs)
}

/// Writes `secs` as `YYYY-MM-DDTHH:MM:SSZ` into `out`; false (nothing written) when out of
/// the years 0000-9999.
pub fn write_rfc3339(out: &mut Vec<u8>, secs: i64) -> bool {
    if !representable(secs) {
        return false;
    }
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, mo, d) = civil_from_days(days);
    let mut buf = [0u8; 20];
    put4(&mut buf[0..4], y as u32);
    buf[4] = b'-';
    put2(&mut buf[5..7], mo);
    buf[7] = b'-';
    put2(&mut buf[8..10], d);
    buf[10] = b'T';
    put2(&mut buf[11..13], (sod / 3600) as u32);
    buf[13] = b':';
    put2(&mut buf[14..16], ((sod % 3600) / 60) as u32);
    buf[16] = b':';
    put2(&mut buf[17..19], (sod % 60) as u32);
    buf[19] = b'Z';
    out.extend_from_slice(&buf);
    true
}

/// `secs` as an RFC 3339 string, or None when out of range.
pub fn rfc3339(secs: i64) -> Option<String> {
    let mut out = Vec::with_capacity(20);
    write_rfc3339(&mut out, secs).then(|| String::from_utf8_lossy(&out).into_owned())
}

/// Parses `YYYY-MM-DD` into days since the epoch.
pub fn parse_ymd(s: &str) -> Option<i64> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    // Digits only: `str::parse` would also take a sign ("2024-+1-02").
    let digits = |r: std::ops::Range<usize>| b[r].iter().all(u8::is_ascii_digit);
    if !(digits(0..4) && digits(5..7) && digits(8..10)) {
        return None;
    }
    let y: i64 = s.get(0..4)?.parse().ok()?;
    let m: u32 = s.get(5..7)?.parse().ok()?;
    let d: u32 = s.get(8..10)?.parse().ok()?;
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) {
        return None;
    }
    Some(days_from_civil(y, m, d))
}

/// Days since the epoch as `YYYY-MM-DD`.
pub fn ymd(days: i64) -> String {
    let (y, m, d) = civil_from_days(days);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Parses an RFC 3339 date-time (any offset) into epoch seconds (fractions dropped).
pub fn parse_rfc3339(s: &str) -> Option<i64> {
    chrono::DateTime::parse_from_rfc3339(s.trim())
        .ok()
        .map(|dt| dt.timestamp())
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        2 if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

fn put2(out: &mut [u8], v: u32) {
    out[0] = b'0' + (v / 10 % 10) as u8;
    out[1] = b'0' + (v % 10) as u8;
}

fn put4(out: &mut [u8], v: u32) {
    put2(&mut out[0..2], v / 100);
    put2(&mut out[2..4], v % 100);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{TimeZone, Utc};

    #[test]
    fn rfc3339_matches_chrono_across_the_range() {
        let mut secs = -62_167_219_200i64;
        while secs < MAX_EPOCH {
            let expected = Utc
                .timestamp_opt(secs, 0)
                .unwrap()
                .format("%Y-%m-%dT%H:%M:%SZ")
                .to_string();
            assert_eq!(rfc3339(secs).unwrap(), expected);
            assert_eq!(parse_rfc3339(&expected), Some(secs));
            secs += 7_777_777 + 13;
        }
    }

    #[test]
    fn out_of_range_epochs_are_refused() {
        assert_eq!(rfc3339(MAX_EPOCH + 1), None);
        assert_eq!(rfc3339(i64::MIN), None);
        assert_eq!(rfc3339(0).unwrap(), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn ymd_round_trips_and_rejects_impossible_dates() {
        for days in [-1000, 0, 1, 19_000, 20_000, 2_932_896] {
            assert_eq!(parse_ymd(&ymd(days)), Some(days));
        }
        for bad in [
            "2023-02-29",
            "2023-13-01",
            "2023-1-01",
            "20230101",
            "2023-04-31",
            "abcd-ef-gh",
            "2024-+1-02",
            "+024-01-02",
            "2024-01-+2",
        ] {
            assert_eq!(parse_ymd(bad), None, "{bad}");
        }
        assert_eq!(parse_ymd("2024-02-29"), Some(days_from_civil(2024, 2, 29)));
    }
}
