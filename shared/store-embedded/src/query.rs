//! Analytics over event and session parts with DataFusion.
//!
//! Each query gets a snapshot: the part files whose site and time range can hold rows of the
//! window, plus the rows still in memory (as one record batch per stream, built with the same
//! schema as the parts). Both are registered as one table (`events`, `sessions_raw`), so a row is
//! counted whether or not a commit point has written it yet. Sessions are versioned rows
//! (session_part.rs): each query keeps the highest version of each session in its window. The
//! definitions (bots excluded, what a bounce is, the labels for missing values, top-N ordering by
//! count then key) are the overview's, shared with the redb store and ClickHouse. Bots are the
//! visitors whose profile is a bot, taken with the snapshot and registered as table `bots`
//! (one `visitor_id` column): aggregates anti-join it, so a visitor counts exactly when its
//! profile is human.

use std::collections::BTreeMap;
use std::path::PathBuf;

use crm_schemas::{Session, StoredEvent};
use crm_store::filters::{FilterDialect, Filters};
use crm_store::explore::{CustomEventStats, CustomEventsBuilder, PagePaths, PathsBuilder};
use crm_store::growth::{self, CohortStart, EventMatch, GlobForm, MatchedEvent, RetentionReport, RetentionSpec};
use crm_store::{Count, FormStats, FormStatsBuilder, Overview, SeriesPoint, StoreError};
use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{ArrowPrimitiveType, DataType, Int64Type, UInt64Type};
use datafusion::prelude::{ParquetReadOptions, SessionConfig, SessionContext};

/// What one query reads: the files and the in-memory rows of one site.
pub struct Snapshot {
    pub event_files: Vec<PathBuf>,
    pub events: RecordBatch,
    pub session_files: Vec<PathBuf>,
    pub sessions: RecordBatch,
    /// Holds the parts read, so a compaction meanwhile does not delete their files.
    pub keep_alive: Vec<std::sync::Arc<dyn std::any::Any + Send + Sync>>,
    /// Days read from their rollups instead (overview only; their parts are not in the files).
    pub rollups: Vec<std::sync::Arc<crate::rollup::Rollup>>,
    /// The site's bot visitors ([`bots_batch`]) whose rows every aggregate leaves out.
    pub bots: RecordBatch,
}

/// The `bots` table of a snapshot: one `visitor_id` column.
pub fn bots_batch(visitor_ids: Vec<String>) -> crate::Result<RecordBatch> {
    use datafusion::arrow::array::StringArray;
    use datafusion::arrow::datatypes::{Field, Schema};
    let schema = std::sync::Arc::new(Schema::new(vec![Field::new("visitor_id", DataType::Utf8, false)]));
    RecordBatch::try_new(schema, vec![std::sync::Arc::new(StringArray::from(visitor_ids))]).map_err(|e| crate::ColumnarError::corrupt(std::path::Path::new("<bots>"), e))
}

/// The clause that leaves the snapshot's bots out (nothing when it has none).
fn humans(snapshot: &Snapshot) -> &'static str {
    if snapshot.bots.num_rows() == 0 {
        ""
    } else {
        " AND visitor_id NOT IN (SELECT visitor_id FROM bots)"
    }
}

fn df_err(err: impl std::fmt::Display) -> StoreError {
    StoreError::Backend { message: format!("columnar query failed: {err}"), retryable: false }
}

/// A context with `events` and `sessions_raw` (every version of every session) registered.
pub(crate) async fn context(snapshot: &Snapshot) -> Result<SessionContext, StoreError> {
    // One partition: queries share the core with ingest, and parallel scans would only contend.
    // Parts are read with the types they were written with (Utf8, Binary), not the view types
    // DataFusion would pick, so they union with the in-memory rows.
    let config = SessionConfig::new().with_target_partitions(1).set_bool("datafusion.execution.parquet.schema_force_view_types", false);
    let ctx = SessionContext::new_with_config(config);
    for (name, batch, files) in [("events", &snapshot.events, &snapshot.event_files), ("sessions_raw", &snapshot.sessions, &snapshot.session_files)] {
        let mut frame = ctx.read_batch(batch.clone()).map_err(df_err)?;
        if !files.is_empty() {
            let paths: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
            let parts = ctx.read_parquet(paths, ParquetReadOptions::default()).await.map_err(df_err)?;
            frame = frame.union(parts).map_err(df_err)?;
        }
        ctx.register_table(name, frame.into_view()).map_err(df_err)?;
    }
    ctx.register_batch("bots", snapshot.bots.clone()).map_err(df_err)?;
    Ok(ctx)
}

/// Registers `sessions`: the latest version of each session that started in the window, with
/// the columns analytics group by (no `json`), materialised once for the several queries that
/// read it. The latest version is found with a hash aggregate and a join: `DISTINCT ON` and a
/// `row_number()` window over the same million rows took 20 to 40 s and 1.8 s, the join 0.6 s
/// (bench/ANALYSIS.md).
async fn register_sessions(ctx: &SessionContext, from_ms: i64, to_ms: i64) -> Result<(), StoreError> {
    let window = |alias: &str| format!("{alias}start_ms >= {from_ms} AND {alias}start_ms < {to_ms}");
    let latest = ctx
        .sql(&format!(
            "SELECT r.session_id, r.start_ms, r.visitor_id, r.is_bot, r.bounce, r.duration_ms, r.referrer, r.country, r.device, r.browser, r.utm_source
             FROM sessions_raw r JOIN (SELECT session_id, max(version) AS v FROM sessions_raw WHERE {} GROUP BY session_id) m
             ON r.session_id = m.session_id AND r.version = m.v WHERE {}",
            window(""),
            window("r.")
        ))
        .await
        .map_err(df_err)?
        .cache()
        .await
        .map_err(df_err)?;
    ctx.register_table("sessions", latest.into_view()).map_err(df_err)?;
    Ok(())
}

async fn collect(ctx: &SessionContext, sql: &str) -> Result<Vec<RecordBatch>, StoreError> {
    ctx.sql(sql).await.map_err(df_err)?.collect().await.map_err(df_err)
}

/// Column `index` of every row cast to `T` (counts and sums come back as Int64 or UInt64; a
/// null reads as 0).
fn primitives<T: ArrowPrimitiveType>(batches: &[RecordBatch], index: usize) -> Result<Vec<T::Native>, StoreError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = cast(batch.column(index), &T::DATA_TYPE).map_err(df_err)?;
        let values = column.as_primitive::<T>();
        out.extend((0..values.len()).map(|i| if values.is_null(i) { T::Native::default() } else { values.value(i) }));
    }
    Ok(out)
}

fn u64s(batches: &[RecordBatch], index: usize) -> Result<Vec<u64>, StoreError> {
    primitives::<UInt64Type>(batches, index)
}

fn i64s(batches: &[RecordBatch], index: usize) -> Result<Vec<i64>, StoreError> {
    primitives::<Int64Type>(batches, index)
}

fn strings(batches: &[RecordBatch], index: usize) -> Result<Vec<String>, StoreError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = cast(batch.column(index), &DataType::Utf8).map_err(df_err)?;
        let values = column.as_string::<i32>();
        out.extend((0..values.len()).map(|i| values.value(i).to_owned()));
    }
    Ok(out)
}

/// Column `index` of every row as text, `None` where it is null.
fn optional_strings(batches: &[RecordBatch], index: usize) -> Result<Vec<Option<String>>, StoreError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = cast(batch.column(index), &DataType::Utf8).map_err(df_err)?;
        let values = column.as_string::<i32>();
        out.extend((0..values.len()).map(|i| (!values.is_null(i)).then(|| values.value(i).to_owned())));
    }
    Ok(out)
}

/// [`visitor_key`] of column `index` of every row (visitor ids, hashed without copying them).
fn visitor_keys(batches: &[RecordBatch], index: usize) -> Result<Vec<u128>, StoreError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = cast(batch.column(index), &DataType::Utf8).map_err(df_err)?;
        let values = column.as_string::<i32>();
        out.extend((0..values.len()).map(|i| visitor_key(values.value(i))));
    }
    Ok(out)
}

fn one_u64(batches: &[RecordBatch], index: usize) -> Result<u64, StoreError> {
    Ok(u64s(batches, index)?.first().copied().unwrap_or(0))
}

/// `json` column of every row, decoded.
fn decode<T: serde::de::DeserializeOwned>(batches: &[RecordBatch], index: usize) -> Result<Vec<T>, StoreError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = cast(batch.column(index), &DataType::Binary).map_err(df_err)?;
        let values = column.as_binary::<i32>();
        for i in 0..values.len() {
            out.push(serde_json::from_slice(values.value(i)).map_err(|e| StoreError::Corrupt(e.to_string()))?);
        }
    }
    Ok(out)
}

/// `json` column of every row, decoded where it is not null.
fn decode_optional<T: serde::de::DeserializeOwned>(batches: &[RecordBatch], index: usize) -> Result<Vec<Option<T>>, StoreError> {
    let mut out = Vec::new();
    for batch in batches {
        let column = cast(batch.column(index), &DataType::Binary).map_err(df_err)?;
        let values = column.as_binary::<i32>();
        for i in 0..values.len() {
            out.push(match values.is_null(i) {
                true => None,
                false => Some(serde_json::from_slice(values.value(i)).map_err(|e| StoreError::Corrupt(e.to_string()))?),
            });
        }
    }
    Ok(out)
}

fn sessions_in(snapshot: &Snapshot, from_ms: i64, to_ms: i64) -> String {
    format!("start_ms >= {from_ms} AND start_ms < {to_ms} AND NOT is_bot{}", humans(snapshot))
}

fn pageviews_in(snapshot: &Snapshot, from_ms: i64, to_ms: i64) -> String {
    format!("ts_ms >= {from_ms} AND ts_ms < {to_ms} AND kind = 'pageview' AND NOT is_bot{}", humans(snapshot))
}

/// The overview's figures of a window before the top-N cut, in a form that adds up: a day's
/// [`Partial`] is what its rollup stores (rollup.rs), and an overview is the sum of its days'
/// rollups and the partial of whatever no rollup covers. Visitors are kept as 128-bit hashes of
/// their ids ([`visitor_key`]), so sets from different days union without the ids.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Partial {
    pub sessions: u64,
    pub bounces: u64,
    pub duration_ms: u64,
    pub pageviews: u64,
    /// Pages, referrers, countries, devices, browsers, UTM sources: every key with its count.
    pub groups: [BTreeMap<String, u64>; 6],
    #[serde(skip)]
    pub visitors: Vec<u128>,
}

/// The visitor key of distinct-visitor counts: SipHash-1-3 with 128-bit output and fixed keys,
/// a specified algorithm, so keys written into a rollup by one release match the next one's.
/// Two of a site's visitors collide with a chance of about n²/2¹²⁹.
pub fn visitor_key(visitor_id: &str) -> u128 {
    use std::hash::Hasher as _;
    let mut hasher = siphasher::sip128::SipHasher13::new_with_keys(0x6372_6d2d_7669_7369, 0x746f_722d_6b65_7973);
    hasher.write(visitor_id.as_bytes());
    siphasher::sip128::Hasher128::finish128(&hasher).as_u128()
}

impl Partial {
    pub fn add(&mut self, other: Partial) {
        self.sessions += other.sessions;
        self.bounces += other.bounces;
        self.duration_ms += other.duration_ms;
        self.pageviews += other.pageviews;
        for (mine, theirs) in self.groups.iter_mut().zip(other.groups) {
            for (key, count) in theirs {
                *mine.entry(key).or_default() += count;
            }
        }
        self.visitors.extend(other.visitors);
    }

    /// The overview: distinct visitors counted, each group cut to its `top_n` keys (by count,
    /// then key).
    pub fn finish(self, top_n: usize) -> Overview {
        let mut seen = hashbrown::HashSet::with_capacity(self.visitors.len());
        let visitors = self.visitors.into_iter().filter(|v| seen.insert(*v)).count() as u64;
        let [pages, referrers, countries, devices, browsers, utm_sources] = self.groups.map(|group| {
            let mut counts: Vec<Count> = group.into_iter().map(|(key, count)| Count { key, count }).collect();
            counts.sort_by(|a, b| b.count.cmp(&a.count).then_with(|| a.key.cmp(&b.key)));
            counts.truncate(top_n);
            counts
        });
        let sessions = self.sessions;
        Overview {
            visitors,
            sessions,
            pageviews: self.pageviews,
            bounce_rate: if sessions == 0 { 0.0 } else { self.bounces as f64 / sessions as f64 },
            avg_session_duration_ms: self.duration_ms.checked_div(sessions).unwrap_or(0),
            top_pages: pages,
            top_referrers: referrers,
            countries,
            devices,
            browsers,
            utm_sources,
        }
    }
}

/// The analytics overview of `[from_ms, to_ms)`, bots excluded: the snapshot's rows plus its
/// rollups' days.
pub async fn overview(snapshot: &Snapshot, from_ms: i64, to_ms: i64, top_n: usize) -> Result<Overview, StoreError> {
    let mut total = partial(snapshot, from_ms, to_ms).await?;
    for rollup in &snapshot.rollups {
        total.add(rollup.read()?);
    }
    Ok(total.finish(top_n))
}

/// The (sessions, pageviews) conditions of `[from_ms, to_ms)` narrowed by `filters` (their
/// meaning: [`crm_store::filters`]): each side restricted by the other through `session_id`.
fn filtered_clauses(snapshot: &Snapshot, from_ms: i64, to_ms: i64, filters: &Filters) -> (String, String) {
    let (base_s, base_e) = (sessions_in(snapshot, from_ms, to_ms), pageviews_in(snapshot, from_ms, to_ms));
    if filters.is_empty() {
        return (base_s, base_e);
    }
    let (session, page) = filters.sql(FilterDialect::DataFusion);
    let mut s = format!("{base_s} AND {session}");
    let mut e = format!("{base_e} AND {page}");
    if filters.has_page_conditions() {
        s.push_str(&format!(" AND session_id IN (SELECT session_id FROM events WHERE {base_e} AND {page})"));
    }
    if filters.has_session_conditions() {
        e.push_str(&format!(" AND session_id IN (SELECT session_id FROM sessions WHERE {base_s} AND {session})"));
    }
    (s, e)
}

/// The overview of `[from_ms, to_ms)` narrowed by `filters` ([`crm_store::filters`]), from the
/// snapshot's rows alone (a rollup holds no breakdown by the filters' dimensions).
pub async fn filtered_overview(snapshot: &Snapshot, from_ms: i64, to_ms: i64, top_n: usize, filters: &Filters) -> Result<Overview, StoreError> {
    Ok(filtered_partial(snapshot, from_ms, to_ms, filters).await?.finish(top_n))
}

/// The [`Partial`] of `[from_ms, to_ms)` over a snapshot (its rollups aside), bots excluded.
pub async fn partial(snapshot: &Snapshot, from_ms: i64, to_ms: i64) -> Result<Partial, StoreError> {
    filtered_partial(snapshot, from_ms, to_ms, &Filters::default()).await
}

async fn filtered_partial(snapshot: &Snapshot, from_ms: i64, to_ms: i64, filters: &Filters) -> Result<Partial, StoreError> {
    let ctx = context(snapshot).await?;
    register_sessions(&ctx, from_ms, to_ms).await?;
    let (s, e) = filtered_clauses(snapshot, from_ms, to_ms, filters);
    let totals = collect(&ctx, &format!("SELECT count(*), sum(CASE WHEN bounce THEN 1 ELSE 0 END), sum(duration_ms) FROM sessions WHERE {s}")).await?;
    let pageviews = one_u64(&collect(&ctx, &format!("SELECT count(*) FROM events WHERE {e}")).await?, 0)?;
    let ids = collect(&ctx, &format!("SELECT DISTINCT v FROM (SELECT visitor_id AS v FROM sessions WHERE {s} UNION ALL SELECT visitor_id AS v FROM events WHERE {e})")).await?;
    let visitors = visitor_keys(&ids, 0)?;
    let mut groups: [BTreeMap<String, u64>; 6] = Default::default();
    let queries = [
        ("coalesce(path, '/')", "events", e.clone()),
        ("referrer", "sessions", s.clone()),
        ("country", "sessions", s.clone()),
        ("device", "sessions", s.clone()),
        ("browser", "sessions", s.clone()),
        ("utm_source", "sessions", format!("{s} AND utm_source IS NOT NULL")),
    ];
    for (group, (column, table, filter)) in groups.iter_mut().zip(queries) {
        let rows = collect(&ctx, &format!("SELECT {column}, count(*) FROM {table} WHERE {filter} GROUP BY {column}")).await?;
        group.extend(strings(&rows, 0)?.into_iter().zip(u64s(&rows, 1)?));
    }
    Ok(Partial { sessions: one_u64(&totals, 0)?, bounces: one_u64(&totals, 1)?, duration_ms: one_u64(&totals, 2)?, pageviews, groups, visitors })
}

/// The overview's headline figures per bucket starting at `starts[k]`, each `step_ms` long,
/// clipped to `[from_ms, to_ms)`. A rollup's day adds to the bucket holding it (the caller
/// passes rollups only when buckets are whole days).
pub async fn timeseries(snapshot: &Snapshot, starts: &[i64], from_ms: i64, to_ms: i64, step_ms: i64, filters: &Filters) -> Result<Vec<SeriesPoint>, StoreError> {
    let Some(&first) = starts.first() else { return Ok(Vec::new()) };
    let ctx = context(snapshot).await?;
    register_sessions(&ctx, from_ms, to_ms).await?;
    let (s, e) = filtered_clauses(snapshot, from_ms, to_ms, filters);
    let bucket = |col: &str| format!("CAST(({col} - {first}) / {step_ms} AS BIGINT)");
    let totals = collect(
        &ctx,
        &format!("SELECT {b} AS b, count(*), sum(CASE WHEN bounce THEN 1 ELSE 0 END), sum(duration_ms) FROM sessions WHERE {s} GROUP BY {b}", b = bucket("start_ms")),
    )
    .await?;
    let views = collect(&ctx, &format!("SELECT {b} AS b, count(*) FROM events WHERE {e} GROUP BY {b}", b = bucket("ts_ms"))).await?;
    let visitors = collect(
        &ctx,
        &format!(
            "SELECT DISTINCT b, v FROM (SELECT {} AS b, visitor_id AS v FROM sessions WHERE {s} UNION ALL SELECT {} AS b, visitor_id AS v FROM events WHERE {e})",
            bucket("start_ms"),
            bucket("ts_ms")
        ),
    )
    .await?;
    let mut partials: Vec<Partial> = vec![Partial::default(); starts.len()];
    let slot = |b: i64| usize::try_from(b).ok().filter(|&i| i < starts.len());
    for (b, ((sessions, bounces), duration)) in i64s(&totals, 0)?.into_iter().zip(u64s(&totals, 1)?.into_iter().zip(u64s(&totals, 2)?).zip(u64s(&totals, 3)?)) {
        if let Some(i) = slot(b) {
            (partials[i].sessions, partials[i].bounces, partials[i].duration_ms) = (sessions, bounces, duration);
        }
    }
    for (b, pageviews) in i64s(&views, 0)?.into_iter().zip(u64s(&views, 1)?) {
        if let Some(i) = slot(b) {
            partials[i].pageviews = pageviews;
        }
    }
    for (b, key) in i64s(&visitors, 0)?.into_iter().zip(visitor_keys(&visitors, 1)?) {
        if let Some(i) = slot(b) {
            partials[i].visitors.push(key);
        }
    }
    for rollup in &snapshot.rollups {
        if let Some(i) = slot((rollup.day() * 86_400_000 - first).div_euclid(step_ms)) {
            let mut day = rollup.read()?;
            day.groups = Default::default();
            partials[i].add(day);
        }
    }
    Ok(starts
        .iter()
        .zip(partials)
        .map(|(&start, p)| {
            let visitors = p.visitors.iter().collect::<hashbrown::HashSet<_>>().len() as u64;
            SeriesPoint::from_totals(start, visitors, p.sessions, p.bounces, p.duration_ms, p.pageviews)
        })
        .collect())
}

/// Events of `[from_ms, to_ms)` that are not a bot's, with the columns the batch jobs aggregate:
/// `visitor_id, ts_ms, kind, name` (a custom event's name, else ""), `session_id, engaged_ms`
/// (an engagement's, else 0).
pub async fn usage_rows(snapshot: &Snapshot, from_ms: i64, to_ms: i64) -> Result<Vec<RecordBatch>, StoreError> {
    let ctx = context(snapshot).await?;
    collect(
        &ctx,
        &format!(
            "SELECT visitor_id, ts_ms, kind, coalesce(name, '') AS name, session_id, coalesce(engaged_ms, 0) AS engaged_ms
             FROM events WHERE ts_ms >= {from_ms} AND ts_ms < {to_ms} AND NOT is_bot{}",
            humans(snapshot)
        ),
    )
    .await
}

/// Form funnels of `[from_ms, to_ms)`, bots excluded.
pub async fn form_stats(snapshot: &Snapshot, from_ms: i64, to_ms: i64) -> Result<Vec<FormStats>, StoreError> {
    let ctx = context(snapshot).await?;
    let rows = collect(
        &ctx,
        &format!(
            "SELECT form_id, kind, count(*) FROM events WHERE ts_ms >= {from_ms} AND ts_ms < {to_ms} AND NOT is_bot{}
             AND kind IN ('form_view', 'form_start', 'form_submit') AND form_id IS NOT NULL GROUP BY form_id, kind",
            humans(snapshot)
        ),
    )
    .await?;
    let mut builder = FormStatsBuilder::default();
    for ((form_id, kind), count) in strings(&rows, 0)?.into_iter().zip(strings(&rows, 1)?).zip(u64s(&rows, 2)?) {
        builder.add_kind_count(&form_id, &kind, count);
    }
    Ok(builder.finish())
}

/// A string literal in DataFusion SQL (quotes doubled; backslashes are not escapes there).
fn quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A growth matcher as a condition over `events` (the same meaning as [`EventMatch::matches`]).
fn match_sql(matcher: &EventMatch) -> String {
    match matcher {
        EventMatch::Any => "TRUE".into(),
        EventMatch::Page(glob) => match growth::glob_form(glob) {
            GlobForm::All => "(kind = 'pageview')".into(),
            GlobForm::Exact(path) => format!("(kind = 'pageview' AND coalesce(path, '/') = {})", quote(path)),
            GlobForm::Prefix(prefix) => format!("(kind = 'pageview' AND starts_with(coalesce(path, '/'), {}))", quote(prefix)),
            GlobForm::Pattern => format!("(kind = 'pageview' AND regexp_like(coalesce(path, '/'), {}))", quote(&growth::glob_regex(glob))),
        },
        EventMatch::Event(name) => format!("(kind = 'custom' AND name = {})", quote(name)),
        // The property is inside the row's JSON: SQL selects the named events, and
        // `matched_events` checks the condition on the decoded row.
        EventMatch::EventWhere { name, .. } => format!("(kind = 'custom' AND name = {})", quote(name)),
    }
}

/// The rows of a growth report ([`crm_store::EventStore::matched_events`]) over a snapshot.
pub async fn matched_events(snapshot: &Snapshot, from_ms: i64, to_ms: i64, matchers: &[EventMatch], keep_unmatched: bool) -> Result<Vec<MatchedEvent>, StoreError> {
    let ctx = context(snapshot).await?;
    let mask = mask_sql(matchers);
    // Bits whose property condition is checked here, on the rows SQL found by name.
    let by_property: u32 = matchers.iter().enumerate().filter(|(_, m)| matches!(m, EventMatch::EventWhere { .. })).fold(0, |bits, (i, _)| bits | 1 << i);
    let json = match by_property {
        0 => "NULL".to_owned(),
        bits => format!("CASE WHEN (CAST({mask} AS BIGINT) & {bits}) <> 0 THEN json END"),
    };
    let keep = if keep_unmatched { " OR kind IN ('pageview', 'custom')" } else { "" };
    let rows = collect(
        &ctx,
        &format!(
            "SELECT visitor_id, ts_ms, CAST({mask} AS BIGINT) AS mask, {json} AS json FROM events WHERE ts_ms >= {from_ms} AND ts_ms < {to_ms} AND NOT is_bot{}
             AND (({mask}) <> 0{keep}) ORDER BY visitor_id, ts_ms, event_id",
            humans(snapshot)
        ),
    )
    .await?;
    let events = decode_optional::<StoredEvent>(&rows, 3)?;
    let mut out = Vec::with_capacity(events.len());
    for (((visitor_id, ts_ms), mask), event) in strings(&rows, 0)?.into_iter().zip(i64s(&rows, 1)?).zip(i64s(&rows, 2)?).zip(events) {
        let mut mask = mask as u32;
        if let Some(event) = event {
            for (i, m) in matchers.iter().enumerate().filter(|(i, _)| by_property & 1 << i != 0) {
                if !m.matches(&event) {
                    mask &= !(1 << i);
                }
            }
            if mask == 0 && !keep_unmatched {
                continue;
            }
        }
        out.push(MatchedEvent { visitor_id, ts_ms, mask });
    }
    Ok(out)
}

/// One bit per matcher an event satisfies, as SQL over `events` (property conditions are left
/// to the caller: the bit means "a custom event of that name").
fn mask_sql(matchers: &[EventMatch]) -> String {
    match matchers.is_empty() {
        true => "0".to_owned(),
        false => matchers.iter().enumerate().map(|(i, m)| format!("CASE WHEN {} THEN {} ELSE 0 END", match_sql(m), 1u64 << i)).collect::<Vec<_>>().join(" + "),
    }
}

/// The retention grid counted by DataFusion ([`crm_store::EventStore::retention_pushdown`]) when
/// cohorts start on an event and no matcher checks a property (those are decoded row by row):
/// each visitor's cohort (its first start event's period) and a bitmask of the periods it
/// returned in, then a count per (cohort, bitmask), instead of every matched row sorted and
/// copied out. `None`: the caller folds the matched rows.
pub async fn retention(snapshot: &Snapshot, spec: &RetentionSpec) -> Result<Option<RetentionReport>, StoreError> {
    let matchers = spec.matchers();
    if spec.start == CohortStart::FirstVisit || matchers.iter().any(|m| matches!(m, EventMatch::EventWhere { .. })) {
        return Ok(None);
    }
    let ctx = context(snapshot).await?;
    let (mask, start, period, end) = (mask_sql(&matchers), spec.start_ms, spec.period.ms(), spec.end_ms());
    let sql = format!(
        "SELECT cohort, periods, COUNT(*) AS visitors FROM (
            SELECT MIN(idx) FILTER (WHERE (mask & 1) <> 0) AS cohort,
                   BIT_OR(CAST(1 AS BIGINT) << idx) FILTER (WHERE (mask & 2) <> 0) AS periods
            FROM (SELECT visitor_id, (ts_ms - {start}) / {period} AS idx, CAST({mask} AS BIGINT) AS mask
                  FROM events WHERE ts_ms >= {start} AND ts_ms < {end} AND NOT is_bot{}) AS matched
            WHERE mask <> 0 GROUP BY visitor_id
         ) AS visitors WHERE cohort IS NOT NULL GROUP BY cohort, periods",
        humans(snapshot)
    );
    let rows = collect(&ctx, &sql).await?;
    let n = spec.cohorts as usize;
    let mut returning: Vec<Vec<u64>> = (0..n).map(|c| vec![0; n - c]).collect();
    for ((cohort, periods), visitors) in i64s(&rows, 0)?.into_iter().zip(i64s(&rows, 1)?).zip(u64s(&rows, 2)?) {
        let Some(cohort) = usize::try_from(cohort).ok().filter(|&c| c < n) else { continue };
        let counts = &mut returning[cohort];
        counts[0] += visitors;
        for (later, count) in counts.iter_mut().enumerate().skip(1) {
            if (periods >> (cohort + later)) & 1 == 1 {
                *count += visitors;
            }
        }
    }
    Ok(Some(growth::retention_from_grid(spec, returning)))
}

/// The custom events of the window from human visitors, listed ([`crm_store::explore`]).
pub async fn custom_events(snapshot: &Snapshot, from_ms: i64, to_ms: i64, top: usize) -> Result<Vec<CustomEventStats>, StoreError> {
    let ctx = context(snapshot).await?;
    let sql = format!("SELECT json FROM events WHERE kind = 'custom' AND ts_ms >= {from_ms} AND ts_ms < {to_ms} AND NOT is_bot{}", humans(snapshot));
    let mut builder = CustomEventsBuilder::default();
    for event in decode::<StoredEvent>(&collect(&ctx, &sql).await?, 0)? {
        builder.add(&event);
    }
    Ok(builder.finish(top))
}

/// The pages around human views of pages matching `glob`: the neighbours come from window
/// functions over each session's pageviews of the window, in (time, id) order.
pub async fn page_paths(snapshot: &Snapshot, from_ms: i64, to_ms: i64, glob: &str, top: usize) -> Result<PagePaths, StoreError> {
    let ctx = context(snapshot).await?;
    let page = |column: &str| match growth::glob_form(glob) {
        GlobForm::All => "TRUE".to_owned(),
        GlobForm::Exact(path) => format!("{column} = {}", quote(path)),
        GlobForm::Prefix(prefix) => format!("starts_with({column}, {})", quote(prefix)),
        GlobForm::Pattern => format!("regexp_like({column}, {})", quote(&growth::glob_regex(glob))),
    };
    let order = "OVER (PARTITION BY session_id ORDER BY ts_ms, event_id)";
    let pageviews = format!("kind = 'pageview' AND ts_ms >= {from_ms} AND ts_ms < {to_ms} AND NOT is_bot{}", humans(snapshot));
    // Only the sessions holding a view of the page are sorted (their other pageviews are its
    // neighbours), not every pageview of the window.
    let rows = collect(
        &ctx,
        &format!(
            "SELECT prev, next, CAST(count(*) AS BIGINT) FROM (
               SELECT coalesce(path, '/') AS p, LAG(coalesce(path, '/')) {order} AS prev, LEAD(coalesce(path, '/')) {order} AS next
               FROM events WHERE {pageviews}
                 AND session_id IN (SELECT session_id FROM events WHERE {pageviews} AND {})
             ) WHERE {} GROUP BY prev, next",
            page("coalesce(path, '/')"),
            page("p"),
        ),
    )
    .await?;
    let mut builder = PathsBuilder::new(glob);
    for ((prev, next), count) in optional_strings(&rows, 0)?.into_iter().zip(optional_strings(&rows, 1)?).zip(i64s(&rows, 2)?) {
        builder.add_pair(prev.as_deref(), next.as_deref(), count as u64);
    }
    Ok(builder.finish(top))
}

/// Events of `[from_ms, to_ms)` after `(ts, id)`, oldest first, at most `limit + 1` (the extra
/// row tells the caller there is more).
pub async fn scan(snapshot: &Snapshot, from_ms: i64, to_ms: i64, after: Option<(i64, u128)>, limit: usize) -> Result<Vec<StoredEvent>, StoreError> {
    let ctx = context(snapshot).await?;
    let mut out: Vec<StoredEvent> = Vec::new();
    let from = match after {
        Some((ts, id)) => {
            // Rows sharing the cursor's millisecond are few: filter their ids here, which keeps
            // 16-byte id comparisons out of SQL.
            let mut same: Vec<StoredEvent> = decode(&collect(&ctx, &format!("SELECT json FROM events WHERE ts_ms = {ts} AND ts_ms < {to_ms}")).await?, 0)?;
            same.retain(|e| e.event_id.as_u128() > id);
            same.sort_by_key(|e| e.event_id);
            out.extend(same);
            ts + 1
        }
        None => from_ms,
    };
    if out.len() <= limit {
        let rest = limit + 1 - out.len();
        let batches = collect(&ctx, &format!("SELECT json FROM events WHERE ts_ms >= {from} AND ts_ms < {to_ms} ORDER BY ts_ms, event_id LIMIT {rest}")).await?;
        out.extend(decode::<StoredEvent>(&batches, 0)?);
    }
    out.truncate(limit + 1);
    Ok(out)
}

/// Sessions (latest versions) that started in `[from_ms, to_ms)`, oldest first.
pub async fn sessions_between(snapshot: &Snapshot, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Session>, StoreError> {
    let ctx = context(snapshot).await?;
    let window = |alias: &str| format!("{alias}start_ms >= {from_ms} AND {alias}start_ms < {to_ms}");
    let batches = collect(
        &ctx,
        &format!(
            "SELECT r.json FROM sessions_raw r JOIN (SELECT session_id, max(version) AS v FROM sessions_raw WHERE {} GROUP BY session_id) m
             ON r.session_id = m.session_id AND r.version = m.v WHERE {} ORDER BY r.start_ms, r.session_id LIMIT {limit}",
            window(""),
            window("r.")
        ),
    )
    .await?;
    decode(&batches, 0)
}
