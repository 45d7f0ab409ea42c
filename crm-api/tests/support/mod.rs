//! The API served for real on port 0 over the embedded store (shared by the API test files).

#![allow(dead_code)]

use std::sync::Arc;

use crm_api::{bootstrap, hash_password, ApiState};
use crm_schemas::{Role, User};
use crm_store::{EmbeddedStore, Store};
use serde_json::{json, Value};

pub struct Api {
    pub base: String,
    pub client: reqwest::Client,
    pub store: Arc<dyn Store>,
    pub kb: Arc<crm_api::KbRuntime>,
    _dir: tempfile::TempDir,
    _shutdown: crm_service::Shutdown,
}

pub const PASSWORD: &str = "correct-horse-battery";

/// The API without rate limits (most tests send bursts of requests).
pub async fn start() -> Api {
    start_with(crm_api::ApiConfig { per_ip_per_minute: None, per_user_per_minute: None, ..crm_api::ApiConfig::default() }).await
}

pub async fn start_with(config: crm_api::ApiConfig) -> Api {
    start_custom(config, |state| state).await
}

/// The API with `customize` applied to its state (a knowledge-base runtime, a help base URL).
pub async fn start_custom(config: crm_api::ApiConfig, customize: impl FnOnce(ApiState) -> ApiState) -> Api {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    let boot = bootstrap(store.as_ref(), None, Some(PASSWORD), None).await.unwrap();
    assert!(boot.generated_admin.is_none());
    for (username, role) in [("rep", Role::SalesRep), ("rep2", Role::SalesRep), ("manager", Role::SalesManager), ("cs", Role::CustomerSuccess)] {
        let user = User { username: username.into(), password_hash: hash_password(PASSWORD).unwrap(), role, created_at_ms: 0, disabled: false, token_version: 0, totp: None };
        store.put_user(&user).await.unwrap();
    }
    let state = customize(ApiState::new(store.clone(), boot.keys).with_config(&config));
    let kb = state.kb.clone();
    let router = crm_api::router(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let shutdown = crm_service::Shutdown::new();
    let stop = shutdown.clone();
    tokio::spawn(async move {
        let service = router.into_make_service_with_connect_info::<std::net::SocketAddr>();
        axum::serve(listener, service).with_graceful_shutdown(async move { stop.wait().await }).await.unwrap();
    });
    Api { base, client: reqwest::Client::new(), store, kb, _dir: dir, _shutdown: shutdown }
}

impl Api {
    pub async fn login(&self, username: &str) -> String {
        self.login_full(username).await["access_token"].as_str().unwrap().to_owned()
    }

    /// The whole login answer (`access_token`, `refresh_token`, …).
    pub async fn login_full(&self, username: &str) -> Value {
        let (status, body) = self.call(reqwest::Method::POST, "/api/v1/auth/login", None, Some(json!({"username": username, "password": PASSWORD}))).await;
        assert_eq!(status, 200, "{body}");
        body["data"].clone()
    }

    pub async fn call(&self, method: reqwest::Method, path: &str, token: Option<&str>, body: Option<Value>) -> (u16, Value) {
        let mut request = self.client.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.body(body.to_string()).header("content-type", "application/json");
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str, token: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(token), None).await
    }
}

pub fn code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or("<none>")
}

