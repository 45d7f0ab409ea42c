//! The event-log seam on Kafka, through `rdkafka` built from its bundled librdkafka.
//!
//! Topics (`<prefix>` configurable, created at start with the configured partition count):
//! * `<prefix>.events` — live events, keyed `site_id:visitor_id` so one visitor stays ordered on
//!   one partition (and per-visitor processor state lives with that partition);
//! * `<prefix>.events_historical` — events whose own time is older than `historical_after`
//!   (backfills and replays of old data), so they never queue in front of live traffic;
//! * `<prefix>.events_overflow` — events of a key that exceeds `overflow_rate` events/s,
//!   sent without a key (spread over partitions) so one hot visitor cannot flood one partition;
//! * `<prefix>.dead_letters` — refused events with their reason.
//!
//! The producer is idempotent with `acks=all`; `append` resolves only when every record is
//! acknowledged by the brokers. The consumer commits offsets only when asked, after the
//! processor's store write. A consumer's `Delivered::partition` encodes the Kafka topic in its top
//! byte so commits reach the right topic-partition.

mod config;
mod consumer;
mod log;

pub use config::{Compression, KafkaConfig};
pub use log::KafkaLog;
