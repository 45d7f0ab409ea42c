//! On-disk format of the embedded log: segment files of length-prefixed, CRC-checked records.
//!
//! ```text
//! segment file  <dir>/<base offset, 20 digits>.seg
//! record        [body_len: u32 LE][crc32(body): u32 LE][body]
//! body          [offset: u64 LE][topic: u8][key_len: u16 LE][key][payload]
//! ```
//! A record is visible only when it is complete and its CRC matches; a torn tail left by a crash
//! is cut off when the log is reopened.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use bytes::Bytes;

use crate::{LogError, Record, Topic};

pub(crate) const HEADER_LEN: usize = 8;
pub(crate) const BODY_FIXED_LEN: usize = 8 + 1 + 2;
pub(crate) const MAX_RECORD_BYTES: usize = 8 * 1024 * 1024;

pub(crate) fn segment_path(dir: &Path, base: u64) -> PathBuf {
    dir.join(format!("{base:020}.seg"))
}

/// Segment base offsets present in `dir`, ascending.
pub(crate) fn list_segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut bases = Vec::new();
    for entry in fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(stem) = name.strip_suffix(".seg") {
            if let Ok(base) = stem.parse::<u64>() {
                bases.push(base);
            }
        }
    }
    bases.sort_unstable();
    Ok(bases)
}

pub(crate) fn encoded_len(record: &Record) -> usize {
    HEADER_LEN + BODY_FIXED_LEN + record.key.len() + record.payload.len()
}

pub(crate) fn encode(record: &Record, offset: u64, out: &mut Vec<u8>) {
    let body_len = BODY_FIXED_LEN + record.key.len() + record.payload.len();
    let start = out.len();
    out.extend_from_slice(&(body_len as u32).to_le_bytes());
    out.extend_from_slice(&[0u8; 4]);
    out.extend_from_slice(&offset.to_le_bytes());
    out.push(record.topic.as_u8());
    out.extend_from_slice(&(record.key.len() as u16).to_le_bytes());
    out.extend_from_slice(&record.key);
    out.extend_from_slice(&record.payload);
    let crc = crc32fast::hash(&out[start + HEADER_LEN..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

#[derive(Debug)]
pub(crate) struct DecodedRecord {
    pub offset: u64,
    pub topic: Option<Topic>,
    pub key: Bytes,
    pub payload: Bytes,
    pub encoded_len: u64,
}

fn decode_body(body: Vec<u8>) -> Option<DecodedRecord> {
    if body.len() < BODY_FIXED_LEN {
        return None;
    }
    let offset = u64::from_le_bytes(body[0..8].try_into().ok()?);
    let topic = Topic::from_u8(body[8]);
    let key_len = u16::from_le_bytes(body[9..11].try_into().ok()?) as usize;
    if BODY_FIXED_LEN + key_len > body.len() {
        return None;
    }
    let encoded_len = (HEADER_LEN + body.len()) as u64;
    let body = Bytes::from(body);
    Some(DecodedRecord {
        offset,
        topic,
        key: body.slice(BODY_FIXED_LEN..BODY_FIXED_LEN + key_len),
        payload: body.slice(BODY_FIXED_LEN + key_len..),
        encoded_len,
    })
}

/// Outcome of trying to read the next record at a cursor.
pub(crate) enum ReadOutcome {
    Record(DecodedRecord),
    /// No complete, valid record is present (yet) at this position.
    End,
}

/// A sequential reader over one segment that never consumes a partial record.
pub(crate) struct SegmentCursor {
    pub base: u64,
    reader: BufReader<File>,
    pub position: u64,
}

impl SegmentCursor {
    pub fn open(dir: &Path, base: u64) -> io::Result<SegmentCursor> {
        let file = File::open(segment_path(dir, base))?;
        Ok(SegmentCursor { base, reader: BufReader::with_capacity(256 * 1024, file), position: 0 })
    }

    fn rewind(&mut self) -> io::Result<()> {
        self.reader.seek(SeekFrom::Start(self.position))?;
        Ok(())
    }

    pub fn read_next(&mut self) -> io::Result<ReadOutcome> {
        let mut header = [0u8; HEADER_LEN];
        if let Err(err) = self.reader.read_exact(&mut header) {
            return if err.kind() == io::ErrorKind::UnexpectedEof {
                self.rewind()?;
                Ok(ReadOutcome::End)
            } else {
                Err(err)
            };
        }
        let body_len = u32::from_le_bytes(header[0..4].try_into().expect("4 bytes")) as usize;
        let crc = u32::from_le_bytes(header[4..8].try_into().expect("4 bytes"));
        if !(BODY_FIXED_LEN..=MAX_RECORD_BYTES + BODY_FIXED_LEN + u16::MAX as usize).contains(&body_len) {
            self.rewind()?;
            return Ok(ReadOutcome::End);
        }
        let mut body = vec![0u8; body_len];
        if let Err(err) = self.reader.read_exact(&mut body) {
            return if err.kind() == io::ErrorKind::UnexpectedEof {
                self.rewind()?;
                Ok(ReadOutcome::End)
            } else {
                Err(err)
            };
        }
        if crc32fast::hash(&body) != crc {
            self.rewind()?;
            return Ok(ReadOutcome::End);
        }
        match decode_body(body) {
            Some(record) => {
                self.position += record.encoded_len;
                Ok(ReadOutcome::Record(record))
            }
            None => {
                self.rewind()?;
                Ok(ReadOutcome::End)
            }
        }
    }
}

/// Scans the last segment after a restart: returns the next offset and the byte length of the
/// valid prefix, truncating anything after it (a torn write from a crash).
pub(crate) fn recover_tail(dir: &Path, base: u64) -> Result<(u64, u64), LogError> {
    let mut cursor = SegmentCursor::open(dir, base)?;
    let mut next_offset = base;
    loop {
        match cursor.read_next()? {
            ReadOutcome::Record(record) => {
                if record.offset != next_offset {
                    return Err(LogError::Corrupt {
                        segment: segment_path(dir, base).display().to_string(),
                        position: cursor.position,
                        reason: format!("expected offset {next_offset}, found {}", record.offset),
                    });
                }
                next_offset += 1;
            }
            ReadOutcome::End => break,
        }
    }
    let valid_len = cursor.position;
    let path = segment_path(dir, base);
    let file = OpenOptions::new().write(true).open(&path)?;
    let actual = file.metadata()?.len();
    if actual > valid_len {
        tracing::warn!(segment = %path.display(), valid_len, actual, "truncating torn tail of event log segment");
        file.set_len(valid_len)?;
        file.sync_all()?;
    }
    Ok((next_offset, valid_len))
}

pub(crate) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn record(payload: &str) -> Record {
        Record::new(Topic::Events, Bytes::from_static(b"k"), payload.to_owned())
    }

    #[test]
    fn torn_tail_is_truncated_and_earlier_records_survive() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        encode(&record("one"), 0, &mut buf);
        encode(&record("two"), 1, &mut buf);
        let full = buf.len();
        encode(&record("three"), 2, &mut buf);
        buf.truncate(buf.len() - 3);
        let mut f = File::create(segment_path(dir.path(), 0)).unwrap();
        f.write_all(&buf).unwrap();
        drop(f);
        let (next, valid) = recover_tail(dir.path(), 0).unwrap();
        assert_eq!(next, 2);
        assert_eq!(valid as usize, full);
        assert_eq!(fs::metadata(segment_path(dir.path(), 0)).unwrap().len() as usize, full);
    }

    #[test]
    fn flipped_bit_stops_reading_at_the_damaged_record() {
        let dir = tempfile::tempdir().unwrap();
        let mut buf = Vec::new();
        encode(&record("one"), 0, &mut buf);
        let first = buf.len();
        encode(&record("two"), 1, &mut buf);
        buf[first + HEADER_LEN + 12] ^= 0xff;
        fs::write(segment_path(dir.path(), 0), &buf).unwrap();
        let mut cursor = SegmentCursor::open(dir.path(), 0).unwrap();
        assert!(matches!(cursor.read_next().unwrap(), ReadOutcome::Record(r) if r.payload == "one"));
        assert!(matches!(cursor.read_next().unwrap(), ReadOutcome::End));
        assert_eq!(cursor.position as usize, first);
    }
}
