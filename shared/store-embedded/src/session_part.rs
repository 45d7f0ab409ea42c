//! Session parts: one site's sessions that started on one UTC day, as versioned rows.
//!
//! A session is rewritten while it is open (every batch that touches it upserts its latest
//! state), so a part holds one row per (session, commit point) with `version` = the write
//! sequence; readers keep the highest version per `session_id` (a query-time dedupe,
//! [`crate::query`]). Columns the analytics group by are typed and precomputed (`bounce`,
//! `duration_ms` by the same rules as [`Session::is_bounce`] and [`Session::duration_ms`]);
//! `json` keeps the whole session for `sessions_between`.

use std::path::Path;
use std::sync::Arc;

use crm_schemas::Session;
use datafusion::arrow::array::{ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use crate::part::Written;
use crate::{ColumnarError, Result};

pub fn sessions_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("start_ms", DataType::Int64, false),
        Field::new("session_id", DataType::Utf8, false),
        Field::new("version", DataType::UInt64, false),
        Field::new("visitor_id", DataType::Utf8, false),
        Field::new("is_bot", DataType::Boolean, false),
        Field::new("bounce", DataType::Boolean, false),
        Field::new("duration_ms", DataType::UInt64, false),
        Field::new("referrer", DataType::Utf8, false),
        Field::new("country", DataType::Utf8, false),
        Field::new("device", DataType::Utf8, false),
        Field::new("browser", DataType::Utf8, false),
        Field::new("utm_source", DataType::Utf8, true),
        Field::new("json", DataType::Binary, false),
    ]))
}

/// `(session, version)` rows sorted by `(start_ms, session_id, version)`. The group-by columns
/// carry the overview's labels for missing values, so every backend shows the same keys.
pub fn sessions_batch(sessions: &[&(Session, u64)]) -> Result<RecordBatch> {
    let mut order: Vec<&(Session, u64)> = sessions.to_vec();
    order.sort_by(|(a, va), (b, vb)| (a.start_ms, &a.session_id, va).cmp(&(b.start_ms, &b.session_id, vb)));
    let json = crate::part::json_column(order.iter().map(|(s, _)| s), "<session>")?;
    let label = |value: &str| if value.is_empty() { "(unknown)".to_owned() } else { value.to_owned() };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(order.iter().map(|(s, _)| s.start_ms))),
        Arc::new(StringArray::from_iter_values(order.iter().map(|(s, _)| s.session_id.as_str()))),
        Arc::new(UInt64Array::from_iter_values(order.iter().map(|(_, v)| *v))),
        Arc::new(StringArray::from_iter_values(order.iter().map(|(s, _)| s.visitor_id.as_str()))),
        Arc::new(BooleanArray::from_iter(order.iter().map(|(s, _)| Some(s.is_bot)))),
        Arc::new(BooleanArray::from_iter(order.iter().map(|(s, _)| Some(s.is_bounce())))),
        Arc::new(UInt64Array::from_iter_values(order.iter().map(|(s, _)| s.duration_ms()))),
        Arc::new(StringArray::from_iter_values(order.iter().map(|(s, _)| s.referrer_host.clone().unwrap_or_else(|| "(direct)".into())))),
        Arc::new(StringArray::from_iter_values(order.iter().map(|(s, _)| s.country.as_deref().map_or_else(|| "(unknown)".into(), label)))),
        Arc::new(StringArray::from_iter_values(order.iter().map(|(s, _)| label(&s.device_category)))),
        Arc::new(StringArray::from_iter_values(order.iter().map(|(s, _)| label(&s.browser)))),
        Arc::new(StringArray::from_iter(order.iter().map(|(s, _)| s.utm.source.clone()))),
        Arc::new(json),
    ];
    RecordBatch::try_new(sessions_schema(), columns).map_err(|e| ColumnarError::corrupt(Path::new("<batch>"), e))
}

/// Writes a session part and fsyncs it and its directory.
pub fn write_sessions(path: &Path, sessions: &[&(Session, u64)]) -> Result<Written> {
    let bytes = crate::part::write_batch(path, &sessions_batch(sessions)?)?;
    Ok(Written {
        rows: sessions.len() as u64,
        bytes,
        min_ts: sessions.iter().map(|(s, _)| s.start_ms).min().unwrap_or(0),
        max_ts: sessions.iter().map(|(s, _)| s.start_ms).max().unwrap_or(0),
    })
}
