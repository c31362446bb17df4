//! A 2-D layout of a model run's cell embeddings for pictures: UMAP ([`umap`]) on the cosine kNN
//! graph of the embeddings, stored per run in `umap_layouts` / `umap_coordinates` ([`store`]).
//!
//! The kNN graph is exact below [`EXACT_KNN_BELOW`] cells and otherwise comes from the run's
//! HNSW index (`index::open`: loaded, extended or built and stored, as every index user does).
//! A stored layout is reused while the run's embeddings are unchanged (the index stage's
//! [`CellsDigest`]); cells embedded later are *placed* by their neighbours (the
//! membership-weighted mean of their `n_neighbors` nearest laid-out cells, umap-learn's
//! `transform` start, without its extra SGD) instead of recomputing the layout; any other change
//! recomputes it.

pub mod store;
pub mod umap;

use crate::atlas::AtlasError;
use crate::index::IndexError;
use serde::{Deserialize, Serialize};

pub use store::{compute, current, ensure, read_layout, Layout, LayoutReport};

/// Runs of at most this many cells get an exact kNN graph; larger ones use the HNSW index.
pub const EXACT_KNN_BELOW: usize = 5000;
/// umap-learn's default neighbourhood size (the point itself included, as umap-learn counts).
pub const DEFAULT_NEIGHBORS: usize = 15;
/// umap-learn's default `min_dist`.
pub const DEFAULT_MIN_DIST: f64 = 0.1;

/// Why a layout could not be computed, read or stored.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    /// A layout parameter is out of range.
    #[error("invalid layout parameter {name} = {value}: {expected}")]
    Param {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What a valid value is.
        expected: &'static str,
    },
    /// Too few embedded cells for a layout.
    #[error(
        "model run {run} has {n} embedded cells; a layout needs at least {needed} \
         (n_neighbors + 1): embed more cells or lower --neighbors"
    )]
    TooFewCells {
        /// The run.
        run: i32,
        /// Its embedded cells.
        n: usize,
        /// The minimum.
        needed: usize,
    },
    /// The layout of a run is missing or stale and the atlas is open read-only.
    #[error(
        "the layout of model run {run} is {state} and the atlas is open read-only: open it \
         read-write (`satlas layout`) to compute it"
    )]
    StaleReadOnly {
        /// The run.
        run: i32,
        /// `missing` or what changed.
        state: String,
    },
    /// A stored layout row does not parse.
    #[error("the stored layout of model run {run} is unreadable ({what}): recompute it with `satlas layout --run {run}`")]
    Corrupt {
        /// The run.
        run: i32,
        /// What is wrong.
        what: String,
    },
    /// Reading the embeddings or the index failed.
    #[error(transparent)]
    Index(#[from] IndexError),
    /// Reading or writing the atlas failed.
    #[error(transparent)]
    Atlas(#[from] AtlasError),
    /// No run to read.
    #[error(transparent)]
    Run(#[from] crate::runs::RunError),
}

/// UMAP parameters as given (see [`UmapParams::check`]).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct UmapParams {
    /// Neighbourhood size, the point itself included (umap-learn's `n_neighbors`).
    pub n_neighbors: usize,
    /// Minimum distance between points in the layout (umap-learn's `min_dist`, spread 1).
    pub min_dist: f64,
    /// SGD epochs (`None`: umap-learn's rule, 500 up to 10,000 cells, else 200).
    pub n_epochs: Option<usize>,
    /// Seed of the initial noise and the negative sampling.
    pub seed: u64,
}

impl Default for UmapParams {
    fn default() -> Self {
        UmapParams {
            n_neighbors: DEFAULT_NEIGHBORS,
            min_dist: DEFAULT_MIN_DIST,
            n_epochs: None,
            seed: 0,
        }
    }
}

/// Parameters that passed [`UmapParams::check`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ValidUmapParams(UmapParams);

impl UmapParams {
    /// Refuses out-of-range values before anything is computed.
    pub fn check(self) -> Result<ValidUmapParams, LayoutError> {
        if !(2..=200).contains(&self.n_neighbors) {
            return Err(LayoutError::Param {
                name: "n_neighbors",
                value: self.n_neighbors.to_string(),
                expected: "an integer from 2 to 200",
            });
        }
        if !(0.0..=1.0).contains(&self.min_dist) {
            return Err(LayoutError::Param {
                name: "min_dist",
                value: self.min_dist.to_string(),
                expected: "a number from 0 to 1 (umap-learn's spread is 1)",
            });
        }
        if let Some(e) = self.n_epochs.filter(|e| !(1..=10_000).contains(e)) {
            return Err(LayoutError::Param {
                name: "n_epochs",
                value: e.to_string(),
                expected: "an integer from 1 to 10000",
            });
        }
        Ok(ValidUmapParams(self))
    }
}

impl ValidUmapParams {
    /// The parameters.
    pub fn get(&self) -> &UmapParams {
        &self.0
    }

    /// The epochs for `n` cells.
    pub fn epochs_for(&self, n: usize) -> usize {
        self.0
            .n_epochs
            .unwrap_or(if n <= 10_000 { 500 } else { 200 })
    }
}

/// How a layout came to be current.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutOrigin {
    /// The stored layout matched the embeddings.
    Loaded,
    /// The stored layout was extended: this many new cells placed by their neighbours.
    Placed(usize),
    /// Computed and stored.
    Computed,
}

impl std::fmt::Display for LayoutOrigin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LayoutOrigin::Loaded => write!(f, "stored"),
            LayoutOrigin::Placed(n) => {
                write!(f, "stored, {n} new cells placed by their neighbours")
            }
            LayoutOrigin::Computed => write!(f, "computed"),
        }
    }
}
