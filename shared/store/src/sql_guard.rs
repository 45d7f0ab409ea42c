//! The guard in front of analysts' SQL (`POST /api/v1/query`, `crm query`): one read-only
//! query over the three tables a site exposes (`events`, `sessions`, `visitors`) and the CTEs it
//! names itself, nothing else. The backends add their own isolation on top (the embedded store
//! plans the query in a context that holds only the site's rows; ClickHouse runs read-only with
//! limits), so the guard is the first of two walls, not the only one.
//!
//! Refused, each with a [`SqlError::NotAllowed`] saying what: more than one statement; anything
//! but a query (DDL, DML, `SET`, `SHOW`, …); qualified names (`system.tables`, `db.events`);
//! table functions (`file(…)`, `url(…)`, `s3(…)`, `numbers(…)`, `remote(…)`); `SELECT … INTO`,
//! `FORMAT`, `SETTINGS`, `FOR UPDATE`; CTEs named like the exposed tables; and functions that
//! read outside the rows (a deny list: files, URLs, dictionaries, settings, the host, sleeping).

use std::collections::HashSet;
use std::ops::ControlFlow;

use sqlparser::ast::{Expr, ObjectNamePart, Query, SetExpr, Statement, TableFactor, Visit, Visitor};
use sqlparser::dialect::{ClickHouseDialect, Dialect, GenericDialect};
use sqlparser::parser::Parser;

/// The tables a site's SQL may read.
pub const SQL_TABLES: [&str; 3] = ["events", "sessions", "visitors"];

/// Longest SQL text accepted.
pub const MAX_SQL_BYTES: usize = 20_000;

/// Functions no analyst query may call (lowercase; a trailing `*` matches a prefix).
const DENIED_FUNCTIONS: &[&str] = &[
    "file", "url", "s3", "s3cluster", "hdfs", "remote", "remotesecure", "cluster", "merge", "mysql", "postgresql", "jdbc", "odbc",
    "input", "executable", "dictget*", "dicthas", "joinget*", "getsetting*", "getmacro", "currentuser", "currentdatabase",
    "hostname", "fqdn", "tcpport", "uptime", "version", "sleep", "sleepeachrow", "filesystem*", "getserverport", "throwif",
    "read_parquet", "read_csv", "read_json", "parquet_metadata",
];

/// The limits of one analyst query.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SqlLimits {
    /// Rows returned at most (more set [`SqlResult::truncated`]).
    pub max_rows: usize,
    /// Wall time, queueing included.
    pub timeout: std::time::Duration,
    /// Memory the query's operators may hold.
    pub max_memory_bytes: usize,
}

impl Default for SqlLimits {
    fn default() -> Self {
        SqlLimits { max_rows: 1_000, timeout: std::time::Duration::from_secs(10), max_memory_bytes: 256 << 20 }
    }
}

/// A column of a query result: its name and its type as the backend names it.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SqlColumn {
    pub name: String,
    pub data_type: String,
}

/// A query's answer: rows as JSON values in column order.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct SqlResult {
    pub columns: Vec<SqlColumn>,
    pub rows: Vec<Vec<serde_json::Value>>,
    /// More rows than [`SqlLimits::max_rows`] matched.
    pub truncated: bool,
}

/// Which parser the SQL is read with (the backend's own language).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SqlDialect {
    /// The embedded store (DataFusion, PostgreSQL-like).
    DataFusion,
    ClickHouse,
}

/// Why a query was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SqlError {
    #[error("the SQL does not parse: {0}")]
    Invalid(String),
    #[error("not allowed: {0}")]
    NotAllowed(String),
    #[error("the SQL is longer than {MAX_SQL_BYTES} bytes")]
    TooLong,
}

/// What the guard passed: the one query statement, for backends that rewrite it.
#[derive(Debug, Clone)]
pub struct CheckedSql {
    pub statement: Statement,
    /// The exposed tables it reads.
    pub tables: Vec<&'static str>,
}

/// Checks `sql` against the rules in the module docs.
pub fn check(sql: &str, dialect: SqlDialect) -> Result<CheckedSql, SqlError> {
    if sql.len() > MAX_SQL_BYTES {
        return Err(SqlError::TooLong);
    }
    let parser: &dyn Dialect = match dialect {
        SqlDialect::DataFusion => &GenericDialect {},
        SqlDialect::ClickHouse => &ClickHouseDialect {},
    };
    let mut statements = Parser::parse_sql(parser, sql).map_err(|e| SqlError::Invalid(e.to_string()))?;
    let statement = match (statements.pop(), statements.is_empty()) {
        (Some(statement), true) => statement,
        (None, _) => return Err(SqlError::Invalid("no statement".into())),
        (Some(_), false) => return Err(SqlError::NotAllowed("one statement at a time".into())),
    };
    if !matches!(statement, Statement::Query(_)) {
        return Err(SqlError::NotAllowed("only SELECT queries (and WITH … SELECT) are allowed".into()));
    }
    let mut ctes = CteNames::default();
    let _ = statement.visit(&mut ctes);
    let mut guard = Guard { ctes: ctes.0, tables: Vec::new() };
    if let ControlFlow::Break(refused) = statement.visit(&mut guard) {
        return Err(refused);
    }
    for name in &guard.ctes {
        if SQL_TABLES.contains(&name.as_str()) {
            return Err(SqlError::NotAllowed(format!("a CTE may not be named like the table {name}")));
        }
    }
    Ok(CheckedSql { statement, tables: guard.tables })
}

#[derive(Default)]
struct CteNames(HashSet<String>);

impl Visitor for CteNames {
    type Break = ();

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<()> {
        if let Some(with) = &query.with {
            self.0.extend(with.cte_tables.iter().map(|cte| cte.alias.name.value.to_lowercase()));
        }
        ControlFlow::Continue(())
    }
}

struct Guard {
    ctes: HashSet<String>,
    tables: Vec<&'static str>,
}

fn refuse<T>(what: impl Into<String>) -> ControlFlow<SqlError, T> {
    ControlFlow::Break(SqlError::NotAllowed(what.into()))
}

/// A `SELECT … INTO` anywhere in a set expression.
fn selects_into(body: &SetExpr) -> bool {
    match body {
        SetExpr::Select(select) => select.into.is_some(),
        SetExpr::SetOperation { left, right, .. } => selects_into(left) || selects_into(right),
        SetExpr::Query(query) => selects_into(&query.body),
        _ => false,
    }
}

impl Visitor for Guard {
    type Break = SqlError;

    fn pre_visit_query(&mut self, query: &Query) -> ControlFlow<SqlError> {
        if query.settings.is_some() {
            return refuse("SETTINGS");
        }
        if query.format_clause.is_some() {
            return refuse("FORMAT");
        }
        if !query.locks.is_empty() || query.for_clause.is_some() {
            return refuse("FOR UPDATE / FOR XML / FOR JSON");
        }
        if !query.pipe_operators.is_empty() {
            return refuse("pipe operators");
        }
        match query.body.as_ref() {
            SetExpr::Insert(_) | SetExpr::Update(_) | SetExpr::Delete(_) | SetExpr::Merge(_) | SetExpr::Table(_) => return refuse("only SELECT queries"),
            body if selects_into(body) => return refuse("SELECT … INTO"),
            _ => {}
        }
        ControlFlow::Continue(())
    }

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<SqlError> {
        match factor {
            TableFactor::Table { name, args, .. } => {
                let parts: Vec<String> = name
                    .0
                    .iter()
                    .map(|part| match part {
                        ObjectNamePart::Identifier(ident) => Some(ident.value.to_lowercase()),
                        _ => None,
                    })
                    .collect::<Option<_>>()
                    .unwrap_or_default();
                if args.is_some() {
                    return refuse(format!("table function {name}"));
                }
                let [table] = parts.as_slice() else { return refuse(format!("table {name}: only events, sessions, visitors and your own CTEs, unqualified")) };
                if let Some(&exposed) = SQL_TABLES.iter().find(|t| **t == table) {
                    if !self.tables.contains(&exposed) {
                        self.tables.push(exposed);
                    }
                } else if !self.ctes.contains(table) {
                    return refuse(format!("table {name}: only events, sessions, visitors and your own CTEs"));
                }
                ControlFlow::Continue(())
            }
            TableFactor::Derived { .. } | TableFactor::NestedJoin { .. } | TableFactor::UNNEST { .. } => ControlFlow::Continue(()),
            other => refuse(format!("table expression {other}")),
        }
    }

    fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<SqlError> {
        if let Expr::Function(function) = expr {
            let name = function.name.to_string().to_lowercase();
            let short = name.rsplit('.').next().unwrap_or(&name).trim_matches('"').trim_matches('`');
            let denied = DENIED_FUNCTIONS.iter().any(|d| match d.strip_suffix('*') {
                Some(prefix) => short.starts_with(prefix),
                None => short == *d,
            });
            if denied || name.contains('.') {
                return refuse(format!("function {}", function.name));
            }
        }
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests;
