//! Leads: the identified people the pipeline derives from visitors, with the CRM fields people
//! edit (status, owner, notes, soft delete, outcome), their audit trail, score history, merged
//! multi-device timeline, the score-feedback report and the identity conflicts to resolve.
//!
//! Who may do what: admins and sales managers edit any lead; sales reps edit leads that are
//! theirs or unowned (and may only assign them to themselves); customer success reads.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_schemas::{
    lead_id_for, lead_score, normalize_email, Lead, LeadAudit, LeadCrm, LeadStatus, Outcome, OutcomeRecord, Role, Scalar,
};
use crm_store::{LeadQuery, LeadRecord, LeadSort, WriteBatch};
use serde::Deserialize;
use serde_json::{json, Value};

use crate::auth::{now_ms, AuthUser};
use crate::params::{self, rfc3339};
use crate::{reply, ApiError, ApiState};

/// The API's view of a lead: pipeline facts and CRM fields side by side.
pub(crate) fn view(record: &LeadRecord) -> Value {
    let (lead, crm) = (&record.lead, record.crm.as_ref());
    let text = |key: &str| lead.traits.get(key).map(Scalar::to_text);
    json!({
        "lead_id": lead.lead_id,
        "site_id": lead.site_id,
        "email": lead.email,
        "name": text("name"),
        "company": text("company").or_else(|| lead.company_domain.clone()).or_else(|| lead.ip_org.clone()),
        "company_domain": lead.company_domain,
        "ip_org": lead.ip_org,
        "status": record.status(),
        "owner": crm.and_then(|c| c.owner.clone()),
        "notes": crm.and_then(|c| c.notes.clone()),
        "outcome": crm.and_then(|c| c.outcome.clone()),
        "deleted_at": crm.and_then(|c| c.deleted_at_ms).map(rfc3339),
        "source": lead.source,
        "first_utm": lead.first_utm,
        "visitor_ids": lead.visitor_ids,
        "first_seen": rfc3339(lead.first_seen_ms),
        "last_activity": rfc3339(lead.last_activity_ms),
        "created_at": rfc3339(lead.created_at_ms),
        "score": lead.score,
        "score_breakdown": lead.breakdown,
        "score_reasons": lead.reasons,
        "activity": lead.activity,
        "traits": lead.traits,
        "merged_into": lead.merged_into,
    })
}

fn site_param(query: &params::Query) -> Result<String, ApiError> {
    Ok(params::required(query, "site_id")?.to_owned())
}

fn score_param(query: &params::Query, name: &str) -> Result<Option<u8>, ApiError> {
    query
        .get(name)
        .map(|text| match text.parse::<u8>() {
            Ok(n) if n <= 100 => Ok(n),
            _ => Err(ApiError::InvalidParameter { name: name.into(), message: "must be an integer from 0 to 100".into() }),
        })
        .transpose()
}

async fn load(state: &ApiState, site_id: &str, lead_id: &str) -> Result<LeadRecord, ApiError> {
    let lead = state
        .store
        .leads(&[(site_id.to_owned(), lead_id.to_owned())])
        .await?
        .pop()
        .ok_or_else(|| ApiError::NotFound(format!("lead {lead_id}")))?;
    let crm = state.store.lead_crm(site_id, lead_id).await?;
    Ok(LeadRecord { lead, crm })
}

pub async fn list(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsRead)?;
    let limit = params::limit(&query, 50, 200)?;
    let include_deleted = params::flag(&query, "include_deleted")?;
    let status = params::optional_choice::<LeadStatus>(&query, "status", "new, working, qualified, unqualified, customer, lost")?;
    let lead_query = LeadQuery {
        site_id: site_param(&query)?,
        status,
        owner: query.get("owner").cloned(),
        min_score: score_param(&query, "min_score")?,
        max_score: score_param(&query, "max_score")?,
        company: query.get("company").cloned(),
        source: query.get("source").cloned(),
        active_since_ms: params::timestamp_ms(&query, "active_since")?,
        include_deleted,
        sort: params::choice::<LeadSort>(&query, "sort", "score, last_activity, created")?,
        limit,
        cursor: crate::reply::decode_cursor(query.get("cursor"))?,
    };
    let page = state.store.list_leads(&lead_query).await?;
    Ok(reply::page(page.items.iter().map(view).collect(), page.next_cursor, limit))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInput {
    site_id: String,
    email: String,
    #[serde(default)]
    traits: std::collections::BTreeMap<String, Scalar>,
}

/// Adds a lead by hand (a contact met at an event). Its visitors link when they identify.
pub async fn create(State(state): State<ApiState>, user: AuthUser, body: Bytes) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsCreate)?;
    let input: CreateInput = params::json(&body)?;
    let email = normalize_email(&input.email).ok_or_else(|| ApiError::Validation(vec![("email".into(), "is not a valid email address".into())]))?;
    if input.traits.len() > 50 || input.traits.keys().any(|k| k.is_empty() || k.len() > 64) {
        return Err(ApiError::Validation(vec![("traits".into(), "at most 50 traits with 1-64 byte keys".into())]));
    }
    let site = state.store.site(&input.site_id).await?.ok_or_else(|| ApiError::NotFound(format!("site {}", input.site_id)))?;
    let lead_id = lead_id_for(&site.site_id, &email);
    if !state.store.leads(&[(site.site_id.clone(), lead_id.clone())]).await?.is_empty() {
        return Err(ApiError::Conflict { code: "lead_exists", message: format!("a lead with email {email} exists"), details: Some(json!({ "lead_id": lead_id })) });
    }
    let now = now_ms();
    let mut lead = Lead {
        site_id: site.site_id.clone(),
        lead_id,
        company_domain: crm_schemas::company_domain(&email),
        traits: input.traits,
        source: "manual".into(),
        first_seen_ms: now,
        last_activity_ms: now,
        created_at_ms: now,
        email,
        ..Lead::default()
    };
    lead.traits.insert("email".into(), Scalar::Str(lead.email.clone()));
    let (score, breakdown, reasons) = lead_score::score(&lead, &site.icp, now);
    (lead.score, lead.breakdown, lead.reasons) = (score, breakdown, reasons);
    let point = crm_schemas::ScorePoint { site_id: lead.site_id.clone(), lead_id: lead.lead_id.clone(), at_ms: now, score };
    state.store.write(WriteBatch { leads: vec![lead.clone()], score_points: vec![point], ..WriteBatch::default() }.into()).await?;
    tracing::info!(site_id = %lead.site_id, lead_id = %lead.lead_id, by = %user.username, "lead created by hand");
    Ok(reply::created(view(&LeadRecord { lead, crm: None })))
}

pub async fn get_one(State(state): State<ApiState>, user: AuthUser, Path(lead_id): Path<String>, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsRead)?;
    let site_id = site_param(&query)?;
    let record = load(&state, &site_id, &lead_id).await?;
    let history = state.store.score_history(&site_id, &lead_id, 100).await?;
    let insight = state.store.insight(&site_id, &lead_id).await?;
    let mut body = view(&record);
    body["ai_insight"] = match insight {
        Some(i) => json!({ "generated_at": rfc3339(i.generated_at_ms), "model": i.model, "score": i.score,
                           "key_factors": i.key_factors, "next_actions": i.next_actions, "objections": i.objections }),
        None => Value::Null,
    };
    body["score_history"] = history.iter().map(|p| json!({ "at": rfc3339(p.at_ms), "score": p.score })).collect();
    Ok(reply::ok(body))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchInput {
    status: Option<LeadStatus>,
    /// `null` unassigns.
    #[serde(default, deserialize_with = "double_option")]
    owner: Option<Option<String>>,
    #[serde(default, deserialize_with = "double_option")]
    notes: Option<Option<String>>,
}

/// Distinguishes an absent field (`None`) from an explicit `null` (`Some(None)`).
fn double_option<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
    Option::<String>::deserialize(d).map(Some)
}

fn text<T: serde::Serialize>(value: &T) -> Option<String> {
    match serde_json::to_value(value).ok()? {
        Value::Null => None,
        Value::String(s) => Some(s),
        other => Some(other.to_string()),
    }
}

/// Applies a change to the CRM fields, recording one audit entry per changed field.
fn change<T: serde::Serialize + PartialEq>(audit: &mut Vec<LeadAudit>, base: &LeadCrm, by: &str, field: &str, old: &T, new: &T) {
    if old != new {
        audit.push(LeadAudit {
            site_id: base.site_id.clone(),
            lead_id: base.lead_id.clone(),
            at_ms: now_ms(),
            by: by.to_owned(),
            field: field.to_owned(),
            old: text(old),
            new: text(new),
        });
    }
}

fn may_edit(user: &AuthUser, crm: &LeadCrm) -> Result<(), ApiError> {
    match user.role {
        Role::Admin | Role::SalesManager => Ok(()),
        Role::SalesRep if crm.owner.as_deref().is_none_or(|o| o == user.username) => Ok(()),
        Role::SalesRep => Err(ApiError::Forbidden("edit leads owned by someone else")),
        Role::CustomerSuccess => Err(ApiError::Forbidden("edit leads")),
    }
}

fn crm_or_default(record: &LeadRecord) -> LeadCrm {
    record.crm.clone().unwrap_or_else(|| LeadCrm {
        site_id: record.lead.site_id.clone(),
        lead_id: record.lead.lead_id.clone(),
        ..LeadCrm::default()
    })
}

pub async fn patch(
    State(state): State<ApiState>,
    user: AuthUser,
    Path(lead_id): Path<String>,
    Query(query): Query<params::Query>,
    body: Bytes,
) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsUpdate)?;
    let site_id = site_param(&query)?;
    let input: PatchInput = params::json(&body)?;
    let record = load(&state, &site_id, &lead_id).await?;
    let old = crm_or_default(&record);
    may_edit(&user, &old)?;
    let mut new = old.clone();
    let mut problems = Vec::new();
    if let Some(status) = input.status {
        new.status = status;
    }
    if let Some(owner) = input.owner {
        if let Some(name) = &owner {
            if user.role == Role::SalesRep && name != &user.username {
                return Err(ApiError::Forbidden("assign leads to someone else"));
            }
            if state.store.user(name).await?.is_none() {
                problems.push(("owner".to_owned(), format!("no user named {name}")));
            }
        }
        new.owner = owner;
    }
    if let Some(notes) = input.notes {
        if notes.as_ref().is_some_and(|n| n.chars().count() > 10_000) {
            problems.push(("notes".to_owned(), "at most 10000 characters".to_owned()));
        }
        new.notes = notes;
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let mut audit = Vec::new();
    change(&mut audit, &old, &user.username, "status", &old.status, &new.status);
    change(&mut audit, &old, &user.username, "owner", &old.owner, &new.owner);
    change(&mut audit, &old, &user.username, "notes", &old.notes, &new.notes);
    if !audit.is_empty() {
        new.updated_at_ms = now_ms();
        state.store.put_lead_crm(&new, &audit).await?;
    }
    Ok(reply::ok(view(&LeadRecord { lead: record.lead, crm: Some(new) })))
}

pub async fn delete(State(state): State<ApiState>, user: AuthUser, Path(lead_id): Path<String>, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsDelete)?;
    let site_id = site_param(&query)?;
    let record = load(&state, &site_id, &lead_id).await?;
    let old = crm_or_default(&record);
    if old.deleted_at_ms.is_some() {
        return Err(ApiError::NotFound(format!("lead {lead_id}")));
    }
    let now = now_ms();
    let new = LeadCrm { deleted_at_ms: Some(now), updated_at_ms: now, ..old.clone() };
    let mut audit = Vec::new();
    change(&mut audit, &old, &user.username, "deleted_at", &old.deleted_at_ms.map(rfc3339), &Some(rfc3339(now)));
    state.store.put_lead_crm(&new, &audit).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

pub async fn timeline(State(state): State<ApiState>, user: AuthUser, Path(lead_id): Path<String>, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsRead)?;
    let site_id = site_param(&query)?;
    let limit = params::limit(&query, 100, 500)?;
    let cursor = crate::reply::decode_cursor(query.get("cursor"))?;
    let record = load(&state, &site_id, &lead_id).await?;
    let page = state.store.events_of_visitors(&site_id, &record.lead.visitor_ids, limit, cursor.as_deref()).await?;
    let items: Vec<Value> = page
        .items
        .into_iter()
        .map(|event| {
            let mut value = serde_json::to_value(&event).unwrap_or(Value::Null);
            value["at"] = json!(rfc3339(event.ts_ms));
            value
        })
        .collect();
    Ok(reply::page(items, page.next_cursor, limit))
}

pub async fn audit(State(state): State<ApiState>, user: AuthUser, Path(lead_id): Path<String>, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsRead)?;
    let site_id = site_param(&query)?;
    let limit = params::limit(&query, 100, 1000)?;
    load(&state, &site_id, &lead_id).await?;
    let entries = state.store.lead_audit(&site_id, &lead_id, limit).await?;
    let items: Vec<Value> = entries
        .into_iter()
        .map(|a| json!({ "at": rfc3339(a.at_ms), "by": a.by, "field": a.field, "old": a.old, "new": a.new }))
        .collect();
    Ok(reply::ok(items))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OutcomeInput {
    outcome: Outcome,
}

/// Records how a lead ended (feeds the score-feedback report) and sets the matching status.
pub async fn outcome(
    State(state): State<ApiState>,
    user: AuthUser,
    Path(lead_id): Path<String>,
    Query(query): Query<params::Query>,
    body: Bytes,
) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsUpdate)?;
    let site_id = site_param(&query)?;
    let input: OutcomeInput = params::json(&body)?;
    let record = load(&state, &site_id, &lead_id).await?;
    let old = crm_or_default(&record);
    may_edit(&user, &old)?;
    let now = now_ms();
    let status = match input.outcome {
        Outcome::Won => LeadStatus::Customer,
        Outcome::Lost => LeadStatus::Lost,
        Outcome::Unqualified => LeadStatus::Unqualified,
    };
    let outcome = OutcomeRecord { outcome: input.outcome, score: record.lead.score, at_ms: now, by: user.username.clone() };
    let new = LeadCrm { status, outcome: Some(outcome), updated_at_ms: now, ..old.clone() };
    let mut audit = Vec::new();
    change(&mut audit, &old, &user.username, "status", &old.status, &new.status);
    change(&mut audit, &old, &user.username, "outcome", &old.outcome.as_ref().map(|o| o.outcome), &Some(input.outcome));
    state.store.put_lead_crm(&new, &audit).await?;
    Ok(reply::ok(view(&LeadRecord { lead: record.lead, crm: Some(new) })))
}

/// Win rate by score band at the time the outcome was recorded (the seed's `ai_score_feedback`):
/// High ≥ 80, Medium ≥ 50, Low below.
pub async fn score_feedback(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::ReportsRead)?;
    let site_id = site_param(&query)?;
    let mut bands = [("high", 0u64, 0u64), ("medium", 0, 0), ("low", 0, 0)];
    let mut lead_query = LeadQuery { site_id, include_deleted: true, limit: 1000, ..LeadQuery::default() };
    loop {
        let page = state.store.list_leads(&lead_query).await?;
        for record in &page.items {
            let Some(outcome) = record.crm.as_ref().and_then(|c| c.outcome.as_ref()) else { continue };
            let band = match outcome.score {
                80.. => 0,
                50..=79 => 1,
                _ => 2,
            };
            bands[band].1 += 1;
            bands[band].2 += u64::from(outcome.outcome == Outcome::Won);
        }
        match page.next_cursor {
            Some(cursor) => lead_query.cursor = Some(cursor),
            None => break,
        }
    }
    let items: Vec<Value> = bands
        .iter()
        .map(|(band, total, won)| {
            let rate = if *total == 0 { Value::Null } else { json!(*won as f64 / *total as f64) };
            json!({ "band": band, "leads_with_outcome": total, "won": won, "win_rate": rate })
        })
        .collect();
    Ok(reply::ok(json!({ "bands": items })))
}

pub async fn conflicts(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsMerge)?;
    let site_id = site_param(&query)?;
    let limit = params::limit(&query, 100, 1000)?;
    let all = matches!(query.get("all").map(String::as_str), Some("true"));
    let items = state.store.identity_conflicts(&site_id, !all, limit).await?;
    let items: Vec<Value> = items
        .into_iter()
        .map(|c| {
            json!({ "visitor_id": c.visitor_id, "lead_id": c.lead_id, "other_lead_id": c.other_lead_id,
                    "other_email": c.other_email, "event_id": c.event_id, "at": rfc3339(c.at_ms), "resolved": c.resolved })
        })
        .collect();
    Ok(reply::ok(items))
}
