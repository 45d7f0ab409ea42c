//! The embedded store's alert tables: rules per site, fired alerts, and an index of pending
//! alerts by next attempt time for the webhook dispatcher.

use crm_schemas::{Alert, AlertRule, DeliveryStatus};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::{db_err, decode, encode, site_rows};
use crate::Result;

const RULES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("alert_rules");
pub(super) const ALERTS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("alerts");
/// (next attempt ms, site, alert id) for pending alerts only.
pub(super) const DUE: TableDefinition<(i64, &str, &str), ()> = TableDefinition::new("alerts_due");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(RULES).map_err(db_err)?;
    txn.open_table(ALERTS).map_err(db_err)?;
    txn.open_table(DUE).map_err(db_err)?;
    Ok(())
}

/// Fired alerts of a write batch: inserted only when new, so a replay never re-sends one.
pub(super) fn insert_new(txn: &WriteTransaction, alerts: &[Alert]) -> Result<()> {
    let mut table = txn.open_table(ALERTS).map_err(db_err)?;
    let mut due = txn.open_table(DUE).map_err(db_err)?;
    for alert in alerts {
        let key = (alert.site_id.as_str(), alert.alert_id.as_str());
        if table.get(key).map_err(db_err)?.is_none() {
            table.insert(key, encode(alert)?.as_slice()).map_err(db_err)?;
            if alert.status == DeliveryStatus::Pending {
                due.insert((alert.next_attempt_ms, key.0, key.1), ()).map_err(db_err)?;
            }
        }
    }
    Ok(())
}

pub(super) fn put_rule(db: &Database, rule: &AlertRule) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(RULES).map_err(db_err)?.insert((rule.site_id.as_str(), rule.rule_id.as_str()), encode(rule)?.as_slice()).map_err(db_err)?;
    txn.commit().map_err(db_err)
}

pub(super) fn rules(db: &Database, site: &str) -> Result<Vec<AlertRule>> {
    site_rows(db, RULES, site)
}

pub(super) fn delete_rule(db: &Database, site: &str, rule: &str) -> Result<bool> {
    let txn = db.begin_write().map_err(db_err)?;
    let existed = txn.open_table(RULES).map_err(db_err)?.remove((site, rule)).map_err(db_err)?.is_some();
    txn.commit().map_err(db_err)?;
    Ok(existed)
}

pub(super) fn due(db: &Database, now_ms: i64, limit: usize) -> Result<Vec<Alert>> {
    let txn = db.begin_read().map_err(db_err)?;
    let due = txn.open_table(DUE).map_err(db_err)?;
    let alerts = txn.open_table(ALERTS).map_err(db_err)?;
    let mut out = Vec::new();
    for row in due.range::<(i64, &str, &str)>((i64::MIN, "", "")..=(now_ms, "\u{10ffff}", "\u{10ffff}")).map_err(db_err)?.take(limit) {
        let (key, _) = row.map_err(db_err)?;
        let (_, site, id) = key.value();
        if let Some(bytes) = alerts.get((site, id)).map_err(db_err)? {
            out.push(decode(bytes.value())?);
        }
    }
    Ok(out)
}

pub(super) fn update(db: &Database, alert: &Alert) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut table = txn.open_table(ALERTS).map_err(db_err)?;
        let mut due = txn.open_table(DUE).map_err(db_err)?;
        let key = (alert.site_id.as_str(), alert.alert_id.as_str());
        let previous: Option<Alert> = table.get(key).map_err(db_err)?.map(|v| decode(v.value())).transpose()?;
        if let Some(previous) = previous {
            due.remove((previous.next_attempt_ms, key.0, key.1)).map_err(db_err)?;
        }
        table.insert(key, encode(alert)?.as_slice()).map_err(db_err)?;
        if alert.status == DeliveryStatus::Pending {
            due.insert((alert.next_attempt_ms, key.0, key.1), ()).map_err(db_err)?;
        }
    }
    txn.commit().map_err(db_err)
}

pub(super) fn list(db: &Database, site: &str, limit: usize) -> Result<Vec<Alert>> {
    let mut out: Vec<Alert> = site_rows(db, ALERTS, site)?;
    out.sort_by(|a, b| b.fired_at_ms.cmp(&a.fired_at_ms).then_with(|| a.alert_id.cmp(&b.alert_id)));
    out.truncate(limit);
    Ok(out)
}
