//! The redb store's growth scans: a site's events of a window in key order, without the rows of
//! visitors whose profile is a bot, for matched events, the custom-event listing and page paths.

use std::collections::HashSet;
use std::path::Path;

use crm_schemas::StoredEvent;
use redb::Database;

use super::{bodies, bot_ids, db_err, decode, EventKey, EVENTS};
use crate::explore::{paths_of, CustomEventsBuilder, CustomEventStats, PagePaths};
use crate::growth::{self, EventMatch, MatchedEvent};
use crate::Result;

/// Calls `each` with every human event of `[from_ms, to_ms)` whose body kind (`bodies::KIND_*`)
/// is `wanted`, in (time, id) order, in one read transaction.
fn for_each_human(db: &Database, dir: &Path, site: &str, from_ms: i64, to_ms: i64, wanted: impl Fn(u8) -> bool, mut each: impl FnMut(StoredEvent)) -> Result<()> {
    let txn = db.begin_read().map_err(db_err)?;
    let bots: HashSet<String> = bot_ids(&txn, site, from_ms)?.into_iter().collect();
    let events = txn.open_table(EVENTS).map_err(db_err)?;
    let mut reader = bodies::Reader::sequential(dir);
    for row in events.range::<EventKey>((site, from_ms, 0u128)..(site, to_ms, 0u128)).map_err(db_err)? {
        let (_, value) = row.map_err(db_err)?;
        let at = value.value();
        if !wanted(at.3) {
            continue;
        }
        let event: StoredEvent = decode(reader.read(at)?)?;
        if !(event.is_bot || bots.contains(&event.visitor_id)) {
            each(event);
        }
    }
    Ok(())
}

pub(super) fn matched_events(db: &Database, dir: &Path, site: &str, from_ms: i64, to_ms: i64, matchers: &[EventMatch], keep_unmatched: bool) -> Result<Vec<MatchedEvent>> {
    let mut out = Vec::new();
    for_each_human(db, dir, site, from_ms, to_ms, |_| true, |event| {
        let mask = growth::mask(matchers, &event);
        if mask != 0 || (keep_unmatched && growth::kept_unmatched(&event)) {
            out.push(MatchedEvent { visitor_id: event.visitor_id, ts_ms: event.ts_ms, mask });
        }
    })?;
    // Rows come by (time, id); a stable sort by visitor keeps that order within one.
    out.sort_by(|a, b| a.visitor_id.cmp(&b.visitor_id));
    Ok(out)
}

pub(super) fn custom_events(db: &Database, dir: &Path, site: &str, from_ms: i64, to_ms: i64, top: usize) -> Result<Vec<CustomEventStats>> {
    let mut builder = CustomEventsBuilder::default();
    for_each_human(db, dir, site, from_ms, to_ms, |kind| kind == bodies::KIND_OTHER, |event| builder.add(&event))?;
    Ok(builder.finish(top))
}

pub(super) fn page_paths(db: &Database, dir: &Path, site: &str, from_ms: i64, to_ms: i64, glob: &str, top: usize) -> Result<PagePaths> {
    let mut pageviews = Vec::new();
    for_each_human(db, dir, site, from_ms, to_ms, |kind| kind == bodies::KIND_PAGEVIEW, |event| pageviews.push(event))?;
    Ok(paths_of(&pageviews, glob, top))
}
