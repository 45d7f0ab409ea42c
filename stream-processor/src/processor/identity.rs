//! Identity stitching and lead upkeep, run once per batch after the events were applied to
//! their visitors' profiles:
//!
//! 1. Every `identify` / `form_submit` carrying an email names a lead (id derived from the
//!    normalised email, so replays land on the same lead). An unlinked visitor is linked to it,
//!    and its whole anonymous history becomes the lead's (the lead aggregates its visitors'
//!    profiles). Another visitor identifying with the same email joins the same lead: devices
//!    roll up.
//! 2. A visitor already linked to a *different* lead is never re-linked or merged: the event
//!    is recorded as an [`IdentityConflict`] for a person to resolve; the other identity still
//!    gets (or updates) its own lead from the event's traits.
//! 3. Every lead linked to a visitor the batch changed is recomputed from its visitors'
//!    profiles: activity, first touch, score with breakdown and reasons; a changed score adds a
//!    point to the history.
//!
//! Everything is recomputed from stored state, so re-running it after a torn write is harmless.

use std::collections::{BTreeMap, HashMap};

use crm_schemas::{
    company_domain, lead_id_for, IdentityMap, normalize_email, EventBody, IdentityConflict, Lead, Scalar, ScorePoint, StoredEvent,
};
use crm_store::{StoreError, WriteBatch};

use super::{now_ms, Processor};
use crm_schemas::lead_score;

/// At most this many visitor ids per lead (cookie churn); the oldest links are dropped.
const MAX_VISITORS_PER_LEAD: usize = 100;

/// An identify / form submit with a usable email, as seen in the batch.
pub(super) struct Signal {
    site_id: String,
    visitor_id: String,
    email: String,
    traits: BTreeMap<String, Scalar>,
    event_id: uuid::Uuid,
    at_ms: i64,
}

impl Signal {
    /// The identity an event carries, if any.
    pub(super) fn from_event(event: &StoredEvent) -> Option<Signal> {
        let traits = match &event.body {
            EventBody::Identify { traits } | EventBody::FormSubmit { traits, .. } => traits,
            _ => return None,
        };
        let email = normalize_email(traits.get("email")?.as_str()?)?;
        Some(Signal {
            site_id: event.site_id.clone(),
            visitor_id: event.visitor_id.clone(),
            email,
            traits: traits.clone(),
            event_id: event.event_id,
            at_ms: event.ts_ms,
        })
    }
}

/// What the batch says about one lead.
#[derive(Default)]
struct LeadChanges {
    email: Option<String>,
    first_at_ms: Option<i64>,
    new_visitors: Vec<String>,
    traits: Vec<BTreeMap<String, Scalar>>,
}


impl Processor {
    /// Links identified visitors to leads and recomputes every lead the batch touched. Profiles
    /// it links are added to `dirty`; leads, conflicts and score points go into `batch`.
    pub(super) async fn update_leads(&mut self, signals: Vec<Signal>, dirty: &mut Vec<(String, String)>, batch: &mut WriteBatch) -> Result<(), StoreError> {
        // People's decisions (merges, moved visitors) win over what identities say.
        let mut maps: HashMap<String, IdentityMap> = HashMap::new();
        // Only sites with identities in play pay the lookup (a batch of anonymous traffic doesn't).
        let linked = dirty.iter().filter(|k| self.profiles.get(*k).is_some_and(|p| p.lead_id.is_some())).map(|k| &k.0);
        for site in signals.iter().map(|s| &s.site_id).chain(linked) {
            if !maps.contains_key(site) {
                maps.insert(site.clone(), IdentityMap::new(&self.store.identity_overrides(site).await?));
            }
        }
        let mut changes: BTreeMap<(String, String), LeadChanges> = BTreeMap::new();
        for signal in signals {
            let map = &maps[&signal.site_id];
            let lead_id = map.canonical(&lead_id_for(&signal.site_id, &signal.email));
            let key = (signal.site_id.clone(), signal.visitor_id.clone());
            let profile = self.profiles.get_mut(&key).expect("signal visitors are loaded");
            let change = changes.entry((signal.site_id.clone(), lead_id.clone())).or_default();
            change.email = Some(signal.email.clone());
            change.first_at_ms = Some(change.first_at_ms.map_or(signal.at_ms, |t| t.min(signal.at_ms)));
            match map.lead_of(&signal.visitor_id, profile.lead_id.as_deref()) {
                None if !map.is_moved(&signal.visitor_id) => {
                    profile.lead_id = Some(lead_id.clone());
                    // The visitor's earlier traits (identify calls without an email) are this person's.
                    change.traits.push(profile.traits.clone());
                    change.new_visitors.push(signal.visitor_id.clone());
                    if !dirty.contains(&key) {
                        dirty.push(key);
                    }
                }
                // A person detached this visitor from everyone: identities don't re-link it.
                None => {}
                Some(linked) if linked == lead_id => {}
                Some(linked) => {
                    tracing::info!(site_id = %signal.site_id, visitor_id = %signal.visitor_id, "identity conflict recorded");
                    batch.conflicts.push(IdentityConflict {
                        site_id: signal.site_id.clone(),
                        visitor_id: signal.visitor_id.clone(),
                        lead_id: linked,
                        other_lead_id: lead_id.clone(),
                        other_email: signal.email.clone(),
                        event_id: signal.event_id,
                        at_ms: signal.at_ms,
                        resolved: false,
                    });
                }
            }
            change.traits.push(signal.traits);
        }
        // Leads of every visitor the batch changed: their activity moved. Profiles follow the
        // people's decisions; a lead a visitor was moved away from is recomputed too.
        for key in dirty.iter() {
            let Some(map) = maps.get(&key.0) else { continue }; // no linked visitor on that site
            let Some(profile) = self.profiles.get_mut(key) else { continue };
            let effective = map.lead_of(&key.1, profile.lead_id.as_deref());
            if let Some(previous) = profile.lead_id.as_deref().map(|l| map.canonical(l)) {
                if Some(&previous) != effective.as_ref() {
                    changes.entry((key.0.clone(), previous)).or_default();
                }
            }
            profile.lead_id = effective.clone();
            if let Some(lead_id) = effective {
                changes.entry((key.0.clone(), lead_id)).or_default();
            }
        }
        if changes.is_empty() {
            return Ok(());
        }
        let keys: Vec<(String, String)> = changes.keys().cloned().collect();
        let mut stored: HashMap<(String, String), Lead> =
            self.store.leads(&keys).await?.into_iter().map(|l| ((l.site_id.clone(), l.lead_id.clone()), l)).collect();
        let now = now_ms();
        let mut old_scores = HashMap::new();
        for ((site_id, lead_id), change) in changes {
            let existing = stored.remove(&(site_id.clone(), lead_id.clone()));
            let old_score = existing.as_ref().map(|l| l.score);
            let mut lead = match (existing, &change.email) {
                (Some(lead), _) => lead,
                (None, Some(email)) => Lead {
                    site_id: site_id.clone(),
                    lead_id: lead_id.clone(),
                    email: email.clone(),
                    company_domain: company_domain(email),
                    created_at_ms: change.first_at_ms.unwrap_or(now),
                    first_seen_ms: change.first_at_ms.unwrap_or(now),
                    last_activity_ms: change.first_at_ms.unwrap_or(now),
                    source: "direct".into(),
                    ..Lead::default()
                },
                // A profile points at a lead the store lost (never expected): skip, don't invent.
                (None, None) => {
                    tracing::warn!(%site_id, %lead_id, "visitor linked to a missing lead");
                    continue;
                }
            };
            for visitor in change.new_visitors {
                if !lead.visitor_ids.contains(&visitor) {
                    lead.visitor_ids.push(visitor);
                }
            }
            let map = &maps[&site_id];
            let merged_keys: Vec<(String, String)> = map.merged_into(&lead_id).into_iter().map(|l| (site_id.clone(), l)).collect();
            let merged_from = if merged_keys.is_empty() { Vec::new() } else { self.store.leads(&merged_keys).await? };
            map.resolve(&mut lead, &merged_from);
            for mut other in merged_from {
                if other.merged_into.as_deref() != Some(lead_id.as_str()) {
                    other.merged_into = Some(lead_id.clone());
                    batch.leads.push(other);
                }
            }
            if lead.visitor_ids.len() > MAX_VISITORS_PER_LEAD {
                let excess = lead.visitor_ids.len() - MAX_VISITORS_PER_LEAD;
                lead.visitor_ids.drain(..excess);
            }
            for traits in change.traits {
                lead.traits.extend(traits);
            }
            lead.traits.insert("email".into(), Scalar::Str(lead.email.clone()));
            if let Some(at) = change.first_at_ms {
                lead.last_activity_ms = lead.last_activity_ms.max(at);
            }
            self.aggregate(&mut lead).await?;
            let rules = self.site_rules(&site_id).await?;
            let (score, breakdown, reasons) = lead_score::score(&lead, &rules.icp, now);
            lead.score = score;
            lead.breakdown = breakdown;
            lead.reasons = reasons;
            old_scores.insert(lead_id.clone(), old_score);
            let band = |score: u8| (score >= 50) as u8 + (score >= 80) as u8;
            if self.config.request_insights && old_score.is_none_or(|old| band(old) != band(score)) {
                batch.insight_requests.push(crm_schemas::InsightRequest {
                    site_id: site_id.clone(),
                    lead_id: lead_id.clone(),
                    requested_at_ms: now,
                    next_attempt_ms: now,
                    attempts: 0,
                    last_error: None,
                    failed: false,
                });
            }
            if old_score != Some(score) {
                batch.score_points.push(ScorePoint { site_id: site_id.clone(), lead_id: lead_id.clone(), at_ms: now, score });
            }
            batch.leads.push(lead);
        }
        self.evaluate_alerts(batch, &old_scores, now).await
    }

    /// Recomputes the lead's activity and first touch from its visitors' profiles.
    async fn aggregate(&mut self, lead: &mut Lead) -> Result<(), StoreError> {
        let missing: Vec<(String, String)> = lead
            .visitor_ids
            .iter()
            .map(|v| (lead.site_id.clone(), v.clone()))
            .filter(|k| !self.profiles.contains_key(k))
            .collect();
        if !missing.is_empty() {
            for profile in self.store.visitors(&missing).await? {
                self.profiles.insert((profile.site_id.clone(), profile.visitor_id.clone()), profile);
            }
        }
        let profiles: Vec<&crm_schemas::VisitorProfile> =
            lead.visitor_ids.iter().filter_map(|v| self.profiles.get(&(lead.site_id.clone(), v.clone()))).collect();
        lead_score::aggregate(lead, &profiles);
        Ok(())
    }
}
