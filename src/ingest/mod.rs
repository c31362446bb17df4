//! Ingest: proteomes and datasets into the atlas, each as one transaction.
//!
//! Files are read and validated first ([`crate::io`]), then written in a single
//! [`Atlas::write`](crate::Atlas::write): a refused or failed ingest leaves the atlas exactly as
//! it was. Gene symbols are matched case-insensitively within a species ([`genes`]).

mod dataset;
pub mod genes;
mod proteome;

pub use dataset::{add_dataset, DatasetReport, DatasetSpec};
pub use proteome::{add_proteome, ProteomeReport};

use std::path::PathBuf;

/// Why an ingest was refused.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// A dataset of that name or with identical content is already in the atlas.
    #[error("{path}: {reason}; nothing was added")]
    DuplicateDataset {
        /// The file being added.
        path: PathBuf,
        /// Which dataset it collides with, and how.
        reason: String,
    },
    /// A protein of this file is already in the atlas for the species, or twice in the file.
    #[error(
        "{path}: protein {accession:?} {found}; a proteome is added once, each (protein, gene) \
         pair once (nothing was added)"
    )]
    DuplicateProtein {
        /// The FASTA file.
        path: PathBuf,
        /// The first protein found twice, with its gene.
        accession: String,
        /// Where it was found before: in the atlas (naming the species) or earlier in the file.
        found: String,
    },
    /// The dataset holds nothing SATURN can use.
    #[error("{path}: {reason}; nothing was added")]
    UnusableDataset {
        /// The dataset file.
        path: PathBuf,
        /// What is missing and what to do.
        reason: String,
    },
    /// The label column is missing or holds no value.
    #[error("{path}: label column {column:?} {problem}; available columns: {available}")]
    BadLabelColumn {
        /// The dataset file.
        path: PathBuf,
        /// The requested label column.
        column: String,
        /// What is wrong with it.
        problem: &'static str,
        /// The obs columns of the file.
        available: String,
    },
    /// A species or dataset name that cannot be used.
    #[error("invalid {what} name {name:?}: use letters, digits, '_', '-' or '.'")]
    InvalidName {
        /// `species` or `dataset`.
        what: &'static str,
        /// The name given.
        name: String,
    },
}

/// Checks a user-chosen species or dataset name.
fn check_name(what: &'static str, name: &str) -> Result<(), IngestError> {
    let ok = !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'));
    if ok {
        Ok(())
    } else {
        Err(IngestError::InvalidName {
            what,
            name: name.into(),
        })
    }
}
