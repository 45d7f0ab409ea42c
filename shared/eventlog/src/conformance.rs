//! The one conformance suite every [`EventLog`] implementation must pass.
//!
//! A backend provides a [`LogHarness`] whose `open` returns the same logical log each time it is
//! called (reopening it after a shutdown), then instantiates the tests with
//! [`eventlog_conformance_suite!`](crate::eventlog_conformance_suite). Each test builds a fresh
//! harness, so backends can give every test its own directory or topic.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;

use crate::{Delivered, EventLog, LogConsumer, Record, Topic};

#[async_trait]
pub trait LogHarness: Send + Sync {
    /// Opens the harness's log; after a `shutdown` of the previous handle it reopens it.
    async fn open(&self) -> Arc<dyn EventLog>;
}

/// Instantiates every conformance test for a harness expression.
#[macro_export]
macro_rules! eventlog_conformance_suite {
    ($harness:expr) => {
        $crate::eventlog_conformance_suite!(@tests $harness;
            append_then_consume_in_order,
            commit_resumes_after_reopen,
            uncommitted_records_are_redelivered,
            groups_are_independent,
            topics_are_separated,
            concurrent_appends_are_delivered_once,
            empty_poll_returns_after_the_wait,
            acknowledged_records_survive_reopen,
            lag_reflects_commits
        );
    };
    (@tests $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::conformance::$name(&harness).await;
            }
        )*
    };
}

fn record(topic: Topic, key: &str, payload: String) -> Record {
    Record::new(topic, Bytes::copy_from_slice(key.as_bytes()), payload)
}

fn payloads(delivered: &[Delivered]) -> Vec<String> {
    delivered.iter().map(|d| String::from_utf8_lossy(&d.payload).into_owned()).collect()
}

/// Polls until `count` records arrived (or 20 s passed, which fails the test).
pub async fn poll_until(consumer: &mut dyn LogConsumer, count: usize) -> Vec<Delivered> {
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut out = Vec::new();
    while out.len() < count {
        assert!(Instant::now() < deadline, "timed out: {} of {count} records delivered", out.len());
        let batch = consumer.poll(count - out.len(), Duration::from_millis(200)).await.expect("poll");
        out.extend(batch);
    }
    out
}

async fn append_numbered(log: &dyn EventLog, topic: Topic, prefix: &str, range: std::ops::Range<usize>) {
    for i in range {
        log.append(vec![record(topic, "visitor-1", format!("{prefix}-{i:04}"))]).await.expect("append");
    }
}

pub async fn append_then_consume_in_order(harness: &dyn LogHarness) {
    let log = harness.open().await;
    append_numbered(log.as_ref(), Topic::Events, "e", 0..5).await;
    log.append((5..10).map(|i| record(Topic::Events, "visitor-1", format!("e-{i:04}"))).collect())
        .await
        .expect("batch append");
    let mut consumer = log.subscribe("order", &[Topic::Events]).await.expect("subscribe");
    let got = poll_until(consumer.as_mut(), 10).await;
    let expected: Vec<String> = (0..10).map(|i| format!("e-{i:04}")).collect();
    assert_eq!(payloads(&got), expected);
    assert!(got.iter().all(|d| d.topic == Topic::Events && &d.key[..] == b"visitor-1"));
    log.shutdown().await.expect("shutdown");
}

pub async fn commit_resumes_after_reopen(harness: &dyn LogHarness) {
    let log = harness.open().await;
    append_numbered(log.as_ref(), Topic::Events, "c", 0..10).await;
    let mut consumer = log.subscribe("resume", &[Topic::Events]).await.expect("subscribe");
    let first = poll_until(consumer.as_mut(), 4).await;
    let first = &first[..4];
    consumer.commit(first).await.expect("commit");
    drop(consumer);
    log.shutdown().await.expect("shutdown");
    drop(log);

    let log = harness.open().await;
    let mut consumer = log.subscribe("resume", &[Topic::Events]).await.expect("subscribe again");
    let rest = poll_until(consumer.as_mut(), 6).await;
    let expected: Vec<String> = (4..10).map(|i| format!("c-{i:04}")).collect();
    assert_eq!(payloads(&rest[..6]), expected);
    log.shutdown().await.expect("shutdown");
}

pub async fn uncommitted_records_are_redelivered(harness: &dyn LogHarness) {
    let log = harness.open().await;
    append_numbered(log.as_ref(), Topic::Events, "u", 0..5).await;
    let mut consumer = log.subscribe("redeliver", &[Topic::Events]).await.expect("subscribe");
    let once = poll_until(consumer.as_mut(), 5).await;
    consumer.commit(&once[..2]).await.expect("commit");
    drop(consumer);
    let mut consumer = log.subscribe("redeliver", &[Topic::Events]).await.expect("resubscribe");
    let again = poll_until(consumer.as_mut(), 3).await;
    assert_eq!(payloads(&again[..3]), vec!["u-0002", "u-0003", "u-0004"]);
    log.shutdown().await.expect("shutdown");
}

pub async fn groups_are_independent(harness: &dyn LogHarness) {
    let log = harness.open().await;
    append_numbered(log.as_ref(), Topic::Events, "g", 0..3).await;
    let mut a = log.subscribe("group-a", &[Topic::Events]).await.expect("a");
    let got_a = poll_until(a.as_mut(), 3).await;
    a.commit(&got_a).await.expect("commit a");
    let mut b = log.subscribe("group-b", &[Topic::Events]).await.expect("b");
    let got_b = poll_until(b.as_mut(), 3).await;
    assert_eq!(payloads(&got_a), payloads(&got_b[..3]));
    log.shutdown().await.expect("shutdown");
}

pub async fn topics_are_separated(harness: &dyn LogHarness) {
    let log = harness.open().await;
    log.append(vec![
        record(Topic::Events, "k", "event-1".into()),
        record(Topic::DeadLetters, "k", "dead-1".into()),
        record(Topic::Events, "k", "event-2".into()),
    ])
    .await
    .expect("append");
    let mut dead = log.subscribe("dead-only", &[Topic::DeadLetters]).await.expect("subscribe");
    let got = poll_until(dead.as_mut(), 1).await;
    assert_eq!(payloads(&got), vec!["dead-1"]);
    assert_eq!(got[0].topic, Topic::DeadLetters);
    let extra = dead.poll(10, Duration::from_millis(300)).await.expect("poll");
    assert!(extra.is_empty(), "dead-letter consumer saw {:?}", payloads(&extra));
    let mut both = log.subscribe("both", &Topic::ALL).await.expect("subscribe both");
    let all = poll_until(both.as_mut(), 3).await;
    let mut names = payloads(&all);
    names.sort();
    assert_eq!(names, vec!["dead-1", "event-1", "event-2"]);
    log.shutdown().await.expect("shutdown");
}

pub async fn concurrent_appends_are_delivered_once(harness: &dyn LogHarness) {
    let log = harness.open().await;
    let mut tasks = Vec::new();
    for writer in 0..8 {
        let log = log.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..40 {
                log.append(vec![record(Topic::Events, &format!("w{writer}"), format!("w{writer}-{i:03}"))])
                    .await
                    .expect("append");
            }
        }));
    }
    for task in tasks {
        task.await.expect("writer task");
    }
    let mut consumer = log.subscribe("concurrent", &[Topic::Events]).await.expect("subscribe");
    let got = poll_until(consumer.as_mut(), 320).await;
    let unique: HashSet<String> = payloads(&got).into_iter().collect();
    assert_eq!(unique.len(), 320);
    for writer in 0..8 {
        let prefix = format!("w{writer}-");
        let own: Vec<String> = payloads(&got).into_iter().filter(|p| p.starts_with(&prefix)).collect();
        let mut sorted = own.clone();
        sorted.sort();
        assert_eq!(own, sorted, "records with one key must keep their order");
    }
    let extra = consumer.poll(10, Duration::from_millis(300)).await.expect("poll");
    assert!(extra.is_empty());
    log.shutdown().await.expect("shutdown");
}

pub async fn empty_poll_returns_after_the_wait(harness: &dyn LogHarness) {
    let log = harness.open().await;
    let mut consumer = log.subscribe("empty", &[Topic::Events]).await.expect("subscribe");
    let started = Instant::now();
    let got = consumer.poll(10, Duration::from_millis(200)).await.expect("poll");
    assert!(got.is_empty());
    assert!(started.elapsed() >= Duration::from_millis(150));
    log.shutdown().await.expect("shutdown");
}

pub async fn acknowledged_records_survive_reopen(harness: &dyn LogHarness) {
    let log = harness.open().await;
    append_numbered(log.as_ref(), Topic::Events, "d", 0..20).await;
    log.shutdown().await.expect("shutdown");
    drop(log);
    let log = harness.open().await;
    append_numbered(log.as_ref(), Topic::Events, "d", 20..25).await;
    let mut consumer = log.subscribe("durable", &[Topic::Events]).await.expect("subscribe");
    let got = poll_until(consumer.as_mut(), 25).await;
    let expected: Vec<String> = (0..25).map(|i| format!("d-{i:04}")).collect();
    assert_eq!(payloads(&got), expected);
    log.shutdown().await.expect("shutdown");
}

pub async fn lag_reflects_commits(harness: &dyn LogHarness) {
    let log = harness.open().await;
    append_numbered(log.as_ref(), Topic::Events, "l", 0..6).await;
    let mut consumer = log.subscribe("lagging", &[Topic::Events]).await.expect("subscribe");
    let got = poll_until(consumer.as_mut(), 6).await;
    consumer.commit(&got[..6]).await.expect("commit");
    if let Some(lag) = consumer.lag() {
        assert_eq!(lag, 0, "lag after committing everything");
    }
    let source = consumer.source().to_owned();
    assert!(!source.is_empty());
    drop(consumer);
    log.shutdown().await.expect("shutdown");
    drop(log);
    let log = harness.open().await;
    let consumer = log.subscribe("lagging", &[Topic::Events]).await.expect("resubscribe");
    assert_eq!(consumer.source(), source, "the same log keeps its identity across reopen");
    drop(consumer);
    log.shutdown().await.expect("shutdown");
}
