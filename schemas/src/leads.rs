//! Leads: identified people behind one or more visitor ids. A lead is keyed by the normalised
//! email within a site, so identity stitching is deterministic and replay-safe: the same email
//! always maps to the same `lead_id`.
//!
//! Ownership is split so the pipeline and humans never overwrite each other:
//! * [`Lead`] — what the stream processor derives (visitors, traits, activity, score); written
//!   only by the processor (and by explicit merges/splits, which the processor also applies).
//! * [`LeadCrm`] — what people edit in the CRM (status, owner, notes, deletion, outcome); written
//!   only by the API, with every change recorded as a [`LeadAudit`] entry.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::{Scalar, Utm};

/// Namespace of lead ids (UUID v5 of `site_id + '\n' + normalised email`).
const LEAD_NAMESPACE: Uuid = Uuid::from_u128(0x6c65_6164_5f6e_735f_7631_0000_0000_0001);

/// Lower-cased, trimmed email; `None` unless it is a plausible address.
pub fn normalize_email(raw: &str) -> Option<String> {
    let email = raw.trim().to_lowercase();
    crate::is_email(&email).then_some(email)
}

/// The deterministic id of the lead with this (normalised) email on this site.
pub fn lead_id_for(site_id: &str, email: &str) -> String {
    format!("lead_{}", Uuid::new_v5(&LEAD_NAMESPACE, format!("{site_id}\n{email}").as_bytes()).simple())
}

/// The company domain of an email, unless it is a free-mail provider.
pub fn company_domain(email: &str) -> Option<String> {
    let domain = email.rsplit_once('@')?.1.to_lowercase();
    (!crate::is_free_email(&email.to_lowercase()) && domain.contains('.')).then_some(domain)
}

/// Words that mark an IP organisation as a network or hosting provider rather than a company
/// whose staff the visitors are.
const NETWORK_PROVIDERS: &[&str] = &[
    "telecom", "telekom", "broadband", "cable", "communications", "mobile", "wireless", "internet", "isp", "hosting", "cloud",
    "datacenter", "data center", "colocation", "vps", "server", "amazon", "google", "microsoft", "digitalocean", "ovh", "hetzner",
    "linode", "akamai", "cloudflare", "comcast", "verizon", "at&t", "vodafone", "orange", "t-mobile", "charter", "spectrum",
    "level 3", "cogent", "telefonica", "british telecommunications", "tencent", "alibaba",
];

pub fn is_network_provider(org: &str) -> bool {
    let lower = org.to_lowercase();
    NETWORK_PROVIDERS.iter().any(|word| lower.contains(word))
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LeadStatus {
    #[default]
    New,
    Working,
    Qualified,
    Unqualified,
    Customer,
    Lost,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Won,
    Lost,
    Unqualified,
}

/// A site's ideal customer profile: what "company fit" is measured against. Criteria left
/// empty accept any value (a lead still needs the trait to earn the points).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdealCustomerProfile {
    /// Industries (trait `industry`), case-insensitive.
    #[serde(default)]
    pub industries: Vec<String>,
    /// Company size bounds (trait `employees` or `company_size`: a number, `"51-200"`, `"1000+"`).
    #[serde(default)]
    pub min_employees: Option<u32>,
    #[serde(default)]
    pub max_employees: Option<u32>,
    /// Minimum annual revenue (trait `annual_revenue`).
    #[serde(default)]
    pub min_revenue: Option<f64>,
    /// Technologies (trait `tech_stack`, comma-separated), case-insensitive; any overlap fits.
    #[serde(default)]
    pub tech: Vec<String>,
}

/// Behaviour summed over the lead's (human) visitor profiles.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeadActivity {
    pub visits: u32,
    pub pageviews: u64,
    pub events: u64,
    pub engaged_ms: u64,
    /// Intent signals credited (`pricing`, `demo`, `contact`, `form_submit`, …) and how often.
    #[serde(default)]
    pub signals: BTreeMap<String, u32>,
    /// Distinct UTC days with activity (union over visitors), most recent last, ≤ 30.
    #[serde(default)]
    pub active_days: Vec<i64>,
    /// The highest current intent score among the visitors.
    pub intent_score: u8,
}

/// Per-factor scores, each 0–100, and the weighted total (see ARCHITECTURE.md).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ScoreBreakdown {
    pub fit: f64,
    pub behavioural: f64,
    pub engagement: f64,
    pub intent: f64,
    pub timing: f64,
}

/// The pipeline-owned part of a lead.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Lead {
    pub site_id: String,
    pub lead_id: String,
    /// Normalised email: the identity key.
    pub email: String,
    /// Visitor ids (devices, browsers) whose history is this lead's, oldest link first.
    pub visitor_ids: Vec<String>,
    /// Traits from identify calls and forms, latest value wins.
    #[serde(default)]
    pub traits: BTreeMap<String, Scalar>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub company_domain: Option<String>,
    /// The organisation most of the lead's visits come from (ASN database), unless it is an
    /// ISP, carrier or hosting provider.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ip_org: Option<String>,
    /// First touch: UTM source, else referrer host, else "direct".
    pub source: String,
    #[serde(default)]
    pub first_utm: Utm,
    pub first_seen_ms: i64,
    pub last_activity_ms: i64,
    pub created_at_ms: i64,
    #[serde(default)]
    pub activity: LeadActivity,
    pub score: u8,
    #[serde(default)]
    pub breakdown: ScoreBreakdown,
    /// The strongest reasons behind the score, in words.
    #[serde(default)]
    pub reasons: Vec<String>,
    /// Set when an explicit merge folded this lead into another one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merged_into: Option<String>,
}

/// The CRM-owned part of a lead (absent until someone edits it).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LeadCrm {
    pub site_id: String,
    pub lead_id: String,
    #[serde(default)]
    pub status: LeadStatus,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub notes: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub deleted_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outcome: Option<OutcomeRecord>,
    pub updated_at_ms: i64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct OutcomeRecord {
    pub outcome: Outcome,
    /// The lead score when the outcome was recorded (what the feedback report bands by).
    pub score: u8,
    pub at_ms: i64,
    pub by: String,
}

/// One change of one CRM field (the seed's `{module}_audit`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LeadAudit {
    pub site_id: String,
    pub lead_id: String,
    pub at_ms: i64,
    pub by: String,
    pub field: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub old: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub new: Option<String>,
}

/// A visitor already linked to one lead identified as someone else (a shared device). Nothing is
/// merged; a person decides (`POST /api/v1/leads/{id}/merge` or `…/split`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentityConflict {
    pub site_id: String,
    pub visitor_id: String,
    /// The lead the visitor is linked to.
    pub lead_id: String,
    /// The other identity seen on the same visitor.
    pub other_lead_id: String,
    pub other_email: String,
    pub event_id: Uuid,
    pub at_ms: i64,
    #[serde(default)]
    pub resolved: bool,
}

/// An explicit identity decision by a person; authoritative over what the pipeline derives.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum OverrideKind {
    /// Lead `from_lead_id` is the same person as `into_lead_id`: its visitors and traits fold in.
    Merge { from_lead_id: String, into_lead_id: String },
    /// The visitor belongs to `to_lead_id` (or to nobody: `None`), whatever it identified as.
    MoveVisitor { visitor_id: String, to_lead_id: Option<String> },
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct IdentityOverride {
    pub site_id: String,
    pub kind: OverrideKind,
    pub by: String,
    pub at_ms: i64,
}

impl IdentityOverride {
    /// Storage key within the site: a later decision about the same lead or visitor replaces
    /// the earlier one.
    pub fn key(&self) -> String {
        match &self.kind {
            OverrideKind::Merge { from_lead_id, .. } => format!("merge/{from_lead_id}"),
            OverrideKind::MoveVisitor { visitor_id, .. } => format!("visitor/{visitor_id}"),
        }
    }
}

/// A site's overrides, resolved: which lead a lead id or a visitor really belongs to.
#[derive(Clone, Debug, Default)]
pub struct IdentityMap {
    merges: BTreeMap<String, String>,
    moves: BTreeMap<String, Option<String>>,
}

impl IdentityMap {
    pub fn new(overrides: &[IdentityOverride]) -> IdentityMap {
        let mut map = IdentityMap::default();
        for o in overrides {
            match &o.kind {
                OverrideKind::Merge { from_lead_id, into_lead_id } => {
                    map.merges.insert(from_lead_id.clone(), into_lead_id.clone());
                }
                OverrideKind::MoveVisitor { visitor_id, to_lead_id } => {
                    map.moves.insert(visitor_id.clone(), to_lead_id.clone());
                }
            }
        }
        map
    }

    /// The lead a lead id resolves to after merges (cycles stop where they would repeat).
    pub fn canonical(&self, lead_id: &str) -> String {
        let mut current = lead_id.to_owned();
        for _ in 0..32 {
            match self.merges.get(&current) {
                Some(next) if next != lead_id => current = next.clone(),
                _ => break,
            }
        }
        current
    }

    /// The lead a visitor belongs to, given the lead the pipeline linked it to.
    pub fn lead_of(&self, visitor_id: &str, linked: Option<&str>) -> Option<String> {
        match self.moves.get(visitor_id) {
            Some(moved) => moved.as_deref().map(|l| self.canonical(l)),
            None => linked.map(|l| self.canonical(l)),
        }
    }

    /// Leads merged (directly or transitively) into `lead_id`.
    pub fn merged_into(&self, lead_id: &str) -> Vec<String> {
        self.merges.keys().filter(|from| from.as_str() != lead_id && self.canonical(from) == lead_id).cloned().collect()
    }

    /// Whether a person decided where this visitor belongs (then identities never re-link it).
    pub fn is_moved(&self, visitor_id: &str) -> bool {
        self.moves.contains_key(visitor_id)
    }

    /// Applies the decisions to a lead: its visitors become its own, those of the leads merged
    /// into it and those moved to it by hand, minus those moved away; merged leads' traits fill
    /// in what the lead lacks.
    pub fn resolve(&self, lead: &mut Lead, merged_from: &[Lead]) {
        let moved = self.moved_to(&lead.lead_id);
        let mut visitors: Vec<String> = Vec::new();
        let candidates = lead.visitor_ids.iter().chain(merged_from.iter().flat_map(|m| m.visitor_ids.iter())).chain(moved.iter());
        for visitor in candidates {
            if !visitors.contains(visitor) && self.lead_of(visitor, Some(&lead.lead_id)).as_deref() == Some(lead.lead_id.as_str()) {
                visitors.push(visitor.clone());
            }
        }
        lead.visitor_ids = visitors;
        for other in merged_from {
            for (key, value) in &other.traits {
                if key != "email" {
                    lead.traits.entry(key.clone()).or_insert_with(|| value.clone());
                }
            }
            lead.first_seen_ms = lead.first_seen_ms.min(other.first_seen_ms);
            lead.last_activity_ms = lead.last_activity_ms.max(other.last_activity_ms);
        }
    }

    /// Visitors moved to `lead_id` by hand.
    pub fn moved_to(&self, lead_id: &str) -> Vec<String> {
        self.moves.iter().filter(|(_, to)| to.as_deref().map(|t| self.canonical(t)).as_deref() == Some(lead_id)).map(|(v, _)| v.clone()).collect()
    }
}

/// A lead score at a point in time (kept whenever it changes).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ScorePoint {
    pub site_id: String,
    pub lead_id: String,
    pub at_ms: i64,
    pub score: u8,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emails_normalise_and_lead_ids_are_stable() {
        assert_eq!(normalize_email("  Ada@Acme.Example "), Some("ada@acme.example".into()));
        assert_eq!(normalize_email("nope"), None);
        let a = lead_id_for("s1", "ada@acme.example");
        assert_eq!(a, lead_id_for("s1", "ada@acme.example"));
        assert_ne!(a, lead_id_for("s2", "ada@acme.example"));
        assert!(a.starts_with("lead_") && a.len() == 37);
    }

    #[test]
    fn overrides_resolve_merges_transitively_and_moves_win() {
        let at = |kind| IdentityOverride { site_id: "s".into(), kind, by: "admin".into(), at_ms: 0 };
        let map = IdentityMap::new(&[
            at(OverrideKind::Merge { from_lead_id: "b".into(), into_lead_id: "a".into() }),
            at(OverrideKind::Merge { from_lead_id: "c".into(), into_lead_id: "b".into() }),
            at(OverrideKind::MoveVisitor { visitor_id: "kiosk".into(), to_lead_id: Some("c".into()) }),
            at(OverrideKind::MoveVisitor { visitor_id: "shared".into(), to_lead_id: None }),
        ]);
        assert_eq!(map.canonical("c"), "a");
        assert_eq!(map.canonical("z"), "z");
        assert_eq!(map.lead_of("kiosk", Some("z")).as_deref(), Some("a"));
        assert_eq!(map.lead_of("shared", Some("a")), None);
        assert_eq!(map.lead_of("other", Some("b")).as_deref(), Some("a"));
        let mut merged = map.merged_into("a");
        merged.sort();
        assert_eq!(merged, vec!["b", "c"]);
        assert_eq!(map.moved_to("a"), vec!["kiosk"]);
        // A cycle (a→b, b→a) terminates.
        let cycle = IdentityMap::new(&[
            at(OverrideKind::Merge { from_lead_id: "a".into(), into_lead_id: "b".into() }),
            at(OverrideKind::Merge { from_lead_id: "b".into(), into_lead_id: "a".into() }),
        ]);
        assert_eq!(cycle.canonical("a"), "b");
    }

    #[test]
    fn company_domain_skips_free_mail() {
        assert_eq!(company_domain("ada@acme.example"), Some("acme.example".into()));
        assert_eq!(company_domain("ada@Gmail.com"), None);
    }
}
