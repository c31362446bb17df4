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

pub use h5ad::export_h5ad;
pub use parquet::export_parquet;

use crate::atlas::{query_all, AtlasError};
use crate::runs::embeddings::read_vectors;
use crate::runs::{CellVector, Embeddings};
use crate::Atlas;
use duckdb::Connection;
use std::fmt;
use std::path::{Path, PathBuf};

/// The file format of an export.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ExportFormat {
    /// One AnnData `.h5ad` file ([`h5ad`]).
    #[default]
    H5ad,
    /// A directory of Parquet tables ([`parquet`]).
    Parquet,
}

/// What to export.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExportSpec {
    /// The file format.
    pub format: ExportFormat,
    /// The model run (default: the newest finished finetune run with embeddings).
    pub run: Option<i32>,
    /// Also write the cells' macrogene expression (`obsm/X_macrogenes`; h5ad only).
    pub macrogenes: bool,
}

/// Why an export was refused.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    /// Macrogene expression asked for in a format that does not carry it.
    #[error(
        "--macrogenes is for --format h5ad (Parquet exports the macrogene weights, not expression)"
    )]
    MacrogenesNeedH5ad,
}

impl ExportSpec {
    /// Refuses a combination the format cannot write, before any work.
    pub fn check(&self) -> Result<(), ExportError> {
        match self.format {
            ExportFormat::Parquet if self.macrogenes => Err(ExportError::MacrogenesNeedH5ad),
            _ => Ok(()),
        }
    }
}

/// `satlas export`: the run's embedded cells in `spec.format` at `out` (a file for h5ad, a
/// directory for Parquet).
pub fn export(atlas: &Atlas, spec: &ExportSpec, out: &Path) -> crate::Result<ExportReport> {
    spec.check()?;
    match spec.format {
        ExportFormat::H5ad => export_h5ad(atlas, spec, out),
        ExportFormat::Parquet => export_parquet(atlas, spec, out),
    }
}

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

/// The `vector` of each of `cells` (the exported cells of `run`), in their order: the matrix
/// beside the cell table. A cell without one is an inconsistency.
pub fn cell_matrix(
    conn: &Connection,
    run: i32,
    vector: CellVector,
    cells: &[CellRow],
) -> Result<Embeddings, AtlasError> {
    let matrix = read_vectors(conn, run, vector, |_| true)?;
    if !matrix.covers(cells.iter().map(|c| c.cell_id)) {
        return Err(AtlasError::Inconsistent {
            what: format!(
                "{} of the {} embedded cells of run {run} have a {}",
                matrix.len(),
                cells.len(),
                vector.column()
            ),
        });
    }
    Ok(matrix)
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
