//! Explicit identity decisions: merge two leads, split a visitor off a lead, resolve a
//! conflict. Each decision is stored as an [`IdentityOverride`] (which the stream processor
//! applies from then on), and the affected leads are recomputed right away from their visitors'
//! profiles so the answer and every read after it show the result.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use crm_schemas::{lead_score, IdentityMap, IdentityOverride, Lead, LeadAudit, OverrideKind, ScorePoint};
use crm_store::{LeadRecord, WriteBatch};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{now_ms, AuthUser};
use crate::params;
use crate::{reply, ApiError, ApiState};

async fn lead(state: &ApiState, site_id: &str, lead_id: &str) -> Result<Lead, ApiError> {
    state.store.leads(&[(site_id.to_owned(), lead_id.to_owned())]).await?.pop().ok_or_else(|| ApiError::NotFound(format!("lead {lead_id}")))
}

/// Stores the decision, then recomputes `targets` (canonical leads) under all of the site's
/// decisions and writes them with the leads merged into them.
async fn decide(state: &ApiState, user: &AuthUser, decision: IdentityOverride, targets: &[String], audit: Vec<LeadAudit>) -> Result<Vec<Lead>, ApiError> {
    let site_id = decision.site_id.clone();
    state.store.put_identity_override(&decision).await?;
    let map = IdentityMap::new(&state.store.identity_overrides(&site_id).await?);
    let site = state.store.site(&site_id).await?.ok_or_else(|| ApiError::NotFound(format!("site {site_id}")))?;
    let now = now_ms();
    let mut batch = WriteBatch::default();
    let mut result = Vec::new();
    for target in targets {
        let mut current = lead(state, &site_id, target).await?;
        let merged_keys: Vec<(String, String)> = map.merged_into(target).into_iter().map(|l| (site_id.clone(), l)).collect();
        let merged_from = if merged_keys.is_empty() { Vec::new() } else { state.store.leads(&merged_keys).await? };
        map.resolve(&mut current, &merged_from);
        let keys: Vec<(String, String)> = current.visitor_ids.iter().map(|v| (site_id.clone(), v.clone())).collect();
        let profiles = state.store.visitors(&keys).await?;
        let before = lead_score::recompute(&mut current, &profiles.iter().collect::<Vec<_>>(), &site.icp, now);
        if before != current.score {
            batch.score_points.push(ScorePoint { site_id: site_id.clone(), lead_id: current.lead_id.clone(), at_ms: now, score: current.score });
        }
        for mut other in merged_from {
            other.merged_into = Some(current.lead_id.clone());
            batch.leads.push(other);
        }
        batch.leads.push(current.clone());
        result.push(current);
    }
    state.store.write(batch.into()).await?;
    for entry in audit.iter().filter(|a| targets.contains(&a.lead_id)) {
        let crm = state.store.lead_crm(&site_id, &entry.lead_id).await?.unwrap_or_else(|| crm_schemas::LeadCrm {
            site_id: site_id.clone(),
            lead_id: entry.lead_id.clone(),
            updated_at_ms: now,
            ..crm_schemas::LeadCrm::default()
        });
        state.store.put_lead_crm(&crm, std::slice::from_ref(entry)).await?;
    }
    tracing::info!(%site_id, by = %user.username, decision = ?decision.kind, "identity decision applied");
    Ok(result)
}

fn audit(site_id: &str, lead_id: &str, by: &str, field: &str, old: Option<String>, new: Option<String>) -> LeadAudit {
    LeadAudit { site_id: site_id.into(), lead_id: lead_id.into(), at_ms: now_ms(), by: by.into(), field: field.into(), old, new }
}

/// Resolves every open conflict between the given leads.
async fn resolve_between(state: &ApiState, site_id: &str, leads: &[&str]) -> Result<(), ApiError> {
    let set: HashSet<&str> = leads.iter().copied().collect();
    for conflict in state.store.identity_conflicts(site_id, true, 10_000).await? {
        if set.contains(conflict.lead_id.as_str()) && set.contains(conflict.other_lead_id.as_str()) {
            state.store.resolve_conflict(site_id, &conflict.visitor_id, &conflict.other_lead_id).await?;
        }
    }
    Ok(())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MergeInput {
    /// The lead folded into the one in the path.
    lead_id: String,
}

pub async fn merge(
    State(state): State<ApiState>,
    user: AuthUser,
    Path(into): Path<String>,
    Query(query): Query<params::Query>,
    body: Bytes,
) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsMerge)?;
    let site_id = params::required(&query, "site_id")?.to_owned();
    let input: MergeInput = params::json(&body)?;
    if input.lead_id == into {
        return Err(ApiError::Validation(vec![("lead_id".into(), "a lead cannot be merged into itself".into())]));
    }
    let target = lead(&state, &site_id, &into).await?;
    let from = lead(&state, &site_id, &input.lead_id).await?;
    if target.merged_into.is_some() || from.merged_into.is_some() {
        return Err(ApiError::Conflict { code: "already_merged", message: "one of the leads was already merged away".into(), details: None });
    }
    let decision = IdentityOverride {
        site_id: site_id.clone(),
        kind: OverrideKind::Merge { from_lead_id: from.lead_id.clone(), into_lead_id: target.lead_id.clone() },
        by: user.username.clone(),
        at_ms: now_ms(),
    };
    let entries = vec![audit(&site_id, &into, &user.username, "merged", None, Some(from.email.clone()))];
    let mut leads = decide(&state, &user, decision, std::slice::from_ref(&into), entries).await?;
    resolve_between(&state, &site_id, &[&into, &from.lead_id]).await?;
    let merged = leads.remove(0);
    Ok(reply::ok(crate::leads::view(&LeadRecord { crm: state.store.lead_crm(&site_id, &into).await?, lead: merged })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SplitInput {
    visitor_id: String,
    /// The lead the visitor really belongs to; absent = nobody (an unidentified visitor).
    to_lead_id: Option<String>,
}

pub async fn split(
    State(state): State<ApiState>,
    user: AuthUser,
    Path(from): Path<String>,
    Query(query): Query<params::Query>,
    body: Bytes,
) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsMerge)?;
    let site_id = params::required(&query, "site_id")?.to_owned();
    let input: SplitInput = params::json(&body)?;
    let source = lead(&state, &site_id, &from).await?;
    if !source.visitor_ids.contains(&input.visitor_id) {
        return Err(ApiError::Validation(vec![("visitor_id".into(), format!("is not one of lead {from}'s visitors"))]));
    }
    let mut targets = vec![from.clone()];
    if let Some(to) = &input.to_lead_id {
        if to == &from {
            return Err(ApiError::Validation(vec![("to_lead_id".into(), "must differ from the lead split".into())]));
        }
        lead(&state, &site_id, to).await?;
        targets.push(to.clone());
    }
    let decision = IdentityOverride {
        site_id: site_id.clone(),
        kind: OverrideKind::MoveVisitor { visitor_id: input.visitor_id.clone(), to_lead_id: input.to_lead_id.clone() },
        by: user.username.clone(),
        at_ms: now_ms(),
    };
    let mut entries = vec![audit(&site_id, &from, &user.username, "visitor_removed", Some(input.visitor_id.clone()), input.to_lead_id.clone())];
    if let Some(to) = &input.to_lead_id {
        entries.push(audit(&site_id, to, &user.username, "visitor_added", Some(from.clone()), Some(input.visitor_id.clone())));
    }
    let leads = decide(&state, &user, decision, &targets, entries).await?;
    if let Some(to) = &input.to_lead_id {
        state.store.resolve_conflict(&site_id, &input.visitor_id, to).await?;
    }
    let items: Vec<_> = leads.into_iter().map(|lead| crate::leads::view(&LeadRecord { lead, crm: None })).collect();
    Ok(reply::ok(json!({ "leads": items })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum Resolution {
    /// The visitor stays with its lead; the other identity keeps its own lead.
    Keep,
    /// The visitor belongs to the other identity.
    Move,
    /// Both identities are the same person.
    Merge,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResolveInput {
    visitor_id: String,
    other_lead_id: String,
    action: Resolution,
}

pub async fn resolve_conflict(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>, body: Bytes) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::LeadsMerge)?;
    let site_id = params::required(&query, "site_id")?.to_owned();
    let input: ResolveInput = params::json(&body)?;
    let conflict = state
        .store
        .identity_conflicts(&site_id, false, 10_000)
        .await?
        .into_iter()
        .find(|c| c.visitor_id == input.visitor_id && c.other_lead_id == input.other_lead_id)
        .ok_or_else(|| ApiError::NotFound("identity conflict".into()))?;
    match input.action {
        Resolution::Keep => {}
        Resolution::Move => {
            let decision = IdentityOverride {
                site_id: site_id.clone(),
                kind: OverrideKind::MoveVisitor { visitor_id: conflict.visitor_id.clone(), to_lead_id: Some(conflict.other_lead_id.clone()) },
                by: user.username.clone(),
                at_ms: now_ms(),
            };
            let entries = vec![audit(&site_id, &conflict.other_lead_id, &user.username, "visitor_added", Some(conflict.lead_id.clone()), Some(conflict.visitor_id.clone()))];
            decide(&state, &user, decision, &[conflict.lead_id.clone(), conflict.other_lead_id.clone()], entries).await?;
        }
        Resolution::Merge => {
            let decision = IdentityOverride {
                site_id: site_id.clone(),
                kind: OverrideKind::Merge { from_lead_id: conflict.other_lead_id.clone(), into_lead_id: conflict.lead_id.clone() },
                by: user.username.clone(),
                at_ms: now_ms(),
            };
            let entries = vec![audit(&site_id, &conflict.lead_id, &user.username, "merged", None, Some(conflict.other_email.clone()))];
            decide(&state, &user, decision, std::slice::from_ref(&conflict.lead_id), entries).await?;
        }
    }
    state.store.resolve_conflict(&site_id, &conflict.visitor_id, &conflict.other_lead_id).await?;
    Ok(reply::ok(json!({ "resolved": true })))
}
