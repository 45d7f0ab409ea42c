//! What wraps every request of the router, by surface: the staff API (`/api/`), the public
//! knowledge-base API (`/v1/kb/`: CORS from the site's own allowed origins, its own per-address
//! limit, `no-store`) and the help centre (`/help/`: the public limit; pages set their own CSP).
//! For the staff API: CORS for the configured origins (preflights answered here),
//! the per-address rate limit (the per-user one is in the [`crate::auth::AuthUser`] extractor),
//! the request-body deadline (408 `body_timeout`), security headers, caching headers, and ETags on successful reads (`If-None-Match` → 304).
//! Compression (gzip, br) is tower-http's layer, added by [`crate::router`].

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use http_body_util::BodyExt;
use crm_service::DeadlineBody;
use sha2::{Digest, Sha256};

use crate::{ApiError, ApiState};

/// Largest response body the ETag layer buffers; bigger ones pass through untagged.
const MAX_ETAG_BODY: usize = 8 * 1024 * 1024;

/// Security and traffic settings of the API (the binary fills it from its flags).
#[derive(Clone, Debug)]
pub struct ApiConfig {
    /// Requests per minute per client address (`None`: unlimited).
    pub per_ip_per_minute: Option<u32>,
    /// Requests per minute per signed-in user (`None`: unlimited).
    pub per_user_per_minute: Option<u32>,
    /// Take the client address from the first `X-Forwarded-For` hop (behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// Browser origins allowed to call the API cross-origin (exact `scheme://host[:port]`).
    pub cors_origins: Vec<String>,
    /// How long one process trusts what it read about a user's tokens (revocations made through
    /// another process sharing the store take effect within this).
    pub revocation_ttl: std::time::Duration,
    /// Longest time a request body may take to arrive in full (then 408 `body_timeout`).
    pub body_timeout: std::time::Duration,
    /// Public knowledge-base and help-centre requests per minute per client address (`None`: unlimited).
    pub public_per_ip_per_minute: Option<u32>,
}

impl Default for ApiConfig {
    fn default() -> ApiConfig {
        ApiConfig {
            per_ip_per_minute: Some(1_200),
            per_user_per_minute: Some(600),
            trust_forwarded_for: false,
            cors_origins: Vec::new(),
            revocation_ttl: crate::revocation::DEFAULT_REVOCATION_TTL,
            body_timeout: std::time::Duration::from_secs(60),
            public_per_ip_per_minute: Some(120),
        }
    }
}

/// The rate limiters and header settings built from [`ApiConfig`].
pub struct Limits {
    per_ip: Option<DefaultKeyedRateLimiter<IpAddr>>,
    per_user: Option<DefaultKeyedRateLimiter<String>>,
    per_ip_public: Option<DefaultKeyedRateLimiter<IpAddr>>,
    pub trust_forwarded_for: bool,
    cors_origins: Vec<String>,
    body_timeout: std::time::Duration,
}

fn limiter<K: std::hash::Hash + Eq + Clone>(per_minute: Option<u32>) -> Option<DefaultKeyedRateLimiter<K>> {
    per_minute.and_then(NonZeroU32::new).map(|n| RateLimiter::keyed(Quota::per_minute(n)))
}

fn refused(wait: std::time::Duration) -> ApiError {
    let secs = wait.as_secs_f64().ceil().max(1.0) as u64;
    ApiError::RateLimited { code: "rate_limited", message: format!("too many requests; retry in {secs} s"), retry_after_secs: secs }
}

impl Limits {
    pub fn new(config: &ApiConfig) -> Limits {
        Limits {
            per_ip: limiter(config.per_ip_per_minute),
            per_user: limiter(config.per_user_per_minute),
            per_ip_public: limiter(config.public_per_ip_per_minute),
            trust_forwarded_for: config.trust_forwarded_for,
            cors_origins: config.cors_origins.iter().map(|o| o.trim_end_matches('/').to_ascii_lowercase()).collect(),
            body_timeout: config.body_timeout,
        }
    }

    pub fn check_user(&self, username: &str) -> Result<(), ApiError> {
        match &self.per_user {
            Some(limiter) => limiter.check_key(&username.to_owned()).map_err(|not_until| refused(not_until.wait_time_from(DefaultClock::default().now()))),
            None => Ok(()),
        }
    }

    fn check_ip(&self, ip: Option<IpAddr>, surface: Surface) -> Result<(), ApiError> {
        let limiter = match surface {
            Surface::Api => &self.per_ip,
            Surface::PublicKb | Surface::Help => &self.per_ip_public,
            Surface::Other => return Ok(()),
        };
        match (limiter, ip) {
            (Some(limiter), Some(ip)) => limiter.check_key(&ip).map_err(|not_until| refused(not_until.wait_time_from(DefaultClock::default().now()))),
            _ => Ok(()),
        }
    }

    fn allowed_origin(&self, headers: &HeaderMap) -> Option<HeaderValue> {
        let origin = headers.get(header::ORIGIN)?;
        let text = origin.to_str().ok()?.to_ascii_lowercase();
        self.cors_origins.iter().any(|o| *o == text).then(|| origin.clone())
    }
}

/// Which part of the router a path belongs to (each has its own limits and headers).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Surface {
    Api,
    PublicKb,
    Help,
    Other,
}

fn surface(path: &str) -> Surface {
    if path.starts_with("/api/") {
        Surface::Api
    } else if path.starts_with("/v1/kb/") || path.starts_with("/v1/chat/") {
        Surface::PublicKb
    } else if path.starts_with("/help/") {
        Surface::Help
    } else {
        Surface::Other
    }
}

/// How a request's `Origin` stands with the site named in a `/v1/kb/{site}/…` or
/// `/v1/chat/{site}/…` path.
enum SiteOrigin {
    /// No `Origin` header, or no such site (the handler answers 404).
    Unchecked,
    Allowed(HeaderValue),
    /// The site exists and does not allow this origin.
    Refused,
}

async fn site_origin(state: &ApiState, path: &str, headers: &HeaderMap, cached_only: bool) -> SiteOrigin {
    let Some(origin) = headers.get(header::ORIGIN) else { return SiteOrigin::Unchecked };
    let Some(site_id) = path.split('/').nth(3).filter(|s| crm_schemas::valid_key(s)) else { return SiteOrigin::Unchecked };
    let site = if cached_only { state.kb.cached_site(site_id) } else { state.kb.site(&state.store, site_id).await.ok().flatten() };
    match (site, origin.to_str()) {
        (Some(site), Ok(text)) if site.origin_allowed(text) => SiteOrigin::Allowed(origin.clone()),
        (Some(_), _) => SiteOrigin::Refused,
        (None, _) => SiteOrigin::Unchecked,
    }
}

fn public_cors_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("content-type"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("retry-after"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

fn set(headers: &mut HeaderMap, name: header::HeaderName, value: &'static str) {
    headers.entry(name).or_insert(HeaderValue::from_static(value));
}

fn cors_headers(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, HeaderValue::from_static("authorization, content-type, if-none-match"));
    headers.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("GET, POST, PUT, PATCH, DELETE"));
    headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, HeaderValue::from_static("etag, retry-after"));
    headers.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("600"));
    headers.append(header::VARY, HeaderValue::from_static("origin"));
}

fn etag_of(body: &[u8]) -> HeaderValue {
    let digest = Sha256::digest(body);
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    // Weak: the same JSON may go out gzip- or br-encoded (compression runs outside this layer).
    HeaderValue::from_str(&format!("W/\"{hex}\"")).unwrap_or(HeaderValue::from_static("W/\"0\""))
}

fn matches_etag(if_none_match: Option<&HeaderValue>, etag: &HeaderValue) -> bool {
    let Some(value) = if_none_match.and_then(|v| v.to_str().ok()) else { return false };
    let etag = etag.to_str().unwrap_or("").trim_start_matches("W/");
    value.split(',').map(str::trim).any(|candidate| candidate == "*" || candidate.trim_start_matches("W/") == etag)
}

/// The middleware around the whole API router.
pub async fn layer(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let Some(metrics) = state.metrics.clone() else { return guarded(state, request, next).await };
    let route = request.extensions().get::<axum::extract::MatchedPath>().map(|p| p.as_str().to_owned());
    let method = request.method().clone();
    let started = std::time::Instant::now();
    let response = guarded(state, request, next).await;
    metrics.observe(route.as_deref(), &method, response.status(), started.elapsed());
    response
}

/// The address limit, CORS, the origin check of public writes, body limits and the rest of
/// [`layer`] (everything but the metrics).
async fn guarded(state: ApiState, request: Request, next: Next) -> Response {
    let (parts, body) = request.into_parts();
    let surface = surface(parts.uri.path());
    let client = crate::session::client_info(&parts, state.limits.trust_forwarded_for);
    // The address limit comes before anything that may read the store.
    if let Err(err) = state.limits.check_ip(client.ip, surface) {
        let mut response = err.into_response();
        let origin = match surface {
            Surface::PublicKb => match site_origin(&state, parts.uri.path(), &parts.headers, true).await {
                SiteOrigin::Allowed(origin) => Some((origin, public_cors_headers as fn(&mut HeaderMap, HeaderValue))),
                _ => None,
            },
            _ => state.limits.allowed_origin(&parts.headers).map(|o| (o, cors_headers as fn(&mut HeaderMap, HeaderValue))),
        };
        if let Some((origin, cors)) = origin {
            cors(response.headers_mut(), origin);
        }
        return response;
    }
    let (origin, cors): (Option<HeaderValue>, fn(&mut HeaderMap, HeaderValue)) = match surface {
        Surface::PublicKb => match site_origin(&state, parts.uri.path(), &parts.headers, false).await {
            SiteOrigin::Allowed(origin) => (Some(origin), public_cors_headers),
            // A page on another origin may not write into a site's chat or votes: CORS would not
            // stop a simple text/plain POST, so the origin check is the server's.
            SiteOrigin::Refused if !matches!(parts.method, Method::GET | Method::HEAD | Method::OPTIONS) => {
                let origin = parts.headers.get(header::ORIGIN).and_then(|o| o.to_str().ok()).unwrap_or("").chars().take(200).collect();
                return ApiError::OriginNotAllowed(origin).into_response();
            }
            _ => (None, public_cors_headers),
        },
        _ => (state.limits.allowed_origin(&parts.headers), cors_headers),
    };
    if parts.method == Method::OPTIONS && parts.headers.contains_key(header::ACCESS_CONTROL_REQUEST_METHOD) {
        let mut response = StatusCode::NO_CONTENT.into_response();
        if let Some(origin) = origin {
            cors(response.headers_mut(), origin);
        }
        return response;
    }
    let enveloped_errors = matches!(surface, Surface::Api | Surface::PublicKb);
    let is_read = parts.method == Method::GET || parts.method == Method::HEAD;
    let if_none_match = parts.headers.get(header::IF_NONE_MATCH).cloned();
    let body_timed_out = Arc::new(AtomicBool::new(false));
    let body = Body::new(DeadlineBody::new(body, state.limits.body_timeout, body_timed_out.clone()));
    let mut response = next.run(Request::from_parts(parts, body)).await;
    if body_timed_out.load(Ordering::Relaxed) {
        // The handler saw a failed read; say why (a slow or stalled client), not "bad request".
        response = ApiError::BodyTimeout(state.limits.body_timeout).into_response();
    }

    if is_read && response.status() == StatusCode::OK && !response.headers().contains_key(header::ETAG) {
        let (mut head, body) = response.into_parts();
        let bytes = match http_body_util::Limited::new(body, MAX_ETAG_BODY).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(_) => return ApiError::Internal("response too large to tag".into()).into_response(),
        };
        let etag = etag_of(&bytes);
        if matches_etag(if_none_match.as_ref(), &etag) {
            head.status = StatusCode::NOT_MODIFIED;
            head.headers.remove(header::CONTENT_LENGTH);
            head.headers.remove(header::CONTENT_TYPE);
            head.headers.insert(header::ETAG, etag);
            response = Response::from_parts(head, Body::empty());
        } else {
            head.headers.insert(header::ETAG, etag);
            response = Response::from_parts(head, Body::from(bytes));
        }
    }
    if enveloped_errors && response.status().as_u16() >= 400 {
        response = enveloped(response).await;
    }
    let headers = response.headers_mut();
    set(headers, header::X_CONTENT_TYPE_OPTIONS, "nosniff");
    set(headers, header::X_FRAME_OPTIONS, "DENY");
    set(headers, header::REFERRER_POLICY, "no-referrer");
    match surface {
        Surface::Api => {
            set(headers, header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'");
            // Per-user data: browsers may keep it but must revalidate (the ETag makes that cheap).
            set(headers, header::CACHE_CONTROL, "private, no-cache");
        }
        Surface::PublicKb => {
            set(headers, header::CONTENT_SECURITY_POLICY, "default-src 'none'; frame-ancestors 'none'");
            set(headers, header::CACHE_CONTROL, "no-store");
        }
        Surface::Help => {
            set(headers, header::CONTENT_SECURITY_POLICY, crate::kb::help::HELP_CSP);
        }
        Surface::Other => {
            set(headers, header::CONTENT_SECURITY_POLICY, "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'");
        }
    }
    if let Some(origin) = origin {
        cors(headers, origin);
    }
    response
}

/// Turns a plain-text error from the framework (a body over the limit, an undecodable path or
/// query) into the API's JSON error envelope, keeping its status and headers.
async fn enveloped(response: Response) -> Response {
    let is_json = response.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json"));
    if is_json {
        return response;
    }
    let (mut head, body) = response.into_parts();
    let text = http_body_util::Limited::new(body, 4096).collect().await.map(|c| String::from_utf8_lossy(&c.to_bytes()).into_owned()).unwrap_or_default();
    let code = match head.status.as_u16() {
        400 => "bad_request",
        404 => "not_found",
        405 => "method_not_allowed",
        413 => "payload_too_large",
        415 => "unsupported_media_type",
        422 => "unprocessable",
        _ => "error",
    };
    let message = if text.trim().is_empty() { head.status.canonical_reason().unwrap_or("error").to_owned() } else { text.trim().chars().take(300).collect() };
    let body = serde_json::to_vec(&serde_json::json!({ "success": false, "error": { "code": code, "message": message } })).unwrap_or_default();
    head.headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    head.headers.remove(header::CONTENT_LENGTH);
    Response::from_parts(head, Body::from(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn etags_match_strong_weak_lists_and_star() {
        let etag = etag_of(b"{}");
        let text = etag.to_str().unwrap().to_owned();
        assert!(matches_etag(Some(&HeaderValue::from_str(&text).unwrap()), &etag));
        assert!(text.starts_with("W/\""), "{text}");
        let strong = text.trim_start_matches("W/").to_owned();
        assert!(matches_etag(Some(&HeaderValue::from_str(&format!("\"x\", {strong}")).unwrap()), &etag));
        assert!(matches_etag(Some(&HeaderValue::from_static("*")), &etag));
        assert!(!matches_etag(Some(&HeaderValue::from_static("\"other\"")), &etag));
        assert!(!matches_etag(None, &etag));
        assert_ne!(etag, etag_of(b"[]"));
    }

    #[test]
    fn user_limits_refuse_with_a_wait() {
        let limits = Limits::new(&ApiConfig { per_user_per_minute: Some(2), ..ApiConfig::default() });
        assert!(limits.check_user("ada").is_ok() && limits.check_user("ada").is_ok());
        let Err(ApiError::RateLimited { retry_after_secs, .. }) = limits.check_user("ada") else { panic!("limited") };
        assert!((1..=30).contains(&retry_after_secs));
        assert!(limits.check_user("bob").is_ok(), "per user");
        let open = Limits::new(&ApiConfig { per_user_per_minute: None, ..ApiConfig::default() });
        assert!((0..100).all(|_| open.check_user("ada").is_ok()));
    }
}
