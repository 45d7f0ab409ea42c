//! The collector's lead-form endpoints, used by `widgets/forms-embed.js`:
//!
//! * `GET /v1/forms/{site}/{form}[?visitor_id=…]` — the public definition to render, with the
//!   fields this visitor may skip (progressive profiling) and the free-mail list for
//!   "company email only" fields.
//! * `POST /v1/forms/{site}/{form}/submit` — validates the values against the stored definition
//!   (the same rules the browser applies), answers field errors as `422 invalid_fields`, and
//!   appends a `form_submit` event to the log (`202` once durable). A filled honeypot is answered
//!   like a success but recorded as a dead letter (`honeypot`) instead of an event.
//!
//! Definitions are cached for a few seconds: an edit in the API reaches the forms within that.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_eventlog::{Record, Topic};
use crm_schemas::{valid_key, CollectedEvent, EventKind, FormDefinition, Site, ValidationError, WireEvent, FREE_EMAIL_DOMAINS};
use crm_service::{json_response, Body};
use http::{header, HeaderValue, Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use parking_lot::Mutex;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::{dead_letter_record, preflight, Collector, RequestContext};
use crate::body::{check_content_type, read_body};
use crate::IngestError;

const CACHE_TTL: Duration = Duration::from_secs(3);
const CACHE_MAX: usize = 10_000;
/// A submission is a few dozen short values; anything bigger is not a form.
const MAX_SUBMISSION_BYTES: usize = 32 * 1024;

/// Recently read definitions (and misses), keyed `site/form`.
#[derive(Default)]
pub(super) struct FormCache {
    entries: Mutex<HashMap<String, (Instant, Option<Arc<FormDefinition>>)>>,
}

/// What forms-embed.js posts.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Submission {
    visitor_id: Option<String>,
    session_id: Option<String>,
    url: Option<String>,
    title: Option<String>,
    #[serde(default)]
    values: BTreeMap<String, Value>,
    /// The honeypot input's value: humans never see the field, so anything here is a bot.
    #[serde(default)]
    hp: Option<String>,
}

enum FormRoute {
    Definition,
    Submit,
}

/// `/v1/forms/{site}/{form}` or `/v1/forms/{site}/{form}/submit`, ids checked.
fn parse_path(path: &str) -> Option<(String, String, FormRoute)> {
    let rest = path.strip_prefix("/v1/forms/")?;
    let mut parts = rest.split('/');
    let (site, form) = (parts.next()?, parts.next()?);
    let route = match parts.next() {
        None => FormRoute::Definition,
        Some("submit") => FormRoute::Submit,
        Some(_) => return None,
    };
    if parts.next().is_some() || !valid_key(site) || !valid_key(form) {
        return None;
    }
    Some((site.to_owned(), form.to_owned(), route))
}

impl Collector {
    pub(super) async fn forms_route(&self, method: Method, request: Request<Incoming>) -> Result<Response<Body>, IngestError> {
        let Some((site, form, route)) = parse_path(request.uri().path()) else {
            return Err(IngestError::NotFound("form endpoint".into()));
        };
        match (method, route) {
            (Method::OPTIONS, _) => Ok(preflight()),
            (Method::GET, FormRoute::Definition) => self.form_definition(&site, &form, request).await,
            (Method::POST, FormRoute::Submit) => self.form_submit(&site, &form, request).await,
            _ => Ok(crm_service::error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "method_not_allowed",
                "use GET /v1/forms/{site}/{form} or POST /v1/forms/{site}/{form}/submit",
                None,
            )),
        }
    }

    async fn cached_form(&self, site_id: &str, form_id: &str) -> Result<Option<Arc<FormDefinition>>, IngestError> {
        let key = format!("{site_id}/{form_id}");
        if let Some((at, form)) = self.forms.entries.lock().get(&key) {
            if at.elapsed() < CACHE_TTL {
                return Ok(form.clone());
            }
        }
        let form = self.sites.store().form(site_id, form_id).await.map_err(store_error)?.map(Arc::new);
        let mut entries = self.forms.entries.lock();
        if entries.len() >= CACHE_MAX {
            entries.clear();
        }
        entries.insert(key, (Instant::now(), form.clone()));
        Ok(form)
    }

    /// The site and form, checking the caller's origin like beacons do.
    async fn site_and_form(&self, site_id: &str, form_id: &str, context: &RequestContext) -> Result<(Arc<Site>, Arc<FormDefinition>), IngestError> {
        let site = self.sites.get(site_id).await.ok_or_else(|| IngestError::NotFound(format!("site {site_id}")))?;
        if let Some(origin) = &context.origin {
            if !site.origin_allowed(origin) {
                return Err(IngestError::OriginNotAllowed(origin.clone()));
            }
        }
        let form = self.cached_form(site_id, form_id).await?.ok_or_else(|| IngestError::NotFound(format!("form {form_id}")))?;
        Ok((site, form))
    }

    /// The visitor id the submission belongs to: the tracker's, else the cookieless one.
    fn visitor_for(&self, site_id: &str, given: Option<String>, context: &RequestContext) -> Result<String, IngestError> {
        if let Some(id) = given {
            if id.is_empty() || id.len() > self.limits.max_id_len || id.chars().any(|c| c.is_control() || c.is_whitespace()) {
                return Err(IngestError::InvalidEvent(ValidationError::new("invalid_id", Some("visitor_id"), "visitor_id must be 1..=64 bytes without whitespace")));
            }
            return Ok(id);
        }
        let ip = context.ip.map(|ip| ip.to_string()).unwrap_or_default();
        Ok(self.ids.derive(context.received_at_ms, site_id, &ip, context.user_agent.as_deref().unwrap_or("")))
    }

    /// Trait names the visitor's profile already has (empty for unknown visitors).
    async fn known_traits(&self, site_id: &str, visitor_id: &str) -> Result<BTreeSet<String>, IngestError> {
        let profile = self.sites.store().visitor(site_id, visitor_id).await.map_err(store_error)?;
        Ok(profile.map(|p| p.traits.into_keys().collect()).unwrap_or_default())
    }

    async fn form_definition(&self, site_id: &str, form_id: &str, request: Request<Incoming>) -> Result<Response<Body>, IngestError> {
        let context = self.context(request.headers(), request.extensions().get::<crm_service::RemoteAddr>().copied());
        self.check_ip_rate(context.ip)?;
        let (_, form) = self.site_and_form(site_id, form_id, &context).await?;
        let given = form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .find(|(k, _)| k == "visitor_id")
            .map(|(_, v)| v.into_owned());
        let visitor = self.visitor_for(site_id, given, &context)?;
        let known = if form.fields.iter().any(|f| f.progressive) {
            form.known_fields(&self.known_traits(site_id, &visitor).await?)
        } else {
            Vec::new()
        };
        let free_mail: &[&str] = if form.fields.iter().any(|f| f.company_email) { FREE_EMAIL_DOMAINS } else { &[] };
        let body = json!({
            "site_id": form.site_id,
            "form_id": form.form_id,
            "name": form.name,
            "submit_label": form.submit_label,
            "success_message": form.success_message,
            "fields": form.fields,
            "known": known,
            "free_email_domains": free_mail,
        });
        let mut response = json_response(StatusCode::OK, &body);
        // Depends on the visitor (progressive profiling): never shared by caches.
        response.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
        Ok(response)
    }

    async fn form_submit(&self, site_id: &str, form_id: &str, request: Request<Incoming>) -> Result<Response<Body>, IngestError> {
        let (parts, body) = request.into_parts();
        let context = self.context(&parts.headers, parts.extensions.get::<crm_service::RemoteAddr>().copied());
        self.check_ip_rate(context.ip)?;
        check_content_type(&parts.headers)?;
        let bytes = read_body(&parts.headers, body, MAX_SUBMISSION_BYTES.min(self.config.max_body_bytes), self.config.body_timeout).await?;
        let raw = std::str::from_utf8(&bytes).map_err(|_| IngestError::InvalidUtf8)?;
        let submission: Submission = serde_json::from_str(raw).map_err(|e| {
            let error = crm_schemas::classify_serde_error(&e);
            if error.code == "malformed_json" {
                IngestError::MalformedJson(e.to_string())
            } else {
                IngestError::InvalidEvent(ValidationError::new(error.code, error.field.as_deref(), e.to_string()))
            }
        })?;
        let (site, form) = self.site_and_form(site_id, form_id, &context).await?;
        let visitor_id = self.visitor_for(site_id, submission.visitor_id, &context)?;

        if submission.hp.as_deref().is_some_and(|hp| !hp.is_empty()) {
            let error = ValidationError::new("honeypot", Some("hp"), format!("form {form_id}: the honeypot field was filled in"));
            self.metrics.reject("honeypot", 1);
            self.log.append(vec![dead_letter_record(&site.site_id, context.received_at_ms, &error, raw)]).await.map_err(log_error)?;
            tracing::info!(site_id, form_id, "honeypot submission dropped");
            // Answered like a success so the bot learns nothing.
            return Ok(json_response(StatusCode::ACCEPTED, &json!({ "ok": true, "event_id": Uuid::new_v4() })));
        }

        let known = if form.fields.iter().any(|f| f.progressive) { self.known_traits(site_id, &visitor_id).await? } else { BTreeSet::new() };
        let traits = form.validate_submission(&submission.values, &known).map_err(IngestError::InvalidFields)?;
        let event_id = Uuid::new_v4();
        let wire = WireEvent {
            v: crm_schemas::SCHEMA_VERSION,
            kind: Some(EventKind::FormSubmit),
            site_id: site.site_id.clone(),
            event_id: Some(event_id.to_string()),
            visitor_id: Some(visitor_id),
            session_id: submission.session_id,
            ts: Some(context.received_at_ms),
            url: submission.url,
            title: submission.title,
            form_id: Some(form.form_id.clone()),
            traits: Some(traits),
            ..WireEvent::default()
        };
        let event = wire.validate(&self.limits).map_err(IngestError::InvalidEvent)?;
        let key = format!("{}:{}", event.site_id, event.visitor_id.as_deref().unwrap_or(""));
        let collected = CollectedEvent {
            event: WireEvent::from(&event),
            received_at_ms: context.received_at_ms,
            ip: context.ip.map(|ip| ip.to_string()),
            user_agent: context.user_agent.clone(),
        };
        let payload = serde_json::to_vec(&collected).map_err(|e| IngestError::Internal(e.to_string()))?;
        self.log.append(vec![Record::new(Topic::Events, key, payload).with_event_time(event.ts_ms)]).await.map_err(log_error)?;
        self.metrics.accepted.inc();
        Ok(json_response(StatusCode::ACCEPTED, &json!({ "ok": true, "event_id": event_id })))
    }
}

fn store_error(err: crm_store::StoreError) -> IngestError {
    if err.is_retryable() {
        IngestError::LogUnavailable(format!("store: {err}"))
    } else {
        IngestError::Internal(err.to_string())
    }
}

fn log_error(err: crm_eventlog::LogError) -> IngestError {
    if err.is_retryable() {
        IngestError::LogUnavailable(err.to_string())
    } else {
        IngestError::Internal(err.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_paths_are_parsed_strictly() {
        assert!(matches!(parse_path("/v1/forms/demo/contact"), Some((s, f, FormRoute::Definition)) if s == "demo" && f == "contact"));
        assert!(matches!(parse_path("/v1/forms/demo/contact/submit"), Some((_, _, FormRoute::Submit))));
        for bad in ["/v1/forms/demo", "/v1/forms/demo/contact/other", "/v1/forms/demo/contact/submit/x", "/v1/forms/de mo/c", "/v1/forms//c", "/v1/forms/d/%2e%2e"] {
            assert!(parse_path(bad).is_none(), "{bad}");
        }
    }
}
