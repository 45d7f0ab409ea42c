//! Conformance of [`crate::EventStore::filtered_overview`]: a hand-computed fixture of sessions
//! and pageviews with known dimensions, narrowed by session conditions, page conditions and both
//! (see [`crate::filters`] for what each counts), with a bot and a pageview whose session started
//! before the window.

use super::*;
use crate::filters::{Filter, Filters};
use crate::{Count, Overview};

const SITE: &str = "filters";

#[allow(clippy::too_many_arguments)]
fn session(visitor: &str, id: &str, start_ms: i64, referrer: Option<&str>, country: &str, device: &str, browser: &str, utm: Option<&str>, pageviews: u32) -> Session {
    Session {
        session_id: id.into(),
        referrer_host: referrer.map(str::to_owned),
        country: Some(country.into()),
        device_category: device.into(),
        browser: browser.into(),
        utm: Utm { source: utm.map(str::to_owned), ..Utm::default() },
        ..sample_session(SITE, visitor, start_ms, pageviews, 1_000 * i64::from(pageviews))
    }
}

fn page(visitor: &str, session: &str, ts_ms: i64, path: &str) -> StoredEvent {
    StoredEvent { session_id: session.into(), ..sample_event(SITE, visitor, ts_ms, EventBody::Pageview, path) }
}

pub fn filter_fixture() -> WriteBatch {
    let sessions = vec![
        session("v1", "s1", T0, Some("news.example"), "DE", "pc", "Chrome", Some("newsletter"), 2),
        session("v2", "s2", T0 + 1_000, None, "US", "mobile", "Safari", None, 2),
        session("v3", "s3", T0 + 2_000, Some("google.com"), "DE", "pc", "Firefox", Some("ads"), 1),
        session("v1", "s4", T0 + 5_000, None, "DE", "pc", "Chrome", None, 1),
        session("bot", "s5", T0 + 3_000, None, "DE", "pc", "Chrome", None, 1),
        // Started ten days before the window: only its pageview is inside.
        session("v4", "s0", T0 - 10 * 86_400_000, None, "DE", "pc", "Chrome", None, 1),
    ];
    let events = vec![
        page("v1", "s1", T0, "/"),
        page("v1", "s1", T0 + 100, "/pricing"),
        page("v2", "s2", T0 + 1_000, "/blog/a"),
        page("v2", "s2", T0 + 1_100, "/blog/b"),
        page("v3", "s3", T0 + 2_000, "/pricing"),
        page("v1", "s4", T0 + 5_000, "/blog/a"),
        page("bot", "s5", T0 + 3_000, "/pricing"),
        page("v4", "s0", T0 + 4_000, "/pricing"),
    ];
    let mut visitors: Vec<VisitorProfile> = ["v1", "v2", "v3", "v4"].iter().map(|v| sample_profile(SITE, v, 10, 10, T0 + 5_000)).collect();
    visitors.push(VisitorProfile { is_bot: true, ..sample_profile(SITE, "bot", 0, 0, T0 + 3_000) });
    WriteBatch { events, sessions, visitors, ..WriteBatch::default() }
}

fn counts(pairs: &[(&str, u64)]) -> Vec<Count> {
    pairs.iter().map(|(key, count)| Count { key: (*key).into(), count: *count }).collect()
}

pub async fn filtered_overviews_match_the_fixture(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    store.write(filter_fixture().into()).await.expect("write");
    let (from, to) = (T0 - 1_000, T0 + 86_400_000);
    let filtered = |texts: &[&str]| {
        let filters = Filters(texts.iter().map(|t| Filter::parse(t).expect("filter")).collect());
        let store = store.clone();
        async move { store.filtered_overview(SITE, from, to, 10, &filters).await.expect("filtered overview") }
    };
    let figures = |o: &Overview| (o.visitors, o.sessions, o.pageviews);

    let unfiltered = filtered(&[]).await;
    assert_eq!(unfiltered, store.overview(SITE, from, to, 10).await.expect("overview"), "no filter is the overview");
    assert_eq!(figures(&unfiltered), (4, 4, 7), "the bot left out; v4's pageview counts, its session started earlier");

    let german = filtered(&["country:is:DE"]).await;
    assert_eq!(figures(&german), (2, 3, 4), "s1, s3, s4 and their pageviews; not v4's (its session is outside the window)");
    assert_eq!(german.top_pages, counts(&[("/pricing", 2), ("/", 1), ("/blog/a", 1)]));
    assert_eq!(german.browsers, counts(&[("Chrome", 2), ("Firefox", 1)]));
    assert_eq!(german.countries, counts(&[("DE", 3)]));

    let blog = filtered(&["page:glob:/blog/*"]).await;
    assert_eq!(figures(&blog), (2, 2, 3), "s2 and s4 hold a blog pageview");
    assert_eq!(blog.top_pages, counts(&[("/blog/a", 2), ("/blog/b", 1)]));
    assert_eq!(blog.top_referrers, counts(&[("(direct)", 2)]));

    let pricing = filtered(&["page:is:/pricing"]).await;
    assert_eq!(figures(&pricing), (3, 2, 3), "s1 and s3; v4's pageview counts without a session condition");

    assert_eq!(figures(&filtered(&["page:is:/pricing", "source:is:(direct)"]).await), (0, 0, 0), "no direct session viewed pricing in the window");
    assert_eq!(figures(&filtered(&["utm_source:is_not:ads"]).await), (2, 3, 5), "a session without a UTM source is not ads");
    assert_eq!(figures(&filtered(&["source:prefix:news.", "device:is:pc"]).await), (1, 1, 2));
    assert_eq!(figures(&filtered(&["browser:is:Netscape"]).await), (0, 0, 0));
    assert_eq!(figures(&filtered(&["page:is:/it's"]).await), (0, 0, 0), "a quote in a value is a literal");

    // Series: the rows of the whole window's filtered overview, counted per hour.
    let hour = 3_600_000;
    let unfiltered_series = store.filtered_timeseries(SITE, from, to, hour, &Filters::default()).await.expect("series");
    assert_eq!(unfiltered_series, store.timeseries(SITE, from, to, hour).await.expect("series"), "no filter is the timeseries");
    for texts in [&["country:is:DE"][..], &["page:glob:/blog/*"], &["page:is:/pricing", "source:is:news.example"]] {
        let filters = Filters(texts.iter().map(|t| Filter::parse(t).expect("filter")).collect());
        let series = store.filtered_timeseries(SITE, from, to, hour, &filters).await.expect("filtered series");
        let overview = store.filtered_overview(SITE, from, to, 10, &filters).await.expect("filtered overview");
        assert_eq!(series.len(), unfiltered_series.len());
        let sessions: u64 = series.iter().map(|p| p.sessions).sum();
        let pageviews: u64 = series.iter().map(|p| p.pageviews).sum();
        assert_eq!((sessions, pageviews), (overview.sessions, overview.pageviews), "{texts:?}: the buckets add up");
    }
    let german = store.filtered_timeseries(SITE, from, to, hour, &Filters(vec![Filter::parse("country:is:DE").expect("filter")])).await.expect("series");
    // The fixture's rows all fall in the first hour (from T0 - 1 s).
    assert_eq!((german[0].visitors, german[0].sessions, german[0].pageviews), (2, 3, 4));
    assert!(german[1..].iter().all(|p| p.sessions == 0 && p.pageviews == 0));
}
