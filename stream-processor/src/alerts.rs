//! The alert webhook dispatcher: polls the store for due alerts and POSTs each to its rule's
//! webhook, signed so the receiver can verify it came from us:
//!
//! * `X-CRM-Timestamp`: unix seconds of the attempt;
//! * `X-CRM-Signature`: `sha256=` + hex HMAC-SHA256 over `"{timestamp}.{body}"` with the rule's
//!   secret (receivers should also reject stale timestamps to stop replays).
//!
//! A 2xx answer marks the alert delivered. Anything else (status, timeout, connection error) is
//! recorded in the alert's delivery log and retried with exponential backoff (1 s, 2 s, 4 s …
//! capped at 10 min) until [`MAX_DELIVERY_ATTEMPTS`], then the alert is marked failed. Delivery
//! is at least once: an alert whose answer was lost in a crash is sent again.

use std::sync::Arc;
use std::time::Duration;

use crm_schemas::{retry_delay_ms, Alert, DeliveryAttempt, DeliveryStatus, MAX_DELIVERY_ATTEMPTS};
use crm_service::Shutdown;
use crm_store::{Store, StoreError};

use crate::metrics::WebhookMetrics;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;

#[derive(Clone, Debug)]
pub struct DispatcherConfig {
    /// How often the store is polled for due alerts.
    pub poll_interval: Duration,
    /// Per-request timeout of a webhook call.
    pub timeout: Duration,
}

impl Default for DispatcherConfig {
    fn default() -> Self {
        DispatcherConfig { poll_interval: Duration::from_millis(500), timeout: Duration::from_secs(10) }
    }
}

pub struct AlertDispatcher {
    store: Arc<dyn Store>,
    client: reqwest::Client,
    config: DispatcherConfig,
    metrics: Option<WebhookMetrics>,
    secrets: Option<Arc<crm_service::SecretKeys>>,
}

/// `sha256=<hex>` of HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn signature(secret: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as i64).unwrap_or(0)
}

impl AlertDispatcher {
    pub fn new(store: Arc<dyn Store>, config: DispatcherConfig) -> AlertDispatcher {
        let client = reqwest::Client::builder().timeout(config.timeout).user_agent("crm-alerts/1").build().expect("the HTTP client builds");
        AlertDispatcher { store, client, config, metrics: None, secrets: None }
    }

    /// Counts every attempt in `metrics` (`/metrics` of the process running the dispatcher).
    pub fn with_metrics(mut self, metrics: WebhookMetrics) -> AlertDispatcher {
        self.metrics = Some(metrics);
        self
    }

    /// Opens rules' sealed webhook secrets with these keys (a plaintext secret from before
    /// sealing is used as it is).
    pub fn with_secrets(mut self, secrets: Option<Arc<crm_service::SecretKeys>>) -> AlertDispatcher {
        self.secrets = secrets;
        self
    }

    /// The rule's signing secret, opened if sealed.
    fn signing_secret(&self, rule: &crm_schemas::AlertRule) -> Result<String, String> {
        if !crm_service::SecretKeys::is_sealed(rule.secret.as_bytes()) {
            return Ok(rule.secret.clone());
        }
        let keys = self.secrets.as_ref().ok_or("the webhook secret is sealed and no secrets key is configured")?;
        let opened = keys.open(rule.secret.as_bytes(), &rule.secret_context()).map_err(|e| format!("the webhook secret does not open: {e}"))?;
        String::from_utf8(opened.plaintext).map_err(|_| "the webhook secret is not text".to_owned())
    }

    fn count(&self, outcome: &'static str, started: std::time::Instant) {
        if let Some(metrics) = &self.metrics {
            metrics.attempted(outcome, started.elapsed().as_secs_f64());
        }
    }

    /// Delivers due alerts until `shutdown`.
    pub async fn run(self, shutdown: Shutdown) {
        loop {
            match self.dispatch_due().await {
                Ok(0) => {}
                Ok(sent) => tracing::debug!(sent, "alert deliveries attempted"),
                Err(err) => tracing::warn!(error = %err, "alert dispatch failed; retrying"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.config.poll_interval) => {}
                _ = shutdown.wait() => return,
            }
        }
    }

    /// One pass: attempts every due alert once. Returns how many were attempted.
    pub async fn dispatch_due(&self) -> Result<usize, StoreError> {
        let due = self.store.due_alerts(now_ms(), 100).await?;
        let count = due.len();
        for alert in due {
            let updated = self.attempt(alert).await?;
            self.store.update_alert(&updated).await?;
        }
        Ok(count)
    }

    async fn attempt(&self, mut alert: Alert) -> Result<Alert, StoreError> {
        let rule = self.store.alert_rules(&alert.site_id).await?.into_iter().find(|r| r.rule_id == alert.rule_id);
        let at_ms = now_ms();
        let started = std::time::Instant::now();
        let Some(rule) = rule else {
            alert.attempts.push(DeliveryAttempt { at_ms, status_code: None, error: Some("the rule was deleted".into()) });
            alert.status = DeliveryStatus::Failed;
            self.count("failed", started);
            return Ok(alert);
        };
        let mut payload = json!({
            "alert_id": alert.alert_id,
            "rule": { "id": alert.rule_id, "name": alert.rule_name },
            "site_id": alert.site_id,
            "message": alert.message,
            "fired_at_ms": alert.fired_at_ms,
        });
        match &alert.task {
            Some(task) => {
                payload["account_id"] = json!(task.account_id);
                payload["task"] = json!(task);
            }
            None => payload["lead"] = json!({ "id": alert.lead_id, "email": alert.lead_email, "score": alert.lead_score }),
        }
        let body = serde_json::to_vec(&payload).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let timestamp = at_ms / 1000;
        let secret = match self.signing_secret(&rule) {
            Ok(secret) => secret,
            Err(error) => {
                // Never sent unsigned: recorded and retried like a refused delivery (the key may
                // be configured meanwhile), then failed.
                tracing::warn!(alert_id = %alert.alert_id, rule_id = %rule.rule_id, error = %error, "webhook not sent");
                alert.attempts.push(DeliveryAttempt { at_ms, status_code: None, error: Some(error) });
                return Ok(self.after_attempt(alert, at_ms, started));
            }
        };
        let result = self
            .client
            .post(&rule.webhook_url)
            .header("content-type", "application/json")
            .header("x-crm-timestamp", timestamp.to_string())
            .header("x-crm-signature", signature(&secret, timestamp, &body))
            .header("x-crm-alert-id", alert.alert_id.clone())
            .body(body)
            .send()
            .await;
        let attempt = match result {
            Ok(response) if response.status().is_success() => {
                alert.status = DeliveryStatus::Delivered;
                DeliveryAttempt { at_ms, status_code: Some(response.status().as_u16()), error: None }
            }
            Ok(response) => DeliveryAttempt { at_ms, status_code: Some(response.status().as_u16()), error: None },
            Err(err) => DeliveryAttempt { at_ms, status_code: None, error: Some(err.to_string()) },
        };
        alert.attempts.push(attempt);
        Ok(self.after_attempt(alert, at_ms, started))
    }

    /// Schedules the next attempt or gives up, and counts the attempt.
    fn after_attempt(&self, mut alert: Alert, at_ms: i64, started: std::time::Instant) -> Alert {
        if alert.status == DeliveryStatus::Pending {
            if alert.attempts.len() >= MAX_DELIVERY_ATTEMPTS {
                alert.status = DeliveryStatus::Failed;
                tracing::warn!(alert_id = %alert.alert_id, "alert delivery failed for good");
            } else {
                alert.next_attempt_ms = at_ms + retry_delay_ms(alert.attempts.len());
            }
        }
        self.count(
            match alert.status {
                DeliveryStatus::Delivered => "delivered",
                DeliveryStatus::Failed => "failed",
                DeliveryStatus::Pending => "retrying",
            },
            started,
        );
        alert
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hmac_sha256_over_timestamp_dot_body() {
        // Reference value computed with Python's hmac module: HMAC-SHA256("key", "1700000000.{}").
        let sig = signature("key", 1_700_000_000, b"{}");
        assert_eq!(sig, "sha256=9d713ed406bb7076d4123f0dc2c39d2df5c654ed4b0cd56b52c8b4c940bd63ae");
        assert_ne!(sig, signature("other", 1_700_000_000, b"{}"));
        assert_ne!(sig, signature("key", 1_700_000_001, b"{}"));
    }
}
