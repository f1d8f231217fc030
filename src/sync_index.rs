//! Index-driven reads: getintradayactivity for the local days getactivity lists as new or
//! changed, sleep get for the sessions sleep getsummary lists, and heart/stetho lists re-read
//! from their newest page. The planning is pure ([`crate::index`]); this file sequences calls.
//!
//! One index chain serves the index's own stream (activity, sleep_summaries) and the streams
//! it feeds, whenever their marks allow it ([`plan_chains`]); the chain runs even when its own
//! stream is deselected (its rows are then not emitted, and its requests count under the
//! stream it serves).

use super::*;

use crate::index::{plan_chains, relist_more, DayIndex, Need, SessionIndex, FIELD_INDEX_MODIFIED};

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

/// Reads the given windows of a windowed module for `streams`: every record in a window is
/// emitted (late data lies before the bookmark, so nothing is filtered by it), but a record
/// dated outside the window it came from is dropped and counted (a reply must not move a
/// bookmark past what was asked).
async fn read_windows(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    spec: &Windows,
    streams: &[&'static WindowStream],
    windows: &[(i64, i64)],
) -> StreamResult {
    let Some(first) = streams.first() else {
        return Ok(());
    };
    let mut recents: Vec<RecentKeys> = streams.iter().map(|_| RecentKeys::default()).collect();
    for (ws, we) in windows.iter().copied() {
        let params = vec![
            ("action", spec.action.to_string()),
            ("startdate", ws.to_string()),
            ("enddate", we.to_string()),
            ("data_fields", spec.data_fields.join(",")),
        ];
        let body = crate::metrics::in_child_stream(
            first.stream,
            ctx.session.call(&ctx.client, spec.path, &params),
        )
        .await?;
        let time_extracted = now_text();
        for (i, ws_def) in streams.iter().enumerate() {
            let def = stream_def(ws_def.stream);
            let mut records = (ws_def.build)(&body, userid)?;
            records.sort_by_key(|r| r.get(ws_def.time_field).and_then(lenient_i64));
            recents[i].next_page();
            let mut fresh = Vec::with_capacity(records.len());
            let mut max_seen: Option<i64> = None;
            let mut outside = 0usize;
            for r in records {
                if !has_keys(def, &r) {
                    fresh.push(r);
                    continue;
                }
                let t = r.get(ws_def.time_field).and_then(lenient_i64);
                if ws_def.in_window && t.is_some_and(|t| t < ws || t > we) {
                    outside += 1;
                    continue;
                }
                if !recents[i].insert(record_key(def, &r)) {
                    continue;
                }
                if let Some(t) = t {
                    max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
                }
                fresh.push(r);
            }
            outside_window(userid, def, outside, ws, we);
            out.emit(def, fresh, &time_extracted).await?;
            if let Some(m) =
                max_seen.filter(|m| out.bookmark(def.name, userid).is_none_or(|b| *m > b))
            {
                out.advance(def, userid, m).await?;
            }
        }
    }
    Ok(())
}

/// The partition field of a recordings stream listing the recordings it emitted within the
/// re-listed horizon (the shape of [`FIELD_FETCHED`]), so a recording re-listed is not
/// emitted again.
pub const FIELD_LISTED: &str = "listed_signals";
/// The partition field saying from which recording time on the stored ids are complete (the
/// oldest recording the last run listed). Its absence marks a state written before
/// re-listing: rows older than where that state resumed were handled then.
pub const FIELD_LISTED_FROM: &str = "listed_from";

/// Lists recordings newest first from `start_date`, reading the first page on every run (a
/// recording uploaded late among the newest is found whatever its delay) and further pages
/// only while they hold recordings newer than the last run's; emits each recording and fetches
/// each signal once.
pub(super) async fn sync_relisted(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    spec: &Recordings,
) -> StreamResult {
    let recordings = stream_def(spec.recordings);
    let signals = stream_def(spec.signals);
    let want_rec = out.is_selected(recordings.name);
    let want_sig = out.is_selected(signals.name);
    let field_i64 = |stream: &str, field: &str| {
        out.partition_field(stream, userid, field)
            .and_then(|v| lenient_i64(&v))
    };
    // Before re-listing, a state resumed `lookback_hours` behind its progress: what lies
    // before that was read then.
    let cutoff = |def: &StreamDef| match field_i64(def.name, FIELD_LISTED_FROM) {
        Some(_) => i64::MIN,
        None => match progress(out, def.name, userid).frontier() {
            Some(_) => resume_from(progress(out, def.name, userid), ctx.start, ctx.reread),
            None => i64::MIN,
        },
    };
    let (cut_rec, cut_sig) = (cutoff(recordings), cutoff(signals));
    let mut listed = Fetched::from_state(
        out.partition_field(recordings.name, userid, FIELD_LISTED)
            .as_ref(),
    );
    let mut fetched = Fetched::from_state(
        out.partition_field(signals.name, userid, FIELD_FETCHED)
            .as_ref(),
    );
    // The newest recording earlier runs listed, for each selected stream: the oldest of them
    // says where re-listing may stop.
    let seen_until = [(want_rec, recordings), (want_sig, signals)]
        .iter()
        .filter(|(w, _)| *w)
        .map(|(_, d)| out.bookmark(d.name, userid))
        .try_fold(i64::MAX, |acc, b| b.map(|b| acc.min(b)));
    let mut pager = Pager::new();
    let mut recent = RecentKeys::default();
    let (mut max_rec, mut max_sig): (Option<i64>, Option<i64>) = (None, None);
    let mut oldest: Option<i64> = None;
    loop {
        let mut params = vec![
            ("action", "list".to_string()),
            ("startdate", ctx.start.to_string()),
            ("enddate", ctx.end.to_string()),
        ];
        if pager.offset() > 0 {
            params.push(("offset", pager.offset().to_string()));
        }
        let body = ctx.session.call(&ctx.client, spec.path, &params).await?;
        let time_extracted = now_text();
        let records = (spec.build)(&body, userid)?;
        recent.next_page();
        let rows = page_rows(&body, "series");
        let fingerprint = page_fingerprint(
            rows,
            records.first().map(|r| record_key(recordings, r)),
            records.last().map(|r| record_key(recordings, r)),
        );
        let page_oldest = records
            .iter()
            .filter_map(|r| r.get("timestamp").and_then(lenient_i64))
            .min();
        oldest = match (oldest, page_oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut new_recordings = Vec::new();
        let mut to_fetch = Vec::new();
        for r in records {
            if !has_keys(recordings, &r) {
                new_recordings.push(r);
                continue;
            }
            if !recent.insert(record_key(recordings, &r)) {
                continue;
            }
            let t = r.get("timestamp").and_then(lenient_i64);
            let Some(signalid) = r.get("signalid").and_then(lenient_i64) else {
                continue;
            };
            let time = t.unwrap_or(ctx.now);
            if want_sig && !fetched.contains(signalid) && time >= cut_sig {
                to_fetch.push((signalid, t, r.get("timestamp").cloned()));
            }
            if want_rec && !listed.contains(signalid) && time >= cut_rec {
                listed.insert(signalid, time);
                if let Some(t) = t {
                    max_rec = Some(max_rec.map_or(t, |m| m.max(t)));
                }
                new_recordings.push(r);
            } else if want_rec {
                listed.insert(signalid, time);
            }
        }
        out.emit(recordings, new_recordings, &time_extracted)
            .await?;
        for (signalid, t, timestamp) in to_fetch {
            let mut params = vec![
                ("action", "get".to_string()),
                ("signalid", signalid.to_string()),
            ];
            params.extend(spec.signal_params.iter().map(|(k, v)| (*k, v.to_string())));
            let sbody = crate::metrics::in_child_stream(
                signals.name,
                ctx.session.call(&ctx.client, spec.path, &params),
            )
            .await?;
            let mut srecs = (spec.build_signal)(&sbody, userid, signalid)?;
            for s in &mut srecs {
                s.insert("timestamp".into(), timestamp.clone().unwrap_or(Value::Null));
            }
            out.emit(signals, srecs, &now_text()).await?;
            fetched.insert(signalid, t.unwrap_or(ctx.now));
            if let Some(t) = t {
                max_sig = Some(max_sig.map_or(t, |m| m.max(t)));
            }
        }
        let more = next_page(&mut pager, rows, fingerprint, recordings.name, userid)
            && relist_more(page_oldest, rows, seen_until);
        if !more {
            break;
        }
    }
    // Newest first: bookmarks move only after the list was read.
    for (def, max) in [(recordings, max_rec), (signals, max_sig)] {
        if let Some(m) = max.filter(|m| out.bookmark(def.name, userid).is_none_or(|b| *m > b)) {
            out.advance(def, userid, m).await?;
        }
    }
    // The ids of the horizon this run listed: the next run's first page lies within it, or
    // holds recordings newer than it.
    // Nothing listed: complete from where it was (or from start_date).
    let keep_from = oldest
        .or_else(|| field_i64(recordings.name, FIELD_LISTED_FROM))
        .or_else(|| field_i64(signals.name, FIELD_LISTED_FROM))
        .unwrap_or(ctx.start);
    let from = Value::from(keep_from);
    if want_rec {
        out.partition(
            recordings,
            userid,
            vec![
                (FIELD_LISTED, listed.to_state(keep_from)),
                (FIELD_LISTED_FROM, from.clone()),
            ],
        )
        .await?;
    }
    if want_sig {
        out.partition(
            signals,
            userid,
            vec![
                (FIELD_FETCHED, fetched.to_state(keep_from)),
                (FIELD_LISTED_FROM, from),
            ],
        )
        .await?;
    }
    Ok(())
}
