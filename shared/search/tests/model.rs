//! Search with the real embedding model (all-MiniLM-L6-v2, installed by `scripts/fetch-model.sh`;
//! `scripts/test.sh` runs it and sets `CRM_EMBEDDING_MODEL`). Without the model these tests
//! fail, naming the script: they never pass by skipping.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use crm_search::{Doc, Embedder, SearchIndex};

fn model_dir() -> PathBuf {
    let dir = std::env::var_os("CRM_EMBEDDING_MODEL")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/crm-tools/models/all-MiniLM-L6-v2")))
        .expect("CRM_EMBEDDING_MODEL or HOME is set");
    assert!(dir.join("model.safetensors").is_file(), "no embedding model in {}: run scripts/fetch-model.sh (scripts/test.sh does) or set CRM_EMBEDDING_MODEL", dir.display());
    dir
}

fn embedder() -> Arc<Embedder> {
    static MODEL: OnceLock<Arc<Embedder>> = OnceLock::new();
    MODEL.get_or_init(|| Arc::new(Embedder::load(&model_dir()).expect("the model loads"))).clone()
}

#[derive(serde::Deserialize)]
struct Reference {
    text: String,
    token_ids: Vec<u32>,
    vector: Vec<f32>,
}

#[test]
fn embeddings_match_a_reference_forward_pass() {
    let id = embedder().model_id().to_owned();
    assert!(id.starts_with("all-MiniLM-L6-v2@") && id.len() == "all-MiniLM-L6-v2@".len() + 16, "{id}");
    let reference: Reference = serde_json::from_str(include_str!("fixtures/minilm_reference.json")).unwrap();
    let embedder = embedder();
    assert_eq!(embedder.dimensions(), 384);
    assert_eq!(embedder.token_ids(&reference.text).unwrap(), reference.token_ids);
    let vector = embedder.embed(&reference.text).unwrap();
    let cosine: f32 = vector.iter().zip(&reference.vector).map(|(a, b)| a * b).sum();
    assert!(cosine > 0.9999, "cosine to the reference vector: {cosine}");
    let norm: f32 = vector.iter().map(|x| x * x).sum::<f32>().sqrt();
    assert!((norm - 1.0).abs() < 1e-4);
    // Long texts are cut at the model's token limit rather than failing.
    assert_eq!(embedder.embed(&"pricing ".repeat(2_000)).unwrap().len(), 384);
}

fn article(id: &str, title: &str, body: &str) -> Doc {
    Doc { site_id: "acme".into(), id: id.into(), title: title.into(), body: body.into(), url: format!("/help/acme/{id}") }
}

/// A small help centre of the kind a B2B product has.
fn help_centre() -> Vec<Doc> {
    vec![
        article("sso", "SSO with SAML and Okta", "Let everyone on your team log in through Okta, Microsoft Entra ID or Google Workspace. Upload your SAML 2.0 metadata, map the email attribute, then turn on enforcement so passwords stop working."),
        article("two-factor", "Two-factor authentication", "Protect your account with a second step at login: an authenticator app code or a hardware security key. Admins can require it for every user."),
        article("password-reset", "Resetting your password", "Forgot your password? Use the reset link on the sign in page and we email you a link that works for one hour."),
        article("pricing", "Pricing and plans", "Plans are billed per seat, monthly or yearly. The yearly plan saves 20 percent. Volume discounts start at 50 seats."),
        article("invoices", "Invoices and payment methods", "Download invoices as PDF from the billing page and pay by card or bank transfer. VAT numbers appear on every invoice."),
        article("export", "Exporting your leads to CSV", "Export any lead list, with scores and last activity, as a CSV file from the leads page."),
        article("salesforce", "Salesforce integration", "Sync leads and accounts both ways with Salesforce. Field mapping is configurable per object."),
        article("api-keys", "API keys", "Create API keys under settings to call the REST API. Keys can be scoped read-only and revoked at any time."),
        article("gdpr", "Deleting a visitor's data (GDPR)", "Erase everything we hold about a person on request: events, profile and lead record are removed within 30 days."),
        article("tracking", "Installing the tracking script", "Paste the snippet before the closing head tag of every page. Events show up in the dashboard within seconds."),
        article("invite", "Inviting teammates", "Invite colleagues by email and choose their role: admin, sales manager or viewer."),
        article("webhooks", "Webhooks for alerts", "Send an HTTP POST to your endpoint whenever a lead crosses a score threshold."),
    ]
}

fn index() -> SearchIndex {
    let index = SearchIndex::new(Some(embedder())).unwrap();
    index.upsert(&help_centre()).unwrap();
    index
}

#[test]
fn a_paraphrase_without_shared_keywords_finds_the_sso_article_first() {
    let index = index();
    let query = "sign in with our company identity provider";
    let hits = index.search("acme", query, 5).unwrap();
    let summary: Vec<_> = hits.iter().map(|h| (h.id.as_str(), h.keyword_rank, h.similarity)).collect();
    assert_eq!(hits[0].id, "sso", "{summary:?}");
    assert_eq!(hits[0].keyword_rank, None, "the SSO article shares no keyword with the query: {summary:?}");
    // Other paraphrases.
    for (query, expected) in [("how much does it cost for a bigger team", "pricing"), ("get my contacts into a spreadsheet", "export"), ("remove all information about a customer", "gdpr")] {
        let hits = index.search("acme", query, 3).unwrap();
        assert_eq!(hits.first().map(|h| h.id.as_str()), Some(expected), "{query}: {:?}", hits.iter().map(|h| (&h.id, h.keyword_rank, h.similarity)).collect::<Vec<_>>());
    }
}

#[test]
fn exact_terms_still_rank_by_keyword() {
    let index = index();
    for (query, expected) in [("VAT", "invoices"), ("Salesforce", "salesforce"), ("webhook", "webhooks"), ("okta", "sso"), ("volume discounts", "pricing")] {
        let hits = index.search("acme", query, 3).unwrap();
        assert_eq!(hits.first().map(|h| (h.id.as_str(), h.keyword_rank)), Some((expected, Some(1))), "{query}");
    }
    // The snippet marks the query's terms where the body has them.
    let hits = index.search("acme", "VAT numbers", 1).unwrap();
    assert!(hits[0].snippet_html.contains("<mark>VAT</mark> <mark>numbers</mark>"), "{}", hits[0].snippet_html);
    assert!(index.semantic());
    assert!(index.search("other-site", "pricing", 5).unwrap().is_empty(), "another site's articles are not searched");
}
