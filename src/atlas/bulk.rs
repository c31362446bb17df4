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
