//! Atlas content out as Parquet files, written by DuckDB itself (`COPY ... TO ... (FORMAT
//! parquet, COMPRESSION zstd)`): query results directly ([`write_query`]), rows built in memory
//! through a table of a scratch in-memory database ([`write_batches`]; the atlas itself may be
//! open read-only).
//!
//! Files are written to a temporary file in the target's directory and renamed into place, so a
//! failure never leaves a partial file behind.

use super::{AtlasError, DbContext};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::{Connection, Params};
use std::path::Path;

/// Writes the rows of `sql` (with `params`) to `path`; returns how many rows were written.
pub fn write_query(
    conn: &Connection,
    sql: &str,
    params: impl Params,
    path: &Path,
) -> Result<usize, AtlasError> {
    let temp = super::temp_file_beside(path)?;
    let target = sql_string(&temp.path().display().to_string());
    let rows = conn
        .execute(
            &format!("COPY ({sql}) TO {target} (FORMAT parquet, COMPRESSION zstd)"),
            params,
        )
        .map_err(|e| AtlasError::Output {
            path: path.into(),
            message: e.to_string(),
        })?;
    super::persist(temp, path)?;
    Ok(rows)
}

/// Writes `batches` to `path` through a table created with `columns` (SQL column definitions
/// matching the batches' schema) in a scratch in-memory database; returns how many rows were
/// written. The first failed batch stops the write (and no file is left).
pub fn write_batches(
    path: &Path,
    columns: &str,
    batches: impl IntoIterator<Item = Result<RecordBatch, AtlasError>>,
) -> Result<usize, AtlasError> {
    let context = format!("staging the rows of {}", path.display());
    let scratch = Connection::open_in_memory().context(&context)?;
    scratch
        .execute_batch(&format!("CREATE TABLE staged ({columns})"))
        .context(&context)?;
    let mut appender = scratch.appender("staged").context(&context)?;
    for batch in batches {
        appender.append_record_batch(batch?).context(&context)?;
    }
    appender.flush().context(&context)?;
    drop(appender);
    write_query(&scratch, "SELECT * FROM staged", [], path)
}

/// `text` as an SQL string literal.
pub fn sql_string(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}
