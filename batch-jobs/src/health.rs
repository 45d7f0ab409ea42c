//! The customer health score: five components (0–100 each) weighted as the seed specifies, from
//! an account's usage and engagement (tracking events) and its imported business data. A
//! component whose inputs are all missing is left out and the others are re-weighted; the
//! result says which ones were missing, so a score is never silently built on defaults.
//!
//! | component | weight | points |
//! | --- | --- | --- |
//! | usage | 0.30 | active users / seats 40 · feature adoption (features used / features in use site-wide) 30 · API calls vs the previous 28 days 30 (≥ same = 30, scaled down with the drop) |
//! | engagement | 0.25 | logins per active user per week 40·min(x/3,1) · minutes in app per active user per day 20·min(x/10,1) · actions per session 20·min(x/20,1) · power users (active ≥ 10 of 28 days) / active users 20 |
//! | support | 0.20 | starts at 100: − 25·min(ticket growth vs previous 28 days, 1) − 25·negative-sentiment share − 25·min(max(avg resolution h − 24, 0)/72, 1) − 25·escalation share |
//! | financial | 0.15 | on-time payment share 50 · MRR growth vs 90 days ago 25 (growth = 25, flat = 15, decline = 0) · renewal 25 (not within 30 days = 25; within 30 days = 10) |
//! | relationship | 0.10 | stakeholders 30·min(n,5)/5 · executive sponsor 25 · reference willing 15 · NPS (0–10) 30·nps/10 |
//!
//! Risk: healthy ≥ 70, at-risk 40–69, critical < 40.

use serde::Serialize;

pub const WEIGHTS: [(&str, f64); 5] = [("usage", 0.30), ("engagement", 0.25), ("support", 0.20), ("financial", 0.15), ("relationship", 0.10)];
pub const HEALTHY_AT: f64 = 70.0;
pub const AT_RISK_AT: f64 = 40.0;

/// Usage and engagement over the last 28 days (and the 28 before, for trends), from events.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct UsageInputs {
    pub seats: Option<u32>,
    pub active_users: u32,
    pub features_used: u32,
    /// Distinct features used by any account of the site in the window.
    pub features_available: u32,
    pub api_calls: u64,
    pub api_calls_previous: u64,
    pub logins: u64,
    pub engaged_ms: u64,
    pub sessions: u64,
    pub actions: u64,
    pub power_users: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SupportInputs {
    pub tickets: u32,
    pub tickets_previous: u32,
    pub negative: u32,
    pub with_sentiment: u32,
    pub resolved: u32,
    pub resolution_hours_total: f64,
    pub escalated: u32,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FinancialInputs {
    pub invoices: u32,
    pub paid_on_time: u32,
    pub mrr: Option<f64>,
    pub mrr_90_days_ago: Option<f64>,
    pub days_to_renewal: Option<i64>,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct RelationshipInputs {
    pub stakeholders: Option<u32>,
    pub executive_sponsor: Option<bool>,
    pub reference_willing: Option<bool>,
    /// Average NPS answer, 0–10.
    pub nps: Option<f64>,
}

/// Everything known about one account; `None` = no data of that kind at all.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct HealthInputs {
    pub usage: Option<UsageInputs>,
    pub support: Option<SupportInputs>,
    pub financial: Option<FinancialInputs>,
    pub relationship: Option<RelationshipInputs>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Risk {
    Healthy,
    AtRisk,
    Critical,
}

pub fn risk(score: f64) -> Risk {
    if score >= HEALTHY_AT {
        Risk::Healthy
    } else if score >= AT_RISK_AT {
        Risk::AtRisk
    } else {
        Risk::Critical
    }
}

/// Component scores (`None` = missing) and the re-weighted total.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct HealthScore {
    pub score: f64,
    pub usage: Option<f64>,
    pub engagement: Option<f64>,
    pub support: Option<f64>,
    pub financial: Option<f64>,
    pub relationship: Option<f64>,
    /// Components left out for lack of data (their weight went to the others).
    pub missing: Vec<&'static str>,
    pub risk: Risk,
}

fn round1(x: f64) -> f64 {
    (x * 10.0).round() / 10.0
}

fn ratio(a: f64, b: f64) -> f64 {
    if b <= 0.0 {
        0.0
    } else {
        a / b
    }
}

pub fn usage_score(u: &UsageInputs) -> f64 {
    let seats = f64::from(u.seats.unwrap_or(u.active_users.max(1)));
    let active = 40.0 * ratio(f64::from(u.active_users), seats).min(1.0);
    let adoption = 30.0 * ratio(f64::from(u.features_used), f64::from(u.features_available)).min(1.0);
    let api = if u.api_calls_previous == 0 {
        if u.api_calls > 0 { 30.0 } else { 0.0 }
    } else {
        30.0 * ratio(u.api_calls as f64, u.api_calls_previous as f64).min(1.0)
    };
    active + adoption + api
}

pub fn engagement_score(u: &UsageInputs) -> f64 {
    let users = f64::from(u.active_users);
    let weeks = 4.0;
    let logins = 40.0 * (ratio(u.logins as f64, users) / weeks / 3.0).min(1.0);
    let minutes_per_day = ratio(u.engaged_ms as f64 / 60_000.0, users) / 28.0;
    let time = 20.0 * (minutes_per_day / 10.0).min(1.0);
    let actions = 20.0 * (ratio(u.actions as f64, u.sessions as f64) / 20.0).min(1.0);
    let power = 20.0 * ratio(f64::from(u.power_users), users).min(1.0);
    logins + time + actions + power
}

pub fn support_score(s: &SupportInputs) -> f64 {
    let growth = if s.tickets_previous == 0 {
        if s.tickets > 0 { 1.0 } else { 0.0 }
    } else {
        (ratio(f64::from(s.tickets), f64::from(s.tickets_previous)) - 1.0).clamp(0.0, 1.0)
    };
    let negative = ratio(f64::from(s.negative), f64::from(s.with_sentiment));
    let hours = ratio(s.resolution_hours_total, f64::from(s.resolved));
    let slow = ((hours - 24.0).max(0.0) / 72.0).min(1.0);
    let escalations = ratio(f64::from(s.escalated), f64::from(s.tickets.max(1)));
    (100.0 - 25.0 * growth - 25.0 * negative - 25.0 * slow - 25.0 * escalations.min(1.0)).max(0.0)
}

pub fn financial_score(f: &FinancialInputs) -> f64 {
    let payments = if f.invoices == 0 { 50.0 } else { 50.0 * ratio(f64::from(f.paid_on_time), f64::from(f.invoices)) };
    let growth = match (f.mrr, f.mrr_90_days_ago) {
        (Some(now), Some(before)) if now > before => 25.0,
        (Some(now), Some(before)) if now < before => 0.0,
        _ => 15.0,
    };
    let renewal = match f.days_to_renewal {
        Some(days) if (0..=30).contains(&days) => 10.0,
        _ => 25.0,
    };
    payments + growth + renewal
}

pub fn relationship_score(r: &RelationshipInputs) -> f64 {
    30.0 * f64::from(r.stakeholders.unwrap_or(0).min(5)) / 5.0
        + if r.executive_sponsor == Some(true) { 25.0 } else { 0.0 }
        + if r.reference_willing == Some(true) { 15.0 } else { 0.0 }
        + 30.0 * r.nps.unwrap_or(0.0).clamp(0.0, 10.0) / 10.0
}

/// The score of one account.
pub fn health(inputs: &HealthInputs) -> HealthScore {
    let usage = inputs.usage.as_ref().filter(|u| u.active_users > 0 || u.api_calls > 0 || u.seats.is_some());
    let components = [
        usage.map(usage_score),
        usage.map(engagement_score),
        inputs.support.as_ref().map(support_score),
        inputs.financial.as_ref().map(financial_score),
        inputs.relationship.as_ref().map(relationship_score),
    ];
    let mut missing = Vec::new();
    let (mut weighted, mut weights) = (0.0, 0.0);
    for (value, (name, weight)) in components.iter().zip(WEIGHTS) {
        match value {
            Some(v) => {
                weighted += v * weight;
                weights += weight;
            }
            None => missing.push(name),
        }
    }
    let score = if weights > 0.0 { round1(weighted / weights) } else { 0.0 };
    HealthScore {
        score,
        usage: components[0].map(round1),
        engagement: components[1].map(round1),
        support: components[2].map(round1),
        financial: components[3].map(round1),
        relationship: components[4].map(round1),
        missing,
        risk: risk(score),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage() -> UsageInputs {
        UsageInputs {
            seats: Some(20),
            active_users: 10,
            features_used: 6,
            features_available: 10,
            api_calls: 800,
            api_calls_previous: 1000,
            logins: 60,
            engaged_ms: 10 * 28 * 5 * 60_000,
            sessions: 100,
            actions: 1000,
            power_users: 5,
        }
    }

    #[test]
    fn components_match_hand_computed_values() {
        // usage: 40·10/20 = 20; adoption 30·6/10 = 18; api 30·0.8 = 24 → 62
        assert_eq!(usage_score(&usage()), 62.0);
        // engagement: logins 60/10/4 = 1.5 per week → 40·0.5 = 20; time 5 min/day → 20·0.5 = 10;
        // actions 10/session → 20·0.5 = 10; power 5/10 → 10 → 50
        assert_eq!(engagement_score(&usage()), 50.0);
        let support = SupportInputs { tickets: 6, tickets_previous: 4, negative: 1, with_sentiment: 4, resolved: 5, resolution_hours_total: 300.0, escalated: 3 };
        // growth 0.5 → 12.5; negative 0.25 → 6.25; 60 h avg → (36/72) → 12.5; escalations 0.5 → 12.5 → 56.25
        assert_eq!(support_score(&support), 56.25);
        let financial = FinancialInputs { invoices: 4, paid_on_time: 3, mrr: Some(500.0), mrr_90_days_ago: Some(400.0), days_to_renewal: Some(20) };
        // 50·0.75 = 37.5 + growth 25 + renewal soon 10 = 72.5
        assert_eq!(financial_score(&financial), 72.5);
        let relationship = RelationshipInputs { stakeholders: Some(2), executive_sponsor: Some(true), reference_willing: Some(false), nps: Some(8.0) };
        // 30·2/5 = 12 + 25 + 0 + 24 = 61
        assert_eq!(relationship_score(&relationship), 61.0);

        let all = HealthInputs { usage: Some(usage()), support: Some(support), financial: Some(financial), relationship: Some(relationship) };
        let h = health(&all);
        // 0.30·62 + 0.25·50 + 0.20·56.25 + 0.15·72.5 + 0.10·61 = 18.6 + 12.5 + 11.25 + 10.875 + 6.1 = 59.325
        assert_eq!(h.score, 59.3);
        assert_eq!(h.risk, Risk::AtRisk);
        assert!(h.missing.is_empty());
    }

    #[test]
    fn missing_inputs_are_reweighted_and_named() {
        let only_usage = HealthInputs { usage: Some(usage()), ..HealthInputs::default() };
        let h = health(&only_usage);
        // (0.30·62 + 0.25·50) / 0.55 = 31.1 / 0.55 = 56.545…
        assert_eq!(h.score, 56.5);
        assert_eq!(h.missing, vec!["support", "financial", "relationship"]);
        assert_eq!((h.support, h.financial), (None, None));
        let nothing = health(&HealthInputs::default());
        assert_eq!((nothing.score, nothing.risk, nothing.missing.len()), (0.0, Risk::Critical, 5));
        // An empty usage record (no users, no calls, no seats) counts as missing too.
        let empty = health(&HealthInputs { usage: Some(UsageInputs::default()), ..HealthInputs::default() });
        assert_eq!(empty.missing.len(), 5);
    }

    #[test]
    fn risk_thresholds() {
        assert_eq!((risk(70.0), risk(69.9), risk(40.0), risk(39.9)), (Risk::Healthy, Risk::AtRisk, Risk::AtRisk, Risk::Critical));
    }

    #[test]
    fn support_without_history_and_quiet_accounts() {
        let quiet = SupportInputs::default();
        assert_eq!(support_score(&quiet), 100.0, "no tickets is good support health");
        let first = SupportInputs { tickets: 2, tickets_previous: 0, ..SupportInputs::default() };
        assert_eq!(support_score(&first), 75.0, "growth from zero counts fully; nothing else is known");
    }
}
