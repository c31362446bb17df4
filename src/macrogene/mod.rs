//! Gene selection and macrogenes (SATURN.md sections 2 and 3).
//!
//! 1. [`hvg`] — Seurat v3 highly variable genes on raw counts, per species (scanpy's
//!    `highly_variable_genes(flavor="seurat_v3")`, with skmisc's loess re-implemented).
//! 2. [`kmeans`] — one seeded k-means (k-means++ init) over the pooled gene embeddings; its
//!    centroids are the macrogenes.
//! 3. [`weights`] — gene-to-macrogene initial weights from the rank of each centroid's distance.
//!
//! These three are pure and in memory: counts come in as borrowed CSR slices ([`CsrView`](crate::csr::CsrView)),
//! embeddings as `ndarray` matrices. [`build`] is the atlas side: it reads the counts and gene
//! embeddings, runs the three steps and writes one macrogene set (`satlas build-macrogenes`), and
//! [`MacrogeneSet::read`] reads a set back.

pub mod build;
pub mod hvg;
pub mod kmeans;
pub mod weights;

mod error;

pub use build::{
    build_macrogenes, highly_variable_genes_with_protein, species_highly_variable_genes,
    BuildParams, MacrogeneReport, MacrogeneSet, SpeciesAssignment, SpeciesGenes,
};
pub use error::{MacrogeneError, Result};
pub use hvg::{highly_variable_genes, HvgParams, HvgResult};
pub use kmeans::{kmeans, KMeansFit, KMeansParams};
pub use weights::{gene_centroid_distances, rank_weights, ranks_average, ScoreFunction};
