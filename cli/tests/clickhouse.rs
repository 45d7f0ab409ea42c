//! `crm up --store clickhouse` against real ClickHouse servers: every API endpoint served from
//! ClickHouse, and a fault test that kills ClickHouse under load and checks every acknowledged
//! event is stored exactly once after it comes back. Needs `CRM_TEST_CLICKHOUSE_URL` and the
//! server script (scripts/test.sh provides both); fails without them.

mod common;

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::{eventually, get, start, start_subcommand, token, CHROME};
use serde_json::{json, Value};

fn shared_url() -> String {
    std::env::var("CRM_TEST_CLICKHOUSE_URL").expect("CRM_TEST_CLICKHOUSE_URL is not set: scripts/test.sh starts ClickHouse and sets it")
}

fn clickhouse_args<'a>(url: &'a str, database: &'a str) -> Vec<&'a str> {
    vec!["--store", "clickhouse", "--clickhouse-url", url, "--clickhouse-database", database]
}

async fn sql(client: &reqwest::Client, url: &str, query: &str) -> String {
    let response = client.post(url).body(query.to_owned()).send().await.expect("clickhouse reachable");
    let status = response.status();
    let text = response.text().await.unwrap();
    assert!(status.is_success(), "{query}: {text}");
    text
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_endpoint_is_served_from_clickhouse() {
    let url = shared_url();
    let database = format!("e2e_{}", uuid::Uuid::new_v4().simple());
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &clickhouse_args(&url, &database));
    let base = server.base.clone();
    let client = reqwest::Client::new();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let events = json!([
        {"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "ch-visitor", "ts": now, "url": "https://acme.example/demo?utm_source=newsletter", "referrer": "https://news.example/"},
        {"v": 1, "type": "engagement", "site_id": "demo", "visitor_id": "ch-visitor", "ts": now + 30_000, "url": "https://acme.example/demo", "scroll_depth": 90, "engaged_ms": 30_000},
        {"v": 1, "type": "form_submit", "site_id": "demo", "visitor_id": "ch-visitor", "ts": now + 31_000, "url": "https://acme.example/demo", "form_id": "demo-request", "traits": {"email": "ada@acme.example", "company": "Acme"}},
        {"v": 1, "type": "engagement", "site_id": "demo", "visitor_id": "ch-visitor", "scroll_depth": 900, "engaged_ms": 1}
    ]);
    let response = client.post(format!("{base}/v1/events")).header("user-agent", CHROME).body(events.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let token = token(&client, &base).await;

    let visitor = eventually("the visitor in ClickHouse", || async {
        let (status, body) = get(&client, format!("{base}/api/v1/visitors/ch-visitor?site_id=demo"), &token).await;
        (status == 200 && body["data"]["events"] == 3).then(|| body["data"].clone())
    })
    .await;
    assert_eq!(visitor["intent_signals"]["demo"], 1);
    assert_eq!(visitor["intent_signals"]["form_submit"], 1);
    assert_eq!(visitor["traits"]["company"], "Acme");
    assert!(visitor["scores"]["intent"].as_u64().unwrap() >= 57);
    let (status, by_id) = get(&client, format!("{base}/api/v1/visitors/ch-visitor"), &token).await;
    assert_eq!((status, by_id["data"]["visitor_id"].as_str()), (200, Some("ch-visitor")));
    let (_, list) = get(&client, format!("{base}/api/v1/visitors?site_id=demo&sort=engagement"), &token).await;
    assert_eq!(list["data"][0]["visitor_id"], "ch-visitor");
    // Profiles are written before events (see ARCHITECTURE.md), so the timeline may trail by a moment.
    let timeline = eventually("the timeline", || async {
        let (_, body) = get(&client, format!("{base}/api/v1/visitors/ch-visitor/events?limit=2"), &token).await;
        (body["meta"]["has_more"] == true).then_some(body)
    })
    .await;
    assert_eq!(timeline["data"].as_array().unwrap().len(), 2);
    let cursor = timeline["meta"]["next_cursor"].as_str().expect("a second page");
    let (_, older) = get(&client, format!("{base}/api/v1/visitors/ch-visitor/events?limit=2&cursor={cursor}"), &token).await;
    assert_eq!(older["data"][0]["type"], "pageview");
    let (_, overview) = get(&client, format!("{base}/api/v1/analytics/overview?site_id=demo"), &token).await;
    let overview = &overview["data"]["overview"];
    assert_eq!((overview["pageviews"].as_u64(), overview["sessions"].as_u64(), overview["visitors"].as_u64()), (Some(1), Some(1), Some(1)));
    assert_eq!(overview["top_referrers"][0]["key"], "news.example");
    assert_eq!(overview["utm_sources"][0]["key"], "newsletter");
    let letters = eventually("the dead letter", || async {
        let (_, body) = get(&client, format!("{base}/api/v1/dead-letters?site_id=demo"), &token).await;
        (body["data"].as_array().map_or(0, Vec::len) == 1).then_some(body)
    })
    .await;
    assert_eq!(letters["data"][0]["code"], "invalid_value");
    let created = client
        .post(format!("{base}/api/v1/sites"))
        .bearer_auth(&token)
        .json(&json!({"site_id": "second", "name": "Second site"}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let (_, sites) = get(&client, format!("{base}/api/v1/sites"), &token).await;
    let ids: Vec<&str> = sites["data"].as_array().unwrap().iter().map(|s| s["site_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["demo", "second"]);
    // The rows really are in ClickHouse.
    let count = sql(&client, &url, &format!("SELECT count() FROM {database}.events")).await;
    assert_eq!(count.trim(), "3");

    // A separate `crm api` process serves the same data from ClickHouse.
    let api_dir = tempfile::tempdir().unwrap();
    let api = start_subcommand("api", api_dir.path(), &clickhouse_args(&url, &database));
    let (status, body) = get(&client, format!("{}/api/v1/visitors/ch-visitor?site_id=demo", api.base), &token).await;
    assert_eq!((status, body["data"]["events"].as_u64()), (200, Some(3)), "{body}");
}

struct OwnClickHouse {
    dir: PathBuf,
    url: String,
}

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scripts/clickhouse.sh")
}

impl OwnClickHouse {
    fn start(dir: &Path, ports: Option<(u16, u16)>) -> OwnClickHouse {
        let mut command = Command::new("bash");
        command.arg(script()).arg("start").arg(dir);
        if let Some((http, tcp)) = ports {
            command.env("CLICKHOUSE_HTTP_PORT", http.to_string()).env("CLICKHOUSE_TCP_PORT", tcp.to_string());
        }
        let output = command.output().expect("run scripts/clickhouse.sh");
        assert!(output.status.success(), "clickhouse did not start: {}", String::from_utf8_lossy(&output.stderr));
        OwnClickHouse { dir: dir.to_owned(), url: String::from_utf8(output.stdout).unwrap().trim().to_owned() }
    }

    fn kill(&self) {
        let pid = std::fs::read_to_string(self.dir.join("server.pid")).unwrap();
        let status = Command::new("kill").args(["-9", pid.trim()]).status().unwrap();
        assert!(status.success());
        std::fs::remove_file(self.dir.join("server.pid")).unwrap();
    }

    fn ports(&self) -> (u16, u16) {
        let http: u16 = self.url.rsplit(':').next().unwrap().parse().unwrap();
        let config = std::fs::read_to_string(self.dir.join("config.xml")).unwrap();
        let tcp = config.split("<tcp_port>").nth(1).unwrap().split('<').next().unwrap().parse().unwrap();
        (http, tcp)
    }
}

impl Drop for OwnClickHouse {
    fn drop(&mut self) {
        let _ = Command::new("bash").arg(script()).arg("stop").arg(&self.dir).status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_outage_under_load_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let clickhouse = OwnClickHouse::start(&dir.path().join("clickhouse"), None);
    let url = clickhouse.url.clone();
    let server = start(&dir.path().join("data"), &clickhouse_args(&url, "outage"));
    let base = server.base.clone();
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let acked: Arc<Mutex<Vec<String>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..3 {
        let (client, base, acked, stop) = (client.clone(), base.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let ids: Vec<String> = (0..5).map(|_| uuid::Uuid::new_v4().to_string()).collect();
                let events: Vec<Value> = ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": format!("out-{writer}-{i}"), "event_id": id, "url": "https://x.example/p"}))
                    .collect();
                if let Ok(response) = client.post(format!("{base}/v1/events")).header("user-agent", CHROME).body(json!(events).to_string()).send().await {
                    if response.status() == 202 {
                        acked.lock().unwrap().extend(ids);
                    }
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }));
    }
    eventually("load before the outage", || async { (acked.lock().unwrap().len() >= 300).then_some(()) }).await;
    let ports = clickhouse.ports();
    clickhouse.kill();
    let during_outage = acked.lock().unwrap().len();
    eventually("readiness to report the store outage", || async {
        let (status, _) = get(&client, format!("{base}/readyz"), "").await;
        (status == 503).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert!(acked.lock().unwrap().len() > during_outage, "the collector keeps acknowledging into the log during the outage");
    let restarted = OwnClickHouse::start(&dir.path().join("clickhouse"), Some(ports));
    tokio::time::sleep(Duration::from_secs(2)).await;
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let acked: HashSet<String> = acked.lock().unwrap().iter().cloned().collect();
    let sql_client = reqwest::Client::new();
    let stored = eventually("every acknowledged event in ClickHouse", || async {
        let text = sql(&sql_client, &restarted.url, "SELECT event_id FROM outage.events FORMAT TSV").await;
        let ids: Vec<String> = text.lines().map(str::to_owned).collect();
        let present: HashSet<&String> = ids.iter().collect();
        acked.iter().all(|id| present.contains(id)).then_some(ids)
    })
    .await;
    let unique: HashSet<&String> = stored.iter().collect();
    assert_eq!(unique.len(), stored.len(), "an event was stored twice");
    let token = token(&client, &base).await;
    let (_, profile) = get(&client, format!("{base}/api/v1/visitors/out-0-0?site_id=demo"), &token).await;
    let counted = profile["data"]["events"].as_u64().unwrap();
    let stored_for_visitor = sql(&sql_client, &restarted.url, "SELECT count() FROM outage.events WHERE visitor_id = 'out-0-0'").await;
    assert_eq!(counted.to_string(), stored_for_visitor.trim(), "the profile counts each stored event once");
    eprintln!("acknowledged {} events, {} during the outage window", acked.len(), acked.len() - during_outage);
}
