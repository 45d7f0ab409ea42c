//! The embedded store's lead tables: pipeline-owned leads, CRM fields, audit trail, score
//! history and identity conflicts, each keyed so a site's rows are one range.

use crm_schemas::{IdentityConflict, IdentityOverride, Lead, LeadAudit, LeadCrm, ScorePoint};
use redb::{Database, ReadableTable, TableDefinition, WriteTransaction};

use super::{db_err, decode, encode, site_rows};
use crate::{page_leads, LeadQuery, LeadRecord, Page, Result, WriteBatch};

pub(super) const LEADS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("leads");
pub(super) const LEAD_CRM: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("lead_crm");
/// (site, lead, at, unique id) → audit entry.
pub(super) const LEAD_AUDIT: TableDefinition<(&str, &str, i64, u128), &[u8]> = TableDefinition::new("lead_audit");
/// (site, lead, at) → score.
pub(super) const SCORES: TableDefinition<(&str, &str, i64), u8> = TableDefinition::new("lead_scores");
/// (site, visitor, other lead) → conflict.
pub(super) const CONFLICTS: TableDefinition<(&str, &str, &str), &[u8]> = TableDefinition::new("identity_conflicts");

/// (site, override key) → identity override.
pub(super) const OVERRIDES: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("identity_overrides");

pub(super) fn create_tables(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(OVERRIDES).map_err(db_err)?;
    txn.open_table(LEADS).map_err(db_err)?;
    txn.open_table(LEAD_CRM).map_err(db_err)?;
    txn.open_table(LEAD_AUDIT).map_err(db_err)?;
    txn.open_table(SCORES).map_err(db_err)?;
    txn.open_table(CONFLICTS).map_err(db_err)?;
    Ok(())
}

/// The lead part of a write batch, inside the batch's transaction.
pub(super) fn write(txn: &WriteTransaction, batch: &WriteBatch) -> Result<()> {
    let mut leads = txn.open_table(LEADS).map_err(db_err)?;
    for lead in &batch.leads {
        leads.insert((lead.site_id.as_str(), lead.lead_id.as_str()), encode(lead)?.as_slice()).map_err(db_err)?;
    }
    let mut scores = txn.open_table(SCORES).map_err(db_err)?;
    for point in &batch.score_points {
        scores.insert((point.site_id.as_str(), point.lead_id.as_str(), point.at_ms), point.score).map_err(db_err)?;
    }
    let mut conflicts = txn.open_table(CONFLICTS).map_err(db_err)?;
    for conflict in &batch.conflicts {
        let key = (conflict.site_id.as_str(), conflict.visitor_id.as_str(), conflict.other_lead_id.as_str());
        // A replay must not reopen a conflict someone already resolved.
        if conflicts.get(key).map_err(db_err)?.is_none() {
            conflicts.insert(key, encode(conflict)?.as_slice()).map_err(db_err)?;
        }
    }
    Ok(())
}

pub(super) fn get(db: &Database, keys: &[(String, String)]) -> Result<Vec<Lead>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(LEADS).map_err(db_err)?;
    let mut found = Vec::new();
    for (site, lead) in keys {
        if let Some(bytes) = table.get((site.as_str(), lead.as_str())).map_err(db_err)? {
            found.push(decode(bytes.value())?);
        }
    }
    Ok(found)
}

pub(super) fn list(db: &Database, query: &LeadQuery) -> Result<Page<LeadRecord>> {
    let txn = db.begin_read().map_err(db_err)?;
    let leads = txn.open_table(LEADS).map_err(db_err)?;
    let crm = txn.open_table(LEAD_CRM).map_err(db_err)?;
    let site = query.site_id.as_str();
    let mut records = Vec::new();
    for row in leads.range::<(&str, &str)>((site, "")..).map_err(db_err)? {
        let (key, value) = row.map_err(db_err)?;
        if key.value().0 != site {
            break;
        }
        let lead: Lead = decode(value.value())?;
        let fields = crm.get((site, lead.lead_id.as_str())).map_err(db_err)?.map(|v| decode::<LeadCrm>(v.value())).transpose()?;
        records.push(LeadRecord { lead, crm: fields });
    }
    page_leads(records, query)
}

pub(super) fn crm(db: &Database, site: &str, lead: &str) -> Result<Option<LeadCrm>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(LEAD_CRM).map_err(db_err)?;
    table.get((site, lead)).map_err(db_err)?.map(|v| decode(v.value())).transpose()
}

pub(super) fn put_crm(db: &Database, fields: &LeadCrm, audit: &[LeadAudit]) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    {
        let mut table = txn.open_table(LEAD_CRM).map_err(db_err)?;
        table.insert((fields.site_id.as_str(), fields.lead_id.as_str()), encode(fields)?.as_slice()).map_err(db_err)?;
        let mut trail = txn.open_table(LEAD_AUDIT).map_err(db_err)?;
        for entry in audit {
            let key = (entry.site_id.as_str(), entry.lead_id.as_str(), entry.at_ms, uuid::Uuid::now_v7().as_u128());
            trail.insert(key, encode(entry)?.as_slice()).map_err(db_err)?;
        }
    }
    txn.commit().map_err(db_err)
}

pub(super) fn audit(db: &Database, site: &str, lead: &str, limit: usize) -> Result<Vec<LeadAudit>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(LEAD_AUDIT).map_err(db_err)?;
    let mut out = Vec::new();
    for row in table.range((site, lead, i64::MIN, 0u128)..=(site, lead, i64::MAX, u128::MAX)).map_err(db_err)?.rev().take(limit) {
        out.push(decode(row.map_err(db_err)?.1.value())?);
    }
    Ok(out)
}

pub(super) fn scores(db: &Database, site: &str, lead: &str, limit: usize) -> Result<Vec<ScorePoint>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(SCORES).map_err(db_err)?;
    let mut out = Vec::new();
    // The newest `limit` points, returned oldest first.
    for row in table.range((site, lead, i64::MIN)..=(site, lead, i64::MAX)).map_err(db_err)?.rev().take(limit) {
        let (key, score) = row.map_err(db_err)?;
        out.push(ScorePoint { site_id: site.to_owned(), lead_id: lead.to_owned(), at_ms: key.value().2, score: score.value() });
    }
    out.reverse();
    Ok(out)
}

pub(super) fn conflicts(db: &Database, site: &str, unresolved_only: bool, limit: usize) -> Result<Vec<IdentityConflict>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(CONFLICTS).map_err(db_err)?;
    let mut out: Vec<IdentityConflict> = Vec::new();
    for row in table.range::<(&str, &str, &str)>((site, "", "")..).map_err(db_err)? {
        let (key, value) = row.map_err(db_err)?;
        if key.value().0 != site {
            break;
        }
        let conflict: IdentityConflict = decode(value.value())?;
        if !(unresolved_only && conflict.resolved) {
            out.push(conflict);
        }
    }
    out.sort_by(|a, b| b.at_ms.cmp(&a.at_ms).then_with(|| a.visitor_id.cmp(&b.visitor_id)));
    out.truncate(limit);
    Ok(out)
}

pub(super) fn put_override(db: &Database, decision: &IdentityOverride) -> Result<()> {
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(OVERRIDES)
        .map_err(db_err)?
        .insert((decision.site_id.as_str(), decision.key().as_str()), encode(decision)?.as_slice())
        .map_err(db_err)?;
    txn.commit().map_err(db_err)
}

pub(super) fn overrides(db: &Database, site: &str) -> Result<Vec<IdentityOverride>> {
    site_rows(db, OVERRIDES, site)
}

pub(super) fn resolve(db: &Database, site: &str, visitor: &str, other: &str) -> Result<bool> {
    let txn = db.begin_write().map_err(db_err)?;
    let found = {
        let mut table = txn.open_table(CONFLICTS).map_err(db_err)?;
        let existing: Option<IdentityConflict> = table.get((site, visitor, other)).map_err(db_err)?.map(|v| decode(v.value())).transpose()?;
        match existing {
            Some(mut conflict) => {
                conflict.resolved = true;
                table.insert((site, visitor, other), encode(&conflict)?.as_slice()).map_err(db_err)?;
                true
            }
            None => false,
        }
    };
    txn.commit().map_err(db_err)?;
    Ok(found)
}
