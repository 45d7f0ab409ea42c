//! [`KafkaLog`]: topic setup, the idempotent producer and routing (live, historical, overflow,
//! dead letters), and consumer creation.

use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use async_trait::async_trait;
use crm_eventlog::{EventLog, LogConsumer, LogError, LogStats, Record, Topic};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};
use parking_lot::Mutex;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode as ErrorCode;

use crate::config::{KafkaConfig, Lane};
use crate::consumer::KafkaConsumer;

pub struct KafkaLog {
    config: KafkaConfig,
    producer: FutureProducer,
    overflow: Option<DefaultKeyedRateLimiter<Vec<u8>>>,
    source: String,
    last_error: Mutex<Option<(Instant, String)>>,
    appended: AtomicU64,
}

/// Creates the log's topics, accepting those that already exist.
async fn create_topics(config: &KafkaConfig) -> Result<(), LogError> {
    let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
        .set("bootstrap.servers", &config.brokers)
        .create()
        .map_err(|e| backend(e, false))?;
    let names = config.topic_names();
    let topics: Vec<NewTopic> =
        names.iter().map(|name| NewTopic::new(name, config.partitions, TopicReplication::Fixed(config.replication))).collect();
    let results = admin
        .create_topics(&topics, &AdminOptions::new().operation_timeout(Some(Duration::from_secs(10))))
        .await
        .map_err(|e| backend(e, true))?;
    for result in results {
        match result {
            Ok(_) | Err((_, ErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(LogError::Backend { message: format!("creating topic {topic}: {code}"), retryable: true });
            }
        }
    }
    Ok(())
}

/// How long a delivery error keeps `/readyz` red after the last one.
const UNHEALTHY_FOR: Duration = Duration::from_secs(5);

fn backend(err: KafkaError, retryable: bool) -> LogError {
    LogError::Backend { message: err.to_string(), retryable }
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl KafkaLog {
    /// Creates the topics if missing and the producer.
    pub async fn connect(config: KafkaConfig) -> Result<KafkaLog, LogError> {
        if config.create_topics {
            create_topics(&config).await?;
        }
        let producer: FutureProducer = ClientConfig::new()
            .set("bootstrap.servers", &config.brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", config.linger.as_millis().to_string())
            .set("batch.size", config.batch_bytes.to_string())
            .set("compression.type", config.compression.as_str())
            .set("message.timeout.ms", config.delivery_timeout.as_millis().to_string())
            .set("queue.buffering.max.messages", config.max_queued_records.to_string())
            .create()
            .map_err(|e| backend(e, false))?;
        // Blocks briefly once at start; the cluster id names the log instance.
        let cluster_id = producer.client().fetch_cluster_id(Duration::from_secs(10)).unwrap_or_else(|| config.brokers.clone());
        let source = format!("kafka:{cluster_id}:{}", config.topic_prefix);
        let overflow = config.overflow_rate.map(|rate: NonZeroU32| {
            RateLimiter::keyed(Quota::per_second(rate).allow_burst(rate.saturating_mul(NonZeroU32::new(2).expect("2"))))
        });
        tracing::info!(brokers = %config.brokers, prefix = %config.topic_prefix, "kafka event log connected");
        Ok(KafkaLog { config, producer, overflow, source, last_error: Mutex::new(None), appended: AtomicU64::new(0) })
    }

    /// Which Kafka topic a record goes to, and whether it keeps its key.
    fn route(&self, record: &Record, now_ms: i64) -> (Lane, bool) {
        if record.topic == Topic::DeadLetters {
            return (Lane::DeadLetters, true);
        }
        if let Some(event_ms) = record.event_time_ms {
            if now_ms - event_ms > self.config.historical_after.as_millis() as i64 {
                return (Lane::Historical, true);
            }
        }
        if let Some(limiter) = &self.overflow {
            if limiter.check_key(&record.key.to_vec()).is_err() {
                return (Lane::Overflow, false);
            }
        }
        (Lane::Events, true)
    }

    fn note_error(&self, message: String) {
        *self.last_error.lock() = Some((Instant::now(), message));
    }

    pub(crate) fn config(&self) -> &KafkaConfig {
        &self.config
    }

    pub(crate) fn source(&self) -> &str {
        &self.source
    }
}

#[async_trait]
impl EventLog for KafkaLog {
    async fn append(&self, records: Vec<Record>) -> Result<(), LogError> {
        let now = now_ms();
        let mut deliveries = Vec::with_capacity(records.len());
        for record in &records {
            let (lane, keyed) = self.route(record, now);
            let topic = self.config.topic(lane);
            let mut message = FutureRecord::to(&topic).payload(&record.payload[..]);
            if keyed {
                message = message.key(&record.key[..]);
            }
            match self.producer.send_result(message) {
                Ok(delivery) => deliveries.push(delivery),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    return Err(LogError::Backpressure { queued: self.producer.in_flight_count().max(0) as usize });
                }
                Err((err, _)) => {
                    self.note_error(err.to_string());
                    return Err(backend(err, true));
                }
            }
        }
        for delivery in deliveries {
            match delivery.await {
                Ok(Ok(_)) => {}
                Ok(Err((err, _))) => {
                    self.note_error(err.to_string());
                    return Err(backend(err, true));
                }
                Err(_) => return Err(LogError::Closed),
            }
        }
        self.appended.fetch_add(records.len() as u64, Ordering::Relaxed);
        Ok(())
    }

    async fn subscribe(&self, group: &str, topics: &[Topic]) -> Result<Box<dyn LogConsumer>, LogError> {
        let consumer = KafkaConsumer::subscribe(self, group, topics)?;
        Ok(Box::new(consumer))
    }

    fn stats(&self) -> LogStats {
        let unavailable = match &*self.last_error.lock() {
            Some((at, message)) if at.elapsed() < UNHEALTHY_FOR => Some(format!("kafka delivery failed: {message}")),
            _ => None,
        };
        LogStats {
            next_offset: self.appended.load(Ordering::Relaxed),
            bytes_on_disk: 0,
            queued_appends: self.producer.in_flight_count().max(0) as usize,
            unavailable,
        }
    }

    async fn shutdown(&self) -> Result<(), LogError> {
        let producer = self.producer.clone();
        tokio::task::spawn_blocking(move || producer.flush(Duration::from_secs(10)))
            .await
            .map_err(|_| LogError::Closed)?
            .map_err(|e| backend(e, true))?;
        tracing::info!("kafka producer flushed");
        Ok(())
    }

    fn housekeeping(&self) {
        if let Some(limiter) = &self.overflow {
            limiter.retain_recent();
        }
    }
}
