//! Recordings listed newest first (heart, stetho), each with a signal fetched once.

use super::*;

use crate::index::relist_more;

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
    let recordings = stream_def(spec.recordings)?;
    let signals = stream_def(spec.signals)?;
    let want_rec = out.is_selected(recordings.name);
    let want_sig = out.is_selected(signals.name);
    let field_i64 = |stream: &str, field: &str| {
        out.partition_field(stream, userid, field)
            .and_then(|v| integer(&v))
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
    let params = vec![
        ("action", "list".to_string()),
        ("startdate", ctx.start.to_string()),
        ("enddate", ctx.end.to_string()),
    ];
    let mut pages = Pages::values(ctx, spec.path, params, "series", recordings.name, None);
    let mut recent = RecentKeys::default();
    let (mut max_rec, mut max_sig): (Option<i64>, Option<i64>) = (None, None);
    let mut oldest: Option<i64> = None;
    while let Some(body) = pages.next_value().await? {
        let time_extracted = ctx.now_text();
        let records = (spec.build)(&body, userid)?;
        recent.next_page();
        let rows = pages.rows(&body);
        let page_oldest = records
            .iter()
            .filter_map(|r| r.get("timestamp").and_then(integer))
            .min();
        oldest = match (oldest, page_oldest) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        pages.advance(
            rows,
            records.first().map(|r| record_key(recordings, r)),
            records.last().map(|r| record_key(recordings, r)),
            relist_more(page_oldest, rows, seen_until),
        );
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
            let t = r.get("timestamp").and_then(integer);
            let Some(signalid) = r.get("signalid").and_then(integer) else {
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
            out.emit(signals, srecs, &ctx.now_text()).await?;
            fetched.insert(signalid, t.unwrap_or(ctx.now));
            if let Some(t) = t {
                max_sig = Some(max_sig.map_or(t, |m| m.max(t)));
            }
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
