//! Store benchmark: bulk-writes N enriched events (with their sessions) through the `Store`
//! trait, then times the analytics overview over the whole range, the growth reports with
//! `--reports`, and visitor timelines. Runs
//! against the embedded store (`--embedded-dir`: crm-store-embedded's buffer, commit points and
//! Parquet parts), its first design (`--redb-dir`) and ClickHouse (`--clickhouse-url`): same
//! data, same process, same machine (with `--events-only`, sessions are left out of every
//! store's batches).

use std::sync::Arc;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use crm_bench::{BeaconGen, Latency};
use crm_schemas::{CollectedEvent, Limits, Site, WireEvent};
use crm_store::{EmbeddedStore, Store, WriteBatch};
use crm_store_clickhouse::{ClickHouseConfig, ClickHouseStore};
use crm_store_embedded::ColumnarStore;
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
    /// Benchmark the embedded store's first design (one redb file) in this directory.
    #[arg(long, env = "STORE_BENCH_REDB_DIR")]
    redb_dir: Option<std::path::PathBuf>,
    /// Benchmark ClickHouse at this URL (a fresh database is created).
    #[arg(long, env = "STORE_BENCH_CLICKHOUSE_URL")]
    clickhouse_url: Option<String>,
    #[arg(long, env = "STORE_BENCH_QUERIES", default_value_t = 20)]
    queries: usize,
    /// Events between two commit points of the embedded store (50 000 = one a second at 50 K/s).
    #[arg(long, env = "STORE_BENCH_COMMIT_EVERY", default_value_t = 50_000)]
    commit_every: usize,
    /// Leave sessions out of the batches.
    #[arg(long, env = "STORE_BENCH_EVENTS_ONLY")]
    events_only: bool,
    /// Visitor timelines to time per store (50 newest events each).
    #[arg(long, env = "STORE_BENCH_TIMELINES", default_value_t = 1_000)]
    timelines: usize,
    /// Also time the growth reports over the whole range, `--queries` times each, after the
    /// overview (their baseline in the same run): a 4-step funnel, weekly retention, two goals
    /// with sources, and the paths of a page.
    #[arg(long, env = "STORE_BENCH_REPORTS")]
    reports: bool,
    /// Days the events are spread over (ending 2026-11-24).
    #[arg(long, env = "STORE_BENCH_DAYS", default_value_t = 30, value_parser = clap::value_parser!(i64).range(1..=365))]
    days: i64,
    /// Distinct visitors the events are drawn from (uniformly).
    #[arg(long, env = "STORE_BENCH_VISITORS", default_value_t = 200_000)]
    visitors: u32,
    /// Weekly cohorts of the retention report, the first one the week holding the first event.
    #[arg(long, env = "STORE_BENCH_COHORTS", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=26))]
    cohorts: u32,
}

impl Args {
    /// The first event's time; the last comes `days` later.
    fn start(&self) -> i64 {
        END - self.days * DAY
    }
}

#[derive(Serialize)]
struct Reports {
    funnel: Latency,
    retention: Latency,
    goals: Latency,
    paths: Latency,
    /// The answers, compared across the stores of one run.
    #[serde(skip)]
    answers: (crm_store::growth::FunnelReport, crm_store::growth::RetentionReport, Vec<crm_store::goals::GoalFigures>),
}

#[derive(Serialize)]
struct Report {
    store: &'static str,
    events: usize,
    seconds: f64,
    rows_per_sec: f64,
    overview: Latency,
    timeline: Latency,
    /// Embedded store: merging the written parts until no group has more to merge.
    #[serde(skip_serializing_if = "Option::is_none")]
    compact_seconds: Option<f64>,
    /// Embedded store: the overview scanning the merged parts, before the day rollups exist
    /// (what an overview of days not rolled up yet, such as today, costs per event).
    #[serde(skip_serializing_if = "Option::is_none")]
    overview_scan: Option<Latency>,
    /// Embedded store: building the rollups of the closed days (`crm up` does it after merging).
    #[serde(skip_serializing_if = "Option::is_none")]
    rollup_seconds: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reports: Option<Reports>,
}

/// Visitors to time timelines for: every n-th written event's visitor.
fn sample_visitors(batch: &WriteBatch, every: usize, out: &mut Vec<String>) {
    out.extend(batch.events.iter().step_by(every.max(1)).map(|e| e.visitor_id.clone()));
}

fn new_histogram() -> Result<hdrhistogram::Histogram<u64>> {
    Ok(hdrhistogram::Histogram::<u64>::new_with_bounds(1, 600_000_000, 3)?)
}

const DAY: i64 = 86_400_000;
const END: i64 = 1_795_478_400_000;

/// Builds one batch of enriched events spread evenly over `--days`, with their sessions.
fn batch(generator: &mut BeaconGen, enricher: &mut Enricher, rules: &SiteRules, first: usize, count: usize, args: &Args) -> WriteBatch {
    let (start, total) = (args.start(), args.events);
    let limits = Limits::default();
    let mut profiles = std::collections::HashMap::new();
    let mut out = WriteBatch::default();
    for i in first..first + count {
        let ts = start + (i as i64 * args.days * DAY) / total as i64;
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

/// Writes and queries one store. With `embedded` (the embedded store), the batches carry log positions (so writes are
/// acknowledged into memory, as from the processor) and a commit point runs every
/// `--commit-every` events and at the end, inside the write time.
async fn run(name: &'static str, store: Arc<dyn Store>, embedded: Option<&ColumnarStore>, args: &Args) -> Result<Report> {
    store.put_site(&Site::new("bench", "Bench", 0)).await?;
    let rules = SiteRules::new(&Site::new("bench", "Bench", 0));
    let mut enricher = Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized);
    let mut generator = BeaconGen::new("bench", args.visitors, 3);
    let (mut written, mut since_commit, mut write_seconds) = (0, 0, 0.0);
    let mut visitors = Vec::new();
    while written < args.events {
        let count = args.batch.min(args.events - written);
        let mut prepared = batch(&mut generator, &mut enricher, &rules, written, count, args);
        if args.events_only {
            prepared.sessions.clear();
        }
        sample_visitors(&prepared, args.events / args.timelines.max(1), &mut visitors);
        if embedded.is_some() {
            prepared.log_positions.insert("bench/events/0".into(), (written + count) as u64);
        }
        let started = Instant::now();
        store.write(prepared.into()).await?;
        if let Some(embedded) = embedded {
            since_commit += count;
            if since_commit >= args.commit_every || written + count == args.events {
                embedded.commit_point().await?;
                since_commit = 0;
            }
        }
        write_seconds += started.elapsed().as_secs_f64();
        written += count;
    }
    // The embedded store merges its parts in the background as it runs (`crm up` every minute);
    // queries are timed on the merged parts, as a store that has been up a while has them.
    let (mut compact_seconds, mut overview_scan, mut rollup_seconds) = (None, None, None);
    if let Some(embedded) = embedded {
        let started = Instant::now();
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        while embedded.columnar().compact(now, crm_store_embedded::store::Maintenance::default().compact_min_parts)?.groups > 0 {}
        compact_seconds = Some(started.elapsed().as_secs_f64());
        let scanned = time_overviews(&store, args).await?;
        let started = Instant::now();
        let built = embedded.columnar().build_rollups(now).await?;
        rollup_seconds = Some(started.elapsed().as_secs_f64());
        anyhow::ensure!(built > 0, "no day was rolled up");
        overview_scan = Some(scanned);
    }
    let (overview, answer) = time_overviews(&store, args).await?;
    if let Some((_, scanned)) = &overview_scan {
        anyhow::ensure!(scanned == &answer, "the overview from rollups differs from the scanned one");
    }
    let reports = match args.reports {
        true => Some(time_reports(&store, args).await?),
        false => None,
    };
    let mut timeline = new_histogram()?;
    for visitor in &visitors {
        let started = Instant::now();
        let page = store.visitor_events("bench", visitor, 50, None).await?;
        timeline.saturating_record(started.elapsed().as_micros().max(1) as u64);
        assert!(!page.items.is_empty());
    }
    Ok(Report {
        store: name,
        events: written,
        seconds: write_seconds,
        rows_per_sec: written as f64 / write_seconds,
        overview,
        timeline: Latency::from_histogram(&timeline),
        compact_seconds,
        overview_scan: overview_scan.map(|(latency, _)| latency),
        rollup_seconds,
        reports,
    })
}

/// `queries` runs of one report.
async fn time<T, F: std::future::Future<Output = crm_store::Result<T>>>(queries: usize, mut run: impl FnMut() -> F) -> Result<Latency> {
    let mut histogram = new_histogram()?;
    for _ in 0..queries.max(1) {
        let started = Instant::now();
        run().await?;
        histogram.saturating_record(started.elapsed().as_micros().max(1) as u64);
    }
    Ok(Latency::from_histogram(&histogram))
}

/// The growth reports over the whole range (every store gets the same specs).
async fn time_reports(store: &Arc<dyn Store>, args: &Args) -> Result<Reports> {
    use crm_schemas::{Goal, GoalMatch};
    use crm_store::growth::{self, CohortStart, EventMatch, FunnelOrder, FunnelSpec, Period, RetentionSpec};
    let (from, to, queries) = (args.start(), END + DAY, args.queries);
    let steps = ["page:/", "page:/pricing", "page:/demo", "page:/contact"].map(|s| EventMatch::parse(s).expect("step")).to_vec();
    let funnel = FunnelSpec { steps, window_ms: 7 * DAY, order: FunnelOrder::Ordered };
    let reached = growth::funnel_report(&**store, "bench", from, to, &funnel).await?;
    anyhow::ensure!(reached.steps[3].visitors > 0, "no visitor finished the funnel");
    let retention = RetentionSpec { period: Period::Week, start_ms: Period::Week.start_of(from), cohorts: args.cohorts, start: CohortStart::Event(EventMatch::Page("*".into())), return_on: EventMatch::Any };
    let cohorts = growth::retention_report(&**store, "bench", &retention).await?;
    anyhow::ensure!(cohorts.cohorts.iter().any(|c| c.returning.get(1).is_some_and(|&n| n > 0)), "no cohort has returning visitors");
    let goal = |id: &str, pattern: &str| Goal { goal_id: id.into(), name: id.into(), target: GoalMatch::Page { pattern: pattern.into() } };
    let goals = [goal("demo", "/demo"), goal("contact", "/contact*")];
    let (_, converted) = crm_store::goals::goals_report(&**store, "bench", from, to, &goals, Some(10)).await?;
    anyhow::ensure!(converted.iter().all(|g| g.conversions > 0), "a goal converted nobody");
    Ok(Reports {
        funnel: time(queries, || growth::funnel_report(&**store, "bench", from, to, &funnel)).await?,
        retention: time(queries, || growth::retention_report(&**store, "bench", &retention)).await?,
        goals: time(queries, || crm_store::goals::goals_report(&**store, "bench", from, to, &goals, Some(10))).await?,
        paths: time(queries, || store.page_paths("bench", from, to, "/pricing", 10)).await?,
        answers: (reached, cohorts, converted),
    })
}

/// The overview over the whole range, `queries` times; also checks the answers agree.
async fn time_overviews(store: &Arc<dyn Store>, args: &Args) -> Result<(Latency, crm_store::Overview)> {
    let queries = args.queries;
    let mut histogram = new_histogram()?;
    let mut first = None;
    for _ in 0..queries.max(1) {
        let started = Instant::now();
        let overview = store.overview("bench", args.start(), END + DAY, 10).await?;
        histogram.saturating_record(started.elapsed().as_micros().max(1) as u64);
        anyhow::ensure!(overview.pageviews > 0, "the overview counted no pageviews");
        anyhow::ensure!(first.get_or_insert_with(|| overview.clone()) == &overview, "two runs of the same overview differ");
    }
    Ok((Latency::from_histogram(&histogram), first.expect("at least one run")))
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut reports = Vec::new();
    if let Some(dir) = &args.embedded_dir {
        let embedded = ColumnarStore::open(dir)?;
        reports.push(run("embedded", Arc::new(embedded.clone()), Some(&embedded), &args).await?);
        println!("{}", serde_json::to_string(reports.last().expect("pushed"))?);
    }
    if let Some(dir) = &args.redb_dir {
        let store: Arc<dyn Store> = Arc::new(EmbeddedStore::open(dir)?);
        reports.push(run("redb", store, None, &args).await?);
        println!("{}", serde_json::to_string(reports.last().expect("pushed"))?);
    }
    if let Some(url) = &args.clickhouse_url {
        let database = format!("bench_{}", uuid::Uuid::new_v4().simple());
        let store: Arc<dyn Store> = Arc::new(ClickHouseStore::connect(&ClickHouseConfig::new(url, database)).await?);
        reports.push(run("clickhouse", store, None, &args).await?);
        println!("{}", serde_json::to_string(reports.last().expect("pushed"))?);
    }
    // The same events went into every store: their growth reports must be the same.
    let answers: Vec<_> = reports.iter().filter_map(|r| r.reports.as_ref().map(|g| (r.store, &g.answers))).collect();
    for pair in answers.windows(2) {
        anyhow::ensure!(pair[0].1 == pair[1].1, "the funnel, retention or goals of {} differ from {}'s", pair[1].0, pair[0].0);
    }
    Ok(())
}
