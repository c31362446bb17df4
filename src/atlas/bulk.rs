//! The bulk write path: columns go into a table as Arrow arrays through DuckDB's appender.

use super::{AtlasError, DbContext};
use duckdb::arrow::array::{ArrayRef, ListArray, PrimitiveArray};
use duckdb::arrow::buffer::OffsetBuffer;
use duckdb::arrow::datatypes::{ArrowPrimitiveType, Field};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::Connection;
use std::sync::Arc;

/// Appends `columns` (name, values; all the same length) to `table`. Columns not named take
/// their defaults.
pub fn append(
    conn: &Connection,
    table: &str,
    columns: Vec<(&str, ArrayRef)>,
) -> Result<(), AtlasError> {
    let context = format!("appending to {table}");
    let names: Vec<&str> = columns.iter().map(|(name, _)| *name).collect();
    let batch = RecordBatch::try_from_iter(columns).map_err(|e| {
        AtlasError::db(&context, duckdb::Error::ToSqlConversionFailure(Box::new(e)))
    })?;
    let mut appender = conn
        .appender_with_columns(table, &names)
        .context(&context)?;
    appender.append_record_batch(batch).context(&context)?;
    appender.flush().context(&context)
}

/// Makes DuckDB write a bulk append's row groups to the file as soon as each is full, instead of
/// buffering five (its default) in memory before the commit. A row group is 122,880 rows: with
/// one row per cell and ~2,000 counts per cell that is about 2 GB, so five of them were most of
/// a 250,000-cell ingest's 5.7 GB peak RSS. A setting of this connection (the process).
pub fn flush_each_row_group(conn: &Connection) -> Result<(), AtlasError> {
    conn.execute_batch(
        "SET write_buffer_row_group_count = 1; SET write_buffer_row_group_memory_limit = '256MB';",
    )
    .context("limiting DuckDB's bulk-append buffer")
}

/// A `LIST` column: one list per row, from row-major slices.
pub fn list_column<'a, T, I>(rows: I) -> ArrayRef
where
    T: ArrowPrimitiveType,
    I: IntoIterator<Item = &'a [T::Native]>,
{
    let mut values = Vec::new();
    let mut lengths = Vec::new();
    for row in rows {
        values.extend_from_slice(row);
        lengths.push(row.len());
    }
    let values = PrimitiveArray::<T>::from_iter_values(values);
    let field = Arc::new(Field::new_list_field(T::DATA_TYPE, false));
    Arc::new(ListArray::new(
        field,
        OffsetBuffer::from_lengths(lengths),
        Arc::new(values),
        None,
    ))
}
