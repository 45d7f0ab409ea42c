//! [`ColumnarEvents`]: the event half of the second design's write path and its timeline read.
//!
//! `append` deduplicates by event id (the batch itself, the in-memory buffer, then each live
//! part's sidecar) and adds the new events to the active buffer; it is acknowledged but not
//! durable. [`ColumnarEvents::commit_point`] freezes the buffer, writes one part per (site, UTC
//! day) with its sidecar, fsyncs them, and appends one manifest edit naming the parts and the
//! log positions they cover. That edit is the commit point: before it the parts are orphans
//! (removed at the next open) and the log positions are not reported durable, so the events are
//! delivered again; after it they are both stored and durable. Reads see the active and frozen
//! buffers as well as the parts, so nothing acknowledged is ever invisible.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crm_schemas::StoredEvent;
use crm_store::{event_cursor, parse_event_cursor, Durable, Page, StoreError};
use uuid::Uuid;

use crate::manifest::{Edit, Manifest, PartMeta, Stream};
use crate::part::{self, visitor_hash};
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
    sidecar: Sidecar,
}

#[derive(Default)]
struct Buffers {
    active: Vec<StoredEvent>,
    active_ids: HashSet<u128>,
    active_positions: BTreeMap<String, u64>,
    /// The buffer a running commit point is writing (still readable until it is published).
    frozen: Option<Arc<(Vec<StoredEvent>, HashSet<u128>)>>,
}

pub struct ColumnarEvents {
    root: PathBuf,
    buffers: Mutex<Buffers>,
    parts: Mutex<Vec<Arc<LivePart>>>,
    manifest: Mutex<Manifest>,
    durable: Mutex<BTreeMap<String, u64>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding one of these locks leaves plain data behind; keep serving.
    mutex.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl ColumnarEvents {
    /// Opens the columnar root, removing files no manifest edit names.
    pub fn open(root: &Path) -> Result<ColumnarEvents> {
        let manifest = Manifest::open(root)?;
        let removed = manifest.remove_orphans()?;
        if removed > 0 {
            tracing::info!(removed, "removed part files of an unfinished commit point");
        }
        let mut parts = Vec::new();
        for meta in manifest.state().parts.values().filter(|p| p.stream == Stream::Events) {
            let path = root.join(meta.relative_path());
            let sidecar = Sidecar::open(&path.with_extension("idx"))?;
            parts.push(Arc::new(LivePart { meta: meta.clone(), path, sidecar }));
        }
        let durable = manifest.state().positions.clone();
        Ok(ColumnarEvents {
            root: root.to_owned(),
            buffers: Mutex::new(Buffers::default()),
            parts: Mutex::new(parts),
            manifest: Mutex::new(manifest),
            durable: Mutex::new(durable),
        })
    }

    fn parts_snapshot(&self) -> Vec<Arc<LivePart>> {
        lock(&self.parts).clone()
    }

    /// Whether a committed part holds the id.
    fn in_parts(parts: &[Arc<LivePart>], site_id: &str, id: u128) -> Result<bool> {
        for part in parts.iter().filter(|p| p.meta.site_id == site_id) {
            if part.sidecar.contains(id)? {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Which of `ids` (with their site) are stored nowhere: not in a buffer, not in a part.
    pub fn unseen(&self, ids: &[(String, Uuid)]) -> Result<HashSet<Uuid>> {
        // Buffers before parts: a commit point publishes its parts before it drops the frozen
        // buffer, so in this order an event is found in one or the other, never in neither.
        let (active, frozen) = {
            let buffers = lock(&self.buffers);
            (ids.iter().filter(|(_, id)| buffers.active_ids.contains(&id.as_u128())).map(|(_, id)| *id).collect::<HashSet<_>>(), buffers.frozen.clone())
        };
        let parts = self.parts_snapshot();
        let mut unseen = HashSet::new();
        for (site, id) in ids {
            let raw = id.as_u128();
            if active.contains(id) || frozen.as_ref().is_some_and(|f| f.1.contains(&raw)) || Self::in_parts(&parts, site, raw)? {
                continue;
            }
            unseen.insert(*id);
        }
        Ok(unseen)
    }

    /// Adds the events whose id is new (the first copy within `events` wins) and remembers the
    /// log positions they came from. Returns (written, duplicates skipped).
    pub fn append(&self, events: &[StoredEvent], positions: &BTreeMap<String, u64>) -> Result<(usize, usize)> {
        let keys: Vec<(String, Uuid)> = events.iter().map(|e| (e.site_id.clone(), e.event_id)).collect();
        let unseen = self.unseen(&keys)?;
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
        for (key, offset) in positions {
            let entry = buffers.active_positions.entry(key.clone()).or_insert(*offset);
            *entry = (*entry).max(*offset);
        }
        Ok((written, events.len() - written))
    }

    /// Events acknowledged but not yet made durable by a commit point.
    pub fn buffered(&self) -> usize {
        let buffers = lock(&self.buffers);
        buffers.active.len() + buffers.frozen.as_ref().map_or(0, |f| f.0.len())
    }

    /// The log positions made durable by the last commit point.
    pub fn durable_positions(&self) -> Durable {
        Durable::Upto(lock(&self.durable).clone())
    }

    /// Makes everything appended so far durable (see the module docs). One at a time: the
    /// manifest lock is held throughout.
    pub fn commit_point(&self) -> Result<()> {
        self.commit_point_failing(None)
    }

    /// [`ColumnarEvents::commit_point`] that stops with an error at `fail` (crash tests).
    pub fn commit_point_failing(&self, fail: Option<FailAt>) -> Result<()> {
        let mut manifest = lock(&self.manifest);
        let (frozen, positions) = {
            let mut buffers = lock(&self.buffers);
            if buffers.frozen.is_some() {
                return Err(ColumnarError::Io { path: self.root.display().to_string(), message: "an earlier commit point failed; reopen the store".into() });
            }
            if buffers.active.is_empty() && buffers.active_positions.is_empty() {
                return Ok(());
            }
            let events = std::mem::take(&mut buffers.active);
            let ids = std::mem::take(&mut buffers.active_ids);
            let frozen = Arc::new((events, ids));
            buffers.frozen = Some(frozen.clone());
            (frozen, std::mem::take(&mut buffers.active_positions))
        };
        let mut groups: HashMap<(&str, i64), Vec<StoredEvent>> = HashMap::new();
        for event in &frozen.0 {
            groups.entry((event.site_id.as_str(), event.ts_ms.div_euclid(DAY_MS))).or_default().push(event.clone());
        }
        let mut added = Vec::with_capacity(groups.len());
        for ((site_id, day), events) in groups {
            let mut meta = PartMeta { id: manifest.allocate_id(), stream: Stream::Events, site_id: site_id.to_owned(), day, level: 0, rows: 0, bytes: 0, min_ts: 0, max_ts: 0 };
            let path = self.root.join(meta.relative_path());
            let written = part::write_events(&path, &events)?;
            let ids: Vec<u128> = events.iter().map(|e| e.event_id.as_u128()).collect();
            sidecar::write(&path.with_extension("idx"), &ids, events.iter().map(|e| visitor_hash(&e.visitor_id)))?;
            (meta.rows, meta.bytes, meta.min_ts, meta.max_ts) = (written.rows, written.bytes, written.min_ts, written.max_ts);
            added.push((meta, path));
        }
        if fail == Some(FailAt::BeforeEdit) {
            return Err(ColumnarError::Io { path: self.root.display().to_string(), message: "injected failure before the manifest edit".into() });
        }
        manifest.commit(Edit { add: added.iter().map(|(meta, _)| meta.clone()).collect(), positions: positions.clone(), ..Edit::default() })?;
        if fail == Some(FailAt::AfterEdit) {
            return Err(ColumnarError::Io { path: self.root.display().to_string(), message: "injected failure after the manifest edit".into() });
        }
        let mut live = Vec::with_capacity(added.len());
        for (meta, path) in added {
            let sidecar = Sidecar::open(&path.with_extension("idx"))?;
            live.push(Arc::new(LivePart { meta, path, sidecar }));
        }
        // Publish: parts first, then drop the frozen buffer, so a reader always finds the rows.
        lock(&self.parts).extend(live);
        lock(&self.buffers).frozen = None;
        let mut durable = lock(&self.durable);
        for (key, offset) in positions {
            let entry = durable.entry(key).or_insert(offset);
            *entry = (*entry).max(offset);
        }
        Ok(())
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
            let sources = buffers.active.iter().chain(frozen.iter().flat_map(|f| f.0.iter()));
            found.extend(sources.filter(|e| e.site_id == site_id && e.visitor_id == visitor_id && below(e)).cloned());
        }
        for part in self.parts_snapshot() {
            if part.meta.site_id != site_id || !part.sidecar.may_hold_visitor(hash) || upper.is_some_and(|(ts, _)| part.meta.min_ts > ts) {
                continue;
            }
            found.extend(part::read_visitor(&part.path, visitor_id)?.into_iter().filter(|e| below(e)));
        }
        found.sort_unstable_by(|a, b| (b.ts_ms, b.event_id).cmp(&(a.ts_ms, a.event_id)));
        // A part published while the buffers were read can hold rows also seen frozen.
        found.dedup_by_key(|e| e.event_id);
        let more = found.len() > limit;
        found.truncate(limit);
        let next_cursor = if more { found.last().map(event_cursor) } else { None };
        Ok(Page { items: found, next_cursor })
    }

    /// Parts the manifest lists for events (tests and metrics).
    pub fn part_count(&self) -> usize {
        lock(&self.parts).len()
    }
}

#[cfg(test)]
mod tests;
