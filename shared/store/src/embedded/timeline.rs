//! Event reads beyond one visitor on the embedded store: multi-visitor timelines (a lead's
//! devices, newest first) and whole-window scans for batch jobs (oldest first).

use std::ops::Bound;
use std::path::Path;

use crm_schemas::StoredEvent;
use redb::Database;

use super::{bodies, db_err, decode, EVENTS, VISITOR_EVENTS};
use crate::{Page, Result};

/// Events of `visitors` older than `upper` (ts, id), newest first.
pub(super) fn events_of_visitors(db: &Database, dir: &Path, site: &str, visitors: &[String], limit: usize, upper: Option<(i64, u128)>) -> Result<Page<StoredEvent>> {
    let txn = db.begin_read().map_err(db_err)?;
    let timeline = txn.open_table(VISITOR_EVENTS).map_err(db_err)?;
    let events = txn.open_table(EVENTS).map_err(db_err)?;
    let s = site;
    // The newest `limit + 1` keys of each visitor, merged: enough to fill the page.
    let mut keys: Vec<(i64, u128)> = Vec::new();
    for v in visitors {
        let v = v.as_str();
        let high = match upper {
            Some((ts, id)) => Bound::Excluded((s, v, ts, id)),
            None => Bound::Included((s, v, i64::MAX, u128::MAX)),
        };
        let range = timeline.range::<(&str, &str, i64, u128)>((Bound::Included((s, v, i64::MIN, 0u128)), high)).map_err(db_err)?;
        for row in range.rev().take(limit + 1) {
            let (key, _) = row.map_err(db_err)?;
            let (_, _, ts, id) = key.value();
            keys.push((ts, id));
        }
    }
    keys.sort_unstable_by(|a, b| b.cmp(a));
    let more = keys.len() > limit;
    keys.truncate(limit);
    let mut items = Vec::with_capacity(keys.len());
    let mut reader = bodies::Reader::point(dir);
    for (ts, id) in keys {
        if let Some(at) = events.get((s, ts, id)).map_err(db_err)? {
            items.push(decode::<StoredEvent>(reader.read(at.value())?)?);
        }
    }
    let next_cursor = if more { items.last().map(|e| format!("{}:{}", e.ts_ms, e.event_id)) } else { None };
    Ok(Page { items, next_cursor })
}

/// A site's events in `[from_ms, to_ms)` after `after` (ts, id), oldest first.
pub(super) fn scan(db: &Database, dir: &Path, site: &str, from_ms: i64, to_ms: i64, limit: usize, after: Option<(i64, u128)>) -> Result<Page<StoredEvent>> {
    let txn = db.begin_read().map_err(db_err)?;
    let events = txn.open_table(EVENTS).map_err(db_err)?;
    let low = match after {
        Some((ts, id)) => Bound::Excluded((site, ts, id)),
        None => Bound::Included((site, from_ms, 0u128)),
    };
    let range = events.range::<(&str, i64, u128)>((low, Bound::Excluded((site, to_ms, 0u128)))).map_err(db_err)?;
    let mut items = Vec::new();
    let mut more = false;
    let mut reader = bodies::Reader::sequential(dir);
    for row in range {
        if items.len() == limit {
            more = true;
            break;
        }
        let (_, value) = row.map_err(db_err)?;
        items.push(decode::<StoredEvent>(reader.read(value.value())?)?);
    }
    let next_cursor = if more { items.last().map(|e: &StoredEvent| format!("{}:{}", e.ts_ms, e.event_id)) } else { None };
    Ok(Page { items, next_cursor })
}
