//! The writer side of a sync: [`Output`] owns stdout and the state; it receives [`Event`]s
//! from the concurrent stream tasks (through [`Emitter`]) and writes SCHEMA once per stream,
//! the RECORD lines the tasks rendered (conformed by the stream's [`OutputPlan`] in a
//! [`Batch`], so conforming runs beside the writer), and a STATE after bookmark advances.
//! Events of one task arrive in order, so a STATE is only ever written after the records it
//! covers.

use std::collections::{BTreeMap, HashSet};
use std::io::Write;
use std::sync::Arc;

use serde_json::Value;
use tokio::sync::mpsc;
use tracing::warn;

use crate::clock::SharedClock;
use crate::conform::{ConformError, Fields, Flattening, OutputPlan, SpanCache};
use crate::error::{Error, Result};
use crate::maps::{Maps, Route, StreamMapper};
use crate::singer::batch::{push_raw, Batcher};
use crate::singer::catalog::Selection;
use crate::singer::message::{push_record, record_prefix, MessageWriter};
use crate::singer::state::State;
use crate::streams::{Record, Replication, StreamDef, STREAMS};
use crate::timefmt;

/// What a stream task sends to the writer.
#[derive(Debug)]
pub enum Event {
    /// Rendered records of a stream, in order (boxed: a batch is large beside the others).
    Lines(Box<Batch>),
    /// Extra fields of a user's partition (deletion tracking), after the records they cover.
    Partition {
        def: &'static StreamDef,
        userid: i64,
        fields: Vec<(&'static str, Value)>,
    },
    /// Every record of `def` for `userid` up to `epoch` has been sent.
    Advance {
        def: &'static StreamDef,
        userid: i64,
        epoch: i64,
    },
}

/// A task's handle on the writer: selection, the bookmarks the run started from, and the
/// channel.
#[derive(Clone)]
pub struct Emitter {
    tx: mpsc::Sender<Event>,
    plans: Arc<BTreeMap<&'static str, Arc<OutputPlan>>>,
    /// Streams that `stream_maps` change (the others are sent as they are).
    routes: Arc<BTreeMap<&'static str, Route>>,
    start_state: Arc<State>,
    version: i64,
    /// Batches hold raw records (for batch files) instead of RECORD lines.
    raw: bool,
}

/// The size past which a stream task sends its batch (and starts another): large enough
/// that the writer makes one write call per batch without copying it (see
/// `MessageWriter`), small enough that the batches in flight stay a few hundred KiB.
pub const BATCH_BYTES: usize = 128 * 1024;

/// Spare line buffers of sent batches. A full batch's buffer is just above glibc's mmap
/// threshold (fixed in main.rs), so a fresh one per batch would be mapped and unmapped each
/// time (its page faults were a third of a sync's CPU time); reused, it costs neither. As
/// many are kept as can be in flight.
static BATCH_LINES: crate::prefetch::Pool<u8, 8> = crate::prefetch::Pool::new();

/// RECORD lines of one stream rendered in a task, with what conforming noticed.
#[derive(Debug)]
pub struct Batch {
    def: &'static StreamDef,
    plan: Arc<OutputPlan>,
    /// How a record becomes a line.
    line: LineForm,
    /// Shared columns of consecutive records (a measure group's), written once per run.
    spans: SpanCache,
    lines: Vec<u8>,
    records: u64,
    /// Key properties of records skipped for lacking them.
    skipped: Vec<String>,
    /// How many records were skipped for lacking a key property.
    skipped_rows: u64,
    /// The first value that could not be read as its declared type: the batch is refused.
    bad: Option<ConformError>,
    /// What `stream_maps` do to the stream (None: nothing; boxed, as it is rare).
    map: Option<Box<BatchMap>>,
    /// The user whose work made the batch (its stream scope), for `record_count`'s context.
    userid: Option<i64>,
}

/// How a batch writes a record: as a RECORD message (its stream name and table version), or
/// alone on its line (batch files).
#[derive(Debug)]
enum LineForm {
    Record {
        prefix: Vec<u8>,
        version: Option<i64>,
    },
    Raw,
}

impl LineForm {
    /// Appends the line of the record `write` writes (nothing when it fails).
    fn push<E>(
        &self,
        lines: &mut Vec<u8>,
        time_extracted: &str,
        write: impl FnOnce(&mut Vec<u8>) -> std::result::Result<(), E>,
    ) -> std::result::Result<(), E> {
        match self {
            LineForm::Record { prefix, version } => {
                push_record(lines, prefix, time_extracted, *version, write)
            }
            LineForm::Raw => push_raw(lines, write),
        }
    }
}

/// A batch's stream map.
#[derive(Debug)]
enum BatchMap {
    /// `stream_maps` drop the stream: nothing is rendered.
    Removed,
    /// Records go through the map; the first failure refuses the batch.
    Mapped {
        mapper: Arc<StreamMapper>,
        error: Option<String>,
    },
}

impl Batch {
    /// Renders one record (skipped, and noted, when it lacks a key property). A value that
    /// cannot be read as its declared type spoils the batch: [`Emitter::send`] refuses it.
    pub fn push<F: Fields + ?Sized>(&mut self, record: &F, time_extracted: &str) {
        if self.bad.is_some() {
            return;
        }
        match self.map.as_deref() {
            None => {}
            Some(BatchMap::Removed | BatchMap::Mapped { error: Some(_), .. }) => return,
            Some(BatchMap::Mapped { mapper, .. }) => {
                let mapper = Arc::clone(mapper);
                return self.push_mapped(&mapper, record, time_extracted);
            }
        }
        let plan = &self.plan;
        let spans = &mut self.spans;
        let result = self.line.push(&mut self.lines, time_extracted, |line| {
            plan.write_cached(record, line, spans)
        });
        match result {
            Ok(()) => self.records += 1,
            Err(ConformError::MissingKey(key)) => {
                self.skipped_rows += 1;
                if !self.skipped.contains(&key) {
                    self.skipped.push(key);
                }
            }
            Err(e @ ConformError::BadValue { .. }) => self.bad = Some(e),
        }
    }

    /// [`Batch::push`] through a stream map: the conformed record is read back, mapped
    /// (or filtered out) and written again.
    fn push_mapped<F: Fields + ?Sized>(
        &mut self,
        mapper: &StreamMapper,
        record: &F,
        time_extracted: &str,
    ) {
        let mut conformed = Vec::new();
        match self
            .plan
            .write_cached(record, &mut conformed, &mut self.spans)
        {
            Ok(()) => {}
            Err(ConformError::MissingKey(key)) => return self.skip(key),
            Err(e @ ConformError::BadValue { .. }) => {
                self.bad = Some(e);
                return;
            }
        }
        let mapped = serde_json::from_slice::<serde_json::Map<String, Value>>(&conformed)
            .map_err(|e| format!("cannot read a conformed record back: {e}"))
            .and_then(|r| mapper.apply(&r));
        let mapped = match mapped {
            Ok(Some(m)) => m,
            Ok(None) => return,
            Err(e) => return self.map_failed(e),
        };
        if let Some(key) = mapper
            .keys
            .iter()
            .find(|k| mapped.get(*k).is_none_or(Value::is_null))
        {
            return self.skip(key.clone());
        }
        let written = self.line.push(&mut self.lines, time_extracted, |line| {
            serde_json::to_writer(line, &mapped)
        });
        match written {
            Ok(()) => self.records += 1,
            Err(e) => self.map_failed(format!("cannot encode a mapped record: {e}")),
        }
    }

    fn map_failed(&mut self, message: String) {
        if let Some(BatchMap::Mapped { error, .. }) = self.map.as_deref_mut() {
            error.get_or_insert(message);
        }
    }

    fn skip(&mut self, key: String) {
        self.skipped_rows += 1;
        if !self.skipped.contains(&key) {
            self.skipped.push(key);
        }
    }

    /// Makes room for about `records` more lines (up to a full batch), written without
    /// regrowing.
    pub fn reserve(&mut self, records: usize) {
        /// A generous RECORD line of the widest stream (measures lines are ~650 bytes).
        const LINE_ESTIMATE: usize = 768;
        self.lines.reserve(
            records
                .saturating_mul(LINE_ESTIMATE)
                .min(BATCH_BYTES + LINE_ESTIMATE),
        );
    }

    /// Whether the batch should be sent now (see [`BATCH_BYTES`]).
    pub fn is_full(&self) -> bool {
        self.lines.len() >= BATCH_BYTES
    }

    /// Whether nothing was rendered or noted.
    pub fn is_empty(&self) -> bool {
        self.records == 0 && self.skipped.is_empty()
    }
}

/// The writer is gone (stdout failed): the task stops.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WriterGone;

/// Why a batch was not sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The writer is gone.
    Gone,
    /// A record of `stream` holds a value that cannot be read as its declared type; nothing
    /// of the batch was written, so no bookmark may move past it.
    BadValue {
        stream: &'static str,
        error: ConformError,
    },
    /// A stream map failed on a record of `stream` (the message names the expression);
    /// nothing of the batch was written.
    Map {
        stream: &'static str,
        message: String,
    },
}

impl From<WriterGone> for SendError {
    fn from(_: WriterGone) -> Self {
        SendError::Gone
    }
}

impl Emitter {
    /// Is the stream selected?
    pub fn is_selected(&self, stream: &str) -> bool {
        self.plans.contains_key(stream)
    }

    /// An empty batch of a selected stream's records (None when it is not selected).
    pub fn batch(&self, def: &'static StreamDef) -> Option<Batch> {
        let plan = self.plans.get(def.name)?;
        let map = match self.routes.get(def.name) {
            Some(Route::Mapped(m)) => Some(Box::new(BatchMap::Mapped {
                mapper: Arc::clone(m),
                error: None,
            })),
            Some(Route::Removed) => Some(Box::new(BatchMap::Removed)),
            Some(Route::Same) | None => None,
        };
        let name = match map.as_deref() {
            Some(BatchMap::Mapped { mapper, .. }) => mapper.alias.as_str(),
            _ => def.name,
        };
        Some(Batch {
            def,
            plan: Arc::clone(plan),
            line: if self.raw {
                LineForm::Raw
            } else {
                LineForm::Record {
                    prefix: record_prefix(name),
                    version: (def.replication == Replication::FullTable).then_some(self.version),
                }
            },
            spans: SpanCache::default(),
            lines: BATCH_LINES.take(),
            records: 0,
            skipped: Vec::new(),
            skipped_rows: 0,
            bad: None,
            map,
            userid: crate::metrics::current_userid(),
        })
    }

    /// Sends a batch to the writer (nothing when it is empty); refuses a spoilt batch.
    pub async fn send(&self, batch: Batch) -> Result<(), SendError> {
        if let Some(error) = batch.bad {
            return Err(SendError::BadValue {
                stream: batch.def.name,
                error,
            });
        }
        if let Some(BatchMap::Mapped {
            error: Some(message),
            ..
        }) = batch.map.as_deref()
        {
            return Err(SendError::Map {
                stream: batch.def.name,
                message: message.clone(),
            });
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.tx
            .send(Event::Lines(Box::new(batch)))
            .await
            .map_err(|_| SendError::Gone)
    }

    /// The bookmark of a user's stream when the run started, as epoch seconds.
    pub fn bookmark(&self, stream: &str, userid: i64) -> Option<i64> {
        bookmark_epoch(&self.start_state, stream, userid)
    }

    /// Sends records (nothing for an unselected stream or an empty batch).
    pub async fn emit(
        &self,
        def: &'static StreamDef,
        records: Vec<Record>,
        time_extracted: &str,
    ) -> Result<(), SendError> {
        let Some(mut batch) = self.batch(def) else {
            return Ok(());
        };
        for record in &records {
            batch.push(record, time_extracted);
        }
        self.send(batch).await
    }

    /// A field of a user's partition when the run started.
    pub fn partition_field(&self, stream: &str, userid: i64, field: &str) -> Option<Value> {
        self.start_state
            .partition_field(stream, userid, field)
            .cloned()
    }

    /// Sets extra partition fields (after the records they cover).
    pub async fn partition(
        &self,
        def: &'static StreamDef,
        userid: i64,
        fields: Vec<(&'static str, Value)>,
    ) -> Result<(), WriterGone> {
        if !self.is_selected(def.name) {
            return Ok(());
        }
        self.tx
            .send(Event::Partition {
                def,
                userid,
                fields,
            })
            .await
            .map_err(|_| WriterGone)
    }

    /// Moves a bookmark (the writer never moves one back).
    pub async fn advance(
        &self,
        def: &'static StreamDef,
        userid: i64,
        epoch: i64,
    ) -> Result<(), WriterGone> {
        if !self.is_selected(def.name) {
            return Ok(());
        }
        self.tx
            .send(Event::Advance { def, userid, epoch })
            .await
            .map_err(|_| WriterGone)
    }
}

fn bookmark_epoch(state: &State, stream: &str, userid: i64) -> Option<i64> {
    match state.bookmark(stream, userid)? {
        Value::String(s) => timefmt::parse_rfc3339(s).or_else(|| s.parse().ok()),
        Value::Number(n) => n.as_i64(),
        _ => None,
    }
}

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
    plans: BTreeMap<&'static str, Arc<OutputPlan>>,
    /// Streams that `stream_maps` change (see [`Output::with_maps`]).
    routes: Arc<BTreeMap<&'static str, Route>>,
    schema_sent: HashSet<&'static str>,
    counts: BTreeMap<&'static str, StreamCounts>,
    /// Records per stream and user (`record_count`).
    user_records: BTreeMap<(&'static str, Option<i64>), u64>,
    /// The run's clock (virtual in tests): the STATE throttle and the table version read it.
    clock: SharedClock,
    /// When a STATE was last written (the clock's monotonic seconds).
    state_written: f64,
    /// The table version of full-table streams in this run (milliseconds since the epoch).
    version: i64,
    /// With `batch_config`: records go to batch files (see [`Output::batch_into`]).
    batches: Option<Batcher>,
}

/// The longest a changed state waits before it is written (a killed run re-reads at most
/// this much; writing every window's STATE would multiply the output).
const STATE_INTERVAL: f64 = 1.0;

impl<W: Write> Output<W> {
    /// Compiles an output plan for every selected stream; `clock` is the run's.
    pub fn new(
        writer: MessageWriter<W>,
        state: State,
        selection: &Selection,
        flattening: Flattening,
        clock: SharedClock,
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
            plans.insert(def.name, Arc::new(plan));
        }
        Ok(Output {
            writer,
            state,
            plans,
            routes: Arc::new(BTreeMap::new()),
            schema_sent: HashSet::new(),
            counts: BTreeMap::new(),
            user_records: BTreeMap::new(),
            state_written: clock.elapsed(),
            version: clock.now().timestamp_millis(),
            clock,
            batches: None,
        })
    }

    /// Applies `stream_maps` (None: none set) to the selected streams: their SCHEMA, names
    /// and records follow the map. A map that does not fit its stream (an unknown property,
    /// a key that is gone), or two streams sent under one name, is an input error.
    pub fn with_maps(mut self, maps: Option<&Maps>) -> Result<Self> {
        let Some(maps) = maps else {
            return Ok(self);
        };
        let mut routes = BTreeMap::new();
        let mut sent_as: BTreeMap<String, &'static str> = BTreeMap::new();
        for def in STREAMS {
            let Some(plan) = self.plans.get(def.name) else {
                continue;
            };
            let bookmark: Vec<&str> = def.replication_key().into_iter().collect();
            let route = maps
                .route(def.name, plan.schema(), def.keys, &bookmark)
                .map_err(Error::input)?;
            let name = match &route {
                Route::Same => def.name.to_string(),
                Route::Mapped(m) => m.alias.clone(),
                Route::Removed => {
                    tracing::info!(
                        "stream {}: dropped by stream_maps (its records are read, not sent; deselect it in the catalog to skip its requests)",
                        def.name
                    );
                    routes.insert(def.name, route);
                    continue;
                }
            };
            if let Some(other) = sent_as.insert(name.clone(), def.name) {
                return Err(Error::input(format!(
                    "stream_maps: streams {other} and {} would both be sent as `{name}`",
                    def.name
                )));
            }
            if !matches!(route, Route::Same) {
                routes.insert(def.name, route);
            }
        }
        self.routes = Arc::new(routes);
        Ok(self)
    }

    /// Writes a stream's SCHEMA unless it was sent (or the maps drop the stream); the name
    /// it is sent under.
    fn send_schema(
        &mut self,
        def: &'static StreamDef,
        plan: &OutputPlan,
    ) -> Result<Option<String>> {
        let route = self.routes.get(def.name).cloned();
        let first = self.schema_sent.insert(def.name);
        match route {
            Some(Route::Removed) => Ok(None),
            Some(Route::Mapped(m)) => {
                if first {
                    let keys: Vec<&str> = m.keys.iter().map(String::as_str).collect();
                    let bookmark: Vec<&str> = m.bookmarks.iter().map(String::as_str).collect();
                    self.writer.schema(&m.alias, &m.schema, &keys, &bookmark)?;
                }
                Ok(Some(m.alias.clone()))
            }
            Some(Route::Same) | None => {
                if first {
                    let bookmark: Vec<&str> = def.replication_key().into_iter().collect();
                    self.writer
                        .schema(def.name, plan.schema(), def.keys, &bookmark)?;
                }
                Ok(Some(def.name.to_string()))
            }
        }
    }

    /// Records go to batch files from now on (before [`Output::channel`]), each finished
    /// file announced by a BATCH message before any STATE that covers its records.
    pub fn batch_into(&mut self, batcher: Batcher) {
        self.batches = Some(batcher);
    }

    /// Is the stream selected?
    pub fn is_selected(&self, stream: &str) -> bool {
        self.plans.contains_key(stream)
    }

    /// Per-stream counters so far.
    pub fn counts(&self) -> &BTreeMap<&'static str, StreamCounts> {
        &self.counts
    }

    /// Records written so far per stream and user.
    pub fn user_records(&self) -> &BTreeMap<(&'static str, Option<i64>), u64> {
        &self.user_records
    }

    /// Sends the SCHEMA of every selected stream, in catalog order, whether or not it will
    /// have records this run (as SDK taps do: targets create the empty tables, and the dbt
    /// sources pointing at them work).
    pub fn announce(&mut self) -> Result<()> {
        for def in STREAMS {
            let Some(plan) = self.plans.get(def.name).cloned() else {
                continue;
            };
            self.send_schema(def, &plan)?;
        }
        Ok(())
    }

    /// Writes a batch of rendered records (SCHEMA first if not yet sent).
    pub fn write_batch(&mut self, mut batch: Batch) -> Result<()> {
        let def = batch.def;
        if batch.records > 0 {
            self.send_schema(def, &batch.plan)?;
        }
        match &mut self.batches {
            None => self.writer.lines(&batch.lines)?,
            Some(b) => {
                b.write(def.name, &batch.lines, batch.records)?;
                if def.replication != Replication::FullTable {
                    let files = b.take_done(def.name);
                    if !files.is_empty() {
                        let name = sent_name(&self.routes, def.name);
                        self.writer.batch(&name, b.compression(), &files)?;
                    }
                }
            }
        }
        BATCH_LINES.give(std::mem::take(&mut batch.lines));
        // One warning per batch (a page): a record without its key cannot be emitted.
        if batch.skipped_rows > 0 {
            warn!(
                "stream {}: skipped {} record(s) without a key property ({}); the sync goes on",
                def.name,
                batch.skipped_rows,
                batch.skipped.join(", ")
            );
        }
        let c = self.counts.entry(def.name).or_default();
        c.records += batch.records;
        c.skipped += batch.skipped_rows;
        *self
            .user_records
            .entry((def.name, batch.userid))
            .or_default() += batch.records;
        Ok(())
    }

    /// The stored bookmark of a user's stream, as epoch seconds.
    pub fn bookmark(&self, stream: &str, userid: i64) -> Option<i64> {
        bookmark_epoch(&self.state, stream, userid)
    }

    /// A channel and the emitter tasks use to reach this writer.
    pub fn channel(&self, capacity: usize) -> (Emitter, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel(capacity);
        (
            Emitter {
                tx,
                plans: Arc::new(self.plans.clone()),
                routes: Arc::clone(&self.routes),
                start_state: Arc::new(self.state.clone()),
                version: self.version,
                raw: self.batches.is_some(),
            },
            rx,
        )
    }

    /// Writes one event.
    pub fn handle(&mut self, event: Event) -> Result<()> {
        match event {
            Event::Lines(batch) => self.write_batch(*batch),
            Event::Advance { def, userid, epoch } => self.advance(def, userid, epoch),
            Event::Partition {
                def,
                userid,
                fields,
            } => {
                self.state.set_fields(def.name, userid, &fields);
                self.state_changed()
            }
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
        self.state_changed()
    }

    /// Writes STATE now if the last one is older than [`STATE_INTERVAL`], else later. Any
    /// STATE written covers only records already written, since events arrive in order.
    fn state_changed(&mut self) -> Result<()> {
        let now = self.clock.elapsed();
        if now - self.state_written >= STATE_INTERVAL {
            self.state_written = now;
            self.hand_over(false)?;
            self.writer.state(&self.state.to_value())?;
        }
        Ok(())
    }

    /// Ends a full-table stream that was read completely for every user: ACTIVATE_VERSION
    /// tells the target that rows of older versions (e.g. an unlinked device) are gone.
    pub fn activate_version(&mut self, def: &'static StreamDef) -> Result<()> {
        let Some(plan) = self.plans.get(def.name).cloned() else {
            return Ok(());
        };
        if def.replication != Replication::FullTable {
            return Ok(());
        }
        let Some(name) = self.send_schema(def, &plan)? else {
            // Dropped by the stream maps: nothing of it is sent, its batch files neither.
            if let Some(b) = &mut self.batches {
                b.take(def.name)?;
            }
            return Ok(());
        };
        self.writer.activate_version(&name, self.version)?;
        // Batch files carry no table version: they come after ACTIVATE_VERSION, which
        // a target applies to the rows it already holds (see `hand_over`).
        if let Some(b) = &mut self.batches {
            let files = b.take(def.name)?;
            if !files.is_empty() {
                self.writer.batch(&name, b.compression(), &files)?;
            }
        }
        Ok(())
    }

    /// Finishes the open batch files and sends a BATCH message for each stream's finished
    /// files, before a STATE. Files of full-table streams are held until their
    /// ACTIVATE_VERSION (or the end, when there is none): their rows have no table version,
    /// so a target (target-postgres) would delete them on an ACTIVATE_VERSION after them. No
    /// STATE covers them (full-table streams have no bookmark).
    fn hand_over(&mut self, full_table_too: bool) -> Result<()> {
        let Some(b) = &mut self.batches else {
            return Ok(());
        };
        for stream in b.pending() {
            let full_table = crate::streams::find(stream)
                .is_some_and(|d| d.replication == Replication::FullTable);
            if full_table && !full_table_too {
                continue;
            }
            let files = b.take(stream)?;
            if !files.is_empty() {
                let name = sent_name(&self.routes, stream);
                self.writer.batch(&name, b.compression(), &files)?;
            }
        }
        Ok(())
    }

    /// Writes the final STATE and flushes; gives the writer back.
    /// The writer back, flushed, without a STATE (`--test schema`).
    pub fn into_writer(self) -> Result<W> {
        self.writer.into_inner()
    }

    pub fn finish(mut self) -> Result<W> {
        self.hand_over(true)?;
        self.writer.state(&self.state.to_value())?;
        self.writer.into_inner()
    }
}

/// The name a stream's messages go out under: its `stream_maps` alias, else its own.
fn sent_name(routes: &BTreeMap<&'static str, Route>, stream: &str) -> String {
    match routes.get(stream) {
        Some(Route::Mapped(m)) => m.alias.clone(),
        _ => stream.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::ManualClock;
    use crate::streams::find;
    use chrono::TimeZone;

    fn output(clock: &ManualClock) -> Output<Vec<u8>> {
        let flattening = Flattening {
            enabled: false,
            max_depth: 0,
        };
        let writer = MessageWriter::new(Vec::new());
        Output::new(
            writer,
            State::default(),
            &Selection::all(),
            flattening,
            clock.shared(),
        )
        .unwrap()
    }

    fn messages(out: Output<Vec<u8>>) -> Vec<Value> {
        let bytes = out.into_writer().unwrap();
        String::from_utf8(bytes)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// The bookmark of user 1's measures in each STATE message written.
    fn state_bookmarks(messages: &[Value]) -> Vec<String> {
        messages
            .iter()
            .filter(|m| m["type"] == "STATE")
            .map(|m| {
                let partitions = m["value"]["bookmarks"]["measures"]["partitions"]
                    .as_array()
                    .unwrap();
                assert_eq!(partitions.len(), 1, "{m}");
                partitions[0]["replication_key_value"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    #[test]
    fn state_is_written_at_most_once_a_second_of_the_run_clock() {
        let clock = ManualClock::new(chrono::Utc.timestamp_opt(1_700_000_000, 0).unwrap());
        let mut out = output(&clock);
        let def = find("measures").unwrap();
        let advance = |out: &mut Output<Vec<u8>>, epoch: i64| {
            out.handle(Event::Advance {
                def,
                userid: 1,
                epoch,
            })
            .unwrap()
        };
        // Within the first second: held back.
        advance(&mut out, 1_000);
        clock.advance(0.5);
        advance(&mut out, 2_000);
        // 1.1 virtual seconds since the start: written, with everything so far.
        clock.advance(0.6);
        advance(&mut out, 3_000);
        // At once again: held back until a second has passed since that STATE.
        advance(&mut out, 4_000);
        clock.advance(0.9);
        advance(&mut out, 5_000);
        clock.advance(0.1);
        advance(&mut out, 6_000);
        let sent = messages(out);
        assert_eq!(
            state_bookmarks(&sent),
            vec!["1970-01-01T00:50:00Z", "1970-01-01T01:40:00Z"],
            "{sent:?}"
        );
    }

    #[test]
    fn the_table_version_is_the_run_clock_in_milliseconds() {
        let start = chrono::Utc
            .timestamp_opt(1_700_000_000, 250_000_000)
            .unwrap();
        let clock = ManualClock::new(start);
        let mut out = output(&clock);
        // Later readings of the clock do not change the run's version.
        clock.advance(30.0);
        out.activate_version(find("devices").unwrap()).unwrap();
        let sent = messages(out);
        let activate: Vec<&Value> = sent
            .iter()
            .filter(|m| m["type"] == "ACTIVATE_VERSION")
            .collect();
        assert_eq!(activate.len(), 1, "{sent:?}");
        assert_eq!(activate[0]["stream"], "devices");
        assert_eq!(activate[0]["version"], 1_700_000_000_250_i64);
    }
}
