//! The imperative shell of a sync: for the user, every selected source, its pages or windows,
//! the records they give, and the bookmarks they earn, written through [`Output`]. Every
//! quirk decision is made by the pure modules (`plan`, `streams::*`, `conform`); this file
//! only sequences calls.

use std::collections::{BTreeMap, HashSet};
use std::hash::{Hash, Hasher};
use std::io::Write;

use serde_json::Value;
use tracing::{info, warn};

use crate::api::client::ApiClient;
use crate::auth::session::{Session, SessionError};
use crate::conform::{ConformError, Flattening, OutputPlan};
use crate::error::{Error, Result};
use crate::plan::{windows, Next, Pager, RecentKeys};
use crate::singer::catalog::Selection;
use crate::singer::message::MessageWriter;
use crate::singer::state::State;
use crate::streams::measure::{lenient_i64, measures_records};
use crate::streams::{activity, heart, sleep, user, workouts};
use crate::streams::{find, Record, ReplyError, Source, StreamDef, STREAMS};
use crate::timefmt;

/// Per-stream counters for the summary.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StreamCounts {
    pub records: u64,
    pub skipped: u64,
}

/// Everything written to stdout goes through here: SCHEMA once per stream, conformed RECORDs,
/// and STATE after each bookmark advance (flushed).
pub struct Output<W: Write> {
    writer: MessageWriter<W>,
    state: State,
    plans: BTreeMap<&'static str, OutputPlan>,
    schema_sent: HashSet<&'static str>,
    counts: BTreeMap<&'static str, StreamCounts>,
    buf: Vec<u8>,
    warned: HashSet<String>,
}

impl<W: Write> Output<W> {
    /// Compiles an output plan for every selected stream.
    pub fn new(
        writer: MessageWriter<W>,
        state: State,
        selection: &Selection,
        flattening: Flattening,
    ) -> Result<Self> {
        let mut plans = BTreeMap::new();
        for def in STREAMS.iter().filter(|d| selection.is_selected(d.name)) {
            let plan = OutputPlan::new(
                &def.schema(),
                def.keys,
                selection.properties(def.name),
                flattening,
            )
            .map_err(|e| Error::input(format!("stream {}: {e}", def.name)))?;
            plans.insert(def.name, plan);
        }
        Ok(Output {
            writer,
            state,
            plans,
            schema_sent: HashSet::new(),
            counts: BTreeMap::new(),
            buf: Vec::with_capacity(64 * 1024),
            warned: HashSet::new(),
        })
    }

    /// Is the stream selected?
    pub fn is_selected(&self, stream: &str) -> bool {
        self.plans.contains_key(stream)
    }

    /// Per-stream counters so far.
    pub fn counts(&self) -> &BTreeMap<&'static str, StreamCounts> {
        &self.counts
    }

    fn warn_once(&mut self, key: String, message: impl FnOnce() -> String) {
        if self.warned.insert(key) {
            warn!("{}", message());
        }
    }

    /// Writes the records of a selected stream (SCHEMA first if not yet sent).
    pub fn emit(
        &mut self,
        def: &'static StreamDef,
        records: &[Record],
        time_extracted: &str,
    ) -> Result<()> {
        let Some(plan) = self.plans.get(def.name) else {
            return Ok(());
        };
        if records.is_empty() {
            return Ok(());
        }
        if self.schema_sent.insert(def.name) {
            let bookmark: Vec<&str> = def.replication_key().into_iter().collect();
            self.writer
                .schema(def.name, plan.schema(), def.keys, &bookmark)?;
        }
        let mut coerced = Vec::new();
        let mut written = 0u64;
        let mut skipped = Vec::new();
        for record in records {
            self.buf.clear();
            coerced.clear();
            match plan.write(record, &mut self.buf, &mut coerced) {
                Ok(()) => {
                    self.writer.record(def.name, &self.buf, time_extracted)?;
                    written += 1;
                }
                Err(ConformError::MissingKey(key)) => skipped.push(key),
            }
            for field in coerced.drain(..) {
                if self.warned.insert(format!("{}.{}", def.name, field)) {
                    warn!("stream {}: field `{field}` had a value of an unexpected type; written as null", def.name);
                }
            }
        }
        for key in &skipped {
            self.warn_once(format!("{}#{key}", def.name), || {
                format!(
                    "stream {}: skipped a record without its key property `{key}`",
                    def.name
                )
            });
        }
        let c = self.counts.entry(def.name).or_default();
        c.records += written;
        c.skipped += skipped.len() as u64;
        Ok(())
    }

    /// The stored bookmark of a user's stream, as epoch seconds.
    pub fn bookmark(&self, stream: &str, userid: i64) -> Option<i64> {
        match self.state.bookmark(stream, userid)? {
            Value::String(s) => timefmt::parse_rfc3339(s).or_else(|| s.parse().ok()),
            Value::Number(n) => n.as_i64(),
            _ => None,
        }
    }

    /// Moves a user's bookmark forward (never back) and writes STATE.
    pub fn advance(&mut self, def: &StreamDef, userid: i64, epoch: i64) -> Result<()> {
        let Some(key) = def.replication_key() else {
            return Ok(());
        };
        if self.bookmark(def.name, userid).is_some_and(|b| b >= epoch) {
            return Ok(());
        }
        let Some(text) = timefmt::rfc3339(epoch) else {
            return Ok(());
        };
        self.state
            .set_bookmark(def.name, userid, key, Value::String(text), &[]);
        self.writer.state(&self.state.to_value())
    }

    /// Writes the final STATE and flushes; gives the writer back.
    pub fn finish(mut self) -> Result<W> {
        self.writer.state(&self.state.to_value())?;
        self.writer.into_inner()
    }
}

/// The fixed inputs of a sync.
pub struct SyncCtx<'a> {
    pub client: &'a ApiClient,
    pub session: &'a Session,
    /// Epoch seconds: the start of a first sync.
    pub start: i64,
    /// Epoch seconds: the end of every range (end_date or now).
    pub end: i64,
    pub include_objectives: bool,
}

/// A failure inside one stream's sync.
enum StreamFail {
    Session(SessionError),
    Reply(ReplyError),
    Output(Error),
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
impl From<Error> for StreamFail {
    fn from(e: Error) -> Self {
        StreamFail::Output(e)
    }
}

type StreamResult = std::result::Result<(), StreamFail>;

fn stream_def(name: &str) -> &'static StreamDef {
    // Every name passed here is a literal from STREAMS; the streams table test covers them.
    find(name).unwrap_or(&STREAMS[0])
}

fn now_text() -> String {
    timefmt::rfc3339(chrono::Utc::now().timestamp()).unwrap_or_default()
}

fn page_fingerprint(body: &Value) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.to_string().hash(&mut h);
    h.finish()
}

/// How many rows a page holds (offsets count rows of this list).
fn page_rows(body: &Value, list_key: &str) -> usize {
    match body.get(list_key) {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(o)) if !o.is_empty() => 1,
        _ => 0,
    }
}

fn record_key(def: &StreamDef, record: &Record) -> String {
    let mut key = String::new();
    for k in def.keys {
        key.push_str(&record.get(*k).map_or_else(String::new, Value::to_string));
        key.push('\u{1f}');
    }
    key
}

/// Syncs every selected stream of the session's user, unless `done` already has the user
/// (two configured tokens of one account). Returns the userid.
pub async fn sync_user<W: Write>(
    ctx: &SyncCtx<'_>,
    out: &mut Output<W>,
    done: &mut std::collections::BTreeSet<i64>,
) -> Result<i64> {
    let known = ctx.session.userid().await;
    let (_, userid) = ctx
        .session
        .access(ctx.client)
        .await
        .map_err(|e| session_error(None, e))?;
    if known.is_none() && !done.insert(userid) {
        warn!(
            userid,
            "Two configured tokens belong to the same user; syncing it once."
        );
        return Ok(userid);
    }
    let sources = [
        Source::Getmeas,
        Source::Getactivity,
        Source::Getintradayactivity,
        Source::Getworkouts,
        Source::SleepGet,
        Source::Getsummary,
        Source::HeartList,
        Source::Getdevice,
        Source::Getgoals,
    ];
    for source in sources {
        let wanted: Vec<&str> = STREAMS
            .iter()
            .filter(|d| {
                d.source == source || (source == Source::HeartList && d.source == Source::HeartGet)
            })
            .map(|d| d.name)
            .filter(|n| out.is_selected(n))
            .collect();
        if wanted.is_empty() {
            continue;
        }
        info!(userid, streams = ?wanted, "Syncing.");
        let result = match source {
            Source::Getmeas => sync_measures(ctx, out, userid).await,
            Source::Getactivity => sync_changes(ctx, out, userid, &CHANGES_ACTIVITY).await,
            Source::Getworkouts => sync_changes(ctx, out, userid, &CHANGES_WORKOUTS).await,
            Source::Getsummary => sync_changes(ctx, out, userid, &CHANGES_SUMMARIES).await,
            Source::Getintradayactivity => sync_windows(ctx, out, userid, &WINDOWS_INTRADAY).await,
            Source::SleepGet => sync_windows(ctx, out, userid, &WINDOWS_SLEEP).await,
            Source::HeartList => sync_ecg(ctx, out, userid).await,
            Source::Getdevice => {
                sync_single(
                    ctx,
                    out,
                    userid,
                    "devices",
                    "getdevice",
                    user::devices_records,
                )
                .await
            }
            Source::Getgoals => {
                sync_single(ctx, out, userid, "goals", "getgoals", user::goals_records).await
            }
            Source::HeartGet => Ok(()),
        };
        match result {
            Ok(()) => {}
            Err(StreamFail::Session(SessionError::Unauthorized { status, message })) => {
                warn!(
                    userid,
                    streams = ?wanted,
                    "Skipping: Withings does not allow this app or user to call this service (status {status}: {message}); check the scopes granted with `tap-withings auth --status`."
                );
            }
            Err(StreamFail::Session(e)) => return Err(session_error(Some((wanted[0], userid)), e)),
            Err(StreamFail::Reply(e)) => {
                return Err(Error::Api(format!(
                    "stream {} (user {userid}): unusable reply: {e}",
                    wanted[0]
                )))
            }
            Err(StreamFail::Output(e)) => return Err(e),
        }
    }
    Ok(userid)
}

fn session_error(at: Option<(&str, i64)>, e: SessionError) -> Error {
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

async fn sync_measures<W: Write>(
    ctx: &SyncCtx<'_>,
    out: &mut Output<W>,
    userid: i64,
) -> StreamResult {
    let def = stream_def("measures");
    // lastupdate returns groups changed strictly after it (Withings' own incremental recipe:
    // store max(modified), ask lastupdate=max).
    let since = out.bookmark(def.name, userid).unwrap_or(ctx.start - 1);
    let categories: &[&str] = if ctx.include_objectives {
        &["1", "2"]
    } else {
        &["1"]
    };
    let mut max_seen: Option<i64> = None;
    for category in categories {
        let mut pager = Pager::new();
        let mut recent = RecentKeys::default();
        loop {
            let mut params = vec![
                ("action", "getmeas".to_string()),
                ("category", category.to_string()),
                ("lastupdate", since.to_string()),
            ];
            if pager.offset() > 0 {
                params.push(("offset", pager.offset().to_string()));
            }
            let body = ctx.session.call(ctx.client, "/measure", &params).await?;
            let time_extracted = now_text();
            let (records, skipped) = measures_records(&body, userid)?;
            for reason in skipped {
                warn!(userid, "measures: skipped {reason}");
            }
            recent.next_page();
            let mut fresh = Vec::with_capacity(records.len());
            for r in records {
                if !recent.insert(record_key(def, &r)) {
                    continue;
                }
                let date = r.get("date").and_then(lenient_i64);
                if date.is_some_and(|d| d < ctx.start || d > ctx.end) {
                    continue;
                }
                if let Some(t) = crate::streams::measure::change_time(&r) {
                    max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
                }
                fresh.push(r);
            }
            out.emit(def, &fresh, &time_extracted)?;
            match pager.advance(page_rows(&body, "measuregrps"), page_fingerprint(&body)) {
                Next::Offset(_) => continue,
                Next::Done => break,
                Next::Repeated => {
                    warn!(
                        userid,
                        offset = pager.offset(),
                        "measures: a page repeated the previous one; stopping this chain"
                    );
                    break;
                }
            }
        }
    }
    // Pages come newest first under a date range and by `modified` under lastupdate; either
    // way the bookmark moves only once every page of the chain is written.
    if let Some(m) = max_seen {
        out.advance(def, userid, m)?;
    }
    Ok(())
}

type Builder = fn(&Value, i64) -> std::result::Result<Vec<Record>, ReplyError>;

/// A module read by YMD range on a first sync and by `lastupdate` afterwards, offset-paged.
struct Changes {
    stream: &'static str,
    path: &'static str,
    action: &'static str,
    list_key: &'static str,
    data_fields: &'static [&'static str],
    build: Builder,
}

const CHANGES_ACTIVITY: Changes = Changes {
    stream: "activity",
    path: "/v2/measure",
    action: "getactivity",
    list_key: "activities",
    data_fields: activity::GETACTIVITY_DATA_FIELDS,
    build: activity::activity_records,
};
const CHANGES_WORKOUTS: Changes = Changes {
    stream: "workouts",
    path: "/v2/measure",
    action: "getworkouts",
    list_key: "series",
    data_fields: workouts::GETWORKOUTS_DATA_FIELDS,
    build: workouts::workouts_records,
};
const CHANGES_SUMMARIES: Changes = Changes {
    stream: "sleep_summaries",
    path: "/v2/sleep",
    action: "getsummary",
    list_key: "series",
    data_fields: sleep::GETSUMMARY_DATA_FIELDS,
    build: sleep::sleep_summaries_records,
};

async fn sync_changes<W: Write>(
    ctx: &SyncCtx<'_>,
    out: &mut Output<W>,
    userid: i64,
    spec: &Changes,
) -> StreamResult {
    let def = stream_def(spec.stream);
    let bookmark = out.bookmark(def.name, userid);
    let range = match bookmark {
        Some(b) => vec![("lastupdate", b.to_string())],
        // YMD dates are the user's local calendar days: widening the UTC range by a day on
        // each side covers every timezone (UTC-12 to UTC+14).
        None => vec![
            (
                "startdateymd",
                timefmt::ymd(ctx.start.div_euclid(86_400) - 1),
            ),
            ("enddateymd", timefmt::ymd(ctx.end.div_euclid(86_400) + 1)),
        ],
    };
    let mut pager = Pager::new();
    let mut recent = RecentKeys::default();
    let mut max_seen: Option<i64> = None;
    loop {
        let mut params = vec![("action", spec.action.to_string())];
        params.extend(range.iter().cloned());
        params.push(("data_fields", spec.data_fields.join(",")));
        if pager.offset() > 0 {
            params.push(("offset", pager.offset().to_string()));
        }
        let body = ctx.session.call(ctx.client, spec.path, &params).await?;
        let time_extracted = now_text();
        let records = (spec.build)(&body, userid)?;
        recent.next_page();
        let mut fresh = Vec::with_capacity(records.len());
        for r in records {
            if !recent.insert(record_key(def, &r)) {
                continue;
            }
            if let Some(t) = r.get("modified").and_then(lenient_i64) {
                max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
            }
            fresh.push(r);
        }
        out.emit(def, &fresh, &time_extracted)?;
        match pager.advance(page_rows(&body, spec.list_key), page_fingerprint(&body)) {
            Next::Offset(_) => continue,
            Next::Done => break,
            Next::Repeated => {
                warn!(
                    userid,
                    stream = def.name,
                    offset = pager.offset(),
                    "A page repeated the previous one; stopping."
                );
                break;
            }
        }
    }
    if let Some(m) = max_seen {
        out.advance(def, userid, m)?;
    }
    Ok(())
}

/// One stream fed by a windowed source, with the record field its bookmark follows.
struct WindowStream {
    stream: &'static str,
    build: Builder,
    time_field: &'static str,
}

/// A module read by epoch windows of at most 24 h (no paging).
struct Windows {
    path: &'static str,
    action: &'static str,
    data_fields: &'static [&'static str],
    streams: &'static [WindowStream],
}

const WINDOWS_INTRADAY: Windows = Windows {
    path: "/v2/measure",
    action: "getintradayactivity",
    data_fields: activity::GETINTRADAYACTIVITY_DATA_FIELDS,
    streams: &[WindowStream {
        stream: "intraday_activity",
        build: activity::intraday_activity_records,
        time_field: "timestamp",
    }],
};
const WINDOWS_SLEEP: Windows = Windows {
    path: "/v2/sleep",
    action: "get",
    data_fields: sleep::SLEEP_GET_DATA_FIELDS,
    streams: &[
        WindowStream {
            stream: "sleep_series",
            build: sleep::sleep_series_records,
            time_field: "startdate",
        },
        WindowStream {
            stream: "sleep_vitals",
            build: sleep::sleep_vitals_records,
            time_field: "timestamp",
        },
    ],
};

async fn sync_windows<W: Write>(
    ctx: &SyncCtx<'_>,
    out: &mut Output<W>,
    userid: i64,
    spec: &Windows,
) -> StreamResult {
    let selected: Vec<&WindowStream> = spec
        .streams
        .iter()
        .filter(|s| out.is_selected(s.stream))
        .collect();
    // Each stream resumes at its own bookmark (the latest record it emitted, not the end of
    // the last window: a device that syncs late must still be found).
    let marks: Vec<i64> = selected
        .iter()
        .map(|s| out.bookmark(s.stream, userid).unwrap_or(ctx.start))
        .collect();
    let Some(from) = marks.iter().copied().min() else {
        return Ok(());
    };
    let mut recents: Vec<RecentKeys> = selected.iter().map(|_| RecentKeys::default()).collect();
    for (ws, we) in windows(from, ctx.end) {
        let params = vec![
            ("action", spec.action.to_string()),
            ("startdate", ws.to_string()),
            ("enddate", we.to_string()),
            ("data_fields", spec.data_fields.join(",")),
        ];
        let body = ctx.session.call(ctx.client, spec.path, &params).await?;
        let time_extracted = now_text();
        for (i, ws_def) in selected.iter().enumerate() {
            let def = stream_def(ws_def.stream);
            let mut records = (ws_def.build)(&body, userid)?;
            records.sort_by_key(|r| r.get(ws_def.time_field).and_then(lenient_i64));
            recents[i].next_page();
            let mut fresh = Vec::with_capacity(records.len());
            let mut max_seen: Option<i64> = None;
            for r in records {
                let t = r.get(ws_def.time_field).and_then(lenient_i64);
                if t.is_some_and(|t| t < marks[i]) || !recents[i].insert(record_key(def, &r)) {
                    continue;
                }
                if let Some(t) = t {
                    max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
                }
                fresh.push(r);
            }
            out.emit(def, &fresh, &time_extracted)?;
            if let Some(m) = max_seen {
                out.advance(def, userid, m)?;
            }
        }
    }
    Ok(())
}

async fn sync_ecg<W: Write>(ctx: &SyncCtx<'_>, out: &mut Output<W>, userid: i64) -> StreamResult {
    let recordings = stream_def("ecg_recordings");
    let signals = stream_def("ecg_signals");
    let want_signals = out.is_selected(signals.name);
    let mark_rec = out.bookmark(recordings.name, userid).unwrap_or(ctx.start);
    let mark_sig = out.bookmark(signals.name, userid).unwrap_or(ctx.start);
    let from = if out.is_selected(recordings.name) {
        mark_rec.min(if want_signals { mark_sig } else { mark_rec })
    } else {
        mark_sig
    };
    let mut pager = Pager::new();
    let mut recent = RecentKeys::default();
    let (mut max_rec, mut max_sig): (Option<i64>, Option<i64>) = (None, None);
    loop {
        let mut params = vec![
            ("action", "list".to_string()),
            ("startdate", from.to_string()),
            ("enddate", ctx.end.to_string()),
        ];
        if pager.offset() > 0 {
            params.push(("offset", pager.offset().to_string()));
        }
        let body = ctx.session.call(ctx.client, "/v2/heart", &params).await?;
        let time_extracted = now_text();
        let records = heart::ecg_recordings_records(&body, userid)?;
        recent.next_page();
        let mut fresh = Vec::with_capacity(records.len());
        for r in records {
            if recent.insert(record_key(recordings, &r)) {
                fresh.push(r);
            }
        }
        let new_recordings: Vec<Record> = fresh
            .iter()
            .filter(|r| {
                r.get("timestamp")
                    .and_then(lenient_i64)
                    .is_none_or(|t| t >= mark_rec)
            })
            .cloned()
            .collect();
        for r in &new_recordings {
            if let Some(t) = r.get("timestamp").and_then(lenient_i64) {
                max_rec = Some(max_rec.map_or(t, |m| m.max(t)));
            }
        }
        out.emit(recordings, &new_recordings, &time_extracted)?;
        if want_signals {
            for r in &fresh {
                let t = r.get("timestamp").and_then(lenient_i64);
                if t.is_some_and(|t| t < mark_sig) {
                    continue;
                }
                let Some(signalid) = r.get("signalid").and_then(lenient_i64) else {
                    continue;
                };
                let params = vec![
                    ("action", "get".to_string()),
                    ("signalid", signalid.to_string()),
                ];
                let sbody = ctx.session.call(ctx.client, "/v2/heart", &params).await?;
                let mut srecs = heart::ecg_signals_records(&sbody, userid, signalid)?;
                for s in &mut srecs {
                    s.insert(
                        "timestamp".into(),
                        r.get("timestamp").cloned().unwrap_or(Value::Null),
                    );
                }
                out.emit(signals, &srecs, &now_text())?;
                if let Some(t) = t {
                    max_sig = Some(max_sig.map_or(t, |m| m.max(t)));
                }
            }
        }
        match pager.advance(page_rows(&body, "series"), page_fingerprint(&body)) {
            Next::Offset(_) => continue,
            Next::Done => break,
            Next::Repeated => {
                warn!(
                    userid,
                    offset = pager.offset(),
                    "ecg_recordings: a page repeated the previous one; stopping."
                );
                break;
            }
        }
    }
    // Newest first: bookmarks move only after the whole list was read.
    if let Some(m) = max_rec {
        out.advance(recordings, userid, m)?;
    }
    if let Some(m) = max_sig {
        out.advance(signals, userid, m)?;
    }
    Ok(())
}

async fn sync_single<W: Write>(
    ctx: &SyncCtx<'_>,
    out: &mut Output<W>,
    userid: i64,
    stream: &'static str,
    action: &'static str,
    build: Builder,
) -> StreamResult {
    let def = stream_def(stream);
    let body = ctx
        .session
        .call(ctx.client, "/v2/user", &[("action", action.to_string())])
        .await?;
    let records = build(&body, userid)?;
    out.emit(def, &records, &now_text())?;
    Ok(())
}
