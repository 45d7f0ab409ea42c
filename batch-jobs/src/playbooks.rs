//! Health playbooks (the seed's rules), run after each health scoring. Each rule creates at most
//! one task per account and 7-day window (the task id is derived from rule, account and window,
//! and stores insert tasks only if new):
//!
//! * `high_risk` — health below 40, or a churn probability above 0.7 → high priority, due in 2 days;
//! * `declining_usage` — the usage component fell more than 20 points against the run at least
//!   7 days earlier → medium priority, due in 5 days;
//! * `expansion_opportunity` — health above 85 with every seat in use → low priority, due in 14 days.
//!
//! A new task is also announced to every enabled alert rule of the site with a `playbook`
//! condition: the alert (one per rule and task) is written to the store, and the alert
//! dispatcher of `crm up`/`crm process` delivers it as a signed webhook with retries.

use crm_schemas::{alert_id_for, AccountHealth, Alert, AlertCondition, DeliveryStatus, Task, DAY_MS};
use crm_store::{Store, StoreError, WriteBatch};
use uuid::Uuid;

const TASK_NAMESPACE: Uuid = Uuid::from_u128(0x7461_736b_5f6e_735f_7631_0000_0000_0001);
pub const WINDOW_MS: i64 = 7 * DAY_MS;

fn task(result: &AccountHealth, rule: &str, title: String, priority: &str, due_days: i64, reason: String, now_ms: i64) -> Task {
    let window = now_ms.div_euclid(WINDOW_MS);
    let id = Uuid::new_v5(&TASK_NAMESPACE, format!("{}\n{rule}\n{}\n{window}", result.site_id, result.account_id).as_bytes());
    Task {
        site_id: result.site_id.clone(),
        task_id: format!("task_{}", id.simple()),
        account_id: result.account_id.clone(),
        rule: rule.into(),
        title,
        priority: priority.into(),
        due_ms: now_ms + due_days * DAY_MS,
        owner: None,
        status: "open".into(),
        reason,
        created_at_ms: now_ms,
    }
}

/// The tasks the rules want for one account's result. `earlier` is the latest run at least 7
/// days before; `seats`/`active_users` come from the account record and usage.
pub fn playbook_tasks(result: &AccountHealth, earlier: Option<&AccountHealth>, seats: Option<u32>, active_users: u32, now_ms: i64) -> Vec<Task> {
    let mut tasks = Vec::new();
    let churn = result.churn_probability.filter(|p| *p > 0.7);
    if result.score < 40.0 || churn.is_some() {
        let title = format!("Intervene at {}: health {:.0}", result.name, result.score);
        let reason = match churn {
            Some(p) if result.score >= 40.0 => format!("churn probability {:.0}% is above 70%", p * 100.0),
            Some(p) => format!("health {:.1} is below 40 and churn probability {:.0}% is above 70%", result.score, p * 100.0),
            None => format!("health {:.1} is below 40", result.score),
        };
        tasks.push(task(result, "high_risk", title, "high", 2, reason, now_ms));
    }
    if let (Some(before), Some(now)) = (earlier.and_then(|e| e.usage), result.usage) {
        if before - now > 20.0 {
            let reason = format!("usage fell from {before:.1} to {now:.1}");
            tasks.push(task(result, "declining_usage", format!("Usage is declining at {}", result.name), "medium", 5, reason, now_ms));
        }
    }
    if result.score > 85.0 && seats.is_some_and(|s| s > 0 && active_users >= s) {
        let reason = format!("health {:.1} with all {} seats in use", result.score, seats.unwrap_or(0));
        tasks.push(task(result, "expansion_opportunity", format!("Expansion opportunity at {}", result.name), "low", 14, reason, now_ms));
    }
    tasks
}

/// Stores `tasks` (new ones only) and queues one webhook alert per new task and matching
/// `playbook` alert rule. Returns how many tasks were new.
pub async fn store_tasks(store: &dyn Store, site_id: &str, tasks: &[Task], now_ms: i64) -> Result<usize, StoreError> {
    if tasks.is_empty() {
        return Ok(0);
    }
    let added = store.add_tasks(tasks).await?;
    let rules: Vec<_> = store
        .alert_rules(site_id)
        .await?
        .into_iter()
        .filter(|r| r.enabled && matches!(&r.condition, AlertCondition::Playbook { .. }))
        .collect();
    if rules.is_empty() {
        return Ok(added);
    }
    let mut alerts = Vec::new();
    for task in tasks {
        for rule in &rules {
            let AlertCondition::Playbook { rules: wanted } = &rule.condition else { continue };
            if !wanted.is_empty() && !wanted.contains(&task.rule) {
                continue;
            }
            alerts.push(Alert {
                site_id: site_id.to_owned(),
                // One alert per rule and task, whatever the time: re-runs in the task's window
                // produce the same task id, hence the same alert id, and alerts are insert-if-new.
                alert_id: alert_id_for(site_id, &rule.rule_id, &task.task_id, 1, 0),
                rule_id: rule.rule_id.clone(),
                rule_name: rule.name.clone(),
                lead_id: String::new(),
                lead_email: String::new(),
                lead_score: 0,
                message: format!("{} ({})", task.title, task.reason),
                fired_at_ms: now_ms,
                status: DeliveryStatus::Pending,
                next_attempt_ms: now_ms,
                attempts: Vec::new(),
                task: Some(task.clone()),
            });
        }
    }
    store.write(WriteBatch { alerts, ..WriteBatch::default() }.into()).await?;
    Ok(added)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn result(score: f64, usage: Option<f64>) -> AccountHealth {
        AccountHealth {
            site_id: "s1".into(),
            account_id: "acme".into(),
            name: "Acme".into(),
            day: 0,
            computed_at_ms: 0,
            score,
            usage,
            engagement: None,
            support: None,
            financial: None,
            relationship: None,
            missing: vec![],
            risk: String::new(),
            change_7d: None,
            change_30d: None,
            change_reason: None,
            churn_probability: None,
            churn_drivers: Vec::new(),
            mrr: None,
            inputs: serde_json::Value::Null,
        }
    }

    const NOW: i64 = 20_000 * DAY_MS;

    #[test]
    fn each_rule_fires_on_its_condition_only() {
        let rules = |r: &AccountHealth, e: Option<&AccountHealth>, seats, users| playbook_tasks(r, e, seats, users, NOW).into_iter().map(|t| t.rule).collect::<Vec<_>>();
        assert_eq!(rules(&result(35.0, Some(50.0)), None, None, 0), vec!["high_risk"]);
        assert_eq!(rules(&result(60.0, Some(40.0)), Some(&result(70.0, Some(65.0))), None, 0), vec!["declining_usage"]);
        assert!(rules(&result(60.0, Some(50.0)), Some(&result(70.0, Some(65.0))), None, 0).is_empty(), "a 15-point drop is not enough");
        assert_eq!(rules(&result(90.0, Some(90.0)), None, Some(10), 10), vec!["expansion_opportunity"]);
        assert!(rules(&result(90.0, Some(90.0)), None, Some(10), 9).is_empty(), "seats left");
        let mut likely_to_churn = result(60.0, None);
        likely_to_churn.churn_probability = Some(0.72);
        let tasks = playbook_tasks(&likely_to_churn, None, None, 0, NOW);
        assert_eq!(tasks.iter().map(|t| t.rule.as_str()).collect::<Vec<_>>(), vec!["high_risk"]);
        assert_eq!(tasks[0].reason, "churn probability 72% is above 70%");
        likely_to_churn.churn_probability = Some(0.7);
        assert!(rules(&likely_to_churn, None, None, 0).is_empty(), "0.7 is not above 0.7");
    }

    #[test]
    fn task_ids_repeat_within_a_window_only() {
        let r = result(30.0, None);
        let first = playbook_tasks(&r, None, None, 0, NOW).remove(0);
        let later = playbook_tasks(&r, None, None, 0, NOW + 3 * DAY_MS).remove(0);
        let next_window = playbook_tasks(&r, None, None, 0, NOW + 8 * DAY_MS).remove(0);
        assert_eq!(first.task_id, later.task_id);
        assert_ne!(first.task_id, next_window.task_id);
        assert_eq!(first.due_ms, NOW + 2 * DAY_MS);
    }
}
