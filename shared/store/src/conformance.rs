//! The one conformance suite every [`Store`] implementation must pass.
//!
//! A backend provides a [`StoreHarness`] whose `open` returns the same logical store each time
//! (after the previous handle was dropped), then instantiates the tests with
//! [`store_conformance_suite!`](crate::store_conformance_suite). Each test builds a fresh harness.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use crm_schemas::{
    DeadLetter, Device, EventBody, FieldKind, FormDefinition, FormField, Geo, IdentityConflict, Lead, LeadAudit, LeadCrm,
    LeadStatus, Role, ScorePoint, Session, Site, StoredEvent, User, Utm, VisitorProfile,
};
use uuid::Uuid;

use crate::{BotFilter, LeadQuery, LeadSort, Store, VisitorQuery, VisitorSort, WriteBatch};

mod auth;
mod bots;
mod crm;
mod explore;
mod filters;
mod goals;
mod growth;
mod privacy;
mod sql;
mod kb;
pub use auth::*;
pub use bots::*;
pub use crm::*;
pub use explore::*;
pub use filters::*;
pub use goals::*;
pub use growth::*;
pub use privacy::*;
pub use sql::*;
pub use kb::*;

#[async_trait]
pub trait StoreHarness: Send + Sync {
    async fn open(&self) -> Arc<dyn Store>;
}

#[macro_export]
macro_rules! store_conformance_suite {
    ($harness:expr) => {
        $crate::store_conformance_suite!(@tests $harness;
            events_round_trip_through_the_timeline,
            replayed_events_are_written_once,
            unseen_event_ids_reports_only_new_ids,
            visitors_list_sorted_with_cursor_pagination,
            profile_updates_move_the_visitor_in_rankings,
            bots_are_listed_separately,
            visitor_is_found_by_id_alone,
            overview_counts_humans_in_the_window,
            mixed_visitor_follows_its_profile,
            a_visitor_that_becomes_a_bot_leaves_past_aggregates,
            funnels_and_retention_match_the_fixture,
            growth_reports_equal_the_fold_over_matched_rows,
            goals_match_the_fixture,
            custom_events_and_paths_match_the_fixture,
            sql_reads_one_site_and_nothing_else,
            dead_letters_are_listed_newest_first,
            sites_users_and_meta_round_trip,
            data_survives_reopen,
            invalid_cursor_is_an_error,
            forms_round_trip_replace_and_delete,
            form_stats_count_each_funnel_step,
            leads_filter_sort_and_page,
            lead_crm_audit_scores_and_conflicts,
            events_of_several_visitors_merge_newest_first,
            alert_rules_and_deliveries,
            unidentified_visitors_group_by_organisation,
            insight_requests_queue_and_answers,
            business_imports_upsert_per_site,
            health_runs_are_kept_per_day,
            tasks_are_added_once_and_updated,
            refresh_tokens_rotate_and_revoke_by_family,
            auth_audit_pages_newest_first,
            timeseries_matches_overview_per_bucket,
            kb_articles_keep_versions_and_soft_delete,
            kb_embeddings_round_trip_bit_exact,
            kb_conversations_page_newest_first_and_messages_once,
            kb_counters_sum_per_key_and_window,
            erasing_a_lead_removes_everything_about_it,
            site_retention_drops_only_that_sites_old_rows,
            filtered_overviews_match_the_fixture
        );
    };
    (@tests $harness:expr; $($name:ident),* $(,)?) => {
        $(
            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() {
                let harness = $harness;
                $crate::conformance::$name(&harness).await;
            }
        )*
    };
}

const T0: i64 = 1_700_000_000_000;

pub fn sample_event(site: &str, visitor: &str, ts_ms: i64, body: EventBody, path: &str) -> StoredEvent {
    StoredEvent {
        event_id: Uuid::new_v4(),
        site_id: site.into(),
        visitor_id: visitor.into(),
        session_id: format!("{visitor}-s1"),
        client_session_id: None,
        ts_ms,
        received_at_ms: ts_ms,
        url: Some(format!("https://example.com{path}")),
        path: Some(path.into()),
        referrer: None,
        title: Some("Title".into()),
        props: BTreeMap::new(),
        body,
        ip: Some("203.0.113.0".into()),
        geo: Geo { country: Some("DE".into()), ..Geo::default() },
        device: Device { browser: "Chrome".into(), category: "pc".into(), ..Device::default() },
        is_bot: false,
        intent_signal: None,
    }
}

pub fn sample_profile(site: &str, visitor: &str, intent: u8, engagement: u8, last_seen_ms: i64) -> VisitorProfile {
    VisitorProfile {
        site_id: site.into(),
        visitor_id: visitor.into(),
        first_seen_ms: last_seen_ms - 1000,
        last_seen_ms,
        visits: 1,
        pageviews: 1,
        events: 1,
        intent_score: intent,
        engagement_score: engagement,
        ..VisitorProfile::default()
    }
}

pub fn sample_session(site: &str, visitor: &str, start_ms: i64, pageviews: u32, duration_ms: i64) -> Session {
    Session {
        site_id: site.into(),
        session_id: format!("{visitor}-{start_ms}"),
        visitor_id: visitor.into(),
        start_ms,
        end_ms: start_ms + duration_ms,
        pageviews,
        events: pageviews,
        country: Some("DE".into()),
        device_category: "pc".into(),
        browser: "Chrome".into(),
        referrer_host: Some("news.example".into()),
        utm: Utm { source: Some("newsletter".into()), ..Utm::default() },
        ..Session::default()
    }
}

pub async fn events_round_trip_through_the_timeline(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let events: Vec<StoredEvent> = (0..5)
        .map(|i| sample_event("s1", "v1", T0 + i * 1000, EventBody::Pageview, &format!("/p{i}")))
        .collect();
    let other = sample_event("s1", "v2", T0, EventBody::Pageview, "/other");
    let outcome = store
        .write(WriteBatch { events: [events.clone(), vec![other]].concat(), ..WriteBatch::default() }.into())
        .await
        .expect("write");
    assert_eq!(outcome.events_written, 6);
    let page = store.visitor_events("s1", "v1", 3, None).await.expect("timeline");
    let paths: Vec<_> = page.items.iter().map(|e| e.path.clone().unwrap()).collect();
    assert_eq!(paths, vec!["/p4", "/p3", "/p2"]);
    assert_eq!(page.items[0], events[4], "stored event comes back unchanged");
    let rest = store.visitor_events("s1", "v1", 3, page.next_cursor.as_deref()).await.expect("page 2");
    let paths: Vec<_> = rest.items.iter().map(|e| e.path.clone().unwrap()).collect();
    assert_eq!(paths, vec!["/p1", "/p0"]);
    assert!(rest.next_cursor.is_none());
}

pub async fn replayed_events_are_written_once(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let event = sample_event("s1", "v1", T0, EventBody::Pageview, "/pricing");
    let first = store.write(WriteBatch { events: vec![event.clone()], ..WriteBatch::default() }.into()).await.expect("write");
    let second = store.write(WriteBatch { events: vec![event.clone()], ..WriteBatch::default() }.into()).await.expect("rewrite");
    assert_eq!((first.events_written, first.duplicates_skipped), (1, 0));
    assert_eq!((second.events_written, second.duplicates_skipped), (0, 1));
    let page = store.visitor_events("s1", "v1", 10, None).await.expect("timeline");
    assert_eq!(page.items.len(), 1);
}

pub async fn unseen_event_ids_reports_only_new_ids(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let event = sample_event("s1", "v1", T0, EventBody::Pageview, "/");
    store.write(WriteBatch { events: vec![event.clone()], ..WriteBatch::default() }.into()).await.expect("write");
    let fresh = Uuid::new_v4();
    let unseen = store.unseen_event_ids(&[event.event_id, fresh]).await.expect("unseen");
    assert_eq!(unseen.len(), 1);
    assert!(unseen.contains(&fresh));
}

pub async fn visitors_list_sorted_with_cursor_pagination(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let visitors = vec![
        sample_profile("s1", "a", 10, 90, T0 + 5),
        sample_profile("s1", "b", 80, 10, T0 + 4),
        sample_profile("s1", "c", 50, 50, T0 + 3),
        sample_profile("s1", "d", 80, 20, T0 + 9),
        sample_profile("s1", "e", 0, 0, T0 + 1),
        sample_profile("s2", "z", 100, 100, T0),
    ];
    store.write(WriteBatch { visitors, ..WriteBatch::default() }.into()).await.expect("write");
    let mut query = VisitorQuery { site_id: "s1".into(), sort: VisitorSort::Intent, limit: 2, ..VisitorQuery::default() };
    let mut order = Vec::new();
    loop {
        let page = store.list_visitors(&query).await.expect("list");
        assert!(page.items.len() <= 2);
        order.extend(page.items.iter().map(|v| v.visitor_id.clone()));
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => break,
        }
    }
    assert_eq!(order, vec!["d", "b", "c", "a", "e"], "intent desc, ties by recency");
    let by_engagement = store
        .list_visitors(&VisitorQuery { site_id: "s1".into(), sort: VisitorSort::Engagement, limit: 10, ..VisitorQuery::default() })
        .await
        .expect("list");
    let ids: Vec<_> = by_engagement.items.iter().map(|v| v.visitor_id.as_str()).collect();
    assert_eq!(ids, vec!["a", "c", "d", "b", "e"]);
    assert!(by_engagement.next_cursor.is_none());
    let by_recency = store
        .list_visitors(&VisitorQuery { site_id: "s1".into(), sort: VisitorSort::LastSeen, limit: 1, ..VisitorQuery::default() })
        .await
        .expect("list");
    assert_eq!(by_recency.items[0].visitor_id, "d");
}

pub async fn profile_updates_move_the_visitor_in_rankings(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    store
        .write(WriteBatch {
            visitors: vec![sample_profile("s1", "a", 10, 10, T0), sample_profile("s1", "b", 20, 20, T0)],
            ..WriteBatch::default()
        }.into())
        .await
        .expect("write");
    store.write(WriteBatch { visitors: vec![sample_profile("s1", "a", 95, 10, T0 + 1)], ..WriteBatch::default() }.into()).await.expect("update");
    let page = store
        .list_visitors(&VisitorQuery { site_id: "s1".into(), limit: 10, ..VisitorQuery::default() })
        .await
        .expect("list");
    let ids: Vec<_> = page.items.iter().map(|v| (v.visitor_id.as_str(), v.intent_score)).collect();
    assert_eq!(ids, vec![("a", 95), ("b", 20)], "no stale rank entries remain");
}

pub async fn bots_are_listed_separately(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let mut bot = sample_profile("s1", "crawler", 99, 99, T0);
    bot.is_bot = true;
    store.write(WriteBatch { visitors: vec![bot, sample_profile("s1", "human", 1, 1, T0)], ..WriteBatch::default() }.into()).await.expect("write");
    let humans = store.list_visitors(&VisitorQuery { site_id: "s1".into(), limit: 10, ..VisitorQuery::default() }).await.expect("humans");
    assert_eq!(humans.items.iter().map(|v| v.visitor_id.as_str()).collect::<Vec<_>>(), vec!["human"]);
    let bots = store
        .list_visitors(&VisitorQuery { site_id: "s1".into(), limit: 10, bots: BotFilter::Only, ..VisitorQuery::default() })
        .await
        .expect("bots");
    assert_eq!(bots.items.iter().map(|v| v.visitor_id.as_str()).collect::<Vec<_>>(), vec!["crawler"]);
}

pub async fn visitor_is_found_by_id_alone(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    store
        .write(WriteBatch {
            visitors: vec![sample_profile("s1", "shared", 1, 1, T0), sample_profile("s2", "shared", 2, 2, T0), sample_profile("s1", "solo", 3, 3, T0)],
            ..WriteBatch::default()
        }.into())
        .await
        .expect("write");
    let mut found: Vec<_> = store.find_visitor("shared").await.expect("find").into_iter().map(|v| v.site_id).collect();
    found.sort();
    assert_eq!(found, vec!["s1", "s2"]);
    assert_eq!(store.find_visitor("solo").await.expect("find").len(), 1);
    assert!(store.find_visitor("nobody").await.expect("find").is_empty());
    assert_eq!(store.visitor("s2", "shared").await.expect("get").expect("present").intent_score, 2);
    assert!(store.visitor("s2", "solo").await.expect("get").is_none());
    let keys: Vec<(String, String)> = [("s1", "shared"), ("s2", "shared"), ("s2", "solo"), ("s1", "solo")]
        .iter()
        .map(|(s, v)| (s.to_string(), v.to_string()))
        .collect();
    let mut batch: Vec<(String, String, u8)> = store
        .visitors(&keys)
        .await
        .expect("batch lookup")
        .into_iter()
        .map(|p| (p.site_id, p.visitor_id, p.intent_score))
        .collect();
    batch.sort();
    assert_eq!(batch, vec![("s1".into(), "shared".into(), 1), ("s1".into(), "solo".into(), 3), ("s2".into(), "shared".into(), 2)]);
}

pub async fn overview_counts_humans_in_the_window(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let mut bot_session = sample_session("s1", "bot", T0 + 10, 5, 1000);
    bot_session.is_bot = true;
    let mut bot_view = sample_event("s1", "bot", T0 + 10, EventBody::Pageview, "/pricing");
    bot_view.is_bot = true;
    let sessions = vec![
        sample_session("s1", "v1", T0, 1, 0),          // bounce
        sample_session("s1", "v2", T0 + 100, 3, 60_000), // engaged
        sample_session("s1", "v1", T0 + 200, 2, 20_000),
        bot_session,
        sample_session("s1", "late", T0 + 10_000_000, 1, 0), // outside the window
        sample_session("s2", "elsewhere", T0, 1, 0),
    ];
    let events = vec![
        sample_event("s1", "v1", T0, EventBody::Pageview, "/"),
        sample_event("s1", "v2", T0 + 100, EventBody::Pageview, "/pricing"),
        sample_event("s1", "v2", T0 + 200, EventBody::Pageview, "/pricing"),
        sample_event("s1", "v2", T0 + 300, EventBody::Engagement { scroll_depth: 50, engaged_ms: 10 }, "/pricing"),
        bot_view,
    ];
    store.write(WriteBatch { events, sessions, ..WriteBatch::default() }.into()).await.expect("write");
    let overview = store.overview("s1", T0, T0 + 1_000_000, 5).await.expect("overview");
    assert_eq!(overview.sessions, 3);
    assert_eq!(overview.visitors, 2);
    assert_eq!(overview.pageviews, 3);
    assert!((overview.bounce_rate - 1.0 / 3.0).abs() < 1e-9, "{}", overview.bounce_rate);
    assert_eq!(overview.avg_session_duration_ms, (60_000 + 20_000) / 3);
    assert_eq!(overview.top_pages[0].key, "/pricing");
    assert_eq!(overview.top_pages[0].count, 2);
    assert_eq!(overview.countries[0].key, "DE");
    assert_eq!(overview.devices[0].key, "pc");
    assert_eq!(overview.top_referrers[0].key, "news.example");
    assert_eq!(overview.utm_sources[0].count, 3);
    let empty = store.overview("s1", T0 - 1000, T0 - 1, 5).await.expect("empty window");
    assert_eq!((empty.sessions, empty.pageviews, empty.visitors), (0, 0, 0));
    assert_eq!(empty.bounce_rate, 0.0);
}

pub async fn timeseries_matches_overview_per_bucket(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    const HOUR: i64 = 3_600_000;
    let base = T0.div_euclid(HOUR) * HOUR;
    let mut bot_session = sample_session("s1", "bot", base + 10, 5, 1000);
    bot_session.is_bot = true;
    let mut bot_view = sample_event("s1", "bot", base + 10, EventBody::Pageview, "/");
    bot_view.is_bot = true;
    let sessions = vec![
        sample_session("s1", "early", base + 5 * 60_000, 1, 0), // before the window, in its first bucket
        sample_session("s1", "v1", base + 40 * 60_000, 1, 0),
        sample_session("s1", "v2", base + 50 * 60_000, 3, 60_000),
        sample_session("s1", "v1", base + 2 * HOUR + 1, 2, 20_000), // hour 1 is empty
        sample_session("s1", "late", base + 3 * HOUR + 20 * 60_000, 1, 0), // after the window, in its last bucket
        bot_session,
        sample_session("s2", "elsewhere", base + 40 * 60_000, 1, 0),
    ];
    let events = vec![
        sample_event("s1", "early", base + 5 * 60_000, EventBody::Pageview, "/"),
        sample_event("s1", "v1", base + 40 * 60_000, EventBody::Pageview, "/"),
        sample_event("s1", "v2", base + 50 * 60_000, EventBody::Pageview, "/pricing"),
        sample_event("s1", "v2", base + 51 * 60_000, EventBody::Pageview, "/demo"),
        sample_event("s1", "v3", base + 2 * HOUR + 5, EventBody::Pageview, "/"), // a pageview without a session in the window
        sample_event("s1", "v1", base + 2 * HOUR + 10, EventBody::Engagement { scroll_depth: 50, engaged_ms: 10 }, "/"),
        sample_event("s1", "late", base + 3 * HOUR + 20 * 60_000, EventBody::Pageview, "/"),
        bot_view,
    ];
    store.write(WriteBatch { events, sessions, ..WriteBatch::default() }.into()).await.expect("write");

    let (from, to) = (base + 30 * 60_000, base + 3 * HOUR + 10 * 60_000);
    let series = store.timeseries("s1", from, to, HOUR).await.expect("timeseries");
    let starts: Vec<i64> = series.iter().map(|p| p.start_ms).collect();
    assert_eq!(starts, vec![base, base + HOUR, base + 2 * HOUR, base + 3 * HOUR], "every bucket, aligned, empty ones included");
    for point in &series {
        let o = store.overview("s1", point.start_ms.max(from), (point.start_ms + HOUR).min(to), 1).await.expect("overview");
        assert_eq!(
            (point.visitors, point.sessions, point.pageviews, point.avg_session_duration_ms),
            (o.visitors, o.sessions, o.pageviews, o.avg_session_duration_ms),
            "bucket at {}",
            point.start_ms - base
        );
        assert!((point.bounce_rate - o.bounce_rate).abs() < 1e-9);
    }
    let figures: Vec<_> = series.iter().map(|p| (p.visitors, p.sessions, p.pageviews)).collect();
    assert_eq!(figures, vec![(2, 2, 3), (0, 0, 0), (2, 1, 1), (0, 0, 0)], "clipped to the window, bots and other sites excluded");
    assert!((series[0].bounce_rate - 0.5).abs() < 1e-9);
    assert_eq!(series[0].avg_session_duration_ms, 30_000);

    assert!(store.timeseries("s1", from, to, 0).await.is_err(), "a step of zero is refused");
    assert!(store.timeseries("s1", to, from, HOUR).await.expect("empty window").is_empty());
}

pub async fn dead_letters_are_listed_newest_first(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let letters: Vec<DeadLetter> = (0..3)
        .map(|i| DeadLetter {
            id: Uuid::new_v4(),
            site_id: "s1".into(),
            received_at_ms: T0 + i,
            code: format!("code_{i}"),
            message: "bad".into(),
            payload: "{}".into(),
        })
        .collect();
    store.write(WriteBatch { dead_letters: letters, ..WriteBatch::default() }.into()).await.expect("write");
    let page = store.dead_letters("s1", 2, None).await.expect("list");
    assert_eq!(page.items.iter().map(|d| d.code.as_str()).collect::<Vec<_>>(), vec!["code_2", "code_1"]);
    let rest = store.dead_letters("s1", 2, page.next_cursor.as_deref()).await.expect("page 2");
    assert_eq!(rest.items.len(), 1);
    assert!(rest.next_cursor.is_none());
    assert!(store.dead_letters("s2", 10, None).await.expect("other site").items.is_empty());
}

pub async fn sites_users_and_meta_round_trip(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let mut site = Site::new("s1", "Site one", T0);
    site.allowed_origins = vec!["https://a.example".into()];
    store.put_site(&site).await.expect("put site");
    store.put_site(&Site::new("s2", "Site two", T0)).await.expect("put site");
    assert_eq!(store.site("s1").await.expect("get").expect("present"), site);
    assert!(store.site("nope").await.expect("get").is_none());
    assert_eq!(store.sites().await.expect("sites").len(), 2);
    let user = User { username: "ada".into(), password_hash: "$argon2id$...".into(), role: Role::Admin, created_at_ms: T0, disabled: false, token_version: 7, totp: None };
    store.put_user(&user).await.expect("put user");
    assert_eq!(store.user("ada").await.expect("user").expect("present"), user);
    assert_eq!(store.users().await.expect("users").len(), 1);
    // A revocation is a replacement written right after the first: the newer one wins at once.
    let bumped = User { token_version: 8, disabled: true, ..user.clone() };
    store.put_user(&bumped).await.expect("replace user");
    assert_eq!(store.user("ada").await.expect("user").expect("present"), bumped);
    assert!(store.meta("k").await.expect("meta").is_none());
    store.put_meta("k", b"v1").await.expect("put meta");
    store.put_meta("k", b"v2").await.expect("overwrite meta");
    assert_eq!(store.meta("k").await.expect("meta").as_deref(), Some(&b"v2"[..]));
    store.ping().await.expect("ping");
}

pub async fn data_survives_reopen(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let event = sample_event("s1", "v1", T0, EventBody::Pageview, "/");
    store
        .write(WriteBatch { events: vec![event.clone()], visitors: vec![sample_profile("s1", "v1", 5, 5, T0)], ..WriteBatch::default() }.into())
        .await
        .expect("write");
    drop(store);
    let store = harness.open().await;
    assert!(store.visitor("s1", "v1").await.expect("get").is_some());
    assert!(store.unseen_event_ids(&[event.event_id]).await.expect("unseen").is_empty());
}

pub async fn invalid_cursor_is_an_error(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let bad = store
        .list_visitors(&VisitorQuery { site_id: "s1".into(), limit: 5, cursor: Some("garbage".into()), ..VisitorQuery::default() })
        .await;
    assert!(matches!(bad, Err(crate::StoreError::InvalidCursor)));
    assert!(matches!(store.visitor_events("s1", "v", 5, Some("x:y")).await, Err(crate::StoreError::InvalidCursor)));
}
