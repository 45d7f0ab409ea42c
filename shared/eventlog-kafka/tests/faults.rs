//! Delivery guarantees under faults, on librdkafka's mock cluster with the real processor and
//! the embedded store: a broker outage during a burst, a processor dying between its store write
//! and its commit, and a consumer-group rebalance mid-stream. Each asserts that every
//! acknowledged event is stored exactly once and counted once.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_eventlog::{EventLog, Record, Topic};
use crm_eventlog_kafka::KafkaLog;
use crm_schemas::{CollectedEvent, Site, WireEvent};
use crm_service::{MetricsRegistry, Shutdown};
use crm_store::{EmbeddedStore, Store, VisitorQuery};
use crm_stream_processor::{Enricher, GeoLookup, IpStorage, Processor, ProcessorConfig, ProcessorMetrics};

mod support;
use support::MockKafka;

const UA: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";

fn event(visitor: &str, id: &str) -> Record {
    let wire: WireEvent = serde_json::from_value(serde_json::json!({
        "v": 1, "type": "pageview", "site_id": "s1", "visitor_id": visitor, "event_id": id, "url": "https://a.example/pricing"
    }))
    .unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let collected = CollectedEvent { event: wire, received_at_ms: now, ip: Some("198.51.100.1".into()), user_agent: Some(UA.into()) };
    Record::new(Topic::Events, format!("s1:{visitor}"), serde_json::to_vec(&collected).unwrap()).with_event_time(Some(now))
}

async fn log_on(cluster: &MockKafka, prefix: &str) -> Arc<KafkaLog> {
    let mut config = cluster.config(prefix, 4);
    config.delivery_timeout = Duration::from_secs(30);
    Arc::new(KafkaLog::connect(config).await.unwrap())
}

async fn store() -> (tempfile::TempDir, Arc<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    store.put_site(&Site::new("s1", "Site", 0)).await.unwrap();
    (dir, store)
}

fn processor(store: &Arc<dyn Store>, group: &str) -> Processor {
    let config = ProcessorConfig { group: group.into(), batch_size: 200, poll_wait: Duration::from_millis(100), ..ProcessorConfig::default() };
    Processor::new(config, store.clone(), Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized), ProcessorMetrics::new(&MetricsRegistry::new()))
}

/// Waits until every id is stored, then checks nothing is stored or counted twice.
async fn assert_exactly_once(store: &Arc<dyn Store>, acked: &HashSet<String>, visitors: &[String]) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let mut stored = Vec::new();
        for visitor in visitors {
            let page = store.visitor_events("s1", visitor, 100_000, None).await.unwrap();
            stored.extend(page.items.into_iter().map(|e| e.event_id.to_string()));
        }
        let present: HashSet<&String> = stored.iter().collect();
        if acked.iter().all(|id| present.contains(id)) {
            assert_eq!(present.len(), stored.len(), "an event was stored twice");
            let mut counted = 0;
            for visitor in visitors {
                counted += store.visitor("s1", visitor).await.unwrap().map_or(0, |p| p.events);
            }
            assert_eq!(counted as usize, stored.len(), "profiles count each stored event once");
            return;
        }
        assert!(Instant::now() < deadline, "{} of {} acknowledged events stored", acked.iter().filter(|id| present.contains(id)).count(), acked.len());
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_outage_during_a_burst_loses_nothing() {
    let cluster = MockKafka::start(3);
    let log = log_on(&cluster, "outage").await;
    let visitors: Vec<String> = (0..8).map(|i| format!("v{i}")).collect();
    let writer = {
        let (log, visitors) = (log.clone(), visitors.clone());
        tokio::spawn(async move {
            let mut acked = HashSet::new();
            for i in 0..300 {
                let id = uuid::Uuid::new_v4().to_string();
                if log.append(vec![event(&visitors[i % visitors.len()], &id)]).await.is_ok() {
                    acked.insert(id);
                }
            }
            acked
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    for broker in 1..=3 {
        cluster.broker_down(broker);
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    for broker in 1..=3 {
        cluster.broker_up(broker);
    }
    let acked = writer.await.unwrap();
    assert!(acked.len() > 100, "{} acknowledged", acked.len());
    let (_dir, store) = store().await;
    let shutdown = Shutdown::new();
    let task = tokio::spawn(processor(&store, "outage-processor").run(log.clone(), shutdown.clone()));
    assert_exactly_once(&store, &acked, &visitors).await;
    shutdown.trigger();
    task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn processor_dying_between_write_and_commit_replays_exactly() {
    let cluster = MockKafka::start(1);
    let log = log_on(&cluster, "replay").await;
    let visitors: Vec<String> = (0..4).map(|i| format!("r{i}")).collect();
    let mut acked = HashSet::new();
    let mut records = Vec::new();
    for i in 0..40 {
        let id = uuid::Uuid::new_v4().to_string();
        records.push(event(&visitors[i % 4], &id));
        acked.insert(id);
    }
    log.append(records).await.unwrap();
    let (_dir, store) = store().await;
    let shutdown = Shutdown::new();
    let mut first = log.subscribe("replay-group", &Topic::ALL).await.unwrap();
    let mut delivered = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while delivered.len() < 40 && Instant::now() < deadline {
        delivered.extend(first.poll(100, Duration::from_millis(500)).await.unwrap());
    }
    assert_eq!(delivered.len(), 40);
    let source = first.source().to_owned();
    let outcome = processor(&store, "replay-group").process(&delivered, &source, &shutdown).await.unwrap();
    assert_eq!(outcome.events_written, 40);
    drop(first); // dies before committing

    let task = tokio::spawn(processor(&store, "replay-group").run(log.clone() as Arc<dyn EventLog>, shutdown.clone()));
    tokio::time::sleep(Duration::from_secs(5)).await;
    assert_exactly_once(&store, &acked, &visitors).await;
    shutdown.trigger();
    task.await.unwrap().unwrap();
    let page = store.list_visitors(&VisitorQuery { site_id: "s1".into(), limit: 10, ..VisitorQuery::default() }).await.unwrap();
    assert!(page.items.iter().all(|p| p.pageviews == 10), "each of the 4 visitors saw 10 pageviews once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalance_mid_stream_keeps_counts_exact() {
    let cluster = MockKafka::start(1);
    let log = log_on(&cluster, "rebalance").await;
    let visitors: Vec<String> = (0..16).map(|i| format!("b{i}")).collect();
    let (_dir, store) = store().await;
    let first_stop = Shutdown::new();
    let second_stop = Shutdown::new();
    let mut first = Some(tokio::spawn(processor(&store, "shared-group").run(log.clone(), first_stop.clone())));
    let second = tokio::spawn(processor(&store, "shared-group").run(log.clone(), second_stop.clone()));
    let mut acked = HashSet::new();
    for round in 0..30 {
        let mut records = Vec::new();
        for visitor in &visitors {
            let id = uuid::Uuid::new_v4().to_string();
            records.push(event(visitor, &id));
            acked.insert(id);
        }
        log.append(records).await.unwrap();
        if round == 15 {
            // One instance leaves; its partitions move to the survivor.
            first_stop.trigger();
            first.take().expect("first processor").await.unwrap().unwrap();
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_exactly_once(&store, &acked, &visitors).await;
    second_stop.trigger();
    second.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_brokers_fail_appends_retryably_and_mark_the_log_unavailable() {
    let cluster = MockKafka::start(1);
    let mut config = cluster.config("down", 2);
    config.delivery_timeout = Duration::from_millis(1500);
    let log = KafkaLog::connect(config).await.unwrap();
    log.append(vec![event("d1", &uuid::Uuid::new_v4().to_string())]).await.unwrap();
    assert!(log.stats().unavailable.is_none());
    cluster.broker_down(1);
    let err = log.append(vec![event("d1", &uuid::Uuid::new_v4().to_string())]).await.expect_err("no broker to acknowledge");
    assert!(err.is_retryable(), "{err}");
    assert!(log.stats().unavailable.is_some(), "readiness turns red");
    cluster.broker_up(1);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if log.append(vec![event("d1", &uuid::Uuid::new_v4().to_string())]).await.is_ok() {
            break;
        }
        assert!(Instant::now() < deadline, "appends did not recover after the broker came back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
