//! The processor against the real embedded log and store: a batch processed twice (a crash
//! between the store write and the log commit) counts once, and dead letters and poison records
//! land in the store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crm_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, Record, Topic};
use crm_schemas::{CollectedEvent, DeadLetter, Site, WireEvent};
use crm_service::{MetricsRegistry, Shutdown};
use crm_store::{EmbeddedStore, Store};
use crm_stream_processor::{Enricher, GeoLookup, IpStorage, Processor, ProcessorConfig, ProcessorMetrics};

fn collected(json: &str) -> Record {
    let wire: WireEvent = serde_json::from_str(json).unwrap();
    let event = CollectedEvent {
        event: wire,
        received_at_ms: 1_700_000_000_000,
        ip: Some("198.51.100.7".into()),
        user_agent: Some("Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15".into()),
    };
    Record::new(Topic::Events, Bytes::from_static(b"s1:v1"), serde_json::to_vec(&event).unwrap())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replayed_batch_counts_once_and_dead_letters_are_kept() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    store.put_site(&Site::new("s1", "Site", 0)).await.unwrap();
    let ts = 1_700_000_000_000i64;
    let records = vec![
        collected(&format!(r#"{{"v":1,"type":"pageview","site_id":"s1","visitor_id":"v1","event_id":"7d0e6f6c-8a59-4d8e-9a35-000000000001","ts":{ts},"url":"https://a.example/pricing"}}"#)),
        collected(&format!(r#"{{"v":1,"type":"pageview","site_id":"s1","visitor_id":"v1","event_id":"7d0e6f6c-8a59-4d8e-9a35-000000000002","ts":{},"url":"https://a.example/demo"}}"#, ts + 1000)),
        // The same event twice in one batch (a client retry that reached the log twice).
        collected(&format!(r#"{{"v":1,"type":"engagement","site_id":"s1","visitor_id":"v1","event_id":"7d0e6f6c-8a59-4d8e-9a35-000000000003","ts":{},"scroll_depth":70,"engaged_ms":30000}}"#, ts + 2000)),
        collected(&format!(r#"{{"v":1,"type":"engagement","site_id":"s1","visitor_id":"v1","event_id":"7d0e6f6c-8a59-4d8e-9a35-000000000003","ts":{},"scroll_depth":70,"engaged_ms":30000}}"#, ts + 2000)),
        Record::new(Topic::Events, Bytes::from_static(b"x"), Bytes::from_static(br#"{"event":{"site_id":"s1","v":9}}"#)),
        Record::new(
            Topic::DeadLetters,
            Bytes::from_static(b"s1"),
            serde_json::to_vec(&DeadLetter { id: uuid::Uuid::now_v7(), site_id: "s1".into(), received_at_ms: ts, code: "missing_field".into(), message: "url is required".into(), payload: "{}".into() }).unwrap(),
        ),
    ];
    log.append(records).await.unwrap();

    let metrics = MetricsRegistry::new();
    let shutdown = Shutdown::new();
    let mut consumer = log.subscribe("test-processor", &Topic::ALL).await.unwrap();
    let delivered = consumer.poll(100, Duration::from_secs(2)).await.unwrap();
    assert_eq!(delivered.len(), 6);

    let mut first = Processor::new(ProcessorConfig::default(), store.clone(), Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized), ProcessorMetrics::new(&metrics));
    let source = consumer.source().to_owned();
    let outcome = first.process(&delivered, &source, &shutdown).await.unwrap();
    assert_eq!(outcome.events_written, 3);
    assert_eq!(outcome.duplicates, 1);
    assert_eq!(outcome.poison, 1);
    assert_eq!(outcome.dead_letters, 2, "the client-side dead letter and the poison record");
    // Crash before commit: a fresh processor sees the same records again.
    drop(first);
    let mut second = Processor::new(ProcessorConfig::default(), store.clone(), Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized), ProcessorMetrics::new(&MetricsRegistry::new()));
    let replay = second.process(&delivered, &source, &shutdown).await.unwrap();
    assert_eq!(replay.events_written, 0);
    assert_eq!(replay.duplicates, 4);

    let profile = store.visitor("s1", "v1").await.unwrap().expect("profile");
    assert_eq!(profile.pageviews, 2);
    assert_eq!(profile.events, 3);
    assert_eq!(profile.time_spent_ms, 30_000);
    assert_eq!(profile.visits, 1);
    assert_eq!(profile.intent_signals.get("pricing"), Some(&1));
    assert_eq!(profile.intent_signals.get("demo"), Some(&1));
    assert!(profile.intent_score > 50, "pricing + demo: {}", profile.intent_score);
    assert_eq!(profile.device.browser, "Safari");
    let timeline = store.visitor_events("s1", "v1", 10, None).await.unwrap();
    assert_eq!(timeline.items.len(), 3);
    assert!(timeline.items.iter().all(|e| e.ip.as_deref() == Some("198.51.100.0")));
    let letters = store.dead_letters("s1", 10, None).await.unwrap();
    let mut codes: Vec<_> = letters.items.iter().map(|d| d.code.as_str()).collect();
    codes.sort();
    assert_eq!(codes, vec!["missing_field", "undecodable_record"]);
    log.shutdown().await.unwrap();
}

/// A store that, once, persists only the profile half of a batch and then "crashes" — what a
/// store without multi-table transactions (ClickHouse) can leave behind.
struct TornStore {
    inner: EmbeddedStore,
    tear_next: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl Store for TornStore {
    async fn unseen_event_ids(&self, ids: &[uuid::Uuid]) -> crm_store::Result<std::collections::HashSet<uuid::Uuid>> {
        self.inner.unseen_event_ids(ids).await
    }
    async fn write(&self, batch: std::sync::Arc<crm_store::WriteBatch>) -> crm_store::Result<crm_store::WriteOutcome> {
        if self.tear_next.swap(false, std::sync::atomic::Ordering::SeqCst) {
            let profiles_only = crm_store::WriteBatch { visitors: batch.visitors.clone(), sessions: batch.sessions.clone(), ..Default::default() };
            self.inner.write(profiles_only.into()).await?;
            return Err(crm_store::StoreError::Io("simulated crash after the profile write".into()));
        }
        self.inner.write(batch).await
    }
    async fn visitor(&self, s: &str, v: &str) -> crm_store::Result<Option<crm_schemas::VisitorProfile>> {
        self.inner.visitor(s, v).await
    }
    async fn find_visitor(&self, v: &str) -> crm_store::Result<Vec<crm_schemas::VisitorProfile>> {
        self.inner.find_visitor(v).await
    }
    async fn list_visitors(&self, q: &crm_store::VisitorQuery) -> crm_store::Result<crm_store::Page<crm_schemas::VisitorProfile>> {
        self.inner.list_visitors(q).await
    }
    async fn visitor_events(&self, s: &str, v: &str, l: usize, c: Option<&str>) -> crm_store::Result<crm_store::Page<crm_schemas::StoredEvent>> {
        self.inner.visitor_events(s, v, l, c).await
    }
    async fn events_of_visitors(&self, s: &str, v: &[String], l: usize, c: Option<&str>) -> crm_store::Result<crm_store::Page<crm_schemas::StoredEvent>> {
        self.inner.events_of_visitors(s, v, l, c).await
    }
    async fn scan_events(&self, s: &str, f: i64, t: i64, l: usize, c: Option<&str>) -> crm_store::Result<crm_store::Page<crm_schemas::StoredEvent>> {
        self.inner.scan_events(s, f, t, l, c).await
    }
    async fn sessions_between(&self, s: &str, f: i64, t: i64, l: usize) -> crm_store::Result<Vec<crm_schemas::Session>> {
        self.inner.sessions_between(s, f, t, l).await
    }
    async fn overview(&self, s: &str, f: i64, t: i64, n: usize) -> crm_store::Result<crm_store::Overview> {
        self.inner.overview(s, f, t, n).await
    }
    async fn dead_letters(&self, s: &str, l: usize, c: Option<&str>) -> crm_store::Result<crm_store::Page<DeadLetter>> {
        self.inner.dead_letters(s, l, c).await
    }
    async fn put_site(&self, site: &Site) -> crm_store::Result<()> {
        self.inner.put_site(site).await
    }
    async fn site(&self, id: &str) -> crm_store::Result<Option<Site>> {
        self.inner.site(id).await
    }
    async fn sites(&self) -> crm_store::Result<Vec<Site>> {
        self.inner.sites().await
    }
    async fn put_user(&self, u: &crm_schemas::User) -> crm_store::Result<()> {
        self.inner.put_user(u).await
    }
    async fn user(&self, n: &str) -> crm_store::Result<Option<crm_schemas::User>> {
        self.inner.user(n).await
    }
    async fn users(&self) -> crm_store::Result<Vec<crm_schemas::User>> {
        self.inner.users().await
    }
    async fn put_refresh_token(&self, t: &crm_schemas::RefreshToken) -> crm_store::Result<()> {
        self.inner.put_refresh_token(t).await
    }
    async fn refresh_token(&self, h: &str) -> crm_store::Result<Option<crm_schemas::RefreshToken>> {
        self.inner.refresh_token(h).await
    }
    async fn revoke_refresh_tokens(&self, u: &str, f: Option<&str>, at: i64) -> crm_store::Result<usize> {
        self.inner.revoke_refresh_tokens(u, f, at).await
    }
    async fn append_auth_audit(&self, e: &crm_schemas::AuthAuditEntry) -> crm_store::Result<()> {
        self.inner.append_auth_audit(e).await
    }
    async fn auth_audit(&self, u: Option<&str>, l: usize, c: Option<&str>) -> crm_store::Result<crm_store::Page<crm_schemas::AuthAuditEntry>> {
        self.inner.auth_audit(u, l, c).await
    }
    async fn meta(&self, k: &str) -> crm_store::Result<Option<Vec<u8>>> {
        self.inner.meta(k).await
    }
    async fn put_meta(&self, k: &str, v: &[u8]) -> crm_store::Result<()> {
        self.inner.put_meta(k, v).await
    }
    async fn ping(&self) -> crm_store::Result<()> {
        self.inner.ping().await
    }
    async fn leads(&self, k: &[(String, String)]) -> crm_store::Result<Vec<crm_schemas::Lead>> {
        self.inner.leads(k).await
    }
    async fn list_leads(&self, q: &crm_store::LeadQuery) -> crm_store::Result<crm_store::Page<crm_store::LeadRecord>> {
        self.inner.list_leads(q).await
    }
    async fn visitor_orgs(&self, s: &str, l: usize) -> crm_store::Result<Vec<crm_store::OrgVisitors>> {
        self.inner.visitor_orgs(s, l).await
    }
    async fn lead_crm(&self, s: &str, l: &str) -> crm_store::Result<Option<crm_schemas::LeadCrm>> {
        self.inner.lead_crm(s, l).await
    }
    async fn put_lead_crm(&self, c: &crm_schemas::LeadCrm, a: &[crm_schemas::LeadAudit]) -> crm_store::Result<()> {
        self.inner.put_lead_crm(c, a).await
    }
    async fn lead_audit(&self, s: &str, l: &str, n: usize) -> crm_store::Result<Vec<crm_schemas::LeadAudit>> {
        self.inner.lead_audit(s, l, n).await
    }
    async fn score_history(&self, s: &str, l: &str, n: usize) -> crm_store::Result<Vec<crm_schemas::ScorePoint>> {
        self.inner.score_history(s, l, n).await
    }
    async fn identity_conflicts(&self, s: &str, u: bool, n: usize) -> crm_store::Result<Vec<crm_schemas::IdentityConflict>> {
        self.inner.identity_conflicts(s, u, n).await
    }
    async fn put_identity_override(&self, d: &crm_schemas::IdentityOverride) -> crm_store::Result<()> {
        self.inner.put_identity_override(d).await
    }
    async fn identity_overrides(&self, s: &str) -> crm_store::Result<Vec<crm_schemas::IdentityOverride>> {
        self.inner.identity_overrides(s).await
    }
    async fn resolve_conflict(&self, s: &str, v: &str, o: &str) -> crm_store::Result<bool> {
        self.inner.resolve_conflict(s, v, o).await
    }
    async fn due_insight_requests(&self, n: i64, l: usize) -> crm_store::Result<Vec<crm_schemas::InsightRequest>> {
        self.inner.due_insight_requests(n, l).await
    }
    async fn update_insight_request(&self, r: &crm_schemas::InsightRequest) -> crm_store::Result<()> {
        self.inner.update_insight_request(r).await
    }
    async fn put_insight(&self, i: &crm_schemas::LeadInsight) -> crm_store::Result<()> {
        self.inner.put_insight(i).await
    }
    async fn insight(&self, s: &str, l: &str) -> crm_store::Result<Option<crm_schemas::LeadInsight>> {
        self.inner.insight(s, l).await
    }
    async fn import(&self, s: &str, b: &crm_schemas::ImportBatch) -> crm_store::Result<()> {
        self.inner.import(s, b).await
    }
    async fn business_data(&self, s: &str) -> crm_store::Result<crm_schemas::BusinessData> {
        self.inner.business_data(s).await
    }
    async fn put_health(&self, r: &[crm_schemas::AccountHealth]) -> crm_store::Result<()> {
        self.inner.put_health(r).await
    }
    async fn health_history(&self, s: &str, a: &str, l: usize) -> crm_store::Result<Vec<crm_schemas::AccountHealth>> {
        self.inner.health_history(s, a, l).await
    }
    async fn latest_health(&self, s: &str) -> crm_store::Result<Vec<crm_schemas::AccountHealth>> {
        self.inner.latest_health(s).await
    }
    async fn add_tasks(&self, t: &[crm_schemas::Task]) -> crm_store::Result<usize> {
        self.inner.add_tasks(t).await
    }
    async fn update_task(&self, t: &crm_schemas::Task) -> crm_store::Result<()> {
        self.inner.update_task(t).await
    }
    async fn tasks(&self, s: &str) -> crm_store::Result<Vec<crm_schemas::Task>> {
        self.inner.tasks(s).await
    }
    async fn put_alert_rule(&self, r: &crm_schemas::AlertRule) -> crm_store::Result<()> {
        self.inner.put_alert_rule(r).await
    }
    async fn alert_rules(&self, s: &str) -> crm_store::Result<Vec<crm_schemas::AlertRule>> {
        self.inner.alert_rules(s).await
    }
    async fn delete_alert_rule(&self, s: &str, r: &str) -> crm_store::Result<bool> {
        self.inner.delete_alert_rule(s, r).await
    }
    async fn due_alerts(&self, n: i64, l: usize) -> crm_store::Result<Vec<crm_schemas::Alert>> {
        self.inner.due_alerts(n, l).await
    }
    async fn update_alert(&self, a: &crm_schemas::Alert) -> crm_store::Result<()> {
        self.inner.update_alert(a).await
    }
    async fn alerts(&self, s: &str, l: usize) -> crm_store::Result<Vec<crm_schemas::Alert>> {
        self.inner.alerts(s, l).await
    }
    async fn put_form(&self, f: &crm_schemas::FormDefinition) -> crm_store::Result<()> {
        self.inner.put_form(f).await
    }
    async fn form(&self, s: &str, f: &str) -> crm_store::Result<Option<crm_schemas::FormDefinition>> {
        self.inner.form(s, f).await
    }
    async fn forms(&self, s: &str) -> crm_store::Result<Vec<crm_schemas::FormDefinition>> {
        self.inner.forms(s).await
    }
    async fn delete_form(&self, s: &str, f: &str) -> crm_store::Result<bool> {
        self.inner.delete_form(s, f).await
    }
    async fn form_stats(&self, s: &str, f: i64, t: i64) -> crm_store::Result<Vec<crm_store::FormStats>> {
        self.inner.form_stats(s, f, t).await
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_write_replays_without_double_counting() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
    let torn = Arc::new(TornStore { inner: EmbeddedStore::open(dir.path()).unwrap(), tear_next: true.into() });
    let store: Arc<dyn Store> = torn.clone();
    store.put_site(&Site::new("s1", "Site", 0)).await.unwrap();
    let ts = 1_700_000_000_000i64;
    let records = (0..4)
        .map(|i| collected(&format!(r#"{{"v":1,"type":"pageview","site_id":"s1","visitor_id":"v1","ts":{},"url":"https://a.example/pricing"}}"#, ts + i * 1000)))
        .collect();
    log.append(records).await.unwrap();
    let mut consumer = log.subscribe("torn", &Topic::ALL).await.unwrap();
    let delivered = consumer.poll(100, Duration::from_secs(2)).await.unwrap();
    let source = consumer.source().to_owned();
    let shutdown = Shutdown::new();
    shutdown.trigger(); // give up on the first failed write instead of retrying
    let mut first = Processor::new(ProcessorConfig::default(), store.clone(), Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized), ProcessorMetrics::new(&MetricsRegistry::new()));
    assert!(first.process(&delivered, &source, &shutdown).await.is_err());
    let half = store.visitor("s1", "v1").await.unwrap().expect("profile half was written");
    assert_eq!(half.pageviews, 4);
    assert!(store.visitor_events("s1", "v1", 10, None).await.unwrap().items.is_empty());

    let mut second = Processor::new(ProcessorConfig::default(), store.clone(), Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized), ProcessorMetrics::new(&MetricsRegistry::new()));
    let outcome = second.process(&delivered, &source, &Shutdown::new()).await.unwrap();
    assert_eq!(outcome.events_written, 4);
    let profile = store.visitor("s1", "v1").await.unwrap().unwrap();
    assert_eq!(profile.pageviews, 4, "the replay stored the events without counting them again");
    assert_eq!(profile.visits, 1);
    let timeline = store.visitor_events("s1", "v1", 10, None).await.unwrap();
    assert_eq!(timeline.items.len(), 4);
    assert!(timeline.items.iter().all(|e| e.session_id == profile.current_session.as_ref().unwrap().session_id));
    log.shutdown().await.unwrap();
}
