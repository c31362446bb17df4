//! Readers for everything satlas ingests: proteome FASTA, count matrices (h5ad, 10x MatrixMarket),
//! precomputed gene embeddings (SATURN's `.pt`/`.torch`, `.npy`, Parquet), `torch.save` checkpoints
//! (`torch_pickle`, a Python-free unpickler for fair-esm's ESM-2 `.pt` files).
//!
//! Readers are pure: they turn a file into validated in-memory values ([`Proteome`],
//! [`DatasetFile`]) and never touch the atlas. Every error names the file and, where it can, the
//! line, cell or gene at fault ([`ReadError`]).

// The embedding and checkpoint readers need libtorch, DuckDB's Arrow and parquet; `fuzz/` builds
// the other readers alone.
#[cfg(not(fuzzing))]
pub mod embeddings;
pub mod fasta;
pub mod h5ad;
pub mod mtx;
#[cfg(not(fuzzing))]
pub mod parquet;
#[cfg(not(fuzzing))]
pub mod torch_pickle;

mod error;
mod sparse;
mod text;

#[cfg(not(fuzzing))]
pub use embeddings::{read_gene_embeddings, GeneEmbeddings};
pub use error::ReadError;
pub use fasta::{read_proteome, FastaOptions, FastaReport, ProteinRecord, Proteome};

use crate::csr::Csr;
use std::path::Path;

/// A sparse cells x genes matrix of raw integer counts in CSR layout (one row per cell).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CountMatrix {
    /// Cell identifiers (obs names / barcodes), one per row.
    pub barcodes: Vec<String>,
    /// Gene symbols (var names), one per column, in file order.
    pub genes: Vec<String>,
    /// The counts, one row per barcode and one column per gene; column indices ascend within a
    /// row and zeros are never stored.
    pub csr: Csr,
}

impl CountMatrix {
    /// Number of cells (rows).
    pub fn n_cells(&self) -> usize {
        self.barcodes.len()
    }

    /// Number of genes (columns).
    pub fn n_genes(&self) -> usize {
        self.genes.len()
    }

    /// Number of stored non-zero entries.
    pub fn nnz(&self) -> usize {
        self.csr.nnz()
    }

    /// The `(gene indices, counts)` of one cell.
    pub fn row(&self, cell: usize) -> (&[u32], &[u32]) {
        self.csr.row(cell)
    }
}

/// One per-cell annotation column (an `obs` column of an h5ad, or a column of an obs CSV/TSV).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObsColumn {
    /// Column name.
    pub name: String,
    /// One value per cell; `None` for a missing value (NaN, empty, category code -1).
    pub values: Vec<Option<String>>,
}

/// A count matrix with its per-cell annotations, as read from one file or directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetFile {
    /// Raw integer counts.
    pub counts: CountMatrix,
    /// Per-cell annotation columns (all string or categorical obs columns).
    pub obs: Vec<ObsColumn>,
    /// Short name of the format read (`h5ad`, `mtx`).
    pub format: &'static str,
}

impl DatasetFile {
    /// The annotation column called `name`, if present.
    pub fn obs_column(&self, name: &str) -> Option<&ObsColumn> {
        self.obs.iter().find(|c| c.name == name)
    }
}

/// A dataset read a chunk of cells at a time: its names and annotations now, its counts by
/// [`DatasetStream::next_chunk`]. A CSR matrix in an h5ad is streamed from the file (hyperslab
/// reads, memory bounded by the chunk); every other layout (CSC, dense, 10x) is read whole and
/// handed out as one chunk. Chunks are validated exactly as [`read_dataset`] validates the whole.
pub struct DatasetStream {
    /// Cell identifiers, one per row.
    pub barcodes: Vec<String>,
    /// Gene symbols, one per column.
    pub genes: Vec<String>,
    /// Per-cell annotation columns.
    pub obs: Vec<ObsColumn>,
    /// Short name of the format read (`h5ad`, `mtx`).
    pub format: &'static str,
    /// Read options to try instead when this stream's counts turn out not to be integers
    /// (`X` streamed with a `raw/X` beside it), as [`read_dataset`] falls back to `raw/X`.
    pub fallback: Option<ReadOptions>,
    rows: Rows,
}

/// Where the rows of a [`DatasetStream`] come from.
enum Rows {
    /// Read whole; taken by the first chunk.
    Whole(Option<CountMatrix>),
    /// Streamed from an h5ad's CSR matrix.
    Csr(h5ad::CsrRows),
}

impl DatasetStream {
    /// A stream over a dataset already read whole.
    fn whole(file: DatasetFile) -> DatasetStream {
        let DatasetFile {
            counts,
            obs,
            format,
        } = file;
        DatasetStream {
            barcodes: counts.barcodes.clone(),
            genes: counts.genes.clone(),
            obs,
            format,
            fallback: None,
            rows: Rows::Whole(Some(counts)),
        }
    }

    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.barcodes.len()
    }

    /// The annotation column called `name`, if present.
    pub fn obs_column(&self, name: &str) -> Option<&ObsColumn> {
        self.obs.iter().find(|c| c.name == name)
    }

    /// The next cells in file order as a validated matrix (its barcodes are the chunk's), or
    /// `None` after the last.
    pub fn next_chunk(&mut self) -> Result<Option<CountMatrix>, ReadError> {
        match &mut self.rows {
            Rows::Whole(matrix) => Ok(matrix.take()),
            Rows::Csr(rows) => rows.next_chunk(&self.barcodes, &self.genes),
        }
    }
}

/// Opens a dataset for [`DatasetStream`] reading: what [`read_dataset`] reads, without holding
/// a CSR h5ad's counts.
pub fn open_dataset(path: &Path, options: &ReadOptions) -> Result<DatasetStream, ReadError> {
    if is_h5ad(path) {
        if let Some(stream) = h5ad::open_csr(path, options)? {
            return Ok(stream);
        }
    }
    read_dataset(path, options).map(DatasetStream::whole)
}

/// Where the raw counts of a dataset are, and where extra annotations come from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReadOptions {
    /// Counts source inside an h5ad: `None` tries `X`, then `raw/X`, taking the first that holds
    /// integers; `Some("X")`, `Some("raw/X")` or `Some("layers/NAME")` (or just `NAME`) forces one.
    pub layer: Option<String>,
    /// An obs table (CSV or TSV with a header; first column = barcode) joined onto the cells;
    /// for 10x directories this is where labels come from.
    pub obs_file: Option<std::path::PathBuf>,
}

/// Reads a dataset from an `.h5ad` file or a 10x MatrixMarket directory (or a `.mtx[.gz]` file
/// inside one), dispatching on what `path` is.
pub fn read_dataset(path: &Path, options: &ReadOptions) -> Result<DatasetFile, ReadError> {
    if is_h5ad(path) {
        h5ad::read_h5ad(path, options)
    } else {
        mtx::read_10x(path, options)
    }
}

fn is_h5ad(path: &Path) -> bool {
    path.extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("h5ad") || e.eq_ignore_ascii_case("h5"))
}
