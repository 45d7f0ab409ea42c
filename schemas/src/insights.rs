//! AI lead insights: an optional analysis of a lead (key factors, next actions, likely
//! objections) generated asynchronously by an OpenAI-compatible chat-completions endpoint.
//! Requests are queued with the processor's batch writes and worked off by the insight worker;
//! a slow or failing model never blocks scoring.

use serde::{Deserialize, Serialize};

/// Attempts before a request is given up.
pub const MAX_INSIGHT_ATTEMPTS: u32 = 5;

/// A queued request for a lead's insight.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InsightRequest {
    pub site_id: String,
    pub lead_id: String,
    pub requested_at_ms: i64,
    pub next_attempt_ms: i64,
    #[serde(default)]
    pub attempts: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
    /// Set when the request was given up after [`MAX_INSIGHT_ATTEMPTS`].
    #[serde(default)]
    pub failed: bool,
}

/// What the model said about the lead.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeadInsight {
    pub site_id: String,
    pub lead_id: String,
    pub generated_at_ms: i64,
    pub model: String,
    /// The lead score the analysis was made for.
    pub score: u8,
    pub key_factors: Vec<String>,
    pub next_actions: Vec<String>,
    pub objections: Vec<String>,
}
