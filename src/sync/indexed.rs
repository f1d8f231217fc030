//! Index-driven reads: getintradayactivity for the local days getactivity lists as new or
//! changed, sleep get for the sessions sleep getsummary lists (the heart/stetho lists are
//! re-read from their newest page: `recordings.rs`). The planning is pure ([`crate::index`]);
//! this file sequences calls.
//!
//! One index chain serves the index's own stream (activity, sleep_summaries) and the streams
//! it feeds, whenever their marks allow it ([`plan_chains`]); the chain runs even when its own
//! stream is deselected (its rows are then not emitted, and its requests count under the
//! stream it serves).

use super::*;

use crate::index::{plan_chains, DayIndex, Need, SessionIndex};
use crate::streams::sources::IndexRows;

/// Where listed rows say the detailed data is.
pub(super) enum Planner {
    Days(DayIndex),
    Sessions(SessionIndex),
}

impl Planner {
    pub(super) fn new(rows: IndexRows) -> Self {
        if rows == IndexRows::Days {
            Planner::Days(DayIndex::default())
        } else {
            Planner::Sessions(SessionIndex::default())
        }
    }

    pub(super) fn add(&mut self, row: &Record, tz: Option<Tz>) {
        match self {
            Planner::Days(days) => {
                if let Some(date) = row.get("date").and_then(Value::as_str) {
                    days.add(date, row_tz(row).or(tz));
                }
            }
            Planner::Sessions(sessions) => {
                sessions.add(
                    row.get("startdate").and_then(integer),
                    row.get("enddate").and_then(integer),
                );
            }
        }
    }

    pub(super) fn windows(&self, from: i64, until: i64) -> Vec<(i64, i64)> {
        match self {
            Planner::Days(days) => days.windows(from, until),
            Planner::Sessions(sessions) => sessions.windows(from, until),
        }
    }
}

/// Where a fed stream that has no index mark yet starts: at `start` on a first sync; after a
/// calendar walk (an earlier version, or `calendar_walk` switched off), where that walk would
/// have resumed, so nothing it had not read is skipped and what it had read is not read again.
fn first_index_start(ctx: &SyncCtx, out: &Emitter, stream: &str, userid: i64) -> i64 {
    resume_from(progress(out, stream, userid), ctx.start, ctx.reread)
}

/// Syncs an index module and the streams it feeds, for one user.
pub(super) async fn sync_family(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    index: &'static Changes,
    detail: &'static Windows,
) -> StreamResult {
    let index_def = stream_def(index.stream)?;
    let fed: Vec<&'static WindowStream> = detail
        .streams
        .iter()
        .filter(|s| out.is_selected(s.stream))
        .collect();
    if fed.is_empty() {
        return sync_changes(ctx, out, userid, index).await;
    }
    let marks: Vec<Option<i64>> = fed
        .iter()
        .map(|s| {
            out.partition_field(s.stream, userid, FIELD_INDEX_MODIFIED)
                .and_then(|v| integer(&v))
        })
        .collect();
    let mut needs: Vec<Need> = fed
        .iter()
        .zip(&marks)
        .map(|(s, mark)| match mark {
            Some(m) => Need::Changes(*m),
            None => Need::Range(first_index_start(ctx, out, s.stream, userid)),
        })
        .collect();
    // The index's own stream reads last in the list of readers.
    let own = out.is_selected(index_def.name).then(|| {
        let bookmark = out.bookmark(index_def.name, userid);
        needs.push(match bookmark {
            Some(b) => Need::Changes(b),
            None => Need::Range(ctx.start),
        });
        needs.len() - 1
    });
    for chain in plan_chains(&needs) {
        let streams: Vec<(&'static WindowStream, Option<i64>)> = chain
            .readers
            .iter()
            .filter(|i| **i < fed.len())
            .map(|i| (fed[*i], marks[*i]))
            .collect();
        let serves_own = own.is_some_and(|o| chain.readers.contains(&o));
        let served = Fed {
            detail,
            streams: &streams,
        };
        read_changes(
            ctx,
            out,
            userid,
            index,
            chain.need,
            serves_own,
            Some(served),
        )
        .await?;
    }
    Ok(())
}
