//! getmeas: the typed page reader, de-duplication against the neighbouring page, the date
//! filter, the bookmarks of categories 1 and 2, deletion tracking.

use super::*;

/// What paging, filtering and deletion tracking need of a measure record, typed or not.
pub(super) trait MeasureLike: Fields {
    fn key_hash(&self, def: &StreamDef) -> u64;
    fn date(&self) -> Option<i64>;
    fn change_time(&self) -> Option<i64>;
    fn key(&self, def: &StreamDef) -> EmittedKey;
}

impl MeasureLike for Record {
    fn key_hash(&self, def: &StreamDef) -> u64 {
        record_key(def, self)
    }
    fn date(&self) -> Option<i64> {
        self.get("date").and_then(integer)
    }
    fn change_time(&self) -> Option<i64> {
        measure::change_time(self)
    }
    fn key(&self, def: &StreamDef) -> EmittedKey {
        key_text(def, self).into()
    }
}

impl MeasureLike for MeasureRow<'_> {
    /// The same hash as [`record_key`] of the equal record.
    fn key_hash(&self, _def: &StreamDef) -> u64 {
        let mut h = KeyHasher::default();
        for v in [
            self.userid,
            self.group.grpid,
            self.measure.kind,
            self.position(),
        ] {
            // As `hash_value` hashes an integer.
            (2u8, v).hash(&mut h);
        }
        h.finish()
    }
    fn date(&self) -> Option<i64> {
        self.group.date
    }
    fn change_time(&self) -> Option<i64> {
        MeasureRow::change_time(self)
    }
    fn key(&self, _def: &StreamDef) -> EmittedKey {
        EmittedKey::ints(&[self.group.grpid, self.measure.kind, self.position()])
    }
}

/// One getmeas page being taken: de-duplication against the neighbouring page, the date
/// filter, the bookmark candidate, deletion tracking and rendering.
pub(super) struct MeasurePage<'s> {
    pub(super) ctx: &'s SyncCtx,
    pub(super) def: &'static StreamDef,
    pub(super) time_extracted: String,
    pub(super) batch: Option<Batch>,
    pub(super) recent: &'s mut RecentKeys,
    pub(super) emitted: &'s mut Emitted,
    pub(super) max_seen: &'s mut Option<i64>,
}

impl MeasurePage<'_> {
    fn reserve(&mut self, records: usize) {
        if let Some(batch) = &mut self.batch {
            batch.reserve(records);
        }
    }

    /// Sends the batch once it is full, and starts one for the `left` records to come.
    async fn send_if_full(&mut self, out: &Emitter, left: usize) -> Result<(), SendError> {
        if !self.batch.as_ref().is_some_and(Batch::is_full) {
            return Ok(());
        }
        let mut fresh = out.batch(self.def);
        if let Some(batch) = &mut fresh {
            batch.reserve(left);
        }
        match std::mem::replace(&mut self.batch, fresh) {
            Some(full) => out.send(full).await,
            None => Ok(()),
        }
    }

    fn take<R: MeasureLike>(&mut self, r: &R) {
        if !self.recent.insert(r.key_hash(self.def)) {
            return;
        }
        let date = r.date();
        if date.is_some_and(|d| d < self.ctx.start || d > self.ctx.keep_until) {
            return;
        }
        if let Some(t) = r.change_time() {
            *self.max_seen = Some(self.max_seen.map_or(t, |m| m.max(t)));
        }
        track(self.ctx, date, || r.key(self.def), self.emitted);
        if let Some(batch) = &mut self.batch {
            batch.push(r, &self.time_extracted);
        }
    }
}

pub(super) async fn sync_measures(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    scan: &Scan,
) -> StreamResult {
    let def = stream_def("measures")?;
    // lastupdate returns groups changed strictly after it (Withings' own incremental recipe:
    // store max(modified), ask lastupdate=max); each category has its own.
    let objectives_mark = out
        .partition_field(def.name, userid, FIELD_OBJECTIVES_MODIFIED)
        .and_then(|v| integer(&v));
    let mut categories = vec![("1", out.bookmark(def.name, userid), None)];
    if ctx.include_objectives {
        categories.push(("2", objectives_mark, None));
    }
    let mut emitted = Emitted::default();
    for (category, mark, max_seen) in &mut categories {
        let since = mark.unwrap_or(ctx.start - 1);
        let mut recent = RecentKeys::default();
        let params = vec![
            ("action", "getmeas".to_string()),
            ("category", category.to_string()),
            ("lastupdate", since.to_string()),
        ];
        let mut chain = MeasureChain::new(ctx, def, "/measure", params, "measuregrps");
        while chain.next_page() {
            let mut page = MeasurePage {
                ctx,
                def,
                time_extracted: ctx.now_text(),
                batch: out.batch(def),
                recent: &mut recent,
                emitted: &mut emitted,
                max_seen,
            };
            page.recent.next_page();
            // The page's parts are written as they arrive (see `streamed`).
            while let Some(part) = chain.part().await? {
                match part {
                    Part::Typed(fast) => {
                        let mut left: usize =
                            fast.measuregrps.iter().map(|g| g.measures.len()).sum();
                        page.reserve(left);
                        for row in fast.rows(userid) {
                            page.take(&row);
                            left -= 1;
                            page.send_if_full(out, left).await?;
                        }
                    }
                    Part::Records(records) => {
                        for (i, r) in records.iter().enumerate() {
                            page.take(r);
                            page.send_if_full(out, records.len() - i - 1).await?;
                        }
                    }
                }
            }
            if let Some(batch) = page.batch {
                out.send(batch).await?;
            }
        }
    }
    // Pages come newest first under a date range and by `modified` under lastupdate; either
    // way the bookmark moves only once every page of the chain is written.
    for (category, mark, max_seen) in categories {
        match (category, max_seen) {
            ("1", Some(m)) => out.advance(def, userid, m).await?,
            (_, Some(m)) if mark.is_none_or(|b| m > b) => {
                out.partition(
                    def,
                    userid,
                    vec![(FIELD_OBJECTIVES_MODIFIED, Value::from(m))],
                )
                .await?
            }
            _ => {}
        }
    }
    reconcile_after(ctx, out, userid, def, emitted.into_keys(), scan).await
}
