//! Visitors: ranked lists (intent, engagement, recency), one profile with scores and signals,
//! and the visitor's event timeline.

use std::collections::BTreeMap;

use axum::extract::{Path, Query, State};
use axum::response::Response;
use crm_schemas::{Device, Geo, Scalar, StoredEvent, Utm, VisitorProfile};
use crm_store::{BotFilter, VisitorQuery, VisitorSort};
use serde::Serialize;

use crate::auth::AuthUser;
use crate::params::{self, rfc3339};
use crate::{reply, ApiError, ApiState};

#[derive(Serialize)]
pub struct Scores {
    pub engagement: u8,
    pub intent: u8,
}

/// The API's view of a visitor profile (internal scoring state left out).
#[derive(Serialize)]
pub struct VisitorView {
    pub site_id: String,
    pub visitor_id: String,
    pub first_seen: String,
    pub last_seen: String,
    pub visits: u32,
    pub pageviews: u64,
    pub events: u64,
    pub time_spent_ms: u64,
    pub first_referrer: Option<String>,
    pub landing_page: Option<String>,
    pub first_utm: Utm,
    pub last_utm: Utm,
    pub device: Device,
    pub geo: Geo,
    pub is_bot: bool,
    pub scores: Scores,
    pub intent_signals: BTreeMap<String, u32>,
    pub traits: BTreeMap<String, Scalar>,
}

impl From<VisitorProfile> for VisitorView {
    fn from(p: VisitorProfile) -> VisitorView {
        VisitorView {
            first_seen: rfc3339(p.first_seen_ms),
            last_seen: rfc3339(p.last_seen_ms),
            site_id: p.site_id,
            visitor_id: p.visitor_id,
            visits: p.visits,
            pageviews: p.pageviews,
            events: p.events,
            time_spent_ms: p.time_spent_ms,
            first_referrer: p.first_referrer,
            landing_page: p.landing_page,
            first_utm: p.first_utm,
            last_utm: p.last_utm,
            device: p.device,
            geo: p.geo,
            is_bot: p.is_bot,
            scores: Scores { engagement: p.engagement_score, intent: p.intent_score },
            intent_signals: p.intent_signals,
            traits: p.traits,
        }
    }
}

#[derive(Serialize)]
struct EventView {
    at: String,
    #[serde(flatten)]
    event: StoredEvent,
}

pub async fn list(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let site_id = params::required(&query, "site_id")?.to_owned();
    let limit = params::limit(&query, 50, 200)?;
    let sort: VisitorSort = params::choice(&query, "sort", "intent, engagement, last_seen")?;
    let bots: BotFilter = params::choice(&query, "bots", "exclude, only")?;
    let cursor = crate::reply::decode_cursor(query.get("cursor"))?;
    let page = state.store.list_visitors(&VisitorQuery { site_id, sort, bots, limit, cursor }).await?;
    let items: Vec<VisitorView> = page.items.into_iter().map(VisitorView::from).collect();
    Ok(reply::page(items, page.next_cursor, limit))
}

/// Finds the visitor on the given site, or on the only site it was seen on.
async fn resolve(state: &ApiState, visitor_id: &str, site: Option<&String>) -> Result<VisitorProfile, ApiError> {
    if let Some(site_id) = site {
        return state.store.visitor(site_id, visitor_id).await?.ok_or_else(|| ApiError::NotFound(format!("visitor {visitor_id}")));
    }
    let mut found = state.store.find_visitor(visitor_id).await?;
    match found.len() {
        0 => Err(ApiError::NotFound(format!("visitor {visitor_id}"))),
        1 => Ok(found.remove(0)),
        _ => Err(ApiError::Conflict {
            code: "ambiguous_visitor",
            message: "the visitor id exists on several sites; pass site_id".into(),
            details: Some(serde_json::json!({ "sites": found.iter().map(|p| p.site_id.clone()).collect::<Vec<_>>() })),
        }),
    }
}

pub async fn get_one(
    State(state): State<ApiState>,
    user: AuthUser,
    Path(visitor_id): Path<String>,
    Query(query): Query<params::Query>,
) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let profile = resolve(&state, &visitor_id, query.get("site_id")).await?;
    let session = profile.current_session.clone();
    let mut view = serde_json::to_value(VisitorView::from(profile)).map_err(|e| ApiError::Internal(e.to_string()))?;
    if let Some(session) = session {
        view["last_session"] = serde_json::json!({
            "session_id": session.session_id,
            "started_at": rfc3339(session.start_ms),
            "ended_at": rfc3339(session.end_ms),
            "pageviews": session.pageviews,
            "engaged_ms": session.engaged_ms,
            "max_scroll": session.max_scroll,
            "landing_page": session.landing_page,
            "referrer_host": session.referrer_host,
            "signals": session.signals,
        });
    }
    Ok(reply::ok(view))
}

pub async fn events(
    State(state): State<ApiState>,
    user: AuthUser,
    Path(visitor_id): Path<String>,
    Query(query): Query<params::Query>,
) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let limit = params::limit(&query, 100, 500)?;
    let cursor = crate::reply::decode_cursor(query.get("cursor"))?;
    let profile = resolve(&state, &visitor_id, query.get("site_id")).await?;
    let page = state.store.visitor_events(&profile.site_id, &visitor_id, limit, cursor.as_deref()).await?;
    let items: Vec<EventView> = page.items.into_iter().map(|event| EventView { at: rfc3339(event.ts_ms), event }).collect();
    Ok(reply::page(items, page.next_cursor, limit))
}
