//! Business data import over HTTP: a valid CSV lands whole; a file with bad rows is refused
//! with every row's line and column and leaves the store untouched; kinds, roles and headers
//! are checked.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::{code, start, Api};

async fn upload(api: &Api, token: &str, path: &str, csv: &'static str) -> (u16, Value) {
    let response = api.client.post(format!("{}{path}", api.base)).bearer_auth(token).header("content-type", "text/csv").body(csv).send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn csv_imports_are_all_or_nothing_with_row_errors() {
    let api = start().await;
    let admin = api.login("admin").await;
    api.call(Method::POST, "/api/v1/sites", Some(&admin), Some(json!({"site_id": "s1", "name": "One"}))).await;

    let good = "account_id,name,plan,mrr,seats\nacme,Acme,pro,1200,25\nglobex,Globex,free,0,\n";
    let (status, body) = upload(&api, &admin, "/api/v1/import/accounts?site_id=s1", good).await;
    assert_eq!((status, body["data"]["imported"].as_u64()), (200, Some(2)), "{body}");
    assert_eq!(api.store.business_data("s1").await.unwrap().accounts.len(), 2);

    let bad = "ticket_id,account_id,opened_at,priority\nt1,acme,2026-01-01,high\nt2,acme,someday,high\nt3,,2026-01-03,critical\n";
    let (status, body) = upload(&api, &admin, "/api/v1/import/tickets?site_id=s1", bad).await;
    assert_eq!((status, code(&body)), (422, "invalid_rows"), "{body}");
    let rows: Vec<(u64, &str)> = body["error"]["details"]["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| (r["line"].as_u64().unwrap(), r["column"].as_str().unwrap()))
        .collect();
    assert_eq!(rows, vec![(3, "opened_at"), (4, "account_id"), (4, "priority")]);
    assert!(api.store.business_data("s1").await.unwrap().tickets.is_empty(), "the good first row was not applied either");

    let (status, body) = upload(&api, &admin, "/api/v1/import/tickets?site_id=s1", "id,whatever\n1,2\n").await;
    assert_eq!((status, code(&body)), (422, "validation_failed"), "{body}");
    let (status, _) = upload(&api, &admin, "/api/v1/import/payments?site_id=s1", good).await;
    assert_eq!(status, 404);
    let (status, _) = upload(&api, &admin, "/api/v1/import/accounts?site_id=nope", good).await;
    assert_eq!(status, 404);
    let (status, _) = upload(&api, &api.login("rep").await, "/api/v1/import/accounts?site_id=s1", good).await;
    assert_eq!(status, 403);
    let (status, _) = upload(&api, &api.login("cs").await, "/api/v1/import/accounts?site_id=s1", good).await;
    assert_eq!(status, 200, "customer success imports");
    let binary = api.client.post(format!("{}/api/v1/import/accounts?site_id=s1", api.base)).bearer_auth(&admin).body(vec![0xff, 0xfe, 0x00, 0x01]).send().await.unwrap();
    assert_eq!(binary.status().as_u16(), 422);
}

#[tokio::test]
async fn health_results_are_listed_by_risk_worst_first() {
    let api = start().await;
    let admin = api.login("admin").await;
    let result = crm_store::conformance::sample_health;
    let day_before = [result("a", 20_000, 80.0, "healthy"), result("b", 20_000, 30.0, "critical"), result("c", 20_000, 55.0, "at_risk"), result("gone", 20_000, 10.0, "critical")];
    api.store.put_health(&day_before).await.unwrap();
    // The latest run no longer scores `gone` (it cancelled): it is not a current account.
    let mut b = result("b", 20_001, 30.0, "critical");
    b.churn_probability = Some(0.9);
    api.store.put_health(&[result("a", 20_001, 65.0, "at_risk"), b, result("c", 20_001, 55.0, "at_risk")]).await.unwrap();
    let (status, body) = api.get("/api/v1/health?site_id=s1", &admin).await;
    assert_eq!(status, 200, "{body}");
    let order: Vec<&str> = body["data"].as_array().unwrap().iter().map(|h| h["account_id"].as_str().unwrap()).collect();
    assert_eq!(order, vec!["b", "c", "a"], "worst first, latest run per account");
    let (_, first) = api.get("/api/v1/health?site_id=s1&limit=2", &admin).await;
    assert_eq!(first["data"].as_array().unwrap().len(), 2);
    let cursor = first["meta"]["next_cursor"].as_str().expect("a second page").to_owned();
    let (_, second) = api.get(&format!("/api/v1/health?site_id=s1&limit=2&cursor={cursor}"), &admin).await;
    assert_eq!(second["data"][0]["account_id"], "a", "{second}");
    assert!(second["meta"]["next_cursor"].is_null());
    assert_eq!(api.get("/api/v1/health?site_id=s1&cursor=%%%", &admin).await.0, 400);
    let (_, body) = api.get("/api/v1/health?site_id=s1&risk=at_risk", &admin).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let (status, body) = api.get("/api/v1/health?site_id=s1&risk=doomed", &admin).await;
    assert_eq!((status, code(&body)), (400, "invalid_parameter"));
    let (status, body) = api.get("/api/v1/accounts/a/health?site_id=s1", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"]["score"].as_f64(), body["data"]["history"].as_array().map(Vec::len)), (Some(65.0), Some(2)));
    assert_eq!(api.get("/api/v1/accounts/gone/health?site_id=s1", &admin).await.0, 200, "a former customer's history stays readable");
    assert_eq!(api.get("/api/v1/accounts/zzz/health?site_id=s1", &admin).await.0, 404);
    let (status, body) = api.get("/api/v1/health/dashboard?site_id=s1", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"]["total_accounts"].as_u64(), body["data"]["critical_accounts"].as_u64()), (Some(3), Some(1)));
    assert_eq!(body["data"]["avg_churn_risk"].as_f64(), Some(0.9), "{body}");
    assert_eq!(body["data"]["not_available"][0]["field"], "intervention_success_rate", "{body}");

    // A playbook task for `a` closed 21 days ago, when its score was 50: now 65 → a success.
    api.store.put_health(&[result("a", 19_980, 50.0, "at_risk")]).await.unwrap();
    let mut task = crm_schemas::Task {
        site_id: "s1".into(),
        task_id: "task_a".into(),
        account_id: "a".into(),
        rule: "high_risk".into(),
        title: "Intervene".into(),
        priority: "high".into(),
        due_ms: 19_982 * 86_400_000,
        owner: None,
        status: "open".into(),
        reason: "test".into(),
        created_at_ms: 19_980 * 86_400_000 + 5,
    };
    api.store.add_tasks(&[task.clone()]).await.unwrap();
    let (_, body) = api.get("/api/v1/health/dashboard?site_id=s1", &admin).await;
    assert!(body["data"]["intervention_success_rate"].is_null(), "open tasks are not judged: {body}");
    task.status = "done".into();
    api.store.update_task(&task).await.unwrap();
    let (_, body) = api.get("/api/v1/health/dashboard?site_id=s1", &admin).await;
    assert_eq!((body["data"]["intervention_success_rate"].as_f64(), body["data"]["interventions_judged"].as_u64()), (Some(1.0), Some(1)), "{body}");
}

#[tokio::test]
async fn playbook_tasks_are_listed_closed_and_assigned() {
    let api = start().await;
    let admin = api.login("admin").await;
    let task = crm_schemas::Task {
        site_id: "s1".into(),
        task_id: "task_1".into(),
        account_id: "acme".into(),
        rule: "high_risk".into(),
        title: "Intervene at Acme: health 30".into(),
        priority: "high".into(),
        due_ms: 1_790_000_000_000,
        owner: None,
        status: "open".into(),
        reason: "health 30.0 is below 40".into(),
        created_at_ms: 1_789_000_000_000,
    };
    api.store.add_tasks(&[task]).await.unwrap();
    let (status, body) = api.get("/api/v1/tasks?site_id=s1&status=open", &admin).await;
    assert_eq!((status, body["data"][0]["rule"].as_str()), (200, Some("high_risk")), "{body}");
    let path = "/api/v1/tasks/task_1?site_id=s1";
    let (status, body) = api.call(Method::PATCH, path, Some(&admin), Some(json!({"status": "done", "owner": "cs"}))).await;
    assert_eq!((status, body["data"]["status"].as_str(), body["data"]["owner"].as_str()), (200, Some("done"), Some("cs")), "{body}");
    let (_, body) = api.get("/api/v1/tasks?site_id=s1&status=open", &admin).await;
    assert!(body["data"].as_array().unwrap().is_empty());
    let (status, body) = api.call(Method::PATCH, path, Some(&admin), Some(json!({"status": "maybe", "owner": "ghost"}))).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"));
    assert_eq!(api.call(Method::PATCH, path, Some(&api.login("rep").await), Some(json!({"status": "open"}))).await.0, 403);
    assert_eq!(api.call(Method::PATCH, "/api/v1/tasks/nope?site_id=s1", Some(&admin), Some(json!({}))).await.0, 404);
    let (status, body) = api.get("/api/v1/tasks?site_id=s1&status=later", &admin).await;
    assert_eq!((status, code(&body)), (400, "invalid_parameter"));
}
