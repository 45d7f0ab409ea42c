//! ClickHouse imported business data: one versioned table keyed (site, kind, record key). An
//! import is a single INSERT sent as one block (imports are capped well below the block size
//! set here), so it lands whole or not at all.

use clickhouse::Row;
use crm_schemas::{AccountHealth, BusinessData, ImportBatch, Task};
use crm_store::Result;
use serde::de::DeserializeOwned;
use serde::Serialize;

use super::{ch_err, decode, encode, now_nanos, ClickHouseStore};

pub(crate) const MIGRATION: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS business_records (site_id LowCardinality(String), kind LowCardinality(String),
        key String, version UInt64, body String CODEC(ZSTD(3)))
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, kind, key)",
    "CREATE TABLE IF NOT EXISTS account_health (site_id LowCardinality(String), account_id String, day Int64, version UInt64,
        body String CODEC(ZSTD(3)))
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, account_id, day)",
    "CREATE TABLE IF NOT EXISTS tasks (site_id LowCardinality(String), task_id String, version UInt64, due Int64, body String)
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, task_id)",
];

#[derive(Row, Serialize)]
struct TaskRow {
    site_id: String,
    task_id: String,
    version: u64,
    due: i64,
    body: String,
}

#[derive(Row, Serialize)]
struct HealthRow {
    site_id: String,
    account_id: String,
    day: i64,
    version: u64,
    body: String,
}

/// Rows per import block: larger than any import the parsers accept.
const BLOCK_ROWS: &str = "2000000";

#[derive(Row, Serialize)]
struct RecordRow {
    site_id: String,
    kind: String,
    key: String,
    version: u64,
    body: String,
}

fn rows<T: Serialize>(site: &str, kind: &str, records: &[T], key: impl Fn(&T) -> &str) -> Result<Vec<RecordRow>> {
    let version = now_nanos();
    records
        .iter()
        .map(|r| Ok(RecordRow { site_id: site.to_owned(), kind: kind.to_owned(), key: key(r).to_owned(), version, body: encode(r)? }))
        .collect()
}

impl ClickHouseStore {
    pub(super) async fn import_business(&self, site_id: &str, batch: &ImportBatch) -> Result<()> {
        let rows = match batch {
            ImportBatch::Accounts(r) => rows(site_id, "accounts", r, |x| &x.account_id)?,
            ImportBatch::Invoices(r) => rows(site_id, "invoices", r, |x| &x.invoice_id)?,
            ImportBatch::Tickets(r) => rows(site_id, "tickets", r, |x| &x.ticket_id)?,
            ImportBatch::Relationships(r) => rows(site_id, "relationships", r, |x| &x.account_id)?,
        };
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self
            .client
            .clone()
            .with_setting("max_insert_block_size", BLOCK_ROWS)
            .with_setting("min_insert_block_size_rows", BLOCK_ROWS)
            .insert::<RecordRow>("business_records")
            .await
            .map_err(ch_err)?;
        for row in &rows {
            insert.write(row).await.map_err(ch_err)?;
        }
        insert.end().await.map_err(ch_err)
    }

    async fn records<T: DeserializeOwned>(&self, site_id: &str, kind: &str) -> Result<Vec<T>> {
        let rows: Vec<String> = self
            .client
            .query("SELECT body FROM business_records FINAL WHERE site_id = ? AND kind = ? ORDER BY key")
            .bind(site_id)
            .bind(kind)
            .fetch_all::<String>()
            .await
            .map_err(ch_err)?;
        rows.iter().map(|b| decode(b)).collect()
    }

    pub(super) async fn read_business(&self, site_id: &str) -> Result<BusinessData> {
        Ok(BusinessData {
            accounts: self.records(site_id, "accounts").await?,
            invoices: self.records(site_id, "invoices").await?,
            tickets: self.records(site_id, "tickets").await?,
            relationships: self.records(site_id, "relationships").await?,
        })
    }

    pub(super) async fn save_health(&self, results: &[AccountHealth]) -> Result<()> {
        let version = now_nanos();
        let rows: Vec<HealthRow> = results
            .iter()
            .map(|r| Ok(HealthRow { site_id: r.site_id.clone(), account_id: r.account_id.clone(), day: r.day, version, body: encode(r)? }))
            .collect::<Result<_>>()?;
        self.insert_rows("account_health", &rows).await
    }

    pub(super) async fn get_health_history(&self, site_id: &str, account_id: &str, limit: usize) -> Result<Vec<AccountHealth>> {
        let query = self
            .client
            .query("SELECT body FROM account_health FINAL WHERE site_id = ? AND account_id = ? ORDER BY day DESC LIMIT ?")
            .bind(site_id)
            .bind(account_id)
            .bind(limit as u64);
        self.bodies(query).await
    }

    pub(super) async fn get_latest_health(&self, site_id: &str) -> Result<Vec<AccountHealth>> {
        let query = self
            .client
            .query("SELECT argMax(body, day) AS body FROM account_health FINAL WHERE site_id = ? GROUP BY account_id ORDER BY account_id")
            .bind(site_id);
        self.bodies(query).await
    }

    /// New tasks are version 0: re-adding one never overrides a person's later update.
    pub(super) async fn insert_new_tasks(&self, tasks: &[Task]) -> Result<usize> {
        let existing: std::collections::HashSet<String> = self.get_tasks_of(tasks).await?;
        let rows: Vec<TaskRow> = tasks
            .iter()
            .filter(|t| !existing.contains(&t.task_id))
            .map(|t| Ok(TaskRow { site_id: t.site_id.clone(), task_id: t.task_id.clone(), version: 0, due: t.due_ms, body: encode(t)? }))
            .collect::<Result<_>>()?;
        let added = rows.len();
        self.insert_rows("tasks", &rows).await?;
        Ok(added)
    }

    async fn get_tasks_of(&self, tasks: &[Task]) -> Result<std::collections::HashSet<String>> {
        let mut found = std::collections::HashSet::new();
        for task in tasks {
            let ids: Vec<String> = self
                .client
                .query("SELECT task_id FROM tasks FINAL WHERE site_id = ? AND task_id = ?")
                .bind(&task.site_id)
                .bind(&task.task_id)
                .fetch_all::<String>()
                .await
                .map_err(ch_err)?;
            found.extend(ids);
        }
        Ok(found)
    }

    pub(super) async fn save_task(&self, task: &Task) -> Result<()> {
        let row = TaskRow { site_id: task.site_id.clone(), task_id: task.task_id.clone(), version: now_nanos(), due: task.due_ms, body: encode(task)? };
        self.insert_rows("tasks", &[row]).await
    }

    pub(super) async fn get_tasks(&self, site_id: &str) -> Result<Vec<Task>> {
        let query = self.client.query("SELECT body FROM tasks FINAL WHERE site_id = ? ORDER BY due, task_id").bind(site_id);
        self.bodies(query).await
    }
}
