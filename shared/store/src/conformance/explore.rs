//! Conformance: the custom-event listing and page paths on hand-computed events (one site, a
//! bot, an event before the window). The expected figures are worked out in the comments.

use std::collections::BTreeMap;

use crm_schemas::{Scalar, StoredEvent, VisitorProfile};

use super::growth::{fixture_profiles, growth_event, MINUTE, MONDAY};
use super::StoreHarness;
use crate::explore::{CustomEventStats, PagePaths, PropertyStats, ValueCount};
use crate::{Count, WriteBatch};

pub const EXPLORE_SITE: &str = "s6";
pub const EXPLORE_WINDOW: (i64, i64) = (MONDAY, MONDAY + 24 * 60 * MINUTE);

/// Custom events and pageviews, minutes after [`MONDAY`]; `session` names the session.
pub fn explore_events() -> Vec<StoredEvent> {
    let e = |v: &str, session: &str, minutes: i64, what: &str, with: &[(&str, Scalar)]| {
        let mut event = growth_event(EXPLORE_SITE, v, MONDAY + minutes * MINUTE, what);
        event.session_id = format!("{v}-{session}");
        event.props = with.iter().map(|(k, v)| ((*k).to_owned(), v.clone())).collect::<BTreeMap<_, _>>();
        event
    };
    let text = |s: &str| Scalar::Str(s.into());
    vec![
        // signup: v1 twice, v2, v3 (4 events, 3 visitors); v6's is before the window.
        e("v1", "a", 1, "event:signup", &[("plan", text("team")), ("seats", Scalar::Int(5))]),
        e("v2", "a", 2, "event:signup", &[("plan", text("team")), ("seats", Scalar::Float(5.0))]),
        e("v3", "a", 3, "event:signup", &[("plan", text("solo")), ("trial", Scalar::Bool(true))]),
        e("v1", "a", 4, "event:signup", &[("plan", text("solo"))]),
        e("v6", "a", -5, "event:signup", &[("plan", text("early"))]),
        // download: v4 twice with a file, v5 once without properties.
        e("v4", "a", 1, "event:download", &[("file", text("a.pdf"))]),
        e("v4", "a", 2, "event:download", &[("file", text("a.pdf"))]),
        e("v5", "a", 1, "event:download", &[]),
        // Sessions of pageviews. A: / (a custom event) /pricing /signup.
        e("p1", "a", 10, "/", &[]), e("p1", "a", 11, "event:scroll", &[]), e("p1", "a", 12, "/pricing", &[]), e("p1", "a", 13, "/signup", &[]),
        // B: /pricing /docs. E (the same visitor later): / /pricing.
        e("p2", "b", 10, "/pricing", &[]), e("p2", "b", 11, "/docs", &[]),
        e("p2", "e", 100, "/", &[]), e("p2", "e", 101, "/pricing", &[]),
        // C: / /pricing /pricing/team /.
        e("p3", "c", 10, "/", &[]), e("p3", "c", 11, "/pricing", &[]), e("p3", "c", 12, "/pricing/team", &[]), e("p3", "c", 13, "/", &[]),
        // D: /blog. F: / before the window, then /pricing /x.
        e("p4", "d", 10, "/blog", &[]),
        e("p5", "f", -5, "/", &[]), e("p5", "f", 1, "/pricing", &[]), e("p5", "f", 2, "/x", &[]),
        // A bot with rows that look human.
        e("crawler", "z", 1, "/", &[]), e("crawler", "z", 2, "/pricing", &[]), e("crawler", "z", 3, "event:signup", &[("plan", text("bot"))]),
    ]
}

pub fn explore_profiles(events: &[StoredEvent]) -> Vec<VisitorProfile> {
    fixture_profiles(EXPLORE_SITE, events, |_| {})
}

fn counts(pairs: &[(&str, u64)]) -> Vec<Count> {
    pairs.iter().map(|(key, count)| Count { key: (*key).into(), count: *count }).collect()
}

fn values(pairs: &[(Scalar, u64)]) -> Vec<ValueCount> {
    pairs.iter().map(|(value, count)| ValueCount { value: value.clone(), count: *count }).collect()
}

/// With two values per property. signup (4 events, 3 visitors): plan on 4 (team 2, solo 2: the
/// tie goes by value), seats on 2 as an integer and a float of one value (5), trial on 1.
/// download (3 events, 2 visitors): file on 2. scroll: 1 event without properties.
pub fn custom_event_stats() -> Vec<CustomEventStats> {
    let property = |key: &str, events: u64, types: &[&'static str], distinct: u64, top: Vec<ValueCount>| PropertyStats { key: key.into(), events, types: types.to_vec(), distinct, top };
    let text = |s: &str| Scalar::Str(s.into());
    vec![
        CustomEventStats {
            name: "signup".into(),
            events: 4,
            visitors: 3,
            properties: vec![
                property("plan", 4, &["string"], 2, values(&[(text("solo"), 2), (text("team"), 2)])),
                property("seats", 2, &["float", "integer"], 1, values(&[(Scalar::Int(5), 2)])),
                property("trial", 1, &["boolean"], 1, values(&[(Scalar::Bool(true), 1)])),
            ],
        },
        CustomEventStats { name: "download".into(), events: 3, visitors: 2, properties: vec![property("file", 2, &["string"], 1, values(&[(text("a.pdf"), 2)]))] },
        CustomEventStats { name: "scroll".into(), events: 1, visitors: 1, properties: vec![] },
    ]
}

/// `/pricing*`, top 3: views A B C C(/pricing/team) E F = 6. Before: / (A C E), (entrance) (B,
/// and F whose / is outside the window), /pricing (C). After: one each, so by key.
pub fn pricing_paths() -> PagePaths {
    PagePaths { views: 6, previous: counts(&[("/", 3), ("(entrance)", 2), ("/pricing", 1)]), next: counts(&[("(exit)", 1), ("/", 1), ("/docs", 1)]) }
}

/// `/`, top 10: A, C twice, E (F's is outside the window). Before: (entrance) 3, /pricing/team
/// (C's last). After: /pricing 3, (exit) 1.
pub fn home_paths() -> PagePaths {
    PagePaths { views: 4, previous: counts(&[("(entrance)", 3), ("/pricing/team", 1)]), next: counts(&[("/pricing", 3), ("(exit)", 1)]) }
}

pub async fn custom_events_and_paths_match_the_fixture(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let events = explore_events();
    let visitors = explore_profiles(&events);
    store.write(WriteBatch { events, visitors, ..WriteBatch::default() }.into()).await.expect("write");
    let (from, to) = EXPLORE_WINDOW;
    assert_eq!(store.custom_events(EXPLORE_SITE, from, to, 2).await.expect("custom events"), custom_event_stats());
    let one = store.custom_events(EXPLORE_SITE, from, to, 1).await.expect("top 1");
    assert_eq!(one[0].properties[0].top, values(&[(Scalar::Str("solo".into()), 2)]), "a tie is broken by value");
    assert_eq!(store.page_paths(EXPLORE_SITE, from, to, "/pricing*", 3).await.expect("paths"), pricing_paths());
    assert_eq!(store.page_paths(EXPLORE_SITE, from, to, "/", 10).await.expect("paths of /"), home_paths());
    assert_eq!(store.page_paths(EXPLORE_SITE, from, to, "/nowhere", 10).await.expect("no views"), PagePaths::default());
    assert!(store.custom_events("other", from, to, 10).await.expect("another site").is_empty());
}
