//! The collector's lead-form endpoints on a real server: the public definition with progressive
//! profiling, server-side validation answering field errors, durable `form_submit` events, the
//! honeypot, and hostile input (malformed, oversized, wrong-typed, unknown ids).

mod support;

use crm_schemas::{EventKind, FormDefinition, Scalar, VisitorProfile};
use serde_json::{json, Value};
use support::{code, default_harness, Harness};

fn contact_form() -> FormDefinition {
    serde_json::from_value(json!({
        "site_id": "s1", "form_id": "contact", "name": "Contact sales", "submit_label": "Send",
        "success_message": "Thanks!", "created_at_ms": 0, "updated_at_ms": 0,
        "fields": [
            {"name": "email", "label": "Work email", "type": "email", "required": true, "company_email": true},
            {"name": "company", "label": "Company", "type": "text", "required": true, "progressive": true},
            {"name": "source", "type": "hidden", "value": "contact-page"}
        ]
    }))
    .unwrap()
}

async fn with_form() -> Harness {
    let h = default_harness().await;
    h.store.put_form(&contact_form()).await.unwrap();
    h
}

impl Harness {
    async fn submit(&self, form: &str, body: impl Into<reqwest::Body>) -> (u16, Value) {
        let response = self
            .client
            .post(format!("{}/v1/forms/s1/{form}/submit", self.base))
            .header("content-type", "text/plain;charset=UTF-8")
            .header("origin", "https://good.example")
            .body(body)
            .send()
            .await
            .unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }

    async fn definition(&self, path: &str) -> (u16, Value) {
        let response = self.client.get(format!("{}{path}", self.base)).send().await.unwrap();
        (response.status().as_u16(), response.json().await.unwrap_or(Value::Null))
    }
}

#[tokio::test]
async fn definition_is_public_and_skips_known_progressive_fields() {
    let h = with_form().await;
    let (status, body) = h.definition("/v1/forms/s1/contact?visitor_id=v1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["fields"].as_array().unwrap().len(), 3);
    assert_eq!(body["known"], json!([]));
    assert!(body["free_email_domains"].as_array().unwrap().iter().any(|d| d == "gmail.com"));
    assert!(body.get("created_at_ms").is_none(), "internal fields stay internal");

    let mut profile = VisitorProfile { site_id: "s1".into(), visitor_id: "v1".into(), ..VisitorProfile::default() };
    profile.traits.insert("company".into(), Scalar::Str("Acme".into()));
    profile.traits.insert("email".into(), Scalar::Str("ada@acme.example".into()));
    h.store.write(crm_store::WriteBatch { visitors: vec![profile], ..Default::default() }.into()).await.unwrap();
    let (_, body) = h.definition("/v1/forms/s1/contact?visitor_id=v1").await;
    assert_eq!(body["known"], json!(["company"]), "only progressive fields are skipped");

    // …and the server then accepts a submission without it.
    let (status, body) = h.submit("contact", json!({"visitor_id": "v1", "values": {"email": "ada@acme.example"}}).to_string()).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn valid_submission_becomes_a_durable_form_submit_event() {
    let h = with_form().await;
    let body = json!({"visitor_id": "v9", "session_id": "s9", "url": "https://good.example/contact", "title": "Contact",
                      "values": {"email": "ada@acme.example", "company": "Acme"}, "hp": ""});
    let (status, reply) = h.submit("contact", body.to_string()).await;
    assert_eq!(status, 202, "{reply}");
    let (events, letters) = h.drain().await;
    assert!(letters.is_empty());
    assert_eq!(events.len(), 1);
    let event = &events[0].event;
    assert_eq!(event.kind, Some(EventKind::FormSubmit));
    assert_eq!(event.event_id.as_deref(), reply["event_id"].as_str());
    assert_eq!((event.visitor_id.as_deref(), event.form_id.as_deref()), (Some("v9"), Some("contact")));
    let traits = event.traits.as_ref().unwrap();
    assert_eq!(traits["email"], Scalar::Str("ada@acme.example".into()));
    assert_eq!(traits["source"], Scalar::Str("contact-page".into()), "hidden value added server-side");
}

#[tokio::test]
async fn invalid_values_answer_every_field_error_and_store_nothing() {
    let h = with_form().await;
    let (status, body) = h.submit("contact", json!({"values": {"email": "ada@gmail.com"}}).to_string()).await;
    assert_eq!((status, code(&body)), (422, "invalid_fields"), "{body}");
    let fields: Vec<(&str, &str)> = body["error"]["details"]["fields"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["field"].as_str().unwrap(), f["code"].as_str().unwrap()))
        .collect();
    assert_eq!(fields, vec![("email", "company_email_required"), ("company", "required")]);
    let (status, body) = h.submit("contact", json!({"values": {"email": "not-an-email", "company": "A", "website": "x"}}).to_string()).await;
    assert_eq!(status, 422);
    assert_eq!(body["error"]["details"]["fields"][0]["code"], "unknown_field");
    let (events, letters) = h.drain().await;
    assert!(events.is_empty() && letters.is_empty(), "a form the visitor can correct is not data yet");
}

#[tokio::test]
async fn honeypot_looks_like_success_but_becomes_a_dead_letter() {
    let h = with_form().await;
    let body = json!({"visitor_id": "bot", "values": {"email": "ada@acme.example", "company": "Acme"}, "hp": "http://spam.example"});
    let (status, reply) = h.submit("contact", body.to_string()).await;
    assert_eq!((status, reply["ok"].as_bool()), (202, Some(true)));
    let (events, letters) = h.drain().await;
    assert!(events.is_empty());
    assert_eq!(letters.len(), 1);
    assert_eq!((letters[0].code.as_str(), letters[0].site_id.as_str()), ("honeypot", "s1"));
}

#[tokio::test]
async fn hostile_and_malformed_input_gets_typed_errors() {
    let h = with_form().await;
    let cases: Vec<(&str, String, u16, &str)> = vec![
        ("contact", "{not json".into(), 400, "malformed_json"),
        ("contact", json!({"values": ["a"]}).to_string(), 400, "wrong_type"),
        ("contact", json!({"values": {}, "admin": true}).to_string(), 400, "wrong_type"),
        ("contact", json!({"visitor_id": "has space", "values": {}}).to_string(), 400, "invalid_id"),
        ("contact", json!({"values": {"email": {"$ne": ""}, "company": ["x"]}}).to_string(), 422, "invalid_fields"),
        ("contact", format!("{{\"values\":{{\"company\":\"{}\"}}}}", "x".repeat(40_000)), 413, "payload_too_large"),
        ("missing", json!({"values": {}}).to_string(), 404, "not_found"),
    ];
    for (form, body, status, expected) in cases {
        let (got, reply) = h.submit(form, body.clone()).await;
        assert_eq!((got, code(&reply)), (status, expected), "{}: {reply}", &body[..body.len().min(80)]);
    }
    for path in ["/v1/forms/nosite/contact", "/v1/forms/s1/missing", "/v1/forms/s1/contact/extra", "/v1/forms/s1/c%20x"] {
        assert_eq!(h.definition(path).await.0, 404, "{path}");
    }
    let response = h.client.get(format!("{}/v1/forms/s1/contact", h.base)).header("origin", "https://evil.example").send().await.unwrap();
    assert_eq!(response.status().as_u16(), 403);
    let response = h.client.delete(format!("{}/v1/forms/s1/contact/submit", h.base)).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 405);
    let (events, _) = h.drain().await;
    assert!(events.is_empty());
}

#[tokio::test]
async fn cookieless_submissions_get_the_derived_visitor_id() {
    let h = with_form().await;
    h.post_json(&json!({"v": 1, "type": "pageview", "site_id": "s1", "url": "https://good.example/contact"})).await;
    let (status, _) = h.submit("contact", json!({"values": {"email": "ada@acme.example", "company": "Acme"}}).to_string()).await;
    assert_eq!(status, 202);
    let (events, _) = h.drain().await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0].event.visitor_id, events[1].event.visitor_id, "same day, IP and UA: same visitor");
}
