//! [`KafkaConsumer`]: a consumer-group member with manual commits. librdkafka's blocking poll
//! runs on the blocking pool; messages are copied out before they cross back. A rebalance
//! (partitions assigned or revoked) is reported through [`LogConsumer::rebalanced`] so the
//! processor drops per-visitor state it may no longer own.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use bytes::Bytes;
use crm_eventlog::{Delivered, LogConsumer, LogError, Topic};
use rdkafka::client::ClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use crate::config::{decode_partition, encode_partition, Lane};
use crate::KafkaLog;

pub(crate) struct RebalanceFlag {
    changed: Arc<AtomicBool>,
}

impl ClientContext for RebalanceFlag {}

impl ConsumerContext for RebalanceFlag {
    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        tracing::info!(rebalance = ?rebalance, "kafka consumer group rebalanced");
        self.changed.store(true, Ordering::Release);
    }
}

pub(crate) struct KafkaConsumer {
    consumer: Arc<BaseConsumer<RebalanceFlag>>,
    lanes: HashMap<String, Lane>,
    changed: Arc<AtomicBool>,
    source: String,
}

fn backend(err: rdkafka::error::KafkaError) -> LogError {
    LogError::Backend { message: err.to_string(), retryable: true }
}

impl KafkaConsumer {
    pub(crate) fn subscribe(log: &KafkaLog, group: &str, topics: &[Topic]) -> Result<KafkaConsumer, LogError> {
        let config = log.config();
        let changed = Arc::new(AtomicBool::new(false));
        let consumer: BaseConsumer<RebalanceFlag> = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("session.timeout.ms", config.session_timeout.as_millis().to_string())
            .set("heartbeat.interval.ms", (config.session_timeout.as_millis() / 3).max(100).to_string())
            .set("max.poll.interval.ms", "300000")
            .create_with_context(RebalanceFlag { changed: changed.clone() })
            .map_err(backend)?;
        let mut lanes = HashMap::new();
        for topic in topics {
            for lane in Lane::for_topic(*topic) {
                lanes.insert(config.topic(*lane), *lane);
            }
        }
        let names: Vec<&str> = lanes.keys().map(String::as_str).collect();
        consumer.subscribe(&names).map_err(backend)?;
        Ok(KafkaConsumer { consumer: Arc::new(consumer), lanes, changed, source: log.source().to_owned() })
    }
}

#[async_trait]
impl LogConsumer for KafkaConsumer {
    async fn poll(&mut self, max_records: usize, max_wait: Duration) -> Result<Vec<Delivered>, LogError> {
        let consumer = self.consumer.clone();
        let lanes = self.lanes.clone();
        tokio::task::spawn_blocking(move || {
            let deadline = Instant::now() + max_wait;
            let mut out = Vec::new();
            while out.len() < max_records.max(1) {
                let wait = if out.is_empty() { deadline.saturating_duration_since(Instant::now()) } else { Duration::ZERO };
                let Some(polled) = consumer.poll(wait) else {
                    if out.is_empty() && Instant::now() < deadline {
                        continue;
                    }
                    break;
                };
                let message = match polled {
                    Ok(message) => message,
                    Err(err) => {
                        tracing::warn!(error = %err, "kafka poll error");
                        if out.is_empty() && Instant::now() < deadline {
                            continue;
                        }
                        break;
                    }
                };
                let Some(lane) = lanes.get(message.topic()).copied() else { continue };
                out.push(Delivered {
                    topic: lane.topic(),
                    partition: encode_partition(lane, message.partition()),
                    offset: message.offset().max(0) as u64,
                    key: message.key().map(Bytes::copy_from_slice).unwrap_or_default(),
                    payload: message.payload().map(Bytes::copy_from_slice).unwrap_or_default(),
                });
            }
            Ok(out)
        })
        .await
        .map_err(|_| LogError::Closed)?
    }

    async fn commit(&mut self, delivered: &[Delivered]) -> Result<(), LogError> {
        let mut next: HashMap<(String, i32), u64> = HashMap::new();
        let names: HashMap<Lane, String> = self.lanes.iter().map(|(name, lane)| (*lane, name.clone())).collect();
        for record in delivered {
            let Some((lane, partition)) = decode_partition(record.partition) else { continue };
            let Some(name) = names.get(&lane) else { continue };
            let entry = next.entry((name.clone(), partition)).or_insert(0);
            *entry = (*entry).max(record.offset + 1);
        }
        if next.is_empty() {
            return Ok(());
        }
        let mut list = TopicPartitionList::new();
        for ((topic, partition), offset) in next {
            list.add_partition_offset(&topic, partition, Offset::Offset(offset as i64)).map_err(backend)?;
        }
        let consumer = self.consumer.clone();
        tokio::task::spawn_blocking(move || consumer.commit(&list, CommitMode::Sync))
            .await
            .map_err(|_| LogError::Closed)?
            .map_err(backend)
    }

    fn lag(&self) -> Option<u64> {
        None
    }

    fn source(&self) -> &str {
        &self.source
    }

    fn rebalanced(&mut self) -> bool {
        self.changed.swap(false, Ordering::AcqRel)
    }
}
