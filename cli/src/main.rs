//! The `crm` binary: parses configuration and hands over to the libraries. `up` runs
//! everything in one process; the other subcommands run one part each.

mod app;
mod config;
mod demo;
mod gauges;
mod geoip;
mod query;
mod schedule;

use clap::Parser;

/// jemalloc instead of glibc's allocator: under `crm up`'s load the commit points build and drop
/// hundreds of MB of buffers from several threads, which glibc's per-thread arenas kept as
/// resident memory (bench/ANALYSIS.md).
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;
use config::{BatchJob, Cli, Command, GeoipAction, LogFormatArg, SecretsAction, UsersAction};
use crm_service::{init_tracing, LogFormat};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Some(Err(missing)) = cli.command.log_args().map(|log| log.check_built()) {
        eprintln!("error: {missing}");
        std::process::exit(2);
    }
    let format = match cli.log_format {
        LogFormatArg::Text => LogFormat::Text,
        LogFormatArg::Json => LogFormat::Json,
    };
    init_tracing(format, "info");
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async move {
        match cli.command {
            Command::Up(args) => app::up(args).await,
            Command::Ingest(args) => app::ingest(args).await,
            Command::Process(args) => app::process(args).await,
            Command::Api(args) => app::api(args).await,
            Command::Migrate(args) => app::migrate(args).await,
            Command::Demo(demo) => match demo.command {
                Some(demo::DemoSubcommand::Accounts(args)) => app::demo_accounts(args).await,
                None => demo::run(demo.traffic).await,
            },
            Command::Import(args) => app::import(args).await,
            Command::Query(args) => query::run(args).await,
            Command::Geoip(geoip) => match geoip.action {
                GeoipAction::Install(args) => app::geoip_install(args).await,
                GeoipAction::Status(data) => geoip::status(&data.data_dir),
            },
            Command::Users(users) => match users.action {
                UsersAction::ResetTotp(args) => app::users_reset_totp(args).await,
            },
            Command::Secrets(secrets) => match secrets.action {
                SecretsAction::Rotate(args) => app::secrets_rotate(args).await,
            },
            Command::Batch(batch) => match batch.job {
                BatchJob::Rollups(args) => app::batch_rollups(args).await,
                BatchJob::Retention(args) => app::batch_retention(args).await,
                BatchJob::Health(args) => app::batch_health(args).await,
                BatchJob::Churn(args) => app::batch_churn(args).await,
            },
        }
    })
}
