//! Alert rules, evaluated once per batch on the leads the batch changed. A firing is an
//! [`Alert`] with a deterministic id (rule, lead, window), written with the batch and inserted
//! only if new, so a rule fires at most once per lead and window even across replays. Delivery
//! is the [`crate::AlertDispatcher`]'s job.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Instant;

use crm_schemas::{alert_id_for, Alert, AlertCondition, AlertRule, DeliveryStatus, EventBody, Lead, DAY_MS};
use crm_store::{StoreError, WriteBatch};

use super::{Processor, SITE_TTL};
use crate::urls::Glob;

/// Why `rule` fires for `lead` now, if it does. `matching_views` counts the lead's pageviews
/// matching a `page_views` rule within its window (only computed for such rules).
pub fn fires(rule: &AlertRule, lead: &Lead, old_score: Option<u8>, matching_views: Option<u32>) -> Option<String> {
    if !rule.enabled || lead.merged_into.is_some() {
        return None;
    }
    match &rule.condition {
        AlertCondition::ScoreCrossed { threshold } => {
            let before = old_score.unwrap_or(0);
            (before < *threshold && lead.score >= *threshold).then(|| format!("score rose from {before} to {} (threshold {threshold})", lead.score))
        }
        AlertCondition::TargetAccount { domains } => {
            let domain = lead.company_domain.as_deref()?;
            domains.iter().any(|d| d.eq_ignore_ascii_case(domain)).then(|| format!("target account {domain} is active"))
        }
        AlertCondition::PageViews { path, min_count, within_days } => {
            let views = matching_views?;
            (views >= *min_count).then(|| format!("viewed {path} {views} times in {within_days} days"))
        }
        // Fired by the health jobs when a playbook creates a task, never by lead changes.
        AlertCondition::Playbook { .. } => None,
        // Fired by the API when a chat is handed to a person.
        AlertCondition::ChatHandoff { .. } => None,
    }
}

impl Processor {
    async fn alert_rules(&mut self, site_id: &str) -> Result<Arc<Vec<AlertRule>>, StoreError> {
        if let Some((rules, at)) = self.alert_rules.get(site_id) {
            if at.elapsed() < SITE_TTL {
                return Ok(rules.clone());
            }
        }
        let rules = Arc::new(self.store.alert_rules(site_id).await?);
        self.alert_rules.insert(site_id.to_owned(), (rules.clone(), Instant::now()));
        Ok(rules)
    }

    /// Pageviews of the lead matching `glob` since `since_ms`: stored ones plus this batch's.
    async fn count_views(&self, lead: &Lead, glob: &Glob, since_ms: i64, batch: &WriteBatch) -> Result<u32, StoreError> {
        let matches = |event: &crm_schemas::StoredEvent| {
            event.body == EventBody::Pageview && event.ts_ms >= since_ms && event.path.as_deref().is_some_and(|p| glob.matches_lower(&p.to_ascii_lowercase()))
        };
        let mut seen = HashSet::new();
        let visitors: HashSet<&str> = lead.visitor_ids.iter().map(String::as_str).collect();
        for event in batch.events.iter().filter(|e| e.site_id == lead.site_id && visitors.contains(e.visitor_id.as_str())) {
            if matches(event) {
                seen.insert(event.event_id);
            }
        }
        let mut cursor: Option<String> = None;
        loop {
            let page = self.store.events_of_visitors(&lead.site_id, &lead.visitor_ids, 500, cursor.as_deref()).await?;
            let mut older = false;
            for event in &page.items {
                older |= event.ts_ms < since_ms;
                if matches(event) {
                    seen.insert(event.event_id);
                }
            }
            match page.next_cursor {
                Some(next) if !older => cursor = Some(next),
                _ => break,
            }
        }
        Ok(seen.len() as u32)
    }

    /// Fires the site's rules for the leads in `batch` (`old_scores`: score before this batch).
    pub(super) async fn evaluate_alerts(&mut self, batch: &mut WriteBatch, old_scores: &HashMap<String, Option<u8>>, now_ms: i64) -> Result<(), StoreError> {
        let mut fired = Vec::new();
        for lead in &batch.leads {
            let rules = self.alert_rules(&lead.site_id).await?;
            for rule in rules.iter().filter(|r| r.enabled) {
                let views = match &rule.condition {
                    AlertCondition::PageViews { path, within_days, .. } => {
                        let glob = Glob::new(path);
                        let since = now_ms - i64::from(*within_days) * DAY_MS;
                        // Only when this batch brought such a view: the count can only have grown then.
                        let fresh = batch.events.iter().any(|e| {
                            e.site_id == lead.site_id
                                && lead.visitor_ids.contains(&e.visitor_id)
                                && e.body == EventBody::Pageview
                                && e.path.as_deref().is_some_and(|p| glob.matches_lower(&p.to_ascii_lowercase()))
                        });
                        if !fresh {
                            continue;
                        }
                        Some(self.count_views(lead, &glob, since, batch).await?)
                    }
                    _ => None,
                };
                let old = old_scores.get(&lead.lead_id).copied().flatten();
                if let Some(message) = fires(rule, lead, old, views) {
                    fired.push(Alert {
                        site_id: lead.site_id.clone(),
                        alert_id: alert_id_for(&lead.site_id, &rule.rule_id, &lead.lead_id, rule.window_hours, now_ms),
                        rule_id: rule.rule_id.clone(),
                        rule_name: rule.name.clone(),
                        lead_id: lead.lead_id.clone(),
                        lead_email: lead.email.clone(),
                        lead_score: lead.score,
                        message,
                        fired_at_ms: now_ms,
                        status: DeliveryStatus::Pending,
                        next_attempt_ms: now_ms,
                        attempts: Vec::new(),
                        task: None,
                    });
                }
            }
        }
        batch.alerts.extend(fired);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(condition: AlertCondition) -> AlertRule {
        AlertRule {
            site_id: "s1".into(),
            rule_id: "r".into(),
            name: "r".into(),
            condition,
            webhook_url: "http://127.0.0.1/".into(),
            secret: "k".into(),
            window_hours: 24,
            enabled: true,
            created_at_ms: 0,
        }
    }

    fn lead(score: u8) -> Lead {
        Lead { score, company_domain: Some("acme.example".into()), ..Lead::default() }
    }

    #[test]
    fn score_crossing_fires_only_on_the_way_up() {
        let r = rule(AlertCondition::ScoreCrossed { threshold: 80 });
        assert!(fires(&r, &lead(85), Some(70), None).is_some());
        assert!(fires(&r, &lead(85), None, None).is_some(), "a new lead starts at 0");
        assert!(fires(&r, &lead(90), Some(85), None).is_none(), "already above");
        assert!(fires(&r, &lead(70), Some(85), None).is_none(), "going down");
        assert!(fires(&r, &lead(80), Some(79), None).is_some(), "the threshold itself counts");
    }

    #[test]
    fn target_accounts_and_page_views() {
        let r = rule(AlertCondition::TargetAccount { domains: vec!["ACME.example".into()] });
        assert_eq!(fires(&r, &lead(1), None, None).as_deref(), Some("target account acme.example is active"));
        assert!(fires(&r, &Lead { company_domain: None, ..lead(1) }, None, None).is_none());
        let r = rule(AlertCondition::PageViews { path: "/pricing*".into(), min_count: 5, within_days: 7 });
        assert!(fires(&r, &lead(1), None, Some(5)).is_some());
        assert!(fires(&r, &lead(1), None, Some(4)).is_none());
        let mut disabled = r.clone();
        disabled.enabled = false;
        assert!(fires(&disabled, &lead(1), None, Some(9)).is_none());
    }
}
