//! Security of the API served for real: refresh-token rotation with reuse detection, logout,
//! login lockout, per-user and per-address rate limits (429 + Retry-After), user administration
//! and the audit log, the RBAC matrix over every documented operation and role, and the HTTP
//! layer (ETag/304, CORS, security headers, JSON errors for framework rejections).

mod support;

use std::collections::HashMap;

use reqwest::Method;
use serde_json::{json, Value};
use support::{code, start, start_with, PASSWORD};

async fn refresh(api: &support::Api, token: &str) -> (u16, Value) {
    api.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refresh_token": token }))).await
}

#[tokio::test]
async fn refresh_tokens_rotate_reuse_revokes_the_family_and_logout_revokes() {
    let api = start().await;
    let first = api.login_full("rep").await;
    let r1 = first["refresh_token"].as_str().unwrap().to_owned();
    assert_eq!(first["refresh_expires_in"], 30 * 86_400);

    let (status, body) = refresh(&api, &r1).await;
    assert_eq!(status, 200, "{body}");
    let r2 = body["data"]["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2, "rotated on every use");
    assert_eq!(api.get("/api/v1/leads?site_id=s1", body["data"]["access_token"].as_str().unwrap()).await.0, 200);

    // The rotated token presented again: reuse → the whole family (r2 included) is revoked.
    let (status, body) = refresh(&api, &r1).await;
    assert_eq!((status, code(&body)), (401, "invalid_token"), "{body}");
    assert!(body["error"]["message"].as_str().unwrap().contains("already used"));
    let (status, _) = refresh(&api, &r2).await;
    assert_eq!(status, 401, "the family is gone");

    // Another sign-in is another family, untouched; logout revokes it.
    let second = api.login_full("rep").await["refresh_token"].as_str().unwrap().to_owned();
    let third = api.login_full("rep").await["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = api.call(Method::POST, "/api/v1/auth/logout", None, Some(json!({ "refresh_token": second }))).await;
    assert_eq!((status, body["data"]["revoked"].as_u64()), (200, Some(1)), "{body}");
    assert_eq!(refresh(&api, &second).await.0, 401);
    assert_eq!(refresh(&api, &third).await.0, 200, "other sign-ins stay");

    // Logout everywhere needs the access token.
    let (status, _) = api.call(Method::POST, "/api/v1/auth/logout", None, Some(json!({ "everywhere": true }))).await;
    assert_eq!(status, 401);
    let access = api.login("rep").await;
    let (status, _) = api.call(Method::POST, "/api/v1/auth/logout", Some(&access), Some(json!({ "everywhere": true }))).await;
    assert_eq!(status, 200);

    // Hostile and malformed refresh requests.
    for body in [json!({ "refresh_token": "rt_forged" }), json!({ "refresh_token": "x".repeat(10_000) })] {
        let (status, reply) = api.call(Method::POST, "/api/v1/auth/refresh", None, Some(body)).await;
        assert_eq!((status, code(&reply)), (401, "invalid_token"));
    }
    for body in [json!({}), json!({ "refresh_token": 5 }), json!({ "refresh_token": "a", "extra": 1 })] {
        assert_eq!(api.call(Method::POST, "/api/v1/auth/refresh", None, Some(body)).await.0, 400);
    }

    // Every step is in the audit log (admins only).
    let admin = api.login("admin").await;
    let (status, log) = api.get("/api/v1/auth/audit?username=rep&limit=100", &admin).await;
    assert_eq!(status, 200, "{log}");
    let events: Vec<&str> = log["data"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    for wanted in ["login_succeeded", "refreshed", "refresh_reused", "logout"] {
        assert!(events.contains(&wanted), "{wanted} in {events:?}");
    }
    assert_eq!(api.get("/api/v1/auth/audit", &access).await.0, 401, "logged out everywhere: the token is revoked");
    let rep = api.login("rep").await;
    assert_eq!(api.get("/api/v1/auth/audit", &rep).await.0, 403, "a sales rep may not read the audit log");
}

#[tokio::test]
async fn failed_logins_lock_the_account_with_retry_after() {
    let api = start().await;
    let attempt = |password: &'static str| {
        let api = &api;
        async move {
            let response = api
                .client
                .post(format!("{}/api/v1/auth/login", api.base))
                .json(&json!({ "username": "manager", "password": password }))
                .send()
                .await
                .unwrap();
            let retry = response.headers().get("retry-after").map(|v| v.to_str().unwrap().parse::<u64>().unwrap());
            (response.status().as_u16(), retry, response.json::<Value>().await.unwrap())
        }
    };
    for _ in 0..4 {
        assert_eq!(attempt("wrong-password").await.0, 401);
    }
    let (status, retry, body) = attempt("wrong-password").await;
    assert_eq!((status, code(&body)), (429, "too_many_attempts"), "the fifth failure locks");
    assert_eq!(retry, Some(30));
    let (status, retry, _) = attempt(PASSWORD).await;
    assert_eq!(status, 429, "even the right password waits out the lock");
    assert!(retry.is_some_and(|r| (1..=30).contains(&r)));
    let admin = api.login("admin").await;
    let (_, log) = api.get("/api/v1/auth/audit?username=manager", &admin).await;
    let events: Vec<&str> = log["data"].as_array().unwrap().iter().map(|e| e["event"].as_str().unwrap()).collect();
    assert_eq!(events.iter().filter(|e| **e == "login_failed").count(), 5);
    assert_eq!(events[0], "login_locked");
    assert_eq!(log["data"][0]["ip"], "127.0.0.1");
}

#[tokio::test]
async fn rate_limits_per_user_and_per_address() {
    let api = start_with(crm_api::ApiConfig { per_ip_per_minute: None, per_user_per_minute: Some(5), ..crm_api::ApiConfig::default() }).await;
    let rep = api.login("rep").await;
    let manager = api.login("manager").await;
    for _ in 0..5 {
        assert_eq!(api.get("/api/v1/sites", &rep).await.0, 200);
    }
    let response = api.client.get(format!("{}/api/v1/sites", api.base)).bearer_auth(&rep).send().await.unwrap();
    assert_eq!(response.status(), 429);
    let retry: u64 = response.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry));
    assert_eq!(code(&response.json().await.unwrap()), "rate_limited");
    assert_eq!(api.get("/api/v1/sites", &manager).await.0, 200, "limits are per user");

    let api = start_with(crm_api::ApiConfig { per_ip_per_minute: Some(3), per_user_per_minute: None, ..crm_api::ApiConfig::default() }).await;
    let statuses: Vec<u16> = futures_statuses(&api, 5).await;
    assert_eq!(statuses.iter().filter(|s| **s == 429).count(), 2, "{statuses:?}");
}

async fn futures_statuses(api: &support::Api, n: usize) -> Vec<u16> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(api.call(Method::GET, "/api/v1/sites", None, None).await.0);
    }
    out
}

#[tokio::test]
async fn admins_manage_users_and_changes_revoke_sessions() {
    let api = start().await;
    let admin = api.login("admin").await;
    let (status, users) = api.get("/api/v1/users", &admin).await;
    assert_eq!(status, 200);
    assert!(users["data"].as_array().unwrap().iter().all(|u| u.get("password_hash").is_none()));
    let new_user = json!({ "username": "newrep", "password": "a-long-enough-password", "role": "sales_rep" });
    let (status, body) = api.call(Method::POST, "/api/v1/users", Some(&admin), Some(new_user.clone())).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(api.call(Method::POST, "/api/v1/users", Some(&admin), Some(new_user)).await.0, 409);
    let (status, body) = api.call(Method::POST, "/api/v1/users", Some(&admin), Some(json!({ "username": "Bad Name!", "password": "short", "role": "sales_rep" }))).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"));
    assert!(body["error"]["details"]["fields"]["username"].is_string() && body["error"]["details"]["fields"]["password"].is_string());
    assert_eq!(api.call(Method::POST, "/api/v1/users", Some(&admin), Some(json!({ "username": "x1x", "password": "a-long-enough-password", "role": "god" }))).await.0, 400);
    let rep = api.login("rep").await;
    assert_eq!(api.get("/api/v1/users", &rep).await.0, 403);

    // Disabling revokes refresh tokens and blocks logins.
    let (status, login) = api.call(Method::POST, "/api/v1/auth/login", None, Some(json!({ "username": "newrep", "password": "a-long-enough-password" }))).await;
    assert_eq!(status, 200);
    let refresh_token = login["data"]["refresh_token"].as_str().unwrap().to_owned();
    let (status, body) = api.call(Method::PATCH, "/api/v1/users/newrep", Some(&admin), Some(json!({ "disabled": true, "role": "sales_manager" }))).await;
    assert_eq!((status, body["data"]["disabled"].as_bool(), body["data"]["role"].as_str()), (200, Some(true), Some("sales_manager")));
    assert_eq!(refresh(&api, &refresh_token).await.0, 401);
    let (status, _) = api.call(Method::POST, "/api/v1/auth/login", None, Some(json!({ "username": "newrep", "password": "a-long-enough-password" }))).await;
    assert_eq!(status, 401);
    let (status, body) = api.call(Method::PATCH, "/api/v1/users/admin", Some(&admin), Some(json!({ "role": "sales_rep" }))).await;
    assert_eq!((status, code(&body)), (422, "validation_failed"), "no self-demotion");
    assert_eq!(api.call(Method::PATCH, "/api/v1/users/ghost", Some(&admin), Some(json!({}))).await.0, 404);
    let (_, log) = api.get("/api/v1/auth/audit?username=newrep", &admin).await;
    let updated = log["data"].as_array().unwrap().iter().find(|e| e["event"] == "user_updated").expect("audited");
    assert_eq!(updated["actor"], "admin");
    let (status, me) = api.get("/api/v1/auth/me", &rep).await;
    assert_eq!((status, me["data"]["role"].as_str()), (200, Some("sales_rep")));
    assert!(me["data"]["permissions"].as_array().unwrap().contains(&json!("leads_update")));
}

/// The roles allowed each permission, spelled out independently of the server's table.
fn allowed(permission: &str, role: &str) -> bool {
    let roles = match permission {
        "sites_read" | "analytics_read" => "admin sales_manager sales_rep customer_success",
        "sites_manage" | "dead_letters_read" | "users_manage" | "audit_read" | "privacy_erase" => "admin",
        "reports_read" | "leads_delete" | "leads_merge" | "alerts_manage" | "forms_manage" | "analytics_query" | "privacy_export" => "admin sales_manager",
        "leads_read" | "leads_create" | "leads_update" | "alerts_read" | "forms_read" => "admin sales_manager sales_rep",
        "accounts_read" | "accounts_update" | "health_read" => "admin sales_manager customer_success",
        "data_import" => "admin customer_success",
        "kb_read" | "chat_respond" => "admin sales_manager sales_rep customer_success",
        "kb_manage" => "admin sales_manager",
        other => panic!("unknown permission {other}"),
    };
    roles.split(' ').any(|r| r == role)
}

#[tokio::test]
async fn every_operation_enforces_its_permission_for_every_role() {
    let api = start().await;
    api.store.put_site(&crm_schemas::Site::new("s1", "Site", 0)).await.unwrap();
    let doc: Value = api.client.get(format!("{}/api/v1/openapi.json", api.base)).send().await.unwrap().json().await.unwrap();
    let mut tokens = HashMap::new();
    for (role, user) in [("admin", "admin"), ("sales_manager", "manager"), ("sales_rep", "rep"), ("customer_success", "cs")] {
        tokens.insert(role, api.login(user).await);
    }
    let mut checked = 0;
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, operation) in item.as_object().unwrap() {
            let documented: Vec<u16> = operation["responses"].as_object().unwrap().keys().map(|k| k.parse().unwrap()).collect();
            let url = path.replace("{kind}", "accounts").replace(['{', '}'], "");
            let url = format!("{url}?site_id=s1");
            let method = Method::from_bytes(method.to_uppercase().as_bytes()).unwrap();
            let body = operation.get("requestBody").map(|_| json!({}));
            let Some(permission) = operation["x-permission"].as_str() else { continue };
            let (status, reply) = api.call(method.clone(), &url, None, body.clone()).await;
            assert_eq!(status, 401, "{method} {path} without a token: {reply}");
            for (role, token) in &tokens {
                let (status, reply) = api.call(method.clone(), &url, Some(token), body.clone()).await;
                if allowed(permission, role) {
                    assert_ne!(status, 403, "{role} may {permission}: {method} {path} → {reply}");
                } else {
                    assert_eq!((status, code(&reply)), (403, "forbidden"), "{role} may not {permission}: {method} {path}");
                }
                assert!(documented.contains(&status), "{method} {path} answered {status}, not documented: {reply}");
                assert!(!reply["error"]["message"].as_str().unwrap_or("").starts_with("route "), "{method} {path} is not routed");
                checked += 1;
            }
        }
    }
    assert!(checked >= 4 * 45, "{checked} checks");
}

#[tokio::test]
async fn etags_cors_headers_and_json_errors() {
    let api = start_with(crm_api::ApiConfig {
        per_ip_per_minute: None,
        per_user_per_minute: None,
        cors_origins: vec!["https://crm.example.com".into()],
        ..crm_api::ApiConfig::default()
    })
    .await;
    let admin = api.login("admin").await;
    let url = format!("{}/api/v1/sites", api.base);
    let first = api.client.get(&url).bearer_auth(&admin).send().await.unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_owned();
    assert!(etag.starts_with("W/\""));
    for (name, value) in [("x-content-type-options", "nosniff"), ("x-frame-options", "DENY"), ("cache-control", "private, no-cache")] {
        assert_eq!(first.headers()[name], value);
    }
    let again = api.client.get(&url).bearer_auth(&admin).header("if-none-match", &etag).send().await.unwrap();
    assert_eq!(again.status(), 304);
    assert!(again.bytes().await.unwrap().is_empty());
    let other = api.client.get(&url).bearer_auth(&admin).header("if-none-match", "W/\"stale\"").send().await.unwrap();
    assert_eq!(other.status(), 200);
    let raw = api.client.get(format!("{}/api/v1/openapi.json", api.base)).header("accept-encoding", "gzip").send().await.unwrap();
    assert_eq!(raw.headers()["content-encoding"], "gzip");

    let preflight = |origin: &'static str| {
        api.client
            .request(Method::OPTIONS, &url)
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
            .send()
    };
    let allowed = preflight("https://crm.example.com").await.unwrap();
    assert_eq!(allowed.status(), 204);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://crm.example.com");
    let refused = preflight("https://evil.example").await.unwrap();
    assert!(refused.headers().get("access-control-allow-origin").is_none());

    // Framework rejections come back in the envelope too.
    let big = api.client.post(format!("{}/api/v1/leads", api.base)).bearer_auth(&admin).body(vec![b'x'; 2 * 1024 * 1024]).send().await.unwrap();
    assert_eq!(big.status(), 413);
    assert_eq!(code(&big.json().await.unwrap()), "payload_too_large");
    let (status, body) = api.get("/api/v1/visitors/%FF%FE?site_id=s1", &admin).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["success"], false);
    let docs = api.client.get(format!("{}/api/v1/docs", api.base)).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    assert!(docs.text().await.unwrap().contains("/api/v1/leads/{lead_id}/timeline"));
}
