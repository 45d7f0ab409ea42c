//! Product usage per customer account, aggregated with DataFusion over an Arrow `events` table:
//! `account_id, visitor_id, ts_ms, kind, name, session_id, engaged_ms` — the events of visitors
//! that identified with an `account_id` trait, over the last two 28-day windows.
//!
//! Where the table comes from depends on the store: the embedded store's parts (and buffered
//! rows) are read with DataFusion and joined to the visitors' accounts; ClickHouse renders the
//! joined window as Parquet (no row-by-row JSON), read here as Arrow; any other store is scanned
//! page by page through the store seam. Product conventions: `custom` events named `login` are logins, `api_call`
//! API calls, any other custom name a feature.

use std::collections::HashMap;
use std::sync::Arc;

use crm_schemas::{EventBody, Scalar, DAY_MS};
use crm_store::{ProfileStore, Store};
use crm_store_clickhouse::ClickHouseStore;
use crm_store_embedded::ColumnarStore;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BooleanBuilder, Int64Array, Int64Builder, RecordBatch, StringArray, StringBuilder};
use datafusion::arrow::compute::{cast, filter_record_batch};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::datasource::MemTable;
use datafusion::prelude::SessionContext;

use crate::health::UsageInputs;
use crate::BatchError;

/// Length of one usage window.
pub const WINDOW_MS: i64 = 28 * DAY_MS;
const PAGE: usize = 10_000;

pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("account_id", DataType::Utf8, false),
        Field::new("visitor_id", DataType::Utf8, false),
        Field::new("ts_ms", DataType::Int64, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("session_id", DataType::Utf8, true),
        Field::new("engaged_ms", DataType::Int64, true),
    ]))
}

/// Rows of the [`events_schema`] table, appended one at a time.
#[derive(Default)]
pub struct EventsBuilder {
    account: StringBuilder,
    visitor: StringBuilder,
    ts: Int64Builder,
    kind: StringBuilder,
    name: StringBuilder,
    session: StringBuilder,
    engaged: Int64Builder,
}

impl EventsBuilder {
    /// One event row; `name` is a custom event's name ("" for other kinds).
    #[allow(clippy::too_many_arguments)]
    pub fn push(&mut self, account_id: &str, visitor_id: &str, ts_ms: i64, kind: &str, name: &str, session_id: &str, engaged_ms: i64) {
        self.account.append_value(account_id);
        self.visitor.append_value(visitor_id);
        self.ts.append_value(ts_ms);
        self.kind.append_value(kind);
        self.name.append_value(name);
        self.session.append_value(session_id);
        self.engaged.append_value(engaged_ms);
    }

    pub fn finish(mut self) -> Result<RecordBatch, BatchError> {
        let columns: Vec<ArrayRef> = vec![
            Arc::new(self.account.finish()),
            Arc::new(self.visitor.finish()),
            Arc::new(self.ts.finish()),
            Arc::new(self.kind.finish()),
            Arc::new(self.name.finish()),
            Arc::new(self.session.finish()),
            Arc::new(self.engaged.finish()),
        ];
        RecordBatch::try_new(events_schema(), columns).map_err(df_err)
    }
}

/// Where the health job reads usage from.
pub enum UsageSource<'a> {
    /// Any store, scanned through the store seam (the redb design; tests).
    Scan(&'a dyn Store),
    /// The embedded store (the default): its event parts, read directly.
    Parts(&'a ColumnarStore),
    /// ClickHouse, exported as Parquet.
    ClickHouse(&'a ClickHouseStore),
}

pub(crate) fn df_err(err: impl std::fmt::Display) -> BatchError {
    BatchError::Engine(err.to_string())
}

impl UsageSource<'_> {
    /// The `events` table for `[from_ms, to_ms)`.
    pub async fn batches(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<RecordBatch>, BatchError> {
        match self {
            UsageSource::Scan(store) => scan_batches(*store, site_id, from_ms, to_ms).await,
            UsageSource::Parts(store) => parts_batches(store, site_id, from_ms, to_ms).await,
            UsageSource::ClickHouse(store) => {
                let bytes = store.export_account_events_parquet(site_id, from_ms, to_ms).await?;
                parquet_batches(bytes)
            }
        }
    }
}

async fn scan_batches(store: &dyn Store, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<RecordBatch>, BatchError> {
    let mut accounts: HashMap<String, Option<String>> = HashMap::new();
    let mut batches = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let page = store.scan_events(site_id, from_ms, to_ms, PAGE, cursor.as_deref()).await?;
        let unknown: Vec<(String, String)> = page
            .items
            .iter()
            .filter(|e| !accounts.contains_key(&e.visitor_id))
            .map(|e| (site_id.to_owned(), e.visitor_id.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        if !unknown.is_empty() {
            let found = store.visitors(&unknown).await?;
            for (_, visitor) in &unknown {
                accounts.insert(visitor.clone(), None);
            }
            for profile in found {
                let account = profile.traits.get("account_id").map(Scalar::to_text).filter(|a| !a.is_empty() && !profile.is_bot);
                accounts.insert(profile.visitor_id, account);
            }
        }
        let mut rows = EventsBuilder::default();
        for event in page.items.iter().filter(|e| !e.is_bot) {
            let Some(Some(account_id)) = accounts.get(&event.visitor_id) else { continue };
            let name = match &event.body {
                EventBody::Custom { name } => name.as_str(),
                _ => "",
            };
            let engaged_ms = match &event.body {
                EventBody::Engagement { engaged_ms, .. } => *engaged_ms as i64,
                _ => 0,
            };
            rows.push(account_id, &event.visitor_id, event.ts_ms, event.body.kind().as_str(), name, &event.session_id, engaged_ms);
        }
        let batch = rows.finish()?;
        if batch.num_rows() > 0 {
            batches.push(batch);
        }
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    Ok(batches)
}

/// The embedded store's rows of the window, each with its visitor's account (the profile's
/// `account_id` trait; rows of visitors without one, and of bot profiles, are dropped as
/// [`scan_batches`] drops them).
async fn parts_batches(store: &ColumnarStore, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<RecordBatch>, BatchError> {
    let rows = store.columnar().usage_rows(site_id, from_ms, to_ms).await?;
    let mut visitors = std::collections::BTreeSet::new();
    for batch in &rows {
        let ids = cast(batch.column(0), &DataType::Utf8).map_err(df_err)?;
        visitors.extend((0..ids.len()).map(|i| ids.as_string::<i32>().value(i).to_owned()));
    }
    let keys: Vec<(String, String)> = visitors.into_iter().map(|v| (site_id.to_owned(), v)).collect();
    let mut accounts: HashMap<String, String> = HashMap::new();
    for chunk in keys.chunks(PAGE) {
        for profile in store.visitors(chunk).await? {
            if let Some(account) = profile.traits.get("account_id").map(Scalar::to_text).filter(|a| !a.is_empty() && !profile.is_bot) {
                accounts.insert(profile.visitor_id, account);
            }
        }
    }
    let schema = events_schema();
    let mut out = Vec::new();
    for batch in rows {
        let ids = cast(batch.column(0), &DataType::Utf8).map_err(df_err)?;
        let ids = ids.as_string::<i32>();
        let (mut account, mut keep) = (StringBuilder::new(), BooleanBuilder::with_capacity(ids.len()));
        for i in 0..ids.len() {
            let found = accounts.get(ids.value(i));
            keep.append_value(found.is_some());
            if let Some(found) = found {
                account.append_value(found);
            }
        }
        let kept = filter_record_batch(&batch, &keep.finish()).map_err(df_err)?;
        if kept.num_rows() == 0 {
            continue;
        }
        let mut columns: Vec<ArrayRef> = vec![Arc::new(account.finish())];
        for field in schema.fields().iter().skip(1) {
            let column = kept.column_by_name(field.name()).ok_or_else(|| df_err(format!("parts lack column {}", field.name())))?;
            columns.push(cast(column, field.data_type()).map_err(df_err)?);
        }
        out.push(RecordBatch::try_new(schema.clone(), columns).map_err(df_err)?);
    }
    Ok(out)
}

/// Reads a Parquet export and conforms it to [`events_schema`] (same names, cast types).
fn parquet_batches(bytes: Vec<u8>) -> Result<Vec<RecordBatch>, BatchError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let reader = datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
        .map_err(df_err)?
        .build()
        .map_err(df_err)?;
    let schema = events_schema();
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(df_err)?;
        let mut columns = Vec::with_capacity(schema.fields().len());
        for field in schema.fields() {
            let column = batch.column_by_name(field.name()).ok_or_else(|| df_err(format!("export lacks column {}", field.name())))?;
            columns.push(cast(column, field.data_type()).map_err(df_err)?);
        }
        out.push(RecordBatch::try_new(schema.clone(), columns).map_err(df_err)?);
    }
    Ok(out)
}

pub(crate) fn int(batch: &RecordBatch, column: &str, row: usize) -> Result<i64, BatchError> {
    let array = batch.column_by_name(column).ok_or_else(|| df_err(format!("missing column {column}")))?;
    let array = cast(array, &DataType::Int64).map_err(df_err)?;
    let ints = array.as_any().downcast_ref::<Int64Array>().ok_or_else(|| df_err("not an integer column"))?;
    Ok(if ints.is_null(row) { 0 } else { ints.value(row) })
}

pub(crate) fn text(batch: &RecordBatch, column: &str, row: usize) -> Result<String, BatchError> {
    let array = batch.column_by_name(column).ok_or_else(|| df_err(format!("missing column {column}")))?;
    let array = cast(array, &DataType::Utf8).map_err(df_err)?;
    let strings = array.as_any().downcast_ref::<StringArray>().ok_or_else(|| df_err("not a text column"))?;
    Ok(strings.value(row).to_owned())
}

/// SQL predicate of a feature-usage event (a custom event other than a login or an API call).
pub(crate) const FEATURE_EVENT: &str = "kind = 'custom' AND name NOT IN ('login', 'api_call', '')";

/// A DataFusion session with `batches` registered as the `events` table.
pub(crate) fn events_context(batches: Vec<RecordBatch>) -> Result<SessionContext, BatchError> {
    let ctx = SessionContext::new();
    let table = MemTable::try_new(events_schema(), vec![batches]).map_err(df_err)?;
    ctx.register_table("events", Arc::new(table)).map_err(df_err)?;
    Ok(ctx)
}

/// Runs one query to completion.
pub(crate) async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, BatchError> {
    ctx.sql(sql).await.map_err(df_err)?.collect().await.map_err(df_err)
}

/// The three SQL statements behind the usage inputs, over an `events` table: per-account
/// counts, power users (active on 10+ distinct days of the window) and the number of distinct
/// features in use across the site. Plain SQL, so the benchmark runs the very same text on DuckDB.
pub struct UsageQueries {
    pub per_account: String,
    pub power: String,
    pub available: String,
}

pub fn usage_queries(now_ms: i64) -> UsageQueries {
    let current = now_ms - WINDOW_MS;
    let previous = now_ms - 2 * WINDOW_MS;
    let feature = FEATURE_EVENT;
    UsageQueries {
        // Distinct counts as DISTINCT subqueries joined back, rather than several
        // COUNT(DISTINCT …) in one aggregate: engines (DataFusion in particular) run the latter
        // with a hash set per group and column, the former as plain grouped hash aggregates.
        per_account: format!(
            "WITH w AS (SELECT account_id, visitor_id, ts_ms, kind, name, session_id, engaged_ms FROM events
                        WHERE ts_ms >= {previous} AND ts_ms < {now_ms}),
             sums AS (SELECT account_id,
                SUM(CASE WHEN ts_ms >= {current} AND kind = 'custom' AND name = 'api_call' THEN 1 ELSE 0 END) AS api_calls,
                SUM(CASE WHEN ts_ms < {current} AND kind = 'custom' AND name = 'api_call' THEN 1 ELSE 0 END) AS api_calls_previous,
                SUM(CASE WHEN ts_ms >= {current} AND kind = 'custom' AND name = 'login' THEN 1 ELSE 0 END) AS logins,
                SUM(CASE WHEN ts_ms >= {current} THEN engaged_ms ELSE 0 END) AS engaged_ms,
                SUM(CASE WHEN ts_ms >= {current} AND kind <> 'engagement' THEN 1 ELSE 0 END) AS actions
                FROM w GROUP BY account_id),
             users AS (SELECT account_id, COUNT(*) AS n FROM (SELECT DISTINCT account_id, visitor_id FROM w WHERE ts_ms >= {current}) AS u GROUP BY account_id),
             feats AS (SELECT account_id, COUNT(*) AS n FROM (SELECT DISTINCT account_id, name FROM w WHERE ts_ms >= {current} AND {feature}) AS f GROUP BY account_id),
             sess AS (SELECT account_id, COUNT(*) AS n FROM (SELECT DISTINCT account_id, session_id FROM w WHERE ts_ms >= {current} AND session_id IS NOT NULL) AS s GROUP BY account_id)
             SELECT sums.account_id AS account_id,
                COALESCE(users.n, 0) AS active_users,
                COALESCE(feats.n, 0) AS features_used,
                sums.api_calls, sums.api_calls_previous, sums.logins, sums.engaged_ms,
                COALESCE(sess.n, 0) AS sessions,
                sums.actions
             FROM sums
             LEFT JOIN users ON users.account_id = sums.account_id
             LEFT JOIN feats ON feats.account_id = sums.account_id
             LEFT JOIN sess ON sess.account_id = sums.account_id"
        ),
        power: format!(
            "SELECT account_id, COUNT(*) AS power_users FROM (
                SELECT account_id, visitor_id, COUNT(DISTINCT ts_ms - ts_ms % {DAY_MS}) AS days FROM events
                WHERE ts_ms >= {current} AND ts_ms < {now_ms} GROUP BY account_id, visitor_id
             ) AS days_per_user WHERE days >= 10 GROUP BY account_id"
        ),
        available: format!("SELECT COUNT(DISTINCT name) AS features FROM events WHERE ts_ms >= {current} AND ts_ms < {now_ms} AND {feature}"),
    }
}

/// Usage inputs per account for the 28 days before `now_ms` (and the 28 before those).
pub async fn usage_inputs(batches: Vec<RecordBatch>, now_ms: i64) -> Result<HashMap<String, UsageInputs>, BatchError> {
    usage_inputs_in(&events_context(batches)?, now_ms).await
}

/// The same, over whatever `events` table `ctx` has (in memory, or Parquet files).
pub async fn usage_inputs_in(ctx: &SessionContext, now_ms: i64) -> Result<HashMap<String, UsageInputs>, BatchError> {
    let UsageQueries { per_account, power, available } = usage_queries(now_ms);
    let features_available = match collect(ctx, &available).await?.first() {
        Some(batch) if batch.num_rows() > 0 => int(batch, "features", 0)? as u32,
        _ => 0,
    };
    let mut powers = HashMap::new();
    for batch in collect(ctx, &power).await? {
        for row in 0..batch.num_rows() {
            powers.insert(text(&batch, "account_id", row)?, int(&batch, "power_users", row)? as u32);
        }
    }
    let mut out = HashMap::new();
    for batch in collect(ctx, &per_account).await? {
        for row in 0..batch.num_rows() {
            let account = text(&batch, "account_id", row)?;
            let inputs = UsageInputs {
                seats: None,
                active_users: int(&batch, "active_users", row)? as u32,
                features_used: int(&batch, "features_used", row)? as u32,
                features_available,
                api_calls: int(&batch, "api_calls", row)? as u64,
                api_calls_previous: int(&batch, "api_calls_previous", row)? as u64,
                logins: int(&batch, "logins", row)? as u64,
                engaged_ms: int(&batch, "engaged_ms", row)? as u64,
                sessions: int(&batch, "sessions", row)? as u64,
                actions: int(&batch, "actions", row)? as u64,
                power_users: powers.get(&account).copied().unwrap_or(0),
            };
            out.insert(account, inputs);
        }
    }
    Ok(out)
}
