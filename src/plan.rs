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
/// it remembers the keys of the current and the previous page only.
#[derive(Debug, Default)]
pub struct RecentKeys {
    current: HashSet<u64, BuildHasherDefault<KeyHasher>>,
    previous: HashSet<u64, BuildHasherDefault<KeyHasher>>,
}

impl RecentKeys {
    /// Starts a new page: the current keys become the previous ones.
    pub fn next_page(&mut self) {
        self.previous = std::mem::take(&mut self.current);
    }

    /// True the first time a key (hash) is seen in the current or previous page.
    pub fn insert(&mut self, key: u64) -> bool {
        if self.previous.contains(&key) {
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

/// Where a time-windowed stream resumes: at `start` on a first sync; else at its bookmark
/// (the latest record it emitted), moved back to cover the `lookback` before `end`, because
/// watches and sleep sensors sync to the phone hours or days late. Never before `start`.
pub fn resume_from(bookmark: Option<i64>, start: i64, end: i64, lookback: i64) -> i64 {
    match bookmark {
        None => start,
        Some(b) => b.min(end - lookback).max(start),
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
    fn resuming_reads_back_the_lookback() {
        let day = 86_400;
        assert_eq!(resume_from(None, 100, 10 * day, day), 100);
        // A recent bookmark: read the last day again (one window).
        assert_eq!(resume_from(Some(10 * day - 60), 0, 10 * day, day), 9 * day);
        // An old bookmark: resume there.
        assert_eq!(resume_from(Some(3 * day), 0, 10 * day, day), 3 * day);
        // No lookback: exactly at the bookmark; never before start.
        assert_eq!(resume_from(Some(5 * day), 0, 10 * day, 0), 5 * day);
        assert_eq!(
            resume_from(Some(5 * day), 8 * day, 10 * day, 4 * day),
            8 * day
        );
        assert_eq!(
            windows(resume_from(Some(10 * day - 5), 0, 10 * day, day), 10 * day).len(),
            1
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
