//! Conformance tests of the CRM-side records: lead forms and their funnel, leads with CRM fields,
//! conflicts and timelines, alerts, AI insight requests, organisations, imported business data,
//! health runs and playbook tasks.

use super::*;

pub fn sample_form(site: &str, form: &str) -> FormDefinition {
    FormDefinition {
        site_id: site.into(),
        form_id: form.into(),
        name: format!("Form {form}"),
        fields: vec![FormField {
            name: "email".into(),
            label: "Email".into(),
            kind: FieldKind::Email,
            required: true,
            placeholder: None,
            options: vec![],
            min_length: None,
            max_length: None,
            company_email: true,
            show_if: None,
            progressive: false,
            value: None,
        }],
        submit_label: "Send".into(),
        success_message: "Thanks".into(),
        created_at_ms: T0,
        updated_at_ms: T0,
    }
}

pub async fn forms_round_trip_replace_and_delete(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    store.put_form(&sample_form("s1", "b")).await.expect("put");
    store.put_form(&sample_form("s1", "a")).await.expect("put");
    store.put_form(&sample_form("s10", "a")).await.expect("put"); // a site id with s1 as prefix
    store.put_form(&sample_form("s", "z")).await.expect("put");
    let mut changed = sample_form("s1", "b");
    changed.name = "Renamed".into();
    changed.updated_at_ms = T0 + 1;
    store.put_form(&changed).await.expect("replace");
    assert_eq!(store.form("s1", "b").await.expect("get"), Some(changed));
    assert!(store.form("s2", "b").await.expect("get").is_none());
    let ids: Vec<String> = store.forms("s1").await.expect("list").into_iter().map(|f| f.form_id).collect();
    assert_eq!(ids, vec!["a", "b"]);
    assert!(store.delete_form("s1", "a").await.expect("delete"));
    assert!(!store.delete_form("s1", "a").await.expect("delete again"));
    assert!(store.form("s1", "a").await.expect("get").is_none());
    drop(store);
    let store = harness.open().await;
    let ids: Vec<String> = store.forms("s1").await.expect("list").into_iter().map(|f| f.form_id).collect();
    assert_eq!(ids, vec!["b"], "deletes and replaces survive reopen");
    assert_eq!(store.forms("s10").await.expect("list").len(), 1);
}

pub async fn form_stats_count_each_funnel_step(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let view = |f: &str| EventBody::FormView { form_id: f.into() };
    let start = |f: &str| EventBody::FormStart { form_id: f.into() };
    let submit = |f: &str| EventBody::FormSubmit { form_id: f.into(), traits: BTreeMap::new() };
    let mut events = vec![
        sample_event("s1", "v1", T0, view("demo"), "/contact"),
        sample_event("s1", "v1", T0 + 1, start("demo"), "/contact"),
        sample_event("s1", "v1", T0 + 2, submit("demo"), "/contact"),
        sample_event("s1", "v2", T0 + 3, view("demo"), "/contact"),
        sample_event("s1", "v2", T0 + 4, view("demo"), "/contact"),
        sample_event("s1", "v3", T0 + 5, view("newsletter"), "/blog"),
        sample_event("s1", "v3", T0 + 6, EventBody::Pageview, "/blog"),
        sample_event("s1", "v4", T0 + 7, view("demo"), "/contact"),
        sample_event("s1", "v1", T0 + 10_000, view("demo"), "/contact"), // outside the window
        sample_event("s2", "v1", T0, view("demo"), "/contact"),          // another site
    ];
    events[7].is_bot = true;
    store.write(WriteBatch { events, ..WriteBatch::default() }.into()).await.expect("write");
    let stats = store.form_stats("s1", T0, T0 + 10_000).await.expect("stats");
    assert_eq!(stats.len(), 2);
    let demo = &stats[0];
    assert_eq!((demo.form_id.as_str(), demo.views, demo.starts, demo.submissions), ("demo", 3, 1, 1));
    assert!((demo.conversion_rate - 1.0 / 3.0).abs() < 1e-9);
    assert_eq!((stats[1].form_id.as_str(), stats[1].views, stats[1].submissions), ("newsletter", 1, 0));
    assert_eq!(stats[1].conversion_rate, 0.0);
    assert!(store.form_stats("s3", T0, T0 + 10_000).await.expect("stats").is_empty());
}

pub fn sample_lead(site: &str, email: &str, score: u8, last_activity_ms: i64) -> Lead {
    Lead {
        site_id: site.into(),
        lead_id: crm_schemas::lead_id_for(site, email),
        email: email.into(),
        visitor_ids: vec![format!("v-{email}")],
        company_domain: crm_schemas::company_domain(email),
        source: "direct".into(),
        first_seen_ms: T0,
        last_activity_ms,
        created_at_ms: last_activity_ms - 1000,
        score,
        ..Lead::default()
    }
}

pub async fn leads_filter_sort_and_page(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let mut google = sample_lead("s1", "bo@globex.example", 80, T0 + 3);
    google.source = "google".into();
    google.traits.insert("company".into(), crm_schemas::Scalar::Str("Globex Corporation".into()));
    let leads = vec![
        sample_lead("s1", "ada@acme.example", 90, T0 + 1),
        google,
        sample_lead("s1", "cy@gmail.com", 80, T0 + 5),
        sample_lead("s1", "di@initech.example", 10, T0 + 4),
        sample_lead("s2", "ada@acme.example", 99, T0),
    ];
    store.write(WriteBatch { leads: leads.clone(), ..WriteBatch::default() }.into()).await.expect("write");
    let query = |f: &dyn Fn(&mut LeadQuery)| {
        let mut q = LeadQuery { site_id: "s1".into(), limit: 10, ..LeadQuery::default() };
        f(&mut q);
        q
    };
    let emails = |page: &crate::Page<crate::LeadRecord>| page.items.iter().map(|r| r.lead.email.clone()).collect::<Vec<_>>();
    let all = store.list_leads(&query(&|_| {})).await.expect("list");
    assert_eq!(emails(&all), vec!["ada@acme.example", "cy@gmail.com", "bo@globex.example", "di@initech.example"], "score, then recency");
    let by_recency = store.list_leads(&query(&|q| q.sort = LeadSort::LastActivity)).await.expect("list");
    assert_eq!(emails(&by_recency)[0], "cy@gmail.com");
    let first = store.list_leads(&query(&|q| q.limit = 3)).await.expect("page 1");
    let rest = store.list_leads(&query(&|q| q.cursor = first.next_cursor.clone())).await.expect("page 2");
    assert_eq!(emails(&rest), vec!["di@initech.example"]);
    assert!(rest.next_cursor.is_none());
    let band = store.list_leads(&query(&|q| { q.min_score = Some(50); q.max_score = Some(85); })).await.expect("band");
    assert_eq!(emails(&band), vec!["cy@gmail.com", "bo@globex.example"]);
    let company = store.list_leads(&query(&|q| q.company = Some("globex".into()))).await.expect("company");
    assert_eq!(emails(&company), vec!["bo@globex.example"]);
    let domain = store.list_leads(&query(&|q| q.company = Some("acme.example".into()))).await.expect("domain");
    assert_eq!(emails(&domain), vec!["ada@acme.example"]);
    let source = store.list_leads(&query(&|q| q.source = Some("google".into()))).await.expect("source");
    assert_eq!(emails(&source), vec!["bo@globex.example"]);
    let recent = store.list_leads(&query(&|q| q.active_since_ms = Some(T0 + 4))).await.expect("recent");
    assert_eq!(emails(&recent), vec!["cy@gmail.com", "di@initech.example"]);
    let keys = vec![("s1".to_owned(), leads[0].lead_id.clone()), ("s2".to_owned(), leads[4].lead_id.clone()), ("s1".into(), "lead_missing".into())];
    let mut found = store.leads(&keys).await.expect("get");
    found.sort_by_key(|l| l.site_id.clone());
    assert_eq!(found, vec![leads[0].clone(), leads[4].clone()]);
    let bad = store.list_leads(&query(&|q| q.cursor = Some("nonsense".into()))).await;
    assert!(matches!(bad, Err(crate::StoreError::InvalidCursor)));
}

pub async fn lead_crm_audit_scores_and_conflicts(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let ada = sample_lead("s1", "ada@acme.example", 70, T0);
    let bo = sample_lead("s1", "bo@acme.example", 20, T0);
    let point = |lead: &Lead, at: i64, score: u8| ScorePoint { site_id: "s1".into(), lead_id: lead.lead_id.clone(), at_ms: at, score };
    let conflict = IdentityConflict {
        site_id: "s1".into(),
        visitor_id: "shared".into(),
        lead_id: ada.lead_id.clone(),
        other_lead_id: bo.lead_id.clone(),
        other_email: bo.email.clone(),
        event_id: Uuid::new_v4(),
        at_ms: T0 + 5,
        resolved: false,
    };
    let batch = WriteBatch {
        leads: vec![ada.clone(), bo.clone()],
        score_points: vec![point(&ada, T0, 40), point(&ada, T0 + 10, 70), point(&bo, T0, 20)],
        conflicts: vec![conflict.clone()],
        ..WriteBatch::default()
    };
    let batch = std::sync::Arc::new(batch);
    store.write(batch.clone()).await.expect("write");
    store.write(batch).await.expect("replayed write is harmless");
    let history = store.score_history("s1", &ada.lead_id, 10).await.expect("history");
    assert_eq!(history.iter().map(|p| (p.at_ms, p.score)).collect::<Vec<_>>(), vec![(T0, 40), (T0 + 10, 70)]);
    assert_eq!(store.score_history("s1", &ada.lead_id, 1).await.expect("history")[0].score, 70, "the newest points");
    assert_eq!(store.identity_conflicts("s1", true, 10).await.expect("conflicts"), vec![conflict.clone()]);
    assert!(store.resolve_conflict("s1", "shared", &bo.lead_id).await.expect("resolve"));
    assert!(!store.resolve_conflict("s1", "nobody", &bo.lead_id).await.expect("resolve"));
    assert!(store.identity_conflicts("s1", true, 10).await.expect("conflicts").is_empty());
    assert!(store.identity_conflicts("s1", false, 10).await.expect("conflicts")[0].resolved);
    store.write(WriteBatch { conflicts: vec![conflict.clone()], ..WriteBatch::default() }.into()).await.expect("replayed detection");
    assert!(store.identity_conflicts("s1", true, 10).await.expect("conflicts").is_empty(), "a replay does not reopen it");
    let decide = |kind| crm_schemas::IdentityOverride { site_id: "s1".into(), kind, by: "admin".into(), at_ms: T0 };
    store.put_identity_override(&decide(crm_schemas::OverrideKind::Merge { from_lead_id: "b".into(), into_lead_id: "a".into() })).await.expect("put");
    store.put_identity_override(&decide(crm_schemas::OverrideKind::MoveVisitor { visitor_id: "v".into(), to_lead_id: None })).await.expect("put");
    let later = decide(crm_schemas::OverrideKind::MoveVisitor { visitor_id: "v".into(), to_lead_id: Some("a".into()) });
    store.put_identity_override(&later).await.expect("replace");
    let decisions = store.identity_overrides("s1").await.expect("overrides");
    assert_eq!(decisions.len(), 2);
    assert!(decisions.contains(&later));
    assert!(store.identity_overrides("s2").await.expect("overrides").is_empty());
    assert!(store.identity_conflicts("s2", false, 10).await.expect("conflicts").is_empty());

    assert!(store.lead_crm("s1", &ada.lead_id).await.expect("crm").is_none());
    let fields = LeadCrm {
        site_id: "s1".into(),
        lead_id: ada.lead_id.clone(),
        status: LeadStatus::Working,
        owner: Some("rep".into()),
        updated_at_ms: T0 + 20,
        ..LeadCrm::default()
    };
    let audit = |at: i64, field: &str, old: Option<&str>, new: &str| LeadAudit {
        site_id: "s1".into(),
        lead_id: ada.lead_id.clone(),
        at_ms: at,
        by: "admin".into(),
        field: field.into(),
        old: old.map(str::to_owned),
        new: Some(new.into()),
    };
    store.put_lead_crm(&fields, &[audit(T0 + 20, "status", Some("new"), "working"), audit(T0 + 20, "owner", None, "rep")]).await.expect("put");
    let deleted = LeadCrm { deleted_at_ms: Some(T0 + 30), updated_at_ms: T0 + 30, ..fields.clone() };
    store.put_lead_crm(&deleted, &[audit(T0 + 30, "deleted", None, "true")]).await.expect("put");
    assert_eq!(store.lead_crm("s1", &ada.lead_id).await.expect("crm"), Some(deleted));
    let trail = store.lead_audit("s1", &ada.lead_id, 10).await.expect("audit");
    assert_eq!(trail.len(), 3);
    assert_eq!(trail[0].field, "deleted", "newest first");
    assert!(store.lead_audit("s1", &bo.lead_id, 10).await.expect("audit").is_empty());

    let store_ref = &store;
    let listed = |q: LeadQuery| async move { store_ref.list_leads(&q).await.expect("list").items.into_iter().map(|r| r.lead.email).collect::<Vec<_>>() };
    let base = LeadQuery { site_id: "s1".into(), limit: 10, ..LeadQuery::default() };
    assert_eq!(listed(base.clone()).await, vec!["bo@acme.example"], "soft-deleted leads are hidden");
    assert_eq!(listed(LeadQuery { include_deleted: true, ..base.clone() }).await.len(), 2);
    assert_eq!(listed(LeadQuery { status: Some(LeadStatus::New), ..base.clone() }).await, vec!["bo@acme.example"], "no CRM row = new");
    let working = LeadQuery { status: Some(LeadStatus::Working), owner: Some("rep".into()), include_deleted: true, ..base };
    assert_eq!(listed(working).await, vec!["ada@acme.example"]);
}

pub async fn events_of_several_visitors_merge_newest_first(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let events: Vec<StoredEvent> = (0..5)
        .map(|i| sample_event("s1", if i % 2 == 0 { "laptop" } else { "phone" }, T0 + i * 1000, EventBody::Pageview, &format!("/p{i}")))
        .chain([sample_event("s1", "stranger", T0 + 10_000, EventBody::Pageview, "/x"), sample_event("s2", "laptop", T0 + 20_000, EventBody::Pageview, "/y")])
        .collect();
    store.write(WriteBatch { events, ..WriteBatch::default() }.into()).await.expect("write");
    let visitors = vec!["laptop".to_owned(), "phone".to_owned()];
    let first = store.events_of_visitors("s1", &visitors, 3, None).await.expect("page 1");
    let paths = |page: &crate::Page<StoredEvent>| page.items.iter().map(|e| e.path.clone().unwrap_or_default()).collect::<Vec<_>>();
    assert_eq!(paths(&first), vec!["/p4", "/p3", "/p2"]);
    let rest = store.events_of_visitors("s1", &visitors, 3, first.next_cursor.as_deref()).await.expect("page 2");
    assert_eq!(paths(&rest), vec!["/p1", "/p0"]);
    assert!(rest.next_cursor.is_none());
    assert!(store.events_of_visitors("s1", &[], 3, None).await.expect("none").items.is_empty());
    assert!(matches!(store.events_of_visitors("s1", &visitors, 3, Some("12:not-a-uuid")).await, Err(crate::StoreError::InvalidCursor)));
    // Whole-window scans, oldest first, a page at a time.
    let first = store.scan_events("s1", T0 + 1000, T0 + 10_001, 2, None).await.expect("scan");
    assert_eq!(paths(&first), vec!["/p1", "/p2"]);
    let second = store.scan_events("s1", T0 + 1000, T0 + 10_001, 2, first.next_cursor.as_deref()).await.expect("scan");
    assert_eq!(paths(&second), vec!["/p3", "/p4"]);
    let last = store.scan_events("s1", T0 + 1000, T0 + 10_001, 2, second.next_cursor.as_deref()).await.expect("scan");
    assert_eq!(paths(&last), vec!["/x"]);
    assert!(last.next_cursor.is_none());
}

pub fn sample_alert(site: &str, id: &str, fired_at_ms: i64, next_attempt_ms: i64) -> crm_schemas::Alert {
    crm_schemas::Alert {
        site_id: site.into(),
        alert_id: id.into(),
        rule_id: "r1".into(),
        rule_name: "Hot lead".into(),
        lead_id: "lead_1".into(),
        lead_email: "ada@acme.example".into(),
        lead_score: 85,
        message: "score crossed 80".into(),
        fired_at_ms,
        status: crm_schemas::DeliveryStatus::Pending,
        next_attempt_ms,
        attempts: vec![],
        task: None,
    }
}

pub async fn alert_rules_and_deliveries(harness: &dyn StoreHarness) {
    use crm_schemas::{AlertCondition, AlertRule, DeliveryAttempt, DeliveryStatus};
    let store = harness.open().await;
    let rule = |site: &str, id: &str| AlertRule {
        site_id: site.into(),
        rule_id: id.into(),
        name: format!("rule {id}"),
        condition: AlertCondition::ScoreCrossed { threshold: 80 },
        webhook_url: "http://127.0.0.1:9/hook".into(),
        secret: "s3cret".into(),
        window_hours: 24,
        enabled: true,
        created_at_ms: T0,
    };
    store.put_alert_rule(&rule("s1", "b")).await.expect("put");
    store.put_alert_rule(&rule("s1", "a")).await.expect("put");
    store.put_alert_rule(&rule("s10", "a")).await.expect("put");
    let ids: Vec<String> = store.alert_rules("s1").await.expect("rules").into_iter().map(|r| r.rule_id).collect();
    assert_eq!(ids, vec!["a", "b"]);
    assert!(store.delete_alert_rule("s1", "a").await.expect("delete"));
    assert!(!store.delete_alert_rule("s1", "a").await.expect("delete again"));
    assert_eq!(store.alert_rules("s1").await.expect("rules").len(), 1);

    let first = sample_alert("s1", "alert_a", T0, T0);
    let second = sample_alert("s2", "alert_b", T0 + 1, T0 + 5);
    store.write(WriteBatch { alerts: vec![first.clone(), second.clone()], ..WriteBatch::default() }.into()).await.expect("write");
    let due = |now: i64| async move { store_due(&*harness.open().await, now).await };
    drop(store);
    assert_eq!(due(T0 + 10).await, vec!["alert_a", "alert_b"], "oldest due first, all sites");
    assert_eq!(due(T0 + 1).await, vec!["alert_a"]);
    let store = harness.open().await;

    // A delivery attempt failed: retry later. Then it succeeds: no longer due.
    let mut retry = first.clone();
    retry.attempts.push(DeliveryAttempt { at_ms: T0 + 10, status_code: Some(500), error: None });
    retry.next_attempt_ms = T0 + 1000;
    store.update_alert(&retry).await.expect("update");
    drop(store);
    assert_eq!(due(T0 + 10).await, vec!["alert_b"]);
    let store = harness.open().await;
    // The same firing written again (a replay) changes nothing.
    store.write(WriteBatch { alerts: vec![first.clone()], ..WriteBatch::default() }.into()).await.expect("replay");
    let listed = store.alerts("s1", 10).await.expect("alerts");
    assert_eq!(listed, vec![retry.clone()], "the replay did not reset the delivery state");
    let mut delivered = retry.clone();
    delivered.status = DeliveryStatus::Delivered;
    delivered.attempts.push(DeliveryAttempt { at_ms: T0 + 1000, status_code: Some(200), error: None });
    store.update_alert(&delivered).await.expect("update");
    drop(store);
    assert_eq!(due(T0 + 10_000).await, vec!["alert_b"]);
    let store = harness.open().await;
    assert_eq!(store.alerts("s1", 10).await.expect("alerts")[0].status, DeliveryStatus::Delivered);
    assert!(store.alerts("s3", 10).await.expect("alerts").is_empty());
}

async fn store_due(store: &dyn Store, now: i64) -> Vec<String> {
    store.due_alerts(now, 10).await.expect("due").into_iter().map(|a| a.alert_id).collect()
}

pub async fn unidentified_visitors_group_by_organisation(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let profile = |visitor: &str, org: Option<&str>, intent: u8, seen: i64| {
        let mut p = sample_profile("s1", visitor, intent, 10, seen);
        p.geo.org = org.map(str::to_owned);
        p
    };
    let mut identified = profile("v4", Some("Acme Corp"), 99, T0 + 9);
    identified.lead_id = Some("lead_x".into());
    let mut bot = profile("v5", Some("Acme Corp"), 99, T0 + 9);
    bot.is_bot = true;
    let visitors = vec![
        profile("v2", Some("Acme Corp"), 40, T0 + 2),
        profile("v1", Some("Acme Corp"), 70, T0 + 1),
        profile("v3", Some("Globex"), 10, T0 + 3),
        profile("v6", None, 50, T0),
        identified,
        bot,
    ];
    store.write(WriteBatch { visitors, ..WriteBatch::default() }.into()).await.expect("write");
    let orgs = store.visitor_orgs("s1", 10).await.expect("orgs");
    assert_eq!(orgs.len(), 2);
    assert_eq!((orgs[0].org.as_str(), orgs[0].visitors, orgs[0].last_seen_ms, orgs[0].max_intent), ("Acme Corp", 2, T0 + 2, 70));
    assert_eq!(orgs[0].sample_visitor_ids, vec!["v1", "v2"]);
    assert_eq!((orgs[1].org.as_str(), orgs[1].visitors), ("Globex", 1));
    assert_eq!(store.visitor_orgs("s1", 1).await.expect("orgs").len(), 1);
    assert!(store.visitor_orgs("s2", 10).await.expect("orgs").is_empty());
}

pub async fn insight_requests_queue_and_answers(harness: &dyn StoreHarness) {
    use crm_schemas::{InsightRequest, LeadInsight};
    let store = harness.open().await;
    let request = |lead: &str, due: i64| InsightRequest {
        site_id: "s1".into(),
        lead_id: lead.into(),
        requested_at_ms: T0,
        next_attempt_ms: due,
        attempts: 0,
        last_error: None,
        failed: false,
    };
    store.write(WriteBatch { insight_requests: vec![request("a", T0 + 5), request("b", T0)], ..WriteBatch::default() }.into()).await.expect("write");
    let due = |now: i64| {
        let store = &store;
        async move { store.due_insight_requests(now, 10).await.expect("due").into_iter().map(|r| r.lead_id).collect::<Vec<_>>() }
    };
    assert_eq!(due(T0 + 10).await, vec!["b", "a"]);
    assert_eq!(due(T0).await, vec!["b"]);
    let retry = InsightRequest { attempts: 1, next_attempt_ms: T0 + 100, last_error: Some("timeout".into()), ..request("b", T0) };
    store.update_insight_request(&retry).await.expect("retry");
    assert_eq!(due(T0 + 10).await, vec!["a"]);
    let failed = InsightRequest { failed: true, ..request("a", T0 + 5) };
    store.update_insight_request(&failed).await.expect("fail");
    assert!(due(T0 + 1000).await == vec!["b"], "failed requests are not due");
    let insight = LeadInsight {
        site_id: "s1".into(),
        lead_id: "b".into(),
        generated_at_ms: T0 + 200,
        model: "m".into(),
        score: 70,
        key_factors: vec!["pricing views".into()],
        next_actions: vec!["call".into()],
        objections: vec![],
    };
    store.put_insight(&insight).await.expect("insight");
    assert!(due(T0 + 1000).await.is_empty(), "answered requests leave the queue");
    assert_eq!(store.insight("s1", "b").await.expect("get"), Some(insight));
    assert!(store.insight("s1", "a").await.expect("get").is_none());
}

pub async fn business_imports_upsert_per_site(harness: &dyn StoreHarness) {
    use crm_schemas::{CustomerAccount, ImportBatch, Invoice, InvoiceKind, InvoiceStatus, Priority, Relationship, Ticket};
    let store = harness.open().await;
    let account = |id: &str, mrr: f64| CustomerAccount {
        site_id: "s1".into(),
        account_id: id.into(),
        name: format!("Account {id}"),
        plan: "pro".into(),
        seats: Some(10),
        mrr,
        contract_start_ms: Some(T0),
        renewal_ms: None,
    };
    store.import("s1", &ImportBatch::Accounts(vec![account("a", 100.0), account("b", 200.0)])).await.expect("import");
    store.import("s1", &ImportBatch::Accounts(vec![account("a", 150.0)])).await.expect("re-import updates");
    store.import("s2", &ImportBatch::Accounts(vec![account("z", 1.0)])).await.expect("other site");
    let invoice = Invoice {
        site_id: "s1".into(),
        account_id: "a".into(),
        invoice_id: "inv-1".into(),
        issued_ms: T0,
        amount: 150.0,
        mrr: Some(150.0),
        status: InvoiceStatus::Paid,
        kind: InvoiceKind::Renewal,
    };
    store.import("s1", &ImportBatch::Invoices(vec![invoice.clone()])).await.expect("invoices");
    let ticket = Ticket {
        site_id: "s1".into(),
        account_id: "a".into(),
        ticket_id: "t-1".into(),
        opened_ms: T0,
        closed_ms: None,
        priority: Priority::High,
        sentiment: None,
        escalated: true,
    };
    store.import("s1", &ImportBatch::Tickets(vec![ticket.clone()])).await.expect("tickets");
    let relationship =
        Relationship { site_id: "s1".into(), account_id: "a".into(), nps: Some(9.0), executive_sponsor: true, reference_willing: false, stakeholders: 3 };
    store.import("s1", &ImportBatch::Relationships(vec![relationship.clone()])).await.expect("relationships");
    let data = store.business_data("s1").await.expect("read");
    assert_eq!(data.accounts.iter().map(|a| (a.account_id.as_str(), a.mrr)).collect::<Vec<_>>(), vec![("a", 150.0), ("b", 200.0)]);
    assert_eq!((data.invoices, data.tickets, data.relationships), (vec![invoice], vec![ticket], vec![relationship]));
    assert_eq!(store.business_data("s2").await.expect("read").accounts.len(), 1);
    assert!(store.business_data("s3").await.expect("read").accounts.is_empty());
}

pub fn sample_health(account: &str, day: i64, score: f64, risk: &str) -> crm_schemas::AccountHealth {
    crm_schemas::AccountHealth {
        site_id: "s1".into(),
        account_id: account.into(),
        name: account.to_uppercase(),
        day,
        computed_at_ms: day * 86_400_000,
        score,
        usage: Some(score),
        engagement: None,
        support: None,
        financial: None,
        relationship: None,
        missing: vec!["engagement".into()],
        risk: risk.into(),
        change_7d: None,
        change_30d: None,
        change_reason: None,
        churn_probability: None,
        churn_drivers: Vec::new(),
        mrr: Some(100.0),
        inputs: serde_json::json!({"usage": {"active_users": 3}}),
    }
}

pub async fn health_runs_are_kept_per_day(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let run = |account: &str, day: i64, score: f64| sample_health(account, day, score, "at_risk");
    store.put_health(&[run("a", 100, 50.0), run("b", 100, 80.0)]).await.expect("day 100");
    store.put_health(&[run("a", 101, 55.0)]).await.expect("day 101");
    store.put_health(&[run("a", 101, 57.0)]).await.expect("re-run of day 101 replaces it");
    let history = store.health_history("s1", "a", 10).await.expect("history");
    assert_eq!(history.iter().map(|h| (h.day, h.score)).collect::<Vec<_>>(), vec![(101, 57.0), (100, 50.0)]);
    assert_eq!(history[0].inputs, serde_json::json!({"usage": {"active_users": 3}}));
    let latest = store.latest_health("s1").await.expect("latest");
    assert_eq!(latest.iter().map(|h| (h.account_id.as_str(), h.day)).collect::<Vec<_>>(), vec![("a", 101), ("b", 100)]);
    assert!(store.latest_health("s2").await.expect("latest").is_empty());
}

pub async fn tasks_are_added_once_and_updated(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let task = |id: &str, due: i64| crm_schemas::Task {
        site_id: "s1".into(),
        task_id: id.into(),
        account_id: "acme".into(),
        rule: "declining_usage".into(),
        title: "Usage is declining at Acme".into(),
        priority: "medium".into(),
        due_ms: due,
        owner: None,
        status: "open".into(),
        reason: "usage fell by 25 points".into(),
        created_at_ms: T0,
    };
    assert_eq!(store.add_tasks(&[task("t2", T0 + 5), task("t1", T0 + 9)]).await.expect("add"), 2);
    let mut done = task("t1", T0 + 9);
    done.status = "done".into();
    done.owner = Some("cs".into());
    store.update_task(&done).await.expect("update");
    assert_eq!(store.add_tasks(&[task("t1", T0 + 9), task("t3", T0 + 1)]).await.expect("add again"), 1, "t1 exists");
    let tasks = store.tasks("s1").await.expect("tasks");
    assert_eq!(tasks.iter().map(|t| t.task_id.as_str()).collect::<Vec<_>>(), vec!["t3", "t2", "t1"], "oldest due first");
    assert_eq!(tasks[2], done, "re-adding did not reset the person's update");
    assert!(store.tasks("s2").await.expect("tasks").is_empty());
}
