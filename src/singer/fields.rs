//! The names of the fields a stream's STATE partition holds besides its bookmark
//! (`replication_key_value`), all in one place: every module that reads or writes one names it
//! from here, and `every_field_name_is_distinct` keeps them apart.

/// The partition field holding the latest `modified` of category 2 (user objectives) measures
/// emitted; the bookmark (`replication_key_value`) is category 1's. Apart, so that switching
/// `include_objectives` on later backfills the objectives from `start_date`.
pub const FIELD_OBJECTIVES_MODIFIED: &str = "objectives_modified";

/// The partition field of a stream fed by an index (intraday_activity, sleep_series,
/// sleep_vitals): the latest `modified` of the index rows whose windows were all read and
/// written. The next run asks the index for `lastupdate` = this mark.
pub const FIELD_INDEX_MODIFIED: &str = "index_modified";

/// The state field of a time-windowed or listed stream's partition that says how far its
/// reads went: every event before it has been read (the end of the last window whose reply
/// was fully written), whether or not it held records.
pub const FIELD_SCANNED_UNTIL: &str = "scanned_until";

/// The partition field of a recordings stream listing the recordings it emitted within the
/// re-listed horizon (the shape of [`FIELD_FETCHED`]), so a recording re-listed is not
/// emitted again.
pub const FIELD_LISTED: &str = "listed_signals";

/// The partition field saying from which recording time on the stored ids are complete (the
/// oldest recording the last run listed). Its absence marks a state written before
/// re-listing: rows older than where that state resumed were handled then.
pub const FIELD_LISTED_FROM: &str = "listed_from";

/// The state field of a signals stream's partition listing the signals already fetched, as
/// `[[signalid, recording timestamp], ...]`, so a recording re-read within the lookback does
/// not cost its signal call again.
pub const FIELD_FETCHED: &str = "fetched_signals";

/// The partition field holding the remembered keys.
pub const FIELD_KEYS: &str = "recent_keys";

/// The partition field holding the time of the last re-scan.
pub const FIELD_RECONCILED_AT: &str = "reconciled_at";

/// Every field name above.
pub const ALL: &[&str] = &[
    FIELD_OBJECTIVES_MODIFIED,
    FIELD_INDEX_MODIFIED,
    FIELD_SCANNED_UNTIL,
    FIELD_LISTED,
    FIELD_LISTED_FROM,
    FIELD_FETCHED,
    FIELD_KEYS,
    FIELD_RECONCILED_AT,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_field_name_is_distinct_and_none_is_the_bookmark() {
        let mut names = ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len());
        assert!(!ALL.contains(&"replication_key_value") && !ALL.contains(&"context"));
    }
}
