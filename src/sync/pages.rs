//! The offset paging of every paged read (getmeas, getactivity, getworkouts, sleep
//! getsummary, heart and stetho lists, the deletion re-scan). It distrusts the API: pages are
//! asked for until one comes back empty, whatever `more` says; the next offset is the previous
//! one plus the rows received; a page that repeats the previous one ends the chain with a
//! warning ([`next_page`], [`page_params`]: shared with the getmeas chains of `streamed.rs`,
//! which read pages part by part). [`Pages`] reads the other modules' pages as JSON values:
//! the next page is requested as soon as the caller has counted this one's rows
//! ([`Pages::advance`]), in a task of its own, so it downloads while this one is written.

use super::*;
use std::convert::Infallible;

use crate::api::client::Whole;

/// A chain of pages of one module for one user, read as JSON values (getmeas chains, read
/// part by part, are `streamed::MeasureChain`s on the same rules).
pub(super) struct Pages<'c> {
    ctx: &'c SyncCtx,
    path: &'static str,
    params: Vec<(&'static str, String)>,
    list_key: &'static str,
    /// The stream the chain is read for (named in the repeat warning).
    stream: &'static str,
    /// The stream its requests count for, when not the task's own.
    scope: Option<&'static str>,
    pager: Pager,
    next: Option<Prefetch<Infallible>>,
}

/// The reader of pages read leniently (as JSON values): it reads no reply itself.
fn no_reader(_: &[u8]) -> Option<Infallible> {
    None
}

/// A chain's parameters for the page at the pager's offset.
pub(super) fn page_params(
    params: &[(&'static str, String)],
    pager: &Pager,
) -> Vec<(&'static str, String)> {
    let mut params = params.to_vec();
    if pager.offset() > 0 {
        params.push(("offset", pager.offset().to_string()));
    }
    params
}

impl<'c> Pages<'c> {
    /// A chain whose pages are read as JSON values ([`Pages::next_value`]); the first page is
    /// requested now. Its requests count for `scope` when given (a stream the chain serves),
    /// else for the task's own stream.
    pub(super) fn values(
        ctx: &'c SyncCtx,
        path: &'static str,
        params: Vec<(&'static str, String)>,
        list_key: &'static str,
        stream: &'static str,
        scope: Option<&'static str>,
    ) -> Self {
        let mut pages = Pages {
            ctx,
            path,
            params,
            list_key,
            stream,
            scope,
            pager: Pager::new(),
            next: None,
        };
        pages.request();
        pages
    }

    fn request(&mut self) {
        let params = page_params(&self.params, &self.pager);
        let (session, client) = (&self.ctx.session, &self.ctx.client);
        let read = Whole::new(no_reader);
        self.next = Some(match self.scope {
            Some(stream) => Prefetch::start_for(stream, session, client, self.path, params, read),
            None => Prefetch::start(session, client, self.path, params, read),
        });
    }

    /// The next page's body as a JSON value; `None` once the chain is complete.
    pub(super) async fn next_value(&mut self) -> Result<Option<Value>, StreamFail> {
        let Some(call) = self.next.take() else {
            return Ok(None);
        };
        match call.reply().await? {
            Body::Typed(never) => match never {},
            Body::Reply(reply) => Ok(Some(Session::reply_value(reply)?)),
        }
    }

    /// The rows of a page of this chain.
    pub(super) fn rows(&self, body: &Value) -> usize {
        page_rows(body, self.list_key)
    }

    /// Records the page just received (`rows` rows, the key hashes of its first and last
    /// record) and, when the chain goes on and the caller `wants` more, asks for the next
    /// page now. False: the chain is complete (an empty page, a repeated one, or the caller's
    /// word).
    pub(super) fn advance(
        &mut self,
        rows: usize,
        first: Option<u64>,
        last: Option<u64>,
        wants: bool,
    ) -> bool {
        let fingerprint = page_fingerprint(rows, first, last);
        let more = next_page(
            &mut self.pager,
            rows,
            fingerprint,
            self.stream,
            self.ctx.userid,
        ) && wants;
        if more {
            self.request();
        }
        more
    }
}

/// How many rows a page holds (offsets count rows of this list).
pub(super) fn page_rows(body: &Value, list_key: &str) -> usize {
    match body.get(list_key) {
        Some(Value::Array(a)) => a.len(),
        Some(Value::Object(o)) if !o.is_empty() => 1,
        _ => 0,
    }
}

/// A page's identity for the repeat check: its row count and first and last record keys.
pub(super) fn page_fingerprint(rows: usize, first: Option<u64>, last: Option<u64>) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (rows, first, last).hash(&mut h);
    h.finish()
}

/// Records a page in the pager: true when the next page must be requested; a page that
/// repeats the previous one ends the chain with a warning (never an endless loop).
pub(super) fn next_page(
    pager: &mut Pager,
    rows: usize,
    fingerprint: u64,
    stream: &str,
    userid: i64,
) -> bool {
    match pager.advance(rows, fingerprint) {
        Next::Offset(_) => true,
        Next::Done => false,
        Next::Repeated => {
            warn!(
                userid,
                stream,
                offset = pager.offset(),
                "A page repeated the previous one; stopping."
            );
            false
        }
    }
}
