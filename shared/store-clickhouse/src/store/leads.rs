//! ClickHouse lead tables: `leads` (pipeline-owned, versioned, with the three sort ranks as
//! columns), `lead_crm` (API-owned), `lead_audit`, `lead_scores` and `identity_conflicts`.
//! Listing joins leads with their CRM fields in SQL and pages by (rank, lead_id), the same key
//! as the embedded store.

use clickhouse::Row;
use crm_schemas::{IdentityConflict, IdentityOverride, Lead, LeadAudit, LeadCrm, LeadStatus, ScorePoint, StoredEvent};
use crm_store::{OrgVisitors, lead_cursor, lead_rank, parse_lead_cursor, LeadQuery, LeadRecord, LeadSort, Page, Result, WriteBatch};
use serde::{Deserialize, Serialize};

use super::{ch_err, decode, encode, now_nanos, split_cursor, ClickHouseStore};
use crate::rows::TimedRow;

#[derive(Row, Serialize)]
struct LeadRow {
    site_id: String,
    lead_id: String,
    version: u64,
    score: u8,
    merged: u8,
    email: String,
    company_domain: String,
    company: String,
    source: String,
    last_activity: i64,
    rank_score: u64,
    rank_activity: u64,
    rank_created: u64,
    body: String,
}

#[derive(Row, Serialize)]
struct CrmRow {
    site_id: String,
    lead_id: String,
    version: u64,
    status: String,
    owner: String,
    deleted: u8,
    body: String,
}

#[derive(Row, Serialize)]
struct AuditRow {
    site_id: String,
    lead_id: String,
    at: i64,
    id: String,
    body: String,
}

#[derive(Row, Serialize, Deserialize)]
struct ScoreRow {
    site_id: String,
    lead_id: String,
    at: i64,
    score: u8,
}

#[derive(Row, Serialize)]
struct ConflictRow {
    site_id: String,
    visitor_id: String,
    other_lead_id: String,
    version: u64,
    at: i64,
    resolved: u8,
    body: String,
}

#[derive(Row, Deserialize)]
struct JoinedRow {
    body: String,
    crm: String,
}

pub(crate) const MIGRATION: &[&str] = &[
    "CREATE TABLE IF NOT EXISTS leads (site_id LowCardinality(String), lead_id String, version UInt64, score UInt8, merged UInt8,
        email String, company_domain String, company String, source String, last_activity DateTime64(3, 'UTC'),
        rank_score UInt64, rank_activity UInt64, rank_created UInt64, body String CODEC(ZSTD(3)))
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, lead_id)",
    "CREATE TABLE IF NOT EXISTS lead_crm (site_id LowCardinality(String), lead_id String, version UInt64,
        status LowCardinality(String), owner String, deleted UInt8, body String)
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, lead_id)",
    "CREATE TABLE IF NOT EXISTS lead_audit (site_id LowCardinality(String), lead_id String, at DateTime64(3, 'UTC'), id String, body String)
     ENGINE = MergeTree ORDER BY (site_id, lead_id, at, id)",
    "CREATE TABLE IF NOT EXISTS lead_scores (site_id LowCardinality(String), lead_id String, at DateTime64(3, 'UTC'), score UInt8)
     ENGINE = ReplacingMergeTree ORDER BY (site_id, lead_id, at)",
    // Detected conflicts are version 0, resolutions the resolve time: a replayed detection can
    // never reopen a resolved conflict.
    "CREATE TABLE IF NOT EXISTS identity_conflicts (site_id LowCardinality(String), visitor_id String, other_lead_id String,
        version UInt64, at DateTime64(3, 'UTC'), resolved UInt8, body String)
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, visitor_id, other_lead_id)",
    "CREATE TABLE IF NOT EXISTS identity_overrides (site_id LowCardinality(String), key String, version UInt64, body String)
     ENGINE = ReplacingMergeTree(version) ORDER BY (site_id, key)",
];

fn status_text(status: LeadStatus) -> String {
    serde_json::to_value(status).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default()
}

fn lead_row(lead: &Lead) -> Result<LeadRow> {
    Ok(LeadRow {
        site_id: lead.site_id.clone(),
        lead_id: lead.lead_id.clone(),
        version: now_nanos(),
        score: lead.score,
        merged: u8::from(lead.merged_into.is_some()),
        email: lead.email.clone(),
        company_domain: lead.company_domain.clone().unwrap_or_default(),
        company: lead.traits.get("company").map(|c| c.to_text()).unwrap_or_default(),
        source: lead.source.clone(),
        last_activity: lead.last_activity_ms,
        rank_score: lead_rank(lead, LeadSort::Score),
        rank_activity: lead_rank(lead, LeadSort::LastActivity),
        rank_created: lead_rank(lead, LeadSort::Created),
        body: encode(lead)?,
    })
}

/// Runs an events query whose SQL ends with an optional `(ts, event_id)` cursor condition and
/// `LIMIT ?`, and pages its `body, ts_ms, id` rows; cursors are `"{ts_ms}:{event uuid}"`.
async fn event_page(mut query: clickhouse::query::Query, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
    if let Some(cursor) = cursor {
        let (ts, id) = split_cursor(cursor)?;
        let ts: i64 = ts.parse().map_err(|_| crm_store::StoreError::InvalidCursor)?;
        uuid::Uuid::parse_str(id).map_err(|_| crm_store::StoreError::InvalidCursor)?;
        query = query.bind(ts).bind(id);
    }
    let rows: Vec<TimedRow> = query.bind(limit as u64 + 1).fetch_all().await.map_err(ch_err)?;
    let more = rows.len() > limit;
    let rows = &rows[..rows.len().min(limit)];
    let items = rows.iter().map(|r| decode(&r.body)).collect::<Result<Vec<StoredEvent>>>()?;
    let next_cursor = if more { rows.last().map(|r| format!("{}:{}", r.ts_ms, r.id)) } else { None };
    Ok(Page { items, next_cursor })
}

/// A value bound into a dynamically built query, in order.
enum Bind {
    Text(String),
    Unsigned(u64),
    Signed(i64),
}

impl ClickHouseStore {
    /// The lead part of a write batch (before the events insert).
    pub(super) async fn write_leads(&self, batch: &WriteBatch) -> Result<()> {
        let leads: Vec<LeadRow> = batch.leads.iter().map(lead_row).collect::<Result<_>>()?;
        self.insert_rows("leads", &leads).await?;
        let scores: Vec<ScoreRow> = batch
            .score_points
            .iter()
            .map(|p| ScoreRow { site_id: p.site_id.clone(), lead_id: p.lead_id.clone(), at: p.at_ms, score: p.score })
            .collect();
        self.insert_rows("lead_scores", &scores).await?;
        let conflicts: Vec<ConflictRow> = batch
            .conflicts
            .iter()
            .map(|c| {
                Ok(ConflictRow {
                    site_id: c.site_id.clone(),
                    visitor_id: c.visitor_id.clone(),
                    other_lead_id: c.other_lead_id.clone(),
                    version: if c.resolved { now_nanos() } else { 0 },
                    at: c.at_ms,
                    resolved: u8::from(c.resolved),
                    body: encode(c)?,
                })
            })
            .collect::<Result<_>>()?;
        self.insert_rows("identity_conflicts", &conflicts).await
    }

    pub(super) async fn get_leads(&self, keys: &[(String, String)]) -> Result<Vec<Lead>> {
        let mut found = Vec::new();
        for chunk in keys.chunks(1000) {
            let tuples: Vec<(String, String)> = chunk.to_vec();
            let query = self.client.query("SELECT body FROM leads FINAL WHERE (site_id, lead_id) IN ?").bind(tuples);
            found.extend(self.bodies::<Lead>(query).await?);
        }
        Ok(found)
    }

    pub(super) async fn query_leads(&self, query: &LeadQuery) -> Result<Page<LeadRecord>> {
        let rank = match query.sort {
            LeadSort::Score => "l.rank_score",
            LeadSort::LastActivity => "l.rank_activity",
            LeadSort::Created => "l.rank_created",
        };
        let mut filters = vec!["l.merged = 0".to_owned()];
        let mut binds = vec![Bind::Text(query.site_id.clone()), Bind::Text(query.site_id.clone())];
        if !query.include_deleted {
            filters.push("c.deleted = 0".into());
        }
        if let Some(status) = query.status {
            filters.push("(c.status = ? OR (c.status = '' AND ? = 'new'))".into());
            binds.push(Bind::Text(status_text(status)));
            binds.push(Bind::Text(status_text(status)));
        }
        if let Some(owner) = &query.owner {
            filters.push("c.owner = ?".into());
            binds.push(Bind::Text(owner.clone()));
        }
        if let Some(min) = query.min_score {
            filters.push("l.score >= ?".into());
            binds.push(Bind::Unsigned(min.into()));
        }
        if let Some(max) = query.max_score {
            filters.push("l.score <= ?".into());
            binds.push(Bind::Unsigned(max.into()));
        }
        if let Some(company) = &query.company {
            filters.push("(l.company_domain = lower(?) OR positionCaseInsensitiveUTF8(l.company, ?) > 0)".into());
            binds.push(Bind::Text(company.clone()));
            binds.push(Bind::Text(company.clone()));
        }
        if let Some(source) = &query.source {
            filters.push("l.source = ?".into());
            binds.push(Bind::Text(source.clone()));
        }
        if let Some(since) = query.active_since_ms {
            filters.push("l.last_activity >= fromUnixTimestamp64Milli(toInt64(?), 'UTC')".into());
            binds.push(Bind::Signed(since));
        }
        if let Some(cursor) = query.cursor.as_deref() {
            let (after_rank, after_id) = parse_lead_cursor(cursor)?;
            filters.push(format!("({rank}, l.lead_id) > (?, ?)"));
            binds.push(Bind::Unsigned(after_rank));
            binds.push(Bind::Text(after_id.to_owned()));
        }
        binds.push(Bind::Unsigned(query.limit as u64 + 1));
        let sql = format!(
            "SELECT l.body AS body, c.body AS crm FROM (SELECT * FROM leads FINAL WHERE site_id = ?) AS l
             LEFT JOIN (SELECT lead_id, body, status, owner, deleted FROM lead_crm FINAL WHERE site_id = ?) AS c ON l.lead_id = c.lead_id
             WHERE {} ORDER BY {rank}, l.lead_id LIMIT ?",
            filters.join(" AND ")
        );
        let mut statement = self.client.query(&sql);
        for bind in binds {
            statement = match bind {
                Bind::Text(text) => statement.bind(text),
                Bind::Unsigned(n) => statement.bind(n),
                Bind::Signed(n) => statement.bind(n),
            };
        }
        let rows: Vec<JoinedRow> = statement.fetch_all().await.map_err(ch_err)?;
        let mut items = Vec::with_capacity(rows.len());
        for row in rows {
            let crm = if row.crm.is_empty() { None } else { Some(decode(&row.crm)?) };
            items.push(LeadRecord { lead: decode(&row.body)?, crm });
        }
        let more = items.len() > query.limit;
        items.truncate(query.limit);
        let next_cursor = if more { items.last().map(|r| lead_cursor(&r.lead, query.sort)) } else { None };
        Ok(Page { items, next_cursor })
    }

    pub(super) async fn get_lead_crm(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadCrm>> {
        let query = self.client.query("SELECT body FROM lead_crm FINAL WHERE site_id = ? AND lead_id = ?").bind(site_id).bind(lead_id);
        Ok(self.bodies(query).await?.into_iter().next())
    }

    pub(super) async fn save_lead_crm(&self, crm: &LeadCrm, audit: &[LeadAudit]) -> Result<()> {
        // The audit first: a change whose CRM row failed to land is retried by the caller and
        // at worst audited twice, never silently unaudited.
        let audit_rows: Vec<AuditRow> = audit
            .iter()
            .map(|a| {
                Ok(AuditRow {
                    site_id: a.site_id.clone(),
                    lead_id: a.lead_id.clone(),
                    at: a.at_ms,
                    id: uuid::Uuid::now_v7().to_string(),
                    body: encode(a)?,
                })
            })
            .collect::<Result<_>>()?;
        self.insert_rows("lead_audit", &audit_rows).await?;
        let row = CrmRow {
            site_id: crm.site_id.clone(),
            lead_id: crm.lead_id.clone(),
            version: now_nanos(),
            status: status_text(crm.status),
            owner: crm.owner.clone().unwrap_or_default(),
            deleted: u8::from(crm.deleted_at_ms.is_some()),
            body: encode(crm)?,
        };
        self.insert_rows("lead_crm", &[row]).await
    }

    pub(super) async fn get_lead_audit(&self, site_id: &str, lead_id: &str, limit: usize) -> Result<Vec<LeadAudit>> {
        let query = self
            .client
            .query("SELECT body FROM lead_audit WHERE site_id = ? AND lead_id = ? ORDER BY at DESC, id DESC LIMIT ?")
            .bind(site_id)
            .bind(lead_id)
            .bind(limit as u64);
        self.bodies(query).await
    }

    pub(super) async fn get_score_history(&self, site_id: &str, lead_id: &str, limit: usize) -> Result<Vec<ScorePoint>> {
        let rows: Vec<ScoreRow> = self
            .client
            .query("SELECT site_id, lead_id, at, score FROM lead_scores FINAL WHERE site_id = ? AND lead_id = ? ORDER BY at DESC LIMIT ?")
            .bind(site_id)
            .bind(lead_id)
            .bind(limit as u64)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        Ok(rows.into_iter().rev().map(|r| ScorePoint { site_id: r.site_id, lead_id: r.lead_id, at_ms: r.at, score: r.score }).collect())
    }

    pub(super) async fn get_conflicts(&self, site_id: &str, unresolved_only: bool, limit: usize) -> Result<Vec<IdentityConflict>> {
        let filter = if unresolved_only { " AND resolved = 0" } else { "" };
        let query = self
            .client
            .query(&format!("SELECT body FROM identity_conflicts FINAL WHERE site_id = ?{filter} ORDER BY at DESC, visitor_id LIMIT ?"))
            .bind(site_id)
            .bind(limit as u64);
        self.bodies(query).await
    }

    /// A site's events in a window, oldest first (batch scans).
    pub(super) async fn scan_window(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        let after = if cursor.is_some() { " AND (ts, event_id) > (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?)" } else { "" };
        let sql = format!(
            "SELECT body, toUnixTimestamp64Milli(ts) AS ts_ms, event_id AS id FROM events
             WHERE site_id = ? AND ts >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND ts < fromUnixTimestamp64Milli(toInt64(?), 'UTC'){after}
             ORDER BY ts, event_id LIMIT ?"
        );
        event_page(self.client.query(&sql).bind(site_id).bind(from_ms).bind(to_ms), limit, cursor).await
    }

    /// Several visitors' events, newest first (a lead's timeline).
    pub(super) async fn visitors_timeline(&self, site_id: &str, visitors: &[String], limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        if visitors.is_empty() {
            return Ok(Page { items: Vec::new(), next_cursor: None });
        }
        let after = if cursor.is_some() { " AND (ts, event_id) < (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?)" } else { "" };
        let sql = format!(
            "SELECT body, toUnixTimestamp64Milli(ts) AS ts_ms, event_id AS id FROM events
             WHERE site_id = ? AND visitor_id IN ?{after} ORDER BY ts DESC, event_id DESC LIMIT ?"
        );
        event_page(self.client.query(&sql).bind(site_id).bind(visitors), limit, cursor).await
    }

    pub(super) async fn save_override(&self, decision: &IdentityOverride) -> Result<()> {
        let row = OverrideRow { site_id: decision.site_id.clone(), key: decision.key(), version: now_nanos(), body: encode(decision)? };
        self.insert_rows("identity_overrides", &[row]).await
    }

    pub(super) async fn get_overrides(&self, site_id: &str) -> Result<Vec<IdentityOverride>> {
        self.bodies(self.client.query("SELECT body FROM identity_overrides FINAL WHERE site_id = ? ORDER BY key").bind(site_id)).await
    }

    pub(super) async fn mark_resolved(&self, site_id: &str, visitor_id: &str, other_lead_id: &str) -> Result<bool> {
        let query = self
            .client
            .query("SELECT body FROM identity_conflicts FINAL WHERE site_id = ? AND visitor_id = ? AND other_lead_id = ?")
            .bind(site_id)
            .bind(visitor_id)
            .bind(other_lead_id);
        let Some(mut conflict) = self.bodies::<IdentityConflict>(query).await?.into_iter().next() else { return Ok(false) };
        conflict.resolved = true;
        let row = ConflictRow {
            site_id: conflict.site_id.clone(),
            visitor_id: conflict.visitor_id.clone(),
            other_lead_id: conflict.other_lead_id.clone(),
            version: now_nanos(),
            at: conflict.at_ms,
            resolved: 1,
            body: encode(&conflict)?,
        };
        self.insert_rows("identity_conflicts", &[row]).await?;
        Ok(true)
    }

    pub(super) async fn get_visitor_orgs(&self, site_id: &str, limit: usize) -> Result<Vec<OrgVisitors>> {
        let rows: Vec<OrgRow> = self
            .client
            .query(
                "SELECT JSONExtractString(profile, 'geo', 'org') AS org, count() AS visitors,
                        max(JSONExtractInt(profile, 'last_seen_ms')) AS last_seen_ms,
                        toUInt8(max(JSONExtractUInt(profile, 'intent_score'))) AS max_intent,
                        arraySort(groupArray(visitor_id)) AS sample
                 FROM visitors FINAL
                 WHERE site_id = ? AND is_bot = 0 AND org != '' AND JSONExtractString(profile, 'lead_id') = ''
                 GROUP BY org ORDER BY visitors DESC, org LIMIT ?",
            )
            .bind(site_id)
            .bind(limit as u64)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        Ok(rows
            .into_iter()
            .map(|r| OrgVisitors {
                org: r.org,
                visitors: r.visitors,
                last_seen_ms: r.last_seen_ms,
                max_intent: r.max_intent,
                sample_visitor_ids: r.sample.into_iter().take(20).collect(),
            })
            .collect())
    }
}

#[derive(Row, Deserialize)]
struct OrgRow {
    org: String,
    visitors: u64,
    last_seen_ms: i64,
    max_intent: u8,
    sample: Vec<String>,
}

#[derive(Row, Serialize)]
struct OverrideRow {
    site_id: String,
    key: String,
    version: u64,
    body: String,
}
