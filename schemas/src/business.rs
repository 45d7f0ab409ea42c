//! Imported business data behind customer health and churn: customer accounts (plan, seats,
//! MRR, contract dates), invoices (payment history; cancellations are the churn labels), support
//! tickets and relationship facts. Each record belongs to a site and a customer `account_id` —
//! the id product events carry in the `account_id` trait.

use serde::{Deserialize, Serialize};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ImportKind {
    Accounts,
    Invoices,
    Tickets,
    Relationships,
}

impl ImportKind {
    pub fn parse(text: &str) -> Option<ImportKind> {
        match text {
            "accounts" => Some(ImportKind::Accounts),
            "invoices" => Some(ImportKind::Invoices),
            "tickets" => Some(ImportKind::Tickets),
            "relationships" => Some(ImportKind::Relationships),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ImportKind::Accounts => "accounts",
            ImportKind::Invoices => "invoices",
            ImportKind::Tickets => "tickets",
            ImportKind::Relationships => "relationships",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CustomerAccount {
    pub site_id: String,
    pub account_id: String,
    pub name: String,
    pub plan: String,
    pub seats: Option<u32>,
    /// Monthly recurring revenue now.
    pub mrr: f64,
    pub contract_start_ms: Option<i64>,
    pub renewal_ms: Option<i64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceStatus {
    Paid,
    Late,
    Failed,
    Refunded,
    Open,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InvoiceKind {
    New,
    Renewal,
    Upgrade,
    Downgrade,
    /// The customer cancelled: a churn label at `issued_ms`.
    Cancellation,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Invoice {
    pub site_id: String,
    pub account_id: String,
    pub invoice_id: String,
    pub issued_ms: i64,
    pub amount: f64,
    /// MRR after this invoice (for contract growth).
    pub mrr: Option<f64>,
    pub status: InvoiceStatus,
    pub kind: InvoiceKind,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Priority {
    Low,
    Normal,
    High,
    Urgent,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sentiment {
    Positive,
    Neutral,
    Negative,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Ticket {
    pub site_id: String,
    pub account_id: String,
    pub ticket_id: String,
    pub opened_ms: i64,
    pub closed_ms: Option<i64>,
    pub priority: Priority,
    pub sentiment: Option<Sentiment>,
    pub escalated: bool,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Relationship {
    pub site_id: String,
    pub account_id: String,
    /// Average NPS answer, 0–10.
    pub nps: Option<f64>,
    pub executive_sponsor: bool,
    pub reference_willing: bool,
    pub stakeholders: u32,
}

/// One validated import: all rows of one kind, applied all together or not at all.
#[derive(Clone, Debug, PartialEq)]
pub enum ImportBatch {
    Accounts(Vec<CustomerAccount>),
    Invoices(Vec<Invoice>),
    Tickets(Vec<Ticket>),
    Relationships(Vec<Relationship>),
}

impl ImportBatch {
    pub fn len(&self) -> usize {
        match self {
            ImportBatch::Accounts(rows) => rows.len(),
            ImportBatch::Invoices(rows) => rows.len(),
            ImportBatch::Tickets(rows) => rows.len(),
            ImportBatch::Relationships(rows) => rows.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Everything imported for one site (what the health job reads).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BusinessData {
    pub accounts: Vec<CustomerAccount>,
    pub invoices: Vec<Invoice>,
    pub tickets: Vec<Ticket>,
    pub relationships: Vec<Relationship>,
}

/// One account's health on one UTC day (the health job is idempotent per day: a re-run that day
/// replaces the record).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AccountHealth {
    pub site_id: String,
    pub account_id: String,
    pub name: String,
    /// UTC day number of the run.
    pub day: i64,
    pub computed_at_ms: i64,
    pub score: f64,
    pub usage: Option<f64>,
    pub engagement: Option<f64>,
    pub support: Option<f64>,
    pub financial: Option<f64>,
    pub relationship: Option<f64>,
    /// Components left out for lack of data (their weight went to the others).
    pub missing: Vec<String>,
    /// `healthy`, `at_risk` or `critical`.
    pub risk: String,
    /// Score change against the latest run at least 7 / 30 days earlier.
    pub change_7d: Option<f64>,
    pub change_30d: Option<f64>,
    /// Why the score moved since the previous run (the component that moved most), if it did.
    pub change_reason: Option<String>,
    pub mrr: Option<f64>,
    /// The inputs behind each component.
    pub inputs: serde_json::Value,
    /// Probability of churning within 90 days, from the churn job (absent until a model could
    /// be trained on the site's own churn history).
    #[serde(default)]
    pub churn_probability: Option<f64>,
    /// The features pushing that probability up most.
    #[serde(default)]
    pub churn_drivers: Vec<ChurnDriver>,
}

/// One feature's push on an account's churn probability: its value and its contribution to the
/// log-odds (coefficient × standardised value; positive = towards churn).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ChurnDriver {
    pub feature: String,
    pub value: f64,
    pub contribution: f64,
}

/// The health playbook rules, by name.
pub const PLAYBOOK_RULES: [&str; 3] = ["high_risk", "declining_usage", "expansion_opportunity"];

/// A follow-up created by a health playbook (or by a person).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Task {
    pub site_id: String,
    /// Deterministic for playbook tasks (rule, account, window): a rule creates at most one task
    /// per account and window.
    pub task_id: String,
    pub account_id: String,
    /// The playbook rule (`high_risk`, `declining_usage`, `expansion_opportunity`).
    pub rule: String,
    pub title: String,
    /// `high`, `medium` or `low`.
    pub priority: String,
    pub due_ms: i64,
    pub owner: Option<String>,
    /// `open` or `done`.
    pub status: String,
    pub reason: String,
    pub created_at_ms: i64,
}
