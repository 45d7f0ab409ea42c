//! The scale-out shape end to end: `crm ingest` and `crm process` as separate processes joined by
//! a real Kafka-protocol broker (tansu, `CRM_TEST_KAFKA_BROKERS`), ClickHouse as the store
//! (`CRM_TEST_CLICKHOUSE_URL`), and `crm api` reading the scored visitor. scripts/test.sh starts
//! both servers; without them this test fails.

mod common;

use common::{eventually, get, start_subcommand, token, CHROME};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_and_process_as_separate_processes_over_kafka() {
    let brokers = std::env::var("CRM_TEST_KAFKA_BROKERS").expect("CRM_TEST_KAFKA_BROKERS is not set: scripts/test.sh starts tansu");
    let clickhouse = std::env::var("CRM_TEST_CLICKHOUSE_URL").expect("CRM_TEST_CLICKHOUSE_URL is not set: scripts/test.sh starts ClickHouse");
    let run = uuid::Uuid::new_v4().simple().to_string();
    let database = format!("kafka_e2e_{run}");
    let prefix = format!("e2e{run}");
    let store = ["--store", "clickhouse", "--clickhouse-url", clickhouse.as_str(), "--clickhouse-database", database.as_str()];
    let log = ["--event-log", "kafka", "--kafka-brokers", brokers.as_str(), "--kafka-topic-prefix", prefix.as_str(), "--kafka-partitions", "3"];
    let dirs: Vec<tempfile::TempDir> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();

    // The API bootstraps the admin user and the demo site in ClickHouse.
    let api = start_subcommand("api", dirs[0].path(), &store);
    let ingest_args: Vec<&str> = store.iter().chain(log.iter()).copied().chain(["--rate-limit-ip", "0"]).collect();
    let ingest = start_subcommand("ingest", dirs[1].path(), &ingest_args);
    let process_args: Vec<&str> = store.iter().chain(log.iter()).copied().collect();
    let _process = start_subcommand("process", dirs[2].path(), &process_args);

    let client = reqwest::Client::new();
    let events = json!({"events": [
        {"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "kafka-visitor", "url": "https://acme.example/pricing"},
        {"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "kafka-visitor", "url": "https://acme.example/contact"},
        {"v": 1, "type": "click", "site_id": "demo", "visitor_id": "kafka-visitor", "url": "https://acme.example/contact", "target": {"text": "Talk to sales"}},
        {"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "kafka-visitor"}
    ]});
    let response = client.post(format!("{}/v1/events", ingest.base)).header("user-agent", CHROME).body(events.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let reply: serde_json::Value = response.json().await.unwrap();
    assert_eq!((reply["accepted"].as_u64(), reply["rejected"].as_u64()), (Some(3), Some(1)));

    let token = token(&client, &api.base).await;
    let visitor = eventually("the scored visitor through Kafka", || async {
        let (status, body) = get(&client, format!("{}/api/v1/visitors/kafka-visitor?site_id=demo", api.base), &token).await;
        (status == 200 && body["data"]["events"] == 3).then(|| body["data"].clone())
    })
    .await;
    assert_eq!(visitor["intent_signals"]["pricing"], 1);
    assert_eq!(visitor["intent_signals"]["contact"], 1);
    assert!(visitor["scores"]["intent"].as_u64().unwrap() >= 50, "{visitor}");
    let letters = eventually("the dead letter through the dead-letter topic", || async {
        let (_, body) = get(&client, format!("{}/api/v1/dead-letters?site_id=demo", api.base), &token).await;
        (body["data"].as_array().map_or(0, Vec::len) == 1).then_some(body)
    })
    .await;
    assert_eq!(letters["data"][0]["code"], "missing_field");
    let (status, _) = get(&client, format!("{}/readyz", ingest.base), "").await;
    assert_eq!(status, 200);
}
