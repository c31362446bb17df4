//! The searchable atlas: an HNSW index over a model run's cell embeddings, kept inside the atlas,
//! kNN search (whole atlas, or one species or dataset) and kNN label transfer.
//!
//! The index is the vendored hnsw_rs' `PackedHnsw` (HNSW, Malkov & Yashunin, *IEEE TPAMI* 2020,
//! in hnswlib's flat layout) with cosine distance `1 - a·b / (|a||b|)`, built in parallel. It is
//! persisted in `hnsw_indexes` as its graph dump (zstd-compressed) and data dump, its parameters,
//! and a digest of the embeddings it covers ([`crate::runs::CellsDigest`]); loading compares that
//! digest with `cell_embeddings` so a stale index is never used: it is extended (only cells were
//! added), rebuilt, or refused on a read-only atlas.
//!
//! - [`params`]: M, ef_construction, ef_search, checked before any work.
//! - [`distance`]: the cosine distance and normalisation, vectorised.
//! - [`exact`]: brute-force cosine kNN (fallback for small filtered subsets, recall reference).
//! - [`hnsw`]: [`CellIndex`], the in-memory index: build, insert, search, dump and reload.
//! - [`store`]: the writer and reader of `hnsw_indexes`, and [`open`]: load, extend or rebuild.
//! - [`cache`]: one loaded index per run and content, shared by SQL calls.
//! - [`search`]: kNN queries with species / dataset filters and cell metadata.
//! - [`transfer`]: distance-weighted kNN label transfer into `label_transfers`.

pub mod cache;
pub mod distance;
pub mod exact;
pub mod hnsw;
pub mod params;
pub mod search;
pub mod store;
pub mod transfer;

pub use exact::{exact_knn, Hit};
pub use hnsw::{Candidates, CellIndex};
pub use params::{IndexParams, ValidIndexParams};
pub use search::{knn, KnnQuery, Neighbour};
pub use store::{build, insert_new_cells, open, Access, IndexReport, Origin};
pub use transfer::{transfer, LabelTransfer, TransferSpec, UNKNOWN_LABEL};

use crate::atlas::AtlasError;
use crate::runs::RunError;

/// Why an index could not be built, loaded or searched, or a transfer could not run.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// An index parameter is out of range.
    #[error("invalid index parameter {name} = {value}: {rule}")]
    InvalidParam {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What a valid value is.
        rule: &'static str,
    },
    /// Embeddings of one run have different lengths.
    #[error("cell {cell_id} of run {run} has a {found}-d embedding, the others are {expected}-d")]
    DimensionMismatch {
        /// The run.
        run: i32,
        /// The offending cell.
        cell_id: i64,
        /// Length of the other embeddings.
        expected: usize,
        /// Length of this one.
        found: usize,
    },
    /// A query vector of the wrong length.
    #[error("query vector has {found} values, the embeddings of run {run} have {expected}")]
    QueryDimension {
        /// The run.
        run: i32,
        /// The run's embedding dimension.
        expected: usize,
        /// The query's length.
        found: usize,
    },
    /// A zero or non-finite vector has no cosine distance to anything.
    #[error("{what} is zero or not finite: cosine distance is undefined for it")]
    DegenerateVector {
        /// Which vector (a cell, or the query).
        what: String,
    },
    /// A cell id that is not in the index of the run.
    #[error("cell {cell_id} has no embedding in model run {run}: it is not searchable")]
    CellNotIndexed {
        /// The cell.
        cell_id: i64,
        /// The run.
        run: i32,
    },
    /// The stored index does not match the embeddings and the atlas cannot be written.
    #[error(
        "the HNSW index of run {run} is {state} and the atlas is open read-only: run \
         `satlas index build --run {run}` on a writable atlas first"
    )]
    StaleReadOnly {
        /// The run.
        run: i32,
        /// "missing" or "stale (N cells indexed, M embedded)".
        state: String,
    },
    /// The stored index could not be decoded.
    #[error("the stored HNSW index of run {run} is corrupt ({detail}): rebuild it with `satlas index build --run {run}`")]
    Corrupt {
        /// The run.
        run: i32,
        /// What failed.
        detail: String,
    },
    /// The stored index is in a format this satlas does not read (stored by an older one).
    #[error(
        "the stored HNSW index of run {run} is in an older format ({detail}): rebuild it with \
         `satlas index build --run {run}`"
    )]
    OldFormat {
        /// The run.
        run: i32,
        /// Which format was found.
        detail: String,
    },
    /// Compressing the graph dump of the index failed.
    #[error("compressing the HNSW index's graph dump: {source}")]
    Compress {
        /// zstd's error.
        #[source]
        source: std::io::Error,
    },
    /// A species or dataset name that the atlas does not know.
    #[error("unknown {kind} {name:?} (known: {known})")]
    UnknownName {
        /// "species", "dataset", or "species or dataset".
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// Known names, comma-separated.
        known: String,
    },
    /// A label transfer whose query dataset has no embedded cells.
    #[error("query dataset {dataset:?} has no cells with embeddings in run {run}: embed it first")]
    QueryNotEmbedded {
        /// The query dataset.
        dataset: String,
        /// The run.
        run: i32,
    },
    /// A label transfer whose reference has no labelled cells besides the query.
    #[error("reference {reference:?} has no labelled cells with embeddings in run {run} outside the query dataset")]
    EmptyReference {
        /// The reference asked for.
        reference: String,
        /// The run.
        run: i32,
    },
    /// Writing the result file failed.
    #[error("writing {path}: {source}")]
    Output {
        /// The output path.
        path: std::path::PathBuf,
        /// DuckDB's error.
        #[source]
        source: duckdb::Error,
    },
    /// The atlas could not be read or written.
    #[error(transparent)]
    Atlas(#[from] AtlasError),
    /// No model run to index or search.
    #[error(transparent)]
    Run(#[from] RunError),
}
