//! The collector's request handling: routing, limits, parsing of the three body shapes (one
//! event, an array, `{"events":[…]}`), per-event validation, site and origin checks, rate
//! limits, and the append of accepted events and dead letters to the event log.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use crm_eventlog::{EventLog, Record, Topic};
use crm_schemas::{classify_serde_error, CollectedEvent, DeadLetter, Limits, ValidationError, WireEvent};
use crm_service::{error_response, json_response, text_response, Body, RemoteAddr};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http::{header, HeaderMap, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::body::{check_content_type, read_body};
use crate::{CollectorConfig, CookielessIds, IngestError, IngestMetrics, SiteDirectory};

mod forms;

/// The transparent 1×1 GIF answered by the pixel endpoint.
const PIXEL_GIF: &[u8] = &[
    0x47, 0x49, 0x46, 0x38, 0x39, 0x61, 0x01, 0x00, 0x01, 0x00, 0x80, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff, 0xff,
    0x21, 0xf9, 0x04, 0x01, 0x00, 0x00, 0x00, 0x00, 0x2c, 0x00, 0x00, 0x00, 0x00, 0x01, 0x00, 0x01, 0x00, 0x00, 0x02,
    0x02, 0x44, 0x01, 0x00, 0x3b,
];
const DEAD_LETTER_PAYLOAD_BYTES: usize = 4096;

pub struct Collector {
    config: CollectorConfig,
    limits: Limits,
    log: Arc<dyn EventLog>,
    sites: Arc<SiteDirectory>,
    ids: CookielessIds,
    forms: forms::FormCache,
    metrics: IngestMetrics,
    ip_limiter: Option<DefaultKeyedRateLimiter<IpAddr>>,
    site_limiter: Option<DefaultKeyedRateLimiter<String>>,
    clock: DefaultClock,
}

/// What the server knows about a request besides its events.
struct RequestContext {
    ip: Option<IpAddr>,
    user_agent: Option<String>,
    origin: Option<String>,
    /// The request carries `DNT: 1` or `Sec-GPC: 1`.
    opted_out: bool,
    received_at_ms: i64,
}

/// One event as found in the body: its raw text and the parse result.
struct Candidate<'a> {
    raw: &'a str,
    parsed: Result<WireEvent, ValidationError>,
}

#[derive(Serialize)]
struct Rejection {
    index: usize,
    code: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<String>,
    message: String,
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
    rejected: usize,
    /// Dropped unrecorded: the visitor opted out (DNT/GPC) and the site honours it.
    #[serde(skip_serializing_if = "is_zero")]
    ignored: usize,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    errors: Vec<Rejection>,
}

#[derive(Deserialize)]
struct BatchShape<'a> {
    #[serde(borrow)]
    events: Option<Vec<&'a RawValue>>,
}

#[derive(Deserialize)]
struct SiteOnly {
    site_id: Option<String>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

fn quota(rate: NonZeroU32) -> Quota {
    Quota::per_second(rate).allow_burst(rate.saturating_mul(NonZeroU32::new(2).expect("2 > 0")))
}

fn header_string(headers: &HeaderMap, name: header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

impl Collector {
    pub fn new(config: CollectorConfig, log: Arc<dyn EventLog>, sites: Arc<SiteDirectory>, metrics: IngestMetrics) -> Arc<Collector> {
        Arc::new(Collector {
            ip_limiter: config.per_ip_rate.map(|r| RateLimiter::keyed(quota(r))),
            site_limiter: config.per_site_rate.map(|r| RateLimiter::keyed(quota(r))),
            config,
            limits: Limits::default(),
            log,
            sites,
            ids: CookielessIds::new(),
            forms: forms::FormCache::default(),
            metrics,
            clock: DefaultClock::default(),
        })
    }

    /// Forgets idle rate-limit keys; call periodically.
    pub fn housekeeping(&self) {
        if let Some(limiter) = &self.ip_limiter {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
        if let Some(limiter) = &self.site_limiter {
            limiter.retain_recent();
        }
    }

    /// Whether a request path belongs to the collector (beacons and the widget files). The
    /// knowledge base's and the chat's public APIs (`/v1/kb/`, `/v1/chat/`) share the `/v1/`
    /// prefix but are the API's.
    pub fn owns_path(path: &str) -> bool {
        (path.starts_with("/v1/") && !path.starts_with("/v1/kb/") && !path.starts_with("/v1/chat/")) || path.starts_with("/widgets/")
    }

    pub async fn handle(self: Arc<Self>, request: Request<Incoming>) -> Response<Body> {
        let started = Instant::now();
        let origin = header_string(request.headers(), header::ORIGIN);
        let mut response = match (request.method().clone(), request.uri().path()) {
            (Method::POST, "/v1/events") => self.post_events(request).await.unwrap_or_else(|e| self.error(e)),
            (Method::GET, "/v1/p.gif") => self.pixel(request).await.unwrap_or_else(|e| self.error(e)),
            (Method::OPTIONS, "/v1/events" | "/v1/p.gif") => preflight(),
            (method, path) if path.starts_with("/v1/forms/") => self.forms_route(method, request).await.unwrap_or_else(|e| self.error(e)),
            (Method::GET | Method::HEAD, path) if path.starts_with("/widgets/") => crate::widgets::serve(path),
            (_, "/v1/events" | "/v1/p.gif") => {
                error_response(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "use POST /v1/events or GET /v1/p.gif", None)
            }
            _ => error_response(StatusCode::NOT_FOUND, "not_found", "no such collector endpoint", None),
        };
        if let Some(origin) = origin.and_then(|o| HeaderValue::from_str(&o).ok()) {
            let headers = response.headers_mut();
            headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
            headers.insert(header::VARY, HeaderValue::from_static("Origin"));
        }
        self.metrics
            .requests
            .get_or_create(&crate::metrics::StatusLabel { status: response.status().as_u16() })
            .inc();
        self.metrics.latency.observe(started.elapsed().as_secs_f64());
        response
    }

    fn error(&self, err: IngestError) -> Response<Body> {
        if matches!(err, IngestError::LogUnavailable(_) | IngestError::Internal(_)) {
            tracing::warn!(error = %err, "collector could not accept events");
        }
        let mut response = error_response(err.status(), err.code(), &err.to_string(), err.details());
        if let Some(secs) = err.retry_after_secs() {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(secs));
        }
        response
    }

    fn context(&self, headers: &HeaderMap, remote: Option<RemoteAddr>) -> RequestContext {
        RequestContext {
            ip: crm_service::client_ip(headers, remote.map(|r| r.0.ip()), self.config.trust_forwarded_for),
            // Kept when it is not visible ASCII (lossily): dropping it would make the request a
            // bot and give every such agent of an address one cookieless id.
            user_agent: headers.get(header::USER_AGENT).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned()),
            origin: header_string(headers, header::ORIGIN),
            opted_out: [header::DNT.as_str(), "sec-gpc"].iter().any(|name| headers.get(*name).is_some_and(|v| v.as_bytes().trim_ascii() == b"1")),
            received_at_ms: now_ms(),
        }
    }

    fn check_ip_rate(&self, ip: Option<IpAddr>) -> Result<(), IngestError> {
        if let (Some(limiter), Some(ip)) = (&self.ip_limiter, ip) {
            if let Err(not_until) = limiter.check_key(&ip) {
                self.metrics.reject("rate_limited_ip", 1);
                return Err(IngestError::RateLimited { retry_after: not_until.wait_time_from(self.clock.now()) });
            }
        }
        Ok(())
    }

    async fn post_events(&self, request: Request<Incoming>) -> Result<Response<Body>, IngestError> {
        let (parts, body) = request.into_parts();
        let context = self.context(&parts.headers, parts.extensions.get::<RemoteAddr>().copied());
        self.check_ip_rate(context.ip)?;
        check_content_type(&parts.headers)?;
        let bytes = read_body(&parts.headers, body, self.config.max_body_bytes, self.config.body_timeout).await.inspect_err(|e| self.metrics.reject(e.code(), 1))?;
        let text = std::str::from_utf8(&bytes).map_err(|_| IngestError::InvalidUtf8)?;
        let raws = self.split_events(text).inspect_err(|e| self.metrics.reject(e.code(), 1))?;
        let candidates = raws
            .into_iter()
            .map(|raw| {
                let raw = raw.get();
                // An oversized or unparsable event that nests deeply is named for the nesting.
                let too_deep = || {
                    crm_schemas::nests_deeper_than(raw, crm_schemas::MAX_NESTING).then(|| {
                        ValidationError::new("too_deeply_nested", None, format!("event nests arrays or objects deeper than {} levels", crm_schemas::MAX_NESTING))
                    })
                };
                let parsed = if raw.len() > self.config.max_event_bytes {
                    Err(too_deep().unwrap_or_else(|| {
                        ValidationError::new("event_too_large", None, format!("event exceeds {} bytes", self.config.max_event_bytes))
                    }))
                } else {
                    serde_json::from_str::<WireEvent>(raw).map_err(|e| too_deep().unwrap_or_else(|| classify_serde_error(&e)))
                };
                Candidate { raw, parsed }
            })
            .collect();
        self.accept(candidates, &context).await
    }

    /// Splits a body into raw event objects, whatever its shape.
    fn split_events<'a>(&self, text: &'a str) -> Result<Vec<&'a RawValue>, IngestError> {
        let trimmed = text.trim_start();
        let raws: Vec<&RawValue> = if trimmed.starts_with('[') {
            serde_json::from_str(text).map_err(|e| IngestError::MalformedJson(e.to_string()))?
        } else if trimmed.starts_with('{') {
            let whole: &RawValue = serde_json::from_str(text).map_err(|e| IngestError::MalformedJson(e.to_string()))?;
            match serde_json::from_str::<BatchShape>(whole.get()) {
                Ok(BatchShape { events: Some(events) }) => events,
                _ => vec![whole],
            }
        } else {
            return Err(IngestError::MalformedJson("expected a JSON object or array".into()));
        };
        if raws.is_empty() {
            return Err(IngestError::EmptyBatch);
        }
        if raws.len() > self.config.max_batch_events {
            return Err(IngestError::TooManyEvents { count: raws.len(), limit: self.config.max_batch_events });
        }
        Ok(raws)
    }

    async fn pixel(&self, request: Request<Incoming>) -> Result<Response<Body>, IngestError> {
        let context = self.context(request.headers(), request.extensions().get::<RemoteAddr>().copied());
        self.check_ip_rate(context.ip)?;
        let query = request.uri().query().unwrap_or("");
        if query.len() > self.config.max_event_bytes {
            return Err(IngestError::QueryTooLong { limit: self.config.max_event_bytes });
        }
        let candidate = Candidate { raw: query, parsed: wire_from_query(query) };
        let response = self.accept(vec![candidate], &context).await?;
        if response.status() != StatusCode::ACCEPTED {
            return Ok(response);
        }
        let mut gif = text_response(StatusCode::OK, "image/gif", Bytes::from_static(PIXEL_GIF));
        gif.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store, max-age=0"));
        Ok(gif)
    }

    /// Validates candidates, appends accepted events and dead letters, and builds the answer.
    async fn accept(&self, candidates: Vec<Candidate<'_>>, context: &RequestContext) -> Result<Response<Body>, IngestError> {
        let mut records = Vec::with_capacity(candidates.len());
        let mut dead_letters = Vec::new();
        let mut rejections = Vec::new();
        let mut ignored = 0;
        let ip_text = context.ip.map(|ip| ip.to_string());
        for (index, candidate) in candidates.into_iter().enumerate() {
            let mut reject = |error: ValidationError, site: Option<&str>, dead_letter: bool| {
                if let (true, Some(site)) = (dead_letter, site) {
                    dead_letters.push(dead_letter_record(site, context.received_at_ms, &error, candidate.raw));
                }
                rejections.push(Rejection { index, code: error.code, field: error.field, message: error.message });
            };
            let wire = match candidate.parsed {
                Ok(wire) => wire,
                Err(error) => {
                    let site = serde_json::from_str::<SiteOnly>(candidate.raw).ok().and_then(|s| s.site_id);
                    let known = match &site {
                        Some(id) => self.sites.get(id).await.map(|s| s.site_id.clone()),
                        None => None,
                    };
                    reject(error, known.as_deref(), true);
                    continue;
                }
            };
            let Some(site) = self.sites.get(&wire.site_id).await else {
                reject(ValidationError::new("unknown_site", Some("site_id"), format!("site {:?} is not configured", wire.site_id)), None, false);
                continue;
            };
            if let Some(origin) = &context.origin {
                if !site.origin_allowed(origin) {
                    let error = ValidationError::new("origin_not_allowed", None, format!("origin {origin} may not send events for this site"));
                    reject(error, Some(&site.site_id), true);
                    continue;
                }
            }
            if context.opted_out && site.privacy.honor_dnt_gpc {
                ignored += 1;
                continue;
            }
            if let Some(limiter) = &self.site_limiter {
                if limiter.check_key(&site.site_id).is_err() {
                    reject(ValidationError::new("rate_limited", None, "site event rate exceeded; retry later"), None, false);
                    continue;
                }
            }
            let mut event = match wire.validate(&self.limits) {
                Ok(event) => event,
                Err(error) => {
                    reject(error, Some(&site.site_id), true);
                    continue;
                }
            };
            // `chat_*` events come from the chat API (they carry intent points); a page cannot
            // send them as its own custom events.
            if matches!(&event.body, crm_schemas::EventBody::Custom { name } if name.starts_with("chat_")) {
                reject(ValidationError::new("reserved_name", Some("name"), "custom event names starting with chat_ are reserved for the chat widget"), Some(&site.site_id), true);
                continue;
            }
            if event.visitor_id.is_none() {
                let ua = context.user_agent.as_deref().unwrap_or("");
                event.visitor_id = Some(self.ids.derive(context.received_at_ms, &event.site_id, ip_text.as_deref().unwrap_or(""), ua));
            }
            let key = format!("{}:{}", event.site_id, event.visitor_id.as_deref().unwrap_or(""));
            let collected = CollectedEvent {
                event: WireEvent::from(&event),
                received_at_ms: context.received_at_ms,
                ip: ip_text.clone(),
                user_agent: context.user_agent.clone(),
            };
            let payload = serde_json::to_vec(&collected).map_err(|e| IngestError::Internal(e.to_string()))?;
            records.push(Record::new(Topic::Events, key, payload).with_event_time(event.ts_ms));
        }
        let accepted = records.len();
        for rejection in &rejections {
            self.metrics.reject(rejection.code, 1);
        }
        let valid_records = accepted;
        records.extend(dead_letters);
        if !records.is_empty() {
            if let Err(err) = self.log.append(records).await {
                if valid_records > 0 {
                    return Err(if err.is_retryable() {
                        IngestError::LogUnavailable(err.to_string())
                    } else {
                        IngestError::Internal(err.to_string())
                    });
                }
                tracing::warn!(error = %err, "dead letters could not be appended");
            }
        }
        self.metrics.accepted.inc_by(accepted as u64);
        self.metrics.ignored.inc_by(ignored as u64);
        let outcome = Accepted { accepted, rejected: rejections.len(), ignored, errors: rejections };
        // Ignored events are answered like accepted ones: the page learns nothing it could
        // retry, and the visitor's choice was honoured.
        if accepted > 0 || ignored > 0 {
            return Ok(json_response(StatusCode::ACCEPTED, &outcome));
        }
        Ok(self.all_rejected(outcome))
    }

    /// The answer when nothing was accepted: the most specific status for what went wrong.
    fn all_rejected(&self, outcome: Accepted) -> Response<Body> {
        let all = |code: &str| outcome.errors.iter().all(|r| r.code == code);
        let (status, code, message) = if all("unknown_site") {
            (StatusCode::UNAUTHORIZED, "unknown_site", "no event names a configured site".to_owned())
        } else if all("origin_not_allowed") {
            (StatusCode::FORBIDDEN, "origin_not_allowed", "this origin may not send events for the site".to_owned())
        } else if all("rate_limited") {
            (StatusCode::TOO_MANY_REQUESTS, "rate_limited", "site event rate exceeded; retry later".to_owned())
        } else if outcome.errors.len() == 1 {
            (StatusCode::BAD_REQUEST, outcome.errors[0].code, outcome.errors[0].message.clone())
        } else {
            (StatusCode::BAD_REQUEST, "invalid_events", "no event in the batch was valid".to_owned())
        };
        let details = serde_json::to_value(&outcome).ok();
        let mut response = error_response(status, code, &message, details);
        if status == StatusCode::TOO_MANY_REQUESTS {
            response.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from(1u64));
        }
        response
    }
}

fn dead_letter_record(site_id: &str, received_at_ms: i64, error: &ValidationError, raw: &str) -> Record {
    let mut cut = raw.len().min(DEAD_LETTER_PAYLOAD_BYTES);
    while !raw.is_char_boundary(cut) {
        cut -= 1;
    }
    let message = match &error.field {
        Some(field) if !error.message.contains(field.as_str()) => format!("{} ({field})", error.message),
        _ => error.message.clone(),
    };
    let letter = DeadLetter {
        id: Uuid::now_v7(),
        site_id: site_id.to_owned(),
        received_at_ms,
        code: error.code.to_owned(),
        message,
        payload: raw[..cut].to_owned(),
    };
    let payload = serde_json::to_vec(&letter).unwrap_or_default();
    Record::new(Topic::DeadLetters, site_id.to_owned(), payload)
}

fn preflight() -> Response<Body> {
    let mut response = crm_service::empty_response(StatusCode::NO_CONTENT);
    let headers = response.headers_mut();
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, GET, OPTIONS"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("Content-Type, Content-Encoding"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    response
}

/// Builds a wire event from pixel query parameters (`site_id`, `type`, `url`, `referrer`,
/// `title`, `visitor_id`, `session_id`, `event_id`, `ts`, `lang`, `name`; `v` defaults to 1).
fn wire_from_query(query: &str) -> Result<WireEvent, ValidationError> {
    let mut object = serde_json::Map::new();
    object.insert("v".into(), serde_json::Value::from(1));
    for (key, value) in form_urlencoded::parse(query.as_bytes()) {
        let value = match key.as_ref() {
            "v" | "ts" => match value.parse::<i64>() {
                Ok(number) => serde_json::Value::from(number),
                Err(_) => return Err(ValidationError::new("wrong_type", Some(&key), format!("{key} must be an integer"))),
            },
            "site_id" | "type" | "url" | "referrer" | "title" | "visitor_id" | "session_id" | "event_id" | "lang" | "name" => {
                serde_json::Value::from(value.into_owned())
            }
            _ => continue,
        };
        object.insert(key.into_owned(), value);
    }
    serde_json::from_value(serde_json::Value::Object(object)).map_err(|e| classify_serde_error(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knowledge_base_api_is_not_the_collectors() {
        for ours in ["/v1/events", "/v1/p.gif", "/v1/forms/s/f", "/widgets/tracking.js"] {
            assert!(Collector::owns_path(ours), "{ours}");
        }
        for theirs in ["/v1/kb/demo/search", "/v1/kb/demo/feedback", "/v1/chat/demo/conversations", "/api/v1/sites", "/help/demo/"] {
            assert!(!Collector::owns_path(theirs), "{theirs}");
        }
    }

    #[test]
    fn pixel_query_maps_to_a_wire_event() {
        let wire = wire_from_query("site_id=s1&type=pageview&url=https%3A%2F%2Fa.example%2Fpricing&ts=1700000000000&junk=1").unwrap();
        assert_eq!(wire.site_id, "s1");
        assert_eq!(wire.url.as_deref(), Some("https://a.example/pricing"));
        assert_eq!(wire.ts, Some(1_700_000_000_000));
        assert_eq!(wire_from_query("site_id=s&type=pageview&ts=soon").unwrap_err().code, "wrong_type");
        assert_eq!(wire_from_query("type=pageview").unwrap_err().code, "missing_field");
    }

    #[test]
    fn pixel_is_a_valid_gif() {
        assert_eq!(PIXEL_GIF.len(), 43);
        assert!(PIXEL_GIF.starts_with(b"GIF89a"));
    }

    #[test]
    fn dead_letter_payload_is_cut_on_a_char_boundary() {
        let raw = "é".repeat(5000);
        let error = ValidationError::new("x", Some("f"), "m");
        let record = dead_letter_record("s", 1, &error, &raw);
        let letter: DeadLetter = serde_json::from_slice(&record.payload).unwrap();
        assert!(letter.payload.len() <= DEAD_LETTER_PAYLOAD_BYTES);
        assert_eq!(letter.message, "m (f)");
    }
}
