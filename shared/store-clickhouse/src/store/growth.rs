//! Funnels and retention computed on the server ([`crm_store::EventStore::funnel_pushdown`],
//! [`crm_store::EventStore::retention_pushdown`]): only a row per step or per (cohort, period)
//! leaves ClickHouse instead of every matched event. The SQL follows `crm_store::growth`'s
//! definitions step for step, and the conformance suite checks it against that Rust fold:
//!
//! * funnel: each visitor's matched events become one array sorted by (time, then step order
//!   with unmatched events last: `crm_store::growth`'s rule for events of one millisecond); every
//!   step-1 event in the window opens an attempt, folded over the events after it
//!   (`arrayFold`), and the first longest attempt is the visitor's; then one `ARRAY JOIN` counts
//!   visitors per step and takes the lower median (`quantileExactLow`) of the time between steps;
//! * goals: one row per (matching event, goal) through `ARRAY JOIN` of the mask's bits, counted
//!   per goal, per goal and bucket, and per goal and acquisition source (the converting visitors
//!   joined with their profiles' first `utm_source`, else first referrer, else `(direct)`);
//! * retention: a visitor's cohort (its first start event's period, or its profile's first visit)
//!   and the periods it returned in (one bit each), then a count per (cohort, periods later).

use clickhouse::Row;
use std::collections::BTreeMap;

use crm_store::goals::{GoalAsk, GoalCounts};
use crm_store::growth::{self, CohortStart, EventMatch, FunnelOrder, FunnelReport, FunnelSpec, RetentionReport, RetentionSpec};
use crm_store::{Count, Result};
use serde::Deserialize;

use super::reports::{bind_matchers, mask_sql};
use super::{ch_err, range, ClickHouseStore, HUMANS};

#[derive(Row, Deserialize)]
struct StepRow {
    step: u64,
    visitors: u64,
    median: i64,
}

#[derive(Row, Deserialize)]
struct GoalRow {
    goal: u64,
    conversions: u64,
    events: u64,
}

#[derive(Row, Deserialize)]
struct GoalKeyRow {
    goal: u64,
    key: String,
    count: u64,
}

#[derive(Row, Deserialize)]
struct GoalBucketRow {
    goal: u64,
    bucket: i64,
    count: u64,
}

#[derive(Row, Deserialize)]
struct CohortRow {
    cohort: i64,
    later: i64,
    visitors: u64,
}

/// A human's events of the range with their `mask` (and `kind`, `ts_ms`, `idx`: the period since
/// `period_start` for retention), only those matching a step unless `keep` adds more. Takes
/// [`range`]'s positional parameters. The event id is not read: it is the widest column, and
/// ties are ordered by mask.
fn matched_rows(mask: &str, keep: &str, period_start: i64, period_ms: i64) -> String {
    format!(
        "SELECT visitor_id, kind, toUnixTimestamp64Milli(ts) AS ts_ms, toUInt32({mask}) AS mask,
                intDiv(ts_ms - {period_start}, {period_ms}) AS idx
         FROM events WHERE {} AND is_bot = 0{HUMANS} AND (mask != 0{keep})",
        range("ts")
    )
}

/// The expression of one attempt opened by `rows[i]`: its step times.
fn attempt(order: FunnelOrder, steps: usize, window_ms: i64) -> String {
    let within = format!("r.1 - rows[i].1 <= {window_ms}");
    match order {
        // Later steps in order, other events between them allowed.
        FunnelOrder::Ordered => format!(
            "arrayFold((acc, r) -> if(length(acc) < {steps} AND {within} AND bitTest(r.2, length(acc)), arrayPushBack(acc, r.1), acc),
                       arraySlice(rows, i + 1), [rows[i].1])"
        ),
        // Each step the very next pageview or custom event: the first miss ends the attempt.
        FunnelOrder::Strict => format!(
            "arrayFold((acc, r) -> if(acc.2 = 1 OR length(acc.1) >= {steps} OR NOT ({within}) OR NOT bitTest(r.2, length(acc.1)),
                                      (acc.1, toUInt8(1)), (arrayPushBack(acc.1, r.1), toUInt8(0))),
                       arraySlice(rows, i + 1), ([rows[i].1], toUInt8(0))).1"
        ),
        // Steps in any order: each event adds a time per step it is the first to satisfy.
        FunnelOrder::Any => format!(
            "arraySlice(arrayFold((acc, r) -> if(NOT ({within}), acc,
                                      (bitOr(acc.1, r.2), arrayConcat(acc.2, arrayWithConstant(toUInt32(bitCount(bitOr(acc.1, r.2)) - bitCount(acc.1)), r.1)))),
                                  arraySlice(rows, i + 1), (rows[i].2, arrayWithConstant(toUInt32(bitCount(rows[i].2)), rows[i].1))).2, 1, {steps})"
        ),
    }
}

impl ClickHouseStore {
    /// [`crm_store::growth::funnel_report`] on the server.
    pub(super) async fn funnel_on_server(&self, site_id: &str, from_ms: i64, to_ms: i64, spec: &FunnelSpec) -> Result<FunnelReport> {
        growth::check_matchers(&spec.steps)?;
        let steps = spec.steps.len();
        let mask = mask_sql(&spec.steps);
        let keep = if spec.order == FunnelOrder::Strict { " OR kind IN ('pageview', 'custom')" } else { "" };
        let opens = match spec.order {
            FunnelOrder::Any => "rows[i].2 != 0",
            _ => "bitTest(rows[i].2, 0)",
        };
        let sql = format!(
            "SELECT toUInt64(s) AS step, count() AS visitors, toInt64(quantileExactLow(0.5)(gap)) AS median
             FROM (
                SELECT arrayFold((b, a) -> if(length(a) > length(b), a, b),
                                 arrayMap(i -> {attempt}, arrayFilter(i -> {opens} AND rows[i].1 >= {from_ms} AND rows[i].1 < {to_ms}, arrayEnumerate(rows))),
                                 CAST([], 'Array(Int64)')) AS best
                FROM (
                    SELECT arraySort(r -> (r.1, r.2 = 0, r.2), groupArray((ts_ms, mask))) AS rows
                    FROM ({rows}) GROUP BY visitor_id
                )
             )
             ARRAY JOIN arrayEnumerate(best) AS s, arrayMap((t, j) -> if(j = 1, 0, t - best[j - 1]), best, arrayEnumerate(best)) AS gap
             GROUP BY s ORDER BY s",
            attempt = attempt(spec.order, steps, spec.window_ms),
            rows = matched_rows(&mask, keep, 0, 1),
        );
        let query = self.analytics(site_id, from_ms, &sql).bind(site_id).bind(from_ms).bind(to_ms.saturating_add(spec.window_ms));
        let rows: Vec<StepRow> = bind_matchers(query, &spec.steps).fetch_all().await.map_err(ch_err)?;
        let (mut reached, mut medians) = (vec![0; steps], vec![None; steps]);
        for row in rows {
            if let Some(i) = usize::try_from(row.step).ok().and_then(|s| s.checked_sub(1)).filter(|&i| i < steps) {
                (reached[i], medians[i]) = (row.visitors, Some(row.median));
            }
        }
        Ok(growth::funnel_from_counts(spec, &reached, medians))
    }

    /// [`crm_store::growth::retention_report`] on the server.
    pub(super) async fn retention_on_server(&self, site_id: &str, spec: &RetentionSpec) -> Result<RetentionReport> {
        let matchers = spec.matchers();
        growth::check_matchers(&matchers)?;
        let (start, period, end, n) = (spec.start_ms, spec.period.ms(), spec.end_ms(), spec.cohorts as usize);
        let rows = matched_rows(&mask_sql(&matchers), "", start, period);
        // Bit p of `periods`: the visitor returned in period p (at most 26 periods).
        let periods = "groupBitOrIf(bitShiftLeft(toUInt64(1), idx), bitTest(mask, 1)) AS periods";
        let per_visitor = match spec.start {
            CohortStart::Event(_) => format!(
                "SELECT minIf(idx, bitTest(mask, 0)) AS cohort, {periods}
                 FROM ({rows}) GROUP BY visitor_id HAVING countIf(bitTest(mask, 0)) > 0"
            ),
            // The cohort is the period of the profile's first event; visitors first seen
            // outside the report's range have none.
            CohortStart::FirstVisit => format!(
                "SELECT p.cohort AS cohort, v.periods AS periods
                 FROM (SELECT visitor_id, {periods} FROM ({rows}) GROUP BY visitor_id) AS v
                 INNER JOIN (
                    SELECT visitor_id, intDiv(first_seen - {start}, {period}) AS cohort
                    FROM (SELECT visitor_id, JSONExtractInt(profile, 'first_seen_ms') AS first_seen FROM visitors FINAL WHERE site_id = {{bots_site:String}})
                    WHERE first_seen >= {start} AND first_seen < {end}
                 ) AS p ON v.visitor_id = p.visitor_id"
            ),
        };
        let sql = format!(
            "SELECT toInt64(cohort) AS cohort, toInt64(later) AS later, count() AS visitors
             FROM ({per_visitor})
             ARRAY JOIN arrayConcat([0], arrayMap(p -> p - cohort, arrayFilter(p -> bitTest(periods, p), range(toUInt64(cohort) + 1, {n})))) AS later
             GROUP BY cohort, later"
        );
        let query = self.analytics(site_id, start, &sql).bind(site_id).bind(start).bind(end);
        let rows: Vec<CohortRow> = bind_matchers(query, &matchers).fetch_all().await.map_err(ch_err)?;
        let mut returning: Vec<Vec<u64>> = (0..n).map(|c| vec![0; n - c]).collect();
        for row in rows {
            let (Ok(cohort), Ok(later)) = (usize::try_from(row.cohort), usize::try_from(row.later)) else { continue };
            if let Some(cell) = returning.get_mut(cohort).and_then(|counts| counts.get_mut(later)) {
                *cell = row.visitors;
            }
        }
        Ok(growth::retention_from_grid(spec, returning))
    }
}

impl ClickHouseStore {
    /// [`crm_store::goals::goal_counts`] on the server: up to three aggregate queries.
    pub(super) async fn goal_counts_on_server(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[EventMatch], ask: GoalAsk) -> Result<GoalCounts> {
        growth::check_matchers(matchers)?;
        let goals = matchers.len();
        // One row per (matching event, goal it matches).
        let per_goal = format!(
            "SELECT visitor_id, ts_ms, goal FROM ({}) ARRAY JOIN arrayFilter(i -> bitTest(mask, i), range({goals})) AS goal",
            matched_rows(&mask_sql(matchers), "", 0, 1)
        );
        let query = |sql: &str| bind_matchers(self.analytics(site_id, from_ms, sql).bind(site_id).bind(from_ms).bind(to_ms), matchers);
        let totals: Vec<GoalRow> = query(&format!(
            "SELECT toUInt64(goal) AS goal, uniqExact(visitor_id) AS conversions, count() AS events FROM ({per_goal}) GROUP BY goal"
        ))
        .fetch_all()
        .await
        .map_err(ch_err)?;
        let mut counts = GoalCounts { conversions: vec![0; goals], events: vec![0; goals], ..GoalCounts::default() };
        for row in totals {
            if let Some(i) = usize::try_from(row.goal).ok().filter(|&i| i < goals) {
                (counts.conversions[i], counts.events[i]) = (row.conversions, row.events);
            }
        }
        if let Some(step) = ask.step_ms {
            let rows: Vec<GoalBucketRow> = query(&format!(
                "SELECT toUInt64(goal) AS goal, intDiv(ts_ms, {step}) * {step} AS bucket, uniqExact(visitor_id) AS count FROM ({per_goal}) GROUP BY goal, bucket"
            ))
            .fetch_all()
            .await
            .map_err(ch_err)?;
            let mut buckets = vec![BTreeMap::new(); goals];
            for row in rows {
                if let Some(goal) = buckets.get_mut(row.goal as usize) {
                    goal.insert(row.bucket, row.count);
                }
            }
            counts.buckets = Some(buckets);
        }
        if let Some(top) = ask.top_sources {
            // A converting visitor without a profile counts as `(direct)`, as in the Rust fold.
            let rows: Vec<GoalKeyRow> = query(&format!(
                "SELECT toUInt64(c.goal) AS goal, coalesce(p.source, '(direct)') AS key, count() AS count
                 FROM (SELECT DISTINCT goal, visitor_id FROM ({per_goal})) AS c
                 LEFT JOIN (
                    SELECT visitor_id, coalesce(JSONExtract(profile, 'first_utm', 'source', 'Nullable(String)'), JSONExtract(profile, 'first_referrer', 'Nullable(String)'), '(direct)') AS source
                    FROM visitors FINAL WHERE site_id = {{bots_site:String}}
                 ) AS p ON c.visitor_id = p.visitor_id
                 GROUP BY goal, key ORDER BY goal, count DESC, key ASC LIMIT {top} BY goal
                 SETTINGS join_use_nulls = 1"
            ))
            .fetch_all()
            .await
            .map_err(ch_err)?;
            let mut sources = vec![Vec::new(); goals];
            for row in rows {
                if let Some(goal) = sources.get_mut(row.goal as usize) {
                    goal.push(Count { key: row.key, count: row.count });
                }
            }
            counts.sources = Some(sources);
        }
        Ok(counts)
    }
}
