//! Event parts: immutable Parquet files of one site's enriched events of one UTC day.
//!
//! Rows are sorted by `(visitor_hash, ts_ms, event_id)`, so one visitor's events are contiguous
//! and the row-group statistics of `visitor_hash` prune a timeline read to the groups that can
//! hold the visitor; a row filter on that column then decodes the JSON of matching rows only.
//! Analytics read the narrow typed columns (`kind`, `path`, `is_bot`, …) and never the `json`
//! column, which holds the whole [`StoredEvent`] so a timeline returns it unchanged.

use std::fs::File;
use std::path::Path;
use std::sync::Arc;

use crm_schemas::{EventBody, StoredEvent};
use datafusion::arrow::array::{Array, ArrayRef, BinaryArray, BinaryBuilder, BooleanArray, FixedSizeBinaryArray, Int64Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::parquet::arrow::arrow_reader::{ArrowPredicateFn, ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder, RowFilter, RowSelection, RowSelector};
use datafusion::parquet::file::metadata::ParquetMetaData;
use datafusion::parquet::file::page_index::column_index::ColumnIndexMetaData;
use datafusion::parquet::arrow::{ArrowWriter, ProjectionMask};
use datafusion::parquet::basic::{Compression, ZstdLevel};
use datafusion::parquet::file::properties::{EnabledStatistics, WriterProperties};
use datafusion::parquet::schema::types::ColumnPath;
use datafusion::parquet::file::statistics::Statistics;

use crate::{sync_dir, ColumnarError, Result};

/// Rows per row group: small enough that a visitor's rows sit in one or two groups of a large
/// part, large enough that the per-group overhead stays small.
pub const ROW_GROUP_ROWS: usize = 16 * 1024;

/// Rows encoded at a time when a commit point writes its events.
const WRITE_BATCH_ROWS: usize = 4096;

/// The stable hash events are sorted and looked up by (FNV-1a, 64 bit): it is stored on disk,
/// so it must never change.
pub fn visitor_hash(visitor_id: &str) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in visitor_id.bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(0x0100_0000_01b3);
    }
    hash as i64
}

/// Column order of an event part.
pub fn events_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("visitor_hash", DataType::Int64, false),
        Field::new("ts_ms", DataType::Int64, false),
        Field::new("event_id", DataType::FixedSizeBinary(16), false),
        Field::new("visitor_id", DataType::Utf8, false),
        Field::new("session_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("is_bot", DataType::Boolean, false),
        Field::new("path", DataType::Utf8, true),
        Field::new("form_id", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
        Field::new("engaged_ms", DataType::Int64, true),
        Field::new("json", DataType::Binary, false),
    ]))
}

const COL_HASH: usize = 0;
const COL_VISITOR: usize = 3;
const COL_JSON: usize = 11;

/// What a written part holds, for its manifest entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Written {
    pub rows: u64,
    pub bytes: u64,
    pub min_ts: i64,
    pub max_ts: i64,
}

/// Sorts `events` by the part key and builds the record batch (borrowing the events: a commit
/// point groups its buffer by day without copying it).
pub fn events_batch(events: &[&StoredEvent]) -> Result<RecordBatch> {
    sorted_batch(&in_part_order(events))
}

/// `events` with their visitor hashes, in the part's order (visitor hash, time, id).
fn in_part_order<'a>(events: &[&'a StoredEvent]) -> Vec<(i64, &'a StoredEvent)> {
    let mut order: Vec<(i64, &StoredEvent)> = events.iter().map(|e| (visitor_hash(&e.visitor_id), *e)).collect();
    order.sort_by(|(ha, a), (hb, b)| (ha, a.ts_ms, a.event_id).cmp(&(hb, b.ts_ms, b.event_id)));
    order
}

/// The record batch of events already in part order.
fn sorted_batch(order: &[(i64, &StoredEvent)]) -> Result<RecordBatch> {
    let json = json_column(order.iter().map(|(_, e)| *e), "<event>")?;
    let form_id = |e: &StoredEvent| match &e.body {
        EventBody::FormSubmit { form_id, .. } | EventBody::FormView { form_id } | EventBody::FormStart { form_id } => Some(form_id.clone()),
        _ => None,
    };
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(order.iter().map(|(h, _)| *h))),
        Arc::new(Int64Array::from_iter_values(order.iter().map(|(_, e)| e.ts_ms))),
        Arc::new(FixedSizeBinaryArray::try_from_sparse_iter_with_size(order.iter().map(|(_, e)| Some(e.event_id.into_bytes())), 16).expect("16-byte ids")),
        Arc::new(StringArray::from_iter_values(order.iter().map(|(_, e)| e.visitor_id.as_str()))),
        Arc::new(StringArray::from_iter_values(order.iter().map(|(_, e)| e.session_id.as_str()))),
        Arc::new(StringArray::from_iter_values(order.iter().map(|(_, e)| e.body.kind().as_str()))),
        Arc::new(BooleanArray::from_iter(order.iter().map(|(_, e)| Some(e.is_bot)))),
        Arc::new(StringArray::from_iter(order.iter().map(|(_, e)| e.path.clone()))),
        Arc::new(StringArray::from_iter(order.iter().map(|(_, e)| form_id(e)))),
        Arc::new(StringArray::from_iter(order.iter().map(|(_, e)| match &e.body {
            EventBody::Custom { name } => Some(name.clone()),
            _ => None,
        }))),
        Arc::new(Int64Array::from_iter(order.iter().map(|(_, e)| match e.body {
            EventBody::Engagement { engaged_ms, .. } => Some(engaged_ms.min(i64::MAX as u64) as i64),
            _ => None,
        }))),
        Arc::new(json),
    ];
    RecordBatch::try_new(events_schema(), columns).map_err(|e| ColumnarError::corrupt(Path::new("<batch>"), e))
}

/// Each value's JSON in one binary column, encoded through one scratch buffer (no allocation
/// per row).
pub(crate) fn json_column<'a, T: serde::Serialize + 'a>(values: impl ExactSizeIterator<Item = &'a T>, what: &str) -> Result<BinaryArray> {
    let mut column = BinaryBuilder::with_capacity(values.len(), values.len() * 512);
    let mut scratch = Vec::with_capacity(2048);
    for value in values {
        scratch.clear();
        serde_json::to_writer(&mut scratch, value).map_err(|e| ColumnarError::corrupt(Path::new(what), e))?;
        column.append_value(&scratch);
    }
    Ok(column.finish())
}

/// Writes `events` (one site, one day) as a part at `path` and fsyncs it and its directory.
///
/// The rows go to the writer in batches of [`WRITE_BATCH_ROWS`]: a commit point's encoded
/// events (about 1 KB of JSON each) exist one batch at a time, not all at once.
pub fn write_events(path: &Path, events: &[&StoredEvent]) -> Result<Written> {
    let mut writer = PartWriter::create(path, events_schema())?;
    for chunk in in_part_order(events).chunks(WRITE_BATCH_ROWS) {
        writer.write(&sorted_batch(chunk)?)?;
    }
    let bytes = writer.finish()?;
    Ok(Written {
        rows: events.len() as u64,
        bytes,
        min_ts: events.iter().map(|e| e.ts_ms).min().unwrap_or(0),
        max_ts: events.iter().map(|e| e.ts_ms).max().unwrap_or(0),
    })
}

/// Writes one record batch as a Parquet part (zstd, row groups of [`ROW_GROUP_ROWS`], page
/// statistics), fsyncs it and its directory, and returns its size.
pub fn write_batch(path: &Path, batch: &RecordBatch) -> Result<u64> {
    let mut writer = PartWriter::create(path, batch.schema())?;
    writer.write(batch)?;
    writer.finish()
}

/// A part written batch by batch (compaction streams its merge through one): the file is
/// complete and durable only after [`PartWriter::finish`].
pub struct PartWriter {
    path: std::path::PathBuf,
    writer: ArrowWriter<File>,
}

impl PartWriter {
    pub fn create(path: &Path, schema: SchemaRef) -> Result<PartWriter> {
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(1).expect("level 1 is valid")))
            .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
            .set_statistics_enabled(EnabledStatistics::Page)
            .set_data_page_row_count_limit(1024)
            // Dictionaries only where values repeat: a one-megabyte dictionary page of unique JSON
            // would be read and decompressed by every timeline lookup (2.5 ms each, ANALYSIS.md).
            .set_dictionary_enabled(false);
        let props = ["kind", "path", "form_id", "name", "referrer", "country", "device", "browser", "utm_source"]
            .into_iter()
            .filter(|column| schema.index_of(column).is_ok())
            .fold(props, |props, column| props.set_column_dictionary_enabled(ColumnPath::from(column), true))
            .build();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| ColumnarError::io(dir, e))?;
        }
        let file = File::create(path).map_err(|e| ColumnarError::io(path, e))?;
        let writer = ArrowWriter::try_new(file, schema, Some(props)).map_err(|e| ColumnarError::io(path, e))?;
        Ok(PartWriter { path: path.to_owned(), writer })
    }

    pub fn write(&mut self, batch: &RecordBatch) -> Result<()> {
        self.writer.write(batch).map_err(|e| ColumnarError::io(&self.path, e))
    }

    /// Closes the file, fsyncs it and its directory, and returns its size.
    pub fn finish(self) -> Result<u64> {
        let path = self.path;
        let file = self.writer.into_inner().map_err(|e| ColumnarError::io(&path, e))?;
        file.sync_all().map_err(|e| ColumnarError::io(&path, e))?;
        sync_dir(path.parent().unwrap_or(Path::new(".")))?;
        Ok(file.metadata().map_err(|e| ColumnarError::io(&path, e))?.len())
    }
}

/// Within `groups`, the pages whose `visitor_hash` range (from the page index) can hold `hash`:
/// the reader then decompresses only those pages of every projected column. `None` without a
/// page index (every row of the groups is read).
fn page_selection(metadata: &ParquetMetaData, groups: &[usize], hash: i64) -> Option<RowSelection> {
    let (column_index, offset_index) = (metadata.column_index()?, metadata.offset_index()?);
    let mut selectors = Vec::new();
    for &group in groups {
        let rows = metadata.row_group(group).num_rows() as usize;
        let pages = offset_index.get(group)?.get(COL_HASH)?.page_locations();
        let index = match column_index.get(group)?.get(COL_HASH)? {
            ColumnIndexMetaData::INT64(index) => Some(index),
            _ => None,
        };
        for (i, page) in pages.iter().enumerate() {
            let start = page.first_row_index as usize;
            let end = pages.get(i + 1).map_or(rows, |next| next.first_row_index as usize);
            let hit = match index.map(|index| (index.min_value(i), index.max_value(i))) {
                Some((Some(&min), Some(&max))) => min <= hash && hash <= max,
                _ => true,
            };
            selectors.push(if hit { RowSelector::select(end - start) } else { RowSelector::skip(end - start) });
        }
    }
    Some(selectors.into())
}

/// Row groups whose `visitor_hash` statistics can include `hash` (all of them without statistics).
fn row_groups_for(metadata: &datafusion::parquet::file::metadata::ParquetMetaData, hash: i64) -> Vec<usize> {
    (0..metadata.num_row_groups())
        .filter(|&g| match metadata.row_group(g).column(COL_HASH).statistics() {
            Some(Statistics::Int64(stats)) => stats.min_opt().is_none_or(|&min| min <= hash) && stats.max_opt().is_none_or(|&max| hash <= max),
            _ => true,
        })
        .collect()
}

fn decode_json(path: &Path, batch: &RecordBatch, column: usize, out: &mut Vec<StoredEvent>, keep: impl Fn(usize) -> bool) -> Result<()> {
    let json = batch.column(column).as_any().downcast_ref::<BinaryArray>().ok_or_else(|| ColumnarError::corrupt(path, "json column is not binary"))?;
    for row in 0..batch.num_rows() {
        if keep(row) {
            out.push(serde_json::from_slice(json.value(row)).map_err(|e| ColumnarError::corrupt(path, e))?);
        }
    }
    Ok(())
}

/// A part's footer with its page index, parsed once and kept with the part: a timeline touches
/// several parts, and parsing their footers each time cost more than reading the rows.
pub fn load_metadata(path: &Path) -> Result<ArrowReaderMetadata> {
    let file = File::open(path).map_err(|e| ColumnarError::io(path, e))?;
    ArrowReaderMetadata::load(&file, ArrowReaderOptions::new().with_page_index_policy(datafusion::parquet::file::metadata::PageIndexPolicy::Required)).map_err(|e| ColumnarError::corrupt(path, e))
}

/// The visitor's events in the part, in part order (ascending time). Reads only the row groups
/// whose `visitor_hash` range holds the hash, and (with the page index) only the pages of the
/// rows with that hash.
pub fn read_visitor(path: &Path, visitor_id: &str) -> Result<Vec<StoredEvent>> {
    read_visitor_with(path, &load_metadata(path)?, visitor_id)
}

/// [`read_visitor`] with the part's metadata already loaded.
pub fn read_visitor_with(path: &Path, metadata: &ArrowReaderMetadata, visitor_id: &str) -> Result<Vec<StoredEvent>> {
    let hash = visitor_hash(visitor_id);
    let file = File::open(path).map_err(|e| ColumnarError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::new_with_metadata(file, metadata.clone());
    let metadata = builder.metadata().clone();
    let groups = row_groups_for(&metadata, hash);
    if groups.is_empty() {
        return Ok(Vec::new());
    }
    let descr = builder.parquet_schema();
    let only_hash = ProjectionMask::roots(descr, [COL_HASH]);
    let predicate = ArrowPredicateFn::new(only_hash, move |batch: RecordBatch| {
        let hashes = batch.column(0).as_any().downcast_ref::<Int64Array>().expect("visitor_hash is Int64");
        Ok(BooleanArray::from_iter(hashes.iter().map(|h| Some(h == Some(hash)))))
    });
    let projection = ProjectionMask::roots(descr, [COL_VISITOR, COL_JSON]);
    let selection = page_selection(&metadata, &groups, hash);
    let builder = match selection {
        Some(selection) => builder.with_row_selection(selection),
        None => builder,
    };
    let reader = builder
        .with_row_groups(groups)
        .with_projection(projection)
        .with_row_filter(RowFilter::new(vec![Box::new(predicate)]))
        .build()
        .map_err(|e| ColumnarError::corrupt(path, e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| ColumnarError::corrupt(path, e))?;
        // Hash collisions: keep only the visitor asked for.
        let visitors = batch.column(0).as_any().downcast_ref::<StringArray>().ok_or_else(|| ColumnarError::corrupt(path, "visitor_id column is not utf8"))?;
        decode_json(path, &batch, 1, &mut out, |row| visitors.value(row) == visitor_id)?;
    }
    Ok(out)
}

/// Every event of the part, in part order (compaction, conversion checks, tests).
pub fn read_all(path: &Path) -> Result<Vec<StoredEvent>> {
    let file = File::open(path).map_err(|e| ColumnarError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ColumnarError::corrupt(path, e))?;
    let projection = ProjectionMask::roots(builder.parquet_schema(), [COL_JSON]);
    let reader = builder.with_projection(projection).build().map_err(|e| ColumnarError::corrupt(path, e))?;
    let mut out = Vec::new();
    for batch in reader {
        let batch = batch.map_err(|e| ColumnarError::corrupt(path, e))?;
        decode_json(path, &batch, 0, &mut out, |_| true)?;
    }
    Ok(out)
}

/// Row groups of the part whose hash range can hold `visitor_id` (tests check pruning with it).
pub fn candidate_row_groups(path: &Path, visitor_id: &str) -> Result<(usize, usize)> {
    let hash = visitor_hash(visitor_id);
    let file = File::open(path).map_err(|e| ColumnarError::io(path, e))?;
    let builder = ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| ColumnarError::corrupt(path, e))?;
    let metadata = builder.metadata();
    let candidates = row_groups_for(metadata, hash).len();
    Ok((candidates, metadata.num_row_groups()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crm_schemas::{ClickTarget, Device, Geo};
    use uuid::Uuid;

    fn event(visitor: &str, ts_ms: i64, body: EventBody) -> StoredEvent {
        StoredEvent {
            event_id: Uuid::new_v4(),
            site_id: "s1".into(),
            visitor_id: visitor.into(),
            session_id: format!("{visitor}-s"),
            client_session_id: None,
            ts_ms,
            received_at_ms: ts_ms + 5,
            url: Some("https://example.com/pricing".into()),
            path: Some("/pricing".into()),
            referrer: None,
            title: None,
            props: Default::default(),
            body,
            ip: Some("203.0.113.0".into()),
            geo: Geo { country: Some("DE".into()), ..Geo::default() },
            device: Device { browser: "Firefox".into(), category: "pc".into(), ..Device::default() },
            is_bot: false,
            intent_signal: None,
        }
    }

    #[test]
    fn a_part_returns_every_event_unchanged_in_key_order() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("events/s-s1/d-1/L0-0.parquet");
        let events = vec![
            event("v2", 300, EventBody::Pageview),
            event("v1", 200, EventBody::Engagement { scroll_depth: 80, engaged_ms: 12_000 }),
            event("v1", 100, EventBody::FormStart { form_id: "demo".into() }),
            event("v3", 50, EventBody::Click { target: ClickTarget::default() }),
            event("v1", 100, EventBody::Custom { name: "signup".into() }),
        ];
        let written = write_events(&path, &events.iter().collect::<Vec<_>>()).unwrap();
        assert_eq!((written.rows, written.min_ts, written.max_ts), (5, 50, 300));
        let back = read_all(&path).unwrap();
        let mut expected = events.clone();
        expected.sort_by_key(|e| (visitor_hash(&e.visitor_id), e.ts_ms, e.event_id));
        assert_eq!(back, expected);

        let v1 = read_visitor(&path, "v1").unwrap();
        assert_eq!(v1.len(), 3);
        assert!(v1.windows(2).all(|w| (w[0].ts_ms, w[0].event_id) <= (w[1].ts_ms, w[1].event_id)), "ascending time within a visitor");
        assert!(read_visitor(&path, "nobody").unwrap().is_empty());

        // More rows than one write batch and one row group: the part is still in key order.
        let many: Vec<StoredEvent> = (0..(ROW_GROUP_ROWS + WRITE_BATCH_ROWS + 7) as i64).map(|i| event(&format!("v{}", i % 997), 1_000 + i % 13, EventBody::Pageview)).collect();
        let path = dir.path().join("many.parquet");
        write_events(&path, &many.iter().collect::<Vec<_>>()).unwrap();
        let mut expected = many.clone();
        expected.sort_by_key(|e| (visitor_hash(&e.visitor_id), e.ts_ms, e.event_id));
        assert_eq!(read_all(&path).unwrap(), expected);
        assert_eq!(read_visitor(&path, "v5").unwrap().len(), many.iter().filter(|e| e.visitor_id == "v5").count());
    }

    #[test]
    fn a_timeline_read_touches_only_the_row_groups_that_can_hold_the_visitor() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("big.parquet");
        // 5 000 visitors × 20 events = 100 000 rows = 7 row groups.
        let events: Vec<StoredEvent> = (0..100_000).map(|i| event(&format!("v{}", i % 5_000), i as i64, EventBody::Pageview)).collect();
        write_events(&path, &events.iter().collect::<Vec<_>>()).unwrap();
        let (candidates, groups) = candidate_row_groups(&path, "v1234").unwrap();
        assert!(groups >= 6, "{groups} row groups");
        assert!(candidates <= 2, "a visitor's rows are contiguous: {candidates} of {groups} groups read");
        let timeline = read_visitor(&path, "v1234").unwrap();
        assert_eq!(timeline.len(), 20);
        assert!(timeline.iter().all(|e| e.visitor_id == "v1234"));
    }

    #[test]
    fn hashes_are_stable() {
        // Stored on disk: a change here would orphan every existing part's sort order.
        assert_eq!(visitor_hash(""), 0xcbf2_9ce4_8422_2325u64 as i64);
        assert_eq!(visitor_hash("a"), 0xaf63_dc4c_8601_ec8cu64 as i64);
    }

    #[test]
    fn a_damaged_part_is_corrupt_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.parquet");
        write_events(&path, &[&event("v1", 1, EventBody::Pageview)]).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
        assert!(matches!(read_all(&path), Err(ColumnarError::Corrupt { .. })));
        assert!(matches!(read_visitor(&path, "v1"), Err(ColumnarError::Corrupt { .. })));
    }
}
