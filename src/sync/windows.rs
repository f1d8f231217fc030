//! Modules answered 24 h a call (getintradayactivity, sleep get): the calendar walk
//! (`calendar_walk`), and the windows the daily indexes point at.

use super::*;

pub(super) async fn sync_windows(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    spec: &Windows,
) -> StreamResult {
    let selected: Vec<&WindowStream> = spec
        .streams
        .iter()
        .filter(|s| out.is_selected(s.stream))
        .collect();
    // Each stream resumes the lookback behind its own progress: its bookmark (the latest
    // record it emitted, not the end of the last window, so data that reached Withings late
    // is found) or, when later, the end of the windows it read without finding anything.
    let progress: Vec<Progress> = selected
        .iter()
        .map(|s| progress(out, s.stream, userid))
        .collect();
    let marks: Vec<i64> = progress
        .iter()
        .map(|p| resume_from(*p, ctx.start, ctx.reread))
        .collect();
    let mut scanned: Vec<Option<i64>> = progress.iter().map(|p| p.scanned_until).collect();
    let Some(from) = marks.iter().copied().min() else {
        return Ok(());
    };
    let mut recents: Vec<RecentKeys> = selected.iter().map(|_| RecentKeys::default()).collect();
    for (ws, we) in windows(from, ctx.end) {
        let params = vec![
            ("action", spec.action.to_string()),
            ("startdate", ws.to_string()),
            ("enddate", we.to_string()),
            ("data_fields", spec.data_fields.join(",")),
        ];
        let body = ctx.session.call(&ctx.client, spec.path, &params).await?;
        let time_extracted = ctx.now_text();
        for (i, ws_def) in selected.iter().enumerate() {
            let def = stream_def(ws_def.stream)?;
            let (fresh, max_seen) = window_records(
                def,
                ws_def,
                &body,
                userid,
                (ws, we),
                marks[i],
                &mut recents[i],
            )?;
            out.emit(def, fresh, &time_extracted).await?;
            if let Some(m) = max_seen {
                out.advance(def, userid, m).await?;
            }
            // The window's reply is written: nothing before its end needs reading again
            // (beyond the lookback), with or without records.
            if let Some(s) = scanned_after(scanned[i], we, ctx.now) {
                scanned[i] = Some(s);
                out.partition(def, userid, vec![(FIELD_SCANNED_UNTIL, Value::from(s))])
                    .await?;
            }
        }
    }
    Ok(())
}

/// Reads the given windows of a windowed module for `streams`: every record in a window is
/// emitted (late data lies before the bookmark, so nothing is filtered by it), but a record
/// dated outside the window it came from is dropped and counted (a reply must not move a
/// bookmark past what was asked).
pub(super) async fn read_windows(
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
        let time_extracted = ctx.now_text();
        for (i, ws_def) in streams.iter().enumerate() {
            let def = stream_def(ws_def.stream)?;
            // Late data lies before the bookmark: nothing is filtered by it.
            let (fresh, max_seen) = window_records(
                def,
                ws_def,
                &body,
                userid,
                (ws, we),
                i64::MIN,
                &mut recents[i],
            )?;
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

/// The records of one stream in a window's reply, in time order: a record dated outside the
/// window is dropped (and said), one before `from` or seen in the neighbouring window is left
/// out; with the latest time kept. Records without their key pass to the writer, which skips
/// and counts them.
fn window_records(
    def: &'static StreamDef,
    ws_def: &WindowStream,
    body: &Value,
    userid: i64,
    (ws, we): (i64, i64),
    from: i64,
    recent: &mut RecentKeys,
) -> Result<(Vec<Record>, Option<i64>), StreamFail> {
    let mut records = (ws_def.build)(body, userid)?;
    records.sort_by_key(|r| r.get(ws_def.time_field).and_then(integer));
    recent.next_page();
    let mut fresh = Vec::with_capacity(records.len());
    let mut max_seen: Option<i64> = None;
    let mut outside = 0usize;
    for r in records {
        if !has_keys(def, &r) {
            fresh.push(r);
            continue;
        }
        let t = r.get(ws_def.time_field).and_then(integer);
        if ws_def.in_window && t.is_some_and(|t| t < ws || t > we) {
            outside += 1;
            continue;
        }
        if t.is_some_and(|t| t < from) || !recent.insert(record_key(def, &r)) {
            continue;
        }
        if let Some(t) = t {
            max_seen = Some(max_seen.map_or(t, |m| m.max(t)));
        }
        fresh.push(r);
    }
    outside_window(userid, def, outside, ws, we);
    Ok((fresh, max_seen))
}
