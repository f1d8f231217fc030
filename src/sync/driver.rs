//! The sync driver: identifies every user (one token refresh each, when needed), starts one
//! task per user and source, runs the single writer, aggregates failures, sends
//! ACTIVATE_VERSION for full-table streams read completely, and logs the summaries.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tracing::{info, warn};

use crate::api::client::ApiClient;
use crate::auth::session::{Opened, SessionError};
use crate::config::Config;
use crate::conform::Flattening;
use crate::error::{Error, Result};
use crate::metrics::{self, RecordCounter, StreamScope, Tallies, RECORD_COUNT_INTERVAL};
use crate::output::Output;
use crate::plan::Reread;
use crate::singer::catalog::Selection;
use crate::singer::message::MessageWriter;
use crate::singer::state::State;
use crate::streams::{Replication, STREAMS};

use super::{run_source, session_error, task_sources, wanted, Finished, SyncCtx};

/// Puts the user in front of an error's message.
pub fn prefix_error(who: &str, e: Error) -> Error {
    match e {
        Error::Auth(m) => Error::Auth(format!("{who}: {m}")),
        Error::Api(m) => Error::Api(format!("{who}: {m}")),
        other => other,
    }
}

/// How many stream tasks run at once (they share one request budget).
const MAX_TASKS: usize = 16;

/// Syncs every selected stream of every user into `stdout`.
pub async fn sync<W: Write>(
    cfg: &Config,
    client: Arc<ApiClient>,
    opened: Opened,
    state: State,
    selection: &Selection,
    stdout: W,
    now: i64,
) -> Result<()> {
    // METRIC durations are real time (they measure this process); the run's logic reads the
    // client's clock.
    let started = Instant::now();
    let flattening = Flattening {
        enabled: cfg.flattening_enabled,
        max_depth: cfg.flattening_max_depth,
    };
    let clock = client.clock().clone();
    let mut out = Output::new(
        MessageWriter::new(stdout),
        state,
        selection,
        flattening,
        clock.clone(),
    )?
    .with_maps(cfg.stream_maps.as_ref())?;
    if let Some(batch) = &cfg.batch_config {
        out.batch_into(crate::singer::batch::Batcher::new(batch.clone())?);
    }
    out.announce()?;
    let (emitter, mut events) = out.channel(2);
    let mut failures: Vec<(String, Error)> = Vec::new();
    for (who, e) in opened.failures {
        tracing::error!("{who} not synced: {e}");
        failures.push((who.clone(), prefix_error(&who, e)));
    }
    let mut fatal: Option<Error> = None;
    let mut users = BTreeSet::new();
    let permits = Arc::new(Semaphore::new(MAX_TASKS));
    let tallies = Arc::new(Tallies::default());
    let mut tasks = JoinSet::new();
    // Identify every user first (one token refresh each, when needed); one failed user does
    // not stop the others. Configured tokens no store knows come first: they are the newest
    // chains of their users, whose stored chains are then neither refreshed nor synced.
    for session in opened.sessions {
        let session = Arc::new(session);
        if let Some(id) = session.userid().await {
            if users.contains(&id) {
                info!(
                    userid = id,
                    "A newer configured refresh token of this user is synced; its older stored chain is left alone."
                );
                continue;
            }
        }
        let userid = match session.identify(&client).await {
            Ok(userid) => userid,
            Err(SessionError::Cancelled) => {
                fatal = Some(Error::Interrupted);
                break;
            }
            Err(e) => {
                let who = session.describe().await;
                let err = session_error(None, e);
                tracing::error!("{who} not synced: {err}");
                failures.push((who.clone(), prefix_error(&who, err)));
                continue;
            }
        };
        if !users.insert(userid) {
            warn!(
                userid,
                "Two configured tokens belong to the same user; syncing it once."
            );
            continue;
        }
        let ctx = SyncCtx {
            client: Arc::clone(&client),
            session,
            userid,
            start: cfg.start_date.timestamp(),
            end: cfg.end_date.map_or(now, |d| d.timestamp().min(now)),
            keep_until: cfg.end_date.map_or(i64::MAX, |d| d.timestamp()),
            include_objectives: cfg.include_objectives,
            reread: Reread {
                lookback: i64::from(cfg.lookback_hours) * 3600,
                late_sync: i64::from(cfg.late_sync_days) * 86_400,
            },
            reconcile_window: i64::from(cfg.reconcile_days) * 86_400,
            reconcile_every: i64::from(cfg.reconcile_every_hours) * 3600,
            now,
            calendar_walk: cfg.calendar_walk,
        };
        for source in task_sources(ctx.calendar_walk) {
            let names = wanted(source, &emitter, ctx.calendar_walk);
            // The task's stream: the first it feeds (requests made for a child stream, such as
            // a recording's signal, are scoped to that stream inside the task).
            let Some(primary) = names.first().copied() else {
                continue;
            };
            let scope = StreamScope {
                stream: primary,
                userid,
                tallies: Arc::clone(&tallies),
            };
            let (ctx, out, permits, source) =
                (ctx.clone(), emitter.clone(), Arc::clone(&permits), source);
            tasks.spawn(metrics::in_stream(scope, async move {
                let _permit = permits.acquire_owned().await;
                let started = Instant::now();
                let result = run_source(ctx, out, source).await;
                let seconds = started.elapsed().as_secs_f64();
                for name in &names {
                    metrics::log(&metrics::sync_duration(
                        name,
                        userid,
                        result.is_ok(),
                        seconds,
                    ));
                }
                (userid, names, seconds, result)
            }));
        }
    }
    drop(emitter);
    // The single writer: events of one task arrive in order, so STATE follows its records.
    // record_count's 60 s cadence follows the run's clock (virtual in tests).
    let counted_from = clock.elapsed();
    let mut record_count = RecordCounter::new(0.0, RECORD_COUNT_INTERVAL);
    while let Some(event) = events.recv().await {
        if let Err(e) = out.handle(event) {
            fatal.get_or_insert(e);
            client.cancel();
            break;
        }
        let totals = out.user_records().iter().map(|(k, n)| (*k, *n));
        for point in record_count.poll(clock.elapsed() - counted_from, totals) {
            metrics::log(&point);
        }
    }
    drop(events);
    let mut failed_users = BTreeSet::new();
    let mut auth_failed = BTreeSet::new();
    // Streams not read completely for some user (failed, or skipped for a missing scope).
    let mut incomplete: BTreeSet<&str> = BTreeSet::new();
    // Seconds of the tasks that fed each stream (summed over users).
    let mut seconds_of: BTreeMap<&str, f64> = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let joined = joined.map(|(userid, names, seconds, result)| {
            if !matches!(result, Ok(Finished::Complete)) {
                incomplete.extend(names.iter().copied());
            }
            for name in names {
                *seconds_of.entry(name).or_default() += seconds;
            }
            (userid, result)
        });
        match joined {
            Ok((_, Ok(_))) => {}
            Ok((_, Err(Error::Interrupted))) => {
                fatal.get_or_insert(Error::Interrupted);
            }
            Ok((_, Err(Error::Io(m)))) if fatal.is_some() => tracing::debug!("{m}"),
            Ok((userid, Err(e))) => {
                let auth = matches!(e, Error::Auth(_));
                // A user's authentication failure reaches every stream task of the user: it
                // is told once.
                if !auth || auth_failed.insert(userid) {
                    tracing::error!("user {userid}: {e}");
                } else {
                    tracing::debug!("user {userid}: {e}");
                }
                let who = format!("user {userid}");
                if failed_users.insert(userid) {
                    failures.push((who, e));
                } else if auth {
                    // The failure to act on (authorize again) is the one to report.
                    if let Some(f) = failures
                        .iter_mut()
                        .find(|(w, f)| *w == who && !matches!(f, Error::Auth(_)))
                    {
                        f.1 = e;
                    }
                }
            }
            Err(e) => {
                failures.push((
                    "a stream task".to_string(),
                    Error::Api(format!("a stream task failed: {e}")),
                ));
            }
        }
    }
    // Full-table streams read completely for every user replace the target's older rows; a
    // stream skipped for one user (Withings refused the service) was not read for that user,
    // so activating it would delete that user's rows in the target.
    if fatal.is_none() && failures.is_empty() {
        for def in STREAMS
            .iter()
            .filter(|d| d.replication == Replication::FullTable)
        {
            if !incomplete.contains(def.name) {
                out.activate_version(def)?;
            }
        }
    }
    let counts = out.counts().clone();
    let user_records = out.user_records().clone();
    // The final STATE is true for what was written, whether or not the sync failed.
    let finished = out.finish();
    let tally = tallies.snapshot();
    for (stream, seconds) in &seconds_of {
        let t = tally.get(stream).copied().unwrap_or_default();
        let (records, skipped) = counts
            .get(stream)
            .map_or((0, 0), |c| (c.records, c.skipped));
        let figures = metrics::StreamFigures {
            records,
            skipped,
            requests: t.requests,
            retries: t.retries,
            seconds: *seconds,
        };
        info!(
            stream = %stream,
            records,
            skipped,
            requests = t.requests,
            retries = t.retries,
            seconds,
            "{}",
            metrics::stream_summary(stream, &figures)
        );
    }
    // One final record_count per selected stream and user (0 for a stream without records),
    // and per series counted outside any user's work.
    let users: Vec<Option<i64>> = if users.is_empty() {
        vec![None]
    } else {
        users.iter().copied().map(Some).collect()
    };
    let mut totals: BTreeMap<(&str, Option<i64>), u64> = STREAMS
        .iter()
        .filter(|d| selection.is_selected(d.name))
        .flat_map(|d| users.iter().map(move |u| ((d.name, *u), 0)))
        .collect();
    totals.extend(user_records);
    for point in record_count.finish(totals) {
        metrics::log(&point);
    }
    let result = match (fatal, failures.len()) {
        (Some(e), _) => Err(e),
        (None, 0) => Ok(()),
        (None, 1) => Err(failures.remove(0).1),
        (None, n) => {
            let auth = failures.iter().any(|(_, e)| matches!(e, Error::Auth(_)));
            let names: Vec<String> = failures.iter().map(|(w, _)| w.clone()).collect();
            let msg = format!(
                "sync failed for {n} users: {} (details above)",
                names.join(", ")
            );
            Err(if auth {
                Error::Auth(msg)
            } else {
                Error::Api(msg)
            })
        }
    };
    let stats = client.stats();
    let seconds = started.elapsed().as_secs_f64();
    let records: u64 = counts.values().map(|c| c.records).sum();
    let streams = STREAMS
        .iter()
        .filter(|d| selection.is_selected(d.name))
        .count();
    info!(
        records,
        requests = stats.requests,
        retries = stats.retries,
        retry_reasons = ?stats.retry_reasons,
        seconds,
        "{}",
        metrics::sync_summary(records, streams, stats.requests, stats.retries, &stats.retry_reasons, seconds)
    );
    result?;
    finished.map(|_| ())
}
