//! The second factor over HTTP: enrolment, login with a code or a recovery code, wrong,
//! replayed, skewed and malformed codes, lockout, forged and stale challenges, the policy that
//! requires a factor, and an admin's reset. Codes are computed here from the enrolled secret.

mod support;

use reqwest::Method;
use serde_json::{json, Value};
use support::{code, start, PASSWORD};

fn base32_decode(text: &str) -> Vec<u8> {
    crm_api::totp::base32_decode(text).expect("base32")
}

fn now_step() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / crm_api::totp::STEP_SECS
}

fn totp(secret: &[u8], step: u64) -> String {
    format!("{:06}", crm_api::totp::code_at(secret, step))
}

async fn password_step(api: &support::Api, username: &str) -> Value {
    let (status, body) = api.call(Method::POST, "/api/v1/auth/login", None, Some(json!({"username": username, "password": PASSWORD}))).await;
    assert_eq!(status, 200, "{body}");
    body["data"].clone()
}

/// Enrols `username` (signed in with a password) and returns the raw secret, the recovery codes
/// and the step whose code confirmed it.
async fn enrol(api: &support::Api, username: &str) -> (Vec<u8>, Vec<String>, u64) {
    let token = api.login(username).await;
    let (status, started) = api.call(Method::POST, "/api/v1/auth/totp/enroll", Some(&token), None).await;
    assert_eq!(status, 200, "{started}");
    let uri = started["data"]["otpauth_uri"].as_str().unwrap();
    assert!(uri.starts_with(&format!("otpauth://totp/crm%3A{username}?secret=")), "{uri}");
    let secret = base32_decode(started["data"]["secret"].as_str().unwrap());
    // Not on until confirmed: a login still answers tokens.
    assert!(password_step(api, username).await["access_token"].is_string());
    let (status, body) = api.call(Method::POST, "/api/v1/auth/totp/confirm", Some(&token), Some(json!({"code": "000000"}))).await;
    assert!(status == 422 && code(&body) == "bad_second_factor" || totp(&secret, now_step()) == "000000", "a wrong code is bad input, not a lost session: {body}");
    // The previous step's code: a device 30 s slow confirms too.
    let used = now_step() - 1;
    let (status, body) = api.call(Method::POST, "/api/v1/auth/totp/confirm", Some(&token), Some(json!({"code": totp(&secret, used)}))).await;
    assert_eq!(status, 200, "{body}");
    let codes: Vec<String> = body["data"]["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(codes.len(), 10);
    let (status, body) = api.call(Method::POST, "/api/v1/auth/totp/enroll", Some(&token), None).await;
    assert_eq!((status, code(&body)), (409, "totp_enrolled"));
    (secret, codes, used)
}

#[tokio::test]
async fn a_login_with_a_second_factor_needs_a_fresh_code() {
    let api = start().await;
    let (secret, recovery, used) = enrol(&api, "rep").await;
    let stored = api.store.user("rep").await.unwrap().unwrap().totp.unwrap();
    assert!(!stored.secret.is_empty() && stored.recovery_hashes.iter().all(|h| !recovery.contains(h)), "only hashes kept");

    let first = password_step(&api, "rep").await;
    assert_eq!(first["second_factor"], "totp");
    assert!(first.get("access_token").is_none(), "no tokens on the password alone");
    let challenge = first["challenge"].as_str().unwrap().to_owned();

    // Malformed, wrong-type and hostile answers.
    for body in [json!({"challenge": challenge, "code": 123456}), json!({"challenge": challenge, "code": "12345", "extra": 1}), json!({"code": "123456"})] {
        let (status, answer) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(body)).await;
        assert_eq!(status, 400, "{answer}");
    }
    // Two here (five failures in a row lock the account; the unit tests cover every malformed shape).
    for bad in ["١٢٣٤٥٦", &"9".repeat(5000)] {
        let (status, answer) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": challenge, "code": bad}))).await;
        assert_eq!((status, code(&answer)), (401, "bad_second_factor"), "{bad:?}");
    }
    // The last code accepted (at confirmation) cannot be used again.
    let (status, _) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": challenge, "code": totp(&secret, used)}))).await;
    assert_eq!(status, 401, "replayed");
    let (status, answer) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": challenge, "code": totp(&secret, now_step() + 3)}))).await;
    assert_eq!(status, 401, "90 s ahead is too far: {answer}");

    // A forged challenge (another user's name) and a stale one.
    let (payload, tag) = challenge.split_once('.').unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    let forged = b64.encode(String::from_utf8(b64.decode(payload).unwrap()).unwrap().replace("|rep", "|admin"));
    let (status, answer) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": format!("{forged}.{tag}"), "code": totp(&secret, now_step())}))).await;
    assert_eq!((status, code(&answer)), (401, "invalid_token"));

    // Fresh code: tokens. The same code again: refused (one use per step).
    let good = totp(&secret, now_step() + 1);
    let (status, answer) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": challenge, "code": good}))).await;
    assert_eq!(status, 200, "{answer}");
    assert!(answer["data"]["access_token"].is_string());
    let again = password_step(&api, "rep").await["challenge"].as_str().unwrap().to_owned();
    let (status, _) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": again, "code": good}))).await;
    assert_eq!(status, 401, "the same code twice");

    // A recovery code works once.
    let (status, answer) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": again, "recovery_code": recovery[0].to_uppercase()}))).await;
    assert_eq!(status, 200, "{answer}");
    let third = password_step(&api, "rep").await["challenge"].as_str().unwrap().to_owned();
    let (status, _) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": third, "recovery_code": recovery[0]}))).await;
    assert_eq!(status, 401, "a spent recovery code");
    assert_eq!(api.store.user("rep").await.unwrap().unwrap().totp.unwrap().recovery_hashes.len(), 9);

    let admin = api.login("admin").await;
    let (_, audit) = api.get("/api/v1/auth/audit?username=rep", &admin).await;
    let events: Vec<&str> = audit["data"].as_array().unwrap().iter().filter_map(|e| e["event"].as_str()).collect();
    for expected in ["totp_enrolled", "totp_failed", "totp_recovery_used", "login_succeeded"] {
        assert!(events.contains(&expected), "{expected} not in {events:?}");
    }
}

#[tokio::test]
async fn wrong_codes_lock_the_second_step_like_wrong_passwords() {
    let api = start().await;
    let (secret, _, _) = enrol(&api, "manager").await;
    let challenge = password_step(&api, "manager").await["challenge"].as_str().unwrap().to_owned();
    let wrong = (0..1_000_000u32).map(|n| format!("{n:06}")).find(|c| (now_step() - 1..=now_step() + 1).all(|s| *c != totp(&secret, s))).unwrap();
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": challenge, "code": wrong}))).await.0);
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 429, 429]);
    let (status, answer) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": challenge, "code": totp(&secret, now_step() + 1)}))).await;
    assert_eq!((status, code(&answer)), (429, "too_many_attempts"), "locked even with the right code");
}

#[tokio::test]
async fn the_policy_makes_users_enrol_before_they_sign_in_and_admins_reset_lost_factors() {
    let api = start().await;
    let admin = api.login("admin").await;
    let (status, body) = api.call(Method::PUT, "/api/v1/auth/policy", Some(&api.login("manager").await), Some(json!({"require_totp": true}))).await;
    assert_eq!(status, 403, "{body}");
    let (status, body) = api.call(Method::PUT, "/api/v1/auth/policy", Some(&admin), Some(json!({"require_totp": "yes"}))).await;
    assert_eq!(status, 400, "{body}");
    let (status, _) = api.call(Method::PUT, "/api/v1/auth/policy", Some(&admin), Some(json!({"require_totp": true}))).await;
    assert_eq!(status, 200);

    let first = password_step(&api, "cs").await;
    assert_eq!(first["second_factor"], "totp_enroll");
    let challenge = first["challenge"].as_str().unwrap();
    // An enrolment challenge does not finish a login with a code.
    let (status, _) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": challenge, "code": "123456"}))).await;
    assert_eq!(status, 401);
    let (status, started) = api.call(Method::POST, "/api/v1/auth/login/totp/enroll", None, Some(json!({"challenge": challenge}))).await;
    assert_eq!(status, 200, "{started}");
    let secret = base32_decode(started["data"]["secret"].as_str().unwrap());
    let (status, done) = api.call(Method::POST, "/api/v1/auth/login/totp/confirm", None, Some(json!({"challenge": challenge, "code": totp(&secret, now_step())}))).await;
    assert_eq!(status, 200, "{done}");
    assert!(done["data"]["access_token"].is_string() && done["data"]["recovery_codes"].as_array().unwrap().len() == 10);
    let token = done["data"]["access_token"].as_str().unwrap();
    let (status, me) = api.get("/api/v1/auth/me", token).await;
    assert_eq!((status, me["data"]["totp"].as_bool()), (200, Some(true)));
    let (status, body) = api.call(Method::POST, "/api/v1/auth/totp/disable", Some(token), Some(json!({"code": totp(&secret, now_step() + 1)}))).await;
    assert_eq!((status, code(&body)), (409, "totp_required"), "not while the policy requires it");

    // Lost device: an admin resets; the next login asks to enrol again.
    let (status, body) = api.call(Method::PATCH, "/api/v1/users/cs", Some(&admin), Some(json!({"reset_totp": true}))).await;
    assert_eq!((status, body["data"]["totp"].as_bool()), (200, Some(false)), "{body}");
    assert_eq!(password_step(&api, "cs").await["second_factor"], "totp_enroll");

    // A challenge dies with the user's token version (disabled meanwhile).
    let challenge = password_step(&api, "cs").await["challenge"].as_str().unwrap().to_owned();
    let (status, _) = api.call(Method::PATCH, "/api/v1/users/cs", Some(&admin), Some(json!({"disabled": true}))).await;
    assert_eq!(status, 200);
    let (status, answer) = api.call(Method::POST, "/api/v1/auth/login/totp/enroll", None, Some(json!({"challenge": challenge}))).await;
    assert_eq!((status, code(&answer)), (401, "invalid_token"));

    let (status, _) = api.call(Method::PUT, "/api/v1/auth/policy", Some(&admin), Some(json!({"require_totp": false}))).await;
    assert_eq!(status, 200);
    assert!(password_step(&api, "rep").await["access_token"].is_string(), "without the policy, no factor, tokens at once");
}

#[tokio::test]
async fn a_user_turns_their_own_factor_off_with_a_code() {
    let api = start().await;
    let (secret, _, _) = enrol(&api, "rep2").await;
    let challenge = password_step(&api, "rep2").await["challenge"].as_str().unwrap().to_owned();
    let step = now_step();
    let (_, answer) = api.call(Method::POST, "/api/v1/auth/login/totp", None, Some(json!({"challenge": challenge, "code": totp(&secret, step)}))).await;
    let token = answer["data"]["access_token"].as_str().unwrap().to_owned();
    let (status, _) = api.call(Method::POST, "/api/v1/auth/totp/disable", Some(&token), Some(json!({"code": totp(&secret, step)}))).await;
    assert_eq!(status, 422, "the code just used cannot disable");
    let (status, body) = api.call(Method::POST, "/api/v1/auth/totp/disable", Some(&token), Some(json!({"code": totp(&secret, step + 1)}))).await;
    assert_eq!(status, 200, "{body}");
    assert!(password_step(&api, "rep2").await["access_token"].is_string());
}
