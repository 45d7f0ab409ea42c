//! The collector served for real on port 0 with the embedded log and store (shared by the
//! collector's HTTP test files).

#![allow(dead_code)]

use std::sync::Arc;
use std::time::Duration;

use crm_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, Topic};
use crm_ingest::{Collector, CollectorConfig, IngestMetrics, SiteDirectory};
use crm_schemas::{CollectedEvent, DeadLetter, Site};
use crm_service::{serve, MetricsRegistry, ServeOptions, Shutdown};
use crm_store::{EmbeddedStore, Store};
use serde_json::{json, Value};

pub struct Harness {
    pub base: String,
    pub client: reqwest::Client,
    pub log: Arc<EmbeddedLog>,
    pub store: Arc<dyn Store>,
    pub shutdown: Shutdown,
    _dir: tempfile::TempDir,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.shutdown.trigger();
    }
}

pub async fn start(config: CollectorConfig, log_config: impl FnOnce(EmbeddedLogConfig) -> EmbeddedLogConfig) -> Harness {
    start_serving(config, log_config, ServeOptions::with_drain(Duration::from_secs(1))).await
}

/// Like [`start`], with the serve loop's connection limits given.
pub async fn start_serving(config: CollectorConfig, log_config: impl FnOnce(EmbeddedLogConfig) -> EmbeddedLogConfig, options: ServeOptions) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let mut site = Site::new("s1", "Site one", 0);
    site.allowed_origins = vec!["https://good.example".into()];
    store.put_site(&site).await.unwrap();
    store.put_site(&Site::new("open", "Any origin", 0)).await.unwrap();
    let mut private = Site::new("private", "Honours DNT and GPC", 0);
    private.privacy.honor_dnt_gpc = true;
    store.put_site(&private).await.unwrap();
    let log = Arc::new(EmbeddedLog::open(log_config(EmbeddedLogConfig::new(dir.path().join("log")))).unwrap());
    let sites = SiteDirectory::load(store.clone()).await.unwrap();
    let metrics = MetricsRegistry::new();
    let collector = Collector::new(config, log.clone(), sites, IngestMetrics::new(&metrics));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = Shutdown::new();
    tokio::spawn(serve(listener, move |request| collector.clone().handle(request), shutdown.clone(), options));
    Harness { base, client: reqwest::Client::new(), log, store, shutdown, _dir: dir }
}

pub async fn default_harness() -> Harness {
    start(CollectorConfig { per_ip_rate: None, ..CollectorConfig::default() }, |c| c).await
}

pub fn pageview(site: &str) -> Value {
    json!({"v": 1, "type": "pageview", "site_id": site, "visitor_id": "v1", "url": "https://good.example/pricing"})
}

impl Harness {
    pub async fn post(&self, body: impl Into<reqwest::Body>, content_type: &str) -> (u16, Value, reqwest::header::HeaderMap) {
        let response = self
            .client
            .post(format!("{}/v1/events", self.base))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body, headers)
    }

    pub async fn post_json(&self, value: &Value) -> (u16, Value) {
        let (status, body, _) = self.post(value.to_string(), "application/json").await;
        (status, body)
    }

    /// Everything in the log so far, by topic.
    pub async fn drain(&self) -> (Vec<CollectedEvent>, Vec<DeadLetter>) {
        let mut consumer = self.log.subscribe(&format!("t{}", uuid::Uuid::new_v4().simple()), &Topic::ALL).await.unwrap();
        let delivered = consumer.poll(10_000, Duration::from_millis(300)).await.unwrap();
        let mut events = Vec::new();
        let mut letters = Vec::new();
        for record in delivered {
            match record.topic {
                Topic::Events => events.push(serde_json::from_slice(&record.payload).unwrap()),
                Topic::DeadLetters => letters.push(serde_json::from_slice(&record.payload).unwrap()),
            }
        }
        (events, letters)
    }
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

