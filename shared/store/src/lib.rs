//! The store seam: everything the pipeline writes and the services read.
//!
//! * [`roles`]: the nine narrow traits ([`PipelineStore`], [`EventStore`], [`ProfileStore`],
//!   [`LeadStore`], [`WorkflowStore`], [`AccountStore`], [`ConfigStore`], [`KnowledgeStore`],
//!   [`PrivacyStore`]) and
//!   [`Store`], which is all of them.
//! * [`KbReport`]: knowledge-base analytics from the raw counters, the same for every backend.
//! * [`growth`]: funnels and retention from the rows every backend selects alike.
//! * This file: the types shared by the roles ([`WriteBatch`], [`Durable`], pages, visitor
//!   sorts and the rank value every backend indexes by) and [`StoreError`].
//! * [`Overlay`]: one store's pipeline role in front of another store (tests that break the
//!   write path implement one role instead of sixty methods).
//!
//! Implementations: [`embedded::EmbeddedStore`] (redb under the data dir, the default) and
//! ClickHouse (`crm-store-clickhouse`). Both must pass the shared [`conformance`] suite.

use std::collections::BTreeMap;

use crm_schemas::{Alert, DeadLetter, IdentityConflict, InsightRequest, Lead, ScorePoint, Session, StoredEvent, VisitorProfile};
use serde::{Deserialize, Serialize};

pub mod conformance;
pub mod embedded;
pub mod explore;
pub mod filters;
pub mod forward;
pub mod goals;
pub mod growth;
mod kb;
mod leads;
mod overlay;
mod overview;
pub mod roles;
pub mod sql_guard;

pub use embedded::EmbeddedStore;
pub use kb::{KbArticleStats, KbDay, KbGap, KbReport, MAX_REPORT_DAYS};
pub use leads::{group_orgs, org_member, OrgMember, lead_cursor, lead_rank, page_leads, parse_lead_cursor, LeadQuery, LeadRecord, LeadSort, OrgVisitors};
pub use overlay::Overlay;
pub use roles::{AccountStore, ConfigStore, EventStore, KnowledgeStore, LeadStore, PipelineStore, PrivacyStore, ProfileStore, Store, WorkflowStore, ERASURE_REVISION_KEY};
pub use overview::{series_buckets, Count, FormStats, FormStatsBuilder, Overview, OverviewBuilder, SeriesPoint, MAX_SERIES_POINTS};

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
    /// An analyst query ([`EventStore::query_sql`]) that cannot be run as asked.
    #[error("{message}")]
    Query { kind: QueryErrorKind, message: String },
}

/// Why an analyst query failed; each is the caller's to fix, never retryable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QueryErrorKind {
    /// It does not plan: unknown column, type error, bad syntax.
    Invalid,
    /// It reaches for something the guard refuses.
    NotAllowed,
    /// It ran past its time limit and was stopped.
    Timeout,
    /// It needed more memory than its limit.
    TooLarge,
    /// This store does not run SQL.
    Unsupported,
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Io(_) => true,
            StoreError::Backend { retryable, .. } => *retryable,
            StoreError::InUse(_) | StoreError::Corrupt(_) | StoreError::InvalidCursor | StoreError::Query { .. } => false,
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
    /// Where in the event log this batch came from: `"{source}/{partition}"` → the highest
    /// offset it covers. Empty for writes that did not come from the log (API, simulator,
    /// tests). A store that makes writes durable later than it acknowledges them reports these
    /// positions back through [`PipelineStore::durable_positions`] once they are durable.
    pub log_positions: BTreeMap<String, u64>,
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

/// How much of what a store acknowledged is durable, in event-log terms.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Durable {
    /// Every acknowledged write is durable (a store that persists before `write` returns).
    All,
    /// Writes carrying log positions are durable up to these positions (`"{source}/{partition}"`
    /// → highest offset). A partition that is absent has nothing durable yet.
    Upto(BTreeMap<String, u64>),
}

impl Durable {
    /// Whether every position in `positions` is covered.
    pub fn covers(&self, positions: &BTreeMap<String, u64>) -> bool {
        match self {
            Durable::All => true,
            Durable::Upto(durable) => positions.iter().all(|(key, offset)| durable.get(key).is_some_and(|d| d >= offset)),
        }
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


/// The cursor of event pages on every backend: `"{ts_ms}:{event uuid}"`.
pub fn event_cursor(event: &StoredEvent) -> String {
    format!("{}:{}", event.ts_ms, event.event_id)
}

/// `"{ts_ms}:{event uuid}"` → (ts, id as u128).
pub fn parse_event_cursor(cursor: &str) -> Result<(i64, u128)> {
    let (ts, id) = cursor.split_once(':').ok_or(StoreError::InvalidCursor)?;
    let ts: i64 = ts.parse().map_err(|_| StoreError::InvalidCursor)?;
    Ok((ts, uuid::Uuid::parse_str(id).map_err(|_| StoreError::InvalidCursor)?.as_u128()))
}

/// Every role trait, for code that calls store methods on a concrete backend type
/// (`EmbeddedStore`, `ClickHouseStore`) rather than through `dyn Store`.
pub mod prelude {
    pub use crate::{AccountStore, ConfigStore, EventStore, KnowledgeStore, LeadStore, PipelineStore, ProfileStore, Store, WorkflowStore};
}
