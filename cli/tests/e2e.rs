//! End-to-end tests of the real `crm` binary: beacons in, enriched and scored visitors out of
//! the API; acknowledged events survive SIGKILL exactly once; SIGTERM drains and exits cleanly.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

mod common;
use common::{eventually, get, start, token, CHROME};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn beacons_become_an_enriched_scored_visitor() {
    let dir = tempfile::tempdir().unwrap();
    let mmdb = dir.path().join("city.mmdb");
    std::fs::write(&mmdb, common::city_mmdb(maxminddb_writer::metadata::IpVersion::V4, &[("81.2.69.0/24", "DE", "Berlin")])).unwrap();
    let server = start(&dir.path().join("data"), &["--geoip-city", mmdb.to_str().unwrap(), "--trust-forwarded-for"]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let page = "https://www.example.com/pricing?utm_source=linkedin&utm_medium=paid_social&utm_campaign=q4";
    let events = json!({"events": [
        {"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "vis-e2e", "ts": now, "url": page, "referrer": "https://www.google.com/", "title": "Pricing"},
        {"v": 1, "type": "engagement", "site_id": "demo", "visitor_id": "vis-e2e", "ts": now + 45_000, "url": page, "scroll_depth": 80, "engaged_ms": 45_000},
        {"v": 1, "type": "click", "site_id": "demo", "visitor_id": "vis-e2e", "ts": now + 46_000, "url": page, "target": {"text": "Book a demo", "href": "https://www.example.com/demo", "selector": "a#cta", "outbound": false}}
    ]});
    let response = client
        .post(format!("{base}/v1/events"))
        .header("content-type", "text/plain")
        .header("user-agent", CHROME)
        .header("x-forwarded-for", "81.2.69.142")
        .body(events.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    assert_eq!(response.json::<Value>().await.unwrap(), json!({"accepted": 3, "rejected": 0}));

    let token = token(&client, base).await;
    let visitor = eventually("the visitor profile", || async {
        let (status, body) = get(&client, format!("{base}/api/v1/visitors/vis-e2e?site_id=demo"), &token).await;
        (status == 200 && body["data"]["events"] == 3).then(|| body["data"].clone())
    })
    .await;
    assert_eq!(visitor["pageviews"], 1);
    assert_eq!(visitor["visits"], 1);
    assert_eq!(visitor["time_spent_ms"], 45_000);
    assert_eq!(visitor["intent_signals"]["pricing"], 1);
    assert!(visitor["scores"]["intent"].as_u64().unwrap() >= 20, "{visitor}");
    assert!(visitor["scores"]["engagement"].as_u64().unwrap() > 20, "{visitor}");
    assert_eq!(visitor["device"]["browser"], "Chrome");
    assert_eq!(visitor["device"]["category"], "pc");
    assert_eq!(visitor["geo"]["country"], "DE");
    assert_eq!(visitor["geo"]["city"], "Berlin");
    assert_eq!(visitor["first_utm"]["source"], "linkedin");
    assert_eq!(visitor["first_referrer"], "google.com");
    assert_eq!(visitor["is_bot"], false);
    assert_eq!(visitor["last_session"]["max_scroll"], 80);

    let (_, timeline) = get(&client, format!("{base}/api/v1/visitors/vis-e2e/events"), &token).await;
    let items = timeline["data"].as_array().unwrap();
    assert_eq!(items.len(), 3);
    assert_eq!(items[0]["type"], "click");
    assert_eq!(items[2]["intent_signal"], "pricing");
    assert_eq!(items[2]["ip"], "81.2.69.0", "stored truncated");
    let sessions: HashSet<&str> = items.iter().map(|e| e["session_id"].as_str().unwrap()).collect();
    assert_eq!(sessions.len(), 1);

    let (_, listed) = get(&client, format!("{base}/api/v1/visitors?site_id=demo&sort=intent"), &token).await;
    assert_eq!(listed["data"][0]["visitor_id"], "vis-e2e");
    let (_, overview) = get(&client, format!("{base}/api/v1/analytics/overview?site_id=demo"), &token).await;
    assert_eq!(overview["data"]["overview"]["pageviews"], 1);
    assert_eq!(overview["data"]["overview"]["countries"][0]["key"], "DE");
    assert_eq!(overview["data"]["overview"]["bounce_rate"], 0.0);

    // A bot's visit is kept but out of the visitor metrics.
    let bot = json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "crawler-1", "url": "https://www.example.com/"});
    let response = client.post(format!("{base}/v1/events")).header("user-agent", "Googlebot/2.1 (+http://www.google.com/bot.html)").body(bot.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 202);
    eventually("the bot profile", || async {
        let (status, body) = get(&client, format!("{base}/api/v1/visitors/crawler-1?site_id=demo"), &token).await;
        (status == 200).then_some(body)
    })
    .await;
    let (_, overview) = get(&client, format!("{base}/api/v1/analytics/overview?site_id=demo"), &token).await;
    assert_eq!(overview["data"]["overview"]["visitors"], 1, "bots excluded");
    let (_, bots) = get(&client, format!("{base}/api/v1/visitors?site_id=demo&bots=only"), &token).await;
    assert_eq!(bots["data"][0]["visitor_id"], "crawler-1");

    // Tracker, health and metrics share the address.
    let tracker = client.get(format!("{base}/widgets/tracking.js")).send().await.unwrap();
    assert_eq!(tracker.status(), 200);
    assert!(tracker.text().await.unwrap().contains("sendBeacon"));
    assert_eq!(client.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("crm_ingest_events_accepted_total 4"), "{metrics}");
    assert!(metrics.contains("crm_processor_events_total"));
}

/// The embedded store's writes become durable at commit points after they are acknowledged:
/// the log is committed only that far, so the replay after a SIGKILL fills the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_exactly_once() {
    sigkill_mid_stream(&[]).await;
}

/// The same on the first design (one redb file, durable per write).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_sigkill_exactly_once_on_the_redb_store() {
    sigkill_mid_stream(&["--store", "redb"]).await;
}

async fn sigkill_mid_stream(store: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data, store);
    let client = reqwest::Client::builder().timeout(Duration::from_secs(5)).build().unwrap();
    let acked: Arc<Mutex<Vec<(String, String)>>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut writers = Vec::new();
    for writer in 0..4 {
        let (client, base, acked, stop) = (client.clone(), server.base.clone(), acked.clone(), stop.clone());
        writers.push(tokio::spawn(async move {
            let mut batch_no = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) && batch_no < 2_000 {
                batch_no += 1;
                let events: Vec<(String, String, Value)> = (0..10)
                    .map(|i| {
                        let visitor = format!("crash-v{}", (writer * 7 + i) % 12);
                        let id = uuid::Uuid::new_v4().to_string();
                        let event = json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": visitor, "event_id": id, "url": format!("https://x.example/p{i}")});
                        (visitor, id, event)
                    })
                    .collect();
                let body = json!({"events": events.iter().map(|e| e.2.clone()).collect::<Vec<_>>()});
                match client.post(format!("{base}/v1/events")).header("user-agent", CHROME).body(body.to_string()).send().await {
                    Ok(response) if response.status() == 202 => {
                        acked.lock().unwrap().extend(events.into_iter().map(|(v, id, _)| (v, id)));
                    }
                    Ok(_) | Err(_) => {}
                }
            }
        }));
    }
    // Let traffic flow, then kill the process mid-stream.
    eventually("some acknowledged events", || async { (acked.lock().unwrap().len() >= 2_000).then_some(()) }).await;
    server.child.kill().expect("SIGKILL");
    server.child.wait().unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    for writer in writers {
        writer.await.unwrap();
    }
    let acked = acked.lock().unwrap().clone();
    assert!(acked.len() >= 2_000);
    eprintln!("acknowledged before SIGKILL: {} events", acked.len());

    let server = start(&data, store);
    let base = server.base.clone();
    let token = token(&client, &base).await;
    let mut acked_by_visitor: HashMap<String, HashSet<String>> = HashMap::new();
    for (visitor, id) in &acked {
        acked_by_visitor.entry(visitor.clone()).or_default().insert(id.clone());
    }
    for (visitor, expected) in &acked_by_visitor {
        let stored = eventually("every acknowledged event to be stored", || async {
            let mut ids = Vec::new();
            let mut cursor: Option<String> = None;
            loop {
                let url = match &cursor {
                    Some(c) => format!("{base}/api/v1/visitors/{visitor}/events?site_id=demo&limit=500&cursor={c}"),
                    None => format!("{base}/api/v1/visitors/{visitor}/events?site_id=demo&limit=500"),
                };
                let (status, page) = get(&client, url, &token).await;
                if status != 200 {
                    return None;
                }
                ids.extend(page["data"].as_array().unwrap().iter().map(|e| e["event_id"].as_str().unwrap().to_owned()));
                match page["meta"]["next_cursor"].as_str() {
                    Some(next) => cursor = Some(next.to_owned()),
                    None => break,
                }
            }
            let present: HashSet<&String> = ids.iter().collect();
            expected.iter().all(|id| present.contains(id)).then_some(ids)
        })
        .await;
        let unique: HashSet<&String> = stored.iter().collect();
        assert_eq!(unique.len(), stored.len(), "{visitor}: an event was stored twice");
        let (_, profile) = get(&client, format!("{base}/api/v1/visitors/{visitor}?site_id=demo"), &token).await;
        assert_eq!(profile["data"]["events"].as_u64().unwrap() as usize, stored.len(), "{visitor}: profile counts each event once");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_and_exits_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let mut server = start(&data, &[]);
    let client = reqwest::Client::new();
    let event = json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "term-1", "url": "https://x.example/"});
    assert_eq!(client.post(format!("{}/v1/events", server.base)).body(event.to_string()).send().await.unwrap().status(), 202);
    let status = Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "crm up did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    let server = start(&data, &[]);
    let token = token(&client, &server.base).await;
    eventually("the event after restart", || async {
        let (status, _) = get(&client, format!("{}/api/v1/visitors/term-1?site_id=demo", server.base), &token).await;
        (status == 200).then_some(())
    })
    .await;
}

/// A webhook receiver on port 0 recording (signature header, body) of every POST.
async fn webhook_receiver() -> (String, Arc<Mutex<Vec<(String, Value)>>>) {
    let seen: Arc<Mutex<Vec<(String, Value)>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |headers: axum::http::HeaderMap, body: axum::body::Bytes| {
            let record = record.clone();
            async move {
                let signature = headers.get("x-crm-signature").and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
                record.lock().unwrap().push((signature, serde_json::from_slice(&body).unwrap_or(Value::Null)));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (url, seen)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_form_submission_becomes_a_scored_lead_and_fires_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &[]);
    let client = reqwest::Client::new();
    let base = &server.base;
    let token = token(&client, base).await;
    let (hook, seen) = webhook_receiver().await;
    let rule = json!({"site_id": "demo", "name": "New lead", "webhook_url": hook, "condition": {"type": "score_crossed", "threshold": 5}});
    let created: Value = client.post(format!("{base}/api/v1/alert-rules")).bearer_auth(&token).json(&rule).send().await.unwrap().json().await.unwrap();
    assert_eq!(created["success"], true, "{created}");

    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let view = json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "vis-lead", "ts": now, "url": "https://www.example.com/pricing"});
    let response = client.post(format!("{base}/v1/events")).header("user-agent", CHROME).body(view.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 202);
    // The demo site's lead form exists from the first start; submit it like forms-embed.js does.
    let definition: Value = client.get(format!("{base}/v1/forms/demo/demo-request?visitor_id=vis-lead")).send().await.unwrap().json().await.unwrap();
    assert_eq!(definition["form_id"], "demo-request");
    let submission = json!({"visitor_id": "vis-lead", "url": "https://www.example.com/demo", "hp": "",
        "values": {"email": "ada@acme.example", "name": "Ada", "company": "Acme", "team_size": "51-200", "newsletter": true}});
    let response = client.post(format!("{base}/v1/forms/demo/demo-request/submit")).header("user-agent", CHROME).body(submission.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 202, "{}", response.text().await.unwrap());

    let lead = eventually("the lead", || async {
        let (status, body) = get(&client, format!("{base}/api/v1/leads?site_id=demo"), &token).await;
        (status == 200 && body["data"].as_array().is_some_and(|l| !l.is_empty())).then(|| body["data"][0].clone())
    })
    .await;
    assert_eq!((lead["email"].as_str(), lead["company"].as_str()), (Some("ada@acme.example"), Some("Acme")));
    assert_eq!(lead["visitor_ids"], json!(["vis-lead"]));
    assert_eq!(lead["activity"]["signals"]["pricing"], 1, "the pre-form history is the lead's");
    assert!(lead["score"].as_u64().unwrap() >= 5, "{lead}");
    assert_eq!(lead["traits"]["source"], "demo-request-form", "hidden field");

    let delivered = eventually("the alert webhook", || async { seen.lock().unwrap().first().cloned() }).await;
    assert!(delivered.0.starts_with("sha256="));
    assert_eq!(delivered.1["lead"]["email"], "ada@acme.example");
    let alerts = eventually("the delivered alert", || async {
        let (_, body) = get(&client, format!("{base}/api/v1/alerts?site_id=demo"), &token).await;
        (body["data"][0]["status"] == "delivered").then_some(body)
    })
    .await;
    assert_eq!(alerts["data"][0]["attempts"][0]["status_code"], 200);
    let (_, funnel) = get(&client, format!("{base}/api/v1/analytics/forms?site_id=demo"), &token).await;
    assert_eq!(funnel["data"]["items"][0]["submissions"], 1, "{funnel}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_import_reports_bad_rows_by_line_and_imports_good_files_whole() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(start(&data, &[])); // first start: creates the demo site; then the server is gone
    let import = |file: &Path| Command::new(env!("CARGO_BIN_EXE_crm")).args(["import", "tickets"]).arg(file).arg("--data-dir").arg(&data).output().unwrap();
    let bad = dir.path().join("bad.csv");
    std::fs::write(&bad, "ticket_id,account_id,opened_at,priority\nt1,acme,2026-01-01,high\nt2,acme,never,high\n").unwrap();
    let output = import(&bad);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.csv:3: opened_at"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    let good = dir.path().join("good.csv");
    std::fs::write(&good, "ticket_id,account_id,opened_at,priority,escalated\nt1,acme,2026-01-01,high,yes\nt2,acme,2026-01-02,low,no\n").unwrap();
    let output = import(&good);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("imported 2 tickets rows into site demo"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_import_kb_upserts_a_markdown_folder_that_the_help_centre_serves() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(start(&data, &[]));
    let docs = dir.path().join("docs");
    std::fs::create_dir_all(docs.join("security")).unwrap();
    std::fs::write(docs.join("security/sso.md"), "---\ntitle: Single sign-on with SAML\ntags: [sso]\n---\nConnect Okta to sign in.\n").unwrap();
    std::fs::write(docs.join("pricing.md"), "# Pricing\n\nPer seat, monthly or yearly.\n").unwrap();
    let import = || Command::new(env!("CARGO_BIN_EXE_crm")).args(["import", "kb"]).arg(&docs).arg("--data-dir").arg(&data).output().unwrap();
    let stdout = |o: &std::process::Output| String::from_utf8_lossy(&o.stdout).into_owned();
    let first = import();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    assert!(stdout(&first).contains("imported 2 articles into site demo: 2 new, 0 changed, 0 unchanged"), "{}", stdout(&first));
    let again = import();
    assert!(stdout(&again).contains("0 new, 0 changed, 2 unchanged"), "{}", stdout(&again));
    std::fs::write(docs.join("pricing.md"), "# Pricing\n\nPer seat; volume discounts from 50 seats.\n").unwrap();
    std::fs::write(docs.join("broken.md"), "---\ntitel: typo\n---\n").unwrap();
    let refused = import();
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("broken.md: front matter line 2: unknown key `titel`") && stderr.contains("nothing was imported"), "{stderr}");
    std::fs::remove_file(docs.join("broken.md")).unwrap();
    assert!(stdout(&import()).contains("0 new, 1 changed, 1 unchanged"));

    let server = start(&data, &[]);
    let client = reqwest::Client::new();
    let page = client.get(format!("{}/help/demo/a/sso", server.base)).header("user-agent", CHROME).send().await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("<h1>Single sign-on with SAML</h1>"));
    let found: Value = client.get(format!("{}/v1/kb/demo/search?q=volume+discounts", server.base)).send().await.unwrap().json().await.unwrap();
    assert_eq!(found["data"]["hits"][0]["url"], "/help/demo/a/pricing", "{found}");
    let token = token(&client, &server.base).await;
    let (_, articles) = get(&client, format!("{}/api/v1/kb/articles?site_id=demo", server.base), &token).await;
    let pricing = articles["data"].as_array().unwrap().iter().find(|a| a["slug"] == "pricing").unwrap().clone();
    assert_eq!((pricing["version"].as_u64(), pricing["updated_by"].as_str(), pricing["category"].is_null()), (Some(2), Some("import"), true));
}

fn parquet_file(path: &Path, columns: Vec<(&str, datafusion::arrow::array::ArrayRef)>) {
    use datafusion::arrow::datatypes::{Field, Schema};
    let schema = Arc::new(Schema::new(columns.iter().map(|(name, array)| Field::new(*name, array.data_type().clone(), true)).collect::<Vec<_>>()));
    let batch = datafusion::arrow::array::RecordBatch::try_new(schema.clone(), columns.into_iter().map(|(_, a)| a).collect()).unwrap();
    let mut writer = datafusion::parquet::arrow::ArrowWriter::try_new(std::fs::File::create(path).unwrap(), schema, None).unwrap();
    writer.write(&batch).unwrap();
    writer.close().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crm_import_reads_parquet_with_the_same_row_checks() {
    use datafusion::arrow::array::{Date32Array, Float64Array, StringArray};
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(start(&data, &[]));
    let import = |file: &Path| Command::new(env!("CARGO_BIN_EXE_crm")).args(["import", "invoices"]).arg(file).arg("--data-dir").arg(&data).output().unwrap();
    let invoices = |status: &str| -> Vec<(&str, datafusion::arrow::array::ArrayRef)> {
        vec![
            ("invoice_id", Arc::new(StringArray::from(vec!["i1", "i2"]))),
            ("account_id", Arc::new(StringArray::from(vec!["acme", "acme"]))),
            ("issued_at", Arc::new(Date32Array::from(vec![20_454, 20_485]))),
            ("amount", Arc::new(Float64Array::from(vec![100.0, 100.0]))),
            ("status", Arc::new(StringArray::from(vec!["paid".to_owned(), status.to_owned()]))),
            ("kind", Arc::new(StringArray::from(vec!["new", "renewal"]))),
        ]
    };
    let bad = dir.path().join("bad.parquet");
    parquet_file(&bad, invoices("overdue"));
    let output = import(&bad);
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("bad.parquet:row 2: status: must be one of"), "{stderr}");
    assert!(stderr.contains("nothing was imported"), "{stderr}");
    let wrong_columns = dir.path().join("wrong.parquet");
    parquet_file(&wrong_columns, vec![("id", Arc::new(StringArray::from(vec!["x"])) as _)]);
    let stderr = String::from_utf8_lossy(&import(&wrong_columns).stderr).to_string();
    assert!(stderr.contains("header does not match the invoices columns"), "{stderr}");
    let good = dir.path().join("good.parquet");
    parquet_file(&good, invoices("late"));
    let output = import(&good);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stdout).contains("imported 2 invoices rows into site demo"));
}

/// `crm demo accounts` loads simulated customers and runs health and churn; `crm up` then shows
/// them on the executive dashboard with churn figures.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn demo_accounts_feed_health_churn_and_the_dashboard() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let output = Command::new(env!("CARGO_BIN_EXE_crm"))
        .args(["demo", "accounts", "--accounts", "150", "--days", "365", "--data-dir"])
        .arg(&data)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&output.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[0]["accounts"], 150, "{lines:?}");
    let churn = &lines[2];
    assert_eq!(churn["status"], "scored", "{churn}");
    assert!(churn["evaluation"]["auc"].as_f64().is_some(), "{churn}");

    let server = start(&data, &["--health-interval-mins", "0"]);
    let client = reqwest::Client::new();
    let admin = token(&client, &server.base).await;
    let (status, dashboard) = get(&client, format!("{}/api/v1/health/dashboard?site_id=demo", server.base), &admin).await;
    assert_eq!(status, 200, "{dashboard}");
    let scored = lines[1]["health_scored"].as_u64().unwrap();
    assert_eq!(dashboard["data"]["total_accounts"].as_u64(), Some(scored));
    assert!(dashboard["data"]["avg_churn_risk"].as_f64().is_some_and(|p| p > 0.0 && p < 1.0), "{dashboard}");
    assert!(dashboard["data"]["expected_churn_mrr"].as_f64().is_some_and(|m| m > 0.0), "{dashboard}");
    let (_, worst) = get(&client, format!("{}/api/v1/health?site_id=demo", server.base), &admin).await;
    let first = worst["data"][0]["account_id"].as_str().expect("accounts listed worst first").to_owned();
    let (status, account) = get(&client, format!("{}/api/v1/accounts/{first}/health?site_id=demo", server.base), &admin).await;
    assert_eq!(status, 200, "{account}");
    assert!(account["data"]["churn_probability"].is_number() && account["data"]["churn_drivers"].is_array(), "{account}");
}

/// A binary built without the `kafka` feature (the default) names the build option at once.
#[cfg(not(feature = "kafka"))]
#[test]
fn kafka_without_the_kafka_build_exits_2_naming_the_fix() {
    let dir = tempfile::tempdir().unwrap();
    for subcommand in ["up", "ingest", "process"] {
        let output = Command::new(env!("CARGO_BIN_EXE_crm"))
            .args([subcommand, "--event-log", "kafka", "--data-dir"])
            .arg(dir.path())
            .env("CRM_ADMIN_PASSWORD", common::PASSWORD)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{subcommand}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
        assert!(stderr.contains("--features kafka"), "{stderr}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing was created before refusing");
}

/// When the log's disk budget makes the collector refuse beacons, `/readyz` says not ready (a
/// load balancer stops sending traffic) and names the reason, and stays so while small beacons
/// still fit. `crm ingest` alone: no processor consumes, so nothing frees the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_log_budget_makes_the_service_not_ready() {
    let dir = tempfile::tempdir().unwrap();
    drop(start(&dir.path().join("data"), &[])); // first start: creates the demo site
    let server = common::start_subcommand("ingest", &dir.path().join("data"), &["--rate-limit-ip", "0", "--log-max-bytes", "65536", "--log-segment-bytes", "16384"]);
    let client = reqwest::Client::new();
    let base = &server.base;
    assert_eq!(client.get(format!("{base}/readyz")).send().await.unwrap().status(), 200);
    let title = "t".repeat(250);
    let mut refused = None;
    for i in 0..400 {
        let events: Vec<Value> = (0..8).map(|j| json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": format!("fill-{i}-{j}"), "url": "https://x.example/", "title": title})).collect();
        let response = client.post(format!("{base}/v1/events")).body(json!({ "events": events }).to_string()).send().await.unwrap();
        if response.status() == 503 {
            refused = Some(response.json::<Value>().await.unwrap());
            break;
        }
        assert_eq!(response.status(), 202);
    }
    let refused = refused.expect("the budget refuses beacons before 400 requests");
    assert_eq!(refused["error"]["code"], "log_unavailable", "{refused}");
    for _ in 0..3 {
        let ready = client.get(format!("{base}/readyz")).send().await.unwrap();
        assert_eq!(ready.status(), 503);
        let body: Value = ready.json().await.unwrap();
        assert!(body["problems"]["event_log"].as_str().unwrap_or("").contains("disk budget"), "{body}");
        // A small beacon may still fit under the budget; readiness does not flip with it.
        let small = client.post(format!("{base}/v1/events")).body(json!({"v": 1, "type": "pageview", "site_id": "demo", "url": "https://x.example/"}).to_string()).send().await.unwrap();
        assert!(matches!(small.status().as_u16(), 202 | 503), "{}", small.status());
    }
}

/// Upgrading a data directory: the embedded store converts what its first design (redb)
/// wrote (the event is served afterwards), and from then on the redb store refuses the
/// directory, whose events now live in columnar parts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_redb_data_dir_converts_to_the_embedded_store_and_the_redb_design_then_refuses_it() {
    let migrate = |dir: &Path, store: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_crm"))
            .args(["migrate", "--store", store, "--data-dir"])
            .arg(dir)
            .env("CRM_ADMIN_PASSWORD", common::PASSWORD)
            .output()
            .unwrap();
        (output.status.success(), String::from_utf8_lossy(&output.stderr).into_owned())
    };
    let dir = tempfile::tempdir().unwrap();
    let redb_dir = dir.path().join("redb");
    let server = start(&redb_dir, &["--store", "redb"]);
    let client = reqwest::Client::new();
    let event = json!({"events": [{"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "v-guard", "url": "https://x.example/"}]});
    let response = client.post(format!("{}/v1/events", server.base)).header("user-agent", CHROME).body(event.to_string()).send().await.unwrap();
    assert_eq!(response.status(), 202);
    let token = token(&client, &server.base).await;
    let base = server.base.clone();
    eventually("the event to be stored", || async {
        let (_, page) = get(&client, format!("{base}/api/v1/visitors/v-guard/events?site_id=demo"), &token).await;
        (page["data"].as_array().is_some_and(|a| !a.is_empty())).then_some(())
    })
    .await;
    drop(server);
    // The default store converts the directory at its first start.
    let server = start(&redb_dir, &[]);
    let token = common::token(&client, &server.base).await;
    let (_, page) = get(&client, format!("{}/api/v1/visitors/v-guard/events?site_id=demo", server.base), &token).await;
    assert_eq!(page["data"].as_array().map(Vec::len), Some(1), "the converted event is served: {page}");
    drop(server);
    let (ok, stderr) = migrate(&redb_dir, "redb");
    assert!(!ok && stderr.contains("holds the embedded store's columnar parts"), "{stderr}");
    let (ok, stderr) = migrate(&redb_dir, "embedded");
    assert!(ok, "{stderr}");

    let fresh_dir = dir.path().join("fresh");
    let (ok, stderr) = migrate(&fresh_dir, "embedded");
    assert!(ok, "{stderr}");
    let (ok, stderr) = migrate(&fresh_dir, "redb");
    assert!(!ok && stderr.contains("holds the embedded store's columnar parts"), "{stderr}");
}

/// Printable-ASCII user agents of a corpus of crm-bots (`shared/bots/tests/corpora`): the first
/// `n` not in `seen` (which takes them), skipping `#` header lines and a weight column.
fn corpus(name: &str, n: usize, seen: &mut HashSet<String>) -> Vec<String> {
    use std::io::Read as _;
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/bots/tests/corpora").join(name);
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&path).unwrap()).read_to_string(&mut text).unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| l.rsplit('\t').next().unwrap_or(l).trim().to_owned())
        .filter(|ua| !ua.is_empty() && ua.bytes().all(|b| (0x20..0x7f).contains(&b)) && seen.insert(ua.clone()))
        .take(n)
        .collect()
}

/// One request of the mixed traffic: its user agent and its one event.
type Request = (String, Value);

/// Crawlers and browsers, cookieless, a pageview and an engagement each; and visitors with an
/// id of their own whose middle event came with a crawler's agent (a second session follows).
fn mixed_traffic(base: i64) -> Vec<Request> {
    let seen = &mut HashSet::new();
    let crawlers = corpus("bots-insample.txt.gz", 150, seen);
    let browsers = [corpus("browsers-top.txt.gz", 100, seen), corpus("browsers.txt.gz", 50, seen)].concat();
    let mut out = Vec::new();
    for (i, ua) in crawlers.iter().chain(&browsers).enumerate() {
        let ts = base + i as i64 * 100;
        out.push((ua.clone(), json!({"v": 1, "type": "pageview", "site_id": "demo", "ts": ts, "url": format!("https://www.example.com/p{}", i % 7)})));
        out.push((ua.clone(), json!({"v": 1, "type": "engagement", "site_id": "demo", "ts": ts + 5_000, "url": format!("https://www.example.com/p{}", i % 7), "scroll_depth": 50, "engaged_ms": 5_000})));
    }
    for i in 0..20 {
        let (visitor, browser, crawler) = (format!("mixed-{i}"), &browsers[i], &crawlers[i]);
        let event = |kind: &str, ts: i64| json!({"v": 1, "type": kind, "site_id": "demo", "visitor_id": visitor, "ts": ts, "url": "https://www.example.com/pricing"});
        out.push((browser.clone(), event("pageview", base + 1_000)));
        let mut ping = event("custom", base + 61_000);
        ping["name"] = json!("ping");
        out.push((crawler.clone(), ping));
        out.push((browser.clone(), event("pageview", base + 41 * 60_000)));
    }
    out
}

/// Sends every request, `workers` at a time, pausing `pause` after each; a 429 is retried after
/// its Retry-After. Returns how many 429s were answered.
async fn send_all(base: &str, traffic: &[Request], workers: usize, pause: Duration) -> usize {
    let queue = Arc::new(Mutex::new(traffic.to_vec().into_iter()));
    let limited = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let (queue, limited, url, client) = (queue.clone(), limited.clone(), format!("{base}/v1/events"), reqwest::Client::new());
        tasks.push(tokio::spawn(async move {
            loop {
                let Some((ua, event)) = queue.lock().unwrap().next() else { return };
                loop {
                    let response = client.post(&url).header("user-agent", &ua).body(event.to_string()).send().await.unwrap();
                    if response.status() != 429 {
                        assert_eq!(response.status(), 202, "{ua}: {}", response.text().await.unwrap());
                        break;
                    }
                    limited.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let wait = response.headers().get("retry-after").and_then(|v| v.to_str().ok()?.parse::<u64>().ok()).expect("a 429 says when to retry");
                    tokio::time::sleep(Duration::from_secs(wait)).await;
                }
                tokio::time::sleep(pause).await;
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    limited.load(std::sync::atomic::Ordering::Relaxed)
}

/// Every visitor of the demo site in one list (`bots=exclude` or `bots=only`), paged to the end.
async fn visitor_ids(client: &reqwest::Client, base: &str, token: &str, bots: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut cursor = String::new();
    loop {
        let (status, page) = get(client, format!("{base}/api/v1/visitors?site_id=demo&bots={bots}&limit=100{cursor}"), token).await;
        assert_eq!(status, 200, "{page}");
        ids.extend(page["data"].as_array().unwrap().iter().map(|v| v["visitor_id"].as_str().unwrap().to_owned()));
        match page["meta"]["next_cursor"].as_str() {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return ids,
        }
    }
}

/// Acceptance 6 of issue 19: the same mixed bot and browser traffic sent slowly, in a burst, and
/// in a burst against the address rate limit (a sender that honours 429 and Retry-After) ends in
/// the same figures, and in each run the overview counts exactly the human profiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn same_traffic_with_and_without_pauses_counts_the_same() {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let traffic = mixed_traffic(now - 2 * 3_600_000);
    let runs: [(&str, &[&str], usize, u64); 3] = [
        ("paced", &[], 1, 10),
        ("burst", &[], 16, 0),
        ("rate-limited burst", &["--rate-limit-ip", "100"], 16, 0),
    ];
    let mut results = Vec::new();
    for (name, flags, workers, pause_ms) in runs {
        let dir = tempfile::tempdir().unwrap();
        let server = start(&dir.path().join("data"), flags);
        let (client, base) = (reqwest::Client::new(), server.base.clone());
        let limited = send_all(&base, &traffic, workers, Duration::from_millis(pause_ms)).await;
        if name == "rate-limited burst" {
            assert!(limited > 0, "the burst met the address limit, so the run proves the retries");
        }
        let expected = format!("crm_processor_events_total {}", traffic.len());
        eventually("every event processed", || async {
            let metrics = client.get(format!("{base}/metrics")).send().await.unwrap().text().await.unwrap();
            metrics.lines().any(|l| l == expected).then_some(())
        })
        .await;
        let token = token(&client, &base).await;
        let (humans, bots) = (visitor_ids(&client, &base, &token, "exclude").await, visitor_ids(&client, &base, &token, "only").await);
        assert_eq!(humans.len() + bots.len(), 150 + 150 + 20, "{name}: one profile per agent and per mixed visitor");
        assert!(humans.iter().all(|id| !id.starts_with("mixed-")), "{name}: a visitor with a crawler's event is a bot");
        let (_, overview) = get(&client, format!("{base}/api/v1/analytics/overview?site_id=demo&limit=20"), &token).await;
        let overview = overview["data"]["overview"].clone();
        assert_eq!(overview["visitors"].as_u64().unwrap() as usize, humans.len(), "{name}: the overview counts the human profiles");
        let figures = json!({
            "humans": humans.len(), "bots": bots.len(), "visitors": overview["visitors"], "sessions": overview["sessions"],
            "pageviews": overview["pageviews"], "bounce_rate": overview["bounce_rate"], "browsers": overview["browsers"], "pages": overview["top_pages"],
        });
        eprintln!("{name}: {figures} ({limited} answers 429)");
        results.push((name, figures));
    }
    for (name, figures) in &results[1..] {
        assert_eq!(figures, &results[0].1, "{name} against {}", results[0].0);
    }
}

/// Acceptance 3 of issue 19 over HTTP on the default store: analysts' SQL sees one site's rows;
/// another site's rows, system tables, files and writes are out of reach; a slow query is cut at
/// its limit; every refusal is typed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analysts_sql_reads_one_site_and_nothing_else() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(&dir.path().join("data"), &[]);
    let (client, base) = (reqwest::Client::new(), server.base.clone());
    let token = token(&client, &base).await;
    let created = client.post(format!("{base}/api/v1/sites")).bearer_auth(&token).json(&json!({"site_id": "other", "name": "Other"})).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let mut events = Vec::new();
    for (site, visitors, path) in [("demo", 3, "/pricing"), ("other", 2, "/other-secret")] {
        for v in 0..visitors {
            events.push(json!({"v": 1, "type": "pageview", "site_id": site, "visitor_id": format!("{site}-{v}"), "ts": now - 60_000 + v, "url": format!("https://www.example.com{path}")}));
        }
    }
    let sent = client.post(format!("{base}/v1/events")).header("user-agent", CHROME).body(json!({"events": events}).to_string()).send().await.unwrap();
    assert_eq!(sent.status(), 202);
    let query = |body: Value| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            let response = client.post(format!("{base}/api/v1/query")).bearer_auth(&token).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let counted = eventually("the events in SQL", || async {
        let (status, body) = query(json!({"site_id": "demo", "sql": "SELECT count(DISTINCT visitor_id) AS visitors, min(path) AS path FROM events"})).await;
        assert_eq!(status, 200, "{body}");
        (body["data"]["rows"][0][0] == 3).then_some(body)
    })
    .await;
    assert_eq!(counted["data"]["rows"][0][1], "/pricing");
    assert_eq!(counted["data"]["columns"][0]["name"], "visitors");
    let (_, all) = query(json!({"site_id": "demo", "sql": "SELECT * FROM events UNION ALL SELECT * FROM events"})).await;
    assert!(!all.to_string().contains("other-secret"), "another site's rows never appear: {all}");

    for (sql, code) in [
        ("SELECT path FROM events WHERE site_id = 'other'", "sql_invalid"),
        ("SELECT path FROM events UNION ALL SELECT name FROM system.tables", "sql_not_allowed"),
        ("SELECT * FROM (SELECT * FROM system.users) u", "sql_not_allowed"),
        ("SELECT * FROM default.events", "sql_not_allowed"),
        ("SELECT path /* hidden */ FROM events; DROP TABLE events", "sql_not_allowed"),
        ("SELECT * FROM file('/etc/passwd')", "sql_not_allowed"),
        ("SELECT * FROM url('http://169.254.169.254/latest/meta-data/', 'CSV')", "sql_not_allowed"),
        ("INSERT INTO events VALUES ('x')", "sql_not_allowed"),
        ("WITH events AS (SELECT * FROM leads) SELECT * FROM events", "sql_not_allowed"),
        ("SELECT nonsense FROM events", "sql_invalid"),
        ("SELEKT 1", "sql_invalid"),
    ] {
        let (status, body) = query(json!({"site_id": "demo", "sql": sql})).await;
        assert_eq!((status, body["error"]["code"].as_str()), (422, Some(code)), "{sql}: {body}");
    }
    let slow = "SELECT count(*) FROM events a, events b, events c, events d, events e, events f, events g, events h, events i, events j, events k, events l, events m, events n";
    let (status, body) = query(json!({"site_id": "demo", "sql": slow, "timeout_ms": 200})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("sql_timeout")), "{body}");
    let (status, body) = query(json!({"site_id": "demo", "sql": format!("SELECT {}", "1 + ".repeat(6_000))})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (422, Some("sql_too_large")));
    for (bad, code) in [
        (json!({"site_id": 5, "sql": "SELECT 1"}), "malformed_json"),
        (json!({"site_id": "demo"}), "malformed_json"),
        (json!({"site_id": "demo", "sql": "SELECT 1", "database": "system"}), "malformed_json"),
        (json!({"site_id": "demo", "sql": "SELECT 1", "limit": 0}), "invalid_parameter"),
        (json!({"site_id": "demo", "sql": "SELECT 1", "timeout_ms": 3_600_000}), "invalid_parameter"),
    ] {
        let (status, body) = query(bad.clone()).await;
        assert_eq!((status, body["error"]["code"].as_str()), (400, Some(code)), "{bad}: {body}");
    }
    let (status, _) = query(json!({"site_id": "nowhere", "sql": "SELECT 1"})).await;
    assert_eq!(status, 404);
    let capped = query(json!({"site_id": "other", "sql": "SELECT visitor_id FROM events ORDER BY visitor_id", "limit": 1})).await.1;
    assert_eq!((capped["data"]["rows"].clone(), capped["data"]["truncated"].clone()), (json!([["other-0"]]), json!(true)));

    // `crm query` on the same data directory, the server stopped (SIGTERM: it flushes the
    // store on the way out): the same guard and walls.
    let mut server = server;
    assert!(Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap().success());
    assert!(server.child.wait().unwrap().success());
    let crm = |args: &[&str]| Command::new(env!("CARGO_BIN_EXE_crm")).arg("query").arg("--data-dir").arg(dir.path().join("data")).args(args).output().unwrap();
    let csv = crm(&["--format", "csv", "SELECT count(DISTINCT visitor_id) AS visitors, min(path) AS path FROM events"]);
    assert_eq!(String::from_utf8_lossy(&csv.stdout), "visitors,path\n3,/pricing\n", "{}", String::from_utf8_lossy(&csv.stderr));
    let json = crm(&["--site", "other", "--format", "json", "--limit", "1", "SELECT visitor_id FROM events ORDER BY visitor_id"]);
    let json: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!((json["rows"].clone(), json["truncated"].clone()), (json!([["other-0"]]), json!(true)));
    for (args, expected) in [
        (vec!["SELECT name FROM system.tables"], "not allowed"),
        (vec!["SELECT * FROM file('/etc/passwd')"], "not allowed"),
        (vec!["SELEKT 1"], "invalid SQL"),
        (vec!["--site", "nowhere", "SELECT 1"], "does not exist"),
        (vec!["--limit", "0", "SELECT 1"], "--limit"),
    ] {
        let output = crm(&args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(!output.status.success() && stderr.contains(expected), "{args:?}: {stderr}");
        assert!(output.stdout.is_empty(), "{args:?}: nothing printed");
    }
}
