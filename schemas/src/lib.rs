//! Typed, versioned tracking events (the wire contract with the widgets) and the enriched records
//! the pipeline derives from them (stored events, sessions, visitor profiles, sites, dead letters).
//!
//! This crate is the vocabulary every other crate speaks. It deliberately depends on nothing but
//! serde/uuid/thiserror: no transport, storage or query engine leaks into it.

mod alerts;
mod auth;
mod business;
mod event;
mod forms;
mod goals;
mod insights;
mod kb;
pub mod lead_score;
mod leads;
mod privacy;
mod records;
mod scalar;

pub use auth::{AuthAuditEntry, AuthEvent, RefreshToken};
pub use alerts::{
    alert_id_for, retry_delay_ms, Alert, AlertCondition, AlertRule, DeliveryAttempt, DeliveryStatus, MAX_DELIVERY_ATTEMPTS,
};
pub use business::{
    ChurnDriver, PLAYBOOK_RULES,
    AccountHealth, BusinessData, CustomerAccount, ImportBatch, ImportKind, Invoice, InvoiceKind, InvoiceStatus, Priority, Relationship,
    Sentiment, Task, Ticket,
};
pub use event::{
    classify_serde_error, nests_deeper_than, parse_event, ClickTarget, CollectedEvent, Event, EventBody, EventKind,
    Limits, ValidationError, Viewport, WireEvent, MAX_NESTING, SCHEMA_VERSION,
};
pub use forms::{
    is_email, is_free_email, valid_key, FieldError, FieldKind, FormDefinition, FormField, ShowIf,
    FREE_EMAIL_DOMAINS,
};
pub use leads::{
    company_domain, is_network_provider, lead_id_for, normalize_email, IdealCustomerProfile, IdentityConflict, IdentityMap, IdentityOverride,
    Lead, LeadActivity, OverrideKind,
    LeadAudit, LeadCrm, LeadStatus, Outcome, OutcomeRecord, ScoreBreakdown, ScorePoint,
};
pub use kb::{
    normalize_query, slugify, valid_slug, Article, ArticleEmbedding, ArticleStatus, ArticleVersion, Conversation, ConversationMessage,
    ConversationStatus, KbCounter, MessageAuthor, MAX_ARTICLE_BODY_BYTES, MAX_ARTICLE_TAGS, MAX_GAP_QUERY_CHARS, MAX_MESSAGE_CHARS, ChatQuestion, ChatSettings,
};
pub use goals::{check_goals, same_value, Goal, GoalMatch, PropertyCondition, MAX_GOALS};
pub use insights::{InsightRequest, LeadInsight, MAX_INSIGHT_ATTEMPTS};
pub use privacy::{add_count, Erasure, ErasureSubject};
pub use records::{
    DeadLetter, Device, Geo, PageRule, PrivacySettings, Role, Session, Site, StoredEvent, Totp, User, Utm, VisitorProfile,
    BotSettings, DEFAULT_PAGE_RULES, MAX_SITE_RETENTION_DAYS,
};
pub use scalar::Scalar;

/// Milliseconds in a UTC day; day indexes are `ts_ms.div_euclid(DAY_MS)`.
pub const DAY_MS: i64 = 86_400_000;

/// The UTC day number (days since 1970-01-01) of a millisecond timestamp.
pub fn utc_day(ts_ms: i64) -> i64 {
    ts_ms.div_euclid(DAY_MS)
}
