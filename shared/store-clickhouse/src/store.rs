//! [`ClickHouseStore`]: the [`Store`] trait on ClickHouse — connection and migrations, the write
//! path, and one query per API read.

use std::collections::HashSet;
use std::time::{SystemTime, UNIX_EPOCH};
use std::sync::Arc;

use async_trait::async_trait;
use clickhouse::Client;
use crm_schemas::{
    AuthAuditEntry, RefreshToken, AccountHealth, Alert, AlertRule, BusinessData, DeadLetter, ImportBatch, Task, FormDefinition, IdentityConflict, IdentityOverride, InsightRequest, Lead, LeadInsight, LeadAudit, LeadCrm, ScorePoint, Session, Site, StoredEvent, User,
    VisitorProfile, Article, ArticleEmbedding, ArticleVersion, Conversation, ConversationMessage, KbCounter,
};
use crm_store::filters::{FilterDialect, Filters};
use crm_store::growth::{EventMatch, MatchedEvent};
use crm_store::{
    rank_value, series_buckets, SeriesPoint, BotFilter, Count, FormStats, FormStatsBuilder, LeadQuery, LeadRecord, OrgVisitors, Overview, Page, Result, StoreError, AccountStore, ConfigStore, EventStore, KnowledgeStore, LeadStore, PipelineStore, ProfileStore, WorkflowStore, VisitorQuery, VisitorSort, WriteBatch, WriteOutcome,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use uuid::Uuid;

use crate::rows::{
    BodyRow, BucketCount, BucketTotals, CountRow, DeadLetterRow, DeletableRow, FormCountRow, EventRow, IdRow, KeyedRow, RankedRow, Scalar64, SessionRow, SessionTotals, TimedRow,
    VisitorRow,
};
use crate::schema::{render, MIGRATIONS};

#[derive(Clone, Debug)]
pub struct ClickHouseConfig {
    /// HTTP endpoint, e.g. `http://127.0.0.1:8123`.
    pub url: String,
    pub database: String,
    pub user: Option<String>,
    pub password: Option<String>,
    /// Drop events and sessions older than this many days (whole parts at a time).
    pub retention_days: Option<u32>,
}

impl ClickHouseConfig {
    pub fn new(url: impl Into<String>, database: impl Into<String>) -> ClickHouseConfig {
        ClickHouseConfig { url: url.into(), database: database.into(), user: None, password: None, retention_days: None }
    }
}

mod alerts;
mod business;
mod export;
mod growth;
mod reports;
mod sql;
mod auth;
mod insights;
mod kb;
mod leads;
mod privacy;
mod records;

pub(crate) use alerts::MIGRATION as ALERTS_MIGRATION;
pub(crate) use business::MIGRATION as BUSINESS_MIGRATION;
pub(crate) use insights::MIGRATION as INSIGHTS_MIGRATION;
pub(crate) use kb::MIGRATION as KB_MIGRATION;
pub(crate) use auth::MIGRATION as AUTH_MIGRATION;
pub(crate) use leads::MIGRATION as LEADS_MIGRATION;
pub(crate) use privacy::MIGRATION as PRIVACY_MIGRATION;

#[derive(Clone)]
pub struct ClickHouseStore {
    client: Client,
}

fn ch_err(err: clickhouse::error::Error) -> StoreError {
    let retryable = matches!(err, clickhouse::error::Error::Network(_) | clickhouse::error::Error::TimedOut);
    StoreError::Backend { message: err.to_string(), retryable }
}

fn encode<T: Serialize>(value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn decode<T: DeserializeOwned>(text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn valid_identifier(name: &str) -> bool {
    !name.is_empty() && name.len() <= 64 && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

fn rank_column(sort: VisitorSort) -> &'static str {
    match sort {
        VisitorSort::Intent => "rank_intent",
        VisitorSort::Engagement => "rank_engagement",
        VisitorSort::LastSeen => "rank_last_seen",
    }
}

fn split_cursor(cursor: &str) -> Result<(&str, &str)> {
    cursor.split_once(':').ok_or(StoreError::InvalidCursor)
}

fn now_nanos() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0)
}

impl ClickHouseStore {
    /// Connects, creates the database if needed and applies pending migrations.
    pub async fn connect(config: &ClickHouseConfig) -> Result<ClickHouseStore> {
        if !valid_identifier(&config.database) {
            return Err(StoreError::Backend { message: format!("invalid database name {:?}", config.database), retryable: false });
        }
        let mut base = Client::default().with_url(&config.url);
        if let Some(user) = &config.user {
            base = base.with_user(user);
        }
        if let Some(password) = &config.password {
            base = base.with_password(password);
        }
        base.query(&format!("CREATE DATABASE IF NOT EXISTS {}", config.database)).execute().await.map_err(ch_err)?;
        let client = base.with_database(&config.database);
        let store = ClickHouseStore { client };
        store.migrate(config.retention_days).await?;
        Ok(store)
    }

    async fn migrate(&self, retention_days: Option<u32>) -> Result<()> {
        self.client
            .query("CREATE TABLE IF NOT EXISTS schema_migrations (version UInt32, name String, applied_at DateTime DEFAULT now()) ENGINE = MergeTree ORDER BY version")
            .execute()
            .await
            .map_err(ch_err)?;
        let applied: Vec<Scalar64> = self
            .client
            .query("SELECT DISTINCT toUInt64(version) AS value FROM schema_migrations")
            .fetch_all()
            .await
            .map_err(ch_err)?;
        let applied: HashSet<u64> = applied.into_iter().map(|r| r.value).collect();
        for (version, name, statements) in MIGRATIONS {
            if applied.contains(&u64::from(*version)) {
                continue;
            }
            for statement in *statements {
                self.client.query(&render(statement, retention_days)).execute().await.map_err(ch_err)?;
            }
            self.client
                .query("INSERT INTO schema_migrations (version, name) VALUES (?, ?)")
                .bind(*version)
                .bind(*name)
                .execute()
                .await
                .map_err(ch_err)?;
            tracing::info!(version, name, "clickhouse migration applied");
        }
        if let Some(days) = retention_days {
            // Keep the TTL in step with the configuration on every start.
            for (table, column) in [("events", "ts"), ("sessions", "start"), ("dead_letters", "received")] {
                self.client
                    .query(&format!("ALTER TABLE {table} MODIFY TTL toDateTime({column}) + INTERVAL {days} DAY"))
                    .execute()
                    .await
                    .map_err(ch_err)?;
            }
        }
        Ok(())
    }

    /// Applied migration versions (for `crm migrate`).
    pub async fn migrations(&self) -> Result<Vec<u64>> {
        let rows: Vec<Scalar64> = self
            .client
            .query("SELECT DISTINCT toUInt64(version) AS value FROM schema_migrations ORDER BY value")
            .fetch_all()
            .await
            .map_err(ch_err)?;
        Ok(rows.into_iter().map(|r| r.value).collect())
    }

    /// Merges parts and applies TTLs now (tests and maintenance).
    pub async fn optimize(&self) -> Result<()> {
        for table in ["events", "sessions", "visitors"] {
            self.client.query(&format!("OPTIMIZE TABLE {table} FINAL")).execute().await.map_err(ch_err)?;
        }
        Ok(())
    }

    /// Partitions of `table` that still hold rows (for retention checks).
    pub async fn active_partitions(&self, table: &str) -> Result<Vec<String>> {
        let rows: Vec<IdRow> = self
            .client
            .query("SELECT DISTINCT partition AS id FROM system.parts WHERE database = currentDatabase() AND table = ? AND active AND rows > 0")
            .bind(table)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }

    /// Rows currently in `events` (for tests and benchmarks).
    pub async fn event_count(&self) -> Result<u64> {
        let row: Scalar64 = self.client.query("SELECT count() AS value FROM events").fetch_one().await.map_err(ch_err)?;
        Ok(row.value)
    }

    async fn insert_rows<T: clickhouse::RowOwned + clickhouse::RowWrite>(&self, table: &str, rows: &[T]) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut insert = self.client.insert::<T>(table).await.map_err(ch_err)?;
        for row in rows {
            insert.write(row).await.map_err(ch_err)?;
        }
        insert.end().await.map_err(ch_err)
    }

    async fn bodies<T: DeserializeOwned>(&self, query: clickhouse::query::Query) -> Result<Vec<T>> {
        let rows: Vec<BodyRow> = query.fetch_all().await.map_err(ch_err)?;
        rows.iter().map(|r| decode(&r.body)).collect()
    }

    async fn put_keyed<T: Serialize>(&self, table: &str, key: &str, value: &T) -> Result<()> {
        let row = KeyedRow { key: key.to_owned(), version: now_nanos(), body: encode(value)? };
        self.insert_rows(table, &[row]).await
    }

    async fn get_keyed<T: DeserializeOwned>(&self, table: &str, key: &str) -> Result<Option<T>> {
        let query = self.client.query(&format!("SELECT body FROM {table} FINAL WHERE key = ?")).bind(key);
        Ok(self.bodies(query).await?.into_iter().next())
    }

    async fn all_keyed<T: DeserializeOwned>(&self, table: &str) -> Result<Vec<T>> {
        self.bodies(self.client.query(&format!("SELECT body FROM {table} FINAL ORDER BY key"))).await
    }

    /// A newest-first page of JSON bodies keyed by (time, id), resuming after `cursor`.
    async fn newest_first<T: DeserializeOwned>(&self, source: &NewestFirst, filter_values: &[&str], limit: usize, cursor: Option<&str>) -> Result<Page<T>> {
        let NewestFirst { table, time, id, filter } = source;
        let after = if cursor.is_some() { format!(" AND ({time}, {id}) < (fromUnixTimestamp64Milli(toInt64(?), 'UTC'), ?)") } else { String::new() };
        let sql = format!(
            "SELECT body, toUnixTimestamp64Milli({time}) AS ts_ms, {id} AS id FROM {table} WHERE {filter}{after} ORDER BY {time} DESC, {id} DESC LIMIT ?"
        );
        let mut query = self.client.query(&sql);
        for value in filter_values {
            query = query.bind(*value);
        }
        if let Some(cursor) = cursor {
            let (ts, last_id) = split_cursor(cursor)?;
            let ts: i64 = ts.parse().map_err(|_| StoreError::InvalidCursor)?;
            query = query.bind(ts).bind(last_id);
        }
        let rows: Vec<TimedRow> = query.bind(limit as u64 + 1).fetch_all().await.map_err(ch_err)?;
        let more = rows.len() > limit;
        let rows = &rows[..rows.len().min(limit)];
        let items = rows.iter().map(|r| decode(&r.body)).collect::<Result<Vec<T>>>()?;
        let next_cursor = if more { rows.last().map(|r| format!("{}:{}", r.ts_ms, r.id)) } else { None };
        Ok(Page { items, next_cursor })
    }

    /// A query over a site's rows from `from_ms` on that carries [`HUMANS`]' parameters.
    fn analytics(&self, site_id: &str, from_ms: i64, sql: &str) -> clickhouse::query::Query {
        self.client.query(sql).param("bots_site", site_id).param("bots_rank", last_seen_rank(from_ms))
    }

    async fn counts(&self, sql: &str, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize) -> Result<Vec<Count>> {
        // An overview asked for its headline figures only (goals, comparisons) skips the scans.
        if top_n == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<CountRow> = self
            .analytics(site_id, from_ms, sql)
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(top_n as u64)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        Ok(rows.into_iter().map(|r| Count { key: r.key, count: r.count }).collect())
    }
}

fn event_row(event: &StoredEvent) -> Result<EventRow> {
    Ok(EventRow {
        site_id: event.site_id.clone(),
        ts: event.ts_ms,
        visitor_id: event.visitor_id.clone(),
        event_id: event.event_id.to_string(),
        kind: event.body.kind().as_str().to_owned(),
        path: event.path.clone().unwrap_or_else(|| "/".to_owned()),
        is_bot: u8::from(event.is_bot),
        body: encode(event)?,
    })
}

fn visitor_row(profile: &VisitorProfile) -> Result<VisitorRow> {
    Ok(VisitorRow {
        site_id: profile.site_id.clone(),
        visitor_id: profile.visitor_id.clone(),
        version: now_nanos(),
        is_bot: u8::from(profile.is_bot),
        rank_intent: rank_value(profile, VisitorSort::Intent),
        rank_engagement: rank_value(profile, VisitorSort::Engagement),
        rank_last_seen: rank_value(profile, VisitorSort::LastSeen),
        profile: encode(profile)?,
    })
}

fn session_row(session: &Session) -> Result<SessionRow> {
    Ok(SessionRow {
        site_id: session.site_id.clone(),
        start: session.start_ms,
        session_id: session.session_id.clone(),
        version: now_nanos(),
        visitor_id: session.visitor_id.clone(),
        is_bot: u8::from(session.is_bot),
        pageviews: session.pageviews,
        bounce: u8::from(session.is_bounce()),
        duration_ms: session.duration_ms(),
        referrer_host: session.referrer_host.clone().unwrap_or_default(),
        country: session.country.clone().unwrap_or_default(),
        device: session.device_category.clone(),
        browser: session.browser.clone(),
        utm_source: session.utm.source.clone().unwrap_or_default(),
        body: encode(session)?,
    })
}

/// Where a newest-first listing reads from.
struct NewestFirst {
    table: &'static str,
    time: &'static str,
    id: &'static str,
    filter: &'static str,
}

const RANGE: &str = "site_id = ? AND {col} >= fromUnixTimestamp64Milli(toInt64(?), 'UTC') AND {col} < fromUnixTimestamp64Milli(toInt64(?), 'UTC')";

fn form_key(site_id: &str, form_id: &str) -> String {
    format!("{site_id}/{form_id}")
}

fn range(column: &str) -> String {
    RANGE.replace("{col}", column)
}

/// The (sessions, pageviews) conditions of an overview or series of `[from_ms, to_ms)`, bots
/// left out, narrowed by `filters` ([`crm_store::filters`]). Each takes [`RANGE`]'s three
/// positional parameters; the subqueries that restrict one side by the other carry their window
/// as literals, so the outer queries' parameters stay as they are.
fn filtered_where(site_id: &str, from_ms: i64, to_ms: i64, filters: &Filters) -> (String, String) {
    let base_s = format!("{} AND is_bot = 0{HUMANS}", range("start"));
    let base_e = format!("{} AND kind = 'pageview' AND is_bot = 0{HUMANS}", range("ts"));
    if filters.is_empty() {
        return (base_s, base_e);
    }
    let site = format!("'{}'", site_id.replace('\\', "\\\\").replace('\'', "''"));
    let window = |column: &str| {
        format!("site_id = {site} AND {column} >= fromUnixTimestamp64Milli(toInt64({from_ms}), 'UTC') AND {column} < fromUnixTimestamp64Milli(toInt64({to_ms}), 'UTC')")
    };
    let (session, page) = filters.sql(FilterDialect::ClickHouse);
    let mut sessions_where = format!("{base_s} AND {session}");
    let mut events_where = format!("{base_e} AND {page}");
    if filters.has_page_conditions() {
        sessions_where.push_str(&format!(
            " AND session_id IN (SELECT JSONExtractString(body, 'session_id') FROM events WHERE {} AND kind = 'pageview' AND {page})",
            window("ts")
        ));
    }
    if filters.has_session_conditions() {
        events_where.push_str(&format!(" AND JSONExtractString(body, 'session_id') IN (SELECT session_id FROM sessions FINAL WHERE {} AND {session})", window("start")));
    }
    (sessions_where, events_where)
}

/// Leaves out the rows of the site's bot visitors: every visitor whose profile is a bot and was
/// seen since the window opened ([`ProfileStore::bot_visitors`]). Any stored version of a bot
/// profile qualifies, since a profile never stops being one, so no `FINAL` is needed. Its
/// parameters come from [`ClickHouseStore::analytics`].
const HUMANS: &str = " AND visitor_id NOT IN (SELECT visitor_id FROM visitors WHERE site_id = {bots_site:String} AND is_bot = 1 AND rank_last_seen <= {bots_rank:UInt64})";

/// The last-seen rank value of a visitor last seen at `since_ms` (ranks fall as recency rises).
fn last_seen_rank(since_ms: i64) -> u64 {
    u64::MAX - ((since_ms.max(0) as u64) & ((1 << 48) - 1))
}

#[async_trait]
impl PipelineStore for ClickHouseStore {
    async fn unseen_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        let mut unseen: HashSet<Uuid> = ids.iter().copied().collect();
        if ids.is_empty() {
            return Ok(unseen);
        }
        let texts: Vec<String> = ids.iter().map(Uuid::to_string).collect();
        for chunk in texts.chunks(5_000) {
            let found: Vec<IdRow> = self
                .client
                .query("SELECT event_id AS id FROM events WHERE event_id IN ?")
                .bind(chunk)
                .fetch_all()
                .await
                .map_err(ch_err)?;
            for row in found {
                if let Ok(id) = Uuid::parse_str(&row.id) {
                    unseen.remove(&id);
                }
            }
        }
        Ok(unseen)
    }

    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome> {
        // Order matters: profiles and sessions first, events last (see the crate docs).
        let visitors: Vec<VisitorRow> = batch.visitors.iter().map(visitor_row).collect::<Result<_>>()?;
        self.insert_rows("visitors", &visitors).await?;
        let sessions: Vec<SessionRow> = batch.sessions.iter().map(session_row).collect::<Result<_>>()?;
        self.insert_rows("sessions", &sessions).await?;
        let letters: Vec<DeadLetterRow> = batch
            .dead_letters
            .iter()
            .map(|d| Ok(DeadLetterRow { site_id: d.site_id.clone(), received: d.received_at_ms, id: d.id.to_string(), body: encode(d)? }))
            .collect::<Result<_>>()?;
        self.insert_rows("dead_letters", &letters).await?;
        self.write_leads(&batch).await?;
        self.insert_new_alerts(&batch.alerts).await?;
        self.upsert_insight_requests(&batch.insight_requests).await?;

        let ids: Vec<Uuid> = batch.events.iter().map(|e| e.event_id).collect();
        let mut unseen = self.unseen_event_ids(&ids).await?;
        let mut rows = Vec::with_capacity(batch.events.len());
        for event in &batch.events {
            if unseen.remove(&event.event_id) {
                rows.push(event_row(event)?);
            }
        }
        let outcome = WriteOutcome { events_written: rows.len(), duplicates_skipped: batch.events.len() - rows.len() };
        self.insert_rows("events", &rows).await?;
        Ok(outcome)
    }
}

#[async_trait]
impl EventStore for ClickHouseStore {
    async fn visitor_events(&self, site_id: &str, visitor_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        let source = NewestFirst { table: "events", time: "ts", id: "event_id", filter: "site_id = ? AND visitor_id = ?" };
        self.newest_first(&source, &[site_id, visitor_id], limit, cursor).await
    }

    async fn events_of_visitors(&self, site_id: &str, visitor_ids: &[String], limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        self.visitors_timeline(site_id, visitor_ids, limit, cursor).await
    }

    async fn scan_events(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        self.scan_window(site_id, from_ms, to_ms, limit, cursor).await
    }

    async fn sessions_between(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Session>> {
        let query = self
            .client
            .query(&format!("SELECT body FROM sessions FINAL WHERE {} ORDER BY start, session_id LIMIT ?", range("start")))
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(limit as u64);
        self.bodies(query).await
    }

    async fn overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize) -> Result<Overview> {
        self.filtered_overview(site_id, from_ms, to_ms, top_n, &Filters::default()).await
    }

    async fn filtered_overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize, filters: &Filters) -> Result<Overview> {
        let (sessions_where, events_where) = filtered_where(site_id, from_ms, to_ms, filters);
        let totals: SessionTotals = self
            .analytics(site_id, from_ms, &format!(
                "SELECT count() AS sessions, countIf(bounce = 1) AS bounces, sum(duration_ms) AS duration_total FROM sessions FINAL WHERE {sessions_where}"
            ))
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_one()
            .await
            .map_err(ch_err)?;
        let pageviews: Scalar64 = self
            .analytics(site_id, from_ms, &format!("SELECT count() AS value FROM events WHERE {events_where}"))
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_one()
            .await
            .map_err(ch_err)?;
        let visitors: Scalar64 = self
            .analytics(site_id, from_ms, &format!(
                "SELECT uniqExact(v) AS value FROM (SELECT visitor_id AS v FROM sessions FINAL WHERE {sessions_where}
                 UNION ALL SELECT visitor_id AS v FROM events WHERE {events_where})"
            ))
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_one()
            .await
            .map_err(ch_err)?;
        let session_top = |expr: &str, filter: &str| {
            format!(
                "SELECT {expr} AS key, count() AS count FROM sessions FINAL WHERE {sessions_where}{filter} GROUP BY key ORDER BY count DESC, key ASC LIMIT ?"
            )
        };
        let top_pages = self
            .counts(
                &format!("SELECT path AS key, count() AS count FROM events WHERE {events_where} GROUP BY key ORDER BY count DESC, key ASC LIMIT ?"),
                site_id,
                from_ms,
                to_ms,
                top_n,
            )
            .await?;
        let top_referrers = self.counts(&session_top("if(referrer_host = '', '(direct)', referrer_host)", ""), site_id, from_ms, to_ms, top_n).await?;
        let countries = self.counts(&session_top("if(country = '', '(unknown)', toString(country))", ""), site_id, from_ms, to_ms, top_n).await?;
        let devices = self.counts(&session_top("if(device = '', '(unknown)', toString(device))", ""), site_id, from_ms, to_ms, top_n).await?;
        let browsers = self.counts(&session_top("if(browser = '', '(unknown)', toString(browser))", ""), site_id, from_ms, to_ms, top_n).await?;
        let utm_sources = self.counts(&session_top("utm_source", " AND utm_source != ''"), site_id, from_ms, to_ms, top_n).await?;
        Ok(Overview {
            visitors: visitors.value,
            sessions: totals.sessions,
            pageviews: pageviews.value,
            bounce_rate: if totals.sessions == 0 { 0.0 } else { totals.bounces as f64 / totals.sessions as f64 },
            avg_session_duration_ms: totals.duration_total.checked_div(totals.sessions).unwrap_or(0),
            top_pages,
            top_referrers,
            countries,
            devices,
            browsers,
            utm_sources,
        })
    }

    async fn dead_letters(&self, site_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>> {
        let source = NewestFirst { table: "dead_letters FINAL", time: "received", id: "id", filter: "site_id = ?" };
        self.newest_first(&source, &[site_id], limit, cursor).await
    }

    async fn form_stats(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<FormStats>> {
        let rows: Vec<FormCountRow> = self
            .analytics(site_id, from_ms, &format!(
                "SELECT JSONExtractString(body, 'form_id') AS form_id, toString(kind) AS kind, count() AS count FROM events
                 WHERE {} AND kind IN ('form_view', 'form_start', 'form_submit') AND is_bot = 0{HUMANS} GROUP BY form_id, kind",
                range("ts")
            ))
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        let mut builder = FormStatsBuilder::default();
        for row in rows {
            builder.add_kind_count(&row.form_id, &row.kind, row.count);
        }
        Ok(builder.finish())
    }

    async fn timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64) -> Result<Vec<SeriesPoint>> {
        self.filtered_timeseries(site_id, from_ms, to_ms, step_ms, &Filters::default()).await
    }

    async fn filtered_timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64, filters: &Filters) -> Result<Vec<SeriesPoint>> {
        let starts = series_buckets(from_ms, to_ms, step_ms)?;
        let Some(&first) = starts.first() else { return Ok(Vec::new()) };
        // Three grouped queries instead of the overview's nine per bucket; bucket k starts at
        // first + k * step, and the window clips the first and last bucket as the overview would.
        let bucket = |col: &str| format!("toUInt64(intDiv(toUnixTimestamp64Milli({col}) - {first}, {step_ms}))");
        let (sessions_where, events_where) = filtered_where(site_id, from_ms, to_ms, filters);
        let totals: Vec<BucketTotals> = self
            .analytics(site_id, from_ms, &format!(
                "SELECT {} AS bucket, count() AS sessions, countIf(bounce = 1) AS bounces, sum(duration_ms) AS duration_total
                 FROM sessions FINAL WHERE {sessions_where} GROUP BY bucket",
                bucket("start")
            ))
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        let pageviews: Vec<BucketCount> = self
            .analytics(site_id, from_ms, &format!("SELECT {} AS bucket, count() AS value FROM events WHERE {events_where} GROUP BY bucket", bucket("ts")))
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        let visitors: Vec<BucketCount> = self
            .analytics(site_id, from_ms, &format!(
                "SELECT bucket, uniqExact(v) AS value FROM (SELECT {} AS bucket, visitor_id AS v FROM sessions FINAL WHERE {sessions_where}
                 UNION ALL SELECT {} AS bucket, visitor_id AS v FROM events WHERE {events_where}) GROUP BY bucket",
                bucket("start"),
                bucket("ts")
            ))
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .bind(site_id)
            .bind(from_ms)
            .bind(to_ms)
            .fetch_all()
            .await
            .map_err(ch_err)?;
        let mut figures = vec![(0u64, 0u64, 0u64, 0u64, 0u64); starts.len()];
        let slot = |bucket: u64| usize::try_from(bucket).ok().filter(|&i| i < starts.len());
        for row in totals {
            if let Some(i) = slot(row.bucket) {
                (figures[i].1, figures[i].2, figures[i].3) = (row.sessions, row.bounces, row.duration_total);
            }
        }
        for row in pageviews {
            if let Some(i) = slot(row.bucket) {
                figures[i].4 = row.value;
            }
        }
        for row in visitors {
            if let Some(i) = slot(row.bucket) {
                figures[i].0 = row.value;
            }
        }
        Ok(starts
            .iter()
            .zip(figures)
            .map(|(&start, (visitors, sessions, bounces, duration, pageviews))| SeriesPoint::from_totals(start, visitors, sessions, bounces, duration, pageviews))
            .collect())
    }

    fn sql_dialect(&self) -> Option<crm_store::sql_guard::SqlDialect> {
        Some(crm_store::sql_guard::SqlDialect::ClickHouse)
    }

    async fn query_sql(&self, site_id: &str, sql: &crm_store::sql_guard::CheckedSql, limits: &crm_store::sql_guard::SqlLimits) -> Result<crm_store::sql_guard::SqlResult> {
        self.run_sql(site_id, sql, limits).await
    }

    async fn matched_events(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[EventMatch], keep_unmatched: bool) -> Result<Vec<MatchedEvent>> {
        self.matched(site_id, from_ms, to_ms, matchers, keep_unmatched).await
    }

    async fn funnel_pushdown(&self, site_id: &str, from_ms: i64, to_ms: i64, spec: &crm_store::growth::FunnelSpec) -> Result<Option<crm_store::growth::FunnelReport>> {
        self.funnel_on_server(site_id, from_ms, to_ms, spec).await.map(Some)
    }

    async fn goal_counts_pushdown(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[EventMatch], ask: crm_store::goals::GoalAsk) -> Result<Option<crm_store::goals::GoalCounts>> {
        self.goal_counts_on_server(site_id, from_ms, to_ms, matchers, ask).await.map(Some)
    }

    async fn retention_pushdown(&self, site_id: &str, spec: &crm_store::growth::RetentionSpec) -> Result<Option<crm_store::growth::RetentionReport>> {
        self.retention_on_server(site_id, spec).await.map(Some)
    }

    async fn custom_events(&self, site_id: &str, from_ms: i64, to_ms: i64, top: usize) -> Result<Vec<crm_store::explore::CustomEventStats>> {
        self.custom_event_stats(site_id, from_ms, to_ms, top).await
    }

    async fn page_paths(&self, site_id: &str, from_ms: i64, to_ms: i64, glob: &str, top: usize) -> Result<crm_store::explore::PagePaths> {
        self.paths(site_id, from_ms, to_ms, glob, top).await
    }
}

#[async_trait]
impl ProfileStore for ClickHouseStore {
    async fn visitor(&self, site_id: &str, visitor_id: &str) -> Result<Option<VisitorProfile>> {
        let query = self
            .client
            .query("SELECT profile AS body FROM visitors FINAL WHERE site_id = ? AND visitor_id = ?")
            .bind(site_id)
            .bind(visitor_id);
        Ok(self.bodies(query).await?.into_iter().next())
    }

    async fn visitors(&self, keys: &[(String, String)]) -> Result<Vec<VisitorProfile>> {
        let mut found = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(2_000) {
            let pairs: Vec<(&str, &str)> = chunk.iter().map(|(s, v)| (s.as_str(), v.as_str())).collect();
            let query = self.client.query("SELECT profile AS body FROM visitors FINAL WHERE (site_id, visitor_id) IN ?").bind(pairs);
            found.extend(self.bodies::<VisitorProfile>(query).await?);
        }
        Ok(found)
    }

    async fn find_visitor(&self, visitor_id: &str) -> Result<Vec<VisitorProfile>> {
        let query = self.client.query("SELECT profile AS body FROM visitors FINAL WHERE visitor_id = ? ORDER BY site_id").bind(visitor_id);
        self.bodies(query).await
    }

    async fn list_visitors(&self, query: &VisitorQuery) -> Result<Page<VisitorProfile>> {
        let column = rank_column(query.sort);
        let is_bot = u8::from(query.bots == BotFilter::Only);
        let limit = query.limit as u64 + 1;
        let rows: Vec<RankedRow> = match &query.cursor {
            Some(cursor) => {
                let (rank, visitor) = split_cursor(cursor)?;
                let rank: u64 = rank.parse().map_err(|_| StoreError::InvalidCursor)?;
                self.client
                    .query(&format!(
                        "SELECT profile AS body, {column} AS rank, visitor_id FROM visitors FINAL
                         WHERE site_id = ? AND is_bot = ? AND ({column}, visitor_id) > (?, ?)
                         ORDER BY {column}, visitor_id LIMIT ?"
                    ))
                    .bind(&query.site_id)
                    .bind(is_bot)
                    .bind(rank)
                    .bind(visitor)
                    .bind(limit)
                    .fetch_all()
                    .await
            }
            None => {
                self.client
                    .query(&format!(
                        "SELECT profile AS body, {column} AS rank, visitor_id FROM visitors FINAL
                         WHERE site_id = ? AND is_bot = ? ORDER BY {column}, visitor_id LIMIT ?"
                    ))
                    .bind(&query.site_id)
                    .bind(is_bot)
                    .bind(limit)
                    .fetch_all()
                    .await
            }
        }
        .map_err(ch_err)?;
        let more = rows.len() > query.limit;
        let rows = &rows[..rows.len().min(query.limit)];
        let items = rows.iter().map(|r| decode(&r.body)).collect::<Result<Vec<VisitorProfile>>>()?;
        let next_cursor = if more { rows.last().map(|r| format!("{}:{}", r.rank, r.visitor_id)) } else { None };
        Ok(Page { items, next_cursor })
    }

    async fn visitor_orgs(&self, site_id: &str, limit: usize) -> Result<Vec<OrgVisitors>> {
        self.get_visitor_orgs(site_id, limit).await
    }

    async fn bot_visitors(&self, site_id: &str, since_ms: i64) -> Result<Vec<String>> {
        let rows: Vec<IdRow> = self
            .client
            .query("SELECT DISTINCT visitor_id AS id FROM visitors WHERE site_id = ? AND is_bot = 1 AND rank_last_seen <= ? ORDER BY id")
            .bind(site_id)
            .bind(last_seen_rank(since_ms))
            .fetch_all()
            .await
            .map_err(ch_err)?;
        Ok(rows.into_iter().map(|r| r.id).collect())
    }
}

#[async_trait]
impl LeadStore for ClickHouseStore {
    async fn leads(&self, keys: &[(String, String)]) -> Result<Vec<Lead>> {
        self.get_leads(keys).await
    }

    async fn list_leads(&self, query: &LeadQuery) -> Result<Page<LeadRecord>> {
        self.query_leads(query).await
    }

    async fn lead_crm(&self, site_id: &str, lead_id: &str) -> Result<Option<LeadCrm>> {
        self.get_lead_crm(site_id, lead_id).await
    }

    async fn put_lead_crm(&self, crm: &LeadCrm, audit: &[LeadAudit]) -> Result<()> {
        self.save_lead_crm(crm, audit).await
    }

    async fn lead_audit(&self, site_id: &str, lead_id: &str, limit: usize) -> Result<Vec<LeadAudit>> {
        self.get_lead_audit(site_id, lead_id, limit).await
    }

    async fn score_history(&self, site_id: &str, lead_id: &str, limit: usize) -> Result<Vec<ScorePoint>> {
        self.get_score_history(site_id, lead_id, limit).await
    }

    async fn identity_conflicts(&self, site_id: &str, unresolved_only: bool, limit: usize) -> Result<Vec<IdentityConflict>> {
        self.get_conflicts(site_id, unresolved_only, limit).await
    }

    async fn put_identity_override(&self, decision: &IdentityOverride) -> Result<()> {
        self.save_override(decision).await
    }

    async fn identity_overrides(&self, site_id: &str) -> Result<Vec<IdentityOverride>> {
        self.get_overrides(site_id).await
    }

    async fn resolve_conflict(&self, site_id: &str, visitor_id: &str, other_lead_id: &str) -> Result<bool> {
        self.mark_resolved(site_id, visitor_id, other_lead_id).await
    }
}
