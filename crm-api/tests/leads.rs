//! The leads API on a real server: listing with every filter, the CRM fields with RBAC and an
//! audit trail, soft delete, the multi-device timeline, outcomes and the score-feedback report,
//! identity conflicts, and typed errors for bad input.

mod support;

use crm_schemas::{EventBody, IdentityConflict, Lead};
use crm_store::conformance::{sample_event, sample_lead};
use crm_store::WriteBatch;
use reqwest::Method;
use serde_json::{json, Value};
use support::{code, start, Api};

const T0: i64 = 1_790_000_000_000;

async fn seeded() -> (Api, String) {
    let api = start().await;
    let admin = api.login("admin").await;
    api.call(Method::POST, "/api/v1/sites", Some(&admin), Some(json!({"site_id": "s1", "name": "One"}))).await;
    let mut ada = sample_lead("s1", "ada@acme.example", 90, T0 + 5);
    ada.visitor_ids = vec!["laptop".into(), "phone".into()];
    let mut bo = sample_lead("s1", "bo@globex.example", 60, T0 + 4);
    bo.source = "google".into();
    let leads: Vec<Lead> = vec![ada, bo, sample_lead("s1", "cy@initech.example", 20, T0 + 3)];
    let events = vec![
        sample_event("s1", "laptop", T0, EventBody::Pageview, "/pricing"),
        sample_event("s1", "phone", T0 + 1000, EventBody::Pageview, "/demo"),
        sample_event("s1", "laptop", T0 + 2000, EventBody::Pageview, "/contact"),
        sample_event("s1", "stranger", T0 + 3000, EventBody::Pageview, "/"),
    ];
    let conflict = IdentityConflict {
        site_id: "s1".into(),
        visitor_id: "kiosk".into(),
        lead_id: leads[1].lead_id.clone(),
        other_lead_id: leads[2].lead_id.clone(),
        other_email: "cy@initech.example".into(),
        event_id: uuid::Uuid::new_v4(),
        at_ms: T0,
        resolved: false,
    };
    api.store.write(WriteBatch { leads, events, conflicts: vec![conflict], ..WriteBatch::default() }.into()).await.unwrap();
    (api, admin)
}

fn emails(body: &Value) -> Vec<String> {
    body["data"].as_array().unwrap().iter().map(|l| l["email"].as_str().unwrap().to_owned()).collect()
}

fn lead_id(email: &str) -> String {
    crm_schemas::lead_id_for("s1", email)
}

#[tokio::test]
async fn list_filters_sorts_and_pages() {
    let (api, admin) = seeded().await;
    let (status, body) = api.get("/api/v1/leads?site_id=s1", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(emails(&body), vec!["ada@acme.example", "bo@globex.example", "cy@initech.example"]);
    assert_eq!(body["data"][0]["company"], "acme.example");
    let (_, body) = api.get("/api/v1/leads?site_id=s1&min_score=50&max_score=80", &admin).await;
    assert_eq!(emails(&body), vec!["bo@globex.example"]);
    let (_, body) = api.get("/api/v1/leads?site_id=s1&source=google", &admin).await;
    assert_eq!(emails(&body), vec!["bo@globex.example"]);
    let (_, body) = api.get("/api/v1/leads?site_id=s1&sort=created&limit=2", &admin).await;
    assert_eq!(emails(&body), vec!["ada@acme.example", "bo@globex.example"]);
    let cursor = body["meta"]["next_cursor"].as_str().unwrap().to_owned();
    let (_, body) = api.get(&format!("/api/v1/leads?site_id=s1&sort=created&limit=2&cursor={cursor}"), &admin).await;
    assert_eq!(emails(&body), vec!["cy@initech.example"]);
    for (query, parameter) in [
        ("min_score=101", "min_score"),
        ("status=hot", "status"),
        ("sort=name", "sort"),
        ("include_deleted=yes", "include_deleted"),
        ("active_since=yesterday", "active_since"),
        ("cursor=%%%", "cursor"),
    ] {
        let (status, body) = api.get(&format!("/api/v1/leads?site_id=s1&{query}"), &admin).await;
        assert_eq!((status, code(&body)), (400, "invalid_parameter"), "{query}: {body}");
        assert_eq!(body["error"]["details"]["parameter"], parameter);
    }
    let (status, body) = api.get("/api/v1/leads", &admin).await;
    assert_eq!((status, code(&body)), (400, "missing_parameter"));
}

#[tokio::test]
async fn crm_fields_are_audited_and_guarded_by_role() {
    let (api, admin) = seeded().await;
    let rep = api.login("rep").await;
    let rep2 = api.login("rep2").await;
    let cs = api.login("cs").await;
    let path = format!("/api/v1/leads/{}?site_id=s1", lead_id("bo@globex.example"));
    let patch = |token: String, body: Value| {
        let (api, path) = (&api, path.clone());
        async move { api.call(Method::PATCH, &path, Some(&token), Some(body)).await }
    };
    let (status, body) = patch(rep.clone(), json!({"status": "working", "owner": "rep"})).await;
    assert_eq!((status, body["data"]["status"].as_str(), body["data"]["owner"].as_str()), (200, Some("working"), Some("rep")), "{body}");
    assert_eq!(patch(rep2.clone(), json!({"status": "lost"})).await.0, 403, "owned by someone else");
    assert_eq!(patch(cs.clone(), json!({"notes": "x"})).await.0, 403, "customer success reads");
    assert_eq!(patch(rep.clone(), json!({"owner": "rep2"})).await.0, 403, "reps assign only to themselves");
    let (status, body) = patch(admin.clone(), json!({"owner": "ghost"})).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"));
    for hostile in [json!({"status": "hot"}), json!({"owner": 5}), json!({"score": 100}), json!([1])] {
        let (status, body) = patch(admin.clone(), hostile.clone()).await;
        assert_eq!((status, code(&body)), (400, "malformed_json"), "{hostile}");
    }
    let (status, body) = patch(admin.clone(), json!({"owner": null, "notes": "met at the conference"})).await;
    assert_eq!((status, body["data"]["owner"].clone()), (200, Value::Null));

    let audit_path = format!("/api/v1/leads/{}/audit?site_id=s1", lead_id("bo@globex.example"));
    assert_eq!(api.get(&audit_path, &cs).await.0, 403, "customer success does not read leads");
    let (_, body) = api.get(&audit_path, &admin).await;
    let trail: Vec<(String, String, Value, Value)> = body["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["by"].as_str().unwrap().into(), a["field"].as_str().unwrap().into(), a["old"].clone(), a["new"].clone()))
        .collect();
    assert_eq!(trail.len(), 4, "{body}");
    assert!(trail.contains(&("rep".into(), "status".into(), json!("new"), json!("working"))));
    assert!(trail.contains(&("admin".into(), "owner".into(), json!("rep"), Value::Null)));
    assert!(trail.contains(&("admin".into(), "notes".into(), Value::Null, json!("met at the conference"))));

    // Soft delete: gone from lists and lookups of live leads, kept (and audited) underneath.
    assert_eq!(api.call(Method::DELETE, &path, Some(&rep), None).await.0, 403);
    assert_eq!(api.call(Method::DELETE, &path, Some(&admin), None).await.0, 204);
    assert_eq!(api.call(Method::DELETE, &path, Some(&admin), None).await.0, 404);
    let (_, body) = api.get("/api/v1/leads?site_id=s1", &admin).await;
    assert!(!emails(&body).contains(&"bo@globex.example".to_owned()));
    let (_, body) = api.get("/api/v1/leads?site_id=s1&include_deleted=true&status=working", &admin).await;
    assert!(emails(&body).contains(&"bo@globex.example".to_owned()));
    let (_, body) = api.get(&audit_path, &admin).await;
    assert_eq!(body["data"][0]["field"], "deleted_at");
}

#[tokio::test]
async fn timeline_spans_every_device_and_manual_leads_are_scored() {
    let (api, admin) = seeded().await;
    let (status, body) = api.get(&format!("/api/v1/leads/{}/timeline?site_id=s1&limit=2", lead_id("ada@acme.example")), &admin).await;
    assert_eq!(status, 200, "{body}");
    let paths = |b: &Value| b["data"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap().to_owned()).collect::<Vec<_>>();
    assert_eq!(paths(&body), vec!["/contact", "/demo"]);
    let cursor = body["meta"]["next_cursor"].as_str().unwrap().to_owned();
    let (_, body) = api.get(&format!("/api/v1/leads/{}/timeline?site_id=s1&limit=2&cursor={cursor}", lead_id("ada@acme.example")), &admin).await;
    assert_eq!(paths(&body), vec!["/pricing"]);
    let (status, _) = api.get("/api/v1/leads/lead_nope/timeline?site_id=s1", &admin).await;
    assert_eq!(status, 404);

    let input = json!({"site_id": "s1", "email": "Dee@Umbrella.example", "traits": {"name": "Dee", "employees": 120}});
    let (status, body) = api.call(Method::POST, "/api/v1/leads", Some(&admin), Some(input.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["data"]["email"].as_str(), body["data"]["source"].as_str()), (Some("dee@umbrella.example"), Some("manual")));
    assert_eq!(body["data"]["score_breakdown"]["fit"], 50.0, "business email + size with an open ICP");
    let (status, body) = api.call(Method::POST, "/api/v1/leads", Some(&admin), Some(input)).await;
    assert_eq!((status, code(&body)), (409, "lead_exists"));
    let (status, body) = api.call(Method::POST, "/api/v1/leads", Some(&admin), Some(json!({"site_id": "s1", "email": "nope"}))).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"));
    let (status, _) = api.call(Method::POST, "/api/v1/leads", Some(&api.login("cs").await), Some(json!({"site_id": "s1", "email": "e@f.example"}))).await;
    assert_eq!(status, 403);
    let (_, body) = api.get(&format!("/api/v1/leads/{}?site_id=s1", lead_id("dee@umbrella.example")), &admin).await;
    assert_eq!(body["data"]["score_history"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn outcomes_feed_the_win_rate_by_score_band() {
    let api = start().await;
    let admin = api.login("admin").await;
    api.call(Method::POST, "/api/v1/sites", Some(&admin), Some(json!({"site_id": "s1", "name": "One"}))).await;
    // Fixture: scores and outcomes; expected High 1/2, Medium 1/2, Low 0/1, plus one lead without an outcome.
    let fixture = [("a@x.example", 90, "won"), ("b@x.example", 85, "lost"), ("c@x.example", 60, "won"), ("d@x.example", 55, "unqualified"), ("e@x.example", 20, "lost")];
    let mut leads: Vec<Lead> = fixture.iter().map(|(email, score, _)| sample_lead("s1", email, *score, T0)).collect();
    leads.push(sample_lead("s1", "f@x.example", 95, T0));
    api.store.write(WriteBatch { leads, ..WriteBatch::default() }.into()).await.unwrap();
    for (email, _, outcome) in fixture {
        let (status, body) = api.call(Method::POST, &format!("/api/v1/leads/{}/outcome?site_id=s1", lead_id(email)), Some(&admin), Some(json!({"outcome": outcome}))).await;
        assert_eq!(status, 200, "{body}");
    }
    let (_, body) = api.get(&format!("/api/v1/leads/{}?site_id=s1", lead_id("a@x.example")), &admin).await;
    assert_eq!((body["data"]["status"].as_str(), body["data"]["outcome"]["score"].as_u64()), (Some("customer"), Some(90)));
    let (status, body) = api.get("/api/v1/reports/score-feedback?site_id=s1", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body["data"]["bands"],
        json!([
            {"band": "high", "leads_with_outcome": 2, "won": 1, "win_rate": 0.5},
            {"band": "medium", "leads_with_outcome": 2, "won": 1, "win_rate": 0.5},
            {"band": "low", "leads_with_outcome": 1, "won": 0, "win_rate": 0.0},
        ])
    );
    let (status, body) = api.call(Method::POST, &format!("/api/v1/leads/{}/outcome?site_id=s1", lead_id("a@x.example")), Some(&admin), Some(json!({"outcome": "maybe"}))).await;
    assert_eq!((status, code(&body)), (400, "malformed_json"));
}

#[tokio::test]
async fn identity_conflicts_are_listed_for_a_human() {
    let (api, admin) = seeded().await;
    let (status, body) = api.get("/api/v1/identity-conflicts?site_id=s1", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["other_email"], "cy@initech.example");
    assert_eq!(body["data"][0]["lead_id"], lead_id("bo@globex.example"));
}

#[tokio::test]
async fn alert_rules_show_the_secret_once_and_alerts_list_their_deliveries() {
    let (api, admin) = seeded().await;
    let rule = json!({"site_id": "s1", "rule_id": "hot", "name": "Hot lead", "webhook_url": "https://hooks.example/crm",
                      "condition": {"type": "score_crossed", "threshold": 80}});
    let (status, body) = api.call(Method::POST, "/api/v1/alert-rules", Some(&admin), Some(rule.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["secret"].as_str().map(str::len), Some(64));
    let (_, listed) = api.get("/api/v1/alert-rules?site_id=s1", &admin).await;
    assert_eq!(listed["data"][0]["secret"], "(redacted)");
    let (status, body) = api.call(Method::POST, "/api/v1/alert-rules", Some(&admin), Some(rule)).await;
    assert_eq!((status, code(&body)), (409, "rule_exists"));
    let (status, _) = api.call(Method::POST, "/api/v1/alert-rules", Some(&api.login("rep").await), Some(json!({}))).await;
    assert_eq!(status, 403);
    let broken = json!({"site_id": "s1", "name": "", "webhook_url": "ftp://x", "window_hours": 0,
                        "condition": {"type": "page_views", "path": "", "min_count": 0, "within_days": 900}});
    let (status, body) = api.call(Method::POST, "/api/v1/alert-rules", Some(&admin), Some(broken)).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"), "{body}");
    let fields = body["error"]["details"]["fields"].as_object().unwrap();
    for key in ["name", "webhook_url", "window_hours", "condition.path", "condition.min_count", "condition.within_days"] {
        assert!(fields.contains_key(key), "{key}: {body}");
    }
    let playbook = |rules: Value| json!({"site_id": "s1", "name": "CS", "webhook_url": "https://a.example/cs", "condition": {"type": "playbook", "rules": rules}});
    let (status, body) = api.call(Method::POST, "/api/v1/alert-rules", Some(&admin), Some(playbook(json!(["high_risk"])))).await;
    assert_eq!(status, 201, "playbook notifications are alert rules: {body}");
    let (status, body) = api.call(Method::POST, "/api/v1/alert-rules", Some(&admin), Some(playbook(json!(["panic"])))).await;
    assert!(status == 422 && body["error"]["details"]["fields"]["condition.rules"].is_string(), "{body}");
    let (status, body) = api.call(Method::POST, "/api/v1/alert-rules", Some(&admin), Some(json!({"site_id": "s1", "name": "x", "webhook_url": "https://a.example", "condition": {"type": "psychic"}}))).await;
    assert_eq!((status, code(&body)), (400, "malformed_json"));

    let mut alert = crm_store::conformance::sample_alert("s1", "alert_1", T0, T0);
    alert.attempts.push(crm_schemas::DeliveryAttempt { at_ms: T0 + 1, status_code: Some(500), error: None });
    api.store.write(WriteBatch { alerts: vec![alert], ..WriteBatch::default() }.into()).await.unwrap();
    let (status, body) = api.get("/api/v1/alerts?site_id=s1", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"][0]["status"].as_str(), body["data"][0]["attempts"][0]["status_code"].as_u64()), (Some("pending"), Some(500)));
    assert_eq!(api.call(Method::DELETE, "/api/v1/alert-rules/s1/hot", Some(&admin), None).await.0, 204);
    assert_eq!(api.call(Method::DELETE, "/api/v1/alert-rules/s1/hot", Some(&admin), None).await.0, 404);
}

#[tokio::test]
async fn people_merge_and_split_leads_and_resolve_conflicts() {
    let (api, admin) = seeded().await;
    let profiles = ["laptop", "phone", "kiosk"].iter().map(|v| crm_store::conformance::sample_profile("s1", v, 30, 20, T0)).collect();
    api.store.write(WriteBatch { visitors: profiles, ..WriteBatch::default() }.into()).await.unwrap();
    let (ada, bo, cy) = (lead_id("ada@acme.example"), lead_id("bo@globex.example"), lead_id("cy@initech.example"));
    let rep = api.login("rep").await;
    let post = |token: &str, path: String, body: Value| {
        let (api, token) = (&api, token.to_owned());
        async move { api.call(Method::POST, &path, Some(&token), Some(body)).await }
    };

    assert_eq!(post(&rep, format!("/api/v1/leads/{bo}/merge?site_id=s1"), json!({"lead_id": cy})).await.0, 403);
    let (status, body) = post(&admin, format!("/api/v1/leads/{bo}/merge?site_id=s1"), json!({"lead_id": bo})).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"));
    let (status, _) = post(&admin, format!("/api/v1/leads/{bo}/merge?site_id=s1"), json!({"lead_id": "lead_nope"})).await;
    assert_eq!(status, 404);
    let (status, body) = post(&admin, format!("/api/v1/leads/{bo}/merge?site_id=s1"), json!({"id": cy})).await;
    assert_eq!((status, code(&body)), (400, "malformed_json"));

    // Resolve the kiosk conflict by merging: cy folds into bo and disappears from the list.
    let (status, body) = post(&admin, "/api/v1/identity-conflicts/resolve?site_id=s1".into(), json!({"visitor_id": "kiosk", "other_lead_id": cy, "action": "merge"})).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = api.get("/api/v1/leads?site_id=s1", &admin).await;
    assert!(!emails(&body).contains(&"cy@initech.example".to_owned()));
    let (_, body) = api.get("/api/v1/identity-conflicts?site_id=s1", &admin).await;
    assert!(body["data"].as_array().unwrap().is_empty(), "resolved: {body}");
    let (_, body) = api.get(&format!("/api/v1/leads/{bo}/audit?site_id=s1"), &admin).await;
    assert_eq!((body["data"][0]["field"].as_str(), body["data"][0]["new"].as_str()), (Some("merged"), Some("cy@initech.example")));
    let (status, body) = post(&admin, format!("/api/v1/leads/{bo}/merge?site_id=s1"), json!({"lead_id": cy})).await;
    assert_eq!((status, code(&body)), (409, "already_merged"));

    // Split: the phone was someone else's device.
    let (status, body) = post(&admin, format!("/api/v1/leads/{ada}/split?site_id=s1"), json!({"visitor_id": "tv"})).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"));
    let (status, body) = post(&admin, format!("/api/v1/leads/{ada}/split?site_id=s1"), json!({"visitor_id": "phone", "to_lead_id": bo})).await;
    assert_eq!(status, 200, "{body}");
    let (_, body) = api.get(&format!("/api/v1/leads/{ada}?site_id=s1"), &admin).await;
    assert_eq!(body["data"]["visitor_ids"], json!(["laptop"]));
    assert_eq!(body["data"]["activity"]["visits"], 1, "recomputed from the remaining visitor's profile");
    let (_, body) = api.get(&format!("/api/v1/leads/{bo}?site_id=s1"), &admin).await;
    assert_eq!(body["data"]["visitor_ids"], json!(["v-bo@globex.example", "v-cy@initech.example", "phone"]), "its own, the merged lead's, the moved one");
    let (_, body) = api.get("/api/v1/identity-conflicts?site_id=s1&all=true", &admin).await;
    assert_eq!(body["data"][0]["resolved"], true);
    let (status, _) = post(&admin, "/api/v1/identity-conflicts/resolve?site_id=s1".into(), json!({"visitor_id": "x", "other_lead_id": cy, "action": "keep"})).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn accounts_group_leads_by_domain_and_visitors_by_organisation() {
    let (api, admin) = seeded().await;
    let mut anonymous = crm_store::conformance::sample_profile("s1", "anon", 10, 10, T0 + 9);
    anonymous.geo.org = Some("Umbrella Corp".into());
    let mut isp = crm_store::conformance::sample_profile("s1", "home", 10, 10, T0 + 9);
    isp.geo.org = Some("Comcast Cable Communications".into());
    api.store.write(WriteBatch { visitors: vec![anonymous, isp], ..WriteBatch::default() }.into()).await.unwrap();
    let (status, body) = api.get("/api/v1/accounts?site_id=s1", &admin).await;
    assert_eq!(status, 200, "{body}");
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|a| a["account_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["acme.example", "globex.example", "initech.example", "org:Umbrella Corp"]);
    let (status, body) = api.get("/api/v1/accounts/acme.example?site_id=s1", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!((body["data"]["leads"].as_u64(), body["data"]["lead_list"][0]["email"].as_str()), (Some(1), Some("ada@acme.example")));
    let (_, body) = api.get("/api/v1/accounts/org:Umbrella%20Corp?site_id=s1", &admin).await;
    assert_eq!((body["data"]["anonymous_visitors"].as_u64(), body["data"]["anonymous_visitor_sample"][0].as_str()), (Some(1), Some("anon")));
    assert_eq!(api.get("/api/v1/accounts/nowhere.example?site_id=s1", &admin).await.0, 404);
    assert_eq!(api.get("/api/v1/accounts", &admin).await.0, 400);
}
