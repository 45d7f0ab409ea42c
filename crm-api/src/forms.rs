//! Lead forms: CRUD of the form definitions that `forms-embed.js` renders and the collector
//! validates submissions against. Everyone signed in may read them; admins and sales managers
//! (who run campaigns) may change them.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use crm_schemas::{FormDefinition, FormField};
use serde::Deserialize;

use crate::auth::{now_ms, AuthUser};
use crate::params;
use crate::{reply, ApiError, ApiState};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FormInput {
    site_id: Option<String>,
    form_id: Option<String>,
    name: String,
    fields: Vec<FormField>,
    submit_label: Option<String>,
    success_message: Option<String>,
}

fn parse_input(body: &Bytes) -> Result<FormInput, ApiError> {
    params::json(body)
}

/// Builds the definition from `input` (keeping `created_at_ms` of an existing one) and checks it.
fn build(site_id: String, form_id: String, input: FormInput, created_at_ms: Option<i64>) -> Result<FormDefinition, ApiError> {
    let now = now_ms();
    let form = FormDefinition {
        site_id,
        form_id,
        name: input.name.trim().to_owned(),
        fields: input.fields,
        submit_label: input.submit_label.unwrap_or_else(|| "Submit".into()),
        success_message: input.success_message.unwrap_or_else(|| "Thank you! We'll be in touch.".into()),
        created_at_ms: created_at_ms.unwrap_or(now),
        updated_at_ms: now,
    };
    let problems = form.check();
    if problems.is_empty() {
        Ok(form)
    } else {
        Err(ApiError::Validation(problems.into_iter().map(|p| (p.field, p.message)).collect()))
    }
}

pub async fn list(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::FormsRead)?;
    let site_id = params::required(&query, "site_id")?;
    state.require_site(site_id).await?;
    Ok(reply::ok(state.store.forms(site_id).await?))
}

pub async fn get_one(State(state): State<ApiState>, user: AuthUser, Path((site_id, form_id)): Path<(String, String)>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::FormsRead)?;
    let form = state.store.form(&site_id, &form_id).await?.ok_or_else(|| ApiError::NotFound(format!("form {site_id}/{form_id}")))?;
    Ok(reply::ok(form))
}

pub async fn create(State(state): State<ApiState>, user: AuthUser, body: Bytes) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::FormsManage)?;
    let mut input = parse_input(&body)?;
    let site_id = input.site_id.take().ok_or(ApiError::Validation(vec![("site_id".into(), "is required".into())]))?;
    let form_id = input.form_id.take().unwrap_or_else(|| format!("form_{}", &uuid::Uuid::new_v4().simple().to_string()[..12]));
    let form = build(site_id, form_id, input, None)?;
    state.require_site(&form.site_id).await?;
    if state.store.form(&form.site_id, &form.form_id).await?.is_some() {
        return Err(ApiError::Conflict { code: "form_exists", message: format!("form {} already exists", form.form_id), details: None });
    }
    state.store.put_form(&form).await?;
    tracing::info!(site_id = %form.site_id, form_id = %form.form_id, by = %user.username, "form created");
    Ok(reply::created(form))
}

pub async fn replace(
    State(state): State<ApiState>,
    user: AuthUser,
    Path((site_id, form_id)): Path<(String, String)>,
    body: Bytes,
) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::FormsManage)?;
    let mut input = parse_input(&body)?;
    for (name, given, path) in [("site_id", input.site_id.take(), &site_id), ("form_id", input.form_id.take(), &form_id)] {
        if given.is_some_and(|g| &g != path) {
            return Err(ApiError::Validation(vec![(name.into(), "cannot be changed".into())]));
        }
    }
    let existing = state.store.form(&site_id, &form_id).await?.ok_or_else(|| ApiError::NotFound(format!("form {site_id}/{form_id}")))?;
    let form = build(site_id, form_id, input, Some(existing.created_at_ms))?;
    state.store.put_form(&form).await?;
    tracing::info!(site_id = %form.site_id, form_id = %form.form_id, by = %user.username, "form replaced");
    Ok(reply::ok(form))
}

pub async fn delete(State(state): State<ApiState>, user: AuthUser, Path((site_id, form_id)): Path<(String, String)>) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::FormsManage)?;
    if !state.store.delete_form(&site_id, &form_id).await? {
        return Err(ApiError::NotFound(format!("form {site_id}/{form_id}")));
    }
    tracing::info!(%site_id, %form_id, by = %user.username, "form deleted");
    Ok(StatusCode::NO_CONTENT.into_response())
}
