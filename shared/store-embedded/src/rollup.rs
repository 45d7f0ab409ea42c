//! Day rollups: the overview's figures of one closed (site, UTC day), computed once so an
//! overview over weeks reads a few small files instead of scanning every event and session.
//!
//! A rollup is derived data. It names the parts (both streams) it was computed from, and a
//! reader uses it only while the day's live parts are exactly those and no buffered row falls on
//! that day; otherwise the day is scanned as if the rollup did not exist. So a late event, a
//! merge or retention never makes an overview wrong, only slower until the next maintenance
//! round rebuilds the rollup ([`crate::events::ColumnarEvents::build_rollups`]). For the same
//! reason the file is written without fsync: a torn or stale file fails its checksum or its
//! part list and is rebuilt.
//!
//! Bots change a closed day without touching its parts: a visitor counted as a human that day
//! whose profile becomes a bot later must leave the day's figures. The rollup keeps the keys of
//! the visitors it counted, so [`Rollup::counts_no_bot`] tells whether any of them is a bot now;
//! a rollup that counted one is scanned around like a stale one and rebuilt.
//!
//! File (`rollups/s-<site>/d-<day>-<parts hash>.roll`), little-endian:
//! `CRMROLL1`, u32 + JSON header (site, day, part ids), u32 + JSON figures ([`Partial`] without
//! visitors), u64 n + n × 16-byte visitor keys (sorted), u32 CRC-32 of everything before it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use serde::{Deserialize, Serialize};

use crate::query::Partial;
use crate::{ColumnarError, Result};

const MAGIC: &[u8; 8] = b"CRMROLL1";

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    site_id: String,
    day: i64,
    /// Ids of the event and session parts the figures were computed from, ascending.
    parts: Vec<u64>,
}

/// One rollup file (its header in memory; the figures are read per query).
#[derive(Debug)]
pub struct Rollup {
    header: Header,
    path: PathBuf,
    /// Set when a newer rollup or retention replaced this one: the file is deleted when the
    /// last reader lets go.
    obsolete: AtomicBool,
    /// 1 + the bot generation at which none of the counted visitors was a bot (0: unchecked).
    checked: AtomicU64,
}

impl Rollup {
    /// Where the rollup of `parts` for (site, day) lives under the columnar root.
    pub fn relative_path(site_id: &str, day: i64, parts: &[u64]) -> PathBuf {
        let mut crc = crc32fast::Hasher::new();
        for id in parts {
            crc.update(&id.to_le_bytes());
        }
        PathBuf::from("rollups").join(format!("s-{site_id}")).join(format!("d-{day}-{:08x}.roll", crc.finalize()))
    }

    /// Writes the rollup of `parts` (ascending ids) to `path` through a temporary file and a
    /// rename, so a reader never sees half a file under its name.
    pub fn write(path: &Path, site_id: &str, day: i64, parts: Vec<u64>, mut partial: Partial) -> Result<Rollup> {
        let header = Header { site_id: site_id.to_owned(), day, parts };
        let mut visitors = std::mem::take(&mut partial.visitors);
        visitors.sort_unstable();
        visitors.dedup();
        let head = serde_json::to_vec(&header).map_err(|e| ColumnarError::corrupt(path, e))?;
        let figures = serde_json::to_vec(&partial).map_err(|e| ColumnarError::corrupt(path, e))?;
        let mut bytes = Vec::with_capacity(32 + head.len() + figures.len() + visitors.len() * 16);
        bytes.extend_from_slice(MAGIC);
        for block in [&head, &figures] {
            bytes.extend_from_slice(&(block.len() as u32).to_le_bytes());
            bytes.extend_from_slice(block);
        }
        bytes.extend_from_slice(&(visitors.len() as u64).to_le_bytes());
        for key in &visitors {
            bytes.extend_from_slice(&key.to_le_bytes());
        }
        bytes.extend_from_slice(&crc32fast::hash(&bytes).to_le_bytes());
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ColumnarError::io(dir, e))?;
        }
        let tmp = path.with_extension("roll.tmp");
        std::fs::write(&tmp, &bytes).map_err(|e| ColumnarError::io(&tmp, e))?;
        std::fs::rename(&tmp, path).map_err(|e| ColumnarError::io(path, e))?;
        Ok(Rollup { header, path: path.to_owned(), obsolete: false.into(), checked: 0.into() })
    }

    /// Reads a rollup's header (not its figures, which [`Rollup::read`] checks).
    pub fn open(path: &Path) -> Result<Rollup> {
        use std::io::Read as _;
        let mut file = std::fs::File::open(path).map_err(|e| ColumnarError::io(path, e))?;
        let mut prefix = [0u8; 12];
        file.read_exact(&mut prefix).map_err(|e| ColumnarError::io(path, e))?;
        if &prefix[..8] != MAGIC {
            return Err(ColumnarError::corrupt(path, "not a rollup file"));
        }
        let len = u32::from_le_bytes(prefix[8..12].try_into().expect("four bytes")) as usize;
        let mut head = vec![0u8; len.min(1 << 20)];
        file.read_exact(&mut head).map_err(|e| ColumnarError::io(path, e))?;
        let header = serde_json::from_slice(&head).map_err(|e| ColumnarError::corrupt(path, e))?;
        Ok(Rollup { header, path: path.to_owned(), obsolete: false.into(), checked: 0.into() })
    }

    /// The figures with their visitor keys, after checking the file's checksum.
    pub fn read(&self) -> Result<Partial> {
        let path = &self.path;
        let bytes = std::fs::read(path).map_err(|e| ColumnarError::io(path, e))?;
        let corrupt = |what: &str| ColumnarError::corrupt(path, what);
        let (body, crc) = bytes.split_at_checked(bytes.len().saturating_sub(4)).ok_or_else(|| corrupt("truncated"))?;
        if body.len() < 12 || crc32fast::hash(body).to_le_bytes() != crc || &body[..8] != MAGIC {
            return Err(corrupt("checksum mismatch"));
        }
        let mut at = 8;
        let mut block = || -> Result<&[u8]> {
            let len = body.get(at..at + 4).ok_or_else(|| corrupt("truncated"))?;
            let len = u32::from_le_bytes(len.try_into().expect("four bytes")) as usize;
            let out = body.get(at + 4..at + 4 + len).ok_or_else(|| corrupt("truncated"))?;
            at += 4 + len;
            Ok(out)
        };
        let _header = block()?;
        let mut partial: Partial = serde_json::from_slice(block()?).map_err(|e| ColumnarError::corrupt(path, e))?;
        let rest = &body[at..];
        let n = rest.get(..8).map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes"))).ok_or_else(|| corrupt("truncated"))?;
        let keys = &rest[8..];
        if keys.len() as u64 != n.saturating_mul(16) {
            return Err(corrupt("visitor keys do not match their count"));
        }
        partial.visitors = keys.chunks_exact(16).map(|k| u128::from_le_bytes(k.try_into().expect("sixteen bytes"))).collect();
        Ok(partial)
    }

    /// Whether none of the visitors this rollup counted is among `bots` (the keys of the site's
    /// bot visitors at `generation`, [`crate::profiles::Profiles::bot_keys`]). A clean answer is
    /// remembered for the generation, so the keys are read again only after the bot set moved.
    /// Profiles never stop being bots, so a rollup clean against a set is clean against its
    /// subsets.
    pub fn counts_no_bot(&self, generation: u64, bots: &hashbrown::HashSet<u128>) -> Result<bool> {
        if bots.is_empty() || self.checked.load(Ordering::Acquire) == generation + 1 {
            return Ok(true);
        }
        let clean = !self.read()?.visitors.iter().any(|key| bots.contains(key));
        if clean {
            self.checked.store(generation + 1, Ordering::Release);
        }
        Ok(clean)
    }

    pub fn site_id(&self) -> &str {
        &self.header.site_id
    }

    pub fn day(&self) -> i64 {
        self.header.day
    }

    /// The part ids (ascending) the figures were computed from.
    pub fn parts(&self) -> &[u64] {
        &self.header.parts
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn mark_obsolete(&self) {
        self.obsolete.store(true, Ordering::Release);
    }
}

impl Drop for Rollup {
    fn drop(&mut self) {
        if self.obsolete.load(Ordering::Acquire) {
            crate::remove_unused(&self.path, "replaced rollup");
        }
    }
}

/// Every rollup file under `root/rollups` whose header reads; the others (and leftover
/// temporary files) are deleted, to be rebuilt.
pub fn load_all(root: &Path) -> Vec<Rollup> {
    let mut out = Vec::new();
    let Ok(sites) = std::fs::read_dir(root.join("rollups")) else { return out };
    for site in sites.flatten() {
        let Ok(files) = std::fs::read_dir(site.path()) else { continue };
        for file in files.flatten() {
            let path = file.path();
            let opened = match path.extension().and_then(|e| e.to_str()) {
                Some("roll") => Rollup::open(&path),
                _ => Err(ColumnarError::corrupt(&path, "not a rollup file")),
            };
            match opened {
                Ok(rollup) => out.push(rollup),
                Err(err) => {
                    tracing::warn!(path = %path.display(), error = %err, "removing an unreadable rollup; it is rebuilt");
                    let _ = std::fs::remove_file(&path);
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn partial() -> Partial {
        let mut p = Partial { sessions: 3, bounces: 1, duration_ms: 900, pageviews: 7, visitors: vec![9, 2, 9, u128::MAX], ..Partial::default() };
        p.groups[0].insert("/pricing \"quoted\"".into(), 4);
        p.groups[5].insert("newsletter".into(), 1);
        p
    }

    #[test]
    fn a_rollup_reads_back_what_was_written_with_visitors_deduplicated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(Rollup::relative_path("demo", 20_000, &[4, 7]));
        Rollup::write(&path, "demo", 20_000, vec![4, 7], partial()).unwrap();
        let opened = Rollup::open(&path).unwrap();
        assert_eq!((opened.site_id(), opened.day(), opened.parts()), ("demo", 20_000, &[4u64, 7][..]));
        let read = opened.read().unwrap();
        assert_eq!(read, Partial { visitors: vec![2, 9, u128::MAX], ..partial() });
        assert_eq!(load_all(dir.path()).len(), 1);
    }

    #[test]
    fn a_damaged_rollup_is_refused_and_removed_at_load() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(Rollup::relative_path("demo", 1, &[1]));
        let rollup = Rollup::write(&path, "demo", 1, vec![1], partial()).unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let last = bytes.len() - 10;
        bytes[last] ^= 0xff;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(rollup.read(), Err(ColumnarError::Corrupt { .. })), "a flipped visitor key fails the checksum");
        std::fs::write(&path, b"CRMROLL1\xff\xff").unwrap();
        std::fs::write(path.with_extension("roll.tmp"), b"half").unwrap();
        assert!(load_all(dir.path()).is_empty());
        assert!(!path.exists() && !path.with_extension("roll.tmp").exists(), "unreadable files are removed to be rebuilt");
    }

    #[test]
    fn a_rollup_that_counted_a_visitor_now_a_bot_is_not_clean() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(Rollup::relative_path("demo", 1, &[1]));
        let rollup = Rollup::write(&path, "demo", 1, vec![1], partial()).unwrap();
        assert!(rollup.counts_no_bot(0, &hashbrown::HashSet::new()).unwrap());
        assert!(rollup.counts_no_bot(3, &hashbrown::HashSet::from([5u128, 6])).unwrap(), "no counted visitor is a bot");
        assert!(!rollup.counts_no_bot(4, &hashbrown::HashSet::from([5u128, 9])).unwrap(), "visitor 9 was counted and is a bot now");
        assert!(!rollup.counts_no_bot(4, &hashbrown::HashSet::from([5u128, 9])).unwrap(), "a dirty answer is not remembered");
    }

    #[test]
    fn a_replaced_rollup_deletes_its_file_when_the_last_reader_lets_go() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(Rollup::relative_path("demo", 1, &[1]));
        let rollup = std::sync::Arc::new(Rollup::write(&path, "demo", 1, vec![1], partial()).unwrap());
        let reader = rollup.clone();
        rollup.mark_obsolete();
        drop(rollup);
        assert!(reader.read().is_ok(), "a reader holding it still reads it");
        drop(reader);
        assert!(!path.exists());
    }
}
