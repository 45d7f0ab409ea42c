//! The health job on every store: usage aggregated by DataFusion from a hand-made event fixture
//! (the embedded store: its parts read directly; the redb design: store scan into Arrow;
//! ClickHouse: a Parquet export), combined with imported business data, scored, stored once per
//! day.

use std::sync::Arc;

use crm_batch_jobs::health::UsageInputs;
use crm_batch_jobs::health_job::run_health;
use crm_batch_jobs::usage::{usage_inputs, UsageSource};
use crm_schemas::{CustomerAccount, EventBody, ImportBatch, Scalar, DAY_MS};
use crm_store::conformance::{sample_event, sample_profile};
use crm_store::{EmbeddedStore, Store, WriteBatch};
use crm_store_clickhouse::{ClickHouseConfig, ClickHouseStore};

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64
}

fn custom(visitor: &str, ts: i64, name: &str) -> crm_schemas::StoredEvent {
    sample_event("s1", visitor, ts, EventBody::Custom { name: name.into() }, "/app")
}

/// acme: two users this window (u1 busy, u2 light), API calls halved vs the previous window;
/// globex: one login; a bot on acme and an anonymous visitor that must not count.
async fn fixture(store: &dyn Store, now: i64) {
    let recent = now - 2 * DAY_MS;
    let earlier = now - 40 * DAY_MS;
    let mut events = vec![
        custom("u1", recent, "login"),
        custom("u1", recent + 1, "login"),
        custom("u1", recent + 2, "login"),
        custom("u1", recent + 3, "reports"),
        custom("u1", recent + 4, "export"),
        custom("u1", recent + 5, "api_call"),
        custom("u1", recent + 6, "api_call"),
        sample_event("s1", "u1", recent + 7, EventBody::Engagement { scroll_depth: 50, engaged_ms: 600_000 }, "/app"),
        custom("u2", recent + 8, "login"),
        custom("u2", recent + 9, "reports"),
        custom("u3", recent + 10, "login"),
        custom("bot", recent + 11, "login"),
        custom("anon", recent + 12, "reports"),
    ];
    events.extend((0..4).map(|i| custom("u1", earlier + i, "api_call")));
    events[11].is_bot = true;
    let profile = |visitor: &str, account: Option<&str>, bot: bool| {
        let mut p = sample_profile("s1", visitor, 10, 10, recent);
        if let Some(account) = account {
            p.traits.insert("account_id".into(), Scalar::Str(account.into()));
        }
        p.is_bot = bot;
        p
    };
    let visitors =
        vec![profile("u1", Some("acme"), false), profile("u2", Some("acme"), false), profile("u3", Some("globex"), false), profile("bot", Some("acme"), true), profile("anon", None, false)];
    store.write(WriteBatch { events, visitors, ..WriteBatch::default() }.into()).await.unwrap();
    store.put_site(&crm_schemas::Site::new("s1", "Site", 0)).await.unwrap();
    let account = CustomerAccount {
        site_id: "s1".into(),
        account_id: "acme".into(),
        name: "Acme Inc".into(),
        plan: "pro".into(),
        seats: Some(10),
        mrr: 500.0,
        contract_start_ms: None,
        renewal_ms: None,
    };
    store.import("s1", &ImportBatch::Accounts(vec![account])).await.unwrap();
}

fn expected_acme() -> UsageInputs {
    UsageInputs {
        seats: None,
        active_users: 2,
        features_used: 2,
        features_available: 2,
        api_calls: 2,
        api_calls_previous: 4,
        logins: 4,
        engaged_ms: 600_000,
        sessions: 2,
        actions: 9,
        power_users: 0,
    }
}

async fn scenario(store: Arc<dyn Store>, source: UsageSource<'_>) {
    let now = now_ms();
    fixture(store.as_ref(), now).await;
    let batches = source.batches("s1", now - 56 * DAY_MS, now).await.unwrap();
    let usage = usage_inputs(batches, now).await.unwrap();
    assert_eq!(usage.len(), 2, "acme and globex; the anonymous visitor has no account: {usage:?}");
    assert_eq!(usage["acme"], expected_acme());
    assert_eq!((usage["globex"].active_users, usage["globex"].logins, usage["globex"].features_used), (1, 1, 0));

    // A week ago acme's usage was 90: the drop to 53 triggers the declining-usage playbook.
    let mut earlier = crm_store::conformance::sample_health("acme", crm_schemas::utc_day(now) - 8, 70.0, "healthy");
    earlier.usage = Some(90.0);
    store.put_health(&[earlier]).await.unwrap();

    let results = run_health(store.as_ref(), source, "s1", now).await.unwrap();
    assert_eq!(results.len(), 2);
    let acme = results.iter().find(|r| r.account_id == "acme").unwrap();
    assert_eq!(acme.name, "Acme Inc");
    // usage with 10 seats: 40·2/10 = 8 + adoption 30·2/2 = 30 + API 30·2/4 = 15 → 53
    assert_eq!(acme.usage, Some(53.0));
    assert_eq!(acme.missing, vec!["support", "relationship"], "acme has an account record (financial) but no tickets or relationship data");
    assert_eq!(acme.inputs["usage"]["seats"], 10);
    assert!(results.iter().any(|r| r.account_id == "globex" && r.financial.is_none()));

    assert_eq!(acme.change_7d, Some(((acme.score - 70.0) * 10.0).round() / 10.0));
    let declining = |tasks: &[crm_schemas::Task]| tasks.iter().filter(|t| t.account_id == "acme" && t.rule == "declining_usage").count();
    assert_eq!(declining(&store.tasks("s1").await.unwrap()), 1);

    // Same day again: replaced, not duplicated; the playbook does not fire twice in its window.
    run_health(store.as_ref(), UsageSource::Scan(store.as_ref()), "s1", now + 1000).await.unwrap();
    assert_eq!(store.health_history("s1", "acme", 10).await.unwrap().len(), 2, "today's run and the one a week ago");
    let tasks = store.tasks("s1").await.unwrap();
    assert_eq!(declining(&tasks), 1, "{tasks:?}");
    assert!(tasks.iter().all(|t| t.status == "open"));
    assert_eq!(store.latest_health("s1").await.unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_on_the_embedded_store() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir.path()).unwrap());
    scenario(store.clone(), UsageSource::Scan(store.as_ref())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_on_the_columnar_store_reads_its_parts() {
    let dir = tempfile::tempdir().unwrap();
    let columnar = crm_store_embedded::ColumnarStore::open(dir.path()).unwrap();
    let store: Arc<dyn Store> = Arc::new(columnar.clone());
    scenario(store, UsageSource::Parts(&columnar)).await;
}

/// The parts and the store seam give the jobs the same table, whether the rows are buffered or
/// in parts (after a commit point).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn parts_and_a_store_scan_read_the_same_usage() {
    let dir = tempfile::tempdir().unwrap();
    let columnar = crm_store_embedded::ColumnarStore::open(dir.path()).unwrap();
    let now = now_ms();
    fixture(&columnar, now).await;
    let window = (now - 56 * DAY_MS, now);
    let scanned = usage_inputs(UsageSource::Scan(&columnar).batches("s1", window.0, window.1).await.unwrap(), now).await.unwrap();
    let buffered = UsageSource::Parts(&columnar).batches("s1", window.0, window.1).await.unwrap();
    assert_eq!(buffered.iter().map(|b| b.num_rows()).sum::<usize>(), UsageSource::Scan(&columnar).batches("s1", window.0, window.1).await.unwrap().iter().map(|b| b.num_rows()).sum::<usize>());
    assert_eq!(usage_inputs(buffered, now).await.unwrap(), scanned);
    columnar.commit_point().await.unwrap();
    let from_parts = usage_inputs(UsageSource::Parts(&columnar).batches("s1", window.0, window.1).await.unwrap(), now).await.unwrap();
    assert_eq!(from_parts, scanned);
    assert_eq!(scanned["acme"], expected_acme());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_on_clickhouse_reads_a_parquet_export() {
    let url = std::env::var("CRM_TEST_CLICKHOUSE_URL")
        .expect("CRM_TEST_CLICKHOUSE_URL is not set: start a server with scripts/clickhouse.sh (scripts/test.sh does)");
    let config = ClickHouseConfig::new(url, format!("crm_health_{}", uuid::Uuid::new_v4().simple()));
    let clickhouse = Arc::new(ClickHouseStore::connect(&config).await.unwrap());
    let store: Arc<dyn Store> = clickhouse.clone();
    scenario(store, UsageSource::ClickHouse(clickhouse.as_ref())).await;
}
