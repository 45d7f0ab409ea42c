//! Conformance of [`crate::PrivacyStore`]: a lead with two devices (and a merged-in lead) is
//! erased with everything that names it, a bystander on the same site and the same visitor id on
//! another site keep everything, the overview drops by exactly the subject's rows, a second erase
//! finds nothing, and all of it holds after a reopen.

use std::collections::BTreeMap;

use crm_schemas::{
    Alert, Conversation, ConversationStatus, ConversationMessage, Erasure, ErasureSubject, IdentityOverride, InsightRequest, LeadInsight, MessageAuthor,
    OverrideKind,
};

use super::*;

const SITE: &str = "privacy";

fn conversation(id: u128, visitor: &str) -> Conversation {
    Conversation {
        site_id: SITE.into(),
        conversation_id: Uuid::from_u128(id).to_string(),
        visitor_id: Some(visitor.into()),
        status: ConversationStatus::Open,
        started_at_ms: T0 + id as i64,
        updated_at_ms: T0 + id as i64,
        messages: 1,
        article_ids: vec![],
        assigned_to: None,
        fields: BTreeMap::from([("email".to_string(), "ada@acme.example".to_string())]),
        token_hash: format!("hash-{id}"),
        pending_field: None,
        session_id: None,
        declined: Vec::new(),
    }
}

fn message(conversation: &Conversation, n: u128) -> ConversationMessage {
    ConversationMessage {
        site_id: SITE.into(),
        conversation_id: conversation.conversation_id.clone(),
        message_id: Uuid::from_u128(100 + n).to_string(),
        at_ms: T0 + n as i64,
        author: MessageAuthor::Visitor,
        agent: None,
        text: format!("hello {n}"),
        article_ids: vec![],
    }
}

fn letter(n: u128, payload: &str) -> DeadLetter {
    DeadLetter { id: Uuid::from_u128(n), site_id: SITE.into(), received_at_ms: T0 + n as i64, code: "invalid".into(), message: "bad".into(), payload: payload.into() }
}

/// The subject's erasure: lead `ada` (devices `ada-phone`, `ada-laptop`) with lead `ada-old`
/// merged into it.
pub fn sample_erasure(ada: &Lead, old: &Lead) -> Erasure {
    Erasure {
        erasure_id: "erasure-1".into(),
        site_id: SITE.into(),
        subject: ErasureSubject::Lead { lead_id: ada.lead_id.clone() },
        visitor_ids: vec!["ada-phone".into(), "ada-laptop".into()],
        lead_ids: vec![ada.lead_id.clone(), old.lead_id.clone()],
        requested_by: "admin".into(),
        at_ms: T0 + 1_000_000,
        completed_at_ms: None,
        counts: BTreeMap::new(),
    }
}

pub async fn erasing_a_lead_removes_everything_about_it(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let ada = Lead { visitor_ids: vec!["ada-phone".into(), "ada-laptop".into()], ..crm::sample_lead(SITE, "ada@acme.example", 70, T0) };
    let old = crm::sample_lead(SITE, "ada.old@acme.example", 10, T0);
    let bo = Lead { visitor_ids: vec!["bo".into()], ..crm::sample_lead(SITE, "bo@beta.example", 30, T0) };
    let page = |visitor: &str, i: i64| sample_event(SITE, visitor, T0 + i * 1000, EventBody::Pageview, &format!("/p{i}"));
    let mut events = Vec::new();
    for i in 0..4 {
        events.push(page("ada-phone", i));
        events.push(page("bo", i));
    }
    events.push(page("ada-laptop", 9));
    // The same visitor id on another site is someone else's data.
    events.push(sample_event("other-site", "ada-phone", T0, EventBody::Pageview, "/"));
    let sessions = vec![
        sample_session(SITE, "ada-phone", T0, 4, 3000),
        sample_session(SITE, "ada-laptop", T0 + 9000, 1, 0),
        sample_session(SITE, "bo", T0, 4, 3000),
        sample_session("other-site", "ada-phone", T0, 1, 0),
    ];
    let visitors = vec![
        sample_profile(SITE, "ada-phone", 60, 50, T0 + 3000),
        sample_profile(SITE, "ada-laptop", 40, 20, T0 + 9000),
        sample_profile(SITE, "bo", 30, 30, T0 + 3000),
        sample_profile("other-site", "ada-phone", 10, 10, T0),
    ];
    let point = |lead: &Lead, at: i64| ScorePoint { site_id: SITE.into(), lead_id: lead.lead_id.clone(), at_ms: at, score: 50 };
    let conflict = IdentityConflict {
        site_id: SITE.into(),
        visitor_id: "ada-laptop".into(),
        lead_id: ada.lead_id.clone(),
        other_lead_id: bo.lead_id.clone(),
        other_email: bo.email.clone(),
        event_id: Uuid::new_v4(),
        at_ms: T0,
        resolved: false,
    };
    let alert = |id: &str, lead: &Lead| Alert { site_id: SITE.into(), lead_id: lead.lead_id.clone(), lead_email: lead.email.clone(), ..crm::sample_alert(SITE, id, T0, T0 + 60_000) };
    let request = |lead: &Lead| InsightRequest { site_id: SITE.into(), lead_id: lead.lead_id.clone(), requested_at_ms: T0, next_attempt_ms: T0, attempts: 0, last_error: None, failed: false };
    store
        .write(
            WriteBatch {
                events,
                sessions,
                visitors,
                leads: vec![ada.clone(), old.clone(), bo.clone()],
                score_points: vec![point(&ada, T0), point(&ada, T0 + 5), point(&bo, T0)],
                conflicts: vec![conflict],
                alerts: vec![alert("a-ada", &ada), alert("a-bo", &bo)],
                insight_requests: vec![request(&old), request(&bo)],
                dead_letters: vec![letter(1, r#"{"visitor_id":"ada-phone"}"#), letter(2, r#"{"email":"ada@acme.example"}"#), letter(3, r#"{"visitor_id":"bo"}"#)],
                ..WriteBatch::default()
            }
            .into(),
        )
        .await
        .expect("write");
    let crm_fields = |lead: &Lead| LeadCrm { site_id: SITE.into(), lead_id: lead.lead_id.clone(), status: LeadStatus::Working, updated_at_ms: T0, ..LeadCrm::default() };
    let audit = |lead: &Lead| LeadAudit { site_id: SITE.into(), lead_id: lead.lead_id.clone(), at_ms: T0, by: "admin".into(), field: "status".into(), old: None, new: Some("working".into()) };
    store.put_lead_crm(&crm_fields(&ada), &[audit(&ada)]).await.expect("crm");
    store.put_lead_crm(&crm_fields(&bo), &[audit(&bo)]).await.expect("crm");
    let insight = |lead: &Lead| LeadInsight { site_id: SITE.into(), lead_id: lead.lead_id.clone(), generated_at_ms: T0, model: "m".into(), score: 50, key_factors: vec![], next_actions: vec![], objections: vec![] };
    // An answered request leaves the queue: ada has an insight, her merged lead a pending request.
    store.put_insight(&insight(&ada)).await.expect("insight");
    let decide = |kind| IdentityOverride { site_id: SITE.into(), kind, by: "admin".into(), at_ms: T0 };
    store.put_identity_override(&decide(OverrideKind::Merge { from_lead_id: old.lead_id.clone(), into_lead_id: ada.lead_id.clone() })).await.expect("override");
    store.put_identity_override(&decide(OverrideKind::MoveVisitor { visitor_id: "bo-tablet".into(), to_lead_id: Some(bo.lead_id.clone()) })).await.expect("override");
    let (chat_ada, chat_bo) = (conversation(1, "ada-phone"), conversation(2, "bo"));
    for chat in [&chat_ada, &chat_bo] {
        store.put_conversation(chat).await.expect("conversation");
    }
    store.add_messages(&[message(&chat_ada, 1), message(&chat_ada, 2), message(&chat_bo, 3)]).await.expect("messages");
    let window = (T0 - 1000, T0 + 86_400_000);
    let before = store.overview(SITE, window.0, window.1, 10).await.expect("overview");
    assert_eq!((before.visitors, before.sessions, before.pageviews), (3, 3, 9));

    let erasure = sample_erasure(&ada, &old);
    store.put_erasure(&erasure).await.expect("tombstone");
    assert_eq!(store.meta(crate::ERASURE_REVISION_KEY).await.expect("meta").as_deref(), Some(erasure.erasure_id.as_bytes()));
    let needles = vec!["ada-phone".to_string(), "ada-laptop".to_string(), ada.email.clone(), old.email.clone()];
    let counts = store.erase_subject(&erasure, &needles).await.expect("erase");
    let expected: BTreeMap<String, u64> = [
        ("events", 5),
        ("sessions", 2),
        ("profiles", 2),
        ("leads", 2),
        ("lead_crm", 1),
        ("lead_audit", 1),
        ("score_points", 2),
        ("insights", 1),
        ("insight_requests", 1),
        ("alerts", 1),
        ("identity_conflicts", 1),
        ("identity_overrides", 1),
        ("conversations", 1),
        ("messages", 2),
        ("dead_letters", 2),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    assert_eq!(counts, expected);
    let done = Erasure { completed_at_ms: Some(T0 + 1_000_001), counts: counts.clone(), ..erasure.clone() };
    store.put_erasure(&done).await.expect("completed tombstone");

    let fixture = Fixture { ada, old, bo, chat_ada: chat_ada.conversation_id, chat_bo: chat_bo.conversation_id, erasure, done, needles, window };
    erased_and_nothing_else(&*store, &fixture, false).await;
    drop(store);
    let store = harness.open().await;
    erased_and_nothing_else(&*store, &fixture, true).await;
}

struct Fixture {
    ada: Lead,
    old: Lead,
    bo: Lead,
    chat_ada: String,
    chat_bo: String,
    erasure: Erasure,
    done: Erasure,
    needles: Vec<String>,
    window: (i64, i64),
}

async fn erased_and_nothing_else(store: &dyn Store, f: &Fixture, reopened: bool) {
    let Fixture { ada, old, bo, chat_ada, chat_bo, erasure, done, needles, window } = f;
    let after = store.overview(SITE, window.0, window.1, 10).await.expect("overview");
    assert_eq!((after.visitors, after.sessions, after.pageviews), (1, 1, 4), "only bo is left (reopened: {reopened})");
    for visitor in ["ada-phone", "ada-laptop"] {
        assert!(store.visitor_events(SITE, visitor, 10, None).await.expect("timeline").items.is_empty());
        assert!(store.visitor(SITE, visitor).await.expect("profile").is_none());
    }
    assert_eq!(store.visitor_events(SITE, "bo", 10, None).await.expect("timeline").items.len(), 4);
    assert_eq!(store.visitor_events("other-site", "ada-phone", 10, None).await.expect("timeline").items.len(), 1, "another site keeps its visitor");
    assert!(store.visitor("other-site", "ada-phone").await.expect("profile").is_some());
    let listed = store.list_visitors(&VisitorQuery { site_id: SITE.into(), limit: 10, ..VisitorQuery::default() }).await.expect("list");
    assert_eq!(listed.items.iter().map(|p| p.visitor_id.as_str()).collect::<Vec<_>>(), vec!["bo"]);
    let sessions = store.sessions_between(SITE, window.0, window.1, 100).await.expect("sessions");
    assert_eq!(sessions.iter().map(|s| s.visitor_id.as_str()).collect::<Vec<_>>(), vec!["bo"]);
    let scanned = store.scan_events(SITE, window.0, window.1, 100, None).await.expect("scan");
    assert!(scanned.items.iter().all(|e| e.visitor_id == "bo"), "raw exports see none of it");
    assert_eq!(scanned.items.len(), 4);
    for lead in [&ada, &old] {
        assert!(store.leads(&[(SITE.into(), lead.lead_id.clone())]).await.expect("leads").is_empty());
        assert!(store.lead_crm(SITE, &lead.lead_id).await.expect("crm").is_none());
        assert!(store.lead_audit(SITE, &lead.lead_id, 10).await.expect("audit").is_empty());
        assert!(store.score_history(SITE, &lead.lead_id, 10).await.expect("scores").is_empty());
        assert!(store.insight(SITE, &lead.lead_id).await.expect("insight").is_none());
    }
    assert_eq!(store.leads(&[(SITE.into(), bo.lead_id.clone())]).await.expect("bo").len(), 1);
    assert!(store.lead_crm(SITE, &bo.lead_id).await.expect("crm").is_some());
    let alerts: Vec<String> = store.alerts(SITE, 10).await.expect("alerts").into_iter().map(|a| a.alert_id).collect();
    assert_eq!(alerts, vec!["a-bo"]);
    let due: Vec<String> = store.due_insight_requests(T0 + 1, 10).await.expect("due").into_iter().map(|r| r.lead_id).collect();
    assert_eq!(due, vec![bo.lead_id.clone()]);
    assert!(store.identity_conflicts(SITE, false, 10).await.expect("conflicts").is_empty());
    assert_eq!(store.identity_overrides(SITE).await.expect("overrides").len(), 1);
    let chats = store.conversations(SITE, 10, None).await.expect("conversations");
    assert_eq!(chats.items.iter().map(|c| c.conversation_id.clone()).collect::<Vec<_>>(), vec![chat_bo.clone()]);
    assert!(store.conversation(SITE, chat_ada).await.expect("conversation").is_none());
    assert!(store.messages(SITE, chat_ada, 10).await.expect("messages").is_empty());
    assert_eq!(store.messages(SITE, chat_bo, 10).await.expect("messages").len(), 1);
    let letters: Vec<Uuid> = store.dead_letters(SITE, 10, None).await.expect("letters").items.into_iter().map(|l| l.id).collect();
    assert_eq!(letters, vec![Uuid::from_u128(3)]);
    assert_eq!(store.erasures(SITE).await.expect("erasures"), vec![done.clone()], "the audit record");
    assert!(store.erasures("other-site").await.expect("erasures").is_empty());
    assert!(store.erase_subject(erasure, needles).await.expect("erase again").is_empty(), "nothing left to erase");
}

/// Per-site retention ([`crate::PrivacyStore::drop_site_before`]): a site's events, sessions and
/// dead letters before a UTC day start leave; its newer rows, other sites' rows and profiles stay.
pub async fn site_retention_drops_only_that_sites_old_rows(harness: &dyn StoreHarness) {
    const DAY: i64 = 86_400_000;
    let store = harness.open().await;
    let d0 = T0.div_euclid(DAY) * DAY;
    let mut batch = WriteBatch::default();
    for site in ["short", "long"] {
        for day in 0..3 {
            let at = d0 + day * DAY + 3_600_000;
            batch.events.push(sample_event(site, "a", at, EventBody::Pageview, &format!("/day{day}")));
            batch.sessions.push(sample_session(site, "a", at, 1, 0));
        }
        let late = d0 + 2 * DAY + 7_200_000;
        batch.events.push(sample_event(site, "b", late, EventBody::Pageview, "/"));
        batch.sessions.push(sample_session(site, "b", late, 1, 0));
        batch.visitors.push(sample_profile(site, "a", 10, 10, d0 + 2 * DAY + 3_600_000));
        for (n, at) in [(1u128, d0 + 60_000), (2, d0 + 2 * DAY + 60_000)] {
            let id = Uuid::from_u128(n + if site == "short" { 0 } else { 10 });
            batch.dead_letters.push(DeadLetter { id, site_id: site.into(), received_at_ms: at, code: "invalid".into(), message: "bad".into(), payload: "{}".into() });
        }
    }
    store.write(batch.into()).await.expect("write");
    let window = (d0 - DAY, d0 + 4 * DAY);
    let counts = store.drop_site_before("short", d0 + 2 * DAY).await.expect("retention");
    let expected: BTreeMap<String, u64> = [("events", 2), ("sessions", 2), ("dead_letters", 1)].into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    assert_eq!(counts, expected);
    let mut open = Some(store);
    for reopened in [false, true] {
        // The first round reads the store that was written; the second a reopened one.
        let store = match open.take() {
            Some(store) => store,
            None => harness.open().await,
        };
        let timeline: Vec<String> = store.visitor_events("short", "a", 10, None).await.expect("timeline").items.into_iter().filter_map(|e| e.path).collect();
        assert_eq!(timeline, vec!["/day2"], "reopened: {reopened}");
        assert_eq!(store.visitor_events("long", "a", 10, None).await.expect("timeline").items.len(), 3, "another site keeps everything");
        let short = store.overview("short", window.0, window.1, 10).await.expect("overview");
        let long = store.overview("long", window.0, window.1, 10).await.expect("overview");
        assert_eq!((short.pageviews, short.sessions, long.pageviews, long.sessions), (2, 2, 4, 4));
        assert_eq!(store.sessions_between("short", window.0, window.1, 100).await.expect("sessions").len(), 2);
        assert_eq!(store.dead_letters("short", 10, None).await.expect("letters").items.len(), 1);
        assert_eq!(store.dead_letters("long", 10, None).await.expect("letters").items.len(), 2);
        assert!(store.visitor("short", "a").await.expect("profile").is_some(), "profiles are CRM records, kept");
        assert!(store.drop_site_before("short", d0 + 2 * DAY).await.expect("again").is_empty(), "nothing left that old");
    }
}
