//! Load generator: fires realistic beacons over keep-alive HTTP/1.1 connections, as fast as
//! possible or at a target rate, and reports throughput, an HdrHistogram of latency and the
//! answers by status. `--json` prints one machine-readable summary line.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use clap::Parser;
use crm_bench::{Beacon, BeaconGen, Latency, Mix};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1;
use hyper::Request;
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

#[derive(Parser, Debug)]
struct Args {
    /// Target address, e.g. 127.0.0.1:8080.
    #[arg(long, env = "LOADGEN_TARGET")]
    target: String,
    #[arg(long, env = "LOADGEN_PATH", default_value = "/v1/events")]
    path: String,
    #[arg(long, env = "LOADGEN_CONNECTIONS", default_value_t = 64)]
    connections: usize,
    #[arg(long, env = "LOADGEN_DURATION_SECS", default_value_t = 10)]
    duration_secs: u64,
    #[arg(long, env = "LOADGEN_WARMUP_SECS", default_value_t = 2)]
    warmup_secs: u64,
    /// Total requests per second across connections; 0 = as fast as possible.
    #[arg(long, env = "LOADGEN_RATE", default_value_t = 0)]
    rate: u64,
    #[arg(long, env = "LOADGEN_MIX", value_enum, default_value_t = Mix::Realistic)]
    mix: Mix,
    #[arg(long, env = "LOADGEN_SITE", default_value = "bench")]
    site: String,
    #[arg(long, env = "LOADGEN_VISITORS", default_value_t = 100_000)]
    visitors: u32,
    /// Distinct prepared requests (cycled); generation stays out of the measured loop.
    #[arg(long, env = "LOADGEN_POOL", default_value_t = 50_000)]
    pool: usize,
    #[arg(long, env = "LOADGEN_SEED", default_value_t = 1)]
    seed: u64,
    #[arg(long, env = "LOADGEN_THREADS", default_value_t = 1)]
    threads: usize,
    /// Print a JSON summary line instead of text.
    #[arg(long, env = "LOADGEN_JSON", default_value_t = false)]
    json: bool,
}

#[derive(Serialize)]
struct Summary {
    target: String,
    mix: Mix,
    connections: usize,
    target_rate: u64,
    seconds: f64,
    requests: u64,
    events: u64,
    requests_per_sec: f64,
    events_per_sec: f64,
    latency: Latency,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

struct WorkerResult {
    histogram: hdrhistogram::Histogram<u64>,
    requests: u64,
    events: u64,
    statuses: BTreeMap<u16, u64>,
    errors: u64,
}

async fn worker(args: Arc<Args>, pool: Arc<Vec<Beacon>>, index: usize, measure_from: Instant, end: Instant) -> Result<WorkerResult> {
    let mut result = WorkerResult {
        histogram: hdrhistogram::Histogram::new_with_bounds(1, 60_000_000, 3)?,
        requests: 0,
        events: 0,
        statuses: BTreeMap::new(),
        errors: 0,
    };
    let per_connection_interval = if args.rate > 0 {
        Some(Duration::from_secs_f64(args.connections as f64 / args.rate as f64))
    } else {
        None
    };
    let mut next_send = Instant::now() + per_connection_interval.map(|i| i.mul_f64(index as f64 / args.connections as f64)).unwrap_or_default();
    let mut cursor = index * 7919 % pool.len();
    'reconnect: while Instant::now() < end {
        let stream = match TcpStream::connect(&args.target).await {
            Ok(stream) => stream,
            Err(_) => {
                result.errors += 1;
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let (mut sender, connection) = http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        while Instant::now() < end {
            if let Some(interval) = per_connection_interval {
                let now = Instant::now();
                if next_send > now {
                    tokio::time::sleep(next_send - now).await;
                }
                next_send += interval;
            }
            let beacon = &pool[cursor];
            cursor = (cursor + 1) % pool.len();
            let mut builder = Request::post(&args.path)
                .header("host", &args.target)
                .header("content-type", beacon.content_type)
                .header("user-agent", beacon.user_agent);
            if beacon.gzip {
                builder = builder.header("content-encoding", "gzip");
            }
            let request = builder.body(Full::new(beacon.body.clone()))?;
            let started = Instant::now();
            let response = match sender.send_request(request).await {
                Ok(response) => response,
                Err(_) => {
                    result.errors += 1;
                    continue 'reconnect;
                }
            };
            let status = response.status().as_u16();
            if response.into_body().collect().await.is_err() {
                result.errors += 1;
                continue 'reconnect;
            }
            if started >= measure_from {
                let micros = started.elapsed().as_micros().max(1) as u64;
                result.histogram.saturating_record(micros);
                result.requests += 1;
                if (200..300).contains(&status) {
                    result.events += beacon.events as u64;
                }
                *result.statuses.entry(status).or_default() += 1;
            }
        }
    }
    Ok(result)
}

fn main() -> Result<()> {
    let args = Arc::new(Args::parse());
    if args.connections == 0 || args.pool == 0 {
        bail!("--connections and --pool must be at least 1");
    }
    let now_ms = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as i64;
    let mut generator = BeaconGen::new(&args.site, args.visitors, args.seed);
    let pool: Arc<Vec<Beacon>> = Arc::new((0..args.pool).map(|_| generator.beacon(args.mix, now_ms)).collect());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(args.threads.max(1)).enable_all().build()?;
    let summary = runtime.block_on(async {
        let start = Instant::now();
        let measure_from = start + Duration::from_secs(args.warmup_secs);
        let end = measure_from + Duration::from_secs(args.duration_secs);
        let tasks: Vec<_> = (0..args.connections)
            .map(|i| tokio::spawn(worker(args.clone(), pool.clone(), i, measure_from, end)))
            .collect();
        let mut histogram = hdrhistogram::Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
        let (mut requests, mut events, mut errors) = (0, 0, 0);
        let mut statuses = BTreeMap::new();
        for task in tasks {
            let result = task.await.context("worker panicked")??;
            histogram.add(&result.histogram)?;
            requests += result.requests;
            events += result.events;
            errors += result.errors;
            for (status, count) in result.statuses {
                *statuses.entry(status).or_default() += count;
            }
        }
        let seconds = args.duration_secs as f64;
        Ok::<_, anyhow::Error>(Summary {
            target: args.target.clone(),
            mix: args.mix,
            connections: args.connections,
            target_rate: args.rate,
            seconds,
            requests,
            events,
            requests_per_sec: requests as f64 / seconds,
            events_per_sec: events as f64 / seconds,
            latency: Latency::from_histogram(&histogram),
            statuses,
            errors,
        })
    })?;
    if args.json {
        println!("{}", serde_json::to_string(&summary)?);
    } else {
        println!(
            "{}: {:.0} req/s, {:.0} events/s over {:.0}s with {} connections; latency p50 {}µs p90 {}µs p99 {}µs p99.9 {}µs; statuses {:?}; errors {}",
            summary.target,
            summary.requests_per_sec,
            summary.events_per_sec,
            summary.seconds,
            summary.connections,
            summary.latency.p50_us,
            summary.latency.p90_us,
            summary.latency.p99_us,
            summary.latency.p999_us,
            summary.statuses,
            summary.errors
        );
    }
    Ok(())
}
