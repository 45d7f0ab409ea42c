//! Alert rules (`/api/v1/alert-rules`) and the alerts they fired with their delivery logs
//! (`/api/v1/alerts`). A rule's webhook secret is shown once, in the answer that creates it;
//! listings redact it.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_schemas::{valid_key, AlertCondition, AlertRule};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{now_ms, AuthUser};
use crate::params::{self, rfc3339};
use crate::{reply, ApiError, ApiState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleInput {
    site_id: String,
    rule_id: Option<String>,
    name: String,
    condition: AlertCondition,
    webhook_url: String,
    #[serde(default = "default_window")]
    window_hours: u32,
    #[serde(default = "default_enabled")]
    enabled: bool,
}

fn default_window() -> u32 {
    24
}

fn default_enabled() -> bool {
    true
}

fn validate(input: &RuleInput) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if input.rule_id.as_deref().is_some_and(|id| !valid_key(id)) {
        problems.push(("rule_id".into(), "must be 1-64 characters of [A-Za-z0-9._-]".into()));
    }
    if input.name.trim().is_empty() || input.name.chars().count() > 200 {
        problems.push(("name".into(), "must be 1-200 characters".into()));
    }
    match url::Url::parse(&input.webhook_url) {
        Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() && input.webhook_url.len() <= 2048 => {}
        _ => problems.push(("webhook_url".into(), "must be an absolute http(s) URL".into())),
    }
    if !(1..=8760).contains(&input.window_hours) {
        problems.push(("window_hours".into(), "must be between 1 and 8760".into()));
    }
    match &input.condition {
        AlertCondition::ScoreCrossed { threshold } if !(1..=100).contains(threshold) => {
            problems.push(("condition.threshold".into(), "must be between 1 and 100".into()));
        }
        AlertCondition::PageViews { path, min_count, within_days } => {
            if path.is_empty() || path.len() > 200 {
                problems.push(("condition.path".into(), "must be 1-200 characters".into()));
            }
            if *min_count == 0 || *min_count > 10_000 {
                problems.push(("condition.min_count".into(), "must be between 1 and 10000".into()));
            }
            if !(1..=365).contains(within_days) {
                problems.push(("condition.within_days".into(), "must be between 1 and 365".into()));
            }
        }
        AlertCondition::TargetAccount { domains } => {
            if domains.is_empty() || domains.len() > 1000 || domains.iter().any(|d| !d.contains('.') || d.len() > 253 || d.contains(char::is_whitespace)) {
                problems.push(("condition.domains".into(), "1-1000 domain names like acme.com".into()));
            }
        }
        AlertCondition::Playbook { rules } => {
            if rules.iter().any(|r| !crm_schemas::PLAYBOOK_RULES.contains(&r.as_str())) {
                problems.push(("condition.rules".into(), format!("each rule must be one of {}", crm_schemas::PLAYBOOK_RULES.join(", "))));
            }
        }
        AlertCondition::ScoreCrossed { .. } | AlertCondition::ChatHandoff { .. } => {}
    }
    problems
}

fn redacted(rule: &AlertRule) -> Value {
    let mut value = serde_json::to_value(rule).unwrap_or(Value::Null);
    value["secret"] = Value::String("(redacted)".into());
    value["created_at"] = Value::String(rfc3339(rule.created_at_ms));
    value
}

pub async fn list_rules(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AlertsRead)?;
    let site_id = params::required(&query, "site_id")?;
    let rules = state.store.alert_rules(site_id).await?;
    Ok(reply::ok(rules.iter().map(redacted).collect::<Vec<_>>()))
}

pub async fn create_rule(State(state): State<ApiState>, user: AuthUser, body: Bytes) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AlertsManage)?;
    let input: RuleInput = params::json(&body)?;
    let problems = validate(&input);
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    if state.store.site(&input.site_id).await?.is_none() {
        return Err(ApiError::NotFound(format!("site {}", input.site_id)));
    }
    let rule_id = input.rule_id.clone().unwrap_or_else(|| format!("rule_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    if state.store.alert_rules(&input.site_id).await?.iter().any(|r| r.rule_id == rule_id) {
        return Err(ApiError::Conflict { code: "rule_exists", message: format!("rule {rule_id} already exists"), details: None });
    }
    let secret = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
    let rule = AlertRule {
        site_id: input.site_id,
        rule_id,
        name: input.name.trim().to_owned(),
        condition: input.condition,
        webhook_url: input.webhook_url,
        secret,
        window_hours: input.window_hours,
        enabled: input.enabled,
        created_at_ms: now_ms(),
    };
    state.store.put_alert_rule(&crate::secrets::seal_rule(rule.clone(), state.secrets.as_deref())).await?;
    tracing::info!(site_id = %rule.site_id, rule_id = %rule.rule_id, by = %user.username, "alert rule created");
    let mut body = redacted(&rule);
    body["secret"] = Value::String(rule.secret.clone());
    body["secret_note"] = Value::String("shown once: verify X-CRM-Signature = sha256=HMAC-SHA256(secret, \"{X-CRM-Timestamp}.{body}\")".into());
    Ok(reply::created(body))
}

pub async fn delete_rule(State(state): State<ApiState>, user: AuthUser, Path((site_id, rule_id)): Path<(String, String)>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AlertsManage)?;
    if !state.store.delete_alert_rule(&site_id, &rule_id).await? {
        return Err(ApiError::NotFound(format!("alert rule {rule_id}")));
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn list_alerts(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AlertsRead)?;
    let site_id = params::required(&query, "site_id")?;
    let limit = params::limit(&query, 100, 1000)?;
    let alerts = state.store.alerts(site_id, limit).await?;
    let items: Vec<Value> = alerts
        .into_iter()
        .map(|a| {
            let attempts: Vec<Value> =
                a.attempts.iter().map(|t| json!({ "at": rfc3339(t.at_ms), "status_code": t.status_code, "error": t.error })).collect();
            json!({
                "alert_id": a.alert_id, "rule_id": a.rule_id, "rule_name": a.rule_name, "lead_id": a.lead_id,
                "lead_email": a.lead_email, "lead_score": a.lead_score, "message": a.message,
                "fired_at": rfc3339(a.fired_at_ms), "status": a.status, "next_attempt": rfc3339(a.next_attempt_ms), "attempts": attempts,
            })
        })
        .collect();
    Ok(reply::ok(items))
}
