//! Conformance: one bot decision. A visitor is a bot when its profile is (the sticky OR of its
//! events' flags), and every aggregate leaves out all of a bot's rows, including the ones that
//! looked human on their own; `bot_visitors` names exactly the visitors left out.

use std::collections::BTreeMap;

use crm_schemas::{EventBody, VisitorProfile};

use super::{sample_event, sample_profile, sample_session, StoreHarness, T0};
use crate::{BotFilter, Store, VisitorQuery, WriteBatch};

fn bot_profile(site: &str, visitor: &str, last_seen_ms: i64) -> VisitorProfile {
    let mut profile = sample_profile(site, visitor, 10, 10, last_seen_ms);
    profile.is_bot = true;
    profile
}

/// The whole human list of a site, every page.
async fn human_count(store: &dyn Store, site: &str) -> usize {
    let mut query = VisitorQuery { site_id: site.into(), limit: 2, bots: BotFilter::Exclude, ..VisitorQuery::default() };
    let mut n = 0;
    loop {
        let page = store.list_visitors(&query).await.expect("list");
        n += page.items.len();
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return n,
        }
    }
}

pub async fn mixed_visitor_follows_its_profile(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let form = |body: EventBody| sample_event("s1", "mixed", T0 + 30, body, "/contact");
    // "mixed" browsed like a human (its session, pageview and form events are not flagged) and
    // sent one flagged event: its profile is a bot, so none of its rows count.
    let mut flagged = sample_event("s1", "mixed", T0 + 40, EventBody::Custom { name: "ping".into() }, "/");
    flagged.is_bot = true;
    let events = vec![
        sample_event("s1", "human", T0, EventBody::Pageview, "/"),
        sample_event("s1", "human", T0 + 5, EventBody::FormView { form_id: "demo".into() }, "/contact"),
        sample_event("s1", "mixed", T0 + 10, EventBody::Pageview, "/pricing"),
        form(EventBody::FormView { form_id: "demo".into() }),
        form(EventBody::FormSubmit { form_id: "demo".into(), traits: BTreeMap::new() }),
        flagged,
        sample_event("s2", "mixed", T0 + 10, EventBody::Pageview, "/"), // the same id is human on another site
    ];
    let sessions = vec![
        sample_session("s1", "human", T0, 1, 0),
        sample_session("s1", "mixed", T0 + 10, 1, 30),
        sample_session("s2", "mixed", T0 + 10, 1, 0),
    ];
    let visitors = vec![
        sample_profile("s1", "human", 1, 1, T0 + 5),
        bot_profile("s1", "mixed", T0 + 40),
        bot_profile("s1", "old-crawler", T0 - 100_000), // a bot last seen before the window
        sample_profile("s2", "mixed", 1, 1, T0 + 10),
    ];
    store.write(WriteBatch { events, sessions, visitors, ..WriteBatch::default() }.into()).await.expect("write");

    assert_eq!(store.bot_visitors("s1", T0).await.expect("bots"), vec!["mixed"]);
    assert_eq!(store.bot_visitors("s1", T0 - 200_000).await.expect("bots"), vec!["mixed", "old-crawler"]);
    assert!(store.bot_visitors("s2", 0).await.expect("bots").is_empty());

    let (from, to) = (T0, T0 + 60_000);
    let overview = store.overview("s1", from, to, 5).await.expect("overview");
    assert_eq!((overview.visitors, overview.sessions, overview.pageviews), (1, 1, 1), "only the human counts");
    assert_eq!(overview.top_pages.iter().map(|c| c.key.as_str()).collect::<Vec<_>>(), vec!["/"]);
    assert_eq!(overview.visitors as usize, human_count(&*store, "s1").await, "the overview and the human list agree");
    let series = store.timeseries("s1", from, to, 60_000).await.expect("timeseries");
    let counted: Vec<_> = series.iter().map(|p| (p.visitors, p.sessions, p.pageviews)).filter(|&f| f != (0, 0, 0)).collect();
    assert_eq!(counted, vec![(1, 1, 1)], "the timeseries leaves the bot out too");
    let forms = store.form_stats("s1", from, to).await.expect("forms");
    assert_eq!(forms.iter().map(|f| (f.form_id.as_str(), f.views, f.submissions)).collect::<Vec<_>>(), vec![("demo", 1, 0)]);
    let elsewhere = store.overview("s2", from, to, 5).await.expect("overview s2");
    assert_eq!((elsewhere.visitors, elsewhere.pageviews), (1, 1), "a bot on one site is not one on another");
}

pub async fn a_visitor_that_becomes_a_bot_leaves_past_aggregates(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    let events = vec![
        sample_event("s1", "a", T0, EventBody::Pageview, "/"),
        sample_event("s1", "b", T0 + 10, EventBody::Pageview, "/"),
        sample_event("s1", "b", T0 + 20, EventBody::FormView { form_id: "demo".into() }, "/"),
    ];
    let sessions = vec![sample_session("s1", "a", T0, 1, 0), sample_session("s1", "b", T0 + 10, 2, 10)];
    let visitors = vec![sample_profile("s1", "a", 1, 1, T0), sample_profile("s1", "b", 1, 1, T0 + 20)];
    store.write(WriteBatch { events, sessions, visitors, ..WriteBatch::default() }.into()).await.expect("write");
    let (from, to) = (T0, T0 + 60_000);
    assert_eq!(store.overview("s1", from, to, 5).await.expect("overview").visitors, 2);

    // Later, "b" sends a flagged event on another page: only its profile changes for the old rows.
    let mut later = sample_event("s1", "b", T0 + 100_000, EventBody::Pageview, "/later");
    later.is_bot = true;
    store.write(WriteBatch { events: vec![later], visitors: vec![bot_profile("s1", "b", T0 + 100_000)], ..WriteBatch::default() }.into()).await.expect("flip");
    let overview = store.overview("s1", from, to, 5).await.expect("overview");
    assert_eq!((overview.visitors, overview.sessions, overview.pageviews), (1, 1, 1), "b's earlier human rows left with it");
    assert!(store.form_stats("s1", from, to).await.expect("forms").is_empty());
    assert_eq!(store.bot_visitors("s1", from).await.expect("bots"), vec!["b"]);
    assert_eq!(human_count(&*store, "s1").await, 1);
}
