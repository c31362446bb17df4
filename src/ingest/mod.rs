//! Ingest (work in progress).
/// Ingest errors.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Unknown species.
    #[error("unknown species {0:?}")]
    UnknownSpecies(String),
}
