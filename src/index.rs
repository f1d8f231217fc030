//! Where detailed data lies, planned from the cheap paged modules that index it. Pure.
//!
//! getintradayactivity and sleep get answer only 24 h a call and have neither paging nor
//! `lastupdate`, so walking every window from `start_date` costs the calendar, not the data
//! (a month of data from the default `start_date` 2009-01-01 is ~6,500 windows each). The
//! paged modules say where that data is and when it changed:
//!
//! - getactivity lists one row per local day that has activity, with the day's `modified`:
//!   when a tracker uploads intraday samples, Withings recomputes the day's totals, so the day
//!   is listed again under `lastupdate`. Its intraday samples lie inside that local day.
//! - sleep getsummary lists every sleep session (`startdate`, `enddate`, `modified`); the
//!   session's `sleep get` segments lie inside it.
//!
//! So the index's rows (new or changed since the served stream's own index mark) become the
//! windows to read: [`DayIndex`] turns listed local days into windows, [`SessionIndex`] turns
//! listed sessions into windows, and [`plan_chains`] decides which index chains a run reads
//! so that one chain serves the index's own stream and the streams it feeds whenever their
//! marks allow it.

use chrono::{Duration, NaiveDate, TimeZone};
use chrono_tz::Tz;

use crate::plan::MAX_WINDOW;

/// Seconds added on each side of a sleep session: segment starts are whole minutes and the
/// session's own bounds may be rounded differently.
pub const SESSION_MARGIN: i64 = 60;

/// The instant a local calendar day starts in `tz`: local midnight, or, where midnight does
/// not exist (a DST gap at midnight, as Brazil had), the first local hour that does.
pub fn day_start(date: NaiveDate, tz: Tz) -> Option<i64> {
    (0..4).find_map(|hour| {
        let local = date.and_hms_opt(hour, 0, 0)?;
        tz.from_local_datetime(&local)
            .earliest()
            .map(|t| t.timestamp())
    })
}

/// The instants `[start, end]` of a local day: from its start to the next day's start. With
/// no timezone known, the UTC day widened to cover UTC-12 to UTC+14.
pub fn day_span(date: NaiveDate, tz: Option<Tz>) -> Option<(i64, i64)> {
    let next = date.succ_opt()?;
    match tz {
        Some(tz) => Some((day_start(date, tz)?, day_start(next, tz)?)),
        None => {
            let utc = |d: NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc().timestamp());
            Some((utc(date)? - 14 * 3_600, utc(next)? + 12 * 3_600))
        }
    }
}

/// Cuts `[start, end]` into consecutive windows of at most [`MAX_WINDOW`], each starting where
/// the previous one ended: a shared instant is read by both windows, so it is covered whether
/// the module's `enddate` is inclusive (sleep get) or exclusive (intraday); records read twice
/// are de-duplicated by key. A span of one day is one window.
pub fn cover(start: i64, end: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut s = start;
    loop {
        let e = s.saturating_add(MAX_WINDOW).min(end);
        out.push((s, e));
        if e >= end {
            return out;
        }
        s = e;
    }
}

/// Merges spans that overlap or touch, then covers each merged span with [`cover`]; clipped
/// to `[from, until]`. Sorted, no window repeated.
fn windows_of(mut spans: Vec<(i64, i64)>, from: i64, until: i64) -> Vec<(i64, i64)> {
    spans.retain(|(s, e)| s <= e);
    spans.sort_unstable();
    let mut merged: Vec<(i64, i64)> = Vec::new();
    for (s, e) in spans {
        match merged.last_mut() {
            Some(last) if s <= last.1 => last.1 = last.1.max(e),
            _ => merged.push((s, e)),
        }
    }
    merged
        .into_iter()
        .filter_map(|(s, e)| {
            let (s, e) = (s.max(from), e.min(until));
            (s <= e).then_some((s, e))
        })
        .flat_map(|(s, e)| cover(s, e))
        .collect()
}

/// The local days an activity index listed, in their timezones.
#[derive(Debug, Clone, Default)]
pub struct DayIndex {
    days: std::collections::BTreeMap<NaiveDate, Option<Tz>>,
}

impl DayIndex {
    /// Adds a listed day (`YYYY-MM-DD`) in `tz` (the row's, else the user's as seen on other
    /// rows). False when the date cannot be read (the row still counts for the bookmark, its
    /// day cannot be placed: see [`DayIndex::unplaced`]).
    pub fn add(&mut self, date: &str, tz: Option<Tz>) -> bool {
        match NaiveDate::parse_from_str(date.trim(), "%Y-%m-%d") {
            Ok(d) => {
                let slot = self.days.entry(d).or_insert(tz);
                if slot.is_none() {
                    *slot = tz;
                }
                true
            }
            Err(_) => false,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.days.is_empty()
    }

    pub fn len(&self) -> usize {
        self.days.len()
    }

    /// The windows that cover every listed day, clipped to `[from, until]`: consecutive days
    /// form one span (a change of timezone between them leaves no gap), and a span of `n`
    /// ordinary days is `n` windows of one local day each (a 25 h DST day is two).
    pub fn windows(&self, from: i64, until: i64) -> Vec<(i64, i64)> {
        let mut spans: Vec<(i64, i64)> = Vec::new();
        let mut previous: Option<NaiveDate> = None;
        for (date, tz) in &self.days {
            let Some((s, e)) = day_span(*date, *tz) else {
                continue;
            };
            let consecutive = previous.is_some_and(|p| p + Duration::days(1) == *date);
            match spans.last_mut() {
                Some(last) if consecutive => {
                    last.0 = last.0.min(s);
                    last.1 = last.1.max(e);
                }
                _ => spans.push((s, e)),
            }
            previous = Some(*date);
        }
        windows_of(spans, from, until)
    }
}

/// The sleep sessions a summary index listed.
#[derive(Debug, Clone, Default)]
pub struct SessionIndex {
    sessions: Vec<(i64, i64)>,
}

impl SessionIndex {
    /// Adds a session from its `startdate` and `enddate` (epochs); a session with one of them
    /// missing takes a day from the one it has.
    pub fn add(&mut self, start: Option<i64>, end: Option<i64>) -> bool {
        let (s, e) = match (start, end) {
            (Some(s), Some(e)) if s <= e => (s, e),
            (Some(s), Some(e)) => (e, s),
            (Some(s), None) => (s, s + MAX_WINDOW),
            (None, Some(e)) => (e - MAX_WINDOW, e),
            (None, None) => return false,
        };
        self.sessions.push((
            s.saturating_sub(SESSION_MARGIN),
            e.saturating_add(SESSION_MARGIN),
        ));
        true
    }

    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// The windows covering every session, clipped to `[from, until]`: overlapping sessions
    /// (two devices recording one night) are one span; a night is one window.
    pub fn windows(&self, from: i64, until: i64) -> Vec<(i64, i64)> {
        windows_of(self.sessions.clone(), from, until)
    }
}

/// What a reader of an index chain needs from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// Rows changed after this mark (`lastupdate`).
    Changes(i64),
    /// Every row dated from this instant on (a YMD range): a first sync, or a stream that
    /// has no index mark yet.
    Range(i64),
}

/// One chain of index pages to read, and the readers (indexes into the `needs` given to
/// [`plan_chains`]) it serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chain {
    pub need: Need,
    pub readers: Vec<usize>,
}

/// The fewest index chains that give every reader what it needs: readers that need changes
/// share one chain from the oldest mark, readers that need a range share one from the
/// earliest start; a run that has both kinds reads two chains (a range does not list the
/// older days that changed, and changes do not list unchanged days). In the usual
/// incremental run every mark moved with the same chain, so one chain serves all.
pub fn plan_chains(needs: &[Need]) -> Vec<Chain> {
    let mut changes: Option<Chain> = None;
    let mut range: Option<Chain> = None;
    for (i, need) in needs.iter().enumerate() {
        let (slot, merged) = match *need {
            Need::Changes(m) => (&mut changes, m),
            Need::Range(s) => (&mut range, s),
        };
        match slot {
            Some(chain) => {
                chain.readers.push(i);
                chain.need = match chain.need {
                    Need::Changes(c) => Need::Changes(c.min(merged)),
                    Need::Range(r) => Need::Range(r.min(merged)),
                };
            }
            None => {
                *slot = Some(Chain {
                    need: *need,
                    readers: vec![i],
                })
            }
        }
    }
    changes.into_iter().chain(range).collect()
}

/// Whether a listed module (heart/stetho list, newest first) needs its next page when
/// re-listing: the first page always comes (it holds the newest recordings, and a
/// recording uploaded late among them is found there, whatever its delay); later pages only
/// while every recording of the page is newer than what earlier runs listed (`seen_until`,
/// the newest timestamp listed before). `None` (a first sync): every page, to the empty one.
pub fn relist_more(page_oldest: Option<i64>, page_rows: usize, seen_until: Option<i64>) -> bool {
    if page_rows == 0 {
        return false;
    }
    match (seen_until, page_oldest) {
        (Some(seen), Some(oldest)) => oldest > seen,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn tz(name: &str) -> Option<Tz> {
        name.parse().ok()
    }

    /// 2026-11-29T00:00:00Z.
    const NOV29: i64 = 1_795_910_400;
    const DAY: i64 = 86_400;

    #[test]
    fn a_local_day_spans_local_midnight_to_local_midnight() {
        let d = NaiveDate::from_ymd_opt(2026, 11, 29).unwrap();
        // Paris is UTC+1 in November.
        assert_eq!(
            day_span(d, tz("Europe/Paris")),
            Some((NOV29 - 3_600, NOV29 + DAY - 3_600))
        );
        // Tokyo UTC+9.
        assert_eq!(
            day_span(d, tz("Asia/Tokyo")),
            Some((NOV29 - 9 * 3_600, NOV29 + DAY - 9 * 3_600))
        );
        // Unknown timezone: the UTC day widened to cover every zone.
        assert_eq!(
            day_span(d, None),
            Some((NOV29 - 14 * 3_600, NOV29 + DAY + 12 * 3_600))
        );
    }

    #[test]
    fn dst_days_are_23_and_25_hours_and_a_midnight_gap_starts_at_one() {
        let paris = tz("Europe/Paris");
        let spring = NaiveDate::from_ymd_opt(2026, 3, 29).unwrap();
        let autumn = NaiveDate::from_ymd_opt(2026, 10, 25).unwrap();
        let (s, e) = day_span(spring, paris).unwrap();
        assert_eq!(e - s, 23 * 3_600);
        let (s, e) = day_span(autumn, paris).unwrap();
        assert_eq!(e - s, 25 * 3_600);
        // Sao Paulo, 2018-11-04: clocks went from 00:00 to 01:00.
        let gap = NaiveDate::from_ymd_opt(2018, 11, 4).unwrap();
        let sp: Tz = "America/Sao_Paulo".parse().unwrap();
        let start = day_start(gap, sp).unwrap();
        assert_eq!(start, 1_541_300_400); // 2018-11-04T01:00-02:00
    }

    #[test]
    fn cover_cuts_spans_into_adjacent_windows_of_a_day_at_most() {
        assert_eq!(cover(0, DAY), vec![(0, DAY)]);
        assert_eq!(cover(0, 10), vec![(0, 10)]);
        assert_eq!(cover(0, 2 * DAY), vec![(0, DAY), (DAY, 2 * DAY)]);
        assert_eq!(
            cover(0, 2 * DAY + 1),
            vec![(0, DAY), (DAY, 2 * DAY), (2 * DAY, 2 * DAY + 1)]
        );
        assert_eq!(cover(5, 5), vec![(5, 5)]);
    }

    #[test]
    fn listed_days_become_one_window_each_and_gaps_are_not_read() {
        let paris = tz("Europe/Paris");
        let mut index = DayIndex::default();
        for d in ["2026-11-29", "2026-11-30", "2026-12-02", "2026-11-29"] {
            assert!(index.add(d, paris));
        }
        assert!(!index.add("29/11/2026", paris));
        assert_eq!(index.len(), 3);
        let p = NOV29 - 3_600;
        assert_eq!(
            index.windows(i64::MIN, i64::MAX),
            vec![
                (p, p + DAY),
                (p + DAY, p + 2 * DAY),
                (p + 3 * DAY, p + 4 * DAY)
            ]
        );
        // Clipped to the sync's range.
        assert_eq!(
            index.windows(NOV29, p + 2 * DAY - 10),
            vec![(NOV29, NOV29 + DAY), (NOV29 + DAY, p + 2 * DAY - 10)]
        );
        // A month of days is a month of windows (the fewest that touch every day).
        let mut month = DayIndex::default();
        for i in 0..30 {
            let d = NaiveDate::from_ymd_opt(2026, 11, 1).unwrap() + Duration::days(i);
            month.add(&d.to_string(), tz("Asia/Kolkata"));
        }
        assert_eq!(month.windows(i64::MIN, i64::MAX).len(), 30);
    }

    #[test]
    fn a_change_of_timezone_between_days_leaves_no_gap() {
        // Paris on the 29th, New York on the 30th: the 29th ends 23:00 UTC, the 30th starts
        // 05:00 UTC on the 30th; the samples in between are covered.
        let mut index = DayIndex::default();
        index.add("2026-11-29", tz("Europe/Paris"));
        index.add("2026-11-30", tz("America/New_York"));
        let w = index.windows(i64::MIN, i64::MAX);
        assert_eq!(w.first().unwrap().0, NOV29 - 3_600);
        assert_eq!(w.last().unwrap().1, NOV29 + 2 * DAY + 5 * 3_600);
        assert!(w.windows(2).all(|p| p[0].1 == p[1].0));
        assert!(w.iter().all(|(s, e)| e - s <= DAY));
    }

    #[test]
    fn sessions_merge_when_they_overlap_and_a_night_is_one_window() {
        let night = |d: i64| (NOV29 + d * DAY - 2 * 3_600, NOV29 + d * DAY + 6 * 3_600);
        let mut index = SessionIndex::default();
        let (s0, e0) = night(0);
        index.add(Some(s0), Some(e0));
        // A second device the same night, a bit later.
        index.add(Some(s0 + 600), Some(e0 + 600));
        let (s1, e1) = night(1);
        index.add(Some(s1), Some(e1));
        assert!(!index.add(None, None));
        let m = SESSION_MARGIN;
        assert_eq!(
            index.windows(i64::MIN, i64::MAX),
            vec![(s0 - m, e0 + 600 + m), (s1 - m, e1 + m)]
        );
        // Reversed bounds are read as a session; one bound alone takes a day from it.
        let mut odd = SessionIndex::default();
        odd.add(Some(e0), Some(s0));
        odd.add(Some(NOV29 + 10 * DAY), None);
        assert_eq!(
            odd.windows(i64::MIN, i64::MAX),
            vec![
                (s0 - m, e0 + m),
                (NOV29 + 10 * DAY - m, NOV29 + 11 * DAY - m),
                (NOV29 + 11 * DAY - m, NOV29 + 11 * DAY + m)
            ]
        );
    }

    #[test]
    fn chains_are_shared_by_readers_of_the_same_kind() {
        use Need::*;
        // The usual incremental run: one chain from the oldest mark.
        assert_eq!(
            plan_chains(&[Changes(50), Changes(40)]),
            vec![Chain {
                need: Changes(40),
                readers: vec![0, 1]
            }]
        );
        // A first sync of everything: one range chain.
        assert_eq!(
            plan_chains(&[Range(10), Range(10), Range(5)]),
            vec![Chain {
                need: Range(5),
                readers: vec![0, 1, 2]
            }]
        );
        // A stream selected later (no index mark yet) next to an incremental one: two.
        assert_eq!(
            plan_chains(&[Changes(50), Range(10), Changes(60)]),
            vec![
                Chain {
                    need: Changes(50),
                    readers: vec![0, 2]
                },
                Chain {
                    need: Range(10),
                    readers: vec![1]
                }
            ]
        );
        assert_eq!(plan_chains(&[]), vec![]);
    }

    #[test]
    fn relisting_reads_the_newest_page_and_stops_at_what_was_seen() {
        // First sync: to the empty page.
        assert!(relist_more(Some(10), 200, None));
        assert!(!relist_more(None, 0, None));
        // Incremental: the first page reaches what was listed before: stop.
        assert!(!relist_more(Some(100), 200, Some(150)));
        assert!(!relist_more(Some(150), 3, Some(150)));
        // A page of only new recordings: the next one may hold more new ones.
        assert!(relist_more(Some(151), 200, Some(150)));
        // Rows without a timestamp cannot say: read on.
        assert!(relist_more(None, 4, Some(150)));
    }
}
