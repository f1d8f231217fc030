//! Modules read by YMD range on a first sync and by `lastupdate` afterwards, offset-paged:
//! getactivity, getworkouts, sleep getsummary.

use super::*;

/// A module read by YMD range on a first sync and by `lastupdate` afterwards, offset-paged.
pub(super) struct Changes {
    pub(super) stream: &'static str,
    pub(super) path: &'static str,
    pub(super) action: &'static str,
    pub(super) list_key: &'static str,
    pub(super) data_fields: &'static [&'static str],
    pub(super) build: Builder,
    /// The row's instant that Withings' YMD filter dates it by (None: a day without one).
    pub(super) instant_field: Option<&'static str>,
    /// How deletions are detected (None: rows of this module are never deleted).
    pub(super) scan: Option<&'static Scan>,
}

pub(super) const CHANGES_ACTIVITY: Changes = Changes {
    stream: "activity",
    path: "/v2/measure",
    action: "getactivity",
    list_key: "activities",
    data_fields: activity::GETACTIVITY_DATA_FIELDS,
    build: activity::activity_records,
    instant_field: None,
    scan: None,
};
pub(super) const CHANGES_WORKOUTS: Changes = Changes {
    stream: "workouts",
    path: "/v2/measure",
    action: "getworkouts",
    list_key: "series",
    data_fields: workouts::GETWORKOUTS_DATA_FIELDS,
    build: workouts::workouts_records,
    instant_field: Some("startdate"),
    scan: Some(&SCAN_WORKOUTS),
};
pub(super) const CHANGES_SUMMARIES: Changes = Changes {
    stream: "sleep_summaries",
    path: "/v2/sleep",
    action: "getsummary",
    list_key: "series",
    data_fields: sleep::GETSUMMARY_DATA_FIELDS,
    build: sleep::sleep_summaries_records,
    instant_field: Some("enddate"),
    scan: Some(&SCAN_SUMMARIES),
};

pub(super) async fn sync_changes(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    spec: &Changes,
) -> StreamResult {
    let def = stream_def(spec.stream);
    let bookmark = out.bookmark(def.name, userid);
    let range = match bookmark {
        Some(b) => vec![("lastupdate", b.to_string())],
        // YMD dates are the user's local calendar days: widening the UTC range by a day on
        // each side covers every timezone (UTC-12 to UTC+14).
        // Rows outside [start, end] in the user's timezone are dropped below.
        None => vec![
            (
                "startdateymd",
                timefmt::ymd(ctx.start.div_euclid(86_400) - 1),
            ),
            ("enddateymd", timefmt::ymd(ctx.end.div_euclid(86_400) + 1)),
        ],
    };
    let bounds = Bounds {
        start: ctx.start,
        end: ctx.keep_until,
    };
    // The user's timezone, as the rows say it (for a row that does not).
    let mut tz: Option<Tz> = None;
    let mut pager = Pager::new();
    let mut recent = RecentKeys::default();
    let mut max_seen: Option<i64> = None;
    let mut row_without_modified = false;
    let mut emitted = Emitted::default();
    loop {
        let mut params = vec![("action", spec.action.to_string())];
        params.extend(range.iter().cloned());
        params.push(("data_fields", spec.data_fields.join(",")));
        if pager.offset() > 0 {
            params.push(("offset", pager.offset().to_string()));
        }
        let body = ctx.session.call(&ctx.client, spec.path, &params).await?;
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
            if !has_keys(def, &r) {
                fresh.push(r);
                continue;
            }
            if !recent.insert(record_key(def, &r)) {
                continue;
            }
            tz = row_tz(&r).or(tz);
            if !bounds.keeps(&r, spec.instant_field, tz) {
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
        out.emit(def, fresh, &time_extracted).await?;
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
    match spec.scan {
        Some(scan) => reconcile_after(ctx, out, userid, def, emitted.into_keys(), scan).await,
        None => Ok(()),
    }
}
