//! A part's `.idx` sidecar: which event ids and which visitors the part holds, readable without
//! opening the Parquet file.
//!
//! Layout (little endian): `b"CRMIDX01" | n_ids u64 | id bloom len u32 | id bloom |
//! visitor bloom len u32 | visitor bloom | n_ids sorted ids (u128) | crc32 of all before`.
//! Opening checks the checksum and keeps only the two bloom filters in memory (about 1.2 bytes
//! per event at 1 % false positives); the sorted ids stay on disk and a bloom hit is confirmed
//! by a binary search of positioned reads, so memory does not grow 16 bytes per stored event.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use datafusion::parquet::bloom_filter::Sbbf;

use crate::{write_durably, ColumnarError, Result};

const MAGIC: &[u8; 8] = b"CRMIDX01";
/// False-positive rate of both filters.
const FPP: f64 = 0.01;

fn bloom(n: usize) -> Sbbf {
    Sbbf::new_with_ndv_fpp(n.max(1) as u64, FPP).expect("a 1 % false-positive rate is valid")
}

fn bloom_bytes(filter: &Sbbf) -> Vec<u8> {
    let mut bytes = Vec::new();
    filter.write_bitset(&mut bytes).expect("writing to a Vec cannot fail");
    bytes
}

/// Writes the sidecar of a part holding `ids` (any order, no duplicates) and the visitors
/// hashed as `visitor_hashes`.
pub fn write(path: &Path, ids: &[u128], visitor_hashes: impl IntoIterator<Item = i64>) -> Result<()> {
    let mut sorted = ids.to_vec();
    sorted.sort_unstable();
    let mut id_filter = bloom(sorted.len());
    for id in &sorted {
        id_filter.insert(&id.to_le_bytes()[..]);
    }
    let hashes: Vec<i64> = visitor_hashes.into_iter().collect();
    let mut visitor_filter = bloom(hashes.len());
    for hash in &hashes {
        visitor_filter.insert(hash);
    }
    let (id_bits, visitor_bits) = (bloom_bytes(&id_filter), bloom_bytes(&visitor_filter));
    let mut out = Vec::with_capacity(8 + 8 + 8 + id_bits.len() + visitor_bits.len() + sorted.len() * 16 + 4);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&(sorted.len() as u64).to_le_bytes());
    out.extend_from_slice(&(id_bits.len() as u32).to_le_bytes());
    out.extend_from_slice(&id_bits);
    out.extend_from_slice(&(visitor_bits.len() as u32).to_le_bytes());
    out.extend_from_slice(&visitor_bits);
    for id in &sorted {
        out.extend_from_slice(&id.to_le_bytes());
    }
    out.extend_from_slice(&crc32fast::hash(&out).to_le_bytes());
    write_durably(path, &out)
}

/// An open sidecar: the filters in memory, the ids on disk.
pub struct Sidecar {
    path: PathBuf,
    file: File,
    ids: Sbbf,
    visitors: Sbbf,
    ids_at: u64,
    n_ids: u64,
}

impl Sidecar {
    pub fn open(path: &Path) -> Result<Sidecar> {
        let bytes = std::fs::read(path).map_err(|e| ColumnarError::io(path, e))?;
        let corrupt = |what: &str| ColumnarError::corrupt(path, what);
        if bytes.len() < 8 + 8 + 4 + 4 + 4 || &bytes[..8] != MAGIC {
            return Err(corrupt("not an id sidecar"));
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body) != u32::from_le_bytes(crc.try_into().expect("4 bytes")) {
            return Err(corrupt("checksum mismatch"));
        }
        let mut at = 8;
        let mut take = |n: usize| -> Result<&[u8]> {
            let slice = body.get(at..at + n).ok_or_else(|| corrupt("truncated"))?;
            at += n;
            Ok(slice)
        };
        let n_ids = u64::from_le_bytes(take(8)?.try_into().expect("8 bytes"));
        let mut filter = || -> Result<Sbbf> {
            let len = u32::from_le_bytes(take(4)?.try_into().expect("4 bytes")) as usize;
            // A filter is whole 32-byte blocks, at least one (an empty one cannot be probed).
            if len == 0 || len % 32 != 0 {
                return Err(corrupt("bloom filter length is not whole blocks"));
            }
            Ok(Sbbf::new(take(len)?))
        };
        let ids = filter()?;
        let visitors = filter()?;
        let ids_at = at as u64;
        if body.len() as u64 != ids_at + n_ids * 16 {
            return Err(corrupt("id count does not match the file length"));
        }
        let file = File::open(path).map_err(|e| ColumnarError::io(path, e))?;
        Ok(Sidecar { path: path.to_owned(), file, ids, visitors, ids_at, n_ids })
    }

    pub fn len(&self) -> u64 {
        self.n_ids
    }

    pub fn is_empty(&self) -> bool {
        self.n_ids == 0
    }

    /// Whether the part may hold rows of the visitor (false means certainly not).
    pub fn may_hold_visitor(&self, visitor_hash: i64) -> bool {
        self.visitors.check(&visitor_hash)
    }

    /// Whether the part holds the event id (exact: a bloom hit is confirmed on disk).
    pub fn contains(&self, id: u128) -> Result<bool> {
        if !self.ids.check(&id.to_le_bytes()[..]) {
            return Ok(false);
        }
        let (mut low, mut high) = (0u64, self.n_ids);
        let mut buf = [0u8; 16];
        while low < high {
            let mid = low + (high - low) / 2;
            self.file.read_exact_at(&mut buf, self.ids_at + mid * 16).map_err(|e| ColumnarError::io(&self.path, e))?;
            let found = u128::from_le_bytes(buf);
            match found.cmp(&id) {
                std::cmp::Ordering::Equal => return Ok(true),
                std::cmp::Ordering::Less => low = mid + 1,
                std::cmp::Ordering::Greater => high = mid,
            }
        }
        Ok(false)
    }

    /// Every id, in order (compaction merges them).
    pub fn ids(&self) -> Result<Vec<u128>> {
        let mut bytes = vec![0u8; (self.n_ids * 16) as usize];
        self.file.read_exact_at(&mut bytes, self.ids_at).map_err(|e| ColumnarError::io(&self.path, e))?;
        Ok(bytes.chunks_exact(16).map(|c| u128::from_le_bytes(c.try_into().expect("16 bytes"))).collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_found_exactly_and_visitors_probabilistically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.idx");
        let ids: Vec<u128> = (0..5_000u128).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835)).collect();
        write(&path, &ids, (0..500i64).map(|v| v * 7)).unwrap();
        let sidecar = Sidecar::open(&path).unwrap();
        assert_eq!(sidecar.len(), 5_000);
        assert!(ids.iter().all(|&id| sidecar.contains(id).unwrap()), "every stored id is found");
        let absent = (5_000..25_000u128).map(|i| i.wrapping_mul(0x9E37_79B9_7F4A_7C15_F39C_C060_5CED_C835));
        assert!(absent.into_iter().all(|id| !sidecar.contains(id).unwrap()), "no absent id is reported, bloom hits included");
        assert!((0..500i64).all(|v| sidecar.may_hold_visitor(v * 7)));
        let false_hits = (0..10_000i64).filter(|v| v % 7 != 0 && sidecar.may_hold_visitor(*v + 10_000)).count();
        assert!(false_hits < 400, "about 1 % false positives, got {false_hits} of 10 000");
        let mut sorted = ids.clone();
        sorted.sort_unstable();
        assert_eq!(sidecar.ids().unwrap(), sorted);
    }

    #[test]
    fn an_empty_part_has_an_empty_sidecar() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.idx");
        write(&path, &[], []).unwrap();
        let sidecar = Sidecar::open(&path).unwrap();
        assert!(sidecar.is_empty());
        assert!(!sidecar.contains(42).unwrap());
    }

    #[test]
    fn damage_is_reported_as_corruption() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.idx");
        write(&path, &[1, 2, 3], [9]).unwrap();
        let good = std::fs::read(&path).unwrap();
        for damaged in [good[..good.len() - 5].to_vec(), { let mut b = good.clone(); b[20] ^= 1; b }, b"CRMIDX01".to_vec(), b"garbage!garbage!garbage!garbage!".to_vec()] {
            std::fs::write(&path, &damaged).unwrap();
            match Sidecar::open(&path) {
                Err(err @ ColumnarError::Corrupt { .. }) => assert!(!err.is_retryable()),
                Err(other) => panic!("expected corruption, got {other}"),
                Ok(_) => panic!("damaged sidecar opened"),
            }
        }
    }
}
