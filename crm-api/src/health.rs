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

pub async fn list(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::HealthRead)?;
    let site_id = params::required(&query, "site_id")?;
    let risk = query.get("risk").map(String::as_str);
    if let Some(risk) = risk {
        if !matches!(risk, "healthy" | "at_risk" | "critical") {
            return Err(ApiError::InvalidParameter { name: "risk".into(), message: "must be healthy, at_risk or critical".into() });
        }
    }
    let limit = params::limit(&query, 500, 1000)?;
    let cursor = reply::decode_cursor(query.get("cursor"))?;
    let mut accounts = current(state.store.latest_health(site_id).await?);
    accounts.retain(|h| risk.is_none_or(|r| h.risk == r));
    accounts.sort_by(|a, b| a.score.total_cmp(&b.score).then_with(|| a.account_id.cmp(&b.account_id)));
    // Scores are 0–100, so the zero-padded text sorts like the number.
    let key = |h: &crm_schemas::AccountHealth| format!("{:010.3}\u{1f}{}", h.score.clamp(0.0, 100.0), h.account_id);
    let (page, next) = reply::slice_after(accounts, key, cursor.as_deref(), limit);
    Ok(reply::page(page.iter().map(view).collect::<Vec<_>>(), next, limit))
}

pub async fn account(State(state): State<ApiState>, user: AuthUser, Path(account_id): Path<String>, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::HealthRead)?;
    let site_id = params::required(&query, "site_id")?;
    let history = state.store.health_history(site_id, &account_id, 90).await?;
    let latest = history.first().ok_or_else(|| ApiError::NotFound(format!("health of account {account_id} (run `crm batch health`)")))?;
    let mut body = view(latest);
    body["history"] = history.iter().map(|h| json!({ "day": rfc3339(h.day * 86_400_000), "score": h.score, "risk": h.risk, "change_reason": h.change_reason })).collect();
    Ok(reply::ok(body))
}

/// The latest results of the accounts scored by the latest run: an account missing from it
/// (a cancellation, or no longer in the data) is a former customer, and its last result stays
/// in its history only.
fn current(mut accounts: Vec<crm_schemas::AccountHealth>) -> Vec<crm_schemas::AccountHealth> {
    let latest_day = accounts.iter().map(|a| a.day).max().unwrap_or(0);
    accounts.retain(|a| a.day == latest_day);
    accounts
}

/// Days after its creation before a closed playbook task is judged.
pub const INTERVENTION_JUDGED_AFTER_DAYS: i64 = 14;

/// The seed's executive dashboard over the current health of every account, with the churn
/// model's figures and the success rate of closed playbook tasks. A figure without its inputs
/// is `null` and named in `not_available`.
pub async fn dashboard(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::HealthRead)?;
    let site_id = params::required(&query, "site_id")?;
    let accounts = current(state.store.latest_health(site_id).await?);
    let now_day = accounts.iter().map(|a| a.day).max().unwrap_or(0);
    let mut outcomes = Vec::new();
    for task in state.store.tasks(site_id).await? {
        let created_day = task.created_at_ms.div_euclid(crm_schemas::DAY_MS);
        if task.status != "done" || created_day > now_day - INTERVENTION_JUDGED_AFTER_DAYS {
            continue;
        }
        let history = state.store.health_history(site_id, &task.account_id, 400).await?;
        let Some(before) = history.iter().find(|h| h.day <= created_day) else { continue };
        let after = accounts.iter().find(|a| a.account_id == task.account_id);
        outcomes.push(after.is_some_and(|a| a.score > before.score));
    }
    Ok(reply::ok(summarize(&accounts, &outcomes)))
}

/// `outcomes`: for each judged intervention, whether the account is still a customer with a
/// higher score than when the task was created.
pub fn summarize(accounts: &[crm_schemas::AccountHealth], outcomes: &[bool]) -> serde_json::Value {
    let total = accounts.len();
    let round = |x: f64| (x * 10.0).round() / 10.0;
    let avg = |values: Vec<f64>| if values.is_empty() { None } else { Some(round(values.iter().sum::<f64>() / values.len() as f64)) };
    let mrr = |keep: &dyn Fn(&crm_schemas::AccountHealth) -> bool| round(accounts.iter().filter(|a| keep(a)).filter_map(|a| a.mrr).sum::<f64>());
    let with_churn: Vec<&crm_schemas::AccountHealth> = accounts.iter().filter(|a| a.churn_probability.is_some()).collect();
    let churn_risk = (!with_churn.is_empty()).then(|| {
        let mean = with_churn.iter().filter_map(|a| a.churn_probability).sum::<f64>() / with_churn.len() as f64;
        (mean * 1000.0).round() / 1000.0
    });
    let expected_churn_mrr = (!with_churn.is_empty()).then(|| round(with_churn.iter().map(|a| a.churn_probability.unwrap_or(0.0) * a.mrr.unwrap_or(0.0)).sum()));
    let success_rate = (!outcomes.is_empty()).then(|| (outcomes.iter().filter(|&&o| o).count() as f64 / outcomes.len() as f64 * 1000.0).round() / 1000.0);
    let mut not_available = Vec::new();
    if churn_risk.is_none() {
        not_available.push(json!({ "field": "avg_churn_risk", "reason": "no churn probabilities yet: run `crm batch churn` (needs cancellations in the imported invoices)" }));
        not_available.push(json!({ "field": "expected_churn_mrr", "reason": "no churn probabilities yet" }));
    }
    if success_rate.is_none() {
        not_available.push(json!({
            "field": "intervention_success_rate",
            "reason": format!("no playbook task closed at least {INTERVENTION_JUDGED_AFTER_DAYS} days ago with a health score from when it was created"),
        }));
    }
    json!({
        "total_accounts": total,
        "avg_health_score": avg(accounts.iter().map(|a| a.score).collect()),
        "critical_accounts": accounts.iter().filter(|a| a.risk == "critical").count(),
        "at_risk_accounts": accounts.iter().filter(|a| a.risk == "at_risk").count(),
        "total_mrr": mrr(&|_| true),
        "at_risk_mrr": mrr(&|a| a.risk != "healthy"),
        "avg_change_7d": avg(accounts.iter().filter_map(|a| a.change_7d).collect()),
        "declining_accounts": accounts.iter().filter(|a| a.change_7d.is_some_and(|c| c < 0.0)).count(),
        "avg_churn_risk": churn_risk,
        "expected_churn_mrr": expected_churn_mrr,
        "accounts_with_churn_risk": with_churn.len(),
        "intervention_success_rate": success_rate,
        "interventions_judged": outcomes.len(),
        "not_available": not_available,
    })
}

/// Playbook tasks, oldest due first; `status` and `account_id` filter.
pub async fn tasks(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AccountsRead)?;
    let site_id = params::required(&query, "site_id")?;
    let status = query.get("status").map(String::as_str);
    if status.is_some_and(|s| !matches!(s, "open" | "done")) {
        return Err(ApiError::InvalidParameter { name: "status".into(), message: "must be open or done".into() });
    }
    let limit = params::limit(&query, 500, 1000)?;
    let cursor = reply::decode_cursor(query.get("cursor"))?;
    let mut tasks = state.store.tasks(site_id).await?;
    tasks.retain(|t| status.is_none_or(|s| t.status == s) && query.get("account_id").is_none_or(|a| &t.account_id == a));
    tasks.sort_by(|a, b| a.due_ms.cmp(&b.due_ms).then_with(|| a.task_id.cmp(&b.task_id)));
    let key = |t: &crm_schemas::Task| format!("{:020}\u{1f}{}", t.due_ms.max(0), t.task_id);
    let (tasks, next) = reply::slice_after(tasks, key, cursor.as_deref(), limit);
    let items: Vec<serde_json::Value> = tasks
        .iter()
        .map(|t| {
            let mut v = serde_json::to_value(t).unwrap_or(serde_json::Value::Null);
            v["due"] = json!(rfc3339(t.due_ms));
            v
        })
        .collect();
    Ok(reply::page(items, next, limit))
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
    user.require(crate::rbac::Permission::AccountsUpdate)?;
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
        let summary = summarize(&[a.clone(), b.clone(), c.clone()], &[]);
        assert_eq!(summary["total_accounts"], 3);
        assert_eq!(summary["avg_health_score"], 55.0);
        assert_eq!((summary["critical_accounts"].as_u64(), summary["at_risk_accounts"].as_u64()), (Some(1), Some(1)));
        assert_eq!((summary["total_mrr"].as_f64(), summary["at_risk_mrr"].as_f64()), (Some(450.0), Some(350.0)));
        assert_eq!((summary["avg_change_7d"].as_f64(), summary["declining_accounts"].as_u64()), (Some(-2.5), Some(1)));
        assert!(summary["avg_churn_risk"].is_null());
        assert_eq!(summary["not_available"].as_array().unwrap().len(), 3);
        assert_eq!(summarize(&[], &[])["avg_health_score"], serde_json::Value::Null);

        // With churn probabilities (b: 0.8 × 250 MRR, c: 0.2 × 200 MRR) and two judged interventions.
        let (mut b, mut c) = (b, c);
        b.churn_probability = Some(0.8);
        c.churn_probability = Some(0.2);
        c.mrr = Some(200.0);
        let summary = summarize(&[a, b, c], &[true, false, true, true]);
        assert_eq!(summary["avg_churn_risk"].as_f64(), Some(0.5), "mean over the two accounts with a probability");
        assert_eq!(summary["expected_churn_mrr"].as_f64(), Some(240.0));
        assert_eq!(summary["intervention_success_rate"].as_f64(), Some(0.75));
        assert!(summary["not_available"].as_array().unwrap().is_empty());
    }

    #[test]
    fn former_customers_are_not_current() {
        let old = sample_health("gone", 5, 20.0, "critical");
        let kept = sample_health("kept", 9, 70.0, "healthy");
        let accounts = current(vec![old, kept]);
        assert_eq!(accounts.iter().map(|a| a.account_id.as_str()).collect::<Vec<_>>(), vec!["kept"]);
    }
}
