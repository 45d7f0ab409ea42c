//! Event bodies outside the B-tree: append-only segment files under `<data-dir>/event-bodies/`.
//!
//! The redb `event_index` table maps (site, ts, event id) to a [`BodyRef`] (segment, offset,
//! length, kind); the event's JSON lives in `NNNNNNNN.seg`. Appending a batch's bodies is one
//! sequential write, where inserting ~1 KB values into the B-tree copied and rewrote pages in
//! every transaction and pushed the tree out of the page cache (bench/ANALYSIS.md).
//!
//! Crash safety: a batch's bytes are written and `fdatasync`ed *before* the redb transaction
//! that references them commits, and that transaction records the new end of the segment in
//! `meta` (`event_bodies_end`). On open, bytes past the committed end (a batch whose commit
//! never happened) are cut off and later segments removed, so the files only ever hold bodies
//! a committed index entry points at. Bodies are never rewritten, which is what makes reading
//! them without redb's transaction safe, except by an erase (privacy.rs), which zeros the bodies
//! of a data subject after the transaction that unlinked them.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crm_schemas::{EventBody, StoredEvent};
use redb::{ReadableTable, WriteTransaction};

use super::{db_err, META};
use crate::{Result, StoreError};

/// (segment, offset, length, kind) of one event body.
pub(super) type BodyRef = (u32, u64, u32, u8);

/// [`BodyRef`] kinds, so scans that want one kind skip the others without reading them.
pub(super) const KIND_OTHER: u8 = 0;
pub(super) const KIND_PAGEVIEW: u8 = 1;
pub(super) const KIND_FORM: u8 = 2;

/// A segment is closed once it grows past this; a batch never straddles two segments.
pub(super) const SEGMENT_BYTES: u64 = 256 * 1024 * 1024;
const END_KEY: &str = "event_bodies_end";
/// How much a sequential reader fetches per miss.
const READ_AHEAD: usize = 256 * 1024;

pub(super) fn kind_of(event: &StoredEvent) -> u8 {
    match event.body {
        EventBody::Pageview => KIND_PAGEVIEW,
        EventBody::FormSubmit { .. } | EventBody::FormView { .. } | EventBody::FormStart { .. } => KIND_FORM,
        _ => KIND_OTHER,
    }
}

fn io_err(context: &str, err: std::io::Error) -> StoreError {
    StoreError::Io(format!("event bodies: {context}: {err}"))
}

fn segment_path(dir: &Path, segment: u32) -> PathBuf {
    dir.join(format!("{segment:08}.seg"))
}

/// Segment numbers present in `dir`, ascending.
fn segments(dir: &Path) -> Result<Vec<u32>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(|e| io_err("listing segments", e))? {
        let name = entry.map_err(|e| io_err("listing segments", e))?.file_name();
        if let Some(number) = name.to_str().and_then(|n| n.strip_suffix(".seg")).and_then(|n| n.parse::<u32>().ok()) {
            found.push(number);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// The end of the bodies the last committed transaction references.
pub(super) fn committed_end(txn: &WriteTransaction) -> Result<(u32, u64)> {
    let meta = txn.open_table(META).map_err(db_err)?;
    let end = meta.get(END_KEY).map_err(db_err)?.map(|v| v.value().to_vec());
    match end {
        None => Ok((0, 0)),
        Some(bytes) if bytes.len() == 12 => {
            let segment = u32::from_le_bytes(bytes[..4].try_into().expect("4 bytes"));
            let len = u64::from_le_bytes(bytes[4..].try_into().expect("8 bytes"));
            Ok((segment, len))
        }
        Some(bytes) => Err(StoreError::Corrupt(format!("{END_KEY} has {} bytes, expected 12", bytes.len()))),
    }
}

fn record_end(txn: &WriteTransaction, segment: u32, len: u64) -> Result<()> {
    let mut value = [0u8; 12];
    value[..4].copy_from_slice(&segment.to_le_bytes());
    value[4..].copy_from_slice(&len.to_le_bytes());
    txn.open_table(META).map_err(db_err)?.insert(END_KEY, value.as_slice()).map_err(db_err)?;
    Ok(())
}

/// Drops the recorded end (the store holds no bodies any more, [`Appender::reset`]).
pub(super) fn forget_end(txn: &WriteTransaction) -> Result<()> {
    txn.open_table(META).map_err(db_err)?.remove(END_KEY).map_err(db_err)?;
    Ok(())
}

/// The single appender (the store's writes are serialised by redb's write lock and this one).
pub(super) struct Appender {
    dir: PathBuf,
    /// Roll over to a new segment at this size ([`SEGMENT_BYTES`] outside tests).
    segment_bytes: u64,
    segment: u32,
    file: File,
    len: u64,
    /// The current batch's bytes, written at [`Appender::flush`].
    pending: Vec<u8>,
}

impl Appender {
    /// Opens the directory and cuts it back to `committed` (segment, length).
    pub(super) fn open(dir: &Path, committed: (u32, u64), segment_bytes: u64) -> Result<Appender> {
        std::fs::create_dir_all(dir).map_err(|e| io_err("creating the directory", e))?;
        let (segment, len) = committed;
        for stale in segments(dir)?.into_iter().filter(|s| *s > segment) {
            std::fs::remove_file(segment_path(dir, stale)).map_err(|e| io_err("removing an uncommitted segment", e))?;
        }
        let file = OpenOptions::new()
            .create(true)
            .read(true)
            .write(true)
            .truncate(false)
            .open(segment_path(dir, segment))
            .map_err(|e| io_err("opening the segment", e))?;
        let on_disk = file.metadata().map_err(|e| io_err("reading the segment's size", e))?.len();
        if on_disk < len {
            return Err(StoreError::Corrupt(format!("event body segment {segment} has {on_disk} bytes, the index references {len}")));
        }
        if on_disk > len {
            tracing::warn!(segment, committed = len, on_disk, "cutting uncommitted event bodies");
            file.set_len(len).map_err(|e| io_err("cutting uncommitted bytes", e))?;
            file.sync_all().map_err(|e| io_err("syncing the segment", e))?;
        }
        File::open(dir).and_then(|d| d.sync_all()).map_err(|e| io_err("syncing the directory", e))?;
        Ok(Appender { dir: dir.to_owned(), segment_bytes, segment, file, len, pending: Vec::new() })
    }

    /// Removes every segment and starts again at an empty segment 0, after the transaction
    /// that dropped the index and the recorded end ([`forget_end`]) has committed.
    pub(super) fn reset(&mut self) -> Result<()> {
        for segment in segments(&self.dir)? {
            std::fs::remove_file(segment_path(&self.dir, segment)).map_err(|e| io_err("removing a segment", e))?;
        }
        *self = Appender::open(&self.dir, (0, 0), self.segment_bytes)?;
        Ok(())
    }

    /// Starts a batch: a new segment first when the current one is full.
    pub(super) fn begin(&mut self) -> Result<()> {
        self.pending.clear();
        if self.len >= self.segment_bytes {
            let next = self.segment + 1;
            let file = OpenOptions::new()
                .create(true)
                .read(true)
                .write(true)
                .truncate(true)
                .open(segment_path(&self.dir, next))
                .map_err(|e| io_err("creating a segment", e))?;
            File::open(&self.dir).and_then(|d| d.sync_all()).map_err(|e| io_err("syncing the directory", e))?;
            (self.segment, self.file, self.len) = (next, file, 0);
        }
        Ok(())
    }

    /// Adds one body to the batch and says where it will live.
    pub(super) fn push(&mut self, body: &[u8], kind: u8) -> Result<BodyRef> {
        let len = u32::try_from(body.len()).map_err(|_| StoreError::Corrupt("event body over 4 GiB".into()))?;
        let offset = self.len + self.pending.len() as u64;
        self.pending.extend_from_slice(body);
        Ok((self.segment, offset, len, kind))
    }

    /// Writes and syncs the batch's bodies and records their end in `txn`; call before commit.
    /// Once written the bytes count as part of the segment even if the commit then fails: they
    /// are never overwritten (a commit that reported an error may still have reached the disk),
    /// and the next open cuts them if it did not.
    pub(super) fn flush(&mut self, txn: &WriteTransaction) -> Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all_at(&self.pending, self.len).map_err(|e| io_err("appending", e))?;
        self.file.sync_data().map_err(|e| io_err("syncing", e))?;
        self.len += self.pending.len() as u64;
        self.pending.clear();
        record_end(txn, self.segment, self.len)
    }
}

/// Overwrites erased bodies with zeros and syncs their segments (the erase's index removal has
/// committed, so nothing references them). Segments are otherwise append-only.
pub(super) fn zero(dir: &Path, refs: &[BodyRef]) -> Result<()> {
    let mut files: HashMap<u32, File> = HashMap::new();
    for &(segment, offset, len, _) in refs {
        let file = match files.entry(segment) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                let file = OpenOptions::new().write(true).open(segment_path(dir, segment)).map_err(|e| io_err("opening a segment to erase", e))?;
                entry.insert(file)
            }
        };
        file.write_all_at(&vec![0u8; len as usize], offset).map_err(|e| io_err("erasing a body", e))?;
    }
    for file in files.values() {
        file.sync_data().map_err(|e| io_err("syncing an erased segment", e))?;
    }
    Ok(())
}

/// Reads bodies for one query. Sequential readers fetch ahead, point readers read exactly.
pub(super) struct Reader<'a> {
    dir: &'a Path,
    files: HashMap<u32, File>,
    sequential: bool,
    buffer: Vec<u8>,
    /// (segment, offset) the buffer starts at.
    buffered: Option<(u32, u64)>,
}

impl<'a> Reader<'a> {
    /// For scans in time order: consecutive bodies usually sit next to each other on disk.
    pub(super) fn sequential(dir: &'a Path) -> Reader<'a> {
        Reader { dir, files: HashMap::new(), sequential: true, buffer: Vec::new(), buffered: None }
    }

    /// For scattered reads (a visitor's timeline).
    pub(super) fn point(dir: &'a Path) -> Reader<'a> {
        Reader { sequential: false, ..Reader::sequential(dir) }
    }

    pub(super) fn read(&mut self, at: BodyRef) -> Result<&[u8]> {
        let (segment, offset, len, _) = at;
        let len = len as usize;
        if let Some((seg, start)) = self.buffered {
            if seg == segment && offset >= start && offset + len as u64 <= start + self.buffer.len() as u64 {
                let from = (offset - start) as usize;
                return Ok(&self.buffer[from..from + len]);
            }
        }
        let file = match self.files.entry(segment) {
            std::collections::hash_map::Entry::Occupied(entry) => entry.into_mut(),
            std::collections::hash_map::Entry::Vacant(entry) => {
                entry.insert(File::open(segment_path(self.dir, segment)).map_err(|e| io_err("opening a segment", e))?)
            }
        };
        let want = if self.sequential { len.max(READ_AHEAD) } else { len };
        self.buffer.resize(want, 0);
        let mut filled = 0;
        while filled < want {
            match file.read_at(&mut self.buffer[filled..], offset + filled as u64) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_err("reading", e)),
            }
        }
        if filled < len {
            return Err(StoreError::Corrupt(format!("event body at segment {segment} offset {offset} is cut short")));
        }
        self.buffer.truncate(filled);
        self.buffered = Some((segment, offset));
        Ok(&self.buffer[..len])
    }
}
