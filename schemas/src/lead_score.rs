//! The lead score (0–100): five factors, each 0–100, weighted as the seed specifies, with the
//! strongest contributions explained in words. Pure functions of the lead, the site's ideal
//! customer profile and "now", so a score can be recomputed (and tested) anywhere.
//!
//! | factor | weight | points (max) |
//! | --- | --- | --- |
//! | fit | 0.30 | business email 25 · size in ICP range 25 · industry in ICP 20 · revenue ≥ ICP minimum 15 · tech overlap 15 |
//! | behavioural | 0.25 | visits 40·min(v,10)/10 · pages per visit 30·min(p/v,5)/5 · recency 30·max(0, 1 − days since last activity / 30) |
//! | engagement | 0.20 | engaged time 60·min(t / 10 min, 1) · forms submitted 40·min(f,2)/2 |
//! | intent | 0.15 | the highest current intent score among the lead's visitors |
//! | timing | 0.10 | active days in the last 7: 60·min(d7,3)/3 · momentum 40 when d7 > 0 and d7/7 ≥ d(8–30)/23 |
//!
//! Total = round(Σ weight · factor). An ICP criterion left empty accepts any value, but the lead
//! must have the trait: unknown data earns nothing.

use std::collections::BTreeSet;

use crate::{company_domain, IdealCustomerProfile, Lead, LeadActivity, Scalar, ScoreBreakdown, VisitorProfile, DAY_MS};

pub const WEIGHTS: [(&str, f64); 5] = [("fit", 0.30), ("behavioural", 0.25), ("engagement", 0.20), ("intent", 0.15), ("timing", 0.10)];

/// Number of employees from a number or a range string (`"51-200"` → 51, `"1000+"` → 1000).
fn employees(value: &Scalar) -> Option<f64> {
    match value {
        Scalar::Int(n) => Some(*n as f64),
        Scalar::Float(f) => Some(*f),
        Scalar::Str(s) => s.split(['-', '+', '–']).next()?.trim().replace(',', "").parse().ok(),
        Scalar::Bool(_) => None,
    }
}

fn number(value: &Scalar) -> Option<f64> {
    match value {
        Scalar::Int(n) => Some(*n as f64),
        Scalar::Float(f) => Some(*f),
        Scalar::Str(s) => s.trim().replace([',', '$', '€'], "").parse().ok(),
        Scalar::Bool(_) => None,
    }
}

/// One scored criterion: the factor it belongs to, its points within the factor, and why.
struct Part {
    factor: usize,
    points: f64,
    reason: String,
}

fn fit_parts(lead: &Lead, icp: &IdealCustomerProfile, parts: &mut Vec<Part>) {
    let mut add = |points: f64, reason: String| parts.push(Part { factor: 0, points, reason });
    if let Some(domain) = company_domain(&lead.email) {
        add(25.0, format!("business email ({domain})"));
    }
    let size = lead.traits.get("employees").or_else(|| lead.traits.get("company_size"));
    if let Some(n) = size.and_then(employees) {
        let fits = icp.min_employees.is_none_or(|min| n >= f64::from(min)) && icp.max_employees.is_none_or(|max| n <= f64::from(max));
        if fits {
            add(25.0, format!("company size {} fits the ideal customer profile", size.map(Scalar::to_text).unwrap_or_default()));
        }
    }
    if let Some(industry) = lead.traits.get("industry").and_then(Scalar::as_str) {
        if icp.industries.is_empty() || icp.industries.iter().any(|i| i.eq_ignore_ascii_case(industry.trim())) {
            add(20.0, format!("industry {industry} fits"));
        }
    }
    if let Some(revenue) = lead.traits.get("annual_revenue").and_then(number) {
        if icp.min_revenue.is_none_or(|min| revenue >= min) {
            add(15.0, "annual revenue fits".into());
        }
    }
    if let Some(stack) = lead.traits.get("tech_stack").and_then(Scalar::as_str) {
        let used: Vec<&str> = stack.split(',').map(str::trim).filter(|t| !t.is_empty()).collect();
        let overlap: Vec<&str> = used.iter().copied().filter(|t| icp.tech.iter().any(|i| i.eq_ignore_ascii_case(t))).collect();
        if (icp.tech.is_empty() && !used.is_empty()) || !overlap.is_empty() {
            let shown = if overlap.is_empty() { used.join(", ") } else { overlap.join(", ") };
            add(15.0, format!("uses {shown}"));
        }
    }
}

fn behaviour_parts(lead: &Lead, now_ms: i64, parts: &mut Vec<Part>) {
    let a = &lead.activity;
    if a.visits > 0 {
        parts.push(Part { factor: 1, points: 40.0 * f64::from(a.visits.min(10)) / 10.0, reason: format!("{} visits", a.visits) });
        let per_visit = a.pageviews as f64 / f64::from(a.visits);
        parts.push(Part { factor: 1, points: 30.0 * per_visit.min(5.0) / 5.0, reason: format!("{per_visit:.1} pages per visit") });
    }
    let days = ((now_ms - lead.last_activity_ms).max(0) as f64) / DAY_MS as f64;
    let recency = 30.0 * (1.0 - days / 30.0).max(0.0);
    if recency > 0.0 {
        let when = if days < 1.0 { "active today".to_owned() } else { format!("active {} days ago", days.floor()) };
        parts.push(Part { factor: 1, points: recency, reason: when });
    }
    let engaged = 60.0 * (a.engaged_ms as f64 / 600_000.0).min(1.0);
    if engaged > 0.0 {
        parts.push(Part { factor: 2, points: engaged, reason: format!("{} min engaged", a.engaged_ms / 60_000) });
    }
    let forms = a.signals.get("form_submit").copied().unwrap_or(0);
    if forms > 0 {
        parts.push(Part { factor: 2, points: 40.0 * f64::from(forms.min(2)) / 2.0, reason: format!("submitted {forms} form(s)") });
    }
    if a.intent_score > 0 {
        let mut signals: Vec<(&String, &u32)> = a.signals.iter().filter(|(k, _)| k.as_str() != "form_submit" && k.as_str() != "identified").collect();
        signals.sort_by(|x, y| y.1.cmp(x.1).then(x.0.cmp(y.0)));
        let what = signals.iter().take(2).map(|(k, n)| format!("{k} ×{n}")).collect::<Vec<_>>().join(", ");
        let reason = if what.is_empty() { format!("intent {}", a.intent_score) } else { format!("buying signals: {what}") };
        parts.push(Part { factor: 3, points: f64::from(a.intent_score), reason });
    }
    let today = now_ms.div_euclid(DAY_MS);
    let recent = a.active_days.iter().filter(|d| **d > today - 7 && **d <= today).count() as f64;
    let before = a.active_days.iter().filter(|d| **d > today - 30 && **d <= today - 7).count() as f64;
    if recent > 0.0 {
        parts.push(Part { factor: 4, points: 60.0 * recent.min(3.0) / 3.0, reason: format!("active on {recent} of the last 7 days") });
        if recent / 7.0 >= before / 23.0 {
            parts.push(Part { factor: 4, points: 40.0, reason: "activity is picking up".into() });
        }
    }
}

/// Recomputes the lead's activity and first touch from its (human) visitors' profiles.
pub fn aggregate(lead: &mut Lead, profiles: &[&VisitorProfile]) {
    let mut activity = LeadActivity::default();
    let mut days = BTreeSet::new();
    let mut first: Option<&VisitorProfile> = None;
    for profile in profiles.iter().filter(|p| !p.is_bot && p.events > 0) {
        activity.visits += profile.visits;
        activity.pageviews += profile.pageviews;
        activity.events += profile.events;
        activity.engaged_ms += profile.time_spent_ms;
        activity.intent_score = activity.intent_score.max(profile.intent_score);
        for (signal, count) in &profile.intent_signals {
            *activity.signals.entry(signal.clone()).or_default() += count;
        }
        days.extend(profile.active_days.iter().copied());
        lead.last_activity_ms = lead.last_activity_ms.max(profile.last_seen_ms);
        if first.is_none_or(|f| profile.first_seen_ms < f.first_seen_ms) {
            first = Some(profile);
        }
    }
    activity.active_days = days.into_iter().rev().take(30).collect();
    activity.active_days.reverse();
    // The organisation most visits come from, unless it is a network provider.
    let mut orgs: std::collections::BTreeMap<&str, u32> = std::collections::BTreeMap::new();
    for profile in profiles.iter().filter(|p| !p.is_bot) {
        if let Some(org) = profile.geo.org.as_deref().filter(|o| !o.is_empty() && !crate::is_network_provider(o)) {
            *orgs.entry(org).or_default() += profile.visits.max(1);
        }
    }
    lead.ip_org = orgs.into_iter().max_by(|a, b| a.1.cmp(&b.1).then(b.0.cmp(a.0))).map(|(org, _)| org.to_owned());
    if let Some(first) = first {
        lead.first_seen_ms = lead.first_seen_ms.min(first.first_seen_ms);
        lead.first_utm = first.first_utm.clone();
        lead.source = first.first_utm.source.clone().or_else(|| first.first_referrer.clone()).unwrap_or_else(|| "direct".into());
    }
    lead.activity = activity;
}

/// Aggregates and scores in one go; returns the score before.
pub fn recompute(lead: &mut Lead, profiles: &[&VisitorProfile], icp: &IdealCustomerProfile, now_ms: i64) -> u8 {
    let before = lead.score;
    aggregate(lead, profiles);
    let (total, breakdown, reasons) = score(lead, icp, now_ms);
    (lead.score, lead.breakdown, lead.reasons) = (total, breakdown, reasons);
    before
}

/// The score, its per-factor breakdown and the top three reasons.
pub fn score(lead: &Lead, icp: &IdealCustomerProfile, now_ms: i64) -> (u8, ScoreBreakdown, Vec<String>) {
    let mut parts = Vec::new();
    fit_parts(lead, icp, &mut parts);
    behaviour_parts(lead, now_ms, &mut parts);
    let mut factors = [0.0f64; 5];
    for part in &parts {
        factors[part.factor] += part.points;
    }
    let factors = factors.map(|f| f.clamp(0.0, 100.0));
    let total: f64 = factors.iter().zip(WEIGHTS).map(|(f, (_, w))| f * w).sum();
    parts.sort_by(|a, b| (b.points * WEIGHTS[b.factor].1).total_cmp(&(a.points * WEIGHTS[a.factor].1)));
    let reasons = parts.into_iter().take(3).map(|p| p.reason).collect();
    let round = |f: f64| (f * 10.0).round() / 10.0;
    let breakdown =
        ScoreBreakdown { fit: round(factors[0]), behavioural: round(factors[1]), engagement: round(factors[2]), intent: round(factors[3]), timing: round(factors[4]) };
    (total.round().clamp(0.0, 100.0) as u8, breakdown, reasons)
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 20_000 * DAY_MS + 12 * 3_600_000;
    const TODAY: i64 = 20_000;

    fn lead() -> Lead {
        let mut lead = Lead { email: "ada@acme.example".into(), last_activity_ms: NOW - DAY_MS / 2, ..Lead::default() };
        lead.traits.insert("employees".into(), Scalar::Str("51-200".into()));
        lead.traits.insert("industry".into(), Scalar::Str("Software".into()));
        lead.traits.insert("annual_revenue".into(), Scalar::Int(5_000_000));
        lead.traits.insert("tech_stack".into(), Scalar::Str("Postgres, Kafka".into()));
        lead.activity.visits = 4;
        lead.activity.pageviews = 12;
        lead.activity.engaged_ms = 300_000;
        lead.activity.signals.insert("form_submit".into(), 1);
        lead.activity.signals.insert("pricing".into(), 3);
        lead.activity.intent_score = 70;
        lead.activity.active_days = vec![TODAY - 20, TODAY - 3, TODAY];
        lead
    }

    fn icp() -> IdealCustomerProfile {
        IdealCustomerProfile {
            industries: vec!["software".into()],
            min_employees: Some(50),
            max_employees: Some(500),
            min_revenue: Some(1_000_000.0),
            tech: vec!["kafka".into()],
        }
    }

    #[test]
    fn hand_computed_factors_and_total() {
        let (total, b, reasons) = score(&lead(), &icp(), NOW);
        // fit: 25 + 25 + 20 + 15 + 15 = 100
        assert_eq!(b.fit, 100.0);
        // behavioural: visits 40·4/10 = 16; depth 30·3/5 = 18; recency 30·(1 − 0.5/30) = 29.5
        assert_eq!(b.behavioural, 63.5);
        // engagement: 60·0.5 = 30; forms 40·1/2 = 20
        assert_eq!(b.engagement, 50.0);
        assert_eq!(b.intent, 70.0);
        // timing: 2 active days in the last 7 → 40; momentum 2/7 ≥ 1/23 → 40
        assert_eq!(b.timing, 80.0);
        // 0.30·100 + 0.25·63.5 + 0.20·50 + 0.15·70 + 0.10·80 = 30 + 15.875 + 10 + 10.5 + 8 = 74.375
        assert_eq!(total, 74);
        // Reasons ranked by weighted points: intent 0.15·70 = 10.5, then 0.30·25 = 7.5 (twice).
        assert_eq!(reasons, vec!["buying signals: pricing ×3", "business email (acme.example)", "company size 51-200 fits the ideal customer profile"]);
    }

    #[test]
    fn outside_the_icp_earns_no_fit_and_free_mail_none_either() {
        let mut lead = lead();
        lead.email = "ada@gmail.com".into();
        lead.traits.insert("employees".into(), Scalar::Int(10));
        lead.traits.insert("industry".into(), Scalar::Str("Retail".into()));
        lead.traits.insert("tech_stack".into(), Scalar::Str("MySQL".into()));
        let (_, b, _) = score(&lead, &icp(), NOW);
        assert_eq!(b.fit, 15.0, "only revenue still fits");
        // With an empty ICP, any present trait fits.
        let (_, b, _) = score(&lead, &IdealCustomerProfile::default(), NOW);
        assert_eq!(b.fit, 75.0);
    }

    #[test]
    fn stale_leads_lose_behaviour_and_timing() {
        let mut lead = lead();
        lead.last_activity_ms = NOW - 45 * DAY_MS;
        lead.activity.active_days = vec![TODAY - 45];
        let (_, b, _) = score(&lead, &icp(), NOW);
        assert_eq!(b.behavioural, 34.0, "visits 16 + depth 18, no recency");
        assert_eq!(b.timing, 0.0);
    }

    #[test]
    fn an_empty_lead_scores_zero() {
        let lead = Lead { email: "x@gmail.com".into(), last_activity_ms: NOW - 60 * DAY_MS, ..Lead::default() };
        let (total, b, reasons) = score(&lead, &IdealCustomerProfile::default(), NOW);
        assert_eq!((total, b, reasons.len()), (0, ScoreBreakdown::default(), 0));
    }

    #[test]
    fn aggregation_sums_human_visitors_and_picks_the_company_network() {
        let visitor = |visits: u32, org: &str, bot: bool, first_seen: i64| VisitorProfile {
            visits,
            pageviews: u64::from(visits) * 2,
            events: 5,
            first_seen_ms: first_seen,
            last_seen_ms: first_seen + 10,
            is_bot: bot,
            active_days: vec![TODAY - 1, TODAY],
            geo: crate::Geo { org: Some(org.into()), ..crate::Geo::default() },
            ..VisitorProfile::default()
        };
        let (office, home, crawler) = (visitor(3, "Acme Corp", false, 100), visitor(5, "Comcast Cable", false, 50), visitor(9, "Acme Corp", true, 10));
        let mut lead = Lead { first_seen_ms: i64::MAX, ..Lead::default() };
        aggregate(&mut lead, &[&office, &home, &crawler]);
        assert_eq!((lead.activity.visits, lead.activity.pageviews), (8, 16), "bots left out");
        assert_eq!(lead.activity.active_days, vec![TODAY - 1, TODAY], "days are a union");
        assert_eq!(lead.first_seen_ms, 50);
        assert_eq!(lead.ip_org.as_deref(), Some("Acme Corp"), "the ISP is not a company");
    }

    #[test]
    fn sizes_parse_from_numbers_and_ranges() {
        assert_eq!(employees(&Scalar::Str("1,000+".into())), Some(1000.0));
        assert_eq!(employees(&Scalar::Str("11-50".into())), Some(11.0));
        assert_eq!(employees(&Scalar::Float(42.0)), Some(42.0));
        assert_eq!(employees(&Scalar::Str("lots".into())), None);
    }
}
