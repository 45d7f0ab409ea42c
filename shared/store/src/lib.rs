//! The store seam: everything the pipeline writes and the API reads, behind one narrow trait.
//!
//! * Writer side: [`Store::write`] applies a [`WriteBatch`] (enriched events, visitor profiles,
//!   sessions, dead letters) atomically where the backend allows it, ignoring events whose
//!   `event_id` is already stored, so replays after a crash never double-count.
//! * Query side: point lookups and top-N listings of visitors, per-visitor timelines, the
//!   analytics overview and form funnels, dead letters, leads (with CRM fields, audit, score
//!   history and identity conflicts); and the small configuration entities
//!   (sites, lead forms, users, meta).
//!
//! Implementations: [`embedded::EmbeddedStore`] (redb under the data dir, the default) and, with
//! the ClickHouse issue, ClickHouse. Both must pass the shared [`conformance`] suite.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use crm_schemas::{
    AuthAuditEntry, RefreshToken, AccountHealth, Alert, AlertRule, BusinessData, DeadLetter, ImportBatch, Task, FormDefinition, IdentityConflict, IdentityOverride, InsightRequest, Lead, LeadInsight, LeadAudit, LeadCrm, ScorePoint, Session, Site, StoredEvent, User,
    VisitorProfile,
};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

pub mod conformance;
pub mod embedded;
mod leads;
mod overview;

pub use embedded::EmbeddedStore;
pub use leads::{group_orgs, lead_cursor, lead_rank, page_leads, parse_lead_cursor, LeadQuery, LeadRecord, LeadSort, OrgVisitors};
pub use overview::{Count, FormStats, FormStatsBuilder, Overview, OverviewBuilder};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("store is in use by another process: {0}")]
    InUse(String),
    #[error("store i/o error: {0}")]
    Io(String),
    #[error("stored record could not be decoded: {0}")]
    Corrupt(String),
    #[error("invalid cursor")]
    InvalidCursor,
    #[error("store backend error: {message}")]
    Backend { message: String, retryable: bool },
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Io(_) => true,
            StoreError::Backend { retryable, .. } => *retryable,
            StoreError::InUse(_) | StoreError::Corrupt(_) | StoreError::InvalidCursor => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// One unit of processor output. Profiles and sessions are full latest states (upserts).
#[derive(Clone, Debug, Default)]
pub struct WriteBatch {
    pub events: Vec<StoredEvent>,
    pub visitors: Vec<VisitorProfile>,
    pub sessions: Vec<Session>,
    pub dead_letters: Vec<DeadLetter>,
    /// Full latest states of the leads the batch touched (upserts).
    pub leads: Vec<Lead>,
    /// Identity conflicts found (upserts keyed by site, visitor and the other lead).
    pub conflicts: Vec<IdentityConflict>,
    /// Lead score changes (keyed by site, lead and time).
    pub score_points: Vec<ScorePoint>,
    /// Alerts fired (inserted only if their id is new: a rule fires once per lead and window).
    pub alerts: Vec<Alert>,
    /// AI insight requests (upserts keyed by site and lead).
    pub insight_requests: Vec<InsightRequest>,
}

impl WriteBatch {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
            && self.visitors.is_empty()
            && self.sessions.is_empty()
            && self.dead_letters.is_empty()
            && self.leads.is_empty()
            && self.conflicts.is_empty()
            && self.score_points.is_empty()
            && self.alerts.is_empty()
            && self.insight_requests.is_empty()
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct WriteOutcome {
    pub events_written: usize,
    pub duplicates_skipped: usize,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VisitorSort {
    #[default]
    Intent,
    Engagement,
    LastSeen,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BotFilter {
    /// Humans only (the default everywhere metrics are shown).
    #[default]
    Exclude,
    /// Bots only, for auditing what the filter caught.
    Only,
}

#[derive(Clone, Debug, Default)]
pub struct VisitorQuery {
    pub site_id: String,
    pub sort: VisitorSort,
    pub bots: BotFilter,
    pub limit: usize,
    pub cursor: Option<String>,
}

/// A page of results; `next_cursor` resumes after the last item.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Page<T> {
    pub items: Vec<T>,
    pub next_cursor: Option<String>,
}

/// The sort key every backend indexes visitors by, ascending = best first: the score in the top
/// bits, then recency (ms, 48 bits), inverted. Cursors carry it, so they mean the same everywhere.
pub fn rank_value(profile: &VisitorProfile, sort: VisitorSort) -> u64 {
    let recency = (profile.last_seen_ms.max(0) as u64) & ((1 << 48) - 1);
    let value = match sort {
        VisitorSort::Intent => (u64::from(profile.intent_score) << 48) | recency,
        VisitorSort::Engagement => (u64::from(profile.engagement_score) << 48) | recency,
        VisitorSort::LastSeen => recency,
    };
    u64::MAX - value
}

#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Which of `ids` are not stored yet.
    async fn unseen_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>>;
    /// Applies the batch; events already stored (by `event_id`) are skipped. Shared, so a caller
    /// that retries a failed write keeps the batch without copying it.
    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome>;

    async fn visitor(&self, site_id: &str, visitor_id: &str) -> Result<Option<VisitorProfile>>;
    /// Several profiles at once, keyed (site, visitor); missing ones are absent. Remote stores
    /// answer in one round trip (the processor loads a batch's visitors with it).
    async fn visitors(&self, keys: &[(String, String)]) -> Result<Vec<VisitorProfile>> {
        let mut found = Vec::with_capacity(keys.len());
        for (site_id, visitor_id) in keys {
            if let Some(profile) = self.visitor(site_id, visitor_id).await? {
                found.push(profile);
            }
        }
        Ok(found)
    }
    /// The visitor's profiles on every site it was seen on.
    async fn find_visitor(&self, visitor_id: &str) -> Result<Vec<VisitorProfile>>;
    async fn list_visitors(&self, query: &VisitorQuery) -> Result<Page<VisitorProfile>>;
    /// A visitor's events, newest first.
    async fn visitor_events(&self, site_id: &str, visitor_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>>;
    /// The events of several visitors (a lead's devices), newest first, merged. The cursor is
    /// `"{ts_ms}:{event uuid}"` on every backend.
    async fn events_of_visitors(&self, site_id: &str, visitor_ids: &[String], limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>>;
    /// Sessions of a site that started in `[from_ms, to_ms)`, oldest first.
    async fn sessions_between(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Session>>;
    /// A site's events in `[from_ms, to_ms)`, oldest first, a page at a time (batch jobs read
    /// whole windows with it). The cursor is `"{ts_ms}:{event uuid}"`.
    async fn scan_events(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>>;
    /// Analytics over `[from_ms, to_ms)`, bots excluded.
    async fn overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize) -> Result<Overview>;
    /// Dead letters of a site, newest first.
    async fn dead_letters(&self, site_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>>;

    async fn put_site(&self, site: &Site) -> Result<()>;
    async fn site(&self, site_id: &str) -> Result<Option<Site>>;
    async fn sites(&self) -> Result<Vec<Site>>;
    async fn put_user(&self, user: &User) -> Result<()>;
    async fn user(&self, username: &str) -> Result<Option<User>>;
    async fn users(&self) -> Result<Vec<User>>;
    /// Stores (or replaces, by hash) a refresh token.
    async fn put_refresh_token(&self, token: &RefreshToken) -> Result<()>;
    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshToken>>;
    /// Revokes the user's unrevoked refresh tokens of one family, or of every family with
    /// `None`. Returns how many were revoked.
    async fn revoke_refresh_tokens(&self, username: &str, family_id: Option<&str>, at_ms: i64) -> Result<usize>;
    async fn append_auth_audit(&self, entry: &AuthAuditEntry) -> Result<()>;
    /// The authentication audit log, newest first, optionally of one user.
    async fn auth_audit(&self, username: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<AuthAuditEntry>>;
    /// Several leads at once, keyed (site, lead id); missing ones are absent.
    async fn leads(&self, keys: &[(String, String)]) -> Result<Vec<Lead>>;
    /// Leads with their CRM fields, filtered, sorted and cursor-paginated.
    async fn list_leads(&self, query: &LeadQuery) -> Result<Page<LeadRecord>>;
    async fn lead_crm(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadCrm>>;
    /// Unidentified human visitors grouped by IP organisation, largest first.
    async fn visitor_orgs(&self, site_id: &str, limit: usize) -> Result<Vec<OrgVisitors>>;
    /// Replaces the CRM fields of a lead and appends the audit entries of the change.
    async fn put_lead_crm(&self, crm: &LeadCrm, audit: &[LeadAudit]) -> Result<()>;
    /// A lead's audit trail, newest first.
    async fn lead_audit(&self, site_id: &str, lead_id: &str, limit: usize) -> Result<Vec<LeadAudit>>;
    /// A lead's score history, oldest first.
    async fn score_history(&self, site_id: &str, lead_id: &str, limit: usize) -> Result<Vec<ScorePoint>>;
    /// Identity conflicts of a site, newest first (`unresolved_only` hides resolved ones).
    async fn identity_conflicts(&self, site_id: &str, unresolved_only: bool, limit: usize) -> Result<Vec<IdentityConflict>>;

    /// Stores a person's identity decision (replacing an earlier one about the same lead or
    /// visitor); the processor and the API apply them over what the pipeline derived.
    async fn put_identity_override(&self, decision: &IdentityOverride) -> Result<()>;
    async fn identity_overrides(&self, site_id: &str) -> Result<Vec<IdentityOverride>>;
    /// Marks a conflict resolved; false when there is no such conflict.
    async fn resolve_conflict(&self, site_id: &str, visitor_id: &str, other_lead_id: &str) -> Result<bool>;

    /// Insight requests whose next attempt is due (not failed), on every site.
    async fn due_insight_requests(&self, now_ms: i64, limit: usize) -> Result<Vec<InsightRequest>>;
    /// Stores a request's retry state (or its failure).
    async fn update_insight_request(&self, request: &InsightRequest) -> Result<()>;
    /// Stores the insight and removes the request it answers.
    async fn put_insight(&self, insight: &LeadInsight) -> Result<()>;
    async fn insight(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadInsight>>;

    /// Applies an import of business data (upserts by each kind's key), all rows or none.
    async fn import(&self, site_id: &str, batch: &ImportBatch) -> Result<()>;
    /// Everything imported for a site.
    async fn business_data(&self, site_id: &str) -> Result<BusinessData>;

    /// Stores health results (upserts keyed by site, account and day).
    async fn put_health(&self, results: &[AccountHealth]) -> Result<()>;
    /// An account's health runs, newest day first.
    async fn health_history(&self, site_id: &str, account_id: &str, limit: usize) -> Result<Vec<AccountHealth>>;
    /// The latest health of every account of a site, by account id.
    async fn latest_health(&self, site_id: &str) -> Result<Vec<AccountHealth>>;
    /// Inserts the tasks whose id is new (a playbook fires once per account and window) and
    /// returns how many were new.
    async fn add_tasks(&self, tasks: &[Task]) -> Result<usize>;
    /// Replaces a task (status, owner).
    async fn update_task(&self, task: &Task) -> Result<()>;
    /// A site's tasks, oldest due first.
    async fn tasks(&self, site_id: &str) -> Result<Vec<Task>>;

    async fn put_alert_rule(&self, rule: &AlertRule) -> Result<()>;
    /// A site's alert rules, ordered by id.
    async fn alert_rules(&self, site_id: &str) -> Result<Vec<AlertRule>>;
    async fn delete_alert_rule(&self, site_id: &str, rule_id: &str) -> Result<bool>;
    /// Pending alerts whose next delivery attempt is due, on every site, oldest due first.
    async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<Alert>>;
    /// Stores an alert's delivery progress (status, attempts, next attempt).
    async fn update_alert(&self, alert: &Alert) -> Result<()>;
    /// A site's alerts, newest first.
    async fn alerts(&self, site_id: &str, limit: usize) -> Result<Vec<Alert>>;

    /// Creates or replaces a lead form (keyed by site and form id).
    async fn put_form(&self, form: &FormDefinition) -> Result<()>;
    async fn form(&self, site_id: &str, form_id: &str) -> Result<Option<FormDefinition>>;
    /// A site's forms, ordered by form id.
    async fn forms(&self, site_id: &str) -> Result<Vec<FormDefinition>>;
    /// Deletes a form; false when there was none. Its events stay (they are history).
    async fn delete_form(&self, site_id: &str, form_id: &str) -> Result<bool>;
    /// The funnel of every form with events in `[from_ms, to_ms)`, bots excluded.
    async fn form_stats(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<FormStats>>;

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;
    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()>;

    /// Cheap liveness probe of the backend (for `/readyz`).
    async fn ping(&self) -> Result<()>;
}
