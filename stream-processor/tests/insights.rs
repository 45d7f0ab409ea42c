//! AI lead insights against a local HTTP server speaking the chat-completions wire format: the
//! processor queues a request for a new lead, the worker stores the model's analysis (and never
//! sends personal data); a model that times out is retried later and scoring never waits.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use crm_store::{EmbeddedStore, Store};
use crm_stream_processor::{AiConfig, InsightWorker};
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use parking_lot::Mutex;
use serde_json::{json, Value};
use support::{identify, now_ms, page, Pipeline};

/// A chat-completions server on port 0: answers after `delay` with a fixed analysis and records
/// the request bodies it saw.
async fn model_server(delay: Duration) -> (String, Arc<Mutex<Vec<Value>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let record = seen.clone();
    tokio::spawn(async move {
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            let record = record.clone();
            tokio::spawn(async move {
                let service = service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                    let record = record.clone();
                    async move {
                        assert_eq!(request.uri().path(), "/v1/chat/completions");
                        assert_eq!(request.headers().get("authorization").and_then(|v| v.to_str().ok()), Some("Bearer test-key"));
                        let body: Value = serde_json::from_slice(&request.into_body().collect().await.unwrap().to_bytes()).unwrap();
                        record.lock().push(body);
                        tokio::time::sleep(delay).await;
                        let analysis = json!({"key_factors": ["3 pricing views this week", "company size fits"], "next_actions": ["book a demo call"], "objections": ["budget timing"]});
                        let reply = json!({"id": "x", "object": "chat.completion", "choices": [{"index": 0, "message": {"role": "assistant", "content": analysis.to_string()}, "finish_reason": "stop"}]});
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(Bytes::from(reply.to_string()))))
                    }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
            });
        }
    });
    (base, seen)
}

fn config(base_url: String, timeout: Duration) -> AiConfig {
    AiConfig { base_url, api_key: Some("test-key".into()), model: "test-model".into(), timeout, poll_interval: Duration::from_millis(100) }
}

async fn insight_scenario(store: Arc<dyn Store>) {
    let (base, seen) = model_server(Duration::ZERO).await;
    let mut p = Pipeline::new(store.clone()).await;
    p.insights = true;
    let t = now_ms() - 60_000;
    p.run(vec![page("v1", t, "/pricing"), identify("v1", t + 1000, json!({"email": "ada@acme.example", "name": "Ada", "industry": "Software"}))]).await;
    let lead_id = crm_schemas::lead_id_for("s1", "ada@acme.example");
    assert_eq!(store.due_insight_requests(now_ms(), 10).await.unwrap().len(), 1, "a new lead queues a request");

    let worker = InsightWorker::new(store.clone(), config(base, Duration::from_secs(5)));
    assert_eq!(worker.work_due().await.unwrap(), 1);
    let insight = store.insight("s1", &lead_id).await.unwrap().expect("stored");
    assert_eq!(insight.key_factors, vec!["3 pricing views this week", "company size fits"]);
    assert_eq!((insight.next_actions.len(), insight.objections.len(), insight.model.as_str()), (1, 1, "test-model"));
    assert!(store.due_insight_requests(now_ms(), 10).await.unwrap().is_empty());

    let request = seen.lock()[0].clone();
    assert_eq!(request["model"], "test-model");
    let prompt = request["messages"][1]["content"].as_str().unwrap();
    assert!(prompt.contains("Software") && prompt.contains("acme.example"));
    assert!(!prompt.contains("ada@acme.example") && !prompt.contains("\"Ada\""), "no personal data in the prompt: {prompt}");

    // The same band again: no new request.
    p.run(vec![page("v1", t + 2000, "/features")]).await;
    assert!(store.due_insight_requests(now_ms(), 10).await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_are_generated_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    insight_scenario(Arc::new(EmbeddedStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insights_are_generated_on_clickhouse() {
    insight_scenario(support::clickhouse_store("crm_insights").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_model_is_retried_later_and_never_blocks_scoring() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let (base, _) = model_server(Duration::from_secs(3)).await;
    let mut p = Pipeline::new(store.clone()).await;
    p.insights = true;
    p.run(vec![identify("v1", now_ms() - 1000, json!({"email": "bo@globex.example"}))]).await;
    let lead_id = crm_schemas::lead_id_for("s1", "bo@globex.example");
    assert!(!store.leads(&[("s1".into(), lead_id.clone())]).await.unwrap().is_empty(), "the lead is scored without waiting");

    let worker = InsightWorker::new(store.clone(), config(base, Duration::from_millis(300)));
    assert_eq!(worker.work_due().await.unwrap(), 0);
    assert!(store.insight("s1", &lead_id).await.unwrap().is_none());
    assert!(store.due_insight_requests(now_ms(), 10).await.unwrap().is_empty(), "backing off");
    let pending = store.due_insight_requests(now_ms() + 60_000, 10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].attempts, 1);
    assert!(pending[0].last_error.as_deref().unwrap_or("").contains("request failed"), "{:?}", pending[0].last_error);
}
