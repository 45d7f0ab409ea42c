//! Row types as stored in ClickHouse (RowBinary via serde). Indexed columns are extracted from
//! the records; the full record travels as JSON in `body`/`profile` so the store stays in step
//! with the schema crate without a column per field.

use clickhouse::Row;
use serde::{Deserialize, Serialize};

#[derive(Row, Serialize, Deserialize)]
pub struct EventRow {
    pub site_id: String,
    /// Milliseconds since the epoch (DateTime64(3)).
    pub ts: i64,
    pub visitor_id: String,
    pub event_id: String,
    pub kind: String,
    pub path: String,
    pub is_bot: u8,
    pub body: String,
}

#[derive(Row, Serialize, Deserialize)]
pub struct VisitorRow {
    pub site_id: String,
    pub visitor_id: String,
    pub version: u64,
    pub is_bot: u8,
    pub rank_intent: u64,
    pub rank_engagement: u64,
    pub rank_last_seen: u64,
    pub profile: String,
}

#[derive(Row, Serialize, Deserialize)]
pub struct SessionRow {
    pub site_id: String,
    pub start: i64,
    pub session_id: String,
    pub version: u64,
    pub visitor_id: String,
    pub is_bot: u8,
    pub pageviews: u32,
    pub bounce: u8,
    pub duration_ms: u64,
    pub referrer_host: String,
    pub country: String,
    pub device: String,
    pub browser: String,
    pub utm_source: String,
    pub body: String,
}

#[derive(Row, Serialize, Deserialize)]
pub struct DeadLetterRow {
    pub site_id: String,
    pub received: i64,
    pub id: String,
    pub body: String,
}

#[derive(Row, Serialize, Deserialize)]
pub struct KeyedRow {
    pub key: String,
    pub version: u64,
    pub body: String,
}

/// A keyed row with ReplacingMergeTree's is_deleted flag (the `forms` table).
#[derive(Row, Serialize, Deserialize)]
pub struct DeletableRow {
    pub key: String,
    pub version: u64,
    pub deleted: u8,
    pub body: String,
}

#[derive(Row, Deserialize)]
pub struct FormCountRow {
    pub form_id: String,
    pub kind: String,
    pub count: u64,
}

#[derive(Row, Deserialize)]
pub struct BodyRow {
    pub body: String,
}

#[derive(Row, Deserialize)]
pub struct RankedRow {
    pub body: String,
    pub rank: u64,
    pub visitor_id: String,
}

#[derive(Row, Deserialize)]
pub struct TimedRow {
    pub body: String,
    pub ts_ms: i64,
    pub id: String,
}

#[derive(Row, Deserialize)]
pub struct IdRow {
    pub id: String,
}

#[derive(Row, Deserialize)]
pub struct CountRow {
    pub key: String,
    pub count: u64,
}

#[derive(Row, Deserialize)]
pub struct SessionTotals {
    pub sessions: u64,
    pub bounces: u64,
    pub duration_total: u64,
}

/// Session totals of one timeseries bucket.
#[derive(Row, Deserialize)]
pub struct BucketTotals {
    pub bucket: u64,
    pub sessions: u64,
    pub bounces: u64,
    pub duration_total: u64,
}

/// One count per timeseries bucket.
#[derive(Row, Deserialize)]
pub struct BucketCount {
    pub bucket: u64,
    pub value: u64,
}

#[derive(Row, Deserialize)]
pub struct Scalar64 {
    pub value: u64,
}

/// A row of a growth report (`matched_events`).
#[derive(Row, Deserialize)]
pub struct MatchedRow {
    pub visitor_id: String,
    pub ts_ms: i64,
    pub mask: u32,
}
