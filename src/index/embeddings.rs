//! The reader of `cell_embeddings` for the index: which run to use, the vectors (Arrow bulk
//! path), and the digest that says which embeddings an index covers.

use super::IndexError;
use crate::atlas::{query_all, query_opt, AtlasError, DbContext};
use duckdb::arrow::array::AsArray;
use duckdb::arrow::datatypes::{Float32Type, Int64Type};
use duckdb::Connection;
use std::fmt;
use std::str::FromStr;

/// The run to index or search: `run` if given (it must have embeddings), else the newest
/// finished finetune or add-species run with embeddings.
pub fn resolve_run(conn: &Connection, run: Option<i32>) -> Result<i32, IndexError> {
    let with_embeddings = query_all(
        conn,
        "SELECT r.model_run_id FROM model_runs r \
         WHERE EXISTS (SELECT 1 FROM cell_embeddings e WHERE e.model_run_id = r.model_run_id) \
         ORDER BY r.model_run_id",
        [],
        "listing model runs with embeddings",
        |row| row.get::<_, i32>(0),
    )?;
    match run {
        Some(run) if with_embeddings.contains(&run) => Ok(run),
        Some(run) => Err(IndexError::RunWithoutEmbeddings {
            run,
            known: join(&with_embeddings),
        }),
        None => query_opt(
            conn,
            "SELECT r.model_run_id FROM model_runs r \
                 WHERE r.kind IN ('finetune', 'add_species') AND r.status = 'done' AND EXISTS \
                   (SELECT 1 FROM cell_embeddings e WHERE e.model_run_id = r.model_run_id) \
                 ORDER BY r.created_at DESC, r.model_run_id DESC LIMIT 1",
            [],
            "finding the newest finetune run",
            |row| row.get(0),
        )?
        .ok_or(IndexError::NoEmbeddedRun),
    }
}

fn join(runs: &[i32]) -> String {
    if runs.is_empty() {
        return "none".into();
    }
    runs.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

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
    fn column(self) -> &'static str {
        match self {
            CellVector::Embedding => "embedding",
            CellVector::MacrogeneExpression => "macrogene_expression",
        }
    }
}

/// Reads the embeddings of `run` (ordered by cell id) whose cell id `keep` accepts, through
/// Arrow; checks that all have one length.
pub fn read(
    conn: &Connection,
    run: i32,
    keep: impl Fn(i64) -> bool,
) -> Result<Embeddings, IndexError> {
    read_vectors(conn, run, CellVector::Embedding, keep)
}

/// Like [`read`], for either vector of a cell (`hashes` are always those of the embedding).
pub fn read_vectors(
    conn: &Connection,
    run: i32,
    vector: CellVector,
    keep: impl Fn(i64) -> bool,
) -> Result<Embeddings, IndexError> {
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
                return Err(IndexError::DimensionMismatch {
                    run,
                    cell_id,
                    expected,
                    found: values.len(),
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
