//! The engagement and intent score formulas (documented in ARCHITECTURE.md; tested here).
//!
//! Engagement (0–100) = depth 30 + dwell 30 + frequency 20 + recency 20:
//! * depth     = 30 · min(1, ln(1 + pageviews/visit) / ln 7)        (6 pages per visit saturate)
//! * dwell     = 30 · min(1, ln(1 + engaged seconds) / ln 1801)     (30 engaged minutes saturate)
//! * frequency = 20 · min(1, active days in the last 30 / 8)
//! * recency   = 20 · exp(−gap / 7 days) for a returning visitor, where gap is the idle time before
//!   the current visit; 10 for a first visit.
//!
//! Intent (0–100) = 100 · (1 − exp(−P / 60)) where P are intent points: each signal (page rule or
//! form submission) credits its points once per session, and P decays with the site's half-life
//! (default 7 days): P(t) = P(t0) · 2^(−(t − t0) / half-life).

use crm_schemas::{utc_day, VisitorProfile, DAY_MS};

pub const INTENT_SCALE: f64 = 60.0;
pub const FORM_SUBMIT_POINTS: f64 = 30.0;
pub const IDENTIFY_POINTS: f64 = 10.0;
/// A visitor writing in the chat (once per session).
pub const CHAT_POINTS: f64 = 10.0;
/// A visitor asking for a person in the chat.
pub const CHAT_HANDOFF_POINTS: f64 = 20.0;

pub fn depth_component(pageviews: u64, visits: u32) -> f64 {
    let per_visit = pageviews as f64 / f64::from(visits.max(1));
    30.0 * ((1.0 + per_visit).ln() / 7f64.ln()).min(1.0)
}

pub fn dwell_component(engaged_ms: u64) -> f64 {
    let seconds = engaged_ms as f64 / 1000.0;
    30.0 * ((1.0 + seconds).ln() / 1801f64.ln()).min(1.0)
}

pub fn frequency_component(active_days: &[i64], today: i64) -> f64 {
    let recent = active_days.iter().filter(|&&d| d > today - 30 && d <= today).count();
    20.0 * (recent as f64 / 8.0).min(1.0)
}

pub fn recency_component(return_gap_ms: Option<i64>) -> f64 {
    match return_gap_ms {
        None => 10.0,
        Some(gap) => 20.0 * (-(gap.max(0) as f64) / (7.0 * DAY_MS as f64)).exp(),
    }
}

pub fn engagement_score(profile: &VisitorProfile) -> u8 {
    let today = utc_day(profile.last_seen_ms);
    let total = depth_component(profile.pageviews, profile.visits)
        + dwell_component(profile.time_spent_ms)
        + frequency_component(&profile.active_days, today)
        + recency_component(profile.return_gap_ms);
    total.round().clamp(0.0, 100.0) as u8
}

/// Intent points decayed from `from_ms` to `to_ms`.
pub fn decay_points(points: f64, from_ms: i64, to_ms: i64, half_life_days: f64) -> f64 {
    if to_ms <= from_ms || half_life_days <= 0.0 {
        return points;
    }
    let elapsed_days = (to_ms - from_ms) as f64 / DAY_MS as f64;
    points * 0.5f64.powf(elapsed_days / half_life_days)
}

pub fn intent_score(points: f64) -> u8 {
    (100.0 * (1.0 - (-points.max(0.0) / INTENT_SCALE).exp())).round().clamp(0.0, 100.0) as u8
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intent_scale_examples() {
        assert_eq!(intent_score(0.0), 0);
        assert_eq!(intent_score(20.0), 28, "one pricing view");
        assert_eq!(intent_score(50.0), 57, "pricing + demo");
        assert_eq!(intent_score(105.0), 83, "pricing, demo, contact, form");
        assert!(intent_score(10_000.0) <= 100);
    }

    #[test]
    fn intent_halves_after_one_half_life() {
        let day = DAY_MS;
        assert!((decay_points(40.0, 0, 7 * day, 7.0) - 20.0).abs() < 1e-9);
        assert_eq!(decay_points(40.0, 10, 5, 7.0), 40.0, "no growth backwards in time");
    }

    #[test]
    fn engagement_components_saturate_and_sum() {
        assert!((depth_component(6, 1) - 30.0).abs() < 1e-9);
        assert_eq!(depth_component(600, 1), 30.0);
        assert!((dwell_component(1_800_000) - 30.0).abs() < 1e-9);
        assert_eq!(frequency_component(&[1, 2, 3, 4, 5, 6, 7, 8, 9], 9), 20.0);
        assert_eq!(frequency_component(&[1], 100), 0.0, "old days don't count");
        assert_eq!(recency_component(None), 10.0);
        assert!((recency_component(Some(0)) - 20.0).abs() < 1e-9);
        let profile = VisitorProfile {
            pageviews: 1,
            visits: 1,
            time_spent_ms: 0,
            active_days: vec![0],
            last_seen_ms: 1,
            ..VisitorProfile::default()
        };
        // depth 30·ln2/ln7 ≈ 10.7, dwell 0, frequency 2.5, recency 10 → 23
        assert_eq!(engagement_score(&profile), 23);
        let deep = VisitorProfile {
            pageviews: 60,
            visits: 10,
            time_spent_ms: 3_600_000,
            active_days: (0..10).collect(),
            last_seen_ms: 9 * DAY_MS,
            return_gap_ms: Some(0),
            ..VisitorProfile::default()
        };
        assert_eq!(engagement_score(&deep), 100);
    }
}
