//! Analysts' SQL on the columnar store: one site's rows only, the profile's bot decision, typed
//! errors, row and time limits.

use std::sync::Arc;

use crm_schemas::EventBody;
use crm_store::conformance::{sample_event, sample_profile, sample_session};
use crm_store::sql_guard::{check, SqlDialect, SqlLimits};
use crm_store::{EventStore, PipelineStore, QueryErrorKind, StoreError, WriteBatch};

use crate::ColumnarStore;

const T0: i64 = 1_700_000_000_000;

async fn store() -> (tempfile::TempDir, Arc<ColumnarStore>) {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(ColumnarStore::open(dir.path()).unwrap());
    let mut events = Vec::new();
    for (site, visitors) in [("s1", 3), ("s2", 5)] {
        for v in 0..visitors {
            events.push(sample_event(site, &format!("v{v}"), T0 + v, EventBody::Pageview, &format!("/{site}-page")));
        }
    }
    let mut bot = sample_profile("s1", "v2", 1, 1, T0 + 2);
    bot.is_bot = true;
    let visitors = vec![sample_profile("s1", "v0", 80, 1, T0), sample_profile("s1", "v1", 20, 1, T0 + 1), bot];
    let sessions = vec![sample_session("s1", "v0", T0, 1, 0), sample_session("s2", "v0", T0, 1, 0)];
    store.write(WriteBatch { events, visitors, sessions, ..WriteBatch::default() }.into()).await.unwrap();
    (dir, store)
}

async fn run(store: &ColumnarStore, site: &str, sql: &str, limits: SqlLimits) -> Result<crm_store::sql_guard::SqlResult, StoreError> {
    let checked = check(sql, SqlDialect::DataFusion).map_err(|e| StoreError::Query { kind: QueryErrorKind::NotAllowed, message: e.to_string() })?;
    store.query_sql(site, &checked, &limits).await
}

#[tokio::test]
async fn a_query_sees_its_site_and_the_bot_decision() {
    let (_dir, store) = store().await;
    let result = run(&store, "s1", "SELECT visitor_id, path, is_bot FROM events ORDER BY visitor_id", SqlLimits::default()).await.unwrap();
    let names: Vec<&str> = result.columns.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["visitor_id", "path", "is_bot"]);
    assert_eq!(
        result.rows,
        vec![
            vec![serde_json::json!("v0"), serde_json::json!("/s1-page"), serde_json::json!(false)],
            vec![serde_json::json!("v1"), serde_json::json!("/s1-page"), serde_json::json!(false)],
            vec![serde_json::json!("v2"), serde_json::json!("/s1-page"), serde_json::json!(true)],
        ],
        "s2's five visitors are not there; v2's profile is a bot"
    );
    let counted = run(&store, "s2", "SELECT count(*) AS n, count(DISTINCT path) AS paths FROM events", SqlLimits::default()).await.unwrap();
    assert_eq!(counted.rows, vec![vec![serde_json::json!(5), serde_json::json!(1)]]);
    let joined = run(&store, "s1", "SELECT v.visitor_id, v.intent_score, s.country FROM visitors v JOIN sessions s ON s.visitor_id = v.visitor_id", SqlLimits::default()).await.unwrap();
    assert_eq!(joined.rows, vec![vec![serde_json::json!("v0"), serde_json::json!(80), serde_json::json!("DE")]]);
    let typed = run(&store, "s1", "SELECT min(ts) AS first, max(ts_ms) AS last, avg(ts_ms) AS mean FROM events", SqlLimits::default()).await.unwrap();
    assert_eq!(typed.rows[0][0], serde_json::json!("2023-11-14T22:13:20"), "timestamps read as text");
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

#[tokio::test]
async fn rows_and_time_are_capped() {
    let (_dir, store) = store().await;
    let capped = run(&store, "s2", "SELECT visitor_id FROM events", SqlLimits { max_rows: 2, ..SqlLimits::default() }).await.unwrap();
    assert_eq!((capped.rows.len(), capped.truncated), (2, true));
    let all = run(&store, "s2", "SELECT visitor_id FROM events", SqlLimits { max_rows: 5, ..SqlLimits::default() }).await.unwrap();
    assert_eq!((all.rows.len(), all.truncated), (5, false));
    // A cross join of 5^8 = 390 625 rows per pass, aggregated: far more than 50 ms of work.
    let slow = "SELECT count(*) FROM events a, events b, events c, events d, events e, events f, events g, events h, events i, events j";
    let limits = SqlLimits { timeout: std::time::Duration::from_millis(50), ..SqlLimits::default() };
    let err = run(&store, "s2", slow, limits).await.expect_err("cut at its limit");
    assert!(matches!(err, StoreError::Query { kind: QueryErrorKind::Timeout, .. }), "{err}");
}
