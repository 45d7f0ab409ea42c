//! Identity stitching end to end through the real processor, on the embedded store and on a
//! real ClickHouse server (`CRM_TEST_CLICKHOUSE_URL`; without it that test fails, never skips):
//! anonymous browsing then a form → a lead carrying the pre-form history; a second device → the
//! same lead; two people on one device → a conflict, no merge; replays change nothing.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crm_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, LogConsumer, Record, Topic};
use crm_schemas::{lead_id_for, CollectedEvent, IdealCustomerProfile, Scalar, Site, WireEvent};
use crm_service::{MetricsRegistry, Shutdown};
use crm_store::{EmbeddedStore, LeadQuery, Store};
use crm_stream_processor::{Enricher, GeoLookup, IpStorage, Processor, ProcessorConfig, ProcessorMetrics};
use serde_json::json;

const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15";

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn record(event: serde_json::Value) -> Record {
    let wire: WireEvent = serde_json::from_value(event).unwrap();
    let collected = CollectedEvent { event: wire, received_at_ms: now_ms(), ip: Some("198.51.100.7".into()), user_agent: Some(UA.into()) };
    Record::new(Topic::Events, Bytes::from_static(b"k"), serde_json::to_vec(&collected).unwrap())
}

fn page(visitor: &str, ts: i64, path: &str) -> Record {
    record(json!({"v": 1, "type": "pageview", "site_id": "s1", "visitor_id": visitor, "ts": ts, "url": format!("https://acme.example{path}")}))
}

fn identify(visitor: &str, ts: i64, traits: serde_json::Value) -> Record {
    record(json!({"v": 1, "type": "identify", "site_id": "s1", "visitor_id": visitor, "ts": ts, "traits": traits}))
}

struct Pipeline {
    log: Arc<EmbeddedLog>,
    consumer: Box<dyn LogConsumer>,
    store: Arc<dyn Store>,
    delivered: Vec<crm_eventlog::Delivered>,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    async fn new(store: Arc<dyn Store>) -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
        let consumer = log.subscribe("identity-test", &Topic::ALL).await.unwrap();
        let mut site = Site::new("s1", "Acme", 0);
        site.icp = IdealCustomerProfile { min_employees: Some(50), ..IdealCustomerProfile::default() };
        store.put_site(&site).await.unwrap();
        Pipeline { log, consumer, store, delivered: Vec::new(), _dir: dir }
    }

    fn processor(&self) -> Processor {
        let enricher = Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized);
        Processor::new(ProcessorConfig::default(), self.store.clone(), enricher, ProcessorMetrics::new(&MetricsRegistry::new()))
    }

    /// Appends the records and processes them as one batch with a fresh processor.
    async fn run(&mut self, records: Vec<Record>) {
        let count = records.len();
        self.log.append(records).await.unwrap();
        let delivered = self.consumer.poll(1000, Duration::from_secs(2)).await.unwrap();
        assert_eq!(delivered.len(), count);
        let source = self.consumer.source().to_owned();
        self.processor().process(&delivered, &source, &Shutdown::new()).await.unwrap();
        self.delivered.extend(delivered);
    }
}

async fn identity_scenarios(store: Arc<dyn Store>) {
    let mut p = Pipeline::new(store.clone()).await;
    let t = now_ms() - 3_600_000;
    let ada = lead_id_for("s1", "ada@acme.example");

    // Anonymous browsing, then the form (email in mixed case).
    p.run(vec![page("laptop", t, "/"), page("laptop", t + 10_000, "/pricing"), page("laptop", t + 20_000, "/features")]).await;
    assert!(store.leads(&[("s1".into(), ada.clone())]).await.unwrap().is_empty(), "anonymous: no lead yet");
    let form = json!({"v": 1, "type": "form_submit", "site_id": "s1", "visitor_id": "laptop", "ts": t + 30_000, "form_id": "demo",
                      "url": "https://acme.example/contact", "traits": {"email": "Ada@Acme.example", "company": "Acme", "employees": "51-200"}});
    p.run(vec![record(form)]).await;
    let lead = store.leads(&[("s1".into(), ada.clone())]).await.unwrap().pop().expect("lead created by the form");
    assert_eq!(lead.email, "ada@acme.example");
    assert_eq!(lead.visitor_ids, vec!["laptop"]);
    assert_eq!(lead.first_seen_ms, t, "the pre-form history is the lead's");
    assert_eq!((lead.activity.pageviews, lead.activity.visits), (3, 1));
    assert_eq!(lead.activity.signals.get("pricing"), Some(&1));
    assert_eq!(lead.activity.signals.get("form_submit"), Some(&1));
    assert_eq!(lead.traits.get("company"), Some(&Scalar::Str("Acme".into())));
    assert_eq!(lead.company_domain.as_deref(), Some("acme.example"));
    assert!(lead.breakdown.fit >= 50.0, "business email + size in the ICP: {:?}", lead.breakdown);
    assert!(lead.score > 0 && !lead.reasons.is_empty());
    assert_eq!(store.visitor("s1", "laptop").await.unwrap().unwrap().lead_id.as_deref(), Some(ada.as_str()));

    // A second device identifies with the same email: one lead, both histories.
    p.run(vec![page("phone", t + 60_000, "/demo"), identify("phone", t + 61_000, json!({"email": "ada@acme.example", "title": "CTO"}))]).await;
    let lead = store.leads(&[("s1".into(), ada.clone())]).await.unwrap().pop().unwrap();
    assert_eq!(lead.visitor_ids, vec!["laptop", "phone"]);
    assert_eq!(lead.activity.pageviews, 4);
    assert_eq!(lead.activity.signals.get("demo"), Some(&1));
    assert_eq!(lead.traits.get("title"), Some(&Scalar::Str("CTO".into())));

    // Two people on one device: the second identity is a conflict, never a merge.
    p.run(vec![
        page("kiosk", t + 90_000, "/"),
        identify("kiosk", t + 91_000, json!({"email": "bo@globex.example"})),
        identify("kiosk", t + 92_000, json!({"email": "cy@initech.example"})),
    ])
    .await;
    let bo = lead_id_for("s1", "bo@globex.example");
    let cy = lead_id_for("s1", "cy@initech.example");
    assert_eq!(store.visitor("s1", "kiosk").await.unwrap().unwrap().lead_id.as_deref(), Some(bo.as_str()));
    let leads = store.leads(&[("s1".into(), bo.clone()), ("s1".into(), cy.clone())]).await.unwrap();
    let cy_lead = leads.iter().find(|l| l.lead_id == cy).expect("the other identity has its own lead");
    assert!(cy_lead.visitor_ids.is_empty(), "but not the shared visitor's history");
    let conflicts = store.identity_conflicts("s1", true, 10).await.unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!((conflicts[0].visitor_id.as_str(), conflicts[0].lead_id.as_str(), conflicts[0].other_lead_id.as_str()), ("kiosk", bo.as_str(), cy.as_str()));

    // Replaying everything with a fresh processor changes nothing.
    let before = store.list_leads(&LeadQuery { site_id: "s1".into(), limit: 10, ..LeadQuery::default() }).await.unwrap();
    let source = p.consumer.source().to_owned();
    let all = std::mem::take(&mut p.delivered);
    p.processor().process(&all, &source, &Shutdown::new()).await.unwrap();
    let after = store.list_leads(&LeadQuery { site_id: "s1".into(), limit: 10, ..LeadQuery::default() }).await.unwrap();
    let shape = |page: &crm_store::Page<crm_store::LeadRecord>| {
        page.items.iter().map(|r| (r.lead.lead_id.clone(), r.lead.visitor_ids.clone(), r.lead.activity.clone())).collect::<Vec<_>>()
    };
    assert_eq!(shape(&before), shape(&after));
    assert_eq!(after.items.len(), 3);
    assert_eq!(store.identity_conflicts("s1", false, 10).await.unwrap().len(), 1);
    assert!(!store.score_history("s1", &ada, 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_stitching_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    identity_scenarios(Arc::new(EmbeddedStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_stitching_on_clickhouse() {
    let url = std::env::var("CRM_TEST_CLICKHOUSE_URL")
        .expect("CRM_TEST_CLICKHOUSE_URL is not set: start a server with scripts/clickhouse.sh (scripts/test.sh does)");
    let config = crm_store_clickhouse::ClickHouseConfig::new(url, format!("crm_identity_{}", uuid::Uuid::new_v4().simple()));
    identity_scenarios(Arc::new(crm_store_clickhouse::ClickHouseStore::connect(&config).await.unwrap())).await;
}
