//! Sites: the tracked websites with their allowed origins and intent page rules.

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::Response;
use crm_schemas::{IdealCustomerProfile, PageRule, Site};
use serde::Deserialize;

use crate::auth::{now_ms, AuthUser};
use crate::{reply, ApiError, ApiState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SiteInput {
    site_id: Option<String>,
    name: String,
    #[serde(default)]
    allowed_origins: Vec<String>,
    #[serde(default)]
    page_rules: Vec<PageRule>,
    intent_half_life_days: Option<f64>,
    /// What lead "company fit" is scored against.
    icp: Option<IdealCustomerProfile>,
    /// The chat widget: greeting, qualification questions, handoff rules.
    chat: Option<crm_schemas::ChatSettings>,
    /// Conversions (absent keeps the site's goals, `[]` removes them).
    goals: Option<Vec<crm_schemas::Goal>>,
    /// Privacy signals the collector honours (absent keeps them).
    privacy: Option<crm_schemas::PrivacySettings>,
    /// Bot signals beyond the user agent (absent keeps them).
    bots: Option<crm_schemas::BotSettings>,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
}

fn valid_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some(rest) = origin.strip_prefix("https://").or_else(|| origin.strip_prefix("http://")) else { return false };
    !rest.is_empty() && !rest.contains('/') && !rest.contains(char::is_whitespace) && origin.len() <= 255
}

/// Checks every field and returns all problems at once.
fn validate(input: &SiteInput) -> Vec<(String, String)> {
    let mut problems = Vec::new();
    if let Some(id) = &input.site_id {
        if !valid_id(id) {
            problems.push(("site_id".into(), "must be 1-64 characters of [A-Za-z0-9._-]".into()));
        }
    }
    if input.name.trim().is_empty() || input.name.len() > 200 {
        problems.push(("name".into(), "must be 1-200 characters".into()));
    }
    if input.allowed_origins.len() > 50 {
        problems.push(("allowed_origins".into(), "at most 50 origins".into()));
    }
    for (i, origin) in input.allowed_origins.iter().enumerate() {
        if !valid_origin(origin) {
            problems.push((format!("allowed_origins[{i}]"), "must be \"*\" or scheme://host[:port] without a path".into()));
        }
    }
    if input.page_rules.len() > 100 {
        problems.push(("page_rules".into(), "at most 100 rules".into()));
    }
    for (i, rule) in input.page_rules.iter().enumerate() {
        if rule.pattern.is_empty() || rule.pattern.len() > 200 {
            problems.push((format!("page_rules[{i}].pattern"), "must be 1-200 characters".into()));
        }
        if rule.signal.is_empty() || rule.signal.len() > 40 || !rule.signal.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_') {
            problems.push((format!("page_rules[{i}].signal"), "must be 1-40 characters of [a-z0-9_]".into()));
        }
        if !(0.0..=100.0).contains(&rule.points) {
            problems.push((format!("page_rules[{i}].points"), "must be between 0 and 100".into()));
        }
    }
    if let Some(half_life) = input.intent_half_life_days {
        if !(0.5..=365.0).contains(&half_life) {
            problems.push(("intent_half_life_days".into(), "must be between 0.5 and 365".into()));
        }
    }
    if let Some(days) = input.privacy.as_ref().and_then(|p| p.retention_days) {
        if !(1..=crm_schemas::MAX_SITE_RETENTION_DAYS).contains(&days) {
            problems.push(("privacy.retention_days".into(), format!("must be between 1 and {}", crm_schemas::MAX_SITE_RETENTION_DAYS)));
        }
    }
    if let Some(icp) = &input.icp {
        if let (Some(min), Some(max)) = (icp.min_employees, icp.max_employees) {
            if min > max {
                problems.push(("icp.min_employees".into(), "must not exceed icp.max_employees".into()));
            }
        }
        if icp.industries.len() > 100 || icp.tech.len() > 100 {
            problems.push(("icp".into(), "at most 100 industries and 100 technologies".into()));
        }
        if icp.min_revenue.is_some_and(|r| !r.is_finite() || r < 0.0) {
            problems.push(("icp.min_revenue".into(), "must be a non-negative number".into()));
        }
    }
    problems
}

fn parse_input(body: &Bytes) -> Result<SiteInput, ApiError> {
    let input: SiteInput = crate::params::json(body)?;
    let mut problems = validate(&input);
    if let Some(chat) = &input.chat {
        problems.extend(chat.check().into_iter().map(|p| (p.field, p.message)));
    }
    if let Some(goals) = &input.goals {
        problems.extend(crm_schemas::check_goals(goals).into_iter().map(|p| (p.field, p.message)));
    }
    if problems.is_empty() {
        Ok(input)
    } else {
        Err(ApiError::Validation(problems))
    }
}

/// Copies the editable settings of `input` onto `site`.
fn apply(site: &mut Site, input: SiteInput) {
    site.name = input.name.trim().to_owned();
    site.allowed_origins = input.allowed_origins;
    site.page_rules = input.page_rules;
    if let Some(half_life) = input.intent_half_life_days {
        site.intent_half_life_days = half_life;
    }
    if let Some(icp) = input.icp {
        site.icp = icp;
    }
    if let Some(chat) = input.chat {
        site.chat = chat;
    }
    if let Some(goals) = input.goals {
        site.goals = goals;
    }
    if let Some(privacy) = input.privacy {
        site.privacy = privacy;
    }
    if let Some(bots) = input.bots {
        site.bots = bots;
    }
}

fn notify(state: &ApiState, site: &Site) {
    if let Some(listener) = &state.site_listener {
        listener(site);
    }
}

pub async fn list(State(state): State<ApiState>, user: AuthUser) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::SitesRead)?;
    let mut sites = state.store.sites().await?;
    sites.sort_by(|a, b| a.site_id.cmp(&b.site_id));
    Ok(reply::ok(sites))
}

pub async fn get_one(State(state): State<ApiState>, user: AuthUser, Path(site_id): Path<String>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::SitesRead)?;
    let site = state.store.site(&site_id).await?.ok_or_else(|| ApiError::NotFound(format!("site {site_id}")))?;
    Ok(reply::ok(site))
}

pub async fn create(State(state): State<ApiState>, user: AuthUser, body: Bytes) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::SitesManage)?;
    let input = parse_input(&body)?;
    let site_id = input.site_id.clone().unwrap_or_else(|| format!("site_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    if state.store.site(&site_id).await?.is_some() {
        return Err(ApiError::Conflict { code: "site_exists", message: format!("site {site_id} already exists"), details: None });
    }
    let mut site = Site::new(site_id, "", now_ms());
    apply(&mut site, input);
    state.store.put_site(&site).await?;
    notify(&state, &site);
    tracing::info!(site_id = %site.site_id, by = %user.username, "site created");
    Ok(reply::created(site))
}

pub async fn replace(State(state): State<ApiState>, user: AuthUser, Path(site_id): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::SitesManage)?;
    let input = parse_input(&body)?;
    if input.site_id.as_deref().is_some_and(|id| id != site_id) {
        return Err(ApiError::Validation(vec![("site_id".into(), "cannot be changed".into())]));
    }
    let mut site = state.store.site(&site_id).await?.ok_or_else(|| ApiError::NotFound(format!("site {site_id}")))?;
    apply(&mut site, input);
    state.store.put_site(&site).await?;
    notify(&state, &site);
    Ok(reply::ok(site))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validation_reports_every_field() {
        let input: SiteInput = serde_json::from_str(
            r#"{"site_id":"bad id","name":"","allowed_origins":["https://ok.example","ftp://x","https://a.example/path"],
                "page_rules":[{"pattern":"","signal":"Bad Signal","points":500}],"intent_half_life_days":0,
                "icp":{"min_employees":500,"max_employees":50,"min_revenue":-1}}"#,
        )
        .unwrap();
        let fields: Vec<String> = validate(&input).into_iter().map(|(f, _)| f).collect();
        assert_eq!(
            fields,
            vec![
                "site_id",
                "name",
                "allowed_origins[1]",
                "allowed_origins[2]",
                "page_rules[0].pattern",
                "page_rules[0].signal",
                "page_rules[0].points",
                "intent_half_life_days",
                "icp.min_employees",
                "icp.min_revenue"
            ]
        );
        let fine: SiteInput = serde_json::from_str(r#"{"name":"Acme","allowed_origins":["*","http://localhost:3000"]}"#).unwrap();
        assert!(validate(&fine).is_empty());
    }
}
