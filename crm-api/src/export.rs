//! Exports: any analytics report, or a window's raw events, as CSV or Parquet
//! (`GET /api/v1/analytics/export?report=…&format=csv|parquet` plus the report's own
//! parameters, checked by the same code as its JSON endpoint).
//!
//! A report is flattened into one table, in long form where it nests (a retention cell per
//! row, a top value per row). Raw events are streamed a store page at a time: a CSV chunk, or
//! one Parquet row group, per page, so a year of events never sits in memory; the first page is
//! read before the answer starts, so a bad window or a store that is down is still a proper
//! error status. Bots are left out of raw events as out of every aggregate.

use std::collections::HashSet;
use std::io::Write;
use std::sync::{Arc, Mutex};

use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use axum::body::{Body, Bytes};
use axum::extract::{Query, State};
use axum::http::header;
use axum::response::{IntoResponse, Response};
use crm_schemas::{EventBody, StoredEvent};
use parquet::arrow::ArrowWriter;
use parquet::basic::Compression;
use parquet::file::properties::WriterProperties;
use futures_util::StreamExt;
use serde_json::Value;

use crate::auth::AuthUser;
use crate::params;
use crate::{ApiError, ApiState};

/// Raw events read from the store per page (one CSV chunk or Parquet row group each).
const PAGE: usize = 5_000;

#[derive(Clone, Copy, Debug, PartialEq)]
enum Format {
    Csv,
    Parquet,
}

/// A column's type in Parquet (CSV writes every cell as text).
#[derive(Clone, Copy, Debug, PartialEq)]
enum Kind {
    Text,
    Int,
    Float,
    Bool,
    /// Milliseconds since the epoch: RFC 3339 in CSV, a UTC timestamp in Parquet.
    Time,
}

/// A report or page of events as rows of JSON scalars under named, typed columns.
struct Table {
    columns: Vec<(String, Kind)>,
    rows: Vec<Vec<Value>>,
}

fn invalid(name: &str, message: impl Into<String>) -> ApiError {
    ApiError::InvalidParameter { name: name.to_owned(), message: message.into() }
}

/// RFC 3339 in UTC with milliseconds always written, so the text sorts like the time.
fn timestamp(ms: i64) -> String {
    let format = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:3]Z");
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).ok().and_then(|t| t.format(&format).ok()).unwrap_or_default()
}

fn internal(e: impl std::fmt::Display) -> ApiError {
    ApiError::Internal(format!("export: {e}"))
}

impl Table {
    /// Columns typed from their values: integers, numbers, booleans, else text.
    fn infer(names: &[String], rows: Vec<Vec<Value>>) -> Table {
        let columns = names
            .iter()
            .enumerate()
            .map(|(i, name)| {
                let values: Vec<&Value> = rows.iter().map(|r| &r[i]).filter(|v| !v.is_null()).collect();
                let kind = if !values.is_empty() && values.iter().all(|v| v.is_i64()) {
                    Kind::Int
                } else if !values.is_empty() && values.iter().all(|v| v.is_number()) {
                    Kind::Float
                } else if !values.is_empty() && values.iter().all(|v| v.is_boolean()) {
                    Kind::Bool
                } else {
                    Kind::Text
                };
                (name.clone(), kind)
            })
            .collect();
        Table { columns, rows }
    }

    fn text(value: &Value, kind: Kind) -> Option<String> {
        match (value, kind) {
            (Value::Null, _) => None,
            (Value::Number(n), Kind::Time) => Some(timestamp(n.as_i64().unwrap_or(0))),
            (Value::String(s), _) => Some(s.clone()),
            (other, _) => Some(other.to_string()),
        }
    }

    fn csv(&self, header: bool) -> Result<Vec<u8>, ApiError> {
        let mut writer = csv::Writer::from_writer(Vec::new());
        if header {
            writer.write_record(self.columns.iter().map(|(name, _)| name.as_str())).map_err(internal)?;
        }
        for row in &self.rows {
            let cells = row.iter().zip(&self.columns).map(|(v, (_, kind))| Table::text(v, *kind).unwrap_or_default());
            writer.write_record(cells).map_err(internal)?;
        }
        writer.into_inner().map_err(internal)
    }

    fn schema(&self) -> SchemaRef {
        let fields: Vec<Field> = self
            .columns
            .iter()
            .map(|(name, kind)| {
                let data_type = match kind {
                    Kind::Text => DataType::Utf8,
                    Kind::Int => DataType::Int64,
                    Kind::Float => DataType::Float64,
                    Kind::Bool => DataType::Boolean,
                    Kind::Time => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                };
                Field::new(name, data_type, true)
            })
            .collect();
        Arc::new(Schema::new(fields))
    }

    fn batch(&self, schema: SchemaRef) -> Result<RecordBatch, ApiError> {
        let arrays: Vec<ArrayRef> = self
            .columns
            .iter()
            .enumerate()
            .map(|(i, (_, kind))| {
                let cells = self.rows.iter().map(move |r| &r[i]);
                let array: ArrayRef = match kind {
                    Kind::Text => Arc::new(cells.map(|v| Table::text(v, *kind)).collect::<StringArray>()),
                    Kind::Int => Arc::new(cells.map(Value::as_i64).collect::<Int64Array>()),
                    Kind::Float => Arc::new(cells.map(Value::as_f64).collect::<Float64Array>()),
                    Kind::Bool => Arc::new(cells.map(Value::as_bool).collect::<BooleanArray>()),
                    Kind::Time => Arc::new(cells.map(Value::as_i64).collect::<TimestampMillisecondArray>().with_timezone("UTC")),
                };
                array
            })
            .collect();
        RecordBatch::try_new(schema, arrays).map_err(internal)
    }
}

/// Bytes the Parquet writer has produced and the stream has not sent yet.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().map_err(|_| std::io::Error::other("poisoned"))?.extend_from_slice(bytes);
        Ok(bytes.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn take(&self) -> Bytes {
        self.0.lock().map(|mut b| Bytes::from(std::mem::take(&mut *b))).unwrap_or_default()
    }
}

/// Writes tables of one schema as CSV or Parquet, returning what is ready to send.
enum Encoder {
    Csv { header: bool },
    Parquet { writer: ArrowWriter<Shared>, out: Shared, schema: SchemaRef },
}

impl Encoder {
    fn new(format: Format, schema: SchemaRef) -> Result<Encoder, ApiError> {
        Ok(match format {
            Format::Csv => Encoder::Csv { header: true },
            Format::Parquet => {
                let out = Shared::default();
                let props = WriterProperties::builder().set_compression(Compression::SNAPPY).build();
                let writer = ArrowWriter::try_new(out.clone(), schema.clone(), Some(props)).map_err(internal)?;
                Encoder::Parquet { writer, out, schema }
            }
        })
    }

    /// The table's rows: a CSV chunk (the header first), or a Parquet row group.
    fn push(&mut self, table: &Table) -> Result<Bytes, ApiError> {
        match self {
            Encoder::Csv { header } => {
                let chunk = table.csv(*header)?;
                *header = false;
                Ok(Bytes::from(chunk))
            }
            Encoder::Parquet { writer, out, schema } => {
                if !table.rows.is_empty() {
                    writer.write(&table.batch(schema.clone())?).map_err(internal)?;
                    writer.flush().map_err(internal)?;
                }
                Ok(out.take())
            }
        }
    }

    /// What is left: nothing for CSV, the footer for Parquet.
    fn finish(self) -> Result<Bytes, ApiError> {
        match self {
            Encoder::Csv { .. } => Ok(Bytes::new()),
            Encoder::Parquet { writer, out, .. } => {
                writer.close().map_err(internal)?;
                Ok(out.take())
            }
        }
    }
}

fn attachment(body: Body, format: Format, site_id: &str, report: &str) -> Response {
    let safe: String = site_id.chars().filter(|c| c.is_ascii_alphanumeric() || "._-".contains(*c)).collect();
    let (content_type, extension) = match format {
        Format::Csv => ("text/csv; charset=utf-8", "csv"),
        Format::Parquet => ("application/vnd.apache.parquet", "parquet"),
    };
    let disposition = format!("attachment; filename=\"{safe}-{report}.{extension}\"");
    ([(header::CONTENT_TYPE, content_type.to_owned()), (header::CONTENT_DISPOSITION, disposition)], body).into_response()
}

/// `GET /api/v1/analytics/export?report=…&format=csv|parquet&…`.
pub async fn export(State(state): State<ApiState>, user: AuthUser, Query(query): Query<params::Query>, axum::extract::RawQuery(raw): axum::extract::RawQuery) -> Result<Response, ApiError> {
    let report = params::required(&query, "report")?.to_owned();
    let format = match query.get("format").map(String::as_str).unwrap_or("csv") {
        "csv" => Format::Csv,
        "parquet" => Format::Parquet,
        _ => return Err(invalid("format", "csv or parquet")),
    };
    let table = match report.as_str() {
        "events" => return raw_events(state, user, query, format).await,
        "overview" => crate::reports::overview_table(crate::analytics::overview_data(&state, &user, &query, &crate::analytics::filters(raw.as_deref())?).await?),
        "timeseries" => crate::reports::timeseries_table(crate::analytics::timeseries_data(&state, &user, &query, &crate::analytics::filters(raw.as_deref())?).await?),
        "goals" => crate::reports::goals_table(crate::growth::goals_data(&state, &user, &query).await?),
        "funnel" => crate::reports::funnel_table(crate::growth::funnel_data(&state, &user, &query).await?),
        "retention" => crate::reports::retention_table(crate::growth::retention_data(&state, &user, &query).await?),
        "paths" => crate::reports::paths_table(crate::growth::paths_data(&state, &user, &query).await?),
        "custom_events" => crate::reports::custom_events_table(crate::growth::custom_events_data(&state, &user, &query).await?),
        _ => return Err(invalid("report", "events, overview, timeseries, goals, funnel, retention, paths or custom_events")),
    };
    let (names, rows) = table;
    let table = Table::infer(&names, rows);
    let mut encoder = Encoder::new(format, table.schema())?;
    let mut bytes = encoder.push(&table)?.to_vec();
    bytes.extend_from_slice(&encoder.finish()?);
    let site_id = query.get("site_id").cloned().unwrap_or_default();
    Ok(attachment(Body::from(bytes), format, &site_id, &report))
}

const EVENT_COLUMNS: [(&str, Kind); 18] = [
    ("event_id", Kind::Text),
    ("ts", Kind::Time),
    ("received_at", Kind::Time),
    ("visitor_id", Kind::Text),
    ("session_id", Kind::Text),
    ("kind", Kind::Text),
    ("name", Kind::Text),
    ("path", Kind::Text),
    ("url", Kind::Text),
    ("referrer", Kind::Text),
    ("title", Kind::Text),
    ("country", Kind::Text),
    ("region", Kind::Text),
    ("city", Kind::Text),
    ("device", Kind::Text),
    ("browser", Kind::Text),
    ("os", Kind::Text),
    ("props", Kind::Text),
];

fn event_row(e: &StoredEvent) -> Vec<Value> {
    let text = |s: &Option<String>| s.clone().map_or(Value::Null, Value::String);
    let name = match &e.body {
        EventBody::Custom { name } => Some(name.clone()),
        EventBody::FormSubmit { form_id, .. } | EventBody::FormView { form_id } | EventBody::FormStart { form_id } => Some(form_id.clone()),
        _ => None,
    };
    let props = (!e.props.is_empty()).then(|| serde_json::to_string(&e.props).unwrap_or_default());
    vec![
        Value::String(e.event_id.to_string()),
        e.ts_ms.into(),
        e.received_at_ms.into(),
        Value::String(e.visitor_id.clone()),
        Value::String(e.session_id.clone()),
        Value::String(e.body.kind().as_str().to_owned()),
        text(&name),
        text(&e.path),
        text(&e.url),
        text(&e.referrer),
        text(&e.title),
        text(&e.geo.country),
        text(&e.geo.region),
        text(&e.geo.city),
        Value::String(e.device.category.clone()),
        Value::String(e.device.browser.clone()),
        Value::String(e.device.os.clone()),
        text(&props),
    ]
}

fn event_table(events: &[StoredEvent], bots: &HashSet<String>) -> Table {
    let rows = events.iter().filter(|e| !(e.is_bot || bots.contains(&e.visitor_id))).map(event_row).collect();
    Table { columns: EVENT_COLUMNS.iter().map(|(n, k)| ((*n).to_owned(), *k)).collect(), rows }
}

/// The window's human events, oldest first, streamed a page at a time.
async fn raw_events(state: ApiState, user: AuthUser, query: params::Query, format: Format) -> Result<Response, ApiError> {
    user.require(crate::rbac::Permission::AnalyticsQuery)?;
    let site_id = params::required(&query, "site_id")?.to_owned();
    let (from, to) = crate::analytics::window(&query)?;
    state.require_site(&site_id).await?;
    let bots: HashSet<String> = state.store.bot_visitors(&site_id, from).await?.into_iter().collect();
    let first = state.store.scan_events(&site_id, from, to, PAGE, None).await?;
    let table = event_table(&first.items, &bots);
    let mut encoder = Encoder::new(format, table.schema())?;
    let head = encoder.push(&table)?;
    tracing::info!(site_id = %site_id, by = %user.username, from, to, "raw events exported");
    let store = state.store.clone();
    let site = site_id.clone();
    // (cursor of the next page, the encoder) until the last page has been sent with the footer.
    let pages = futures_util::stream::unfold(Some((first.next_cursor, encoder)), move |step| {
        let (store, site, bots) = (store.clone(), site.clone(), bots.clone());
        async move {
            let (cursor, mut encoder) = step?;
            let Some(cursor) = cursor else { return Some((encoder.finish(), None)) };
            let chunk = async {
                let page = store.scan_events(&site, from, to, PAGE, Some(&cursor)).await?;
                Ok::<_, ApiError>((encoder.push(&event_table(&page.items, &bots))?, page.next_cursor))
            }
            .await;
            match chunk {
                Ok((bytes, next)) => Some((Ok(bytes), Some((next, encoder)))),
                Err(e) => {
                    tracing::warn!(site_id = %site, error = %e, "raw event export cut short");
                    Some((Err(e), None))
                }
            }
        }
    });
    let body = futures_util::stream::once(async move { Ok::<_, ApiError>(head) }).chain(pages);
    Ok(attachment(Body::from_stream(body.map(|r| r.map_err(|e| std::io::Error::other(e.to_string())))), format, &site_id, "events"))
}
