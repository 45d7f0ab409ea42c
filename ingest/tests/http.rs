//! The collector served for real on port 0 with the embedded log and store: every bad-input
//! class answers its status and error code, good events are acknowledged only once durable,
//! and refused events become dead letters in the log.

use std::collections::HashSet;
use std::io::Write;
use std::num::NonZeroU32;

use crm_eventlog::EmbeddedLogConfig;
use crm_ingest::CollectorConfig;
use serde_json::{json, Value};

mod support;

use support::{code, default_harness, pageview, start};

#[tokio::test]
async fn accepts_all_three_body_shapes_as_json_or_text_plain() {
    let h = default_harness().await;
    assert_eq!(h.post_json(&pageview("s1")).await, (202, json!({"accepted": 1, "rejected": 0})));
    assert_eq!(h.post_json(&json!([pageview("s1"), pageview("s1")])).await.0, 202);
    let (status, body, _) = h.post(json!({"events": [pageview("s1")]}).to_string(), "text/plain;charset=UTF-8").await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)));
    let (events, letters) = h.drain().await;
    assert_eq!(events.len(), 4);
    assert!(letters.is_empty());
    assert!(events.iter().all(|e| e.ip.as_deref() == Some("127.0.0.1") && e.event.event_id.is_some()));
}

#[tokio::test]
async fn gzip_by_header_and_by_magic_bytes() {
    let h = default_harness().await;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(json!([pageview("s1")]).to_string().as_bytes()).unwrap();
    let gz = encoder.finish().unwrap();
    let response = h
        .client
        .post(format!("{}/v1/events", h.base))
        .header("content-encoding", "gzip")
        .body(gz.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 202);
    let (status, _, _) = h.post(gz, "text/plain").await;
    assert_eq!(status, 202, "gzip detected without a header");
    let (status, body, _) = h.post(vec![0x1f, 0x8b, 8, 0, 1, 2, 3], "text/plain").await;
    assert_eq!((status, code(&body)), (400, "malformed_gzip"));
    let mut bomb = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    bomb.write_all(&vec![b' '; 8 * 1024 * 1024]).unwrap();
    let (status, body, _) = h.post(bomb.finish().unwrap(), "text/plain").await;
    assert_eq!((status, code(&body)), (413, "payload_too_large"), "decompressed size is capped");
    let response = h.client.post(format!("{}/v1/events", h.base)).header("content-encoding", "br").body("x").send().await.unwrap();
    assert_eq!(response.status(), 415);
}

#[tokio::test]
async fn request_level_errors_have_status_and_code() {
    let h = default_harness().await;
    let cases: Vec<(Vec<u8>, &str, u16, &str)> = vec![
        (b"{not json".to_vec(), "application/json", 400, "malformed_json"),
        (b"\"a string\"".to_vec(), "application/json", 400, "malformed_json"),
        (b"[]".to_vec(), "application/json", 400, "empty_batch"),
        (b"{\"events\":[]}".to_vec(), "application/json", 400, "empty_batch"),
        (vec![0xff, 0xfe, 0x7b], "application/json", 400, "invalid_utf8"),
        (b"<xml/>".to_vec(), "application/xml", 415, "unsupported_media_type"),
        (vec![b'['; 100_000], "application/json", 400, "malformed_json"),
        (format!("[{}]", vec![pageview("s1").to_string(); 501].join(",")).into_bytes(), "application/json", 413, "too_many_events"),
        (vec![b' '; 600 * 1024], "text/plain", 413, "payload_too_large"),
    ];
    for (body, content_type, status, expected) in cases {
        let (got, reply, _) = h.post(body, content_type).await;
        assert_eq!((got, code(&reply)), (status, expected), "{reply}");
        assert_eq!(reply["success"], false);
    }
    let response = h.client.get(format!("{}/v1/events", h.base)).send().await.unwrap();
    assert_eq!(response.status(), 405);
    let response = h.client.get(format!("{}/v1/nope", h.base)).send().await.unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test]
async fn event_level_errors_and_dead_letters() {
    let h = default_harness().await;
    let single_cases = [
        (json!({"v": 1, "type": "pageview", "site_id": "s1"}), 400, "missing_field"),
        (json!({"v": "1", "type": "pageview", "site_id": "s1", "url": "https://x"}), 400, "wrong_type"),
        (json!({"v": 1, "type": "pageview", "site_id": "s1", "url": "https://x", "props": {"nested": {"a": 1}}}), 400, "wrong_type"),
        (json!({"v": 7, "type": "pageview", "site_id": "s1", "url": "https://x"}), 400, "unsupported_version"),
        (json!({"v": 1, "type": "pageview", "site_id": "nope", "url": "https://x"}), 401, "unknown_site"),
        (json!({"v": 1, "type": "pageview", "site_id": "s1", "url": format!("https://x/{}", "a".repeat(40_000))}), 400, "event_too_large"),
        // Chat events carry intent points and come from the chat API only.
        (json!({"v": 1, "type": "custom", "site_id": "s1", "name": "chat_handoff"}), 400, "reserved_name"),
    ];
    for (event, status, expected) in &single_cases {
        let (got, reply) = h.post_json(event).await;
        assert_eq!((got, code(&reply)), (*status, *expected), "{event}: {reply}");
    }
    // A mixed batch: good events are accepted, bad ones reported by index and dead-lettered.
    let batch = json!([pageview("s1"), {"v": 1, "type": "engagement", "site_id": "s1", "scroll_depth": 500, "engaged_ms": 1}, pageview("s1"), {"v": 1, "type": "pageview", "site_id": "ghost", "url": "https://x"}]);
    let (status, reply) = h.post_json(&batch).await;
    assert_eq!(status, 202);
    assert_eq!((reply["accepted"].as_u64(), reply["rejected"].as_u64()), (Some(2), Some(2)));
    assert_eq!(reply["errors"][0]["index"], 1);
    assert_eq!(reply["errors"][0]["code"], "invalid_value");
    assert_eq!(reply["errors"][0]["field"], "scroll_depth");
    assert_eq!(reply["errors"][1]["code"], "unknown_site");
    let (events, letters) = h.drain().await;
    assert_eq!(events.len(), 2);
    let mut codes: Vec<&str> = letters.iter().map(|l| l.code.as_str()).collect();
    codes.sort();
    // Dead letters for the known site (unknown sites are counted, not stored).
    assert_eq!(codes, vec!["event_too_large", "invalid_value", "missing_field", "reserved_name", "unsupported_version", "wrong_type", "wrong_type"]);
    assert!(letters.iter().all(|l| l.site_id == "s1"));
}

#[tokio::test]
async fn origins_cors_and_preflight() {
    let h = default_harness().await;
    let send = |origin: &'static str| {
        h.client.post(format!("{}/v1/events", h.base)).header("origin", origin).body(pageview("s1").to_string()).send()
    };
    let good = send("https://good.example").await.unwrap();
    assert_eq!(good.status(), 202);
    assert_eq!(good.headers()["access-control-allow-origin"], "https://good.example");
    let bad = send("https://evil.example").await.unwrap();
    assert_eq!(bad.status(), 403);
    assert_eq!(bad.json::<Value>().await.unwrap()["error"]["code"], "origin_not_allowed");
    let preflight = h
        .client
        .request(reqwest::Method::OPTIONS, format!("{}/v1/events", h.base))
        .header("origin", "https://good.example")
        .header("access-control-request-method", "POST")
        .send()
        .await
        .unwrap();
    assert_eq!(preflight.status(), 204);
    assert!(preflight.headers()["access-control-allow-methods"].to_str().unwrap().contains("POST"));
}

#[tokio::test]
async fn pixel_fallback_answers_a_gif() {
    let h = default_harness().await;
    let response = h
        .client
        .get(format!("{}/v1/p.gif?site_id=open&type=pageview&url=https%3A%2F%2Fa.example%2Fdemo&visitor_id=px1", h.base))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "image/gif");
    assert_eq!(response.bytes().await.unwrap().len(), 43);
    let bad = h.client.get(format!("{}/v1/p.gif?site_id=open&type=pageview", h.base)).send().await.unwrap();
    assert_eq!(bad.status(), 400);
    // A query past the event size is named as such (not as a request body).
    let long = h.client.get(format!("{}/v1/p.gif?site_id=open&type=pageview&url=https%3A%2F%2Fa.example%2F{}", h.base, "x".repeat(40_000))).send().await.unwrap();
    assert_eq!(long.status(), 414);
    let reply: serde_json::Value = long.json().await.unwrap();
    assert_eq!(code(&reply), "query_too_long");
    assert!(reply["error"]["message"].as_str().unwrap().contains("query string"), "{reply}");
    let nul = h.client.get(format!("{}/v1/p.gif?site_id=open&type=pageview&url=https%3A%2F%2Fa.example%2F%00x&visitor_id=px2", h.base)).send().await.unwrap();
    assert_eq!(nul.status(), 400, "a NUL byte in the URL is refused");
    let (events, _) = h.drain().await;
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event.visitor_id.as_deref(), Some("px1"));
}

/// A site that honours Do-Not-Track and Global Privacy Control: the opted-out requests' events
/// are answered 202 as ignored and never reach the log; other sites and other values are kept.
#[tokio::test]
async fn dnt_and_gpc_are_honoured_where_the_site_says_so() {
    let h = default_harness().await;
    let send = |body: Value, headers: &'static [(&'static str, &'static str)]| {
        let mut request = h.client.post(format!("{}/v1/events", h.base)).header("content-type", "application/json").body(body.to_string());
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        async move {
            let response = request.send().await.unwrap();
            (response.status().as_u16(), response.json::<Value>().await.unwrap())
        }
    };
    for headers in [&[("dnt", "1")][..], &[("sec-gpc", "1")], &[("sec-gpc", " 1 "), ("dnt", "0")]] {
        let (status, body) = send(pageview("private"), headers).await;
        assert_eq!((status, body), (202, json!({"accepted": 0, "rejected": 0, "ignored": 1})), "{headers:?}");
    }
    assert_eq!(send(pageview("private"), &[("dnt", "0"), ("sec-gpc", "0")]).await, (202, json!({"accepted": 1, "rejected": 0})));
    assert_eq!(send(pageview("private"), &[]).await.1["accepted"], 1);
    assert_eq!(send(pageview("open"), &[("dnt", "1")]).await.1["accepted"], 1, "a site that does not honour it keeps the events");
    let (status, body) = send(json!({"events": [pageview("private"), pageview("open"), {"v": 1, "type": "pageview", "site_id": "nowhere"}]}), &[("sec-gpc", "1")]).await;
    assert_eq!((status, &body["accepted"], &body["ignored"], &body["rejected"]), (202, &json!(1), &json!(1), &json!(1)), "{body}");
    let pixel = h.client.get(format!("{}/v1/p.gif?site_id=private&type=pageview&url=https%3A%2F%2Fa.example%2F&visitor_id=px", h.base)).header("dnt", "1").send().await.unwrap();
    assert_eq!(pixel.status(), 200, "the pixel still answers a GIF");
    let (events, letters) = h.drain().await;
    let sites: Vec<&str> = events.iter().map(|e| e.event.site_id.as_str()).collect();
    assert_eq!(sites, ["private", "private", "open", "open"], "only the events without an opt-out of the private site");
    assert!(letters.is_empty());
}

#[tokio::test]
async fn cookieless_events_get_a_derived_visitor_id() {
    let h = default_harness().await;
    let event = json!({"v": 1, "type": "pageview", "site_id": "open", "url": "https://a.example/"});
    assert_eq!(h.post_json(&event).await.0, 202);
    assert_eq!(h.post_json(&event).await.0, 202);
    let (events, _) = h.drain().await;
    let ids: Vec<_> = events.iter().map(|e| e.event.visitor_id.clone().unwrap()).collect();
    assert!(ids[0].starts_with("cl-"));
    assert_eq!(ids[0], ids[1], "same site, IP and UA on the same day");
}

#[tokio::test]
async fn a_user_agent_that_is_not_ascii_is_kept_not_dropped() {
    let h = default_harness().await;
    let event = json!({"v": 1, "type": "pageview", "site_id": "open", "url": "https://a.example/"});
    for agent in [&b"Mozilla/5.0 (Linux; Android 14; \xd0\x9c\xd0\xb8) Chrome/131.0"[..], b"Mozilla/5.0 (Linux; Android 14; \xe5\x8d\x8e) Chrome/131.0", b"Mozilla/5.0 \xff\xfe"] {
        let value = reqwest::header::HeaderValue::from_bytes(agent).unwrap();
        let response = h.client.post(format!("{}/v1/events", h.base)).header("user-agent", value).body(event.to_string()).send().await.unwrap();
        assert_eq!(response.status(), 202);
    }
    let (events, _) = h.drain().await;
    let agents: Vec<_> = events.iter().map(|e| e.user_agent.clone().expect("kept")).collect();
    assert_eq!(agents[0], "Mozilla/5.0 (Linux; Android 14; Ми) Chrome/131.0");
    assert_eq!(agents[2], "Mozilla/5.0 \u{fffd}\u{fffd}", "invalid UTF-8 is replaced, not refused");
    let ids: HashSet<_> = events.iter().map(|e| e.event.visitor_id.clone().unwrap()).collect();
    assert_eq!(ids.len(), 3, "each agent has its own cookieless id");
}

#[tokio::test]
async fn per_ip_rate_limit_answers_429_with_retry_after() {
    let h = start(CollectorConfig { per_ip_rate: NonZeroU32::new(1), ..CollectorConfig::default() }, |c| c).await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..5 {
        let (status, body, headers) = h.post(pageview("s1").to_string(), "application/json").await;
        if status == 429 {
            assert_eq!(code(&body), "rate_limited");
            retry_after = headers.get("retry-after").map(|v| v.to_str().unwrap().to_owned());
        }
        statuses.push(status);
    }
    assert_eq!(&statuses[..2], &[202, 202], "burst of two");
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn per_site_rate_limit_refuses_the_excess_events() {
    let h = start(CollectorConfig { per_ip_rate: None, per_site_rate: NonZeroU32::new(2), ..CollectorConfig::default() }, |c| c).await;
    let batch = json!([pageview("s1"), pageview("s1"), pageview("s1"), pageview("s1"), pageview("s1"), pageview("s1")]);
    let (status, reply) = h.post_json(&batch).await;
    assert_eq!(status, 202);
    assert_eq!(reply["accepted"], 4, "burst of 2 × rate");
    assert_eq!(reply["errors"][0]["code"], "rate_limited");
    let (status, reply) = h.post_json(&pageview("s1")).await;
    assert_eq!((status, code(&reply)), (429, "rate_limited"));
}

#[tokio::test]
async fn full_log_answers_503_and_never_acknowledges() {
    let h = start(CollectorConfig { per_ip_rate: None, ..CollectorConfig::default() }, |c| EmbeddedLogConfig { max_bytes: 2_000, ..c }).await;
    let mut last = (0, Value::Null, reqwest::header::HeaderMap::new());
    let mut accepted = 0;
    for _ in 0..20 {
        last = h.post(pageview("s1").to_string(), "application/json").await;
        if last.0 != 202 {
            break;
        }
        accepted += 1;
    }
    assert_eq!((last.0, code(&last.1)), (503, "log_unavailable"));
    assert_eq!(last.2["retry-after"], "1");
    let (events, _) = h.drain().await;
    assert_eq!(events.len(), accepted, "exactly the acknowledged events are in the log");
}

#[tokio::test]
async fn hostile_event_contents_get_their_own_codes() {
    let h = default_harness().await;
    let deep = format!(r#"{{"v":1,"type":"pageview","site_id":"open","url":"https://a.example/","props":{{"k":{}1{}}}}}"#, "[".repeat(100_000), "]".repeat(100_000));
    let mut nul = pageview("open");
    nul["url"] = json!("https://a.example/pricing\u{0}evil");
    let mut crlf = pageview("open");
    crlf["referrer"] = json!("https://r.example/\r\nSet-Cookie: x=1");
    let small_deep = format!(r#"{{"v":1,"type":"pageview","site_id":"open","url":"https://a.example/","props":{{"k":{}1{}}}}}"#, "[".repeat(200), "]".repeat(200));
    for (event, expected) in [(deep, "too_deeply_nested"), (small_deep, "too_deeply_nested"), (nul.to_string(), "invalid_url"), (crlf.to_string(), "invalid_url")] {
        let (status, reply, _) = h.post(format!(r#"{{"events":[{event}]}}"#), "application/json").await;
        assert_eq!(status, 400, "{reply}");
        assert_eq!(reply["errors"][0]["code"].as_str().or(reply["error"]["code"].as_str()), Some(expected), "{reply}");
    }
    let (events, letters) = h.drain().await;
    assert!(events.is_empty(), "nothing hostile was accepted");
    // Each is kept as a dead letter of its site with the reason.
    let reasons: Vec<&str> = letters.iter().map(|l| l.code.as_str()).collect();
    assert_eq!(reasons, vec!["too_deeply_nested", "too_deeply_nested", "invalid_url", "invalid_url"], "{reasons:?}");
}
