//! Funnels and retention, computed the same way on every backend. A backend only selects rows
//! ([`EventStore::matched_events`](crate::EventStore::matched_events): a site's events of a
//! window from visitors whose profile is human, each with one bit per matcher it satisfies,
//! ordered by visitor then time); the functions here turn them into the reports, so the stores
//! cannot disagree on what a conversion or a returning visitor is. A store may compute a report
//! where its events live instead ([`EventStore::funnel_pushdown`](crate::EventStore::funnel_pushdown),
//! ClickHouse does); the fold here ([`funnel_from_rows`], [`retention_from_rows`]) stays the
//! definition it is tested against.
//!
//! Definitions (also in ARCHITECTURE "Growth reports"):
//! * A step or cohort event is an [`EventMatch`]: any event, a pageview whose path matches a
//!   glob (`*` is any run of characters, everything else literal), or a custom event by name.
//! * Funnel: one attempt per visitor, the one that reaches the furthest step (the earliest such
//!   attempt on ties). An attempt starts with a step-1 event inside the window `[from, to)`;
//!   every later step must follow within `window_ms` of that start. *Ordered*: later steps come
//!   in order, other events may come between. *Strict*: each step is the visitor's very next
//!   pageview or custom event. *Any*: the steps may come in any order; step k counts visitors
//!   who completed k of them. One event counts for one step (ordered, strict). A visitor's
//!   events of the same millisecond are taken in step order (by mask), those matching no step
//!   last. Times between steps are the lower median over the visitors that reached the later
//!   step.
//! * Retention: cohorts of `period` (UTC days, or ISO weeks from Monday) from `start_ms`. A
//!   visitor's cohort is the period of its first visit (its profile's first event) or of its
//!   first start event in the range; it returns in period n ≥ 1 when it has a return event in
//!   the n-th period after its cohort's. `returning[0]` is the cohort's size.

use std::collections::HashMap;

use crm_schemas::{EventBody, GoalMatch, PropertyCondition, Scalar, StoredEvent};
use serde::Serialize;

use crate::{Result, Store, StoreError};

/// Longest glob or event name a matcher takes.
pub const MAX_MATCH_BYTES: usize = 256;
/// Most steps of a funnel.
pub const MAX_FUNNEL_STEPS: usize = 8;
/// Longest funnel conversion window.
pub const MAX_FUNNEL_WINDOW_MS: i64 = 90 * DAY_MS;
/// Most cohorts of one retention report.
pub const MAX_COHORTS: u32 = 26;

const DAY_MS: i64 = 86_400_000;
const WEEK_MS: i64 = 7 * DAY_MS;

/// Which events a funnel step, cohort start or return counts.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "kind", content = "value", rename_all = "snake_case")]
pub enum EventMatch {
    /// Any event.
    Any,
    /// A pageview whose path matches the glob.
    Page(String),
    /// A custom event (`crm('track', name)`) of this name.
    Event(String),
    /// A custom event of this name whose property `key` holds `value` (typed, see
    /// [`crm_schemas::PropertyCondition`]); goals use it.
    EventWhere { name: String, condition: PropertyCondition },
}

impl From<&GoalMatch> for EventMatch {
    fn from(target: &GoalMatch) -> EventMatch {
        match target {
            GoalMatch::Page { pattern } => EventMatch::Page(pattern.clone()),
            GoalMatch::Event { name, property: None } => EventMatch::Event(name.clone()),
            GoalMatch::Event { name, property: Some(condition) } => EventMatch::EventWhere { name: name.clone(), condition: condition.clone() },
        }
    }
}

impl EventMatch {
    /// Parses `any`, `page:<glob>` or `event:<name>`; the error says what is wrong.
    pub fn parse(text: &str) -> std::result::Result<EventMatch, String> {
        let (kind, value) = match text.split_once(':') {
            None if text == "any" => return Ok(EventMatch::Any),
            None => return Err(format!("{text:?} is not `any`, `page:<path glob>` or `event:<name>`")),
            Some(pair) => pair,
        };
        if value.is_empty() || value.len() > MAX_MATCH_BYTES || value.chars().any(char::is_control) {
            return Err(format!("the {kind} of a step must be 1 to {MAX_MATCH_BYTES} bytes without control characters"));
        }
        match kind {
            "page" if value.starts_with('/') || value.starts_with('*') => Ok(EventMatch::Page(value.to_owned())),
            "page" => Err(format!("a page glob starts with `/` or `*`, not {value:?}")),
            "event" => Ok(EventMatch::Event(value.to_owned())),
            _ => Err(format!("{kind:?} is not a step kind (`page`, `event` or `any`)")),
        }
    }

    /// The form [`EventMatch::parse`] reads.
    pub fn label(&self) -> String {
        match self {
            EventMatch::Any => "any".into(),
            EventMatch::Page(glob) => format!("page:{glob}"),
            EventMatch::Event(name) => format!("event:{name}"),
            EventMatch::EventWhere { name, condition } => {
                format!("event:{name} where {} = {}", condition.key, serde_json::to_string(&condition.value).unwrap_or_default())
            }
        }
    }

    /// Whether the event satisfies this matcher (the backends' SQL says the same).
    pub fn matches(&self, event: &StoredEvent) -> bool {
        match (self, &event.body) {
            (EventMatch::Any, _) => true,
            (EventMatch::Page(glob), EventBody::Pageview) => glob_matches(glob, event.path.as_deref().unwrap_or("/")),
            (EventMatch::Event(name), EventBody::Custom { name: actual }) => name == actual,
            (EventMatch::EventWhere { name, condition }, EventBody::Custom { name: actual }) => {
                name == actual && event.props.get(&condition.key).is_some_and(|value| condition.holds_for(value))
            }
            _ => false,
        }
    }
}

/// Whether `text` matches `glob`: `*` matches any run of characters, all else itself.
pub fn glob_matches(glob: &str, text: &str) -> bool {
    let mut parts = glob.split('*');
    let first = parts.next().unwrap_or("");
    let Some(mut rest) = text.strip_prefix(first) else { return false };
    let pieces: Vec<&str> = parts.collect();
    let Some((last, middle)) = pieces.split_last() else { return rest.is_empty() };
    for piece in middle {
        match rest.find(piece) {
            Some(at) => rest = &rest[at + piece.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

/// How a glob can be checked without a regular expression, when it can.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GlobForm<'a> {
    /// `*`: every path.
    All,
    /// No `*`: this path exactly.
    Exact(&'a str),
    /// One `*`, at the end: paths starting with this.
    Prefix(&'a str),
    /// Anything else: [`glob_regex`].
    Pattern,
}

/// The cheapest check equivalent to [`glob_matches`] with `glob`.
pub fn glob_form(glob: &str) -> GlobForm<'_> {
    match glob.find('*') {
        None => GlobForm::Exact(glob),
        Some(at) if at + 1 == glob.len() && at == 0 => GlobForm::All,
        Some(at) if at + 1 == glob.len() => GlobForm::Prefix(&glob[..at]),
        Some(_) => GlobForm::Pattern,
    }
}

/// The glob as an anchored regular expression that RE2 (ClickHouse) and Rust's `regex`
/// (DataFusion) read alike: literal parts with their metacharacters escaped, `*` as `.*`.
pub fn glob_regex(glob: &str) -> String {
    let mut out = String::from("^");
    for c in glob.chars() {
        match c {
            '*' => out.push_str(".*"),
            '\\' | '.' | '+' | '?' | '(' | ')' | '|' | '[' | ']' | '{' | '}' | '^' | '$' => {
                out.push('\\');
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out.push('$');
    out
}

/// The bits of the matchers `event` satisfies.
pub fn mask(matchers: &[EventMatch], event: &StoredEvent) -> u32 {
    matchers.iter().enumerate().filter(|(_, m)| m.matches(event)).fold(0, |mask, (i, _)| mask | 1 << i)
}

/// Whether an event that satisfies no matcher is still a row when unmatched rows are kept.
pub fn kept_unmatched(event: &StoredEvent) -> bool {
    matches!(event.body, EventBody::Pageview | EventBody::Custom { .. })
}

/// At most 32 matchers (one bit each), each within its size limits.
pub fn check_matchers(matchers: &[EventMatch]) -> Result<()> {
    if matchers.len() > 32 {
        return Err(invalid(format!("at most 32 matchers, not {}", matchers.len())));
    }
    for m in matchers {
        let texts: Vec<&str> = match m {
            EventMatch::Any => vec![],
            EventMatch::Page(text) | EventMatch::Event(text) => vec![text],
            EventMatch::EventWhere { name, condition } => {
                let fits = match &condition.value {
                    Scalar::Str(value) => value.len() <= MAX_MATCH_BYTES,
                    Scalar::Float(f) => f.is_finite(),
                    Scalar::Int(_) | Scalar::Bool(_) => true,
                };
                if !fits {
                    return Err(invalid(format!("matcher {:?} compares with a string over {MAX_MATCH_BYTES} bytes or a number that is not finite", m.label())));
                }
                vec![name, &condition.key]
            }
        };
        for text in texts {
            if text.is_empty() || text.len() > MAX_MATCH_BYTES || text.chars().any(char::is_control) {
                return Err(invalid(format!("matcher {:?} is empty, longer than {MAX_MATCH_BYTES} bytes or has control characters", m.label())));
            }
        }
    }
    Ok(())
}

/// One row of a growth report: a human event and the bits of the matchers it satisfies.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MatchedEvent {
    pub visitor_id: String,
    pub ts_ms: i64,
    pub mask: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FunnelOrder {
    Ordered,
    Strict,
    Any,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FunnelSpec {
    pub steps: Vec<EventMatch>,
    pub window_ms: i64,
    pub order: FunnelOrder,
}

impl FunnelSpec {
    /// 2 to [`MAX_FUNNEL_STEPS`] steps, none of them `any`, and a window of a minute to 90 days.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(2..=MAX_FUNNEL_STEPS).contains(&self.steps.len()) {
            return Err(format!("a funnel has 2 to {MAX_FUNNEL_STEPS} steps, not {}", self.steps.len()));
        }
        if self.steps.contains(&EventMatch::Any) {
            return Err("a funnel step names a page or an event, not `any`".into());
        }
        if !(60_000..=MAX_FUNNEL_WINDOW_MS).contains(&self.window_ms) {
            return Err("the conversion window is from one minute to 90 days".into());
        }
        Ok(())
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunnelStep {
    pub step: String,
    pub visitors: u64,
    /// Visitors of this step / visitors of step 1.
    pub conversion_rate: f64,
    /// Visitors of the previous step that did not reach this one.
    pub drop_off: u64,
    /// Lower median time from the previous step, over the visitors that reached this one.
    pub median_ms_from_previous: Option<i64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FunnelReport {
    pub order: FunnelOrder,
    pub window_ms: i64,
    pub steps: Vec<FunnelStep>,
}

/// What a funnel reads of a row: its time and matcher bits.
#[derive(Clone, Copy)]
struct Timed {
    ts_ms: i64,
    mask: u32,
}

/// Step times of one visitor's best attempt.
fn best_attempt(rows: &[Timed], spec: &FunnelSpec, from_ms: i64, to_ms: i64) -> Vec<i64> {
    let k = spec.steps.len();
    let mut best: Vec<i64> = Vec::new();
    for (i, start) in rows.iter().enumerate() {
        let opens = match spec.order {
            FunnelOrder::Any => start.mask != 0,
            _ => start.mask & 1 != 0,
        };
        if !opens || start.ts_ms < from_ms || start.ts_ms >= to_ms {
            continue;
        }
        let within = rows[i + 1..].iter().take_while(|r| r.ts_ms - start.ts_ms <= spec.window_ms);
        let mut times = vec![start.ts_ms];
        match spec.order {
            FunnelOrder::Ordered => {
                for row in within {
                    if times.len() == k {
                        break;
                    }
                    if row.mask & (1 << times.len()) != 0 {
                        times.push(row.ts_ms);
                    }
                }
            }
            FunnelOrder::Strict => {
                for row in within {
                    if times.len() == k || row.mask & (1 << times.len()) == 0 {
                        break;
                    }
                    times.push(row.ts_ms);
                }
            }
            FunnelOrder::Any => {
                let mut seen = start.mask;
                times = vec![start.ts_ms; seen.count_ones() as usize];
                for row in within {
                    let now = seen | row.mask;
                    times.extend(std::iter::repeat_n(row.ts_ms, (now.count_ones() - seen.count_ones()) as usize));
                    seen = now;
                }
                times.truncate(k);
            }
        }
        if times.len() > best.len() {
            best = times;
            if best.len() == k {
                break;
            }
        }
    }
    best
}

fn lower_median(mut values: Vec<i64>) -> Option<i64> {
    values.sort_unstable();
    values.get(values.len().checked_sub(1)? / 2).copied()
}

/// The funnel over rows of [`EventStore::matched_events`](crate::EventStore::matched_events)
/// with the spec's steps as matchers (bit i = step i+1), covering `[from_ms, to_ms + window)`.
pub fn funnel(spec: &FunnelSpec, rows: &[MatchedEvent], from_ms: i64, to_ms: i64) -> FunnelReport {
    let k = spec.steps.len();
    let mut reached = vec![0u64; k];
    let mut gaps: Vec<Vec<i64>> = vec![Vec::new(); k];
    let mut visitor_rows = Vec::new();
    for visitor in rows.chunk_by(|a, b| a.visitor_id == b.visitor_id) {
        // Events of the same millisecond are taken in step order, unmatched ones last.
        visitor_rows.clear();
        visitor_rows.extend(visitor.iter().map(|r| Timed { ts_ms: r.ts_ms, mask: r.mask }));
        visitor_rows.sort_by_key(|r| (r.ts_ms, r.mask == 0, r.mask));
        let times = best_attempt(&visitor_rows, spec, from_ms, to_ms);
        for (step, at) in times.iter().enumerate() {
            reached[step] += 1;
            if step > 0 {
                gaps[step].push(at - times[step - 1]);
            }
        }
    }
    let medians = gaps.into_iter().map(lower_median).collect();
    funnel_from_counts(spec, &reached, medians)
}

/// The report of visitors reaching each step (`reached[i]`, non-increasing) and the lower
/// median time from the previous step (`None` for the first step and for steps nobody reached).
pub fn funnel_from_counts(spec: &FunnelSpec, reached: &[u64], medians: Vec<Option<i64>>) -> FunnelReport {
    let first = reached.first().copied().unwrap_or(0);
    let steps = spec
        .steps
        .iter()
        .zip(medians)
        .enumerate()
        .map(|(i, (step, median))| FunnelStep {
            step: step.label(),
            visitors: reached[i],
            conversion_rate: if first == 0 { 0.0 } else { reached[i] as f64 / first as f64 },
            drop_off: if i == 0 { 0 } else { reached[i - 1] - reached[i] },
            median_ms_from_previous: if i == 0 { None } else { median },
        })
        .collect();
    FunnelReport { order: spec.order, window_ms: spec.window_ms, steps }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Period {
    Day,
    /// ISO weeks, Monday to Sunday, UTC.
    Week,
}

impl Period {
    pub fn ms(self) -> i64 {
        match self {
            Period::Day => DAY_MS,
            Period::Week => WEEK_MS,
        }
    }

    /// The start of the period holding `ts_ms` (Mondays for weeks: the epoch was a Thursday).
    pub fn start_of(self, ts_ms: i64) -> i64 {
        match self {
            Period::Day => ts_ms.div_euclid(DAY_MS) * DAY_MS,
            Period::Week => (ts_ms - 4 * DAY_MS).div_euclid(WEEK_MS) * WEEK_MS + 4 * DAY_MS,
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum CohortStart {
    /// The period of the visitor's first visit (its profile's first event).
    FirstVisit,
    /// The period of the visitor's first such event in the range.
    Event(EventMatch),
}

#[derive(Clone, Debug, PartialEq)]
pub struct RetentionSpec {
    pub period: Period,
    /// Start of the first cohort's period (aligned with [`Period::start_of`]).
    pub start_ms: i64,
    pub cohorts: u32,
    pub start: CohortStart,
    pub return_on: EventMatch,
}

impl RetentionSpec {
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !(1..=MAX_COHORTS).contains(&self.cohorts) {
            return Err(format!("a retention report has 1 to {MAX_COHORTS} cohorts, not {}", self.cohorts));
        }
        if self.period.start_of(self.start_ms) != self.start_ms {
            return Err("the first cohort must start at the start of its period".into());
        }
        Ok(())
    }

    /// End of the last cohort's period.
    pub fn end_ms(&self) -> i64 {
        self.start_ms + i64::from(self.cohorts) * self.period.ms()
    }

    /// The matchers of [`EventStore::matched_events`](crate::EventStore::matched_events):
    /// bit 0 the cohort start (`any` for first visits), bit 1 the return.
    pub fn matchers(&self) -> [EventMatch; 2] {
        let start = match &self.start {
            CohortStart::FirstVisit => EventMatch::Any,
            CohortStart::Event(m) => m.clone(),
        };
        [start, self.return_on.clone()]
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Cohort {
    pub start_ms: i64,
    pub size: u64,
    /// Visitors of the cohort returning n periods later (`[0]` is the size); as many periods
    /// as fit before the report's end.
    pub returning: Vec<u64>,
    /// `returning[n] / size`.
    pub rates: Vec<f64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct RetentionReport {
    pub period: Period,
    pub cohorts: Vec<Cohort>,
}

/// The retention grid over rows with [`RetentionSpec::matchers`] covering the spec's range;
/// `first_seen` holds the profiles' first event times (used for first-visit cohorts).
pub fn retention(spec: &RetentionSpec, rows: &[MatchedEvent], first_seen: &HashMap<String, i64>) -> RetentionReport {
    let (period, n) = (spec.period.ms(), spec.cohorts as usize);
    let index = |ts: i64| usize::try_from((ts - spec.start_ms).div_euclid(period)).ok().filter(|&i| i < n);
    let mut returning: Vec<Vec<u64>> = (0..n).map(|c| vec![0; n - c]).collect();
    for visitor in rows.chunk_by(|a, b| a.visitor_id == b.visitor_id) {
        let cohort = match &spec.start {
            CohortStart::FirstVisit => first_seen.get(&visitor[0].visitor_id).and_then(|&ts| index(ts)),
            CohortStart::Event(_) => visitor.iter().find(|r| r.mask & 1 != 0).and_then(|r| index(r.ts_ms)),
        };
        let Some(cohort) = cohort else { continue };
        let mut periods: Vec<usize> = visitor.iter().filter(|r| r.mask & 2 != 0).filter_map(|r| index(r.ts_ms)).filter(|&p| p > cohort).collect();
        periods.dedup();
        returning[cohort][0] += 1;
        for p in periods {
            returning[cohort][p - cohort] += 1;
        }
    }
    retention_from_grid(spec, returning)
}

/// The report of `returning[c][n]`: visitors of cohort `c` (of `spec.cohorts`) returning `n`
/// periods later, `[c][0]` the cohort's size; each row as long as fits before the report's end.
pub fn retention_from_grid(spec: &RetentionSpec, returning: Vec<Vec<u64>>) -> RetentionReport {
    let period = spec.period.ms();
    let cohorts = returning
        .into_iter()
        .enumerate()
        .map(|(c, counts)| {
            let size = counts[0];
            Cohort {
                start_ms: spec.start_ms + c as i64 * period,
                size,
                rates: counts.iter().map(|&r| if size == 0 { 0.0 } else { r as f64 / size as f64 }).collect(),
                returning: counts,
            }
        })
        .collect();
    RetentionReport { period: spec.period, cohorts }
}

/// The funnel of a site's human visitors whose attempts start in `[from_ms, to_ms)`: the
/// store's own computation when it has one, else [`funnel_from_rows`].
pub async fn funnel_report<S: Store + ?Sized>(store: &S, site_id: &str, from_ms: i64, to_ms: i64, spec: &FunnelSpec) -> Result<FunnelReport> {
    spec.validate().map_err(invalid)?;
    match store.funnel_pushdown(site_id, from_ms, to_ms, spec).await? {
        Some(report) => Ok(report),
        None => funnel_from_rows(store, site_id, from_ms, to_ms, spec).await,
    }
}

/// The funnel folded in Rust over the store's matched rows: the definition every store's
/// [`EventStore::funnel_pushdown`](crate::EventStore::funnel_pushdown) must agree with.
pub async fn funnel_from_rows<S: Store + ?Sized>(store: &S, site_id: &str, from_ms: i64, to_ms: i64, spec: &FunnelSpec) -> Result<FunnelReport> {
    spec.validate().map_err(invalid)?;
    let rows = store.matched_events(site_id, from_ms, to_ms.saturating_add(spec.window_ms), &spec.steps, spec.order == FunnelOrder::Strict).await?;
    Ok(funnel(spec, &rows, from_ms, to_ms))
}

/// The retention grid of a site's human visitors: the store's own computation when it has
/// one, else [`retention_from_rows`].
pub async fn retention_report<S: Store + ?Sized>(store: &S, site_id: &str, spec: &RetentionSpec) -> Result<RetentionReport> {
    spec.validate().map_err(invalid)?;
    match store.retention_pushdown(site_id, spec).await? {
        Some(report) => Ok(report),
        None => retention_from_rows(store, site_id, spec).await,
    }
}

/// The retention grid folded in Rust over the store's matched rows and profiles: the
/// definition every store's [`EventStore::retention_pushdown`](crate::EventStore::retention_pushdown)
/// must agree with.
pub async fn retention_from_rows<S: Store + ?Sized>(store: &S, site_id: &str, spec: &RetentionSpec) -> Result<RetentionReport> {
    spec.validate().map_err(invalid)?;
    let rows = store.matched_events(site_id, spec.start_ms, spec.end_ms(), &spec.matchers(), false).await?;
    let mut first_seen = HashMap::new();
    if spec.start == CohortStart::FirstVisit {
        let mut keys: Vec<(String, String)> = rows.iter().map(|r| (site_id.to_owned(), r.visitor_id.clone())).collect();
        keys.dedup();
        for chunk in keys.chunks(10_000) {
            first_seen.extend(store.visitors(chunk).await?.into_iter().map(|p| (p.visitor_id, p.first_seen_ms)));
        }
    }
    Ok(retention(spec, &rows, &first_seen))
}

fn invalid(message: String) -> StoreError {
    StoreError::Backend { message, retryable: false }
}

#[cfg(test)]
mod tests;
