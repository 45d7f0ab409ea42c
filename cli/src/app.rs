//! Wiring: opens the configured backends, builds the collector, processor and API from their
//! libraries, serves them behind one dispatcher, and runs the shutdown sequence (stop accepting
//! → drain requests → stop the processor after its batch → close the log).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use crm_api::ApiState;
use crm_eventlog::{EmbeddedLog, EmbeddedLogConfig, EventLog, SyncMode};
#[cfg(feature = "kafka")]
use crm_eventlog_kafka::{Compression, KafkaConfig, KafkaLog};
use crm_ingest::{Collector, IngestMetrics, SiteDirectory};
use crm_schemas::Site;
use crm_batch_jobs::churn_job::ChurnRun;
use crm_batch_jobs::usage::UsageSource;
use crate::demo::AccountsArgs;
use crm_service::{error_response, serve, wait_for_signal, Body, Health, MetricsRegistry, ServeOptions, Shutdown};
use crm_store::{EmbeddedStore, Store};
use crm_store_clickhouse::{ClickHouseConfig, ClickHouseStore};
use crm_store_embedded::store::Maintenance;
use crm_store_embedded::ColumnarStore;
use crm_stream_processor::{AiConfig, AlertDispatcher, DispatcherConfig, InsightWorker, Enricher, GeoLookup, IpStorage, Processor, ProcessorConfig, ProcessorMetrics, WebhookMetrics};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::net::TcpListener;
use tower::ServiceExt;

use crate::config::{
    ApiArgs, AuthArgs, DataArgs, EventLogKind, HealthJobArgs, ImportArgs, IngestArgs, IpStorageArg, LogArgs, LogSyncArg, MigrateArgs, ProcessArgs,
    ProcessorArgs, RollupArgs, StoreArgs, StoreKind, UpArgs,
};

const STORE_SCHEMA_VERSION: &str = "1";

pub async fn open_log(data: &DataArgs, args: &LogArgs) -> Result<Arc<dyn EventLog>> {
    match args.event_log {
        #[cfg(not(feature = "kafka"))]
        EventLogKind::Kafka => Err(crate::config::KafkaNotBuilt.into()),
        #[cfg(feature = "kafka")]
        EventLogKind::Kafka => {
            if args.kafka_partitions < 1 || args.kafka_replication < 1 {
                anyhow::bail!("--kafka-partitions and --kafka-replication must be at least 1");
            }
            use crate::config::CompressionArg;
            let mut config = KafkaConfig::new(&args.kafka_brokers, &args.kafka_topic_prefix);
            config.partitions = args.kafka_partitions;
            config.replication = args.kafka_replication;
            config.linger = Duration::from_millis(args.kafka_linger_ms);
            config.compression = match args.kafka_compression {
                CompressionArg::None => Compression::None,
                CompressionArg::Lz4 => Compression::Lz4,
                CompressionArg::Zstd => Compression::Zstd,
            };
            config.delivery_timeout = Duration::from_millis(args.kafka_delivery_timeout_ms.max(1000));
            config.max_queued_records = args.kafka_max_queued.max(1);
            config.historical_after = Duration::from_secs(args.kafka_historical_after_hours.max(1) * 3600);
            config.overflow_rate = std::num::NonZeroU32::new(args.kafka_overflow_rate);
            let log = KafkaLog::connect(config).await.with_context(|| format!("connecting to Kafka at {}", args.kafka_brokers))?;
            Ok(Arc::new(log))
        }
        EventLogKind::Embedded => {
            let config = EmbeddedLogConfig {
                sync: match args.log_sync {
                    LogSyncArg::Fsync => SyncMode::Fsync,
                    LogSyncArg::OsBuffer => SyncMode::OsBuffer,
                },
                max_bytes: args.log_max_bytes,
                segment_bytes: args.log_segment_bytes.max(4096),
                ..EmbeddedLogConfig::new(data.data_dir.join("log"))
            };
            let log = EmbeddedLog::open(config).context("opening the embedded event log")?;
            Ok(Arc::new(log))
        }
    }
}

pub async fn open_store(data: &DataArgs, args: &StoreArgs) -> Result<Arc<dyn Store>> {
    Ok(open_stores(data, args).await?.0)
}

/// The store's own handle for the batch jobs' bulk reads.
#[derive(Clone)]
pub enum BulkReader {
    /// The embedded store: its event parts, read directly.
    Parts(ColumnarStore),
    /// ClickHouse: a Parquet export.
    ClickHouse(Arc<ClickHouseStore>),
}

/// The store, and its bulk reader for the batch jobs where it has one (the redb design has none:
/// the jobs page through it).
pub async fn open_stores(data: &DataArgs, args: &StoreArgs) -> Result<(Arc<dyn Store>, Option<BulkReader>)> {
    args.validate()?;
    let mut bulk = None;
    let store: Arc<dyn Store> = match args.store {
        StoreKind::Redb => {
            if data.data_dir.join("columnar").join("MANIFEST.log").exists() {
                anyhow::bail!("{} holds the embedded store's columnar parts: start with --store embedded", data.data_dir.display());
            }
            Arc::new(EmbeddedStore::open_with_cache(&data.data_dir, args.store_cache_mb.max(8) * 1024 * 1024).context("opening the embedded store")?)
        }
        StoreKind::Embedded => {
            // A data directory the redb store wrote is converted here, once (one way).
            let store = ColumnarStore::open_with_budget(&data.data_dir, args.profile_memory_mb * 1024 * 1024).context("opening the columnar store")?;
            let maintenance = Maintenance {
                retention_days: args.retention_days,
                commit_interval: std::time::Duration::from_millis(args.commit_interval_ms),
                commit_events: args.commit_events,
                ..Maintenance::default()
            };
            // Runs as long as the process: whatever is buffered at exit is made durable by the
            // processor's flush, or replayed from the log.
            store.spawn_maintenance(maintenance, std::future::pending());
            bulk = Some(BulkReader::Parts(store.clone()));
            Arc::new(store)
        }
        StoreKind::Clickhouse => {
            let config = ClickHouseConfig {
                url: args.clickhouse_url.clone(),
                database: args.clickhouse_database.clone(),
                user: args.clickhouse_user.clone(),
                password: args.clickhouse_password.clone(),
                retention_days: args.retention_days,
            };
            let connected = Arc::new(ClickHouseStore::connect(&config).await.with_context(|| format!("connecting to ClickHouse at {}", args.clickhouse_url))?);
            bulk = Some(BulkReader::ClickHouse(connected.clone()));
            connected
        }
    };
    store.put_meta("schema_version", STORE_SCHEMA_VERSION.as_bytes()).await?;
    Ok((store, bulk))
}

fn now_ms() -> Result<i64> {
    Ok(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64)
}

async fn site_ids(store: &Arc<dyn Store>, site: Option<&str>) -> Result<Vec<String>> {
    Ok(match site {
        Some(id) => vec![id.to_owned()],
        None => store.sites().await?.into_iter().map(|s| s.site_id).collect(),
    })
}

fn usage_source<'a>(store: &'a Arc<dyn Store>, bulk: Option<&'a BulkReader>) -> UsageSource<'a> {
    match bulk {
        Some(BulkReader::ClickHouse(ch)) => UsageSource::ClickHouse(ch.as_ref()),
        Some(BulkReader::Parts(parts)) => UsageSource::Parts(parts),
        None => UsageSource::Scan(store.as_ref()),
    }
}

/// Runs the health job for one site or every site; returns every account's result.
pub async fn health_all(store: &Arc<dyn Store>, bulk: Option<&BulkReader>, site: Option<&str>) -> Result<Vec<crm_schemas::AccountHealth>> {
    let now = now_ms()?;
    let mut all = Vec::new();
    for site in site_ids(store, site).await? {
        all.extend(crm_batch_jobs::health_job::run_health(store.as_ref(), usage_source(store, bulk), &site, now).await?);
    }
    Ok(all)
}

/// Runs the churn job for one site or every site.
pub async fn churn_all(store: &Arc<dyn Store>, bulk: Option<&BulkReader>, site: Option<&str>) -> Result<Vec<ChurnRun>> {
    let now = now_ms()?;
    let mut runs = Vec::new();
    for site in site_ids(store, site).await? {
        runs.push(crm_batch_jobs::churn_job::run_churn(store.as_ref(), usage_source(store, bulk), &site, now).await?);
    }
    Ok(runs)
}

/// `crm batch health`: scores every account once and prints the results as JSON lines.
pub async fn batch_health(args: HealthJobArgs) -> Result<()> {
    let (store, bulk) = open_stores(&args.data, &args.store).await?;
    for result in health_all(&store, bulk.as_ref(), args.site.as_deref()).await? {
        println!("{}", serde_json::to_string(&result)?);
    }
    Ok(())
}

/// `crm batch churn`: one report per site as JSON lines.
pub async fn batch_churn(args: HealthJobArgs) -> Result<()> {
    let (store, bulk) = open_stores(&args.data, &args.store).await?;
    for run in churn_all(&store, bulk.as_ref(), args.site.as_deref()).await? {
        println!("{}", serde_json::to_string(&run)?);
    }
    Ok(())
}

/// `crm demo accounts`: simulated customers, then health and churn on them.
pub async fn demo_accounts(args: AccountsArgs) -> Result<()> {
    let (store, bulk) = open_stores(&args.data, &args.store).await?;
    let now = now_ms()?;
    if store.site(&args.site).await?.is_none() {
        store.put_site(&crm_schemas::Site::new(args.site.clone(), "Demo site", now)).await?;
    }
    let summary = crm_batch_jobs::simulator::load_simulated_accounts(store.as_ref(), &args.site, args.accounts, args.days, now, args.seed).await?;
    println!("{}", serde_json::to_string(&summary)?);
    let health = health_all(&store, bulk.as_ref(), Some(&args.site)).await?;
    println!("{}", serde_json::json!({ "health_scored": health.len() }));
    for run in churn_all(&store, bulk.as_ref(), Some(&args.site)).await? {
        println!("{}", serde_json::to_string(&run)?);
    }
    Ok(())
}

/// Re-runs the health and churn jobs every `interval` inside `crm up` (each run replaces the
/// day's results).
/// The geo databases: the flags' files, else what `crm geoip install` put in the data
/// directory (whose attribution is then published for the dashboard), else none.
async fn geo_lookup(args: &ProcessorArgs, data: &DataArgs, store: &Arc<dyn Store>) -> Result<GeoLookup> {
    if !args.geoip_city.is_empty() || !args.geoip_asn.is_empty() {
        return Ok(GeoLookup::open(&args.geoip_city, &args.geoip_asn)?);
    }
    let Some((manifest, dir)) = crate::geoip::installed(&data.data_dir)? else {
        tracing::info!("no geo database configured; events are stored without geolocation (run `crm geoip install`)");
        return Ok(GeoLookup::disabled());
    };
    let files = |names: &[String]| names.iter().map(|n| dir.join(n)).collect::<Vec<_>>();
    let geo = GeoLookup::open(&files(&manifest.city), &files(&manifest.asn)).with_context(|| format!("the databases in {} (reinstall with `crm geoip install`)", dir.display()))?;
    let versions: Vec<String> = manifest.packages.iter().map(|p| format!("{}@{}", p.name, p.version)).collect();
    tracing::info!(dir = %dir.display(), packages = %versions.join(" "), "geo databases from the data directory");
    store.put_meta(crm_api::GEO_ATTRIBUTION_META, &serde_json::to_vec(&manifest.attribution)?).await?;
    Ok(geo)
}

fn enricher(args: &ProcessorArgs, geo: GeoLookup) -> Result<Enricher> {
    let storage = match args.ip_storage {
        IpStorageArg::Anonymized => IpStorage::Anonymized,
        IpStorageArg::Full => IpStorage::Full,
        IpStorageArg::None => IpStorage::None,
    };
    Ok(Enricher::new(geo, storage))
}

async fn processor(args: &ProcessorArgs, data: &DataArgs, kind: StoreKind, store: Arc<dyn Store>, metrics: &MetricsRegistry, health: &Health) -> Result<Processor> {
    let geo = geo_lookup(args, data, &store).await?;
    let config = ProcessorConfig {
        batch_size: args.processor_batch.clamp(1, 100_000),
        profile_cache_capacity: args.processor_profile_cache.unwrap_or(match kind {
            StoreKind::Embedded => 1_000,
            StoreKind::Redb | StoreKind::Clickhouse => ProcessorConfig::default().profile_cache_capacity,
        }),
        request_insights: args.ai()?.is_some(),
        group: args.processor_group.clone(),
        ..ProcessorConfig::default()
    };
    let processor = Processor::new(config, store, enricher(args, geo)?, ProcessorMetrics::new(metrics));
    let status = processor.status();
    health.add_check("store", move || status.store_error.lock().clone());
    Ok(processor)
}

fn log_health(health: &Health, log: Arc<dyn EventLog>) {
    health.add_check("event_log", move || log.stats().unavailable);
}

/// First start: token secret, admin user (password printed once), the `demo` site and its lead form.
async fn bootstrap(store: &Arc<dyn Store>, auth: &AuthArgs, secrets: Option<&crm_service::SecretKeys>) -> Result<crm_api::JwtKeys> {
    auth.validate()?;
    let first_start = store.users().await?.is_empty();
    let boot = crm_api::bootstrap(store.as_ref(), auth.jwt_secret.as_deref(), auth.admin_password.as_deref(), secrets)
        .await
        .map_err(|e| match e {
            crm_api::ApiError::Internal(detail) => anyhow::anyhow!("bootstrap failed: {detail}"),
            other => anyhow::anyhow!("bootstrap failed: {other}"),
        })?;
    if let Some((username, password)) = &boot.generated_admin {
        println!("created user '{username}' with password: {password}");
        println!("(shown once; set CRM_ADMIN_PASSWORD before the first start to choose it)");
    }
    if first_start && !auth.no_demo_site && store.site("demo").await?.is_none() {
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as i64;
        store.put_site(&Site::new("demo", "Demo site", now)).await?;
        println!("created site 'demo' (any origin may send events; restrict it with PUT /api/v1/sites/demo)");
        store.put_form(&crate::demo::demo_form("demo", now)).await?;
        println!("created lead form 'demo-request' on site 'demo' (embed: /widgets/forms-embed.js)");
    }
    Ok(boot.keys)
}

/// Routes a request to the collector, the API or the operational endpoints.
#[derive(Clone)]
struct Dispatch {
    collector: Option<Arc<Collector>>,
    api: Option<axum::Router>,
    health: Arc<Health>,
    metrics: Arc<MetricsRegistry>,
}

impl Dispatch {
    async fn handle(self, request: Request<Incoming>) -> Response<Body> {
        let path = request.uri().path();
        match path {
            "/healthz" => return self.health.healthz(),
            "/readyz" => return self.health.readyz(),
            "/metrics" => return self.metrics.response(),
            _ => {}
        }
        if let Some(collector) = self.collector.filter(|_| Collector::owns_path(path)) {
            return collector.handle(request).await;
        }
        if let Some(api) = self.api {
            return match api.oneshot(request).await {
                Ok(response) => response.map(|body| body.map_err(Into::into).boxed_unsync()),
                Err(never) => match never {},
            };
        }
        error_response(StatusCode::NOT_FOUND, "not_found", "this process does not serve that path", None)
    }
}

async fn bind(addr: std::net::SocketAddr, what: &str, tls: bool) -> Result<TcpListener> {
    let listener = TcpListener::bind(addr).await.with_context(|| format!("binding {addr}"))?;
    let local = listener.local_addr()?;
    let scheme = if tls { "https" } else { "http" };
    // From here on SIGHUP never ends the process: tokio keeps its handler installed for the
    // process's life (a hangup before `reload_on_hangup` listens is ignored).
    let _ = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup());
    println!("{what} listening on {scheme}://{local}");
    tracing::info!(address = %local, tls, "listening");
    Ok(listener)
}

/// Serves `dispatch` until SIGINT/SIGTERM, marking the service not-ready while it drains.
async fn serve_until_signal(listener: TcpListener, dispatch: Dispatch, options: ServeOptions) {
    options.stats.register(&dispatch.metrics);
    let shutdown = Shutdown::new();
    if let Some(tls) = &options.tls {
        tls.register(&dispatch.metrics);
    }
    reload_on_hangup(options.tls.clone(), shutdown.clone());
    let health = dispatch.health.clone();
    let trigger = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested");
        health.set_draining();
        trigger.trigger();
    });
    serve(listener, move |request| dispatch.clone().handle(request), shutdown, options).await;
}

/// SIGHUP re-reads the TLS certificate and key (`systemctl reload`); without TLS it is logged and
/// ignored rather than ending the process (the signal's default).
fn reload_on_hangup(tls: Option<Arc<crm_service::Tls>>, shutdown: Shutdown) {
    use tokio::signal::unix::{signal, SignalKind};
    let mut hangups = match signal(SignalKind::hangup()) {
        Ok(hangups) => hangups,
        Err(err) => {
            tracing::warn!(error = %err, "cannot listen for SIGHUP; a certificate renewal needs a restart");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                got = hangups.recv() => if got.is_none() { return },
                _ = shutdown.wait() => return,
            }
            match &tls {
                // `reload` logs and counts its outcome.
                Some(tls) => {
                    let _ = tls.reload();
                }
                None => tracing::info!("sighup: no tls certificate to reload"),
            }
        }
    });
}

fn spawn_housekeeping(collector: Arc<Collector>, log: Arc<dyn EventLog>, sites: Arc<SiteDirectory>, shutdown: &Shutdown) {
    sites.spawn_refresh(Duration::from_secs(30), shutdown.clone());
    let stop = shutdown.clone();
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(60)) => {
                    collector.housekeeping();
                    log.housekeeping();
                }
                _ = stop.wait() => return,
            }
        }
    });
}

/// The stream processor and, beside it, the alert webhook dispatcher (alerts are fired by the
/// processor; whoever runs it delivers them).
fn spawn_processor(processor: Processor, store: Arc<dyn Store>, log: Arc<dyn EventLog>, ai: Option<AiConfig>, metrics: &MetricsRegistry, secrets: Option<Arc<crm_service::SecretKeys>>, shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    let dispatcher = AlertDispatcher::new(store.clone(), DispatcherConfig::default()).with_metrics(WebhookMetrics::new(metrics)).with_secrets(secrets);
    let alerts = tokio::spawn(dispatcher.run(shutdown.clone()));
    if let Some(ai) = ai {
        tracing::info!(model = %ai.model, "ai lead insights enabled");
        tokio::spawn(InsightWorker::new(store, ai).run(shutdown.clone()));
    }
    tokio::spawn(async move {
        if let Err(err) = processor.run(log, shutdown).await {
            tracing::error!(error = %err, "stream processor stopped with an error");
        }
        let _ = alerts.await;
    })
}

/// The collector over `log`, its metrics and readiness, and its background upkeep.
struct CollectorParts {
    collector: Arc<Collector>,
    sites: Arc<SiteDirectory>,
    metrics: Arc<MetricsRegistry>,
    health: Arc<Health>,
}

async fn collector_parts(config: crm_ingest::CollectorConfig, store: &Arc<dyn Store>, log: &Arc<dyn EventLog>, background: &Shutdown) -> Result<CollectorParts> {
    let metrics = Arc::new(MetricsRegistry::new());
    let health = Health::new();
    crate::gauges::allocator(&metrics);
    crate::gauges::event_log(&metrics, log.clone());
    log_health(&health, log.clone());
    let sites = SiteDirectory::load(store.clone()).await?;
    let collector = Collector::new(config, log.clone(), sites.clone(), IngestMetrics::new(&metrics));
    spawn_housekeeping(collector.clone(), log.clone(), sites.clone(), background);
    Ok(CollectorParts { collector, sites, metrics, health })
}

fn api_config(auth: &crate::config::AuthArgs, kb: &crate::config::KbArgs, http: &crate::config::HttpArgs) -> crm_api::ApiConfig {
    crm_api::ApiConfig {
        body_timeout: http.body_timeout(),
        public_per_ip_per_minute: Some(kb.kb_rate_limit_ip).filter(|n| *n > 0),
        ..auth.api_config()
    }
}

/// Chat events (messages, handoffs, identifications) appended to the event log like beacons.
fn chat_events(log: Arc<dyn EventLog>) -> crm_api::chat::EventSink {
    Arc::new(move |events: Vec<crm_schemas::CollectedEvent>| {
        let log = log.clone();
        Box::pin(async move {
            let mut records = Vec::with_capacity(events.len());
            for event in events {
                let key = format!("{}:{}", event.event.site_id, event.event.visitor_id.as_deref().unwrap_or(""));
                let at = event.event.ts;
                let payload = serde_json::to_vec(&event).map_err(|e| e.to_string())?;
                records.push(crm_eventlog::Record::new(crm_eventlog::Topic::Events, key, payload).with_event_time(at));
            }
            log.append(records).await.map_err(|e| e.to_string())
        })
    })
}

/// Loads the knowledge base (index from stored articles and embeddings), reports its search
/// mode in `/readyz`, and starts its background work (embedding, counter flush, reloads).
async fn knowledge_base(
    args: &crate::config::KbArgs,
    store: &Arc<dyn Store>,
    health: &Arc<Health>,
    background: &Shutdown,
) -> Result<(Arc<crm_api::KbRuntime>, tokio::task::JoinHandle<()>)> {
    args.validate()?;
    let (kb, _) = crm_api::KbRuntime::load(store, args.embedder().await?).await?;
    let mode = kb.mode();
    health.add_detail("knowledge_base", move || mode.clone());
    let task = kb.spawn_background(store.clone(), background.clone());
    Ok((kb, task))
}

pub async fn up(args: UpArgs) -> Result<()> {
    let serve_options = args.http.serve_options()?;
    let secrets = secret_keys(&args.data, &args.store)?;
    let collector_config = crm_ingest::CollectorConfig { body_timeout: args.http.body_timeout(), ..args.collector.to_config()? };
    let (store, bulk) = open_stores(&args.data, &args.store).await?;
    let keys = bootstrap(&store, &args.auth, secrets.as_deref()).await?;
    let log = open_log(&args.data, &args.log).await?;
    let background = Shutdown::new();
    let CollectorParts { collector, sites, metrics, health } = collector_parts(collector_config, &store, &log, &background).await?;
    if let Some(BulkReader::Parts(columnar)) = &bulk {
        crate::gauges::embedded_store(&metrics, columnar.clone());
    }
    let (kb, kb_task) = knowledge_base(&args.kb, &store, &health, &background).await?;
    let kb_sites = kb.clone();
    let api_state = ApiState::new(store.clone(), keys)
        .with_chat(Some(chat_events(log.clone())), args.processor.ai.writer()?)
        .with_config(&api_config(&args.auth, &args.kb, &args.http))
        .with_metrics(&metrics)
        .with_secrets(secrets.clone())
        .with_dashboard_dir(args.auth.dashboard_dir.clone())
        .with_kb(kb)
        .with_help_base_url(args.kb.help_base_url())
        .with_site_listener(Arc::new(move |site| {
            kb_sites.site_changed(&site.site_id);
            sites.upsert(site.clone())
        }));
    let processor = processor(&args.processor, &args.data, args.store.store, store.clone(), &metrics, &health).await?;
    let processor_task = spawn_processor(processor, store.clone(), log.clone(), args.processor.ai()?, &metrics, secrets.clone(), background.clone());
    let jobs = crate::schedule::JobMetrics::new(&metrics);
    if args.health_interval_mins > 0 {
        crate::schedule::spawn_health(store.clone(), bulk, Duration::from_secs(args.health_interval_mins * 60), jobs.clone(), background.clone());
    }
    crate::schedule::spawn_retention(store.clone(), jobs, background.clone());

    let listener = bind(args.http.listen, "crm up", serve_options.tls.is_some()).await?;
    let dispatch = Dispatch { collector: Some(collector), api: Some(crm_api::router(api_state)), health, metrics };
    serve_until_signal(listener, dispatch, serve_options).await;

    background.trigger();
    let _ = processor_task.await;
    let _ = kb_task.await;
    log.shutdown().await?;
    tracing::info!("stopped");
    Ok(())
}

pub async fn ingest(args: IngestArgs) -> Result<()> {
    let serve_options = args.http.serve_options()?;
    let collector_config = crm_ingest::CollectorConfig { body_timeout: args.http.body_timeout(), ..args.collector.to_config()? };
    let store = open_store(&args.data, &args.store).await?;
    let log = open_log(&args.data, &args.log).await?;
    let background = Shutdown::new();
    let CollectorParts { collector, metrics, health, .. } = collector_parts(collector_config, &store, &log, &background).await?;
    let listener = bind(args.http.listen, "crm ingest", serve_options.tls.is_some()).await?;
    let dispatch = Dispatch { collector: Some(collector), api: None, health, metrics };
    serve_until_signal(listener, dispatch, serve_options).await;
    background.trigger();
    log.shutdown().await?;
    Ok(())
}

pub async fn process(args: ProcessArgs) -> Result<()> {
    let secrets = secret_keys(&args.data, &args.store)?;
    let (store, bulk) = open_stores(&args.data, &args.store).await?;
    let log = open_log(&args.data, &args.log).await?;
    let metrics = Arc::new(MetricsRegistry::new());
    crate::gauges::allocator(&metrics);
    if let Some(BulkReader::Parts(columnar)) = bulk {
        crate::gauges::embedded_store(&metrics, columnar);
    }
    let health = Health::new();
    let processor = processor(&args.processor, &args.data, args.store.store, store.clone(), &metrics, &health).await?;
    let background = Shutdown::new();
    let processor_task = spawn_processor(processor, store, log.clone(), args.processor.ai()?, &metrics, secrets, background.clone());
    let listener = bind(args.listen, "crm process (health and metrics)", false).await?;
    let dispatch = Dispatch { collector: None, api: None, health, metrics };
    serve_until_signal(listener, dispatch, ServeOptions::with_drain(Duration::from_secs(5))).await;
    background.trigger();
    let _ = processor_task.await;
    log.shutdown().await?;
    Ok(())
}

pub async fn api(args: ApiArgs) -> Result<()> {
    let serve_options = args.http.serve_options()?;
    let secrets = secret_keys(&args.data, &args.store)?;
    let store = open_store(&args.data, &args.store).await?;
    let keys = bootstrap(&store, &args.auth, secrets.as_deref()).await?;
    let metrics = Arc::new(MetricsRegistry::new());
    crate::gauges::allocator(&metrics);
    let health = Health::new();
    let listener = bind(args.http.listen, "crm api", serve_options.tls.is_some()).await?;
    let background = Shutdown::new();
    let (kb, kb_task) = knowledge_base(&args.kb, &store, &health, &background).await?;
    let kb_sites = kb.clone();
    let state = ApiState::new(store, keys)
        .with_config(&api_config(&args.auth, &args.kb, &args.http))
        .with_metrics(&metrics)
        .with_secrets(secrets.clone())
        .with_dashboard_dir(args.auth.dashboard_dir.clone())
        .with_kb(kb)
        .with_help_base_url(args.kb.help_base_url())
        .with_chat(None, args.ai.writer()?)
        .with_site_listener(Arc::new(move |site| kb_sites.site_changed(&site.site_id)));
    health.add_detail("chat_events", || "not sent to the event log by crm api alone: chat leads and intent need crm up (or the collector's process)".to_owned());
    let dispatch = Dispatch { collector: None, api: Some(crm_api::router(state)), health, metrics };
    serve_until_signal(listener, dispatch, serve_options).await;
    background.trigger();
    let _ = kb_task.await;
    Ok(())
}

/// The keys that seal the store's secrets (see `--secrets-key`): the flag's key, the key file,
/// or the data directory's own key file for the embedded stores; none for ClickHouse without a
/// key (secrets stay unsealed, with a warning).
fn secret_keys(data: &DataArgs, store: &StoreArgs) -> Result<Option<Arc<crm_service::SecretKeys>>> {
    let current = match (&store.secrets_key, &store.secrets_key_file) {
        (Some(key), _) => crm_service::SecretKeys::parse_key(key, "--secrets-key")?,
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).with_context(|| format!("reading --secrets-key-file {}", path.display()))?;
            crm_service::SecretKeys::parse_key(&text, &path.display().to_string())?
        }
        (None, None) => match store.store {
            StoreKind::Embedded | StoreKind::Redb => {
                std::fs::create_dir_all(&data.data_dir).with_context(|| format!("creating {}", data.data_dir.display()))?;
                crm_service::SecretKeys::load_or_create(&data.data_dir.join("secrets.key"))?
            }
            StoreKind::Clickhouse => {
                tracing::warn!("no --secrets-key: webhook secrets are stored unsealed in ClickHouse; set one key for every process sharing the store");
                return Ok(None);
            }
        },
    };
    let previous = store.secrets_previous_keys.iter().enumerate().map(|(i, k)| crm_service::SecretKeys::parse_key(k, &format!("--secrets-previous-keys #{}", i + 1))).collect::<Result<Vec<_>, _>>()?;
    let keys = crm_service::SecretKeys::new(&current, &previous)?;
    tracing::info!(key_id = keys.current_key_id(), previous = previous.len(), "secrets key loaded");
    Ok(Some(Arc::new(keys)))
}

/// `crm users reset-totp NAME`: the second factor removed on the store itself, audited.
pub async fn users_reset_totp(args: crate::config::ResetTotpArgs) -> Result<()> {
    let store = open_store(&args.data, &args.store).await?;
    let mut user = store.user(&args.username).await?.with_context(|| format!("no user named {}", args.username))?;
    if user.totp.take().is_none() {
        println!("{} has no second factor; nothing changed", args.username);
        return Ok(());
    }
    store.put_user(&user).await?;
    let entry = crm_schemas::AuthAuditEntry {
        id: uuid::Uuid::new_v4(),
        at_ms: now_ms()?,
        event: crm_schemas::AuthEvent::TotpReset,
        username: user.username.clone(),
        ip: None,
        user_agent: None,
        actor: Some("crm users reset-totp (command line)".into()),
        detail: Some("reset on the store by an operator".into()),
    };
    store.append_auth_audit(&entry).await?;
    println!("removed the second factor of {}: they sign in with their password (and enrol again if the policy requires it)", user.username);
    Ok(())
}

/// `crm secrets rotate`.
pub async fn secrets_rotate(args: MigrateArgs) -> Result<()> {
    let keys = secret_keys(&args.data, &args.store)?.context("ClickHouse needs --secrets-key or --secrets-key-file to seal secrets")?;
    let store = open_store(&args.data, &args.store).await?;
    let done = crm_api::secrets::reseal_all(store.as_ref(), &keys).await.map_err(|e| match e {
        crm_api::ApiError::Internal(detail) => anyhow::anyhow!("rotation stopped: {detail}"),
        other => anyhow::anyhow!("rotation stopped: {other}"),
    })?;
    println!(
        "sealed with key {}: {} alert rule secret(s) re-sealed, {} already current, {} second-factor secret(s) re-sealed, token secret {}",
        keys.current_key_id(),
        done.rules_resealed,
        done.rules_current,
        done.totp_resealed,
        if done.token_secret_resealed { "re-sealed" } else { "unchanged" }
    );
    Ok(())
}

pub async fn migrate(args: MigrateArgs) -> Result<()> {
    let store = open_store(&args.data, &args.store).await?;
    store.ping().await?;
    match args.store.store {
        StoreKind::Embedded | StoreKind::Redb => println!("store schema version {STORE_SCHEMA_VERSION} is in place under {}", args.data.data_dir.display()),
        StoreKind::Clickhouse => println!(
            "ClickHouse database {} at {} is migrated (migrations are recorded in schema_migrations)",
            args.store.clickhouse_database, args.store.clickhouse_url
        ),
    }
    Ok(())
}

pub async fn batch_rollups(args: RollupArgs) -> Result<()> {
    let store = open_store(&args.data, &args.store).await?;
    let now = now_ms()?;
    let rows = crm_batch_jobs::daily_rollups(store.as_ref(), args.site.as_deref(), args.days, now).await?;
    for row in rows {
        println!("{}", serde_json::to_string(&row)?);
    }
    Ok(())
}

/// `crm batch retention`: applies each site's retention once and prints one JSON line per site.
pub async fn batch_retention(args: crate::config::RetentionArgs) -> Result<()> {
    let store = open_store(&args.data, &args.store).await?;
    for done in crm_batch_jobs::retention::apply(store.as_ref(), args.site.as_deref(), now_ms()?).await? {
        println!("{}", serde_json::to_string(&done)?);
    }
    Ok(())
}

/// Applies the sites' retention settings at start and then every hour inside `crm up`.
/// `crm geoip install`: fetch, verify, convert and install the free geo databases.
pub async fn geoip_install(args: crate::config::GeoipInstallArgs) -> Result<()> {
    let source = match args.from {
        Some(dir) => crate::geoip::Source::Tarballs(dir),
        None => crate::geoip::Source::Npm(args.npm),
    };
    let data_dir = args.data.data_dir.clone();
    let manifest = tokio::task::spawn_blocking(move || crate::geoip::install(&data_dir, &source)).await??;
    println!("installed into {}:", crate::geoip::geoip_dir(&args.data.data_dir).display());
    for package in &manifest.packages {
        println!("  {} {}", package.name, package.version);
    }
    println!("`crm up` and `crm process` with --data-dir {} use them from their next start.", args.data.data_dir.display());
    println!("{} ({}); the dashboard shows this credit.", manifest.attribution.text, manifest.attribution.licence);
    Ok(())
}

/// `crm import`: parses the whole file (CSV or Parquet) first; any bad row → every problem
/// printed, nothing stored.
/// `crm import kb DIR`: every file checked first, then articles upserted by slug.
async fn import_kb(args: ImportArgs) -> Result<()> {
    let articles = match crm_api::kb::import::read_dir(&args.site, &args.file) {
        Ok(articles) => articles,
        Err(problems) => {
            for problem in &problems {
                eprintln!("{problem}");
            }
            anyhow::bail!("{} problem(s); nothing was imported", problems.len());
        }
    };
    let store = open_store(&args.data, &args.store).await?;
    if store.site(&args.site).await?.is_none() {
        anyhow::bail!("site {:?} does not exist", args.site);
    }
    let kb_args = crate::config::KbArgs { embedding_model: args.embedding_model.clone(), kb_rate_limit_ip: 0, help_base_url: None };
    kb_args.validate()?;
    let (kb, _) = crm_api::KbRuntime::load(&store, kb_args.embedder().await?).await?;
    let count = articles.len();
    let report = crm_api::kb::import::import_articles(&store, &kb, &args.site, articles.into_iter().map(|(_, a)| a).collect())
        .await
        .map_err(|e| anyhow::anyhow!("import stopped: {e}"))?;
    let embedded = kb.embed_queued(&store).await.map_err(|e| anyhow::anyhow!("embedding failed: {e}"))?;
    println!(
        "imported {count} articles into site {}: {} new, {} changed, {} unchanged; {embedded} embedded",
        args.site, report.created, report.updated, report.unchanged
    );
    Ok(())
}

pub async fn import(args: ImportArgs) -> Result<()> {
    use crm_api::import::{check_header, parse_csv, ImportError, RowParser, MAX_IMPORT_ROWS};
    let Some(kind) = args.kind.kind() else { return import_kb(args).await };
    let bytes = std::fs::read(&args.file).map_err(|e| anyhow::anyhow!("cannot read {}: {e}", args.file.display()))?;
    let parquet = args.file.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet")) || crm_batch_jobs::parquet_table::is_parquet(&bytes);
    let parsed = if parquet {
        let table = crm_batch_jobs::parquet_table::read_parquet_table(bytes, MAX_IMPORT_ROWS).map_err(|e| anyhow::anyhow!("{}: {e}", args.file.display()))?;
        check_header(kind, &table.columns).and_then(|()| {
            let mut parser = RowParser::new(kind, &args.site);
            for (index, row) in table.rows.iter().enumerate() {
                parser.push(index as u64 + 1, table.columns.iter().map(String::as_str).zip(row.iter().map(String::as_str)).collect())?;
            }
            parser.finish()
        })
    } else {
        parse_csv(kind, &args.site, &bytes)
    };
    // CSV problems name the file line (header = 1); Parquet problems the 1-based row.
    let place = if parquet { "row " } else { "" };
    let batch = match parsed {
        Ok(batch) => batch,
        Err(ImportError::Rows(rows)) => {
            for row in &rows {
                eprintln!("{}:{place}{}: {}{}", args.file.display(), row.line, row.column.as_deref().map(|c| format!("{c}: ")).unwrap_or_default(), row.message);
            }
            anyhow::bail!("{} row(s) are invalid; nothing was imported", rows.len());
        }
        Err(other) => anyhow::bail!("{}: {other}", args.file.display()),
    };
    let store = open_store(&args.data, &args.store).await?;
    if store.site(&args.site).await?.is_none() {
        anyhow::bail!("site {:?} does not exist", args.site);
    }
    store.import(&args.site, &batch).await?;
    println!("imported {} {} rows into site {}", batch.len(), kind.as_str(), args.site);
    Ok(())
}
