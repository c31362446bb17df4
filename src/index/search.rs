//! kNN queries over the atlas: a cell or a vector, the whole atlas or one species or dataset,
//! results with the neighbours' species, dataset and cell type (`satlas knn`, `knn_cells`,
//! `knn_vector`).

use super::cache;
use super::hnsw::Candidates;
use super::store::Access;
use super::{CellIndex, IndexError};
use crate::atlas::query_all;
use crate::runs::{self, Need, Scope};
use crate::Atlas;
use duckdb::Connection;
use std::collections::HashMap;

/// Largest k a query may ask for.
pub const MAX_K: usize = 10_000;

/// What to search for.
#[derive(Debug, Clone, PartialEq)]
pub enum QueryPoint {
    /// The neighbours of a cell (the cell itself is never returned).
    Cell(i64),
    /// The neighbours of a vector in the run's embedding space.
    Vector(Vec<f32>),
}

/// A kNN query.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnQuery {
    /// The model run (default: the newest finetune or add-species run with embeddings).
    pub run: Option<i32>,
    /// Neighbours wanted (1 ..= [`MAX_K`]).
    pub k: usize,
    /// Where neighbours may come from.
    pub scope: Scope,
}

/// One neighbour, with what the atlas knows about its cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Neighbour {
    /// 1 for the nearest.
    pub rank: u32,
    /// The neighbour cell.
    pub cell_id: i64,
    /// Cosine distance to the query.
    pub distance: f32,
    /// Its species.
    pub species: String,
    /// Its dataset.
    pub dataset: String,
    /// Its cell-type label, if any.
    pub cell_type: Option<String>,
}

/// Checks k before any work.
pub fn check_k(k: usize) -> Result<usize, IndexError> {
    if (1..=MAX_K).contains(&k) {
        Ok(k)
    } else {
        Err(IndexError::InvalidParam {
            name: "k",
            value: k.to_string(),
            rule: "between 1 and 10000",
        })
    }
}

/// The `k` nearest neighbours of `point` within `query.scope`: exactly `min(k, cells in scope)`,
/// nearest first. The index comes from the [`cache`] (rebuilt if stale unless the atlas is read-only).
pub fn knn(
    atlas: &Atlas,
    point: &QueryPoint,
    query: &KnnQuery,
) -> Result<(i32, Vec<Neighbour>), IndexError> {
    let conn = atlas.connection();
    let access = Access::of(conn)?;
    let k = check_k(query.k)?;
    let run = runs::select(conn, Need::Embedded, query.run)?;
    let candidates = query.scope.cells(conn)?;
    let (index, _) = cache::get(conn, run, access)?;
    let candidates = candidates.map_or(Candidates::All, |ids| restrict(&index, ids));
    let (vector, exclude) = match point {
        QueryPoint::Cell(id) => (index.embedding(*id)?, Some(*id)),
        QueryPoint::Vector(v) => (v.as_slice(), None),
    };
    let hits = index.search(vector, k, &candidates, exclude)?;
    let info = cell_info(conn, hits.iter().map(|h| h.cell_id))?;
    let neighbours = hits
        .iter()
        .zip(1..)
        .map(|(hit, rank)| {
            let (species, dataset, cell_type) = info.get(&hit.cell_id).cloned().unwrap_or_default();
            Neighbour {
                rank,
                cell_id: hit.cell_id,
                distance: hit.distance,
                species,
                dataset,
                cell_type,
            }
        })
        .collect();
    Ok((run, neighbours))
}

/// The ids among `ids` that the index holds, as a search filter.
pub(crate) fn restrict(index: &CellIndex, ids: impl IntoIterator<Item = i64>) -> Candidates {
    let mut kept: Vec<usize> = ids
        .into_iter()
        .filter(|&id| index.contains(id))
        .map(|id| id as usize)
        .collect();
    kept.sort_unstable();
    kept.dedup();
    Candidates::Only(kept)
}

type CellMeta = (String, String, Option<String>);

/// Species, dataset and cell type of the given cells.
fn cell_info(
    conn: &Connection,
    ids: impl Iterator<Item = i64>,
) -> Result<HashMap<i64, CellMeta>, IndexError> {
    let list: Vec<String> = ids.map(|id| id.to_string()).collect();
    if list.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = query_all(
        conn,
        &format!(
            "SELECT cell_id, species, dataset, cell_type FROM cell_info WHERE cell_id IN ({})",
            list.join(",")
        ),
        [],
        "reading the neighbours' cell info",
        |r| Ok((r.get::<_, i64>(0)?, (r.get(1)?, r.get(2)?, r.get(3)?))),
    )?;
    Ok(rows.into_iter().collect())
}
