//! `satlas export --format parquet`: one run's embedded cells as three Parquet tables in a
//! directory (written through [`crate::atlas::parquet`]):
//!
//! - `cells.parquet`: `cell_id`, `barcode`, `species`, `dataset`, `cell_type`,
//!   `transferred_label`, `transfer_confidence` (the table of [`super::read_cells`]);
//! - `embeddings.parquet`: `cell_id`, `embedding` (list of float32);
//! - `macrogene_weights.parquet`: `species`, `gene`, `macrogene`, `weight` (as trained by the run,
//!   `exp(P)`), `initial_weight` (the macrogene set's rank-based weight), one row per gene and
//!   macrogene.

use super::{ExportReport, ExportSpec, CELLS_SQL};
use crate::atlas::parquet::{write_batches, write_query};
use crate::atlas::{bulk, query_all, AtlasError};
use crate::macrogene::MacrogeneSet;
use crate::model::runs::trained_macrogene_weights;
use crate::runs::embeddings::read;
use crate::runs::{self, Embeddings, Need};
use crate::Atlas;
use duckdb::arrow::array::{
    ArrayRef, Float32Array, Int32Array, Int64Array, RecordBatch, StringArray,
};
use duckdb::arrow::datatypes::Float32Type;
use duckdb::Connection;
use ndarray::Array2;
use std::collections::HashMap;
use std::ops::Range;
use std::path::Path;
use std::sync::Arc;

/// Cells per record batch of `embeddings.parquet`.
const CELLS_PER_BATCH: usize = 8192;

/// Genes per record batch of `macrogene_weights.parquet` (rows = genes x macrogenes).
const GENES_PER_BATCH: usize = 256;

/// Writes the three tables of run `spec.run` (default: the newest finished finetune run with
/// embeddings) into directory `dir`, created if missing.
pub fn export_parquet(atlas: &Atlas, spec: &ExportSpec, dir: &Path) -> crate::Result<ExportReport> {
    let conn = atlas.connection();
    let run = runs::select(conn, Need::Embedded, spec.run)?;
    std::fs::create_dir_all(dir).map_err(|e| AtlasError::Output {
        path: dir.into(),
        message: format!("cannot create the output directory: {e}"),
    })?;
    let mut files = Vec::new();
    let cells = dir.join("cells.parquet");
    let n_cells = write_query(conn, CELLS_SQL, [run, run], &cells)?;
    files.push((cells, n_cells));
    let embeddings = dir.join("embeddings.parquet");
    let rows = write_embeddings(conn, run, &embeddings)?;
    files.push((embeddings, rows));
    let weights = dir.join("macrogene_weights.parquet");
    let rows = write_macrogene_weights(conn, run, &weights)?;
    files.push((weights, rows));
    Ok(ExportReport {
        run,
        cells: n_cells,
        files,
    })
}

/// `embeddings.parquet`, from the run's embeddings as [`crate::runs::embeddings::read`] reads
/// them.
fn write_embeddings(conn: &Connection, run: i32, path: &Path) -> crate::Result<usize> {
    let matrix = read(conn, run, |_| true)?;
    let batches = (0..matrix.len())
        .step_by(CELLS_PER_BATCH)
        .map(|start| embedding_batch(&matrix, start..matrix.len().min(start + CELLS_PER_BATCH)));
    Ok(write_batches(
        path,
        "cell_id BIGINT NOT NULL, embedding FLOAT[] NOT NULL",
        batches,
    )?)
}

fn embedding_batch(matrix: &Embeddings, rows: Range<usize>) -> Result<RecordBatch, AtlasError> {
    let columns: [(&str, ArrayRef); 2] = [
        (
            "cell_id",
            Arc::new(Int64Array::from(matrix.cell_ids[rows.clone()].to_vec())),
        ),
        (
            "embedding",
            bulk::list_column::<Float32Type, _>(rows.map(|i| matrix.row(i))),
        ),
    ];
    RecordBatch::try_from_iter(columns).map_err(|e| AtlasError::Output {
        path: "embeddings.parquet".into(),
        message: e.to_string(),
    })
}

fn write_macrogene_weights(conn: &Connection, run: i32, path: &Path) -> crate::Result<usize> {
    let (set, trained) = trained_macrogene_weights(conn, run)?;
    let symbols: HashMap<i32, String> = query_all(
        conn,
        "SELECT gene_id, symbol FROM genes",
        [],
        "reading gene symbols",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?
    .into_iter()
    .collect();
    let genes = gene_columns(&set, &symbols)?;
    let batches = genes
        .chunks(GENES_PER_BATCH)
        .map(|chunk| weight_batch(chunk, &trained, &set.weights));
    Ok(write_batches(
        path,
        "species VARCHAR NOT NULL, gene VARCHAR NOT NULL, macrogene INTEGER NOT NULL, \
         weight FLOAT NOT NULL, initial_weight FLOAT NOT NULL",
        batches,
    )?)
}

/// One gene of the set: its column in the weight matrices, species and symbol.
struct GeneColumn<'a> {
    column: usize,
    species: &'a str,
    symbol: &'a str,
}

fn gene_columns<'a>(
    set: &'a MacrogeneSet,
    symbols: &'a HashMap<i32, String>,
) -> Result<Vec<GeneColumn<'a>>, AtlasError> {
    set.species
        .iter()
        .flat_map(|s| s.gene_ids.iter().map(move |g| (s.name.as_str(), g)))
        .enumerate()
        .map(|(column, (species, gene))| {
            let symbol = symbols.get(gene).ok_or_else(|| AtlasError::Inconsistent {
                what: format!("gene {gene} of macrogene set {} has no symbol", set.id),
            })?;
            Ok(GeneColumn {
                column,
                species,
                symbol,
            })
        })
        .collect()
}

/// The rows (gene x macrogene) of `genes`, from the macrogenes x genes matrices.
fn weight_batch(
    genes: &[GeneColumn<'_>],
    trained: &Array2<f32>,
    initial: &Array2<f32>,
) -> Result<RecordBatch, AtlasError> {
    let m = trained.nrows();
    let rows = genes.len() * m;
    let (mut species, mut symbols) = (Vec::with_capacity(rows), Vec::with_capacity(rows));
    let mut weights: Vec<f32> = Vec::with_capacity(rows);
    let mut initial_weights: Vec<f32> = Vec::with_capacity(rows);
    for g in genes {
        species.extend(std::iter::repeat_n(g.species, m));
        symbols.extend(std::iter::repeat_n(g.symbol, m));
        weights.extend(trained.column(g.column).iter());
        initial_weights.extend(initial.column(g.column).iter());
    }
    let macrogenes = genes.iter().flat_map(|_| 0..m as i32);
    let columns: [(&str, ArrayRef); 5] = [
        ("species", Arc::new(StringArray::from(species))),
        ("gene", Arc::new(StringArray::from(symbols))),
        (
            "macrogene",
            Arc::new(Int32Array::from_iter_values(macrogenes)),
        ),
        ("weight", Arc::new(Float32Array::from(weights))),
        (
            "initial_weight",
            Arc::new(Float32Array::from(initial_weights)),
        ),
    ];
    RecordBatch::try_from_iter(columns).map_err(|e| AtlasError::Output {
        path: "macrogene_weights.parquet".into(),
        message: e.to_string(),
    })
}
