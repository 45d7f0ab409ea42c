//! One-time upgrades of an embedded store written by an earlier version, run at open.
//!
//! `legacy_events`: stores from before the body segments kept each event's JSON in the
//! `events` B-tree. Their rows move to the segments and `event_index` in chunks (each chunk
//! one transaction, so an interrupted upgrade resumes where it stopped), then the old table
//! is dropped.
//!
//! `legacy_visitors`: profiles as bare JSON plus a separate rank-keys table, before the rank
//! keys moved into the profile row (`embedded/profiles.rs`).

use redb::{Database, ReadableTable, ReadableTableMetadata, TableDefinition, TableHandle, WriteTransaction};

use super::bodies::{self, Appender};
use super::{db_err, decode, profiles, EventKey, EVENTS, LEGACY_EVENTS, LEGACY_VISITORS, LEGACY_VISITOR_RANK_KEYS, VISITORS};
use crate::Result;
use crm_schemas::{StoredEvent, VisitorProfile};

const CHUNK: usize = 10_000;

fn table_exists(db: &Database, name: &str) -> Result<bool> {
    Ok(db.begin_read().map_err(db_err)?.list_tables().map_err(db_err)?.any(|t| t.name() == name))
}

/// Runs `chunk` in one committed write transaction after another until it reports the old
/// table empty (it drops the table in that last transaction). Returns the rows moved.
fn in_chunks(db: &Database, mut chunk: impl FnMut(&WriteTransaction) -> Result<(u64, bool)>) -> Result<u64> {
    let mut moved = 0;
    loop {
        let txn = db.begin_write().map_err(db_err)?;
        let (rows, done) = chunk(&txn)?;
        txn.commit().map_err(db_err)?;
        moved += rows;
        if done {
            return Ok(moved);
        }
    }
}

pub(super) fn legacy_events(db: &Database, appender: &mut Appender) -> Result<()> {
    if !table_exists(db, LEGACY_EVENTS.name())? {
        return Ok(());
    }
    let moved = in_chunks(db, |txn| {
        appender.begin()?;
        let (rows, done) = {
            let mut legacy = txn.open_table(LEGACY_EVENTS).map_err(db_err)?;
            let mut index = txn.open_table(EVENTS).map_err(db_err)?;
            let mut keys: Vec<(String, i64, u128)> = Vec::with_capacity(CHUNK);
            for row in legacy.iter().map_err(db_err)?.take(CHUNK) {
                let (key, value) = row.map_err(db_err)?;
                let (site, ts, id) = key.value();
                let event: StoredEvent = decode(value.value())?;
                let at = appender.push(value.value(), bodies::kind_of(&event))?;
                index.insert((site, ts, id), at).map_err(db_err)?;
                keys.push((site.to_owned(), ts, id));
            }
            for (site, ts, id) in &keys {
                let key: EventKey = (site.as_str(), *ts, *id);
                legacy.remove(key).map_err(db_err)?;
            }
            (keys.len() as u64, legacy.len().map_err(db_err)? == 0)
        };
        if done {
            txn.delete_table(LEGACY_EVENTS).map_err(db_err)?;
        }
        appender.flush(txn)?;
        Ok((rows, done))
    })?;
    tracing::info!(events = moved, "moved event bodies out of the b-tree into segment files");
    Ok(())
}

/// Stores from before the rank keys moved into the profile row kept profiles as bare JSON in
/// `visitors` and the rank keys in `visitor_rank_keys`. Rows move to `visitor_profiles` in
/// chunks (each chunk one transaction, so an interrupted upgrade resumes), then both old tables
/// are dropped. The rank index itself is unchanged: the keys are recomputed from each profile,
/// which is how they were made.
pub(super) fn legacy_visitors(db: &Database) -> Result<()> {
    if !table_exists(db, LEGACY_VISITORS.name())? {
        return Ok(());
    }
    let moved = in_chunks(db, |txn| {
        let (rows, done) = {
            let mut legacy = txn.open_table(LEGACY_VISITORS).map_err(db_err)?;
            let mut table = txn.open_table(VISITORS).map_err(db_err)?;
            let mut keys: Vec<(String, String)> = Vec::with_capacity(CHUNK);
            for row in legacy.iter().map_err(db_err)?.take(CHUNK) {
                let (key, value) = row.map_err(db_err)?;
                let (site, visitor) = key.value();
                let profile: VisitorProfile = decode(value.value())?;
                table.insert((site, visitor), profiles::pack(&profile)?.as_slice()).map_err(db_err)?;
                keys.push((site.to_owned(), visitor.to_owned()));
            }
            for (site, visitor) in &keys {
                legacy.remove((site.as_str(), visitor.as_str())).map_err(db_err)?;
            }
            (keys.len() as u64, legacy.len().map_err(db_err)? == 0)
        };
        if done {
            txn.delete_table(LEGACY_VISITORS).map_err(db_err)?;
            let rank_keys: TableDefinition<(&str, &str), (u8, u64, u64, u64)> = TableDefinition::new(LEGACY_VISITOR_RANK_KEYS);
            txn.delete_table(rank_keys).map_err(db_err)?;
        }
        Ok((rows, done))
    })?;
    tracing::info!(visitors = moved, "moved visitor profiles into rows that carry their rank keys");
    Ok(())
}
