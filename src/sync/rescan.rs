//! Deletion detection: the re-scan of the recent window by date range and the tombstones
//! of keys Withings no longer returns.

use super::*;

/// Remembers this run's keys and, when due, re-scans the window and emits tombstones for
/// remembered keys that Withings no longer returns.
pub(super) async fn reconcile_after(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    def: &'static StreamDef,
    emitted: KeySet,
    scan: &Scan,
) -> StreamResult {
    if ctx.reconcile_window <= 0 {
        return Ok(());
    }
    let since = ctx.now - ctx.reconcile_window;
    let stored = out.partition_field(def.name, userid, FIELD_KEYS);
    let prior = keys_from_state(stored.as_ref());
    // Nothing remembered from earlier runs: nothing can have been deleted (first sync).
    let nothing_to_check = prior.values().all(|t| *t < since);
    let remembered = remember(prior, emitted, since);
    let last = out
        .partition_field(def.name, userid, FIELD_RECONCILED_AT)
        .and_then(|v| v.as_i64());
    if nothing_to_check {
        out.partition(
            def,
            userid,
            vec![
                (FIELD_KEYS, keys_to_state(&remembered)),
                (FIELD_RECONCILED_AT, Value::from(ctx.now)),
            ],
        )
        .await?;
        return Ok(());
    }
    if !due(last, ctx.now, ctx.reconcile_every) {
        out.partition(def, userid, vec![(FIELD_KEYS, keys_to_state(&remembered))])
            .await?;
        return Ok(());
    }
    // Objectives (getmeas category 2) are re-scanned while they are extracted, and also once
    // they were (the partition has their bookmark): keys remembered from then must not look
    // deleted because category 2 was no longer asked for.
    let objectives = ctx.include_objectives
        || out
            .partition_field(def.name, userid, FIELD_OBJECTIVES_MODIFIED)
            .is_some();
    let current = scan_window(ctx, userid, def, scan, since, objectives).await?;
    let outcome = reconcile(&remembered, &current, since);
    if !outcome.deleted.is_empty() {
        info!(
            userid,
            stream = def.name,
            deleted = outcome.deleted.len(),
            "Emitting tombstones for records deleted in Withings."
        );
    }
    let tombstones: Vec<Record> = outcome
        .deleted
        .iter()
        .filter_map(|k| tombstone(def, userid, k, ctx.now))
        .collect();
    out.emit(def, tombstones, &ctx.now_text()).await?;
    out.partition(
        def,
        userid,
        vec![
            (FIELD_KEYS, keys_to_state(&outcome.remembered)),
            (FIELD_RECONCILED_AT, Value::from(ctx.now)),
        ],
    )
    .await?;
    Ok(())
}

/// A tombstone: the key, the userid and `_sdc_deleted_at`; every other column null.
pub(super) fn tombstone(def: &StreamDef, userid: i64, key: &str, now: i64) -> Option<Record> {
    let values: Vec<Value> = serde_json::from_str(key).ok()?;
    let names: Vec<&str> = def
        .keys
        .iter()
        .copied()
        .filter(|k| *k != "userid")
        .collect();
    if values.len() != names.len() {
        return None;
    }
    let mut r = Record::new();
    r.insert("userid".into(), Value::from(userid));
    for (name, value) in names.into_iter().zip(values) {
        r.insert(name.into(), value);
    }
    r.insert("_sdc_deleted_at".into(), Value::from(now));
    Some(r)
}

/// Every key Withings returns now for the window starting at `since`.
pub(super) async fn scan_window(
    ctx: &SyncCtx,
    userid: i64,
    def: &StreamDef,
    scan: &Scan,
    since: i64,
    objectives: bool,
) -> std::result::Result<KeySet, StreamFail> {
    let range = if scan.ymd {
        vec![
            ("startdateymd", timefmt::ymd(since.div_euclid(86_400) - 1)),
            ("enddateymd", timefmt::ymd(ctx.end.div_euclid(86_400) + 1)),
        ]
    } else {
        vec![
            ("startdate", since.to_string()),
            ("enddate", ctx.end.to_string()),
        ]
    };
    let categories: &[&str] = match (scan.action, objectives) {
        ("getmeas", true) => &["1", "2"],
        ("getmeas", false) => &["1"],
        _ => &[""],
    };
    let mut current = KeySet::new();
    for category in categories {
        let mut params = vec![("action", scan.action.to_string())];
        if !category.is_empty() {
            params.push(("category", category.to_string()));
        }
        params.extend(range.iter().cloned());
        if scan.action == "getmeas" {
            scan_measures(ctx, userid, def, scan, params, &mut current).await?;
            continue;
        }
        let mut pages = Pages::values(ctx, scan.path, params, scan.list_key, def.name, None);
        while let Some(body) = pages.next_value().await? {
            let records = (scan.build)(&body, userid)?;
            pages.advance(
                pages.rows(&body),
                records.first().map(|r| record_key(def, r)),
                records.last().map(|r| record_key(def, r)),
                true,
            );
            for r in &records {
                if let Some(t) = r.get(scan.time_field).and_then(integer) {
                    current.insert(key_text(def, r), t);
                }
            }
        }
    }
    Ok(current)
}

/// The getmeas re-scan: pages are read part by part and typed where they have the usual
/// shape, as the sync reads them (a 4096-group page read as a JSON tree would cost tens of
/// megabytes), others leniently.
async fn scan_measures(
    ctx: &SyncCtx,
    userid: i64,
    def: &StreamDef,
    scan: &Scan,
    params: Vec<(&'static str, String)>,
    current: &mut KeySet,
) -> Result<(), StreamFail> {
    let def = stream_def(def.name)?;
    let mut chain = MeasureChain::new(ctx, def, scan.path, params, scan.list_key);
    while chain.next_page() {
        while let Some(part) = chain.part().await? {
            match part {
                Part::Typed(page) => {
                    for r in page.rows(userid) {
                        if let Some(t) = r.date() {
                            current.insert(r.key(def).into_text(), t);
                        }
                    }
                }
                Part::Records(records) => {
                    for r in &records {
                        if let Some(t) = r.get(scan.time_field).and_then(integer) {
                            current.insert(key_text(def, r), t);
                        }
                    }
                }
            }
        }
    }
    Ok(())
}
