//! # satlas — a cross-species single-cell atlas in one file
//!
//! satlas implements SATURN (Rosen et al., *Nature Methods* 2024) on an embedded DuckDB store:
//! proteins are embedded with a protein language model, genes of all species are clustered into
//! shared macrogenes, and a ZINB autoencoder fine-tuned with a cross-species triplet loss maps
//! every cell into one species-agnostic embedding space.
//!
//! The modules follow the data path, in order:
//!
//! 1. [`io`] — readers: proteome FASTA, h5ad, 10x MatrixMarket, gene embeddings.
//! 2. [`atlas`] — the atlas file: schema, versioning, transactions, typed reads and writes.
//! 3. [`ingest`] — proteomes and datasets into the atlas, one transaction each.
//! 4. [`protein`] — protein embeddings: ESM-2 in `tch`, per protein and per gene, in the atlas.
//! 5. [`macrogene`] — gene selection (Seurat v3 HVG), k-means macrogenes, rank-based weights.
//! 6. [`model`] — the SATURN network, its losses, pretraining and fine-tuning.
//! 7. [`runs`] — model runs and their cell embeddings in the atlas: which run a command uses, the
//!    writer and the reader of `cell_embeddings`.
//! 8. [`index`] — the searchable atlas: HNSW over cell embeddings, kNN search, label transfer.
//! 9. [`eval`] — SATURN's evaluation: cross-species logistic-regression and kNN label transfer,
//!    species mixing.
//! 10. [`export`] — a model run's cells for scanpy (`.h5ad`) and as Parquet tables.
//! 11. [`de`] — macrogene differential expression between cell types (Wilcoxon rank-sum).
//! 12. [`layout`] — a 2-D UMAP layout of a run's cell embeddings, stored per run.
//! 13. [`plot`] — pictures (UMAP scatter, training curves, DE heatmap) as SVG or PNG, and the
//!     one-page HTML report.
//! 14. [`sql`] — the DuckDB table functions that expose the stages as SQL procedures.
//! 15. [`synth`] — synthetic datasets of any size drawn from a real one, for capacity planning
//!     and benchmarks (outside the data path).
//!
//! Shared by the stages: [`csr`], the cells x genes count matrix in CSR layout.
//!
//! ```no_run
//! use satlas::Atlas;
//! let atlas = Atlas::create("pancreas.satlas")?;
//! println!("{}", atlas.summary()?);
//! # Ok::<(), satlas::Error>(())
//! ```
#![warn(missing_docs)]

pub mod csr;
pub mod io;
pub mod atlas;
pub mod ingest;
pub mod protein;
pub mod macrogene;
pub mod model;
pub mod runs;
pub mod index;
pub mod eval;
pub mod export;
pub mod de;
pub mod layout;
pub mod plot;
pub mod sql;
pub mod synth;
pub mod progress;

mod kernels;

pub mod error;

pub use atlas::Atlas;
pub use error::{Error, Result};
