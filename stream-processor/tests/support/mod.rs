//! Helpers shared by the processor's integration tests: event records as the collector writes
//! them, and a pipeline (embedded log → processor → any store) processing one batch at a time.

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crm_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, LogConsumer, Record, Topic};
use crm_schemas::{CollectedEvent, IdealCustomerProfile, Site, WireEvent};
use crm_service::{MetricsRegistry, Shutdown};
use crm_store::Store;
use crm_stream_processor::{Enricher, GeoLookup, IpStorage, Processor, ProcessorConfig, ProcessorMetrics};
use serde_json::json;

const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15";

pub fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

pub fn record(event: serde_json::Value) -> Record {
    record_as(event, Some(UA))
}

/// A record as the collector writes it for a request with this user agent (`None`: no header).
pub fn record_as(event: serde_json::Value, user_agent: Option<&str>) -> Record {
    let wire: WireEvent = serde_json::from_value(event).unwrap();
    let collected = CollectedEvent { event: wire, received_at_ms: now_ms(), ip: Some("198.51.100.7".into()), user_agent: user_agent.map(str::to_owned) };
    Record::new(Topic::Events, Bytes::from_static(b"k"), serde_json::to_vec(&collected).unwrap())
}

pub fn page(visitor: &str, ts: i64, path: &str) -> Record {
    record(json!({"v": 1, "type": "pageview", "site_id": "s1", "visitor_id": visitor, "ts": ts, "url": format!("https://acme.example{path}")}))
}

pub fn identify(visitor: &str, ts: i64, traits: serde_json::Value) -> Record {
    record(json!({"v": 1, "type": "identify", "site_id": "s1", "visitor_id": visitor, "ts": ts, "traits": traits}))
}

pub struct Pipeline {
    pub log: Arc<EmbeddedLog>,
    pub consumer: Box<dyn LogConsumer>,
    pub store: Arc<dyn Store>,
    pub delivered: Vec<crm_eventlog::Delivered>,
    /// Whether the processor queues AI insight requests.
    pub insights: bool,
    _dir: tempfile::TempDir,
}

impl Pipeline {
    pub async fn new(store: Arc<dyn Store>) -> Pipeline {
        let dir = tempfile::tempdir().unwrap();
        let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
        let consumer = log.subscribe("identity-test", &Topic::ALL).await.unwrap();
        let mut site = Site::new("s1", "Acme", 0);
        site.icp = IdealCustomerProfile { min_employees: Some(50), ..IdealCustomerProfile::default() };
        store.put_site(&site).await.unwrap();
        Pipeline { log, consumer, store, delivered: Vec::new(), insights: false, _dir: dir }
    }

    pub fn processor(&self) -> Processor {
        let enricher = Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized);
        Processor::new(ProcessorConfig { request_insights: self.insights, ..ProcessorConfig::default() }, self.store.clone(), enricher, ProcessorMetrics::new(&MetricsRegistry::new()))
    }

    /// Appends the records and processes them as one batch with a fresh processor.
    pub async fn run(&mut self, records: Vec<Record>) {
        let count = records.len();
        self.log.append(records).await.unwrap();
        let delivered = self.consumer.poll(1000, Duration::from_secs(2)).await.unwrap();
        assert_eq!(delivered.len(), count);
        let source = self.consumer.source().to_owned();
        self.processor().process(&delivered, &source, &Shutdown::new()).await.unwrap();
        self.delivered.extend(delivered);
    }
}


/// A ClickHouse store in a fresh database of the server scripts/test.sh starts (fails without it).
pub async fn clickhouse_store(prefix: &str) -> Arc<dyn Store> {
    let url = std::env::var("CRM_TEST_CLICKHOUSE_URL")
        .expect("CRM_TEST_CLICKHOUSE_URL is not set: start a server with scripts/clickhouse.sh (scripts/test.sh does)");
    let config = crm_store_clickhouse::ClickHouseConfig::new(url, format!("{prefix}_{}", uuid::Uuid::new_v4().simple()));
    Arc::new(crm_store_clickhouse::ClickHouseStore::connect(&config).await.unwrap())
}
