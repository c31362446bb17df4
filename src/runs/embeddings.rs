//! The writer and the reader of `cell_embeddings`: a run's embeddings appended (Arrow bulk
//! path) or copied to another run, read back as a row-major matrix, and the digest that says
//! which embeddings an index or a layout covers.

use crate::atlas::{bulk, AtlasError, DbContext};
use duckdb::arrow::array::{ArrayRef, AsArray, Int32Array, Int64Array};
use duckdb::arrow::datatypes::{Float32Type, Int64Type};
use duckdb::Connection;
use ndarray::ArrayView2;
use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

/// Which embeddings an index covers: their number and the sum of DuckDB's
/// `hash(cell_id, embedding)` over them. The sum is additive, so an index that lacks only some
/// newly embedded cells is recognised (`current - stored` = the new cells) and extended instead of
/// rebuilt; any other difference (a cell removed, an embedding rewritten) means a rebuild.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct CellsDigest {
    /// Number of embeddings covered.
    pub n_cells: i64,
    /// Sum of the row hashes (a HUGEINT in DuckDB).
    pub hash_sum: i128,
}

impl CellsDigest {
    /// The digest of the cells in `self` that are not in `other`, if `other` is a subset of
    /// `self` by count (the caller confirms by digesting the difference itself).
    pub fn minus(&self, other: &CellsDigest) -> CellsDigest {
        CellsDigest {
            n_cells: self.n_cells - other.n_cells,
            hash_sum: self.hash_sum - other.hash_sum,
        }
    }

    /// The digest with one more row of hash `hash`.
    pub fn plus_row(&self, hash: u64) -> CellsDigest {
        CellsDigest {
            n_cells: self.n_cells + 1,
            hash_sum: self.hash_sum + i128::from(hash),
        }
    }
}

impl fmt::Display for CellsDigest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.n_cells, self.hash_sum)
    }
}

impl FromStr for CellsDigest {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (n, sum) = s
            .split_once(':')
            .ok_or_else(|| format!("digest {s:?} is not 'count:sum'"))?;
        Ok(CellsDigest {
            n_cells: n.parse().map_err(|e| format!("digest count {n:?}: {e}"))?,
            hash_sum: sum
                .parse()
                .map_err(|e| format!("digest sum {sum:?}: {e}"))?,
        })
    }
}

/// The digest of all embeddings of `run` as they are now.
pub fn digest(conn: &Connection, run: i32) -> Result<CellsDigest, AtlasError> {
    let (n_cells, sum): (i64, String) = conn
        .query_row(
            "SELECT count(*), coalesce(sum(hash(cell_id, embedding)::HUGEINT), 0)::VARCHAR \
             FROM cell_embeddings WHERE model_run_id = ?",
            [run],
            |row| Ok((row.get(0)?, row.get(1)?)),
        )
        .context("digesting cell embeddings")?;
    let hash_sum = sum.parse().map_err(|_| {
        AtlasError::db(
            "digesting cell embeddings",
            duckdb::Error::InvalidColumnType(1, sum.clone(), duckdb::types::Type::HugeInt),
        )
    })?;
    Ok(CellsDigest { n_cells, hash_sum })
}

/// The embeddings of one run, row-major, with each row's digest hash.
#[derive(Debug, Clone, Default)]
pub struct Embeddings {
    /// Cell ids, in row order.
    pub cell_ids: Vec<i64>,
    /// DuckDB `hash(cell_id, embedding)` of each row.
    pub hashes: Vec<u64>,
    /// Embedding length.
    pub dim: usize,
    /// `cell_ids.len() × dim` values.
    pub values: Vec<f32>,
}

impl Embeddings {
    /// Row `i`'s vector.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.values[i * self.dim..(i + 1) * self.dim]
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.cell_ids.len()
    }

    /// True when there are no rows.
    pub fn is_empty(&self) -> bool {
        self.cell_ids.is_empty()
    }

    /// True when these are the rows of exactly the cells `cell_ids`, in that order (a matrix
    /// that goes beside a table of those cells).
    pub fn covers(&self, cell_ids: impl ExactSizeIterator<Item = i64>) -> bool {
        cell_ids.len() == self.cell_ids.len() && cell_ids.zip(&self.cell_ids).all(|(a, &b)| a == b)
    }

    /// The digest of these rows.
    pub fn digest(&self) -> CellsDigest {
        self.hashes
            .iter()
            .fold(CellsDigest::default(), |d, &h| d.plus_row(h))
    }
}

/// Which per-cell vector of `cell_embeddings` to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CellVector {
    /// The cell embedding (`embedding`).
    Embedding,
    /// The macrogene expression the embedding was computed from (`macrogene_expression`);
    /// cells without one are skipped.
    MacrogeneExpression,
}

impl CellVector {
    /// Its column in `cell_embeddings`.
    pub fn column(self) -> &'static str {
        match self {
            CellVector::Embedding => "embedding",
            CellVector::MacrogeneExpression => "macrogene_expression",
        }
    }
}

/// Appends the embeddings of `cell_ids` to run `run`: row `i` of `embedding` (cells x latent)
/// and of `macrogene_expression` (cells x macrogenes) belong to `cell_ids[i]`.
pub fn append(
    conn: &Connection,
    run: i32,
    cell_ids: &[i64],
    embedding: ArrayView2<'_, f32>,
    macrogene_expression: ArrayView2<'_, f32>,
) -> Result<(), AtlasError> {
    let rows =
        |m: ArrayView2<'_, f32>| -> Vec<Vec<f32>> { m.outer_iter().map(|r| r.to_vec()).collect() };
    let (z, m) = (rows(embedding), rows(macrogene_expression));
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "model_run_id",
            Arc::new(Int32Array::from(vec![run; cell_ids.len()])),
        ),
        ("cell_id", Arc::new(Int64Array::from(cell_ids.to_vec()))),
        (
            "embedding",
            bulk::list_column::<Float32Type, _>(z.iter().map(Vec::as_slice)),
        ),
        (
            "macrogene_expression",
            bulk::list_column::<Float32Type, _>(m.iter().map(Vec::as_slice)),
        ),
    ];
    bulk::append(conn, "cell_embeddings", columns)
}

/// Copies every embedding of run `from` to run `to` (a run that extends another owns a copy of
/// its embeddings); returns the number copied.
pub fn copy(conn: &Connection, from: i32, to: i32) -> Result<usize, AtlasError> {
    conn.execute(
        "INSERT INTO cell_embeddings
         SELECT ?, cell_id, embedding, macrogene_expression FROM cell_embeddings
         WHERE model_run_id = ?",
        [to, from],
    )
    .context("copying the parent run's cell embeddings")
}

/// The number of cells of dataset `dataset_id` embedded by run `run`.
pub fn count_in_dataset(conn: &Connection, run: i32, dataset_id: i32) -> Result<usize, AtlasError> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM cell_embeddings e JOIN cells c USING (cell_id)
             WHERE e.model_run_id = ? AND c.dataset_id = ?",
            [run, dataset_id],
            |r| r.get(0),
        )
        .context("looking for embeddings of the dataset")?;
    Ok(n as usize)
}

/// Reads the embeddings of `run` (ordered by cell id) whose cell id `keep` accepts, through
/// Arrow; checks that all have one length.
pub fn read(
    conn: &Connection,
    run: i32,
    keep: impl Fn(i64) -> bool,
) -> Result<Embeddings, AtlasError> {
    read_vectors(conn, run, CellVector::Embedding, keep)
}

/// Like [`read`], for either vector of a cell (`hashes` are always those of the embedding).
pub fn read_vectors(
    conn: &Connection,
    run: i32,
    vector: CellVector,
    keep: impl Fn(i64) -> bool,
) -> Result<Embeddings, AtlasError> {
    let context = "reading cell embeddings";
    let column = vector.column();
    let mut stmt = conn
        .prepare(&format!(
            "SELECT cell_id, hash(cell_id, embedding) AS h, {column} FROM cell_embeddings \
             WHERE model_run_id = ? AND {column} IS NOT NULL ORDER BY cell_id"
        ))
        .context(context)?;
    let mut out = Embeddings::default();
    let mut dim = None;
    for batch in stmt.query_arrow([run]).context(context)? {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let hashes = batch
            .column(1)
            .as_primitive::<duckdb::arrow::datatypes::UInt64Type>();
        let lists = batch.column(2).as_list::<i32>();
        for row in 0..batch.num_rows() {
            let cell_id = ids.value(row);
            if !keep(cell_id) {
                continue;
            }
            let values = lists.value(row);
            let values = values.as_primitive::<Float32Type>();
            let expected = *dim.get_or_insert(values.len());
            if values.len() != expected {
                return Err(AtlasError::Inconsistent {
                    what: format!(
                        "cell {cell_id} of run {run} has a {}-value {column}, the others {expected}",
                        values.len()
                    ),
                });
            }
            out.cell_ids.push(cell_id);
            out.hashes.push(hashes.value(row));
            out.values
                .extend(values.iter().map(|v| v.unwrap_or(f32::NAN)));
        }
    }
    out.dim = dim.unwrap_or(0);
    Ok(out)
}
