//! User administration (admins only): list, create, change role/password, disable; and the
//! authentication audit log. Password hashes never leave the store. Disabling a user or
//! changing their password revokes every refresh token they hold; those and a role change also
//! stop their live access tokens at once (`crate::revocation`). Admins cannot demote or disable themselves (so a site always keeps
//! the admin that is acting).

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use crm_schemas::{AuthEvent, Role, User};
use serde::Deserialize;
use serde_json::json;

use crate::auth::{hash_password, now_ms, AuthUser};
use crate::params::{self, rfc3339};
use crate::rbac::Permission;
use crate::session::{audit, ClientInfo};
use crate::{reply, ApiError, ApiState};

pub const MIN_PASSWORD_CHARS: usize = 12;

fn view(user: &User) -> serde_json::Value {
    json!({ "username": user.username, "role": user.role, "disabled": user.disabled, "totp": user.totp.as_ref().is_some_and(|t| t.confirmed), "created_at": rfc3339(user.created_at_ms) })
}

fn check_password(password: &str, problems: &mut Vec<(String, String)>) {
    let chars = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=256).contains(&chars) {
        problems.push(("password".into(), format!("must be {MIN_PASSWORD_CHARS}-256 characters")));
    }
}

pub async fn list(State(state): State<ApiState>, user: AuthUser) -> Result<Response, ApiError> {
    user.require(Permission::UsersManage)?;
    let users = state.store.users().await?;
    Ok(reply::ok(users.iter().map(view).collect::<Vec<_>>()))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateInput {
    username: String,
    password: String,
    role: Role,
}

pub async fn create(State(state): State<ApiState>, user: AuthUser, client: ClientInfo, body: Bytes) -> Result<Response, ApiError> {
    user.require(Permission::UsersManage)?;
    let input: CreateInput = params::json(&body)?;
    let mut problems = Vec::new();
    let valid_name = (3..=64).contains(&input.username.len())
        && input.username.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-' | '@'));
    if !valid_name {
        problems.push(("username".into(), "must be 3-64 characters of a-z, 0-9, '.', '_', '-', '@'".into()));
    }
    check_password(&input.password, &mut problems);
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    if state.store.user(&input.username).await?.is_some() {
        return Err(ApiError::Conflict { code: "user_exists", message: format!("user {} already exists", input.username), details: None });
    }
    let password = input.password;
    let password_hash = tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(|e| ApiError::Internal(e.to_string()))??;
    let created = User { username: input.username, password_hash, role: input.role, created_at_ms: now_ms(), disabled: false, token_version: 0, totp: None };
    state.store.put_user(&created).await?;
    audit(&state, AuthEvent::UserCreated, &created.username, &client, Some(&user.username), Some(format!("role {:?}", created.role))).await;
    Ok(reply::created(view(&created)))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PatchInput {
    role: Option<Role>,
    password: Option<String>,
    disabled: Option<bool>,
    /// Remove the user's second factor (a lost device); they enrol again after signing in.
    #[serde(default)]
    reset_totp: bool,
}

pub async fn patch(State(state): State<ApiState>, user: AuthUser, client: ClientInfo, Path(username): Path<String>, body: Bytes) -> Result<Response, ApiError> {
    user.require(Permission::UsersManage)?;
    let input: PatchInput = params::json(&body)?;
    let mut target = state.store.user(&username).await?.ok_or_else(|| ApiError::NotFound(format!("user {username}")))?;
    let mut problems = Vec::new();
    let own = target.username == user.username;
    if own && (input.role.is_some_and(|r| r != target.role) || input.disabled == Some(true)) {
        problems.push(("role".into(), "admins cannot demote or disable themselves".into()));
    }
    if let Some(password) = &input.password {
        check_password(password, &mut problems);
    }
    if !problems.is_empty() {
        return Err(ApiError::Validation(problems));
    }
    let mut changes = Vec::new();
    let mut revoke = false;
    // Access tokens granted before a role change must not outlive it (a refresh then grants
    // one under the new role); disabling and a new password also revoke the refresh tokens.
    let mut bump = false;
    if let Some(role) = input.role.filter(|r| *r != target.role) {
        changes.push(format!("role {:?} → {role:?}", target.role));
        target.role = role;
        bump = true;
    }
    if let Some(disabled) = input.disabled.filter(|d| *d != target.disabled) {
        changes.push(if disabled { "disabled".to_owned() } else { "enabled".to_owned() });
        target.disabled = disabled;
        revoke |= disabled;
    }
    if let Some(password) = input.password {
        target.password_hash = tokio::task::spawn_blocking(move || hash_password(&password)).await.map_err(|e| ApiError::Internal(e.to_string()))??;
        changes.push("password changed".into());
        revoke = true;
    }
    if input.reset_totp && target.totp.is_some() {
        target.totp = None;
        changes.push("second factor reset".into());
        audit(&state, AuthEvent::TotpReset, &target.username, &client, Some(&user.username), Some("reset by an admin".into())).await;
    }
    if revoke || bump {
        target.token_version += 1;
    }
    state.store.put_user(&target).await?;
    if revoke {
        state.store.revoke_refresh_tokens(&target.username, None, now_ms()).await?;
    }
    state.token_gate.forget_user(&target.username);
    state.token_gate.forget_tokens();
    if !changes.is_empty() {
        audit(&state, AuthEvent::UserUpdated, &target.username, &client, Some(&user.username), Some(changes.join(", "))).await;
    }
    Ok(reply::ok(view(&target)))
}

/// The authentication audit log, newest first (`username` filters; cursor-paginated).
pub async fn audit_log(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>) -> Result<Response, ApiError> {
    user.require(Permission::AuditRead)?;
    let limit = params::limit(&query, 50, 500)?;
    let cursor = crate::reply::decode_cursor(query.get("cursor"))?;
    let page = state.store.auth_audit(query.get("username").map(String::as_str), limit, cursor.as_deref()).await?;
    let items: Vec<serde_json::Value> = page
        .items
        .iter()
        .map(|e| {
            let mut v = serde_json::to_value(e).unwrap_or(serde_json::Value::Null);
            v["at"] = json!(rfc3339(e.at_ms));
            v
        })
        .collect();
    Ok(reply::page(items, page.next_cursor, limit))
}
