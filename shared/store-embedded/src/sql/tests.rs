//! Analysts' SQL on the columnar store, beyond the shared conformance test
//! (`sql_reads_one_site_and_nothing_else`): the internal tables stay out of reach, and values
//! keep their types.

use std::sync::Arc;

use crm_store::conformance::sql_fixture;
use crm_store::sql_guard::{check, SqlDialect, SqlLimits};
use crm_store::{EventStore, PipelineStore, QueryErrorKind, StoreError};

use crate::ColumnarStore;

const T0: i64 = 1_700_000_000_000;

async fn store() -> (tempfile::TempDir, Arc<ColumnarStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ColumnarStore::open(dir.path()).unwrap());
    store.write(sql_fixture().into()).await.unwrap();
    (dir, store)
}

async fn run(store: &ColumnarStore, site: &str, sql: &str, limits: SqlLimits) -> Result<crm_store::sql_guard::SqlResult, StoreError> {
    let checked = check(sql, SqlDialect::DataFusion).map_err(|e| StoreError::Query { kind: QueryErrorKind::NotAllowed, message: e.to_string() })?;
    store.query_sql(site, &checked, &limits).await
}

#[tokio::test]
async fn times_read_as_text_and_averages_as_floats() {
    let (_dir, store) = store().await;
    let typed = run(&store, "s1", "SELECT min(ts) AS first, max(ts_ms) AS last, avg(ts_ms) AS mean FROM events", SqlLimits::default()).await.unwrap();
    assert_eq!(typed.rows[0][0], serde_json::json!("2023-11-14T22:13:20"));
    assert_eq!(typed.rows[0][1], serde_json::json!(T0 + 2));
    assert!(typed.rows[0][2].is_f64());
}

#[tokio::test]
async fn columns_the_views_leave_out_do_not_exist() {
    let (_dir, store) = store().await;
    for sql in ["SELECT ip FROM events", "SELECT json FROM events", "SELECT traits FROM visitors", "SELECT * FROM events_raw", "SELECT * FROM sessions_raw", "SELECT * FROM bots", "SELECT * FROM visitor_summaries"] {
        let err = run(&store, "s1", sql, SqlLimits::default()).await.expect_err(sql);
        assert!(matches!(err, StoreError::Query { kind: QueryErrorKind::Invalid | QueryErrorKind::NotAllowed, .. }), "{sql}: {err}");
    }
}
