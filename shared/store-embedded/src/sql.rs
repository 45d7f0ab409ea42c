//! Analysts' SQL on the columnar store: the query (already through
//! [`crm_store::sql_guard`]) is planned in a DataFusion context of its own that holds three
//! views of **one site's** rows and nothing else, so no name, subquery or function in it can
//! reach another site or a file. The views:
//! * `events`: `visitor_id, session_id, ts_ms, ts, kind, path, name, form_id, engaged_ms, is_bot`
//!   (no IP, URL query string, title or traits);
//! * `sessions`: the latest version of each session: `session_id, visitor_id, start_ms, start,
//!   duration_ms, bounce, referrer, country, device, browser, utm_source, is_bot`;
//! * `visitors`: `visitor_id, is_bot, intent_score, last_seen_ms, last_seen` (from the profiles
//!   in memory; no traits).
//!
//! `is_bot` is the visitor's bot decision (its profile), as every aggregate uses it. Limits: one
//! query at a time per store (two cores share it with ingest), a memory pool, a wall-clock
//! timeout that drops (and so cancels) the running plan, and a row cap.

use std::sync::Arc;

use crm_store::sql_guard::{SqlColumn, SqlLimits, SqlResult};
use crm_store::{QueryErrorKind, StoreError};
use datafusion::arrow::array::{Array, AsArray, RecordBatch, StringArray, BooleanArray, Int64Array, UInt8Array};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};

use crate::query::Snapshot;

fn query_error(kind: QueryErrorKind, message: impl std::fmt::Display) -> StoreError {
    StoreError::Query { kind, message: message.to_string() }
}

/// What the `visitors` view is built from: (visitor id, bot, intent score, last seen).
pub type VisitorSummary = (String, bool, u8, i64);

fn visitors_batch(visitors: Vec<VisitorSummary>) -> Result<RecordBatch, StoreError> {
    let schema = Arc::new(Schema::new(vec![
        Field::new("visitor_id", DataType::Utf8, false),
        Field::new("is_bot", DataType::Boolean, false),
        Field::new("intent_score", DataType::UInt8, false),
        Field::new("last_seen_ms", DataType::Int64, false),
    ]));
    let ids = StringArray::from_iter_values(visitors.iter().map(|v| v.0.as_str()));
    let bots = BooleanArray::from(visitors.iter().map(|v| v.1).collect::<Vec<_>>());
    let intents = UInt8Array::from(visitors.iter().map(|v| v.2).collect::<Vec<_>>());
    let seen = Int64Array::from(visitors.iter().map(|v| v.3).collect::<Vec<_>>());
    RecordBatch::try_new(schema, vec![Arc::new(ids), Arc::new(bots), Arc::new(intents), Arc::new(seen)]).map_err(|e| query_error(QueryErrorKind::Invalid, e))
}

fn plan_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { message: format!("columnar query failed: {err}"), retryable: false }
}

/// Runs `sql` over the snapshot's site and `visitors`, within `limits`, holding `permit` (the
/// store's one query slot) until the plan has stopped.
pub async fn run(snapshot: &Snapshot, visitors: Vec<VisitorSummary>, sql: &str, limits: &SqlLimits, permit: tokio::sync::OwnedSemaphorePermit) -> Result<SqlResult, StoreError> {
    // The site's rows, in a context the query never sees.
    let internal = crate::query::context(snapshot).await?;
    internal.register_batch("visitor_summaries", visitors_batch(visitors)?).map_err(plan_err)?;
    let events = internal
        .sql(
            "SELECT e.visitor_id, e.session_id, e.ts_ms, to_timestamp_millis(e.ts_ms) AS ts, e.kind, e.path, e.name, e.form_id, e.engaged_ms,
                    (e.is_bot OR b.visitor_id IS NOT NULL) AS is_bot
             FROM events e LEFT JOIN bots b ON e.visitor_id = b.visitor_id",
        )
        .await
        .map_err(plan_err)?;
    let sessions = internal
        .sql(
            "SELECT r.session_id, r.visitor_id, r.start_ms, to_timestamp_millis(r.start_ms) AS start, r.duration_ms, r.bounce, r.referrer, r.country,
                    r.device, r.browser, r.utm_source, (r.is_bot OR b.visitor_id IS NOT NULL) AS is_bot
             FROM sessions_raw r JOIN (SELECT session_id, max(version) AS v FROM sessions_raw GROUP BY session_id) m
               ON r.session_id = m.session_id AND r.version = m.v
             LEFT JOIN bots b ON r.visitor_id = b.visitor_id",
        )
        .await
        .map_err(plan_err)?;
    let visitors = internal
        .sql("SELECT visitor_id, is_bot, intent_score, last_seen_ms, to_timestamp_millis(last_seen_ms) AS last_seen FROM visitor_summaries")
        .await
        .map_err(plan_err)?;

    let runtime = RuntimeEnvBuilder::new().with_memory_limit(limits.max_memory_bytes, 1.0).build_arc().map_err(plan_err)?;
    let config = SessionConfig::new().with_target_partitions(1).set_bool("datafusion.execution.parquet.schema_force_view_types", false);
    let ctx = SessionContext::new_with_config_rt(config, runtime);
    for (name, frame) in [("events", events), ("sessions", sessions), ("visitors", visitors)] {
        ctx.register_table(name, frame.into_view()).map_err(plan_err)?;
    }
    let options = SQLOptions::new().with_allow_ddl(false).with_allow_dml(false).with_allow_statements(false);
    let (sql, max_rows) = (sql.to_owned(), limits.max_rows);
    // On a task of its own: a plan busy in one poll cannot hold up the timer, which runs on
    // the caller's task. On timeout the task is aborted (it stops at its next yield); it keeps
    // the query slot until then, so a runaway plan never overlaps the next query.
    let mut task = tokio::spawn(async move {
        let _slot = permit;
        let frame = ctx.sql_with_options(&sql, options).await.map_err(|e| query_error(QueryErrorKind::Invalid, e))?;
        let frame = frame.limit(0, Some(max_rows + 1)).map_err(|e| query_error(QueryErrorKind::Invalid, e))?;
        frame.collect().await.map_err(|e| {
            let text = e.to_string();
            let kind = if text.contains("Resources exhausted") || text.contains("memory") { QueryErrorKind::TooLarge } else { QueryErrorKind::Invalid };
            query_error(kind, text)
        })
    });
    let batches = match tokio::time::timeout(limits.timeout, &mut task).await {
        Ok(joined) => joined.map_err(plan_err)??,
        Err(_) => {
            task.abort();
            return Err(query_error(QueryErrorKind::Timeout, format!("the query ran longer than {} ms and was stopped", limits.timeout.as_millis())));
        }
    };
    to_result(&batches, limits.max_rows)
}

/// Rows as JSON values: integers and floats as numbers, booleans, nulls, everything else as
/// the text Arrow prints (timestamps in RFC 3339).
fn to_result(batches: &[RecordBatch], max_rows: usize) -> Result<SqlResult, StoreError> {
    let Some(first) = batches.first() else { return Ok(SqlResult { columns: Vec::new(), rows: Vec::new(), truncated: false }) };
    let schema = first.schema();
    let columns = schema.fields().iter().map(|f| SqlColumn { name: f.name().clone(), data_type: f.data_type().to_string() }).collect();
    let mut rows: Vec<Vec<serde_json::Value>> = Vec::new();
    let options = FormatOptions::default().with_null("");
    for batch in batches {
        let mut cells: Vec<Vec<serde_json::Value>> = vec![Vec::with_capacity(batch.num_columns()); batch.num_rows()];
        for column in batch.columns() {
            let values: Vec<serde_json::Value> = match column.data_type() {
                t if t.is_integer() => {
                    let signed = cast(column, &DataType::Int64).map_err(plan_err)?;
                    let ints = signed.as_primitive::<datafusion::arrow::datatypes::Int64Type>();
                    (0..ints.len()).map(|i| if ints.is_null(i) { serde_json::Value::Null } else { ints.value(i).into() }).collect()
                }
                t if t.is_floating() => {
                    let floats = cast(column, &DataType::Float64).map_err(plan_err)?;
                    let floats = floats.as_primitive::<datafusion::arrow::datatypes::Float64Type>();
                    (0..floats.len())
                        .map(|i| if floats.is_null(i) { serde_json::Value::Null } else { serde_json::Number::from_f64(floats.value(i)).map_or(serde_json::Value::Null, Into::into) })
                        .collect()
                }
                DataType::Boolean => {
                    let bools = column.as_boolean();
                    (0..bools.len()).map(|i| if bools.is_null(i) { serde_json::Value::Null } else { bools.value(i).into() }).collect()
                }
                _ => {
                    let formatter = ArrayFormatter::try_new(column.as_ref(), &options).map_err(plan_err)?;
                    (0..column.len()).map(|i| if column.is_null(i) { serde_json::Value::Null } else { formatter.value(i).to_string().into() }).collect()
                }
            };
            for (row, value) in cells.iter_mut().zip(values) {
                row.push(value);
            }
        }
        rows.extend(cells);
    }
    let truncated = rows.len() > max_rows;
    rows.truncate(max_rows);
    Ok(SqlResult { columns, rows, truncated })
}

#[cfg(test)]
mod tests;
