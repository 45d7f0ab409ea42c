//! Store benchmark: bulk-writes N enriched events (with their sessions) through the `Store`
//! trait, then times the analytics overview over the whole range. Runs against the embedded
//! store and, with `--clickhouse-url`, ClickHouse — same data, same process, same machine.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use crm_bench::{BeaconGen, Latency};
use crm_schemas::{CollectedEvent, Limits, Site, WireEvent};
use crm_store::{EmbeddedStore, Store, WriteBatch};
use crm_store_clickhouse::{ClickHouseConfig, ClickHouseStore};
use crm_stream_processor::{apply_event, Enricher, GeoLookup, IpStorage, SiteRules};
use serde::Serialize;

#[derive(Parser)]
struct Args {
    /// Events to write.
    #[arg(long, env = "STORE_BENCH_EVENTS", default_value_t = 1_000_000)]
    events: usize,
    #[arg(long, env = "STORE_BENCH_BATCH", default_value_t = 10_000)]
    batch: usize,
    /// Benchmark the embedded store in this directory.
    #[arg(long, env = "STORE_BENCH_EMBEDDED_DIR")]
    embedded_dir: Option<std::path::PathBuf>,
    /// Benchmark ClickHouse at this URL (a fresh database is created).
    #[arg(long, env = "STORE_BENCH_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    #[arg(long, env = "STORE_BENCH_QUERIES", default_value_t = 20)]
    queries: usize,
}

#[derive(Serialize)]
struct Report {
    store: &'static str,
    events: usize,
    seconds: f64,
    rows_per_sec: f64,
    overview: Latency,
}

const DAY: i64 = 86_400_000;
const START: i64 = 1_795_478_400_000 - 30 * DAY;

/// Builds one batch of enriched events spread over 30 days, with their sessions.
fn batch(generator: &mut BeaconGen, enricher: &mut Enricher, rules: &SiteRules, first: usize, count: usize, total: usize) -> WriteBatch {
    let limits = Limits::default();
    let mut profiles = std::collections::HashMap::new();
    let mut out = WriteBatch::default();
    for i in first..first + count {
        let ts = START + (i as i64 * 30 * DAY) / total as i64;
        let mut value = generator.event(ts);
        value["site_id"] = "bench".into();
        let wire: WireEvent = serde_json::from_value(value).expect("wire");
        let collected = CollectedEvent { event: wire.clone(), received_at_ms: ts, ip: Some("81.2.69.1".into()), user_agent: Some(crm_bench::USER_AGENTS[i % 5].into()) };
        let (mut stored, facts) = enricher.enrich(wire.validate(&limits).expect("valid"), &collected);
        let profile = profiles.entry(stored.visitor_id.clone()).or_insert_with(crm_schemas::VisitorProfile::default);
        out.sessions.extend(apply_event(profile, &mut stored, rules, &facts));
        out.events.push(stored);
    }
    out.sessions.extend(profiles.values().filter_map(|p| p.current_session.clone()));
    out
}

async fn run(name: &'static str, store: Arc<dyn Store>, args: &Args) -> Result<Report> {
    store.put_site(&Site::new("bench", "Bench", 0)).await?;
    let rules = SiteRules::new(&Site::new("bench", "Bench", 0));
    let mut enricher = Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized);
    let mut generator = BeaconGen::new("bench", 200_000, 3);
    let mut written = 0;
    let mut write_seconds = 0.0;
    while written < args.events {
        let count = args.batch.min(args.events - written);
        let prepared = batch(&mut generator, &mut enricher, &rules, written, count, args.events);
        let started = Instant::now();
        store.write(prepared.into()).await?;
        write_seconds += started.elapsed().as_secs_f64();
        written += count;
    }
    let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?;
    for _ in 0..args.queries.max(1) {
        let started = Instant::now();
        let overview = store.overview("bench", START, START + 31 * DAY, 10).await?;
        histogram.saturating_record(started.elapsed().as_micros().max(1) as u64);
        assert!(overview.pageviews > 0);
    }
    Ok(Report { store: name, events: written, seconds: write_seconds, rows_per_sec: written as f64 / write_seconds, overview: Latency::from_histogram(&histogram) })
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    if let Some(dir) = &args.embedded_dir {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir)?);
        println!("{}", serde_json::to_string(&run("embedded", store, &args).await?)?);
    }
    if let Some(url) = &args.clickhouse_url {
        let database = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let store: Arc<dyn Store> = Arc::new(ClickHouseStore::connect(&ClickHouseConfig::new(url, database)).await?);
        println!("{}", serde_json::to_string(&run("clickhouse", store, &args).await?)?);
    }
    Ok(())
}
