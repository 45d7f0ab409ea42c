//! One bot decision from the processor to every aggregate: the same mixed traffic of browsers,
//! crawlers and visitors whose events disagree, processed in one batch, one record per batch or
//! batches of seven, gives the same figures on the redb store, the columnar store and
//! ClickHouse, and the overview counts exactly the visitors the human list holds.

mod support;

use std::sync::Arc;

use crm_eventlog::Record;
use crm_store::{BotFilter, EmbeddedStore, Overview, Store, VisitorQuery};
use serde_json::json;
use support::{clickhouse_store, now_ms, record_as, Pipeline};

const BROWSERS: [&str; 6] = [
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.0 Safari/605.1.15",
    "Mozilla/5.0 (X11; Linux x86_64; rv:133.0) Gecko/20100101 Firefox/133.0",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.5 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Mobile Safari/537.36",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36 Edg/131.0.0.0",
];

const CRAWLERS: [&str; 6] = [
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
    "Mozilla/5.0 (compatible; bingbot/2.0; +http://www.bing.com/bingbot.htm)",
    "Mozilla/5.0 (compatible; AhrefsBot/7.0; +http://ahrefs.com/robot/)",
    "python-requests/2.32.3",
    "curl/8.5.0",
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) HeadlessChrome/131.0.0.0 Safari/537.36",
];

fn event(kind: &str, visitor: &str, ts: i64, path: &str, ua: Option<&str>) -> Record {
    let mut body = json!({"v": 1, "type": kind, "site_id": "s1", "visitor_id": visitor, "ts": ts, "url": format!("https://acme.example{path}")});
    match kind {
        "custom" => body["name"] = json!("ping"),
        "engagement" => {
            body["scroll_depth"] = json!(40);
            body["engaged_ms"] = json!(5_000);
        }
        _ => {}
    }
    record_as(body, ua)
}

/// The traffic, in log order, and how many of its visitors are humans and bots.
fn traffic(base: i64) -> (Vec<Record>, usize, usize) {
    let mut records = Vec::new();
    for (i, ua) in BROWSERS.iter().enumerate() {
        records.push(event("pageview", &format!("browser-{i}"), base + i as i64 * 1_000, "/", Some(ua)));
    }
    for (i, ua) in CRAWLERS.iter().enumerate() {
        records.push(event("pageview", &format!("crawler-{i}"), base + i as i64 * 1_000, "/robots-welcome", Some(ua)));
    }
    records.push(event("pageview", "no-agent", base, "/", None));
    // Mixed: a browser pageview, a crawler-agent event a minute later, and a browser pageview
    // 40 minutes on that opens a second, unflagged session.
    for i in 0..4 {
        let visitor = format!("mixed-{i}");
        records.push(event("pageview", &visitor, base + 10_000, "/pricing", Some(BROWSERS[i])));
        records.push(event("custom", &visitor, base + 70_000, "/pricing", Some(CRAWLERS[i])));
        records.push(event("pageview", &visitor, base + 10_000 + 40 * 60_000, "/docs", Some(BROWSERS[i])));
    }
    // A page read in a browser whose unload beacon left with a headless agent.
    for i in 0..2 {
        let visitor = format!("beacon-{i}");
        records.push(event("pageview", &visitor, base + 20_000, "/blog", Some(BROWSERS[i])));
        records.push(event("engagement", &visitor, base + 25_000, "/blog", Some(CRAWLERS[5])));
    }
    (records, BROWSERS.len(), CRAWLERS.len() + 1 + 4 + 2)
}

async fn count(store: &dyn Store, bots: BotFilter) -> usize {
    let mut query = VisitorQuery { site_id: "s1".into(), limit: 5, bots, ..VisitorQuery::default() };
    let mut n = 0;
    loop {
        let page = store.list_visitors(&query).await.unwrap();
        n += page.items.len();
        match page.next_cursor {
            Some(cursor) => query.cursor = Some(cursor),
            None => return n,
        }
    }
}

/// Runs the traffic in batches of `batch` records on a fresh pipeline over `store`; returns the
/// overview of the whole day, after checking it against the profile lists and the bot set.
async fn figures(store: Arc<dyn Store>, base: i64, batch: usize) -> Overview {
    let (records, humans, bots) = traffic(base);
    let mut pipeline = Pipeline::new(store.clone()).await;
    let mut records = records.into_iter().peekable();
    while records.peek().is_some() {
        pipeline.run(records.by_ref().take(batch).collect()).await;
    }
    let (from, to) = (base - 3_600_000, base + 3 * 3_600_000);
    let overview = store.overview("s1", from, to, 20).await.unwrap();
    assert_eq!(count(&*store, BotFilter::Exclude).await, humans, "human profiles, batches of {batch}");
    assert_eq!(count(&*store, BotFilter::Only).await, bots, "bot profiles, batches of {batch}");
    assert_eq!(store.bot_visitors("s1", from).await.unwrap().len(), bots, "the bot set, batches of {batch}");
    assert_eq!(overview.visitors as usize, humans, "the overview counts the human profiles, batches of {batch}");
    let series = store.timeseries("s1", from, to, 3_600_000).await.unwrap();
    assert_eq!(series.iter().map(|p| p.pageviews).sum::<u64>(), overview.pageviews, "the timeseries agrees, batches of {batch}");
    overview
}

async fn same_figures_however_batched(open: impl Fn() -> std::pin::Pin<Box<dyn std::future::Future<Output = Arc<dyn Store>>>>) {
    let base = now_ms() - 6 * 3_600_000;
    let whole = figures(open().await, base, usize::MAX).await;
    assert_eq!((whole.visitors, whole.sessions, whole.pageviews), (6, 6, 6), "{whole:?}");
    assert!(whole.top_pages.iter().all(|c| c.key == "/"), "no bot's or mixed visitor's page is counted: {:?}", whole.top_pages);
    for batch in [1, 7] {
        assert_eq!(figures(open().await, base, batch).await, whole, "batches of {batch}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_redb_store_counts_what_the_profiles_say() {
    let dirs = Arc::new(std::sync::Mutex::new(Vec::new()));
    same_figures_however_batched(|| {
        let dirs = dirs.clone();
        Box::pin(async move {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
            dirs.lock().unwrap().push(dir);
            store
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_columnar_store_counts_what_the_profiles_say() {
    let dirs = Arc::new(std::sync::Mutex::new(Vec::new()));
    same_figures_however_batched(|| {
        let dirs = dirs.clone();
        Box::pin(async move {
            let dir = tempfile::tempdir().unwrap();
            let store: Arc<dyn Store> = Arc::new(crm_store_embedded::ColumnarStore::open(dir.path()).unwrap());
            dirs.lock().unwrap().push(dir);
            store
        })
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_counts_what_the_profiles_say() {
    same_figures_however_batched(|| Box::pin(clickhouse_store("bots"))).await;
}
