//! Data-subject rights: `POST /api/v1/privacy/erase` (erase a visitor or a lead with all its
//! devices), `GET /api/v1/privacy/erasures` (the erase audit of a site) and
//! `GET /api/v1/privacy/export` (everything held about a visitor or lead, as one JSON document).
//!
//! An erase records its tombstone first (from then on the stream processor drops the subject's
//! replayed events), deletes every record on the store ([`crm_store::PrivacyStore`]), then
//! records the counts and completion. It answers once everything is gone; an erase that failed
//! half-way is finished by sending it again (the incomplete tombstone is reused). Both requests
//! are written to the audit log as well.

use std::collections::{BTreeSet, HashSet};

use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::response::Response;
use crm_schemas::{AuthEvent, Erasure, ErasureSubject, IdentityMap, Lead, Session, StoredEvent, VisitorProfile};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{now_ms, AuthUser};
use crate::rbac::Permission;
use crate::session::{audit, ClientInfo};
use crate::{params, reply, ApiError, ApiState};

/// Most events a subject access export carries (the document says when it was cut).
const MAX_EXPORT_EVENTS: usize = 100_000;
/// Most rows of the site-wide lists (dead letters, conversations, alerts) scanned for the subject.
const MAX_SCAN: usize = 20_000;
const MAX_ID_BYTES: usize = 256;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EraseInput {
    site_id: String,
    #[serde(default)]
    visitor_id: Option<String>,
    #[serde(default)]
    lead_id: Option<String>,
}

/// Who a request names, checked: exactly one of the two ids, each non-empty and bounded.
fn subject(visitor_id: Option<&str>, lead_id: Option<&str>) -> Result<ErasureSubject, ApiError> {
    let check = |name: &str, value: &str| -> Result<(), ApiError> {
        if value.is_empty() || value.len() > MAX_ID_BYTES {
            return Err(ApiError::Validation(vec![(name.to_owned(), format!("must be 1 to {MAX_ID_BYTES} bytes"))]));
        }
        Ok(())
    };
    match (visitor_id, lead_id) {
        (Some(visitor), None) => {
            check("visitor_id", visitor)?;
            Ok(ErasureSubject::Visitor { visitor_id: visitor.to_owned() })
        }
        (None, Some(lead)) => {
            check("lead_id", lead)?;
            Ok(ErasureSubject::Lead { lead_id: lead.to_owned() })
        }
        _ => Err(ApiError::Validation(vec![("visitor_id".into(), "give exactly one of visitor_id and lead_id".into())])),
    }
}

/// What the subject covers now: its visitors, its leads (a lead and the leads merged into it)
/// and the leads' emails (needles for dead letters; never stored in the tombstone).
struct Scope {
    visitor_ids: Vec<String>,
    leads: Vec<Lead>,
}

async fn scope(state: &ApiState, site_id: &str, subject: &ErasureSubject) -> Result<Option<Scope>, ApiError> {
    match subject {
        ErasureSubject::Lead { lead_id } => {
            let Some(lead) = state.store.leads(&[(site_id.to_owned(), lead_id.clone())]).await?.pop() else { return Ok(None) };
            let map = IdentityMap::new(&state.store.identity_overrides(site_id).await?);
            let merged: Vec<(String, String)> = map.merged_into(lead_id).into_iter().map(|l| (site_id.to_owned(), l)).collect();
            let mut leads = vec![lead];
            if !merged.is_empty() {
                leads.extend(state.store.leads(&merged).await?);
            }
            let visitor_ids: BTreeSet<String> = leads.iter().flat_map(|l| l.visitor_ids.iter().cloned()).collect();
            Ok(Some(Scope { visitor_ids: visitor_ids.into_iter().collect(), leads }))
        }
        ErasureSubject::Visitor { visitor_id } => {
            let profile = state.store.visitor(site_id, visitor_id).await?;
            if let Some(lead_id) = profile.as_ref().and_then(|p| p.lead_id.clone()) {
                return Err(ApiError::Conflict {
                    code: "visitor_is_identified",
                    message: format!("visitor {visitor_id} belongs to lead {lead_id}: erase the lead (all its devices), or split the visitor off it first"),
                    details: Some(json!({ "lead_id": lead_id })),
                });
            }
            let has_events = !state.store.visitor_events(site_id, visitor_id, 1, None).await?.items.is_empty();
            if profile.is_none() && !has_events {
                return Ok(None);
            }
            Ok(Some(Scope { visitor_ids: vec![visitor_id.clone()], leads: Vec::new() }))
        }
    }
}

pub async fn erase(State(state): State<ApiState>, user: AuthUser, client: ClientInfo, body: Bytes) -> Result<Response, ApiError> {
    user.require(Permission::PrivacyErase)?;
    let input: EraseInput = params::json(&body)?;
    let subject = subject(input.visitor_id.as_deref(), input.lead_id.as_deref())?;
    let site_id = input.site_id;
    state.store.site(&site_id).await?.ok_or_else(|| ApiError::NotFound(format!("site {site_id}")))?;
    // An earlier erase of the same subject that did not finish is finished, not started over:
    // its records may already be gone, so it is the only place that still knows its scope.
    let unfinished = state.store.erasures(&site_id).await?.into_iter().find(|e| e.subject == subject && e.completed_at_ms.is_none());
    let (mut erasure, emails) = match (scope(&state, &site_id, &subject).await?, unfinished) {
        (Some(found), unfinished) => {
            let mut erasure = unfinished.unwrap_or_else(|| Erasure {
                erasure_id: uuid::Uuid::new_v4().to_string(),
                site_id: site_id.clone(),
                subject: subject.clone(),
                visitor_ids: Vec::new(),
                lead_ids: Vec::new(),
                requested_by: user.username.clone(),
                at_ms: now_ms(),
                completed_at_ms: None,
                counts: Default::default(),
            });
            let visitors: BTreeSet<String> = erasure.visitor_ids.iter().cloned().chain(found.visitor_ids).collect();
            let leads: BTreeSet<String> = erasure.lead_ids.iter().cloned().chain(found.leads.iter().map(|l| l.lead_id.clone())).collect();
            (erasure.visitor_ids, erasure.lead_ids) = (visitors.into_iter().collect(), leads.into_iter().collect());
            erasure.at_ms = erasure.at_ms.max(now_ms());
            (erasure, found.leads.into_iter().map(|l| l.email).collect::<Vec<_>>())
        }
        (None, Some(unfinished)) => (unfinished, Vec::new()),
        (None, None) => {
            let what = match &subject {
                ErasureSubject::Visitor { visitor_id } => format!("visitor {visitor_id}"),
                ErasureSubject::Lead { lead_id } => format!("lead {lead_id}"),
            };
            return Err(ApiError::NotFound(what));
        }
    };
    state.store.put_erasure(&erasure).await?;
    let needles: Vec<String> = erasure.visitor_ids.iter().cloned().chain(emails).collect();
    let counts = state.store.erase_subject(&erasure, &needles).await?;
    for (kind, n) in counts {
        *erasure.counts.entry(kind).or_default() += n;
    }
    erasure.completed_at_ms = Some(now_ms());
    state.store.put_erasure(&erasure).await?;
    tracing::info!(site_id = %erasure.site_id, erasure_id = %erasure.erasure_id, by = %user.username, visitors = erasure.visitor_ids.len(), "data subject erased");
    audit(&state, AuthEvent::SubjectErased, &user.username, &client, None, Some(format!("site {} erasure {}", erasure.site_id, erasure.erasure_id))).await;
    Ok(reply::ok(erasure))
}

pub async fn erasures(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(Permission::PrivacyErase)?;
    let site_id = params::required(&query, "site_id")?;
    Ok(reply::ok(state.store.erasures(site_id).await?))
}

pub async fn export(State(state): State<ApiState>, user: AuthUser, client: ClientInfo, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(Permission::PrivacyExport)?;
    let site_id = params::required(&query, "site_id")?.to_owned();
    let subject = subject(query.get("visitor_id").map(String::as_str), query.get("lead_id").map(String::as_str))?;
    state.store.site(&site_id).await?.ok_or_else(|| ApiError::NotFound(format!("site {site_id}")))?;
    let found = match &subject {
        // An identified visitor's export is its lead's: the same person.
        ErasureSubject::Visitor { visitor_id } => match state.store.visitor(&site_id, visitor_id).await?.and_then(|p| p.lead_id) {
            Some(lead_id) => scope(&state, &site_id, &ErasureSubject::Lead { lead_id }).await?,
            None => scope(&state, &site_id, &subject).await?,
        },
        ErasureSubject::Lead { .. } => scope(&state, &site_id, &subject).await?,
    };
    let Some(found) = found else {
        return Err(ApiError::NotFound(match &subject {
            ErasureSubject::Visitor { visitor_id } => format!("visitor {visitor_id}"),
            ErasureSubject::Lead { lead_id } => format!("lead {lead_id}"),
        }));
    };
    let document = document(&state, &site_id, &found).await?;
    audit(&state, AuthEvent::SubjectExported, &user.username, &client, None, Some(format!("site {site_id} visitors {}", found.visitor_ids.join(",")))).await;
    tracing::info!(%site_id, by = %user.username, visitors = found.visitor_ids.len(), "subject access export");
    Ok(reply::ok(document))
}

/// The subject access document: every record held about the scope's visitors and leads.
async fn document(state: &ApiState, site_id: &str, scope: &Scope) -> Result<serde_json::Value, ApiError> {
    let store = &state.store;
    let keys: Vec<(String, String)> = scope.visitor_ids.iter().map(|v| (site_id.to_owned(), v.clone())).collect();
    let profiles: Vec<VisitorProfile> = store.visitors(&keys).await?;
    let mut events: Vec<StoredEvent> = Vec::new();
    let mut cursor: Option<String> = None;
    let mut events_truncated = false;
    loop {
        let page = store.events_of_visitors(site_id, &scope.visitor_ids, 5_000, cursor.as_deref()).await?;
        events.extend(page.items);
        if events.len() >= MAX_EXPORT_EVENTS {
            events_truncated = events.len() > MAX_EXPORT_EVENTS || page.next_cursor.is_some();
            events.truncate(MAX_EXPORT_EVENTS);
            break;
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    let visitors: HashSet<&str> = scope.visitor_ids.iter().map(String::as_str).collect();
    let (first, last) = profiles.iter().fold((i64::MAX, i64::MIN), |(lo, hi), p| (lo.min(p.first_seen_ms), hi.max(p.last_seen_ms)));
    let (first, last) = events.iter().fold((first, last), |(lo, hi), e| (lo.min(e.ts_ms), hi.max(e.ts_ms)));
    let sessions: Vec<Session> = if first <= last {
        store.sessions_between(site_id, first - 86_400_000, last + 86_400_000, MAX_EXPORT_EVENTS).await?.into_iter().filter(|s| visitors.contains(s.visitor_id.as_str())).collect()
    } else {
        Vec::new()
    };
    let mut leads = Vec::new();
    let lead_ids: HashSet<&str> = scope.leads.iter().map(|l| l.lead_id.as_str()).collect();
    for lead in &scope.leads {
        leads.push(json!({
            "lead": lead,
            "crm": store.lead_crm(site_id, &lead.lead_id).await?,
            "audit": store.lead_audit(site_id, &lead.lead_id, MAX_SCAN).await?,
            "score_history": store.score_history(site_id, &lead.lead_id, MAX_SCAN).await?,
            "insight": store.insight(site_id, &lead.lead_id).await?,
        }));
    }
    let conflicts: Vec<_> = store
        .identity_conflicts(site_id, false, MAX_SCAN)
        .await?
        .into_iter()
        .filter(|c| visitors.contains(c.visitor_id.as_str()) || lead_ids.contains(c.lead_id.as_str()) || lead_ids.contains(c.other_lead_id.as_str()))
        .collect();
    let alerts: Vec<_> = store.alerts(site_id, MAX_SCAN).await?.into_iter().filter(|a| lead_ids.contains(a.lead_id.as_str())).collect();
    let mut conversations = Vec::new();
    let mut cursor: Option<String> = None;
    let mut scanned = 0;
    loop {
        let page = store.conversations(site_id, 500, cursor.as_deref()).await?;
        scanned += page.items.len();
        for conversation in page.items.into_iter().filter(|c| c.visitor_id.as_deref().is_some_and(|v| visitors.contains(v))) {
            let messages = store.messages(site_id, &conversation.conversation_id, 10_000).await?;
            conversations.push(json!({ "conversation": conversation, "messages": messages }));
        }
        match page.next_cursor {
            Some(next) if scanned < MAX_SCAN => cursor = Some(next),
            _ => break,
        }
    }
    let needles: Vec<&str> = scope.visitor_ids.iter().map(String::as_str).chain(scope.leads.iter().map(|l| l.email.as_str())).filter(|n| !n.is_empty()).collect();
    let mut dead_letters = Vec::new();
    let mut cursor: Option<String> = None;
    let mut scanned = 0;
    loop {
        let page = store.dead_letters(site_id, 1_000, cursor.as_deref()).await?;
        scanned += page.items.len();
        dead_letters.extend(page.items.into_iter().filter(|l| needles.iter().any(|n| l.payload.contains(n))));
        match page.next_cursor {
            Some(next) if scanned < MAX_SCAN => cursor = Some(next),
            _ => break,
        }
    }
    Ok(json!({
        "site_id": site_id,
        "generated_at": params::rfc3339(now_ms()),
        "visitor_ids": scope.visitor_ids,
        "profiles": profiles,
        "events": events,
        "events_truncated": events_truncated,
        "sessions": sessions,
        "leads": leads,
        "identity_conflicts": conflicts,
        "alerts": alerts,
        "conversations": conversations,
        "dead_letters": dead_letters,
    }))
}
