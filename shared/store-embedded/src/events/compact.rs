//! Compaction and retention of [`ColumnarEvents`] parts.
//!
//! Every commit point adds one level-0 part per (stream, site, day) it saw, so a busy day
//! gathers many small parts. [`ColumnarEvents::compact`] merges them by tiers: once a group has
//! `min_parts` parts of one level, they become one part a level up (so a row is rewritten about
//! log_min_parts(day's commit points) times, not once per merge); a closed day (older than
//! yesterday) merges whatever it has. At most [`MAX_FAN_IN`] parts go into one merge.
//!
//! A merge streams: each input is read a few thousand rows at a time, and the rows go out in key
//! order through a k-way merge (inputs are sorted by the same key), so memory stays at a few
//! batches per input whatever the day's size. Session rows keep only the last version of each
//! run of one session (a session's versions sort next to each other); readers still take the
//! highest version per session, so a stale version left in another part is harmless. The
//! merged part and its sidecar are fsynced before one manifest edit swaps it for its inputs, so
//! a crash leaves either the inputs or the merged part (the other side is an orphan, removed at
//! open). Inputs are deleted when the last reader holding them lets go.
//!
//! [`ColumnarEvents::build_rollups`] then computes the overview's figures of each closed,
//! merged day once (rollup.rs). [`ColumnarEvents::drop_days_before`] is retention: whole day
//! partitions leave in one edit, with their rollups.

use std::collections::BTreeMap;
use std::fs::File;
use std::sync::Arc;

use datafusion::arrow::array::{AsArray, RecordBatch};
use datafusion::arrow::record_batch::RecordBatchReader;
use datafusion::arrow::compute::interleave_record_batch;
use datafusion::arrow::datatypes::{Int64Type, SchemaRef};
use datafusion::arrow::row::{RowConverter, Rows, SortField};
use datafusion::parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};

use super::{lock, ColumnarEvents, LivePart, DAY_MS};
use crate::manifest::{Edit, PartMeta, Stream};
use crate::part::{self, PartWriter};
use crate::query;
use crate::rollup::Rollup;
use crate::session_part;
use crate::sidecar::{self, Sidecar};
use crate::{ColumnarError, Result};

/// Most parts one merge reads at once (each holds a batch of [`READ_ROWS`] in memory).
pub const MAX_FAN_IN: usize = 32;
/// Rows read from an input at a time.
const READ_ROWS: usize = 2_048;
/// Rows gathered before they are written out.
const OUT_ROWS: usize = 8_192;

/// What one [`ColumnarEvents::compact`] call did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Compacted {
    pub groups: usize,
    pub inputs: usize,
}

fn merge_err(e: impl std::fmt::Display) -> ColumnarError {
    ColumnarError::corrupt(std::path::Path::new("<merge>"), e)
}

/// One input of a merge: its current batch, that batch's sort keys, and the next row.
struct Cursor {
    reader: ParquetRecordBatchReader,
    batch: RecordBatch,
    keys: Rows,
    row: usize,
    /// Index of `batch` among the batches the pending output rows point into.
    slot: usize,
}

impl Cursor {
    fn open(part: &LivePart, converter: &RowConverter, read_rows: usize) -> Result<Option<Cursor>> {
        let path = &part.path;
        let file = File::open(path).map_err(|e| ColumnarError::io(path, e))?;
        let reader = ParquetRecordBatchReaderBuilder::try_new(file)
            .and_then(|b| b.with_batch_size(read_rows).build())
            .map_err(|e| ColumnarError::corrupt(path, e))?;
        let empty = RecordBatch::new_empty(reader.schema());
        let mut cursor = Cursor { reader, batch: empty, keys: converter.empty_rows(0, 0), row: 0, slot: 0 };
        Ok(cursor.load(converter, path)?.then_some(cursor))
    }

    /// Reads the next non-empty batch; false at the end of the input.
    fn load(&mut self, converter: &RowConverter, path: &std::path::Path) -> Result<bool> {
        for batch in self.reader.by_ref() {
            let batch = batch.map_err(|e| ColumnarError::corrupt(path, e))?;
            if batch.num_rows() == 0 {
                continue;
            }
            self.keys = converter.convert_columns(&batch.columns()[..3]).map_err(|e| ColumnarError::corrupt(path, e))?;
            self.batch = batch;
            self.row = 0;
            return Ok(true);
        }
        Ok(false)
    }
}

/// What a streamed merge wrote.
struct Merged {
    rows: u64,
    bytes: u64,
    min_ts: i64,
    max_ts: i64,
    /// Event parts: each written row's visitor hash, for the sidecar's filter.
    visitor_hashes: Vec<i64>,
}

/// Writes the rows of `inputs` to `path` in the order of their first three columns. With
/// `latest_only` (sessions), of consecutive rows with equal first two columns only the last is
/// kept.
fn merge_into(path: &std::path::Path, schema: SchemaRef, inputs: &[Arc<LivePart>], latest_only: bool, read_rows: usize, out_rows: usize) -> Result<Merged> {
    let fields = schema.fields()[..3].iter().map(|f| SortField::new(f.data_type().clone())).collect();
    let converter = RowConverter::new(fields).map_err(merge_err)?;
    let mut cursors = Vec::with_capacity(inputs.len());
    for input in inputs {
        cursors.extend(Cursor::open(input, &converter, read_rows)?.map(|c| (c, input.path.clone())));
    }
    let mut writer = PartWriter::create(path, schema.clone())?;
    let mut merged = Merged { rows: 0, bytes: 0, min_ts: i64::MAX, max_ts: i64::MIN, visitor_hashes: Vec::new() };
    let ts_column = if latest_only { 0 } else { 1 };
    // Output rows as (slot, row) into `batches`; a batch stays here until its rows are written.
    let mut batches: Vec<RecordBatch> = Vec::new();
    let mut picks: Vec<(usize, usize)> = Vec::with_capacity(out_rows);
    for (cursor, _) in cursors.iter_mut() {
        cursor.slot = batches.len();
        batches.push(cursor.batch.clone());
    }
    let mut flush = |batches: &mut Vec<RecordBatch>, picks: &mut Vec<(usize, usize)>, cursors: &mut Vec<(Cursor, std::path::PathBuf)>, merged: &mut Merged| -> Result<()> {
        if !picks.is_empty() {
            let refs: Vec<&RecordBatch> = batches.iter().collect();
            let out = interleave_record_batch(&refs, picks).map_err(merge_err)?;
            writer.write(&out)?;
            let ts = out.column(ts_column).as_primitive::<Int64Type>();
            for &t in ts.values() {
                merged.min_ts = merged.min_ts.min(t);
                merged.max_ts = merged.max_ts.max(t);
            }
            if !latest_only {
                merged.visitor_hashes.extend_from_slice(out.column(0).as_primitive::<Int64Type>().values());
            }
            merged.rows += out.num_rows() as u64;
            picks.clear();
        }
        batches.clear();
        for (cursor, _) in cursors.iter_mut() {
            cursor.slot = batches.len();
            batches.push(cursor.batch.clone());
        }
        Ok(())
    };
    while !cursors.is_empty() {
        let mut best = 0;
        for i in 1..cursors.len() {
            if cursors[i].0.keys.row(cursors[i].0.row) < cursors[best].0.keys.row(cursors[best].0.row) {
                best = i;
            }
        }
        let (cursor, input_path) = &mut cursors[best];
        let pick = (cursor.slot, cursor.row);
        match picks.last() {
            // Same (start_ms, session_id) as the row before: this later version replaces it.
            Some(&(slot, row)) if latest_only && same_session(&batches[slot], row, &cursor.batch, cursor.row) => *picks.last_mut().expect("a last pick") = pick,
            _ => picks.push(pick),
        }
        cursor.row += 1;
        if cursor.row == cursor.batch.num_rows() {
            if cursor.load(&converter, input_path)? {
                cursor.slot = batches.len();
                batches.push(cursor.batch.clone());
            } else {
                cursors.swap_remove(best);
            }
        }
        // Keep the last pick back for sessions: the next row may replace it.
        if picks.len() >= out_rows {
            let held = if latest_only { picks.pop() } else { None };
            let held_batch = held.map(|(slot, _)| batches[slot].clone());
            flush(&mut batches, &mut picks, &mut cursors, &mut merged)?;
            if let (Some((_, row)), Some(batch)) = (held, held_batch) {
                picks.push((batches.len(), row));
                batches.push(batch);
            }
        }
    }
    flush(&mut batches, &mut picks, &mut cursors, &mut merged)?;
    merged.bytes = writer.finish()?;
    if merged.rows == 0 {
        (merged.min_ts, merged.max_ts) = (0, 0);
    }
    Ok(merged)
}

fn same_session(a: &RecordBatch, a_row: usize, b: &RecordBatch, b_row: usize) -> bool {
    a.column(0).as_primitive::<Int64Type>().value(a_row) == b.column(0).as_primitive::<Int64Type>().value(b_row)
        && a.column(1).as_string::<i32>().value(a_row) == b.column(1).as_string::<i32>().value(b_row)
}

impl ColumnarEvents {
    /// Merges, in every (stream, site, day) group, the parts of the lowest level that has at
    /// least `min_parts` of them, and every group of a day before yesterday (relative to
    /// `now_ms`) that has more than one part.
    pub fn compact(&self, now_ms: i64, min_parts: usize) -> Result<Compacted> {
        let _rewriting = lock(&self.rewriting);
        let today = now_ms.div_euclid(DAY_MS);
        let mut groups: BTreeMap<(Stream, String, i64), Vec<Arc<LivePart>>> = BTreeMap::new();
        for part in self.parts_snapshot() {
            groups.entry((part.meta.stream, part.meta.site_id.clone(), part.meta.day)).or_default().push(part);
        }
        let mut done = Compacted::default();
        for ((stream, site_id, day), mut parts) in groups {
            let closed = day < today - 1;
            parts.sort_by_key(|p| (p.meta.level, p.meta.id));
            let inputs: Vec<Arc<LivePart>> = if closed {
                parts.into_iter().take(MAX_FAN_IN).collect()
            } else {
                let mut by_level: BTreeMap<u8, Vec<Arc<LivePart>>> = BTreeMap::new();
                for part in parts {
                    by_level.entry(part.meta.level).or_default().push(part);
                }
                match by_level.into_values().find(|level| level.len() >= min_parts.max(2)) {
                    Some(level) => level.into_iter().take(MAX_FAN_IN).collect(),
                    None => continue,
                }
            };
            if inputs.len() < 2 {
                continue;
            }
            let level = inputs.iter().map(|p| p.meta.level).max().unwrap_or(0).saturating_add(1);
            self.merge(stream, &site_id, day, level, &inputs, READ_ROWS, OUT_ROWS)?;
            done.groups += 1;
            done.inputs += inputs.len();
        }
        Ok(done)
    }

    /// Builds the rollup of every closed day (before yesterday, relative to `now_ms`) whose
    /// streams are merged down to one part each and that has no rollup of exactly those parts,
    /// or whose rollup counted a visitor that is a bot now.
    /// Returns how many were built. Days still waiting for a merge are left for a later round,
    /// so a day is rolled up about once.
    pub async fn build_rollups(&self, now_ms: i64) -> Result<usize> {
        let today = now_ms.div_euclid(DAY_MS);
        let mut days: BTreeMap<(String, i64), Vec<Arc<LivePart>>> = BTreeMap::new();
        for part in self.parts_snapshot().into_iter().filter(|p| matches!(p.meta.stream, Stream::Events | Stream::Sessions) && p.meta.day < today - 1) {
            days.entry((part.meta.site_id.clone(), part.meta.day)).or_default().push(part);
        }
        let mut built = 0;
        for ((site_id, day), parts) in days {
            let merged = [Stream::Events, Stream::Sessions].iter().all(|s| parts.iter().filter(|p| p.meta.stream == *s).count() <= 1);
            let mut ids: Vec<u64> = parts.iter().map(|p| p.meta.id).collect();
            ids.sort_unstable();
            let current = lock(&self.rollups).get(&(site_id.clone(), day)).filter(|r| r.parts() == ids.as_slice()).cloned();
            if !merged || current.is_some_and(|r| self.rollup_clean(&r)) {
                continue;
            }
            let files = |stream: Stream| parts.iter().filter(|p| p.meta.stream == stream).map(|p| p.path.clone()).collect();
            let snapshot = query::Snapshot {
                event_files: files(Stream::Events),
                events: part::events_batch(&[])?,
                session_files: files(Stream::Sessions),
                sessions: session_part::sessions_batch(&[])?,
                keep_alive: parts.iter().map(|p| p.clone() as Arc<dyn std::any::Any + Send + Sync>).collect(),
                rollups: Vec::new(),
                bots: query::bots_batch(self.bot_visitors(&site_id, day * DAY_MS))?,
            };
            let partial = query::partial(&snapshot, day * DAY_MS, (day + 1) * DAY_MS).await.map_err(|e| ColumnarError::Io { path: format!("rollup of day {day}"), message: e.to_string() })?;
            let path = self.root.join(Rollup::relative_path(&site_id, day, &ids));
            let rollup = Arc::new(Rollup::write(&path, &site_id, day, ids, partial)?);
            if let Some(old) = lock(&self.rollups).insert((site_id, day), rollup) {
                if old.path() != path {
                    old.mark_obsolete();
                }
            }
            built += 1;
        }
        Ok(built)
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn merge(&self, stream: Stream, site_id: &str, day: i64, level: u8, inputs: &[Arc<LivePart>], read_rows: usize, out_rows: usize) -> Result<()> {
        let id = lock(&self.manifest).allocate_id();
        let mut meta = PartMeta { id, stream, site_id: site_id.to_owned(), day, level, rows: 0, bytes: 0, min_ts: 0, max_ts: 0 };
        let path = self.root.join(meta.relative_path());
        let (schema, latest_only) = match stream {
            Stream::Events => (part::events_schema(), false),
            _ => (session_part::sessions_schema(), true),
        };
        let merged = merge_into(&path, schema, inputs, latest_only, read_rows, out_rows)?;
        (meta.rows, meta.bytes, meta.min_ts, meta.max_ts) = (merged.rows, merged.bytes, merged.min_ts, merged.max_ts);
        let sidecar = if stream == Stream::Events {
            let mut ids = Vec::with_capacity(merged.rows as usize);
            for input in inputs {
                ids.extend(input.sidecar.as_ref().expect("event parts have sidecars").ids()?);
            }
            sidecar::write(&path.with_extension("idx"), &ids, merged.visitor_hashes)?;
            Some(Sidecar::open(&path.with_extension("idx"))?)
        } else {
            None
        };
        lock(&self.manifest).commit(Edit { add: vec![meta.clone()], remove: inputs.iter().map(|p| p.meta.id).collect(), ..Edit::default() })?;
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
        Ok(self.drop_days_of(None, first_kept_day)?.len())
    }

    /// Per-site retention: [`ColumnarEvents::drop_days_before`] for one site's parts. Returns the
    /// parts that left.
    pub fn drop_site_days_before(&self, site_id: &str, first_kept_day: i64) -> Result<Vec<PartMeta>> {
        self.drop_days_of(Some(site_id), first_kept_day)
    }

    fn drop_days_of(&self, site: Option<&str>, first_kept_day: i64) -> Result<Vec<PartMeta>> {
        let _rewriting = lock(&self.rewriting);
        let of_site = |s: &str| site.is_none_or(|site| site == s);
        let doomed: Vec<Arc<LivePart>> = self.parts_snapshot().into_iter().filter(|p| p.meta.day < first_kept_day && of_site(&p.meta.site_id)).collect();
        if doomed.is_empty() {
            return Ok(Vec::new());
        }
        lock(&self.manifest).commit(Edit { remove: doomed.iter().map(|p| p.meta.id).collect(), ..Edit::default() })?;
        self.replace_parts(&doomed, None);
        lock(&self.rollups).retain(|(s, day), rollup| {
            let kept = *day >= first_kept_day || !of_site(s);
            if !kept {
                rollup.mark_obsolete();
            }
            kept
        });
        tracing::info!(parts = doomed.len(), first_kept_day, site_id = site.unwrap_or("(every site)"), "retention dropped whole day partitions");
        Ok(doomed.iter().map(|p| p.meta.clone()).collect())
    }
}
