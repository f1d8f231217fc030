//! Deletion detection. Withings never says that something was deleted, so for the streams
//! read by `lastupdate` (measures, workouts, sleep_summaries) the tap remembers, in its state,
//! the keys it emitted whose event time lies in a recent window, and periodically re-scans
//! that window by date range: a remembered key that Withings no longer returns was deleted,
//! and is emitted again as a tombstone (its key and `_sdc_deleted_at`). Pure.

use std::collections::BTreeMap;

use serde_json::Value;

/// Keys (JSON text of the key values without userid) → event time (epoch seconds).
pub type KeySet = BTreeMap<String, i64>;

/// Reads remembered keys from a state partition field: the compact text [`keys_to_state`]
/// writes, or the earlier list form `[[key values..., time], ...]`; malformed entries are
/// ignored (the next re-scan rebuilds the set).
pub fn keys_from_state(value: Option<&Value>) -> KeySet {
    let mut out = KeySet::new();
    match value {
        Some(Value::String(text)) => {
            for entry in text.split('\n') {
                let Some((time, key)) = entry.split_once(' ') else {
                    continue;
                };
                let parts = serde_json::from_str::<Value>(key).ok();
                if let (Ok(time), Some(Value::Array(parts))) = (time.parse::<i64>(), parts) {
                    if !parts.is_empty() {
                        out.insert(Value::Array(parts).to_string(), time);
                    }
                }
            }
        }
        Some(Value::Array(entries)) => {
            for entry in entries {
                let Some(parts) = entry.as_array() else {
                    continue;
                };
                let Some((time, key)) = parts.split_last() else {
                    continue;
                };
                if let (Some(time), false) = (time.as_i64(), key.is_empty()) {
                    out.insert(Value::Array(key.to_vec()).to_string(), time);
                }
            }
        }
        _ => {}
    }
    out
}

/// Writes remembered keys as a state partition field: one text of `time key` lines, the key
/// as the JSON list of its values (`1700000000 [3000000001,1,-1]`). A text, not a JSON list of
/// lists, because thousands of keys as JSON values cost megabytes of memory each time the
/// state is built and written.
pub fn keys_to_state(keys: &KeySet) -> Value {
    let mut text = String::with_capacity(keys.len() * 32);
    for (key, time) in keys {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&time.to_string());
        text.push(' ');
        text.push_str(key);
    }
    Value::String(text)
}

/// The most keys remembered per stream and user: past it, only the newest are kept, so
/// deletions are detected within a shorter recent window (dense data, e.g. millions of
/// measures) and the state stays small.
pub const MAX_KEYS: usize = 5_000;

/// Keeps only the `max` newest keys.
pub fn cap_newest(keys: &mut KeySet, max: usize) {
    if keys.len() <= max {
        return;
    }
    let mut times: Vec<i64> = keys.values().copied().collect();
    times.sort_unstable_by(|a, b| b.cmp(a));
    let cutoff = times[max - 1];
    keys.retain(|_, t| *t >= cutoff);
    // Ties at the cutoff can leave a few more than `max`; drop them in key order.
    if keys.len() > max {
        let extra: Vec<String> = keys
            .iter()
            .filter(|(_, t)| **t == cutoff)
            .map(|(k, _)| k.clone())
            .take(keys.len() - max)
            .collect();
        for k in extra {
            keys.remove(&k);
        }
    }
}

/// How many keys [`Emitted`] holds before it drops all but the [`MAX_KEYS`] newest: a power of
/// two, so the list's capacity stops at it (8,192 × 40 bytes, 0.3 MB) instead of doubling
/// past it.
const PRUNE_AT: usize = 8_192;

/// Keys emitted during a run that lie in the window, capped to the newest as they come: once
/// capped, a key older than every kept one is not even built (it would be dropped anyway).
/// A plain list pruned by selection, so remembering costs no ordered-map insert per record.
#[derive(Debug, Default)]
pub struct Emitted {
    keys: Vec<(i64, EmittedKey)>,
    floor: Option<i64>,
}

/// A key as it is remembered during a run: up to three integers as they are (the measures'
/// key: no text built per record), any other key as its [`KeySet`] text.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum EmittedKey {
    /// Integer key values (the first `len` of them).
    Ints { values: [i64; 3], len: u8 },
    /// The JSON text of the key values.
    Text(String),
}

impl EmittedKey {
    /// A key of one to three integers (more go the text way).
    pub fn ints(values: &[i64]) -> Self {
        match values {
            [_] | [_, _] | [_, _, _] => {
                let mut v = [0; 3];
                v[..values.len()].copy_from_slice(values);
                EmittedKey::Ints {
                    values: v,
                    len: values.len() as u8,
                }
            }
            _ => EmittedKey::Text(Value::from(values.to_vec()).to_string()),
        }
    }

    /// The [`KeySet`] text: the JSON array of the key values.
    pub fn into_text(self) -> String {
        match self {
            EmittedKey::Ints { values, len } => {
                Value::from(values[..usize::from(len)].to_vec()).to_string()
            }
            EmittedKey::Text(t) => t,
        }
    }
}

impl From<String> for EmittedKey {
    fn from(text: String) -> Self {
        EmittedKey::Text(text)
    }
}

impl Emitted {
    /// Remembers the key `key()` of a record with event time `t`.
    pub fn insert_with<K: Into<EmittedKey>>(&mut self, t: i64, key: impl FnOnce() -> K) {
        if self.floor.is_some_and(|f| t < f) {
            return;
        }
        if self.keys.len() >= PRUNE_AT {
            // The MAX_KEYS newest first (ties in any order), the rest dropped.
            self.keys
                .select_nth_unstable_by(MAX_KEYS - 1, |a, b| b.0.cmp(&a.0));
            self.keys.truncate(MAX_KEYS);
            self.floor = self.keys.iter().map(|(t, _)| *t).min();
            if self.floor.is_some_and(|f| t < f) {
                return;
            }
        }
        self.keys.push((t, key().into()));
    }

    /// The keys with their latest time: the [`MAX_KEYS`] newest (and any tied with the
    /// oldest of them, which [`remember`] settles as it always does), so no text is built for a
    /// key capping would drop.
    pub fn into_keys(mut self) -> KeySet {
        // One entry per key, its latest time: sorted by key, the latest first, in place.
        self.keys
            .sort_unstable_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(&a.0)));
        self.keys.dedup_by(|later, first| later.1 == first.1);
        if self.keys.len() > MAX_KEYS {
            self.keys
                .select_nth_unstable_by(MAX_KEYS - 1, |a, b| b.0.cmp(&a.0));
            let cutoff = self.keys[MAX_KEYS - 1].0;
            self.keys.retain(|(t, _)| *t >= cutoff);
        }
        let mut out = KeySet::new();
        for (t, k) in self.keys {
            let kept = out.entry(k.into_text()).or_insert(t);
            *kept = (*kept).max(t);
        }
        out
    }
}

/// How early a re-scan may come and still count as due: a tenth of its period, at most an
/// hour. A daily schedule (cron, `meltano run` at 06:00) starts each run a few seconds or
/// minutes apart, and the re-scan of yesterday's run is stamped with yesterday's start: without
/// slack a run that starts two minutes earlier than yesterday's would skip the day's re-scan.
/// The cost: a re-scan may run up to that much before its period is complete.
pub fn due_slack(every: i64) -> i64 {
    (every / 10).clamp(0, 3_600)
}

/// Is a re-scan due? (`every` seconds since the last one, less [`due_slack`], or never done.)
pub fn due(last: Option<i64>, now: i64, every: i64) -> bool {
    last.is_none_or(|l| now - l >= every - due_slack(every))
}

/// The outcome of a re-scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reconciled {
    /// Keys to emit as tombstones.
    pub deleted: Vec<String>,
    /// Keys to remember from now on.
    pub remembered: KeySet,
}

/// Remembered keys plus those emitted this run, pruned to `since`.
pub fn remember(mut remembered: KeySet, emitted: KeySet, since: i64) -> KeySet {
    remembered.extend(emitted);
    remembered.retain(|_, t| *t >= since);
    cap_newest(&mut remembered, MAX_KEYS);
    remembered
}

/// Compares what the tap remembers of the window starting at `since` with what Withings
/// returns for it now (`current`): remembered keys missing from `current` were deleted.
/// Keys Withings returns that the tap never emitted are not remembered (they will be emitted
/// by a later `lastupdate` read, and remembered then).
pub fn reconcile(remembered: &KeySet, current: &KeySet, since: i64) -> Reconciled {
    let mut deleted = Vec::new();
    let mut kept = KeySet::new();
    for (key, time) in remembered {
        if *time < since {
            continue;
        }
        match current.get(key) {
            Some(t) => {
                kept.insert(key.clone(), *t);
            }
            None => deleted.push(key.clone()),
        }
    }
    Reconciled {
        deleted,
        remembered: kept,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pretty_assertions::assert_eq;
    use serde_json::json;

    #[test]
    fn emitted_keys_keep_what_capping_everything_at_the_end_keeps() {
        // Times in a scrambled order, some repeated.
        let times: Vec<i64> = (0..40_000i64).map(|i| (i * 7_919) % 25_000).collect();
        let mut emitted = Emitted::default();
        let mut all = KeySet::new();
        let mut built = 0;
        for (i, t) in times.iter().enumerate() {
            emitted.insert_with(*t, || {
                built += 1;
                format!("[{i}]")
            });
            all.insert(format!("[{i}]"), *t);
        }
        // Pruned before it would grow: the list never doubles past PRUNE_AT.
        assert!(
            emitted.keys.capacity() <= PRUNE_AT,
            "{}",
            emitted.keys.capacity()
        );
        let since = 0;
        let kept = remember(KeySet::new(), emitted.into_keys(), since);
        let expected = remember(KeySet::new(), all.clone(), since);
        let newest = |k: &KeySet| {
            let mut t: Vec<i64> = k.values().copied().collect();
            t.sort_unstable();
            t
        };
        assert_eq!(kept.len(), MAX_KEYS);
        assert_eq!(newest(&kept), newest(&expected));
        assert!(
            built < times.len(),
            "keys older than the kept ones are not built"
        );
    }

    #[test]
    fn a_key_emitted_twice_is_remembered_once_with_its_latest_time() {
        let mut emitted = Emitted::default();
        emitted.insert_with(100, || EmittedKey::ints(&[7, 1]));
        emitted.insert_with(300, || EmittedKey::ints(&[8, 1]));
        emitted.insert_with(200, || EmittedKey::ints(&[7, 1]));
        assert_eq!(emitted.into_keys(), set(&[("[7,1]", 200), ("[8,1]", 300)]));
    }

    #[test]
    fn only_the_newest_keys_get_a_text_and_ties_at_the_cutoff_are_kept_for_remember() {
        let mut emitted = Emitted::default();
        // MAX_KEYS + 100 keys at distinct times, then 10 more at the time of the cutoff.
        for i in 0..(MAX_KEYS as i64 + 100) {
            emitted.insert_with(1_000 + i, || EmittedKey::ints(&[i]));
        }
        let cutoff = 1_000 + 100;
        for i in 0..10 {
            emitted.insert_with(cutoff, || EmittedKey::ints(&[-1 - i]));
        }
        let keys = emitted.into_keys();
        assert_eq!(keys.len(), MAX_KEYS + 10);
        assert!(keys.values().all(|t| *t >= cutoff));
        assert_eq!(remember(KeySet::new(), keys, 0).len(), MAX_KEYS);
    }

    #[test]
    fn integer_keys_give_the_text_of_their_json_array() {
        assert_eq!(EmittedKey::ints(&[3, -1, 7]).into_text(), "[3,-1,7]");
        assert_eq!(EmittedKey::ints(&[42]).into_text(), "[42]");
        assert_eq!(EmittedKey::ints(&[1, 2, 3, 4]).into_text(), "[1,2,3,4]");
        assert_eq!(
            EmittedKey::ints(&[3000000001, 11, -1]).into_text(),
            serde_json::json!([3000000001i64, 11, -1]).to_string()
        );
    }

    fn set(items: &[(&str, i64)]) -> KeySet {
        items.iter().map(|(k, t)| (k.to_string(), *t)).collect()
    }

    #[test]
    fn keys_round_trip_through_the_state() {
        let keys = set(&[("[1,2,-1]", 100), ("[3,4,5]", 200)]);
        let v = keys_to_state(&keys);
        assert_eq!(v, json!("100 [1,2,-1]\n200 [3,4,5]"));
        assert_eq!(keys_from_state(Some(&v)), keys);
        // The list form of earlier versions is still read.
        let listed = json!([[1, 2, -1, 100], [3, 4, 5, 200]]);
        assert_eq!(keys_from_state(Some(&listed)), keys);
        assert_eq!(
            keys_from_state(Some(&json!([[], "x", [7], [1, "t"]]))),
            KeySet::new()
        );
        assert_eq!(
            keys_from_state(Some(&json!("x\n100 []\nabc [1]\n7 nope\n\n5 [9]"))),
            set(&[("[9]", 5)])
        );
        assert_eq!(keys_from_state(Some(&json!(""))), KeySet::new());
        assert_eq!(keys_to_state(&KeySet::new()), json!(""));
        assert_eq!(keys_from_state(None), KeySet::new());
    }

    #[test]
    fn missing_remembered_keys_are_deletions() {
        let remembered = set(&[("[1]", 100), ("[2]", 150), ("[3]", 50)]);
        let current = set(&[("[1]", 100), ("[9]", 120)]);
        let r = reconcile(&remembered, &current, 80);
        assert_eq!(r.deleted, vec!["[2]".to_string()]);
        assert_eq!(r.remembered, set(&[("[1]", 100)]));
    }

    #[test]
    fn remembering_adds_this_runs_keys_and_forgets_old_ones() {
        let r = remember(
            set(&[("[1]", 10), ("[2]", 100)]),
            set(&[("[3]", 120), ("[4]", 5)]),
            50,
        );
        assert_eq!(r, set(&[("[2]", 100), ("[3]", 120)]));
    }

    #[test]
    fn the_remembered_set_is_capped_to_the_newest_keys() {
        let mut keys: KeySet = (0..10)
            .map(|i| (format!("[{i}]"), i64::from(i % 5)))
            .collect();
        cap_newest(&mut keys, 4);
        assert_eq!(keys.len(), 4);
        assert!(keys.values().all(|t| *t >= 3));
        let big: KeySet = (0..(MAX_KEYS as i64 + 10))
            .map(|i| (format!("[{i}]"), i))
            .collect();
        let r = remember(big, KeySet::new(), 0);
        assert_eq!(r.len(), MAX_KEYS);
        assert_eq!(r.values().min(), Some(&10));
    }

    #[test]
    fn rescans_are_periodic() {
        assert!(due(None, 100, 10));
        assert!(!due(Some(95), 100, 10));
        assert!(due(Some(90), 100, 10));
        assert!(
            due(Some(91), 100, 10),
            "a tenth of the period early is still due"
        );
        // Daily: a run that starts five minutes earlier than yesterday's still re-scans; one
        // two hours earlier does not.
        let day = 86_400;
        assert!(due(Some(0), day - 300, day));
        assert!(!due(Some(0), day - 7_200, day));
        assert_eq!(due_slack(day), 3_600);
        assert_eq!(due_slack(0), 0);
    }
}
