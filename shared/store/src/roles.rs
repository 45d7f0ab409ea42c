//! The store seam cut by role. Each caller names the narrowest role it needs; a backend
//! implements all nine and so is a [`Store`] (blanket impl). The roles follow who calls them:
//! the processor writes through [`PipelineStore`]; analytics and timelines read [`EventStore`];
//! ranked visitor lists come from [`ProfileStore`]; the CRM reads and edits [`LeadStore`];
//! alerts, insights and tasks are [`WorkflowStore`]; imports and health are [`AccountStore`];
//! everything small and rarely written is [`ConfigStore`]; help-centre articles, chat
//! conversations and KB counters are [`KnowledgeStore`]; data-subject erasure and its tombstones
//! are [`PrivacyStore`].

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use async_trait::async_trait;
use crm_schemas::{
    AccountHealth, Alert, AlertRule, Article, ArticleEmbedding, ArticleVersion, AuthAuditEntry, Conversation, ConversationMessage, KbCounter, BusinessData, DeadLetter, FormDefinition,
    Erasure, IdentityConflict, IdentityOverride, ImportBatch, InsightRequest, Lead, LeadAudit, LeadCrm,
    LeadInsight, RefreshToken, ScorePoint, Session, Site, StoredEvent, Task, User, VisitorProfile,
};
use uuid::Uuid;

use crate::explore::{CustomEventStats, PagePaths};
use crate::filters::Filters;
use crate::goals::{GoalAsk, GoalCounts};
use crate::growth::{EventMatch, FunnelReport, FunnelSpec, MatchedEvent, RetentionReport, RetentionSpec};
use crate::sql_guard::{CheckedSql, SqlDialect, SqlLimits, SqlResult};
use crate::{
    series_buckets, Durable, FormStats, QueryErrorKind, StoreError, SeriesPoint, LeadQuery, LeadRecord, OrgVisitors, Overview, Page, Result, VisitorQuery,
    WriteBatch, WriteOutcome,
};

/// Everything a service may ask of a store: the nine roles together. Implemented for every type
/// that implements them, so `Arc<dyn Store>` is what services hold, and functions that need less
/// take `&S` with `S: ConfigStore + ?Sized` (or another role).
pub trait Store:
    PipelineStore + EventStore + ProfileStore + LeadStore + WorkflowStore + AccountStore + ConfigStore + KnowledgeStore + PrivacyStore
{
}

impl<T> Store for T where
    T: PipelineStore
        + EventStore
        + ProfileStore
        + LeadStore
        + WorkflowStore
        + AccountStore
        + ConfigStore
        + KnowledgeStore
        + PrivacyStore
{
}

/// The processor's side: which events are new, and applying a batch of its output.
#[async_trait]
pub trait PipelineStore: Send + Sync + 'static {
    /// Which of `ids` are not stored yet.
    async fn unseen_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>>;

    /// Applies the batch; events already stored (by `event_id`) are skipped. Shared, so a caller
    /// that retries a failed write keeps the batch without copying it.
    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome>;
    /// How far acknowledged writes are durable, in the log positions their batches carried
    /// ([`WriteBatch::log_positions`]). The processor commits its log position only up to here,
    /// so a crash replays whatever was acknowledged but not yet durable.
    fn durable_positions(&self) -> Durable {
        Durable::All
    }

    /// Makes every acknowledged write durable now (the processor calls it when it stops, so a
    /// clean shutdown commits the log to the end). A store durable on return has nothing to do.
    async fn flush(&self) -> Result<()> {
        Ok(())
    }
}

/// Stored events, sessions and dead letters, and the analytics computed over them.
#[async_trait]
pub trait EventStore: Send + Sync + 'static {
    /// A visitor's events, newest first.
    async fn visitor_events(
        &self,
        site_id: &str,
        visitor_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<StoredEvent>>;

    /// The events of several visitors (a lead's devices), newest first, merged. The cursor is
    /// `"{ts_ms}:{event uuid}"` on every backend.
    async fn events_of_visitors(
        &self,
        site_id: &str,
        visitor_ids: &[String],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<StoredEvent>>;

    /// Sessions of a site that started in `[from_ms, to_ms)`, oldest first.
    async fn sessions_between(
        &self,
        site_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<Session>>;

    /// A site's events in `[from_ms, to_ms)`, oldest first, a page at a time (batch jobs read
    /// whole windows with it). The cursor is `"{ts_ms}:{event uuid}"`.
    async fn scan_events(
        &self,
        site_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<StoredEvent>>;

    /// Analytics over `[from_ms, to_ms)`, bots excluded: the rows of every visitor whose profile
    /// is a bot ([`ProfileStore::bot_visitors`]), not only rows flagged themselves.
    async fn overview(
        &self,
        site_id: &str,
        from_ms: i64,
        to_ms: i64,
        top_n: usize,
    ) -> Result<Overview>;

    /// [`Self::overview`] narrowed by `filters` (their meaning: [`crate::filters`]); with none,
    /// the overview itself.
    async fn filtered_overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize, filters: &Filters) -> Result<Overview>;

    /// [`Self::timeseries`] narrowed by `filters`: the rows the filtered overview of the whole
    /// window counts, counted per bucket (so the buckets add up to that overview's sessions and
    /// pageviews); with none, the timeseries itself.
    async fn filtered_timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64, filters: &Filters) -> Result<Vec<SeriesPoint>>;

    /// Dead letters of a site, newest first.
    async fn dead_letters(
        &self,
        site_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<DeadLetter>>;

    /// The funnel of every form with events in `[from_ms, to_ms)`, bots excluded as in the overview.
    async fn form_stats(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<FormStats>>;

    /// The rows of a growth report ([`crate::growth`]): the site's events of `[from_ms, to_ms)`
    /// from visitors whose profile is human, with bit i of `mask` set when the event satisfies
    /// `matchers[i]` (at most 32), ordered by visitor id, then time (then event id). Only events
    /// that satisfy a matcher, unless `keep_unmatched`: then every pageview and custom event too
    /// (strict funnels need to see what came between two steps).
    async fn matched_events(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[EventMatch], keep_unmatched: bool) -> Result<Vec<MatchedEvent>>;

    /// The funnel of [`crate::growth::funnel_report`] computed where the events live, for a store
    /// that can do it without moving the matched rows (ClickHouse); `None` (the default) lets the
    /// caller fold [`Self::matched_events`] with [`crate::growth::funnel`]. A store that answers
    /// must give exactly that fold's report: the conformance suite compares the two.
    async fn funnel_pushdown(&self, site_id: &str, from_ms: i64, to_ms: i64, spec: &FunnelSpec) -> Result<Option<FunnelReport>> {
        let _ = (site_id, from_ms, to_ms, spec);
        Ok(None)
    }

    /// [`crate::goals::goal_counts`] of the goals' matchers (bit i = goal i) computed where the
    /// events live, as [`Self::funnel_pushdown`] is for funnels.
    async fn goal_counts_pushdown(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[EventMatch], ask: GoalAsk) -> Result<Option<GoalCounts>> {
        let _ = (site_id, from_ms, to_ms, matchers, ask);
        Ok(None)
    }

    /// [`crate::growth::retention_report`] computed where the events live, as
    /// [`Self::funnel_pushdown`] is for funnels.
    async fn retention_pushdown(&self, site_id: &str, spec: &RetentionSpec) -> Result<Option<RetentionReport>> {
        let _ = (site_id, spec);
        Ok(None)
    }

    /// The custom events of `[from_ms, to_ms)` from visitors whose profile is human, with their
    /// properties and each property's `top` most frequent values ([`crate::explore`]).
    async fn custom_events(&self, site_id: &str, from_ms: i64, to_ms: i64, top: usize) -> Result<Vec<CustomEventStats>>;

    /// The pages viewed just before and after each human view of a page matching `glob` in
    /// `[from_ms, to_ms)`, `top` of each ([`crate::explore`]).
    async fn page_paths(&self, site_id: &str, from_ms: i64, to_ms: i64, glob: &str, top: usize) -> Result<PagePaths>;

    /// The SQL language this store runs analyst queries in, if it runs them.
    fn sql_dialect(&self) -> Option<SqlDialect> {
        None
    }

    /// Runs an analyst query (already through [`crate::sql_guard::check`]) over the site's
    /// `events`, `sessions` and `visitors` and nothing else, within `limits`.
    async fn query_sql(&self, site_id: &str, sql: &CheckedSql, limits: &SqlLimits) -> Result<SqlResult> {
        let _ = (site_id, sql, limits);
        Err(StoreError::Query { kind: QueryErrorKind::Unsupported, message: "this store does not run SQL".into() })
    }

    /// The overview's headline figures (visitors, sessions, pageviews, bounce rate, average
    /// duration) per bucket of `step_ms`, buckets aligned to the epoch, over `[from_ms, to_ms)`,
    /// bots excluded, oldest first, empty buckets included. The default asks [`Self::overview`]
    /// once per bucket; backends answer it in one pass.
    async fn timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64) -> Result<Vec<SeriesPoint>> {
        let mut points = Vec::new();
        for start in series_buckets(from_ms, to_ms, step_ms)? {
            let o = self.overview(site_id, start.max(from_ms), start.saturating_add(step_ms).min(to_ms), 1).await?;
            points.push(SeriesPoint {
                start_ms: start,
                visitors: o.visitors,
                sessions: o.sessions,
                pageviews: o.pageviews,
                bounce_rate: o.bounce_rate,
                avg_session_duration_ms: o.avg_session_duration_ms,
            });
        }
        Ok(points)
    }
}

/// Visitor profiles: point lookups and the ranked lists.
#[async_trait]
pub trait ProfileStore: Send + Sync + 'static {
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

    /// The site's visitors whose profile is a bot and that were last seen at or after
    /// `since_ms`, ascending. This is the one bot decision: a profile is a bot when any of its
    /// events was (sticky, so the set does not depend on timing or batching), and every
    /// aggregate excludes these visitors' rows, so the numbers agree with `bots=exclude` lists.
    /// Any row of a bot at or after `since_ms` belongs to one of them.
    async fn bot_visitors(&self, site_id: &str, since_ms: i64) -> Result<Vec<String>>;

    /// Unidentified human visitors grouped by IP organisation, largest first.
    async fn visitor_orgs(&self, site_id: &str, limit: usize) -> Result<Vec<OrgVisitors>>;
}

/// Leads with their CRM fields, audit trail, score history and identity decisions.
#[async_trait]
pub trait LeadStore: Send + Sync + 'static {
    /// Several leads at once, keyed (site, lead id); missing ones are absent.
    async fn leads(&self, keys: &[(String, String)]) -> Result<Vec<Lead>>;

    /// Leads with their CRM fields, filtered, sorted and cursor-paginated.
    async fn list_leads(&self, query: &LeadQuery) -> Result<Page<LeadRecord>>;

    async fn lead_crm(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadCrm>>;

    /// Replaces the CRM fields of a lead and appends the audit entries of the change.
    async fn put_lead_crm(&self, crm: &LeadCrm, audit: &[LeadAudit]) -> Result<()>;

    /// A lead's audit trail, newest first.
    async fn lead_audit(
        &self,
        site_id: &str,
        lead_id: &str,
        limit: usize,
    ) -> Result<Vec<LeadAudit>>;

    /// A lead's score history, oldest first.
    async fn score_history(
        &self,
        site_id: &str,
        lead_id: &str,
        limit: usize,
    ) -> Result<Vec<ScorePoint>>;

    /// Identity conflicts of a site, newest first (`unresolved_only` hides resolved ones).
    async fn identity_conflicts(
        &self,
        site_id: &str,
        unresolved_only: bool,
        limit: usize,
    ) -> Result<Vec<IdentityConflict>>;

    /// Stores a person's identity decision (replacing an earlier one about the same lead or
    /// visitor); the processor and the API apply them over what the pipeline derived.
    async fn put_identity_override(&self, decision: &IdentityOverride) -> Result<()>;

    async fn identity_overrides(&self, site_id: &str) -> Result<Vec<IdentityOverride>>;

    /// Marks a conflict resolved; false when there is no such conflict.
    async fn resolve_conflict(
        &self,
        site_id: &str,
        visitor_id: &str,
        other_lead_id: &str,
    ) -> Result<bool>;
}

/// Work the pipeline schedules: alert rules and deliveries, AI insight requests, tasks.
#[async_trait]
pub trait WorkflowStore: Send + Sync + 'static {
    /// Insight requests whose next attempt is due (not failed), on every site.
    async fn due_insight_requests(&self, now_ms: i64, limit: usize) -> Result<Vec<InsightRequest>>;

    /// Stores a request's retry state (or its failure).
    async fn update_insight_request(&self, request: &InsightRequest) -> Result<()>;

    /// Stores the insight and removes the request it answers.
    async fn put_insight(&self, insight: &LeadInsight) -> Result<()>;

    async fn insight(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadInsight>>;

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
}

/// Imported business data and the customer-health results computed from it.
#[async_trait]
pub trait AccountStore: Send + Sync + 'static {
    /// Applies an import of business data (upserts by each kind's key), all rows or none.
    async fn import(&self, site_id: &str, batch: &ImportBatch) -> Result<()>;

    /// Everything imported for a site.
    async fn business_data(&self, site_id: &str) -> Result<BusinessData>;

    /// Stores health results (upserts keyed by site, account and day).
    async fn put_health(&self, results: &[AccountHealth]) -> Result<()>;

    /// An account's health runs, newest day first.
    async fn health_history(
        &self,
        site_id: &str,
        account_id: &str,
        limit: usize,
    ) -> Result<Vec<AccountHealth>>;

    /// The latest health of every account of a site, by account id.
    async fn latest_health(&self, site_id: &str) -> Result<Vec<AccountHealth>>;
}

/// Low-volume configuration: sites, users, refresh tokens, the auth audit, forms, meta, liveness.
#[async_trait]
pub trait ConfigStore: Send + Sync + 'static {
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
    async fn revoke_refresh_tokens(
        &self,
        username: &str,
        family_id: Option<&str>,
        at_ms: i64,
    ) -> Result<usize>;

    async fn append_auth_audit(&self, entry: &AuthAuditEntry) -> Result<()>;

    /// The authentication audit log, newest first, optionally of one user.
    async fn auth_audit(
        &self,
        username: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuthAuditEntry>>;

    /// Creates or replaces a lead form (keyed by site and form id).
    async fn put_form(&self, form: &FormDefinition) -> Result<()>;

    async fn form(&self, site_id: &str, form_id: &str) -> Result<Option<FormDefinition>>;

    /// A site's forms, ordered by form id.
    async fn forms(&self, site_id: &str) -> Result<Vec<FormDefinition>>;

    /// Deletes a form; false when there was none. Its events stay (they are history).
    async fn delete_form(&self, site_id: &str, form_id: &str) -> Result<bool>;

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>>;

    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()>;

    /// Cheap liveness probe of the backend (for `/readyz`).
    async fn ping(&self) -> Result<()>;
}

/// A shared pipeline role is a pipeline role (tests keep a handle on the store they overlay).
#[async_trait]
impl<T: PipelineStore + ?Sized> PipelineStore for Arc<T> {
    async fn unseen_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        (**self).unseen_event_ids(ids).await
    }

    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome> {
        (**self).write(batch).await
    }

    fn durable_positions(&self) -> Durable {
        (**self).durable_positions()
    }

    async fn flush(&self) -> Result<()> {
        (**self).flush().await
    }
}

/// The knowledge base: help-centre articles with their versions and stored passage embeddings,
/// chat conversations and messages, and the additive daily counters behind KB analytics.
#[async_trait]
pub trait KnowledgeStore: Send + Sync + 'static {
    /// Writes the article's current state and its history row together (a soft delete is a
    /// write with `deleted_at_ms` set).
    async fn put_article(&self, article: &Article, version: &ArticleVersion) -> Result<()>;

    async fn article(&self, site_id: &str, article_id: &str) -> Result<Option<Article>>;

    /// Every article of a site (drafts and soft-deleted ones too), ordered by article id.
    async fn articles(&self, site_id: &str) -> Result<Vec<Article>>;

    /// An article's history, newest version first.
    async fn article_versions(&self, site_id: &str, article_id: &str, limit: usize) -> Result<Vec<ArticleVersion>>;

    /// Stores (or replaces) an article's passage embeddings; floats come back bit for bit.
    async fn put_article_embedding(&self, embedding: &ArticleEmbedding) -> Result<()>;

    /// A site's stored embeddings, ordered by article id.
    async fn article_embeddings(&self, site_id: &str) -> Result<Vec<ArticleEmbedding>>;

    /// Creates or replaces a conversation (keyed by site and conversation id).
    async fn put_conversation(&self, conversation: &Conversation) -> Result<()>;

    async fn conversation(&self, site_id: &str, conversation_id: &str) -> Result<Option<Conversation>>;

    /// A site's conversations, newest started first; the cursor is `{started_at_ms}:{uuid}`.
    async fn conversations(&self, site_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<Conversation>>;

    /// Appends messages; a message id already stored is skipped (a retried send is a no-op).
    async fn add_messages(&self, messages: &[ConversationMessage]) -> Result<()>;

    /// A conversation's messages, oldest first (by time, then id), at most `limit`.
    async fn messages(&self, site_id: &str, conversation_id: &str, limit: usize) -> Result<Vec<ConversationMessage>>;

    /// Adds each counter's counts to the stored ones of its key (site, day, article, query).
    async fn add_kb_counters(&self, deltas: &[KbCounter]) -> Result<()>;

    /// The summed counters of days `from_day..to_day` (half-open), ordered by (day, article, query).
    async fn kb_counters(&self, site_id: &str, from_day: i64, to_day: i64) -> Result<Vec<KbCounter>>;
}

/// The key of [`ConfigStore::meta`] that [`PrivacyStore::put_erasure`] sets to the erasure's id:
/// the processor reads it once per batch and reloads the tombstones when it changed.
pub const ERASURE_REVISION_KEY: &str = "privacy/erasure_revision";

/// Data-subject erasure. An erase is: [`PrivacyStore::put_erasure`] (the tombstone, durable, so
/// the processor stops storing the subject's replayed events), [`PrivacyStore::erase_subject`]
/// (every record about the subject, physically), then `put_erasure` again with the counts and
/// `completed_at_ms`. Each step is idempotent, so an interrupted erase is finished by running it
/// again.
#[async_trait]
pub trait PrivacyStore: Send + Sync + 'static {
    /// Records (or replaces, by `erasure_id`) the tombstone and sets [`ERASURE_REVISION_KEY`].
    /// Durable on `Ok`.
    async fn put_erasure(&self, erasure: &Erasure) -> Result<()>;

    /// The site's erasures, oldest first.
    async fn erasures(&self, site_id: &str) -> Result<Vec<Erasure>>;

    /// Deletes, within the erasure's site, the events, sessions and profiles of its
    /// `visitor_ids`; the leads of its `lead_ids` with their CRM record, audit, score history,
    /// insight and insight request; alerts about those leads; identity conflicts and overrides
    /// naming either; chat conversations (with their messages) of the visitors; and dead letters
    /// whose payload contains any of `needles` (the visitor ids and the leads' emails, which the
    /// tombstone does not keep). KB counters are anonymous and stay. Returns the records deleted
    /// by kind. Idempotent: a second run deletes nothing more.
    async fn erase_subject(&self, erasure: &Erasure, needles: &[String]) -> Result<BTreeMap<String, u64>>;

    /// Per-site retention: deletes the site's events before `before_ms`, sessions started before
    /// it and dead letters received before it, physically as [`Self::erase_subject`] does.
    /// `before_ms` must be a UTC day start (the columnar store drops whole (site, day) parts).
    /// Returns the records deleted by kind (`events`, `sessions`, `dead_letters`; for stores that
    /// keep session versions, the versions). Idempotent.
    async fn drop_site_before(&self, site_id: &str, before_ms: i64) -> Result<BTreeMap<String, u64>>;
}
