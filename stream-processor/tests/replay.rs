//! The processor against the real embedded log and store: a batch processed twice (a crash
//! between the store write and the log commit) counts once, and dead letters and poison records
//! land in the store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crm_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, Record, Topic};
use crm_schemas::{CollectedEvent, DeadLetter, Site, WireEvent};
use crm_service::{MetricsRegistry, Shutdown};
use crm_store::{EmbeddedStore, Overlay, PipelineStore, Store};
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
    inner: Arc<EmbeddedStore>,
    tear_next: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl PipelineStore for TornStore {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_torn_write_replays_without_double_counting() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
    let inner = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let store: Arc<dyn Store> = Arc::new(Overlay::new(TornStore { inner: inner.clone(), tear_next: true.into() }, inner));
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

/// Acknowledges writes at once (they reach the embedded store) but reports them durable only
/// once released: what a store with a periodic commit point looks like to the processor.
struct Deferred {
    inner: Arc<EmbeddedStore>,
    seen: parking_lot::Mutex<std::collections::BTreeMap<String, u64>>,
    released: std::sync::atomic::AtomicBool,
}

#[async_trait::async_trait]
impl PipelineStore for Deferred {
    async fn unseen_event_ids(&self, ids: &[uuid::Uuid]) -> crm_store::Result<std::collections::HashSet<uuid::Uuid>> {
        self.inner.unseen_event_ids(ids).await
    }
    async fn write(&self, batch: Arc<crm_store::WriteBatch>) -> crm_store::Result<crm_store::WriteOutcome> {
        assert!(!batch.log_positions.is_empty(), "a batch from the log says where it came from");
        {
            let mut seen = self.seen.lock();
            for (key, offset) in &batch.log_positions {
                let entry = seen.entry(key.clone()).or_insert(*offset);
                *entry = (*entry).max(*offset);
            }
        }
        self.inner.write(batch).await
    }
    fn durable_positions(&self) -> crm_store::Durable {
        if self.released.load(std::sync::atomic::Ordering::SeqCst) {
            crm_store::Durable::Upto(self.seen.lock().clone())
        } else {
            crm_store::Durable::Upto(Default::default())
        }
    }
}

async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_log_is_committed_only_as_far_as_the_store_is_durable() {
    let dir = tempfile::tempdir().unwrap();
    let log = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path().join("log"))).unwrap());
    let inner = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let deferred = Arc::new(Deferred { inner: inner.clone(), seen: Default::default(), released: false.into() });
    let store: Arc<dyn Store> = Arc::new(Overlay::new(deferred.clone(), inner.clone()));
    store.put_site(&Site::new("s1", "Site", 0)).await.unwrap();
    let ts = 1_700_000_000_000i64;
    let records = (0..3)
        .map(|i| collected(&format!(r#"{{"v":1,"type":"pageview","site_id":"s1","visitor_id":"v1","event_id":"7d0e6f6c-8a59-4d8e-9a35-00000000010{i}","ts":{},"url":"https://a.example/p{i}"}}"#, ts + i * 1000)))
        .collect();
    log.append(records).await.unwrap();
    let enricher = || Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized);

    // Stored and acknowledged, never durable: the processor must not commit.
    let metrics = ProcessorMetrics::new(&MetricsRegistry::new());
    let shutdown = Shutdown::new();
    let first = Processor::new(ProcessorConfig::default(), store.clone(), enricher(), metrics.clone());
    let running = tokio::spawn(first.run(log.clone(), shutdown.clone()));
    eventually("the batch to be stored", || metrics.events.get() == 3).await;
    eventually("an idle poll", || metrics.awaiting_durability.get() == 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await; // several idle polls: still nothing durable
    assert_eq!(metrics.awaiting_durability.get(), 1);
    shutdown.trigger();
    running.await.unwrap().unwrap();

    // "Crash": the records come again, and the replay neither stores nor applies them twice.
    let metrics = ProcessorMetrics::new(&MetricsRegistry::new());
    let shutdown = Shutdown::new();
    deferred.released.store(true, std::sync::atomic::Ordering::SeqCst);
    let second = Processor::new(ProcessorConfig::default(), store.clone(), enricher(), metrics.clone());
    let running = tokio::spawn(second.run(log.clone(), shutdown.clone()));
    eventually("the uncommitted records to be delivered again", || metrics.duplicates.get() == 3).await;
    eventually("the durable batch to be committed", || metrics.awaiting_durability.get() == 0).await;
    shutdown.trigger();
    running.await.unwrap().unwrap();
    assert_eq!(metrics.events.get(), 0);
    let profile = store.visitor("s1", "v1").await.unwrap().unwrap();
    assert_eq!((profile.pageviews, profile.events), (3, 3), "applied once");
    assert_eq!(store.visitor_events("s1", "v1", 10, None).await.unwrap().items.len(), 3, "stored once");

    // Committed now: a third consumer of the group gets nothing.
    let mut consumer = log.subscribe(&ProcessorConfig::default().group, &Topic::ALL).await.unwrap();
    assert!(consumer.poll(100, Duration::from_millis(300)).await.unwrap().is_empty(), "the durable batch was committed");
    log.shutdown().await.unwrap();
}
