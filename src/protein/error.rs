//! The one error type of the protein-embedding stage: what was wrong, where, and what to do.

use std::path::PathBuf;

/// Why a protein language model could not be loaded or run.
#[derive(Debug, thiserror::Error)]
pub enum ProteinError {
    /// A model file could not be opened or read.
    #[error("cannot read {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error.
        #[source]
        source: std::io::Error,
    },
    /// `config.json` is unreadable or describes a model satlas cannot run.
    #[error("{path}: {message}")]
    Config {
        /// The config file.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// `vocab.txt` does not hold the ESM alphabet the model needs.
    #[error("{path}: {message}")]
    Vocab {
        /// The vocabulary file.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// The weights file could not be parsed.
    #[error("{path}: cannot read the weights: {message}")]
    Weights {
        /// The weights file.
        path: PathBuf,
        /// The parser's message.
        message: String,
    },
    /// A fair-esm `.pt` checkpoint is not a readable `torch.save` archive.
    #[error(transparent)]
    Checkpoint(#[from] crate::io::ReadError),
    /// A tensor the model needs is not in the checkpoint.
    #[error(
        "{path}: no tensor {name:?} (also tried with the \"esm.\" prefix); is this an ESM-2 \
         checkpoint matching config.json?"
    )]
    MissingTensor {
        /// The weights file.
        path: PathBuf,
        /// The parameter name as the model expects it (Hugging Face `EsmModel` naming).
        name: String,
    },
    /// A tensor of the checkpoint has the wrong shape for `config.json`.
    #[error(
        "{path}: tensor {name:?} has shape {found:?}, config.json implies {expected:?}; does the \
         config belong to these weights?"
    )]
    TensorShape {
        /// The weights file.
        path: PathBuf,
        /// The tensor's name in the checkpoint.
        name: String,
        /// Shape implied by the config.
        expected: Vec<i64>,
        /// Shape in the file.
        found: Vec<i64>,
    },
    /// An embedding option is out of range.
    #[error("invalid embedding option: {0}")]
    Options(String),
    /// A protein has no residue to average over.
    #[error("protein {id:?} has an empty sequence; remove it before embedding")]
    EmptySequence {
        /// The protein id.
        id: String,
    },
    /// Embeddings of one gene (or of one call) have different dimensions.
    #[error("gene {gene:?}: embedding of dimension {found}, expected {expected} like the others")]
    Dimension {
        /// The gene.
        gene: String,
        /// Dimension of the first embedding seen.
        expected: usize,
        /// Dimension of this one.
        found: usize,
    },
    /// Embeddings imported under a model name already in the atlas have another dimension.
    #[error(
        "these embeddings have dimension {found}, but embedding model {model:?} (#{id}) in the \
         atlas has dimension {expected}; files imported under one --model name must share one \
         dimension: check the file, or import it under another --model name"
    )]
    ModelDimension {
        /// The model name.
        model: String,
        /// Its `embedding_models` id.
        id: i32,
        /// The dimension in the atlas.
        expected: usize,
        /// The dimension of the new embeddings.
        found: usize,
    },
    /// An embedding file's gene symbols are another species' (matched exactly, case included).
    #[error(
        "{path}: these look like {other}'s genes, not {species}'s: {n_other} of its {total} \
         gene symbols are {other} genes (exact match, case included) and only {n_species} are \
         {species} genes; import it with --species {other} (SQL: species := '{other}'), or check \
         that the file is {species}'s"
    )]
    SpeciesMismatch {
        /// The file.
        path: String,
        /// The species it was imported as.
        species: String,
        /// The species whose symbols it matches better.
        other: String,
        /// Symbols in the file.
        total: usize,
        /// Of those, symbols of `species`.
        n_species: usize,
        /// Of those, symbols of `other`.
        n_other: usize,
    },
    /// libtorch failed while running the model.
    #[error("libtorch failed while {context}: {source}")]
    Torch {
        /// What was being done.
        context: String,
        /// libtorch's error.
        #[source]
        source: tch::TchError,
    },
}

impl ProteinError {
    /// Wraps a libtorch error with what was being done.
    pub(crate) fn torch(context: impl Into<String>) -> impl FnOnce(tch::TchError) -> Self {
        let context = context.into();
        move |source| Self::Torch { context, source }
    }
}
