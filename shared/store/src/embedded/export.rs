//! Reading out and clearing a redb store's pipeline data (events with their bodies, sessions,
//! visitor profiles and the indexes over them), for the one-time conversion of a data directory
//! to the columnar store (crm-store-embedded `convert.rs`). The CRM records, configuration and
//! dead letters are not touched: they stay in this database.

use std::sync::Arc;

use redb::{ReadableTable, ReadableTableMetadata, TableDefinition};

use super::{bodies, db_err, decode, profiles, EmbeddedStore, EVENTS, EVENT_IDS, SESSIONS, VISITORS, VISITOR_EVENTS, VISITOR_RANK, VISITOR_SITES};
use crate::{Result, StoreError};
use crm_schemas::{Session, StoredEvent, VisitorProfile};

/// One chunk handed out by [`EmbeddedStore::export_pipeline`]: rows of one kind.
#[derive(Debug)]
pub enum PipelineChunk {
    Events(Vec<StoredEvent>),
    Sessions(Vec<Session>),
    Visitors(Vec<VisitorProfile>),
}

/// How many events, sessions and visitor profiles a store holds (or an export handed out).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PipelineCounts {
    pub events: u64,
    pub sessions: u64,
    pub visitors: u64,
}

impl PipelineCounts {
    pub fn is_empty(&self) -> bool {
        self.events == 0 && self.sessions == 0 && self.visitors == 0
    }
}

impl EmbeddedStore {
    /// The events, sessions and profiles stored here: what a conversion has to move.
    pub fn pipeline_counts(&self) -> Result<PipelineCounts> {
        let txn = self.db.begin_read().map_err(db_err)?;
        Ok(PipelineCounts {
            events: txn.open_table(EVENTS).map_err(db_err)?.len().map_err(db_err)?,
            sessions: txn.open_table(SESSIONS).map_err(db_err)?.len().map_err(db_err)?,
            visitors: txn.open_table(VISITORS).map_err(db_err)?.len().map_err(db_err)?,
        })
    }

    /// Hands every event, then every session, then every visitor profile to `sink`, at most
    /// `chunk` rows per call, all read from one snapshot. Events come in (site, time, id) order,
    /// read from the body segments sequentially. An error from `sink` stops the export and is
    /// returned as is.
    pub fn export_pipeline<E>(&self, chunk: usize, mut sink: impl FnMut(PipelineChunk) -> std::result::Result<(), E>) -> std::result::Result<PipelineCounts, E>
    where
        E: From<StoreError>,
    {
        let chunk = chunk.max(1);
        let txn = self.db.begin_read().map_err(db_err)?;
        let mut counts = PipelineCounts::default();

        let events = txn.open_table(EVENTS).map_err(db_err)?;
        let mut reader = bodies::Reader::sequential(&self.bodies_dir);
        let mut rows = Vec::with_capacity(chunk.min(65_536));
        for row in events.iter().map_err(db_err)? {
            let (_, at) = row.map_err(db_err)?;
            rows.push(decode::<StoredEvent>(reader.read(at.value())?)?);
            if rows.len() == chunk {
                counts.events += rows.len() as u64;
                sink(PipelineChunk::Events(std::mem::take(&mut rows)))?;
            }
        }
        if !rows.is_empty() {
            counts.events += rows.len() as u64;
            sink(PipelineChunk::Events(rows))?;
        }

        counts.sessions = export_rows(&txn, SESSIONS, chunk, |bytes| decode::<Session>(bytes), |rows| sink(PipelineChunk::Sessions(rows)))?;
        counts.visitors = export_rows(&txn, VISITORS, chunk, profiles::unpack, |rows| sink(PipelineChunk::Visitors(rows)))?;
        Ok(counts)
    }

    /// Deletes every event, session and profile with their indexes and the event body segments,
    /// in one write transaction (the tables come back empty); records, configuration and dead
    /// letters stay. A crash after the commit leaves segment files the next open cuts away, as
    /// it does any bytes past the committed end.
    pub fn clear_pipeline(&self) -> Result<()> {
        let mut appender = self.appender.lock().unwrap_or_else(|p| p.into_inner());
        let txn = self.db.begin_write().map_err(db_err)?;
        macro_rules! recreate {
            ($($table:expr),*) => {$(
                txn.delete_table($table).map_err(db_err)?;
                txn.open_table($table).map_err(db_err)?;
            )*};
        }
        recreate!(EVENTS, EVENT_IDS, VISITOR_EVENTS, VISITORS, VISITOR_RANK, VISITOR_SITES, SESSIONS);
        bodies::forget_end(&txn)?;
        txn.commit().map_err(db_err)?;
        appender.reset()
    }

    /// Gives the pages of dropped tables back to the file system (redb keeps a file's size
    /// otherwise). Needs the only handle on the database: returns `Ok(false)` when a clone of
    /// this store is alive, and does nothing.
    pub fn compact(&mut self) -> Result<bool> {
        let Some(db) = Arc::get_mut(&mut self.db) else { return Ok(false) };
        while db.compact().map_err(|e| StoreError::Io(format!("compacting the redb file: {e}")))? {}
        Ok(true)
    }
}

fn export_rows<K, T, E>(
    txn: &redb::ReadTransaction,
    table: TableDefinition<K, &[u8]>,
    chunk: usize,
    decode_row: impl Fn(&[u8]) -> Result<T>,
    mut sink: impl FnMut(Vec<T>) -> std::result::Result<(), E>,
) -> std::result::Result<u64, E>
where
    K: redb::Key + 'static,
    E: From<StoreError>,
{
    let table = txn.open_table(table).map_err(db_err)?;
    let mut total = 0;
    let mut rows = Vec::with_capacity(chunk.min(65_536));
    for row in table.iter().map_err(db_err)? {
        let (_, value) = row.map_err(db_err)?;
        rows.push(decode_row(value.value())?);
        if rows.len() == chunk {
            total += rows.len() as u64;
            sink(std::mem::take(&mut rows))?;
        }
    }
    if !rows.is_empty() {
        total += rows.len() as u64;
        sink(rows)?;
    }
    Ok(total)
}
