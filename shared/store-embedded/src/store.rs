//! [`ColumnarStore`]: a whole [`crm_store::Store`] with events and sessions in columnar parts and
//! visitor profiles in memory with checkpointed runs ([`ColumnarEvents`]), and the low-volume
//! rest in the redb store (CRM records, configuration, dead letters). It runs the shared
//! conformance suite.
//!
//! Durability: a write that carries log positions is acknowledged once its events and
//! sessions are buffered and its records are in redb; the events become durable at the next
//! commit point, which `durable_positions` reports so the processor commits the log only that
//! far. A write without log positions (API, simulator, tests) runs a commit point before it
//! returns, so it is durable on `Ok` as with the redb store.

use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use crm_schemas::{DeadLetter, Session, StoredEvent, VisitorProfile};
use crm_store::growth::{EventMatch, MatchedEvent};
use crm_store::{
    forward_roles, Durable, EmbeddedStore, EventStore, FormStats, OrgVisitors, Overview, Page, PipelineStore, ProfileStore, Result, SeriesPoint, StoreError,
    VisitorQuery, WriteBatch, WriteOutcome,
};
use uuid::Uuid;

use crate::events::ColumnarEvents;

/// When the background task makes buffered rows durable, merges parts and drops old days.
#[derive(Clone, Debug)]
pub struct Maintenance {
    /// Longest time acknowledged rows wait for a commit point.
    pub commit_interval: Duration,
    /// Buffered events that trigger a commit point before the interval is up. Writers wait
    /// while twice as many are buffered (a commit point that falls behind, e.g. while profile
    /// runs fold, slows the processor down instead of growing memory).
    pub commit_events: usize,
    pub compact_interval: Duration,
    /// Parts of one (stream, site, day) that trigger a merge.
    pub compact_min_parts: usize,
    /// Keep this many days (with today); `None` keeps everything.
    pub retention_days: Option<u32>,
}

impl Default for Maintenance {
    fn default() -> Self {
        Maintenance {
            commit_interval: Duration::from_secs(2),
            commit_events: 200_000,
            compact_interval: Duration::from_secs(60),
            compact_min_parts: 16,
            retention_days: None,
        }
    }
}

/// redb's page cache for the records half (the redb store alone defaults to 256 MiB, most of it
/// for events and profiles, which live in parts and memory here).
const RECORDS_CACHE_BYTES: usize = 32 * 1024 * 1024;

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

#[derive(Clone)]
pub struct ColumnarStore {
    columnar: Arc<ColumnarEvents>,
    records: Arc<EmbeddedStore>,
    /// [`EmbeddedStore::record_positions`], kept current by `write`.
    record_positions: Arc<Mutex<BTreeMap<String, u64>>>,
    backpressure: Arc<Backpressure>,
}

/// Holds writers while too many events wait for a commit point (set by the maintenance task,
/// which is what drains them; a store without it never waits).
#[derive(Default)]
struct Backpressure {
    /// Buffered events at which writers wait; 0 = never.
    limit: std::sync::atomic::AtomicUsize,
    drained: tokio::sync::Notify,
}

impl ColumnarStore {
    /// Opens `<data_dir>/store.redb` (which also takes the data directory's lock) and
    /// `<data_dir>/columnar/`. A data directory the redb store wrote is converted first: its
    /// events, sessions and profiles move into columnar parts ([`crate::convert`]).
    pub fn open(data_dir: &Path) -> Result<ColumnarStore> {
        Self::open_with_budget(data_dir, crate::profiles::DEFAULT_BUDGET_BYTES)
    }

    /// [`ColumnarStore::open`] keeping about `profile_budget` bytes of whole profiles in memory.
    pub fn open_with_budget(data_dir: &Path, profile_budget: usize) -> Result<ColumnarStore> {
        Self::open_converting(data_dir, profile_budget, crate::convert::CHUNK, |_| Ok(()))
    }

    /// [`ColumnarStore::open`] with the conversion's chunk size and a hook run after each
    /// durable chunk (tests interrupt the conversion there).
    pub(crate) fn open_converting(data_dir: &Path, profile_budget: usize, chunk: usize, after_chunk: impl FnMut(usize) -> Result<()>) -> Result<ColumnarStore> {
        // The records are low-volume point reads: a small page cache is enough.
        let mut records = EmbeddedStore::open_with_cache(data_dir, RECORDS_CACHE_BYTES)?;
        let columnar = Arc::new(ColumnarEvents::open_with_budget(&data_dir.join("columnar"), profile_budget)?);
        crate::convert::convert(&mut records, &columnar, chunk, after_chunk)?;
        let record_positions = Arc::new(Mutex::new(records.record_positions()?));
        Ok(ColumnarStore { columnar, records: Arc::new(records), record_positions, backpressure: Arc::default() })
    }

    /// Makes every acknowledged event and session durable now (a timer and shutdown call it).
    pub async fn commit_point(&self) -> Result<()> {
        self.commit(true).await
    }

    /// A commit point, with the profile-run fold after it (`fold`) or without (the maintenance
    /// task folds on its own thread so the next commit points need not wait for it).
    async fn commit(&self, fold: bool) -> Result<()> {
        let columnar = self.columnar.clone();
        let done = tokio::task::spawn_blocking(move || if fold { columnar.commit_point() } else { columnar.commit_point_failing(None) })
            .await
            .map_err(|e| StoreError::Backend { message: format!("commit point task failed: {e}"), retryable: true })?
            .map_err(StoreError::from);
        self.backpressure.drained.notify_waiters();
        done
    }

    /// Waits while the buffer holds the backpressure limit or more (see [`Maintenance`]).
    async fn wait_for_room(&self) {
        let full = || {
            let limit = self.backpressure.limit.load(std::sync::atomic::Ordering::Relaxed);
            limit != 0 && self.columnar.buffered() >= limit
        };
        if !full() {
            return;
        }
        let started = Instant::now();
        while full() {
            // Re-checked on a timer too: a commit point may finish between the check and the wait.
            let _ = tokio::time::timeout(Duration::from_millis(100), self.backpressure.drained.notified()).await;
        }
        tracing::debug!(waited_ms = started.elapsed().as_millis() as u64, "write waited for a commit point");
    }

    pub fn columnar(&self) -> &ColumnarEvents {
        &self.columnar
    }

    /// The redb store holding the records.
    pub fn records(&self) -> &EmbeddedStore {
        &self.records
    }

    /// Runs commit points, compaction, day rollups and retention until `shutdown` resolves, then makes
    /// everything buffered durable one last time. Failures are logged and retried on the next
    /// tick: a commit point that fails leaves its rows buffered and the log uncommitted.
    pub fn spawn_maintenance(&self, config: Maintenance, shutdown: impl Future<Output = ()> + Send + 'static) -> tokio::task::JoinHandle<()> {
        let store = self.clone();
        self.backpressure.limit.store(config.commit_events.saturating_mul(2), std::sync::atomic::Ordering::Relaxed);
        tokio::spawn(async move {
            let tick = config.commit_interval.min(Duration::from_millis(100));
            let (mut last_commit, mut last_compact) = (Instant::now(), Instant::now());
            let mut fold: Option<tokio::task::JoinHandle<()>> = None;
            tokio::pin!(shutdown);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(tick) => {}
                    _ = &mut shutdown => break,
                }
                if store.columnar.buffered() >= config.commit_events || last_commit.elapsed() >= config.commit_interval {
                    last_commit = Instant::now();
                    if let Err(err) = store.commit(false).await {
                        tracing::warn!(error = %err, "commit point failed; rows stay buffered and are retried");
                    }
                    if fold.as_ref().is_none_or(|f| f.is_finished()) && store.columnar.needs_fold() {
                        let columnar = store.columnar.clone();
                        fold = Some(tokio::task::spawn_blocking(move || {
                            if let Err(err) = columnar.fold_profile_runs() {
                                tracing::warn!(error = %err, "folding profile runs failed; retried after the next commit point");
                            }
                        }));
                    }
                }
                if last_compact.elapsed() >= config.compact_interval {
                    last_compact = Instant::now();
                    let columnar = store.columnar.clone();
                    let config = config.clone();
                    let done = tokio::task::spawn_blocking(move || -> crate::Result<()> {
                        let now = now_ms();
                        let merged = columnar.compact(now, config.compact_min_parts)?;
                        if merged.groups > 0 {
                            tracing::info!(groups = merged.groups, inputs = merged.inputs, "compacted parts");
                        }
                        if let Some(days) = config.retention_days {
                            columnar.drop_days_before(now.div_euclid(86_400_000) - i64::from(days) + 1)?;
                        }
                        Ok(())
                    })
                    .await;
                    match done {
                        Ok(Ok(())) => {}
                        Ok(Err(err)) => tracing::warn!(error = %err, "compaction failed; retried at the next interval"),
                        Err(err) => tracing::warn!(error = %err, "compaction task failed"),
                    }
                    match store.columnar.build_rollups(now_ms()).await {
                        Ok(0) => {}
                        Ok(built) => tracing::info!(built, "rolled up closed days"),
                        Err(err) => tracing::warn!(error = %err, "building day rollups failed; overviews scan those days until the next interval"),
                    }
                }
            }
            if let Some(fold) = fold {
                let _ = fold.await;
            }
            // Nothing drains the buffer any more: writers (the processor's flush) go ahead.
            store.backpressure.limit.store(0, std::sync::atomic::Ordering::Relaxed);
            store.backpressure.drained.notify_waiters();
            if let Err(err) = store.commit_point().await {
                tracing::warn!(error = %err, "final commit point failed; the log replays what it held");
            }
        })
    }
}

#[async_trait]
impl PipelineStore for ColumnarStore {
    async fn unseen_event_ids(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        Ok(self.columnar.unseen(ids)?)
    }

    /// Records first, then events: a failure between the two leaves records ahead of events,
    /// never behind. Records are durable at once while events wait for the commit point, so
    /// after a crash the log replays batches whose records are already written. Those were
    /// derived from a lead state the replay is still catching up to (its profiles come from the
    /// last checkpoint), so writing them again would add a score dip and recovery to the
    /// history and could fire an alert again in a new window: a batch whose every log position
    /// is at or below the highest one records were written for keeps only its dead letters
    /// (keyed by content, so idempotent). The lead state stored already reflects it.
    async fn write(&self, batch: Arc<WriteBatch>) -> Result<WriteOutcome> {
        self.wait_for_room().await;
        let replayed = !batch.log_positions.is_empty() && {
            let written = self.record_positions.lock().unwrap_or_else(|p| p.into_inner());
            batch.log_positions.iter().all(|(key, offset)| written.get(key).is_some_and(|high| offset <= high))
        };
        let mut records = WriteBatch { dead_letters: batch.dead_letters.clone(), ..WriteBatch::default() };
        if replayed {
            let skipped = batch.leads.len() + batch.conflicts.len() + batch.score_points.len() + batch.alerts.len() + batch.insight_requests.len();
            if skipped > 0 {
                tracing::info!(skipped, "replayed batch: its lead, alert and insight records are already written");
            }
        } else {
            records.leads = batch.leads.clone();
            records.conflicts = batch.conflicts.clone();
            records.score_points = batch.score_points.clone();
            records.alerts = batch.alerts.clone();
            records.insight_requests = batch.insight_requests.clone();
        }
        if !records.is_empty() {
            records.log_positions = batch.log_positions.clone();
            self.records.write(Arc::new(records)).await?;
            let mut written = self.record_positions.lock().unwrap_or_else(|p| p.into_inner());
            for (key, &offset) in &batch.log_positions {
                let high = written.entry(key.clone()).or_insert(offset);
                *high = (*high).max(offset);
            }
        }
        let (events_written, duplicates_skipped) = self.columnar.append(&batch.events, &batch.sessions, &batch.visitors, &batch.log_positions)?;
        if batch.log_positions.is_empty() {
            self.commit_point().await?;
        }
        Ok(WriteOutcome { events_written, duplicates_skipped })
    }

    fn durable_positions(&self) -> Durable {
        self.columnar.durable_positions()
    }

    async fn flush(&self) -> Result<()> {
        self.commit_point().await
    }
}

#[async_trait]
impl EventStore for ColumnarStore {
    async fn visitor_events(&self, site_id: &str, visitor_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        self.columnar.visitor_events(site_id, visitor_id, limit, cursor)
    }

    async fn events_of_visitors(&self, site_id: &str, visitor_ids: &[String], limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        self.columnar.events_of_visitors(site_id, visitor_ids, limit, cursor)
    }

    async fn sessions_between(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Session>> {
        self.columnar.sessions_between(site_id, from_ms, to_ms, limit).await
    }

    async fn scan_events(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>> {
        self.columnar.scan_events(site_id, from_ms, to_ms, limit, cursor).await
    }

    async fn overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize) -> Result<Overview> {
        self.columnar.overview(site_id, from_ms, to_ms, top_n).await
    }

    async fn filtered_overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize, filters: &crm_store::filters::Filters) -> Result<Overview> {
        self.columnar.filtered_overview(site_id, from_ms, to_ms, top_n, filters).await
    }

    async fn filtered_timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64, filters: &crm_store::filters::Filters) -> Result<Vec<SeriesPoint>> {
        self.columnar.filtered_timeseries(site_id, from_ms, to_ms, step_ms, filters).await
    }

    async fn dead_letters(&self, site_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<DeadLetter>> {
        // Dead letters are rare and keyed by time: they stay in redb, where appends are cheap.
        self.records.dead_letters(site_id, limit, cursor).await
    }

    async fn form_stats(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<FormStats>> {
        self.columnar.form_stats(site_id, from_ms, to_ms).await
    }

    async fn timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64) -> Result<Vec<SeriesPoint>> {
        self.columnar.timeseries(site_id, from_ms, to_ms, step_ms).await
    }

    async fn matched_events(&self, site_id: &str, from_ms: i64, to_ms: i64, matchers: &[EventMatch], keep_unmatched: bool) -> Result<Vec<MatchedEvent>> {
        self.columnar.matched_events(site_id, from_ms, to_ms, matchers, keep_unmatched).await
    }

    async fn retention_pushdown(&self, site_id: &str, spec: &crm_store::growth::RetentionSpec) -> Result<Option<crm_store::growth::RetentionReport>> {
        self.columnar.retention(site_id, spec).await
    }

    async fn custom_events(&self, site_id: &str, from_ms: i64, to_ms: i64, top: usize) -> Result<Vec<crm_store::explore::CustomEventStats>> {
        self.columnar.custom_events(site_id, from_ms, to_ms, top).await
    }

    async fn page_paths(&self, site_id: &str, from_ms: i64, to_ms: i64, glob: &str, top: usize) -> Result<crm_store::explore::PagePaths> {
        self.columnar.page_paths(site_id, from_ms, to_ms, glob, top).await
    }

    fn sql_dialect(&self) -> Option<crm_store::sql_guard::SqlDialect> {
        Some(crm_store::sql_guard::SqlDialect::DataFusion)
    }

    async fn query_sql(&self, site_id: &str, sql: &crm_store::sql_guard::CheckedSql, limits: &crm_store::sql_guard::SqlLimits) -> Result<crm_store::sql_guard::SqlResult> {
        // What the guard parsed, printed back: comments and formatting gone.
        self.columnar.query_sql(site_id, &sql.statement.to_string(), limits).await
    }
}

#[async_trait]
impl ProfileStore for ColumnarStore {
    async fn visitor(&self, site_id: &str, visitor_id: &str) -> Result<Option<VisitorProfile>> {
        Ok(self.columnar.profile(site_id, visitor_id)?)
    }

    async fn visitors(&self, keys: &[(String, String)]) -> Result<Vec<VisitorProfile>> {
        Ok(self.columnar.profiles_of(keys)?)
    }

    async fn find_visitor(&self, visitor_id: &str) -> Result<Vec<VisitorProfile>> {
        Ok(self.columnar.find_profiles(visitor_id)?)
    }

    async fn list_visitors(&self, query: &VisitorQuery) -> Result<Page<VisitorProfile>> {
        self.columnar.list_profiles(query)
    }

    async fn visitor_orgs(&self, site_id: &str, limit: usize) -> Result<Vec<OrgVisitors>> {
        Ok(self.columnar.profile_orgs(site_id, limit))
    }

    async fn bot_visitors(&self, site_id: &str, since_ms: i64) -> Result<Vec<String>> {
        Ok(self.columnar.bot_visitors(site_id, since_ms))
    }
}

forward_roles!(impl [] ColumnarStore, records; LeadStore, WorkflowStore, AccountStore, ConfigStore, KnowledgeStore);

/// Tombstones live with the records; an erase clears the columnar half (events, sessions,
/// profiles: events/erase.rs), then the records half.
#[async_trait]
impl crm_store::PrivacyStore for ColumnarStore {
    async fn put_erasure(&self, erasure: &crm_schemas::Erasure) -> Result<()> {
        self.records.put_erasure(erasure).await
    }

    async fn erasures(&self, site_id: &str) -> Result<Vec<crm_schemas::Erasure>> {
        self.records.erasures(site_id).await
    }

    async fn erase_subject(&self, erasure: &crm_schemas::Erasure, needles: &[String]) -> Result<BTreeMap<String, u64>> {
        let columnar = self.columnar.clone();
        let (site, visitors) = (erasure.site_id.clone(), erasure.visitor_ids.clone());
        let erased = tokio::task::spawn_blocking(move || columnar.erase_visitors(&site, &visitors))
            .await
            .map_err(|e| StoreError::Backend { message: format!("erase task failed: {e}"), retryable: true })??;
        let mut counts = self.records.erase_subject(erasure, needles).await?;
        crm_schemas::add_count(&mut counts, "events", erased.events);
        crm_schemas::add_count(&mut counts, "sessions", erased.sessions);
        crm_schemas::add_count(&mut counts, "profiles", erased.profiles);
        self.backpressure.drained.notify_waiters();
        Ok(counts)
    }

    async fn drop_site_before(&self, site_id: &str, before_ms: i64) -> Result<BTreeMap<String, u64>> {
        let columnar = self.columnar.clone();
        let site = site_id.to_owned();
        let first_kept_day = before_ms.div_euclid(86_400_000);
        let dropped = tokio::task::spawn_blocking(move || columnar.drop_site_days_before(&site, first_kept_day))
            .await
            .map_err(|e| StoreError::Backend { message: format!("retention task failed: {e}"), retryable: true })??;
        // Dead letters live with the records (whose event tables are empty here).
        let mut counts = self.records.drop_site_before(site_id, before_ms).await?;
        for part in dropped {
            let kind = match part.stream {
                crate::manifest::Stream::Events => "events",
                crate::manifest::Stream::Sessions => "sessions",
                _ => continue,
            };
            crm_schemas::add_count(&mut counts, kind, part.rows);
        }
        Ok(counts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_store::conformance::StoreHarness;

    struct Harness(tempfile::TempDir);

    #[async_trait]
    impl StoreHarness for Harness {
        async fn open(&self) -> Arc<dyn crm_store::Store> {
            Arc::new(ColumnarStore::open(self.0.path()).expect("open columnar store"))
        }
    }

    crm_store::store_conformance_suite!(Harness(tempfile::tempdir().unwrap()));

    /// A write waits while the buffer is at the limit, until a commit point drains it (the
    /// limit is set by hand here: no maintenance task runs, so nothing else drains it).
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn writes_wait_for_a_commit_point_while_the_buffer_is_full() {
        let dir = tempfile::tempdir().unwrap();
        let store = ColumnarStore::open(dir.path()).unwrap();
        store.backpressure.limit.store(3, std::sync::atomic::Ordering::Relaxed);
        let log = |offset: u64| BTreeMap::from([("log/events/0".to_string(), offset)]);
        let batch = |offset: u64, visitor: &str| {
            let events = (0..3).map(|i| sample_event("s1", visitor, now_ms() + i, EventBody::Pageview, "/")).collect();
            Arc::new(WriteBatch { events, log_positions: log(offset), ..WriteBatch::default() })
        };
        store.write(batch(1, "v1")).await.unwrap();
        let waiting = tokio::spawn({
            let store = store.clone();
            let next = batch(2, "v2");
            async move { store.write(next).await }
        });
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert!(!waiting.is_finished(), "three events are buffered: the next write waits");
        assert_eq!(store.columnar().buffered(), 3);
        store.commit_point().await.unwrap();
        let written = tokio::time::timeout(Duration::from_secs(5), waiting).await.expect("the commit point lets it through").unwrap().unwrap();
        assert_eq!(written.events_written, 3);
        assert_eq!(store.visitor_events("s1", "v2", 10, None).await.unwrap().items.len(), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn maintenance_commits_on_its_interval_compacts_and_flushes_at_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = ColumnarStore::open(dir.path()).unwrap();
        let config = Maintenance { commit_interval: Duration::from_millis(50), compact_interval: Duration::from_millis(50), compact_min_parts: 3, ..Maintenance::default() };
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let task = store.spawn_maintenance(config, async move {
            let _ = stopped.await;
        });
        let log = |offset: u64| BTreeMap::from([("log/events/0".to_string(), offset)]);
        let now = now_ms();
        for offset in 0..4u64 {
            let batch = WriteBatch { events: vec![sample_event("s1", "v1", now + offset as i64, EventBody::Pageview, "/")], log_positions: log(offset), ..WriteBatch::default() };
            store.write(Arc::new(batch)).await.unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while !store.durable_positions().covers(&log(offset)) {
                assert!(Instant::now() < deadline, "no commit point within 10 s");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        }
        // Four commit points, one part each; a merge happens whenever three are waiting, so at
        // most two parts are left.
        let deadline = Instant::now() + Duration::from_secs(10);
        while store.columnar().part_count() > 2 {
            assert!(Instant::now() < deadline, "parts were not compacted");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        // Buffered when shutdown comes: the final commit point makes it durable.
        let last = WriteBatch { events: vec![sample_event("s1", "v1", now + 10, EventBody::Pageview, "/")], log_positions: log(9), ..WriteBatch::default() };
        store.write(Arc::new(last)).await.unwrap();
        stop.send(()).unwrap();
        task.await.unwrap();
        assert!(store.durable_positions().covers(&log(9)));
        drop(store);
        let store = ColumnarStore::open(dir.path()).unwrap();
        assert_eq!(store.visitor_events("s1", "v1", 10, None).await.unwrap().items.len(), 5);
    }

    use crm_schemas::EventBody;
    use crm_store::conformance::{sample_event, sample_session};
    use std::collections::BTreeMap;

    const T0: i64 = 1_700_000_000_000;

    /// Every read the columnar half answers, as comparable values.
    async fn reads(store: &ColumnarStore) -> (Overview, Vec<SeriesPoint>, Vec<FormStats>, Vec<Uuid>, Vec<Session>, Vec<Uuid>) {
        let overview = store.overview("s1", T0 - 10_000, T0 + 10_000_000, 5).await.unwrap();
        let series = store.timeseries("s1", T0 - 10_000, T0 + 10_000_000, 3_600_000).await.unwrap();
        let forms = store.form_stats("s1", T0 - 10_000, T0 + 10_000_000).await.unwrap();
        let mut scanned = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let page = store.scan_events("s1", T0 - 10_000, T0 + 10_000_000, 3, cursor.as_deref()).await.unwrap();
            scanned.extend(page.items.iter().map(|e| e.event_id));
            match page.next_cursor {
                Some(next) => cursor = Some(next),
                None => break,
            }
        }
        let sessions = store.sessions_between("s1", T0 - 10_000, T0 + 10_000_000, 100).await.unwrap();
        let timeline = store.events_of_visitors("s1", &["v1".into(), "v2".into()], 100, None).await.unwrap().items.iter().map(|e| e.event_id).collect();
        (overview, series, forms, scanned, sessions, timeline)
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn buffered_rows_read_the_same_as_committed_ones_and_sessions_keep_their_latest_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = ColumnarStore::open(dir.path()).unwrap();
        let mut bot = sample_event("s1", "bot", T0 + 5, EventBody::Pageview, "/");
        bot.is_bot = true;
        let events = vec![
            sample_event("s1", "v1", T0, EventBody::Pageview, "/"),
            sample_event("s1", "v1", T0 + 1_000, EventBody::Pageview, "/pricing"),
            sample_event("s1", "v2", T0 + 1_000, EventBody::FormView { form_id: "demo".into() }, "/demo"),
            sample_event("s1", "v2", T0 + 2_000, EventBody::FormStart { form_id: "demo".into() }, "/demo"),
            sample_event("s1", "v2", T0 + 4_000_000, EventBody::Pageview, "/later"),
            sample_event("s2", "v1", T0, EventBody::Pageview, "/elsewhere"),
            bot,
        ];
        let first_state = sample_session("s1", "v1", T0, 1, 0);
        let log = |offset: u64| BTreeMap::from([("log/events/0".to_string(), offset)]);
        let batch = WriteBatch { events: events.clone(), sessions: vec![first_state.clone(), sample_session("s1", "v2", T0 + 1_000, 2, 30_000)], log_positions: log(10), ..WriteBatch::default() };
        store.write(Arc::new(batch)).await.unwrap();
        assert!(!store.durable_positions().covers(&log(10)), "acknowledged, not durable yet");
        let buffered = reads(&store).await;
        assert_eq!(buffered.0.pageviews, 3);
        assert_eq!(buffered.3.len(), 6, "the scan pages through every event of the site");
        store.commit_point().await.unwrap();
        assert!(store.durable_positions().covers(&log(10)));
        assert_eq!(reads(&store).await, buffered, "a commit point changes where rows live, not what reads return");

        // The open session grows: its new state (buffered) wins over the committed one, before
        // and after the next commit point and a reopen.
        let grown = sample_session("s1", "v1", T0, 3, 60_000);
        assert_eq!(grown.session_id, first_state.session_id);
        store.write(Arc::new(WriteBatch { sessions: vec![grown.clone()], log_positions: log(11), ..WriteBatch::default() })).await.unwrap();
        let latest = |sessions: &[Session]| sessions.iter().find(|s| s.session_id == grown.session_id).cloned();
        assert_eq!(latest(&store.sessions_between("s1", T0 - 1, T0 + 1, 10).await.unwrap()), Some(grown.clone()));
        let overview = store.overview("s1", T0 - 10_000, T0 + 10_000_000, 5).await.unwrap();
        assert_eq!(overview.sessions, 2, "one row per session, not per version");
        store.commit_point().await.unwrap();
        drop(store);
        let store = ColumnarStore::open(dir.path()).unwrap();
        assert_eq!(latest(&store.sessions_between("s1", T0 - 1, T0 + 1, 10).await.unwrap()), Some(grown.clone()));
        // Versions continue after the reopen: a later state still wins.
        let final_state = sample_session("s1", "v1", T0, 4, 90_000);
        store.write(Arc::new(WriteBatch { sessions: vec![final_state.clone()], ..WriteBatch::default() })).await.unwrap();
        drop(store);
        let store = ColumnarStore::open(dir.path()).unwrap();
        assert_eq!(latest(&store.sessions_between("s1", T0 - 1, T0 + 1, 10).await.unwrap()), Some(final_state));
    }

    /// After a crash the log replays batches whose records were written while their events
    /// were still buffered. The replay derives those records again from older profiles: the
    /// store keeps the ones it has (no score dip in the history, no second alert), and takes
    /// records again from the first batch past them.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_replayed_batch_does_not_write_its_lead_records_twice() {
        use crm_schemas::ScorePoint;
        use crm_store::conformance::{sample_alert, sample_lead};
        use crm_store::{LeadStore, WorkflowStore};
        let dir = tempfile::tempdir().unwrap();
        let log = |offset: u64| BTreeMap::from([("log/events/0".to_string(), offset)]);
        let lead = sample_lead("s1", "ada@acme.example", 85, T0);
        let point = |score: u8, at_ms: i64| ScorePoint { site_id: "s1".into(), lead_id: lead.lead_id.clone(), at_ms, score };
        let batch = |offset: u64, score: u8, at_ms: i64, alert: &str| WriteBatch {
            events: vec![sample_event("s1", "v1", T0 + offset as i64, EventBody::Pageview, "/pricing")],
            leads: vec![crm_schemas::Lead { score, ..lead.clone() }],
            score_points: vec![point(score, at_ms)],
            alerts: vec![sample_alert("s1", alert, at_ms, at_ms)],
            log_positions: log(offset),
            ..WriteBatch::default()
        };
        let store = ColumnarStore::open(dir.path()).unwrap();
        store.write(Arc::new(batch(10, 40, T0, "a-first"))).await.unwrap();
        store.commit_point().await.unwrap();
        // Acknowledged, records written, events not yet durable: then the process dies.
        store.write(Arc::new(batch(20, 85, T0 + 1_000, "a-crossed"))).await.unwrap();
        drop(store);

        let store = ColumnarStore::open(dir.path()).unwrap();
        assert!(!store.durable_positions().covers(&log(20)), "the log replays offsets 11..=20");
        // The replay recomputes the lead from the checkpointed profile: a lower score, later.
        let outcome = store.write(Arc::new(batch(20, 60, T0 + 60_000, "a-replayed"))).await.unwrap();
        assert_eq!(outcome.events_written, 1, "the event itself was lost with the buffer and is stored now");
        let key = [("s1".to_string(), lead.lead_id.clone())];
        assert_eq!(store.leads(&key).await.unwrap()[0].score, 85, "the stored lead state stays");
        let history: Vec<u8> = store.score_history("s1", &lead.lead_id, 10).await.unwrap().iter().map(|p| p.score).collect();
        assert_eq!(history, vec![40, 85], "no dip and recovery from the replay");
        let alerts: Vec<String> = store.alerts("s1", 10).await.unwrap().into_iter().map(|a| a.alert_id).collect();
        assert_eq!(alerts.len(), 2, "{alerts:?}");
        assert!(!alerts.contains(&"a-replayed".to_string()));

        // Past the replay, records are written again, and across a reopen.
        store.write(Arc::new(batch(21, 90, T0 + 120_000, "a-new"))).await.unwrap();
        store.commit_point().await.unwrap();
        drop(store);
        let store = ColumnarStore::open(dir.path()).unwrap();
        assert_eq!(store.leads(&key).await.unwrap()[0].score, 90);
        let history: Vec<u8> = store.score_history("s1", &lead.lead_id, 10).await.unwrap().iter().map(|p| p.score).collect();
        assert_eq!(history, vec![40, 85, 90]);
        assert_eq!(store.alerts("s1", 10).await.unwrap().len(), 3);
        // A write that did not come from the log always writes its records.
        let api = WriteBatch { log_positions: BTreeMap::new(), ..batch(0, 95, T0 + 180_000, "a-api") };
        store.write(Arc::new(api)).await.unwrap();
        assert_eq!(store.leads(&key).await.unwrap()[0].score, 95);
    }
}
