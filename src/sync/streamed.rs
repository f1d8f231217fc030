//! getmeas pages read as they arrive. A page of 4,096 groups is a 2 MB reply; holding it
//! whole, with its typed reading and the next page read ahead, is what a sync's memory
//! grew with. Here each page's groups are found in the reply's chunks as they come
//! ([`ListFramer`]), read into parts of at most [`measure::PART_GROUPS`] groups and handed to the
//! writer through a queue of [`SLOTS`] parts: the download waits while the writer is behind,
//! so what is alive is a few parts, whatever the page size.
//!
//! The paging is the chains' usual ([`next_page`]: pages until an empty one, the offset
//! counted from rows received, a repeated page ends the chain). A reply that is not a
//! status-0 envelope with `status` and `timezone` before the list (a failure, a 601, another
//! shape) is read whole as before: typed when it can be, else leniently. A reply cut off
//! after some parts were written is asked again, and the parts of the retry that were
//! written already are dropped by the caller's de-duplication against the page (the same
//! records, with the same keys).
//!
//! The trade-off: while the writer waits (a target flushing), the download of the page
//! waits too, and the request's timeout keeps running. The download waits for the writer
//! only until half of `request_timeout_seconds` after the request was sent; past that it
//! goes on without waiting and the rest of the page queues (at most one page, the memory a
//! page read ahead took before). A writer that stalls longer than that on every page (a very
//! slow target) therefore costs a page of memory, never a timed-out request.

use std::time::{Duration, Instant};

use tokio::sync::{mpsc, OwnedSemaphorePermit, Semaphore};

use super::*;
use crate::api::client::{End, FeedFailure, ReadReply};
use crate::api::envelope::{ApiFailure, FailKind};
use crate::streams::frame::{ListFramer, Step};
use crate::streams::measure::{read_groups, FastPage, GroupsError, Part, Skeleton};

/// Parts queued between a page's download and its writing.
pub(super) const SLOTS: usize = 2;

/// The most bytes of a reply framed at once.
const FEED_BYTES: usize = 64 * 1024;

/// A part and the queue slot it holds (freed when the writer takes it; none once the
/// download stopped waiting for the writer).
type Queued = (Part, Option<OwnedSemaphorePermit>);

/// What the reader of one page's reply gives.
pub(super) enum PageRead {
    /// The page's parts were queued as they arrived: its size and first and last keys.
    Streamed {
        rows: usize,
        first: Option<u64>,
        last: Option<u64>,
    },
    /// A reply read whole, typed.
    Whole(FastPage),
}

enum State {
    Framing(ListFramer),
    Whole(Vec<u8>),
}

/// The reader of one page's reply (moved into its request's task).
struct PageReader {
    def: &'static StreamDef,
    userid: i64,
    list_key: &'static str,
    parts: mpsc::UnboundedSender<Queued>,
    slots: Arc<Semaphore>,
    patience: Duration,
    /// Until when the download waits for the writer (this attempt: half the request's
    /// timeout after it was sent).
    deadline: Instant,
    state: State,
    timezone: String,
    rows: usize,
    first: Option<u64>,
    last: Option<u64>,
}

impl PageReader {
    /// A reader for one page's requests, queueing its parts on `parts` within `slots`,
    /// waiting for the writer at most `patience` after a request was sent.
    fn new(
        def: &'static StreamDef,
        userid: i64,
        list_key: &'static str,
        parts: mpsc::UnboundedSender<Queued>,
        slots: Arc<Semaphore>,
        patience: Duration,
    ) -> Self {
        PageReader {
            def,
            userid,
            list_key,
            parts,
            slots,
            patience,
            deadline: Instant::now(),
            state: State::Whole(Vec::new()),
            timezone: String::new(),
            rows: 0,
            first: None,
            last: None,
        }
    }

    /// From now on the reply is gathered whole (nothing of it was given away).
    fn whole(&mut self) {
        let state = std::mem::replace(&mut self.state, State::Whole(Vec::new()));
        if let State::Framing(framer) = state {
            self.state = State::Whole(framer.into_bytes().unwrap_or_default());
        }
    }

    fn keys(&mut self, part: &Part) {
        let (first, last) = match part {
            Part::Typed(page) => (
                page.rows(self.userid).next().map(|r| r.key_hash(self.def)),
                page.rows(self.userid).last().map(|r| r.key_hash(self.def)),
            ),
            Part::Records(records) => (
                records.first().map(|r| record_key(self.def, r)),
                records.last().map(|r| record_key(self.def, r)),
            ),
        };
        self.first = self.first.or(first);
        self.last = last.or(self.last);
    }

    async fn queue(&mut self, part: Part) -> Result<(), FeedFailure> {
        let slot = match Arc::clone(&self.slots).try_acquire_owned() {
            Ok(slot) => Some(slot),
            Err(_) => {
                // Real time: the request's timeout (which this wait eats into) is real.
                let left = self.deadline.saturating_duration_since(Instant::now());
                let wait = Arc::clone(&self.slots).acquire_owned();
                tokio::time::timeout(left, wait)
                    .await
                    .ok()
                    .and_then(Result::ok)
            }
        };
        self.parts.send((part, slot)).map_err(|_| {
            FeedFailure::Fail(ApiFailure {
                kind: FailKind::Fatal,
                status: 0,
                message: "the page's writer stopped".into(),
            })
        })
    }

    /// Takes the elements framed so far.
    async fn take(&mut self) -> Result<(), FeedFailure> {
        let State::Framing(framer) = &mut self.state else {
            return Ok(());
        };
        let texts: Vec<&[u8]> = framer.elements().collect();
        if texts.is_empty() {
            return Ok(());
        }
        let read = read_groups(&texts, self.rows, &self.timezone, self.userid);
        self.rows += texts.len();
        drop(texts);
        framer.consume();
        let parts = match read {
            Ok(parts) => parts,
            Err(GroupsError::NotJson) => {
                return Err(FeedFailure::Retry("the reply is not JSON (a group)".into()))
            }
            Err(GroupsError::Refused(e)) => {
                return Err(FeedFailure::Fail(ApiFailure {
                    kind: FailKind::Fatal,
                    status: 0,
                    message: e.0,
                }))
            }
        };
        for part in parts {
            self.keys(&part);
            self.queue(part).await?;
        }
        Ok(())
    }
}

impl ReadReply for PageReader {
    type Out = PageRead;

    fn begin(&mut self, _expected: u64, sent: Instant) {
        self.state = State::Framing(ListFramer::new(self.list_key));
        self.deadline = sent + self.patience;
        self.rows = 0;
        self.first = None;
        self.last = None;
    }

    async fn feed(&mut self, chunk: &[u8]) -> Result<(), FeedFailure> {
        // A chunk may be as large as the HTTP library's read buffer (~400 KiB): framed a
        // slice at a time, the framer holds at most a part's groups and one slice.
        for slice in chunk.chunks(FEED_BYTES) {
            let framer = match &mut self.state {
                State::Whole(body) => {
                    body.extend_from_slice(slice);
                    continue;
                }
                State::Framing(framer) => framer,
            };
            let mut step = framer.push(slice);
            loop {
                match step {
                    Ok(Step::More) => break,
                    Ok(Step::ListStarts) => match measure::page_head_timezone(&framer.head()) {
                        Some(tz) => {
                            self.timezone = tz;
                            step = framer.push(&[]);
                        }
                        None => {
                            self.whole();
                            break;
                        }
                    },
                    Err(_) if !framer.in_list() => {
                        // Not an envelope of this shape (HTML, another reply): read it whole.
                        self.whole();
                        break;
                    }
                    Err(m) => {
                        return Err(FeedFailure::Retry(format!(
                            "the reply is not JSON ({})",
                            m.0
                        )))
                    }
                }
            }
            if let State::Framing(framer) = &self.state {
                if framer.pending() >= measure::PART_GROUPS || framer.list_closed() {
                    self.take().await?;
                }
            }
        }
        Ok(())
    }

    fn end(&mut self) -> End<PageRead> {
        let state = std::mem::replace(&mut self.state, State::Whole(Vec::new()));
        let body = match state {
            State::Whole(body) => body,
            State::Framing(framer) if !framer.in_list() => framer.into_bytes().unwrap_or_default(),
            State::Framing(framer) => {
                let skeleton = match framer.finish() {
                    Ok(skeleton) => skeleton,
                    Err(m) => return End::Retry(format!("reply body cut off ({})", m.0)),
                };
                // The envelope around the list must be whole JSON, as the head said.
                return match measure::page_skeleton(&skeleton) {
                    Skeleton::Whole => End::Read(PageRead::Streamed {
                        rows: self.rows,
                        first: self.first,
                        last: self.last,
                    }),
                    Skeleton::NotJson => {
                        End::Retry("reply body cut off (its envelope is not whole)".into())
                    }
                    Skeleton::Ambiguous => End::Fail(ApiFailure {
                        kind: FailKind::Fatal,
                        status: 0,
                        message:
                            "getmeas reply: its status, timezone or list of groups is given twice"
                                .into(),
                    }),
                };
            }
        };
        match measure::fast_reply(&body) {
            Some(page) => End::Read(PageRead::Whole(page)),
            None => End::Whole(body),
        }
    }
}

/// A page being read: its request (until it ended) and the parts it queued.
struct InFlight {
    call: Option<Prefetch<PageRead>>,
    parts: mpsc::UnboundedReceiver<Queued>,
    /// Parts of the page received whole, given after the queued ones.
    whole: Option<Part>,
}

/// A getmeas chain for one user, read part by part (see the module). The next page is asked
/// for as soon as this one's reply is complete, while its last parts are still being
/// written: both pages' parts share the chain's queue slots, so the read-ahead costs no
/// memory beyond them.
pub(super) struct MeasureChain<'c> {
    ctx: &'c SyncCtx,
    def: &'static StreamDef,
    path: &'static str,
    params: Vec<(&'static str, String)>,
    list_key: &'static str,
    pager: Pager,
    slots: Arc<Semaphore>,
    /// The page being read, and the next one once requested.
    current: Option<InFlight>,
    queued: Option<InFlight>,
}

impl<'c> MeasureChain<'c> {
    /// A chain of `path` with `params` (their `list_key` list is the page's rows), for
    /// `def`'s records; the first page is requested now.
    pub(super) fn new(
        ctx: &'c SyncCtx,
        def: &'static StreamDef,
        path: &'static str,
        params: Vec<(&'static str, String)>,
        list_key: &'static str,
    ) -> Self {
        let mut chain = MeasureChain {
            ctx,
            def,
            path,
            params,
            list_key,
            pager: Pager::new(),
            slots: Arc::new(Semaphore::new(SLOTS)),
            current: None,
            queued: None,
        };
        chain.request();
        chain
    }

    fn request(&mut self) {
        let params = page_params(&self.params, &self.pager);
        let (tx, rx) = mpsc::unbounded_channel();
        let reader = PageReader::new(
            self.def,
            self.ctx.userid,
            self.list_key,
            tx,
            Arc::clone(&self.slots),
            self.ctx.client.request_timeout() / 2,
        );
        let call = Prefetch::start(
            &self.ctx.session,
            &self.ctx.client,
            self.path,
            params,
            reader,
        );
        self.queued = Some(InFlight {
            call: Some(call),
            parts: rx,
            whole: None,
        });
    }

    /// Moves on to the next page: false once the chain is complete.
    pub(super) fn next_page(&mut self) -> bool {
        self.current = self.queued.take();
        self.current.is_some()
    }

    /// The next part of the current page, in reply order; None once the page is complete.
    pub(super) async fn part(&mut self) -> Result<Option<Part>, StreamFail> {
        loop {
            let Some(page) = &mut self.current else {
                return Ok(None);
            };
            let Some(call) = &mut page.call else {
                // The reply has ended: what it queued, then what came whole.
                return Ok(match page.parts.recv().await {
                    Some((part, _slot)) => Some(part),
                    None => {
                        let whole = page.whole.take();
                        self.current = None;
                        whole
                    }
                });
            };
            let read = tokio::select! {
                biased;
                read = call.wait() => read,
                queued = page.parts.recv() => match queued {
                    Some((part, _slot)) => return Ok(Some(part)),
                    // Every part has come: the reply's end is next.
                    None => call.wait().await,
                },
            };
            page.call = None;
            self.ended(read?)?;
        }
    }

    /// The current page's reply is complete: its rows are counted and the next page asked
    /// for, if the chain goes on.
    fn ended(&mut self, read: Body<PageRead>) -> Result<(), StreamFail> {
        let userid = self.ctx.userid;
        let (rows, first, last, whole) = match read {
            Body::Typed(PageRead::Streamed { rows, first, last }) => (rows, first, last, None),
            Body::Typed(PageRead::Whole(fast)) => {
                let rows = fast.measuregrps.len();
                let first = fast.rows(userid).next().map(|r| r.key_hash(self.def));
                let last = fast.rows(userid).last().map(|r| r.key_hash(self.def));
                (rows, first, last, Some(Part::Typed(fast)))
            }
            Body::Reply(reply) => {
                let body = Session::reply_value(reply)?;
                let (records, skipped) = measures_records(&body, userid)?;
                for reason in skipped {
                    warn!(userid, "measures: skipped {reason}");
                }
                (
                    page_rows(&body, self.list_key),
                    records.first().map(|r| record_key(self.def, r)),
                    records.last().map(|r| record_key(self.def, r)),
                    Some(Part::Records(records)),
                )
            }
        };
        if let Some(page) = &mut self.current {
            page.whole = whole;
        }
        let fingerprint = page_fingerprint(rows, first, last);
        if next_page(&mut self.pager, rows, fingerprint, self.def.name, userid) {
            self.request();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reader(patience: Duration) -> (PageReader, mpsc::UnboundedReceiver<Queued>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let def = find("measures").unwrap();
        let slots = Arc::new(Semaphore::new(SLOTS));
        let reader = PageReader::new(def, 9, "measuregrps", tx, slots, patience);
        (reader, rx)
    }

    fn groups(n: usize) -> String {
        let groups: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"grpid":{i},"date":1700000000,"created":1700000000,"modified":1700000001,"category":1,"attrib":0,"measures":[{{"value":{i},"type":1,"unit":-2}}]}}"#
                )
            })
            .collect();
        groups.join(",")
    }

    /// Feeds `reply` in chunks of `chunk` bytes: how the reader ended (a failure while
    /// feeding as `End::Retry` with its text), and the parts queued (with whether each
    /// holds a queue slot). Nobody takes the parts meanwhile: the reader waits `patience`.
    async fn read(
        reply: &str,
        chunk: usize,
        patience: Duration,
    ) -> (End<PageRead>, Vec<(Part, bool)>) {
        let (mut reader, mut rx) = reader(patience);
        reader.begin(0, Instant::now());
        for bytes in reply.as_bytes().chunks(chunk) {
            if let Err(e) = reader.feed(bytes).await {
                let why = match e {
                    FeedFailure::Retry(r) => r,
                    FeedFailure::Fail(f) => f.message,
                    FeedFailure::Body(_) => "body".into(),
                };
                return (End::Retry(why), Vec::new());
            }
        }
        let end = reader.end();
        drop(reader);
        let mut parts = Vec::new();
        while let Some((part, slot)) = rx.recv().await {
            parts.push((part, slot.is_some()));
        }
        (end, parts)
    }

    fn grpids(parts: &[(Part, bool)]) -> Vec<i64> {
        parts
            .iter()
            .flat_map(|(part, _)| match part {
                Part::Typed(page) => page.rows(9).map(|r| r.group.grpid).collect::<Vec<_>>(),
                Part::Records(records) => records
                    .iter()
                    .filter_map(|r| r.get("grpid").and_then(integer))
                    .collect(),
            })
            .collect()
    }

    const LONG: Duration = Duration::from_secs(60);

    #[tokio::test]
    async fn a_page_of_the_usual_shape_is_queued_part_by_part() {
        let n = 2 * measure::PART_GROUPS + 10;
        let reply = format!(
            r#"{{"status":0,"body":{{"updatetime":1,"timezone":"Europe/Paris","measuregrps":[{}],"more":1,"offset":{n}}}}}"#,
            groups(n)
        );
        for chunk in [13, 4096, reply.len()] {
            // Nobody takes the parts while the reply is read: past the slots, the reader
            // waits out its patience (short here) and goes on without waiting.
            let (end, parts) = read(&reply, chunk, Duration::from_millis(20)).await;
            let End::Read(PageRead::Streamed { rows, first, last }) = end else {
                panic!("not streamed");
            };
            assert_eq!(rows, n);
            assert_eq!(grpids(&parts), (0..n as i64).collect::<Vec<_>>());
            assert!(parts.len() >= 3, "{} parts", parts.len());
            assert_eq!(parts.iter().filter(|(_, slot)| *slot).count(), SLOTS);
            let typed: Vec<_> = parts
                .iter()
                .filter_map(|(p, _)| match p {
                    Part::Typed(page) => Some(page),
                    Part::Records(_) => None,
                })
                .collect();
            assert_eq!(
                typed.len(),
                parts.len(),
                "every group is of the usual shape"
            );
            let def = find("measures").unwrap();
            assert_eq!(first, typed[0].rows(9).next().map(|r| r.key_hash(def)));
            assert_eq!(
                last,
                typed
                    .last()
                    .unwrap()
                    .rows(9)
                    .last()
                    .map(|r| r.key_hash(def))
            );
            assert_eq!(typed[0].timezone.as_deref(), Some("Europe/Paris"));
        }
    }

    #[tokio::test]
    async fn other_replies_are_read_whole() {
        // A failure status, HTML, no list: handed back whole to be classified.
        for reply in [
            r#"{"status":601,"body":{"wait_seconds":3}}"#.to_string(),
            format!(
                r#"{{"status":2555,"body":{{"timezone":"UTC","measuregrps":[{}]}}}}"#,
                groups(3)
            ),
            "<html><body>Bad gateway</body></html>".to_string(),
            r#"{"status":0,"body":{}}"#.to_string(),
        ] {
            for chunk in [1, 7, reply.len()] {
                let (end, parts) = read(&reply, chunk, LONG).await;
                match end {
                    End::Whole(body) => assert_eq!(body, reply.as_bytes()),
                    End::Read(PageRead::Whole(page)) => {
                        // status 0 without a list: an empty page, read typed.
                        assert!(page.measuregrps.is_empty(), "{reply}");
                    }
                    _ => panic!("{reply}: not read whole"),
                }
                assert!(parts.is_empty());
            }
        }
        // The timezone after the list, or no timezone: the page is read whole (typed), as
        // the records of its first groups could not be written before the timezone is known.
        for reply in [
            format!(
                r#"{{"status":0,"body":{{"measuregrps":[{}],"timezone":"UTC"}}}}"#,
                groups(5)
            ),
            format!(
                r#"{{"body":{{"timezone":"UTC","measuregrps":[{}]}},"status":0}}"#,
                groups(5)
            ),
        ] {
            let (end, parts) = read(&reply, 11, LONG).await;
            let End::Read(PageRead::Whole(page)) = end else {
                panic!("{reply}: not read whole");
            };
            assert_eq!(page.measuregrps.len(), 5);
            assert!(parts.is_empty());
        }
    }

    #[tokio::test]
    async fn a_cut_or_damaged_reply_is_retried_after_its_first_parts() {
        let whole = format!(
            r#"{{"status":0,"body":{{"timezone":"UTC","measuregrps":[{}],"more":0}}}}"#,
            groups(600)
        );
        // Cut inside the list, or just after it.
        for cut in [whole.len() / 2, whole.find("],\"more\"").unwrap() + 1] {
            let (end, parts) = read(&whole[..cut], 1000, Duration::ZERO).await;
            let End::Retry(why) = end else {
                panic!("a cut reply is not retried")
            };
            assert!(why.starts_with("reply body cut off"), "{why}");
            assert!(!parts.is_empty(), "the parts before the cut are queued");
        }
        // A damaged list or group: retried.
        let damaged = whole.replacen("},{", "}{", 1);
        let (end, _) = read(&damaged, 1000, Duration::ZERO).await;
        assert!(matches!(end, End::Retry(why) if why.contains("not JSON")));
        let damaged = whole.replacen("\"grpid\":3,", "\"grpid\":3-,", 1);
        let (end, _) = read(&damaged, 1000, Duration::ZERO).await;
        assert!(matches!(end, End::Retry(why) if why.contains("not JSON")));
        // A field given twice (the list, the timezone): refused once the reply is complete.
        for twice in [
            whole.replacen(",\"more\":0", ",\"measuregrps\":[]", 1),
            whole.replacen(",\"more\":0", ",\"timezone\":\"Europe/Paris\"", 1),
        ] {
            let (end, parts) = read(&twice, 1000, Duration::ZERO).await;
            assert!(
                matches!(&end, End::Fail(f) if f.message.contains("given twice")),
                "{twice}"
            );
            assert!(!parts.is_empty());
        }
        // A value no reader takes: refused, naming it.
        let refused = whole.replacen("\"value\":7,", "\"value\":\"abc\",", 1);
        let (end, _) = read(&refused, 1000, Duration::ZERO).await;
        assert!(
            matches!(&end, End::Retry(why) if why.contains("measuregrps[7].measures[0].value")),
            "refused naming the field"
        );
    }
}
