//! Atlas content out as Parquet files (arrow-rs `parquet`, zstd): the bundled DuckDB has no
//! Parquet extension, so `COPY ... TO 'x.parquet'` is done here from DuckDB's Arrow results.
//!
//! Files are written to a temporary file in the target's directory and renamed into place, so a
//! failure never leaves a partial file behind.

use super::{AtlasError, DbContext};
use duckdb::arrow::datatypes::SchemaRef;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Connection, Params};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use std::path::Path;

/// Writes the rows of `sql` (with `params`) to `path`; returns how many rows were written.
pub fn write_query(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    path: &Path,
) -> Result<usize, AtlasError> {
    let context = format!("querying the rows for {}", path.display());
    let mut stmt = conn.prepare(sql).context(&context)?;
    let stream = stmt.stream_arrow(params).context(&context)?;
    let schema = stream.get_schema();
    write_batches(path, schema, stream.map(|batch| batch.context(&context)))
}

/// Writes `batches` (all of `schema`) to `path`; returns how many rows were written. The first
/// failed batch stops the write (and no file is left).
pub fn write_batches(
    path: &Path,
    schema: SchemaRef,
    batches: impl IntoIterator<Item = Result<RecordBatch, AtlasError>>,
) -> Result<usize, AtlasError> {
    let fail = |message: String| AtlasError::Output {
        path: path.into(),
        message,
    };
    let mut temp = super::temp_file_beside(path)?;
    let properties = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::default()))
        .build();
    let mut writer = ArrowWriter::try_new(temp.as_file_mut(), schema, Some(properties))
        .map_err(|e| fail(e.to_string()))?;
    let mut rows = 0;
    for batch in batches {
        let batch = batch?;
        rows += batch.num_rows();
        writer.write(&batch).map_err(|e| fail(e.to_string()))?;
    }
    writer.close().map_err(|e| fail(e.to_string()))?;
    super::persist(temp, path)?;
    Ok(rows)
}
