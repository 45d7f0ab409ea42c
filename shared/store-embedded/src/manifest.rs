//! The manifest: the set of live part files and the log positions they cover.
//!
//! State = `MANIFEST` (a JSON snapshot) + `MANIFEST.log` (edits appended since, each framed as
//! `[len u32 LE][crc32 u32 LE][JSON]` and fsynced). Appending one edit is the commit point of a
//! flush or a compaction: files are written and fsynced first, so an edit never names a file
//! that is not whole. Opening replays the log up to its last whole record; a torn tail (a crash
//! mid-append) fails its length or checksum and is cut off. Every [`SNAPSHOT_EVERY`] edits the
//! state is rewritten as a new snapshot (temporary file, fsync, rename, fsync directory) and the
//! log truncated; edits at or below the snapshot's sequence are skipped, so a crash between the
//! rename and the truncation replays nothing twice.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::{write_durably, ColumnarError, Result};

/// Edits between snapshots.
pub const SNAPSHOT_EVERY: u64 = 1_000;
/// Largest edit accepted when reading the log back (a corrupt length must not allocate GiBs).
const MAX_EDIT_BYTES: u32 = 64 << 20;

/// What a part holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stream {
    Events,
    Sessions,
    DeadLetters,
    /// Profile runs (profiles.rs): not per site or day.
    Profiles,
}

impl Stream {
    pub fn dir_name(self) -> &'static str {
        match self {
            Stream::Events => "events",
            Stream::Sessions => "sessions",
            Stream::DeadLetters => "dead_letters",
            Stream::Profiles => "profiles",
        }
    }
}

/// One live part file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartMeta {
    pub id: u64,
    pub stream: Stream,
    pub site_id: String,
    /// UTC day (days since the epoch) every row's time falls in.
    pub day: i64,
    /// Compaction level: 0 = flushed, 1 = merged, 2 = a whole closed day.
    pub level: u8,
    pub rows: u64,
    pub bytes: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

impl PartMeta {
    /// Path of the part relative to the columnar root. Site ids are `[A-Za-z0-9._-]{1,64}`
    /// (validated when a site is created); the `s-` prefix keeps `.` and `..` from being paths.
    pub fn relative_path(&self) -> PathBuf {
        if self.stream == Stream::Profiles {
            return PathBuf::from("profiles").join(format!("run-{:016}.parquet", self.id));
        }
        PathBuf::from(self.stream.dir_name())
            .join(format!("s-{}", self.site_id))
            .join(format!("d-{}", self.day))
            .join(format!("L{}-{:016}.parquet", self.level, self.id))
    }
}

/// One atomic change.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Edit {
    /// Assigned by [`Manifest::commit`].
    #[serde(default)]
    pub seq: u64,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<PartMeta>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<u64>,
    /// Log positions (`"{source}/{topic}/{partition}"` → highest offset) durable with this edit.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub positions: BTreeMap<String, u64>,
    /// Highest row version (write sequence) in the added parts: versions keep growing across
    /// restarts, so a session rewritten later always wins over its older rows.
    #[serde(default)]
    pub version: u64,
}

/// The state an edit log replays into.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestState {
    /// Sequence of the last edit applied.
    pub edit_seq: u64,
    /// Next part id to hand out (ids are never reused, even for files never committed).
    pub next_id: u64,
    pub parts: BTreeMap<u64, PartMeta>,
    /// Highest durable offset per log partition.
    pub positions: BTreeMap<String, u64>,
    /// Highest row version committed.
    #[serde(default)]
    pub version: u64,
}

impl ManifestState {
    fn apply(&mut self, edit: &Edit) {
        for id in &edit.remove {
            self.parts.remove(id);
        }
        for part in &edit.add {
            self.next_id = self.next_id.max(part.id + 1);
            self.parts.insert(part.id, part.clone());
        }
        for (key, offset) in &edit.positions {
            let entry = self.positions.entry(key.clone()).or_insert(*offset);
            *entry = (*entry).max(*offset);
        }
        self.version = self.version.max(edit.version);
        self.edit_seq = edit.seq;
    }
}

pub struct Manifest {
    dir: PathBuf,
    state: ManifestState,
    log: File,
    since_snapshot: u64,
    snapshot_every: u64,
}

impl Manifest {
    /// Opens (or creates) the manifest in `dir`, replaying the edit log.
    pub fn open(dir: &Path) -> Result<Manifest> {
        Self::open_with(dir, SNAPSHOT_EVERY)
    }

    /// [`Manifest::open`] with another snapshot interval (tests).
    pub fn open_with(dir: &Path, snapshot_every: u64) -> Result<Manifest> {
        std::fs::create_dir_all(dir).map_err(|e| ColumnarError::io(dir, e))?;
        let snapshot_path = dir.join("MANIFEST");
        let mut state = match std::fs::read(&snapshot_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| ColumnarError::corrupt(&snapshot_path, e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => ManifestState::default(),
            Err(e) => return Err(ColumnarError::io(&snapshot_path, e)),
        };
        let log_path = dir.join("MANIFEST.log");
        let mut log = OpenOptions::new().create(true).read(true).append(true).open(&log_path).map_err(|e| ColumnarError::io(&log_path, e))?;
        let mut bytes = Vec::new();
        log.read_to_end(&mut bytes).map_err(|e| ColumnarError::io(&log_path, e))?;
        let (edits, whole) = read_edits(&bytes);
        let mut since_snapshot = 0;
        for edit in edits {
            if edit.seq > state.edit_seq {
                state.apply(&edit);
                since_snapshot += 1;
            }
        }
        if whole < bytes.len() {
            tracing::warn!(path = %log_path.display(), kept = whole, dropped = bytes.len() - whole, "manifest log has a torn tail; cutting it off");
            log.set_len(whole as u64).and_then(|_| log.sync_all()).map_err(|e| ColumnarError::io(&log_path, e))?;
        }
        Ok(Manifest { dir: dir.to_owned(), state, log, since_snapshot, snapshot_every: snapshot_every.max(1) })
    }

    pub fn state(&self) -> &ManifestState {
        &self.state
    }

    /// A fresh part id. Not durable by itself: it becomes durable with the edit that adds the part.
    pub fn allocate_id(&mut self) -> u64 {
        let id = self.state.next_id;
        self.state.next_id += 1;
        id
    }

    /// Appends `edit` and fsyncs it: once this returns, the edit survives a crash.
    pub fn commit(&mut self, mut edit: Edit) -> Result<u64> {
        edit.seq = self.state.edit_seq + 1;
        let frame = frame(&edit).map_err(|e| ColumnarError::corrupt(&self.dir, e))?;
        let log_path = self.dir.join("MANIFEST.log");
        self.log.write_all(&frame).and_then(|_| self.log.sync_data()).map_err(|e| ColumnarError::io(&log_path, e))?;
        self.state.apply(&edit);
        self.since_snapshot += 1;
        if self.since_snapshot >= self.snapshot_every {
            self.snapshot()?;
        }
        Ok(edit.seq)
    }

    /// Rewrites the snapshot and empties the log.
    pub fn snapshot(&mut self) -> Result<()> {
        let json = serde_json::to_vec(&self.state).map_err(|e| ColumnarError::corrupt(&self.dir, e))?;
        write_durably(&self.dir.join("MANIFEST"), &json)?;
        let log_path = self.dir.join("MANIFEST.log");
        self.log.set_len(0).and_then(|_| self.log.sync_all()).map_err(|e| ColumnarError::io(&log_path, e))?;
        self.since_snapshot = 0;
        Ok(())
    }

    /// Deletes files under the part directories that no live part names (files of a flush or
    /// compaction that crashed before its commit, or inputs of a committed compaction), and the
    /// `tmp/` directory. Returns how many files were removed.
    pub fn remove_orphans(&self) -> Result<usize> {
        let live: std::collections::HashSet<PathBuf> = self
            .state
            .parts
            .values()
            .flat_map(|p| {
                let path = p.relative_path();
                [path.clone(), path.with_extension("idx")]
            })
            .collect();
        let mut removed = 0;
        for stream in [Stream::Events, Stream::Sessions, Stream::DeadLetters, Stream::Profiles] {
            let root = self.dir.join(stream.dir_name());
            removed += remove_unlisted(&self.dir, &root, &live)?;
        }
        let tmp = self.dir.join("tmp");
        if tmp.exists() {
            std::fs::remove_dir_all(&tmp).map_err(|e| ColumnarError::io(&tmp, e))?;
        }
        Ok(removed)
    }
}

fn remove_unlisted(base: &Path, dir: &Path, live: &std::collections::HashSet<PathBuf>) -> Result<usize> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(ColumnarError::io(dir, e)),
    };
    let mut removed = 0;
    for entry in entries {
        let path = entry.map_err(|e| ColumnarError::io(dir, e))?.path();
        if path.is_dir() {
            removed += remove_unlisted(base, &path, live)?;
            continue;
        }
        let relative = path.strip_prefix(base).unwrap_or(&path).to_path_buf();
        if !live.contains(&relative) {
            std::fs::remove_file(&path).map_err(|e| ColumnarError::io(&path, e))?;
            tracing::info!(path = %path.display(), "removed a part file no manifest edit names");
            removed += 1;
        }
    }
    Ok(removed)
}

/// An edit as it is appended to the log.
fn frame(edit: &Edit) -> serde_json::Result<Vec<u8>> {
    let json = serde_json::to_vec(edit)?;
    let mut frame = Vec::with_capacity(json.len() + 8);
    frame.extend_from_slice(&(json.len() as u32).to_le_bytes());
    frame.extend_from_slice(&crc32fast::hash(&json).to_le_bytes());
    frame.extend_from_slice(&json);
    Ok(frame)
}

/// The whole edits at the start of `bytes` and how many bytes they span.
fn read_edits(bytes: &[u8]) -> (Vec<Edit>, usize) {
    let mut edits = Vec::new();
    let mut at = 0;
    while bytes.len() - at >= 8 {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().expect("4 bytes"));
        let end = at + 8 + len as usize;
        if len > MAX_EDIT_BYTES || end > bytes.len() {
            break;
        }
        let json = &bytes[at + 8..end];
        if crc32fast::hash(json) != crc {
            break;
        }
        match serde_json::from_slice::<Edit>(json) {
            Ok(edit) => edits.push(edit),
            Err(_) => break,
        }
        at = end;
    }
    (edits, at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn part(id: u64, site: &str) -> PartMeta {
        PartMeta { id, stream: Stream::Events, site_id: site.into(), day: 19_675, level: 0, rows: 10, bytes: 100, min_ts: 1, max_ts: 2 }
    }

    #[test]
    fn edits_survive_reopen_and_removals_apply() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::open(dir.path()).unwrap();
        let (a, b) = (manifest.allocate_id(), manifest.allocate_id());
        manifest.commit(Edit { add: vec![part(a, "s1"), part(b, "s2")], positions: BTreeMap::from([("log/events/0".into(), 7)]), ..Edit::default() }).unwrap();
        let c = manifest.allocate_id();
        manifest.commit(Edit { add: vec![part(c, "s1")], remove: vec![a], positions: BTreeMap::from([("log/events/0".into(), 9)]), ..Edit::default() }).unwrap();
        drop(manifest);

        let manifest = Manifest::open(dir.path()).unwrap();
        assert_eq!(manifest.state().parts.keys().copied().collect::<Vec<_>>(), vec![b, c]);
        assert_eq!(manifest.state().positions["log/events/0"], 9);
        assert_eq!(manifest.state().edit_seq, 2);
        assert_eq!(manifest.state().next_id, c + 1, "ids are not handed out twice");
    }

    #[test]
    fn a_torn_tail_is_cut_off_and_the_log_stays_appendable() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::open(dir.path()).unwrap();
        manifest.commit(Edit { add: vec![part(0, "s1")], ..Edit::default() }).unwrap();
        manifest.commit(Edit { add: vec![part(1, "s1")], ..Edit::default() }).unwrap();
        drop(manifest);
        let log = dir.path().join("MANIFEST.log");
        let whole = std::fs::read(&log).unwrap();
        for cut in [whole.len() - 1, whole.len() - 20, whole.len() - 60] {
            // A crash mid-append: the second edit is partly on disk.
            std::fs::write(&log, &whole[..cut]).unwrap();
            let manifest = Manifest::open(dir.path()).unwrap();
            assert_eq!(manifest.state().parts.len(), 1, "cut at {cut}: only the whole edit counts");
        }
        // A flipped byte inside the last record fails its checksum the same way.
        let mut flipped = whole.clone();
        let last = flipped.len() - 3;
        flipped[last] ^= 0x20;
        std::fs::write(&log, &flipped).unwrap();
        let mut manifest = Manifest::open(dir.path()).unwrap();
        assert_eq!(manifest.state().parts.len(), 1);
        manifest.commit(Edit { add: vec![part(5, "s1")], ..Edit::default() }).unwrap();
        drop(manifest);
        let manifest = Manifest::open(dir.path()).unwrap();
        assert_eq!(manifest.state().parts.keys().copied().collect::<Vec<_>>(), vec![0, 5], "appends after the cut are read back");
    }

    #[test]
    fn snapshots_bound_the_log_and_replay_nothing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::open_with(dir.path(), 3).unwrap();
        for id in 0..7 {
            manifest.commit(Edit { add: vec![part(id, "s1")], positions: BTreeMap::from([("p".into(), id)]), ..Edit::default() }).unwrap();
        }
        let log = dir.path().join("MANIFEST.log");
        let tail = std::fs::read(&log).unwrap();
        let last = Edit { seq: 7, add: vec![part(6, "s1")], positions: BTreeMap::from([("p".into(), 6)]), ..Edit::default() };
        assert_eq!(tail, frame(&last).unwrap(), "6 edits went into snapshots; one is in the log");
        let expected = manifest.state().clone();
        drop(manifest);
        let snapshot: ManifestState = serde_json::from_slice(&std::fs::read(dir.path().join("MANIFEST")).unwrap()).unwrap();
        assert_eq!(snapshot.edit_seq, 6);
        // A crash after the snapshot's rename but before the log was truncated: the log still
        // holds edits the snapshot includes (here: 5 and 6, which also remove nothing twice).
        let mut stale = Vec::new();
        for id in 4..6 {
            stale.extend(frame(&Edit { seq: id + 1, add: vec![part(id, "s1")], remove: vec![0], positions: BTreeMap::from([("p".into(), id)]), ..Edit::default() }).unwrap());
        }
        stale.extend(tail);
        std::fs::write(&log, stale).unwrap();
        let reopened = Manifest::open_with(dir.path(), 3).unwrap();
        assert_eq!(reopened.state(), &expected);
    }

    #[test]
    fn files_no_edit_names_are_removed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let mut manifest = Manifest::open(dir.path()).unwrap();
        let live = part(manifest.allocate_id(), "s1");
        let orphan = part(manifest.allocate_id(), "s1");
        for p in [&live, &orphan] {
            let path = dir.path().join(p.relative_path());
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, b"parquet").unwrap();
            std::fs::write(path.with_extension("idx"), b"idx").unwrap();
        }
        std::fs::create_dir_all(dir.path().join("tmp")).unwrap();
        std::fs::write(dir.path().join("tmp/half-written"), b"x").unwrap();
        manifest.commit(Edit { add: vec![live.clone()], ..Edit::default() }).unwrap();
        assert_eq!(manifest.remove_orphans().unwrap(), 2);
        assert!(dir.path().join(live.relative_path()).exists());
        assert!(dir.path().join(live.relative_path().with_extension("idx")).exists());
        assert!(!dir.path().join(orphan.relative_path()).exists());
        assert!(!dir.path().join("tmp").exists());
    }
}
