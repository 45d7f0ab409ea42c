//! Gauges mirrored into `/metrics` at scrape time: the event log's figures, the allocator's
//! (jemalloc is `crm`'s global allocator, main.rs), and the embedded store's memory.

use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use crm_eventlog::EventLog;
use crm_service::MetricsRegistry;
use crm_store_embedded::ColumnarStore;
use prometheus_client::metrics::gauge::Gauge;

fn gauge() -> Gauge<u64, AtomicU64> {
    Gauge::default()
}

/// The event log's next offset, bytes on disk and queued appends.
pub fn event_log(metrics: &MetricsRegistry, log: Arc<dyn EventLog>) {
    let (next, bytes, queued) = (gauge(), gauge(), gauge());
    metrics.register(|r| {
        r.register("eventlog_next_offset", "Offset the next appended record gets", next.clone());
        r.register("eventlog_bytes", "Bytes the event log holds on disk", bytes.clone());
        r.register("eventlog_queued_appends", "Appends waiting for the log writer", queued.clone());
    });
    metrics.on_scrape(move || {
        let stats = log.stats();
        next.set(stats.next_offset);
        bytes.set(stats.bytes_on_disk);
        queued.set(stats.queued_appends as u64);
    });
}

/// The allocator's view of the process: bytes the program holds (`allocated`) against the
/// pages the allocator keeps resident for it (`resident`); the gap is fragmentation and
/// freed memory not yet returned to the system.
pub fn allocator(metrics: &MetricsRegistry) {
    let (allocated, resident) = (gauge(), gauge());
    metrics.register(|r| {
        r.register("allocator_allocated_bytes", "Bytes allocated by the program (jemalloc stats.allocated)", allocated.clone());
        r.register("allocator_resident_bytes", "Bytes in pages the allocator holds resident (jemalloc stats.resident)", resident.clone());
    });
    metrics.on_scrape(move || {
        // The statistics are cached until the epoch advances.
        if tikv_jemalloc_ctl::epoch::advance().is_ok() {
            allocated.set(tikv_jemalloc_ctl::stats::allocated::read().unwrap_or(0) as u64);
            resident.set(tikv_jemalloc_ctl::stats::resident::read().unwrap_or(0) as u64);
        }
    });
}

/// The embedded store's memory: profiles known and hot (whole, in memory), the estimated bytes
/// of the hot ones against `--profile-memory-mb`, and events waiting for a commit point.
pub fn embedded_store(metrics: &MetricsRegistry, store: ColumnarStore) {
    let (known, hot, hot_bytes, runs, buffered) = (gauge(), gauge(), gauge(), gauge(), gauge());
    metrics.register(|r| {
        r.register("store_profiles", "Visitor profiles the embedded store knows", known.clone());
        r.register("store_profiles_hot", "Profiles held whole in memory", hot.clone());
        r.register("store_profiles_hot_bytes", "Estimated bytes of the profiles held whole in memory", hot_bytes.clone());
        r.register("store_profile_runs", "Profile runs on disk", runs.clone());
        r.register("store_buffered_events", "Events acknowledged and waiting for a commit point", buffered.clone());
    });
    metrics.on_scrape(move || {
        let (k, h, b, r) = store.columnar().profile_memory();
        known.set(k as u64);
        hot.set(h as u64);
        hot_bytes.set(b as u64);
        runs.set(r as u64);
        buffered.set(store.columnar().buffered() as u64);
    });
}
