//! `crm batch health`: for every customer account of a site (imported accounts and accounts seen
//! in product usage), gather the health inputs — usage from DataFusion, support from tickets,
//! financial from invoices and the account record, relationship facts — score them, compare with
//! earlier runs (7 and 30 days) and store one result per account and day. Re-running on the same
//! day replaces that day's results, so the job is idempotent per day. Accounts whose latest
//! invoice is a cancellation are former customers and are not scored. The playbooks then turn
//! results into tasks (once per rule, account and window).

use std::collections::{BTreeSet, HashMap};

use crm_schemas::{utc_day, AccountHealth, BusinessData, InvoiceKind, InvoiceStatus, Sentiment, DAY_MS};
use crm_store::Store;
use serde_json::json;

use crate::health::{health, FinancialInputs, HealthInputs, RelationshipInputs, SupportInputs};
use crate::usage::{usage_inputs, UsageSource, WINDOW_MS};
use crate::BatchError;

fn support_inputs(data: &BusinessData, account: &str, now_ms: i64) -> Option<SupportInputs> {
    let tickets: Vec<_> = data.tickets.iter().filter(|t| t.account_id == account && t.opened_ms < now_ms).collect();
    if tickets.is_empty() {
        return None;
    }
    let current = now_ms - WINDOW_MS;
    let mut s = SupportInputs::default();
    for t in &tickets {
        if t.opened_ms >= current {
            s.tickets += 1;
            s.escalated += u32::from(t.escalated);
            if let Some(sentiment) = t.sentiment {
                s.with_sentiment += 1;
                s.negative += u32::from(sentiment == Sentiment::Negative);
            }
            if let Some(closed) = t.closed_ms {
                s.resolved += 1;
                s.resolution_hours_total += (closed - t.opened_ms).max(0) as f64 / 3_600_000.0;
            }
        } else if t.opened_ms >= current - WINDOW_MS {
            s.tickets_previous += 1;
        }
    }
    Some(s)
}

fn financial_inputs(data: &BusinessData, account: &str, now_ms: i64) -> Option<FinancialInputs> {
    let record = data.accounts.iter().find(|a| a.account_id == account);
    let invoices: Vec<_> = data.invoices.iter().filter(|i| i.account_id == account && i.issued_ms < now_ms).collect();
    if record.is_none() && invoices.is_empty() {
        return None;
    }
    let ninety = now_ms - 90 * DAY_MS;
    let mrr_then = invoices.iter().filter(|i| i.issued_ms <= ninety && i.mrr.is_some()).max_by_key(|i| i.issued_ms).and_then(|i| i.mrr);
    let mrr_now = record.map(|a| a.mrr).or_else(|| invoices.iter().filter(|i| i.mrr.is_some()).max_by_key(|i| i.issued_ms).and_then(|i| i.mrr));
    let settled: Vec<_> = invoices.iter().filter(|i| i.status != InvoiceStatus::Open && i.status != InvoiceStatus::Refunded).collect();
    Some(FinancialInputs {
        invoices: settled.len() as u32,
        paid_on_time: settled.iter().filter(|i| i.status == InvoiceStatus::Paid).count() as u32,
        mrr: mrr_now,
        mrr_90_days_ago: mrr_then,
        days_to_renewal: record.and_then(|a| a.renewal_ms).map(|r| (r - now_ms).div_euclid(DAY_MS)),
    })
}

fn relationship_inputs(data: &BusinessData, account: &str) -> Option<RelationshipInputs> {
    data.relationships.iter().find(|r| r.account_id == account).map(|r| RelationshipInputs {
        stakeholders: Some(r.stakeholders),
        executive_sponsor: Some(r.executive_sponsor),
        reference_willing: Some(r.reference_willing),
        nps: r.nps,
    })
}

/// Accounts whose latest invoice so far is a cancellation: former customers, not scored.
fn churned_accounts(data: &BusinessData, now_ms: i64) -> std::collections::HashSet<&str> {
    let mut last: HashMap<&str, (i64, bool)> = HashMap::new();
    for invoice in data.invoices.iter().filter(|i| i.issued_ms <= now_ms) {
        let cancelled = invoice.kind == InvoiceKind::Cancellation;
        let entry = last.entry(invoice.account_id.as_str()).or_insert((invoice.issued_ms, cancelled));
        if invoice.issued_ms > entry.0 || (invoice.issued_ms == entry.0 && cancelled) {
            *entry = (invoice.issued_ms, cancelled);
        }
    }
    last.into_iter().filter(|(_, (_, cancelled))| *cancelled).map(|(account, _)| account).collect()
}

/// The earliest run at least `days` before `day` among `history` (newest first).
fn score_before(history: &[AccountHealth], day: i64, days: i64) -> Option<f64> {
    history.iter().find(|h| h.day <= day - days).map(|h| h.score)
}

/// The component that moved most since the previous run, in words.
fn change_reason(previous: &AccountHealth, now: &AccountHealth) -> Option<String> {
    let pairs = [
        ("usage", previous.usage, now.usage),
        ("engagement", previous.engagement, now.engagement),
        ("support", previous.support, now.support),
        ("financial", previous.financial, now.financial),
        ("relationship", previous.relationship, now.relationship),
    ];
    let (name, delta) = pairs
        .iter()
        .filter_map(|(name, before, after)| Some((*name, after.unwrap_or(0.0) - before.unwrap_or(0.0))).filter(|_| before.is_some() || after.is_some()))
        .max_by(|a, b| a.1.abs().total_cmp(&b.1.abs()))?;
    (delta.abs() >= 0.1 && (now.score - previous.score).abs() >= 0.1)
        .then(|| format!("{name} {} by {:.1} points", if delta > 0.0 { "rose" } else { "fell" }, delta.abs()))
}

/// Scores every account of `site_id` as of `now_ms`, stores the results and returns them.
pub async fn run_health(store: &dyn Store, source: UsageSource<'_>, site_id: &str, now_ms: i64) -> Result<Vec<AccountHealth>, BatchError> {
    let data = store.business_data(site_id).await?;
    let batches = source.batches(site_id, now_ms - 2 * WINDOW_MS, now_ms).await?;
    let usage = usage_inputs(batches, now_ms).await?;
    let churned = churned_accounts(&data, now_ms);
    let accounts: BTreeSet<String> =
        data.accounts.iter().map(|a| a.account_id.clone()).chain(usage.keys().cloned()).filter(|a| !churned.contains(a.as_str())).collect();
    let names: HashMap<&str, &str> = data.accounts.iter().map(|a| (a.account_id.as_str(), a.name.as_str())).collect();
    let day = utc_day(now_ms);
    let mut results = Vec::with_capacity(accounts.len());
    let mut tasks = Vec::new();
    for account in accounts {
        let record = data.accounts.iter().find(|a| a.account_id == account);
        let usage = usage.get(&account).cloned().map(|mut u| {
            u.seats = record.and_then(|a| a.seats);
            u
        });
        let inputs = HealthInputs {
            usage: usage.clone().or_else(|| record.and_then(|a| a.seats).map(|seats| crate::health::UsageInputs { seats: Some(seats), ..Default::default() })),
            support: support_inputs(&data, &account, now_ms),
            financial: financial_inputs(&data, &account, now_ms),
            relationship: relationship_inputs(&data, &account),
        };
        let score = health(&inputs);
        let history: Vec<AccountHealth> = store.health_history(site_id, &account, 60).await?.into_iter().filter(|h| h.day < day).collect();
        let mut result = AccountHealth {
            site_id: site_id.to_owned(),
            account_id: account.clone(),
            name: names.get(account.as_str()).map(|n| n.to_string()).unwrap_or_else(|| account.clone()),
            day,
            computed_at_ms: now_ms,
            score: score.score,
            usage: score.usage,
            engagement: score.engagement,
            support: score.support,
            financial: score.financial,
            relationship: score.relationship,
            missing: score.missing.iter().map(|m| m.to_string()).collect(),
            risk: serde_json::to_value(score.risk).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
            change_7d: score_before(&history, day, 7).map(|before| ((score.score - before) * 10.0).round() / 10.0),
            change_30d: score_before(&history, day, 30).map(|before| ((score.score - before) * 10.0).round() / 10.0),
            change_reason: None,
            churn_probability: None,
            churn_drivers: Vec::new(),
            mrr: record.map(|a| a.mrr),
            inputs: json!({ "usage": inputs.usage, "support": inputs.support, "financial": inputs.financial, "relationship": inputs.relationship }),
        };
        result.change_reason = history.first().and_then(|previous| change_reason(previous, &result));
        let earlier = history.iter().find(|h| h.day <= day - 7);
        let active = usage.as_ref().map_or(0, |u| u.active_users);
        tasks.extend(crate::playbooks::playbook_tasks(&result, earlier, record.and_then(|a| a.seats), active, now_ms));
        results.push(result);
    }
    store.put_health(&results).await?;
    let added = crate::playbooks::store_tasks(store, site_id, &tasks, now_ms).await?;
    tracing::info!(site_id, accounts = results.len(), tasks_added = added, "health scores computed");
    Ok(results)
}
