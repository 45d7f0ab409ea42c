//! The API served for real on port 0 over the embedded store: auth, validation and error codes
//! for every endpoint, pagination, and the data the processor's output produces.

use std::collections::BTreeMap;
use std::sync::Arc;

use crm_schemas::{EventBody, Scalar};
use crm_store::conformance::{sample_event, sample_profile, sample_session};
use crm_store::{Store, WriteBatch};
use serde_json::{json, Value};

mod support;

use support::{code, start};

#[tokio::test]
async fn login_and_token_failures() {
    let api = start().await;
    let (status, body) = api.call(reqwest::Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "admin", "password": "wrong"}))).await;
    assert_eq!((status, code(&body)), (401, "bad_credentials"));
    let (status, body) = api.call(reqwest::Method::POST, "/api/v1/auth/login", None, Some(json!({"username": "ghost", "password": "whatever"}))).await;
    assert_eq!((status, code(&body)), (401, "bad_credentials"), "unknown users look like wrong passwords");
    let (status, body) = api.call(reqwest::Method::POST, "/api/v1/auth/login", None, Some(json!({"username": 5}))).await;
    assert_eq!((status, code(&body)), (400, "malformed_json"));
    let token = api.login("admin").await;
    assert_eq!(api.get("/api/v1/sites", &token).await.0, 200);
    let (status, body) = api.call(reqwest::Method::GET, "/api/v1/sites", None, None).await;
    assert_eq!((status, code(&body)), (401, "unauthorized"));
    let (status, body) = api.get("/api/v1/sites", "garbage").await;
    assert_eq!((status, code(&body)), (401, "invalid_token"));
    let mut tampered = token.clone();
    tampered.pop();
    tampered.push(if token.ends_with('A') { 'B' } else { 'A' });
    assert_eq!(api.get("/api/v1/sites", &tampered).await.0, 401);
    let response = api.client.get(format!("{}/api/v1/sites", api.base)).header("authorization", format!("Basic {token}")).send().await.unwrap();
    assert_eq!(response.status(), 401);
    assert_eq!(response.headers()["www-authenticate"], "Bearer");
}

#[tokio::test]
async fn sites_validation_roles_and_conflicts() {
    let api = start().await;
    let admin = api.login("admin").await;
    let rep = api.login("rep").await;
    let site = json!({"site_id": "acme", "name": "Acme", "allowed_origins": ["https://acme.example"], "page_rules": [{"pattern": "*/buy*", "signal": "buy", "points": 40}]});
    let (status, body) = api.call(reqwest::Method::POST, "/api/v1/sites", Some(&rep), Some(site.clone())).await;
    assert_eq!((status, code(&body)), (403, "forbidden"));
    let (status, body) = api.call(reqwest::Method::POST, "/api/v1/sites", Some(&admin), Some(site.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["page_rules"][0]["signal"], "buy");
    let (status, body) = api.call(reqwest::Method::POST, "/api/v1/sites", Some(&admin), Some(site)).await;
    assert_eq!((status, code(&body)), (409, "site_exists"));
    let (status, body) = api
        .call(reqwest::Method::POST, "/api/v1/sites", Some(&admin), Some(json!({"name": "", "allowed_origins": ["nope"]})))
        .await;
    assert_eq!((status, code(&body)), (422, "validation_failed"));
    assert!(body["error"]["details"]["fields"]["name"].is_string());
    assert!(body["error"]["details"]["fields"]["allowed_origins[0]"].is_string());
    let (status, body) = api.call(reqwest::Method::POST, "/api/v1/sites", Some(&admin), Some(json!({"name": "x", "unexpected": 1}))).await;
    assert_eq!((status, code(&body)), (400, "malformed_json"));
    let (status, body) = api.call(reqwest::Method::POST, "/api/v1/sites", Some(&admin), Some(json!({"name": "Generated id"}))).await;
    assert_eq!(status, 201);
    assert!(body["data"]["site_id"].as_str().unwrap().starts_with("site_"));
    let (status, body) = api
        .call(reqwest::Method::PUT, "/api/v1/sites/acme", Some(&admin), Some(json!({"name": "Acme Inc", "allowed_origins": ["*"]})))
        .await;
    assert_eq!((status, body["data"]["name"].as_str()), (200, Some("Acme Inc")));
    assert_eq!(api.get("/api/v1/sites/acme", &rep).await.1["data"]["allowed_origins"][0], "*");
    let (status, body) = api.get("/api/v1/sites/missing", &rep).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, body) = api.call(reqwest::Method::DELETE, "/api/v1/sites/acme", Some(&admin), None).await;
    assert_eq!((status, code(&body)), (405, "method_not_allowed"));
    let (status, body) = api.get("/api/v1/nothing-here", &admin).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
}

async fn seed(store: &Arc<dyn Store>) {
    let t0 = 1_763_942_400_000i64; // 2025-11-24
    let mut profiles = Vec::new();
    for i in 0..7u8 {
        let mut profile = sample_profile("s1", &format!("v{i}"), i * 10, 70 - i * 10, t0 + i64::from(i));
        if i == 6 {
            profile.is_bot = true;
        }
        if i == 0 {
            let mut traits = BTreeMap::new();
            traits.insert("email".to_owned(), Scalar::Str("ada@acme.example".into()));
            profile.traits = traits;
        }
        profiles.push(profile);
    }
    profiles.push(sample_profile("s2", "v1", 99, 99, t0));
    let events = (0..5).map(|i| sample_event("s1", "v3", t0 + i * 1000, EventBody::Pageview, &format!("/page{i}"))).collect();
    let sessions = vec![sample_session("s1", "v3", t0, 5, 60_000)];
    store.write(WriteBatch { events, visitors: profiles, sessions, ..WriteBatch::default() }.into()).await.unwrap();
    store.put_site(&crm_schemas::Site::new("s1", "S1", 0)).await.unwrap();
}

#[tokio::test]
async fn visitors_ranked_paged_and_resolved() {
    let api = start().await;
    seed(&api.store).await;
    let token = api.login("rep").await;
    let (status, body) = api.get("/api/v1/visitors?site_id=s1&sort=intent&limit=4", &token).await;
    assert_eq!(status, 200);
    let ids: Vec<&str> = body["data"].as_array().unwrap().iter().map(|v| v["visitor_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["v5", "v4", "v3", "v2"], "bots excluded, highest intent first");
    assert_eq!(body["meta"]["has_more"], true);
    let cursor = body["meta"]["next_cursor"].as_str().unwrap();
    let (_, rest) = api.get(&format!("/api/v1/visitors?site_id=s1&sort=intent&limit=4&cursor={cursor}"), &token).await;
    let ids: Vec<&str> = rest["data"].as_array().unwrap().iter().map(|v| v["visitor_id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["v1", "v0"]);
    assert_eq!(rest["meta"]["has_more"], false);
    let (_, bots) = api.get("/api/v1/visitors?site_id=s1&bots=only", &token).await;
    assert_eq!(bots["data"][0]["visitor_id"], "v6");
    let (_, engaged) = api.get("/api/v1/visitors?site_id=s1&sort=engagement&limit=1", &token).await;
    assert_eq!(engaged["data"][0]["visitor_id"], "v0");
    assert_eq!(engaged["data"][0]["scores"]["engagement"], 70);
    assert_eq!(engaged["data"][0]["traits"]["email"], "ada@acme.example");

    for (query, parameter) in [
        ("", "site_id"),
        ("site_id=s1&sort=shoe_size", "sort"),
        ("site_id=s1&limit=0", "limit"),
        ("site_id=s1&limit=abc", "limit"),
        ("site_id=s1&cursor=%%%", "cursor"),
        ("site_id=s1&cursor=Zm9v", "cursor"),
        ("site_id=s1&bots=sometimes", "bots"),
    ] {
        let (status, body) = api.get(&format!("/api/v1/visitors?{query}"), &token).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["details"]["parameter"], parameter, "{query}");
    }

    let (status, one) = api.get("/api/v1/visitors/v3?site_id=s1", &token).await;
    assert_eq!((status, one["data"]["scores"]["intent"].as_u64()), (200, Some(30)));
    let (status, body) = api.get("/api/v1/visitors/v1", &token).await;
    assert_eq!((status, code(&body)), (409, "ambiguous_visitor"));
    assert_eq!(api.get("/api/v1/visitors/v3", &token).await.0, 200, "unique id needs no site");
    assert_eq!(api.get("/api/v1/visitors/nobody", &token).await.0, 404);

    let (status, timeline) = api.get("/api/v1/visitors/v3/events?limit=2", &token).await;
    assert_eq!(status, 200);
    let paths: Vec<&str> = timeline["data"].as_array().unwrap().iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, vec!["/page4", "/page3"]);
    assert!(timeline["data"][0]["at"].as_str().unwrap().ends_with('Z'));
    let cursor = timeline["meta"]["next_cursor"].as_str().unwrap();
    let (_, older) = api.get(&format!("/api/v1/visitors/v3/events?limit=10&cursor={cursor}"), &token).await;
    assert_eq!(older["data"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn overview_and_dead_letters_parameters() {
    let api = start().await;
    seed(&api.store).await;
    let token = api.login("admin").await;
    let (status, body) = api.get("/api/v1/analytics/overview?site_id=s1&from=2025-11-24&to=2025-11-25", &token).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["overview"]["pageviews"], 5);
    assert_eq!(body["data"]["overview"]["sessions"], 1);
    assert_eq!(body["data"]["from"], "2025-11-24T00:00:00Z");
    for (query, parameter) in [
        ("from=2025-11-24", "site_id"),
        ("site_id=s1&from=2025-11-25&to=2025-11-24", "from"),
        ("site_id=s1&from=yesterday", "from"),
        ("site_id=s1&from=2020-01-01&to=2025-01-01", "to"),
    ] {
        let (status, body) = api.get(&format!("/api/v1/analytics/overview?{query}"), &token).await;
        assert_eq!((status, body["error"]["details"]["parameter"].as_str()), (400, Some(parameter)), "{query}");
    }
    assert_eq!(api.get("/api/v1/analytics/overview?site_id=unknown", &token).await.0, 404);
    let (status, body) = api.get("/api/v1/dead-letters?site_id=s1", &token).await;
    assert_eq!((status, body["data"].as_array().map(Vec::len)), (200, Some(0)));
    assert_eq!(api.get("/api/v1/dead-letters", &token).await.0, 400);
}

#[tokio::test]
async fn expired_tokens_are_refused() {
    let api = start().await;
    let keys = crm_api::JwtKeys::from_secret(&api.store.meta("jwt_secret").await.unwrap().unwrap());
    let admin = api.store.user("admin").await.unwrap().unwrap();
    let old = keys.issue(&admin, "0000", 1_000).unwrap();
    let (status, body) = api.get("/api/v1/sites", &old).await;
    assert_eq!((status, body["error"]["message"].as_str()), (401, Some("token expired")));
}

#[tokio::test]
async fn forms_crud_validation_roles_and_funnel() {
    let api = start().await;
    let admin = api.login("admin").await;
    let rep = api.login("rep").await;
    let post = |token: String, body: Value| {
        let api = &api;
        async move { api.call(reqwest::Method::POST, "/api/v1/forms", Some(&token), Some(body)).await }
    };
    api.call(reqwest::Method::POST, "/api/v1/sites", Some(&admin), Some(json!({"site_id": "s1", "name": "One"}))).await;
    let form = json!({"site_id": "s1", "form_id": "demo", "name": "Request a demo",
        "fields": [{"name": "email", "label": "Email", "type": "email", "required": true, "company_email": true},
                   {"name": "size", "label": "Size", "type": "select", "options": ["1-10", "11-50"]}]});

    let (status, body) = post(admin.clone(), form.clone()).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["submit_label"], "Submit", "defaults filled in");
    let (status, body) = post(admin.clone(), form.clone()).await;
    assert_eq!((status, code(&body)), (409, "form_exists"));
    let (status, body) = post(rep.clone(), json!({"site_id": "s1", "form_id": "other", "name": "x", "fields": form["fields"]})).await;
    assert_eq!((status, code(&body)), (403, "forbidden"), "sales reps read forms, they don't edit them");
    let (status, body) = post(admin.clone(), json!({"site_id": "nope", "name": "x", "fields": form["fields"]})).await;
    assert_eq!((status, code(&body)), (404, "not_found"));

    // Every problem of a broken definition at once; wrong types and unknown keys are typed errors.
    let broken = json!({"site_id": "s1", "form_id": "bad id", "name": "", "fields": [
        {"name": "a", "label": "A", "type": "radio"},
        {"name": "a", "label": "B", "type": "text", "show_if": {"field": "zzz", "equals": "1"}}]});
    let (status, body) = post(admin.clone(), broken).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"), "{body}");
    let fields = body["error"]["details"]["fields"].as_object().unwrap();
    for key in ["form_id", "name", "fields[0].options", "fields[1].name", "fields[1].show_if"] {
        assert!(fields.contains_key(key), "{key} missing in {body}");
    }
    for hostile in [
        json!({"site_id": "s1", "name": "x", "fields": [{"name": "a", "type": "file"}]}),
        json!({"site_id": "s1", "name": "x", "fields": "email"}),
        json!({"site_id": "s1", "name": "x", "fields": [], "script": "<b>"}),
    ] {
        let (status, body) = post(admin.clone(), hostile).await;
        assert_eq!((status, code(&body)), (400, "malformed_json"), "{body}");
    }

    let (status, body) = api.get("/api/v1/forms?site_id=s1", &rep).await;
    assert_eq!((status, body["data"].as_array().map(Vec::len)), (200, Some(1)));
    let mut changed = form.clone();
    changed["name"] = json!("Book a demo");
    let (status, body) = api.call(reqwest::Method::PUT, "/api/v1/forms/s1/demo", Some(&admin), Some(changed.clone())).await;
    assert_eq!((status, body["data"]["name"].as_str()), (200, Some("Book a demo")));
    changed["form_id"] = json!("renamed");
    let (status, _) = api.call(reqwest::Method::PUT, "/api/v1/forms/s1/demo", Some(&admin), Some(changed)).await;
    assert_eq!(status, 422, "ids are immutable");

    // The funnel over events the processor stored.
    let view = |v: &str, t: i64| sample_event("s1", v, t, EventBody::FormView { form_id: "demo".into() }, "/contact");
    let now = crm_api_now();
    let events = vec![
        view("v1", now - 3000),
        view("v2", now - 2000),
        sample_event("s1", "v1", now - 1000, EventBody::FormSubmit { form_id: "demo".into(), traits: BTreeMap::new() }, "/contact"),
    ];
    api.store.write(WriteBatch { events, ..WriteBatch::default() }.into()).await.unwrap();
    let (status, body) = api.get("/api/v1/analytics/forms?site_id=s1", &rep).await;
    assert_eq!(status, 200, "{body}");
    let demo = &body["data"]["items"][0];
    assert_eq!((demo["form_id"].as_str(), demo["views"].as_u64(), demo["submissions"].as_u64()), (Some("demo"), Some(2), Some(1)));
    assert_eq!(demo["conversion_rate"].as_f64(), Some(0.5));
    let (status, body) = api.get("/api/v1/analytics/forms?site_id=s1&from=2030-01-02T00:00:00Z&to=2030-01-01T00:00:00Z", &rep).await;
    assert_eq!((status, code(&body)), (400, "invalid_parameter"));

    let (status, _) = api.call(reqwest::Method::DELETE, "/api/v1/forms/s1/demo", Some(&rep), None).await;
    assert_eq!(status, 403);
    let (status, _) = api.call(reqwest::Method::DELETE, "/api/v1/forms/s1/demo", Some(&admin), None).await;
    assert_eq!(status, 204);
    let (status, body) = api.get("/api/v1/forms/s1/demo", &admin).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
}

fn crm_api_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

/// Funnels and retention over HTTP: the fixture's figures (crm_store::conformance), and a 400
/// naming the parameter for every malformed, missing, oversized or hostile one.
#[tokio::test]
async fn funnel_and_retention_reports_and_their_bad_parameters() {
    use crm_store::conformance::{funnel_events, retention_events, MONDAY, ORDERED};
    let api = start().await;
    let rep = api.login("rep").await;
    for site in ["f1", "r1"] {
        api.store.put_site(&crm_schemas::Site::new(site, site, 0)).await.unwrap();
    }
    let (retention, first_seen) = retention_events("r1");
    let mut events = funnel_events("f1");
    events.extend(retention);
    let mut visitors: Vec<crm_schemas::VisitorProfile> = Vec::new();
    for e in &events {
        if !visitors.iter().any(|p| p.site_id == e.site_id && p.visitor_id == e.visitor_id) {
            let mut profile = sample_profile(&e.site_id, &e.visitor_id, 1, 1, e.ts_ms);
            profile.first_seen_ms = first_seen.get(&e.visitor_id).copied().filter(|_| e.site_id == "r1").unwrap_or(e.ts_ms - 5 * 60_000);
            visitors.push(profile);
        }
    }
    api.store.write(WriteBatch { events, visitors, ..WriteBatch::default() }.into()).await.unwrap();

    let day = |ms: i64| time::OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    let funnel = format!(
        "/api/v1/analytics/funnel?site_id=f1&from={}&to={}&step1=page:/&step2=page:/pricing*&step3=event:signup&step4=page:/welcome&window=1d",
        day(MONDAY),
        day(MONDAY + 86_400_000)
    );
    let (status, body) = api.get(&funnel, &rep).await;
    assert_eq!(status, 200, "{body}");
    let steps = body["data"]["steps"].as_array().unwrap();
    let figures: Vec<(u64, u64, Option<i64>)> = steps.iter().map(|s| (s["visitors"].as_u64().unwrap(), s["drop_off"].as_u64().unwrap(), s["median_ms_from_previous"].as_i64().map(|ms| ms / 60_000))).collect();
    assert_eq!(figures, ORDERED.to_vec());
    assert_eq!((steps[1]["step"].as_str(), body["data"]["order"].as_str(), body["data"]["window_ms"].as_i64()), (Some("page:/pricing*"), Some("ordered"), Some(86_400_000)));
    let (status, body) = api.get(&format!("{funnel}&order=strict"), &rep).await;
    assert_eq!((status, body["data"]["steps"][1]["visitors"].as_u64()), (200, Some(3)), "{body}");

    let (status, body) = api.get(&format!("/api/v1/analytics/retention?site_id=r1&from={}&cohorts=3&period=week", day(MONDAY + 3 * 86_400_000)), &rep).await;
    assert_eq!(status, 200, "{body}");
    let grid: Vec<Vec<u64>> = body["data"]["cohorts"].as_array().unwrap().iter().map(|c| c["returning"].as_array().unwrap().iter().map(|n| n.as_u64().unwrap()).collect()).collect();
    assert_eq!(grid, vec![vec![2, 1, 2], vec![1, 1], vec![1]], "`from` inside week 0 starts the cohorts on its Monday");
    assert_eq!(body["data"]["cohorts"][0]["start"].as_str(), Some("2024-01-01T00:00:00Z"));
    let (status, body) = api.get(&format!("/api/v1/analytics/retention?site_id=r1&from={}&cohorts=3&start=event:signup&return=page:/app*", day(MONDAY)), &rep).await;
    assert_eq!((status, body["data"]["cohorts"][1]["returning"].clone()), (200, json!([1, 1])), "{body}");

    let base = "/api/v1/analytics/funnel?site_id=f1&step1=page:/";
    for (query, parameter) in [
        (base.to_owned(), "step2"),
        (format!("{base}&step3=page:/x"), "step3"),
        ("/api/v1/analytics/funnel?site_id=f1&step2=page:/x&step3=page:/y".to_owned(), "step2"),
        (format!("{base}&step2=pricing"), "step2"),
        (format!("{base}&step2=click:/x"), "step2"),
        (format!("{base}&step2=any"), "step2"),
        (format!("{base}&step2=event:"), "step2"),
        (format!("{base}&step2=event:{}", "x".repeat(300)), "step2"),
        (format!("{base}&step2=page:/a%00b"), "step2"),
        (format!("{base}&step2=page:/x&step9=page:/y"), "step1"),
        (format!("{base}&step2=page:/x&window=0d"), "window"),
        (format!("{base}&step2=page:/x&window=91d"), "window"),
        (format!("{base}&step2=page:/x&window=7w"), "window"),
        (format!("{base}&step2=page:/x&window=99999999999999999d"), "window"),
        (format!("{base}&step2=page:/x&order=sideways"), "order"),
        (format!("{base}&step2=page:/x&from=yesterday"), "from"),
        ("/api/v1/analytics/retention?site_id=r1&period=month".to_owned(), "period"),
        ("/api/v1/analytics/retention?site_id=r1&cohorts=0".to_owned(), "cohorts"),
        ("/api/v1/analytics/retention?site_id=r1&cohorts=27".to_owned(), "cohorts"),
        ("/api/v1/analytics/retention?site_id=r1&cohorts=-1".to_owned(), "cohorts"),
        ("/api/v1/analytics/retention?site_id=r1&start=any".to_owned(), "start"),
        ("/api/v1/analytics/retention?site_id=r1&start=page:".to_owned(), "start"),
        ("/api/v1/analytics/retention?site_id=r1&return=%3Cscript%3E".to_owned(), "return"),
    ] {
        let (status, body) = api.get(&query, &rep).await;
        assert_eq!((status, code(&body), body["error"]["details"]["parameter"].as_str()), (400, "invalid_parameter", Some(parameter)), "{query}: {body}");
    }
    let (status, body) = api.get("/api/v1/analytics/funnel?step1=page:/&step2=page:/x", &rep).await;
    assert_eq!((status, code(&body)), (400, "missing_parameter"));
    let (status, body) = api.get("/api/v1/analytics/funnel?site_id=nowhere&step1=page:/&step2=page:/x", &rep).await;
    assert_eq!((status, code(&body)), (404, "not_found"), "{body}");
    let (status, _) = api.call(reqwest::Method::GET, "/api/v1/analytics/retention?site_id=r1", None, None).await;
    assert_eq!(status, 401);
}

/// Goals over HTTP: set on the site (every bad field named), then the fixture's conversions in
/// the goals report (by source, per hour), the overview and the timeseries.
#[tokio::test]
async fn goals_are_site_settings_and_reports() {
    use crm_store::conformance::{fixture_goals, goal_events, goal_profiles, signup_sources, GOALS_SITE, GOALS_WINDOW, GOAL_FIGURES, GOAL_VISITORS};
    let api = start().await;
    let admin = api.login("admin").await;
    let rep = api.login("rep").await;
    let site = json!({"site_id": GOALS_SITE, "name": "Goals", "goals": fixture_goals()});
    let (status, body) = api.call(reqwest::Method::POST, "/api/v1/sites", Some(&admin), Some(site)).await;
    assert_eq!((status, body["data"]["goals"][1]["match"]["property"]["value"].as_str()), (201, Some("team")), "{body}");
    let bad = json!({"name": "Goals", "goals": [
        {"goal_id": "a b", "name": "", "match": {"kind": "page", "pattern": "thanks"}},
        {"goal_id": "n", "name": "N", "match": {"kind": "event", "name": "signup", "property": {"key": "", "value": "x"}}},
    ]});
    let (status, body) = api.call(reqwest::Method::PUT, &format!("/api/v1/sites/{GOALS_SITE}"), Some(&admin), Some(bad)).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"), "{body}");
    let fields: Vec<&String> = body["error"]["details"]["fields"].as_object().unwrap().keys().collect();
    assert_eq!(fields, ["goals[0].goal_id", "goals[0].match.pattern", "goals[0].name", "goals[1].match.property.key"]);
    for hostile in [json!({"name": "G", "goals": [{"goal_id": "x", "name": "x", "match": {"kind": "page", "pattern": "/", "sql": "1"}}]}), json!({"name": "G", "goals": "all"}), json!({"name": "G", "goals": [{"goal_id": "x", "name": "x", "match": {"kind": "event", "name": "e", "property": {"key": "k", "value": [1]}}}]})] {
        let (status, body) = api.call(reqwest::Method::PUT, &format!("/api/v1/sites/{GOALS_SITE}"), Some(&admin), Some(hostile.clone())).await;
        assert_eq!(status, 400, "{hostile}: {body}");
    }
    // A replace without `goals` keeps them.
    let (status, body) = api.call(reqwest::Method::PUT, &format!("/api/v1/sites/{GOALS_SITE}"), Some(&admin), Some(json!({"name": "Goals"}))).await;
    assert_eq!((status, body["data"]["goals"].as_array().map(Vec::len)), (200, Some(5)));
    // Privacy settings ride along the same way: typed, kept when absent.
    let (status, body) = api.call(reqwest::Method::PUT, &format!("/api/v1/sites/{GOALS_SITE}"), Some(&admin), Some(json!({"name": "Goals", "privacy": {"honor_dnt_gpc": true}}))).await;
    assert_eq!((status, body["data"]["privacy"]["honor_dnt_gpc"].as_bool(), body["data"]["goals"].as_array().map(Vec::len)), (200, Some(true), Some(5)));
    for bad in [json!({"honor_dnt_gpc": "yes"}), json!({"honour": true})] {
        let (status, body) = api.call(reqwest::Method::PUT, &format!("/api/v1/sites/{GOALS_SITE}"), Some(&admin), Some(json!({"name": "Goals", "privacy": bad}))).await;
        assert_eq!((status, code(&body)), (400, "malformed_json"), "{body}");
    }
    assert_eq!(api.get(&format!("/api/v1/sites/{GOALS_SITE}"), &rep).await.1["data"]["privacy"]["honor_dnt_gpc"], true);
    for (days, why) in [(json!(0), "zero"), (json!(3651), "over ten years")] {
        let privacy = json!({"honor_dnt_gpc": true, "retention_days": days});
        let (status, body) = api.call(reqwest::Method::PUT, &format!("/api/v1/sites/{GOALS_SITE}"), Some(&admin), Some(json!({"name": "Goals", "privacy": privacy}))).await;
        assert_eq!((status, code(&body)), (422, "validation_failed"), "{why}: {body}");
        assert!(body["error"]["details"]["fields"]["privacy.retention_days"].is_string(), "{body}");
    }
    for bad in [json!(-1), json!(1.5), json!("30")] {
        let (status, body) = api.call(reqwest::Method::PUT, &format!("/api/v1/sites/{GOALS_SITE}"), Some(&admin), Some(json!({"name": "Goals", "privacy": {"retention_days": bad}}))).await;
        assert_eq!((status, code(&body)), (400, "malformed_json"), "{body}");
    }
    let (status, body) = api.call(reqwest::Method::PUT, &format!("/api/v1/sites/{GOALS_SITE}"), Some(&admin), Some(json!({"name": "Goals", "privacy": {"honor_dnt_gpc": true, "retention_days": 90}}))).await;
    assert_eq!((status, body["data"]["privacy"]["retention_days"].as_u64()), (200, Some(90)), "{body}");

    let events = goal_events();
    let visitors = goal_profiles(&events);
    api.store.write(WriteBatch { events, visitors, ..WriteBatch::default() }.into()).await.unwrap();
    let at = |ms: i64| time::OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    let (from, to) = GOALS_WINDOW;
    let window = format!("site_id={GOALS_SITE}&from={}&to={}", at(from), at(to));
    let (status, body) = api.get(&format!("/api/v1/analytics/goals?{window}&by=source&interval=hour"), &rep).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["data"]["visitors"].as_u64(), Some(GOAL_VISITORS));
    let goals = body["data"]["goals"].as_array().unwrap();
    let figures: Vec<(u64, u64)> = goals.iter().map(|g| (g["conversions"].as_u64().unwrap(), g["events"].as_u64().unwrap())).collect();
    assert_eq!(figures, GOAL_FIGURES.to_vec());
    assert_eq!(goals[4]["sources"], serde_json::to_value(signup_sources()).unwrap());
    assert_eq!((goals[1]["series"][1]["conversions"].as_u64(), goals[1]["series"][1]["conversion_rate"].as_f64()), (Some(1), Some(1.0)));
    assert_eq!(goals[1]["series"].as_array().map(Vec::len), Some(24));

    let (status, body) = api.get(&format!("/api/v1/analytics/overview?{window}"), &rep).await;
    assert_eq!((status, body["data"]["goals"][4]["conversions"].as_u64()), (200, Some(6)), "{body}");
    let (status, body) = api.get(&format!("/api/v1/analytics/timeseries?{window}&interval=hour"), &rep).await;
    assert_eq!((status, body["data"]["points"][0]["goals"][1]["conversions"].as_u64()), (200, Some(2)), "{body}");

    // As many goals as a site may have are answered in one pass; one more is refused.
    let many = |n: usize| (0..n).map(|i| json!({"goal_id": format!("g{i}"), "name": format!("G{i}"), "match": {"kind": "page", "pattern": format!("/p{i}*")}})).collect::<Vec<_>>();
    let (status, body) = api.call(reqwest::Method::PUT, &format!("/api/v1/sites/{GOALS_SITE}"), Some(&admin), Some(json!({"name": "Goals", "goals": many(crm_schemas::MAX_GOALS + 1)}))).await;
    assert_eq!((status, body["error"]["details"]["fields"]["goals"].is_string()), (422, true), "{body}");
    let (status, _) = api.call(reqwest::Method::PUT, &format!("/api/v1/sites/{GOALS_SITE}"), Some(&admin), Some(json!({"name": "Goals", "goals": many(crm_schemas::MAX_GOALS)}))).await;
    assert_eq!(status, 200);
    let (status, body) = api.get(&format!("/api/v1/analytics/overview?{window}"), &rep).await;
    assert_eq!((status, body["data"]["goals"].as_array().map(Vec::len)), (200, Some(crm_schemas::MAX_GOALS)), "{body}");

    for (query, parameter) in [("&by=country", "by"), ("&interval=week", "interval"), ("&limit=0", "limit"), ("&from=soon", "from")] {
        let (status, body) = api.get(&format!("/api/v1/analytics/goals?site_id={GOALS_SITE}{query}"), &rep).await;
        assert_eq!((status, body["error"]["details"]["parameter"].as_str()), (400, Some(parameter)), "{query}: {body}");
    }
    let (status, body) = api.get("/api/v1/analytics/goals?site_id=nowhere", &rep).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, _) = api.call(reqwest::Method::GET, &format!("/api/v1/analytics/goals?site_id={GOALS_SITE}"), None, None).await;
    assert_eq!(status, 401);
}

/// Custom events and page paths over HTTP: the fixture's figures, and a 400 naming the
/// parameter for bad ones.
#[tokio::test]
async fn custom_events_and_paths_reports() {
    use crm_store::conformance::{explore_events, explore_profiles, EXPLORE_SITE, EXPLORE_WINDOW};
    let api = start().await;
    let rep = api.login("rep").await;
    api.store.put_site(&crm_schemas::Site::new(EXPLORE_SITE, "Explore", 0)).await.unwrap();
    let events = explore_events();
    let visitors = explore_profiles(&events);
    api.store.write(WriteBatch { events, visitors, ..WriteBatch::default() }.into()).await.unwrap();
    let at = |ms: i64| time::OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    let (from, to) = EXPLORE_WINDOW;
    let window = format!("site_id={EXPLORE_SITE}&from={}&to={}", at(from), at(to));

    let (status, body) = api.get(&format!("/api/v1/analytics/events?{window}&limit=2"), &rep).await;
    assert_eq!(status, 200, "{body}");
    let signup = &body["data"]["events"][0];
    assert_eq!((signup["name"].as_str(), signup["events"].as_u64(), signup["visitors"].as_u64()), (Some("signup"), Some(4), Some(3)));
    assert_eq!(signup["properties"][1], json!({"key": "seats", "events": 2, "types": ["float", "integer"], "distinct": 1, "top": [{"value": 5, "count": 2}]}));
    assert_eq!(signup["properties"][2]["top"][0]["value"], json!(true));

    let (status, body) = api.get(&format!("/api/v1/analytics/paths?{window}&page=/pricing*&limit=3"), &rep).await;
    assert_eq!((status, body["data"]["views"].as_u64(), body["data"]["page"].as_str()), (200, Some(6), Some("/pricing*")), "{body}");
    assert_eq!(body["data"]["previous"], json!([{"key": "/", "count": 3}, {"key": "(entrance)", "count": 2}, {"key": "/pricing", "count": 1}]));
    assert_eq!(body["data"]["next"][0], json!({"key": "(exit)", "count": 1}));

    for (query, parameter) in [
        ("/api/v1/analytics/paths?site_id=s6".to_owned(), "page"),
        ("/api/v1/analytics/paths?site_id=s6&page=pricing".to_owned(), "page"),
        ("/api/v1/analytics/paths?site_id=s6&page=".to_owned(), "page"),
        (format!("/api/v1/analytics/paths?site_id=s6&page=/{}", "x".repeat(300)), "page"),
        ("/api/v1/analytics/paths?site_id=s6&page=/a%0Ab".to_owned(), "page"),
        ("/api/v1/analytics/paths?site_id=s6&page=/&limit=101".to_owned(), "limit"),
        ("/api/v1/analytics/events?site_id=s6&limit=51".to_owned(), "limit"),
        ("/api/v1/analytics/events?site_id=s6&limit=ten".to_owned(), "limit"),
        ("/api/v1/analytics/events?site_id=s6&to=2024-01-01T00:00:00Z&from=2025-01-01T00:00:00Z".to_owned(), "from"),
    ] {
        let (status, body) = api.get(&query, &rep).await;
        assert_eq!(status, 400, "{query}: {body}");
        assert_eq!(body["error"]["details"]["parameter"].as_str(), Some(parameter), "{query}: {body}");
    }
    let (status, body) = api.get("/api/v1/analytics/events?site_id=nowhere", &rep).await;
    assert_eq!((status, code(&body)), (404, "not_found"));
    let (status, _) = api.call(reqwest::Method::GET, "/api/v1/analytics/paths?site_id=s6&page=/", None, None).await;
    assert_eq!(status, 401);
}

/// Exports: reports as CSV and Parquet with the fixture's figures, raw events streamed over
/// several store pages without losing or repeating one, bots left out, and typed errors.
#[tokio::test]
async fn exports_of_reports_and_raw_events() {
    use crm_store::conformance::{explore_events, explore_profiles, fixture_goals, goal_events, goal_profiles, sample_event, EXPLORE_SITE, EXPLORE_WINDOW, GOALS_SITE, GOAL_FIGURES};
    let api = start().await;
    let (admin, rep) = (api.login("admin").await, api.login("rep").await);
    let mut goals_site = crm_schemas::Site::new(GOALS_SITE, "Goals", 0);
    goals_site.goals = fixture_goals();
    api.store.put_site(&goals_site).await.unwrap();
    api.store.put_site(&crm_schemas::Site::new(EXPLORE_SITE, "Explore", 0)).await.unwrap();
    let (mut events, mut visitors) = (goal_events(), Vec::new());
    visitors.extend(goal_profiles(&events));
    let explore = explore_events();
    visitors.extend(explore_profiles(&explore));
    events.extend(explore);
    api.store.write(WriteBatch { events, visitors, ..WriteBatch::default() }.into()).await.unwrap();
    let at = |ms: i64| time::OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap().format(&time::format_description::well_known::Rfc3339).unwrap();
    let (from, to) = EXPLORE_WINDOW;
    let window = |site: &str| format!("site_id={site}&from={}&to={}", at(from), at(to));
    let fetch = |query: String, token: String| {
        let request = api.client.get(format!("{}/api/v1/analytics/export?{query}", api.base)).bearer_auth(token);
        async move {
            let response = request.send().await.unwrap();
            let (status, headers) = (response.status().as_u16(), response.headers().clone());
            (status, headers, response.bytes().await.unwrap())
        }
    };

    let (status, headers, body) = fetch(format!("{}&report=paths&page=/pricing*&limit=3", window(EXPLORE_SITE)), rep.clone()).await;
    assert_eq!(status, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(headers["content-type"], "text/csv; charset=utf-8");
    assert_eq!(headers["content-disposition"], "attachment; filename=\"s6-paths.csv\"");
    assert_eq!(String::from_utf8_lossy(&body), "direction,page,views\nprevious,/,3\nprevious,(entrance),2\nprevious,/pricing,1\nnext,(exit),1\nnext,/,1\nnext,/docs,1\n");
    let (_, _, body) = fetch(format!("{}&report=custom_events&limit=2", window(EXPLORE_SITE)), rep.clone()).await;
    let text = String::from_utf8_lossy(&body).into_owned();
    assert!(text.starts_with("name,events,visitors,property,property_events,types,distinct,value,value_count\nsignup,4,3,plan,4,string,2,solo,2\n"), "{text}");
    assert!(text.contains("\nsignup,4,3,seats,2,float|integer,1,5,2\n") && text.ends_with("\nscroll,1,1,,,,,,\n"), "{text}");

    // Parquet: the goals report read back with the parquet reader.
    let (status, headers, body) = fetch(format!("{}&report=goals&format=parquet", window(GOALS_SITE)), rep.clone()).await;
    assert_eq!((status, headers["content-type"].to_str().unwrap()), (200, "application/vnd.apache.parquet"));
    let batches: Vec<arrow::array::RecordBatch> = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body).unwrap().build().unwrap().map(Result::unwrap).collect();
    let conversions: Vec<i64> = batches.iter().flat_map(|b| b.column_by_name("conversions").unwrap().as_any().downcast_ref::<arrow::array::Int64Array>().unwrap().values().to_vec()).collect();
    assert_eq!(conversions, GOAL_FIGURES.iter().map(|(c, _)| *c as i64).collect::<Vec<_>>());

    // Raw events over three store pages: every human event once, in order, the bot's none.
    let bulk: Vec<crm_schemas::StoredEvent> = (0..11_000).map(|i| sample_event(EXPLORE_SITE, &format!("b{}", i % 50), from + 100_000 + i, EventBody::Pageview, "/bulk")).collect();
    let bulk_profiles = (0..50).map(|i| sample_profile(EXPLORE_SITE, &format!("b{i}"), 1, 1, from + 200_000)).collect();
    api.store.write(WriteBatch { events: bulk.clone(), visitors: bulk_profiles, ..WriteBatch::default() }.into()).await.unwrap();
    let humans = explore_events().iter().filter(|e| e.visitor_id != "crawler" && (from..to).contains(&e.ts_ms)).count() + bulk.len();
    let (status, _, body) = fetch(format!("{}&report=events", window(EXPLORE_SITE)), admin.clone()).await;
    assert_eq!(status, 200);
    let mut reader = csv::Reader::from_reader(&body[..]);
    assert_eq!(reader.headers().unwrap().iter().take(6).collect::<Vec<_>>(), ["event_id", "ts", "received_at", "visitor_id", "session_id", "kind"]);
    let records: Vec<csv::StringRecord> = reader.records().map(Result::unwrap).collect();
    let ids: std::collections::HashSet<&str> = records.iter().map(|r| &r[0]).collect();
    assert_eq!((records.len(), ids.len()), (humans, humans), "each human event exactly once");
    assert!(records.iter().all(|r| &r[3] != "crawler"));
    assert!(records.windows(2).all(|w| w[0][1] <= w[1][1]), "oldest first");
    let (status, _, body) = fetch(format!("{}&report=events&format=parquet", window(EXPLORE_SITE)), admin.clone()).await;
    assert_eq!(status, 200);
    let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(body).unwrap();
    assert!(reader.metadata().num_row_groups() >= 3, "one row group per store page");
    assert_eq!(reader.build().unwrap().map(|b| b.unwrap().num_rows()).sum::<usize>(), humans);

    for (query, token, status, expected) in [
        (format!("{}&report=events", window(EXPLORE_SITE)), rep.clone(), 403, "forbidden"),
        (format!("{}&report=nope", window(EXPLORE_SITE)), rep.clone(), 400, "invalid_parameter"),
        (format!("{}&report=paths&page=/&format=xml", window(EXPLORE_SITE)), rep.clone(), 400, "invalid_parameter"),
        (window(EXPLORE_SITE), rep.clone(), 400, "missing_parameter"),
        (format!("{}&report=funnel&step1=page:/", window(EXPLORE_SITE)), rep.clone(), 400, "invalid_parameter"),
        ("site_id=nowhere&report=events".to_owned(), admin.clone(), 404, "not_found"),
    ] {
        let (got, _, body) = fetch(query.clone(), token).await;
        let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        assert_eq!((got, code(&body)), (status, expected), "{query}: {body}");
    }
}
