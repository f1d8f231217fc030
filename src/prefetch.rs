//! A data call started ahead of time in a task of its own, so that the next page of a chain
//! downloads (and its envelope is checked) on the other core while this page is written.
//! The call goes through the same session and client as any other (budget, repeat guard,
//! retries, token refresh); dropping a [`Prefetch`] that was not awaited aborts it.

use std::sync::Arc;

use crate::api::client::{ApiClient, Body, ReadReply};
use crate::auth::session::{Session, SessionError};

/// A call in flight, whose reply is read with a typed reader first (see
/// [`Session::call_read`]).
pub struct Prefetch<T>(tokio::task::JoinHandle<Result<Body<T>, SessionError>>);

impl<T: Send + 'static> Prefetch<T> {
    /// Starts `path` with `params` now. The call counts for the calling stream (its tallies,
    /// metric tags and log span).
    pub fn start(
        session: &Arc<Session>,
        client: &Arc<ApiClient>,
        path: &'static str,
        params: Vec<(&'static str, String)>,
        read: impl ReadReply<Out = T> + 'static,
    ) -> Self {
        let (session, client) = (Arc::clone(session), Arc::clone(client));
        let call = async move { session.call_read(&client, path, &params, read).await };
        Prefetch(tokio::spawn(crate::metrics::carry(call)))
    }

    /// As [`Prefetch::start`], counted for `stream` (a child or fed stream of the caller's).
    pub fn start_for(
        stream: &'static str,
        session: &Arc<Session>,
        client: &Arc<ApiClient>,
        path: &'static str,
        params: Vec<(&'static str, String)>,
        read: impl ReadReply<Out = T> + 'static,
    ) -> Self {
        let (session, client) = (Arc::clone(session), Arc::clone(client));
        let call = async move { session.call_read(&client, path, &params, read).await };
        Prefetch(tokio::spawn(crate::metrics::carry(
            crate::metrics::in_child_stream(stream, call),
        )))
    }

    /// The reply.
    pub async fn reply(mut self) -> Result<Body<T>, SessionError> {
        self.wait().await
    }

    /// The reply, waited for without giving the call up (cancel-safe: in a `select!`, a
    /// wait that loses leaves the call running). Not to be awaited again once it gave the
    /// reply.
    pub async fn wait(&mut self) -> Result<Body<T>, SessionError> {
        match (&mut self.0).await {
            Ok(result) => result,
            Err(e) if e.is_cancelled() => Err(SessionError::Cancelled),
            Err(_) => Err(SessionError::Failed(
                "a request task ended abnormally".into(),
            )),
        }
    }
}

impl<T> Drop for Prefetch<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Spare buffers of page size, kept for the next page of a chain. A chain has at most two
/// pages alive (the one being written and the next one, read ahead), so each of its buffers
/// (the reply, its groups, its measures) is needed again as soon as one is freed: reusing it
/// costs neither an allocation nor the page faults of fresh memory, and leaves no page-sized
/// holes in the heap (with glibc's default threshold such buffers come from the heap after
/// the first page, and the holes they left raised peak RSS by ~3 MB).
///
/// At most `KEEP` buffers of at most [`Pool::MAX_BYTES`] each are kept: what a run may hold
/// beyond its pages in flight is that, per kind of buffer, for as long as it runs.
pub struct Pool<T, const KEEP: usize = 2> {
    spare: std::sync::Mutex<Vec<Vec<T>>>,
}

impl<T, const KEEP: usize> Pool<T, KEEP> {
    /// Spare buffers kept.
    pub const KEEP: usize = KEEP;
    /// The largest buffer kept (bytes of capacity): a larger one is freed.
    pub const MAX_BYTES: usize = 8 << 20;

    pub const fn new() -> Self {
        Pool {
            spare: std::sync::Mutex::new(Vec::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Vec<T>>> {
        // A panic while holding the lock leaves a list of empty buffers: still usable.
        self.spare
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// An empty buffer: a spare one (with its capacity) when there is one.
    pub fn take(&self) -> Vec<T> {
        self.lock().pop().unwrap_or_default()
    }

    /// Gives a buffer back for reuse (emptied; freed when too large or enough are kept).
    pub fn give(&self, mut buffer: Vec<T>) {
        buffer.clear();
        let bytes = buffer
            .capacity()
            .saturating_mul(std::mem::size_of::<T>().max(1));
        if buffer.capacity() == 0 || bytes > Self::MAX_BYTES {
            return;
        }
        let mut spare = self.lock();
        if spare.len() < Self::KEEP {
            spare.push(buffer);
        }
    }

    /// How many spare buffers are kept now.
    pub fn spares(&self) -> usize {
        self.lock().len()
    }
}

impl<T, const KEEP: usize> Default for Pool<T, KEEP> {
    fn default() -> Self {
        Self::new()
    }
}

/// Reply bodies of page size (see `ApiClient`'s reading of replies): a body of at least
/// [`POOLED_BODY`] bytes is read into a spare buffer and given back once a typed reader has
/// read it.
pub static BODIES: Pool<u8> = Pool::new();

/// The smallest reply (by Content-Length) read into a buffer of [`BODIES`]: smaller ones
/// (tokens, devices, small pages) get a buffer of their own size.
pub const POOLED_BODY: u64 = 64 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_keeps_a_few_emptied_buffers_of_bounded_size() {
        let pool: Pool<u64> = Pool::new();
        assert!(pool.take().capacity() == 0, "nothing kept yet");
        let mut a = pool.take();
        a.extend(0..1000);
        let kept = a.as_ptr();
        pool.give(a);
        assert_eq!(pool.spares(), 1);
        let again = pool.take();
        assert!(again.is_empty(), "given back emptied");
        assert_eq!(again.as_ptr(), kept, "the same allocation is reused");
        assert!(again.capacity() >= 1000);
        // At most KEEP spares; empty and oversized buffers are not kept.
        for _ in 0..5 {
            pool.give(Vec::with_capacity(10));
        }
        assert_eq!(pool.spares(), Pool::<u64>::KEEP);
        let pool: Pool<u64> = Pool::new();
        pool.give(Vec::new());
        pool.give(Vec::with_capacity(Pool::<u64>::MAX_BYTES / 8 + 1));
        assert_eq!(pool.spares(), 0);
        pool.give(Vec::with_capacity(Pool::<u64>::MAX_BYTES / 8));
        assert_eq!(pool.spares(), 1);
    }
}
