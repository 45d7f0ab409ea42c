//! ClickHouse alert tables: `alert_rules` (versioned, deletable) and `alerts` (fired alerts:
//! detection rows are version 0 so a replayed detection never overrides delivery progress,
//! which is written with the current time as version).

use clickhouse::Row;
use crm_schemas::{Alert, AlertRule, DeliveryStatus};
use crm_store::Result;
use serde::Serialize;

use super::{encode, now_nanos, ClickHouseStore};

pub(crate) const MIGRATION: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS alert_rules (site_id LowCardinality(String), rule_id String, version UInt64, deleted UInt8, body String)
     ENGINE = ReplacingMergeTree(version, deleted) ORDER BY (site_id, rule_id)",
    "CREATE TABLE IF NOT EXISTS alerts (site_id LowCardinality(String), alert_id String, version UInt64, status LowCardinality(String),
        next_attempt DateTime64(3, 'UTC'), fired_at DateTime64(3, 'UTC'), body String)
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, alert_id)",
];

#[derive(Row, Serialize)]
struct RuleRow {
    site_id: String,
    rule_id: String,
    version: u64,
    deleted: u8,
    body: String,
}

#[derive(Row, Serialize)]
struct AlertRow {
    site_id: String,
    alert_id: String,
    version: u64,
    status: String,
    next_attempt: i64,
    fired_at: i64,
    body: String,
}

fn status_text(status: DeliveryStatus) -> &'static str {
    match status {
        DeliveryStatus::Pending => "pending",
        DeliveryStatus::Delivered => "delivered",
        DeliveryStatus::Failed => "failed",
    }
}

fn alert_row(alert: &Alert, version: u64) -> Result<AlertRow> {
    Ok(AlertRow {
        site_id: alert.site_id.clone(),
        alert_id: alert.alert_id.clone(),
        version,
        status: status_text(alert.status).into(),
        next_attempt: alert.next_attempt_ms,
        fired_at: alert.fired_at_ms,
        body: encode(alert)?,
    })
}

impl ClickHouseStore {
    pub(super) async fn insert_new_alerts(&self, alerts: &[Alert]) -> Result<()> {
        let rows: Vec<AlertRow> = alerts.iter().map(|a| alert_row(a, 0)).collect::<Result<_>>()?;
        self.insert_rows("alerts", &rows).await
    }

    pub(super) async fn save_alert_rule(&self, rule: &AlertRule) -> Result<()> {
        let row = RuleRow { site_id: rule.site_id.clone(), rule_id: rule.rule_id.clone(), version: now_nanos(), deleted: 0, body: encode(rule)? };
        self.insert_rows("alert_rules", &[row]).await
    }

    pub(super) async fn get_alert_rules(&self, site_id: &str) -> Result<Vec<AlertRule>> {
        let query = self.client.query("SELECT body FROM alert_rules FINAL WHERE site_id = ? AND deleted = 0 ORDER BY rule_id").bind(site_id);
        self.bodies(query).await
    }

    pub(super) async fn remove_alert_rule(&self, site_id: &str, rule_id: &str) -> Result<bool> {
        let exists: Vec<AlertRule> =
            self.bodies(self.client.query("SELECT body FROM alert_rules FINAL WHERE site_id = ? AND rule_id = ? AND deleted = 0").bind(site_id).bind(rule_id)).await?;
        if exists.is_empty() {
            return Ok(false);
        }
        let row = RuleRow { site_id: site_id.into(), rule_id: rule_id.into(), version: now_nanos(), deleted: 1, body: String::new() };
        self.insert_rows("alert_rules", &[row]).await?;
        Ok(true)
    }

    pub(super) async fn get_due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<Alert>> {
        let query = self
            .client
            .query(
                "SELECT body FROM alerts FINAL WHERE status = 'pending' AND next_attempt <= fromUnixTimestamp64Milli(toInt64(?), 'UTC')
                 ORDER BY next_attempt, site_id, alert_id LIMIT ?",
            )
            .bind(now_ms)
            .bind(limit as u64);
        self.bodies(query).await
    }

    pub(super) async fn save_alert(&self, alert: &Alert) -> Result<()> {
        self.insert_rows("alerts", &[alert_row(alert, now_nanos())?]).await
    }

    pub(super) async fn get_alerts(&self, site_id: &str, limit: usize) -> Result<Vec<Alert>> {
        let query = self.client.query("SELECT body FROM alerts FINAL WHERE site_id = ? ORDER BY fired_at DESC, alert_id LIMIT ?").bind(site_id).bind(limit as u64);
        self.bodies(query).await
    }
}

