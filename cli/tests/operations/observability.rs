//! `/metrics` of `crm up` and the Grafana dashboard in deploy/grafana: every metric a panel
//! queries is one the server exposes (so a renamed metric breaks this test, not a dashboard in
//! production), API requests are counted by route template (never by raw id), and each area the
//! dashboard shows (collector, processor, store, API, webhooks, jobs, connections, TLS) has its
//! families registered.

use std::collections::BTreeSet;

use crate::common::{eventually, get, start, token};
use serde_json::{json, Value};

/// The series names a Prometheus server scraping this text would store (counters get `_total`,
/// histograms `_bucket`, `_sum` and `_count`).
fn exposed_series(metrics: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("# TYPE ") else { continue };
        let mut parts = rest.split_whitespace();
        let (Some(name), Some(kind)) = (parts.next(), parts.next()) else { continue };
        match kind {
            "counter" => {
                names.insert(format!("{name}_total"));
            }
            "histogram" => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    names.insert(format!("{name}{suffix}"));
                }
            }
            _ => {
                names.insert(name.to_owned());
            }
        }
    }
    names
}

/// Every `crm_…` identifier in a PromQL expression.
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let bytes = expr.as_bytes();
    let mut i = 0;
    while let Some(found) = expr[i..].find("crm_") {
        let start = i + found;
        let boundary = start == 0 || !(bytes[start - 1].is_ascii_alphanumeric() || bytes[start - 1] == b'_');
        let end = start + expr[start..].find(|c: char| !(c.is_ascii_alphanumeric() || c == '_')).unwrap_or(expr.len() - start);
        if boundary {
            names.push(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_panel_queries_metrics_crm_up_exposes() {
    let dir = tempfile::tempdir().unwrap();
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_owned()]).unwrap();
    std::fs::write(dir.path().join("cert.pem"), made.cert.pem()).unwrap();
    std::fs::write(dir.path().join("key.pem"), made.key_pair.serialize_pem()).unwrap();
    let cert = dir.path().join("cert.pem");
    let key = dir.path().join("key.pem");
    let server = start(&dir.path().join("data"), &["--tls-cert", cert.to_str().unwrap(), "--tls-key", key.to_str().unwrap()]);
    let client = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(made.cert.pem().as_bytes()).unwrap())
        .build()
        .unwrap();

    let event = json!({"v": 1, "type": "pageview", "site_id": "demo", "visitor_id": "visitor-8f3a", "url": "https://x.example/"});
    assert_eq!(client.post(format!("{}/v1/events", server.base)).body(event.to_string()).send().await.unwrap().status(), 202);
    let admin = token(&client, &server.base).await;
    eventually("the visitor", || async {
        let (status, _) = get(&client, format!("{}/api/v1/visitors/visitor-8f3a?site=demo", server.base), &admin).await;
        (status == 200).then_some(())
    })
    .await;
    assert_eq!(get(&client, format!("{}/api/v1/no-such-route", server.base), &admin).await.0, 404);

    let metrics = client.get(format!("{}/metrics", server.base)).send().await.unwrap().text().await.unwrap();
    let exposed = exposed_series(&metrics);

    // API requests by route template and status; the raw id never becomes a label value.
    let visitor_route = metrics.lines().find(|l| l.starts_with("crm_api_requests_total{") && l.contains(r#"route="/api/v1/visitors/{visitor_id}""#) && l.contains(r#"status="200""#));
    assert!(visitor_route.is_some(), "{metrics}");
    assert!(metrics.lines().any(|l| l.starts_with("crm_api_requests_total{") && l.contains(r#"route="/api/v1/auth/login""#) && l.contains(r#"method="POST""#)));
    assert!(metrics.lines().any(|l| l.starts_with("crm_api_requests_total{") && l.contains(r#"route="unmatched""#) && l.contains(r#"status="404""#)));
    assert!(!metrics.contains("visitor-8f3a"), "a raw id leaked into the labels");
    assert!(metrics.lines().any(|l| l.starts_with("crm_api_request_duration_seconds_count{") && l.contains("/api/v1/visitors/{visitor_id}")));
    // `crm up` ran its retention job at start.
    assert!(metrics.lines().any(|l| l.starts_with("crm_batch_job_runs_total{") && l.contains(r#"job="retention""#) && l.contains(r#"outcome="ok""#)), "{metrics}");

    for family in [
        "crm_ingest_requests_total",
        "crm_processor_events_total",
        "crm_store_buffered_events",
        "crm_api_requests_total",
        "crm_webhook_delivery_attempts_total",
        "crm_webhook_delivery_duration_seconds_bucket",
        "crm_batch_job_runs_total",
        "crm_batch_job_last_success_timestamp_seconds",
        "crm_http_connections_open",
        "crm_tls_handshake_failures_total",
    ] {
        assert!(exposed.contains(family), "{family} is not exposed");
    }

    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../deploy/grafana/crm.json")).unwrap()).unwrap();
    let panels = dashboard["panels"].as_array().expect("panels");
    let mut queried = BTreeSet::new();
    let mut graphs = 0;
    for panel in panels.iter().filter(|p| p["type"] != "row") {
        graphs += 1;
        let title = panel["title"].as_str().unwrap_or("?");
        let targets = panel["targets"].as_array().filter(|t| !t.is_empty()).unwrap_or_else(|| panic!("panel {title} has no query"));
        for target in targets {
            let expr = target["expr"].as_str().unwrap_or_else(|| panic!("panel {title}: a target without expr"));
            let names = metric_names(expr);
            assert!(!names.is_empty(), "panel {title}: {expr} queries no crm metric");
            for name in names {
                assert!(exposed.contains(&name), "panel {title} queries {name}, which crm up does not expose");
                queried.insert(name);
            }
        }
    }
    for variable in dashboard["templating"]["list"].as_array().unwrap() {
        for name in metric_names(variable["query"].as_str().unwrap_or("")) {
            assert!(exposed.contains(&name), "variable {} queries {name}", variable["name"]);
        }
    }
    assert!(graphs >= 15, "{graphs} panels");
    for area in ["crm_ingest_", "crm_processor_", "crm_eventlog_", "crm_store_", "crm_api_", "crm_webhook_", "crm_batch_job_", "crm_http_connections_", "crm_tls_", "crm_allocator_"] {
        assert!(queried.iter().any(|n| n.starts_with(area)), "no panel shows {area}*");
    }
}

#[test]
fn metric_names_are_found_whole() {
    assert_eq!(metric_names("sum(rate(crm_a_total{x=\"crm_no\"}[5m])) / crm_b"), vec!["crm_a_total", "crm_no", "crm_b"]);
    assert_eq!(metric_names("xcrm_a + crm_b_bucket"), vec!["crm_b_bucket"]);
}
