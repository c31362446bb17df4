//! [`CellIndex`]: the vendored hnsw_rs' [`PackedHnsw`] over one run's cell embeddings (cosine
//! distance `1 - a.b` over L2-normalised copies of the embeddings, one contiguous array), with
//! parallel build, incremental insert, exact-k filtered search, and dump/reload as two
//! blobs: the graph dump zstd-compressed, the data dump (ids and vectors) as is, since floats
//! barely compress (8% at level 3) and a 1M-cell index would spend seconds decompressing them.
//!
//! The index uses the cell id as the point's id, so search results are cell ids directly.

use super::distance::normalized;
use super::exact::{exact_knn, Hit};
use super::{IndexError, IndexParams, ValidIndexParams};
use crate::runs::{CellsDigest, Embeddings};
use hnsw_rs::packed::{Found, LoadError, PackedHnsw};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::SeedableRng;
use std::collections::HashMap;

/// Filtered subsets smaller than this many cells are searched exactly.
pub const EXACT_BELOW_CELLS: usize = 2000;
/// Filtered subsets smaller than this share of the index are searched exactly.
pub const EXACT_BELOW_SHARE: f64 = 0.05;
/// Rows inserted per parallel batch (and per progress-bar step).
const INSERT_BATCH: usize = 10_000;
/// zstd level of the stored graph blob.
const ZSTD_LEVEL: i32 = 3;

/// Which cells a search may return.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Candidates {
    /// Every indexed cell.
    All,
    /// Only these cell ids (sorted, deduplicated, all indexed): hnsw_rs' `FilterT` for `Vec`.
    Only(Vec<usize>),
}

/// Cell id to node number in the index.
type Points = HashMap<i64, usize>;

/// An HNSW index over the cell embeddings of one model run, in memory.
pub struct CellIndex {
    run: i32,
    params: ValidIndexParams,
    dim: usize,
    digest: CellsDigest,
    hnsw: PackedHnsw,
    points: Points,
}

impl CellIndex {
    /// Builds the index over `embeddings` with hnsw_rs' parallel insert (rayon, all cores).
    pub fn build(
        run: i32,
        embeddings: &Embeddings,
        params: ValidIndexParams,
    ) -> Result<CellIndex, IndexError> {
        let p = params.get();
        let hnsw = PackedHnsw::new(embeddings.dim.max(1), p.m, p.ef_construction);
        let mut index = CellIndex {
            run,
            params,
            dim: embeddings.dim,
            digest: CellsDigest::default(),
            hnsw,
            points: HashMap::new(),
        };
        index.insert(embeddings)?;
        Ok(index)
    }

    /// Inserts embeddings of cells not yet indexed (new datasets embedded with the same run);
    /// the digest grows by theirs.
    pub fn insert(&mut self, embeddings: &Embeddings) -> Result<(), IndexError> {
        if embeddings.is_empty() {
            return Ok(());
        }
        if self.points.is_empty() && self.dim != embeddings.dim {
            let p = self.params.get();
            self.dim = embeddings.dim;
            self.hnsw = PackedHnsw::new(self.dim, p.m, p.ef_construction);
        }
        let mut rows = Vec::with_capacity(embeddings.len());
        for (i, &cell_id) in embeddings.cell_ids.iter().enumerate() {
            let v = embeddings.row(i);
            if v.len() != self.dim {
                return Err(IndexError::DimensionMismatch {
                    run: self.run,
                    cell_id,
                    expected: self.dim,
                    found: v.len(),
                });
            }
            check_vector(v, || {
                format!("embedding of cell {cell_id} (run {})", self.run)
            })?;
            rows.push((i, data_id(cell_id, self.run)?));
        }
        // Cells are stored by dataset and cell type: batches of a seeded permutation each cover
        // the whole atlas, so the graph does not grow one region at a time.
        let seed = (rows.len() as u64) << 32 | self.points.len() as u64;
        rows.shuffle(&mut StdRng::seed_from_u64(seed));
        let bar = if rows.len() > INSERT_BATCH {
            crate::progress::bar(rows.len() as u64, "HNSW insert")
        } else {
            indicatif::ProgressBar::hidden()
        };
        for batch in rows.chunks(INSERT_BATCH) {
            let vectors: Vec<f32> = batch
                .iter()
                .flat_map(|&(i, _)| embeddings.row(i))
                .copied()
                .collect();
            let ids: Vec<usize> = batch.iter().map(|&(_, id)| id).collect();
            self.hnsw.insert(&vectors, &ids);
            bar.inc(batch.len() as u64);
        }
        bar.finish_and_clear();
        self.digest = embeddings
            .hashes
            .iter()
            .fold(self.digest, |d, &h| d.plus_row(h));
        self.points = collect_points(&self.hnsw);
        Ok(())
    }

    /// The model run whose embeddings this indexes.
    pub fn run(&self) -> i32 {
        self.run
    }

    /// The parameters it was built with.
    pub fn params(&self) -> ValidIndexParams {
        self.params
    }

    /// Sets the search-time candidate list size (checked as [`IndexParams::check`] does); the
    /// graph is unchanged. Trades query speed for recall (`benches/index.rs` sweeps it).
    pub fn set_ef_search(&mut self, ef_search: usize) -> Result<(), IndexError> {
        self.params = IndexParams {
            ef_search,
            ..*self.params.get()
        }
        .check()?;
        Ok(())
    }

    /// Embedding dimension.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Which embeddings it covers.
    pub fn digest(&self) -> CellsDigest {
        self.digest
    }

    /// Number of indexed cells.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// True when no cell is indexed.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// Whether `cell_id` is indexed.
    pub fn contains(&self, cell_id: i64) -> bool {
        self.points.contains_key(&cell_id)
    }

    /// The embedding of an indexed cell, L2-normalised.
    pub fn embedding(&self, cell_id: i64) -> Result<&[f32], IndexError> {
        self.points
            .get(&cell_id)
            .map(|&node| self.hnsw.vector(node))
            .ok_or(IndexError::CellNotIndexed {
                cell_id,
                run: self.run,
            })
    }

    /// The `k` candidates nearest to `query`, nearest first, never `exclude` (the query cell
    /// itself). Returns exactly `min(k, number of candidates)` hits:
    ///
    /// - all cells: HNSW search with `ef = max(ef_search, k + 1)`;
    /// - a filtered subset smaller than [`EXACT_BELOW_CELLS`] cells or [`EXACT_BELOW_SHARE`] of
    ///   the index: exact search over the subset;
    /// - a larger subset: HNSW search with the subset as filter (applied while walking the
    ///   graph, not afterwards) and ef scaled by `index size / subset size`.
    ///
    /// If HNSW returns fewer hits than exist (it can, on a sparse filter), the search is
    /// repeated exactly: results are never silently short.
    pub fn search(
        &self,
        query: &[f32],
        k: usize,
        candidates: &Candidates,
        exclude: Option<i64>,
    ) -> Result<Vec<Hit>, IndexError> {
        self.check_query(query)?;
        let query = &normalized(query)[..];
        let excluded = exclude.filter(|id| self.points.contains_key(id));
        let ef_search = self.params.get().ef_search;
        let hits = match candidates {
            Candidates::All => {
                let want = k.min(self.len() - usize::from(excluded.is_some()));
                let ask = want + usize::from(excluded.is_some());
                let mut hits = to_hits(self.hnsw.search(query, ask, ef_search.max(ask), None));
                hits.retain(|h| Some(h.cell_id) != excluded);
                hits.truncate(want);
                if hits.len() < want {
                    hits = self.exact(query, want, self.points.keys().copied(), excluded);
                }
                hits
            }
            Candidates::Only(ids) => {
                let mut ids = std::borrow::Cow::Borrowed(ids);
                if let Some(id) = excluded.and_then(|id| usize::try_from(id).ok()) {
                    if let Ok(pos) = ids.binary_search(&id) {
                        ids.to_mut().remove(pos);
                    }
                }
                let want = k.min(ids.len());
                let small = ids.len() < EXACT_BELOW_CELLS
                    || (ids.len() as f64) < EXACT_BELOW_SHARE * self.len() as f64;
                let cells = ids.iter().map(|&id| id as i64);
                if small {
                    self.exact(query, want, cells, None)
                } else {
                    let scale = self.len().div_ceil(ids.len().max(1));
                    let ef = (ef_search.max(want) * scale).min(self.len());
                    let filter: &Vec<usize> = &ids;
                    let hits = to_hits(self.hnsw.search(query, want, ef, Some(filter)));
                    if hits.len() < want {
                        self.exact(query, want, cells, None)
                    } else {
                        hits
                    }
                }
            }
        };
        Ok(hits)
    }

    /// Exact search over `cells` (all indexed), without `exclude`.
    fn exact(
        &self,
        query: &[f32],
        k: usize,
        cells: impl Iterator<Item = i64>,
        exclude: Option<i64>,
    ) -> Vec<Hit> {
        let candidates = cells
            .filter(|&id| Some(id) != exclude)
            .filter_map(|id| self.points.get(&id).map(|&n| (id, self.hnsw.vector(n))));
        exact_knn(candidates, query, k)
    }

    fn check_query(&self, query: &[f32]) -> Result<(), IndexError> {
        if query.len() != self.dim {
            return Err(IndexError::QueryDimension {
                run: self.run,
                expected: self.dim,
                found: query.len(),
            });
        }
        check_vector(query, || "the query vector".into())
    }

    /// The index as its two dumps (hnsw_rs' `PackedHnsw::dump`): `(graph zstd-compressed, data)`.
    pub fn to_blobs(&self) -> Result<(Vec<u8>, Vec<u8>), IndexError> {
        let (mut graph, mut data) = (Vec::new(), Vec::new());
        self.hnsw
            .dump(&mut graph, &mut data)
            .expect("writing into memory cannot fail");
        let graph = zstd::stream::encode_all(&graph[..], ZSTD_LEVEL)
            .map_err(|source| IndexError::Compress { source })?;
        Ok((graph, data))
    }

    /// Reloads an index from [`to_blobs`](Self::to_blobs) output, without rebuilding it. Blobs
    /// of another format (an index stored by an older satlas) are refused with
    /// [`IndexError::OldFormat`], damaged ones with [`IndexError::Corrupt`].
    pub fn from_blobs(
        run: i32,
        params: ValidIndexParams,
        dim: usize,
        digest: CellsDigest,
        graph: &[u8],
        data: &[u8],
    ) -> Result<CellIndex, IndexError> {
        let corrupt = |detail: String| IndexError::Corrupt { run, detail };
        let graph = zstd::stream::decode_all(graph)
            .map_err(|e| corrupt(format!("graph blob does not decompress: {e}")))?;
        let hnsw = PackedHnsw::load(&graph, data).map_err(|e| match e {
            LoadError::Corrupt(detail) => corrupt(detail),
            other => IndexError::OldFormat {
                run,
                detail: other.to_string(),
            },
        })?;
        if hnsw.dim() != dim && !hnsw.is_empty() {
            return Err(corrupt(format!(
                "dump holds {}-d vectors, its parameters say {dim}",
                hnsw.dim()
            )));
        }
        let points = collect_points(&hnsw);
        if points.len() as i64 != digest.n_cells {
            return Err(corrupt(format!(
                "dump holds {} cells, its digest says {}",
                points.len(),
                digest.n_cells
            )));
        }
        Ok(CellIndex {
            run,
            params,
            dim,
            digest,
            hnsw,
            points,
        })
    }
}

fn collect_points(hnsw: &PackedHnsw) -> Points {
    hnsw.ids()
        .iter()
        .enumerate()
        .map(|(node, &id)| (id as i64, node))
        .collect()
}

fn to_hits(found: Vec<Found>) -> Vec<Hit> {
    found
        .into_iter()
        .map(|f| Hit {
            cell_id: f.id as i64,
            distance: f.distance,
        })
        .collect()
}

fn data_id(cell_id: i64, run: i32) -> Result<usize, IndexError> {
    usize::try_from(cell_id).map_err(|_| IndexError::Corrupt {
        run,
        detail: format!("cell id {cell_id} is negative; cell ids are assigned from 1"),
    })
}

/// Cosine distance needs a finite, non-zero vector (a zero vector cannot be normalised).
fn check_vector(v: &[f32], what: impl FnOnce() -> String) -> Result<(), IndexError> {
    if v.iter().all(|x| x.is_finite()) && v.iter().any(|&x| x != 0.0) {
        Ok(())
    } else {
        Err(IndexError::DegenerateVector { what: what() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::IndexParams;
    use rand::{Rng, SeedableRng};

    fn random(n: usize, dim: usize, seed: u64) -> Embeddings {
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        Embeddings {
            cell_ids: (1..=n as i64).collect(),
            hashes: (0..n as u64).collect(),
            dim,
            values: (0..n * dim).map(|_| rng.random_range(-1.0..1.0)).collect(),
        }
    }

    /// `n` random `dim`-d cells indexed as run 7 with the default parameters.
    fn built(n: usize, dim: usize, seed: u64) -> (Embeddings, ValidIndexParams, CellIndex) {
        let e = random(n, dim, seed);
        let params = IndexParams::default().check().unwrap();
        let index = CellIndex::build(7, &e, params).unwrap();
        (e, params, index)
    }

    #[test]
    fn dump_and_reload_give_the_same_answers() {
        let (e, params, index) = built(500, 16, 1);
        let (graph, data) = index.to_blobs().unwrap();
        let back = CellIndex::from_blobs(7, params, 16, index.digest(), &graph, &data).unwrap();
        assert_eq!(back.len(), 500);
        for q in 0..20 {
            let a = index.search(e.row(q), 10, &Candidates::All, None).unwrap();
            let b = back.search(e.row(q), 10, &Candidates::All, None).unwrap();
            assert_eq!(a, b);
        }
    }

    fn recompress(blob: &[u8], edit: impl FnOnce(&mut Vec<u8>)) -> Vec<u8> {
        let mut bytes = zstd::stream::decode_all(blob).unwrap();
        edit(&mut bytes);
        zstd::stream::encode_all(&bytes[..], ZSTD_LEVEL).unwrap()
    }

    #[test]
    fn damaged_blobs_are_refused_as_corrupt() {
        let (_, params, index) = built(300, 8, 3);
        let (graph, data) = index.to_blobs().unwrap();
        let load = |g: &[u8], d: &[u8]| CellIndex::from_blobs(7, params, 8, index.digest(), g, d);
        let short = recompress(&graph, |b| b.truncate(b.len() - 4));
        let long = [&data[..], &[0]].concat();
        let bad_link = recompress(&graph, |b| {
            // The first link of the first node (header: magic, six u32, two u64; one level byte
            // per node; then the node's count).
            let at = 8 + 6 * 4 + 2 * 8 + 300 + 4;
            b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        });
        for (g, d) in [(&short, &data), (&graph, &long), (&bad_link, &data)] {
            let err = load(g, d).err().expect("a damaged blob is refused");
            assert!(matches!(err, IndexError::Corrupt { run: 7, .. }), "{err}");
            assert!(
                err.to_string().contains("satlas index build --run 7"),
                "{err}"
            );
        }
        assert!(matches!(
            load(&graph[..graph.len() / 2], &data),
            Err(IndexError::Corrupt { .. })
        ));
        let fewer = CellsDigest::default();
        assert!(matches!(
            CellIndex::from_blobs(7, params, 8, fewer, &graph, &data),
            Err(IndexError::Corrupt { .. })
        ));
    }

    #[test]
    fn an_index_stored_by_an_older_satlas_is_refused_with_the_rebuild_command() {
        use hnsw_rs::prelude::{AnnT, DistCosine, Hnsw};
        let (e, params, index) = built(50, 4, 4);
        let old = Hnsw::<f32, DistCosine>::new(16, 50, 16, 100, DistCosine);
        for i in 0..e.len() {
            old.insert_slice((e.row(i), i + 1));
        }
        let dir = tempfile::tempdir().unwrap();
        let name = old.file_dump(dir.path(), "cells").unwrap();
        // An older satlas stored both files zstd-compressed.
        let blob = |suffix: &str| {
            let bytes = std::fs::read(dir.path().join(format!("{name}.hnsw.{suffix}"))).unwrap();
            zstd::stream::encode_all(&bytes[..], ZSTD_LEVEL).unwrap()
        };
        let (graph, data) = (blob("graph"), blob("data"));
        let err = CellIndex::from_blobs(7, params, 4, index.digest(), &graph, &data)
            .err()
            .expect("an old dump is refused");
        assert!(matches!(err, IndexError::OldFormat { run: 7, .. }), "{err}");
        assert!(
            err.to_string().contains("satlas index build --run 7"),
            "{err}"
        );
    }

    #[test]
    fn excludes_the_query_cell_and_refuses_bad_queries() {
        let e = random(200, 8, 2);
        let index = CellIndex::build(1, &e, IndexParams::default().check().unwrap()).unwrap();
        let hits = index
            .search(e.row(0), 5, &Candidates::All, Some(1))
            .unwrap();
        assert_eq!(hits.len(), 5);
        assert!(hits.iter().all(|h| h.cell_id != 1));
        assert!(matches!(
            index.search(&[1.0; 3], 5, &Candidates::All, None),
            Err(IndexError::QueryDimension { .. })
        ));
        assert!(matches!(
            index.search(&[0.0; 8], 5, &Candidates::All, None),
            Err(IndexError::DegenerateVector { .. })
        ));
    }
}
