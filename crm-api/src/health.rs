//! Customer health (`crm batch health` results): the accounts of a site by risk, worst first,
//! one account's latest score with its history, components, missing inputs and reasons, the
//! executive dashboard, and the playbook tasks.

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

/// The seed's executive dashboard over the latest health of every account. Figures that need the
/// churn model or playbooks are `null` until those run, and say so in `not_available`.
pub async fn dashboard(State(state): State<ApiState>, _user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    let site_id = params::required(&query, "site_id")?;
    let accounts = state.store.latest_health(site_id).await?;
    Ok(reply::ok(summarize(&accounts)))
}

pub fn summarize(accounts: &[crm_schemas::AccountHealth]) -> serde_json::Value {
    let total = accounts.len();
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let avg = |values: Vec<f64>| if values.is_empty() { None } else { Some(round(values.iter().sum::<f64>() / values.len() as f64)) };
    let mrr = |keep: &dyn Fn(&crm_schemas::AccountHealth) -> bool| round(accounts.iter().filter(|a| keep(a)).filter_map(|a| a.mrr).sum::<f64>());
    json!({
        "total_accounts": total,
        "avg_health_score": avg(accounts.iter().map(|a| a.score).collect()),
        "critical_accounts": accounts.iter().filter(|a| a.risk == "critical").count(),
        "at_risk_accounts": accounts.iter().filter(|a| a.risk == "at_risk").count(),
        "total_mrr": mrr(&|_| true),
        "at_risk_mrr": mrr(&|a| a.risk != "healthy"),
        "avg_change_7d": avg(accounts.iter().filter_map(|a| a.change_7d).collect()),
        "declining_accounts": accounts.iter().filter(|a| a.change_7d.is_some_and(|c| c < 0.0)).count(),
        "avg_churn_risk": null,
        "expected_churn_mrr": null,
        "intervention_success_rate": null,
        "not_available": ["avg_churn_risk", "expected_churn_mrr", "intervention_success_rate"],
    })
}

/// Playbook tasks, oldest due first; `status` and `account_id` filter.
pub async fn tasks(State(state): State<ApiState>, _user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    let site_id = params::required(&query, "site_id")?;
    let status = query.get("status").map(String::as_str);
    if status.is_some_and(|s| !matches!(s, "open" | "done")) {
        return Err(ApiError::InvalidParameter { name: "status".into(), message: "must be open or done".into() });
    }
    let mut tasks = state.store.tasks(site_id).await?;
    tasks.retain(|t| status.is_none_or(|s| t.status == s) && query.get("account_id").is_none_or(|a| &t.account_id == a));
    let items: Vec<serde_json::Value> = tasks
        .iter()
        .map(|t| {
            let mut v = serde_json::to_value(t).unwrap_or(serde_json::Value::Null);
            v["due"] = json!(rfc3339(t.due_ms));
            v
        })
        .collect();
    Ok(reply::ok(items))
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct TaskPatch {
    status: Option<String>,
    owner: Option<String>,
}

/// Closes, reopens or assigns a task (the owner must be a user).
pub async fn patch_task(
    State(state): State<ApiState>,
    user: AuthUser,
    Path(task_id): Path<String>,
    Query(query): Query<params::Query>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    if user.role == crm_schemas::Role::SalesRep {
        return Err(ApiError::Forbidden("change customer-success tasks"));
    }
    let site_id = params::required(&query, "site_id")?;
    let input: TaskPatch = params::json(&body)?;
    let mut task = state.store.tasks(site_id).await?.into_iter().find(|t| t.task_id == task_id).ok_or_else(|| ApiError::NotFound(format!("task {task_id}")))?;
    let mut problems = Vec::new();
    if let Some(status) = input.status {
        if matches!(status.as_str(), "open" | "done") {
            task.status = status;
        } else {
            problems.push(("status".to_owned(), "must be open or done".to_owned()));
        }
    }
    if let Some(owner) = input.owner {
        if state.store.user(&owner).await?.is_none() {
            problems.push(("owner".to_owned(), format!("no user named {owner}")));
        }
        task.owner = Some(owner);
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    state.store.update_task(&task).await?;
    Ok(reply::ok(task))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_store::conformance::sample_health;

    #[test]
    fn dashboard_figures_from_hand_made_accounts() {
        let mut a = sample_health("a", 1, 80.0, "healthy");
        a.change_7d = Some(5.0);
        let mut b = sample_health("b", 1, 30.0, "critical");
        b.change_7d = Some(-10.0);
        b.mrr = Some(250.0);
        let c = sample_health("c", 1, 55.0, "at_risk");
        let summary = summarize(&[a, b, c]);
        assert_eq!(summary["total_accounts"], 3);
        assert_eq!(summary["avg_health_score"], 55.0);
        assert_eq!((summary["critical_accounts"].as_u64(), summary["at_risk_accounts"].as_u64()), (Some(1), Some(1)));
        assert_eq!((summary["total_mrr"].as_f64(), summary["at_risk_mrr"].as_f64()), (Some(450.0), Some(350.0)));
        assert_eq!((summary["avg_change_7d"].as_f64(), summary["declining_accounts"].as_u64()), (Some(-2.5), Some(1)));
        assert!(summary["avg_churn_risk"].is_null());
        assert_eq!(summarize(&[])["avg_health_score"], serde_json::Value::Null);
    }
}
