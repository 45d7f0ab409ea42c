//! Identity stitching end to end through the real processor, on the embedded store and on a
//! real ClickHouse server (`CRM_TEST_CLICKHOUSE_URL`; without it that test fails, never skips):
//! anonymous browsing then a form → a lead carrying the pre-form history; a second device → the
//! same lead; two people on one device → a conflict, no merge; replays change nothing.

mod support;

use std::sync::Arc;

use crm_schemas::{lead_id_for, Scalar};
use crm_service::Shutdown;
use crm_store::{EmbeddedStore, LeadQuery, Store};
use serde_json::json;
use support::{identify, now_ms, page, record, Pipeline};

async fn identity_scenarios(store: Arc<dyn Store>) {
    let mut p = Pipeline::new(store.clone()).await;
    let t = now_ms() - 3_600_000;
    let ada = lead_id_for("s1", "ada@acme.example");

    // Anonymous browsing, then the form (email in mixed case).
    p.run(vec![page("laptop", t, "/"), page("laptop", t + 10_000, "/pricing"), page("laptop", t + 20_000, "/features")]).await;
    assert!(store.leads(&[("s1".into(), ada.clone())]).await.unwrap().is_empty(), "anonymous: no lead yet");
    let form = json!({"v": 1, "type": "form_submit", "site_id": "s1", "visitor_id": "laptop", "ts": t + 30_000, "form_id": "demo",
                      "url": "https://acme.example/contact", "traits": {"email": "Ada@Acme.example", "company": "Acme", "employees": "51-200"}});
    p.run(vec![record(form)]).await;
    let lead = store.leads(&[("s1".into(), ada.clone())]).await.unwrap().pop().expect("lead created by the form");
    assert_eq!(lead.email, "ada@acme.example");
    assert_eq!(lead.visitor_ids, vec!["laptop"]);
    assert_eq!(lead.first_seen_ms, t, "the pre-form history is the lead's");
    assert_eq!((lead.activity.pageviews, lead.activity.visits), (3, 1));
    assert_eq!(lead.activity.signals.get("pricing"), Some(&1));
    assert_eq!(lead.activity.signals.get("form_submit"), Some(&1));
    assert_eq!(lead.traits.get("company"), Some(&Scalar::Str("Acme".into())));
    assert_eq!(lead.company_domain.as_deref(), Some("acme.example"));
    assert!(lead.breakdown.fit >= 50.0, "business email + size in the ICP: {:?}", lead.breakdown);
    assert!(lead.score > 0 && !lead.reasons.is_empty());
    assert_eq!(store.visitor("s1", "laptop").await.unwrap().unwrap().lead_id.as_deref(), Some(ada.as_str()));

    // A second device identifies with the same email: one lead, both histories.
    p.run(vec![page("phone", t + 60_000, "/demo"), identify("phone", t + 61_000, json!({"email": "ada@acme.example", "title": "CTO"}))]).await;
    let lead = store.leads(&[("s1".into(), ada.clone())]).await.unwrap().pop().unwrap();
    assert_eq!(lead.visitor_ids, vec!["laptop", "phone"]);
    assert_eq!(lead.activity.pageviews, 4);
    assert_eq!(lead.activity.signals.get("demo"), Some(&1));
    assert_eq!(lead.traits.get("title"), Some(&Scalar::Str("CTO".into())));

    // Two people on one device: the second identity is a conflict, never a merge.
    p.run(vec![
        page("kiosk", t + 90_000, "/"),
        identify("kiosk", t + 91_000, json!({"email": "bo@globex.example"})),
        identify("kiosk", t + 92_000, json!({"email": "cy@initech.example"})),
    ])
    .await;
    let bo = lead_id_for("s1", "bo@globex.example");
    let cy = lead_id_for("s1", "cy@initech.example");
    assert_eq!(store.visitor("s1", "kiosk").await.unwrap().unwrap().lead_id.as_deref(), Some(bo.as_str()));
    let leads = store.leads(&[("s1".into(), bo.clone()), ("s1".into(), cy.clone())]).await.unwrap();
    let cy_lead = leads.iter().find(|l| l.lead_id == cy).expect("the other identity has its own lead");
    assert!(cy_lead.visitor_ids.is_empty(), "but not the shared visitor's history");
    let conflicts = store.identity_conflicts("s1", true, 10).await.unwrap();
    assert_eq!(conflicts.len(), 1);
    assert_eq!((conflicts[0].visitor_id.as_str(), conflicts[0].lead_id.as_str(), conflicts[0].other_lead_id.as_str()), ("kiosk", bo.as_str(), cy.as_str()));

    // Replaying everything with a fresh processor changes nothing.
    let before = store.list_leads(&LeadQuery { site_id: "s1".into(), limit: 10, ..LeadQuery::default() }).await.unwrap();
    let source = p.consumer.source().to_owned();
    let all = std::mem::take(&mut p.delivered);
    p.processor().process(&all, &source, &Shutdown::new()).await.unwrap();
    let after = store.list_leads(&LeadQuery { site_id: "s1".into(), limit: 10, ..LeadQuery::default() }).await.unwrap();
    let shape = |page: &crm_store::Page<crm_store::LeadRecord>| {
        page.items.iter().map(|r| (r.lead.lead_id.clone(), r.lead.visitor_ids.clone(), r.lead.activity.clone())).collect::<Vec<_>>()
    };
    assert_eq!(shape(&before), shape(&after));
    assert_eq!(after.items.len(), 3);
    assert_eq!(store.identity_conflicts("s1", false, 10).await.unwrap().len(), 1);
    assert!(!store.score_history("s1", &ada, 10).await.unwrap().is_empty());
}

/// People's decisions stick: after a merge, the processor keeps folding the merged lead in; a
/// visitor moved away by hand is never re-linked by a later identify.
async fn decisions_scenario(store: Arc<dyn Store>) {
    use crm_schemas::{IdentityOverride, OverrideKind};
    let mut p = Pipeline::new(store.clone()).await;
    let t = now_ms() - 3_600_000;
    let (work, home) = (lead_id_for("s1", "ada@acme.example"), lead_id_for("s1", "ada.home@acme.example"));
    p.run(vec![identify("laptop", t, json!({"email": "ada@acme.example"})), identify("phone", t + 1000, json!({"email": "ada.home@acme.example", "city": "Oslo"}))]).await;
    let decide = |kind| IdentityOverride { site_id: "s1".into(), kind, by: "admin".into(), at_ms: t };
    store.put_identity_override(&decide(OverrideKind::Merge { from_lead_id: home.clone(), into_lead_id: work.clone() })).await.unwrap();
    p.run(vec![page("phone", t + 2000, "/pricing")]).await;
    let leads = store.leads(&[("s1".into(), work.clone()), ("s1".into(), home.clone())]).await.unwrap();
    let get = |id: &str| leads.iter().find(|l| l.lead_id == id).unwrap().clone();
    assert_eq!(get(&work).visitor_ids, vec!["laptop", "phone"]);
    assert_eq!(get(&work).traits.get("city"), Some(&Scalar::Str("Oslo".into())), "merged traits fill in");
    assert_eq!(get(&work).activity.signals.get("pricing"), Some(&1));
    assert_eq!(get(&home).merged_into.as_deref(), Some(work.as_str()));
    let listed = store.list_leads(&LeadQuery { site_id: "s1".into(), limit: 10, ..LeadQuery::default() }).await.unwrap();
    assert_eq!(listed.items.iter().map(|r| r.lead.lead_id.clone()).collect::<Vec<_>>(), vec![work.clone()], "merged leads are not listed");
    // The home email again, from a new device: lands on the merged lead.
    p.run(vec![identify("tablet", t + 3000, json!({"email": "ada.home@acme.example"}))]).await;
    let merged = store.leads(&[("s1".into(), work.clone())]).await.unwrap().pop().unwrap();
    assert_eq!(merged.visitor_ids, vec!["laptop", "phone", "tablet"]);

    store.put_identity_override(&decide(OverrideKind::MoveVisitor { visitor_id: "phone".into(), to_lead_id: None })).await.unwrap();
    p.run(vec![page("phone", t + 4000, "/"), identify("phone", t + 5000, json!({"email": "ada@acme.example"}))]).await;
    let merged = store.leads(&[("s1".into(), work.clone())]).await.unwrap().pop().unwrap();
    assert_eq!(merged.visitor_ids, vec!["laptop", "tablet"], "the phone was moved away and stays away");
    assert_eq!(store.visitor("s1", "phone").await.unwrap().unwrap().lead_id, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_stick_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    decisions_scenario(Arc::new(EmbeddedStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decisions_stick_on_clickhouse() {
    decisions_scenario(support::clickhouse_store("crm_decisions").await).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_stitching_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    identity_scenarios(Arc::new(EmbeddedStore::open(dir.path()).unwrap())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identity_stitching_on_clickhouse() {
    identity_scenarios(support::clickhouse_store("crm_identity").await).await;
}
