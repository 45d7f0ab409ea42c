//! Conformance: analysts' SQL reads one site's rows through the same three views on every
//! store that runs SQL, with the profile's bot decision, a row cap and a time limit; a store
//! that does not run SQL says so with a typed error.

use crm_schemas::EventBody;
use serde_json::json;

use super::{sample_event, sample_profile, sample_session, StoreHarness, T0};
use crate::sql_guard::{check, SqlLimits, SqlResult};
use crate::{QueryErrorKind, Store, StoreError, WriteBatch};

async fn run(store: &dyn Store, site: &str, sql: &str, limits: SqlLimits) -> Result<SqlResult, StoreError> {
    let dialect = store.sql_dialect().expect("a store that runs SQL");
    let checked = check(sql, dialect).map_err(|e| StoreError::Query { kind: QueryErrorKind::NotAllowed, message: e.to_string() })?;
    store.query_sql(site, &checked, &limits).await
}

/// Two sites: s1 with three visitors (v2's profile a bot, v0 with a session in DE), s2 with
/// five, each a pageview of `/<site>-page` at `T0 + i`.
pub fn sql_fixture() -> WriteBatch {
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
    WriteBatch { events, visitors, sessions, ..WriteBatch::default() }
}

pub async fn sql_reads_one_site_and_nothing_else(harness: &dyn StoreHarness) {
    let store = harness.open().await;
    store.write(sql_fixture().into()).await.expect("write");

    if store.sql_dialect().is_none() {
        let checked = check("SELECT 1", crate::sql_guard::SqlDialect::DataFusion).unwrap();
        let err = store.query_sql("s1", &checked, &SqlLimits::default()).await.expect_err("no SQL here");
        assert!(matches!(err, StoreError::Query { kind: QueryErrorKind::Unsupported, .. }), "{err}");
        return;
    }
    let rows = run(&*store, "s1", "SELECT visitor_id, path, is_bot FROM events ORDER BY visitor_id", SqlLimits::default()).await.expect("query").rows;
    assert_eq!(rows, vec![vec![json!("v0"), json!("/s1-page"), json!(false)], vec![json!("v1"), json!("/s1-page"), json!(false)], vec![json!("v2"), json!("/s1-page"), json!(true)]]);
    let counted = run(&*store, "s2", "SELECT count(*) AS n, count(DISTINCT path) AS paths FROM events", SqlLimits::default()).await.expect("count");
    assert_eq!(counted.rows, vec![vec![json!(5), json!(1)]], "s2's own five rows");
    assert_eq!(counted.columns.iter().map(|c| c.name.as_str()).collect::<Vec<_>>(), ["n", "paths"]);
    let joined = run(&*store, "s1", "SELECT v.visitor_id, v.intent_score, s.country FROM visitors v JOIN sessions s ON s.visitor_id = v.visitor_id", SqlLimits::default()).await.expect("join");
    assert_eq!(joined.rows, vec![vec![json!("v0"), json!(80), json!("DE")]]);
    let nested = run(&*store, "s1", "WITH seen AS (SELECT visitor_id FROM events WHERE NOT is_bot) SELECT count(*) AS n FROM seen WHERE visitor_id IN (SELECT visitor_id FROM visitors)", SqlLimits::default()).await.expect("cte");
    assert_eq!(nested.rows, vec![vec![json!(2)]]);

    for sql in ["SELECT * FROM system.tables", "SELECT * FROM events UNION ALL SELECT * FROM system.users", "SELECT ip FROM events", "SELECT body FROM events", "SELECT traits FROM visitors"] {
        assert!(run(&*store, "s1", sql, SqlLimits::default()).await.is_err(), "{sql}");
    }
    let capped = run(&*store, "s2", "SELECT visitor_id FROM events ORDER BY visitor_id", SqlLimits { max_rows: 2, ..SqlLimits::default() }).await.expect("capped");
    assert_eq!((capped.rows, capped.truncated), (vec![vec![json!("v0")], vec![json!("v1")]], true));
    let slow = "SELECT count(*) FROM events a, events b, events c, events d, events e, events f, events g, events h, events i, events j, events k, events l, events m, events n";
    let err = run(&*store, "s2", slow, SqlLimits { timeout: std::time::Duration::from_millis(300), ..SqlLimits::default() }).await.expect_err("cut at its limit");
    assert!(matches!(err, StoreError::Query { kind: QueryErrorKind::Timeout, .. }), "{err}");
}
