//! Flags of the optional services: the knowledge base (search model, public limits, help-centre
//! address) and the AI endpoint (lead insights in the processor, chat answers in the API).

use anyhow::{bail, Result};
use clap::Args;

/// The optional model endpoint: AI lead insights (processor) and chat answers written from the
/// knowledge base's articles (API).
#[derive(Args, Debug, Clone)]
pub struct AiArgs {
    /// OpenAI-compatible API base (e.g. `https://api.openai.com/v1`); enables AI lead insights
    /// and model-written chat answers.
    #[arg(long, env = "CRM_AI_BASE_URL")]
    pub ai_base_url: Option<String>,
    /// Bearer key for the AI endpoint.
    #[arg(long, env = "CRM_AI_API_KEY", hide_env_values = true)]
    pub ai_api_key: Option<String>,
    #[arg(long, env = "CRM_AI_MODEL", default_value = "gpt-4o-mini")]
    pub ai_model: String,
    /// Per-request timeout of the AI endpoint.
    #[arg(long, env = "CRM_AI_TIMEOUT_SECS", default_value_t = 30)]
    pub ai_timeout_secs: u64,
}

impl AiArgs {
    /// The chat answer writer's configuration, when an endpoint is set (checked as for insights).
    pub fn writer(&self) -> Result<Option<crm_api::chat::writer::AnswerWriter>> {
        Ok(self.insights()?.map(|ai| {
            crm_api::chat::writer::AnswerWriter::new(crm_api::chat::writer::WriterConfig {
                base_url: ai.base_url,
                api_key: ai.api_key,
                model: ai.model,
                // The visitor is waiting: at most 15 s per attempt whatever insights may take.
                timeout: ai.timeout.min(std::time::Duration::from_secs(15)),
            })
        }))
    }

    /// The AI insight configuration, when an endpoint is set (checked: an absolute http(s) URL).
    pub fn insights(&self) -> Result<Option<crm_stream_processor::AiConfig>> {
        let Some(base_url) = &self.ai_base_url else { return Ok(None) };
        match url::Url::parse(base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => bail!("--ai-base-url must be an absolute http(s) URL, got {base_url:?}"),
        }
        if self.ai_timeout_secs == 0 || self.ai_model.trim().is_empty() {
            bail!("--ai-timeout-secs must be positive and --ai-model non-empty");
        }
        Ok(Some(crm_stream_processor::AiConfig {
            base_url: base_url.clone(),
            api_key: self.ai_api_key.clone(),
            model: self.ai_model.clone(),
            timeout: std::time::Duration::from_secs(self.ai_timeout_secs),
            poll_interval: std::time::Duration::from_secs(1),
        }))
    }
}

/// The knowledge base: search model, public limits and the help centre's address.
#[derive(Args, Debug, Clone)]
pub struct KbArgs {
    /// Sentence-embedding model directory (config.json, tokenizer.json, model.safetensors;
    /// scripts/fetch-model.sh installs all-MiniLM-L6-v2). Without it knowledge-base search ranks
    /// by keywords alone.
    #[arg(long, env = "CRM_EMBEDDING_MODEL")]
    pub embedding_model: Option<std::path::PathBuf>,
    /// Public help-centre and /v1/kb requests per minute per client address (0 = unlimited).
    #[arg(long, env = "CRM_KB_RATE_LIMIT_IP", default_value_t = 120)]
    pub kb_rate_limit_ip: u32,
    /// Absolute origin of the help centre for canonical links and sitemap.xml
    /// (https://help.example.com); without it they are root-relative.
    #[arg(long, env = "CRM_HELP_BASE_URL")]
    pub help_base_url: Option<String>,
}

impl KbArgs {
    pub fn validate(&self) -> Result<()> {
        if let Some(dir) = &self.embedding_model {
            for file in ["config.json", "tokenizer.json", "model.safetensors"] {
                if !dir.join(file).is_file() {
                    bail!("--embedding-model {}: no {file} there (scripts/fetch-model.sh installs a model)", dir.display());
                }
            }
        }
        if let Some(base) = &self.help_base_url {
            match url::Url::parse(base) {
                Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() && url.path() == "/" && url.query().is_none() => {}
                _ => bail!("--help-base-url: {base:?} is not an origin like https://help.example.com"),
            }
        }
        Ok(())
    }

    /// Loads the model (a few hundred milliseconds) off the async threads.
    pub async fn embedder(&self) -> Result<Option<std::sync::Arc<crm_search::Embedder>>> {
        let Some(dir) = self.embedding_model.clone() else {
            tracing::warn!("no --embedding-model: knowledge-base search ranks by keywords only (scripts/fetch-model.sh installs a model)");
            return Ok(None);
        };
        let embedder = tokio::task::spawn_blocking(move || crm_search::Embedder::load(&dir)).await??;
        tracing::info!(model = %embedder.model_id(), "embedding model loaded");
        Ok(Some(std::sync::Arc::new(embedder)))
    }

    pub fn help_base_url(&self) -> Option<String> {
        self.help_base_url.as_ref().map(|b| b.trim_end_matches('/').to_owned())
    }
}
