//! Which stored values are sealed with the secrets key ([`crm_service::SecretKeys`]) and how:
//! each alert rule's webhook secret (context `alert_rule:{site}/{rule}`) and the generated token
//! secret in the store's meta (`meta:jwt_secret`). Also the re-seal pass behind
//! `crm secrets rotate`, which also seals values written before sealing existed.

use crm_schemas::AlertRule;
use crm_service::SecretKeys;
use crm_store::Store;
use serde::Serialize;

use crate::ApiError;

pub(crate) const JWT_META_KEY: &str = "jwt_secret";
const JWT_CONTEXT: &str = "meta:jwt_secret";

/// The rule as stored: its secret sealed when keys are configured.
pub(crate) fn seal_rule(mut rule: AlertRule, keys: Option<&SecretKeys>) -> AlertRule {
    if let Some(keys) = keys {
        rule.secret = keys.seal(rule.secret.as_bytes(), &rule.secret_context());
    }
    rule
}

/// The token secret kept in the store's meta: opened when sealed; plaintext from before sealing
/// (or with no keys configured) is used as it is, and sealed in place when keys are configured.
pub(crate) async fn stored_jwt_secret(store: &dyn Store, keys: Option<&SecretKeys>) -> Result<Option<Vec<u8>>, ApiError> {
    let Some(stored) = store.meta(JWT_META_KEY).await? else { return Ok(None) };
    let Some(keys) = keys else {
        if SecretKeys::is_sealed(&stored) {
            return Err(ApiError::Internal("the stored token secret is sealed and no secrets key is configured (--secrets-key or --secrets-key-file)".into()));
        }
        return Ok(Some(stored));
    };
    let opened = keys.open(&stored, JWT_CONTEXT).map_err(|e| ApiError::Internal(format!("the stored token secret: {e}")))?;
    if !opened.current {
        store.put_meta(JWT_META_KEY, keys.seal(&opened.plaintext, JWT_CONTEXT).as_bytes()).await?;
    }
    Ok(Some(opened.plaintext))
}

/// Stores a freshly generated token secret, sealed when keys are configured.
pub(crate) async fn put_jwt_secret(store: &dyn Store, secret: &[u8], keys: Option<&SecretKeys>) -> Result<(), ApiError> {
    match keys {
        Some(keys) => store.put_meta(JWT_META_KEY, keys.seal(secret, JWT_CONTEXT).as_bytes()).await?,
        None => store.put_meta(JWT_META_KEY, secret).await?,
    }
    Ok(())
}

/// What a rotation did.
#[derive(Debug, Default, PartialEq, Eq, Serialize)]
pub struct Resealed {
    /// Rule secrets sealed again with the current key (they were plaintext or under a previous key).
    pub rules_resealed: usize,
    pub rules_current: usize,
    /// Users' second-factor secrets sealed again (or sealed for the first time).
    pub totp_resealed: usize,
    pub token_secret_resealed: bool,
}

/// Seals every stored secret with the current key; fails (changing nothing more) at the first
/// value no configured key opens.
pub async fn reseal_all(store: &dyn Store, keys: &SecretKeys) -> Result<Resealed, ApiError> {
    let mut done = Resealed::default();
    for site in store.sites().await? {
        for mut rule in store.alert_rules(&site.site_id).await? {
            let opened = keys.open(rule.secret.as_bytes(), &rule.secret_context()).map_err(|e| ApiError::Internal(format!("alert rule {}/{}: {e}", rule.site_id, rule.rule_id)))?;
            if opened.current {
                done.rules_current += 1;
                continue;
            }
            let plaintext = String::from_utf8(opened.plaintext).map_err(|_| ApiError::Internal(format!("alert rule {}/{}: the secret is not text", rule.site_id, rule.rule_id)))?;
            rule.secret = keys.seal(plaintext.as_bytes(), &rule.secret_context());
            store.put_alert_rule(&rule).await?;
            done.rules_resealed += 1;
        }
    }
    for mut user in store.users().await? {
        let Some(factor) = user.totp.as_mut() else { continue };
        let context = crate::totp::context(&user.username);
        let opened = if SecretKeys::is_sealed(factor.secret.as_bytes()) {
            keys.open(factor.secret.as_bytes(), &context).map_err(|e| ApiError::Internal(format!("the second factor of {}: {e}", user.username)))?
        } else {
            // Stored without a key: base64 of the raw secret.
            let raw = base64::Engine::decode(&base64::engine::general_purpose::STANDARD, &factor.secret).map_err(|_| ApiError::Internal(format!("the second factor of {} is damaged", user.username)))?;
            crm_service::Opened { plaintext: raw, current: false }
        };
        if !opened.current {
            factor.secret = keys.seal(&opened.plaintext, &context);
            store.put_user(&user).await?;
            done.totp_resealed += 1;
        }
    }
    if let Some(stored) = store.meta(JWT_META_KEY).await? {
        let opened = keys.open(&stored, JWT_CONTEXT).map_err(|e| ApiError::Internal(format!("the stored token secret: {e}")))?;
        if !opened.current {
            store.put_meta(JWT_META_KEY, keys.seal(&opened.plaintext, JWT_CONTEXT).as_bytes()).await?;
            done.token_secret_resealed = true;
        }
    }
    Ok(done)
}
