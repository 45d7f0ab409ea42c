//! The health batch benchmark's Rust side (driven by bench/health_vs_duckdb.py):
//!
//! * `generate` writes the account-usage table (`account_id, visitor_id, ts_ms, kind, name,
//!   session_id, engaged_ms`) as Parquet files: N events over M accounts in the two 28-day
//!   windows before a fixed `now`, deterministic for a seed;
//! * `queries` prints the health job's usage SQL for that `now` (the Python driver hands the
//!   same text to DuckDB);
//! * `run` is the health job's batch core on those files: DataFusion runs the usage SQL over
//!   the Parquet files, then every account is scored. Prints one JSON line with the timing
//!   and a checksum of the aggregates (compared with DuckDB's).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use crm_batch_jobs::health::{health, HealthInputs};
use crm_batch_jobs::usage::{events_schema, usage_inputs_in, usage_queries, EventsBuilder};
use datafusion::parquet::arrow::ArrowWriter;
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::WriterProperties;
use datafusion::prelude::{ParquetReadOptions, SessionContext};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::json;

const DAY_MS: i64 = 86_400_000;
/// A fixed "now" (2026-11-01), so data and queries agree across processes.
const NOW_MS: i64 = 20_393 * DAY_MS;
const FEATURES: [&str; 12] = ["reports", "dashboards", "export", "segments", "workflows", "alerts", "billing", "sso", "audit", "sharing", "comments", "search"];

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    Generate {
        #[arg(long)]
        dir: PathBuf,
        #[arg(long, default_value_t = 10_000_000)]
        events: usize,
        #[arg(long, default_value_t = 10_000)]
        accounts: usize,
        #[arg(long, default_value_t = 10)]
        files: usize,
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
    Queries,
    Run {
        #[arg(long)]
        dir: PathBuf,
    },
}

fn generate(dir: PathBuf, events: usize, accounts: usize, files: usize, seed: u64) -> Result<()> {
    std::fs::create_dir_all(&dir)?;
    let mut rng = StdRng::seed_from_u64(seed);
    // Accounts differ in size (users) and activity: a skewed, realistic spread.
    let users: Vec<usize> = (0..accounts).map(|_| 1 + (rng.gen::<f64>().powi(3) * 40.0) as usize).collect();
    let weights: Vec<f64> = (0..accounts).map(|_| rng.gen::<f64>().powi(2) + 0.02).collect();
    let total: f64 = weights.iter().sum();
    let cumulative: Vec<f64> = weights.iter().scan(0.0, |acc, w| { *acc += w / total; Some(*acc) }).collect();
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::try_new(1)?)).build();
    let per_file = events.div_ceil(files.max(1));
    let mut written = 0;
    for file in 0..files {
        let rows = per_file.min(events - written);
        if rows == 0 {
            break;
        }
        let mut table = EventsBuilder::default();
        for _ in 0..rows {
            let pick = rng.gen::<f64>();
            let a = cumulative.partition_point(|c| *c < pick).min(accounts - 1);
            let u = rng.gen_range(0..users[a]);
            let t = NOW_MS - rng.gen_range(0..56 * DAY_MS);
            let day = t / DAY_MS;
            let roll = rng.gen::<f64>();
            let (k, n, e) = if roll < 0.15 {
                ("custom", "login", 0)
            } else if roll < 0.40 {
                ("custom", "api_call", 0)
            } else if roll < 0.60 {
                ("custom", FEATURES[rng.gen_range(0..FEATURES.len())], 0)
            } else if roll < 0.90 {
                ("pageview", "", 0)
            } else {
                ("engagement", "", rng.gen_range(1_000..600_000))
            };
            let (account, visitor) = (format!("acct-{a:05}"), format!("acct-{a:05}-u{u}"));
            table.push(&account, &visitor, t, k, n, &format!("{visitor}-d{day}"), e);
        }
        let batch = table.finish()?;
        let path = dir.join(format!("events-{file:03}.parquet"));
        let mut writer = ArrowWriter::try_new(std::fs::File::create(&path)?, events_schema(), Some(props.clone()))?;
        writer.write(&batch)?;
        writer.close()?;
        written += rows;
    }
    println!("{}", json!({ "events": written, "accounts": accounts, "files": files, "dir": dir }));
    Ok(())
}

async fn run(dir: PathBuf) -> Result<()> {
    let started = Instant::now();
    let ctx = SessionContext::new();
    let path = dir.to_str().context("a UTF-8 path")?;
    ctx.register_parquet("events", path, ParquetReadOptions::default()).await?;
    let usage = usage_inputs_in(&ctx, NOW_MS).await?;
    let aggregated = started.elapsed();
    let mut score_sum = 0.0;
    for inputs in usage.values() {
        score_sum += health(&HealthInputs { usage: Some(inputs.clone()), ..HealthInputs::default() }).score;
    }
    let total = started.elapsed();
    let checksum = json!({
        "accounts": usage.len(),
        "active_users": usage.values().map(|u| u64::from(u.active_users)).sum::<u64>(),
        "features_used": usage.values().map(|u| u64::from(u.features_used)).sum::<u64>(),
        "api_calls": usage.values().map(|u| u.api_calls).sum::<u64>(),
        "api_calls_previous": usage.values().map(|u| u.api_calls_previous).sum::<u64>(),
        "logins": usage.values().map(|u| u.logins).sum::<u64>(),
        "engaged_ms": usage.values().map(|u| u.engaged_ms).sum::<u64>(),
        "sessions": usage.values().map(|u| u.sessions).sum::<u64>(),
        "actions": usage.values().map(|u| u.actions).sum::<u64>(),
        "power_users": usage.values().map(|u| u64::from(u.power_users)).sum::<u64>(),
    });
    println!(
        "{}",
        json!({
            "engine": "datafusion",
            "aggregate_seconds": aggregated.as_secs_f64(),
            "total_seconds": total.as_secs_f64(),
            "mean_usage_score": score_sum / usage.len().max(1) as f64,
            "checksum": checksum,
        })
    );
    Ok(())
}

fn main() -> Result<()> {
    match Cli::parse().command {
        Command::Generate { dir, events, accounts, files, seed } => generate(dir, events, accounts, files, seed),
        Command::Queries => {
            let q = usage_queries(NOW_MS);
            println!("{}", json!({ "per_account": q.per_account, "power": q.power, "available": q.available, "now_ms": NOW_MS }));
            Ok(())
        }
        Command::Run { dir } => tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(run(dir)),
    }
}
