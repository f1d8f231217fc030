//! Paging and window decisions that distrust the API. Pure.
//!
//! - Offset paging: pages are requested until one comes back **empty**, whatever `more` says
//!   (`more` is 0/1 from getmeas, a boolean from v2 modules, missing from getsummary, and
//!   sometimes false on a full page that was followed by more data). The next offset is the
//!   previous offset plus the rows received, and a page that repeats the previous one stops
//!   the loop instead of looping forever.
//! - Windows: intraday activity and sleep get return only the first 24 h of a longer range,
//!   and their enddate is inclusive in one module and exclusive in the other, so ranges are
//!   cut into windows of at most 24 h that overlap by a minute; records are de-duplicated by
//!   key across the overlap.

use std::collections::HashSet;
use std::hash::{BuildHasherDefault, Hasher};

/// The longest window the API answers in full (seconds).
pub const MAX_WINDOW: i64 = 86_400;
/// Overlap between consecutive windows (seconds).
pub const WINDOW_OVERLAP: i64 = 60;

/// What to do after a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Next {
    /// Ask for the page at this offset.
    Offset(u64),
    /// The chain is complete (an empty page arrived).
    Done,
    /// The page repeated the previous one: the API is not advancing; stop.
    Repeated,
}

/// Offset paging state for one chain of pages.
#[derive(Debug, Clone, Default)]
pub struct Pager {
    offset: u64,
    previous: Option<u64>,
    pages: u64,
}

impl Pager {
    /// A chain starting at offset 0.
    pub fn new() -> Self {
        Self::default()
    }

    /// The offset of the next request.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Pages received so far.
    pub fn pages(&self) -> u64 {
        self.pages
    }

    /// Records a page of `rows` rows whose content hashes to `fingerprint`.
    pub fn advance(&mut self, rows: usize, fingerprint: u64) -> Next {
        self.pages += 1;
        if rows == 0 {
            return Next::Done;
        }
        if self.previous == Some(fingerprint) {
            return Next::Repeated;
        }
        self.previous = Some(fingerprint);
        self.offset += rows as u64;
        Next::Offset(self.offset)
    }
}

/// De-duplicates records by key across neighbouring pages or windows with bounded memory:
/// it remembers the keys of the current and the previous page only. The current page's keys
/// are a hash set (looked up per record); the previous page's a sorted vector, a third of the
/// set's size at full pages (8 bytes a key against ~18 at the set's load), searched in
/// log time.
#[derive(Debug, Default)]
pub struct RecentKeys {
    current: HashSet<u64, BuildHasherDefault<KeyHasher>>,
    previous: Vec<u64>,
}

impl RecentKeys {
    /// Starts a new page: the current keys become the previous ones. Both keep their
    /// capacity, so a chain of full pages grows them once, not on every page.
    pub fn next_page(&mut self) {
        self.previous.clear();
        self.previous.extend(self.current.drain());
        self.previous.sort_unstable();
    }

    /// True the first time a key (hash) is seen in the current or previous page.
    pub fn insert(&mut self, key: u64) -> bool {
        if self.previous.binary_search(&key).is_ok() {
            return false;
        }
        self.current.insert(key)
    }
}

/// A fast 64-bit hasher for record keys (not for keys an adversary picks: the API's ids).
/// Every word written goes through a bijective mix, so two keys that differ in one word
/// never collide, and keys that differ in several collide with probability about 2^-64.
#[derive(Debug, Clone, Copy)]
pub struct KeyHasher(u64);

impl Default for KeyHasher {
    fn default() -> Self {
        KeyHasher(0x243f_6a88_85a3_08d3)
    }
}

/// The splitmix64 finalizer: a bijection of u64 that spreads every input bit.
fn mix(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        for chunk in bytes.chunks(8) {
            let mut word = [0u8; 8];
            word[..chunk.len()].copy_from_slice(chunk);
            self.write_u64(u64::from_le_bytes(word) ^ ((chunk.len() as u64) << 56));
        }
    }

    fn write_u8(&mut self, i: u8) {
        self.write_u64(u64::from(i) | 0x100);
    }

    fn write_u64(&mut self, i: u64) {
        self.0 = mix(self.0.rotate_left(23) ^ i);
    }

    fn write_i64(&mut self, i: i64) {
        self.write_u64(i as u64);
    }

    fn write_usize(&mut self, i: usize) {
        self.write_u64(i as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

/// How close to `now` a scan may claim to have read (seconds): data being uploaded while a
/// window is read may land just before `now`, so the frontier stays this far behind it.
pub const SCAN_SAFETY: i64 = 3_600;

/// How much of a time-windowed stream earlier runs have read, from its STATE partition.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// The latest record emitted (the replication key value).
    pub bookmark: Option<i64>,
    /// Every event before this instant has been read ([`FIELD_SCANNED_UNTIL`]).
    pub scanned_until: Option<i64>,
}

impl Progress {
    /// The first instant not read yet: just after the bookmark, or the scan frontier when it
    /// went further (windows without data move only the frontier).
    pub fn frontier(&self) -> Option<i64> {
        let after_bookmark = self.bookmark.map(|b| b.saturating_add(1));
        match (after_bookmark, self.scanned_until) {
            (Some(b), Some(s)) => Some(b.max(s)),
            (b, s) => b.or(s),
        }
    }
}

/// How far time-windowed streams re-read behind what earlier runs read, on every run, for
/// data that reaches Withings late (a watch or sleep sensor syncs to the phone hours or days
/// after it recorded).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reread {
    /// Seconds re-read behind the progress (the bookmark or the scan frontier): every run.
    pub lookback: i64,
    /// Seconds behind the scan frontier that a stream whose device has gone quiet is still
    /// re-read from just after its latest record (its bookmark).
    pub late_sync: i64,
}

/// Where a time-windowed stream resumes: at `start` on a first sync; else `lookback` seconds
/// behind its [`Progress::frontier`] (the bookmark, or the scan frontier when later), and
/// further back, to just after the bookmark, when the device has sent nothing since: windows
/// after the latest record emitted are read again for up to `late_sync` behind the frontier,
/// so a watch that syncs days late is still found, while an active device costs only the
/// lookback. Never before `start`.
///
/// Re-reading from the bookmark however old would find a watch after any delay, but a user
/// whose device was abandoned (or who never had one) would walk every window since it on
/// every run: data that arrives later than `late_sync` (and the lookback) behind the last scan
/// is not looked for.
pub fn resume_from(progress: Progress, start: i64, reread: Reread) -> i64 {
    let Some(frontier) = progress.frontier() else {
        return start;
    };
    let behind_frontier = frontier.saturating_sub(reread.lookback.max(0));
    let from = match progress.bookmark {
        Some(b) => {
            let quiet_since = b.saturating_add(1);
            behind_frontier.min(quiet_since.max(frontier.saturating_sub(reread.late_sync.max(0))))
        }
        None => behind_frontier,
    };
    from.max(start)
}

/// The new scan frontier once a read up to `read_end` (exclusive or inclusive, either way
/// everything before it) was written: `Some` when it moves forward, never past
/// `now - SCAN_SAFETY` and never back.
pub fn scanned_after(previous: Option<i64>, read_end: i64, now: i64) -> Option<i64> {
    let s = read_end.min(now - SCAN_SAFETY);
    match previous {
        Some(p) if p >= s => None,
        _ => Some(s),
    }
}

/// The bookmark a complete `lastupdate`/YMD chain earns. Rows carry `modified` (the
/// replication key) in current replies: the latest one emitted. When a row had none (the
/// 2021-era getactivity shape) or a first sync found nothing, the latest `modified` says
/// nothing about what was read; the run itself does: every row changed before it started was
/// in the replies, so the bookmark becomes `min(now, end) - SCAN_SAFETY` (the margin covers a
/// row being written while the pages were read, and clock skew), and the next run asks
/// `lastupdate` from there instead of the whole YMD range again. A run under a bookmark that
/// saw no row keeps it (`None`).
pub fn changes_bookmark(
    max_modified: Option<i64>,
    row_without_modified: bool,
    had_bookmark: bool,
    now: i64,
    end: i64,
) -> Option<i64> {
    let run_start = now.min(end) - SCAN_SAFETY;
    match (max_modified, row_without_modified, had_bookmark) {
        (_, true, _) => Some(run_start),
        (Some(m), false, _) => Some(m),
        (None, false, false) => Some(run_start),
        (None, false, true) => None,
    }
}

/// At most this many fetched signal ids are kept per partition (the newest); a recording
/// forgotten this way only has its signal fetched (and emitted) once more.
pub const MAX_FETCHED: usize = 2_000;

/// The signals fetched in earlier runs and this one, by signal id (with the recording time).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fetched(std::collections::BTreeMap<i64, i64>);

impl Fetched {
    /// Reads [`FIELD_FETCHED`]; anything malformed is ignored (at worst a signal is fetched
    /// again).
    pub fn from_state(value: Option<&serde_json::Value>) -> Self {
        let pairs = value.and_then(|v| v.as_array()).into_iter().flatten();
        Fetched(
            pairs
                .filter_map(|p| Some((p.get(0)?.as_i64()?, p.get(1)?.as_i64()?)))
                .collect(),
        )
    }

    pub fn contains(&self, signalid: i64) -> bool {
        self.0.contains_key(&signalid)
    }

    pub fn insert(&mut self, signalid: i64, timestamp: i64) {
        self.0.insert(signalid, timestamp);
    }

    /// The state value: signals recorded at or after `keep_from` (older ones are not re-read
    /// by the next run's list), at most [`MAX_FETCHED`] of the newest, oldest first.
    pub fn to_state(&self, keep_from: i64) -> serde_json::Value {
        let mut kept: Vec<(i64, i64)> = self
            .0
            .iter()
            .filter(|(_, t)| **t >= keep_from)
            .map(|(id, t)| (*t, *id))
            .collect();
        kept.sort_unstable();
        let skip = kept.len().saturating_sub(MAX_FETCHED);
        serde_json::Value::Array(
            kept[skip..]
                .iter()
                .map(|(t, id)| serde_json::json!([id, t]))
                .collect(),
        )
    }
}

/// Cuts `[start, end]` into windows of at most [`MAX_WINDOW`] seconds, each starting
/// [`WINDOW_OVERLAP`] seconds before the previous one ended.
pub fn windows(start: i64, end: i64) -> Vec<(i64, i64)> {
    let mut out = Vec::new();
    let mut s = start;
    while s < end {
        let e = (s + MAX_WINDOW).min(end);
        out.push((s, e));
        if e >= end {
            break;
        }
        s = e - WINDOW_OVERLAP;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;

    fn key_hash(words: &[i64]) -> u64 {
        let mut h = KeyHasher::default();
        words.iter().for_each(|w| h.write_i64(*w));
        h.finish()
    }

    #[test]
    fn key_hashes_of_nearby_keys_are_distinct() {
        let mut seen = HashSet::new();
        for grpid in 0..200 {
            for kind in [1, 4, 5, 6, 8, 11, 76, 77, 88, 173, 174, 175] {
                for position in -1..13 {
                    assert!(seen.insert(key_hash(&[1_000_001, grpid, kind, position])));
                }
            }
        }
        // The order of the words matters, and so does a word's value in each place.
        assert_ne!(key_hash(&[1, 2]), key_hash(&[2, 1]));
        assert_ne!(key_hash(&[0]), key_hash(&[0, 0]));
    }

    #[test]
    fn full_page_with_more_false_still_fetches_next_offset() {
        let mut p = Pager::new();
        assert_eq!(p.advance(200, 1), Next::Offset(200));
        assert_eq!(p.advance(200, 2), Next::Offset(400));
        assert_eq!(p.advance(13, 3), Next::Offset(413));
        assert_eq!(p.advance(0, 4), Next::Done);
        assert_eq!(p.pages(), 4);
    }

    #[test]
    fn a_repeated_page_stops_the_loop() {
        let mut p = Pager::new();
        assert_eq!(p.advance(5, 9), Next::Offset(5));
        assert_eq!(p.advance(5, 9), Next::Repeated);
    }

    #[test]
    fn recent_keys_forget_older_pages() {
        let mut k = RecentKeys::default();
        assert!(k.insert(1));
        assert!(!k.insert(1));
        k.next_page();
        assert!(!k.insert(1));
        assert!(k.insert(2));
        k.next_page();
        k.next_page();
        assert!(k.insert(1));
    }

    #[test]
    fn recent_keys_match_a_model_of_two_pages_over_many_pages() {
        // The sorted previous page answers as a set would: a model with two plain sets.
        let mut k = RecentKeys::default();
        let (mut cur, mut prev) = (HashSet::new(), HashSet::new());
        let mut x: u64 = 7;
        for page in 0..40 {
            for _ in 0..(page * 13 % 97) {
                x = mix(x);
                let key = x % 300;
                let want = !prev.contains(&key) && cur.insert(key);
                assert_eq!(k.insert(key), want, "page {page} key {key}");
            }
            k.next_page();
            prev = std::mem::take(&mut cur);
        }
    }

    #[test]
    fn resuming_reads_back_the_lookback_behind_the_frontier() {
        let day = 86_400;
        let p = |bookmark, scanned_until| Progress {
            bookmark,
            scanned_until,
        };
        // (progress, start, lookback, resume)
        let cases = [
            // First sync: at start.
            (p(None, None), 100, day, 100),
            // Only a bookmark (a state of an older version): the lookback behind it.
            (p(Some(10 * day), None), 0, day, 9 * day + 1),
            (p(Some(3 * day), None), 0, day, 2 * day + 1),
            // No lookback: just after the bookmark, so its record is not emitted again.
            (p(Some(5 * day), None), 0, 0, 5 * day + 1),
            // Windows without data moved the frontier past an old bookmark (no watch, or a
            // watch left at home): the lookback behind the frontier, not the whole gap again.
            (p(Some(3 * day), Some(10 * day)), 0, day, 9 * day),
            (p(None, Some(10 * day)), 0, day, 9 * day),
            (p(None, Some(10 * day)), 0, 0, 10 * day),
            // A bookmark later than the frontier (its window ended inclusive at it).
            (p(Some(10 * day), Some(10 * day)), 0, 0, 10 * day + 1),
            (p(Some(10 * day), Some(9 * day)), 0, day, 9 * day + 1),
            // Never before start.
            (p(Some(5 * day), None), 8 * day, 4 * day, 8 * day),
            (p(None, Some(5 * day)), 8 * day, 4 * day, 8 * day),
        ];
        for (progress, start, lookback, want) in cases {
            let reread = Reread {
                lookback,
                late_sync: 0,
            };
            assert_eq!(
                resume_from(progress, start, reread),
                want,
                "{progress:?} start {start} lookback {lookback}"
            );
        }
        // A frontier at the end of the range re-reads one window of lookback.
        let reread = Reread {
            lookback: day,
            late_sync: 0,
        };
        let resume = resume_from(p(Some(3 * day), Some(10 * day)), 0, reread);
        assert_eq!(windows(resume, 10 * day), vec![(9 * day, 10 * day)]);
    }

    #[test]
    fn a_quiet_device_is_read_again_from_its_latest_record_within_late_sync() {
        let day = 86_400;
        let p = |bookmark, scanned_until| Progress {
            bookmark,
            scanned_until,
        };
        let reread = Reread {
            lookback: day,
            late_sync: 3 * day,
        };
        // (progress, resume)
        let cases = [
            // Active device: its latest record is within the lookback; only the lookback.
            (p(Some(10 * day - 3600), Some(10 * day)), 9 * day),
            // Quiet for 2 days: everything after its latest record again.
            (p(Some(8 * day), Some(10 * day)), 8 * day + 1),
            // Quiet for longer than late_sync: back as far as late_sync only.
            (p(Some(2 * day), Some(10 * day)), 7 * day),
            // No device data ever: the lookback behind the scan.
            (p(None, Some(10 * day)), 9 * day),
        ];
        for (progress, want) in cases {
            assert_eq!(resume_from(progress, 0, reread), want, "{progress:?}");
        }
        // late_sync shorter than the lookback: the lookback wins.
        let short = Reread {
            lookback: 2 * day,
            late_sync: day,
        };
        assert_eq!(
            resume_from(p(Some(2 * day), Some(10 * day)), 0, short),
            8 * day
        );
    }

    #[test]
    fn the_scan_frontier_moves_forward_only_and_stays_behind_now() {
        let now = 1_000_000;
        // (previous, read_end, moved to)
        let cases = [
            (None, 500_000, Some(500_000)),
            (Some(400_000), 500_000, Some(500_000)),
            (Some(500_000), 500_000, None),
            (Some(600_000), 500_000, None),
            // A window ending at (or after) now claims only up to now minus the margin.
            (None, now, Some(now - SCAN_SAFETY)),
            (Some(now - SCAN_SAFETY), now + 50, None),
        ];
        for (previous, read_end, want) in cases {
            assert_eq!(
                scanned_after(previous, read_end, now),
                want,
                "{previous:?} {read_end}"
            );
        }
    }

    #[test]
    fn fetched_signals_round_trip_pruned_and_bounded() {
        use serde_json::json;
        let mut f = Fetched::from_state(Some(&json!([[7, 100], [8, 300], "x", [9]])));
        assert!(f.contains(7) && f.contains(8) && !f.contains(9));
        f.insert(10, 200);
        assert_eq!(f.to_state(150), json!([[10, 200], [8, 300]]));
        assert_eq!(f.to_state(0), json!([[7, 100], [10, 200], [8, 300]]));
        assert_eq!(
            Fetched::from_state(Some(&json!({"a": 1}))),
            Fetched::default()
        );
        assert_eq!(Fetched::from_state(None), Fetched::default());
        let mut many = Fetched::default();
        for i in 0..(MAX_FETCHED as i64 + 5) {
            many.insert(i, 1_000 + i);
        }
        let kept = many.to_state(0);
        let kept = kept.as_array().unwrap();
        assert_eq!(kept.len(), MAX_FETCHED);
        assert_eq!(kept[0], json!([5, 1_005]));
    }

    #[test]
    fn changes_bookmark_falls_back_to_the_run_when_rows_lack_modified() {
        let (now, end) = (1_000_000, 1_000_000);
        let run = now - SCAN_SAFETY;
        // (max modified, a row without modified, had a bookmark, bookmark)
        let cases = [
            (Some(500), false, false, Some(500)),
            (Some(500), false, true, Some(500)),
            (Some(500), true, true, Some(run)),
            (None, true, false, Some(run)),
            (None, false, false, Some(run)),
            (None, false, true, None),
        ];
        for (max, without, had, want) in cases {
            assert_eq!(
                changes_bookmark(max, without, had, now, end),
                want,
                "{max:?} {without} {had}"
            );
        }
        // An end_date in the past bounds the fallback.
        assert_eq!(
            changes_bookmark(None, true, false, now, 400_000),
            Some(400_000 - SCAN_SAFETY)
        );
    }

    #[test]
    fn windows_cover_the_range_overlapping_and_never_exceed_a_day() {
        assert_eq!(windows(0, 0), vec![]);
        assert_eq!(windows(0, 100), vec![(0, 100)]);
        assert_eq!(windows(0, MAX_WINDOW), vec![(0, MAX_WINDOW)]);
        let w = windows(1_000, 1_000 + 10 * MAX_WINDOW + 5);
        assert_eq!(w.len(), 11);
        assert_eq!(w[0], (1_000, 1_000 + MAX_WINDOW));
        for pair in w.windows(2) {
            assert_eq!(pair[1].0, pair[0].1 - WINDOW_OVERLAP);
            assert!(pair[1].1 - pair[1].0 <= MAX_WINDOW);
        }
        assert_eq!(w.last().unwrap().1, 1_000 + 10 * MAX_WINDOW + 5);
    }
}
