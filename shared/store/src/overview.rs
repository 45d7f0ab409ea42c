//! Backend-neutral aggregation of the analytics overview from sessions and pageviews, so every
//! store computes bounce, duration and top-N lists with the same definitions; and of the lead-form
//! funnel (views → starts → submissions) from form events.
//!
//! Bots: a row counts only if neither it nor its visitor's profile is a bot. The profile's flag
//! is the sticky OR of its events' flags ([`crate::ProfileStore::bot_visitors`]), so it is the
//! one decision, independent of how the traffic was timed or batched; the row's own flag is
//! implied by it and only spares a lookup.

use std::collections::{HashMap, HashSet};

use crm_schemas::{EventBody, Session, StoredEvent};
use serde::Serialize;

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Count {
    pub key: String,
    pub count: u64,
}

#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Overview {
    pub visitors: u64,
    pub sessions: u64,
    pub pageviews: u64,
    /// Bounced sessions / sessions, 0..=1.
    pub bounce_rate: f64,
    pub avg_session_duration_ms: u64,
    pub top_pages: Vec<Count>,
    pub top_referrers: Vec<Count>,
    pub countries: Vec<Count>,
    pub devices: Vec<Count>,
    pub browsers: Vec<Count>,
    pub utm_sources: Vec<Count>,
}

/// Accumulates sessions (started in the window) and pageviews (in the window); bots are skipped.
#[derive(Default)]
pub struct OverviewBuilder {
    /// Visitors whose profile is a bot: their rows are skipped whatever their own flag says.
    bots: HashSet<String>,
    visitors: HashSet<String>,
    sessions: u64,
    bounces: u64,
    duration_total: u64,
    pageviews: u64,
    pages: HashMap<String, u64>,
    referrers: HashMap<String, u64>,
    countries: HashMap<String, u64>,
    devices: HashMap<String, u64>,
    browsers: HashMap<String, u64>,
    utm_sources: HashMap<String, u64>,
}

fn bump(map: &mut HashMap<String, u64>, key: &str) {
    if let Some(count) = map.get_mut(key) {
        *count += 1;
    } else {
        map.insert(key.to_owned(), 1);
    }
}

fn top(map: HashMap<String, u64>, n: usize) -> Vec<Count> {
    let mut counts: Vec<Count> = map.into_iter().map(|(key, count)| Count { key, count }).collect();
    counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
    counts.truncate(n);
    counts
}

impl OverviewBuilder {
    /// A builder that skips the rows of `bots` (the site's bot visitors).
    pub fn excluding(bots: HashSet<String>) -> OverviewBuilder {
        OverviewBuilder { bots, ..OverviewBuilder::default() }
    }

    pub fn add_session(&mut self, session: &Session) {
        if session.is_bot || self.bots.contains(&session.visitor_id) {
            return;
        }
        self.sessions += 1;
        if session.is_bounce() {
            self.bounces += 1;
        }
        self.duration_total += session.duration_ms();
        if !self.visitors.contains(&session.visitor_id) {
            self.visitors.insert(session.visitor_id.clone());
        }
        bump(&mut self.referrers, session.referrer_host.as_deref().unwrap_or("(direct)"));
        bump(&mut self.countries, session.country.as_deref().unwrap_or("(unknown)"));
        bump(&mut self.devices, if session.device_category.is_empty() { "(unknown)" } else { &session.device_category });
        bump(&mut self.browsers, if session.browser.is_empty() { "(unknown)" } else { &session.browser });
        if let Some(source) = &session.utm.source {
            bump(&mut self.utm_sources, source);
        }
    }

    pub fn add_pageview(&mut self, event: &StoredEvent) {
        if event.is_bot || self.bots.contains(&event.visitor_id) {
            return;
        }
        self.pageviews += 1;
        bump(&mut self.pages, event.path.as_deref().unwrap_or("/"));
        if !self.visitors.contains(&event.visitor_id) {
            self.visitors.insert(event.visitor_id.clone());
        }
    }

    pub fn finish(self, top_n: usize) -> Overview {
        Overview {
            visitors: self.visitors.len() as u64,
            sessions: self.sessions,
            pageviews: self.pageviews,
            bounce_rate: if self.sessions == 0 { 0.0 } else { self.bounces as f64 / self.sessions as f64 },
            avg_session_duration_ms: self.duration_total.checked_div(self.sessions).unwrap_or(0),
            top_pages: top(self.pages, top_n),
            top_referrers: top(self.referrers, top_n),
            countries: top(self.countries, top_n),
            devices: top(self.devices, top_n),
            browsers: top(self.browsers, top_n),
            utm_sources: top(self.utm_sources, top_n),
        }
    }
}

/// One lead form's funnel over a time window (bots excluded).
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct FormStats {
    pub form_id: String,
    pub views: u64,
    pub starts: u64,
    pub submissions: u64,
    /// Submissions / views (0 without views); can exceed 1 when submits come from elsewhere.
    pub conversion_rate: f64,
}

/// Counts form events per form; `finish` orders by submissions, then views, then id.
#[derive(Default)]
pub struct FormStatsBuilder {
    bots: HashSet<String>,
    forms: HashMap<String, FormStats>,
}

impl FormStatsBuilder {
    /// A builder that skips the events of `bots` (the site's bot visitors).
    pub fn excluding(bots: HashSet<String>) -> FormStatsBuilder {
        FormStatsBuilder { bots, ..FormStatsBuilder::default() }
    }

    /// Counts the event if it is a form event of a human visitor.
    pub fn add(&mut self, event: &StoredEvent) {
        if event.is_bot || self.bots.contains(&event.visitor_id) {
            return;
        }
        let (form_id, slot): (&str, fn(&mut FormStats) -> &mut u64) = match &event.body {
            EventBody::FormView { form_id } => (form_id, |s| &mut s.views),
            EventBody::FormStart { form_id } => (form_id, |s| &mut s.starts),
            EventBody::FormSubmit { form_id, .. } => (form_id, |s| &mut s.submissions),
            _ => return,
        };
        self.add_count(form_id, slot, 1);
    }

    /// Adds `n` to one counter of a form (stores that aggregate in SQL feed counts directly).
    /// Adds `n` events of kind `form_view`, `form_start` or `form_submit` (as stored) to a form.
    pub fn add_kind_count(&mut self, form_id: &str, kind: &str, n: u64) {
        let slot: fn(&mut FormStats) -> &mut u64 = match kind {
            "form_view" => |s| &mut s.views,
            "form_start" => |s| &mut s.starts,
            _ => |s| &mut s.submissions,
        };
        self.add_count(form_id, slot, n);
    }

    pub fn add_count(&mut self, form_id: &str, slot: fn(&mut FormStats) -> &mut u64, n: u64) {
        let stats = self.forms.entry(form_id.to_owned()).or_insert_with(|| FormStats { form_id: form_id.to_owned(), ..FormStats::default() });
        *slot(stats) += n;
    }

    pub fn finish(self) -> Vec<FormStats> {
        let mut all: Vec<FormStats> = self
            .forms
            .into_values()
            .map(|mut s| {
                s.conversion_rate = if s.views == 0 { 0.0 } else { s.submissions as f64 / s.views as f64 };
                s
            })
            .collect();
        all.sort_by(|a, b| b.submissions.cmp(&a.submissions).then(b.views.cmp(&a.views)).then_with(|| a.form_id.cmp(&b.form_id)));
        all
    }
}

/// One bucket of [`EventStore::timeseries`](crate::EventStore::timeseries): the overview's
/// headline figures for the sessions started and pageviews made in the bucket.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct SeriesPoint {
    /// Start of the bucket (a multiple of the step since the epoch); the first bucket may start
    /// before the window, and its figures then cover only the window's part of it.
    pub start_ms: i64,
    pub visitors: u64,
    pub sessions: u64,
    pub pageviews: u64,
    /// Bounced sessions / sessions, 0..=1.
    pub bounce_rate: f64,
    pub avg_session_duration_ms: u64,
}

impl SeriesPoint {
    /// The point from raw totals, with the overview's definitions of the two ratios.
    pub fn from_totals(start_ms: i64, visitors: u64, sessions: u64, bounces: u64, duration_total: u64, pageviews: u64) -> SeriesPoint {
        SeriesPoint {
            start_ms,
            visitors,
            sessions,
            pageviews,
            bounce_rate: if sessions == 0 { 0.0 } else { bounces as f64 / sessions as f64 },
            avg_session_duration_ms: duration_total.checked_div(sessions).unwrap_or(0),
        }
    }
}

/// Most buckets one series may have (callers page longer ranges).
pub const MAX_SERIES_POINTS: usize = 10_000;

/// The bucket starts of a series over `[from_ms, to_ms)` with `step_ms` buckets aligned to the
/// epoch. Errors on a step that is not positive or more than [`MAX_SERIES_POINTS`] buckets.
pub fn series_buckets(from_ms: i64, to_ms: i64, step_ms: i64) -> crate::Result<Vec<i64>> {
    let invalid = |message: String| crate::StoreError::Backend { message, retryable: false };
    if step_ms <= 0 {
        return Err(invalid(format!("timeseries step must be positive, got {step_ms} ms")));
    }
    let mut starts = Vec::new();
    let mut start = from_ms.div_euclid(step_ms) * step_ms;
    while start < to_ms {
        if starts.len() == MAX_SERIES_POINTS {
            return Err(invalid(format!("a timeseries has at most {MAX_SERIES_POINTS} buckets")));
        }
        starts.push(start);
        match start.checked_add(step_ms) {
            Some(next) => start = next,
            None => break,
        }
    }
    Ok(starts)
}

