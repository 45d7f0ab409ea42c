//! Conformance tests of the authentication records: refresh-token rotation state and family
//! revocation, and the authentication audit log's newest-first pages, per user and overall.

use crm_schemas::{AuthAuditEntry, AuthEvent, RefreshToken};
use uuid::Uuid;

use super::{StoreHarness, T0};

fn token(hash: &str, user: &str, family: &str) -> RefreshToken {
    RefreshToken {
        token_hash: hash.into(),
        family_id: family.into(),
        username: user.into(),
        issued_at_ms: T0,
        expires_at_ms: T0 + 30 * 86_400_000,
        rotated_at_ms: None,
        revoked_at_ms: None,
    }
}

pub async fn refresh_tokens_rotate_and_revoke_by_family(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    assert!(store.refresh_token("h1").await.expect("get").is_none());
    let first = token("h1", "ada", "f1");
    store.put_refresh_token(&first).await.expect("put");
    store.put_refresh_token(&token("h2", "ada", "f1")).await.expect("put");
    store.put_refresh_token(&token("h3", "ada", "f2")).await.expect("put");
    store.put_refresh_token(&token("h4", "bob", "f3")).await.expect("put");
    let mut rotated = first.clone();
    rotated.rotated_at_ms = Some(T0 + 1);
    store.put_refresh_token(&rotated).await.expect("replace");
    assert_eq!(store.refresh_token("h1").await.expect("get"), Some(rotated));

    assert_eq!(store.revoke_refresh_tokens("ada", Some("f1"), T0 + 2).await.expect("revoke"), 2);
    assert_eq!(store.refresh_token("h2").await.expect("get").and_then(|t| t.revoked_at_ms), Some(T0 + 2));
    assert_eq!(store.refresh_token("h3").await.expect("get").and_then(|t| t.revoked_at_ms), None, "another family");
    assert_eq!(store.revoke_refresh_tokens("ada", Some("f1"), T0 + 3).await.expect("again"), 0, "already revoked");
    assert_eq!(store.revoke_refresh_tokens("ada", None, T0 + 4).await.expect("all"), 1);
    assert_eq!(store.refresh_token("h4").await.expect("get").and_then(|t| t.revoked_at_ms), None, "another user");
}

pub async fn auth_audit_pages_newest_first(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let entry = |i: i64, user: &str, event: AuthEvent| AuthAuditEntry {
        id: Uuid::new_v4(),
        at_ms: T0 + i,
        event,
        username: user.into(),
        ip: Some("192.0.2.1".into()),
        user_agent: Some("curl/8".into()),
        actor: None,
        detail: None,
    };
    for i in 0..5 {
        store.append_auth_audit(&entry(i, "ada", AuthEvent::LoginFailed)).await.expect("append");
    }
    store.append_auth_audit(&entry(10, "bob", AuthEvent::LoginSucceeded)).await.expect("append");
    let page = store.auth_audit(None, 4, None).await.expect("page");
    assert_eq!(page.items.iter().map(|e| e.at_ms - T0).collect::<Vec<_>>(), vec![10, 4, 3, 2]);
    let rest = store.auth_audit(None, 4, page.next_cursor.as_deref()).await.expect("next page");
    assert_eq!(rest.items.iter().map(|e| e.at_ms - T0).collect::<Vec<_>>(), vec![1, 0]);
    assert!(rest.next_cursor.is_none());
    let ada = store.auth_audit(Some("ada"), 10, None).await.expect("ada");
    assert_eq!(ada.items.len(), 5);
    assert!(ada.items.iter().all(|e| e.username == "ada" && e.event == AuthEvent::LoginFailed));
    assert_eq!(store.auth_audit(Some("bob"), 10, None).await.expect("bob").items[0].ip.as_deref(), Some("192.0.2.1"));
    assert!(store.auth_audit(Some("nobody"), 10, None).await.expect("none").items.is_empty());
}
