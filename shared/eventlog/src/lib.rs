//! The event-log seam: a narrow, transport-neutral publish/consume contract between the collector
//! and the stream processor.
//!
//! * [`EventLog::append`] returns only once the records are durable (the collector answers 202
//!   after it returns), and fails fast with a retryable error when the log cannot take more.
//! * [`LogConsumer`] delivers records at least once per consumer group; a group's position moves
//!   only when [`LogConsumer::commit`] is called, after the consumer's side effects are durable.
//!
//! Implementations: [`embedded::EmbeddedLog`] (segment files under the data dir, the default) and,
//! with the Kafka issue, rdkafka. Both must pass the shared [`conformance`] suite.

use std::time::Duration;

use async_trait::async_trait;
use bytes::Bytes;

pub mod conformance;
pub mod embedded;
mod segment;

pub use embedded::{EmbeddedLog, EmbeddedLogConfig, SyncMode};

/// A logical stream inside the log. Kafka maps each to a topic; the embedded log tags records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Topic {
    /// Accepted events (`CollectedEvent` JSON).
    Events,
    /// Events refused by validation (`DeadLetter` JSON), kept for the site owner.
    DeadLetters,
}

impl Topic {
    pub const ALL: [Topic; 2] = [Topic::Events, Topic::DeadLetters];

    pub fn as_u8(self) -> u8 {
        match self {
            Topic::Events => 1,
            Topic::DeadLetters => 2,
        }
    }

    pub fn from_u8(tag: u8) -> Option<Topic> {
        match tag {
            1 => Some(Topic::Events),
            2 => Some(Topic::DeadLetters),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Topic::Events => "events",
            Topic::DeadLetters => "dead_letters",
        }
    }
}

/// A record to append. `key` decides ordering: records with the same key are delivered in append
/// order (the collector uses `site_id:visitor_id`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    pub topic: Topic,
    pub key: Bytes,
    pub payload: Bytes,
    /// The event's own time (epoch ms) when known; backends may route old events apart
    /// (Kafka sends them to the historical topic).
    pub event_time_ms: Option<i64>,
}

impl Record {
    pub fn new(topic: Topic, key: impl Into<Bytes>, payload: impl Into<Bytes>) -> Record {
        Record { topic, key: key.into(), payload: payload.into(), event_time_ms: None }
    }

    pub fn with_event_time(mut self, event_time_ms: Option<i64>) -> Record {
        self.event_time_ms = event_time_ms;
        self
    }
}

/// A record handed to a consumer, with the position needed to commit past it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivered {
    pub topic: Topic,
    pub partition: u32,
    pub offset: u64,
    pub key: Bytes,
    pub payload: Bytes,
}

#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error("event log is saturated ({queued} appends queued); retry shortly")]
    Backpressure { queued: usize },
    #[error("event log disk budget exhausted ({used} of {limit} bytes used)")]
    DiskBudgetExhausted { used: u64, limit: u64 },
    #[error("record of {size} bytes exceeds the {limit}-byte limit")]
    RecordTooLarge { size: usize, limit: usize },
    #[error("event log directory {0} is in use by another process")]
    InUse(String),
    #[error("event log is closed")]
    Closed,
    #[error("corrupt event log segment {segment} at byte {position}: {reason}")]
    Corrupt { segment: String, position: u64, reason: String },
    #[error("event log i/o error: {0}")]
    Io(#[from] std::io::Error),
    #[error("event log backend error: {message}")]
    Backend { message: String, retryable: bool },
}

impl LogError {
    /// Whether the same call may succeed later (clients get 503 + Retry-After for these).
    pub fn is_retryable(&self) -> bool {
        match self {
            LogError::Backpressure { .. } | LogError::DiskBudgetExhausted { .. } | LogError::Io(_) => true,
            LogError::Backend { retryable, .. } => *retryable,
            LogError::RecordTooLarge { .. }
            | LogError::InUse(_)
            | LogError::Closed
            | LogError::Corrupt { .. } => false,
        }
    }
}

/// Point-in-time figures for `/metrics` and `/readyz`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Offset the next appended record will get (the high watermark).
    pub next_offset: u64,
    pub bytes_on_disk: u64,
    pub queued_appends: usize,
    /// Set when the log cannot currently accept appends, with the reason.
    pub unavailable: Option<String>,
}

#[async_trait]
pub trait EventLog: Send + Sync + 'static {
    /// Appends the records durably. On `Ok` every record will be delivered to every group.
    async fn append(&self, records: Vec<Record>) -> Result<(), LogError>;

    /// Opens a consumer for `group` over `topics`, starting after the group's last commit.
    async fn subscribe(&self, group: &str, topics: &[Topic]) -> Result<Box<dyn LogConsumer>, LogError>;

    fn stats(&self) -> LogStats;

    /// Stops accepting appends, finishes those in flight and releases resources.
    async fn shutdown(&self) -> Result<(), LogError>;

    /// Periodic upkeep (forgetting idle per-key state); called about once a minute.
    fn housekeeping(&self) {}
}

#[async_trait]
pub trait LogConsumer: Send {
    /// Returns up to `max_records` records, waiting up to `max_wait` for the first one.
    /// An empty vector means nothing arrived in time.
    async fn poll(&mut self, max_records: usize, max_wait: Duration) -> Result<Vec<Delivered>, LogError>;

    /// Durably records that everything up to and including these records is processed.
    async fn commit(&mut self, delivered: &[Delivered]) -> Result<(), LogError>;

    /// Records appended but not yet committed by this group, when known.
    fn lag(&self) -> Option<u64>;

    /// A stable identity of the log instance being consumed (it changes if the log is recreated),
    /// so offsets recorded downstream are never compared across different logs.
    fn source(&self) -> &str;

    /// True once after this consumer's partition assignment changed (a group rebalance), so the
    /// caller can drop state kept for partitions it may no longer own.
    fn rebalanced(&mut self) -> bool {
        false
    }
}
