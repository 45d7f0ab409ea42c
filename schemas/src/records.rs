//! The records the pipeline derives and stores: enriched events, sessions, visitor profiles,
//! sites with their intent page rules, dead letters, and API users.
//!
//! Timestamps are UTC epoch milliseconds (`*_ms`) everywhere; the API renders them as RFC 3339.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{EventBody, Scalar};

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Geo {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub region: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub city: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub asn: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub org: Option<String>,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    pub browser: String,
    pub browser_version: String,
    pub os: String,
    pub os_version: String,
    /// woothee category: pc, smartphone, mobilephone, appliance, crawler, misc, unknown.
    pub category: String,
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Utm {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub medium: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub campaign: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub term: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

impl Utm {
    pub fn is_empty(&self) -> bool {
        self.source.is_none() && self.medium.is_none() && self.campaign.is_none()
    }
}

/// An event after enrichment, as stored and returned by the timeline API.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StoredEvent {
    pub event_id: Uuid,
    pub site_id: String,
    pub visitor_id: String,
    /// Server-side session (see the sessionisation rules in ARCHITECTURE.md).
    pub session_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_session_id: Option<String>,
    /// Event time used for analytics: the client time when plausible, else the receive time.
    pub ts_ms: i64,
    pub received_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub props: BTreeMap<String, Scalar>,
    #[serde(flatten)]
    pub body: EventBody,
    /// Anonymised client address (IPv4 /24, IPv6 /48 by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip: Option<String>,
    #[serde(default)]
    pub geo: Geo,
    #[serde(default)]
    pub device: Device,
    pub is_bot: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent_signal: Option<String>,
}

/// A server-side session of one visitor.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Session {
    pub site_id: String,
    pub session_id: String,
    pub visitor_id: String,
    pub start_ms: i64,
    pub end_ms: i64,
    pub pageviews: u32,
    pub events: u32,
    pub clicks: u32,
    pub engaged_ms: u64,
    pub max_scroll: u8,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_page: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub referrer_host: Option<String>,
    #[serde(default)]
    pub utm: Utm,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    #[serde(default)]
    pub device_category: String,
    #[serde(default)]
    pub browser: String,
    pub is_bot: bool,
    /// Intent signals already credited in this session (each credited once per session).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub signals: Vec<String>,
}

impl Session {
    /// Duration: wall-clock span of the session, or the engaged time if that is longer (a
    /// single-page session has no span but may have minutes of reading).
    pub fn duration_ms(&self) -> u64 {
        let span = (self.end_ms - self.start_ms).max(0) as u64;
        span.max(self.engaged_ms)
    }

    /// Bounce (PostHog's definition): one pageview, no clicks and under 10 seconds.
    pub fn is_bounce(&self) -> bool {
        self.pageviews <= 1 && self.clicks == 0 && self.duration_ms() < 10_000
    }
}

/// The per-visitor profile (the seed's `activity_tracking_visitors`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct VisitorProfile {
    pub site_id: String,
    pub visitor_id: String,
    pub first_seen_ms: i64,
    pub last_seen_ms: i64,
    pub visits: u32,
    pub pageviews: u64,
    pub events: u64,
    pub time_spent_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first_referrer: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub landing_page: Option<String>,
    #[serde(default)]
    pub first_utm: Utm,
    #[serde(default)]
    pub last_utm: Utm,
    #[serde(default)]
    pub device: Device,
    #[serde(default)]
    pub geo: Geo,
    pub is_bot: bool,
    pub engagement_score: u8,
    pub intent_score: u8,
    /// Decayed intent points as of `intent_updated_ms` (see ARCHITECTURE.md).
    pub intent_points: f64,
    pub intent_updated_ms: i64,
    #[serde(default)]
    pub intent_signals: BTreeMap<String, u32>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub traits: BTreeMap<String, Scalar>,
    /// Gap before the current visit (ms); feeds the recency component of engagement.
    #[serde(default)]
    pub return_gap_ms: Option<i64>,
    /// Distinct UTC days with activity, most recent last, at most 30 kept.
    #[serde(default)]
    pub active_days: Vec<i64>,
    /// The lead this visitor is linked to (set by the first identify / form submit with an email).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lead_id: Option<String>,
    /// The session the next event may extend.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_session: Option<Session>,
    /// Highest log offset applied to this profile, per `"<log source>/<partition>"`. Lets the
    /// processor replay a batch against a store without multi-table transactions and still
    /// apply each event to the profile exactly once.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub applied_offsets: BTreeMap<String, u64>,
}

/// A page rule: a path glob (`*` matches anything) that credits an intent signal.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PageRule {
    pub pattern: String,
    pub signal: String,
    pub points: f64,
}

/// Rules used for sites that define none: (pattern, signal, points).
pub const DEFAULT_PAGE_RULES: &[(&str, &str, f64)] = &[
    ("*/pricing*", "pricing", 20.0),
    ("*/plans*", "pricing", 20.0),
    ("*/demo*", "demo", 30.0),
    ("*/contact*", "contact", 25.0),
    ("*/docs*", "docs", 5.0),
    ("*/case-stud*", "case_study", 10.0),
    ("*/customers*", "case_study", 10.0),
];

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Site {
    pub site_id: String,
    pub name: String,
    /// Origins (`https://example.com`) allowed to send beacons; empty means any origin.
    #[serde(default)]
    pub allowed_origins: Vec<String>,
    /// Intent rules; empty means [`DEFAULT_PAGE_RULES`].
    #[serde(default)]
    pub page_rules: Vec<PageRule>,
    /// Half-life of intent points in days.
    #[serde(default = "default_half_life")]
    pub intent_half_life_days: f64,
    /// What lead "company fit" is scored against.
    #[serde(default)]
    pub icp: crate::IdealCustomerProfile,
    pub created_at_ms: i64,
    /// The chat widget's settings (greeting, qualification questions, handoff rules).
    #[serde(default)]
    pub chat: crate::ChatSettings,
    /// What counts as a conversion on this site (see `goals.rs`).
    #[serde(default)]
    pub goals: Vec<crate::Goal>,
    /// How the collector treats visitors' privacy signals.
    #[serde(default)]
    pub privacy: PrivacySettings,
    #[serde(default)]
    pub bots: BotSettings,
}

/// A site's privacy settings.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PrivacySettings {
    /// Drop, unrecorded, the events of requests that carry `DNT: 1` or `Sec-GPC: 1`.
    pub honor_dnt_gpc: bool,
    /// Keep the site's events, sessions and dead letters this many days (with today), on
    /// whatever store; `None` keeps them as long as the store's own retention does. Profiles,
    /// leads and CRM records are kept until erased.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// A site's bot signals beyond the user agent.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BotSettings {
    /// Count events from datacenter and hosting networks (by the address's ASN, when an ASN
    /// database is loaded) as bots. On by default; a site whose buyers browse from cloud desktops
    /// turns it off.
    pub datacenter_asn: bool,
}

impl Default for BotSettings {
    fn default() -> Self {
        BotSettings { datacenter_asn: true }
    }
}

/// Longest per-site retention a site may set (ten years).
pub const MAX_SITE_RETENTION_DAYS: u32 = 3_650;

fn default_half_life() -> f64 {
    7.0
}

impl Site {
    pub fn new(site_id: impl Into<String>, name: impl Into<String>, now_ms: i64) -> Site {
        Site {
            site_id: site_id.into(),
            name: name.into(),
            allowed_origins: Vec::new(),
            page_rules: Vec::new(),
            intent_half_life_days: default_half_life(),
            icp: crate::IdealCustomerProfile::default(),
            created_at_ms: now_ms,
            chat: crate::ChatSettings::default(),
            goals: Vec::new(),
            privacy: PrivacySettings::default(),
            bots: BotSettings::default(),
        }
    }

    /// The rules in force: the site's own, or the defaults.
    pub fn effective_rules(&self) -> Vec<PageRule> {
        if self.page_rules.is_empty() {
            DEFAULT_PAGE_RULES
                .iter()
                .map(|(p, s, pts)| PageRule { pattern: (*p).into(), signal: (*s).into(), points: *pts })
                .collect()
        } else {
            self.page_rules.clone()
        }
    }

    /// Whether a browser `Origin` header may send beacons for this site.
    pub fn origin_allowed(&self, origin: &str) -> bool {
        self.allowed_origins.is_empty()
            || self.allowed_origins.iter().any(|o| o == "*" || o.eq_ignore_ascii_case(origin))
    }
}

/// A refused event, kept so a site owner can see what their integration gets wrong.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub id: Uuid,
    pub site_id: String,
    pub received_at_ms: i64,
    pub code: String,
    pub message: String,
    /// The offending event's JSON, cut to 4 KiB.
    pub payload: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Admin,
    SalesManager,
    SalesRep,
    CustomerSuccess,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub username: String,
    /// argon2id PHC string; never leaves the store through the API.
    pub password_hash: String,
    pub role: Role,
    pub created_at_ms: i64,
    /// A disabled user cannot log in or refresh; their refresh tokens are revoked.
    #[serde(default)]
    pub disabled: bool,
    /// Bumped whenever the user's live access tokens must stop working (disable, role or
    /// password change, log out everywhere); every access token names the version it was
    /// issued at.
    #[serde(default)]
    pub token_version: u64,
    /// The second factor, once the user started enrolling.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub totp: Option<Totp>,
}

/// A user's TOTP second factor (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Totp {
    /// The shared secret: sealed with the secrets key when one is configured, else base64.
    pub secret: String,
    /// False between enrolment and the first correct code: the factor is not asked for yet.
    pub confirmed: bool,
    /// The last time step a code was accepted for; a code of that step or earlier is refused
    /// (a replayed code).
    #[serde(default)]
    pub last_step: u64,
    /// SHA-256 (hex) of each unused recovery code.
    #[serde(default)]
    pub recovery_hashes: Vec<String>,
    pub enrolled_at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounce_follows_the_documented_rule() {
        let mut s = Session { pageviews: 1, start_ms: 0, end_ms: 5_000, ..Session::default() };
        assert!(s.is_bounce());
        s.clicks = 1;
        assert!(!s.is_bounce());
        s.clicks = 0;
        s.engaged_ms = 12_000;
        assert!(!s.is_bounce());
        let two = Session { pageviews: 2, ..Session::default() };
        assert!(!two.is_bounce());
    }

    #[test]
    fn origins_and_rules_defaults() {
        let mut site = Site::new("s", "S", 0);
        assert!(site.origin_allowed("https://anything.example"));
        site.allowed_origins = vec!["https://a.example".into()];
        assert!(site.origin_allowed("https://A.example"));
        assert!(!site.origin_allowed("https://evil.example"));
        assert!(site.effective_rules().iter().any(|r| r.signal == "pricing"));
    }

    #[test]
    fn stored_event_serialises_body_flat() {
        let event = StoredEvent {
            event_id: Uuid::nil(),
            site_id: "s".into(),
            visitor_id: "v".into(),
            session_id: "x".into(),
            client_session_id: None,
            ts_ms: 1,
            received_at_ms: 1,
            url: None,
            path: None,
            referrer: None,
            title: None,
            props: BTreeMap::new(),
            body: EventBody::Engagement { scroll_depth: 50, engaged_ms: 10 },
            ip: None,
            geo: Geo::default(),
            device: Device::default(),
            is_bot: false,
            intent_signal: None,
        };
        let json = serde_json::to_value(&event).unwrap();
        assert_eq!(json["type"], "engagement");
        assert_eq!(json["scroll_depth"], 50);
        let back: StoredEvent = serde_json::from_value(json).unwrap();
        assert_eq!(back, event);
    }
}
