//! Two exploration reports with one meaning on every backend: the custom events of a window
//! with their properties ([`EventStore::custom_events`](crate::EventStore::custom_events)), and
//! the pages around a page ([`EventStore::page_paths`](crate::EventStore::page_paths)). The
//! builders here are the reference: the redb store feeds them rows, the columnar store feeds
//! them rows DataFusion selected (and pushes the paths' window functions down), ClickHouse
//! answers in SQL and only its results pass through [`CustomEventsBuilder::add_aggregate`].
//!
//! Definitions (also in ARCHITECTURE "Growth reports"):
//! * Custom events: per name, events and distinct visitors; per property key, the events that
//!   carry it, its value types (`string`, `integer`, `float`, `boolean`), its distinct values and
//!   its most frequent values. Values are compared as goals compare them: strings and booleans
//!   exactly, numbers by value (5 and 5.0 are one value, shown as the integer 5).
//! * Paths: for each human pageview of a page matching the glob, the pageview just before it in
//!   its session (or `(entrance)`) and just after it (or `(exit)`), among the window's
//!   pageviews, ordered by time then event id; counted per view, top N each.
//! * Ties in every top list are broken by key (values: booleans, then numbers, then strings).

use std::cmp::Ordering;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use crm_schemas::{EventBody, Scalar, StoredEvent};
use serde::Serialize;

use crate::growth::glob_matches;
use crate::Count;

/// Most custom event names one report lists (the most frequent).
pub const MAX_EVENT_NAMES: usize = 200;
/// Most property keys listed per event name (the most frequent).
pub const MAX_PROPERTY_KEYS: usize = 50;

pub const ENTRANCE: &str = "(entrance)";
pub const EXIT: &str = "(exit)";

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct CustomEventStats {
    pub name: String,
    pub events: u64,
    pub visitors: u64,
    pub properties: Vec<PropertyStats>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct PropertyStats {
    pub key: String,
    /// Events of this name that carry the key.
    pub events: u64,
    /// The value types seen, sorted.
    pub types: Vec<&'static str>,
    /// Distinct values (numbers by value).
    pub distinct: u64,
    /// Most frequent values, most first.
    pub top: Vec<ValueCount>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ValueCount {
    pub value: Scalar,
    pub count: u64,
}

/// A property value as the reports compare it: numbers by value (`-0` is `0`).
#[derive(Clone, Debug, PartialEq)]
pub enum ValueKey {
    Bool(bool),
    Number(f64),
    Text(String),
}

impl Eq for ValueKey {}

impl std::hash::Hash for ValueKey {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            ValueKey::Bool(b) => (0u8, *b).hash(state),
            ValueKey::Number(n) => (1u8, n.to_bits()).hash(state),
            ValueKey::Text(s) => (2u8, s).hash(state),
        }
    }
}

impl Ord for ValueKey {
    fn cmp(&self, other: &ValueKey) -> Ordering {
        match (self, other) {
            (ValueKey::Bool(a), ValueKey::Bool(b)) => a.cmp(b),
            (ValueKey::Number(a), ValueKey::Number(b)) => a.total_cmp(b),
            (ValueKey::Text(a), ValueKey::Text(b)) => a.cmp(b),
            _ => self.rank().cmp(&other.rank()),
        }
    }
}

impl PartialOrd for ValueKey {
    fn partial_cmp(&self, other: &ValueKey) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl ValueKey {
    pub fn of(value: &Scalar) -> ValueKey {
        match value {
            Scalar::Bool(b) => ValueKey::Bool(*b),
            Scalar::Int(i) => ValueKey::number(*i as f64),
            Scalar::Float(f) => ValueKey::number(*f),
            Scalar::Str(s) => ValueKey::Text(s.clone()),
        }
    }

    /// A number, `-0` folded into `0`.
    pub fn number(value: f64) -> ValueKey {
        ValueKey::Number(value + 0.0)
    }

    fn rank(&self) -> u8 {
        match self {
            ValueKey::Bool(_) => 0,
            ValueKey::Number(_) => 1,
            ValueKey::Text(_) => 2,
        }
    }

    /// The value shown: an integral number below 2^53 as an integer.
    pub fn scalar(&self) -> Scalar {
        match self {
            ValueKey::Bool(b) => Scalar::Bool(*b),
            ValueKey::Number(n) if n.fract() == 0.0 && n.abs() < 9_007_199_254_740_992.0 => Scalar::Int(*n as i64),
            ValueKey::Number(n) => Scalar::Float(*n),
            ValueKey::Text(s) => Scalar::Str(s.clone()),
        }
    }
}

/// The type name a property value is listed under.
pub fn type_name(value: &Scalar) -> &'static str {
    match value {
        Scalar::Str(_) => "string",
        Scalar::Int(_) => "integer",
        Scalar::Float(_) => "float",
        Scalar::Bool(_) => "boolean",
    }
}

#[derive(Default)]
struct PropertyAcc {
    events: u64,
    types: BTreeSet<&'static str>,
    /// Every value's count (rows), or the backend's distinct count and top values (aggregates).
    values: HashMap<ValueKey, u64>,
    distinct: Option<u64>,
}

#[derive(Default)]
struct NameAcc {
    events: u64,
    visitors: HashSet<String>,
    visitor_count: Option<u64>,
    properties: BTreeMap<String, PropertyAcc>,
}

/// Builds [`CustomEventStats`] from human custom events, or from a backend's aggregates.
#[derive(Default)]
pub struct CustomEventsBuilder {
    names: BTreeMap<String, NameAcc>,
}

impl CustomEventsBuilder {
    /// One human event; events other than custom ones are ignored.
    pub fn add(&mut self, event: &StoredEvent) {
        let EventBody::Custom { name } = &event.body else { return };
        let acc = self.names.entry(name.clone()).or_default();
        acc.events += 1;
        if !acc.visitors.contains(&event.visitor_id) {
            acc.visitors.insert(event.visitor_id.clone());
        }
        for (key, value) in &event.props {
            let property = acc.properties.entry(key.clone()).or_default();
            property.events += 1;
            property.types.insert(type_name(value));
            *property.values.entry(ValueKey::of(value)).or_default() += 1;
        }
    }

    /// A name's totals as a backend counted them.
    pub fn add_name(&mut self, name: &str, events: u64, visitors: u64) {
        let acc = self.names.entry(name.to_owned()).or_default();
        acc.events = events;
        acc.visitor_count = Some(visitors);
    }

    /// A property's totals as a backend counted them (`types` as [`type_name`] spells them).
    pub fn add_property(&mut self, name: &str, key: &str, events: u64, types: impl IntoIterator<Item = &'static str>, distinct: u64) {
        let property = self.names.entry(name.to_owned()).or_default().properties.entry(key.to_owned()).or_default();
        property.events = events;
        property.types.extend(types);
        property.distinct = Some(distinct);
    }

    /// One of a property's top values as a backend counted it.
    pub fn add_value(&mut self, name: &str, key: &str, value: ValueKey, count: u64) {
        let property = self.names.entry(name.to_owned()).or_default().properties.entry(key.to_owned()).or_default();
        property.values.insert(value, count);
    }

    /// The report: names by events (most first, then name), at most [`MAX_EVENT_NAMES`]; per
    /// name its keys by events (then key), at most [`MAX_PROPERTY_KEYS`], each with `top` values.
    pub fn finish(self, top: usize) -> Vec<CustomEventStats> {
        let mut out: Vec<CustomEventStats> = self
            .names
            .into_iter()
            .map(|(name, acc)| {
                let mut properties: Vec<PropertyStats> = acc
                    .properties
                    .into_iter()
                    .map(|(key, p)| {
                        let distinct = p.distinct.unwrap_or(p.values.len() as u64);
                        let mut values: Vec<(ValueKey, u64)> = p.values.into_iter().collect();
                        values.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
                        values.truncate(top);
                        let top = values.into_iter().map(|(v, count)| ValueCount { value: v.scalar(), count }).collect();
                        PropertyStats { key, events: p.events, types: p.types.into_iter().collect(), distinct, top }
                    })
                    .collect();
                properties.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.key.cmp(&b.key)));
                properties.truncate(MAX_PROPERTY_KEYS);
                let visitors = acc.visitor_count.unwrap_or(acc.visitors.len() as u64);
                CustomEventStats { name, events: acc.events, visitors, properties }
            })
            .collect();
        out.sort_by(|a, b| b.events.cmp(&a.events).then_with(|| a.name.cmp(&b.name)));
        out.truncate(MAX_EVENT_NAMES);
        out
    }
}

/// The pages around the views of a page.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct PagePaths {
    /// Views of pages matching the glob.
    pub views: u64,
    /// The page viewed just before, or `(entrance)`, most first.
    pub previous: Vec<Count>,
    /// The page viewed just after, or `(exit)`, most first.
    pub next: Vec<Count>,
}

/// Counts neighbours of the views of a page.
pub struct PathsBuilder {
    glob: String,
    views: u64,
    previous: HashMap<String, u64>,
    next: HashMap<String, u64>,
}

impl PathsBuilder {
    pub fn new(glob: &str) -> PathsBuilder {
        PathsBuilder { glob: glob.to_owned(), views: 0, previous: HashMap::new(), next: HashMap::new() }
    }

    /// One session's pageview paths, in order.
    pub fn add_session(&mut self, paths: &[&str]) {
        for (i, path) in paths.iter().enumerate() {
            if glob_matches(&self.glob, path) {
                let before = if i == 0 { ENTRANCE } else { paths[i - 1] };
                let after = paths.get(i + 1).copied().unwrap_or(EXIT);
                self.add_pair(Some(before), Some(after), 1);
            }
        }
    }

    /// `count` views with this previous and next page (`None` = entrance or exit), as a backend
    /// grouped them.
    pub fn add_pair(&mut self, previous: Option<&str>, next: Option<&str>, count: u64) {
        self.views += count;
        *self.previous.entry(previous.unwrap_or(ENTRANCE).to_owned()).or_default() += count;
        *self.next.entry(next.unwrap_or(EXIT).to_owned()).or_default() += count;
    }

    pub fn finish(self, top: usize) -> PagePaths {
        let list = |map: HashMap<String, u64>| {
            let mut counts: Vec<Count> = map.into_iter().map(|(key, count)| Count { key, count }).collect();
            counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
            counts.truncate(top);
            counts
        };
        PagePaths { views: self.views, previous: list(self.previous), next: list(self.next) }
    }
}

/// Groups human pageviews by session in time order (then event id) and feeds them to a
/// [`PathsBuilder`]: what a backend without window functions does.
pub fn paths_of(events: &[StoredEvent], glob: &str, top: usize) -> PagePaths {
    let mut sessions: HashMap<&str, Vec<&StoredEvent>> = HashMap::new();
    for event in events.iter().filter(|e| matches!(e.body, EventBody::Pageview)) {
        sessions.entry(event.session_id.as_str()).or_default().push(event);
    }
    let mut builder = PathsBuilder::new(glob);
    for views in sessions.values_mut() {
        views.sort_by_key(|e| (e.ts_ms, e.event_id));
        let paths: Vec<&str> = views.iter().map(|e| e.path.as_deref().unwrap_or("/")).collect();
        builder.add_session(&paths);
    }
    builder.finish(top)
}

#[cfg(test)]
mod tests;
