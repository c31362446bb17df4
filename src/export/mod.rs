//! `satlas export`: one model run's embedded cells for the rest of the ecosystem, as an AnnData
//! `.h5ad` file that scanpy reads ([`h5ad`]) or as Parquet tables ([`parquet`]).
//!
//! Both formats carry the same per-cell table ([`read_cells`]): one row per cell with an
//! embedding in the run, ordered by cell id, with its barcode, species, dataset, cell-type label
//! and the latest label transfer of the run that covered it (label and confidence; missing when
//! none did). Exports only read the atlas; every output file is written to a temporary file and
//! renamed into place, so a failed export leaves no partial file.

pub mod h5ad;
pub mod parquet;

use crate::atlas::{query_all, AtlasError, DbContext};
use duckdb::arrow::array::{Array, AsArray};
use duckdb::arrow::datatypes::{Float32Type, Int64Type};
use duckdb::Connection;
use std::fmt;
use std::path::PathBuf;

/// The per-cell table of run `?` (bound twice): the columns of `cells.parquet` and of the h5ad's
/// `obs`.
const CELLS_SQL: &str = "
    WITH latest AS (
        SELECT cell_id, predicted_label, confidence FROM label_transfers WHERE model_run_id = ?
        QUALIFY row_number() OVER (PARTITION BY cell_id ORDER BY transfer_id DESC) = 1)
    SELECT e.cell_id, c.barcode, c.species, c.dataset, c.cell_type,
           l.predicted_label AS transferred_label, l.confidence AS transfer_confidence
    FROM cell_embeddings e JOIN cell_info c USING (cell_id) LEFT JOIN latest l USING (cell_id)
    WHERE e.model_run_id = ? ORDER BY e.cell_id";

/// One exported cell.
#[derive(Debug, Clone, PartialEq)]
pub struct CellRow {
    /// `cells.cell_id`.
    pub cell_id: i64,
    /// The cell's barcode in its dataset.
    pub barcode: String,
    /// Species name.
    pub species: String,
    /// Dataset name.
    pub dataset: String,
    /// The dataset's label (cell type), if any.
    pub cell_type: Option<String>,
    /// The latest transferred label of the run, if any.
    pub transferred_label: Option<String>,
    /// Its confidence.
    pub transfer_confidence: Option<f64>,
}

/// The cells of `run` with an embedding, by cell id (see the module doc).
pub fn read_cells(conn: &Connection, run: i32) -> Result<Vec<CellRow>, AtlasError> {
    query_all(
        conn,
        CELLS_SQL,
        [run, run],
        "reading the cells to export",
        |r| {
            Ok(CellRow {
                cell_id: r.get(0)?,
                barcode: r.get(1)?,
                species: r.get(2)?,
                dataset: r.get(3)?,
                cell_type: r.get(4)?,
                transferred_label: r.get(5)?,
                transfer_confidence: r.get(6)?,
            })
        },
    )
}

/// The model run being exported, as `model_runs` records it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// `model_run_id`.
    pub id: i32,
    /// `pretrain`, `finetune`, ...
    pub kind: String,
    /// Its parameters (JSON).
    pub params: String,
    /// Its metrics (JSON), if recorded.
    pub metrics: Option<String>,
    /// When it was created.
    pub created_at: String,
}

impl RunInfo {
    /// Reads run `id`.
    pub fn read(conn: &Connection, id: i32) -> Result<RunInfo, AtlasError> {
        conn.query_row(
            "SELECT kind, params, metrics, created_at::VARCHAR FROM model_runs WHERE model_run_id = ?",
            [id],
            |r| {
                Ok(RunInfo {
                    id,
                    kind: r.get(0)?,
                    params: r.get(1)?,
                    metrics: r.get(2)?,
                    created_at: r.get(3)?,
                })
            },
        )
        .context("reading the model run")
    }
}

/// A cells x `dim` matrix, row-major, rows in cell-id order.
#[derive(Debug, Clone, PartialEq)]
pub struct Matrix {
    /// Columns.
    pub dim: usize,
    /// `rows x dim` values.
    pub values: Vec<f32>,
}

/// The `FLOAT[]` column `column` of `cell_embeddings` for `run` (`embedding` or
/// `macrogene_expression`), by cell id; a missing or ragged row is an inconsistency.
pub fn read_matrix(conn: &Connection, run: i32, column: &str) -> Result<Matrix, AtlasError> {
    let context = format!("reading {column} of run {run}");
    let mut stmt = conn
        .prepare(&format!(
            "SELECT cell_id, {column} FROM cell_embeddings WHERE model_run_id = ? ORDER BY cell_id"
        ))
        .context(&context)?;
    let mut values = Vec::new();
    let mut dim = None;
    for batch in stmt.stream_arrow([run]).context(&context)? {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let lists = batch.column(1).as_list::<i32>();
        for row in 0..batch.num_rows() {
            let cell = ids.value(row);
            let bad = |what: String| AtlasError::Inconsistent {
                what: format!("cell {cell} of run {run} {what}"),
            };
            if lists.is_null(row) {
                return Err(bad(format!("has no {column}")));
            }
            let list = lists.value(row);
            let list = list.as_primitive::<Float32Type>();
            let expected = *dim.get_or_insert(list.len());
            if list.len() != expected || list.null_count() > 0 {
                return Err(bad(format!(
                    "has a {column} of {} values ({} null), the others {expected}",
                    list.len(),
                    list.null_count()
                )));
            }
            values.extend_from_slice(list.values());
        }
    }
    Ok(Matrix {
        dim: dim.unwrap_or(0),
        values,
    })
}

/// What an export wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct ExportReport {
    /// The model run exported.
    pub run: i32,
    /// Cells exported.
    pub cells: usize,
    /// Each file written, with its rows.
    pub files: Vec<(PathBuf, usize)>,
}

impl fmt::Display for ExportReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "exported {} cells of run {}", self.cells, self.run)?;
        for (path, rows) in &self.files {
            writeln!(f, "  {}: {rows} rows", path.display())?;
        }
        Ok(())
    }
}
