//! The embedded store: one redb database file (`<data-dir>/store.redb`), ACID, pure Rust.
//!
//! Layout (all keys are tuples, so per-site scans are ordered range reads):
//! * `event_index` (site, ts, event_id) → where the event's JSON lives in the append-only body
//!   segments (`embedded/bodies.rs`), plus `event_ids` for dedupe and `visitor_events`
//!   (site, visitor, ts, event_id) as the timeline index;
//! * `visitors` (site, visitor) → profile JSON, `visitor_rank` (site, sort|bot, inverted key,
//!   visitor) as top-N indexes kept in step with every profile write, `visitor_sites` for lookup
//!   by id alone;
//! * `sessions` (site, start, session) → session JSON; `dead_letters` (site, received, id);
//! * `sites`, `users`, `meta` keyed by name; `forms` keyed by `site/form`; refresh tokens and
//!   the auth audit log in `embedded/auth.rs`; the write transaction in `embedded/write.rs`.
//!
//! One write transaction per [`WriteBatch`] makes dedupe, events, profiles and sessions change
//! together, which is what makes replays after a crash exact.

use std::collections::HashSet;
use std::ops::Bound;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use crm_schemas::{
    AuthAuditEntry, RefreshToken, AccountHealth, Alert, AlertRule, BusinessData, DeadLetter, ImportBatch, Task, FormDefinition, IdentityConflict, IdentityOverride, InsightRequest, Lead, LeadInsight, LeadAudit, LeadCrm, ScorePoint, Session, Site, StoredEvent, User,
    VisitorProfile, Article, ArticleEmbedding, ArticleVersion, Conversation, ConversationMessage, KbCounter,
};
use redb::{Database, ReadableTable, TableDefinition};
use serde::de::DeserializeOwned;
use uuid::Uuid;

use crate::explore::{CustomEventStats, PagePaths};
use crate::filters::Filters;
use crate::SeriesPoint;
use crate::growth::{self, EventMatch, MatchedEvent};
use crate::{
    parse_event_cursor, group_orgs, AccountStore, ConfigStore, EventStore, KnowledgeStore, LeadStore, PipelineStore, ProfileStore, WorkflowStore, BotFilter, FormStats, LeadQuery, LeadRecord, OrgVisitors, FormStatsBuilder, Overview, OverviewBuilder, Page, Result, StoreError, VisitorQuery, VisitorSort, WriteBatch,
    WriteOutcome,
};

mod alerts;
mod auth;
mod bodies;
mod business;
mod export;
mod insights;
mod kb;
mod leads;
mod timeline;
mod migrate;
mod records;
mod privacy;
mod profiles;
mod scan;
mod write;

pub use export::{PipelineChunk, PipelineCounts};

pub(super) type EventKey<'a> = (&'a str, i64, u128);
const EVENTS: TableDefinition<EventKey, bodies::BodyRef> = TableDefinition::new("event_index");
/// Before event bodies moved to segment files: (site, ts, event id) → event JSON. Migrated on open.
const LEGACY_EVENTS: TableDefinition<EventKey, &[u8]> = TableDefinition::new("events");
const EVENT_IDS: TableDefinition<u128, ()> = TableDefinition::new("event_ids");
const VISITOR_EVENTS: TableDefinition<(&str, &str, i64, u128), ()> = TableDefinition::new("visitor_events");
/// (site, visitor) → the profile row: rank keys, then JSON (`embedded/profiles.rs`).
const VISITORS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("visitor_profiles");
/// Before the rank keys moved into the profile row: (site, visitor) → profile JSON. Migrated on open.
const LEGACY_VISITORS: TableDefinition<(&str, &str), &[u8]> = TableDefinition::new("visitors");
const VISITOR_RANK: TableDefinition<(&str, u8, u64, &str), ()> = TableDefinition::new("visitor_rank");
const VISITOR_SITES: TableDefinition<(&str, &str), ()> = TableDefinition::new("visitor_sites");
/// Before the rank keys moved into the profile row, they had a table of their own. Dropped on open.
const LEGACY_VISITOR_RANK_KEYS: &str = "visitor_rank_keys";
const SESSIONS: TableDefinition<(&str, i64, &str), &[u8]> = TableDefinition::new("sessions");
const DEAD_LETTERS: TableDefinition<EventKey, &[u8]> = TableDefinition::new("dead_letters");
/// The highest event-log position (`"{source}/{topic}/{partition}"` → offset) of any batch whose
/// lead, alert and insight records were written: a store that makes events durable later than
/// these records uses it to recognise a replayed batch ([`EmbeddedStore::record_positions`]).
const RECORD_POSITIONS: TableDefinition<&str, u64> = TableDefinition::new("record_log_positions");
const SITES: TableDefinition<&str, &[u8]> = TableDefinition::new("sites");
const USERS: TableDefinition<&str, &[u8]> = TableDefinition::new("users");
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");
/// Lead forms keyed `"{site_id}/{form_id}"` (ids never contain `/`).
const FORMS: TableDefinition<&str, &[u8]> = TableDefinition::new("forms");

const BOT_FLAG: u8 = 0x80;
/// redb's page cache; its own default (1 GiB) dominates the process's memory.
pub const DEFAULT_CACHE_BYTES: usize = 256 * 1024 * 1024;

fn db_err(err: impl Into<redb::Error>) -> StoreError {
    match err.into() {
        redb::Error::DatabaseAlreadyOpen => StoreError::InUse("store.redb".into()),
        redb::Error::Io(io) => StoreError::Io(io.to_string()),
        other => StoreError::Backend { message: other.to_string(), retryable: false },
    }
}

fn encode<T: serde::Serialize>(value: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn sort_code(sort: VisitorSort) -> u8 {
    match sort {
        VisitorSort::Intent => 0,
        VisitorSort::Engagement => 1,
        VisitorSort::LastSeen => 2,
    }
}

fn rank_kind(sort: VisitorSort, is_bot: bool) -> u8 {
    sort_code(sort) | if is_bot { BOT_FLAG } else { 0 }
}

const SORTS: [VisitorSort; 3] = [VisitorSort::Intent, VisitorSort::Engagement, VisitorSort::LastSeen];

/// The site's bot visitors last seen at or after `since_ms` ([`ProfileStore::bot_visitors`]),
/// from the rank table's bot entries of the last-seen sort, whose values ascend as recency
/// falls: the scan stops at the first one seen before `since_ms`.
fn bot_ids(txn: &redb::ReadTransaction, site: &str, since_ms: i64) -> Result<Vec<String>> {
    let ranks = txn.open_table(VISITOR_RANK).map_err(db_err)?;
    let kind = rank_kind(VisitorSort::LastSeen, true);
    let oldest = u64::MAX - ((since_ms.max(0) as u64) & ((1 << 48) - 1));
    let mut out = Vec::new();
    for row in ranks.range::<(&str, u8, u64, &str)>((site, kind, 0u64, "")..(site, kind + 1, 0u64, "")).map_err(db_err)? {
        let (key, _) = row.map_err(db_err)?;
        let (_, _, value, visitor) = key.value();
        if value > oldest {
            break;
        }
        out.push(visitor.to_owned());
    }
    out.sort_unstable();
    Ok(out)
}

fn parse_cursor(cursor: &str) -> Result<(u64, &str)> {
    let (number, rest) = cursor.split_once(':').ok_or(StoreError::InvalidCursor)?;
    Ok((number.parse().map_err(|_| StoreError::InvalidCursor)?, rest))
}

fn parse_time_cursor(cursor: &str) -> Result<(i64, u128)> {
    let (ts, id) = cursor.split_once(':').ok_or(StoreError::InvalidCursor)?;
    Ok((ts.parse().map_err(|_| StoreError::InvalidCursor)?, id.parse().map_err(|_| StoreError::InvalidCursor)?))
}

/// The rows a filtered overview of `[from_ms, to_ms)` counts ([`crate::filters`]): the site's
/// bot visitors (left out by the builder), the matching sessions and the matching pageviews.
fn filtered_rows(db: &Database, dir: &Path, site: &str, from_ms: i64, to_ms: i64, filters: &Filters) -> Result<(HashSet<String>, Vec<Session>, Vec<StoredEvent>)> {
    let txn = db.begin_read().map_err(db_err)?;
    let sessions = txn.open_table(SESSIONS).map_err(db_err)?;
    let events = txn.open_table(EVENTS).map_err(db_err)?;
    let bots: HashSet<String> = bot_ids(&txn, site, from_ms)?.into_iter().collect();
    let mut pageviews = Vec::new();
    let mut reader = bodies::Reader::sequential(dir);
    for row in events.range::<EventKey>((site, from_ms, 0u128)..(site, to_ms, 0u128)).map_err(db_err)? {
        let (_, value) = row.map_err(db_err)?;
        let at = value.value();
        // Only pageviews count here; the index knows which events are, unread.
        if at.3 == bodies::KIND_PAGEVIEW {
            let event: StoredEvent = decode(reader.read(at)?)?;
            if filters.page(event.path.as_deref()) {
                pageviews.push(event);
            }
        }
    }
    // Sessions holding a matching pageview (page conditions), and sessions matching the session
    // conditions (whose pageviews alone count then).
    let with_page: HashSet<String> = if filters.has_page_conditions() { pageviews.iter().map(|e| e.session_id.clone()).collect() } else { HashSet::new() };
    let mut matching: HashSet<String> = HashSet::new();
    let mut kept = Vec::new();
    for row in sessions.range::<(&str, i64, &str)>((site, from_ms, "")..(site, to_ms, "")).map_err(db_err)? {
        let session: Session = decode(row.map_err(db_err)?.1.value())?;
        if !filters.session(&session) {
            continue;
        }
        if filters.has_session_conditions() {
            matching.insert(session.session_id.clone());
        }
        if !filters.has_page_conditions() || with_page.contains(&session.session_id) {
            kept.push(session);
        }
    }
    if filters.has_session_conditions() {
        pageviews.retain(|e| matching.contains(&e.session_id));
    }
    Ok((bots, kept, pageviews))
}

/// The redb-backed [`Store`].
#[derive(Clone)]
pub struct EmbeddedStore {
    db: Arc<Database>,
    bodies_dir: Arc<PathBuf>,
    appender: Arc<Mutex<bodies::Appender>>,
}

impl EmbeddedStore {
    /// Opens or creates `<dir>/store.redb` with the default 256 MiB page cache.
    pub fn open(dir: &Path) -> Result<EmbeddedStore> {
        Self::open_with_cache(dir, DEFAULT_CACHE_BYTES)
    }

    /// Whether any event is stored here (a data directory the columnar store must not take over
    /// without converting it).
    pub fn holds_events(&self) -> Result<bool> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(EVENTS).map_err(db_err)?;
        let first = table.first().map_err(db_err)?;
        Ok(first.is_some())
    }

    /// The highest log position of every batch whose records (leads, score points, alerts,
    /// conflicts, insight requests) this store wrote.
    pub fn record_positions(&self) -> Result<std::collections::BTreeMap<String, u64>> {
        let txn = self.db.begin_read().map_err(db_err)?;
        let table = txn.open_table(RECORD_POSITIONS).map_err(db_err)?;
        let mut positions = std::collections::BTreeMap::new();
        for entry in table.iter().map_err(db_err)? {
            let (key, offset) = entry.map_err(db_err)?;
            positions.insert(key.value().to_owned(), offset.value());
        }
        Ok(positions)
    }

    /// Opens or creates `<dir>/store.redb` (and the event body segments beside it) and makes
    /// sure every table exists.
    pub fn open_with_cache(dir: &Path, cache_bytes: usize) -> Result<EmbeddedStore> {
        Self::open_inner(dir, cache_bytes, bodies::SEGMENT_BYTES)
    }

    fn open_inner(dir: &Path, cache_bytes: usize, segment_bytes: u64) -> Result<EmbeddedStore> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Io(e.to_string()))?;
        let path = dir.join("store.redb");
        let db = Database::builder().set_cache_size(cache_bytes).create(&path).map_err(|e| match db_err(e) {
            StoreError::InUse(_) => StoreError::InUse(path.display().to_string()),
            other => other,
        })?;
        let txn = db.begin_write().map_err(db_err)?;
        {
            txn.open_table(EVENTS).map_err(db_err)?;
            txn.open_table(EVENT_IDS).map_err(db_err)?;
            txn.open_table(VISITOR_EVENTS).map_err(db_err)?;
            txn.open_table(VISITORS).map_err(db_err)?;
            txn.open_table(VISITOR_RANK).map_err(db_err)?;
            txn.open_table(VISITOR_SITES).map_err(db_err)?;
            txn.open_table(SESSIONS).map_err(db_err)?;
            txn.open_table(DEAD_LETTERS).map_err(db_err)?;
            txn.open_table(RECORD_POSITIONS).map_err(db_err)?;
            txn.open_table(SITES).map_err(db_err)?;
            txn.open_table(USERS).map_err(db_err)?;
            txn.open_table(META).map_err(db_err)?;
            txn.open_table(FORMS).map_err(db_err)?;
            leads::create_tables(&txn)?;
            alerts::create_tables(&txn)?;
            auth::create_tables(&txn)?;
            insights::create_tables(&txn)?;
            business::create_tables(&txn)?;
            business::create_health_table(&txn)?;
            business::create_task_table(&txn)?;
            kb::create_tables(&txn)?;
            privacy::create_tables(&txn)?;
        }
        let committed = bodies::committed_end(&txn)?;
        txn.commit().map_err(db_err)?;
        let bodies_dir = dir.join("event-bodies");
        let mut appender = bodies::Appender::open(&bodies_dir, committed, segment_bytes)?;
        migrate::legacy_events(&db, &mut appender)?;
        migrate::legacy_visitors(&db)?;
        let zeroed = privacy::finish_zeroing(&db, &bodies_dir)?;
        if zeroed > 0 {
            tracing::info!(bodies = zeroed, "finished zeroing the event bodies of an interrupted erase");
        }
        Ok(EmbeddedStore { db: Arc::new(db), bodies_dir: Arc::new(bodies_dir), appender: Arc::new(Mutex::new(appender)) })
    }

    async fn blocking<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database) -> Result<T> + Send + 'static,
    {
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || work(&db))
            .await
            .map_err(|e| StoreError::Backend { message: format!("store task failed: {e}"), retryable: true })?
    }

    /// Like [`EmbeddedStore::blocking`], for work that reads event bodies too.
    async fn with_bodies<T, F>(&self, work: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Database, &Path) -> Result<T> + Send + 'static,
    {
        let (db, dir) = (self.db.clone(), self.bodies_dir.clone());
        tokio::task::spawn_blocking(move || work(&db, &dir))
            .await
            .map_err(|e| StoreError::Backend { message: format!("store task failed: {e}"), retryable: true })?
    }
}

fn get_json<T: DeserializeOwned>(db: &Database, table: TableDefinition<&str, &[u8]>, key: &str) -> Result<Option<T>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(table).map_err(db_err)?;
    match table.get(key).map_err(db_err)? {
        Some(bytes) => Ok(Some(decode(bytes.value())?)),
        None => Ok(None),
    }
}

fn put_json<T: serde::Serialize>(db: &Database, table: TableDefinition<&str, &[u8]>, key: &str, value: &T) -> Result<()> {
    let bytes = encode(value)?;
    let txn = db.begin_write().map_err(db_err)?;
    txn.open_table(table).map_err(db_err)?.insert(key, bytes.as_slice()).map_err(db_err)?;
    txn.commit().map_err(db_err)
}

fn all_json<T: DeserializeOwned>(db: &Database, table: TableDefinition<&str, &[u8]>) -> Result<Vec<T>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(table).map_err(db_err)?;
    let mut out = Vec::new();
    for row in table.iter().map_err(db_err)? {
        let (_, value) = row.map_err(db_err)?;
        out.push(decode(value.value())?);
    }
    Ok(out)
}

/// Every value of a (site, key) table for one site, in key order.
fn site_rows<T: DeserializeOwned>(db: &Database, table: TableDefinition<(&str, &str), &[u8]>, site: &str) -> Result<Vec<T>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(table).map_err(db_err)?;
    let mut out = Vec::new();
    for row in table.range::<(&str, &str)>((site, "")..).map_err(db_err)? {
        let (key, value) = row.map_err(db_err)?;
        if key.value().0 != site {
            break;
        }
        out.push(decode(value.value())?);
    }
    Ok(out)
}

/// Reads a newest-first page from a (site, ts, id) keyed table.
pub(super) fn newest_first<T: DeserializeOwned>(
    db: &Database,
    table: TableDefinition<EventKey, &[u8]>,
    site: &str,
    limit: usize,
    cursor: Option<&str>,
    cursor_of: impl Fn(&T) -> String,
) -> Result<Page<T>> {
    let txn = db.begin_read().map_err(db_err)?;
    let table = txn.open_table(table).map_err(db_err)?;
    let upper = match cursor {
        Some(c) => {
            let (ts, id) = parse_time_cursor(c)?;
            Bound::Excluded((site, ts, id))
        }
        None => Bound::Included((site, i64::MAX, u128::MAX)),
    };
    let range = table.range::<EventKey>((Bound::Included((site, i64::MIN, 0u128)), upper)).map_err(db_err)?;
    let mut items = Vec::new();
    let mut more = false;
    for row in range.rev() {
        let (_, value) = row.map_err(db_err)?;
        if items.len() == limit {
            more = true;
            break;
        }
        items.push(decode::<T>(value.value())?);
    }
    let next_cursor = if more { items.last().map(&cursor_of) } else { None };
    Ok(Page { items, next_cursor })
}

#[async_trait]
impl PipelineStore for EmbeddedStore {
    async fn unseen_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        let ids = ids.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(EVENT_IDS).map_err(db_err)?;
            let mut unseen = HashSet::new();
            for id in ids {
                if table.get(id.as_u128()).map_err(db_err)?.is_none() {
                    unseen.insert(id);
                }
            }
            Ok(unseen)
        })
        .await
    }

    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome> {
        if batch.is_empty() {
            return Ok(WriteOutcome::default());
        }
        let appender = self.appender.clone();
        self.blocking(move |db| {
            // A panic mid-batch leaves nothing half-done in the appender: `begin` resets it.
            let mut appender = appender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            write::write(db, &mut appender, &batch)
        })
        .await
    }
}

#[async_trait]
impl EventStore for EmbeddedStore {
    async fn visitor_events(&self, site_id: &str, visitor_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        let (site, visitor, cursor) = (site_id.to_owned(), visitor_id.to_owned(), cursor.map(str::to_owned));
        self.with_bodies(move |db, dir| {
            let txn = db.begin_read().map_err(db_err)?;
            let timeline = txn.open_table(VISITOR_EVENTS).map_err(db_err)?;
            let events = txn.open_table(EVENTS).map_err(db_err)?;
            let mut reader = bodies::Reader::point(dir);
            let (s, v) = (site.as_str(), visitor.as_str());
            let upper = match cursor.as_deref() {
                Some(c) => {
                    let (ts, id) = parse_time_cursor(c)?;
                    Bound::Excluded((s, v, ts, id))
                }
                None => Bound::Included((s, v, i64::MAX, u128::MAX)),
            };
            let range = timeline
                .range::<(&str, &str, i64, u128)>((Bound::Included((s, v, i64::MIN, 0u128)), upper))
                .map_err(db_err)?;
            let mut items = Vec::new();
            let mut more = false;
            for row in range.rev() {
                let (key, _) = row.map_err(db_err)?;
                if items.len() == limit {
                    more = true;
                    break;
                }
                let (_, _, ts, id) = key.value();
                if let Some(at) = events.get((s, ts, id)).map_err(db_err)? {
                    items.push(decode::<StoredEvent>(reader.read(at.value())?)?);
                }
            }
            let next_cursor = if more { items.last().map(|e| format!("{}:{}", e.ts_ms, e.event_id.as_u128())) } else { None };
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn events_of_visitors(&self, site_id: &str, visitor_ids: &[String], limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        let upper = cursor.map(parse_event_cursor).transpose()?;
        let (site, visitors) = (site_id.to_owned(), visitor_ids.to_vec());
        self.with_bodies(move |db, dir| timeline::events_of_visitors(db, dir, &site, &visitors, limit, upper)).await
    }

    async fn scan_events(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        let after = cursor.map(parse_event_cursor).transpose()?;
        let site = site_id.to_owned();
        self.with_bodies(move |db, dir| timeline::scan(db, dir, &site, from_ms, to_ms, limit, after)).await
    }

    async fn sessions_between(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Session>> {
        let site = site_id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(SESSIONS).map_err(db_err)?;
            let mut out = Vec::new();
            for row in table.range::<(&str, i64, &str)>((site.as_str(), from_ms, "")..(site.as_str(), to_ms, "")).map_err(db_err)? {
                if out.len() == limit {
                    break;
                }
                out.push(decode(row.map_err(db_err)?.1.value())?);
            }
            Ok(out)
        })
        .await
    }

    async fn overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize) -> Result<Overview> {
        self.filtered_overview(site_id, from_ms, to_ms, top_n, &Filters::default()).await
    }

    async fn filtered_overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize, filters: &Filters) -> Result<Overview> {
        let (site, filters) = (site_id.to_owned(), filters.clone());
        self.with_bodies(move |db, dir| {
            let (bots, sessions, pageviews) = filtered_rows(db, dir, &site, from_ms, to_ms, &filters)?;
            let mut builder = OverviewBuilder::excluding(bots);
            sessions.iter().for_each(|s| builder.add_session(s));
            pageviews.iter().for_each(|e| builder.add_pageview(e));
            Ok(builder.finish(top_n))
        })
        .await
    }

    async fn filtered_timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64, filters: &Filters) -> Result<Vec<SeriesPoint>> {
        if filters.is_empty() {
            return self.timeseries(site_id, from_ms, to_ms, step_ms).await;
        }
        let starts = crate::series_buckets(from_ms, to_ms, step_ms)?;
        let (site, filters) = (site_id.to_owned(), filters.clone());
        self.with_bodies(move |db, dir| {
            let (bots, sessions, pageviews) = filtered_rows(db, dir, &site, from_ms, to_ms, &filters)?;
            let Some(&first) = starts.first() else { return Ok(Vec::new()) };
            let mut builders: Vec<OverviewBuilder> = starts.iter().map(|_| OverviewBuilder::excluding(bots.clone())).collect();
            let slot = |ts: i64| usize::try_from((ts - first).div_euclid(step_ms)).ok().filter(|&i| i < starts.len());
            for session in &sessions {
                if let Some(i) = slot(session.start_ms) {
                    builders[i].add_session(session);
                }
            }
            for event in &pageviews {
                if let Some(i) = slot(event.ts_ms) {
                    builders[i].add_pageview(event);
                }
            }
            Ok(starts
                .iter()
                .zip(builders)
                .map(|(&start_ms, builder)| {
                    let o = builder.finish(1);
                    SeriesPoint { start_ms, visitors: o.visitors, sessions: o.sessions, pageviews: o.pageviews, bounce_rate: o.bounce_rate, avg_session_duration_ms: o.avg_session_duration_ms }
                })
                .collect())
        })
        .await
    }

    async fn matched_events(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[EventMatch], keep_unmatched: bool) -> Result<Vec<MatchedEvent>> {
        growth::check_matchers(matchers)?;
        let (site, matchers) = (site_id.to_owned(), matchers.to_vec());
        self.with_bodies(move |db, dir| scan::matched_events(db, dir, &site, from_ms, to_ms, &matchers, keep_unmatched)).await
    }

    async fn custom_events(&self, site_id: &str, from_ms: i64, to_ms: i64, top: usize) -> Result<Vec<CustomEventStats>> {
        let site = site_id.to_owned();
        self.with_bodies(move |db, dir| scan::custom_events(db, dir, &site, from_ms, to_ms, top)).await
    }

    async fn page_paths(&self, site_id: &str, from_ms: i64, to_ms: i64, glob: &str, top: usize) -> Result<PagePaths> {
        growth::check_matchers(&[EventMatch::Page(glob.to_owned())])?;
        let (site, glob) = (site_id.to_owned(), glob.to_owned());
        self.with_bodies(move |db, dir| scan::page_paths(db, dir, &site, from_ms, to_ms, &glob, top)).await
    }

    async fn dead_letters(&self, site_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>> {
        let (site, cursor) = (site_id.to_owned(), cursor.map(str::to_owned));
        self.blocking(move |db| {
            newest_first(db, DEAD_LETTERS, &site, limit, cursor.as_deref(), |d: &DeadLetter| {
                format!("{}:{}", d.received_at_ms, d.id.as_u128())
            })
        })
        .await
    }

    async fn form_stats(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<FormStats>> {
        let site = site_id.to_owned();
        self.with_bodies(move |db, dir| {
            let txn = db.begin_read().map_err(db_err)?;
            let events = txn.open_table(EVENTS).map_err(db_err)?;
            let mut builder = FormStatsBuilder::excluding(bot_ids(&txn, &site, from_ms)?.into_iter().collect());
            let s = site.as_str();
            let mut reader = bodies::Reader::sequential(dir);
            for row in events.range::<EventKey>((s, from_ms, 0u128)..(s, to_ms, 0u128)).map_err(db_err)? {
                let (_, value) = row.map_err(db_err)?;
                let at = value.value();
                if at.3 == bodies::KIND_FORM {
                    builder.add(&decode::<StoredEvent>(reader.read(at)?)?);
                }
            }
            Ok(builder.finish())
        })
        .await
    }
}

#[async_trait]
impl ProfileStore for EmbeddedStore {
    async fn visitor(&self, site_id: &str, visitor_id: &str) -> Result<Option<VisitorProfile>> {
        let (site, visitor) = (site_id.to_owned(), visitor_id.to_owned());
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(VISITORS).map_err(db_err)?;
            match table.get((site.as_str(), visitor.as_str())).map_err(db_err)? {
                Some(bytes) => Ok(Some(profiles::unpack(bytes.value())?)),
                None => Ok(None),
            }
        })
        .await
    }

    async fn visitors(&self, keys: &[(String, String)]) -> Result<Vec<VisitorProfile>> {
        // One read transaction on one blocking thread for the whole batch (the processor's
        // prefetch), not one of each per key.
        let keys = keys.to_vec();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(VISITORS).map_err(db_err)?;
            let mut found = Vec::with_capacity(keys.len());
            for (site, visitor) in &keys {
                if let Some(bytes) = table.get((site.as_str(), visitor.as_str())).map_err(db_err)? {
                    found.push(profiles::unpack(bytes.value())?);
                }
            }
            Ok(found)
        })
        .await
    }

    async fn find_visitor(&self, visitor_id: &str) -> Result<Vec<VisitorProfile>> {
        let visitor = visitor_id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let sites = txn.open_table(VISITOR_SITES).map_err(db_err)?;
            let visitors = txn.open_table(VISITORS).map_err(db_err)?;
            let mut out = Vec::new();
            for row in sites.range::<(&str, &str)>((visitor.as_str(), "")..).map_err(db_err)? {
                let (key, _) = row.map_err(db_err)?;
                let (v, site) = key.value();
                if v != visitor {
                    break;
                }
                if let Some(bytes) = visitors.get((site, v)).map_err(db_err)? {
                    out.push(profiles::unpack(bytes.value())?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn list_visitors(&self, query: &VisitorQuery) -> Result<Page<VisitorProfile>> {
        let query = query.clone();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let ranks = txn.open_table(VISITOR_RANK).map_err(db_err)?;
            let visitors = txn.open_table(VISITORS).map_err(db_err)?;
            let kind = rank_kind(query.sort, query.bots == BotFilter::Only);
            let site = query.site_id.as_str();
            let lower = match &query.cursor {
                Some(c) => {
                    let (value, visitor) = parse_cursor(c)?;
                    Bound::Excluded((site, kind, value, visitor))
                }
                None => Bound::Included((site, kind, 0u64, "")),
            };
            let upper = Bound::Excluded((site, kind + 1, 0u64, ""));
            let mut items = Vec::new();
            let mut next_cursor = None;
            for row in ranks.range::<(&str, u8, u64, &str)>((lower, upper)).map_err(db_err)? {
                let (key, _) = row.map_err(db_err)?;
                let (_, _, value, visitor) = key.value();
                if items.len() == query.limit {
                    break;
                }
                if let Some(bytes) = visitors.get((site, visitor)).map_err(db_err)? {
                    items.push(profiles::unpack(bytes.value())?);
                }
                if items.len() == query.limit {
                    next_cursor = Some(format!("{value}:{visitor}"));
                }
            }
            // Only hand out a cursor when something follows it.
            if let Some(cursor) = &next_cursor {
                let (value, visitor) = parse_cursor(cursor)?;
                let mut rest = ranks
                    .range::<(&str, u8, u64, &str)>((Bound::Excluded((site, kind, value, visitor)), upper))
                    .map_err(db_err)?;
                if rest.next().is_none() {
                    next_cursor = None;
                }
            }
            Ok(Page { items, next_cursor })
        })
        .await
    }

    async fn bot_visitors(&self, site_id: &str, since_ms: i64) -> Result<Vec<String>> {
        let site = site_id.to_owned();
        self.blocking(move |db| bot_ids(&db.begin_read().map_err(db_err)?, &site, since_ms)).await
    }

    async fn visitor_orgs(&self, site_id: &str, limit: usize) -> Result<Vec<OrgVisitors>> {
        let site = site_id.to_owned();
        self.blocking(move |db| {
            let txn = db.begin_read().map_err(db_err)?;
            let table = txn.open_table(VISITORS).map_err(db_err)?;
            let mut found = Vec::new();
            for row in table.range::<(&str, &str)>((site.as_str(), "")..).map_err(db_err)? {
                let (key, value) = row.map_err(db_err)?;
                if key.value().0 != site {
                    break;
                }
                found.push(profiles::unpack(value.value())?);
            }
            Ok(group_orgs(found.iter().filter_map(crate::org_member), limit))
        })
        .await
    }
}

#[async_trait]
impl LeadStore for EmbeddedStore {
    async fn leads(&self, keys: &[(String, String)]) -> Result<Vec<Lead>> {
        let keys = keys.to_vec();
        self.blocking(move |db| leads::get(db, &keys)).await
    }

    async fn list_leads(&self, query: &LeadQuery) -> Result<Page<LeadRecord>> {
        let query = query.clone();
        self.blocking(move |db| leads::list(db, &query)).await
    }

    async fn lead_crm(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadCrm>> {
        let (site, lead) = (site_id.to_owned(), lead_id.to_owned());
        self.blocking(move |db| leads::crm(db, &site, &lead)).await
    }

    async fn put_lead_crm(&self, crm: &LeadCrm, audit: &[LeadAudit]) -> Result<()> {
        let (crm, audit) = (crm.clone(), audit.to_vec());
        self.blocking(move |db| leads::put_crm(db, &crm, &audit)).await
    }

    async fn lead_audit(&self, site_id: &str, lead_id: &str, limit: usize) -> Result<Vec<LeadAudit>> {
        let (site, lead) = (site_id.to_owned(), lead_id.to_owned());
        self.blocking(move |db| leads::audit(db, &site, &lead, limit)).await
    }

    async fn score_history(&self, site_id: &str, lead_id: &str, limit: usize) -> Result<Vec<ScorePoint>> {
        let (site, lead) = (site_id.to_owned(), lead_id.to_owned());
        self.blocking(move |db| leads::scores(db, &site, &lead, limit)).await
    }

    async fn identity_conflicts(&self, site_id: &str, unresolved_only: bool, limit: usize) -> Result<Vec<IdentityConflict>> {
        let site = site_id.to_owned();
        self.blocking(move |db| leads::conflicts(db, &site, unresolved_only, limit)).await
    }

    async fn put_identity_override(&self, decision: &IdentityOverride) -> Result<()> {
        let decision = decision.clone();
        self.blocking(move |db| leads::put_override(db, &decision)).await
    }

    async fn identity_overrides(&self, site_id: &str) -> Result<Vec<IdentityOverride>> {
        let site = site_id.to_owned();
        self.blocking(move |db| leads::overrides(db, &site)).await
    }

    async fn resolve_conflict(&self, site_id: &str, visitor_id: &str, other_lead_id: &str) -> Result<bool> {
        let (site, visitor, other) = (site_id.to_owned(), visitor_id.to_owned(), other_lead_id.to_owned());
        self.blocking(move |db| leads::resolve(db, &site, &visitor, &other)).await
    }
}

#[cfg(test)]
mod tests;
