//! The embedded store's imported business data: one table per kind keyed (site, record key);
//! an import is one write transaction, so it lands whole or not at all.

use crm_schemas::{BusinessData, ImportBatch};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};
use serde::Serialize;

use super::{db_err, decode, encode, site_rows};
use crate::Result;

const ACCOUNTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("business_accounts");
const INVOICES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("business_invoices");
const TICKETS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("business_tickets");
const RELATIONSHIPS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("business_relationships");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    for table in [ACCOUNTS, INVOICES, TICKETS, RELATIONSHIPS] {
        txn.open_table(table).map_err(db_err)?;
    }
    Ok(())
}

fn put_all<T: Serialize>(txn: &WriteTransaction, table: TableDefinition<(&str, &str), &[u8]>, site: &str, rows: &[T], key: impl Fn(&T) -> &str) -> Result<()> {
    let mut table = txn.open_table(table).map_err(db_err)?;
    for row in rows {
        table.insert((site, key(row)), encode(row)?.as_slice()).map_err(db_err)?;
    }
    Ok(())
}

pub(super) fn import(db: &Database, site: &str, batch: &ImportBatch) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    match batch {
        ImportBatch::Accounts(rows) => put_all(&txn, ACCOUNTS, site, rows, |r| &r.account_id)?,
        ImportBatch::Invoices(rows) => put_all(&txn, INVOICES, site, rows, |r| &r.invoice_id)?,
        ImportBatch::Tickets(rows) => put_all(&txn, TICKETS, site, rows, |r| &r.ticket_id)?,
        ImportBatch::Relationships(rows) => put_all(&txn, RELATIONSHIPS, site, rows, |r| &r.account_id)?,
    }
    txn.commit().map_err(db_err)
}


pub(super) fn read(db: &Database, site: &str) -> Result<BusinessData> {
    Ok(BusinessData {
        accounts: site_rows(db, ACCOUNTS, site)?,
        invoices: site_rows(db, INVOICES, site)?,
        tickets: site_rows(db, TICKETS, site)?,
        relationships: site_rows(db, RELATIONSHIPS, site)?,
    })
}

/// (site, account, day) → health of that day.
const HEALTH: TableDefinition<(&str, &str, i64), &[u8]> = TableDefinition::new("account_health");

pub(super) fn create_health_table(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(HEALTH).map_err(db_err)?;
    Ok(())
}

pub(super) fn put_health(db: &Database, results: &[crm_schemas::AccountHealth]) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut table = txn.open_table(HEALTH).map_err(db_err)?;
        for r in results {
            table.insert((r.site_id.as_str(), r.account_id.as_str(), r.day), encode(r)?.as_slice()).map_err(db_err)?;
        }
    }
    txn.commit().map_err(db_err)
}

pub(super) fn health_history(db: &Database, site: &str, account: &str, limit: usize) -> Result<Vec<crm_schemas::AccountHealth>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(HEALTH).map_err(db_err)?;
    let mut out = Vec::new();
    for row in table.range((site, account, i64::MIN)..=(site, account, i64::MAX)).map_err(db_err)?.rev().take(limit) {
        out.push(decode(row.map_err(db_err)?.1.value())?);
    }
    Ok(out)
}

pub(super) fn latest_health(db: &Database, site: &str) -> Result<Vec<crm_schemas::AccountHealth>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(HEALTH).map_err(db_err)?;
    let mut latest: Vec<crm_schemas::AccountHealth> = Vec::new();
    for row in table.range::<(&str, &str, i64)>((site, "", i64::MIN)..).map_err(db_err)? {
        let (key, value) = row.map_err(db_err)?;
        if key.value().0 != site {
            break;
        }
        let record: crm_schemas::AccountHealth = decode(value.value())?;
        // Keys are ordered by account then day: the last record per account is its latest.
        match latest.last_mut() {
            Some(last) if last.account_id == record.account_id => *last = record,
            _ => latest.push(record),
        }
    }
    Ok(latest)
}

/// (site, task id) → task.
const TASKS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("tasks");

pub(super) fn create_task_table(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(TASKS).map_err(db_err)?;
    Ok(())
}

pub(super) fn add_tasks(db: &Database, tasks: &[crm_schemas::Task]) -> Result<usize> {
    let txn = db.begin_write().map_err(db_err)?;
    let mut added = 0;
    {
        let mut table = txn.open_table(TASKS).map_err(db_err)?;
        for task in tasks {
            let key = (task.site_id.as_str(), task.task_id.as_str());
            if table.get(key).map_err(db_err)?.is_none() {
                table.insert(key, encode(task)?.as_slice()).map_err(db_err)?;
                added += 1;
            }
        }
    }
    txn.commit().map_err(db_err)?;
    Ok(added)
}

pub(super) fn update_task(db: &Database, task: &crm_schemas::Task) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(TASKS).map_err(db_err)?.insert((task.site_id.as_str(), task.task_id.as_str()), encode(task)?.as_slice()).map_err(db_err)?;
    txn.commit().map_err(db_err)
}

pub(super) fn tasks(db: &Database, site: &str) -> Result<Vec<crm_schemas::Task>> {
    let mut all: Vec<crm_schemas::Task> = site_rows(db, TASKS, site)?;
    all.sort_by(|a, b| a.due_ms.cmp(&b.due_ms).then_with(|| a.task_id.cmp(&b.task_id)));
    Ok(all)
}
