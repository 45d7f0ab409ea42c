//! Alert rules end to end: the processor fires a "score crossed" rule once per lead and window,
//! and the dispatcher delivers it to a real local HTTP receiver, signed with HMAC-SHA256,
//! retrying after the receiver's 500. Runs on the embedded store and on a real ClickHouse.

mod support;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crm_schemas::{AlertCondition, AlertRule, DeliveryStatus};
use crm_store::{EmbeddedStore, Store};
use crm_stream_processor::{alert_signature, AlertDispatcher, DispatcherConfig};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use parking_lot::Mutex;
use serde_json::{json, Value};
use support::{identify, now_ms, page, Pipeline};

/// What the receiver saw: (timestamp header, signature header, body).
type Seen = Arc<Mutex<Vec<(String, String, Bytes)>>>;

/// A webhook receiver on port 0 that answers 500 to the first request and 200 afterwards.
async fn receiver() -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks/crm", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let calls = Arc::new(AtomicUsize::new(0));
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let (record, calls) = (record.clone(), calls.clone());
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let (record, calls) = (record.clone(), calls.clone());
                    async move {
                        let header = |name: &str| request.headers().get(name).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                        let (timestamp, signature) = (header("x-crm-timestamp"), header("x-crm-signature"));
                        let body = request.into_body().collect().await.unwrap().to_bytes();
                        record.lock().push((timestamp, signature, body));
                        let status = if calls.fetch_add(1, Ordering::SeqCst) == 0 { 500 } else { 200 };
                        Ok::<_, std::convert::Infallible>(hyper::Response::builder().status(status).body(Full::new(Bytes::from_static(b"ok"))).unwrap())
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    (url, seen)
}

async fn alert_scenario(store: Arc<dyn Store>) {
    let (url, seen) = receiver().await;
    let mut p = Pipeline::new(store.clone()).await;
    let rule = AlertRule {
        site_id: "s1".into(),
        rule_id: "hot".into(),
        name: "Hot lead".into(),
        condition: AlertCondition::ScoreCrossed { threshold: 20 },
        webhook_url: url,
        secret: "webhook-secret".into(),
        window_hours: 24,
        enabled: true,
        created_at_ms: 0,
    };
    store.put_alert_rule(&rule).await.unwrap();
    let t = now_ms() - 60_000;
    p.run(vec![
        page("v1", t, "/pricing"),
        page("v1", t + 1000, "/demo"),
        identify("v1", t + 2000, json!({"email": "ada@acme.example", "employees": 120})),
    ])
    .await;
    let alerts = store.alerts("s1", 10).await.unwrap();
    assert_eq!(alerts.len(), 1, "the crossing fired: {alerts:?}");
    assert!(alerts[0].lead_score >= 20);

    // More activity keeps the score above the threshold: no second firing in the window.
    p.run(vec![page("v1", t + 3000, "/contact"), page("v1", t + 4000, "/pricing")]).await;
    assert_eq!(store.alerts("s1", 10).await.unwrap().len(), 1);

    let registry = crm_service::MetricsRegistry::new();
    let dispatcher = AlertDispatcher::new(store.clone(), DispatcherConfig::default()).with_metrics(crm_stream_processor::WebhookMetrics::new(&registry));
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 1);
    let after_failure = store.alerts("s1", 10).await.unwrap().remove(0);
    assert_eq!((after_failure.status, after_failure.attempts.len()), (DeliveryStatus::Pending, 1));
    assert_eq!(after_failure.attempts[0].status_code, Some(500));
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 0, "backing off, not due yet");
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 1);
    let delivered = store.alerts("s1", 10).await.unwrap().remove(0);
    assert_eq!(delivered.status, DeliveryStatus::Delivered);
    assert_eq!(delivered.attempts.iter().map(|a| a.status_code).collect::<Vec<_>>(), vec![Some(500), Some(200)]);
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 0, "delivered alerts are not sent again");
    let metrics = registry.render();
    for line in ["crm_webhook_delivery_attempts_total{outcome=\"retrying\"} 1", "crm_webhook_delivery_attempts_total{outcome=\"delivered\"} 1", "crm_webhook_delivery_duration_seconds_count 2"] {
        assert!(metrics.lines().any(|l| l == line), "{line} missing from:\n{metrics}");
    }

    let requests = seen.lock().clone();
    assert_eq!(requests.len(), 2);
    for (timestamp, signature, body) in &requests {
        let ts: i64 = timestamp.parse().expect("timestamp header");
        assert_eq!(signature, &alert_signature("webhook-secret", ts, body), "the receiver can verify the HMAC");
        assert_ne!(signature, &alert_signature("wrong-secret", ts, body));
        let payload: Value = serde_json::from_slice(body).unwrap();
        assert_eq!((payload["rule"]["id"].as_str(), payload["lead"]["email"].as_str()), (Some("hot"), Some("ada@acme.example")));
    }
    assert_eq!(requests[0].2, requests[1].2, "a retry sends the same alert");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_and_are_delivered_signed_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    alert_scenario(Arc::new(EmbeddedStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn alerts_fire_once_and_are_delivered_signed_on_clickhouse() {
    alert_scenario(support::clickhouse_store("crm_alerts").await).await;
}

/// A playbook alert (queued by the health jobs with the task it announces) is delivered with the
/// task and account instead of a lead, signed and retried like any alert.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn playbook_alerts_carry_the_task() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let (url, seen) = receiver().await;
    let rule = AlertRule {
        site_id: "s1".into(),
        rule_id: "cs".into(),
        name: "CS channel".into(),
        condition: AlertCondition::Playbook { rules: vec![] },
        webhook_url: url,
        secret: "webhook-secret".into(),
        window_hours: 24,
        enabled: true,
        created_at_ms: 0,
    };
    store.put_alert_rule(&rule).await.unwrap();
    let task = crm_schemas::Task {
        site_id: "s1".into(),
        task_id: "task_1".into(),
        account_id: "acme".into(),
        rule: "declining_usage".into(),
        title: "Usage is declining at Acme".into(),
        priority: "medium".into(),
        due_ms: now_ms() + 5 * 86_400_000,
        owner: None,
        status: "open".into(),
        reason: "usage fell from 90.0 to 53.0".into(),
        created_at_ms: now_ms(),
    };
    let alert = crm_schemas::Alert {
        site_id: "s1".into(),
        alert_id: crm_schemas::alert_id_for("s1", "cs", "task_1", 1, 0),
        rule_id: "cs".into(),
        rule_name: "CS channel".into(),
        lead_id: String::new(),
        lead_email: String::new(),
        lead_score: 0,
        message: "Usage is declining at Acme".into(),
        fired_at_ms: now_ms(),
        status: DeliveryStatus::Pending,
        next_attempt_ms: now_ms(),
        attempts: vec![],
        task: Some(task.clone()),
    };
    store.write(crm_store::WriteBatch { alerts: vec![alert], ..Default::default() }.into()).await.unwrap();
    let dispatcher = AlertDispatcher::new(store.clone(), DispatcherConfig::default());
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(dispatcher.dispatch_due().await.unwrap(), 1);
    assert_eq!(store.alerts("s1", 10).await.unwrap()[0].status, DeliveryStatus::Delivered);
    let requests = seen.lock().clone();
    let (timestamp, signature, body) = &requests[1];
    assert_eq!(signature, &alert_signature("webhook-secret", timestamp.parse().unwrap(), body));
    let payload: Value = serde_json::from_slice(body).unwrap();
    assert_eq!(payload["account_id"], "acme");
    assert_eq!(payload["task"]["rule"], "declining_usage");
    assert_eq!(payload["task"]["task_id"], "task_1");
    assert!(payload.get("lead").is_none(), "{payload}");
}

/// A rule whose secret is sealed (secrets at rest) is signed with the opened secret; without the
/// key, or with another key, nothing is sent (never unsigned) and the attempt records why.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sealed_webhook_secrets_are_opened_to_sign_and_never_sent_without_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let (url, seen) = receiver().await;
    let keys = Arc::new(crm_service::SecretKeys::new(&[3u8; 32], &[]).unwrap());
    let mut rule = AlertRule {
        site_id: "s1".into(),
        rule_id: "sealed".into(),
        name: "Sealed".into(),
        condition: AlertCondition::ScoreCrossed { threshold: 1 },
        webhook_url: url,
        secret: String::new(),
        window_hours: 24,
        enabled: true,
        created_at_ms: 0,
    };
    rule.secret = keys.seal(b"the-plain-secret", &rule.secret_context());
    store.put_alert_rule(&rule).await.unwrap();
    let alert = crm_schemas::Alert {
        site_id: "s1".into(),
        alert_id: "a1".into(),
        rule_id: "sealed".into(),
        rule_name: "Sealed".into(),
        lead_id: "l1".into(),
        lead_email: "ada@acme.example".into(),
        lead_score: 60,
        message: "m".into(),
        fired_at_ms: now_ms(),
        status: DeliveryStatus::Pending,
        next_attempt_ms: now_ms(),
        attempts: vec![],
        task: None,
    };
    store.write(crm_store::WriteBatch { alerts: vec![alert], ..Default::default() }.into()).await.unwrap();

    let without = AlertDispatcher::new(store.clone(), DispatcherConfig::default());
    assert_eq!(without.dispatch_due().await.unwrap(), 1);
    let after = store.alerts("s1", 10).await.unwrap().remove(0);
    assert_eq!(after.status, DeliveryStatus::Pending);
    assert!(after.attempts[0].error.as_deref().unwrap_or("").contains("no secrets key"), "{:?}", after.attempts);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let wrong = AlertDispatcher::new(store.clone(), DispatcherConfig::default()).with_secrets(Some(Arc::new(crm_service::SecretKeys::new(&[4u8; 32], &[]).unwrap())));
    assert_eq!(wrong.dispatch_due().await.unwrap(), 1);
    let after = store.alerts("s1", 10).await.unwrap().remove(0);
    assert!(after.attempts[1].error.as_deref().unwrap_or("").contains("does not open"), "{:?}", after.attempts);
    assert!(seen.lock().is_empty(), "nothing was sent unsigned or wrongly signed");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let right = AlertDispatcher::new(store.clone(), DispatcherConfig::default()).with_secrets(Some(keys));
    assert_eq!(right.dispatch_due().await.unwrap(), 1);
    // The receiver answers its first request 500 (see `receiver`): what matters is the request.
    assert_eq!(store.alerts("s1", 10).await.unwrap()[0].attempts[2].status_code, Some(500));
    let requests = seen.lock().clone();
    assert_eq!(requests.len(), 1);
    let (timestamp, signature, body) = &requests[0];
    assert_eq!(signature, &alert_signature("the-plain-secret", timestamp.parse().unwrap(), body), "signed with the opened secret");
}
