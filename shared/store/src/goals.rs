//! Goal conversions, defined once here over
//! [`EventStore::matched_events`](crate::EventStore::matched_events) (one bit per goal), like
//! the funnels and retention of [`crate::growth`]; a store may compute the same [`GoalCounts`]
//! where its events live (ClickHouse does).
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

use std::collections::{BTreeMap, HashMap, HashSet};

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

/// What the goal reports need from a store, per goal in goal order: computed where the events
/// live by a store that can ([`EventStore::goal_counts_pushdown`](crate::EventStore::goal_counts_pushdown),
/// ClickHouse), else folded from the matched rows here ([`goal_counts_from_rows`], the
/// definition the conformance suite holds every store to).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct GoalCounts {
    /// Visitors with at least one matching event.
    pub conversions: Vec<u64>,
    /// Matching events.
    pub events: Vec<u64>,
    /// Conversions per acquisition source, most first then by source, at most
    /// [`GoalAsk::top_sources`] of them; only when asked.
    pub sources: Option<Vec<Vec<Count>>>,
    /// Converting visitors per bucket of [`GoalAsk::step_ms`] (keyed by the bucket's start, a
    /// multiple of the step; buckets without conversions left out); only when asked.
    pub buckets: Option<Vec<BTreeMap<i64, u64>>>,
}

/// Which parts of [`GoalCounts`] to compute besides conversions and events.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GoalAsk {
    pub top_sources: Option<usize>,
    pub step_ms: Option<i64>,
}

/// [`GoalCounts`] of `goals` over `[from_ms, to_ms)`, human visitors only; nothing is asked of
/// the store when there are no goals.
pub async fn goal_counts<S: Store + ?Sized>(store: &S, site_id: &str, from_ms: i64, to_ms: i64, goals: &[Goal], ask: GoalAsk) -> Result<GoalCounts> {
    if goals.is_empty() {
        return Ok(GoalCounts { sources: ask.top_sources.map(|_| Vec::new()), buckets: ask.step_ms.map(|_| Vec::new()), ..GoalCounts::default() });
    }
    check_ask(ask)?;
    match store.goal_counts_pushdown(site_id, from_ms, to_ms, &matchers(goals), ask).await? {
        Some(counts) => Ok(counts),
        None => goal_counts_from_rows(store, site_id, from_ms, to_ms, goals, ask).await,
    }
}

fn check_ask(ask: GoalAsk) -> Result<()> {
    match ask.step_ms {
        Some(step) if step <= 0 => Err(crate::StoreError::Backend { message: format!("a goal series step is positive, not {step}"), retryable: false }),
        _ => Ok(()),
    }
}

/// [`GoalCounts`] folded from [`EventStore::matched_events`](crate::EventStore::matched_events)
/// and the converting visitors' profiles.
pub async fn goal_counts_from_rows<S: Store + ?Sized>(store: &S, site_id: &str, from_ms: i64, to_ms: i64, goals: &[Goal], ask: GoalAsk) -> Result<GoalCounts> {
    check_ask(ask)?;
    let rows = match goals.is_empty() {
        true => Vec::new(),
        false => store.matched_events(site_id, from_ms, to_ms, &matchers(goals), false).await?,
    };
    let mut counts = counts_of_rows(&rows, goals.len(), ask.step_ms);
    if let Some(top) = ask.top_sources {
        let mut keys: Vec<(String, String)> = rows.iter().map(|r| (site_id.to_owned(), r.visitor_id.clone())).collect();
        keys.sort();
        keys.dedup();
        let mut profiles = HashMap::new();
        for chunk in keys.chunks(10_000) {
            profiles.extend(store.visitors(chunk).await?.into_iter().map(|p| (p.visitor_id.clone(), p)));
        }
        counts.sources = Some(converted(&rows, goals.len()).iter().map(|visitors| sources(visitors, &profiles, top)).collect());
    }
    Ok(counts)
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

/// Conversions, events and (with `step_ms`) buckets of rows whose bit i is goal i.
pub fn counts_of_rows(rows: &[MatchedEvent], goals: usize, step_ms: Option<i64>) -> GoalCounts {
    let mut events = vec![0u64; goals];
    let mut per_bucket: Vec<HashMap<i64, HashSet<&str>>> = vec![HashMap::new(); goals];
    for row in rows {
        for i in bits(row.mask, goals) {
            events[i] += 1;
            if let Some(step) = step_ms {
                per_bucket[i].entry(row.ts_ms.div_euclid(step) * step).or_default().insert(row.visitor_id.as_str());
            }
        }
    }
    GoalCounts {
        conversions: converted(rows, goals).iter().map(|v| v.len() as u64).collect(),
        events,
        sources: None,
        buckets: step_ms.map(|_| per_bucket.into_iter().map(|b| b.into_iter().map(|(start, v)| (start, v.len() as u64)).collect()).collect()),
    }
}

/// Each goal's figures from its counts, rates over the window's `visitors`.
pub fn figures(goals: &[Goal], counts: &GoalCounts, visitors: u64) -> Vec<GoalFigures> {
    goals
        .iter()
        .enumerate()
        .map(|(i, goal)| {
            let conversions = counts.conversions.get(i).copied().unwrap_or(0);
            GoalFigures {
                goal_id: goal.goal_id.clone(),
                name: goal.name.clone(),
                target: goal.target.clone(),
                conversions,
                events: counts.events.get(i).copied().unwrap_or(0),
                conversion_rate: rate(conversions, visitors),
                sources: counts.sources.as_ref().map(|s| s.get(i).cloned().unwrap_or_default()),
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

/// Per goal, the conversions of each bucket of `points` (as
/// [`EventStore::timeseries`](crate::EventStore::timeseries) returns them), from counts asked
/// with the points' step.
pub fn series(goals: &[Goal], counts: &GoalCounts, points: &[SeriesPoint]) -> Vec<Vec<GoalPoint>> {
    let empty = BTreeMap::new();
    (0..goals.len())
        .map(|i| {
            let buckets = counts.buckets.as_ref().and_then(|b| b.get(i)).unwrap_or(&empty);
            points
                .iter()
                .map(|p| {
                    let conversions = buckets.get(&p.start_ms).copied().unwrap_or(0);
                    GoalPoint { start_ms: p.start_ms, conversions, conversion_rate: rate(conversions, p.visitors) }
                })
                .collect()
        })
        .collect()
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
    let counts = goal_counts(store, site_id, from_ms, to_ms, goals, GoalAsk { top_sources, step_ms: None }).await?;
    Ok((visitors, figures(goals, &counts, visitors)))
}
