//! The knowledge base with the real embedding model (all-MiniLM-L6-v2, installed by
//! `scripts/fetch-model.sh`; `scripts/test.sh` sets `CRM_EMBEDDING_MODEL`). Without the model
//! these tests fail, naming the script: they never pass by skipping.

mod support;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crm_api::KbRuntime;
use crm_search::Embedder;
use reqwest::Method;
use serde_json::json;
use support::*;

fn embedder() -> Arc<Embedder> {
    let dir = std::env::var_os("CRM_EMBEDDING_MODEL")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/crm-tools/models/all-MiniLM-L6-v2")))
        .expect("CRM_EMBEDDING_MODEL or HOME is set");
    assert!(dir.join("model.safetensors").is_file(), "no embedding model in {}: run scripts/fetch-model.sh (scripts/test.sh does) or set CRM_EMBEDDING_MODEL", dir.display());
    Arc::new(Embedder::load(&dir).expect("the model loads"))
}

const ARTICLES: &[(&str, &str)] = &[
    ("SSO with SAML and Okta", "Let everyone on your team log in through Okta, Microsoft Entra ID or Google Workspace. Upload your SAML 2.0 metadata, map the email attribute, then turn on enforcement so passwords stop working."),
    ("Two-factor authentication", "Protect your account with a second step at login: an authenticator app code or a hardware security key."),
    ("Resetting your password", "Forgot your password? Use the reset link on the sign in page and we email you a link that works for one hour."),
    ("Pricing and plans", "Plans are billed per seat, monthly or yearly. Volume discounts start at 50 seats."),
    ("Invoices and payment methods", "Download invoices as PDF from the billing page and pay by card or bank transfer. VAT numbers appear on every invoice."),
    ("Exporting your leads to CSV", "Export any lead list, with scores and last activity, as a CSV file from the leads page."),
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embeddings_are_computed_in_the_background_stored_and_reused_at_start() {
    let embedder = embedder();
    let model_id = embedder.model_id().to_owned();
    let config = crm_api::ApiConfig { per_ip_per_minute: None, per_user_per_minute: None, public_per_ip_per_minute: None, ..crm_api::ApiConfig::default() };
    let runtime = KbRuntime::empty(Some(embedder.clone()));
    let api = start_custom(config, |state| state.with_kb(runtime)).await;
    let shutdown = crm_service::Shutdown::new();
    api.kb.spawn_background(api.store.clone(), shutdown.clone());
    api.store.put_site(&crm_schemas::Site::new("acme", "Acme", 0)).await.unwrap();
    let admin = api.login("admin").await;
    let mut ids = Vec::new();
    for (title, body) in ARTICLES {
        let (status, reply) = api.call(Method::POST, "/api/v1/kb/articles", Some(&admin), Some(json!({ "site_id": "acme", "title": title, "body_md": body, "status": "published" }))).await;
        assert_eq!(status, 201, "{reply}");
        ids.push(reply["data"]["article_id"].as_str().unwrap().to_owned());
    }
    // Keyword search works at once; the embedder catches up in the background.
    let (_, reply) = api.call(Method::GET, "/v1/kb/acme/search?q=okta", None, None).await;
    assert_eq!(reply["data"]["hits"][0]["article_id"], ids[0].as_str());
    let mut stored = Vec::new();
    for _ in 0..600 {
        stored = api.store.article_embeddings("acme").await.unwrap();
        if stored.len() == ARTICLES.len() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(stored.len(), ARTICLES.len(), "every article was embedded and stored");
    assert!(stored.iter().all(|e| e.model == model_id && e.dimensions == 384 && e.vectors.len() % 384 == 0 && !e.vectors.is_empty()));

    // A paraphrase with no keyword in common finds the SSO article first, through the public API.
    let (status, reply) = api.call(Method::GET, "/v1/kb/acme/search?q=sign%20in%20with%20our%20company%20identity%20provider", None, None).await;
    assert_eq!(status, 200);
    assert_eq!(reply["data"]["hits"][0]["article_id"], ids[0].as_str(), "{reply}");
    assert_eq!(reply["data"]["answered"], true, "a close meaning is a good answer");
    let (_, staff) = api.get("/api/v1/kb/search?site_id=acme&q=VAT", &admin).await;
    assert_eq!((staff["data"]["hits"][0]["id"].as_str(), staff["data"]["semantic"].as_bool()), (Some(ids[4].as_str()), Some(true)));

    // A restart reuses what is stored: nothing to embed.
    let (reloaded, stats) = KbRuntime::load(&api.store, Some(embedder.clone())).await.unwrap();
    assert_eq!((stats.indexed, stats.from_store, stats.queued), (ARTICLES.len(), ARTICLES.len(), 0));
    let hits = reloaded.search("acme", "sign in with our company identity provider", 3).await.unwrap();
    assert_eq!(hits[0].id, ids[0]);
    assert!(hits[0].similarity.is_some(), "the stored vectors are in the index");

    // Changed text (written by another process, say) is re-embedded; the rest is reused.
    let mut changed = api.store.article("acme", &ids[3]).await.unwrap().unwrap();
    changed.body_md = "Seats are billed monthly; yearly billing saves a fifth.".into();
    api.store.put_article(&changed, &changed.version_row("someone", 0)).await.unwrap();
    let (_, stats) = KbRuntime::load(&api.store, Some(embedder)).await.unwrap();
    assert_eq!((stats.from_store, stats.queued), (ARTICLES.len() - 1, 1));
    // Without a model, start-up neither needs nor reads embeddings.
    let (keywords, stats) = KbRuntime::load(&api.store, None).await.unwrap();
    assert_eq!((stats.indexed, stats.from_store, stats.queued, keywords.semantic()), (ARTICLES.len(), 0, 0, false));
    assert!(keywords.mode().contains("keyword search only"));
    shutdown.trigger();
}
