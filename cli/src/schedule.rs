//! The batch jobs `crm up` runs on a timer (customer health and churn every
//! `--health-interval-mins`, retention hourly) and their metrics: runs by job and outcome, the
//! time each run took, and when each job last succeeded (alert on its age, not on one failure).

use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crm_service::{MetricsRegistry, Shutdown};
use crm_store::Store;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

use crate::app::{churn_all, health_all, BulkReader};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RunLabels {
    job: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabel {
    job: &'static str,
}

type Histograms = Family<JobLabel, Histogram, fn() -> Histogram>;

#[derive(Clone)]
pub struct JobMetrics {
    runs: Family<RunLabels, Counter>,
    seconds: Histograms,
    last_success: Family<JobLabel, Gauge<f64, AtomicU64>>,
}

impl JobMetrics {
    pub fn new(registry: &MetricsRegistry) -> JobMetrics {
        let metrics = JobMetrics {
            runs: Family::default(),
            seconds: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.01, 2.0, 16))),
            last_success: Family::default(),
        };
        registry.register(|r| {
            r.register("batch_job_runs", "Scheduled batch job runs by job and outcome (ok, error)", metrics.runs.clone());
            r.register("batch_job_duration_seconds", "Time one scheduled batch job run took", metrics.seconds.clone());
            r.register("batch_job_last_success_timestamp_seconds", "Unix time of each job's last successful run", metrics.last_success.clone());
        });
        metrics
    }

    fn record<T, E: std::fmt::Display>(&self, job: &'static str, started: Instant, result: &Result<T, E>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        self.runs.get_or_create(&RunLabels { job, outcome }).inc();
        self.seconds.get_or_create(&JobLabel { job }).observe(started.elapsed().as_secs_f64());
        if result.is_ok() {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64());
            self.last_success.get_or_create(&JobLabel { job }).set(now);
        }
    }
}

/// Health, then churn, every `interval` (the first run one interval after start).
pub fn spawn_health(store: Arc<dyn Store>, bulk: Option<BulkReader>, interval: Duration, metrics: JobMetrics, shutdown: Shutdown) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait() => return,
            }
            let started = Instant::now();
            let health = health_all(&store, bulk.as_ref(), None).await;
            metrics.record("health", started, &health);
            match health {
                Ok(results) => tracing::info!(accounts = results.len(), "scheduled health run done"),
                Err(err) => tracing::warn!(error = %err, "scheduled health run failed"),
            }
            let started = Instant::now();
            let churn = churn_all(&store, bulk.as_ref(), None).await;
            metrics.record("churn", started, &churn);
            match churn {
                Ok(runs) => tracing::info!(scored = runs.iter().map(|r| r.scored).sum::<usize>(), "scheduled churn run done"),
                Err(err) => tracing::warn!(error = %err, "scheduled churn run failed"),
            }
        }
    });
}

/// Each site's retention at start, then hourly.
pub fn spawn_retention(store: Arc<dyn Store>, metrics: JobMetrics, shutdown: Shutdown) {
    tokio::spawn(async move {
        loop {
            let started = Instant::now();
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
            let result = crm_batch_jobs::retention::apply(store.as_ref(), None, now).await;
            metrics.record("retention", started, &result);
            match result {
                Ok(sites) => tracing::debug!(sites = sites.len(), "scheduled retention run done"),
                Err(err) => tracing::warn!(error = %err, "scheduled retention run failed; retried in an hour"),
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(3_600)) => {}
                _ = shutdown.wait() => return,
            }
        }
    });
}
