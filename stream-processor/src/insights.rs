//! The AI insight worker (optional, off unless a model endpoint is configured): works off queued
//! [`InsightRequest`]s by asking an OpenAI-compatible `POST {base_url}/chat/completions` for a
//! JSON analysis of the lead — key factors, next actions, likely objections — and storing it.
//!
//! The prompt carries the lead's score breakdown, reasons, activity, company and non-personal
//! traits; never the email, name or phone. Failures and timeouts are retried with backoff and
//! given up after [`MAX_INSIGHT_ATTEMPTS`]; scoring never waits for any of it.

use std::sync::Arc;
use std::time::Duration;

use crm_schemas::{retry_delay_ms, InsightRequest, Lead, LeadInsight, MAX_INSIGHT_ATTEMPTS};
use crm_service::Shutdown;
use crm_store::{Store, StoreError};
use serde::Deserialize;
use serde_json::{json, Value};

/// Traits never sent to the model.
const PERSONAL_TRAITS: &[&str] = &["email", "name", "first_name", "last_name", "phone", "address"];

#[derive(Clone, Debug)]
pub struct AiConfig {
    /// e.g. `https://api.openai.com/v1` or a local server's `/v1`.
    pub base_url: String,
    pub api_key: Option<String>,
    pub model: String,
    pub timeout: Duration,
    pub poll_interval: Duration,
}

pub struct InsightWorker {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    config: AiConfig,
}

/// The analysis the model must answer with.
#[derive(Deserialize)]
struct Analysis {
    key_factors: Vec<String>,
    next_actions: Vec<String>,
    #[serde(default)]
    objections: Vec<String>,
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

/// The user message: what is known about the lead, without personal data.
pub fn prompt(lead: &Lead) -> String {
    let traits: serde_json::Map<String, Value> = lead
        .traits
        .iter()
        .filter(|(k, _)| !PERSONAL_TRAITS.contains(&k.as_str()))
        .map(|(k, v)| (k.clone(), serde_json::to_value(v).unwrap_or(Value::Null)))
        .collect();
    json!({
        "company_domain": lead.company_domain,
        "source": lead.source,
        "score": lead.score,
        "score_breakdown": lead.breakdown,
        "score_reasons": lead.reasons,
        "activity": lead.activity,
        "traits": traits,
        "devices": lead.visitor_ids.len(),
    })
    .to_string()
}

const SYSTEM: &str = "You are a B2B sales analyst. Given a lead's behaviour and firmographics as JSON, answer with a JSON \
object {\"key_factors\": [..], \"next_actions\": [..], \"objections\": [..]}: at most 5 short strings each, concrete and \
based only on the data.";

/// Keeps at most 5 non-empty strings of at most 300 characters.
fn tidy(items: Vec<String>) -> Vec<String> {
    items.into_iter().map(|s| s.trim().chars().take(300).collect::<String>()).filter(|s| !s.is_empty()).take(5).collect()
}

impl InsightWorker {
    pub fn new(store: Arc<dyn Store>, config: AiConfig) -> InsightWorker {
        let client = reqwest::Client::builder().timeout(config.timeout).user_agent("crm-insights/1").build().expect("the HTTP client builds");
        InsightWorker { store, client, config }
    }

    pub async fn run(self, shutdown: Shutdown) {
        loop {
            if let Err(err) = self.work_due().await {
                tracing::warn!(error = %err, "insight worker pass failed; retrying");
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// One pass over the due requests; returns how many were answered.
    pub async fn work_due(&self) -> Result<usize, StoreError> {
        let mut answered = 0;
        for request in self.store.due_insight_requests(now_ms(), 20).await? {
            let lead = self.store.leads(&[(request.site_id.clone(), request.lead_id.clone())]).await?.pop();
            let Some(lead) = lead else {
                self.store.update_insight_request(&InsightRequest { failed: true, last_error: Some("the lead is gone".into()), ..request }).await?;
                continue;
            };
            match self.ask(&lead).await {
                Ok(analysis) => {
                    let insight = LeadInsight {
                        site_id: lead.site_id.clone(),
                        lead_id: lead.lead_id.clone(),
                        generated_at_ms: now_ms(),
                        model: self.config.model.clone(),
                        score: lead.score,
                        key_factors: tidy(analysis.key_factors),
                        next_actions: tidy(analysis.next_actions),
                        objections: tidy(analysis.objections),
                    };
                    self.store.put_insight(&insight).await?;
                    answered += 1;
                }
                Err(error) => {
                    let attempts = request.attempts + 1;
                    tracing::warn!(lead_id = %lead.lead_id, attempts, error = %error, "lead insight failed");
                    let retry = InsightRequest {
                        attempts,
                        next_attempt_ms: now_ms() + retry_delay_ms(attempts as usize),
                        last_error: Some(error),
                        failed: attempts >= MAX_INSIGHT_ATTEMPTS,
                        ..request
                    };
                    self.store.update_insight_request(&retry).await?;
                }
            }
        }
        Ok(answered)
    }

    async fn ask(&self, lead: &Lead) -> Result<Analysis, String> {
        let url = format!("{}/chat/completions", self.config.base_url.trim_end_matches('/'));
        let body = json!({
            "model": self.config.model,
            "temperature": 0.2,
            "response_format": {"type": "json_object"},
            "messages": [{"role": "system", "content": SYSTEM}, {"role": "user", "content": prompt(lead)}],
        });
        let mut request = self.client.post(&url).json(&body);
        if let Some(key) = &self.config.api_key {
            request = request.bearer_auth(key);
        }
        let response = request.send().await.map_err(|e| format!("request failed: {e}"))?;
        let status = response.status();
        if !status.is_success() {
            return Err(format!("model endpoint answered {status}"));
        }
        let reply: Value = response.json().await.map_err(|e| format!("answer is not JSON: {e}"))?;
        let content = reply["choices"][0]["message"]["content"].as_str().ok_or("answer has no choices[0].message.content")?;
        // Some models wrap JSON in a code fence.
        let content = content.trim().trim_start_matches("```json").trim_start_matches("```").trim_end_matches("```").trim();
        serde_json::from_str(content).map_err(|e| format!("analysis is not the expected JSON: {e}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_leave_personal_data_out() {
        let mut lead = Lead { email: "ada@acme.example".into(), company_domain: Some("acme.example".into()), ..Lead::default() };
        lead.traits.insert("email".into(), crm_schemas::Scalar::Str("ada@acme.example".into()));
        lead.traits.insert("name".into(), crm_schemas::Scalar::Str("Ada".into()));
        lead.traits.insert("industry".into(), crm_schemas::Scalar::Str("Software".into()));
        let text = prompt(&lead);
        assert!(!text.contains("ada@") && !text.contains("\"Ada\""), "{text}");
        assert!(text.contains("Software") && text.contains("acme.example"));
    }

    #[test]
    fn lists_are_trimmed_and_capped() {
        let items = vec![" a ".into(), "".into(), "x".repeat(400), "c".into(), "d".into(), "e".into(), "f".into()];
        let tidied = tidy(items);
        assert_eq!(tidied.len(), 5);
        assert_eq!(tidied[0], "a");
        assert_eq!(tidied[1].len(), 300);
    }
}
