//! Shared API state: the store, the token keys, the security settings (rate limiters, login
//! lockout counters, the refresh-rotation lock), where the dashboard's files come from, and who
//! to tell when a site changes (the in-process collector's site directory, when the API and
//! collector share a process).

use std::path::PathBuf;
use std::sync::Arc;

use crm_schemas::Site;
use crm_store::Store;

use crate::middleware::{ApiConfig, Limits};
use crate::revocation::TokenGate;
use crate::session::LoginGuard;
use crate::chat::{ChatRuntime, EventSink};
use crate::kb::KbRuntime;
use crate::JwtKeys;

/// Called after a site is created or changed.
pub type SiteListener = Arc<dyn Fn(&Site) + Send + Sync>;

#[derive(Clone)]
pub struct ApiState {
    pub store: Arc<dyn Store>,
    pub keys: Arc<JwtKeys>,
    pub site_listener: Option<SiteListener>,
    pub(crate) limits: Arc<Limits>,
    pub(crate) login_guard: Arc<LoginGuard>,
    pub(crate) refresh_lock: Arc<tokio::sync::Mutex<()>>,
    pub(crate) token_gate: Arc<TokenGate>,
    pub(crate) dashboard_dir: Option<PathBuf>,
    /// The knowledge base's index, catalog and counters.
    pub kb: Arc<KbRuntime>,
    /// Serialises article writes in this process, so slug and version checks hold.
    pub(crate) kb_write_lock: Arc<tokio::sync::Mutex<()>>,
    /// `--help-base-url`: the help centre's absolute origin for canonical links and sitemaps.
    pub(crate) help_base_url: Option<String>,
    /// The chat's presence, flood limits and event sink.
    pub chat: Arc<ChatRuntime>,
    /// Request counts and latency by route, when the process exposes `/metrics`.
    pub(crate) metrics: Option<Arc<crate::metrics::ApiMetrics>>,
    /// Seals secrets before they are stored (alert rules' webhook secrets).
    pub(crate) secrets: Option<Arc<crm_service::SecretKeys>>,
}

impl ApiState {
    pub fn new(store: Arc<dyn Store>, keys: JwtKeys) -> ApiState {
        ApiState {
            store,
            keys: Arc::new(keys),
            site_listener: None,
            limits: Arc::new(Limits::new(&ApiConfig::default())),
            login_guard: Arc::default(),
            refresh_lock: Arc::default(),
            token_gate: Arc::default(),
            dashboard_dir: None,
            kb: KbRuntime::empty(None),
            kb_write_lock: Arc::default(),
            help_base_url: None,
            chat: Arc::new(ChatRuntime::new(None, None)),
            metrics: None,
            secrets: None,
        }
    }

    /// Seal stored secrets with these keys (none: they are stored as they are).
    pub fn with_secrets(mut self, secrets: Option<Arc<crm_service::SecretKeys>>) -> ApiState {
        self.secrets = secrets;
        self
    }

    /// Counts requests by route, method and status, and their latency, in `registry`.
    pub fn with_metrics(mut self, registry: &crm_service::MetricsRegistry) -> ApiState {
        self.metrics = Some(Arc::new(crate::metrics::ApiMetrics::new(registry)));
        self
    }

    pub fn with_site_listener(mut self, listener: SiteListener) -> ApiState {
        self.site_listener = Some(listener);
        self
    }

    pub fn with_config(mut self, config: &ApiConfig) -> ApiState {
        self.limits = Arc::new(Limits::new(config));
        self.token_gate = Arc::new(TokenGate::new(config.revocation_ttl));
        self
    }

    /// `404 not_found` unless the site exists.
    pub(crate) async fn require_site(&self, site_id: &str) -> Result<crm_schemas::Site, crate::ApiError> {
        match self.store.site(site_id).await? {
            Some(site) => Ok(site),
            None => Err(crate::ApiError::NotFound(format!("site {site_id}"))),
        }
    }

    /// Use this knowledge-base runtime (loaded from the store) instead of an empty one.
    pub fn with_kb(mut self, kb: Arc<KbRuntime>) -> ApiState {
        self.kb = kb;
        self
    }

    /// Chat events (messages, handoffs, identifications) go to the event log through `sink`;
    /// with a `writer`, a model writes the chat's answers from the articles found.
    pub fn with_chat(mut self, sink: Option<EventSink>, writer: Option<crate::chat::writer::AnswerWriter>) -> ApiState {
        self.chat = Arc::new(ChatRuntime::new(sink, writer));
        self
    }

    /// Canonical links and the sitemap use this origin (`https://help.example.com`).
    pub fn with_help_base_url(mut self, base: Option<String>) -> ApiState {
        self.help_base_url = base;
        self
    }

    /// Serve the dashboard from this directory instead of the embedded copy.
    pub fn with_dashboard_dir(mut self, dir: Option<PathBuf>) -> ApiState {
        self.dashboard_dir = dir;
        self
    }
}
