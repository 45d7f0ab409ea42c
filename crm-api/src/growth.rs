//! Growth reports: funnels, retention, goals, custom events and page paths (`crm_store::growth`,
//! `goals` and `explore` define them alike for every store). Query parameters are parsed and the specs validated here, so a bad request is a 400
//! naming its parameter and never reaches the store.

use axum::extract::{Query, State};
use axum::response::Response;
use crm_store::goals;
use crm_store::growth::{self, CohortStart, EventMatch, FunnelOrder, FunnelSpec, Period, RetentionSpec, MAX_COHORTS, MAX_FUNNEL_STEPS};
use serde_json::json;

use crate::auth::AuthUser;
use crate::params::{self, rfc3339};
use crate::{reply, ApiError, ApiState};

fn invalid(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter { name: name.to_owned(), message: message.into() }
}

/// A matcher parameter: `any`, `page:<glob>` or `event:<name>`.
fn matcher(query: &params::Query, name: &str) -> Result<Option<EventMatch>, ApiError> {
    query.get(name).map(|text| EventMatch::parse(text).map_err(|message| invalid(name, message))).transpose()
}

/// A duration such as `30m`, `12h` or `7d`.
fn duration_ms(query: &params::Query, name: &str, default: i64) -> Result<i64, ApiError> {
    let Some(text) = query.get(name) else { return Ok(default) };
    let unit = match text.chars().last() {
        Some('m') => 60_000,
        Some('h') => 3_600_000,
        Some('d') => 86_400_000,
        _ => return Err(invalid(name, "a number of minutes, hours or days, such as 30m, 12h or 7d")),
    };
    match text[..text.len() - 1].parse::<i64>() {
        Ok(n) if n > 0 => n.checked_mul(unit).ok_or_else(|| invalid(name, "too long")),
        _ => Err(invalid(name, "a positive whole number before the unit, such as 7d")),
    }
}

/// `GET /api/v1/analytics/funnel?site_id&from&to&step1..step8&window=1d&order=ordered`.
pub async fn funnel(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    Ok(reply::ok(funnel_data(&state, &user, &query).await?))
}

/// The `data` of [`funnel`] (the export reuses it).
pub(crate) async fn funnel_data(state: &ApiState, user: &AuthUser, query: &params::Query) -> Result<serde_json::Value, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let site_id = params::required(query, "site_id")?;
    let (from, to) = crate::analytics::window(query)?;
    let mut steps = Vec::new();
    for i in 1..=MAX_FUNNEL_STEPS {
        match matcher(query, &format!("step{i}"))? {
            Some(EventMatch::Any) => return Err(invalid(&format!("step{i}"), "a funnel step names a page or an event, not `any`")),
            Some(step) if steps.len() == i - 1 => steps.push(step),
            Some(_) => return Err(invalid(&format!("step{i}"), format!("steps are numbered from 1 without gaps; step{} is missing", steps.len() + 1))),
            None => {}
        }
    }
    if query.keys().any(|k| k.strip_prefix("step").and_then(|n| n.parse::<usize>().ok()).is_some_and(|n| n == 0 || n > MAX_FUNNEL_STEPS)) {
        return Err(invalid("step1", format!("steps are step1 to step{MAX_FUNNEL_STEPS}")));
    }
    let order = params::optional_choice::<FunnelOrder>(query, "order", "ordered, strict or any")?.unwrap_or(FunnelOrder::Ordered);
    let spec = FunnelSpec { steps, window_ms: duration_ms(query, "window", 86_400_000)?, order };
    if spec.steps.len() < 2 {
        return Err(invalid(&format!("step{}", spec.steps.len() + 1), "a funnel has at least two steps, numbered from step1"));
    }
    spec.validate().map_err(|message| invalid("window", message))?;
    state.require_site(site_id).await?;
    let report = growth::funnel_report(&*state.store, site_id, from, to, &spec).await?;
    Ok(json!({ "site_id": site_id, "from": rfc3339(from), "to": rfc3339(to), "order": report.order, "window_ms": report.window_ms, "steps": report.steps }))
}

/// `GET /api/v1/analytics/retention?site_id&period=week&cohorts=8&from&start=first_visit&return=any`.
pub async fn retention(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    Ok(reply::ok(retention_data(&state, &user, &query).await?))
}

/// The `data` of [`retention`] (the export reuses it).
pub(crate) async fn retention_data(state: &ApiState, user: &AuthUser, query: &params::Query) -> Result<serde_json::Value, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let site_id = params::required(query, "site_id")?;
    let period = match query.get("period").map(String::as_str).unwrap_or("week") {
        "day" => Period::Day,
        "week" => Period::Week,
        _ => return Err(invalid("period", "must be day or week")),
    };
    let cohorts = match query.get("cohorts") {
        None => 8,
        Some(text) => text.parse::<u32>().ok().filter(|n| (1..=MAX_COHORTS).contains(n)).ok_or_else(|| invalid("cohorts", format!("an integer from 1 to {MAX_COHORTS}")))?,
    };
    let now = crate::auth::now_ms();
    let start_ms = match params::timestamp_ms(query, "from")? {
        Some(from) => period.start_of(from),
        None => period.start_of(now) - i64::from(cohorts - 1) * period.ms(),
    };
    let start = match query.get("start").map(String::as_str) {
        None | Some("first_visit") => CohortStart::FirstVisit,
        Some(_) => match matcher(query, "start")? {
            Some(EventMatch::Any) | None => return Err(invalid("start", "first_visit, page:<glob> or event:<name>")),
            Some(m) => CohortStart::Event(m),
        },
    };
    let return_on = matcher(query, "return")?.unwrap_or(EventMatch::Any);
    let spec = RetentionSpec { period, start_ms, cohorts, start, return_on };
    spec.validate().map_err(|message| invalid("from", message))?;
    state.require_site(site_id).await?;
    let report = growth::retention_report(&*state.store, site_id, &spec).await?;
    let cohorts: Vec<serde_json::Value> = report
        .cohorts
        .into_iter()
        .map(|c| json!({ "start": rfc3339(c.start_ms), "size": c.size, "returning": c.returning, "rates": c.rates }))
        .collect();
    Ok(json!({ "site_id": site_id, "period": report.period, "from": rfc3339(start_ms), "to": rfc3339(spec.end_ms()), "cohorts": cohorts }))
}

/// `GET /api/v1/analytics/goals?site_id&from&to[&by=source][&interval=day|hour]`: every goal of
/// the site with its conversions, events and rate; by acquisition source and as a series when
/// asked.
pub async fn goals(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    Ok(reply::ok(goals_data(&state, &user, &query).await?))
}

/// The `data` of [`goals`] (the export reuses it).
pub(crate) async fn goals_data(state: &ApiState, user: &AuthUser, query: &params::Query) -> Result<serde_json::Value, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let site_id = params::required(query, "site_id")?;
    let (from, to) = crate::analytics::window(query)?;
    let by_source = match query.get("by").map(String::as_str) {
        None => false,
        Some("source") => true,
        Some(_) => return Err(invalid("by", "goals break down by `source`")),
    };
    let top = params::limit(query, 10, 100)?;
    let interval = query.contains_key("interval").then(|| crate::analytics::interval(query, from, to)).transpose()?;
    let site = state.require_site(site_id).await?;
    let visitors = state.store.overview(site_id, from, to, 0).await?.visitors;
    let ask = goals::GoalAsk { top_sources: by_source.then_some(top), step_ms: interval.map(|(_, step)| step) };
    let counts = goals::goal_counts(&*state.store, site_id, from, to, &site.goals, ask).await?;
    let figures = goals::figures(&site.goals, &counts, visitors);
    let mut items: Vec<serde_json::Value> = figures.iter().map(|g| serde_json::to_value(g).unwrap_or_default()).collect();
    if let Some((_, step)) = interval {
        let points = state.store.timeseries(site_id, from, to, step).await?;
        for (item, series) in items.iter_mut().zip(goals::series(&site.goals, &counts, &points)) {
            let series: Vec<serde_json::Value> =
                series.into_iter().map(|p| json!({ "start": rfc3339(p.start_ms), "conversions": p.conversions, "conversion_rate": p.conversion_rate })).collect();
            item["series"] = series.into();
        }
    }
    Ok(json!({
        "site_id": site_id,
        "from": rfc3339(from),
        "to": rfc3339(to),
        "interval": interval.map(|(name, _)| name),
        "visitors": visitors,
        "goals": items,
    }))
}

/// `GET /api/v1/analytics/events?site_id&from&to[&limit=10]`: the custom events of the window
/// with their properties, each property's `limit` most frequent values.
pub async fn custom_events(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    Ok(reply::ok(custom_events_data(&state, &user, &query).await?))
}

/// The `data` of [`custom_events`] (the export reuses it).
pub(crate) async fn custom_events_data(state: &ApiState, user: &AuthUser, query: &params::Query) -> Result<serde_json::Value, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let site_id = params::required(query, "site_id")?;
    let (from, to) = crate::analytics::window(query)?;
    let top = params::limit(query, 10, 50)?;
    state.require_site(site_id).await?;
    let events = state.store.custom_events(site_id, from, to, top).await?;
    Ok(json!({ "site_id": site_id, "from": rfc3339(from), "to": rfc3339(to), "events": events }))
}

/// `GET /api/v1/analytics/paths?site_id&from&to&page=/pricing[&limit=10]`: the pages viewed just
/// before and just after the views of a page (a glob), within their sessions.
pub async fn paths(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    Ok(reply::ok(paths_data(&state, &user, &query).await?))
}

/// The `data` of [`paths`] (the export reuses it).
pub(crate) async fn paths_data(state: &ApiState, user: &AuthUser, query: &params::Query) -> Result<serde_json::Value, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsRead)?;
    let site_id = params::required(query, "site_id")?;
    let (from, to) = crate::analytics::window(query)?;
    let page = params::required(query, "page")?;
    let glob = match EventMatch::parse(&format!("page:{page}")) {
        Ok(EventMatch::Page(glob)) => glob,
        Ok(_) => return Err(invalid("page", "a path such as /pricing, or a glob such as /blog/*")),
        Err(message) => return Err(invalid("page", message)),
    };
    let top = params::limit(query, 10, 100)?;
    state.require_site(site_id).await?;
    let paths = state.store.page_paths(site_id, from, to, &glob, top).await?;
    Ok(json!({
        "site_id": site_id,
        "from": rfc3339(from),
        "to": rfc3339(to),
        "page": glob,
        "views": paths.views,
        "previous": paths.previous,
        "next": paths.next,
    }))
}
