//! Customer health (`crm batch health` results): the accounts of a site by risk, worst first,
//! and one account's latest score with its history, components, missing inputs and reasons.

use axum::extract::{Path, Query, State};
use axum::response::Response;
use serde_json::json;

use crate::auth::AuthUser;
use crate::params::{self, rfc3339};
use crate::{reply, ApiError, ApiState};

fn view(h: &crm_schemas::AccountHealth) -> serde_json::Value {
    let mut value = serde_json::to_value(h).unwrap_or(serde_json::Value::Null);
    value["computed_at"] = json!(rfc3339(h.computed_at_ms));
    value
}

pub async fn list(State(state): State<ApiState>, _user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    let site_id = params::required(&query, "site_id")?;
    let risk = query.get("risk").map(String::as_str);
    if let Some(risk) = risk {
        if !matches!(risk, "healthy" | "at_risk" | "critical") {
            return Err(ApiError::InvalidParameter { name: "risk".into(), message: "must be healthy, at_risk or critical".into() });
        }
    }
    let mut accounts = state.store.latest_health(site_id).await?;
    accounts.retain(|h| risk.is_none_or(|r| h.risk == r));
    accounts.sort_by(|a, b| a.score.total_cmp(&b.score).then_with(|| a.account_id.cmp(&b.account_id)));
    Ok(reply::ok(accounts.iter().map(view).collect::<Vec<_>>()))
}

pub async fn account(State(state): State<ApiState>, _user: AuthUser, Path(account_id): Path<String>, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    let site_id = params::required(&query, "site_id")?;
    let history = state.store.health_history(site_id, &account_id, 90).await?;
    let latest = history.first().ok_or_else(|| ApiError::NotFound(format!("health of account {account_id} (run `crm batch health`)")))?;
    let mut body = view(latest);
    body["history"] = history.iter().map(|h| json!({ "day": rfc3339(h.day * 86_400_000), "score": h.score, "risk": h.risk, "change_reason": h.change_reason })).collect();
    Ok(reply::ok(body))
}
