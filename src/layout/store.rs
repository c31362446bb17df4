//! The writer and reader of `umap_layouts` / `umap_coordinates`, the kNN graph a layout is
//! computed on, and the rule that decides, on every use, whether a stored layout is current
//! (reuse it), only lacks newly embedded cells (place them), or must be recomputed.
//!
//! The two tables came after schema version 1 without a version change: they are created with
//! `CREATE TABLE IF NOT EXISTS` ([`TABLES_SQL`], `sql/layout.sql`) by a fresh atlas and,
//! in an older atlas, at the first layout stored. Readers treat a missing table as "no layout".

use super::umap::{self, FuzzyGraph, KnnGraph, SgdSettings};
use super::{LayoutError, LayoutOrigin, UmapParams, ValidUmapParams, EXACT_KNN_BELOW};
use crate::atlas::{bulk, query_all, query_opt, AtlasError, DbContext};
use crate::index::distance::normalized;
use crate::index::search::restrict;
use crate::index::{exact_knn, Access, Candidates, CellIndex, Hit, IndexParams};
use crate::runs::CellsDigest;
use crate::runs::{self, embeddings, Embeddings, Need};
use crate::Atlas;
use duckdb::arrow::array::{ArrayRef, BooleanArray, Float32Array, Int32Array, Int64Array};
use duckdb::Connection;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;

/// The layout tables' DDL (`sql/layout.sql`, also run by `atlas::schema` for a new atlas).
pub const TABLES_SQL: &str = include_str!("../../sql/layout.sql");

/// What `umap_layouts.params` records.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct StoredParams {
    /// The parameters the layout was computed with.
    #[serde(flatten)]
    pub params: UmapParams,
    /// Epochs actually run.
    pub epochs: usize,
    /// Output kernel `a`.
    pub a: f64,
    /// Output kernel `b`.
    pub b: f64,
}

/// A run's layout: one 2-D point per embedded cell.
#[derive(Debug, Clone, PartialEq)]
pub struct Layout {
    /// The model run.
    pub run: i32,
    /// How it was computed.
    pub params: StoredParams,
    /// The embeddings it covers.
    pub digest: CellsDigest,
    /// Seconds the layout took (kNN graph, fuzzy set, SGD).
    pub seconds: f64,
    /// Cell ids, ascending.
    pub cell_ids: Vec<i64>,
    /// One point per cell.
    pub points: Vec<[f32; 2]>,
    /// Per cell: placed by its neighbours after the layout was computed.
    pub placed: Vec<bool>,
}

/// What `satlas layout` did.
#[derive(Debug, Clone, PartialEq)]
pub struct LayoutReport {
    /// The run.
    pub run: i32,
    /// Cells laid out.
    pub n_cells: usize,
    /// How the layout became current.
    pub origin: LayoutOrigin,
    /// Its parameters.
    pub params: StoredParams,
    /// Seconds for this call.
    pub seconds: f64,
}

impl std::fmt::Display for LayoutReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let p = &self.params;
        writeln!(
            f,
            "UMAP layout of run {}: {} cells ({}), n_neighbors {}, min_dist {}, {} epochs, seed {}, {:.1} s",
            self.run,
            self.n_cells,
            self.origin,
            p.params.n_neighbors,
            p.params.min_dist,
            p.epochs,
            p.params.seed,
            self.seconds
        )
    }
}

/// `satlas layout`: computes the layout of `run` (default: the newest finetune or add-species
/// run) with `params` and stores it, replacing any stored one, in one transaction.
pub fn compute(
    atlas: &mut Atlas,
    run: Option<i32>,
    params: UmapParams,
) -> Result<LayoutReport, LayoutError> {
    let params = params.check()?;
    let start = Instant::now();
    let layout = atlas.write(|tx| -> Result<Layout, LayoutError> {
        let run = runs::select(tx, Need::Embedded, run)?;
        let layout = lay_out(tx, run, &params)?;
        write(tx, &layout)?;
        Ok(layout)
    })?;
    Ok(report(&layout, LayoutOrigin::Computed, start))
}

fn report(layout: &Layout, origin: LayoutOrigin, start: Instant) -> LayoutReport {
    LayoutReport {
        run: layout.run,
        n_cells: layout.cell_ids.len(),
        origin,
        params: layout.params,
        seconds: start.elapsed().as_secs_f64(),
    }
}

/// The layout of `run`, current with its embeddings (the caller runs this inside its
/// transaction):
///
/// - stored and covering exactly the current embeddings → read;
/// - stored, and the embeddings are its cells plus new ones → the new cells placed by their
///   neighbours, stored;
/// - otherwise (missing; cells removed or re-embedded) → computed with the stored parameters
///   (else `params`) and stored.
///
/// With [`Access::ReadOnly`] anything but a current stored layout is refused.
pub fn ensure(
    conn: &Connection,
    run: i32,
    access: Access,
    params: ValidUmapParams,
) -> Result<(Layout, LayoutOrigin), LayoutError> {
    let current = embeddings::digest(conn, run)?;
    let stored = match read_layout(conn, run)? {
        Some(layout) if layout.digest == current => return Ok((layout, LayoutOrigin::Loaded)),
        other => other,
    };
    if access == Access::ReadOnly {
        let state = match &stored {
            None => "missing".to_string(),
            Some(l) => format!(
                "stale ({} cells laid out, {} embedded now)",
                l.digest.n_cells, current.n_cells
            ),
        };
        return Err(LayoutError::StaleReadOnly { run, state });
    }
    if let Some(mut layout) = stored {
        if current.n_cells > layout.digest.n_cells {
            let known: std::collections::HashSet<i64> = layout.cell_ids.iter().copied().collect();
            let new = embeddings::read(conn, run, |id| !known.contains(&id))?;
            if new.digest() == current.minus(&layout.digest) {
                let n_new = new.len();
                place(conn, &mut layout, &new)?;
                write(conn, &layout)?;
                return Ok((layout, LayoutOrigin::Placed(n_new)));
            }
        }
        let params = layout.params.params.check()?;
        let layout = lay_out(conn, run, &params)?;
        write(conn, &layout)?;
        return Ok((layout, LayoutOrigin::Computed));
    }
    let layout = lay_out(conn, run, &params)?;
    write(conn, &layout)?;
    Ok((layout, LayoutOrigin::Computed))
}

/// Computes the layout of `run` (not stored).
fn lay_out(conn: &Connection, run: i32, params: &ValidUmapParams) -> Result<Layout, LayoutError> {
    let start = Instant::now();
    let p = *params.get();
    let emb = embeddings::read(conn, run, |_| true)?;
    let k = p.n_neighbors - 1;
    if emb.len() < p.n_neighbors + 1 {
        return Err(LayoutError::TooFewCells {
            run,
            n: emb.len(),
            needed: p.n_neighbors + 1,
        });
    }
    let knn = knn_graph(conn, run, &emb, k)?;
    let graph: FuzzyGraph = umap::fuzzy_simplicial_set(&knn);
    let (a, b) = umap::find_ab_params(1.0, p.min_dist);
    let epochs = params.epochs_for(emb.len());
    let settings = SgdSettings {
        n_epochs: epochs,
        a,
        b,
        seed: p.seed,
    };
    let init = umap::pca_init(&emb.values, emb.dim, p.seed);
    let points = umap::optimize_layout(&graph, init, &settings);
    Ok(Layout {
        run,
        params: StoredParams {
            params: p,
            epochs,
            a,
            b,
        },
        digest: emb.digest(),
        seconds: start.elapsed().as_secs_f64(),
        placed: vec![false; emb.len()],
        cell_ids: emb.cell_ids,
        points,
    })
}

/// The `k` nearest other cells of every embedded cell by cosine distance: exact up to
/// [`EXACT_KNN_BELOW`] cells, else from the run's HNSW index (loaded, extended or built and
/// stored by `index::open`).
pub fn knn_graph(
    conn: &Connection,
    run: i32,
    emb: &Embeddings,
    k: usize,
) -> Result<KnnGraph, LayoutError> {
    let row_of: HashMap<i64, u32> = emb
        .cell_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as u32))
        .collect();
    let rows: Vec<Vec<(u32, f32)>> = if emb.len() <= EXACT_KNN_BELOW {
        let unit: Vec<Vec<f32>> = (0..emb.len()).map(|i| normalized(emb.row(i))).collect();
        (0..emb.len())
            .into_par_iter()
            .map(|i| {
                let others = (0..emb.len())
                    .filter(|&j| j != i)
                    .map(|j| (emb.cell_ids[j], unit[j].as_slice()));
                exact_knn(others, &unit[i], k)
                    .into_iter()
                    .map(|h| (row_of[&h.cell_id], h.distance))
                    .collect()
            })
            .collect()
    } else {
        let (index, _) = crate::index::open(
            conn,
            run,
            Access::of(conn)?,
            IndexParams::default().check()?,
        )?;
        search_all(&index, emb, k, &row_of)?
    };
    let mut indices = Vec::with_capacity(emb.len() * k);
    let mut distances = Vec::with_capacity(emb.len() * k);
    for row in rows {
        for &(j, d) in &row {
            indices.push(j);
            distances.push(d.max(0.0));
        }
        // A run with duplicates of few points can leave a row short: repeat its last neighbour.
        let last = row.last().copied().unwrap_or((0, 0.0));
        for _ in row.len()..k {
            indices.push(last.0);
            distances.push(last.1.max(0.0));
        }
    }
    Ok(KnnGraph {
        k,
        indices,
        distances,
    })
}

fn search_all(
    index: &CellIndex,
    emb: &Embeddings,
    k: usize,
    row_of: &HashMap<i64, u32>,
) -> Result<Vec<Vec<(u32, f32)>>, LayoutError> {
    (0..emb.len())
        .into_par_iter()
        .map(|i| {
            let hits = index.search(emb.row(i), k, &Candidates::All, Some(emb.cell_ids[i]))?;
            Ok(hits
                .into_iter()
                .filter_map(|h| row_of.get(&h.cell_id).map(|&j| (j, h.distance)))
                .collect())
        })
        .collect()
}

/// Places `new` cells into `layout`: each at the membership-weighted mean of its
/// `n_neighbors - 1` nearest laid-out cells (cosine; exact up to [`EXACT_KNN_BELOW`] laid-out
/// cells, else the run's HNSW index restricted to them).
fn place(conn: &Connection, layout: &mut Layout, new: &Embeddings) -> Result<(), LayoutError> {
    let k = layout.params.params.n_neighbors - 1;
    let neighbours: Vec<Vec<Hit>> = if layout.cell_ids.len() <= EXACT_KNN_BELOW {
        let old = embeddings::read(conn, layout.run, |id| {
            layout.cell_ids.binary_search(&id).is_ok()
        })?;
        let unit_old: Vec<Vec<f32>> = (0..old.len()).map(|i| normalized(old.row(i))).collect();
        (0..new.len())
            .into_par_iter()
            .map(|i| {
                let candidates = (0..old.len()).map(|j| (old.cell_ids[j], unit_old[j].as_slice()));
                exact_knn(candidates, &normalized(new.row(i)), k)
            })
            .collect()
    } else {
        let params = IndexParams::default().check()?;
        let (index, _) = crate::index::open(conn, layout.run, Access::of(conn)?, params)?;
        let laid_out = restrict(&index, layout.cell_ids.iter().copied());
        (0..new.len())
            .into_par_iter()
            .map(|i| index.search(new.row(i), k, &laid_out, None))
            .collect::<Result<_, _>>()?
    };
    let point_of: HashMap<i64, [f32; 2]> = layout
        .cell_ids
        .iter()
        .copied()
        .zip(layout.points.iter().copied())
        .collect();
    let placed: Vec<[f32; 2]> = neighbours
        .iter()
        .map(|hits| {
            if hits.is_empty() {
                return [0.0, 0.0];
            }
            let distances: Vec<f32> = hits.iter().map(|h| h.distance.max(0.0)).collect();
            let (sigma, rho) = umap::smooth_knn_dist(&distances, hits.len(), hits.len() + 1);
            let mut sum = [0f64; 2];
            let mut total = 0f64;
            for (h, d) in hits.iter().zip(&distances) {
                let w = f64::from(umap::membership(*d, sigma[0], rho[0]));
                let p = point_of[&h.cell_id];
                sum[0] += w * f64::from(p[0]);
                sum[1] += w * f64::from(p[1]);
                total += w;
            }
            let total = if total > 0.0 { total } else { 1.0 };
            [(sum[0] / total) as f32, (sum[1] / total) as f32]
        })
        .collect();
    let mut merged: Vec<(i64, [f32; 2], bool)> = layout
        .cell_ids
        .iter()
        .zip(&layout.points)
        .zip(&layout.placed)
        .map(|((&id, &p), &placed)| (id, p, placed))
        .chain(
            new.cell_ids
                .iter()
                .zip(placed)
                .map(|(&id, p)| (id, p, true)),
        )
        .collect();
    merged.sort_by_key(|m| m.0);
    layout.cell_ids = merged.iter().map(|m| m.0).collect();
    layout.points = merged.iter().map(|m| m.1).collect();
    layout.placed = merged.iter().map(|m| m.2).collect();
    layout.digest = new.hashes.iter().fold(layout.digest, |d, &h| d.plus_row(h));
    Ok(())
}

/// Writes `layout`, replacing the run's stored one (creating the tables in an atlas made before
/// they existed).
pub fn write(conn: &Connection, layout: &Layout) -> Result<(), LayoutError> {
    let context = "storing the UMAP layout";
    conn.execute_batch(TABLES_SQL).context(context)?;
    conn.execute(
        "DELETE FROM umap_coordinates WHERE model_run_id = ?",
        [layout.run],
    )
    .context(context)?;
    conn.execute(
        "DELETE FROM umap_layouts WHERE model_run_id = ?",
        [layout.run],
    )
    .context(context)?;
    let params = serde_json::to_string(&layout.params).map_err(|e| LayoutError::Corrupt {
        run: layout.run,
        what: e.to_string(),
    })?;
    let n_placed = layout.placed.iter().filter(|&&p| p).count() as i64;
    conn.execute(
        "INSERT INTO umap_layouts (model_run_id, params, n_cells, n_placed, cells_digest, seconds) \
         VALUES (?, ?, ?, ?, ?, ?)",
        duckdb::params![
            layout.run,
            params,
            layout.cell_ids.len() as i64,
            n_placed,
            layout.digest.to_string(),
            layout.seconds
        ],
    )
    .context(context)?;
    let n = layout.cell_ids.len();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "model_run_id",
            Arc::new(Int32Array::from(vec![layout.run; n])),
        ),
        (
            "cell_id",
            Arc::new(Int64Array::from(layout.cell_ids.clone())),
        ),
        (
            "x",
            Arc::new(Float32Array::from_iter_values(
                layout.points.iter().map(|p| p[0]),
            )),
        ),
        (
            "y",
            Arc::new(Float32Array::from_iter_values(
                layout.points.iter().map(|p| p[1]),
            )),
        ),
        (
            "placed",
            Arc::new(BooleanArray::from(layout.placed.clone())),
        ),
    ];
    bulk::append(conn, "umap_coordinates", columns)?;
    Ok(())
}

/// True when the layout tables exist (an atlas made before them has none until a layout is
/// stored).
fn tables_exist(conn: &Connection) -> Result<bool, AtlasError> {
    let n: i64 = conn
        .query_row(
            "SELECT count(*) FROM information_schema.tables \
             WHERE table_schema = 'main' AND table_name = 'umap_layouts'",
            [],
            |r| r.get(0),
        )
        .context("looking for the layout tables")?;
    Ok(n > 0)
}

/// The stored layout of `run`, if any (current or not).
pub fn read_layout(conn: &Connection, run: i32) -> Result<Option<Layout>, LayoutError> {
    if !tables_exist(conn)? {
        return Ok(None);
    }
    let context = "reading the UMAP layout";
    let header = query_opt(
        conn,
        "SELECT params, cells_digest, seconds FROM umap_layouts WHERE model_run_id = ?",
        [run],
        context,
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, f64>(2)?,
            ))
        },
    )?;
    let Some((params, digest, seconds)) = header else {
        return Ok(None);
    };
    let corrupt = |what: String| LayoutError::Corrupt { run, what };
    let params: StoredParams =
        serde_json::from_str(&params).map_err(|e| corrupt(format!("params: {e}")))?;
    let digest: CellsDigest = digest.parse().map_err(corrupt)?;
    let rows = query_all(
        conn,
        "SELECT cell_id, x, y, placed FROM umap_coordinates WHERE model_run_id = ? ORDER BY cell_id",
        [run],
        context,
        |r| {
            Ok((
                r.get::<_, i64>(0)?,
                [r.get::<_, f32>(1)?, r.get::<_, f32>(2)?],
                r.get::<_, bool>(3)?,
            ))
        },
    )?;
    if rows.len() as i64 != digest.n_cells {
        return Err(corrupt(format!(
            "{} coordinates for {} cells",
            rows.len(),
            digest.n_cells
        )));
    }
    Ok(Some(Layout {
        run,
        params,
        digest,
        seconds,
        cell_ids: rows.iter().map(|r| r.0).collect(),
        points: rows.iter().map(|r| r.1).collect(),
        placed: rows.iter().map(|r| r.2).collect(),
    }))
}

/// [`ensure`] for a user action on `atlas`: one transaction when the atlas is writable (a
/// missing or stale layout is stored), a read otherwise.
pub fn current(atlas: &mut Atlas, run: Option<i32>) -> Result<(Layout, LayoutOrigin), LayoutError> {
    let params = UmapParams::default().check()?;
    match Access::of(atlas.connection())? {
        Access::ReadOnly => {
            let conn = atlas.connection();
            let run = runs::select(conn, Need::Embedded, run)?;
            ensure(conn, run, Access::ReadOnly, params)
        }
        Access::ReadWrite => atlas.write(|tx| {
            let run = runs::select(tx, Need::Embedded, run)?;
            ensure(tx, run, Access::ReadWrite, params)
        }),
    }
}
