//! The shared store conformance suite against a real ClickHouse server. Needs
//! `CRM_TEST_CLICKHOUSE_URL` (scripts/test.sh starts a server and sets it); without it every
//! test fails — it never passes by skipping.

use std::sync::Arc;

use async_trait::async_trait;
use crm_store::conformance::StoreHarness;
use crm_store::Store;
use crm_store_clickhouse::{ClickHouseConfig, ClickHouseStore};

pub fn clickhouse_url() -> String {
    std::env::var("CRM_TEST_CLICKHOUSE_URL")
        .expect("CRM_TEST_CLICKHOUSE_URL is not set: start a server with scripts/clickhouse.sh (scripts/test.sh does)")
}

struct ClickHouseHarness {
    config: ClickHouseConfig,
}

impl ClickHouseHarness {
    fn new() -> Self {
        let database = format!("crm_test_{}", uuid::Uuid::new_v4().simple());
        ClickHouseHarness { config: ClickHouseConfig::new(clickhouse_url(), database) }
    }
}

#[async_trait]
impl StoreHarness for ClickHouseHarness {
    async fn open(&self) -> Arc<dyn Store> {
        Arc::new(ClickHouseStore::connect(&self.config).await.expect("connect to ClickHouse"))
    }
}

crm_store::store_conformance_suite!(ClickHouseHarness::new());

/// The second wall: statements the guard would refuse, sent straight to the store, are refused
/// by ClickHouse itself (`readonly = 1`), and the site scope holds inside subqueries.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clickhouse_refuses_what_gets_past_the_guard() {
    use crm_store::sql_guard::{CheckedSql, SqlLimits};
    use crm_store::{QueryErrorKind, StoreError};
    let harness = ClickHouseHarness::new();
    let store = harness.open().await;
    let unguarded = |sql: &str| {
        let statement = sqlparser::parser::Parser::parse_sql(&sqlparser::dialect::ClickHouseDialect {}, sql).unwrap().remove(0);
        CheckedSql { statement, tables: Vec::new() }
    };
    for sql in ["SELECT * FROM file('/etc/passwd', 'LineAsString')", "SELECT * FROM url('http://127.0.0.1:1/', 'LineAsString')", "INSERT INTO events (site_id) VALUES ('x')", "CREATE TABLE stolen (a Int8) ENGINE = Memory"] {
        let err = store.query_sql("s1", &unguarded(sql), &SqlLimits::default()).await.expect_err(sql);
        assert!(matches!(err, StoreError::Query { kind: QueryErrorKind::NotAllowed, .. }), "{sql}: {err}");
    }
    let scoped = store.query_sql("s1", &unguarded("SELECT count() AS n FROM (SELECT * FROM events) WHERE visitor_id IN (SELECT visitor_id FROM visitors)"), &SqlLimits::default()).await.expect("scoped");
    assert_eq!(scoped.rows, vec![vec![serde_json::json!(0)]], "an empty site sees nothing, however nested");
}
