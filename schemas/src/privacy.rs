//! Data-subject erasure: the [`Erasure`] record that is at once the audit entry of an erase
//! request and the tombstone the stream processor honours, so a log replay never brings an
//! erased subject back.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who an erase request named.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ErasureSubject {
    Visitor { visitor_id: String },
    Lead { lead_id: String },
}

/// One erase request: what it covers, who asked, when, and what was deleted.
///
/// It covers `visitor_ids` (for a lead: every device linked to it or to a lead merged into it)
/// and `lead_ids` (the lead and the leads merged into it). Events received at or before `at_ms`
/// that belong to a covered visitor, or that identify as a covered lead (the lead id derives from
/// the email, so no email is kept here), are dropped by the processor; later events are a new
/// visit and are kept.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Erasure {
    /// A UUID.
    pub erasure_id: String,
    pub site_id: String,
    pub subject: ErasureSubject,
    pub visitor_ids: Vec<String>,
    pub lead_ids: Vec<String>,
    /// The user who asked.
    pub requested_by: String,
    pub at_ms: i64,
    /// Set once every store deleted the subject's records; an erasure without it is re-run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub completed_at_ms: Option<i64>,
    /// Records deleted, by kind (`events`, `sessions`, `profiles`, `leads`, ...).
    #[serde(default)]
    pub counts: BTreeMap<String, u64>,
}

impl Erasure {
    /// Whether an event of `visitor_id` received at `received_at_ms`, identifying as `lead_id`
    /// when it carries an email, is erased.
    pub fn covers(&self, visitor_id: &str, lead_id: Option<&str>, received_at_ms: i64) -> bool {
        received_at_ms <= self.at_ms
            && (self.visitor_ids.iter().any(|v| v == visitor_id) || lead_id.is_some_and(|l| self.lead_ids.iter().any(|e| e == l)))
    }
}

/// Adds `n` to `counts[kind]` (leaving out kinds with nothing deleted).
pub fn add_count(counts: &mut BTreeMap<String, u64>, kind: &str, n: u64) {
    if n > 0 {
        *counts.entry(kind.to_owned()).or_default() += n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn erasure() -> Erasure {
        Erasure {
            erasure_id: "e1".into(),
            site_id: "s".into(),
            subject: ErasureSubject::Lead { lead_id: "lead_a".into() },
            visitor_ids: vec!["v1".into(), "v2".into()],
            lead_ids: vec!["lead_a".into()],
            requested_by: "admin".into(),
            at_ms: 1_000,
            completed_at_ms: None,
            counts: BTreeMap::new(),
        }
    }

    #[test]
    fn covers_the_subjects_events_received_up_to_the_erasure_only() {
        let e = erasure();
        assert!(e.covers("v1", None, 1_000));
        assert!(e.covers("v2", None, 5));
        assert!(e.covers("v9", Some("lead_a"), 999), "another device identifying as the lead");
        assert!(!e.covers("v1", None, 1_001), "a visit after the erasure is new data");
        assert!(!e.covers("v9", Some("lead_b"), 10));
        assert!(!e.covers("v9", None, 10));
    }

    #[test]
    fn round_trips_and_counts_skip_zero() {
        let mut e = erasure();
        add_count(&mut e.counts, "events", 3);
        add_count(&mut e.counts, "events", 2);
        add_count(&mut e.counts, "alerts", 0);
        assert_eq!(e.counts, BTreeMap::from([("events".to_string(), 5)]));
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.contains(r#""subject":{"type":"lead","lead_id":"lead_a"}"#), "{json}");
        assert_eq!(serde_json::from_str::<Erasure>(&json).unwrap(), e);
    }
}
