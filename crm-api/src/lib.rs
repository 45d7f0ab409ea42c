//! The CRM API (`/api/v1/…`): login with JWT access tokens, sites, visitors with their scores and
//! timelines, leads (CRM fields, audit, score history, timelines, feedback, merge/split), accounts, alert rules and alerts, lead forms, the analytics overview and form funnels, and dead letters. Every answer uses the JSON envelope
//! (`{"success":true,"data":…,"meta":…}` or the typed error) and every input is validated into
//! a typed value before it reaches the store.
//!
//! Three public surfaces share the router: the knowledge base's JSON API for sites' pages
//! (`/v1/kb/{site}/…`) and the chat widget's (`/v1/chat/{site}/…`), both with per-site CORS and
//! rate-limited per address, and the server-rendered help centre (`/help/{site}/…`). See [`kb`]
//! and [`chat`].

mod accounts;
mod alerts;
mod analytics;
mod export;
mod growth;
mod reports;
mod query;
mod auth;
pub mod chat;
mod dashboard;
mod error;
mod forms;
mod health;
mod identity;
pub mod import;
pub mod kb;
mod leads;
mod metrics;
mod middleware;
mod openapi;
mod params;
mod privacy;
mod rbac;
mod reply;
mod second_factor;
mod revocation;
pub mod secrets;
mod session;
mod sites;
mod state;
pub mod totp;
mod users;
mod visitors;

use axum::routing::{get, post};
use axum::Router;

pub use auth::{bootstrap, hash_password, Bootstrap, JwtKeys, ACCESS_TOKEN_TTL_SECS};
pub use error::ApiError;
pub use kb::{KbRuntime, LoadStats};
pub use middleware::ApiConfig;
pub use state::{ApiState, SiteListener};

/// Store meta key under which the processor publishes the credit of the geo data it uses
/// (shown by the dashboard, returned by `GET /api/v1/auth/me`).
pub const GEO_ATTRIBUTION_META: &str = "geo_attribution";

/// The API router; mount it at the root (paths include `/api/v1`).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/", get(dashboard::index))
        .route("/app/{file}", get(dashboard::file))
        .route("/api/v1/auth/login", post(session::login))
        .route("/api/v1/auth/refresh", post(session::refresh))
        .route("/api/v1/auth/logout", post(session::logout))
        .route("/api/v1/auth/me", get(session::me))
        .route("/api/v1/auth/login/totp", post(second_factor::login))
        .route("/api/v1/auth/login/totp/enroll", post(second_factor::login_enroll))
        .route("/api/v1/auth/login/totp/confirm", post(second_factor::login_confirm))
        .route("/api/v1/auth/totp/enroll", post(second_factor::enroll))
        .route("/api/v1/auth/totp/confirm", post(second_factor::confirm))
        .route("/api/v1/auth/totp/disable", post(second_factor::disable))
        .route("/api/v1/auth/policy", get(second_factor::get_policy).put(second_factor::put_policy))
        .route("/api/v1/openapi.json", get(openapi::json))
        .route("/api/v1/docs", get(openapi::docs))
        .route("/api/v1/auth/audit", get(users::audit_log))
        .route("/api/v1/users", get(users::list).post(users::create))
        .route("/api/v1/users/{username}", axum::routing::patch(users::patch))
        .route("/api/v1/sites", get(sites::list).post(sites::create))
        .route("/api/v1/sites/{site_id}", get(sites::get_one).put(sites::replace))
        .route("/api/v1/visitors", get(visitors::list))
        .route("/api/v1/visitors/{visitor_id}", get(visitors::get_one))
        .route("/api/v1/visitors/{visitor_id}/events", get(visitors::events))
        .route("/api/v1/leads", get(leads::list).post(leads::create))
        .route("/api/v1/leads/{lead_id}", get(leads::get_one).patch(leads::patch).delete(leads::delete))
        .route("/api/v1/leads/{lead_id}/timeline", get(leads::timeline))
        .route("/api/v1/leads/{lead_id}/audit", get(leads::audit))
        .route("/api/v1/leads/{lead_id}/outcome", post(leads::outcome))
        .route("/api/v1/reports/score-feedback", get(leads::score_feedback))
        .route("/api/v1/leads/{lead_id}/merge", post(identity::merge))
        .route("/api/v1/leads/{lead_id}/split", post(identity::split))
        .route("/api/v1/accounts", get(accounts::list))
        .route("/api/v1/accounts/{account_id}", get(accounts::get_one))
        .route("/api/v1/accounts/{account_id}/health", get(health::account))
        .route("/api/v1/health", get(health::list))
        .route("/api/v1/health/dashboard", get(health::dashboard))
        .route("/api/v1/tasks", get(health::tasks))
        .route("/api/v1/tasks/{task_id}", axum::routing::patch(health::patch_task))
        .route("/api/v1/identity-conflicts", get(leads::conflicts))
        .route("/api/v1/identity-conflicts/resolve", post(identity::resolve_conflict))
        .route("/api/v1/alert-rules", get(alerts::list_rules).post(alerts::create_rule))
        .route("/api/v1/alert-rules/{site_id}/{rule_id}", axum::routing::delete(alerts::delete_rule))
        .route("/api/v1/alerts", get(alerts::list_alerts))
        .route(
            "/api/v1/import/{kind}",
            post(import::handle).layer(axum::extract::DefaultBodyLimit::max(64 * 1024 * 1024)),
        )
        .route("/api/v1/forms", get(forms::list).post(forms::create))
        .route("/api/v1/forms/{site_id}/{form_id}", get(forms::get_one).put(forms::replace).delete(forms::delete))
        .route("/api/v1/analytics/overview", get(analytics::overview))
        .route("/api/v1/analytics/timeseries", get(analytics::timeseries))
        .route("/api/v1/analytics/live", get(analytics::live))
        .route("/api/v1/analytics/forms", get(analytics::forms))
        .route("/api/v1/analytics/funnel", get(growth::funnel))
        .route("/api/v1/analytics/retention", get(growth::retention))
        .route("/api/v1/analytics/goals", get(growth::goals))
        .route("/api/v1/analytics/events", get(growth::custom_events))
        .route("/api/v1/analytics/paths", get(growth::paths))
        .route("/api/v1/analytics/export", get(export::export))
        .route("/api/v1/query", post(query::run))
        .route("/api/v1/privacy/erase", post(privacy::erase))
        .route("/api/v1/privacy/erasures", get(privacy::erasures))
        .route("/api/v1/privacy/export", get(privacy::export))
        .route("/api/v1/dead-letters", get(analytics::dead_letters))
        .route("/api/v1/kb/articles", get(kb::list).post(kb::create))
        .route("/api/v1/kb/articles/{site_id}/{article_id}", get(kb::get_one).put(kb::update).delete(kb::delete))
        .route("/api/v1/kb/articles/{site_id}/{article_id}/restore", post(kb::restore))
        .route("/api/v1/kb/articles/{site_id}/{article_id}/versions", get(kb::versions))
        .route("/api/v1/kb/search", get(kb::search))
        .route("/api/v1/kb/analytics", get(kb::analytics))
        .route("/v1/kb/{site_id}/search", get(kb::public::search))
        .route("/v1/kb/{site_id}/feedback", post(kb::public::feedback))
        .route("/api/v1/chat/conversations", get(chat::staff::list))
        .route("/api/v1/chat/conversations/{site_id}/{conversation_id}", get(chat::staff::get_one))
        .route("/api/v1/chat/conversations/{site_id}/{conversation_id}/messages", post(chat::staff::send))
        .route("/api/v1/chat/conversations/{site_id}/{conversation_id}/close", post(chat::staff::close))
        .route("/v1/chat/{site_id}/conversations", post(chat::start))
        .route("/v1/chat/{site_id}/conversations/{conversation_id}", get(chat::poll))
        .route("/v1/chat/{site_id}/conversations/{conversation_id}/messages", post(chat::send))
        .route("/v1/chat/{site_id}/conversations/{conversation_id}/handoff", post(chat::request_handoff))
        .route("/v1/chat/{site_id}/conversations/{conversation_id}/feedback", post(chat::feedback))
        .route("/help/{site_id}", get(kb::help::home))
        .route("/help/{site_id}/", get(kb::help::home))
        .route("/help/{site_id}/c/{category}", get(kb::help::category))
        .route("/help/{site_id}/a/{slug}", get(kb::help::article))
        .route("/help/{site_id}/a/{slug}/feedback", post(kb::help::vote))
        .route("/help/{site_id}/search", get(kb::help::search))
        .route("/help/{site_id}/sitemap.xml", get(kb::help::sitemap))
        .fallback(error::not_found)
        .method_not_allowed_fallback(error::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), middleware::layer))
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(axum::extract::DefaultBodyLimit::max(1024 * 1024))
        .with_state(state)
}
