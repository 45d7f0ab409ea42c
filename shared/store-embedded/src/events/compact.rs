//! Compaction and retention of [`ColumnarEvents`] parts.
//!
//! Every commit point adds one part per (stream, site, day) it saw, so a busy day gathers many
//! small parts. [`ColumnarEvents::compact`] merges a group's parts into one once it has
//! `min_parts` of them, and every group of a closed day (older than yesterday) into one level-2
//! part. Event rows are merged by their sort key; session rows keep only each session's highest
//! version. The merged part and its sidecar are fsynced before one manifest edit swaps it for
//! its inputs, so a crash leaves either the inputs or the merged part (the other side is an
//! orphan, removed at open). Inputs are deleted when the last reader holding them lets go.
//!
//! [`ColumnarEvents::drop_days_before`] is retention: whole day partitions leave in one edit.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch, UInt32Array};
use datafusion::arrow::compute::{concat_batches, lexsort_to_indices, take_record_batch, SortColumn};
use datafusion::arrow::datatypes::UInt64Type;
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use super::{lock, ColumnarEvents, LivePart, DAY_MS};
use crate::manifest::{Edit, PartMeta, Stream};
use crate::part::{self, Written};
use crate::session_part;
use crate::sidecar::{self, Sidecar};
use crate::{ColumnarError, Result};

/// What one [`ColumnarEvents::compact`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    pub groups: usize,
    pub inputs: usize,
}

fn read_batches(part: &LivePart) -> Result<RecordBatch> {
    let path = &part.path;
    let file = File::open(path).map_err(|e| ColumnarError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ColumnarError::corrupt(path, e))?;
    let schema = builder.schema().clone();
    let reader = builder.build().map_err(|e| ColumnarError::corrupt(path, e))?;
    let batches: Vec<RecordBatch> = reader.collect::<std::result::Result<_, _>>().map_err(|e| ColumnarError::corrupt(path, e))?;
    concat_batches(&schema, &batches).map_err(|e| ColumnarError::corrupt(path, e))
}

/// Rows of `batch` in the order of its first `keys` columns.
fn sorted(batch: &RecordBatch, keys: &[usize]) -> Result<RecordBatch> {
    let columns: Vec<SortColumn> = keys.iter().map(|&i| SortColumn { values: batch.column(i).clone(), options: None }).collect();
    let indices = lexsort_to_indices(&columns, None).map_err(|e| ColumnarError::corrupt(std::path::Path::new("<merge>"), e))?;
    take_record_batch(batch, &indices).map_err(|e| ColumnarError::corrupt(std::path::Path::new("<merge>"), e))
}

/// The highest version of each session (`session_id` column 1, `version` column 2).
fn latest_sessions(batch: &RecordBatch) -> Result<RecordBatch> {
    let ids = batch.column(1).as_string::<i32>();
    let versions = batch.column(2).as_primitive::<UInt64Type>();
    let mut best: HashMap<&str, (u64, u32)> = HashMap::with_capacity(batch.num_rows());
    for row in 0..batch.num_rows() {
        let (id, version) = (ids.value(row), versions.value(row));
        match best.get(id) {
            Some(&(kept, _)) if kept >= version => {}
            _ => {
                best.insert(id, (version, row as u32));
            }
        }
    }
    let keep = UInt32Array::from_iter_values(best.into_values().map(|(_, row)| row));
    take_record_batch(batch, &keep).map_err(|e| ColumnarError::corrupt(std::path::Path::new("<merge>"), e))
}

impl ColumnarEvents {
    /// Merges every (stream, site, day) group that has at least `min_parts` parts, and every
    /// group of a day before yesterday (relative to `now_ms`) that has more than one.
    pub fn compact(&self, now_ms: i64, min_parts: usize) -> Result<Compacted> {
        let today = now_ms.div_euclid(DAY_MS);
        let mut groups: BTreeMap<(Stream, String, i64), Vec<Arc<LivePart>>> = BTreeMap::new();
        for part in self.parts_snapshot() {
            groups.entry((part.meta.stream, part.meta.site_id.clone(), part.meta.day)).or_default().push(part);
        }
        let mut done = Compacted::default();
        for ((stream, site_id, day), inputs) in groups {
            let closed = day < today - 1;
            if inputs.len() < 2 || (inputs.len() < min_parts.max(2) && !closed) {
                continue;
            }
            self.merge(stream, &site_id, day, if closed { 2 } else { 1 }, &inputs)?;
            done.groups += 1;
            done.inputs += inputs.len();
        }
        Ok(done)
    }

    fn merge(&self, stream: Stream, site_id: &str, day: i64, level: u8, inputs: &[Arc<LivePart>]) -> Result<()> {
        let batches: Vec<RecordBatch> = inputs.iter().map(|p| read_batches(p)).collect::<Result<_>>()?;
        let schema = match stream {
            Stream::Events => part::events_schema(),
            _ => session_part::sessions_schema(),
        };
        let all = concat_batches(&schema, &batches).map_err(|e| ColumnarError::corrupt(&self.root, e))?;
        let merged = match stream {
            Stream::Events => sorted(&all, &[0, 1, 2])?,
            _ => sorted(&latest_sessions(&all)?, &[0, 1, 2])?,
        };
        let mut manifest = lock(&self.manifest);
        let mut meta = PartMeta { id: manifest.allocate_id(), stream, site_id: site_id.to_owned(), day, level, rows: 0, bytes: 0, min_ts: 0, max_ts: 0 };
        let path = self.root.join(meta.relative_path());
        let bytes = part::write_batch(&path, &merged)?;
        let ts_column = if stream == Stream::Events { 1 } else { 0 };
        let ts = merged.column(ts_column).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
        let written = Written {
            rows: merged.num_rows() as u64,
            bytes,
            min_ts: (0..ts.len()).map(|i| ts.value(i)).min().unwrap_or(0),
            max_ts: (0..ts.len()).map(|i| ts.value(i)).max().unwrap_or(0),
        };
        (meta.rows, meta.bytes, meta.min_ts, meta.max_ts) = (written.rows, written.bytes, written.min_ts, written.max_ts);
        let sidecar = if stream == Stream::Events {
            let mut ids = Vec::with_capacity(merged.num_rows());
            for input in inputs {
                ids.extend(input.sidecar.as_ref().expect("event parts have sidecars").ids()?);
            }
            let hashes = merged.column(0).as_primitive::<datafusion::arrow::datatypes::Int64Type>();
            sidecar::write(&path.with_extension("idx"), &ids, (0..hashes.len()).map(|i| hashes.value(i)))?;
            Some(Sidecar::open(&path.with_extension("idx"))?)
        } else {
            None
        };
        manifest.commit(Edit { add: vec![meta.clone()], remove: inputs.iter().map(|p| p.meta.id).collect(), ..Edit::default() })?;
        self.replace_parts(inputs, Some(Arc::new(LivePart::new(meta, path, sidecar))));
        Ok(())
    }

    /// Swaps `inputs` for `output` in the live set and marks the inputs for deletion once no
    /// reader holds them.
    fn replace_parts(&self, inputs: &[Arc<LivePart>], output: Option<Arc<LivePart>>) {
        let mut parts = lock(&self.parts);
        parts.retain(|p| !inputs.iter().any(|i| i.meta.id == p.meta.id));
        parts.extend(output);
        for input in inputs {
            input.mark_obsolete();
        }
    }

    /// Retention: removes every part of a day before `first_kept_day` (days since the epoch), in
    /// one manifest edit. Returns how many parts left.
    pub fn drop_days_before(&self, first_kept_day: i64) -> Result<usize> {
        let doomed: Vec<Arc<LivePart>> = self.parts_snapshot().into_iter().filter(|p| p.meta.day < first_kept_day).collect();
        if doomed.is_empty() {
            return Ok(0);
        }
        lock(&self.manifest).commit(Edit { remove: doomed.iter().map(|p| p.meta.id).collect(), ..Edit::default() })?;
        self.replace_parts(&doomed, None);
        tracing::info!(parts = doomed.len(), first_kept_day, "retention dropped whole day partitions");
        Ok(doomed.len())
    }
}
