//! Data-subject rights end to end on the real `crm` binary with the default embedded store
//! (issue 19, acceptance 4): a lead with two devices is exported, then erased; afterwards no
//! endpoint, export or SQL query shows any of its events or personal fields and the overview
//! drops by exactly its events; a reprocessing of the whole log from offset 0 by a new consumer
//! group brings nothing back, and neither does recomputing the daily rollups. A site's own
//! retention (`crm batch retention`) drops its old days and leaves other sites alone.

mod common;

use std::process::Command;
use std::time::{Duration, Instant};

use common::{eventually, get, start, start_subcommand, token, Server, CHROME};
use serde_json::{json, Value};

const EMAIL: &str = "ada@acme.example";

/// SIGTERM and wait for a clean exit (the store flushes; `Drop` would SIGKILL).
async fn stop(mut server: Server) {
    assert!(Command::new("kill").args(["-TERM", &server.child.id().to_string()]).status().unwrap().success());
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            assert!(exit.success(), "exit status {exit:?}");
            return;
        }
        assert!(Instant::now() < deadline, "did not exit after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Overview figures (visitors, sessions, pageviews) of the last two hours.
async fn overview(client: &reqwest::Client, base: &str, token: &str) -> (u64, u64, u64) {
    let from = now_ms() - 7_200_000;
    let (status, body) = get(client, format!("{base}/api/v1/analytics/overview?site_id=demo&from={from}&to={}", now_ms() + 60_000), token).await;
    assert_eq!(status, 200, "{body}");
    let d = &body["data"]["overview"];
    (d["visitors"].as_u64().unwrap(), d["sessions"].as_u64().unwrap(), d["pageviews"].as_u64().unwrap())
}

/// What must hold whenever the lead has been erased.
async fn nothing_of_ada(client: &reqwest::Client, base: &str, token: &str, lead_id: &str) {
    assert_eq!(overview(client, base, token).await, (1, 1, 4), "only bo's visit is counted");
    for device in ["ada-laptop", "ada-phone"] {
        let (status, _) = get(client, format!("{base}/api/v1/visitors/{device}?site_id=demo"), token).await;
        assert_eq!(status, 404, "{device}");
        let (status, body) = get(client, format!("{base}/api/v1/visitors/{device}/events?site_id=demo"), token).await;
        assert!(status == 404 || body["data"].as_array().is_some_and(|a| a.is_empty()), "{device}: {status} {body}");
    }
    let (status, _) = get(client, format!("{base}/api/v1/leads/{lead_id}?site_id=demo"), token).await;
    assert_eq!(status, 404);
    let (_, leads) = get(client, format!("{base}/api/v1/leads?site_id=demo&include_deleted=true"), token).await;
    assert!(!leads.to_string().contains(EMAIL), "{leads}");
    let (_, visitors) = get(client, format!("{base}/api/v1/visitors?site_id=demo"), token).await;
    let ids: Vec<&str> = visitors["data"].as_array().unwrap().iter().map(|v| v["visitor_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["bo"]);
    let from = now_ms() - 7_200_000;
    let csv = client
        .get(format!("{base}/api/v1/analytics/export?site_id=demo&report=events&format=csv&from={from}&to={}", now_ms() + 60_000))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(csv.status(), 200);
    let csv = csv.text().await.unwrap();
    // Event ids are random hex, so look for the visitor ids, not a bare "ada".
    assert!(csv.contains(",bo,") && !csv.contains(",ada-"), "{csv}");
    for table in ["events", "sessions", "visitors"] {
        let sql = client
            .post(format!("{base}/api/v1/query"))
            .bearer_auth(token)
            .json(&json!({"site_id": "demo", "sql": format!("SELECT count(*) AS n FROM {table} WHERE visitor_id LIKE 'ada%'")}))
            .send()
            .await
            .unwrap();
        let sql: Value = sql.json().await.unwrap();
        assert_eq!(sql["data"]["rows"][0][0], 0, "{table}: {sql}");
    }
    let (status, _) = get(client, format!("{base}/api/v1/privacy/export?site_id=demo&lead_id={lead_id}"), token).await;
    assert_eq!(status, 404, "nothing left to export");
    let (_, letters) = get(client, format!("{base}/api/v1/dead-letters?site_id=demo"), token).await;
    assert!(!letters.to_string().contains("ada-"), "{letters}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_erased_lead_is_gone_from_every_endpoint_and_stays_gone_after_a_replay() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let (client, base) = (reqwest::Client::new(), server.base.clone());
    let token = token(&client, &base).await;
    let t = now_ms() - 600_000;
    let page = |visitor: &str, i: i64, path: &str| json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": visitor, "ts": t + i * 1000, "url": format!("https://www.acme.example{path}")});
    let identify = |visitor: &str, i: i64| json!({"v": 1, "type": "identify", "site_id": "demo", "visitor_id": visitor, "ts": t + i * 1000, "traits": {"email": EMAIL, "name": "Ada Lovelace"}});
    let events = vec![
        page("ada-laptop", 0, "/"),
        page("ada-laptop", 1, "/pricing"),
        page("ada-laptop", 2, "/features"),
        identify("ada-laptop", 3),
        page("ada-phone", 10, "/"),
        page("ada-phone", 11, "/demo"),
        identify("ada-phone", 12),
        page("bo", 0, "/"),
        page("bo", 1, "/blog"),
        page("bo", 2, "/blog/a"),
        page("bo", 3, "/pricing"),
    ];
    for batch in [&events[..7], &events[7..]] {
        let sent = client.post(format!("{base}/v1/events")).header("user-agent", CHROME).body(json!({"events": batch}).to_string()).send().await.unwrap();
        assert_eq!(sent.status(), 202);
    }
    // Refused by the collector (no url) and kept as a dead letter naming the device.
    let refused = client
        .post(format!("{base}/v1/events"))
        .header("user-agent", CHROME)
        .body(json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "ada-phone"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let lead_id = crm_schemas::lead_id_for("demo", EMAIL);
    eventually("the lead with both devices and bo's visit", || async {
        let (_, lead) = get(&client, format!("{base}/api/v1/leads/{lead_id}?site_id=demo"), &token).await;
        let devices = lead["data"]["visitor_ids"].as_array().map_or(0, |a| a.len());
        let (_, letters) = get(&client, format!("{base}/api/v1/dead-letters?site_id=demo"), &token).await;
        (devices == 2 && overview(&client, &base, &token).await == (3, 3, 9) && letters.to_string().contains("ada-phone")).then_some(())
    })
    .await;

    // Subject access: everything about the person, whichever device asks.
    let (status, export) = get(&client, format!("{base}/api/v1/privacy/export?site_id=demo&visitor_id=ada-phone"), &token).await;
    assert_eq!(status, 200, "{export}");
    let doc = &export["data"];
    assert_eq!(doc["visitor_ids"], json!(["ada-laptop", "ada-phone"]));
    assert_eq!(doc["events"].as_array().unwrap().len(), 7);
    assert_eq!(doc["events_truncated"], false);
    assert_eq!(doc["profiles"].as_array().unwrap().len(), 2);
    assert_eq!(doc["sessions"].as_array().unwrap().len(), 2);
    assert_eq!(doc["leads"][0]["lead"]["email"], EMAIL);
    assert_eq!(doc["leads"][0]["lead"]["traits"]["name"], "Ada Lovelace");
    assert_eq!(doc["dead_letters"].as_array().unwrap().len(), 1);
    assert!(!doc.to_string().contains("\"bo\""), "nobody else's records");

    // A visitor linked to a lead is erased through its lead (a typed refusal, nothing deleted).
    let erase = |body: Value| {
        let (client, base, token) = (client.clone(), base.clone(), token.clone());
        async move {
            let response = client.post(format!("{base}/api/v1/privacy/erase")).bearer_auth(&token).json(&body).send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    let (status, body) = erase(json!({"site_id": "demo", "visitor_id": "ada-phone"})).await;
    assert_eq!((status, body["error"]["code"].as_str()), (409, Some("visitor_is_identified")), "{body}");
    assert_eq!(body["error"]["details"]["lead_id"], lead_id.as_str());
    let (status, body) = erase(json!({"site_id": "demo", "visitor_id": "x", "lead_id": lead_id})).await;
    assert_eq!(status, 422, "both ids: {body}");
    let (status, _) = erase(json!({"site_id": "demo", "lead_id": "lead_nobody"})).await;
    assert_eq!(status, 404);

    let (status, erased) = erase(json!({"site_id": "demo", "lead_id": lead_id})).await;
    assert_eq!(status, 200, "{erased}");
    let counts = &erased["data"]["counts"];
    assert_eq!((counts["events"].as_u64(), counts["profiles"].as_u64(), counts["sessions"].as_u64(), counts["leads"].as_u64()), (Some(7), Some(2), Some(2), Some(1)), "{erased}");
    assert_eq!(counts["dead_letters"].as_u64(), Some(1));
    assert!(erased["data"]["completed_at_ms"].is_i64());
    assert_eq!(erased["data"]["requested_by"], "admin");
    nothing_of_ada(&client, &base, &token, &lead_id).await;
    let (_, audit) = get(&client, format!("{base}/api/v1/privacy/erasures?site_id=demo"), &token).await;
    assert_eq!(audit["data"].as_array().unwrap().len(), 1);
    assert_eq!(audit["data"][0]["subject"], json!({"type": "lead", "lead_id": lead_id}));
    let (_, log) = get(&client, format!("{base}/api/v1/auth/audit"), &token).await;
    assert!(log.to_string().contains("subject_erased") && log.to_string().contains("subject_exported"), "{log}");

    // The whole log again, from offset 0, by a consumer group that never saw it.
    stop(server).await;
    let replay = start_subcommand("process", &data, &["--processor-group", "reprocess-1"]);
    let metrics_url = format!("{}/metrics", replay.base);
    // Its 7 events and the dead letter quoting its phone are dropped; bo's 4 events are duplicates.
    eventually("the replay to reach the end of the log", || async {
        let text = reqwest::get(&metrics_url).await.ok()?.text().await.ok()?;
        let value = |name: &str| text.lines().find(|l| l.starts_with(name)).and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok());
        (value("crm_processor_events_erased_total ") >= Some(8.0) && value("crm_processor_duplicates_total ") >= Some(4.0)).then_some(())
    })
    .await;
    stop(replay).await;

    // Recomputed daily figures (the batch job reads the store afresh).
    let rollups = Command::new(env!("CARGO_BIN_EXE_crm")).args(["batch", "rollups", "--data-dir"]).arg(&data).output().unwrap();
    assert!(rollups.status.success(), "{}", String::from_utf8_lossy(&rollups.stderr));
    let pageviews: u64 = String::from_utf8_lossy(&rollups.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|row| row["site_id"] == "demo")
        .map(|row| row["pageviews"].as_u64().unwrap())
        .sum();
    assert_eq!(pageviews, 4, "the rollups count bo alone");

    let server = start(&data, &[]);
    let base = server.base.clone();
    let token = common::token(&client, &base).await;
    nothing_of_ada(&client, &base, &token, &lead_id).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sites_retention_drops_its_old_days_and_nobody_elses() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server = start(&data, &[]);
    let (client, base) = (reqwest::Client::new(), server.base.clone());
    let token = token(&client, &base).await;
    let created = client
        .post(format!("{base}/api/v1/sites"))
        .bearer_auth(&token)
        .json(&json!({"site_id": "short", "name": "Short", "privacy": {"retention_days": 2}}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let day = 86_400_000;
    let mut events = Vec::new();
    for site in ["short", "demo"] {
        for days_ago in [0, 1, 3, 5] {
            events.push(json!({"v": 1, "type": "pageview", "site_id": site, "visitor_id": format!("{site}-{days_ago}"), "ts": now_ms() - days_ago * day, "url": "https://www.acme.example/"}));
        }
    }
    let sent = client.post(format!("{base}/v1/events")).header("user-agent", CHROME).body(json!({"events": events}).to_string()).send().await.unwrap();
    assert_eq!(sent.status(), 202);
    let week = |site: &str| format!("{base}/api/v1/analytics/overview?site_id={site}&from={}&to={}", now_ms() - 7 * day, now_ms() + day);
    eventually("both sites' events", || async {
        let short = get(&client, week("short"), &token).await.1["data"]["overview"]["pageviews"].as_u64();
        let demo = get(&client, week("demo"), &token).await.1["data"]["overview"]["pageviews"].as_u64();
        (short == Some(4) && demo == Some(4)).then_some(())
    })
    .await;
    stop(server).await;

    let run = Command::new(env!("CARGO_BIN_EXE_crm")).args(["batch", "retention", "--data-dir"]).arg(&data).output().unwrap();
    assert!(run.status.success(), "{}", String::from_utf8_lossy(&run.stderr));
    let lines: Vec<Value> = String::from_utf8_lossy(&run.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 1, "only the site with a setting: {lines:?}");
    assert_eq!((lines[0]["site_id"].as_str(), lines[0]["deleted"]["events"].as_u64()), (Some("short"), Some(2)), "{lines:?}");

    let server = start(&data, &[]);
    let base = server.base.clone();
    let token = common::token(&client, &base).await;
    let week = |site: &str| format!("{base}/api/v1/analytics/overview?site_id={site}&from={}&to={}", now_ms() - 7 * day, now_ms() + day);
    assert_eq!(get(&client, week("short"), &token).await.1["data"]["overview"]["pageviews"], 2, "today and yesterday are kept");
    assert_eq!(get(&client, week("demo"), &token).await.1["data"]["overview"]["pageviews"], 4);
    let (status, _) = get(&client, format!("{base}/api/v1/visitors/short-5/events?site_id=short"), &token).await;
    assert!(status == 200 || status == 404);
    let (_, events) = get(&client, format!("{base}/api/v1/visitors/short-5/events?site_id=short"), &token).await;
    assert!(events["data"].as_array().is_none_or(|a| a.is_empty()), "{events}");
}
