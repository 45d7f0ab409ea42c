//! API-side measurements against a running `crm up`:
//! * `queryable`: beacon→queryable latency — time from the collector's 202 until the event's
//!   visitor is readable through the API (run it while `loadgen` applies load); `--warmup N`
//!   first sends N probes that are reported apart (the first event after a start also waits
//!   for the pipeline to get going, e.g. a Kafka consumer group to form);
//! * `api`: read latency of the visitor profile and the ranked visitor list.

use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use clap::{Parser, Subcommand};
use crm_bench::Latency;
use rand::Rng;
use serde::Serialize;
use serde_json::{json, Value};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "PROBE_TARGET", default_value = "http://127.0.0.1:8080")]
    target: String,
    /// API base URL when it is served apart from the collector (default: `--target`).
    #[arg(long, env = "PROBE_API")]
    api: Option<String>,
    #[arg(long, env = "PROBE_USERNAME", default_value = "admin")]
    username: String,
    #[arg(long, env = "PROBE_PASSWORD")]
    password: String,
    #[arg(long, env = "PROBE_SITE", default_value = "bench")]
    site: String,
    #[command(subcommand)]
    mode: Mode,
}

#[derive(Subcommand)]
enum Mode {
    Queryable {
        #[arg(long, default_value_t = 200)]
        count: usize,
        #[arg(long, default_value_t = 25)]
        interval_ms: u64,
        /// Probes sent first and reported apart from the percentiles.
        #[arg(long, default_value_t = 0)]
        warmup: usize,
    },
    Api {
        /// Visitor ids are `<prefix><n>` for n below this (as written by seed_store).
        #[arg(long, default_value_t = 1_000_000)]
        visitors: u64,
        #[arg(long, default_value = "seed-")]
        prefix: String,
        #[arg(long, default_value_t = 2000)]
        requests: usize,
    },
}

fn histogram() -> hdrhistogram::Histogram<u64> {
    hdrhistogram::Histogram::new_with_bounds(1, 600_000_000, 3).expect("bounds")
}

#[derive(Serialize)]
struct Report {
    mode: &'static str,
    samples: u64,
    latency: Latency,
    #[serde(skip_serializing_if = "Option::is_none")]
    list_latency: Option<Latency>,
    /// Queryable mode: the warm-up probes' latencies, then every measured one in order (ms).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    warmup_ms: Vec<f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    series_ms: Vec<f64>,
}

async fn login(client: &reqwest::Client, args: &Args) -> Result<String> {
    let reply: Value = client
        .post(format!("{}/api/v1/auth/login", args.api.as_deref().unwrap_or(&args.target)))
        .json(&json!({"username": args.username, "password": args.password}))
        .send()
        .await?
        .json()
        .await?;
    reply["data"]["access_token"].as_str().map(str::to_owned).context("login failed")
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args = Args::parse();
    let api = args.api.clone().unwrap_or_else(|| args.target.clone());
    let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let token = login(&client, &args).await?;
    let report = match &args.mode {
        Mode::Queryable { count, interval_ms, warmup } => {
            let mut latency = histogram();
            let (mut warmup_ms, mut series_ms) = (Vec::new(), Vec::new());
            let run = uuid::Uuid::new_v4().simple().to_string();
            for i in 0..(*warmup + *count) {
                let visitor = format!("probe-{}-{i}", &run[..8]);
                let event = json!({"v": 1, "type": "pageview", "site_id": args.site, "visitor_id": visitor, "url": "https://bench.example/probe"});
                let response = client
                    .post(format!("{}/v1/events", args.target))
                    .header("content-type", "text/plain")
                    .header("user-agent", crm_bench::USER_AGENTS[0])
                    .body(event.to_string())
                    .send()
                    .await?;
                if response.status() != 202 {
                    bail!("probe event refused: {}", response.status());
                }
                let acknowledged = Instant::now();
                let deadline = acknowledged + Duration::from_secs(60);
                loop {
                    let status = client
                        .get(format!("{api}/api/v1/visitors/{visitor}?site_id={}", args.site))
                        .bearer_auth(&token)
                        .send()
                        .await?
                        .status();
                    if status == 200 {
                        break;
                    }
                    if Instant::now() > deadline {
                        bail!("probe {visitor} not queryable after 60 s");
                    }
                    tokio::time::sleep(Duration::from_millis(2)).await;
                }
                let took = acknowledged.elapsed();
                let took_ms = (took.as_micros() as f64 / 10.0).round() / 100.0;
                if i < *warmup {
                    warmup_ms.push(took_ms);
                } else {
                    latency.saturating_record(took.as_micros().max(1) as u64);
                    series_ms.push(took_ms);
                }
                tokio::time::sleep(Duration::from_millis(*interval_ms)).await;
            }
            Report {
                mode: "queryable",
                samples: latency.len(),
                latency: Latency::from_histogram(&latency),
                list_latency: None,
                warmup_ms,
                series_ms,
            }
        }
        Mode::Api { visitors, prefix, requests } => {
            let mut profile = histogram();
            let mut list = histogram();
            let mut rng = rand::thread_rng();
            for i in 0..*requests {
                let (url, into) = if i % 2 == 0 {
                    (format!("{}/api/v1/visitors/{prefix}{}?site_id={}", args.target, rng.gen_range(0..*visitors), args.site), &mut profile)
                } else {
                    let sort = ["intent", "engagement", "last_seen"][i % 3];
                    (format!("{}/api/v1/visitors?site_id={}&sort={sort}&limit=50", args.target, args.site), &mut list)
                };
                let started = Instant::now();
                let response = client.get(url).bearer_auth(&token).send().await?;
                let status = response.status();
                let _ = response.bytes().await?;
                if status != 200 {
                    bail!("api answered {status}");
                }
                into.saturating_record(started.elapsed().as_micros().max(1) as u64);
            }
            Report {
                mode: "api",
                samples: profile.len(),
                latency: Latency::from_histogram(&profile),
                list_latency: Some(Latency::from_histogram(&list)),
                warmup_ms: Vec::new(),
                series_ms: Vec::new(),
            }
        }
    };
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
