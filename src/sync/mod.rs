//! The stream tasks of a sync: for each user and each selected source, its pages or windows,
//! the records they give and the bookmarks they earn, sent to the writer through an
//! [`Emitter`]. Tasks of different users and sources run concurrently within the one request
//! budget. Every quirk decision is made by the pure modules (`plan`, `streams::*`,
//! `conform`); this file only sequences calls.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use chrono_tz::Tz;
use serde_json::Value;
use tracing::{info, warn};

use crate::api::client::{ApiClient, Body};
use crate::auth::session::{Session, SessionError};
use crate::conform::integer;
use crate::conform::Fields;
use crate::error::Error;
use crate::output::{Batch, Emitter, SendError, WriterGone};
use crate::plan::{
    changes_bookmark, resume_from, scanned_after, windows, Fetched, KeyHasher, Next, Pager,
    Progress, RecentKeys, Reread,
};
use crate::prefetch::Prefetch;
use crate::reconcile::{
    due, keys_from_state, keys_to_state, reconcile, remember, Emitted, EmittedKey, KeySet,
};
use crate::singer::fields::*;
use crate::streams::local_dates::{row_tz, Bounds};
use crate::streams::measure::{self, measures_records, MeasureRow, Part};
use crate::streams::sources::{
    fed_by, source_def, task_source, Builder, Changes, Read, Recordings, Scan, WindowStream,
    Windows, SOURCES,
};
use crate::streams::{find, Record, ReplyError, Source, StreamDef, STREAMS};
use crate::timefmt;

mod changes;
pub mod driver;
mod indexed;
mod measures;
mod pages;
mod recordings;
mod rescan;
mod single;
mod streamed;
mod windows;

use changes::*;
use indexed::*;
use measures::*;
use pages::*;
use recordings::*;
use rescan::*;
use single::*;
use streamed::*;
use windows::*;

/// The fixed inputs of one user's stream tasks.
#[derive(Clone)]
pub struct SyncCtx {
    pub client: Arc<ApiClient>,
    pub session: Arc<Session>,
    pub userid: i64,
    /// Epoch seconds: the start of a first sync.
    pub start: i64,
    /// Epoch seconds: the end of every range (end_date or now).
    pub end: i64,
    pub include_objectives: bool,
    /// The latest event time a row may have to be emitted: `end_date`, or no limit when it is
    /// unset (a row dated after the run started, from a device clock running ahead, is kept:
    /// dropping it while the bookmark moves past its `modified` would lose it).
    pub keep_until: i64,
    /// How far time-windowed streams re-read behind their progress (see [`resume_from`]).
    pub reread: Reread,
    /// Seconds of recent history re-scanned for deletions (0: off).
    pub reconcile_window: i64,
    /// Seconds between two deletion re-scans.
    pub reconcile_every: i64,
    /// Epoch seconds at the start of the run.
    pub now: i64,
    /// Walk every 24 h window of intraday and sleep get instead of reading where the daily
    /// indexes say data is (the `calendar_walk` setting).
    pub calendar_walk: bool,
}

/// A failure inside one stream's sync.
enum StreamFail {
    Session(SessionError),
    Reply(ReplyError),
    /// A record of this stream holds a value its schema cannot take.
    Record(&'static str, String),
    Writer,
    /// A table entry names a stream the stream table lacks (a defect of the tap).
    Unknown(String),
}

impl From<SessionError> for StreamFail {
    fn from(e: SessionError) -> Self {
        StreamFail::Session(e)
    }
}
impl From<ReplyError> for StreamFail {
    fn from(e: ReplyError) -> Self {
        StreamFail::Reply(e)
    }
}
impl From<WriterGone> for StreamFail {
    fn from(_: WriterGone) -> Self {
        StreamFail::Writer
    }
}
impl From<SendError> for StreamFail {
    fn from(e: SendError) -> Self {
        match e {
            SendError::Gone => StreamFail::Writer,
            SendError::BadValue { stream, error } => StreamFail::Record(stream, error.to_string()),
            SendError::Map { stream, message } => StreamFail::Record(stream, message),
        }
    }
}

type StreamResult = std::result::Result<(), StreamFail>;

/// Every source with a task of its own, in the order tasks are started (a child or, unless
/// `calendar_walk`, a windowed module is read by another source's task: see
/// [`task_source`]).
pub fn task_sources(calendar_walk: bool) -> impl Iterator<Item = Source> {
    SOURCES
        .iter()
        .map(|d| d.source)
        .filter(move |s| task_source(*s, calendar_walk) == *s)
}

/// The selected streams a source's task feeds (its own, its children's, and the windowed
/// streams its index locates: [`task_source`]).
pub fn wanted(source: Source, out: &Emitter, calendar_walk: bool) -> Vec<&'static str> {
    STREAMS
        .iter()
        .filter(|d| task_source(d.source, calendar_walk) == source)
        .map(|d| d.name)
        .filter(|n| out.is_selected(n))
        .collect()
}

/// The stream of a table entry's name; a name the stream table lacks is an error (the
/// source table's tests keep every name it holds in the stream table).
fn stream_def(name: &str) -> Result<&'static StreamDef, StreamFail> {
    find(name).ok_or_else(|| StreamFail::Unknown(name.to_string()))
}

impl SyncCtx {
    /// The extraction time of records read now (RFC 3339, the run's clock).
    fn now_text(&self) -> String {
        timefmt::rfc3339(self.client.clock().now().timestamp()).unwrap_or_default()
    }
}

fn hash_value(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => (1u8, b).hash(h),
        Value::Number(n) => match (n.as_i64(), n.as_u64()) {
            (Some(i), _) => (2u8, i).hash(h),
            (None, Some(u)) => (3u8, u).hash(h),
            _ => (4u8, n.as_f64().unwrap_or(0.0).to_bits()).hash(h),
        },
        Value::String(s) => (5u8, s).hash(h),
        Value::Array(a) => {
            (6u8, a.len()).hash(h);
            a.iter().for_each(|x| hash_value(x, h));
        }
        Value::Object(o) => {
            (7u8, o.len()).hash(h);
            o.iter().for_each(|(k, x)| {
                k.hash(h);
                hash_value(x, h);
            });
        }
    }
}

/// A 64-bit hash of a record's key values (for de-duplication across neighbouring pages).
fn record_key(def: &StreamDef, record: &Record) -> u64 {
    let mut h = KeyHasher::default();
    for k in def.keys {
        match record.get(*k) {
            Some(v) => hash_value(v, &mut h),
            None => 0xffu8.hash(&mut h),
        }
    }
    h.finish()
}

/// Whether every key property of a record is present and non-null. A record without one cannot
/// be emitted: it is passed on all the same, and the writer skips, counts and reports it, but
/// it takes no part in de-duplication, bookmarks or deletion tracking.
fn has_keys(def: &StreamDef, record: &Record) -> bool {
    def.keys
        .iter()
        .all(|k| record.get(*k).is_some_and(|v| !v.is_null()))
}

/// How a source of a user ended without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Finished {
    /// Everything Withings has was read.
    Complete,
    /// Withings refused the service (missing scope or plan): nothing was read, so a
    /// full-table stream must not be activated (that would delete the target's rows).
    Skipped,
}

/// Runs one source of one user; the error is worded for the user.
pub async fn run_source(ctx: SyncCtx, out: Emitter, source: Source) -> Result<Finished, Error> {
    let names = wanted(source, &out, ctx.calendar_walk);
    let Some(first) = names.first().copied() else {
        return Ok(Finished::Complete);
    };
    let userid = ctx.userid;
    info!(userid, streams = ?names, "Syncing.");
    let result = match source_def(source).read {
        Read::Measures { scan } => sync_measures(&ctx, &out, userid, scan).await,
        Read::Changes(changes) => match fed_by(source).next().filter(|_| !ctx.calendar_walk) {
            Some(windows) => sync_family(&ctx, &out, userid, changes, windows).await,
            None => sync_changes(&ctx, &out, userid, changes).await,
        },
        Read::Windows(windows) => sync_windows(&ctx, &out, userid, windows).await,
        Read::Recordings(recordings) => sync_relisted(&ctx, &out, userid, recordings).await,
        Read::Single {
            path,
            action,
            stream,
            build,
        } => sync_single(&ctx, &out, userid, path, action, stream, build).await,
        // Read by its parent's task.
        Read::Child(_) => Ok(()),
    };
    match result {
        Ok(()) => Ok(Finished::Complete),
        Err(StreamFail::Session(SessionError::Unauthorized { status, message })) => {
            warn!(
                userid,
                streams = ?names,
                "Skipping: Withings does not allow this app or user to call this service (status {status}: {message}); check the scopes granted with `tap-withings auth --status`."
            );
            Ok(Finished::Skipped)
        }
        Err(StreamFail::Session(e)) => Err(session_error(Some((first, userid)), e)),
        Err(StreamFail::Reply(e)) => Err(Error::Api(format!(
            "stream {first} (user {userid}): unusable reply: {e}"
        ))),
        Err(StreamFail::Record(stream, e)) => Err(Error::Api(format!(
            "stream {stream} (user {userid}): unusable reply: {e}"
        ))),
        Err(StreamFail::Writer) => Err(Error::Io("the output writer stopped".into())),
        Err(StreamFail::Unknown(name)) => Err(Error::Api(format!(
            "stream {first} (user {userid}): internal error: the source table names a stream `{name}` that does not exist"
        ))),
    }
}

/// Words a session failure for the user, naming the stream and user when known.
pub fn session_error(at: Option<(&str, i64)>, e: SessionError) -> Error {
    let place = at
        .map(|(s, u)| format!("stream {s} (user {u}): "))
        .unwrap_or_default();
    match e {
        SessionError::Auth(m) => Error::Auth(format!("{place}{m}")),
        SessionError::Unauthorized { status, message } => {
            Error::Api(format!("{place}not allowed (status {status}: {message})"))
        }
        SessionError::Failed(m) => Error::Api(format!("{place}{m}")),
        SessionError::Cancelled => Error::Interrupted,
    }
}

/// Says that a window's reply held records dated outside it (they were dropped: a reply must
/// not move a bookmark past what was asked).
fn outside_window(userid: i64, def: &StreamDef, outside: usize, ws: i64, we: i64) {
    if outside > 0 {
        warn!(
            userid,
            stream = def.name,
            outside,
            startdate = ws,
            enddate = we,
            "The reply held records dated outside the window asked for; dropped them."
        );
    }
}

/// A stream's bookmark and scan frontier when the run started.
fn progress(out: &Emitter, stream: &str, userid: i64) -> Progress {
    Progress {
        bookmark: out.bookmark(stream, userid),
        scanned_until: out
            .partition_field(stream, userid, FIELD_SCANNED_UNTIL)
            .and_then(|v| integer(&v)),
    }
}

/// A record's key values without userid, as JSON text (the form kept in the state).
fn key_text(def: &StreamDef, record: &Record) -> String {
    Value::Array(
        def.keys
            .iter()
            .filter(|k| **k != "userid")
            .map(|k| record.get(*k).cloned().unwrap_or(Value::Null))
            .collect(),
    )
    .to_string()
}

/// Remembers an emitted record whose event time `t` lies in the deletion-detection window.
fn track<K: Into<EmittedKey>>(
    ctx: &SyncCtx,
    t: Option<i64>,
    key: impl FnOnce() -> K,
    emitted: &mut Emitted,
) {
    if ctx.reconcile_window <= 0 {
        return;
    }
    if let Some(t) = t.filter(|t| *t >= ctx.now - ctx.reconcile_window) {
        emitted.insert_with(t, key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::streams::{activity, sleep, workouts};
    use pretty_assertions::assert_eq;

    fn body(text: &str) -> Value {
        let envelope: Value = serde_json::from_str(text).unwrap();
        envelope["body"].clone()
    }

    #[test]
    fn rows_of_the_documented_shapes_without_their_key_are_told_apart() {
        // (stream, builder, fixture, rows, rows with their key)
        let cases: [(&str, Builder, &str, usize, usize); 3] = [
            (
                "workouts",
                workouts::workouts_records,
                include_str!("../../tests/fixtures/keyless/getworkouts.json"),
                3,
                1,
            ),
            (
                "sleep_summaries",
                sleep::sleep_summaries_records,
                include_str!("../../tests/fixtures/keyless/getsummary.json"),
                2,
                1,
            ),
            (
                "activity",
                activity::activity_records,
                include_str!("../../tests/fixtures/keyless/getactivity.json"),
                4,
                2,
            ),
        ];
        for (stream, build, fixture, rows, keyed) in cases {
            let def = stream_def(stream).ok().unwrap();
            let records = build(&body(fixture), 7).unwrap();
            assert_eq!(
                records.len(),
                rows,
                "{stream}: no row is dropped by the builder"
            );
            let with_keys = records.iter().filter(|r| has_keys(def, r)).count();
            assert_eq!(with_keys, keyed, "{stream}");
        }
    }
}
