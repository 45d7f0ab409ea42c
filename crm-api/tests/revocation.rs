//! Live access tokens stop working the moment their user is demoted, disabled, given a new
//! password or logged out, or their refresh family is revoked — the hole reported from outside:
//! a demoted, then disabled admin kept creating admins with a token it held.

mod support;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_api::ApiState;
use reqwest::Method;
use serde_json::{json, Value};
use support::{code, start, start_with};

async fn create_user(api: &support::Api, token: &str, username: &str, role: &str) -> u16 {
    let body = json!({ "username": username, "password": "a-long-enough-password", "role": role });
    api.call(Method::POST, "/api/v1/users", Some(token), Some(body)).await.0
}

async fn login_as(api: &support::Api, username: &str, password: &str) -> Value {
    let (status, body) = api.call(Method::POST, "/api/v1/auth/login", None, Some(json!({ "username": username, "password": password }))).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

fn access(login: &Value) -> String {
    login["access_token"].as_str().unwrap().to_owned()
}

async fn patch(api: &support::Api, admin: &str, username: &str, change: Value) {
    let (status, body) = api.call(Method::PATCH, &format!("/api/v1/users/{username}"), Some(admin), Some(change)).await;
    assert_eq!(status, 200, "{body}");
}

/// 401 invalid_token "token was revoked" on a protected route.
async fn assert_revoked(api: &support::Api, token: &str, why: &str) {
    let (status, body) = api.get("/api/v1/auth/me", token).await;
    assert_eq!((status, code(&body)), (401, "invalid_token"), "{why}: {body}");
    assert_eq!(body["error"]["message"], "token was revoked", "{why}");
}

#[tokio::test]
async fn demotion_then_disable_stops_the_held_token_at_once() {
    let api = start().await;
    let admin = api.login("admin").await;
    assert_eq!(create_user(&api, &admin, "xadmin", "admin").await, 201);
    let t = access(&login_as(&api, "xadmin", "a-long-enough-password").await);
    assert_eq!(create_user(&api, &t, "probe1", "sales_rep").await, 201, "an admin token works while the user is admin");

    patch(&api, &admin, "xadmin", json!({ "role": "sales_rep" })).await;
    assert_revoked(&api, &t, "after demotion").await;
    assert_eq!(create_user(&api, &t, "backdoor", "admin").await, 401, "no admin created with a demoted token");
    let backdoor_password = json!({ "password": "another-long-password" });
    assert_eq!(api.call(Method::PATCH, "/api/v1/users/probe1", Some(&t), Some(backdoor_password)).await.0, 401);

    // A fresh login after demotion acts as a sales rep; disabling stops that token too.
    let t2 = access(&login_as(&api, "xadmin", "a-long-enough-password").await);
    assert_eq!(create_user(&api, &t2, "backdoor", "admin").await, 403);
    patch(&api, &admin, "xadmin", json!({ "disabled": true })).await;
    assert_revoked(&api, &t2, "after disable").await;
    let (status, _) = api.call(Method::POST, "/api/v1/auth/login", None, Some(json!({ "username": "backdoor", "password": "a-long-enough-password" }))).await;
    assert_eq!(status, 401, "the backdoor admin was never created");
}

#[tokio::test]
async fn password_change_logout_and_family_revocation_stop_live_tokens() {
    let api = start().await;
    let admin = api.login("admin").await;

    // Password change by an admin.
    let before = access(&api.login_full("rep").await);
    patch(&api, &admin, "rep", json!({ "password": "a-brand-new-password" })).await;
    assert_revoked(&api, &before, "after a password change").await;
    let rep = login_as(&api, "rep", "a-brand-new-password").await;

    // Logout of one sign-in stops that sign-in's access token, not another's.
    let other = login_as(&api, "rep", "a-brand-new-password").await;
    let (status, _) = api.call(Method::POST, "/api/v1/auth/logout", None, Some(json!({ "refresh_token": rep["refresh_token"] }))).await;
    assert_eq!(status, 200);
    assert_revoked(&api, &access(&rep), "after logout").await;
    assert_eq!(api.get("/api/v1/auth/me", &access(&other)).await.0, 200, "the other sign-in is untouched");

    // A refresh keeps the family's older access tokens alive; reuse of a rotated refresh token
    // revokes the family, and every access token granted in it stops.
    let (status, rotated) = api.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refresh_token": other["refresh_token"] }))).await;
    assert_eq!(status, 200, "{rotated}");
    let newer = access(&rotated["data"]);
    assert_eq!(api.get("/api/v1/auth/me", &access(&other)).await.0, 200);
    let (status, _) = api.call(Method::POST, "/api/v1/auth/refresh", None, Some(json!({ "refresh_token": other["refresh_token"] }))).await;
    assert_eq!(status, 401, "reuse detected");
    assert_revoked(&api, &access(&other), "older token of a revoked family").await;
    assert_revoked(&api, &newer, "newer token of a revoked family").await;

    // Logout everywhere stops every live token of the user, including the one that asked.
    let a = access(&login_as(&api, "rep", "a-brand-new-password").await);
    let b = access(&login_as(&api, "rep", "a-brand-new-password").await);
    let (status, _) = api.call(Method::POST, "/api/v1/auth/logout", Some(&a), Some(json!({ "everywhere": true }))).await;
    assert_eq!(status, 200);
    assert_revoked(&api, &a, "everywhere: the caller's token").await;
    assert_revoked(&api, &b, "everywhere: another sign-in").await;
    assert_eq!(api.get("/api/v1/auth/me", &admin).await.0, 200, "other users are untouched");
}

/// Serves a second API over the same store, as another `crm api` process would.
async fn second_process(api: &support::Api, config: crm_api::ApiConfig) -> (String, crm_service::Shutdown) {
    let secret = api.store.meta("jwt_secret").await.unwrap().unwrap();
    let state = ApiState::new(Arc::clone(&api.store), crm_api::JwtKeys::from_secret(&secret)).with_config(&config);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = crm_service::Shutdown::new();
    let stop = shutdown.clone();
    let router = crm_api::router(state);
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, service).with_graceful_shutdown(async move { stop.wait().await }).await.unwrap();
    });
    (base, shutdown)
}

async fn status_at(client: &reqwest::Client, base: &str, token: &str) -> u16 {
    client.get(format!("{base}/api/v1/auth/me")).bearer_auth(token).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn a_revocation_reaches_other_api_processes_within_the_cache_time() {
    let unlimited = crm_api::ApiConfig { per_ip_per_minute: None, per_user_per_minute: None, ..crm_api::ApiConfig::default() };
    let api = start_with(unlimited.clone()).await;
    let admin = api.login("admin").await;
    // One process that reads the store on every request, one that caches for 300 ms.
    let (uncached, _stop_a) = second_process(&api, crm_api::ApiConfig { revocation_ttl: Duration::ZERO, ..unlimited.clone() }).await;
    let (cached, _stop_b) = second_process(&api, crm_api::ApiConfig { revocation_ttl: Duration::from_millis(300), ..unlimited }).await;
    let client = reqwest::Client::new();
    let token = api.login("rep").await;
    assert_eq!(status_at(&client, &uncached, &token).await, 200);
    assert_eq!(status_at(&client, &cached, &token).await, 200, "and now cached there");

    patch(&api, &admin, "rep", json!({ "disabled": true })).await;
    assert_eq!(status_at(&client, &uncached, &token).await, 401, "no cache: refused on the next request");
    let since = Instant::now();
    loop {
        match status_at(&client, &cached, &token).await {
            401 => break,
            200 => assert!(since.elapsed() < Duration::from_secs(10), "the cached process never saw the revocation"),
            other => panic!("unexpected status {other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
