//! Sessions: login, refresh-token rotation, logout and `me`, with brute-force protection and the
//! authentication audit log.
//!
//! * Login answers a 15-minute JWT access token and a 30-day refresh token. Refresh tokens are
//!   random, shown once and stored only as SHA-256; each sign-in starts a token family.
//! * `POST /auth/refresh` rotates: the presented token is marked used and a new one of the same
//!   family is returned. A used token presented again means it leaked — the whole family is
//!   revoked and the caller must sign in again.
//! * Failed logins are counted per username and per client address; from the fifth failure in a
//!   row a username is locked (an address from the twentieth) for 30 s, doubling with each
//!   further failure up to 15 minutes
//!   (`429 too_many_attempts` + `Retry-After`; the password is not even checked while locked).
//!   Counters live in the process: one API process enforces them, several each enforce their own.
//! * Every login, failure, lockout, refresh, reuse and logout is appended to the audit log with
//!   the client address and user agent.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::{FromRequestParts, State};
use axum::http::request::Parts;
use axum::response::Response;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use crm_schemas::{AuthAuditEntry, AuthEvent, RefreshToken, User};
use parking_lot::Mutex;
use rand::RngCore;
use serde::Deserialize;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::auth::{now_ms, now_secs, verify_password, AuthUser, ACCESS_TOKEN_TTL_SECS, DUMMY_HASH};
use crate::{reply, ApiError, ApiState};

pub const REFRESH_TOKEN_TTL_MS: i64 = 30 * 86_400_000;
/// Consecutive failures before a username is locked.
pub const LOCKOUT_THRESHOLD: u32 = 5;
/// Consecutive failures before a client address is locked (higher: an office behind one NAT
/// shares it; this catches one address spraying passwords over many usernames).
pub const ADDRESS_LOCKOUT_THRESHOLD: u32 = 20;
const LOCKOUT_BASE: Duration = Duration::from_secs(30);
const LOCKOUT_MAX: Duration = Duration::from_secs(15 * 60);
/// A failure streak older than this is forgotten.
const FAILURE_MEMORY: Duration = Duration::from_secs(15 * 60);

/// The caller's address (the peer, or the first `X-Forwarded-For` hop when configured to trust
/// it) and user agent, for limits and the audit log.
#[derive(Clone, Debug, Default)]
pub struct ClientInfo {
    pub ip: Option<IpAddr>,
    pub user_agent: Option<String>,
}

impl FromRequestParts<ApiState> for ClientInfo {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &ApiState) -> Result<ClientInfo, ApiError> {
        Ok(client_info(parts, state.limits.trust_forwarded_for))
    }
}

pub fn client_info(parts: &Parts, trust_forwarded_for: bool) -> ClientInfo {
    let peer = parts
        .extensions
        .get::<crm_service::RemoteAddr>()
        .map(|r| r.0.ip())
        .or_else(|| parts.extensions.get::<axum::extract::ConnectInfo<std::net::SocketAddr>>().map(|c| c.0.ip()));
    let user_agent = parts.headers.get(axum::http::header::USER_AGENT).and_then(|v| v.to_str().ok()).map(|ua| ua.chars().take(256).collect());
    ClientInfo { ip: crm_service::client_ip(&parts.headers, peer, trust_forwarded_for), user_agent }
}

#[derive(Default)]
struct Streak {
    failures: u32,
    last: Option<Instant>,
    locked_until: Option<Instant>,
}

/// Failed-login counters per username and per address.
#[derive(Default)]
pub struct LoginGuard {
    streaks: Mutex<HashMap<String, Streak>>,
}

impl LoginGuard {
    /// The counters a login touches, each with its threshold.
    fn keys(username: &str, ip: Option<IpAddr>) -> Vec<(String, u32)> {
        let mut keys = vec![(format!("user:{}", username.to_lowercase()), LOCKOUT_THRESHOLD)];
        if let Some(ip) = ip {
            keys.push((format!("ip:{ip}"), ADDRESS_LOCKOUT_THRESHOLD));
        }
        keys
    }

    /// Seconds until the longest lock on these keys ends, if any is locked.
    pub fn locked(&self, username: &str, ip: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let streaks = self.streaks.lock();
        Self::keys(username, ip)
            .iter()
            .filter_map(|(k, _)| streaks.get(k)?.locked_until.filter(|until| *until > now))
            .max()
            .map(|until| (until - now).as_secs_f64().ceil() as u64)
    }

    /// Counts a failure; returns the lock it started, in seconds, if it started one.
    pub fn failed(&self, username: &str, ip: Option<IpAddr>) -> Option<u64> {
        let now = Instant::now();
        let mut streaks = self.streaks.lock();
        if streaks.len() > 100_000 {
            streaks.retain(|_, s| s.last.is_some_and(|l| now - l < FAILURE_MEMORY) || s.locked_until.is_some_and(|u| u > now));
        }
        let mut longest = None;
        for (key, threshold) in Self::keys(username, ip) {
            let streak = streaks.entry(key).or_default();
            if streak.last.is_some_and(|l| now - l > FAILURE_MEMORY) {
                *streak = Streak::default();
            }
            streak.failures += 1;
            streak.last = Some(now);
            if streak.failures >= threshold {
                let doublings = (streak.failures - threshold).min(10);
                let lock = (LOCKOUT_BASE * 2u32.pow(doublings)).min(LOCKOUT_MAX);
                streak.locked_until = Some(now + lock);
                longest = longest.max(Some(lock.as_secs()));
            }
        }
        longest
    }

    pub fn succeeded(&self, username: &str) {
        let mut streaks = self.streaks.lock();
        // Only the username's streak: a success does not clear an address spraying others.
        streaks.remove(&Self::keys(username, None)[0].0);
    }
}

pub async fn audit(state: &ApiState, event: AuthEvent, username: &str, client: &ClientInfo, actor: Option<&str>, detail: Option<String>) {
    let entry = AuthAuditEntry {
        id: uuid::Uuid::new_v4(),
        at_ms: now_ms(),
        event,
        username: username.chars().take(128).collect(),
        ip: client.ip.map(|ip| ip.to_string()),
        user_agent: client.user_agent.clone(),
        actor: actor.map(str::to_owned),
        detail,
    };
    // The audit log must not turn an outage of its table into refused logins; it is logged.
    if let Err(err) = state.store.append_auth_audit(&entry).await {
        tracing::warn!(error = %err, event = ?event, "auth audit write failed");
    }
}

fn token_hash(token: &str) -> String {
    Sha256::digest(token.as_bytes()).iter().map(|b| format!("{b:02x}")).collect()
}

fn new_refresh_token() -> String {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    format!("rt_{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Issues an access token and a new refresh token of `family`, and answers both.
pub(crate) async fn grant(state: &ApiState, user: &User, family: &str) -> Result<Response, ApiError> {
    let body = grant_body(state, user, family).await?;
    let mut response = reply::ok(body);
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A new token family for `user`: the access and refresh tokens, as the login answers them.
pub(crate) async fn grant_body(state: &ApiState, user: &User, family: &str) -> Result<serde_json::Value, ApiError> {
    let refresh = new_refresh_token();
    let refresh_hash = token_hash(&refresh);
    let access = state.keys.issue(user, &refresh_hash, now_secs())?;
    let now = now_ms();
    let record = RefreshToken {
        token_hash: refresh_hash,
        family_id: family.to_owned(),
        username: user.username.clone(),
        issued_at_ms: now,
        expires_at_ms: now + REFRESH_TOKEN_TTL_MS,
        rotated_at_ms: None,
        revoked_at_ms: None,
    };
    state.store.put_refresh_token(&record).await?;
    Ok(json!({
        "access_token": access,
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_TTL_SECS,
        "refresh_token": refresh,
        "refresh_expires_in": REFRESH_TOKEN_TTL_MS / 1000,
        "user": { "username": user.username, "role": user.role },
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    username: String,
    password: String,
}

pub async fn login(State(state): State<ApiState>, client: ClientInfo, body: Bytes) -> Result<Response, ApiError> {
    let request: LoginRequest = crate::params::json(&body)?;
    if request.username.is_empty() || request.username.len() > 128 || request.password.len() > 1024 {
        return Err(ApiError::BadCredentials);
    }
    if let Some(retry) = state.login_guard.locked(&request.username, client.ip) {
        audit(&state, AuthEvent::LoginLocked, &request.username, &client, None, Some(format!("locked for {retry} s more"))).await;
        return Err(locked(retry));
    }
    let user = state.store.user(&request.username).await?;
    // Verify against a dummy hash for unknown users so timing doesn't reveal which names exist.
    let hash = user.as_ref().map_or_else(|| DUMMY_HASH.to_owned(), |u| u.password_hash.clone());
    let password = request.password;
    let valid = tokio::task::spawn_blocking(move || verify_password(&password, &hash)).await.map_err(|e| ApiError::Internal(e.to_string()))?;
    let Some(user) = user.filter(|u| valid && !u.disabled) else {
        let lock = state.login_guard.failed(&request.username, client.ip);
        let detail = lock.map(|secs| format!("locked for {secs} s"));
        audit(&state, AuthEvent::LoginFailed, &request.username, &client, None, detail).await;
        tracing::info!(username = %request.username, "login failed");
        return Err(match lock {
            Some(secs) => locked(secs),
            None => ApiError::BadCredentials,
        });
    };
    // With a second factor the password alone proves nothing yet: no streak reset, no tokens.
    if let Some(challenge) = crate::second_factor::after_password(&state, &user).await? {
        return Ok(challenge);
    }
    state.login_guard.succeeded(&user.username);
    audit(&state, AuthEvent::LoginSucceeded, &user.username, &client, None, None).await;
    tracing::info!(username = %user.username, "login succeeded");
    grant(&state, &user, &uuid::Uuid::new_v4().simple().to_string()).await
}

pub(crate) fn locked(retry_after_secs: u64) -> ApiError {
    ApiError::RateLimited {
        code: "too_many_attempts",
        message: format!("too many failed logins; try again in {retry_after_secs} s"),
        retry_after_secs,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    refresh_token: String,
}

pub async fn refresh(State(state): State<ApiState>, client: ClientInfo, body: Bytes) -> Result<Response, ApiError> {
    let request: RefreshRequest = crate::params::json(&body)?;
    // One rotation at a time in this process, so two concurrent uses of a token cannot both win.
    let _serial = state.refresh_lock.lock().await;
    let now = now_ms();
    let found = if request.refresh_token.len() <= 256 { state.store.refresh_token(&token_hash(&request.refresh_token)).await? } else { None };
    let Some(mut token) = found else {
        audit(&state, AuthEvent::RefreshRejected, "", &client, None, Some("unknown token".into())).await;
        return Err(ApiError::InvalidToken("refresh token is not valid"));
    };
    if token.rotated_at_ms.is_some() && token.revoked_at_ms.is_none() {
        let revoked = state.store.revoke_refresh_tokens(&token.username, Some(&token.family_id), now).await?;
        state.token_gate.forget_tokens();
        audit(&state, AuthEvent::RefreshReused, &token.username, &client, None, Some(format!("family {} revoked ({revoked} tokens)", token.family_id))).await;
        tracing::warn!(username = %token.username, "refresh token reused; its family is revoked");
        return Err(ApiError::InvalidToken("refresh token was already used; sign in again"));
    }
    if token.revoked_at_ms.is_some() || token.expires_at_ms <= now {
        audit(&state, AuthEvent::RefreshRejected, &token.username, &client, None, Some("revoked or expired".into())).await;
        return Err(ApiError::InvalidToken("refresh token is revoked or expired"));
    }
    let user = state.store.user(&token.username).await?.filter(|u| !u.disabled);
    let Some(user) = user else {
        state.store.revoke_refresh_tokens(&token.username, None, now).await?;
        state.token_gate.forget_tokens();
        audit(&state, AuthEvent::RefreshRejected, &token.username, &client, None, Some("user disabled or deleted".into())).await;
        return Err(ApiError::InvalidToken("refresh token is revoked or expired"));
    };
    token.rotated_at_ms = Some(now);
    state.store.put_refresh_token(&token).await?;
    audit(&state, AuthEvent::Refreshed, &user.username, &client, None, None).await;
    grant(&state, &user, &token.family_id).await
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    refresh_token: Option<String>,
    /// Sign out everywhere (needs a valid access token).
    #[serde(default)]
    everywhere: bool,
}

/// Revokes the presented refresh token's family (this sign-in), or with `everywhere` and an
/// access token, every family of the user.
pub async fn logout(State(state): State<ApiState>, client: ClientInfo, headers: axum::http::HeaderMap, body: Bytes) -> Result<Response, ApiError> {
    let request: LogoutRequest = crate::params::json(&body)?;
    let now = now_ms();
    if request.everywhere {
        let user = crate::auth::bearer_user(&headers, &state).await?;
        let revoked = state.store.revoke_refresh_tokens(&user.username, None, now).await?;
        bump_token_version(&state, &user.username).await?;
        audit(&state, AuthEvent::Logout, &user.username, &client, None, Some(format!("everywhere ({revoked} tokens)"))).await;
        return Ok(reply::ok(json!({ "revoked": revoked })));
    }
    let presented = request.refresh_token.ok_or_else(|| ApiError::Validation(vec![("refresh_token".into(), "is required (or everywhere: true)".into())]))?;
    let token = if presented.len() <= 256 { state.store.refresh_token(&token_hash(&presented)).await? } else { None };
    let Some(token) = token else {
        return Err(ApiError::InvalidToken("refresh token is not valid"));
    };
    let revoked = state.store.revoke_refresh_tokens(&token.username, Some(&token.family_id), now).await?;
    state.token_gate.forget_tokens();
    audit(&state, AuthEvent::Logout, &token.username, &client, None, None).await;
    Ok(reply::ok(json!({ "revoked": revoked })))
}

/// Makes every live access token of `username` invalid (and forgets what this process cached).
pub(crate) async fn bump_token_version(state: &ApiState, username: &str) -> Result<(), ApiError> {
    if let Some(mut user) = state.store.user(username).await? {
        user.token_version += 1;
        state.store.put_user(&user).await?;
    }
    state.token_gate.forget_user(username);
    state.token_gate.forget_tokens();
    Ok(())
}

/// The caller, their role and permissions (a UI hides what the role cannot use).
/// Also the credits the data's licences ask the UI to show (e.g. DB-IP's geolocation), as the
/// processor published them.
pub async fn me(State(state): State<ApiState>, user: AuthUser) -> Result<Response, ApiError> {
    let attributions: Vec<serde_json::Value> = match state.store.meta(crate::GEO_ATTRIBUTION_META).await? {
        Some(bytes) => serde_json::from_slice(&bytes).map(|a| vec![a]).unwrap_or_default(),
        None => Vec::new(),
    };
    let totp = state.store.user(&user.username).await?.and_then(|u| u.totp).is_some_and(|t| t.confirmed);
    Ok(reply::ok(json!({ "username": user.username, "role": user.role, "permissions": crate::rbac::permissions(user.role), "attributions": attributions, "totp": totp })))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lockout_starts_at_the_threshold_and_doubles() {
        let guard = LoginGuard::default();
        let ip: Option<IpAddr> = Some("192.0.2.7".parse().unwrap());
        for _ in 1..LOCKOUT_THRESHOLD {
            assert_eq!(guard.failed("ada", ip), None);
        }
        assert_eq!(guard.locked("ada", ip), None);
        assert_eq!(guard.failed("ada", ip), Some(30));
        assert!(guard.locked("ADA", None).is_some_and(|s| s <= 30), "usernames are case-insensitive");
        assert!(guard.locked("someone-else", ip).is_none(), "colleagues behind the same address can still sign in");
        assert_eq!(guard.failed("ada", ip), Some(60));
        guard.succeeded("ada");
        assert_eq!(guard.locked("ada", ip), None);
        // One address spraying many usernames is locked at its own threshold.
        for i in 0..(ADDRESS_LOCKOUT_THRESHOLD - 6) {
            guard.failed(&format!("user{i}"), ip);
        }
        assert!(guard.locked("fresh-name", ip).is_some(), "the address is locked");
        assert!(guard.locked("fresh-name", Some("192.0.2.8".parse().unwrap())).is_none());
    }

    #[test]
    fn refresh_tokens_are_random_and_stored_hashed() {
        let (a, b) = (new_refresh_token(), new_refresh_token());
        assert_ne!(a, b);
        assert!(a.starts_with("rt_") && a.len() > 40);
        assert_eq!(token_hash(&a).len(), 64);
        assert_ne!(token_hash(&a), a);
    }
}
