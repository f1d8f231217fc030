//! A data call started ahead of time in a task of its own, so that the next page of a chain
//! downloads (and its envelope is checked) on the other core while this page is written.
//! The call goes through the same session and client as any other (budget, repeat guard,
//! retries, token refresh); dropping a [`Prefetch`] that was not awaited aborts it.

use std::sync::Arc;

use crate::api::client::{ApiClient, Body};
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
        read: fn(&[u8]) -> Option<T>,
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
        read: fn(&[u8]) -> Option<T>,
    ) -> Self {
        let (session, client) = (Arc::clone(session), Arc::clone(client));
        let call = async move { session.call_read(&client, path, &params, read).await };
        Prefetch(tokio::spawn(crate::metrics::carry(
            crate::metrics::in_child_stream(stream, call),
        )))
    }

    /// The reply.
    pub async fn reply(mut self) -> Result<Body<T>, SessionError> {
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
