//! Writes N scored visitor profiles (ids `seed-0…`) for one site straight into the embedded
//! store (or, with `--store redb`, its first design), so API read latency can be measured at
//! realistic sizes (1 M visitors).

use std::path::PathBuf;
use std::time::Instant;

use anyhow::Result;
use clap::Parser;
use crm_schemas::{Device, Geo, Site, VisitorProfile};
use crm_store::prelude::*;
use crm_store::{EmbeddedStore, Store, WriteBatch};
use crm_store_embedded::ColumnarStore;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Parser)]
struct Args {
    #[arg(long, env = "SEED_DATA_DIR")]
    data_dir: PathBuf,
    #[arg(long, env = "SEED_SITE", default_value = "bench")]
    site: String,
    #[arg(long, env = "SEED_VISITORS", default_value_t = 1_000_000)]
    visitors: u64,
    #[arg(long, env = "SEED_BATCH", default_value_t = 20_000)]
    batch: u64,
    #[arg(long, env = "SEED_STORE", value_enum, default_value_t = StoreKind::Embedded)]
    store: StoreKind,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum StoreKind {
    Embedded,
    Redb,
}

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let store: std::sync::Arc<dyn Store> = match args.store {
        // Each write without log positions is durable when it returns (a commit point).
        StoreKind::Embedded => std::sync::Arc::new(ColumnarStore::open(&args.data_dir)?),
        StoreKind::Redb => std::sync::Arc::new(EmbeddedStore::open(&args.data_dir)?),
    };
    if store.site(&args.site).await?.is_none() {
        store.put_site(&Site::new(&args.site, "Benchmark site", 0)).await?;
    }
    let started = Instant::now();
    let mut rng = StdRng::seed_from_u64(9);
    let now = 1_795_478_400_000i64;
    let mut next = 0;
    while next < args.visitors {
        let end = (next + args.batch).min(args.visitors);
        let visitors = (next..end)
            .map(|n| {
                let last_seen = now - rng.gen_range(0..30 * 86_400_000i64);
                VisitorProfile {
                    site_id: args.site.clone(),
                    visitor_id: format!("seed-{n}"),
                    first_seen_ms: last_seen - rng.gen_range(0..90 * 86_400_000i64),
                    last_seen_ms: last_seen,
                    visits: rng.gen_range(1..20),
                    pageviews: rng.gen_range(1..200),
                    events: rng.gen_range(1..500),
                    time_spent_ms: rng.gen_range(0..10_000_000),
                    landing_page: Some("/".into()),
                    device: Device { browser: "Chrome".into(), browser_version: "131".into(), os: "Windows 10".into(), os_version: "NT 10.0".into(), category: "pc".into() },
                    geo: Geo { country: Some("DE".into()), city: Some("Berlin".into()), ..Geo::default() },
                    engagement_score: rng.gen_range(0..=100),
                    intent_score: rng.gen_range(0..=100),
                    intent_points: rng.gen_range(0.0..200.0),
                    intent_updated_ms: last_seen,
                    active_days: vec![last_seen / 86_400_000],
                    ..VisitorProfile::default()
                }
            })
            .collect();
        store.write(WriteBatch { visitors, ..WriteBatch::default() }.into()).await?;
        next = end;
    }
    println!("seeded {} visitors in {:.1}s", args.visitors, started.elapsed().as_secs_f64());
    Ok(())
}
