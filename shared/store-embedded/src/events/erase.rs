//! Data-subject erasure in [`ColumnarEvents`]: the visitors' events, sessions and profiles leave
//! memory and disk.
//!
//! 1. A commit point, so nothing of theirs is only in the buffers (the processor already stops
//!    storing their replayed events: the tombstone is recorded before the erase runs).
//! 2. Their profiles leave memory ([`crate::profiles::Profiles::remove`]).
//! 3. Every part of the site that may hold one of them (for event parts, by the sidecar's
//!    visitor filter; session parts are read) is rewritten without their rows, and one manifest
//!    edit swaps the rewritten parts in; a part left empty just leaves. The old files go when the
//!    last reader lets go of them. Rollups of the days touched are dropped (they counted them).
//! 4. All profile runs are folded into one: their rows are nobody's home any more, so the fold
//!    leaves them out, and the old runs' files are deleted.
//!
//! A crash between steps leaves the tombstone without `completed_at_ms` and the request
//! unanswered; running the erase again finishes it (each step is idempotent).

use std::collections::HashSet;
use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, BooleanArray, RecordBatch};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::Int64Type;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{lock, ColumnarEvents, LivePart};
use crate::manifest::{Edit, PartMeta, Stream};
use crate::part::{self, visitor_hash, PartWriter};
use crate::session_part;
use crate::sidecar::{self, Sidecar};
use crate::{ColumnarError, Result};

/// What one erase removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Erased {
    pub events: u64,
    pub sessions: u64,
    pub profiles: u64,
    pub parts_rewritten: u64,
}

/// A part rewritten without the erased rows (`None` part: every row went).
struct Rewritten {
    old: Arc<LivePart>,
    new: Option<(PartMeta, std::path::PathBuf)>,
    removed: u64,
}

impl ColumnarEvents {
    /// Erases `visitors` of `site_id` (see the module docs).
    pub fn erase_visitors(&self, site_id: &str, visitors: &[String]) -> Result<Erased> {
        let _rewriting = lock(&self.rewriting);
        let doomed: HashSet<&str> = visitors.iter().map(String::as_str).collect();
        let mut erased = Erased::default();
        self.commit_point_failing(None)?;
        {
            let mut buffers = lock(&self.buffers);
            // Rows appended since the commit point (a batch that was in flight).
            let before = buffers.active.len();
            let mut gone = Vec::new();
            buffers.active.retain(|e| {
                let keep = !(e.site_id == site_id && doomed.contains(e.visitor_id.as_str()));
                if !keep {
                    gone.push(e.event_id.as_u128());
                }
                keep
            });
            for id in gone {
                buffers.active_ids.remove(&id);
            }
            erased.events += (before - buffers.active.len()) as u64;
            let before = buffers.active_sessions.len();
            buffers.active_sessions.retain(|(site, _), (s, _)| !(site == site_id && doomed.contains(s.visitor_id.as_str())));
            erased.sessions += (before - buffers.active_sessions.len()) as u64;
        }
        {
            let mut profiles = self.profiles.write().unwrap_or_else(|p| p.into_inner());
            erased.profiles = visitors.iter().filter(|v| profiles.remove(site_id, v)).count() as u64;
        }
        let hashes: Vec<i64> = visitors.iter().map(|v| visitor_hash(v)).collect();
        let candidates: Vec<Arc<LivePart>> = self
            .parts_snapshot()
            .into_iter()
            .filter(|p| p.meta.site_id == site_id)
            .filter(|p| match (&p.meta.stream, &p.sidecar) {
                (Stream::Events, Some(sidecar)) => hashes.iter().any(|h| sidecar.may_hold_visitor(*h)),
                (Stream::Sessions, _) => true,
                _ => false,
            })
            .collect();
        let mut rewritten = Vec::new();
        for part in candidates {
            if let Some(done) = self.rewrite_without(&part, &doomed)? {
                rewritten.push(done);
            }
        }
        if !rewritten.is_empty() {
            let edit = Edit {
                add: rewritten.iter().filter_map(|r| r.new.as_ref().map(|(meta, _)| meta.clone())).collect(),
                remove: rewritten.iter().map(|r| r.old.meta.id).collect(),
                ..Edit::default()
            };
            lock(&self.manifest).commit(edit)?;
            let mut days = HashSet::new();
            {
                let mut parts = lock(&self.parts);
                for r in &rewritten {
                    parts.retain(|p| p.meta.id != r.old.meta.id);
                    r.old.mark_obsolete();
                    days.insert(r.old.meta.day);
                    match r.old.meta.stream {
                        Stream::Events => erased.events += r.removed,
                        _ => erased.sessions += r.removed,
                    }
                }
                for r in &rewritten {
                    if let Some((meta, path)) = &r.new {
                        let sidecar = match meta.stream {
                            Stream::Events => Some(Sidecar::open(&path.with_extension("idx"))?),
                            _ => None,
                        };
                        parts.push(Arc::new(LivePart::new(meta.clone(), path.clone(), sidecar)));
                    }
                }
            }
            lock(&self.rollups).retain(|(site, day), rollup| {
                let stale = site == site_id && days.contains(day);
                if stale {
                    rollup.mark_obsolete();
                }
                !stale
            });
            erased.parts_rewritten = rewritten.len() as u64;
        }
        if erased.profiles > 0 {
            self.fold_profile_runs_all()?;
        }
        tracing::info!(site_id, visitors = visitors.len(), events = erased.events, sessions = erased.sessions, profiles = erased.profiles, parts = erased.parts_rewritten, "erased visitors from the columnar store");
        Ok(erased)
    }

    /// `part` without the rows of `doomed`, written beside it (not yet in the manifest), or
    /// `None` when it holds none of them.
    fn rewrite_without(&self, part: &Arc<LivePart>, doomed: &HashSet<&str>) -> Result<Option<Rewritten>> {
        // `visitor_id` is the fourth column of both event and session parts.
        let visitor_column = 3;
        let file = File::open(&part.path).map_err(|e| ColumnarError::io(&part.path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file).and_then(|b| b.with_batch_size(8192).build()).map_err(|e| ColumnarError::corrupt(&part.path, e))?;
        let mut kept: Vec<RecordBatch> = Vec::new();
        let mut removed = 0u64;
        for batch in reader {
            let batch = batch.map_err(|e| ColumnarError::corrupt(&part.path, e))?;
            let visitors = batch.column(visitor_column).as_string::<i32>();
            let keep: BooleanArray = (0..batch.num_rows()).map(|i| Some(!doomed.contains(visitors.value(i)))).collect();
            removed += keep.false_count() as u64;
            kept.push(filter_record_batch(&batch, &keep).map_err(|e| ColumnarError::corrupt(&part.path, e))?);
        }
        if removed == 0 {
            return Ok(None);
        }
        let rows: u64 = kept.iter().map(|b| b.num_rows() as u64).sum();
        if rows == 0 {
            return Ok(Some(Rewritten { old: part.clone(), new: None, removed }));
        }
        let id = lock(&self.manifest).allocate_id();
        let mut meta = PartMeta { id, ..part.meta.clone() };
        let path = self.root.join(meta.relative_path());
        let schema = match part.meta.stream {
            Stream::Events => part::events_schema(),
            _ => session_part::sessions_schema(),
        };
        let mut writer = PartWriter::create(&path, schema)?;
        let ts_column = if part.meta.stream == Stream::Events { 1 } else { 0 };
        let (mut min_ts, mut max_ts) = (i64::MAX, i64::MIN);
        let (mut ids, mut hashes) = (Vec::new(), Vec::new());
        for batch in &kept {
            writer.write(batch)?;
            for &t in batch.column(ts_column).as_primitive::<Int64Type>().values() {
                (min_ts, max_ts) = (min_ts.min(t), max_ts.max(t));
            }
            if part.meta.stream == Stream::Events {
                hashes.extend_from_slice(batch.column(0).as_primitive::<Int64Type>().values());
                let column = batch.column(2).as_fixed_size_binary();
                ids.extend((0..column.len()).map(|i| u128::from_be_bytes(column.value(i).try_into().expect("16-byte ids"))));
            }
        }
        meta.bytes = writer.finish()?;
        (meta.rows, meta.min_ts, meta.max_ts) = (rows, min_ts, max_ts);
        if part.meta.stream == Stream::Events {
            sidecar::write(&path.with_extension("idx"), &ids, hashes)?;
        }
        Ok(Some(Rewritten { old: part.clone(), new: Some((meta, path)), removed }))
    }
}
