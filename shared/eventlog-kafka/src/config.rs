//! Kafka settings and the topic layout derived from them.

use std::num::NonZeroU32;
use std::time::Duration;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

#[derive(Clone, Debug)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    pub topic_prefix: String,
    /// Partitions for topics created at start.
    pub partitions: i32,
    pub replication: i32,
    pub linger: Duration,
    pub batch_bytes: usize,
    pub compression: Compression,
    /// How long a record may wait for acknowledgement before the append fails.
    pub delivery_timeout: Duration,
    /// Records librdkafka may buffer; beyond it appends fail with backpressure.
    pub max_queued_records: usize,
    /// Events whose own time is older than this go to the historical topic.
    pub historical_after: Duration,
    /// Events per second for one key beyond which its events go to the overflow topic.
    pub overflow_rate: Option<NonZeroU32>,
    pub session_timeout: Duration,
    /// Create the topics at start (off when an operator or a test harness creates them).
    pub create_topics: bool,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>, topic_prefix: impl Into<String>) -> KafkaConfig {
        KafkaConfig {
            brokers: brokers.into(),
            topic_prefix: topic_prefix.into(),
            partitions: 12,
            replication: 1,
            linger: Duration::from_millis(5),
            batch_bytes: 1024 * 1024,
            compression: Compression::Lz4,
            delivery_timeout: Duration::from_secs(10),
            max_queued_records: 100_000,
            historical_after: Duration::from_secs(2 * 86_400),
            overflow_rate: NonZeroU32::new(500),
            session_timeout: Duration::from_secs(6),
            create_topics: true,
        }
    }

    pub(crate) fn topic(&self, lane: Lane) -> String {
        format!("{}.{}", self.topic_prefix, lane.suffix())
    }

    /// Every topic name this configuration uses.
    pub fn topic_names(&self) -> Vec<String> {
        Lane::ALL.iter().map(|lane| self.topic(*lane)).collect()
    }
}

/// The Kafka topics behind the log's two logical topics.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Lane {
    Events,
    Historical,
    Overflow,
    DeadLetters,
}

impl Lane {
    pub const ALL: [Lane; 4] = [Lane::Events, Lane::Historical, Lane::Overflow, Lane::DeadLetters];

    pub fn suffix(self) -> &'static str {
        match self {
            Lane::Events => "events",
            Lane::Historical => "events_historical",
            Lane::Overflow => "events_overflow",
            Lane::DeadLetters => "dead_letters",
        }
    }

    pub fn index(self) -> u32 {
        match self {
            Lane::Events => 0,
            Lane::Historical => 1,
            Lane::Overflow => 2,
            Lane::DeadLetters => 3,
        }
    }

    pub fn from_index(index: u32) -> Option<Lane> {
        Lane::ALL.into_iter().find(|lane| lane.index() == index)
    }

    pub fn topic(self) -> crm_eventlog::Topic {
        match self {
            Lane::DeadLetters => crm_eventlog::Topic::DeadLetters,
            _ => crm_eventlog::Topic::Events,
        }
    }

    pub fn for_topic(topic: crm_eventlog::Topic) -> &'static [Lane] {
        match topic {
            crm_eventlog::Topic::Events => &[Lane::Events, Lane::Historical, Lane::Overflow],
            crm_eventlog::Topic::DeadLetters => &[Lane::DeadLetters],
        }
    }
}

/// `Delivered::partition` = lane index in the top byte, Kafka partition below.
pub(crate) fn encode_partition(lane: Lane, partition: i32) -> u32 {
    (lane.index() << 24) | (partition as u32 & 0x00ff_ffff)
}

pub(crate) fn decode_partition(encoded: u32) -> Option<(Lane, i32)> {
    Lane::from_index(encoded >> 24).map(|lane| (lane, (encoded & 0x00ff_ffff) as i32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partitions_round_trip_through_the_encoding() {
        for lane in Lane::ALL {
            for partition in [0, 1, 11, 65_535] {
                assert_eq!(decode_partition(encode_partition(lane, partition)), Some((lane, partition)));
            }
        }
        assert_eq!(KafkaConfig::new("b:9092", "crm").topic(Lane::Overflow), "crm.events_overflow");
    }
}
