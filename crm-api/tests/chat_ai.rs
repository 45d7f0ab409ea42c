//! Chat answers written by a model (`--ai-base-url`) against a local chat-completions server:
//! the answer comes from the articles found and cites them, personal data stays out of the
//! prompt, and a model that times out is retried once, then replaced by the deterministic answer.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use crm_api::chat::writer::{AnswerWriter, WriterConfig, ATTEMPTS};
use reqwest::Method;
use serde_json::{json, Value};
use support::*;

/// A chat-completions server on port 0 answering `answer` after `delay`; records request bodies.
async fn model_server(delay: Duration, answer: &'static str) -> (String, Arc<Mutex<Vec<Value>>>) {
    let seen: Arc<Mutex<Vec<Value>>> = Arc::default();
    let record = seen.clone();
    let app = axum::Router::new().route(
        "/v1/chat/completions",
        axum::routing::post(move |axum::Json(body): axum::Json<Value>| {
            let record = record.clone();
            async move {
                record.lock().unwrap().push(body);
                tokio::time::sleep(delay).await;
                axum::Json(json!({ "id": "x", "object": "chat.completion", "choices": [{ "index": 0, "message": { "role": "assistant", "content": answer }, "finish_reason": "stop" }] }))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}/v1", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (base, seen)
}

async fn chat_with_model(base_url: String, timeout: Duration) -> (Api, String, String, String) {
    let writer = AnswerWriter::new(WriterConfig { base_url, api_key: Some("test-key".into()), model: "test-model".into(), timeout });
    let config = crm_api::ApiConfig { per_ip_per_minute: None, per_user_per_minute: None, public_per_ip_per_minute: None, ..crm_api::ApiConfig::default() };
    let api = start_custom(config, move |state| state.with_chat(None, Some(writer))).await;
    api.store.put_site(&crm_schemas::Site::new("acme", "Acme", 0)).await.unwrap();
    let admin = api.login("admin").await;
    let (status, article) = api
        .call(Method::POST, "/api/v1/kb/articles", Some(&admin), Some(json!({ "site_id": "acme", "title": "Single sign-on", "body_md": "SAML works with Okta and Azure AD. Upload the metadata file.", "status": "published" })))
        .await;
    assert_eq!(status, 201, "{article}");
    let article_id = article["data"]["article_id"].as_str().unwrap().to_owned();
    let (status, started) = api.call(Method::POST, "/v1/chat/acme/conversations", None, Some(json!({ "visitor_id": "v1" }))).await;
    assert_eq!(status, 201);
    let id = started["data"]["conversation_id"].as_str().unwrap().to_owned();
    let token = started["data"]["token"].as_str().unwrap().to_owned();
    (api, id, token, article_id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_model_answers_from_the_articles_without_personal_data() {
    let (base, seen) = model_server(Duration::ZERO, "Yes: SAML works with Okta [1].").await;
    let (api, id, token, article_id) = chat_with_model(base, Duration::from_secs(10)).await;
    let question = "Does SAML work with Okta? Call me on 07700 900123";
    let (status, reply) = api.call(Method::POST, &format!("/v1/chat/acme/conversations/{id}/messages"), None, Some(json!({ "token": token, "text": question }))).await;
    assert_eq!(status, 201, "{reply}");
    let answer = &reply["data"]["messages"][1];
    assert_eq!(answer["text"], "Yes: SAML works with Okta [1].");
    assert_eq!(answer["articles"][0]["url"], "/help/acme/a/single-sign-on");
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 1);
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("[1] Single sign-on\nSAML works with Okta and Azure AD."), "{system}");
    let user = requests[0]["messages"][1]["content"].as_str().unwrap();
    assert_eq!(user, "Does SAML work with Okta? Call me on [number]", "no phone number in the prompt");
    assert_eq!(requests[0]["model"], "test-model");
    // The email the visitor then gives is a lead field, never prompt material.
    let (_, _) = api.call(Method::POST, &format!("/v1/chat/acme/conversations/{id}/messages"), None, Some(json!({ "token": token, "text": "ana@acme-corp.example" }))).await;
    let (_, _) = api.call(Method::POST, &format!("/v1/chat/acme/conversations/{id}/messages"), None, Some(json!({ "token": token, "text": "Acme" }))).await;
    let (_, _) = api.call(Method::POST, &format!("/v1/chat/acme/conversations/{id}/messages"), None, Some(json!({ "token": token, "text": "And does SAML work with Azure AD?" }))).await;
    let requests = seen.lock().unwrap().clone();
    assert_eq!(requests.len(), 2);
    assert!(!requests.iter().any(|r| r.to_string().contains("acme-corp")), "lead fields stay out of prompts");
    assert_eq!(api.store.conversation("acme", &id).await.unwrap().unwrap().article_ids, [article_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_that_times_out_is_retried_then_replaced_by_the_passages() {
    let (base, seen) = model_server(Duration::from_secs(5), "too late").await;
    let (api, id, token, _) = chat_with_model(base, Duration::from_secs(1)).await;
    let (status, reply) = api.call(Method::POST, &format!("/v1/chat/acme/conversations/{id}/messages"), None, Some(json!({ "token": token, "text": "Does SAML work with Okta?" }))).await;
    assert_eq!(status, 201, "{reply}");
    let text = reply["data"]["messages"][1]["text"].as_str().unwrap();
    assert!(text.starts_with("From \"Single sign-on\":"), "the deterministic answer: {text}");
    assert_eq!(seen.lock().unwrap().len(), ATTEMPTS, "one retry");
}
