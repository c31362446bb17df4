//! The crate error: one variant per pipeline stage, each wrapping that stage's typed error.

/// Everything that can go wrong in satlas, by stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an input file failed.
    #[error(transparent)]
    Read(#[from] crate::io::ReadError),
    /// The atlas file could not be opened, read or written.
    #[error(transparent)]
    Atlas(#[from] crate::atlas::AtlasError),
    /// An ingest was refused (unknown species, duplicate dataset, ...).
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// A SQL procedure was called with an argument of the wrong kind.
    #[error(transparent)]
    Args(#[from] crate::sql::ArgsError),
    /// Building, loading or searching the HNSW index, or a label transfer, failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
}

/// `Result` with the crate [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
