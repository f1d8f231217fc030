//! `POST /measure action=getmeas`: epochs, `lastupdate` (modified ascending) or a date range
//! (date descending, enddate inclusive), `page_getmeas` groups per page, `more` 0/1.

use super::params::{page, ApiError, Params};
use super::{Body, Opts};
use crate::data::model::{MeasureGroup, UserData};
use crate::data::render::GroupView;
use serde::Serialize;

#[derive(Serialize)]
struct MeasBody<'a> {
    updatetime: i64,
    timezone: &'a str,
    measuregrps: Vec<GroupView<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    more: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    offset: Option<usize>,
}

struct Filter {
    start: Option<i64>,
    end: Option<i64>,
    category: Option<i64>,
    types: Option<Vec<u16>>,
}

impl Filter {
    fn keeps(&self, g: &MeasureGroup) -> bool {
        self.start.is_none_or(|s| s <= g.date)
            && self.end.is_none_or(|e| g.date <= e)
            && self.category.is_none_or(|c| i64::from(g.category) == c)
            && GroupView::matches(g, self.types.as_deref())
    }
}

pub fn getmeas(user: &UserData, p: &Params, opts: &Opts) -> Result<Body, ApiError> {
    let mut types: Vec<u16> = Vec::new();
    if let Some(t) = p.int("meastype")? {
        types.push(u16::try_from(t).map_err(|_| ApiError::invalid("meastype"))?);
    }
    for t in p.int_list("meastypes")?.unwrap_or_default() {
        types.push(u16::try_from(t).map_err(|_| ApiError::invalid("meastypes"))?);
    }
    let filter = Filter {
        start: p.int("startdate")?,
        end: p.int("enddate")?,
        category: p.int("category")?,
        types: (!types.is_empty()).then_some(types),
    };
    let lastupdate = p.int("lastupdate")?;
    let offset = p.offset()?;
    let size = opts.page_getmeas;
    let store = &user.meas;
    let groups = &store.groups;

    // Candidate indexes in reply order, without copying or sorting.
    let simple = filter.category.is_none() && filter.types.is_none();
    let (rows, more): (Vec<&MeasureGroup>, bool) = if let Some(lu) = lastupdate {
        // A category filter alone is served from its own index.
        let (index, simple) = match (filter.category, filter.types.is_none()) {
            (Some(c @ 1..=2), true) => (&store.by_modified_cat[c as usize - 1], true),
            _ => (&store.by_modified, simple),
        };
        let from = index.partition_point(|&i| groups[i as usize].modified <= lu);
        let idx = &index[from..];
        if simple && filter.start.is_none() && filter.end.is_none() {
            let pg = page(idx.len(), offset, size, false);
            (
                idx[pg.start..pg.end]
                    .iter()
                    .map(|&i| &groups[i as usize])
                    .collect(),
                pg.more,
            )
        } else {
            take_page(
                idx.iter()
                    .map(|&i| &groups[i as usize])
                    .filter(|g| filter.keeps(g)),
                offset,
                size,
            )
        }
    } else {
        let lo = filter
            .start
            .map_or(0, |s| groups.partition_point(|g| g.date < s));
        let hi = filter
            .end
            .map_or(groups.len(), |e| groups.partition_point(|g| g.date <= e));
        let slice = &groups[lo..hi.max(lo)];
        if simple {
            let pg = page(slice.len(), offset, size, false);
            let (a, b) = (slice.len() - pg.end, slice.len() - pg.start);
            (slice[a..b].iter().rev().collect(), pg.more)
        } else {
            take_page(slice.iter().rev().filter(|g| filter.keeps(g)), offset, size)
        }
    };
    let full = rows.len() >= size;
    let (said_more, said_offset) = match (more, opts.lying_more && full) {
        (true, false) => (Some(1), Some(offset + rows.len())),
        (true, true) => (Some(0), Some(0)),
        // A single page from offset 0 carries neither `more` nor `offset` (as observed).
        (false, _) if offset == 0 => (None, None),
        (false, _) => (Some(0), Some(0)),
    };
    let body = MeasBody {
        updatetime: opts.now,
        timezone: user.tz_name,
        measuregrps: rows
            .into_iter()
            .map(|group| GroupView {
                group,
                user,
                types: filter.types.as_deref(),
            })
            .collect(),
        more: said_more,
        offset: said_offset,
    };
    serde_json::to_string(&body)
        .map(Body::Raw)
        .map_err(|e| ApiError::new(2555, format!("serialization failed: {e}")))
}

/// Skips `offset` filtered rows and takes one page; reports whether more rows follow.
fn take_page<'a>(
    mut it: impl Iterator<Item = &'a MeasureGroup>,
    offset: usize,
    size: usize,
) -> (Vec<&'a MeasureGroup>, bool) {
    for _ in 0..offset {
        if it.next().is_none() {
            return (Vec::new(), false);
        }
    }
    let rows: Vec<_> = it.by_ref().take(size).collect();
    let more = it.next().is_some();
    (rows, more)
}
