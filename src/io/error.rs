//! The one error type of the readers: what was wrong, where, and what to do.

use std::path::{Path, PathBuf};

/// Why a file could not be read. Every variant names the file; most name the line, cell or gene.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The file could not be opened or read at all.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// The file holds nothing usable.
    #[error("{path} is empty: {what}")]
    Empty {
        /// The file.
        path: PathBuf,
        /// What was expected in it.
        what: String,
    },
    /// The file does not follow its format.
    #[error("{path}:{line}: {message}")]
    Malformed {
        /// The file.
        path: PathBuf,
        /// 1-based line number (0 when the format has no lines, e.g. HDF5).
        line: usize,
        /// What is wrong and what to do.
        message: String,
    },
    /// A count is not a non-negative integer (e.g. a log-normalised matrix was given).
    #[error(
        "{path}: the count matrix holds {value} for cell {cell:?}, gene {gene:?}: satlas needs raw \
         integer UMI/read counts, not normalised or log-transformed values; point --layer at the raw \
         counts (e.g. raw/X or layers/counts)"
    )]
    NonIntegerCounts {
        /// The file.
        path: PathBuf,
        /// The cell (barcode) holding the value.
        cell: String,
        /// The gene holding the value.
        gene: String,
        /// The offending value.
        value: f64,
    },
    /// A requested annotation column is not in the file.
    #[error("{path}: no obs column {column:?}; available columns: {available}")]
    MissingColumn {
        /// The file.
        path: PathBuf,
        /// The column asked for.
        column: String,
        /// The columns that exist, comma-separated.
        available: String,
    },
    /// The same cell or gene appears twice.
    #[error("{path}: duplicate {kind} {name:?} (first at position {first}, again at {second}); identifiers must be unique")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// `cell` or `gene`.
        kind: &'static str,
        /// The repeated identifier.
        name: String,
        /// 0-based position of the first occurrence.
        first: usize,
        /// 0-based position of the repeat.
        second: usize,
    },
    /// An HDF5-level failure (truncated or corrupt file, unexpected dataset type).
    #[error("{path}: cannot read HDF5 object {object:?}: {message}")]
    Hdf5 {
        /// The file.
        path: PathBuf,
        /// The HDF5 object path inside the file.
        object: String,
        /// The HDF5 library's message.
        message: String,
    },
    /// A file a format needs is not there (e.g. `barcodes.tsv` in a 10x directory).
    #[error("{path}: no {expected} found; {hint}")]
    MissingFile {
        /// The directory (or file) that was searched.
        path: PathBuf,
        /// The file(s) expected, e.g. `barcodes.tsv[.gz]`.
        expected: String,
        /// What a complete input looks like.
        hint: &'static str,
    },
    /// Cells of the count matrix have no row in the obs table joined onto them.
    #[error(
        "{path}: no row for cell {barcode:?} ({missing} of {total} cells missing); the obs table \
         needs one row per cell, keyed by barcode in its first column"
    )]
    MissingCell {
        /// The obs table.
        path: PathBuf,
        /// The first cell without a row.
        barcode: String,
        /// How many cells have no row.
        missing: usize,
        /// How many cells the matrix has.
        total: usize,
    },
}

impl ReadError {
    /// A [`ReadError::Malformed`] at `line` of `path`.
    pub(crate) fn malformed(path: &Path, line: usize, message: impl Into<String>) -> Self {
        ReadError::Malformed {
            path: path.to_path_buf(),
            line,
            message: message.into(),
        }
    }
}
