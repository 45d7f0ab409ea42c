//! Lead alerts: per-site rules evaluated by the stream processor as leads change, firing at
//! most once per lead and rule window, delivered to a webhook signed with HMAC-SHA256 and
//! retried with backoff; every attempt is kept in the alert's delivery log.

use serde::{Deserialize, Serialize};
use uuid::Uuid;

const ALERT_NAMESPACE: Uuid = Uuid::from_u128(0x616c_6572_745f_6e73_5f76_3100_0000_0001);

/// Attempts before an alert is given up as failed.
pub const MAX_DELIVERY_ATTEMPTS: usize = 8;

/// What makes a rule fire for a lead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum AlertCondition {
    /// The lead viewed pages matching `path` (a glob, `*` = anything) at least `min_count` times
    /// within the last `within_days` days.
    PageViews { path: String, min_count: u32, within_days: u32 },
    /// The lead score rose from below `threshold` to `threshold` or more.
    ScoreCrossed { threshold: u8 },
    /// A lead from one of these company domains was active.
    TargetAccount { domains: Vec<String> },
    /// A health playbook created a task (one of these rules; empty = any rule). Evaluated by the
    /// health and churn jobs, not the stream processor.
    Playbook {
        #[serde(default)]
        rules: Vec<String>,
    },
    /// A chat visitor was handed to a person (asked for one, or a handoff rule fired); with
    /// `only_when_offline`, only while no staff member is online. Fired by the API, once per
    /// conversation and window.
    ChatHandoff {
        #[serde(default)]
        only_when_offline: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AlertRule {
    pub site_id: String,
    pub rule_id: String,
    pub name: String,
    pub condition: AlertCondition,
    pub webhook_url: String,
    /// HMAC-SHA256 key of the `X-CRM-Signature` header (shown once, when the rule is created).
    pub secret: String,
    /// A rule fires at most once per lead in each window of this many hours.
    pub window_hours: u32,
    pub enabled: bool,
    pub created_at_ms: i64,
}

impl AlertRule {
    /// What a sealed `secret` is bound to (the associated data of its encryption): this rule,
    /// so a sealed secret copied into another rule does not open.
    pub fn secret_context(&self) -> String {
        format!("alert_rule:{}/{}", self.site_id, self.rule_id)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeliveryAttempt {
    pub at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One firing of a rule for a lead, with its delivery state.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub site_id: String,
    /// Deterministic: the same rule, lead and window always give the same id (fires once).
    pub alert_id: String,
    pub rule_id: String,
    pub rule_name: String,
    pub lead_id: String,
    pub lead_email: String,
    pub lead_score: u8,
    pub message: String,
    pub fired_at_ms: i64,
    pub status: DeliveryStatus,
    pub next_attempt_ms: i64,
    #[serde(default)]
    pub attempts: Vec<DeliveryAttempt>,
    /// For playbook alerts: the task the playbook created (the lead fields are then empty).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub task: Option<crate::Task>,
}

/// The id of the firing of `rule_id` for `lead_id` in the window containing `at_ms`.
pub fn alert_id_for(site_id: &str, rule_id: &str, lead_id: &str, window_hours: u32, at_ms: i64) -> String {
    let window_ms = i64::from(window_hours.max(1)) * 3_600_000;
    let window = at_ms.div_euclid(window_ms);
    format!("alert_{}", Uuid::new_v5(&ALERT_NAMESPACE, format!("{site_id}\n{rule_id}\n{lead_id}\n{window}").as_bytes()).simple())
}

/// Delay before retry number `attempt` (1-based): 1 s, 2 s, 4 s … capped at 10 minutes.
pub fn retry_delay_ms(attempt: usize) -> i64 {
    let exponent = attempt.saturating_sub(1).min(20) as u32;
    (1_000i64 << exponent).min(600_000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn alert_ids_are_stable_within_a_window_only() {
        let hour = 3_600_000;
        let a = alert_id_for("s", "r", "l", 24, 5 * hour);
        assert_eq!(a, alert_id_for("s", "r", "l", 24, 23 * hour));
        assert_ne!(a, alert_id_for("s", "r", "l", 24, 25 * hour));
        assert_ne!(a, alert_id_for("s", "r", "other", 24, 5 * hour));
    }

    #[test]
    fn retry_backoff_doubles_and_caps() {
        assert_eq!((retry_delay_ms(1), retry_delay_ms(2), retry_delay_ms(4)), (1_000, 2_000, 8_000));
        assert_eq!(retry_delay_ms(30), 600_000);
    }

    #[test]
    fn conditions_are_tagged() {
        let c: AlertCondition = serde_json::from_str(r#"{"type":"score_crossed","threshold":80}"#).unwrap();
        assert_eq!(c, AlertCondition::ScoreCrossed { threshold: 80 });
        assert!(serde_json::from_str::<AlertCondition>(r#"{"type":"score_crossed","threshold":80,"x":1}"#).is_err());
    }
}
