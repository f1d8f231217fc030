//! Modules read by YMD range on a first sync and by `lastupdate` afterwards, offset-paged:
//! getactivity, getworkouts, sleep getsummary.

use super::*;

use crate::index::Need;

/// Reads a changes module for its own stream: by `lastupdate` from its bookmark, or by YMD
/// range from `start_date` on a first sync.
pub(super) async fn sync_changes(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    spec: &Changes,
) -> StreamResult {
    let need = match out.bookmark(spec.stream, userid) {
        Some(b) => Need::Changes(b),
        None => Need::Range(ctx.start),
    };
    read_changes(ctx, out, userid, spec, need, true, None).await
}

/// The streams a chain of an index module serves besides (or instead of) its own: their
/// windows, planned from the chain's rows, are read once the chain is.
pub(super) struct Fed<'f> {
    pub(super) detail: &'static Windows,
    /// The fed streams this chain serves, each with its index mark when the run started.
    pub(super) streams: &'f [(&'static WindowStream, Option<i64>)],
}

/// One chain of a changes module's pages, by `lastupdate` or YMD range (`need`): emits the
/// module's own rows when `own`, and, for the streams it feeds, reads the windows its rows
/// point at and moves their index marks.
pub(super) async fn read_changes(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    spec: &Changes,
    need: Need,
    own: bool,
    fed: Option<Fed<'_>>,
) -> StreamResult {
    let def = stream_def(spec.stream)?;
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
    let fed = fed.filter(|f| !f.streams.is_empty());
    // Requests made only for fed streams count under the first of them.
    let scope = fed
        .as_ref()
        .and_then(|f| f.streams.first())
        .map(|(s, _)| s.stream)
        .filter(|_| !own);
    let mut planner = fed.as_ref().map(|f| Planner::new(f.detail.index_rows));
    let mut params = vec![("action", spec.action.to_string())];
    params.extend(range);
    params.push(("data_fields", spec.data_fields.join(",")));
    let mut pages = Pages::values(ctx, spec.path, params, spec.list_key, def.name, scope);
    // The user's timezone, as the rows say it (for a row that does not).
    let mut tz: Option<Tz> = None;
    let mut recent = RecentKeys::default();
    let (mut max_seen, mut row_without_modified) = (None::<i64>, false);
    let (mut index_max, mut index_without_modified) = (None::<i64>, false);
    let mut emitted = Emitted::default();
    while let Some(body) = pages.next_value().await? {
        let time_extracted = ctx.now_text();
        let records = (spec.build)(&body, userid)?;
        recent.next_page();
        pages.advance(
            pages.rows(&body),
            records.first().map(|r| record_key(def, r)),
            records.last().map(|r| record_key(def, r)),
            true,
        );
        let mut fresh = Vec::with_capacity(records.len());
        for r in records {
            tz = row_tz(&r).or(tz);
            // A row without its key still says where data is (a summary without `id`).
            if let Some(planner) = planner.as_mut() {
                if fed_bounds.keeps(&r, spec.instant_field, tz) {
                    planner.add(&r, tz);
                    match r.get("modified").and_then(integer) {
                        Some(t) => index_max = Some(index_max.map_or(t, |m| m.max(t))),
                        None => index_without_modified = true,
                    }
                }
            }
            if !own {
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
            match r.get("modified").and_then(integer) {
                Some(t) => max_seen = Some(max_seen.map_or(t, |m| m.max(t))),
                None => row_without_modified = true,
            }
            if spec.scan.is_some() {
                let t = r.get("startdate").and_then(integer);
                track(ctx, t, || key_text(def, &r), &mut emitted);
            }
            fresh.push(r);
        }
        if own {
            out.emit(def, fresh, &time_extracted).await?;
        }
    }
    if own {
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
    if let (Some(fed), Some(planner)) = (fed, planner) {
        let streams: Vec<&'static WindowStream> = fed.streams.iter().map(|(s, _)| *s).collect();
        let windows = planner.windows(fed_bounds.start, ctx.keep_until);
        read_windows(ctx, out, userid, fed.detail, &streams, &windows).await?;
        // Every window the rows pointed at is written: the next run asks for rows changed
        // after them.
        for (stream, mark) in fed.streams {
            let earned = changes_bookmark(
                index_max,
                index_without_modified,
                mark.is_some(),
                ctx.now,
                ctx.end,
            );
            if let Some(m) = earned {
                let def = stream_def(stream.stream)?;
                out.partition(def, userid, vec![(FIELD_INDEX_MODIFIED, Value::from(m))])
                    .await?;
            }
        }
    }
    if own {
        if let Some(scan) = spec.scan {
            reconcile_after(ctx, out, userid, def, emitted.into_keys(), scan).await?;
        }
    }
    Ok(())
}
