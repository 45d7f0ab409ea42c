//! The guard's attacks: each one refused with a reason, in both dialects where they parse.

use super::*;

fn refused(sql: &str, dialect: SqlDialect) -> String {
    match check(sql, dialect) {
        Err(SqlError::NotAllowed(what)) => what,
        Err(SqlError::Invalid(why)) => format!("invalid: {why}"),
        other => panic!("{sql:?} in {dialect:?} should be refused, got {other:?}"),
    }
}

#[test]
fn analyst_queries_pass_and_name_their_tables() {
    for (sql, tables) in [
        ("SELECT count(*) FROM events", vec!["events"]),
        ("select path, count(*) as n from events where kind = 'pageview' group by path order by n desc limit 10", vec!["events"]),
        ("WITH firsts AS (SELECT visitor_id, min(ts_ms) AS t FROM events GROUP BY visitor_id) SELECT count(*) FROM firsts", vec!["events"]),
        ("SELECT s.country, count(*) FROM sessions s JOIN visitors v ON v.visitor_id = s.visitor_id GROUP BY 1", vec!["sessions", "visitors"]),
        ("SELECT * FROM events WHERE visitor_id IN (SELECT visitor_id FROM visitors WHERE intent_score > 50)", vec!["events", "visitors"]),
        ("SELECT path FROM events UNION ALL SELECT referrer FROM sessions", vec!["events", "sessions"]),
        ("SELECT 1", vec![]),
        ("SELECT * FROM EVENTS", vec!["events"]),
    ] {
        for dialect in [SqlDialect::DataFusion, SqlDialect::ClickHouse] {
            let checked = check(sql, dialect).unwrap_or_else(|e| panic!("{sql} in {dialect:?}: {e}"));
            assert_eq!(checked.tables, tables, "{sql}");
        }
    }
}

#[test]
fn other_tables_and_schemas_are_unreachable() {
    for sql in [
        "SELECT * FROM system.tables",
        "SELECT * FROM system.users",
        "SELECT * FROM default.events",
        "SELECT * FROM crm.events",
        "SELECT * FROM events_raw",
        "SELECT * FROM information_schema.tables",
        "SELECT * FROM events UNION ALL SELECT * FROM leads",
        "SELECT * FROM events WHERE site_id IN (SELECT site_id FROM sites)",
        "SELECT (SELECT name FROM system.databases LIMIT 1)",
        "SELECT * FROM events e JOIN (SELECT * FROM users) u ON 1 = 1",
        "SELECT * FROM \"system\".\"tables\"",
        "SELECT * FROM events /* comment */ UNION SELECT * FROM/**/system.tables",
        "SELECT * FROM events -- harmless\n UNION SELECT * FROM system.parts",
    ] {
        for dialect in [SqlDialect::DataFusion, SqlDialect::ClickHouse] {
            let what = refused(sql, dialect);
            assert!(what.contains("table") || what.starts_with("invalid"), "{sql}: {what}");
        }
    }
}

#[test]
fn table_functions_and_functions_that_reach_outside_are_refused() {
    for sql in [
        "SELECT * FROM file('/etc/passwd')",
        "SELECT * FROM url('http://169.254.169.254/', CSV)",
        "SELECT * FROM s3('https://bucket/x')",
        "SELECT * FROM remote('other:9000', system.users)",
        "SELECT * FROM merge(currentDatabase(), '.*')",
        "SELECT * FROM numbers(1000000000)",
        "SELECT * FROM events, numbers(10)",
        "SELECT file('/etc/passwd')",
        "SELECT dictGet('d', 'x', 1)",
        "SELECT getSetting('readonly')",
        "SELECT currentUser(), hostName()",
        "SELECT sleepEachRow(3) FROM events",
        "SELECT sleep(3)",
        "SELECT system.tables()",
    ] {
        let what = refused(sql, SqlDialect::ClickHouse);
        assert!(what.contains("function") || what.starts_with("invalid"), "{sql}: {what}");
    }
    assert!(refused("SELECT * FROM read_parquet('/etc/x.parquet')", SqlDialect::DataFusion).contains("function"));
}

#[test]
fn writes_settings_and_several_statements_are_refused() {
    for sql in [
        "SELECT 1; DROP TABLE events",
        "SELECT * FROM events; SELECT * FROM system.users",
        "DROP TABLE events",
        "INSERT INTO events VALUES (1)",
        "DELETE FROM events",
        "UPDATE events SET path = 'x'",
        "ALTER TABLE events DELETE WHERE 1",
        "SET readonly = 0",
        "SHOW TABLES",
        "CREATE TABLE x AS SELECT * FROM events",
        "TRUNCATE events",
        "EXPLAIN SELECT * FROM events",
    ] {
        for dialect in [SqlDialect::DataFusion, SqlDialect::ClickHouse] {
            refused(sql, dialect);
        }
    }
    assert_eq!(refused("SELECT * FROM events SETTINGS readonly = 0", SqlDialect::ClickHouse), "SETTINGS");
    assert_eq!(refused("SELECT * FROM events FORMAT JSON", SqlDialect::ClickHouse), "FORMAT");
    assert!(refused("SELECT * INTO copy FROM events", SqlDialect::DataFusion).contains("INTO"));
    assert!(refused("WITH events AS (SELECT * FROM system.users) SELECT * FROM events", SqlDialect::ClickHouse).contains("table"));
    assert!(refused("WITH visitors AS (SELECT 1) SELECT * FROM visitors", SqlDialect::DataFusion).contains("CTE"));
}

#[test]
fn malformed_and_oversized_sql_get_their_own_errors() {
    assert!(matches!(check("SELEC 1", SqlDialect::DataFusion), Err(SqlError::Invalid(_))));
    assert!(matches!(check("", SqlDialect::DataFusion), Err(SqlError::Invalid(_))));
    assert!(matches!(check("SELECT 'unterminated", SqlDialect::ClickHouse), Err(SqlError::Invalid(_))));
    assert!(matches!(check(&format!("SELECT {}", "1 + ".repeat(10_000)), SqlDialect::DataFusion), Err(SqlError::TooLong)));
    let deep = format!("SELECT {}1{}", "(".repeat(2_000), ")".repeat(2_000));
    assert!(check(&deep, SqlDialect::DataFusion).is_err(), "deep nesting is refused, not a stack overflow");
}
