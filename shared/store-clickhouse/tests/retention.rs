//! Retention against a real ClickHouse server: with `retention_days` set, expired events go with
//! their partitions, recent ones stay. Needs `CRM_TEST_CLICKHOUSE_URL` (fails without it).

use crm_schemas::EventBody;
use crm_store::conformance::sample_event;
use crm_store::{EventStore, PipelineStore, WriteBatch};
use crm_store_clickhouse::{ClickHouseConfig, ClickHouseStore};

#[tokio::test]
async fn expired_partitions_are_dropped() {
    let url = std::env::var("CRM_TEST_CLICKHOUSE_URL").expect("CRM_TEST_CLICKHOUSE_URL is not set (scripts/test.sh sets it)");
    let database = format!("crm_ttl_{}", uuid::Uuid::new_v4().simple());
    let mut config = ClickHouseConfig::new(&url, &database);
    let store = ClickHouseStore::connect(&config).await.unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis() as i64;
    let day = 86_400_000i64;
    let old = sample_event("s1", "old-visitor", now - 400 * day, EventBody::Pageview, "/old");
    let recent = sample_event("s1", "new-visitor", now - day, EventBody::Pageview, "/new");
    store.write(WriteBatch { events: vec![old, recent], ..WriteBatch::default() }.into()).await.unwrap();
    store.optimize().await.unwrap();
    assert_eq!(store.event_count().await.unwrap(), 2, "no retention configured: everything stays");

    // Turning retention on later applies to existing data.
    config.retention_days = Some(30);
    let store = ClickHouseStore::connect(&config).await.unwrap();
    store.optimize().await.unwrap();
    assert_eq!(store.event_count().await.unwrap(), 1);
    assert!(store.visitor_events("s1", "old-visitor", 10, None).await.unwrap().items.is_empty());
    assert_eq!(store.visitor_events("s1", "new-visitor", 10, None).await.unwrap().items.len(), 1);
    let partitions = store.active_partitions("events").await.unwrap();
    let old_partition = time_partition(now - 400 * day);
    assert!(!partitions.contains(&old_partition), "partition {old_partition} should be gone: {partitions:?}");
}

fn time_partition(ms: i64) -> String {
    let days = ms.div_euclid(86_400_000);
    // Civil date from days since the epoch (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year}{month:02}")
}
