//! Collector metrics: requests by status, events accepted/rejected by reason, latency.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crm_service::MetricsRegistry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    pub status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: String,
}

#[derive(Clone)]
pub struct IngestMetrics {
    pub requests: Family<StatusLabel, Counter>,
    pub accepted: Counter,
    pub rejected: Family<ReasonLabel, Counter>,
    /// Events dropped unrecorded because the visitor opted out (DNT/GPC) and the site honours it.
    pub ignored: Counter,
    pub latency: Histogram,
}

impl IngestMetrics {
    pub fn new(registry: &MetricsRegistry) -> IngestMetrics {
        let metrics = IngestMetrics {
            requests: Family::default(),
            accepted: Counter::default(),
            rejected: Family::default(),
            ignored: Counter::default(),
            latency: Histogram::new(exponential_buckets(0.0001, 2.0, 16)),
        };
        registry.register(|r| {
            r.register("ingest_requests", "Collector requests by response status", metrics.requests.clone());
            r.register("ingest_events_accepted", "Events appended to the event log", metrics.accepted.clone());
            r.register("ingest_events_rejected", "Events refused, by reason code", metrics.rejected.clone());
            r.register("ingest_events_ignored", "Events dropped unrecorded for a Do-Not-Track or Global Privacy Control signal the site honours", metrics.ignored.clone());
            r.register("ingest_request_duration_seconds", "Collector request latency", metrics.latency.clone());
        });
        metrics
    }

    pub fn reject(&self, reason: &str, count: u64) {
        self.rejected.get_or_create(&ReasonLabel { reason: reason.to_owned() }).inc_by(count);
    }
}
