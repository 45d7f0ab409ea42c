//! Goal conversions, computed the same way on every backend from
//! [`EventStore::matched_events`](crate::EventStore::matched_events) (one bit per goal), like
//! the funnels and retention of [`crate::growth`].
//!
//! Definitions (also in ARCHITECTURE "Growth reports"):
//! * A visitor converts on a goal in a window when it has at least one matching event in the
//!   window; `events` counts the matching events themselves.
//! * The conversion rate is converting visitors / the overview's visitors of the same window
//!   (the same bot decision on both sides), 0 when there were no visitors.
//! * By source: a converting visitor counts for the source it was acquired from, its profile's
//!   first `utm_source`, else its first referrer host, else `(direct)`.
//! * A series bucket counts the visitors converting inside that bucket, and its rate divides by
//!   that bucket's visitors.

use std::collections::{HashMap, HashSet};

use crm_schemas::{Goal, GoalMatch, VisitorProfile};
use serde::Serialize;

use crate::growth::{EventMatch, MatchedEvent};
use crate::{Count, Result, SeriesPoint, Store};

// Every goal is one bit of a `MatchedEvent` mask.
const _: () = assert!(crm_schemas::MAX_GOALS <= 32);

/// The figures of one goal over a window.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoalFigures {
    pub goal_id: String,
    pub name: String,
    #[serde(rename = "match")]
    pub target: GoalMatch,
    /// Visitors with at least one matching event.
    pub conversions: u64,
    /// Matching events.
    pub events: u64,
    /// `conversions / visitors`, 0..=1.
    pub conversion_rate: f64,
    /// Conversions per acquisition source, most first (only when asked for).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sources: Option<Vec<Count>>,
}

/// One bucket of a goal series.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct GoalPoint {
    pub start_ms: i64,
    pub conversions: u64,
    pub conversion_rate: f64,
}

fn rate(conversions: u64, visitors: u64) -> f64 {
    if visitors == 0 {
        0.0
    } else {
        conversions as f64 / visitors as f64
    }
}

/// The matchers of [`EventStore::matched_events`](crate::EventStore::matched_events): bit i is
/// goal i.
pub fn matchers(goals: &[Goal]) -> Vec<EventMatch> {
    goals.iter().map(|g| EventMatch::from(&g.target)).collect()
}

/// The goals (bit positions below `goals`) a row's mask names, lowest first.
fn bits(mask: u32, goals: usize) -> impl Iterator<Item = usize> {
    let mut left = if goals >= 32 { mask } else { mask & ((1 << goals) - 1) };
    std::iter::from_fn(move || {
        (left != 0).then(|| {
            let i = left.trailing_zeros() as usize;
            left &= left - 1;
            i
        })
    })
}

/// Each goal's converting visitors, one pass over the rows.
fn converted(rows: &[MatchedEvent], goals: usize) -> Vec<HashSet<&str>> {
    let mut out = vec![HashSet::new(); goals];
    for row in rows {
        for i in bits(row.mask, goals) {
            out[i].insert(row.visitor_id.as_str());
        }
    }
    out
}

/// Conversions, events and rates of each goal from its rows (bit i = goal i).
pub fn figures(goals: &[Goal], rows: &[MatchedEvent], visitors: u64) -> Vec<GoalFigures> {
    let mut events = vec![0u64; goals.len()];
    for row in rows {
        for i in bits(row.mask, goals.len()) {
            events[i] += 1;
        }
    }
    goals
        .iter()
        .zip(converted(rows, goals.len()))
        .zip(events)
        .map(|((goal, converted), events)| {
            let conversions = converted.len() as u64;
            GoalFigures {
                goal_id: goal.goal_id.clone(),
                name: goal.name.clone(),
                target: goal.target.clone(),
                conversions,
                events,
                conversion_rate: rate(conversions, visitors),
                sources: None,
            }
        })
        .collect()
}

/// Where a profile's visitor came from the first time (see the module header).
pub fn acquisition_source(profile: &VisitorProfile) -> &str {
    profile.first_utm.source.as_deref().or(profile.first_referrer.as_deref()).unwrap_or("(direct)")
}

/// Conversions per acquisition source of a goal's converting visitors, most first, at most `top`.
pub fn sources(converted: &HashSet<&str>, profiles: &HashMap<String, VisitorProfile>, top: usize) -> Vec<Count> {
    let mut counts: HashMap<&str, u64> = HashMap::new();
    for visitor in converted {
        *counts.entry(profiles.get(*visitor).map_or("(direct)", acquisition_source)).or_default() += 1;
    }
    let mut out: Vec<Count> = counts.into_iter().map(|(key, count)| Count { key: key.to_owned(), count }).collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    out.truncate(top);
    out
}

/// Per goal, the conversions of each bucket of `points` (buckets of `step_ms` from each
/// point's start, as [`EventStore::timeseries`](crate::EventStore::timeseries) returns them).
pub fn series(goals: &[Goal], rows: &[MatchedEvent], points: &[SeriesPoint], step_ms: i64) -> Vec<Vec<GoalPoint>> {
    let index: HashMap<i64, usize> = points.iter().enumerate().map(|(i, p)| (p.start_ms, i)).collect();
    // [goal][bucket] → converting visitors, one pass over the rows.
    let mut converted: Vec<Vec<HashSet<&str>>> = vec![vec![HashSet::new(); points.len()]; goals.len()];
    for row in rows {
        if let Some(&at) = index.get(&(row.ts_ms.div_euclid(step_ms) * step_ms)) {
            for i in bits(row.mask, goals.len()) {
                converted[i][at].insert(row.visitor_id.as_str());
            }
        }
    }
    converted
        .into_iter()
        .map(|buckets| {
            points
                .iter()
                .zip(buckets)
                .map(|(p, set)| GoalPoint { start_ms: p.start_ms, conversions: set.len() as u64, conversion_rate: rate(set.len() as u64, p.visitors) })
                .collect()
        })
        .collect()
}

/// The rows of `goals` in `[from_ms, to_ms)` (human visitors only), none when there are none.
pub async fn goal_rows<S: Store + ?Sized>(store: &S, site_id: &str, from_ms: i64, to_ms: i64, goals: &[Goal]) -> Result<Vec<MatchedEvent>> {
    if goals.is_empty() {
        return Ok(Vec::new());
    }
    store.matched_events(site_id, from_ms, to_ms, &matchers(goals), false).await
}

/// Fills each goal's `sources` (at most `top`) from the profiles of its converting visitors.
pub async fn add_sources<S: Store + ?Sized>(store: &S, site_id: &str, rows: &[MatchedEvent], figures: &mut [GoalFigures], top: usize) -> Result<()> {
    let mut keys: Vec<(String, String)> = rows.iter().map(|r| (site_id.to_owned(), r.visitor_id.clone())).collect();
    keys.sort();
    keys.dedup();
    let mut profiles = HashMap::new();
    for chunk in keys.chunks(10_000) {
        profiles.extend(store.visitors(chunk).await?.into_iter().map(|p| (p.visitor_id.clone(), p)));
    }
    let converted = converted(rows, figures.len());
    for (goal, converted) in figures.iter_mut().zip(converted) {
        goal.sources = Some(sources(&converted, &profiles, top));
    }
    Ok(())
}

/// Every goal's figures over `[from_ms, to_ms)` with the window's visitors, and conversions by
/// source when `top_sources` is set.
pub async fn goals_report<S: Store + ?Sized>(
    store: &S,
    site_id: &str,
    from_ms: i64,
    to_ms: i64,
    goals: &[Goal],
    top_sources: Option<usize>,
) -> Result<(u64, Vec<GoalFigures>)> {
    let visitors = store.overview(site_id, from_ms, to_ms, 0).await?.visitors;
    let rows = goal_rows(store, site_id, from_ms, to_ms, goals).await?;
    let mut out = figures(goals, &rows, visitors);
    if let Some(top) = top_sources {
        add_sources(store, site_id, &rows, &mut out, top).await?;
    }
    Ok((visitors, out))
}
