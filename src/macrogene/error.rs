//! The error type of gene selection and macrogene construction: what was wrong, where, what to do.

/// Why gene selection, k-means or weight initialisation refused to run.
#[derive(Debug, thiserror::Error)]
pub enum MacrogeneError {
    /// A parameter is outside its valid range; nothing was computed.
    #[error("invalid parameter {name} = {value}: {reason}")]
    InvalidParameter {
        /// The parameter's name, as in the params struct.
        name: &'static str,
        /// The value given.
        value: String,
        /// The valid range and what to do.
        reason: String,
    },
    /// The atlas lacks what this step needs (datasets, gene embeddings, a macrogene set).
    #[error("{what}")]
    NotReady {
        /// What is missing and which command provides it.
        what: String,
    },
    /// A count matrix is inconsistent, or a selection lies outside it.
    #[error(transparent)]
    Csr(#[from] crate::csr::CsrError),
    /// Two inputs that must agree in shape do not.
    #[error("shape mismatch: {what}")]
    Shape {
        /// Which inputs and their shapes.
        what: String,
    },
    /// A value that must be finite is NaN or infinite.
    #[error("non-finite value in {what} at row {row}, column {col}; check the gene embeddings")]
    NonFinite {
        /// Which input.
        what: &'static str,
        /// Row of the offending value.
        row: usize,
        /// Column of the offending value.
        col: usize,
    },
    /// The loess fit of the mean-variance trend failed.
    #[error("loess fit of log variance on log mean failed: {reason}")]
    Loess {
        /// Why, and what to do.
        reason: String,
    },
    /// A libtorch operation failed (k-means and distances run on tch tensors).
    #[error("libtorch error in {context}: {source}")]
    Torch {
        /// The step that failed.
        context: &'static str,
        /// The libtorch error.
        #[source]
        source: tch::TchError,
    },
}

/// `Result` with [`MacrogeneError`].
pub type Result<T, E = MacrogeneError> = std::result::Result<T, E>;

/// Shorthand for [`MacrogeneError::InvalidParameter`].
pub(crate) fn invalid(
    name: &'static str,
    value: impl std::fmt::Display,
    reason: impl Into<String>,
) -> MacrogeneError {
    MacrogeneError::InvalidParameter {
        name,
        value: value.to_string(),
        reason: reason.into(),
    }
}
