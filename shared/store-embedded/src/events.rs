//! [`ColumnarEvents`]: events and sessions of the second design — write path, commit point,
//! timelines, and the snapshots the analytics queries (query.rs) read.
//!
//! `append` deduplicates events by id (the batch itself, the in-memory buffer, then each live
//! part's sidecar) and adds the new ones to the active buffer; sessions are upserted into it with
//! a version (the write sequence). Both are acknowledged but not durable.
//! [`ColumnarEvents::commit_point`] freezes the buffer, writes one event part (with its sidecar)
//! and one session part per (site, UTC day), fsyncs them, and appends one manifest edit naming
//! the parts and the log positions they cover. That edit is the commit point: before it the parts are orphans
//! (removed at the next open) and the log positions are not reported durable, so the events are
//! delivered again; after it they are both stored and durable. Reads see the active and frozen
//! buffers as well as the parts, so nothing acknowledged is ever invisible.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crm_schemas::{Session, StoredEvent, VisitorProfile};
use crm_store::{event_cursor, parse_event_cursor, series_buckets, Durable, FormStats, Overview, Page, SeriesPoint, StoreError};
use uuid::Uuid;

use crate::manifest::{Edit, Manifest, PartMeta, Stream};
use crate::part::{self, visitor_hash};
use crate::profiles::run::{self, Row, Run};
use crate::profiles::{Found, Profiles};
use crate::query::{self, Snapshot};
use crate::rollup::Rollup;
use crate::session_part;
use crate::sidecar::{self, Sidecar};
use crate::{ColumnarError, Result};

const DAY_MS: i64 = 86_400_000;

/// Where a commit point can be made to fail (tests of crash consistency).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailAt {
    /// Parts and sidecars are written and fsynced; the manifest edit is not.
    BeforeEdit,
    /// The manifest edit is fsynced; the in-memory state is not updated yet.
    AfterEdit,
}

struct LivePart {
    meta: PartMeta,
    path: PathBuf,
    /// Event parts only.
    sidecar: Option<Sidecar>,
    /// Set when a compaction or retention edit removed the part: its files are deleted when
    /// the last reader holding it lets go.
    obsolete: std::sync::atomic::AtomicBool,
    /// The footer and page index, loaded by the first timeline read that needs them.
    metadata: std::sync::OnceLock<datafusion::parquet::arrow::arrow_reader::ArrowReaderMetadata>,
}

impl LivePart {
    fn new(meta: PartMeta, path: PathBuf, sidecar: Option<Sidecar>) -> LivePart {
        LivePart { meta, path, sidecar, obsolete: false.into(), metadata: std::sync::OnceLock::new() }
    }

    /// The visitor's events in this part (see [`part::read_visitor`]).
    fn read_visitor(&self, visitor_id: &str) -> Result<Vec<StoredEvent>> {
        let metadata = match self.metadata.get() {
            Some(metadata) => metadata,
            None => {
                let loaded = part::load_metadata(&self.path)?;
                self.metadata.get_or_init(|| loaded)
            }
        };
        part::read_visitor_with(&self.path, metadata, visitor_id)
    }

    fn mark_obsolete(&self) {
        self.obsolete.store(true, std::sync::atomic::Ordering::Release);
    }
}

impl Drop for LivePart {
    fn drop(&mut self) {
        if self.obsolete.load(std::sync::atomic::Ordering::Acquire) {
            for path in [self.path.clone(), self.path.with_extension("idx")] {
                crate::remove_unused(&path, "removed part");
            }
        }
    }
}

/// What a commit point writes: the buffer as it was frozen.
#[derive(Default)]
struct Frozen {
    events: Vec<StoredEvent>,
    ids: HashSet<u128>,
    sessions: Vec<(Session, u64)>,
    /// Profiles changed since the previous commit point, in the state they had at the freeze.
    profiles: Vec<Row>,
}

#[derive(Default)]
struct Buffers {
    active: Vec<StoredEvent>,
    active_ids: HashSet<u128>,
    /// Latest state of each (site, session) written since the last freeze, with its version.
    active_sessions: HashMap<(String, String), (Session, u64)>,
    active_positions: BTreeMap<String, u64>,
    /// The buffer a running commit point is writing (still readable until it is published).
    frozen: Option<Arc<Frozen>>,
    /// Last version handed out (continues from the manifest's after a restart).
    version: u64,
}

pub struct ColumnarEvents {
    root: PathBuf,
    buffers: Mutex<Buffers>,
    parts: Mutex<Vec<Arc<LivePart>>>,
    manifest: Mutex<Manifest>,
    durable: Mutex<BTreeMap<String, u64>>,
    /// Lock order: `buffers`, then `profiles` (an append applies its profiles while it holds
    /// the buffer, so a freeze never splits an event from its profile update).
    profiles: std::sync::RwLock<Profiles>,
    /// The rollup of each closed (site, day) that has one (rollup.rs).
    rollups: Mutex<HashMap<(String, i64), Arc<Rollup>>>,
    /// Held by the one profile-run fold running.
    folding: Mutex<()>,
    /// Held by whatever replaces parts with rewritten ones (compaction, retention, an erase), so
    /// no two rewrite the same part.
    rewriting: Mutex<()>,
    /// One analyst query at a time: two cores are shared with ingest (sql.rs).
    sql_permits: Arc<tokio::sync::Semaphore>,
}

/// Profile runs that trigger a fold.
const MAX_PROFILE_RUNS: usize = 8;

/// The runs a fold merges: the newest ones (a suffix in id order, so the merged run, newer than
/// each run it replaces, is also newer than every run it leaves), stopping at a run with more
/// than twice the rows gathered so far, which stays as it is. Folding everything every time made
/// a store with a million profiles rewrite them all every few commit points, stalling commit
/// points for seconds while buffers grew (bench/ANALYSIS.md); by size tiers a large run is
/// folded again only once the newer runs come near its size.
fn runs_to_fold(mut runs: Vec<Arc<Run>>) -> Vec<Arc<Run>> {
    let mut gathered = 0u64;
    let mut start = runs.len();
    while start > 0 {
        let rows = runs[start - 1].rows();
        if runs.len() - start >= 2 && rows > 2 * gathered {
            break;
        }
        gathered += rows;
        start -= 1;
    }
    runs.split_off(start)
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep serving.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ColumnarEvents {
    /// Opens the columnar root, removing files no manifest edit names, with the default
    /// memory budget for hot profiles.
    pub fn open(root: &Path) -> Result<ColumnarEvents> {
        Self::open_with_budget(root, crate::profiles::DEFAULT_BUDGET_BYTES)
    }

    /// [`ColumnarEvents::open`] keeping at most about `profile_budget` bytes of profiles hot
    /// after each commit point (see the profiles module).
    pub fn open_with_budget(root: &Path, profile_budget: usize) -> Result<ColumnarEvents> {
        let manifest = Manifest::open(root)?;
        let removed = manifest.remove_orphans()?;
        if removed > 0 {
            tracing::info!(removed, "removed part files of an unfinished commit point");
        }
        let mut parts = Vec::new();
        let mut profiles = Profiles::new(profile_budget);
        profiles.start_loading();
        for meta in manifest.state().parts.values().filter(|p| p.stream == Stream::Profiles) {
            run::load(&Arc::new(Run::new(meta.id, root.join(meta.relative_path()), meta.rows)), &mut profiles)?;
        }
        profiles.finish_loading();
        for meta in manifest.state().parts.values().filter(|p| matches!(p.stream, Stream::Events | Stream::Sessions)) {
            let path = root.join(meta.relative_path());
            let sidecar = if meta.stream == Stream::Events { Some(Sidecar::open(&path.with_extension("idx"))?) } else { None };
            parts.push(Arc::new(LivePart::new(meta.clone(), path, sidecar)));
        }
        let durable = manifest.state().positions.clone();
        let buffers = Buffers { version: manifest.state().version, ..Buffers::default() };
        let mut rollups = HashMap::new();
        for rollup in crate::rollup::load_all(root) {
            // A day without parts (retention ran after the rollup) never uses it again.
            if !parts.iter().any(|p| p.meta.site_id == rollup.site_id() && p.meta.day == rollup.day()) {
                rollup.mark_obsolete();
                continue;
            }
            let key = (rollup.site_id().to_owned(), rollup.day());
            if let Some(other) = rollups.insert(key, Arc::new(rollup)) {
                other.mark_obsolete();
            }
        }
        Ok(ColumnarEvents {
            root: root.to_owned(),
            buffers: Mutex::new(buffers),
            parts: Mutex::new(parts),
            manifest: Mutex::new(manifest),
            durable: Mutex::new(durable),
            profiles: std::sync::RwLock::new(profiles),
            rollups: Mutex::new(rollups),
            folding: Mutex::new(()),
            rewriting: Mutex::new(()),
            sql_permits: Arc::new(tokio::sync::Semaphore::new(1)),
        })
    }

    fn parts_snapshot(&self) -> Vec<Arc<LivePart>> {
        lock(&self.parts).clone()
    }

    /// Whether a committed part holds the id (ids are unique across sites: v4 and v7 UUIDs).
    fn in_parts(parts: &[Arc<LivePart>], id: u128) -> Result<bool> {
        for part in parts {
            if let Some(sidecar) = &part.sidecar {
                if sidecar.contains(id)? {
                    return Ok(true);
                }
            }
        }
        Ok(false)
    }

    /// Which of `ids` are stored nowhere: not in a buffer, not in a part.
    pub fn unseen(&self, ids: &[Uuid]) -> Result<HashSet<Uuid>> {
        // Buffers before parts: a commit point publishes its parts before it drops the frozen
        // buffer, so in this order an event is found in one or the other, never in neither.
        let (active, frozen) = {
            let buffers = lock(&self.buffers);
            (ids.iter().filter(|id| buffers.active_ids.contains(&id.as_u128())).copied().collect::<HashSet<_>>(), buffers.frozen.clone())
        };
        let parts = self.parts_snapshot();
        let mut unseen = HashSet::new();
        for id in ids {
            let raw = id.as_u128();
            if active.contains(id) || frozen.as_ref().is_some_and(|f| f.ids.contains(&raw)) || Self::in_parts(&parts, raw)? {
                continue;
            }
            unseen.insert(*id);
        }
        Ok(unseen)
    }

    /// Adds the events whose id is new (the first copy within `events` wins), upserts the
    /// sessions (latest state wins) and remembers the log positions they came from. Returns
    /// (events written, duplicates skipped).
    pub fn append(&self, events: &[StoredEvent], sessions: &[Session], profiles: &[VisitorProfile], positions: &BTreeMap<String, u64>) -> Result<(usize, usize)> {
        let ids: Vec<Uuid> = events.iter().map(|e| e.event_id).collect();
        let unseen = self.unseen(&ids)?;
        // Encoded before any lock is taken.
        let rows: Vec<Row> = profiles.iter().map(Row::of).collect();
        let mut buffers = lock(&self.buffers);
        let mut written = 0;
        for event in events {
            let id = event.event_id.as_u128();
            // Re-checked under the lock: a concurrent append may have taken the id meanwhile.
            if unseen.contains(&event.event_id) && buffers.active_ids.insert(id) {
                buffers.active.push(event.clone());
                written += 1;
            }
        }
        if !rows.is_empty() {
            let mut state = self.profiles.write().unwrap_or_else(|p| p.into_inner());
            for row in &rows {
                state.apply_row(row, true);
            }
        }
        if !sessions.is_empty() {
            buffers.version += 1;
            let version = buffers.version;
            for session in sessions {
                buffers.active_sessions.insert((session.site_id.clone(), session.session_id.clone()), (session.clone(), version));
            }
        }
        for (key, offset) in positions {
            let entry = buffers.active_positions.entry(key.clone()).or_insert(*offset);
            *entry = (*entry).max(*offset);
        }
        Ok((written, events.len() - written))
    }

    /// Events acknowledged but not yet made durable by a commit point.
    pub fn buffered(&self) -> usize {
        let buffers = lock(&self.buffers);
        buffers.active.len() + buffers.frozen.as_ref().map_or(0, |f| f.events.len())
    }

    /// The log positions made durable by the last commit point.
    pub fn durable_positions(&self) -> Durable {
        Durable::Upto(lock(&self.durable).clone())
    }

    /// Makes everything appended so far durable (see the module docs), then folds the profile
    /// runs if there are too many. One at a time: the manifest lock is held throughout the
    /// commit point (not the fold).
    pub fn commit_point(&self) -> Result<()> {
        self.commit_point_failing(None)?;
        self.fold_profile_runs().map(|_| ())
    }

    /// [`ColumnarEvents::commit_point`] that stops with an error at `fail` (crash tests).
    pub fn commit_point_failing(&self, fail: Option<FailAt>) -> Result<()> {
        let mut manifest = lock(&self.manifest);
        let (frozen, positions) = {
            let mut buffers = lock(&self.buffers);
            if buffers.frozen.is_some() {
                return Err(ColumnarError::Io { path: self.root.display().to_string(), message: "an earlier commit point failed; reopen the store".into() });
            }
            let dirty = self.profiles.write().unwrap_or_else(|p| p.into_inner()).take_dirty();
            if buffers.active.is_empty() && buffers.active_sessions.is_empty() && buffers.active_positions.is_empty() && dirty.is_empty() {
                return Ok(());
            }
            let frozen = Arc::new(Frozen {
                events: std::mem::take(&mut buffers.active),
                ids: std::mem::take(&mut buffers.active_ids),
                sessions: std::mem::take(&mut buffers.active_sessions).into_values().collect(),
                profiles: dirty,
            });
            buffers.frozen = Some(frozen.clone());
            (frozen, std::mem::take(&mut buffers.active_positions))
        };
        let committed = self.write_frozen(&mut manifest, &frozen).and_then(|(added, version)| {
            if fail == Some(FailAt::BeforeEdit) {
                return Err(ColumnarError::Io { path: self.root.display().to_string(), message: "injected failure before the manifest edit".into() });
            }
            manifest.commit(Edit { add: added.iter().map(|(meta, _)| meta.clone()).collect(), positions: positions.clone(), version, ..Edit::default() })?;
            Ok(added)
        });
        let added = match committed {
            Ok(added) => added,
            Err(err) => {
                // Nothing is durable: the rows go back to the buffer for the next commit point
                // (files already written are orphans, removed at the next open).
                self.unfreeze(&frozen, positions);
                return Err(err);
            }
        };
        if fail == Some(FailAt::AfterEdit) {
            return Err(ColumnarError::Io { path: self.root.display().to_string(), message: "injected failure after the manifest edit".into() });
        }
        let mut live = Vec::with_capacity(added.len());
        let mut profile_run = None;
        for (meta, path) in added {
            if meta.stream == Stream::Profiles {
                profile_run = Some(Arc::new(Run::new(meta.id, path, meta.rows)));
                continue;
            }
            let sidecar = if meta.stream == Stream::Events { Some(Sidecar::open(&path.with_extension("idx"))?) } else { None };
            live.push(Arc::new(LivePart::new(meta, path, sidecar)));
        }
        // Publish the parts and drop the frozen buffer in one step (buffers, then parts: the
        // order every reader takes them in), so a snapshot sees each row exactly once.
        {
            let mut buffers = lock(&self.buffers);
            lock(&self.parts).extend(live);
            buffers.frozen = None;
        }
        {
            let mut durable = lock(&self.durable);
            for (key, offset) in positions {
                let entry = durable.entry(key).or_insert(offset);
                *entry = (*entry).max(offset);
            }
        }
        {
            let mut profiles = self.profiles.write().unwrap_or_else(|p| p.into_inner());
            if let Some(run) = profile_run {
                profiles.settle(run, &frozen.profiles);
            }
            let evicted = profiles.evict();
            if evicted > 0 {
                tracing::debug!(evicted, hot_bytes = profiles.hot_bytes(), "evicted cold profiles");
            }
        }
        Ok(())
    }

    /// Whether the profile runs are due a fold ([`ColumnarEvents::fold_profile_runs`]).
    pub fn needs_fold(&self) -> bool {
        self.profiles.read().unwrap_or_else(|p| p.into_inner()).run_count() > MAX_PROFILE_RUNS
    }

    /// Folds the profile runs into one once there are more than [`MAX_PROFILE_RUNS`]: the rows
    /// that are still some profile's home are copied (no JSON decoded); once the merged run is
    /// written and fsynced the homes move to it, then one manifest edit swaps the runs. A fold
    /// that fails while writing moves nothing (its file is an orphan). If the edit fails, the
    /// merged run stays in use: it is complete, and the folded runs, still named by the
    /// manifest, hold the same states for a reopen.
    ///
    /// Commit points go on meanwhile (the manifest lock is taken only to name the merged run
    /// and to commit the edit), so a folded profile may get a newer row in a newer run while the
    /// fold copies its old one: its home then stays where the commit point put it, and since the
    /// merged run's id is taken before the rows to copy are chosen, every run a later commit
    /// point writes has a higher id and wins at a reopen too. Returns whether it folded (one
    /// fold at a time: a call while another runs returns `false`).
    pub fn fold_profile_runs(&self) -> Result<bool> {
        let folding = match self.folding.try_lock() {
            Ok(guard) => guard,
            Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => return Ok(false),
        };
        if !self.needs_fold() {
            return Ok(false);
        }
        self.fold_runs(folding, false)
    }

    /// Folds every profile run into one, waiting for a running fold: an erase's way to drop the
    /// rows of profiles that left memory from disk too.
    pub fn fold_profile_runs_all(&self) -> Result<bool> {
        let folding = lock(&self.folding);
        if self.profiles.read().unwrap_or_else(|p| p.into_inner()).run_count() == 0 {
            return Ok(false);
        }
        self.fold_runs(folding, true)
    }

    fn fold_runs(&self, _folding: MutexGuard<'_, ()>, all: bool) -> Result<bool> {
        let id = lock(&self.manifest).allocate_id();
        let (runs, live) = {
            let profiles = self.profiles.read().unwrap_or_else(|p| p.into_inner());
            let runs = if all { profiles.runs() } else { runs_to_fold(profiles.runs()) };
            (runs, profiles.live_rows())
        };
        let meta = PartMeta { id, stream: Stream::Profiles, site_id: String::new(), day: 0, level: 1, rows: 0, bytes: 0, min_ts: 0, max_ts: 0 };
        let path = self.root.join(meta.relative_path());
        // Its row count is known once the fold has written it.
        let merged = Arc::new(Run::new(meta.id, path.clone(), 0));
        let mut moves = HashMap::new();
        let (rows, bytes) = run::fold(&runs, &live, &path, |copied| {
            self.profiles.read().unwrap_or_else(|p| p.into_inner()).note_moves(copied, &mut moves);
        })?;
        merged.set_rows(rows);
        self.profiles.write().unwrap_or_else(|p| p.into_inner()).rehome(&merged, &moves, &runs);
        let edit = Edit { add: vec![PartMeta { rows, bytes, ..meta }], remove: runs.iter().map(|r| r.id()).collect(), ..Edit::default() };
        let committed = lock(&self.manifest).commit(edit);
        let mut profiles = self.profiles.write().unwrap_or_else(|p| p.into_inner());
        match committed {
            Ok(_) => {
                profiles.retire_runs(merged, &runs);
                Ok(true)
            }
            Err(err) => {
                profiles.add_run(merged);
                Err(err)
            }
        }
    }

    /// A visitor's profile, read from its run if it is cold.
    pub fn profile(&self, site_id: &str, visitor_id: &str) -> Result<Option<VisitorProfile>> {
        let found = self.profiles.read().unwrap_or_else(|p| p.into_inner()).locate(site_id, visitor_id);
        found.map(Found::load).transpose()
    }

    /// The profiles of `keys` (site, visitor) that exist, in the order asked. Cold ones are
    /// read one pass per run (the processor asks for a batch's visitors at once).
    pub fn profiles_of(&self, keys: &[(String, String)]) -> Result<Vec<VisitorProfile>> {
        let found: Vec<Found> = {
            let profiles = self.profiles.read().unwrap_or_else(|p| p.into_inner());
            keys.iter().filter_map(|(site, visitor)| profiles.locate(site, visitor)).collect()
        };
        let mut out: Vec<Option<VisitorProfile>> = vec![None; found.len()];
        let mut cold: HashMap<u64, (Arc<Run>, Vec<(u32, usize)>)> = HashMap::new();
        for (i, found) in found.into_iter().enumerate() {
            match found {
                hot @ Found::Hot(_) => out[i] = Some(hot.load()?),
                Found::Cold(home) => cold.entry(home.run.id()).or_insert_with(|| (home.run.clone(), Vec::new())).1.push((home.row, i)),
            }
        }
        for (run, mut wanted) in cold.into_values() {
            wanted.sort_unstable();
            let mut rows: Vec<u32> = wanted.iter().map(|(row, _)| *row).collect();
            rows.dedup();
            let read = run.read_rows(&rows)?;
            for (row, i) in wanted {
                let at = rows.binary_search(&row).expect("every wanted row was read");
                out[i] = Some(read[at].clone());
            }
        }
        Ok(out.into_iter().flatten().collect())
    }

    /// Every site's profile of `visitor_id`, in site order.
    pub fn find_profiles(&self, visitor_id: &str) -> Result<Vec<VisitorProfile>> {
        let found = self.profiles.read().unwrap_or_else(|p| p.into_inner()).find(visitor_id);
        found.into_iter().map(Found::load).collect()
    }

    /// A ranked page of profiles (see [`Profiles::list`]).
    pub fn list_profiles(&self, query: &crm_store::VisitorQuery) -> Result<Page<VisitorProfile>, StoreError> {
        let (found, next_cursor) = self.profiles.read().unwrap_or_else(|p| p.into_inner()).list(query)?;
        let items = found.into_iter().map(Found::load).collect::<Result<Vec<_>>>()?;
        Ok(Page { items, next_cursor })
    }

    pub fn profile_orgs(&self, site_id: &str, limit: usize) -> Vec<crm_store::OrgVisitors> {
        self.profiles.read().unwrap_or_else(|p| p.into_inner()).orgs(site_id, limit)
    }

    /// (profiles known, profiles hot, estimated hot bytes, live runs): memory tests and metrics.
    pub fn profile_memory(&self) -> (usize, usize, usize, usize) {
        let profiles = self.profiles.read().unwrap_or_else(|p| p.into_inner());
        (profiles.len(), profiles.hot_count(), profiles.hot_bytes(), profiles.run_count())
    }

    /// Writes the frozen rows as parts with their sidecars (all fsynced); returns them and the
    /// highest session version among them.
    fn write_frozen(&self, manifest: &mut Manifest, frozen: &Frozen) -> Result<(Vec<(PartMeta, PathBuf)>, u64)> {
        let mut event_groups: HashMap<(&str, i64), Vec<&StoredEvent>> = HashMap::new();
        for event in &frozen.events {
            event_groups.entry((event.site_id.as_str(), event.ts_ms.div_euclid(DAY_MS))).or_default().push(event);
        }
        let mut session_groups: HashMap<(&str, i64), Vec<&(Session, u64)>> = HashMap::new();
        for row in &frozen.sessions {
            session_groups.entry((row.0.site_id.as_str(), row.0.start_ms.div_euclid(DAY_MS))).or_default().push(row);
        }
        let mut added = Vec::with_capacity(event_groups.len() + session_groups.len());
        let new_part = |manifest: &mut Manifest, stream: Stream, site_id: &str, day: i64| {
            let meta = PartMeta { id: manifest.allocate_id(), stream, site_id: site_id.to_owned(), day, level: 0, rows: 0, bytes: 0, min_ts: 0, max_ts: 0 };
            let path = self.root.join(meta.relative_path());
            (meta, path)
        };
        for ((site_id, day), events) in event_groups {
            let (mut meta, path) = new_part(manifest, Stream::Events, site_id, day);
            let written = part::write_events(&path, &events)?;
            let ids: Vec<u128> = events.iter().map(|e| e.event_id.as_u128()).collect();
            sidecar::write(&path.with_extension("idx"), &ids, events.iter().map(|e| visitor_hash(&e.visitor_id)))?;
            (meta.rows, meta.bytes, meta.min_ts, meta.max_ts) = (written.rows, written.bytes, written.min_ts, written.max_ts);
            added.push((meta, path));
        }
        for ((site_id, day), sessions) in session_groups {
            let (mut meta, path) = new_part(manifest, Stream::Sessions, site_id, day);
            let written = session_part::write_sessions(&path, &sessions)?;
            (meta.rows, meta.bytes, meta.min_ts, meta.max_ts) = (written.rows, written.bytes, written.min_ts, written.max_ts);
            added.push((meta, path));
        }
        if !frozen.profiles.is_empty() {
            let (mut meta, path) = new_part(manifest, Stream::Profiles, "", 0);
            meta.bytes = run::write(&path, &frozen.profiles)?;
            meta.rows = frozen.profiles.len() as u64;
            added.push((meta, path));
        }
        Ok((added, frozen.sessions.iter().map(|(_, v)| *v).max().unwrap_or(0)))
    }

    /// Puts a frozen buffer whose commit point failed back into the active one.
    fn unfreeze(&self, frozen: &Frozen, positions: BTreeMap<String, u64>) {
        let mut buffers = lock(&self.buffers);
        buffers.frozen = None;
        self.profiles.write().unwrap_or_else(|p| p.into_inner()).redirty(&frozen.profiles);
        let newer = std::mem::take(&mut buffers.active);
        buffers.active = frozen.events.iter().cloned().chain(newer).collect();
        buffers.active_ids.extend(frozen.ids.iter().copied());
        for (session, version) in &frozen.sessions {
            let key = (session.site_id.clone(), session.session_id.clone());
            if buffers.active_sessions.get(&key).is_none_or(|(_, kept)| kept < version) {
                buffers.active_sessions.insert(key, (session.clone(), *version));
            }
        }
        for (key, offset) in positions {
            let entry = buffers.active_positions.entry(key).or_insert(offset);
            *entry = (*entry).max(offset);
        }
    }

    /// A visitor's events, newest first, older than the cursor `"{ts_ms}:{uuid}"`. Parts are
    /// skipped unless their site matches and their visitor bloom filter may hold the visitor.
    pub fn visitor_events(&self, site_id: &str, visitor_id: &str, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>, StoreError> {
        let upper = cursor.map(parse_event_cursor).transpose()?;
        let below = |e: &StoredEvent| upper.is_none_or(|u| (e.ts_ms, e.event_id.as_u128()) < u);
        let hash = visitor_hash(visitor_id);
        let mut found: Vec<StoredEvent> = Vec::new();
        {
            let buffers = lock(&self.buffers);
            let frozen = buffers.frozen.clone();
            let sources = buffers.active.iter().chain(frozen.iter().flat_map(|f| f.events.iter()));
            found.extend(sources.filter(|e| e.site_id == site_id && e.visitor_id == visitor_id && below(e)).cloned());
        }
        for part in self.parts_snapshot() {
            let Some(sidecar) = &part.sidecar else { continue };
            if part.meta.site_id != site_id || !sidecar.may_hold_visitor(hash) || upper.is_some_and(|(ts, _)| part.meta.min_ts > ts) {
                continue;
            }
            found.extend(part.read_visitor(visitor_id)?.into_iter().filter(|e| below(e)));
        }
        found.sort_unstable_by(|a, b| (b.ts_ms, b.event_id).cmp(&(a.ts_ms, a.event_id)));
        // A part published while the buffers were read can hold rows also seen frozen.
        found.dedup_by_key(|e| e.event_id);
        let more = found.len() > limit;
        found.truncate(limit);
        let next_cursor = if more { found.last().map(event_cursor) } else { None };
        Ok(Page { items: found, next_cursor })
    }

    /// The events of several visitors (a lead's devices), newest first, merged.
    pub fn events_of_visitors(&self, site_id: &str, visitor_ids: &[String], limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>, StoreError> {
        let mut merged: Vec<StoredEvent> = Vec::new();
        for visitor in visitor_ids {
            merged.extend(self.visitor_events(site_id, visitor, limit + 1, cursor)?.items);
        }
        merged.sort_unstable_by(|a, b| (b.ts_ms, b.event_id).cmp(&(a.ts_ms, a.event_id)));
        merged.dedup_by_key(|e| e.event_id);
        let more = merged.len() > limit;
        merged.truncate(limit);
        let next_cursor = if more { merged.last().map(event_cursor) } else { None };
        Ok(Page { items: merged, next_cursor })
    }

    /// The files and buffered rows of one site that can hold rows of `[from_ms, to_ms)`, taken
    /// under both locks so no row is in the buffer and a part at once.
    fn snapshot(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Snapshot> {
        self.snapshot_with(site_id, from_ms, to_ms, false)
    }

    /// [`ColumnarEvents::snapshot`]; with `rollups`, each day wholly inside the window that has
    /// a rollup matching its live parts, and no buffered row, is read from the rollup and its
    /// parts are left out.
    fn snapshot_with(&self, site_id: &str, from_ms: i64, to_ms: i64, rollups: bool) -> Result<Snapshot> {
        let (events, sessions, all_parts) = {
            let buffers = lock(&self.buffers);
            let all_parts = self.parts_snapshot();
            let frozen = buffers.frozen.clone();
            let in_window = |ts: i64| from_ms <= ts && ts < to_ms;
            let events: Vec<StoredEvent> = buffers
                .active
                .iter()
                .chain(frozen.iter().flat_map(|f| f.events.iter()))
                .filter(|e| e.site_id == site_id && in_window(e.ts_ms))
                .cloned()
                .collect();
            let sessions: Vec<(Session, u64)> = buffers
                .active_sessions
                .values()
                .chain(frozen.iter().flat_map(|f| f.sessions.iter()))
                .filter(|(s, _)| s.site_id == site_id && in_window(s.start_ms))
                .cloned()
                .collect();
            (events, sessions, all_parts)
        };
        // After the rows, outside the buffer lock (ingest waits on it): an append applies its
        // profiles under that lock, so every row taken above already has its profile, and a
        // profile never stops being a bot. The set may only be newer than the rows, which
        // leaves out the rows of a visitor that became a bot meanwhile, as the next query would.
        let (bots, (generation, bot_keys)) = {
            let profiles = self.profiles.read().unwrap_or_else(|p| p.into_inner());
            (profiles.bots_since(site_id, from_ms), profiles.bot_keys(site_id))
        };
        let mut parts: Vec<Arc<LivePart>> = all_parts
            .into_iter()
            .filter(|p| p.meta.site_id == site_id && p.meta.max_ts >= from_ms && p.meta.min_ts < to_ms)
            .collect();
        let mut used = Vec::new();
        if rollups {
            let buffered: HashSet<i64> = events.iter().map(|e| e.ts_ms.div_euclid(DAY_MS)).chain(sessions.iter().map(|(s, _)| s.start_ms.div_euclid(DAY_MS))).collect();
            let mut by_day: BTreeMap<i64, Vec<u64>> = BTreeMap::new();
            for part in parts.iter().filter(|p| matches!(p.meta.stream, Stream::Events | Stream::Sessions)) {
                by_day.entry(part.meta.day).or_default().push(part.meta.id);
            }
            let (first, end) = (from_ms.div_euclid(DAY_MS) + i64::from(from_ms.rem_euclid(DAY_MS) != 0), to_ms.div_euclid(DAY_MS));
            let known = lock(&self.rollups);
            for (day, mut ids) in by_day.into_iter().filter(|(day, _)| *day >= first && *day < end && !buffered.contains(day)) {
                ids.sort_unstable();
                if let Some(rollup) = known.get(&(site_id.to_owned(), day)).filter(|r| r.parts() == ids.as_slice()) {
                    used.push(rollup.clone());
                }
            }
            drop(known);
            // A rollup that counted a visitor who is a bot now is read around, like a stale one.
            used.retain(|r| r.counts_no_bot(generation, &bot_keys).unwrap_or(false));
            parts.retain(|p| !used.iter().any(|r| r.day() == p.meta.day && matches!(p.meta.stream, Stream::Events | Stream::Sessions)));
        }
        let files = |stream: Stream| -> Vec<PathBuf> { parts.iter().filter(|p| p.meta.stream == stream).map(|p| p.path.clone()).collect() };
        Ok(Snapshot {
            event_files: files(Stream::Events),
            events: part::events_batch(&events.iter().collect::<Vec<_>>())?,
            session_files: files(Stream::Sessions),
            sessions: session_part::sessions_batch(&sessions.iter().collect::<Vec<_>>())?,
            keep_alive: parts.into_iter().map(|p| p as Arc<dyn std::any::Any + Send + Sync>).collect(),
            rollups: used,
            bots: query::bots_batch(bots)?,
        })
    }

    pub async fn overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize) -> Result<Overview, StoreError> {
        query::overview(&self.snapshot_with(site_id, from_ms, to_ms, true)?, from_ms, to_ms, top_n).await
    }

    /// The overview narrowed by `filters`; rollups are not used (they hold no breakdown by the
    /// filters' dimensions).
    pub async fn filtered_overview(&self, site_id: &str, from_ms: i64, to_ms: i64, top_n: usize, filters: &crm_store::filters::Filters) -> Result<Overview, StoreError> {
        if filters.is_empty() {
            return self.overview(site_id, from_ms, to_ms, top_n).await;
        }
        query::filtered_overview(&self.snapshot_with(site_id, from_ms, to_ms, false)?, from_ms, to_ms, top_n, filters).await
    }

    pub async fn timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64) -> Result<Vec<SeriesPoint>, StoreError> {
        self.filtered_timeseries(site_id, from_ms, to_ms, step_ms, &crm_store::filters::Filters::default()).await
    }

    /// The series narrowed by `filters` (without rollups then, as the filtered overview).
    pub async fn filtered_timeseries(&self, site_id: &str, from_ms: i64, to_ms: i64, step_ms: i64, filters: &crm_store::filters::Filters) -> Result<Vec<SeriesPoint>, StoreError> {
        let starts = series_buckets(from_ms, to_ms, step_ms)?;
        if starts.is_empty() {
            return Ok(Vec::new());
        }
        // Buckets of whole days (aligned, as multiples of the step) hold whole rolled-up days.
        let rollups = step_ms % DAY_MS == 0 && filters.is_empty();
        query::timeseries(&self.snapshot_with(site_id, from_ms, to_ms, rollups)?, &starts, from_ms, to_ms, step_ms, filters).await
    }

    pub async fn form_stats(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<FormStats>, StoreError> {
        query::form_stats(&self.snapshot(site_id, from_ms, to_ms)?, from_ms, to_ms).await
    }

    /// A site's non-bot events in `[from_ms, to_ms)` as the batch jobs read them, straight from
    /// the parts and the buffer ([`query::usage_rows`]).
    pub async fn usage_rows(&self, site_id: &str, from_ms: i64, to_ms: i64) -> Result<Vec<datafusion::arrow::array::RecordBatch>, StoreError> {
        query::usage_rows(&self.snapshot(site_id, from_ms, to_ms)?, from_ms, to_ms).await
    }

    /// A site's events in `[from_ms, to_ms)`, oldest first, a page at a time.
    pub async fn scan_events(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize, cursor: Option<&str>) -> Result<Page<StoredEvent>, StoreError> {
        let after = cursor.map(parse_event_cursor).transpose()?;
        let from = after.map_or(from_ms, |(ts, _)| ts.max(from_ms));
        let mut items = query::scan(&self.snapshot(site_id, from, to_ms)?, from, to_ms, after, limit).await?;
        let more = items.len() > limit;
        items.truncate(limit);
        let next_cursor = if more { items.last().map(event_cursor) } else { None };
        Ok(Page { items, next_cursor })
    }

    /// Sessions of a site that started in `[from_ms, to_ms)`, oldest first.
    pub async fn sessions_between(&self, site_id: &str, from_ms: i64, to_ms: i64, limit: usize) -> Result<Vec<Session>, StoreError> {
        query::sessions_between(&self.snapshot(site_id, from_ms, to_ms)?, from_ms, to_ms, limit).await
    }

    /// Runs an analyst query over one site's rows (see [`crate::sql`]); waiting for the one
    /// query slot counts against the time limit.
    pub async fn query_sql(&self, site_id: &str, sql: &str, limits: &crm_store::sql_guard::SqlLimits) -> Result<crm_store::sql_guard::SqlResult, StoreError> {
        let started = std::time::Instant::now();
        let busy = || StoreError::Query { kind: crm_store::QueryErrorKind::Timeout, message: "another analyst query held the slot for the whole time limit".into() };
        let permit = tokio::time::timeout(limits.timeout, self.sql_permits.clone().acquire_owned()).await.map_err(|_| busy())?.map_err(|_| busy())?;
        let snapshot = self.snapshot(site_id, i64::MIN / 2, i64::MAX / 2)?;
        let visitors = self.profiles.read().unwrap_or_else(|p| p.into_inner()).summaries(site_id);
        let remaining = crm_store::sql_guard::SqlLimits { timeout: limits.timeout.saturating_sub(started.elapsed()), ..*limits };
        crate::sql::run(&snapshot, visitors, sql, &remaining, permit).await
    }

    /// The site's bot visitors last seen at or after `since_ms`, ascending.
    pub fn bot_visitors(&self, site_id: &str, since_ms: i64) -> Vec<String> {
        self.profiles.read().unwrap_or_else(|p| p.into_inner()).bots_since(site_id, since_ms)
    }

    /// Whether a rollup counts no visitor that is a bot now (see [`Rollup::counts_no_bot`]).
    fn rollup_clean(&self, rollup: &Rollup) -> bool {
        let (generation, keys) = self.profiles.read().unwrap_or_else(|p| p.into_inner()).bot_keys(rollup.site_id());
        rollup.counts_no_bot(generation, &keys).unwrap_or(false)
    }

    /// Event parts the manifest lists (tests and metrics).
    pub fn part_count(&self) -> usize {
        lock(&self.parts).iter().filter(|p| p.meta.stream == Stream::Events).count()
    }
}

mod compact;
mod erase;
mod growth;
pub use erase::Erased;
pub use compact::Compacted;

#[cfg(test)]
mod tests;
