//! The chat through the real router: starting, polling with the conversation's token, KB
//! answers with links, qualification (an email becomes an identify event on the log), handoff
//! (with and without staff online, with its alert), staff replies and closing, and hostile input
//! (markup, oversized messages, floods, wrong tokens).

mod support;

use std::sync::{Arc, Mutex};

use crm_schemas::{CollectedEvent, EventKind};
use reqwest::Method;
use serde_json::{json, Value};
use support::*;

type Sent = Arc<Mutex<Vec<CollectedEvent>>>;

const BROWSER: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 14_5) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Safari/605.1.15";

async fn start_chat_api() -> (Api, Sent) {
    let sent: Sent = Arc::default();
    let sink_sent = sent.clone();
    let sink: crm_api::chat::EventSink = Arc::new(move |events| {
        let sent = sink_sent.clone();
        Box::pin(async move {
            sent.lock().unwrap().extend(events);
            Ok(())
        })
    });
    let config = crm_api::ApiConfig { per_ip_per_minute: None, per_user_per_minute: None, public_per_ip_per_minute: None, ..crm_api::ApiConfig::default() };
    let api = start_custom(config, move |state| state.with_chat(Some(sink), None)).await;
    let mut site = crm_schemas::Site::new("acme", "Acme Cloud", 0);
    site.allowed_origins = vec!["https://www.acme.io".into()];
    api.store.put_site(&site).await.unwrap();
    (api, sent)
}

async fn public(api: &Api, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = api.client.request(method, format!("{}{path}", api.base));
    if let Some(body) = body {
        // The widget sends text/plain JSON (no CORS preflight).
        request = request.header("content-type", "text/plain;charset=UTF-8").body(body.to_string());
    }
    request = request.header("user-agent", BROWSER);
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn start_conversation(api: &Api, visitor: &str) -> (String, String, Value) {
    let (status, reply) = public(api, Method::POST, "/v1/chat/acme/conversations", Some(json!({ "visitor_id": visitor, "session_id": "s1", "url": "https://www.acme.io/pricing" }))).await;
    assert_eq!(status, 201, "{reply}");
    let data = reply["data"].clone();
    (data["conversation_id"].as_str().unwrap().to_owned(), data["token"].as_str().unwrap().to_owned(), data)
}

async fn say(api: &Api, id: &str, token: &str, text: &str) -> (u16, Value) {
    public(api, Method::POST, &format!("/v1/chat/acme/conversations/{id}/messages"), Some(json!({ "token": token, "text": text }))).await
}

fn texts(reply: &Value) -> Vec<String> {
    reply["data"]["messages"].as_array().map(|m| m.iter().map(|m| m["text"].as_str().unwrap().to_owned()).collect()).unwrap_or_default()
}

fn custom_names(sent: &Sent) -> Vec<String> {
    sent.lock().unwrap().iter().filter_map(|e| e.event.name.clone()).collect()
}

#[tokio::test]
async fn a_question_gets_a_kb_answer_then_qualification_identifies_the_visitor() {
    let (api, sent) = start_chat_api().await;
    let admin = api.login("admin").await;
    let (status, article) = api
        .call(Method::POST, "/api/v1/kb/articles", Some(&admin), Some(json!({ "site_id": "acme", "title": "Single sign-on with SAML", "body_md": "Connect Okta or Azure AD so your team signs in with SAML.", "status": "published" })))
        .await;
    assert_eq!(status, 201, "{article}");
    let (id, token, started) = start_conversation(&api, "v-chat-1").await;
    assert_eq!(started["status"], "open");
    assert!(started["messages"][0]["text"].as_str().unwrap().contains("Hi"), "the greeting: {started}");
    assert_eq!(started["agents_online"], false);

    let (status, reply) = say(&api, &id, &token, "Do you support SAML with Okta?").await;
    assert_eq!(status, 201, "{reply}");
    let messages = reply["data"]["messages"].as_array().unwrap();
    assert_eq!(messages[0]["author"], "visitor");
    assert_eq!(messages[1]["author"], "assistant");
    assert!(messages[1]["text"].as_str().unwrap().contains("Single sign-on with SAML"), "{reply}");
    assert_eq!(messages[1]["articles"][0]["url"], "/help/acme/a/single-sign-on-with-saml");
    assert_eq!(messages[2]["expects"], "email", "then the first qualification question: {reply}");

    let (_, reply) = say(&api, &id, &token, "ana@acme").await;
    assert!(texts(&reply)[1].contains("doesn't look like an email"), "{reply}");
    let (_, reply) = say(&api, &id, &token, "  Ana@Acme-Corp.example ").await;
    assert_eq!(reply["data"]["messages"][1]["expects"], "text", "the next question (company): {reply}");
    let (_, reply) = say(&api, &id, &token, "Acme Corp").await;
    assert!(texts(&reply)[1].contains("Anything else"), "{reply}");

    let identify = sent.lock().unwrap().iter().filter(|e| e.event.kind == Some(EventKind::Identify)).map(|e| e.event.clone()).collect::<Vec<_>>();
    assert_eq!(identify.len(), 2, "one identify per answered field");
    assert_eq!(identify[0].visitor_id.as_deref(), Some("v-chat-1"));
    assert_eq!(identify[0].traits.as_ref().unwrap()["email"].as_str(), Some("ana@acme-corp.example"));
    assert_eq!(identify[1].traits.as_ref().unwrap()["company"].as_str(), Some("Acme Corp"));
    // Chat events carry the visitor's own user agent and address, as beacons do (else the
    // processor would take the visitor for a bot).
    assert!(sent.lock().unwrap().iter().all(|e| e.user_agent.as_deref() == Some(BROWSER) && e.ip.as_deref() == Some("127.0.0.1")));
    let names = custom_names(&sent);
    assert_eq!(names.iter().filter(|n| *n == "chat_started").count(), 1);
    assert_eq!(names.iter().filter(|n| *n == "chat_message").count(), 4, "{names:?}");

    // Polling returns what is new; a helpful vote resolves the conversation (a deflection).
    let (status, polled) = public(&api, Method::GET, &format!("/v1/chat/acme/conversations/{id}?token={token}&after=0"), None).await;
    assert_eq!(status, 200);
    assert_eq!(polled["data"]["messages"].as_array().unwrap().len(), 10, "greeting + 4 visitor messages + 5 replies: {polled}");
    let last = polled["data"]["messages"][9]["at_ms"].as_i64().unwrap();
    let (_, none) = public(&api, Method::GET, &format!("/v1/chat/acme/conversations/{id}?token={token}&after={last}"), None).await;
    assert!(none["data"]["messages"].as_array().unwrap().is_empty());
    let (status, voted) = public(&api, Method::POST, &format!("/v1/chat/acme/conversations/{id}/feedback"), Some(json!({ "token": token, "helpful": true }))).await;
    assert_eq!((status, voted["data"]["status"].as_str()), (200, Some("resolved")));
    api.kb.flush_counters(&api.store).await.unwrap();
    // Yesterday to tomorrow, so a run across UTC midnight sums the same.
    let today = crm_schemas::utc_day(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64);
    let rows = api.store.kb_counters("acme", today - 1, today + 2).await.unwrap();
    let site_rows = rows.iter().filter(|r| r.article_id.is_empty() && r.query.is_empty());
    let (deflections, searches) = site_rows.fold((0, 0), |(d, s), r| (d + r.deflections, s + r.searches));
    assert_eq!(deflections, 1);
    assert_eq!(searches, 1, "only the question was a search, not the email, company or chatter");
    let stored = api.store.conversation("acme", &id).await.unwrap().unwrap();
    assert_eq!(stored.fields["email"], "ana@acme-corp.example");
    assert_eq!(stored.article_ids, [article["data"]["article_id"].as_str().unwrap()]);
}

#[tokio::test]
async fn a_question_instead_of_the_asked_answer_is_answered_and_not_stored() {
    let (api, sent) = start_chat_api().await;
    let admin = api.login("admin").await;
    let (status, _) = api
        .call(Method::POST, "/api/v1/kb/articles", Some(&admin), Some(json!({ "site_id": "acme", "title": "SCIM provisioning", "body_md": "SCIM creates and removes users from Okta automatically.", "status": "published" })))
        .await;
    assert_eq!(status, 201);
    let (id, token, _) = start_conversation(&api, "v-chat-6").await;
    let (_, reply) = say(&api, &id, &token, "Do you have SCIM provisioning?").await;
    assert_eq!(reply["data"]["messages"][2]["expects"], "email");
    // Instead of an email, another question: answered, and the email question is not repeated.
    let (_, reply) = say(&api, &id, &token, "Does SCIM remove users automatically?").await;
    let messages = reply["data"]["messages"].as_array().unwrap();
    assert!(messages[1]["text"].as_str().unwrap().contains("SCIM provisioning"), "{reply}");
    assert_eq!(messages.last().unwrap()["expects"], "text", "the next question is the company, not the email again: {reply}");
    let stored = api.store.conversation("acme", &id).await.unwrap().unwrap();
    assert!(stored.fields.is_empty() && stored.declined == ["email"], "{stored:?}");
    // A person takes over: what the visitor then writes is for them, not a qualification answer.
    let (_, reply) = say(&api, &id, &token, "I'd like to talk to a person").await;
    assert_eq!(reply["data"]["status"], "handed_off");
    let (_, reply) = say(&api, &id, &token, "We are about 50 people, is that ok").await;
    assert_eq!(reply["data"]["messages"].as_array().unwrap().len(), 1, "no assistant reply once handed off: {reply}");
    let stored = api.store.conversation("acme", &id).await.unwrap().unwrap();
    assert!(!stored.fields.contains_key("company"), "{stored:?}");
    // Offline, the handoff asked for an email: giving one is still recorded.
    let (_, reply) = say(&api, &id, &token, "sure: ana@acme-corp.example").await;
    assert_eq!(reply["data"]["messages"].as_array().unwrap().len(), 1);
    assert_eq!(api.store.conversation("acme", &id).await.unwrap().unwrap().fields["email"], "ana@acme-corp.example");
    assert!(sent.lock().unwrap().iter().any(|e| e.event.kind == Some(EventKind::Identify)));
}

#[tokio::test]
async fn pages_the_site_does_not_allow_cannot_write_into_its_chat() {
    let (api, _) = start_chat_api().await;
    let post = |origin: &'static str| {
        api.client
            .post(format!("{}/v1/chat/acme/conversations", api.base))
            .header("origin", origin)
            .header("content-type", "text/plain;charset=UTF-8")
            .body(json!({ "visitor_id": "v-x" }).to_string())
            .send()
    };
    let refused = post("https://evil.example").await.unwrap();
    assert_eq!(refused.status(), 403);
    assert!(refused.headers().get("access-control-allow-origin").is_none());
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "origin_not_allowed");
    let allowed = post("https://www.acme.io").await.unwrap();
    assert_eq!(allowed.status(), 201);
    assert_eq!(allowed.headers()["access-control-allow-origin"], "https://www.acme.io");
    // Reads stay open (CORS keeps other pages from reading them); no Origin (server side) is fine.
    assert_eq!(public(&api, Method::POST, "/v1/chat/acme/conversations", Some(json!({}))).await.0, 201);
}

#[tokio::test]
async fn handoff_fires_the_alert_and_staff_reply_reaches_the_visitor() {
    let (api, sent) = start_chat_api().await;
    let admin = api.login("admin").await;
    let (status, rule) = api
        .call(Method::POST, "/api/v1/alert-rules", Some(&admin), Some(json!({ "site_id": "acme", "name": "Chat handoff", "condition": { "type": "chat_handoff", "only_when_offline": true }, "webhook_url": "http://127.0.0.1:9/hook" })))
        .await;
    assert_eq!(status, 201, "{rule}");

    // Nobody online: the visitor is asked to leave an email, and the alert fires.
    let (id, token, _) = start_conversation(&api, "v-chat-2").await;
    let (status, reply) = say(&api, &id, &token, "Can I talk to a person please?").await;
    assert_eq!(status, 201);
    assert_eq!(reply["data"]["status"], "handed_off");
    assert!(texts(&reply)[1].contains("No one is online"), "{reply}");
    assert_eq!(reply["data"]["messages"][1]["expects"], "email");
    let alerts = api.store.alerts("acme", 10).await.unwrap();
    assert_eq!(alerts.len(), 1);
    assert!(alerts[0].message.contains("Can I talk to a person please?") && alerts[0].message.contains("no one is online"), "{}", alerts[0].message);
    assert!(custom_names(&sent).contains(&"chat_handoff".to_owned()));
    // A second handoff request in the same conversation changes nothing and fires nothing.
    let (status, _) = public(&api, Method::POST, &format!("/v1/chat/acme/conversations/{id}/handoff"), Some(json!({ "token": token }))).await;
    assert_eq!(status, 200);
    assert_eq!(api.store.alerts("acme", 10).await.unwrap().len(), 1);

    // Resolved, then handed off again in the same window: the delivered alert is not reset.
    let mut delivered = alerts[0].clone();
    delivered.status = crm_schemas::DeliveryStatus::Delivered;
    api.store.update_alert(&delivered).await.unwrap();
    let mut stored = api.store.conversation("acme", &id).await.unwrap().unwrap();
    stored.status = crm_schemas::ConversationStatus::Resolved;
    api.store.put_conversation(&stored).await.unwrap();
    let (_, again) = say(&api, &id, &token, "a human please").await;
    assert_eq!(again["data"]["status"], "handed_off", "{again}");
    let alerts = api.store.alerts("acme", 10).await.unwrap();
    assert_eq!((alerts.len(), alerts[0].status), (1, crm_schemas::DeliveryStatus::Delivered));

    // Staff open the inbox (now online), read the transcript and reply; the visitor's poll shows it.
    let rep = api.login("rep").await;
    let (status, inbox) = api.get("/api/v1/chat/conversations?site_id=acme&status=handed_off", &rep).await;
    assert_eq!(status, 200, "{inbox}");
    assert_eq!(inbox["data"][0]["conversation_id"], id.as_str());
    let (status, one) = api.get(&format!("/api/v1/chat/conversations/acme/{id}"), &rep).await;
    assert_eq!(status, 200);
    assert_eq!(one["data"]["transcript"][1]["text"], "Can I talk to a person please?");
    let (status, replied) = api.call(Method::POST, &format!("/api/v1/chat/conversations/acme/{id}/messages"), Some(&rep), Some(json!({ "text": "Hi! <b>I</b> can help." }))).await;
    assert_eq!(status, 201, "{replied}");
    assert_eq!((replied["data"]["author"].as_str(), replied["data"]["agent"].as_str()), (Some("agent"), Some("rep")));
    let (_, polled) = public(&api, Method::GET, &format!("/v1/chat/acme/conversations/{id}?token={token}"), None).await;
    assert_eq!(polled["data"]["assigned_to"], "rep");
    assert_eq!(polled["data"]["messages"].as_array().unwrap().last().unwrap()["text"], "Hi! <b>I</b> can help.", "stored as typed; widgets render text");
    assert_eq!(polled["data"]["agents_online"], true);

    // With staff online a handoff says someone will reply; the offline-only rule does not fire.
    let (id2, token2, started) = start_conversation(&api, "v-chat-3").await;
    assert_eq!(started["agents_online"], true);
    let (_, reply) = public(&api, Method::POST, &format!("/v1/chat/acme/conversations/{id2}/handoff"), Some(json!({ "token": token2 }))).await;
    assert!(texts(&reply)[0].contains("reply here shortly"), "{reply}");
    assert_eq!(api.store.alerts("acme", 10).await.unwrap().len(), 1);

    // Closing ends it: the visitor can no longer write into it.
    let (status, _) = api.call(Method::POST, &format!("/api/v1/chat/conversations/acme/{id}/close"), Some(&rep), Some(json!({ "resolved": false }))).await;
    assert_eq!(status, 200);
    let (status, reply) = say(&api, &id, &token, "hello?").await;
    assert_eq!((status, code(&reply)), (409, "conversation_closed"));
    // A pricing question hands off after its answer.
    let (id3, token3, _) = start_conversation(&api, "v-chat-4").await;
    let (_, reply) = say(&api, &id3, &token3, "What does it cost for 50 seats?").await;
    assert_eq!(reply["data"]["status"], "handed_off", "{reply}");
}

#[tokio::test]
async fn hostile_chat_input_gets_typed_errors() {
    let (api, _) = start_chat_api().await;
    let (id, token, _) = start_conversation(&api, "v-chat-5").await;
    let path = format!("/v1/chat/acme/conversations/{id}/messages");
    let cases: Vec<(Value, u16, &str)> = vec![
        (json!({ "token": token, "text": "   " }), 422, "empty_message"),
        (json!({ "token": token, "text": "x".repeat(2001) }), 413, "message_too_long"),
        (json!({ "token": token, "text": 5 }), 400, "malformed_json"),
        (json!({ "token": token, "text": "hi", "evil": 1 }), 400, "malformed_json"),
        (json!({ "token": "wrong", "text": "hi" }), 404, "not_found"),
        (json!({ "token": token, "text": "hi", "client_id": "<script>" }), 422, "validation_failed"),
    ];
    for (body, status, code_expected) in cases {
        let (got, reply) = public(&api, Method::POST, &path, Some(body.clone())).await;
        assert_eq!((got, code(&reply)), (status, code_expected), "{body:.120} → {reply}");
    }
    // 100 KB is over the body limit of a message, not a crash.
    let (status, _) = public(&api, Method::POST, &path, Some(json!({ "token": token, "text": "x".repeat(100 * 1024) }))).await;
    assert_eq!(status, 413);
    // Markup is stored and returned as text.
    let (status, reply) = say(&api, &id, &token, "<img src=x onerror=alert(1)>").await;
    assert_eq!(status, 201);
    assert_eq!(reply["data"]["messages"][0]["text"], "<img src=x onerror=alert(1)>");
    // A retried send (same client_id) is one message.
    let send = json!({ "token": token, "text": "same", "client_id": "c-1" });
    let (_, first) = public(&api, Method::POST, &path, Some(send.clone())).await;
    let (_, again) = public(&api, Method::POST, &path, Some(send)).await;
    assert_eq!(first["data"]["messages"][0]["message_id"], again["data"]["messages"][0]["message_id"]);
    // Floods: at most 10 messages a minute per conversation (2 sent above, plus the retry that is not counted).
    let mut limited = None;
    for n in 0..12 {
        let (status, reply) = say(&api, &id, &token, &format!("flood {n}")).await;
        if status == 429 {
            limited = Some((n, reply));
            break;
        }
    }
    let (n, reply) = limited.expect("the flood is stopped");
    assert_eq!((n, code(&reply)), (8, "rate_limited"));
    // Unknown sites and conversations; bad tokens on polls.
    assert_eq!(public(&api, Method::POST, "/v1/chat/ghost/conversations", Some(json!({}))).await.0, 404);
    assert_eq!(public(&api, Method::POST, "/v1/chat/acme/conversations", Some(json!({ "visitor_id": "../../etc" }))).await.0, 422);
    assert_eq!(public(&api, Method::GET, &format!("/v1/chat/acme/conversations/{id}?token=nope"), None).await.0, 404);
    assert_eq!(public(&api, Method::GET, "/v1/chat/acme/conversations/not-a-uuid?token=x", None).await.0, 404);
    assert_eq!(public(&api, Method::GET, &format!("/v1/chat/acme/conversations/{id}"), None).await.0, 400);
    // Staff routes need a role that answers chats.
    assert_eq!(api.call(Method::GET, "/api/v1/chat/conversations?site_id=acme", None, None).await.0, 401);
}
