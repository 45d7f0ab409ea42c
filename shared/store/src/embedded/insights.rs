//! The embedded store's AI insight tables: queued requests (with an index by next attempt for
//! the worker) and the latest insight per lead.

use crm_schemas::{InsightRequest, LeadInsight};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::{db_err, decode, encode};
use crate::Result;

pub(super) const REQUESTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("insight_requests");
/// (next attempt, site, lead) of pending requests.
pub(super) const DUE: TableDefinition<(i64, &str, &str), ()> = TableDefinition::new("insight_due");
pub(super) const INSIGHTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("insights");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(REQUESTS).map_err(db_err)?;
    txn.open_table(DUE).map_err(db_err)?;
    txn.open_table(INSIGHTS).map_err(db_err)?;
    Ok(())
}

/// Upserts requests inside a transaction, keeping the due index in step.
pub(super) fn upsert(txn: &WriteTransaction, requests: &[InsightRequest]) -> Result<()> {
    let mut table = txn.open_table(REQUESTS).map_err(db_err)?;
    let mut due = txn.open_table(DUE).map_err(db_err)?;
    for request in requests {
        let key = (request.site_id.as_str(), request.lead_id.as_str());
        let previous: Option<InsightRequest> = table.get(key).map_err(db_err)?.map(|v| decode(v.value())).transpose()?;
        if let Some(previous) = previous {
            due.remove((previous.next_attempt_ms, key.0, key.1)).map_err(db_err)?;
        }
        table.insert(key, encode(request)?.as_slice()).map_err(db_err)?;
        if !request.failed {
            due.insert((request.next_attempt_ms, key.0, key.1), ()).map_err(db_err)?;
        }
    }
    Ok(())
}

pub(super) fn update(db: &Database, request: &InsightRequest) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    upsert(&txn, std::slice::from_ref(request))?;
    txn.commit().map_err(db_err)
}

pub(super) fn due(db: &Database, now_ms: i64, limit: usize) -> Result<Vec<InsightRequest>> {
    let txn = db.begin_read().map_err(db_err)?;
    let due = txn.open_table(DUE).map_err(db_err)?;
    let table = txn.open_table(REQUESTS).map_err(db_err)?;
    let mut out = Vec::new();
    for row in due.range::<(i64, &str, &str)>((i64::MIN, "", "")..=(now_ms, "\u{10ffff}", "\u{10ffff}")).map_err(db_err)?.take(limit) {
        let (key, _) = row.map_err(db_err)?;
        let (_, site, lead) = key.value();
        if let Some(bytes) = table.get((site, lead)).map_err(db_err)? {
            out.push(decode(bytes.value())?);
        }
    }
    Ok(out)
}

pub(super) fn put(db: &Database, insight: &LeadInsight) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let key = (insight.site_id.as_str(), insight.lead_id.as_str());
        let mut requests = txn.open_table(REQUESTS).map_err(db_err)?;
        let previous: Option<InsightRequest> = requests.get(key).map_err(db_err)?.map(|v| decode(v.value())).transpose()?;
        if let Some(previous) = previous {
            txn.open_table(DUE).map_err(db_err)?.remove((previous.next_attempt_ms, key.0, key.1)).map_err(db_err)?;
            requests.remove(key).map_err(db_err)?;
        }
        txn.open_table(INSIGHTS).map_err(db_err)?.insert(key, encode(insight)?.as_slice()).map_err(db_err)?;
    }
    txn.commit().map_err(db_err)
}

pub(super) fn get(db: &Database, site: &str, lead: &str) -> Result<Option<LeadInsight>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(INSIGHTS).map_err(db_err)?;
    table.get((site, lead)).map_err(db_err)?.map(|v| decode(v.value())).transpose()
}
