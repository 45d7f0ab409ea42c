//! The second factor's routes (the rules are in [`crate::totp`]):
//!
//! * `POST /auth/login/totp` `{challenge, code | recovery_code}`: finishes a login.
//! * `POST /auth/totp/enroll`, `POST /auth/totp/confirm` `{code}`, `POST /auth/totp/disable`
//!   `{code | recovery_code}`: the signed-in user's own factor.
//! * `POST /auth/login/totp/enroll` `{challenge}`, `POST /auth/login/totp/confirm`
//!   `{challenge, code}`: enrolment during a login the policy holds until there is a factor.
//! * `GET`/`PUT /auth/policy` `{require_totp}`: whether every user must have one (admins).

use axum::body::Bytes;
use axum::extract::State;
use axum::response::Response;
use crm_schemas::{AuthEvent, User};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::auth::{now_ms, now_secs, AuthUser};
use crate::rbac::Permission;
use crate::session::{audit, grant, grant_body, locked, ClientInfo};
use crate::totp::{self, ChallengeKind};
use crate::{params, reply, ApiError, ApiState};

const POLICY_META_KEY: &str = "auth_policy";

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthPolicy {
    /// Every user needs a second factor to sign in.
    pub require_totp: bool,
}

async fn policy(state: &ApiState) -> Result<AuthPolicy, ApiError> {
    Ok(match state.store.meta(POLICY_META_KEY).await? {
        Some(bytes) => serde_json::from_slice(&bytes).map_err(|e| ApiError::Internal(format!("stored auth policy: {e}")))?,
        None => AuthPolicy::default(),
    })
}

fn confirmed(user: &User) -> bool {
    user.totp.as_ref().is_some_and(|t| t.confirmed)
}

/// After a correct password: the challenge to answer instead of tokens, when the user has a
/// factor or the policy requires one.
pub(crate) async fn after_password(state: &ApiState, user: &User) -> Result<Option<Response>, ApiError> {
    let kind = if confirmed(user) {
        ChallengeKind::Code
    } else if policy(state).await?.require_totp {
        ChallengeKind::Enrol
    } else {
        return Ok(None);
    };
    let challenge = state.keys.challenges.issue(user, kind, now_secs());
    let step = match kind {
        ChallengeKind::Code => "totp",
        ChallengeKind::Enrol => "totp_enroll",
    };
    let mut response = reply::ok(json!({ "second_factor": step, "challenge": challenge, "expires_in": totp::CHALLENGE_TTL_SECS }));
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(Some(response))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeAnswer {
    challenge: String,
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

/// The challenge's user, still as it was when the challenge was issued, and not locked out.
async fn challenged_user(state: &ApiState, client: &ClientInfo, challenge: &str, kind: ChallengeKind) -> Result<User, ApiError> {
    let checked = state.keys.challenges.check(challenge, kind, now_secs());
    let (username, version) = match checked {
        Ok(found) => found,
        Err(err) => {
            audit(state, AuthEvent::TotpFailed, "", client, None, Some("invalid or expired challenge".into())).await;
            return Err(err);
        }
    };
    if let Some(retry) = state.login_guard.locked(&username, client.ip) {
        audit(state, AuthEvent::LoginLocked, &username, client, None, Some(format!("second step locked for {retry} s more"))).await;
        return Err(locked(retry));
    }
    match state.store.user(&username).await? {
        Some(user) if !user.disabled && user.token_version == version => Ok(user),
        _ => Err(ApiError::InvalidToken("the sign-in challenge is no longer valid; sign in again")),
    }
}

/// Counts a wrong code like a wrong password and answers 401 (or 429 once locked).
async fn wrong_code(state: &ApiState, client: &ClientInfo, username: &str, what: &'static str) -> ApiError {
    let lock = state.login_guard.failed(username, client.ip);
    audit(state, AuthEvent::TotpFailed, username, client, None, Some(what.to_owned())).await;
    match lock {
        Some(secs) => locked(secs),
        None => ApiError::BadSecondFactor("the code is wrong, expired or already used"),
    }
}

/// Checks a TOTP code or a recovery code against the user's confirmed factor and records its
/// use (the step, or the spent recovery code). `Ok(Some(codes left))` after a recovery code.
async fn spend_code(state: &ApiState, user: &mut User, code: Option<&str>, recovery: Option<&str>) -> Result<Option<usize>, ()> {
    let Some(factor) = user.totp.as_mut().filter(|t| t.confirmed) else { return Err(()) };
    match (code, recovery) {
        (Some(code), None) => {
            let secret = totp::secret_of(&user.username, factor, state.secrets.as_deref()).map_err(|_| ())?;
            let step = totp::accepted_step(&secret, code, now_secs(), factor.last_step).ok_or(())?;
            factor.last_step = step;
            state.store.put_user(user).await.map_err(|_| ())?;
            Ok(None)
        }
        (None, Some(recovery)) if recovery.len() <= 64 => {
            let hash = totp::recovery_hash(recovery);
            let at = factor.recovery_hashes.iter().position(|h| *h == hash).ok_or(())?;
            factor.recovery_hashes.remove(at);
            let left = factor.recovery_hashes.len();
            state.store.put_user(user).await.map_err(|_| ())?;
            Ok(Some(left))
        }
        _ => Err(()),
    }
}

/// `POST /api/v1/auth/login/totp`.
pub async fn login(State(state): State<ApiState>, client: ClientInfo, body: Bytes) -> Result<Response, ApiError> {
    let answer: ChallengeAnswer = params::json(&body)?;
    let mut user = challenged_user(&state, &client, &answer.challenge, ChallengeKind::Code).await?;
    match spend_code(&state, &mut user, answer.code.as_deref(), answer.recovery_code.as_deref()).await {
        Ok(recovery_left) => {
            state.login_guard.succeeded(&user.username);
            if let Some(left) = recovery_left {
                audit(&state, AuthEvent::TotpRecoveryUsed, &user.username, &client, None, Some(format!("{left} recovery codes left"))).await;
            }
            audit(&state, AuthEvent::LoginSucceeded, &user.username, &client, None, Some("with a second factor".into())).await;
            grant(&state, &user, &uuid::Uuid::new_v4().simple().to_string()).await
        }
        Err(()) => Err(wrong_code(&state, &client, &user.username, "wrong second-factor code").await),
    }
}

/// A new, unconfirmed factor for `user` (replacing an unconfirmed one); 409 if one is on.
async fn start_enrolment(state: &ApiState, mut user: User) -> Result<Response, ApiError> {
    if confirmed(&user) {
        return Err(ApiError::Conflict { code: "totp_enrolled", message: "a second factor is already on; disable it first".into(), details: None });
    }
    let (factor, secret) = totp::enrol(&user, state.secrets.as_deref(), now_ms());
    user.totp = Some(factor);
    state.store.put_user(&user).await?;
    let mut response = reply::ok(json!({
        "secret": secret,
        "otpauth_uri": totp::uri(&user.username, &secret),
        "algorithm": "SHA1",
        "digits": 6,
        "period": totp::STEP_SECS,
    }));
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Turns an unconfirmed factor on with a first code; answers the recovery codes (once).
async fn finish_enrolment(state: &ApiState, client: &ClientInfo, user: &mut User, code: &str) -> Result<Vec<String>, ApiError> {
    let Some(factor) = user.totp.as_mut().filter(|t| !t.confirmed) else {
        return Err(ApiError::Conflict { code: "totp_not_started", message: "start with POST /api/v1/auth/totp/enroll".into(), details: None });
    };
    let secret = totp::secret_of(&user.username, factor, state.secrets.as_deref())?;
    let Some(step) = totp::accepted_step(&secret, code, now_secs(), 0) else {
        return Err(ApiError::BadSecondFactor("the code does not match the new secret; check the device's clock"));
    };
    let (codes, hashes) = totp::recovery_codes();
    factor.confirmed = true;
    factor.last_step = step;
    factor.recovery_hashes = hashes;
    state.store.put_user(user).await?;
    audit(state, AuthEvent::TotpEnrolled, &user.username, client, None, None).await;
    Ok(codes)
}

/// A wrong code from a signed-in user is bad input (422), not a failed authentication: a 401
/// would tell the client its session ended.
fn signed_in_refusal(err: ApiError) -> ApiError {
    match err {
        ApiError::BadSecondFactor(message) => ApiError::Unprocessable { code: "bad_second_factor", message: message.to_owned(), details: None },
        other => other,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CodeInput {
    code: String,
}

pub async fn enroll(State(state): State<ApiState>, caller: AuthUser) -> Result<Response, ApiError> {
    caller.require(Permission::SitesRead)?;
    let user = state.store.user(&caller.username).await?.ok_or(ApiError::Unauthorized)?;
    start_enrolment(&state, user).await
}

pub async fn confirm(State(state): State<ApiState>, caller: AuthUser, client: ClientInfo, body: Bytes) -> Result<Response, ApiError> {
    caller.require(Permission::SitesRead)?;
    let input: CodeInput = params::json(&body)?;
    let mut user = state.store.user(&caller.username).await?.ok_or(ApiError::Unauthorized)?;
    let codes = finish_enrolment(&state, &client, &mut user, &input.code).await.map_err(signed_in_refusal)?;
    Ok(reply::ok(json!({ "enabled": true, "recovery_codes": codes })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChallengeOnly {
    challenge: String,
}

pub async fn login_enroll(State(state): State<ApiState>, client: ClientInfo, body: Bytes) -> Result<Response, ApiError> {
    let input: ChallengeOnly = params::json(&body)?;
    let user = challenged_user(&state, &client, &input.challenge, ChallengeKind::Enrol).await?;
    start_enrolment(&state, user).await
}

pub async fn login_confirm(State(state): State<ApiState>, client: ClientInfo, body: Bytes) -> Result<Response, ApiError> {
    let answer: ChallengeAnswer = params::json(&body)?;
    let mut user = challenged_user(&state, &client, &answer.challenge, ChallengeKind::Enrol).await?;
    let code = answer.code.as_deref().ok_or(ApiError::MissingParameter("code"))?;
    let codes = match finish_enrolment(&state, &client, &mut user, code).await {
        Ok(codes) => codes,
        Err(ApiError::BadSecondFactor(_)) => return Err(wrong_code(&state, &client, &user.username, "wrong first code at enrolment").await),
        Err(other) => return Err(other),
    };
    state.login_guard.succeeded(&user.username);
    audit(&state, AuthEvent::LoginSucceeded, &user.username, &client, None, Some("after enrolling a second factor".into())).await;
    let mut body = grant_body(&state, &user, &uuid::Uuid::new_v4().simple().to_string()).await?;
    body["recovery_codes"] = json!(codes);
    let mut response = reply::ok(body);
    response.headers_mut().insert(axum::http::header::CACHE_CONTROL, axum::http::HeaderValue::from_static("no-store"));
    Ok(response)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DisableInput {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    recovery_code: Option<String>,
}

pub async fn disable(State(state): State<ApiState>, caller: AuthUser, client: ClientInfo, body: Bytes) -> Result<Response, ApiError> {
    caller.require(Permission::SitesRead)?;
    let input: DisableInput = params::json(&body)?;
    if policy(&state).await?.require_totp {
        return Err(ApiError::Conflict { code: "totp_required", message: "the sign-in policy requires a second factor".into(), details: None });
    }
    let mut user = state.store.user(&caller.username).await?.ok_or(ApiError::Unauthorized)?;
    if !confirmed(&user) {
        return Err(ApiError::Conflict { code: "totp_not_enrolled", message: "no second factor is on".into(), details: None });
    }
    if spend_code(&state, &mut user, input.code.as_deref(), input.recovery_code.as_deref()).await.is_err() {
        return Err(signed_in_refusal(wrong_code(&state, &client, &user.username, "wrong code to disable the second factor").await));
    }
    user.totp = None;
    state.store.put_user(&user).await?;
    audit(&state, AuthEvent::TotpReset, &user.username, &client, None, Some("disabled by the user".into())).await;
    Ok(reply::ok(json!({ "enabled": false })))
}

pub async fn get_policy(State(state): State<ApiState>, caller: AuthUser) -> Result<Response, ApiError> {
    caller.require(Permission::UsersManage)?;
    Ok(reply::ok(policy(&state).await?))
}

pub async fn put_policy(State(state): State<ApiState>, caller: AuthUser, client: ClientInfo, body: Bytes) -> Result<Response, ApiError> {
    caller.require(Permission::UsersManage)?;
    let input: AuthPolicy = params::json(&body)?;
    state.store.put_meta(POLICY_META_KEY, &serde_json::to_vec(&input).map_err(|e| ApiError::Internal(e.to_string()))?).await?;
    audit(&state, AuthEvent::PolicyChanged, &caller.username, &client, Some(&caller.username), Some(format!("require_totp {}", input.require_totp))).await;
    Ok(reply::ok(input))
}
