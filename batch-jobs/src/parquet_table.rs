//! Reads a Parquet file as a table of text cells, for `crm import <kind> file.parquet`: the
//! import's row checks (types, ranges, enums, dates) then apply exactly as for CSV. Nulls
//! become empty cells; dates print as `YYYY-MM-DD`, timestamps as RFC 3339 in UTC (a timestamp
//! without a zone is taken as UTC).

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::BatchError;

/// Column names (lower-cased, trimmed) and rows of text cells.
#[derive(Debug, Default, PartialEq)]
pub struct TextTable {
    pub columns: Vec<String>,
    pub rows: Vec<Vec<String>>,
}

fn invalid(err: impl std::fmt::Display) -> BatchError {
    BatchError::InvalidParameter(format!("not a readable Parquet file: {err}"))
}

/// Whether `bytes` start like a Parquet file.
pub fn is_parquet(bytes: &[u8]) -> bool {
    bytes.len() >= 8 && bytes.starts_with(b"PAR1") && bytes.ends_with(b"PAR1")
}

/// Reads at most `max_rows` rows (more is an error, so nothing is half-imported).
pub fn read_parquet_table(bytes: Vec<u8>, max_rows: usize) -> Result<TextTable, BatchError> {
    let builder = ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes)).map_err(invalid)?;
    let columns: Vec<String> = builder.schema().fields().iter().map(|f| f.name().trim().to_ascii_lowercase()).collect();
    let mut table = TextTable { columns, rows: Vec::new() };
    for batch in builder.build().map_err(invalid)? {
        let batch: RecordBatch = batch.map_err(invalid)?;
        if table.rows.len() + batch.num_rows() > max_rows {
            return Err(BatchError::InvalidParameter(format!("the file has more than {max_rows} rows; split it")));
        }
        let arrays = batch
            .columns()
            .iter()
            .map(|column| match column.data_type() {
                DataType::Timestamp(unit, None) => cast(column, &DataType::Timestamp(*unit, Some(Arc::from("UTC")))).map_err(invalid),
                _ => Ok(column.clone()),
            })
            .collect::<Result<Vec<_>, _>>()?;
        let options = FormatOptions::default().with_null("");
        let formatters = arrays.iter().map(|a| ArrayFormatter::try_new(a.as_ref(), &options).map_err(invalid)).collect::<Result<Vec<_>, _>>()?;
        for row in 0..batch.num_rows() {
            table.rows.push(formatters.iter().map(|f| f.value(row).to_string()).collect());
        }
    }
    Ok(table)
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{ArrayRef, BooleanArray, Date32Array, Float64Array, StringArray, TimestampMillisecondArray};
    use datafusion::arrow::datatypes::{Field, Schema, TimeUnit};
    use datafusion::parquet::arrow::ArrowWriter;

    pub fn parquet_bytes(batch: RecordBatch) -> Vec<u8> {
        let mut out = Vec::new();
        let mut writer = ArrowWriter::try_new(&mut out, batch.schema(), None).unwrap();
        writer.write(&batch).unwrap();
        writer.close().unwrap();
        out
    }

    #[test]
    fn typed_columns_become_the_text_the_import_checks() {
        let schema = Arc::new(Schema::new(vec![
            Field::new("Account_ID", DataType::Utf8, false),
            Field::new("mrr", DataType::Float64, true),
            Field::new("renewal_date", DataType::Date32, true),
            Field::new("opened_at", DataType::Timestamp(TimeUnit::Millisecond, None), true),
            Field::new("escalated", DataType::Boolean, true),
        ]));
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec!["acme", "globex"])),
            Arc::new(Float64Array::from(vec![Some(1200.5), None])),
            Arc::new(Date32Array::from(vec![Some(20_484), None])),
            Arc::new(TimestampMillisecondArray::from(vec![Some(1_767_225_600_000), None])),
            Arc::new(BooleanArray::from(vec![Some(true), Some(false)])),
        ];
        let bytes = parquet_bytes(RecordBatch::try_new(schema, columns).unwrap());
        assert!(is_parquet(&bytes));
        let table = read_parquet_table(bytes.clone(), 10).unwrap();
        assert_eq!(table.columns, vec!["account_id", "mrr", "renewal_date", "opened_at", "escalated"]);
        assert_eq!(table.rows[0], vec!["acme", "1200.5", "2026-01-31", "2026-01-01T00:00:00Z", "true"]);
        assert_eq!(table.rows[1], vec!["globex", "", "", "", "false"]);
        assert!(read_parquet_table(bytes, 1).is_err(), "over the row limit");
        assert!(!is_parquet(b"account_id,name\n"));
        assert!(read_parquet_table(b"PAR1 not really PAR1".to_vec(), 10).is_err());
    }
}
