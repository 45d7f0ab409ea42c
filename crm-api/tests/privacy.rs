//! `POST /api/v1/privacy/erase`, `GET /api/v1/privacy/erasures` and `GET /api/v1/privacy/export`
//! over HTTP: hostile, malformed, oversized and wrong-type input gets typed errors and erases
//! nothing; roles; an unidentified visitor's export, erase and audit (the lead case, with
//! replays, is `cli/tests/privacy.rs`).

mod support;

use crm_store::conformance::{sample_event, sample_profile};
use crm_store::WriteBatch;
use serde_json::{json, Value};
use support::{code, start};

#[tokio::test]
async fn erase_and_export_refuse_bad_input_and_follow_roles() {
    let api = start().await;
    api.store.put_site(&crm_schemas::Site::new("s1", "Site", 0)).await.unwrap();
    let admin = api.login("admin").await;
    let erase = |token: String, body: Value| {
        let api = &api;
        async move { api.call(reqwest::Method::POST, "/api/v1/privacy/erase", Some(&token), Some(body)).await }
    };
    for hostile in [
        json!({"site_id": "s1", "visitor_id": 5}),
        json!({"site_id": ["s1"], "visitor_id": "v"}),
        json!({"site_id": "s1", "visitor_id": "v", "everything": true}),
        json!({"visitor_id": "v"}),
        json!("erase everyone"),
    ] {
        let (status, body) = erase(admin.clone(), hostile.clone()).await;
        assert_eq!((status, code(&body)), (400, "malformed_json"), "{hostile}: {body}");
    }
    for (invalid, why) in [
        (json!({"site_id": "s1"}), "neither id"),
        (json!({"site_id": "s1", "visitor_id": "v", "lead_id": "l"}), "both ids"),
        (json!({"site_id": "s1", "visitor_id": ""}), "empty id"),
        (json!({"site_id": "s1", "lead_id": "l".repeat(300)}), "oversized id"),
    ] {
        let (status, body) = erase(admin.clone(), invalid).await;
        assert_eq!((status, code(&body)), (422, "validation_failed"), "{why}: {body}");
    }
    let raw = api.client.post(format!("{}/api/v1/privacy/erase", api.base)).bearer_auth(&admin).body("{\"site_id\": \"s1\", \"visitor_id\": ").send().await.unwrap();
    assert_eq!(raw.status(), 400, "a cut-off body");
    let (status, body) = erase(admin.clone(), json!({"site_id": "nowhere", "visitor_id": "v"})).await;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    let (status, _) = erase(admin.clone(), json!({"site_id": "s1", "visitor_id": "never-seen"})).await;
    assert_eq!(status, 404);
    for role in ["manager", "rep", "cs"] {
        let token = api.login(role).await;
        let (status, body) = erase(token, json!({"site_id": "s1", "visitor_id": "v"})).await;
        assert_eq!((status, code(&body)), (403, "forbidden"), "{role} may not erase");
    }
    let manager = api.login("manager").await;
    let (status, _) = api.get("/api/v1/privacy/export?site_id=s1&visitor_id=never-seen", &manager).await;
    assert_eq!(status, 404, "managers may export");
    let (status, body) = api.get("/api/v1/privacy/export?site_id=s1", &manager).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"), "{body}");
    let long = "v".repeat(300);
    let (status, _) = api.get(&format!("/api/v1/privacy/export?site_id=s1&visitor_id={long}"), &manager).await;
    assert_eq!(status, 422);
    let (status, _) = api.get("/api/v1/privacy/export?site_id=s1&visitor_id=v", &api.login("rep").await).await;
    assert_eq!(status, 403);
    let (status, _) = api.get("/api/v1/privacy/erasures?site_id=s1", &manager).await;
    assert_eq!(status, 403);
    let (status, body) = api.get("/api/v1/privacy/erasures?site_id=s1", &admin).await;
    assert_eq!((status, body["data"].as_array().map(Vec::len)), (200, Some(0)), "refused requests erased nothing");
}

#[tokio::test]
async fn an_unidentified_visitor_is_exported_then_erased_once() {
    let api = start().await;
    api.store.put_site(&crm_schemas::Site::new("s1", "Site", 0)).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let events = vec![
        sample_event("s1", "anon-1", now - 2_000, crm_schemas::EventBody::Pageview, "/"),
        sample_event("s1", "anon-1", now - 1_000, crm_schemas::EventBody::Pageview, "/pricing"),
        sample_event("s1", "anon-2", now - 1_000, crm_schemas::EventBody::Pageview, "/"),
    ];
    let visitors = vec![sample_profile("s1", "anon-1", 40, 20, now - 1_000), sample_profile("s1", "anon-2", 10, 10, now - 1_000)];
    api.store.write(WriteBatch { events, visitors, ..WriteBatch::default() }.into()).await.unwrap();
    let admin = api.login("admin").await;
    let (status, body) = api.get("/api/v1/privacy/export?site_id=s1&visitor_id=anon-1", &admin).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["events"].as_array().unwrap().len(), 2);
    assert_eq!(body["data"]["profiles"][0]["visitor_id"], "anon-1");
    assert_eq!(body["data"]["leads"], json!([]));
    let (status, body) = api.call(reqwest::Method::POST, "/api/v1/privacy/erase", Some(&admin), Some(json!({"site_id": "s1", "visitor_id": "anon-1"}))).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["counts"], json!({"events": 2, "profiles": 1}));
    assert_eq!(body["data"]["subject"], json!({"type": "visitor", "visitor_id": "anon-1"}));
    let (status, _) = api.call(reqwest::Method::POST, "/api/v1/privacy/erase", Some(&admin), Some(json!({"site_id": "s1", "visitor_id": "anon-1"}))).await;
    assert_eq!(status, 404, "nothing left to erase");
    let (status, _) = api.get("/api/v1/privacy/export?site_id=s1&visitor_id=anon-1", &admin).await;
    assert_eq!(status, 404);
    let (status, _) = api.get("/api/v1/visitors/anon-1?site_id=s1", &admin).await;
    assert_eq!(status, 404);
    let (_, body) = api.get("/api/v1/visitors/anon-2?site_id=s1", &admin).await;
    assert_eq!(body["data"]["visitor_id"], "anon-2", "the other visitor is untouched");
    let (_, body) = api.get("/api/v1/privacy/erasures?site_id=s1", &admin).await;
    assert_eq!(body["data"].as_array().unwrap().len(), 1);
    assert_eq!(body["data"][0]["requested_by"], "admin");
}
