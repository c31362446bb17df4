//! The writer and reader of `hnsw_indexes`, and the rule that decides, on every load, whether
//! the stored index still matches `cell_embeddings`: load it, extend it with newly embedded
//! cells, rebuild it, or (read-only atlas) refuse.

use super::{CellIndex, IndexError, IndexParams, ValidIndexParams};
use crate::atlas::{query_opt, AtlasError, DbContext};
use crate::runs::{self, embeddings, CellsDigest, Need};
use crate::Atlas;
use duckdb::Connection;
use serde::{Deserialize, Serialize};
use std::fmt;
use std::time::Instant;

/// Whether an index that does not match the embeddings may be rebuilt and stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Stale or missing indexes are rebuilt (or extended) and written back.
    ReadWrite,
    /// Stale or missing indexes are refused with [`IndexError::StaleReadOnly`].
    ReadOnly,
}

impl Access {
    /// The access mode of the database behind `conn` (DuckDB's `access_mode` setting).
    pub fn of(conn: &Connection) -> Result<Access, AtlasError> {
        let mode: String = conn
            .query_row("SELECT current_setting('access_mode')", [], |r| r.get(0))
            .context("reading the access mode")?;
        Ok(if mode.eq_ignore_ascii_case("read_only") {
            Access::ReadOnly
        } else {
            Access::ReadWrite
        })
    }
}

/// How an index came to be in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// Found in the process cache (no read at all).
    Cached,
    /// Reloaded from `hnsw_indexes`: it matched the embeddings.
    Loaded,
    /// Reloaded and extended with this many newly embedded cells, then stored again.
    Extended(usize),
    /// Built from the embeddings and stored.
    Built,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Cached => write!(f, "cached"),
            Origin::Loaded => write!(f, "loaded"),
            Origin::Extended(n) => write!(f, "extended with {n} new cells"),
            Origin::Built => write!(f, "built"),
        }
    }
}

/// What `satlas index build` / `update` did.
#[derive(Debug, Clone)]
pub struct IndexReport {
    /// The model run.
    pub run: i32,
    /// Cells in the index.
    pub n_cells: usize,
    /// Embedding dimension.
    pub dim: usize,
    /// Its parameters.
    pub params: IndexParams,
    /// Built, loaded or extended.
    pub origin: Origin,
    /// Wall time.
    pub seconds: f64,
}

impl fmt::Display for IndexReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "HNSW index of run {}: {} cells, {}-d, cosine, M={} ef_construction={} ef_search={}; {} in {:.1}s",
            self.run, self.n_cells, self.dim, p.m, p.ef_construction, p.ef_search, self.origin, self.seconds
        )
    }
}

/// The `params` JSON of a stored index.
#[derive(Debug, Serialize, Deserialize)]
struct StoredParams {
    #[serde(flatten)]
    params: IndexParams,
    distance: String,
    dim: usize,
}

const DISTANCE: &str = "cosine";

/// A row of `hnsw_indexes`.
struct StoredIndex {
    params: ValidIndexParams,
    dim: usize,
    digest: CellsDigest,
    graph: Vec<u8>,
    data: Vec<u8>,
}

/// Reads the stored index of `run`, if any.
fn read(conn: &Connection, run: i32) -> Result<Option<StoredIndex>, IndexError> {
    let row: Option<(String, String, Vec<u8>, Vec<u8>)> = query_opt(
        conn,
        "SELECT params, cells_digest, graph, data FROM hnsw_indexes WHERE model_run_id = ?",
        [run],
        "reading the stored HNSW index",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
    )?;
    let Some((params, digest, graph, data)) = row else {
        return Ok(None);
    };
    let corrupt = |detail: String| IndexError::Corrupt { run, detail };
    let stored: StoredParams =
        serde_json::from_str(&params).map_err(|e| corrupt(format!("params {params:?}: {e}")))?;
    if stored.distance != DISTANCE {
        return Err(corrupt(format!("distance {:?}", stored.distance)));
    }
    Ok(Some(StoredIndex {
        params: stored.params.check()?,
        dim: stored.dim,
        digest: digest.parse().map_err(corrupt)?,
        graph,
        data,
    }))
}

/// Stores `index` as the index of its run (replacing an older one), in one statement.
fn write(conn: &Connection, index: &CellIndex) -> Result<(), IndexError> {
    let (graph, data) = index.to_blobs()?;
    let params = serde_json::to_string(&StoredParams {
        params: *index.params().get(),
        distance: DISTANCE.into(),
        dim: index.dim(),
    })
    .expect("index parameters serialise to JSON");
    conn.execute(
        "INSERT OR REPLACE INTO hnsw_indexes \
         (model_run_id, params, n_cells, cells_digest, graph, data, built_at) \
         VALUES (?, ?, ?, ?, ?, ?, current_timestamp)",
        duckdb::params![
            index.run(),
            params,
            index.len() as i64,
            index.digest().to_string(),
            graph,
            data
        ],
    )
    .context("storing the HNSW index")?;
    Ok(())
}

/// The index of `run`, current with `cell_embeddings`:
///
/// - stored and its digest equals the embeddings' → reloaded ([`Origin::Loaded`]);
/// - stored, and the embeddings are exactly its cells plus new ones (the digest difference equals
///   the new cells' digest) → reloaded, extended and stored again ([`Origin::Extended`]);
/// - otherwise (missing, or cells removed or changed) → built with the stored parameters (else
///   `params`) and stored ([`Origin::Built`]).
///
/// With [`Access::ReadOnly`] anything but a current stored index is refused.
pub fn open(
    conn: &Connection,
    run: i32,
    access: Access,
    params: ValidIndexParams,
) -> Result<(CellIndex, Origin), IndexError> {
    let current = embeddings::digest(conn, run)?;
    open_at(conn, run, access, params, current)
}

/// [`open`], given the embeddings' current digest.
pub(crate) fn open_at(
    conn: &Connection,
    run: i32,
    access: Access,
    params: ValidIndexParams,
    current: CellsDigest,
) -> Result<(CellIndex, Origin), IndexError> {
    let stored = read(conn, run)?;
    if let Some(s) = &stored {
        if s.digest == current {
            let index = CellIndex::from_blobs(run, s.params, s.dim, s.digest, &s.graph, &s.data)?;
            return Ok((index, Origin::Loaded));
        }
    }
    if access == Access::ReadOnly {
        let state = match &stored {
            None => "missing".into(),
            Some(s) => format!(
                "stale ({} cells indexed, {} embedded now)",
                s.digest.n_cells, current.n_cells
            ),
        };
        return Err(IndexError::StaleReadOnly { run, state });
    }
    if let Some(s) = &stored {
        if current.n_cells > s.digest.n_cells {
            let mut index =
                CellIndex::from_blobs(run, s.params, s.dim, s.digest, &s.graph, &s.data)?;
            let new = embeddings::read(conn, run, |id| !index.contains(id))?;
            if new.digest() == current.minus(&s.digest) {
                index.insert(&new)?;
                write(conn, &index)?;
                return Ok((index, Origin::Extended(new.len())));
            }
        }
    }
    let params = stored.map_or(params, |s| s.params);
    let index = CellIndex::build(run, &embeddings::read(conn, run, |_| true)?, params)?;
    write(conn, &index)?;
    Ok((index, Origin::Built))
}

/// `satlas index build`: (re)builds the index of `run` (default: the newest finetune or
/// add-species run) with `params` and stores it, in one transaction.
pub fn build(
    atlas: &mut Atlas,
    run: Option<i32>,
    params: IndexParams,
) -> crate::Result<IndexReport> {
    let params = params.check()?;
    let start = Instant::now();
    let index = atlas.write(|tx| -> Result<CellIndex, IndexError> {
        let run = runs::select(tx, Need::Embedded, run)?;
        let index = CellIndex::build(run, &embeddings::read(tx, run, |_| true)?, params)?;
        write(tx, &index)?;
        Ok(index)
    })?;
    Ok(report(&index, Origin::Built, start))
}

/// `satlas index update`: brings the stored index of `run` up to date with its embeddings,
/// inserting newly embedded cells without rebuilding when only cells were added; in one
/// transaction.
pub fn insert_new_cells(atlas: &mut Atlas, run: Option<i32>) -> crate::Result<IndexReport> {
    let start = Instant::now();
    let (index, origin) = atlas.write(|tx| {
        let run = runs::select(tx, Need::Embedded, run)?;
        open(tx, run, Access::ReadWrite, IndexParams::default().check()?)
    })?;
    Ok(report(&index, origin, start))
}

fn report(index: &CellIndex, origin: Origin, start: Instant) -> IndexReport {
    IndexReport {
        run: index.run(),
        n_cells: index.len(),
        dim: index.dim(),
        params: *index.params().get(),
        origin,
        seconds: start.elapsed().as_secs_f64(),
    }
}
