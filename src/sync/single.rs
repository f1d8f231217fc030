//! One-call full-table modules: getdevice, getgoals.

use super::*;

pub(super) async fn sync_single(
    ctx: &SyncCtx,
    out: &Emitter,
    userid: i64,
    path: &'static str,
    action: &'static str,
    stream: &'static str,
    build: Builder,
) -> StreamResult {
    let def = stream_def(stream)?;
    let body = ctx
        .session
        .call(&ctx.client, path, &[("action", action.to_string())])
        .await?;
    let records = build(&body, userid)?;
    // Keys are unique in the output: a reply listing one key twice (a device twice) keeps
    // its first row.
    let mut seen = std::collections::HashSet::new();
    let count = records.len();
    let unique: Vec<Record> = records
        .into_iter()
        .filter(|r| {
            let keyed = def
                .keys
                .iter()
                .all(|k| r.get(*k).is_some_and(|v| !v.is_null()));
            !keyed || seen.insert(record_key(def, r))
        })
        .collect();
    if unique.len() < count {
        warn!(
            userid,
            stream,
            repeated = count - unique.len(),
            "The reply listed a key more than once; kept the first row of each."
        );
    }
    out.emit(def, unique, &ctx.now_text()).await?;
    Ok(())
}
