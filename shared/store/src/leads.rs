//! Backend-neutral lead listing: the query, its filters and the sort key every backend pages
//! by, so a cursor means the same on the embedded store and on ClickHouse.

use crm_schemas::{Lead, LeadCrm, LeadStatus};
use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadSort {
    #[default]
    Score,
    LastActivity,
    Created,
}

/// `GET /api/v1/leads` as the store sees it. Every filter is optional.
#[derive(Clone, Debug, Default)]
pub struct LeadQuery {
    pub site_id: String,
    pub status: Option<LeadStatus>,
    pub owner: Option<String>,
    pub min_score: Option<u8>,
    pub max_score: Option<u8>,
    /// Company domain (exact, lower-case) or a case-insensitive part of the `company` trait.
    pub company: Option<String>,
    /// First-touch source (UTM source, referrer host or "direct"), exact.
    pub source: Option<String>,
    /// Last activity at or after this time.
    pub active_since_ms: Option<i64>,
    pub include_deleted: bool,
    pub sort: LeadSort,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// A lead with its CRM fields (absent until someone edits the lead).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct LeadRecord {
    pub lead: Lead,
    pub crm: Option<LeadCrm>,
}

impl LeadRecord {
    pub fn status(&self) -> LeadStatus {
        self.crm.as_ref().map(|c| c.status).unwrap_or_default()
    }

    pub fn deleted(&self) -> bool {
        self.crm.as_ref().is_some_and(|c| c.deleted_at_ms.is_some())
    }
}

/// The value leads are ordered by, ascending = first: best score / most recent first, then id.
pub fn lead_rank(lead: &Lead, sort: LeadSort) -> u64 {
    let recency = |ms: i64| (ms.max(0) as u64) & ((1 << 48) - 1);
    let value = match sort {
        LeadSort::Score => (u64::from(lead.score) << 48) | recency(lead.last_activity_ms),
        LeadSort::LastActivity => recency(lead.last_activity_ms),
        LeadSort::Created => recency(lead.created_at_ms),
    };
    u64::MAX - value
}

impl LeadQuery {
    /// Whether the record passes every filter (merged-away leads never do).
    pub fn matches(&self, record: &LeadRecord) -> bool {
        let lead = &record.lead;
        let company_matches = |needle: &str| {
            let needle = needle.to_lowercase();
            lead.company_domain.as_deref() == Some(needle.as_str())
                || lead.traits.get("company").and_then(|c| c.as_str()).is_some_and(|c| c.to_lowercase().contains(&needle))
        };
        lead.merged_into.is_none()
            && (self.include_deleted || !record.deleted())
            && self.status.is_none_or(|s| record.status() == s)
            && self.owner.as_deref().is_none_or(|o| record.crm.as_ref().and_then(|c| c.owner.as_deref()) == Some(o))
            && self.min_score.is_none_or(|m| lead.score >= m)
            && self.max_score.is_none_or(|m| lead.score <= m)
            && self.company.as_deref().is_none_or(company_matches)
            && self.source.as_deref().is_none_or(|s| lead.source == s)
            && self.active_since_ms.is_none_or(|t| lead.last_activity_ms >= t)
    }
}

/// `"{rank}:{lead_id}"`, the position after which the next page starts.
pub fn lead_cursor(lead: &Lead, sort: LeadSort) -> String {
    format!("{}:{}", lead_rank(lead, sort), lead.lead_id)
}

pub fn parse_lead_cursor(cursor: &str) -> crate::Result<(u64, &str)> {
    let (rank, id) = cursor.split_once(':').ok_or(crate::StoreError::InvalidCursor)?;
    Ok((rank.parse().map_err(|_| crate::StoreError::InvalidCursor)?, id))
}

/// Filters, sorts and pages records in memory (the embedded store's whole listing).
pub fn page_leads(mut records: Vec<LeadRecord>, query: &LeadQuery) -> crate::Result<crate::Page<LeadRecord>> {
    let after = query.cursor.as_deref().map(parse_lead_cursor).transpose()?;
    records.retain(|r| query.matches(r));
    let key = |r: &LeadRecord| (lead_rank(&r.lead, query.sort), r.lead.lead_id.clone());
    records.sort_by_cached_key(key);
    if let Some((rank, id)) = after {
        records.retain(|r| (lead_rank(&r.lead, query.sort), r.lead.lead_id.as_str()) > (rank, id));
    }
    let more = records.len() > query.limit;
    records.truncate(query.limit);
    let next_cursor = if more { records.last().map(|r| lead_cursor(&r.lead, query.sort)) } else { None };
    Ok(crate::Page { items: records, next_cursor })
}

/// Unidentified human visitors of one IP organisation (from the ASN database), for accounts.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OrgVisitors {
    pub org: String,
    pub visitors: u64,
    pub last_seen_ms: i64,
    pub max_intent: u8,
    /// Up to 20 of the visitor ids, sorted.
    pub sample_visitor_ids: Vec<String>,
}

/// Groups profiles by organisation (the embedded store's way; ClickHouse does it in SQL).
/// What the organisation grouping needs of one unidentified human visitor.
#[derive(Clone, Copy, Debug)]
pub struct OrgMember<'a> {
    pub org: &'a str,
    pub visitor_id: &'a str,
    pub last_seen_ms: i64,
    pub intent_score: u8,
}

/// The profile as an [`OrgMember`]: humans not yet identified as a lead, with a known
/// organisation.
pub fn org_member(profile: &crm_schemas::VisitorProfile) -> Option<OrgMember<'_>> {
    if profile.is_bot || profile.lead_id.is_some() {
        return None;
    }
    let org = profile.geo.org.as_deref().filter(|o| !o.is_empty())?;
    Some(OrgMember { org, visitor_id: &profile.visitor_id, last_seen_ms: profile.last_seen_ms, intent_score: profile.intent_score })
}

pub fn group_orgs<'a>(members: impl Iterator<Item = OrgMember<'a>>, limit: usize) -> Vec<OrgVisitors> {
    let mut orgs: std::collections::BTreeMap<String, OrgVisitors> = std::collections::BTreeMap::new();
    for profile in members {
        let org = profile.org;
        let entry = orgs.entry(org.to_owned()).or_insert_with(|| OrgVisitors {
            org: org.to_owned(),
            visitors: 0,
            last_seen_ms: i64::MIN,
            max_intent: 0,
            sample_visitor_ids: Vec::new(),
        });
        entry.visitors += 1;
        entry.last_seen_ms = entry.last_seen_ms.max(profile.last_seen_ms);
        entry.max_intent = entry.max_intent.max(profile.intent_score);
        entry.sample_visitor_ids.push(profile.visitor_id.to_owned());
    }
    let mut all: Vec<OrgVisitors> = orgs.into_values().collect();
    for org in &mut all {
        org.sample_visitor_ids.sort();
        org.sample_visitor_ids.truncate(20);
    }
    all.sort_by(|a, b| b.visitors.cmp(&a.visitors).then_with(|| a.org.cmp(&b.org)));
    all.truncate(limit);
    all
}
