//! Site analytics: the overview (visitors, sessions, pageviews, bounce, duration, top lists, goal
//! conversions; filters and a comparison with the previous period) and the lead-form funnels over a date range, and the dead letters refused for a site.

use axum::extract::{Query, RawQuery, State};
use axum::response::Response;
use crm_store::filters::{Filter, Filters, MAX_FILTERS};
use crm_store::goals;
use serde_json::json;

use crate::auth::AuthUser;
use crate::params::{self, rfc3339};
use crate::{reply, ApiError, ApiState};

const DAY_MS: i64 = 86_400_000;
const MAX_RANGE_MS: i64 = 366 * DAY_MS;

/// The `from`/`to` window of an analytics query: the last 7 days by default, at most 366 days.
pub(crate) fn window(query: &params::Query) -> Result<(i64, i64), ApiError> {
    let now = crate::auth::now_ms();
    let to = params::timestamp_ms(query, "to")?.unwrap_or(now + 1);
    let from = params::timestamp_ms(query, "from")?.unwrap_or(to - 7 * DAY_MS);
    if from >= to {
        return Err(ApiError::InvalidParameter { name: "from".into(), message: "must be before `to`".into() });
    }
    if to - from > MAX_RANGE_MS {
        return Err(ApiError::InvalidParameter { name: "to".into(), message: "the range may span at most 366 days".into() });
    }
    Ok((from, to))
}

/// The lead-form funnel per form: views, starts, submissions, conversion rate (submissions/views).
pub async fn forms(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let site_id = params::required(&query, "site_id")?;
    let (from, to) = window(&query)?;
    state.require_site(site_id).await?;
    let items = state.store.form_stats(site_id, from, to).await?;
    Ok(reply::ok(json!({ "site_id": site_id, "from": rfc3339(from), "to": rfc3339(to), "items": items })))
}

/// The overview, with each of the site's goals' conversions and rate when it has goals; narrowed
/// by repeated `filter=dimension:op:value` and compared with the period before (`compare=previous`).
pub async fn overview(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let filters = filters(raw.as_deref())?;
    Ok(reply::ok(overview_data(&state, &user, &query, &filters).await?))
}

/// The `filter` parameters of a query string, each `dimension:op:value` ([`crm_store::filters`]).
pub(crate) fn filters(raw: Option<&str>) -> Result<Filters, ApiError> {
    let invalid = |message: String| ApiError::InvalidParameter { name: "filter".into(), message };
    let mut out = Vec::new();
    for (key, value) in url::form_urlencoded::parse(raw.unwrap_or("").as_bytes()) {
        if key == "filter" {
            out.push(Filter::parse(&value).map_err(|e| invalid(e.0))?);
        }
    }
    if out.len() > MAX_FILTERS {
        return Err(invalid(format!("at most {MAX_FILTERS} filters")));
    }
    Ok(Filters(out))
}

/// The `data` of [`overview`] (the export reuses it). With filters, goals are left out: their
/// conversions are not narrowed by the filters' dimensions yet, so a rate would mix two
/// populations.
pub(crate) async fn overview_data(state: &ApiState, user: &AuthUser, query: &params::Query, filters: &Filters) -> Result<serde_json::Value, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let site_id = params::required(query, "site_id")?;
    let (from, to) = window(query)?;
    let top = params::limit(query, 10, 100)?;
    let compare = match query.get("compare").map(String::as_str) {
        None => false,
        Some("previous") => true,
        Some(_) => return Err(ApiError::InvalidParameter { name: "compare".into(), message: "must be previous".into() }),
    };
    let site = state.require_site(site_id).await?;
    let overview = state.store.filtered_overview(site_id, from, to, top, filters).await?;
    let goals: Option<Vec<serde_json::Value>> = if filters.is_empty() {
        let counts = goals::goal_counts(&*state.store, site_id, from, to, &site.goals, goals::GoalAsk::default()).await?;
        Some(
            goals::figures(&site.goals, &counts, overview.visitors)
                .into_iter()
                .map(|g| json!({ "goal_id": g.goal_id, "name": g.name, "conversions": g.conversions, "conversion_rate": g.conversion_rate }))
                .collect(),
        )
    } else {
        None
    };
    let mut data = json!({
        "site_id": site_id,
        "from": rfc3339(from),
        "to": rfc3339(to),
        "filters": filters.0,
        "overview": overview,
        "goals": goals,
    });
    if compare {
        // The period of the same length just before.
        let previous_from = from - (to - from);
        let previous = state.store.filtered_overview(site_id, previous_from, from, top, filters).await?;
        let change = |now: u64, before: u64| if before == 0 { serde_json::Value::Null } else { json!((now as f64 - before as f64) / before as f64) };
        data["previous"] = json!({
            "from": rfc3339(previous_from),
            "to": rfc3339(from),
            "overview": previous,
            "change": {
                "visitors": change(overview.visitors, previous.visitors),
                "sessions": change(overview.sessions, previous.sessions),
                "pageviews": change(overview.pageviews, previous.pageviews),
            },
        });
    }
    Ok(data)
}

/// Buckets of an analytics series: at most this many per request.
const MAX_POINTS: i64 = 400;

/// The `interval` of a series (`day`, the default, or `hour`) and its step, checked against
/// [`MAX_POINTS`] for the window.
pub(crate) fn interval(query: &params::Query, from: i64, to: i64) -> Result<(&'static str, i64), ApiError> {
    let (interval, step) = match query.get("interval").map(String::as_str).unwrap_or("day") {
        "day" => ("day", DAY_MS),
        "hour" => ("hour", 3_600_000),
        _ => return Err(ApiError::InvalidParameter { name: "interval".into(), message: "must be day or hour".into() }),
    };
    let first = from.div_euclid(step) * step;
    if (to - first).div_euclid(step) + 1 > MAX_POINTS {
        return Err(ApiError::InvalidParameter { name: "to".into(), message: format!("at most {MAX_POINTS} {interval}s per request") });
    }
    Ok((interval, step))
}

/// Visitors, sessions, pageviews, bounce rate and average duration per day (UTC) or hour over
/// the window: the overview's headline figures per bucket, from one store call; and per bucket
/// each goal's conversions when the site has goals.
pub async fn timeseries(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    let filters = filters(raw.as_deref())?;
    Ok(reply::ok(timeseries_data(&state, &user, &query, &filters).await?))
}

/// The `data` of [`timeseries`] (the export reuses it).
pub(crate) async fn timeseries_data(state: &ApiState, user: &AuthUser, query: &params::Query, filters: &Filters) -> Result<serde_json::Value, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let site_id = params::required(query, "site_id")?;
    let (from, to) = window(query)?;
    let (interval, step) = interval(query, from, to)?;
    let mut site = state.require_site(site_id).await?;
    let points = state.store.filtered_timeseries(site_id, from, to, step, filters).await?;
    // As in the overview: goals are not narrowed by filters, so a filtered series leaves them out.
    if !filters.is_empty() {
        site.goals.clear();
    }
    let counts = goals::goal_counts(&*state.store, site_id, from, to, &site.goals, goals::GoalAsk { top_sources: None, step_ms: Some(step) }).await?;
    let series = goals::series(&site.goals, &counts, &points);
    let points: Vec<serde_json::Value> = points
        .into_iter()
        .enumerate()
        .map(|(i, p)| {
            let goals: Vec<serde_json::Value> = site
                .goals
                .iter()
                .zip(&series)
                .map(|(goal, s)| json!({ "goal_id": goal.goal_id, "conversions": s[i].conversions, "conversion_rate": s[i].conversion_rate }))
                .collect();
            json!({
                "start": rfc3339(p.start_ms),
                "visitors": p.visitors,
                "sessions": p.sessions,
                "pageviews": p.pageviews,
                "bounce_rate": p.bounce_rate,
                "avg_session_duration_ms": p.avg_session_duration_ms,
                "goals": goals,
            })
        })
        .collect();
    Ok(json!({ "site_id": site_id, "interval": interval, "from": rfc3339(from), "to": rfc3339(to), "filters": filters.0, "points": points }))
}

/// Minutes counted as "live".
const LIVE_MINUTES: i64 = 5;

/// Who is on the site now: visitors and pageviews of the last five minutes, and their pages.
pub async fn live(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>, RawQuery(raw): RawQuery) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let site_id = params::required(&query, "site_id")?;
    let filters = filters(raw.as_deref())?;
    state.require_site(site_id).await?;
    let now = crate::auth::now_ms();
    let o = state.store.filtered_overview(site_id, now - LIVE_MINUTES * 60_000, now + 1, 10, &filters).await?;
    Ok(reply::ok(json!({
        "site_id": site_id,
        "window_minutes": LIVE_MINUTES,
        "filters": filters.0,
        "visitors": o.visitors,
        "pageviews": o.pageviews,
        "top_pages": o.top_pages,
        "as_of": rfc3339(now),
    })))
}

pub async fn dead_letters(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::DeadLettersRead)?;
    let site_id = params::required(&query, "site_id")?;
    let limit = params::limit(&query, 50, 500)?;
    let cursor = crate::reply::decode_cursor(query.get("cursor"))?;
    let page = state.store.dead_letters(site_id, limit, cursor.as_deref()).await?;
    let items: Vec<serde_json::Value> = page
        .items
        .into_iter()
        .map(|d| json!({ "id": d.id, "received_at": rfc3339(d.received_at_ms), "code": d.code, "message": d.message, "payload": d.payload }))
        .collect();
    Ok(reply::page(items, page.next_cursor, limit))
}
