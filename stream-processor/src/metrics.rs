//! Processor metrics: events processed, duplicates skipped, dead letters, poison records, events
//! of erased subjects dropped, batch
//! latency, consumer lag and batches stored but not yet durable.

use std::sync::atomic::AtomicU64;

use crm_service::MetricsRegistry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

#[derive(Clone)]
pub struct ProcessorMetrics {
    pub events: Counter,
    pub duplicates: Counter,
    pub dead_letters: Counter,
    pub poison: Counter,
    pub erased: Counter,
    pub store_errors: Counter,
    pub batch_seconds: Histogram,
    pub lag: Gauge<u64, AtomicU64>,
    pub awaiting_durability: Gauge<u64, AtomicU64>,
}

impl ProcessorMetrics {
    pub fn new(registry: &MetricsRegistry) -> ProcessorMetrics {
        let metrics = ProcessorMetrics {
            events: Counter::default(),
            duplicates: Counter::default(),
            dead_letters: Counter::default(),
            poison: Counter::default(),
            erased: Counter::default(),
            store_errors: Counter::default(),
            batch_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 16)),
            lag: Gauge::default(),
            awaiting_durability: Gauge::default(),
        };
        registry.register(|r| {
            r.register("processor_events", "Events enriched and stored", metrics.events.clone());
            r.register("processor_duplicates", "Replayed events skipped by event_id", metrics.duplicates.clone());
            r.register("processor_dead_letters", "Dead letters stored", metrics.dead_letters.clone());
            r.register("processor_poison_records", "Log records that could not be decoded", metrics.poison.clone());
            r.register("processor_events_erased", "Events and dead letters of erased data subjects dropped (tombstones)", metrics.erased.clone());
            r.register("processor_store_errors", "Failed store writes (retried)", metrics.store_errors.clone());
            r.register("processor_batch_duration_seconds", "Time to process and store one batch", metrics.batch_seconds.clone());
            r.register("eventlog_consumer_lag", "Records appended but not yet committed by the processor", metrics.lag.clone());
            r.register(
                "processor_batches_awaiting_durability",
                "Batches the store acknowledged whose log position waits for the store to make them durable",
                metrics.awaiting_durability.clone(),
            );
        });
        metrics
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, prometheus_client::encoding::EncodeLabelSet)]
pub struct OutcomeLabel {
    pub outcome: &'static str,
}

/// Alert webhook deliveries: every attempt by outcome (`delivered`, `retrying` after a refused
/// or failed attempt, `failed` when the last attempt failed or the rule is gone) and its time.
#[derive(Clone)]
pub struct WebhookMetrics {
    pub attempts: prometheus_client::metrics::family::Family<OutcomeLabel, Counter>,
    pub seconds: Histogram,
}

impl WebhookMetrics {
    pub fn new(registry: &MetricsRegistry) -> WebhookMetrics {
        let metrics = WebhookMetrics { attempts: Default::default(), seconds: Histogram::new(exponential_buckets(0.005, 2.0, 14)) };
        registry.register(|r| {
            r.register("webhook_delivery_attempts", "Alert webhook delivery attempts by outcome", metrics.attempts.clone());
            r.register("webhook_delivery_duration_seconds", "Time of one webhook delivery attempt (request to answer or error)", metrics.seconds.clone());
        });
        metrics
    }

    pub(crate) fn attempted(&self, outcome: &'static str, seconds: f64) {
        self.attempts.get_or_create(&OutcomeLabel { outcome }).inc();
        self.seconds.observe(seconds);
    }
}
