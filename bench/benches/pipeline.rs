//! Microbenchmarks of the per-event hot paths: decode + validate, user-agent parsing (cold and
//! cached), geo lookup (DB-IP City Lite when `CRM_BENCH_MMDB` points at it), enrichment +
//! sessionisation + scoring, the embedded log append and the embedded store write path.
//!
//! `cargo bench -p crm-bench --bench pipeline`; `scripts/bench.sh` runs it and records results.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use criterion::{black_box, criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use crm_bench::{BeaconGen, USER_AGENTS};
use crm_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, Record, Topic};
use crm_schemas::{parse_event, CollectedEvent, Limits, Site, VisitorProfile, WireEvent};
use crm_store::prelude::*;
use crm_store::{EmbeddedStore, WriteBatch};
use crm_store_embedded::ColumnarStore;
use crm_stream_processor::{apply_event, Enricher, GeoLookup, IpStorage, SiteRules, UserAgentParser};

const NOW: i64 = 1_795_478_400_000;

fn events(count: usize) -> Vec<String> {
    events_at(count, 7, NOW)
}

fn events_at(count: usize, seed: u64, now_ms: i64) -> Vec<String> {
    let mut generator = BeaconGen::new("bench", 10_000, seed);
    (0..count).map(|_| generator.event(now_ms).to_string()).collect()
}

fn decode(c: &mut Criterion) {
    let bodies = events(1000);
    let limits = Limits::default();
    let mut group = c.benchmark_group("decode");
    group.throughput(Throughput::Elements(bodies.len() as u64));
    group.bench_function("parse_and_validate_event", |b| {
        b.iter(|| {
            for body in &bodies {
                black_box(parse_event(body, &limits).expect("valid"));
            }
        })
    });
    group.finish();
}

fn user_agents(c: &mut Criterion) {
    let mut group = c.benchmark_group("user_agent");
    group.throughput(Throughput::Elements(USER_AGENTS.len() as u64));
    let parser = UserAgentParser::default();
    group.bench_function("parse_uncached", |b| {
        b.iter(|| {
            for ua in USER_AGENTS {
                black_box(parser.parse_uncached(ua));
            }
        })
    });
    // The bot lists alone, beside the 35 markers they replaced (the baseline, same process).
    let lists = crm_bots::Detector::builtin();
    group.bench_function("bot_lists", |b| {
        b.iter(|| {
            for ua in USER_AGENTS {
                black_box(lists.check(ua));
            }
        })
    });
    let legacy = crm_bots::Detector::new(&crm_bots::LEGACY_MARKERS.join("\n"), "", "").expect("the legacy markers build");
    group.bench_function("bot_legacy_markers", |b| {
        b.iter(|| {
            for ua in USER_AGENTS {
                black_box(legacy.check(ua));
            }
        })
    });
    let mut cached = UserAgentParser::default();
    group.bench_function("parse_cached", |b| {
        b.iter(|| {
            for ua in USER_AGENTS {
                black_box(cached.parse(ua));
            }
        })
    });
    group.finish();
}

fn geo(c: &mut Criterion) {
    let Ok(path) = std::env::var("CRM_BENCH_MMDB") else {
        eprintln!("geo/lookup skipped: set CRM_BENCH_MMDB to a DB-IP City Lite mmdb (scripts/bench.sh does)");
        return;
    };
    let geo = GeoLookup::open(&[std::path::Path::new(&path)], &[]).expect("open mmdb");
    let ips: Vec<IpAddr> = (0..1000u32).map(|i| IpAddr::from((i.wrapping_mul(2_654_435_761)).to_be_bytes())).collect();
    let mut group = c.benchmark_group("geo");
    group.throughput(Throughput::Elements(ips.len() as u64));
    group.bench_function("lookup_dbip_city_lite", |b| {
        b.iter(|| {
            for ip in &ips {
                black_box(geo.lookup(*ip));
            }
        })
    });
    group.finish();
}

fn collected(bodies: &[String]) -> Vec<(crm_schemas::Event, CollectedEvent)> {
    let limits = Limits::default();
    bodies
        .iter()
        .map(|body| {
            let wire: WireEvent = serde_json::from_str(body).expect("wire");
            let visitor = visitor_number(wire.visitor_id.as_deref()) as usize;
            // As the processor decodes a log record: the wire event moves out into validation.
            let collected = CollectedEvent {
                event: WireEvent::default(),
                received_at_ms: NOW,
                // A visitor keeps its browser and address, as real traffic does.
                ip: Some(visitor_ip(visitor as u32).to_string()),
                user_agent: Some(USER_AGENTS[visitor % USER_AGENTS.len()].to_owned()),
            };
            (wire.validate(&limits).expect("valid"), collected)
        })
        .collect()
}

/// The number in a generated visitor id (`bench-42`).
fn visitor_number(visitor: Option<&str>) -> u32 {
    visitor.and_then(|v| v.rsplit('-').next()).and_then(|n| n.parse::<u32>().ok()).unwrap_or(0)
}

/// A visitor's address: fixed per visitor (as a browser's beacons come from one address),
/// spread over the whole IPv4 space so geo lookups walk different parts of the database.
fn visitor_ip(visitor: u32) -> IpAddr {
    IpAddr::from(visitor.wrapping_mul(2_654_435_761).to_be_bytes())
}

fn enrich_and_score(c: &mut Criterion) {
    let inputs = collected(&events(10_000));
    let site = SiteRules::new(&Site::new("bench", "Bench", 0));
    let geo = match std::env::var("CRM_BENCH_MMDB") {
        Ok(path) => GeoLookup::open(&[std::path::Path::new(&path)], &[]).expect("open mmdb"),
        Err(_) => GeoLookup::disabled(),
    };
    let mut enricher = Enricher::new(geo, IpStorage::Anonymized);
    // The processor keeps visitor profiles cached between batches, so the measured batch meets
    // the state a running processor has: profiles of earlier traffic (ten minutes before, open
    // sessions) for about two thirds of its visitors, new visitors for the rest.
    let mut warm: HashMap<String, VisitorProfile> = HashMap::with_capacity(20_000);
    for (event, raw) in collected(&events_at(10_000, 8, NOW - 600_000)) {
        let (mut stored, facts) = enricher.enrich(event, &raw);
        apply_event(warm.entry(stored.visitor_id.clone()).or_default(), &mut stored, &site, &facts);
    }
    let mut group = c.benchmark_group("processor");
    group.throughput(Throughput::Elements(inputs.len() as u64));
    group.bench_function("enrich_sessionise_score", |b| {
        b.iter_batched(
            || (inputs.clone(), warm.clone(), Vec::with_capacity(inputs.len())),
            |(inputs, mut profiles, mut batch)| {
                for (event, raw) in inputs {
                    let (mut stored, facts) = enricher.enrich(event, &raw);
                    let profile = profiles.entry(stored.visitor_id.clone()).or_default();
                    black_box(apply_event(profile, &mut stored, &site, &facts));
                    batch.push(stored);
                }
                // Returned, so criterion drops them after timing: in the processor the batch
                // goes to the store write and the profiles stay cached.
                (profiles, batch)
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn log_append(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let log: Arc<dyn EventLog> = Arc::new(EmbeddedLog::open(EmbeddedLogConfig::new(dir.path())).expect("log"));
    let payload = Bytes::from(events(1).remove(0));
    let mut group = c.benchmark_group("event_log");
    group.throughput(Throughput::Elements(100));
    group.bench_function("append_100_fsync", |b| {
        b.iter(|| {
            let records: Vec<Record> = (0..100).map(|_| Record::new(Topic::Events, Bytes::from_static(b"k"), payload.clone())).collect();
            runtime.block_on(log.append(records)).expect("append");
        })
    });
    group.finish();
    runtime.block_on(log.shutdown()).expect("shutdown");
}

/// What the processor writes for `n` fresh events (new ids every batch, as live traffic has):
/// the enriched events, their sessions and the visitors' profiles.
fn processor_batch(enricher: &mut Enricher, site: &SiteRules, n: usize) -> WriteBatch {
    let mut generator = BeaconGen::new("bench", 2_000, rand_seed());
    let fresh: Vec<String> = (0..n).map(|_| generator.event(NOW).to_string()).collect();
    let mut profiles: HashMap<String, VisitorProfile> = HashMap::new();
    let mut batch = WriteBatch::default();
    for (event, raw) in collected(&fresh) {
        let (mut stored, facts) = enricher.enrich(event, &raw);
        let profile = profiles.entry(stored.visitor_id.clone()).or_default();
        batch.sessions.extend(apply_event(profile, &mut stored, site, &facts));
        batch.events.push(stored);
    }
    batch.sessions.extend(profiles.values().filter_map(|p| p.current_session.clone()));
    batch.visitors = profiles.into_values().collect();
    batch
}

fn store_write(c: &mut Criterion) {
    let runtime = tokio::runtime::Runtime::new().expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let store = EmbeddedStore::open(dir.path()).expect("store");
    let site = SiteRules::new(&Site::new("bench", "Bench", 0));
    let mut enricher = Enricher::new(GeoLookup::disabled(), IpStorage::Anonymized);
    let bodies = events(1000);
    let mut group = c.benchmark_group("store");
    group.throughput(Throughput::Elements(bodies.len() as u64));
    group.bench_function("write_batch_1000_events", |b| {
        b.iter_batched(
            || processor_batch(&mut enricher, &site, bodies.len()),
            |batch| runtime.block_on(store.write(batch.into())).expect("write"),
            BatchSize::LargeInput,
        )
    });
    // The same batches through the second design (issue 17): acknowledged into memory, with a
    // commit point (Parquet parts, profile run, manifest fsync) every 50 batches, its cost
    // spread over them as in a running processor.
    let columnar_dir = tempfile::tempdir().expect("tempdir");
    let columnar = runtime.block_on(async { ColumnarStore::open(columnar_dir.path()) }).expect("columnar store");
    let mut offset = 0u64;
    group.bench_function("write_batch_1000_events_columnar", |b| {
        b.iter_batched(
            || {
                let mut batch = processor_batch(&mut enricher, &site, bodies.len());
                offset += 1;
                batch.log_positions.insert("bench/events/0".into(), offset);
                (batch, offset)
            },
            |(batch, offset)| {
                runtime.block_on(columnar.write(batch.into())).expect("write");
                if offset % 50 == 0 {
                    runtime.block_on(columnar.commit_point()).expect("commit point");
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

fn rand_seed() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(1)
}

fn quick() -> Criterion {
    Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(3)).sample_size(20)
}

criterion_group! {
    name = pipeline;
    config = quick();
    targets = decode, user_agents, geo, enrich_and_score, log_append, store_write
}
criterion_main!(pipeline);

