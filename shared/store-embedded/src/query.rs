//! Analytics over event and session parts with DataFusion.
//!
//! Each query gets a snapshot: the part files whose site and time range can hold rows of the
//! window, plus the rows still in memory (as one record batch per stream, built with the same
//! schema as the parts). Both are registered as one table (`events`, `sessions_raw`), so a row is
//! counted whether or not a commit point has written it yet. Sessions are versioned rows
//! (session_part.rs): each query keeps the highest version of each session in its window. The
//! definitions (bots excluded, what a bounce is, the labels for missing values, top-N ordering by
//! count then key) are the overview's, shared with the redb store and ClickHouse.

use std::path::PathBuf;

use crm_schemas::{Session, StoredEvent};
use crm_store::{Count, FormStats, FormStatsBuilder, Overview, SeriesPoint, StoreError};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType, Int64Type, UInt64Type};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

/// What one query reads: the files and the in-memory rows of one site.
pub struct Snapshot {
    pub event_files: Vec<PathBuf>,
    pub events: RecordBatch,
    pub session_files: Vec<PathBuf>,
    pub sessions: RecordBatch,
    /// Holds the parts read, so a compaction meanwhile does not delete their files.
    pub keep_alive: Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
}

fn df_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { message: format!("columnar query failed: {err}"), retryable: false }
}

/// A context with `events` and `sessions_raw` (every version of every session) registered.
async fn context(snapshot: &Snapshot) -> Result<SessionContext, StoreError> {
    // One partition: queries share the core with ingest, and parallel scans would only contend.
    // Parts are read with the types they were written with (Utf8, Binary), not the view types
    // DataFusion would pick, so they union with the in-memory rows.
    let config = SessionConfig::new().with_target_partitions(1).set_bool("datafusion.execution.parquet.schema_force_view_types", false);
    let ctx = SessionContext::new_with_config(config);
    for (name, batch, files) in [("events", &snapshot.events, &snapshot.event_files), ("sessions_raw", &snapshot.sessions, &snapshot.session_files)] {
        let mut frame = ctx.read_batch(batch.clone()).map_err(df_err)?;
        if !files.is_empty() {
            let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            let parts = ctx.read_parquet(paths, ParquetReadOptions::default()).await.map_err(df_err)?;
            frame = frame.union(parts).map_err(df_err)?;
        }
        ctx.register_table(name, frame.into_view()).map_err(df_err)?;
    }
    Ok(ctx)
}

/// Registers `sessions`: the latest version of each session that started in the window, with
/// the columns analytics group by (no `json`), materialised once for the several queries that
/// read it. The latest version is found with a hash aggregate and a join: `DISTINCT ON` and a
/// `row_number()` window over the same million rows took 20 to 40 s and 1.8 s, the join 0.6 s
/// (bench/ANALYSIS.md).
async fn register_sessions(ctx: &SessionContext, from_ms: i64, to_ms: i64) -> Result<(), StoreError> {
    let window = |alias: &str| format!("{alias}start_ms >= {from_ms} AND {alias}start_ms < {to_ms}");
    let latest = ctx
        .sql(&format!(
            "SELECT r.session_id, r.start_ms, r.visitor_id, r.is_bot, r.bounce, r.duration_ms, r.referrer, r.country, r.device, r.browser, r.utm_source
             FROM sessions_raw r JOIN (SELECT session_id, max(version) AS v FROM sessions_raw WHERE {} GROUP BY session_id) m
             ON r.session_id = m.session_id AND r.version = m.v WHERE {}",
            window(""),
            window("r.")
        ))
        .await
        .map_err(df_err)?
        .cache()
        .await
        .map_err(df_err)?;
    ctx.register_table("sessions", latest.into_view()).map_err(df_err)?;
    Ok(())
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
    ctx.sql(sql).await.map_err(df_err)?.collect().await.map_err(df_err)
}

/// Column `index` of every row cast to `T` (counts and sums come back as Int64 or UInt64; a
/// null reads as 0).
fn primitives<T: ArrowPrimitiveType>(batches: &[RecordBatch], index: usize) -> Result<Vec<T::Native>, StoreError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = cast(batch.column(index), &T::DATA_TYPE).map_err(df_err)?;
        let values = column.as_primitive::<T>();
        out.extend((0..values.len()).map(|i| if values.is_null(i) { T::Native::default() } else { values.value(i) }));
    }
    Ok(out)
}

fn u64s(batches: &[RecordBatch], index: usize) -> Result<Vec<u64>, StoreError> {
    primitives::<UInt64Type>(batches, index)
}

fn i64s(batches: &[RecordBatch], index: usize) -> Result<Vec<i64>, StoreError> {
    primitives::<Int64Type>(batches, index)
}

fn strings(batches: &[RecordBatch], index: usize) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = cast(batch.column(index), &DataType::Utf8).map_err(df_err)?;
        let values = column.as_string::<i32>();
        out.extend((0..values.len()).map(|i| values.value(i).to_owned()));
    }
    Ok(out)
}

fn one_u64(batches: &[RecordBatch], index: usize) -> Result<u64, StoreError> {
    Ok(u64s(batches, index)?.first().copied().unwrap_or(0))
}

/// `json` column of every row, decoded.
fn decode<T: serde::de::DeserializeOwned>(batches: &[RecordBatch], index: usize) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = cast(batch.column(index), &DataType::Binary).map_err(df_err)?;
        let values = column.as_binary::<i32>();
        for i in 0..values.len() {
            out.push(serde_json::from_slice(values.value(i)).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
    }
    Ok(out)
}

async fn top(ctx: &SessionContext, sql: &str) -> Result<Vec<Count>, StoreError> {
    let batches = collect(ctx, sql).await?;
    Ok(strings(&batches, 0)?.into_iter().zip(u64s(&batches, 1)?).map(|(key, count)| Count { key, count }).collect())
}

fn sessions_in(from_ms: i64, to_ms: i64) -> String {
    format!("start_ms >= {from_ms} AND start_ms < {to_ms} AND NOT is_bot")
}

fn pageviews_in(from_ms: i64, to_ms: i64) -> String {
    format!("ts_ms >= {from_ms} AND ts_ms < {to_ms} AND kind = 'pageview' AND NOT is_bot")
}

/// The analytics overview of `[from_ms, to_ms)`, bots excluded.
pub async fn overview(snapshot: &Snapshot, from_ms: i64, to_ms: i64, top_n: usize) -> Result<Overview, StoreError> {
    let ctx = context(snapshot).await?;
    register_sessions(&ctx, from_ms, to_ms).await?;
    let s = sessions_in(from_ms, to_ms);
    let e = pageviews_in(from_ms, to_ms);
    let totals = collect(&ctx, &format!("SELECT count(*), sum(CASE WHEN bounce THEN 1 ELSE 0 END), sum(duration_ms) FROM sessions WHERE {s}")).await?;
    let (sessions, bounces, duration) = (one_u64(&totals, 0)?, one_u64(&totals, 1)?, one_u64(&totals, 2)?);
    let pageviews = one_u64(&collect(&ctx, &format!("SELECT count(*) FROM events WHERE {e}")).await?, 0)?;
    let visitors = one_u64(
        &collect(&ctx, &format!("SELECT count(DISTINCT v) FROM (SELECT visitor_id AS v FROM sessions WHERE {s} UNION ALL SELECT visitor_id AS v FROM events WHERE {e})")).await?,
        0,
    )?;
    let grouped = |column: &str, table: &str, filter: &str| {
        format!("SELECT {column} AS key, count(*) AS n FROM {table} WHERE {filter} GROUP BY {column} ORDER BY n DESC, key ASC LIMIT {top_n}")
    };
    Ok(Overview {
        visitors,
        sessions,
        pageviews,
        bounce_rate: if sessions == 0 { 0.0 } else { bounces as f64 / sessions as f64 },
        avg_session_duration_ms: duration.checked_div(sessions).unwrap_or(0),
        top_pages: top(&ctx, &grouped("coalesce(path, '/')", "events", &e)).await?,
        top_referrers: top(&ctx, &grouped("referrer", "sessions", &s)).await?,
        countries: top(&ctx, &grouped("country", "sessions", &s)).await?,
        devices: top(&ctx, &grouped("device", "sessions", &s)).await?,
        browsers: top(&ctx, &grouped("browser", "sessions", &s)).await?,
        utm_sources: top(&ctx, &grouped("utm_source", "sessions", &format!("{s} AND utm_source IS NOT NULL"))).await?,
    })
}

/// The overview's headline figures per bucket starting at `starts[k]`, each `step_ms` long,
/// clipped to `[from_ms, to_ms)`.
pub async fn timeseries(snapshot: &Snapshot, starts: &[i64], from_ms: i64, to_ms: i64, step_ms: i64) -> Result<Vec<SeriesPoint>, StoreError> {
    let Some(&first) = starts.first() else { return Ok(Vec::new()) };
    let ctx = context(snapshot).await?;
    register_sessions(&ctx, from_ms, to_ms).await?;
    let (s, e) = (sessions_in(from_ms, to_ms), pageviews_in(from_ms, to_ms));
    let bucket = |col: &str| format!("CAST(({col} - {first}) / {step_ms} AS BIGINT)");
    let totals = collect(
        &ctx,
        &format!("SELECT {b} AS b, count(*), sum(CASE WHEN bounce THEN 1 ELSE 0 END), sum(duration_ms) FROM sessions WHERE {s} GROUP BY {b}", b = bucket("start_ms")),
    )
    .await?;
    let views = collect(&ctx, &format!("SELECT {b} AS b, count(*) FROM events WHERE {e} GROUP BY {b}", b = bucket("ts_ms"))).await?;
    let visitors = collect(
        &ctx,
        &format!(
            "SELECT b, count(DISTINCT v) FROM (SELECT {} AS b, visitor_id AS v FROM sessions WHERE {s} UNION ALL SELECT {} AS b, visitor_id AS v FROM events WHERE {e}) GROUP BY b",
            bucket("start_ms"),
            bucket("ts_ms")
        ),
    )
    .await?;
    let mut figures = vec![[0u64; 5]; starts.len()];
    let mut fill = |batches: &[RecordBatch], columns: &[(usize, usize)]| -> Result<(), StoreError> {
        let buckets = i64s(batches, 0)?;
        for &(column, slot) in columns {
            for (b, value) in buckets.iter().zip(u64s(batches, column)?) {
                if let Some(row) = usize::try_from(*b).ok().and_then(|i| figures.get_mut(i)) {
                    row[slot] = value;
                }
            }
        }
        Ok(())
    };
    fill(&totals, &[(1, 1), (2, 2), (3, 3)])?;
    fill(&views, &[(1, 4)])?;
    fill(&visitors, &[(1, 0)])?;
    Ok(starts.iter().zip(figures).map(|(&start, [v, sessions, bounces, duration, pageviews])| SeriesPoint::from_totals(start, v, sessions, bounces, duration, pageviews)).collect())
}

/// Form funnels of `[from_ms, to_ms)`, bots excluded.
pub async fn form_stats(snapshot: &Snapshot, from_ms: i64, to_ms: i64) -> Result<Vec<FormStats>, StoreError> {
    let ctx = context(snapshot).await?;
    let rows = collect(
        &ctx,
        &format!(
            "SELECT form_id, kind, count(*) FROM events WHERE ts_ms >= {from_ms} AND ts_ms < {to_ms} AND NOT is_bot
             AND kind IN ('form_view', 'form_start', 'form_submit') AND form_id IS NOT NULL GROUP BY form_id, kind"
        ),
    )
    .await?;
    let mut builder = FormStatsBuilder::default();
    for ((form_id, kind), count) in strings(&rows, 0)?.into_iter().zip(strings(&rows, 1)?).zip(u64s(&rows, 2)?) {
        builder.add_kind_count(&form_id, &kind, count);
    }
    Ok(builder.finish())
}

/// Events of `[from_ms, to_ms)` after `(ts, id)`, oldest first, at most `limit + 1` (the extra
/// row tells the caller there is more).
pub async fn scan(snapshot: &Snapshot, from_ms: i64, to_ms: i64, after: Option<(i64, u128)>, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
    let ctx = context(snapshot).await?;
    let mut out: Vec<StoredEvent> = Vec::new();
    let from = match after {
        Some((ts, id)) => {
            // Rows sharing the cursor's millisecond are few: filter their ids here, which keeps
            // 16-byte id comparisons out of SQL.
            let mut same: Vec<StoredEvent> = decode(&collect(&ctx, &format!("SELECT json FROM events WHERE ts_ms = {ts} AND ts_ms < {to_ms}")).await?, 0)?;
            same.retain(|e| e.event_id.as_u128() > id);
            same.sort_by_key(|e| e.event_id);
            out.extend(same);
            ts + 1
        }
        None => from_ms,
    };
    if out.len() <= limit {
        let rest = limit + 1 - out.len();
        let batches = collect(&ctx, &format!("SELECT json FROM events WHERE ts_ms >= {from} AND ts_ms < {to_ms} ORDER BY ts_ms, event_id LIMIT {rest}")).await?;
        out.extend(decode::<StoredEvent>(&batches, 0)?);
    }
    out.truncate(limit + 1);
    Ok(out)
}

/// Sessions (latest versions) that started in `[from_ms, to_ms)`, oldest first.
pub async fn sessions_between(snapshot: &Snapshot, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Session>, StoreError> {
    let ctx = context(snapshot).await?;
    let window = |alias: &str| format!("{alias}start_ms >= {from_ms} AND {alias}start_ms < {to_ms}");
    let batches = collect(
        &ctx,
        &format!(
            "SELECT r.json FROM sessions_raw r JOIN (SELECT session_id, max(version) AS v FROM sessions_raw WHERE {} GROUP BY session_id) m
             ON r.session_id = m.session_id AND r.version = m.v WHERE {} ORDER BY r.start_ms, r.session_id LIMIT {limit}",
            window(""),
            window("r.")
        ),
    )
    .await?;
    decode(&batches, 0)
}
