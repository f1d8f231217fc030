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

use crate::index::{plan_chains, DayIndex, Need, SessionIndex, FIELD_INDEX_MODIFIED};

/// A paged index module and the windowed module whose data it locates.
pub(super) struct Family {
    index: &'static Changes,
    detail: &'static Windows,
    days: bool,
}

pub(super) const ACTIVITY_FAMILY: Family = Family {
    index: &CHANGES_ACTIVITY,
    detail: &WINDOWS_INTRADAY,
    days: true,
};
pub(super) const SLEEP_FAMILY: Family = Family {
    index: &CHANGES_SUMMARIES,
    detail: &WINDOWS_SLEEP,
    days: false,
};

/// Where listed rows say the detailed data is.
enum Planner {
    Days(DayIndex),
    Sessions(SessionIndex),
}

impl Planner {
    fn new(days: bool) -> Self {
        if days {
            Planner::Days(DayIndex::default())
        } else {
            Planner::Sessions(SessionIndex::default())
        }
    }

    fn add(&mut self, row: &Record, tz: Option<Tz>) {
        match self {
            Planner::Days(days) => {
                if let Some(date) = row.get("date").and_then(Value::as_str) {
                    days.add(date, row_tz(row).or(tz));
                }
            }
            Planner::Sessions(sessions) => {
                sessions.add(
                    row.get("startdate").and_then(lenient_i64),
                    row.get("enddate").and_then(lenient_i64),
                );
            }
        }
    }

    fn windows(&self, from: i64, until: i64) -> Vec<(i64, i64)> {
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
    family: &Family,
) -> StreamResult {
    let index_def = stream_def(family.index.stream);
    let fed: Vec<&'static WindowStream> = family
        .detail
        .streams
        .iter()
        .filter(|s| out.is_selected(s.stream))
        .collect();
    if fed.is_empty() {
        return sync_changes(ctx, out, userid, family.index).await;
    }
    let marks: Vec<Option<i64>> = fed
        .iter()
        .map(|s| {
            out.partition_field(s.stream, userid, FIELD_INDEX_MODIFIED)
                .and_then(|v| lenient_i64(&v))
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
        let readers: Vec<usize> = chain
            .readers
            .iter()
            .copied()
            .filter(|i| *i < fed.len())
            .collect();
        let serves_own = own.is_some_and(|o| chain.readers.contains(&o));
        read_chain(
            ctx, out, userid, family, chain.need, serves_own, &fed, &readers, &marks,
        )
        .await?;
    }
    Ok(())
}

/// Reads one index chain: emits the index's own rows when it serves its stream, and reads the
/// windows its rows point at for the fed streams it serves (`readers`, indexes into `fed`).
#[allow(clippy::too_many_arguments)]
async fn read_chain(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    family: &Family,
    need: Need,
    serves_own: bool,
    fed: &[&'static WindowStream],
    readers: &[usize],
    marks: &[Option<i64>],
) -> StreamResult {
    let spec = family.index;
    let def = stream_def(spec.stream);
    let (range, from) = match need {
        Need::Changes(m) => (vec![("lastupdate", m.to_string())], ctx.start),
        // YMD dates are the user's local calendar days: widening the UTC range by a day on
        // each side covers every timezone (UTC-12 to UTC+14); rows outside the range in the
        // user's timezone are dropped below.
        Need::Range(from) => (
            vec![
                ("startdateymd", timefmt::ymd(from.div_euclid(86_400) - 1)),
                ("enddateymd", timefmt::ymd(ctx.end.div_euclid(86_400) + 1)),
            ],
            from,
        ),
    };
    let own_bounds = Bounds {
        start: ctx.start,
        end: ctx.keep_until,
    };
    let fed_bounds = Bounds {
        start: from,
        end: ctx.keep_until,
    };
    let bookmark = out.bookmark(def.name, userid);
    // Requests made for the fed streams only count under the first of them.
    let scope = fed.first().map(|s| s.stream).filter(|_| !serves_own);
    let mut tz: Option<Tz> = None;
    let mut pager = Pager::new();
    let mut recent = RecentKeys::default();
    let (mut max_seen, mut row_without_modified) = (None::<i64>, false);
    let (mut index_max, mut index_without_modified) = (None::<i64>, false);
    let mut planner = Planner::new(family.days);
    let mut emitted = Emitted::default();
    loop {
        let mut params = vec![("action", spec.action.to_string())];
        params.extend(range.iter().cloned());
        params.push(("data_fields", spec.data_fields.join(",")));
        if pager.offset() > 0 {
            params.push(("offset", pager.offset().to_string()));
        }
        let call = ctx.session.call(&ctx.client, spec.path, &params);
        let body = match scope {
            Some(stream) => crate::metrics::in_child_stream(stream, call).await?,
            None => call.await?,
        };
        let time_extracted = now_text();
        let records = (spec.build)(&body, userid)?;
        recent.next_page();
        let fingerprint = page_fingerprint(
            page_rows(&body, spec.list_key),
            records.first().map(|r| record_key(def, r)),
            records.last().map(|r| record_key(def, r)),
        );
        let mut fresh = Vec::with_capacity(records.len());
        for r in records {
            tz = row_tz(&r).or(tz);
            // A row without its key still says where data is (a summary without `id`).
            if !readers.is_empty() && fed_bounds.keeps(&r, spec.instant_field, tz) {
                planner.add(&r, tz);
                match r.get("modified").and_then(lenient_i64) {
                    Some(t) => index_max = Some(index_max.map_or(t, |m| m.max(t))),
                    None => index_without_modified = true,
                }
            }
            if !serves_own {
                continue;
            }
            if !has_keys(def, &r) {
                fresh.push(r);
                continue;
            }
            if !recent.insert(record_key(def, &r)) || !own_bounds.keeps(&r, spec.instant_field, tz)
            {
                continue;
            }
            match r.get("modified").and_then(lenient_i64) {
                Some(t) => max_seen = Some(max_seen.map_or(t, |m| m.max(t))),
                None => row_without_modified = true,
            }
            if spec.scan.is_some() {
                let t = r.get("startdate").and_then(lenient_i64);
                track(ctx, t, || key_text(def, &r), &mut emitted);
            }
            fresh.push(r);
        }
        if serves_own {
            out.emit(def, fresh, &time_extracted).await?;
        }
        if !next_page(
            &mut pager,
            page_rows(&body, spec.list_key),
            fingerprint,
            def.name,
            userid,
        ) {
            break;
        }
    }
    if serves_own {
        let earned = changes_bookmark(
            max_seen,
            row_without_modified,
            bookmark.is_some(),
            ctx.now,
            ctx.end,
        );
        if let Some(m) = earned {
            out.advance(def, userid, m).await?;
        }
    }
    if !readers.is_empty() {
        let served: Vec<&'static WindowStream> = readers.iter().map(|i| fed[*i]).collect();
        let windows = planner.windows(fed_bounds.start, ctx.keep_until);
        read_windows(ctx, out, userid, family.detail, &served, &windows).await?;
        // Every window the rows pointed at is written: the next run asks for rows changed
        // after them.
        for i in readers {
            let earned = changes_bookmark(
                index_max,
                index_without_modified,
                marks[*i].is_some(),
                ctx.now,
                ctx.end,
            );
            if let Some(m) = earned {
                let def = stream_def(fed[*i].stream);
                out.partition(def, userid, vec![(FIELD_INDEX_MODIFIED, Value::from(m))])
                    .await?;
            }
        }
    }
    if serves_own {
        if let Some(scan) = spec.scan {
            reconcile_after(ctx, out, userid, def, emitted.into_keys(), scan).await?;
        }
    }
    Ok(())
}
