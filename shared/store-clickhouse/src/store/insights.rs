//! ClickHouse AI insight tables: `insight_requests` (versioned; `deleted` once answered) and
//! `insights` (the latest per lead).

use clickhouse::Row;
use crm_schemas::{InsightRequest, LeadInsight};
use crm_store::Result;
use serde::Serialize;

use super::{encode, now_nanos, ClickHouseStore};

pub(crate) const MIGRATION: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS insight_requests (site_id LowCardinality(String), lead_id String, version UInt64, deleted UInt8,
        failed UInt8, next_attempt DateTime64(3, 'UTC'), body String)
     ENGINE = ReplacingMergeTree(version, deleted) ORDER BY (site_id, lead_id)",
    "CREATE TABLE IF NOT EXISTS insights (site_id LowCardinality(String), lead_id String, version UInt64, body String)
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, lead_id)",
];

#[derive(Row, Serialize)]
struct RequestRow {
    site_id: String,
    lead_id: String,
    version: u64,
    deleted: u8,
    failed: u8,
    next_attempt: i64,
    body: String,
}

#[derive(Row, Serialize)]
struct InsightRow {
    site_id: String,
    lead_id: String,
    version: u64,
    body: String,
}

fn request_row(request: &InsightRequest, deleted: bool) -> Result<RequestRow> {
    Ok(RequestRow {
        site_id: request.site_id.clone(),
        lead_id: request.lead_id.clone(),
        version: now_nanos(),
        deleted: u8::from(deleted),
        failed: u8::from(request.failed),
        next_attempt: request.next_attempt_ms,
        body: encode(request)?,
    })
}

impl ClickHouseStore {
    pub(super) async fn upsert_insight_requests(&self, requests: &[InsightRequest]) -> Result<()> {
        let rows: Vec<RequestRow> = requests.iter().map(|r| request_row(r, false)).collect::<Result<_>>()?;
        self.insert_rows("insight_requests", &rows).await
    }

    pub(super) async fn get_due_insight_requests(&self, now_ms: i64, limit: usize) -> Result<Vec<InsightRequest>> {
        let query = self
            .client
            .query(
                "SELECT body FROM insight_requests FINAL
                 WHERE deleted = 0 AND failed = 0 AND next_attempt <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
                 ORDER BY next_attempt, site_id, lead_id LIMIT ?",
            )
            .bind(now_ms)
            .bind(limit as u64);
        self.bodies(query).await
    }

    pub(super) async fn save_insight(&self, insight: &LeadInsight) -> Result<()> {
        let row = InsightRow { site_id: insight.site_id.clone(), lead_id: insight.lead_id.clone(), version: now_nanos(), body: encode(insight)? };
        self.insert_rows("insights", &[row]).await?;
        let done = InsightRequest {
            site_id: insight.site_id.clone(),
            lead_id: insight.lead_id.clone(),
            requested_at_ms: insight.generated_at_ms,
            next_attempt_ms: insight.generated_at_ms,
            attempts: 0,
            last_error: None,
            failed: false,
        };
        self.insert_rows("insight_requests", &[request_row(&done, true)?]).await
    }

    pub(super) async fn get_insight(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadInsight>> {
        let query = self.client.query("SELECT body FROM insights FINAL WHERE site_id = ? AND lead_id = ?").bind(site_id).bind(lead_id);
        Ok(self.bodies(query).await?.into_iter().next())
    }
}
