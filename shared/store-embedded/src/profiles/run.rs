//! Profile runs: Parquet files with one row per profile state, written by a commit point (the
//! profiles it made durable) or by a fold (the rows of several runs that are still some
//! profile's home). Besides the JSON, each row carries the summary memory keeps for a cold
//! profile, so opening a store reads the small columns and decodes no JSON. The JSON column is
//! written in pages of [`PAGE_ROWS`] rows: reading one cold profile decompresses one page.
//!
//! Runs written before the summary columns existed (`site_id`, `visitor_id`, `json`) are still
//! read: their rows are decoded at open and rewritten in this layout by the next fold.

use std::collections::HashMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use crm_schemas::VisitorProfile;
use datafusion::arrow::array::{Array, ArrayRef, AsArray, BinaryArray, BooleanArray, Int64Array, RecordBatch, StringArray, UInt64Array, UInt8Array};
use datafusion::arrow::compute::filter_record_batch;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, UInt64Type, UInt8Type, Int64Type};
use datafusion::parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowSelection, RowSelector};
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::metadata::PageIndexPolicy;
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};

use crm_store::org_member;

use super::{ranks_of, Home, Profiles};
use crate::part::ROW_GROUP_ROWS;
use crate::{sync_dir, ColumnarError, Result};

/// Rows per page of a run: one cold read decompresses this many profiles' JSON.
pub const PAGE_ROWS: usize = 64;

/// What memory keeps of a profile while it is cold.
#[derive(Clone, Debug, PartialEq)]
pub struct Summary<'a> {
    pub ranks: [u64; 3],
    pub bot: bool,
    pub intent: u8,
    pub last_seen_ms: i64,
    /// The organisation it is grouped under, if it is eligible (`crm_store::org_member`).
    pub org: Option<&'a str>,
}

impl Summary<'_> {
    pub fn of(profile: &VisitorProfile) -> Summary<'_> {
        Summary { ranks: ranks_of(profile), bot: profile.is_bot, intent: profile.intent_score, last_seen_ms: profile.last_seen_ms, org: org_member(profile).map(|m| m.org) }
    }
}

/// One profile state as a run row holds it: keys, summary columns and the profile's JSON. Hot
/// profiles stay in memory as this JSON (about 1 KB for a typical profile, 2.3× less than the
/// decoded struct with its strings and maps), so a commit point writes them without encoding.
#[derive(Clone, Debug)]
pub struct Row {
    pub site_id: Arc<str>,
    pub visitor_id: Arc<str>,
    pub ranks: [u64; 3],
    pub bot: bool,
    pub intent: u8,
    pub last_seen_ms: i64,
    pub org: Option<Arc<str>>,
    pub json: Arc<[u8]>,
}

impl Row {
    /// Encodes a profile (JSON with serde's field names: the run column and what
    /// [`decode`] reads).
    pub fn of(profile: &VisitorProfile) -> Row {
        let summary = Summary::of(profile);
        let json = serde_json::to_vec(profile).expect("a profile always serialises to JSON");
        Row {
            site_id: Arc::from(profile.site_id.as_str()),
            visitor_id: Arc::from(profile.visitor_id.as_str()),
            ranks: summary.ranks,
            bot: summary.bot,
            intent: summary.intent,
            last_seen_ms: summary.last_seen_ms,
            org: summary.org.map(Arc::from),
            json: Arc::from(json),
        }
    }

    pub fn summary(&self) -> Summary<'_> {
        Summary { ranks: self.ranks, bot: self.bot, intent: self.intent, last_seen_ms: self.last_seen_ms, org: self.org.as_deref() }
    }
}

/// A profile from its JSON (a run row or a hot profile). `origin` names where the bytes came
/// from in the error.
pub fn decode(json: &[u8], origin: &Path) -> Result<VisitorProfile> {
    serde_json::from_slice(json).map_err(|e| ColumnarError::corrupt(origin, e))
}

/// One live run file. Dropping the last reference to a run a fold removed deletes the file.
pub struct Run {
    id: u64,
    path: PathBuf,
    rows: std::sync::atomic::AtomicU64,
    /// Footer and page index, parsed by the first cold read.
    metadata: OnceLock<ArrowReaderMetadata>,
    removed: AtomicBool,
}

impl Run {
    pub fn new(id: u64, path: PathBuf, rows: u64) -> Run {
        Run { id, path, rows: rows.into(), metadata: OnceLock::new(), removed: AtomicBool::new(false) }
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn rows(&self) -> u64 {
        self.rows.load(Ordering::Acquire)
    }

    /// Sets the row count of a run written by a fold (unknown until it is written).
    pub fn set_rows(&self, rows: u64) {
        self.rows.store(rows, Ordering::Release);
    }

    pub fn mark_removed(&self) {
        self.removed.store(true, Ordering::Release);
    }

    /// The profile in row `row`: one row group, one page of the JSON column.
    pub fn read_row(&self, row: u32) -> Result<VisitorProfile> {
        Ok(self.read_rows(&[row])?.pop().expect("one row asked, one returned"))
    }

    /// The profiles in `rows` (ascending, no repeats), in that order, read in one pass: only
    /// the row groups and JSON pages that hold them are decompressed.
    pub fn read_rows(&self, rows: &[u32]) -> Result<Vec<VisitorProfile>> {
        let path = &self.path;
        let metadata = match self.metadata.get() {
            Some(metadata) => metadata,
            None => {
                let file = File::open(path).map_err(|e| ColumnarError::io(path, e))?;
                let loaded = ArrowReaderMetadata::load(&file, ArrowReaderOptions::new().with_page_index_policy(PageIndexPolicy::Optional)).map_err(|e| ColumnarError::corrupt(path, e))?;
                self.metadata.get_or_init(|| loaded)
            }
        };
        let file = File::open(path).map_err(|e| ColumnarError::io(path, e))?;
        let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata.clone());
        // The row groups holding `rows`, and a selection over those groups read back to back.
        let (mut groups, mut selectors) = (Vec::new(), Vec::new());
        let (mut first, mut next) = (0usize, 0usize);
        for g in 0..builder.metadata().num_row_groups() {
            let group_rows = builder.metadata().row_group(g).num_rows() as usize;
            let end = first + group_rows;
            let mut at = first;
            let taken = next;
            while next < rows.len() && (rows[next] as usize) < end {
                let row = rows[next] as usize;
                if row < at {
                    return Err(ColumnarError::corrupt(path, "rows to read are not ascending"));
                }
                selectors.push(RowSelector::skip(row - at));
                selectors.push(RowSelector::select(1));
                at = row + 1;
                next += 1;
            }
            if next > taken {
                selectors.push(RowSelector::skip(end - at));
                groups.push(g);
            }
            first = end;
        }
        if next < rows.len() {
            return Err(ColumnarError::corrupt(path, format!("row {} is past the run's end", rows[next])));
        }
        let json = builder.schema().index_of("json").map_err(|e| ColumnarError::corrupt(path, e))?;
        let projection = ProjectionMask::roots(builder.parquet_schema(), [json]);
        let reader = builder.with_row_groups(groups).with_projection(projection).with_row_selection(RowSelection::from(selectors)).build().map_err(|e| ColumnarError::corrupt(path, e))?;
        let mut out = Vec::with_capacity(rows.len());
        for batch in reader {
            let batch = batch.map_err(|e| ColumnarError::corrupt(path, e))?;
            let json = batch.column(0).as_binary::<i32>();
            for i in 0..batch.num_rows() {
                out.push(decode(json.value(i), path)?);
            }
        }
        if out.len() != rows.len() {
            return Err(ColumnarError::corrupt(path, format!("{} of {} rows were found", out.len(), rows.len())));
        }
        Ok(out)
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        if self.removed.load(Ordering::Acquire) {
            crate::remove_unused(&self.path, "folded profile run");
        }
    }
}

fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("site_id", DataType::Utf8, false),
        Field::new("visitor_id", DataType::Utf8, false),
        Field::new("bot", DataType::Boolean, false),
        Field::new("intent", DataType::UInt8, false),
        Field::new("last_seen_ms", DataType::Int64, false),
        Field::new("rank_intent", DataType::UInt64, false),
        Field::new("rank_engagement", DataType::UInt64, false),
        Field::new("rank_last_seen", DataType::UInt64, false),
        Field::new("org", DataType::Utf8, true),
        Field::new("json", DataType::Binary, false),
    ]))
}

/// `rows` in the run layout.
fn batch_of(path: &Path, rows: &[Row]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &*r.site_id))),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &*r.visitor_id))),
        Arc::new(BooleanArray::from_iter(rows.iter().map(|r| Some(r.bot)))),
        Arc::new(UInt8Array::from_iter_values(rows.iter().map(|r| r.intent))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.last_seen_ms))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.ranks[0]))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.ranks[1]))),
        Arc::new(UInt64Array::from_iter_values(rows.iter().map(|r| r.ranks[2]))),
        Arc::new(StringArray::from_iter(rows.iter().map(|r| r.org.as_deref()))),
        Arc::new(BinaryArray::from_iter_values(rows.iter().map(|r| &*r.json))),
    ];
    RecordBatch::try_new(schema(), columns).map_err(|e| ColumnarError::corrupt(path, e))
}

fn writer(path: &Path) -> Result<ArrowWriter<File>> {
    let props = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1 is valid")))
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_data_page_row_count_limit(PAGE_ROWS)
        // The page row limit is checked once per write batch.
        .set_write_batch_size(PAGE_ROWS)
        .set_dictionary_enabled(false)
        .build();
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| ColumnarError::io(dir, e))?;
    }
    let file = File::create(path).map_err(|e| ColumnarError::io(path, e))?;
    ArrowWriter::try_new(file, schema(), Some(props)).map_err(|e| ColumnarError::io(path, e))
}

fn finish(path: &Path, writer: ArrowWriter<File>) -> Result<u64> {
    let file = writer.into_inner().map_err(|e| ColumnarError::io(path, e))?;
    file.sync_all().map_err(|e| ColumnarError::io(path, e))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))?;
    Ok(file.metadata().map_err(|e| ColumnarError::io(path, e))?.len())
}

/// Writes `rows` as a run (row `i` = `rows[i]`) and fsyncs it; returns its bytes.
pub fn write(path: &Path, rows: &[Row]) -> Result<u64> {
    let mut writer = writer(path)?;
    for chunk in rows.chunks(ROW_GROUP_ROWS) {
        writer.write(&batch_of(path, chunk)?).map_err(|e| ColumnarError::io(path, e))?;
    }
    finish(path, writer)
}

/// Reads a run's batches; a run in the old layout comes back converted to the current one.
/// Without `json`, batches of the current layout stop before the JSON column (an open reads
/// only the summaries).
fn batches(path: &Path, json: bool, mut each: impl FnMut(RecordBatch) -> Result<()>) -> Result<()> {
    let file = File::open(path).map_err(|e| ColumnarError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ColumnarError::corrupt(path, e))?;
    let current = builder.schema().index_of("rank_intent").is_ok();
    let builder = if current && !json {
        let summary_columns = 0..builder.schema().fields().len() - 1;
        let projection = ProjectionMask::roots(builder.parquet_schema(), summary_columns);
        builder.with_projection(projection)
    } else {
        builder
    };
    let reader = builder.with_batch_size(8 * 1024).build().map_err(|e| ColumnarError::corrupt(path, e))?;
    for batch in reader {
        let batch = batch.map_err(|e| ColumnarError::corrupt(path, e))?;
        if current {
            each(batch)?;
        } else {
            let json = batch.column(batch.schema().index_of("json").map_err(|e| ColumnarError::corrupt(path, e))?).as_binary::<i32>();
            let mut rows = Vec::with_capacity(batch.num_rows());
            for row in 0..batch.num_rows() {
                rows.push(Row::of(&decode(json.value(row), path)?));
            }
            each(batch_of(path, &rows)?)?;
        }
    }
    Ok(())
}

/// The summary columns of a batch in the run layout.
struct Columns<'a> {
    site: &'a StringArray,
    visitor: &'a StringArray,
    bot: &'a BooleanArray,
    intent: &'a UInt8Array,
    last_seen: &'a Int64Array,
    ranks: [&'a UInt64Array; 3],
    org: &'a StringArray,
}

impl<'a> Columns<'a> {
    fn of(batch: &'a RecordBatch) -> Columns<'a> {
        Columns {
            site: batch.column(0).as_string::<i32>(),
            visitor: batch.column(1).as_string::<i32>(),
            bot: batch.column(2).as_boolean(),
            intent: batch.column(3).as_primitive::<UInt8Type>(),
            last_seen: batch.column(4).as_primitive::<Int64Type>(),
            ranks: [batch.column(5).as_primitive::<UInt64Type>(), batch.column(6).as_primitive::<UInt64Type>(), batch.column(7).as_primitive::<UInt64Type>()],
            org: batch.column(8).as_string::<i32>(),
        }
    }

    fn summary(&self, row: usize) -> Summary<'a> {
        Summary {
            ranks: self.ranks.map(|r| r.value(row)),
            bot: self.bot.value(row),
            intent: self.intent.value(row),
            last_seen_ms: self.last_seen.value(row),
            org: (!self.org.is_null(row)).then(|| self.org.value(row)),
        }
    }
}

/// Adds a run opened at start to `into`: every row becomes its profile's home (a later run's
/// row replaces it), cold.
pub fn load(run: &Arc<Run>, into: &mut Profiles) -> Result<()> {
    let mut row = 0u32;
    batches(&run.path, false, |batch| {
        let columns = Columns::of(&batch);
        for i in 0..batch.num_rows() {
            into.load_row(columns.site.value(i), columns.visitor.value(i), columns.summary(i), Home { run: run.clone(), row });
            row += 1;
        }
        Ok(())
    })?;
    into.add_run(run.clone());
    Ok(())
}

/// Writes the rows of `runs` that `live` marks (still some profile's home) to a new run at
/// `path`, fsynced, handing each chunk's (site, visitor, new row) to `moved` as it is written
/// (the caller moves homes only once this returns `Ok`).
/// Returns (rows, bytes). No JSON is decoded except in runs of the old layout.
pub fn fold(runs: &[Arc<Run>], live: &HashMap<u64, Vec<bool>>, path: &Path, mut moved: impl FnMut(&[(String, String, u32)])) -> Result<(u64, u64)> {
    let mut writer = writer(path)?;
    let mut written = 0u32;
    for run in runs {
        let Some(flags) = live.get(&run.id()) else { continue };
        let mut row = 0usize;
        batches(&run.path, true, |batch| {
            let rows = batch.num_rows();
            let keep = BooleanArray::from_iter((row..row + rows).map(|r| Some(flags.get(r).copied().unwrap_or(false))));
            row += rows;
            let kept = filter_record_batch(&batch, &keep).map_err(|e| ColumnarError::corrupt(path, e))?;
            if kept.num_rows() == 0 {
                return Ok(());
            }
            writer.write(&kept).map_err(|e| ColumnarError::io(path, e))?;
            let columns = Columns::of(&kept);
            let homes: Vec<(String, String, u32)> = (0..kept.num_rows()).map(|i| (columns.site.value(i).to_owned(), columns.visitor.value(i).to_owned(), written + i as u32)).collect();
            written += kept.num_rows() as u32;
            moved(&homes);
            Ok(())
        })?;
    }
    let bytes = finish(path, writer)?;
    Ok((u64::from(written), bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_store::conformance::sample_profile;

    #[test]
    fn a_cold_row_reads_back_exactly_and_old_layout_runs_still_load() {
        let dir = tempfile::tempdir().unwrap();
        let profiles: Vec<Arc<VisitorProfile>> = (0..40_000).map(|i| {
            let mut p = sample_profile("s1", &format!("v{i:05}"), (i % 100) as u8, (i % 37) as u8, 1_700_000_000_000 + i);
            p.geo.org = (i % 3 == 0).then(|| format!("org{}", i % 7));
            p.is_bot = i % 11 == 5;
            Arc::new(p)
        }).collect();
        let path = dir.path().join("run-1.parquet");
        write(&path, &profiles.iter().map(|p| Row::of(p)).collect::<Vec<_>>()).unwrap();
        let run = Run::new(1, path.clone(), profiles.len() as u64);
        for row in [0u32, 1, 63, 64, 16_383, 16_384, 39_999] {
            assert_eq!(run.read_row(row).unwrap(), *profiles[row as usize], "row {row}");
        }
        assert!(matches!(run.read_row(40_000), Err(ColumnarError::Corrupt { .. })));
        let some = [3u32, 4, 64, 16_000, 16_384, 30_001, 39_999];
        let expected: Vec<VisitorProfile> = some.iter().map(|&r| (*profiles[r as usize]).clone()).collect();
        assert_eq!(run.read_rows(&some).unwrap(), expected, "several rows in one pass");

        let mut loaded = Profiles::new(0);
        load(&Arc::new(run), &mut loaded).unwrap();
        assert_eq!(loaded.len(), 40_000);
        assert_eq!(loaded.hot_count(), 0, "a loaded run leaves every profile cold");
        assert_eq!(loaded.locate("s1", "v00123").unwrap().load().unwrap(), *profiles[123]);

        // Ranked lists built in one pass at the end of an open list the same pages as lists
        // kept row by row.
        let mut bulk = Profiles::new(0);
        bulk.start_loading();
        load(&Arc::new(Run::new(1, path.clone(), profiles.len() as u64)), &mut bulk).unwrap();
        bulk.finish_loading();
        for sort in crate::profiles::SORTS {
            for bots in [crm_store::BotFilter::Exclude, crm_store::BotFilter::Only] {
                let mut query = crm_store::VisitorQuery { site_id: "s1".into(), sort, bots, limit: 700, cursor: None };
                for _ in 0..3 {
                    let ids = |p: &Profiles, q: &crm_store::VisitorQuery| {
                        let (found, next) = p.list(q).unwrap();
                        (found.into_iter().map(|f| f.load().unwrap().visitor_id).collect::<Vec<_>>(), next)
                    };
                    let (expected, next) = ids(&loaded, &query);
                    assert!(!expected.is_empty());
                    assert_eq!(ids(&bulk, &query), (expected, next.clone()), "{sort:?} {bots:?}");
                    query.cursor = next;
                }
            }
        }

        // The layout of the first runs: three columns, summaries decoded from the JSON.
        let old = dir.path().join("run-2.parquet");
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(profiles[..10].iter().map(|p| p.site_id.as_str()))),
            Arc::new(StringArray::from_iter_values(profiles[..10].iter().map(|p| p.visitor_id.as_str()))),
            Arc::new(BinaryArray::from_iter_values(profiles[..10].iter().map(|p| serde_json::to_vec(p.as_ref()).unwrap()))),
        ];
        let schema = Arc::new(Schema::new(vec![Field::new("site_id", DataType::Utf8, false), Field::new("visitor_id", DataType::Utf8, false), Field::new("json", DataType::Binary, false)]));
        crate::part::write_batch(&old, &RecordBatch::try_new(schema, columns).unwrap()).unwrap();
        let mut from_old = Profiles::new(0);
        let old_run = Arc::new(Run::new(2, old, 10));
        load(&old_run, &mut from_old).unwrap();
        assert_eq!(from_old.len(), 10);
        assert_eq!(old_run.read_row(7).unwrap(), *profiles[7]);
        let grouped: u64 = from_old.orgs("s1", 10).iter().map(|o| o.visitors).sum();
        assert_eq!(grouped, 4, "visitors 0, 3, 6 and 9 have an organisation");
    }
}
