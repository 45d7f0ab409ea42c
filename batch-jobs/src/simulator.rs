//! The account simulator behind `crm demo accounts` and the churn tests: customer accounts with
//! a known churn propensity ([`crate::churn::simulate`]) turned into what a real site would hold —
//! account records, monthly invoices ending in a cancellation for churners, support tickets,
//! relationship facts, identified users carrying an `account_id` trait, and their product events
//! (`login`, feature use, `api_call`). Written straight into the store, so a year of history for
//! a few hundred accounts loads in seconds; the health and churn jobs then read it like any site.

use std::collections::BTreeMap;

use crm_schemas::{
    utc_day, CustomerAccount, Device, EventBody, Geo, ImportBatch, Invoice, InvoiceKind, InvoiceStatus, Priority, Relationship, Scalar, Sentiment,
    StoredEvent, Ticket, VisitorProfile, DAY_MS,
};
use crm_store::{Store, WriteBatch};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use uuid::Uuid;

use crate::churn::{simulate, AccountSeries};
use crate::BatchError;

const NAMESPACE: Uuid = Uuid::from_u128(0x7369_6d5f_6e73_5f76_3100_0000_0000_0001);
const FEATURE_NAMES: [&str; 6] = ["reports", "dashboards", "export", "segments", "workflows", "integrations"];
const FIRST: [&str; 12] = ["Acme", "Globex", "Initech", "Umbrella", "Hooli", "Vandelay", "Stark", "Wayne", "Tyrell", "Soylent", "Cyberdyne", "Wonka"];
const SECOND: [&str; 8] = ["Labs", "Systems", "Holdings", "Analytics", "Logistics", "Health", "Media", "Works"];

#[derive(Clone, Debug, Serialize)]
pub struct SimulationSummary {
    pub site_id: String,
    pub accounts: usize,
    /// Accounts whose cancellation is already in the invoices.
    pub churned: usize,
    /// Accounts the simulation will churn within 90 days of today (not yet visible as labels).
    pub churning_soon: usize,
    pub users: usize,
    pub events: usize,
    pub invoices: usize,
    pub tickets: usize,
}

fn account_id(i: usize) -> String {
    format!("acct-{i:04}")
}

/// Mean daily logins while a customer, halved: the simulated engagement, recovered.
fn activity(series: &AccountSeries) -> f64 {
    let start = (series.start_day.max(0) as usize).min(series.logins.len());
    let end = series.churn_day.unwrap_or(usize::MAX).clamp(start, series.logins.len());
    series.logins[start..end].iter().map(|&x| f64::from(x)).sum::<f64>() / (end - start).max(1) as f64 / 2.0
}

/// Writes `count` simulated accounts with `days` of history ending at `now_ms` into `site_id`.
/// Deterministic for a seed; re-running replaces the business data and rewrites the same events
/// (event ids are derived from the seed), so the store deduplicates them.
pub async fn load_simulated_accounts(store: &dyn Store, site_id: &str, count: usize, days: usize, now_ms: i64, seed: u64) -> Result<SimulationSummary, BatchError> {
    if count == 0 || count > 20_000 || !(120..=730).contains(&days) {
        return Err(BatchError::InvalidParameter("accounts must be 1-20000 and days 120-730".into()));
    }
    let accounts = simulate(count, days, seed);
    let first_day = utc_day(now_ms) - days as i64;
    let day_ms = |d: usize| (first_day + d as i64) * DAY_MS;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut summary = SimulationSummary { site_id: site_id.to_owned(), accounts: count, churned: 0, churning_soon: 0, users: 0, events: 0, invoices: 0, tickets: 0 };
    let (mut records, mut invoices, mut tickets, mut relationships) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut batch = WriteBatch::default();
    for (i, series) in accounts.iter().enumerate() {
        let id = account_id(i);
        let engagement = activity(series).clamp(0.0, 1.0);
        let start = series.start_day.max(0) as usize;
        let gone = series.churn_day.filter(|c| *c < days);
        summary.churned += usize::from(gone.is_some());
        summary.churning_soon += usize::from(series.churn_day.is_some_and(|c| c >= days));
        let seats = 3 + (engagement * 20.0) as u32;
        records.push(CustomerAccount {
            site_id: site_id.to_owned(),
            account_id: id.clone(),
            name: format!("{} {}", FIRST[i % FIRST.len()], SECOND[(i / FIRST.len()) % SECOND.len()]),
            plan: if series.mrr >= 600.0 { "enterprise" } else if series.mrr >= 250.0 { "pro" } else { "starter" }.into(),
            seats: Some(seats),
            mrr: if gone.is_some() { 0.0 } else { series.mrr },
            contract_start_ms: Some(day_ms(start)),
            renewal_ms: gone.is_none().then(|| day_ms(start) + ((days - start) / 365 + 1) as i64 * 365 * DAY_MS),
        });
        let end = gone.unwrap_or(days);
        for (n, day) in (start..end).step_by(30).enumerate() {
            let late = rng.gen_bool((0.35 * (1.0 - engagement)).clamp(0.0, 1.0));
            invoices.push(Invoice {
                site_id: site_id.to_owned(),
                account_id: id.clone(),
                invoice_id: format!("inv-{i:04}-{n:03}"),
                issued_ms: day_ms(day),
                amount: series.mrr,
                mrr: Some(series.mrr),
                status: if late { InvoiceStatus::Late } else { InvoiceStatus::Paid },
                kind: if n == 0 { InvoiceKind::New } else { InvoiceKind::Renewal },
            });
        }
        if let Some(day) = gone {
            invoices.push(Invoice {
                site_id: site_id.to_owned(),
                account_id: id.clone(),
                invoice_id: format!("inv-{i:04}-cancel"),
                issued_ms: day_ms(day),
                amount: 0.0,
                mrr: Some(0.0),
                status: InvoiceStatus::Paid,
                kind: InvoiceKind::Cancellation,
            });
        }
        for t in 0..rng.gen_range(0..=(1.0 + 6.0 * (1.0 - engagement)) as u32) {
            let opened = day_ms(rng.gen_range(start.max(end.saturating_sub(60))..end.max(start + 1)));
            tickets.push(Ticket {
                site_id: site_id.to_owned(),
                account_id: id.clone(),
                ticket_id: format!("t-{i:04}-{t}"),
                opened_ms: opened,
                closed_ms: rng.gen_bool(0.8).then(|| opened + rng.gen_range(1..96) * 3_600_000),
                priority: if rng.gen_bool(0.2) { Priority::High } else { Priority::Normal },
                sentiment: Some(if rng.gen_bool((1.0 - engagement).clamp(0.0, 1.0)) { Sentiment::Negative } else { Sentiment::Neutral }),
                escalated: rng.gen_bool((0.3 * (1.0 - engagement)).clamp(0.0, 1.0)),
            });
        }
        relationships.push(Relationship {
            site_id: site_id.to_owned(),
            account_id: id.clone(),
            nps: Some((10.0 * engagement + rng.gen_range(-2.0..2.0)).clamp(0.0, 10.0).round()),
            executive_sponsor: rng.gen_bool((0.2 + 0.6 * engagement).clamp(0.0, 1.0)),
            reference_willing: rng.gen_bool((0.7 * engagement).clamp(0.0, 1.0)),
            stakeholders: 1 + (engagement * 5.0) as u32,
        });

        let users = (seats as usize).clamp(1, 12);
        summary.users += users;
        for u in 0..users {
            let mut traits = BTreeMap::new();
            traits.insert("account_id".to_owned(), Scalar::Str(id.clone()));
            traits.insert("email".to_owned(), Scalar::Str(format!("user{u}@{id}.example")));
            batch.visitors.push(VisitorProfile {
                site_id: site_id.to_owned(),
                visitor_id: format!("{id}-u{u}"),
                first_seen_ms: day_ms(start),
                last_seen_ms: day_ms(end.saturating_sub(1)),
                traits,
                ..VisitorProfile::default()
            });
        }
        for day in start..end.min(days) {
            let counts = [(series.logins[day], "login"), (series.features[day], ""), (series.api_calls[day], "api_call")];
            let mut k = 0u64;
            for (n, name) in counts {
                for _ in 0..n {
                    let user = (k as usize + day) % users;
                    let name = if name.is_empty() { FEATURE_NAMES[(k as usize + i) % FEATURE_NAMES.len()] } else { name };
                    let ts = day_ms(day) + 8 * 3_600_000 + (k as i64 * 97_000) % (10 * 3_600_000);
                    let visitor_id = format!("{id}-u{user}");
                    batch.events.push(StoredEvent {
                        event_id: Uuid::new_v5(&NAMESPACE, format!("{seed}/{site_id}/{id}/{day}/{k}").as_bytes()),
                        site_id: site_id.to_owned(),
                        session_id: format!("{visitor_id}-d{day}"),
                        visitor_id,
                        client_session_id: None,
                        ts_ms: ts,
                        received_at_ms: ts,
                        url: Some(format!("https://app.example/{name}")),
                        path: Some(format!("/{name}")),
                        referrer: None,
                        title: None,
                        props: BTreeMap::new(),
                        body: EventBody::Custom { name: name.to_owned() },
                        ip: None,
                        geo: Geo::default(),
                        device: Device::default(),
                        is_bot: false,
                        intent_signal: None,
                    });
                    k += 1;
                }
            }
        }
        if batch.events.len() >= 20_000 || i + 1 == count {
            summary.events += batch.events.len();
            store.write(std::mem::take(&mut batch).into()).await?;
        }
    }
    summary.invoices = invoices.len();
    summary.tickets = tickets.len();
    store.import(site_id, &ImportBatch::Accounts(records)).await?;
    store.import(site_id, &ImportBatch::Invoices(invoices)).await?;
    store.import(site_id, &ImportBatch::Tickets(tickets)).await?;
    store.import(site_id, &ImportBatch::Relationships(relationships)).await?;
    tracing::info!(site_id, accounts = count, events = summary.events, churned = summary.churned, "simulated accounts loaded");
    Ok(summary)
}
