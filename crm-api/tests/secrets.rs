//! Secrets at rest: alert-rule webhook secrets and the generated token secret are stored sealed
//! with the secrets key, shown once in plaintext, and re-sealed by a rotation.

mod support;

use std::sync::Arc;

use crm_schemas::{AlertCondition, AlertRule};
use crm_service::SecretKeys;
use crm_store::{EmbeddedStore, Store};
use reqwest::Method;
use serde_json::json;

fn keys(current: u8, previous: &[u8]) -> Arc<SecretKeys> {
    Arc::new(SecretKeys::new(&[current; 32], &previous.iter().map(|b| vec![*b; 32]).collect::<Vec<_>>()).unwrap())
}

fn rule(site: &str, id: &str, secret: &str) -> AlertRule {
    AlertRule {
        site_id: site.into(),
        rule_id: id.into(),
        name: "r".into(),
        condition: AlertCondition::ScoreCrossed { threshold: 50 },
        webhook_url: "https://hooks.example/x".into(),
        secret: secret.into(),
        window_hours: 24,
        enabled: true,
        created_at_ms: 0,
    }
}

#[tokio::test]
async fn a_rule_secret_is_shown_once_and_stored_sealed() {
    let sealing = keys(1, &[]);
    let for_state = sealing.clone();
    let api = support::start_custom(crm_api::ApiConfig { per_ip_per_minute: None, per_user_per_minute: None, ..Default::default() }, move |s| s.with_secrets(Some(for_state))).await;
    let admin = api.login("admin").await;
    api.store.put_site(&crm_schemas::Site::new("s1", "S1", 0)).await.unwrap();
    let (status, body) = api
        .call(Method::POST, "/api/v1/alert-rules", Some(&admin), Some(json!({"site_id": "s1", "rule_id": "hot", "name": "Hot", "webhook_url": "https://hooks.example/crm", "condition": {"type": "score_crossed", "threshold": 80}})))
        .await;
    assert_eq!(status, 201, "{body}");
    let shown = body["data"]["secret"].as_str().unwrap().to_owned();
    assert_eq!(shown.len(), 64);
    let stored = api.store.alert_rules("s1").await.unwrap().remove(0);
    assert!(SecretKeys::is_sealed(stored.secret.as_bytes()) && !stored.secret.contains(&shown), "{}", stored.secret);
    assert_eq!(sealing.open(stored.secret.as_bytes(), &stored.secret_context()).unwrap().plaintext, shown.as_bytes());
    let (_, listed) = api.call(Method::GET, "/api/v1/alert-rules?site_id=s1", Some(&admin), None).await;
    assert_eq!(listed["data"][0]["secret"], "(redacted)");
}

#[tokio::test]
async fn the_token_secret_is_sealed_in_place_and_still_signs_the_same_tokens() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    // A store from before sealing: the generated secret kept as plain bytes.
    let before = crm_api::bootstrap(store.as_ref(), None, Some("pw-123456789"), None).await.unwrap();
    let plain = store.meta("jwt_secret").await.unwrap().unwrap();
    assert!(!SecretKeys::is_sealed(&plain));
    let user = store.users().await.unwrap().remove(0);
    let token = before.keys.issue(&user, "family", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs()).unwrap();

    let sealing = keys(1, &[]);
    let after = crm_api::bootstrap(store.as_ref(), None, None, Some(&sealing)).await.unwrap();
    let stored = store.meta("jwt_secret").await.unwrap().unwrap();
    assert!(SecretKeys::is_sealed(&stored), "sealed at the first start with a key");
    assert!(after.keys.verify(&token).is_ok(), "the same secret: tokens issued before still verify");
    // Restarted with the key: opens it; without any key: refuses to start rather than minting a new secret.
    assert!(crm_api::bootstrap(store.as_ref(), None, None, Some(&sealing)).await.unwrap().keys.verify(&token).is_ok());
    let err = crm_api::bootstrap(store.as_ref(), None, None, None).await.err().expect("no key");
    assert!(matches!(&err, crm_api::ApiError::Internal(detail) if detail.contains("secrets key")), "{err:?}");
    let wrong = keys(9, &[]);
    assert!(crm_api::bootstrap(store.as_ref(), None, None, Some(&wrong)).await.is_err());
}

#[tokio::test]
async fn a_rotation_reseals_every_secret_with_the_new_key() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    for site in ["a", "b"] {
        store.put_site(&crm_schemas::Site::new(site, site, 0)).await.unwrap();
    }
    let old = keys(1, &[]);
    let sealed = rule("a", "r1", "");
    let sealed = AlertRule { secret: old.seal(b"secret-one", &sealed.secret_context()), ..sealed };
    store.put_alert_rule(&sealed).await.unwrap();
    store.put_alert_rule(&rule("b", "r2", "legacy-plaintext")).await.unwrap();
    crm_api::bootstrap(store.as_ref(), None, Some("pw-123456789"), Some(&old)).await.unwrap();
    // A second factor enrolled before a key existed: its secret stored as base64.
    let mut admin = store.user("admin").await.unwrap().unwrap();
    admin.totp = Some(crm_schemas::Totp { secret: base64::Engine::encode(&base64::engine::general_purpose::STANDARD, b"twenty-byte-secret!!"), confirmed: true, last_step: 0, recovery_hashes: vec![], enrolled_at_ms: 0 });
    store.put_user(&admin).await.unwrap();

    // The new key alone cannot open what the old one sealed: the rotation stops with the rule named.
    let err = crm_api::secrets::reseal_all(store.as_ref(), &keys(2, &[])).await.unwrap_err();
    assert!(matches!(&err, crm_api::ApiError::Internal(detail) if detail.contains("a/r1")), "{err:?}");

    let rotating = keys(2, &[1]);
    let done = crm_api::secrets::reseal_all(store.as_ref(), &rotating).await.unwrap();
    assert_eq!(done, crm_api::secrets::Resealed { rules_resealed: 2, rules_current: 0, totp_resealed: 1, token_secret_resealed: true });
    let new_only = keys(2, &[]);
    for (site, plain) in [("a", "secret-one"), ("b", "legacy-plaintext")] {
        let stored = store.alert_rules(site).await.unwrap().remove(0);
        let opened = new_only.open(stored.secret.as_bytes(), &stored.secret_context()).unwrap();
        assert_eq!((opened.plaintext.as_slice(), opened.current), (plain.as_bytes(), true));
    }
    assert!(crm_api::bootstrap(store.as_ref(), None, None, Some(&new_only)).await.is_ok(), "the token secret opens with the new key alone");
    let factor = store.user("admin").await.unwrap().unwrap().totp.unwrap();
    assert_eq!(new_only.open(factor.secret.as_bytes(), "totp:admin").unwrap().plaintext, b"twenty-byte-secret!!");
    let again = crm_api::secrets::reseal_all(store.as_ref(), &rotating).await.unwrap();
    assert_eq!(again, crm_api::secrets::Resealed { rules_resealed: 0, rules_current: 2, totp_resealed: 0, token_secret_resealed: false }, "idempotent");
}
