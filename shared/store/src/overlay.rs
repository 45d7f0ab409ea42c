//! [`Overlay`]: a store whose pipeline role is one implementation and every other role is
//! another store. Tests use it to break or delay the write path (a torn write, durability that
//! lags acknowledgement) while reads and configuration go to a real store.

use std::collections::HashSet;
use std::sync::Arc;

use async_trait::async_trait;
use crm_schemas::{
    AccountHealth, Alert, AlertRule, AuthAuditEntry, BusinessData, DeadLetter, FormDefinition,
    IdentityConflict, IdentityOverride, ImportBatch, InsightRequest, Lead, LeadAudit, LeadCrm,
    LeadInsight, RefreshToken, ScorePoint, Session, Site, StoredEvent, Task, User, VisitorProfile,
};
use uuid::Uuid;

use crate::{
    AccountStore, ConfigStore, Durable, EventStore, FormStats, LeadQuery, LeadRecord, LeadStore,
    OrgVisitors, Overview, Page, PipelineStore, ProfileStore, Result, SeriesPoint, Store, VisitorQuery,
    WorkflowStore, WriteBatch, WriteOutcome,
};

/// `pipeline` answers [`PipelineStore`]; `rest` answers every other role.
pub struct Overlay<P> {
    pub pipeline: P,
    pub rest: Arc<dyn Store>,
}

impl<P: PipelineStore> Overlay<P> {
    pub fn new(pipeline: P, rest: Arc<dyn Store>) -> Self {
        Overlay { pipeline, rest }
    }
}

#[async_trait]
impl<P: PipelineStore> PipelineStore for Overlay<P> {
    async fn unseen_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        self.pipeline.unseen_event_ids(ids).await
    }

    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome> {
        self.pipeline.write(batch).await
    }

    fn durable_positions(&self) -> Durable {
        self.pipeline.durable_positions()
    }
}

#[async_trait]
impl<P: Send + Sync + 'static> EventStore for Overlay<P> {
    async fn visitor_events(
        &self,
        site_id: &str,
        visitor_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<StoredEvent>> {
        self.rest
            .visitor_events(site_id, visitor_id, limit, cursor)
            .await
    }

    async fn events_of_visitors(
        &self,
        site_id: &str,
        visitor_ids: &[String],
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<StoredEvent>> {
        self.rest
            .events_of_visitors(site_id, visitor_ids, limit, cursor)
            .await
    }

    async fn sessions_between(
        &self,
        site_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
    ) -> Result<Vec<Session>> {
        self.rest
            .sessions_between(site_id, from_ms, to_ms, limit)
            .await
    }

    async fn scan_events(
        &self,
        site_id: &str,
        from_ms: i64,
        to_ms: i64,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<StoredEvent>> {
        self.rest
            .scan_events(site_id, from_ms, to_ms, limit, cursor)
            .await
    }

    async fn overview(
        &self,
        site_id: &str,
        from_ms: i64,
        to_ms: i64,
        top_n: usize,
    ) -> Result<Overview> {
        self.rest.overview(site_id, from_ms, to_ms, top_n).await
    }

    async fn dead_letters(
        &self,
        site_id: &str,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<DeadLetter>> {
        self.rest.dead_letters(site_id, limit, cursor).await
    }

    async fn form_stats(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<FormStats>> {
        self.rest.form_stats(site_id, from_ms, to_ms).await
    }

    async fn timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64) -> Result<Vec<SeriesPoint>> {
        self.rest.timeseries(site_id, from_ms, to_ms, step_ms).await
    }
}

#[async_trait]
impl<P: Send + Sync + 'static> ProfileStore for Overlay<P> {
    async fn visitor(&self, site_id: &str, visitor_id: &str) -> Result<Option<VisitorProfile>> {
        self.rest.visitor(site_id, visitor_id).await
    }

    async fn visitors(&self, keys: &[(String, String)]) -> Result<Vec<VisitorProfile>> {
        self.rest.visitors(keys).await
    }

    async fn find_visitor(&self, visitor_id: &str) -> Result<Vec<VisitorProfile>> {
        self.rest.find_visitor(visitor_id).await
    }

    async fn list_visitors(&self, query: &VisitorQuery) -> Result<Page<VisitorProfile>> {
        self.rest.list_visitors(query).await
    }

    async fn visitor_orgs(&self, site_id: &str, limit: usize) -> Result<Vec<OrgVisitors>> {
        self.rest.visitor_orgs(site_id, limit).await
    }
}

#[async_trait]
impl<P: Send + Sync + 'static> LeadStore for Overlay<P> {
    async fn leads(&self, keys: &[(String, String)]) -> Result<Vec<Lead>> {
        self.rest.leads(keys).await
    }

    async fn list_leads(&self, query: &LeadQuery) -> Result<Page<LeadRecord>> {
        self.rest.list_leads(query).await
    }

    async fn lead_crm(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadCrm>> {
        self.rest.lead_crm(site_id, lead_id).await
    }

    async fn put_lead_crm(&self, crm: &LeadCrm, audit: &[LeadAudit]) -> Result<()> {
        self.rest.put_lead_crm(crm, audit).await
    }

    async fn lead_audit(
        &self,
        site_id: &str,
        lead_id: &str,
        limit: usize,
    ) -> Result<Vec<LeadAudit>> {
        self.rest.lead_audit(site_id, lead_id, limit).await
    }

    async fn score_history(
        &self,
        site_id: &str,
        lead_id: &str,
        limit: usize,
    ) -> Result<Vec<ScorePoint>> {
        self.rest.score_history(site_id, lead_id, limit).await
    }

    async fn identity_conflicts(
        &self,
        site_id: &str,
        unresolved_only: bool,
        limit: usize,
    ) -> Result<Vec<IdentityConflict>> {
        self.rest
            .identity_conflicts(site_id, unresolved_only, limit)
            .await
    }

    async fn put_identity_override(&self, decision: &IdentityOverride) -> Result<()> {
        self.rest.put_identity_override(decision).await
    }

    async fn identity_overrides(&self, site_id: &str) -> Result<Vec<IdentityOverride>> {
        self.rest.identity_overrides(site_id).await
    }

    async fn resolve_conflict(
        &self,
        site_id: &str,
        visitor_id: &str,
        other_lead_id: &str,
    ) -> Result<bool> {
        self.rest
            .resolve_conflict(site_id, visitor_id, other_lead_id)
            .await
    }
}

#[async_trait]
impl<P: Send + Sync + 'static> WorkflowStore for Overlay<P> {
    async fn due_insight_requests(&self, now_ms: i64, limit: usize) -> Result<Vec<InsightRequest>> {
        self.rest.due_insight_requests(now_ms, limit).await
    }

    async fn update_insight_request(&self, request: &InsightRequest) -> Result<()> {
        self.rest.update_insight_request(request).await
    }

    async fn put_insight(&self, insight: &LeadInsight) -> Result<()> {
        self.rest.put_insight(insight).await
    }

    async fn insight(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadInsight>> {
        self.rest.insight(site_id, lead_id).await
    }

    async fn add_tasks(&self, tasks: &[Task]) -> Result<usize> {
        self.rest.add_tasks(tasks).await
    }

    async fn update_task(&self, task: &Task) -> Result<()> {
        self.rest.update_task(task).await
    }

    async fn tasks(&self, site_id: &str) -> Result<Vec<Task>> {
        self.rest.tasks(site_id).await
    }

    async fn put_alert_rule(&self, rule: &AlertRule) -> Result<()> {
        self.rest.put_alert_rule(rule).await
    }

    async fn alert_rules(&self, site_id: &str) -> Result<Vec<AlertRule>> {
        self.rest.alert_rules(site_id).await
    }

    async fn delete_alert_rule(&self, site_id: &str, rule_id: &str) -> Result<bool> {
        self.rest.delete_alert_rule(site_id, rule_id).await
    }

    async fn due_alerts(&self, now_ms: i64, limit: usize) -> Result<Vec<Alert>> {
        self.rest.due_alerts(now_ms, limit).await
    }

    async fn update_alert(&self, alert: &Alert) -> Result<()> {
        self.rest.update_alert(alert).await
    }

    async fn alerts(&self, site_id: &str, limit: usize) -> Result<Vec<Alert>> {
        self.rest.alerts(site_id, limit).await
    }
}

#[async_trait]
impl<P: Send + Sync + 'static> AccountStore for Overlay<P> {
    async fn import(&self, site_id: &str, batch: &ImportBatch) -> Result<()> {
        self.rest.import(site_id, batch).await
    }

    async fn business_data(&self, site_id: &str) -> Result<BusinessData> {
        self.rest.business_data(site_id).await
    }

    async fn put_health(&self, results: &[AccountHealth]) -> Result<()> {
        self.rest.put_health(results).await
    }

    async fn health_history(
        &self,
        site_id: &str,
        account_id: &str,
        limit: usize,
    ) -> Result<Vec<AccountHealth>> {
        self.rest.health_history(site_id, account_id, limit).await
    }

    async fn latest_health(&self, site_id: &str) -> Result<Vec<AccountHealth>> {
        self.rest.latest_health(site_id).await
    }
}

#[async_trait]
impl<P: Send + Sync + 'static> ConfigStore for Overlay<P> {
    async fn put_site(&self, site: &Site) -> Result<()> {
        self.rest.put_site(site).await
    }

    async fn site(&self, site_id: &str) -> Result<Option<Site>> {
        self.rest.site(site_id).await
    }

    async fn sites(&self) -> Result<Vec<Site>> {
        self.rest.sites().await
    }

    async fn put_user(&self, user: &User) -> Result<()> {
        self.rest.put_user(user).await
    }

    async fn user(&self, username: &str) -> Result<Option<User>> {
        self.rest.user(username).await
    }

    async fn users(&self) -> Result<Vec<User>> {
        self.rest.users().await
    }

    async fn put_refresh_token(&self, token: &RefreshToken) -> Result<()> {
        self.rest.put_refresh_token(token).await
    }

    async fn refresh_token(&self, token_hash: &str) -> Result<Option<RefreshToken>> {
        self.rest.refresh_token(token_hash).await
    }

    async fn revoke_refresh_tokens(
        &self,
        username: &str,
        family_id: Option<&str>,
        at_ms: i64,
    ) -> Result<usize> {
        self.rest
            .revoke_refresh_tokens(username, family_id, at_ms)
            .await
    }

    async fn append_auth_audit(&self, entry: &AuthAuditEntry) -> Result<()> {
        self.rest.append_auth_audit(entry).await
    }

    async fn auth_audit(
        &self,
        username: Option<&str>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<Page<AuthAuditEntry>> {
        self.rest.auth_audit(username, limit, cursor).await
    }

    async fn put_form(&self, form: &FormDefinition) -> Result<()> {
        self.rest.put_form(form).await
    }

    async fn form(&self, site_id: &str, form_id: &str) -> Result<Option<FormDefinition>> {
        self.rest.form(site_id, form_id).await
    }

    async fn forms(&self, site_id: &str) -> Result<Vec<FormDefinition>> {
        self.rest.forms(site_id).await
    }

    async fn delete_form(&self, site_id: &str, form_id: &str) -> Result<bool> {
        self.rest.delete_form(site_id, form_id).await
    }

    async fn meta(&self, key: &str) -> Result<Option<Vec<u8>>> {
        self.rest.meta(key).await
    }

    async fn put_meta(&self, key: &str, value: &[u8]) -> Result<()> {
        self.rest.put_meta(key, value).await
    }

    async fn ping(&self) -> Result<()> {
        self.rest.ping().await
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use crm_schemas::Site;

    use super::*;
    use crate::conformance::sample_event;
    use crate::EmbeddedStore;

    /// Counts writes and claims durability only up to offset 5 of one partition.
    struct Counting {
        writes: AtomicUsize,
    }

    #[async_trait]
    impl PipelineStore for Counting {
        async fn unseen_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
            Ok(ids.iter().copied().collect())
        }
        async fn write(&self, _batch: Arc<WriteBatch>) -> Result<WriteOutcome> {
            self.writes.fetch_add(1, Ordering::SeqCst);
            Ok(WriteOutcome::default())
        }
        fn durable_positions(&self) -> Durable {
            Durable::Upto(BTreeMap::from([("log/0".to_string(), 5)]))
        }
    }

    /// Takes any store that can answer configuration reads: `&dyn Store` must satisfy it.
    async fn site_name<S: ConfigStore + ?Sized>(store: &S, id: &str) -> Option<String> {
        store.site(id).await.unwrap().map(|site| site.name)
    }

    #[tokio::test]
    async fn the_pipeline_role_goes_to_one_store_and_every_other_role_to_the_other() {
        let dir = tempfile::tempdir().unwrap();
        let rest: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
        rest.put_site(&Site::new("s1", "Site one", 0)).await.unwrap();
        let overlay: Arc<dyn Store> = Arc::new(Overlay::new(Counting { writes: AtomicUsize::new(0) }, rest.clone()));

        let batch = WriteBatch { events: vec![sample_event("s1", "v1", 1_000, crm_schemas::EventBody::Pageview, "/")], ..Default::default() };
        overlay.write(Arc::new(batch)).await.unwrap();
        assert!(rest.visitor_events("s1", "v1", 10, None).await.unwrap().items.is_empty(), "the write went to the pipeline role only");
        assert_eq!(site_name(&*overlay, "s1").await.as_deref(), Some("Site one"), "reads go to the other store");

        let durable = overlay.durable_positions();
        assert!(durable.covers(&BTreeMap::from([("log/0".to_string(), 5)])));
        assert!(!durable.covers(&BTreeMap::from([("log/0".to_string(), 6)])));
        assert!(!durable.covers(&BTreeMap::from([("log/1".to_string(), 0)])), "an absent partition has nothing durable");
        assert!(rest.durable_positions().covers(&BTreeMap::from([("log/9".to_string(), u64::MAX)])), "the embedded store is durable on return");
    }
}
