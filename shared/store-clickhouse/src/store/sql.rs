//! Analysts' SQL on ClickHouse. The statement the guard passed (`crm_store::sql_guard`, with
//! ClickHouse's dialect) is rewritten before it is sent: every reference to `events`,
//! `sessions` or `visitors` becomes a subquery over that table restricted to the site, whose id
//! travels as a server-side parameter (never spliced into the text). Columns match the
//! embedded store's views (no IP, URL, title, traits or raw JSON; `is_bot` is the profile's
//! decision). The query then runs with `readonly = 1`, `max_execution_time`, a result-row cap
//! that truncates instead of failing, and `max_memory_usage`. `readonly = 1` is the second wall:
//! it refuses writes and table functions (`file()`, `url()`) even if the guard missed one;
//! `readonly = 2` would allow both (measured on ClickHouse 26.9). Scalar functions such as
//! `file('/etc/passwd')` are not stopped by it, which is why the guard denies them by name.

use std::ops::ControlFlow;

use crm_store::sql_guard::{CheckedSql, SqlColumn, SqlLimits, SqlResult, SQL_TABLES};
use crm_store::{QueryErrorKind, Result, StoreError};
use sqlparser::ast::{Ident, ObjectNamePart, Statement, TableAlias, TableFactor, VisitMut, VisitorMut};
use sqlparser::dialect::ClickHouseDialect;
use sqlparser::parser::Parser;

use super::ClickHouseStore;

/// The site's rows of each exposed table, as the analyst sees them.
fn view(table: &str) -> &'static str {
    match table {
        "events" => {
            "SELECT visitor_id, JSONExtractString(body, 'session_id') AS session_id, toUnixTimestamp64Milli(ts) AS ts_ms, ts,
                    toString(kind) AS kind, path, JSONExtractString(body, 'name') AS name, JSONExtractString(body, 'form_id') AS form_id,
                    JSONExtractUInt(body, 'engaged_ms') AS engaged_ms,
                    toBool(is_bot = 1 OR visitor_id IN (SELECT visitor_id FROM visitors WHERE site_id = {crm_site:String} AND is_bot = 1)) AS is_bot
             FROM events WHERE site_id = {crm_site:String}"
        }
        "sessions" => {
            "SELECT session_id, visitor_id, toUnixTimestamp64Milli(start) AS start_ms, start, duration_ms, toBool(bounce = 1) AS bounce,
                    if(referrer_host = '', '(direct)', referrer_host) AS referrer, toString(country) AS country, toString(device) AS device,
                    toString(browser) AS browser, utm_source,
                    toBool(is_bot = 1 OR visitor_id IN (SELECT visitor_id FROM visitors WHERE site_id = {crm_site:String} AND is_bot = 1)) AS is_bot
             FROM sessions FINAL WHERE site_id = {crm_site:String}"
        }
        _ => {
            "SELECT visitor_id, toBool(is_bot = 1) AS is_bot, toUInt8(JSONExtractUInt(profile, 'intent_score')) AS intent_score,
                    JSONExtractInt(profile, 'last_seen_ms') AS last_seen_ms, fromUnixTimestamp64Milli(last_seen_ms, 'UTC') AS last_seen
             FROM visitors FINAL WHERE site_id = {crm_site:String}"
        }
    }
}

/// Replaces each exposed table with its site-restricted view (aliased with the table's name
/// unless the query gave it one). CTE names are left alone: the guard refuses CTEs named like
/// an exposed table, so a bare `events` is always the table.
struct Scope {
    failed: Option<String>,
}

impl VisitorMut for Scope {
    type Break = ();

    // After the factor's children: the view put in its place is not visited again (its own
    // `events`, `visitors` are the tables themselves).
    fn post_visit_table_factor(&mut self, factor: &mut TableFactor) -> ControlFlow<()> {
        let TableFactor::Table { name, alias, args: None, .. } = factor else { return ControlFlow::Continue(()) };
        let [ObjectNamePart::Identifier(ident)] = name.0.as_slice() else { return ControlFlow::Continue(()) };
        let table = ident.value.to_lowercase();
        let Some(table) = SQL_TABLES.iter().find(|t| **t == table) else { return ControlFlow::Continue(()) };
        let subquery = match Parser::new(&ClickHouseDialect {}).try_with_sql(view(table)).and_then(|mut p| p.parse_query()) {
            Ok(query) => query,
            Err(e) => {
                self.failed = Some(e.to_string());
                return ControlFlow::Break(());
            }
        };
        let alias = alias.take().unwrap_or_else(|| TableAlias { explicit: true, name: Ident::new(*table), columns: Vec::new() });
        *factor = TableFactor::Derived { lateral: false, subquery, alias: Some(alias), sample: None };
        ControlFlow::Continue(())
    }
}

/// The statement with every exposed table scoped to the site (through `{crm_site:String}`).
pub(crate) fn scoped(checked: &CheckedSql) -> Result<String> {
    let mut statement: Statement = checked.statement.clone();
    let mut scope = Scope { failed: None };
    let _ = statement.visit(&mut scope);
    match scope.failed {
        Some(message) => Err(StoreError::Backend { message: format!("scoping the query failed: {message}"), retryable: false }),
        None => Ok(statement.to_string()),
    }
}

fn query_error(kind: QueryErrorKind, message: impl Into<String>) -> StoreError {
    StoreError::Query { kind, message: message.into() }
}

/// A ClickHouse exception as a typed query error: its code says which (159/160: time, 241:
/// memory, 164: a write under readonly, 46/47/60/62/...: the query itself).
fn classify(err: clickhouse::error::Error) -> StoreError {
    let text = err.to_string();
    let code = text.split("Code: ").nth(1).and_then(|rest| rest.split(|c: char| !c.is_ascii_digit()).next()).and_then(|n| n.parse::<u32>().ok());
    match code {
        Some(159 | 160) => query_error(QueryErrorKind::Timeout, text),
        Some(241) => query_error(QueryErrorKind::TooLarge, text),
        Some(164 | 497 | 516) => query_error(QueryErrorKind::NotAllowed, text),
        Some(_) => query_error(QueryErrorKind::Invalid, text),
        None => StoreError::Backend { retryable: matches!(err, clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut), message: text },
    }
}

impl ClickHouseStore {
    pub(crate) async fn run_sql(&self, site_id: &str, checked: &CheckedSql, limits: &SqlLimits) -> Result<SqlResult> {
        let sql = scoped(checked)?;
        let seconds = limits.timeout.as_secs_f64().max(0.1);
        let query = self
            .client
            .query(&sql)
            .param("crm_site", site_id)
            .with_setting("readonly", "1")
            .with_setting("max_execution_time", format!("{seconds:.3}"))
            .with_setting("timeout_overflow_mode", "throw")
            .with_setting("max_result_rows", (limits.max_rows + 1).to_string())
            .with_setting("result_overflow_mode", "break")
            .with_setting("max_memory_usage", limits.max_memory_bytes.to_string())
            .with_setting("allow_introspection_functions", "0")
            .with_setting("output_format_json_quote_64bit_integers", "0");
        let run = async {
            let mut cursor = query.fetch_bytes("JSONCompactEachRowWithNamesAndTypes").map_err(classify)?;
            let mut bytes = Vec::new();
            while let Some(chunk) = cursor.next().await.map_err(classify)? {
                bytes.extend_from_slice(&chunk);
            }
            Ok::<_, StoreError>(bytes)
        };
        // ClickHouse stops the query itself; the client-side limit only covers a server that
        // does not answer.
        let bytes = tokio::time::timeout(limits.timeout + std::time::Duration::from_secs(2), run)
            .await
            .map_err(|_| query_error(QueryErrorKind::Timeout, format!("the query ran longer than {} ms", limits.timeout.as_millis())))??;
        let mut lines = bytes.split(|b| *b == b'\n').filter(|l| !l.is_empty());
        let decode = |line: &[u8]| serde_json::from_slice::<Vec<serde_json::Value>>(line).map_err(|e| StoreError::Corrupt(format!("query result line: {e}")));
        let names = lines.next().map(decode).transpose()?.unwrap_or_default();
        let types = lines.next().map(decode).transpose()?.unwrap_or_default();
        let columns = names
            .iter()
            .zip(types.iter())
            .map(|(n, t)| SqlColumn { name: n.as_str().unwrap_or_default().to_owned(), data_type: t.as_str().unwrap_or_default().to_owned() })
            .collect();
        let mut rows = lines.map(decode).collect::<Result<Vec<_>>>()?;
        let truncated = rows.len() > limits.max_rows;
        rows.truncate(limits.max_rows);
        Ok(SqlResult { columns, rows, truncated })
    }
}
