//! Forwarding a role to a field: `forward_roles!(impl [generics] Type, field; Role, …)` writes
//! the impl of each named role for `Type` by calling the same method on `self.field`. Composite
//! stores (one backend for events, another for records) and test overlays use it instead of
//! spelling out dozens of one-line methods.

/// Names the forwarding impls need, whatever the calling crate imports.
#[doc(hidden)]
pub mod __private {
    pub use std::collections::{BTreeMap, HashSet};
    pub use std::sync::Arc;

    pub use async_trait::async_trait;
    pub use crm_schemas::{
        AccountHealth, Alert, AlertRule, Erasure, Article, ArticleEmbedding, ArticleVersion, AuthAuditEntry, Conversation, ConversationMessage, KbCounter, BusinessData, DeadLetter, FormDefinition, IdentityConflict, IdentityOverride,
        ImportBatch, InsightRequest, Lead, LeadAudit, LeadCrm, LeadInsight, RefreshToken, ScorePoint, Session, Site, StoredEvent, Task,
        User, VisitorProfile,
    };
    pub use uuid::Uuid;

    pub use crate::{
        AccountStore, ConfigStore, Durable, KnowledgeStore, EventStore, FormStats, LeadQuery, LeadRecord, LeadStore, OrgVisitors, Overview, Page,
        PipelineStore, PrivacyStore, ProfileStore, Result, SeriesPoint, VisitorQuery, WorkflowStore, WriteBatch, WriteOutcome,
    };
}

/// `forward_roles!(impl [P: Bound] Overlay<P>, rest; ProfileStore, LeadStore)` implements each
/// listed role for the type by forwarding every method to `self.rest`.
#[macro_export]
macro_rules! forward_roles {
    (impl $gens:tt $ty:ty, $field:ident; $($role:ident),+ $(,)?) => {
        $( $crate::forward_roles!(@$role $gens $ty, $field); )+
    };
    (@PipelineStore [$($gen:tt)*] $ty:ty, $field:ident) => {
        const _: () = {
            use $crate::forward::__private::*;
            #[async_trait]
            impl<$($gen)*> PipelineStore for $ty {
                async fn unseen_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
                    self.$field.unseen_event_ids(ids).await
                }
                async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome> {
                    self.$field.write(batch).await
                }
                fn durable_positions(&self) -> Durable {
                    self.$field.durable_positions()
                }
                async fn flush(&self) -> Result<()> {
                    self.$field.flush().await
                }
            }
        };
    };
    (@EventStore [$($gen:tt)*] $ty:ty, $field:ident) => {
        const _: () = {
            use $crate::forward::__private::*;
            #[async_trait]
            impl<$($gen)*> EventStore for $ty {
                async fn visitor_events(&self, site_id: &str, visitor_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
                    self.$field.visitor_events(site_id, visitor_id, limit, cursor).await
                }
                async fn events_of_visitors(&self, site_id: &str, visitor_ids: &[String], limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
                    self.$field.events_of_visitors(site_id, visitor_ids, limit, cursor).await
                }
                async fn sessions_between(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Session>> {
                    self.$field.sessions_between(site_id, from_ms, to_ms, limit).await
                }
                async fn scan_events(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
                    self.$field.scan_events(site_id, from_ms, to_ms, limit, cursor).await
                }
                async fn overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize) -> Result<Overview> {
                    self.$field.overview(site_id, from_ms, to_ms, top_n).await
                }
                async fn filtered_overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize, filters: &$crate::filters::Filters) -> Result<Overview> {
                    self.$field.filtered_overview(site_id, from_ms, to_ms, top_n, filters).await
                }
                async fn filtered_timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64, filters: &$crate::filters::Filters) -> Result<Vec<SeriesPoint>> {
                    self.$field.filtered_timeseries(site_id, from_ms, to_ms, step_ms, filters).await
                }
                async fn dead_letters(&self, site_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>> {
                    self.$field.dead_letters(site_id, limit, cursor).await
                }
                async fn form_stats(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<FormStats>> {
                    self.$field.form_stats(site_id, from_ms, to_ms).await
                }
                async fn timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64) -> Result<Vec<SeriesPoint>> {
                    self.$field.timeseries(site_id, from_ms, to_ms, step_ms).await
                }
                fn sql_dialect(&self) -> Option<$crate::sql_guard::SqlDialect> {
                    self.$field.sql_dialect()
                }
                async fn query_sql(&self, site_id: &str, sql: &$crate::sql_guard::CheckedSql, limits: &$crate::sql_guard::SqlLimits) -> Result<$crate::sql_guard::SqlResult> {
                    self.$field.query_sql(site_id, sql, limits).await
                }
                async fn matched_events(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[$crate::growth::EventMatch], keep_unmatched: bool) -> Result<Vec<$crate::growth::MatchedEvent>> {
                    self.$field.matched_events(site_id, from_ms, to_ms, matchers, keep_unmatched).await
                }
                async fn funnel_pushdown(&self, site_id: &str, from_ms: i64, to_ms: i64, spec: &$crate::growth::FunnelSpec) -> Result<Option<$crate::growth::FunnelReport>> {
                    self.$field.funnel_pushdown(site_id, from_ms, to_ms, spec).await
                }
                async fn goal_counts_pushdown(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[$crate::growth::EventMatch], ask: $crate::goals::GoalAsk) -> Result<Option<$crate::goals::GoalCounts>> {
                    self.$field.goal_counts_pushdown(site_id, from_ms, to_ms, matchers, ask).await
                }
                async fn retention_pushdown(&self, site_id: &str, spec: &$crate::growth::RetentionSpec) -> Result<Option<$crate::growth::RetentionReport>> {
                    self.$field.retention_pushdown(site_id, spec).await
                }
                async fn custom_events(&self, site_id: &str, from_ms: i64, to_ms: i64, top: usize) -> Result<Vec<$crate::explore::CustomEventStats>> {
                    self.$field.custom_events(site_id, from_ms, to_ms, top).await
                }
                async fn page_paths(&self, site_id: &str, from_ms: i64, to_ms: i64, glob: &str, top: usize) -> Result<$crate::explore::PagePaths> {
                    self.$field.page_paths(site_id, from_ms, to_ms, glob, top).await
                }
            }
        };
    };
    (@ProfileStore [$($gen:tt)*] $ty:ty, $field:ident) => {
        const _: () = {
            use $crate::forward::__private::*;
            #[async_trait]
            impl<$($gen)*> ProfileStore for $ty {
                async fn visitor(&self, site_id: &str, visitor_id: &str) -> Result<Option<VisitorProfile>> {
                    self.$field.visitor(site_id, visitor_id).await
                }
                async fn visitors(&self, keys: &[(String, String)]) -> Result<Vec<VisitorProfile>> {
                    self.$field.visitors(keys).await
                }
                async fn find_visitor(&self, visitor_id: &str) -> Result<Vec<VisitorProfile>> {
                    self.$field.find_visitor(visitor_id).await
                }
                async fn list_visitors(&self, query: &VisitorQuery) -> Result<Page<VisitorProfile>> {
                    self.$field.list_visitors(query).await
                }
                async fn visitor_orgs(&self, site_id: &str, limit: usize) -> Result<Vec<OrgVisitors>> {
                    self.$field.visitor_orgs(site_id, limit).await
                }
                async fn bot_visitors(&self, site_id: &str, since_ms: i64) -> Result<Vec<String>> {
                    self.$field.bot_visitors(site_id, since_ms).await
                }
            }
        };
    };
    (@LeadStore [$($gen:tt)*] $ty:ty, $field:ident) => {
        const _: () = {
            use $crate::forward::__private::*;
            #[async_trait]
            impl<$($gen)*> LeadStore for $ty {
                async fn leads(&self, keys: &[(String, String)]) -> Result<Vec<Lead>> {
                    self.$field.leads(keys).await
                }
                async fn list_leads(&self, query: &LeadQuery) -> Result<Page<LeadRecord>> {
                    self.$field.list_leads(query).await
                }
                async fn lead_crm(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadCrm>> {
                    self.$field.lead_crm(site_id, lead_id).await
                }
                async fn put_lead_crm(&self, crm: &LeadCrm, audit: &[LeadAudit]) -> Result<()> {
                    self.$field.put_lead_crm(crm, audit).await
                }
                async fn lead_audit(&self, site_id: &str, lead_id: &str, limit: usize) -> Result<Vec<LeadAudit>> {
                    self.$field.lead_audit(site_id, lead_id, limit).await
                }
                async fn score_history(&self, site_id: &str, lead_id: &str, limit: usize) -> Result<Vec<ScorePoint>> {
                    self.$field.score_history(site_id, lead_id, limit).await
                }
                async fn identity_conflicts(&self, site_id: &str, unresolved_only: bool, limit: usize) -> Result<Vec<IdentityConflict>> {
                    self.$field.identity_conflicts(site_id, unresolved_only, limit).await
                }
                async fn put_identity_override(&self, decision: &IdentityOverride) -> Result<()> {
                    self.$field.put_identity_override(decision).await
                }
                async fn identity_overrides(&self, site_id: &str) -> Result<Vec<IdentityOverride>> {
                    self.$field.identity_overrides(site_id).await
                }
                async fn resolve_conflict(&self, site_id: &str, visitor_id: &str, other_lead_id: &str) -> Result<bool> {
                    self.$field.resolve_conflict(site_id, visitor_id, other_lead_id).await
                }
            }
        };
    };
    (@WorkflowStore [$($gen:tt)*] $ty:ty, $field:ident) => {
        const _: () = {
            use $crate::forward::__private::*;
            #[async_trait]
            impl<$($gen)*> WorkflowStore for $ty {
                async fn due_insight_requests(&self, now_ms: i64, limit: usize) -> Result<Vec<InsightRequest>> {
                    self.$field.due_insight_requests(now_ms, limit).await
                }
                async fn update_insight_request(&self, request: &InsightRequest) -> Result<()> {
                    self.$field.update_insight_request(request).await
                }
                async fn put_insight(&self, insight: &LeadInsight) -> Result<()> {
                    self.$field.put_insight(insight).await
                }
                async fn insight(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadInsight>> {
                    self.$field.insight(site_id, lead_id).await
                }
                async fn add_tasks(&self, tasks: &[Task]) -> Result<usize> {
                    self.$field.add_tasks(tasks).await
                }
                async fn update_task(&self, task: &Task) -> Result<()> {
                    self.$field.update_task(task).await
                }
                async fn tasks(&self, site_id: &str) -> Result<Vec<Task>> {
                    self.$field.tasks(site_id).await
                }
                async fn put_alert_rule(&self, rule: &AlertRule) -> Result<()> {
                    self.$field.put_alert_rule(rule).await
                }
                async fn alert_rules(&self, site_id: &str) -> Result<Vec<AlertRule>> {
                    self.$field.alert_rules(site_id).await
                }
                async fn delete_alert_rule(&self, site_id: &str, rule_id: &str) -> Result<bool> {
                    self.$field.delete_alert_rule(site_id, rule_id).await
                }
                async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<Alert>> {
                    self.$field.due_alerts(now_ms, limit).await
                }
                async fn update_alert(&self, alert: &Alert) -> Result<()> {
                    self.$field.update_alert(alert).await
                }
                async fn alerts(&self, site_id: &str, limit: usize) -> Result<Vec<Alert>> {
                    self.$field.alerts(site_id, limit).await
                }
            }
        };
    };
    (@AccountStore [$($gen:tt)*] $ty:ty, $field:ident) => {
        const _: () = {
            use $crate::forward::__private::*;
            #[async_trait]
            impl<$($gen)*> AccountStore for $ty {
                async fn import(&self, site_id: &str, batch: &ImportBatch) -> Result<()> {
                    self.$field.import(site_id, batch).await
                }
                async fn business_data(&self, site_id: &str) -> Result<BusinessData> {
                    self.$field.business_data(site_id).await
                }
                async fn put_health(&self, results: &[AccountHealth]) -> Result<()> {
                    self.$field.put_health(results).await
                }
                async fn health_history(&self, site_id: &str, account_id: &str, limit: usize) -> Result<Vec<AccountHealth>> {
                    self.$field.health_history(site_id, account_id, limit).await
                }
                async fn latest_health(&self, site_id: &str) -> Result<Vec<AccountHealth>> {
                    self.$field.latest_health(site_id).await
                }
            }
        };
    };
    (@KnowledgeStore [$($gen:tt)*] $ty:ty, $field:ident) => {
        const _: () = {
            use $crate::forward::__private::*;
            #[async_trait]
            impl<$($gen)*> KnowledgeStore for $ty {
                async fn put_article(&self, article: &Article, version: &ArticleVersion) -> Result<()> {
                    self.$field.put_article(article, version).await
                }
                async fn article(&self, site_id: &str, article_id: &str) -> Result<Option<Article>> {
                    self.$field.article(site_id, article_id).await
                }
                async fn articles(&self, site_id: &str) -> Result<Vec<Article>> {
                    self.$field.articles(site_id).await
                }
                async fn article_versions(&self, site_id: &str, article_id: &str, limit: usize) -> Result<Vec<ArticleVersion>> {
                    self.$field.article_versions(site_id, article_id, limit).await
                }
                async fn put_article_embedding(&self, embedding: &ArticleEmbedding) -> Result<()> {
                    self.$field.put_article_embedding(embedding).await
                }
                async fn article_embeddings(&self, site_id: &str) -> Result<Vec<ArticleEmbedding>> {
                    self.$field.article_embeddings(site_id).await
                }
                async fn put_conversation(&self, conversation: &Conversation) -> Result<()> {
                    self.$field.put_conversation(conversation).await
                }
                async fn conversation(&self, site_id: &str, conversation_id: &str) -> Result<Option<Conversation>> {
                    self.$field.conversation(site_id, conversation_id).await
                }
                async fn conversations(&self, site_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<Conversation>> {
                    self.$field.conversations(site_id, limit, cursor).await
                }
                async fn add_messages(&self, messages: &[ConversationMessage]) -> Result<()> {
                    self.$field.add_messages(messages).await
                }
                async fn messages(&self, site_id: &str, conversation_id: &str, limit: usize) -> Result<Vec<ConversationMessage>> {
                    self.$field.messages(site_id, conversation_id, limit).await
                }
                async fn add_kb_counters(&self, deltas: &[KbCounter]) -> Result<()> {
                    self.$field.add_kb_counters(deltas).await
                }
                async fn kb_counters(&self, site_id: &str, from_day: i64, to_day: i64) -> Result<Vec<KbCounter>> {
                    self.$field.kb_counters(site_id, from_day, to_day).await
                }
            }
        };
    };
    (@ConfigStore [$($gen:tt)*] $ty:ty, $field:ident) => {
        const _: () = {
            use $crate::forward::__private::*;
            #[async_trait]
            impl<$($gen)*> ConfigStore for $ty {
                async fn put_site(&self, site: &Site) -> Result<()> {
                    self.$field.put_site(site).await
                }
                async fn site(&self, site_id: &str) -> Result<Option<Site>> {
                    self.$field.site(site_id).await
                }
                async fn sites(&self) -> Result<Vec<Site>> {
                    self.$field.sites().await
                }
                async fn put_user(&self, user: &User) -> Result<()> {
                    self.$field.put_user(user).await
                }
                async fn user(&self, username: &str) -> Result<Option<User>> {
                    self.$field.user(username).await
                }
                async fn users(&self) -> Result<Vec<User>> {
                    self.$field.users().await
                }
                async fn put_refresh_token(&self, token: &RefreshToken) -> Result<()> {
                    self.$field.put_refresh_token(token).await
                }
                async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshToken>> {
                    self.$field.refresh_token(token_hash).await
                }
                async fn revoke_refresh_tokens(&self, username: &str, family_id: Option<&str>, at_ms: i64) -> Result<usize> {
                    self.$field.revoke_refresh_tokens(username, family_id, at_ms).await
                }
                async fn append_auth_audit(&self, entry: &AuthAuditEntry) -> Result<()> {
                    self.$field.append_auth_audit(entry).await
                }
                async fn auth_audit(&self, username: Option<&str>, limit: usize, cursor: Option<&str>) -> Result<Page<AuthAuditEntry>> {
                    self.$field.auth_audit(username, limit, cursor).await
                }
                async fn put_form(&self, form: &FormDefinition) -> Result<()> {
                    self.$field.put_form(form).await
                }
                async fn form(&self, site_id: &str, form_id: &str) -> Result<Option<FormDefinition>> {
                    self.$field.form(site_id, form_id).await
                }
                async fn forms(&self, site_id: &str) -> Result<Vec<FormDefinition>> {
                    self.$field.forms(site_id).await
                }
                async fn delete_form(&self, site_id: &str, form_id: &str) -> Result<bool> {
                    self.$field.delete_form(site_id, form_id).await
                }
                async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
                    self.$field.meta(key).await
                }
                async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
                    self.$field.put_meta(key, value).await
                }
                async fn ping(&self) -> Result<()> {
                    self.$field.ping().await
                }
            }
        };
    };
    (@PrivacyStore [$($gen:tt)*] $ty:ty, $field:ident) => {
        const _: () = {
            use $crate::forward::__private::*;
            #[async_trait]
            impl<$($gen)*> PrivacyStore for $ty {
                async fn put_erasure(&self, erasure: &Erasure) -> Result<()> {
                    self.$field.put_erasure(erasure).await
                }
                async fn erasures(&self, site_id: &str) -> Result<Vec<Erasure>> {
                    self.$field.erasures(site_id).await
                }
                async fn erase_subject(&self, erasure: &Erasure, needles: &[String]) -> Result<BTreeMap<String, u64>> {
                    self.$field.erase_subject(erasure, needles).await
                }
                async fn drop_site_before(&self, site_id: &str, before_ms: i64) -> Result<BTreeMap<String, u64>> {
                    self.$field.drop_site_before(site_id, before_ms).await
                }
            }
        };
    };
}
