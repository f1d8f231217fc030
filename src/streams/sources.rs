//! How each Withings source is fetched: the table that drives the sync. A stream (in
//! [`super::STREAMS`]) says what it is; its source, here, says which call feeds it and how that
//! call is read (full table, `lastupdate` changes, 24 h windows placed by an index, listed
//! recordings with a signal child), with its deletion re-scan. The sync dispatches on
//! [`SourceDef::read`] and selects streams by [`task_source`]; nothing else names a source.
//! Pure data.

use serde_json::Value;

use super::measure::measures_records;
use super::{activity, heart, sleep, user, workouts};
use super::{Record, ReplyError, Source};

/// Builds a module's records from a reply body for a user.
pub type Builder = fn(&Value, i64) -> std::result::Result<Vec<Record>, ReplyError>;

/// A module read by YMD range on a first sync and by `lastupdate` afterwards, offset-paged.
pub struct Changes {
    pub stream: &'static str,
    pub path: &'static str,
    pub action: &'static str,
    pub list_key: &'static str,
    pub data_fields: &'static [&'static str],
    pub build: Builder,
    /// The row's instant that Withings' YMD filter dates it by (None: a day without one).
    pub instant_field: Option<&'static str>,
    /// How deletions are detected (None: rows of this module are never deleted).
    pub scan: Option<&'static Scan>,
}

pub const CHANGES_ACTIVITY: Changes = Changes {
    stream: "activity",
    path: "/v2/measure",
    action: "getactivity",
    list_key: "activities",
    data_fields: activity::GETACTIVITY_DATA_FIELDS,
    build: activity::activity_records,
    instant_field: None,
    scan: None,
};
pub const CHANGES_WORKOUTS: Changes = Changes {
    stream: "workouts",
    path: "/v2/measure",
    action: "getworkouts",
    list_key: "series",
    data_fields: workouts::GETWORKOUTS_DATA_FIELDS,
    build: workouts::workouts_records,
    instant_field: Some("startdate"),
    scan: Some(&SCAN_WORKOUTS),
};
pub const CHANGES_SUMMARIES: Changes = Changes {
    stream: "sleep_summaries",
    path: "/v2/sleep",
    action: "getsummary",
    list_key: "series",
    data_fields: sleep::GETSUMMARY_DATA_FIELDS,
    build: sleep::sleep_summaries_records,
    instant_field: Some("enddate"),
    scan: Some(&SCAN_SUMMARIES),
};

/// One stream fed by a windowed source, with the record field its bookmark follows.
pub struct WindowStream {
    pub stream: &'static str,
    pub build: Builder,
    pub time_field: &'static str,
    /// Whether `time_field` must lie in the window asked for (a vital sample of a segment
    /// that starts in the window may lie after its end).
    pub in_window: bool,
}

/// A module read by epoch windows of at most 24 h (no paging).
pub struct Windows {
    pub path: &'static str,
    pub action: &'static str,
    pub data_fields: &'static [&'static str],
    pub streams: &'static [WindowStream],
    /// The paged module whose rows say where this one's data is (unless `calendar_walk`).
    pub index: Source,
    /// What an index row is: a local day (getactivity) or a session (getsummary).
    pub index_rows: IndexRows,
}

/// What a row of an index module locates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexRows {
    /// A local calendar day (`date`, `timezone`).
    Days,
    /// A session (`startdate`, `enddate`).
    Sessions,
}

pub const WINDOWS_INTRADAY: Windows = Windows {
    path: "/v2/measure",
    action: "getintradayactivity",
    data_fields: activity::GETINTRADAYACTIVITY_DATA_FIELDS,
    streams: &[WindowStream {
        stream: "intraday_activity",
        build: activity::intraday_activity_records,
        time_field: "timestamp",
        in_window: true,
    }],
    index: Source::Getactivity,
    index_rows: IndexRows::Days,
};
pub const WINDOWS_SLEEP: Windows = Windows {
    path: "/v2/sleep",
    action: "get",
    data_fields: sleep::SLEEP_GET_DATA_FIELDS,
    streams: &[
        WindowStream {
            stream: "sleep_series",
            build: sleep::sleep_series_records,
            time_field: "startdate",
            in_window: true,
        },
        WindowStream {
            stream: "sleep_vitals",
            build: sleep::sleep_vitals_records,
            time_field: "timestamp",
            in_window: false,
        },
    ],
    index: Source::Getsummary,
    index_rows: IndexRows::Sessions,
};

pub type SignalBuilder = fn(&Value, i64, i64) -> std::result::Result<Vec<Record>, ReplyError>;

/// A list of recordings (epoch range, newest first, offset pages) whose signals are fetched
/// once per recording.
pub struct Recordings {
    pub recordings: &'static str,
    pub signals: &'static str,
    pub path: &'static str,
    pub build: Builder,
    pub build_signal: SignalBuilder,
    /// Extra parameters of the signal call.
    pub signal_params: &'static [(&'static str, &'static str)],
}

pub const ECG: Recordings = Recordings {
    recordings: "ecg_recordings",
    signals: "ecg_signals",
    path: "/v2/heart",
    build: heart::ecg_recordings_records,
    build_signal: heart::ecg_signals_records,
    signal_params: heart::HEART_GET_OPTIONS,
};
pub const STETHO: Recordings = Recordings {
    recordings: "stetho_recordings",
    signals: "stetho_signals",
    path: "/v2/stetho",
    build: heart::stetho_recordings_records,
    build_signal: heart::stetho_signals_records,
    signal_params: &[],
};

/// How a module is re-scanned by date range for deletion detection.
pub struct Scan {
    pub path: &'static str,
    pub action: &'static str,
    pub list_key: &'static str,
    /// The record field holding the event time (epoch seconds).
    pub time_field: &'static str,
    /// Whether the module takes YMD dates (else epochs).
    pub ymd: bool,
    pub build: Builder,
}

pub fn measures_only(body: &Value, userid: i64) -> std::result::Result<Vec<Record>, ReplyError> {
    measures_records(body, userid).map(|(records, _)| records)
}

pub const SCAN_MEASURES: Scan = Scan {
    path: "/measure",
    action: "getmeas",
    list_key: "measuregrps",
    time_field: "date",
    ymd: false,
    build: measures_only,
};
pub const SCAN_WORKOUTS: Scan = Scan {
    path: "/v2/measure",
    action: "getworkouts",
    list_key: "series",
    time_field: "startdate",
    ymd: true,
    build: workouts::workouts_records,
};
pub const SCAN_SUMMARIES: Scan = Scan {
    path: "/v2/sleep",
    action: "getsummary",
    list_key: "series",
    time_field: "startdate",
    ymd: true,
    build: sleep::sleep_summaries_records,
};

/// How a source is read.
#[derive(Clone, Copy)]
pub enum Read {
    /// getmeas: `lastupdate` and offset pages, read typed (`streams::measure`); categories 1
    /// and 2 keep their own bookmarks; deletions re-scanned by `scan`.
    Measures { scan: &'static Scan },
    /// A YMD range on a first sync, `lastupdate` after, offset pages.
    Changes(&'static Changes),
    /// Epoch windows of at most 24 h where its index lists data (or the calendar walk).
    Windows(&'static Windows),
    /// Recordings listed newest first, each with a signal fetched once.
    Recordings(&'static Recordings),
    /// A child of a listed source: read by that source's task.
    Child(Source),
    /// One call, the whole table.
    Single {
        path: &'static str,
        action: &'static str,
        stream: &'static str,
        build: Builder,
    },
}

/// A Withings source and how it is read.
pub struct SourceDef {
    pub source: Source,
    pub read: Read,
}

/// Every source, in the order their tasks start.
pub static SOURCES: &[SourceDef] = &[
    SourceDef {
        source: Source::Getmeas,
        read: Read::Measures {
            scan: &SCAN_MEASURES,
        },
    },
    SourceDef {
        source: Source::Getactivity,
        read: Read::Changes(&CHANGES_ACTIVITY),
    },
    SourceDef {
        source: Source::Getintradayactivity,
        read: Read::Windows(&WINDOWS_INTRADAY),
    },
    SourceDef {
        source: Source::Getworkouts,
        read: Read::Changes(&CHANGES_WORKOUTS),
    },
    SourceDef {
        source: Source::SleepGet,
        read: Read::Windows(&WINDOWS_SLEEP),
    },
    SourceDef {
        source: Source::Getsummary,
        read: Read::Changes(&CHANGES_SUMMARIES),
    },
    SourceDef {
        source: Source::HeartList,
        read: Read::Recordings(&ECG),
    },
    SourceDef {
        source: Source::HeartGet,
        read: Read::Child(Source::HeartList),
    },
    SourceDef {
        source: Source::StethoList,
        read: Read::Recordings(&STETHO),
    },
    SourceDef {
        source: Source::StethoGet,
        read: Read::Child(Source::StethoList),
    },
    SourceDef {
        source: Source::Getdevice,
        read: Read::Single {
            path: "/v2/user",
            action: "getdevice",
            stream: "devices",
            build: user::devices_records,
        },
    },
    SourceDef {
        source: Source::Getgoals,
        read: Read::Single {
            path: "/v2/user",
            action: "getgoals",
            stream: "goals",
            build: user::goals_records,
        },
    },
];

/// The table entry of a source.
pub fn source_def(source: Source) -> &'static SourceDef {
    // Every Source has an entry: `every_source_has_one_entry` below.
    SOURCES
        .iter()
        .find(|d| d.source == source)
        .unwrap_or(&SOURCES[0])
}

/// The source whose task reads `source`'s streams: a child's list, a windowed module's index
/// (unless `calendar_walk`), else the source itself.
pub fn task_source(source: Source, calendar_walk: bool) -> Source {
    match source_def(source).read {
        Read::Child(parent) => parent,
        Read::Windows(w) if !calendar_walk => w.index,
        _ => source,
    }
}

/// The windowed modules an index source locates data for.
pub fn fed_by(index: Source) -> impl Iterator<Item = &'static Windows> {
    SOURCES.iter().filter_map(move |d| match d.read {
        Read::Windows(w) if w.index == index => Some(w),
        _ => None,
    })
}

/// How a stream's records are built from a reply body: from the body and the user, or (a
/// signal) from the body, the user and the recording's id.
#[derive(Clone, Copy)]
pub enum StreamBuilder {
    Rows(Builder),
    Signal(SignalBuilder),
}

/// Every stream with the builder of its records, from the table (the fuzz targets and the
/// conformance sweep iterate over this, not over a list of their own).
pub fn stream_builders() -> Vec<(&'static str, StreamBuilder)> {
    let mut out = Vec::new();
    for def in SOURCES {
        match def.read {
            Read::Measures { scan } => out.push(("measures", StreamBuilder::Rows(scan.build))),
            Read::Changes(c) => out.push((c.stream, StreamBuilder::Rows(c.build))),
            Read::Windows(w) => {
                for ws in w.streams {
                    out.push((ws.stream, StreamBuilder::Rows(ws.build)));
                }
            }
            Read::Recordings(r) => {
                out.push((r.recordings, StreamBuilder::Rows(r.build)));
                out.push((r.signals, StreamBuilder::Signal(r.build_signal)));
            }
            Read::Child(_) => {}
            Read::Single { stream, build, .. } => out.push((stream, StreamBuilder::Rows(build))),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::STREAMS;

    #[test]
    fn every_stream_has_exactly_one_builder() {
        let builders = stream_builders();
        for def in STREAMS {
            let n = builders.iter().filter(|(s, _)| *s == def.name).count();
            assert_eq!(n, 1, "{}: one builder", def.name);
        }
        assert_eq!(builders.len(), STREAMS.len());
    }

    #[test]
    fn every_source_has_one_entry_and_every_stream_a_source() {
        for def in STREAMS {
            let n = SOURCES.iter().filter(|s| s.source == def.source).count();
            assert_eq!(n, 1, "{}: its source has one entry", def.name);
        }
        for (i, a) in SOURCES.iter().enumerate() {
            assert!(
                SOURCES[i + 1..].iter().all(|b| b.source != a.source),
                "{:?} is listed twice",
                a.source
            );
        }
    }

    #[test]
    fn the_table_names_only_streams_that_exist_and_feed_from_it() {
        let exists = |name: &str| {
            crate::streams::find(name).unwrap_or_else(|| panic!("{name}: no such stream"))
        };
        for src in SOURCES {
            match src.read {
                Read::Changes(c) => assert_eq!(exists(c.stream).source, src.source),
                Read::Windows(w) => {
                    for s in w.streams {
                        assert_eq!(exists(s.stream).source, src.source);
                    }
                    assert!(matches!(source_def(w.index).read, Read::Changes(_)));
                    assert_eq!(fed_by(w.index).count(), 1);
                }
                Read::Recordings(r) => {
                    assert_eq!(exists(r.recordings).source, src.source);
                    assert_eq!(exists(r.signals).parent, Some(r.recordings));
                    assert_eq!(task_source(exists(r.signals).source, false), src.source);
                }
                Read::Single { stream, .. } => assert_eq!(exists(stream).source, src.source),
                Read::Measures { .. } => assert_eq!(exists("measures").source, src.source),
                Read::Child(parent) => {
                    let child = STREAMS.iter().find(|d| d.source == src.source).unwrap();
                    let p = exists(child.parent.expect("a child stream names its parent"));
                    assert_eq!(p.source, parent);
                }
            }
        }
    }

    #[test]
    fn windowed_streams_are_read_by_their_index_unless_the_calendar_is_walked() {
        assert_eq!(
            task_source(Source::Getintradayactivity, false),
            Source::Getactivity
        );
        assert_eq!(task_source(Source::SleepGet, false), Source::Getsummary);
        assert_eq!(
            task_source(Source::Getintradayactivity, true),
            Source::Getintradayactivity
        );
        assert_eq!(task_source(Source::HeartGet, true), Source::HeartList);
        assert_eq!(task_source(Source::Getmeas, false), Source::Getmeas);
    }
}
