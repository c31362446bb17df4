//! The crate error: one variant per pipeline stage, each wrapping that stage's typed error.

/// Everything that can go wrong in satlas, by stage.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// Reading an input file failed.
    #[error(transparent)]
    Read(#[from] crate::io::ReadError),
    /// A protein language model could not be loaded or run.
    #[error(transparent)]
    Protein(#[from] crate::protein::ProteinError),
    /// The atlas file could not be opened, read or written.
    #[error(transparent)]
    Atlas(#[from] crate::atlas::AtlasError),
    /// An ingest was refused (unknown species, duplicate dataset, ...).
    #[error(transparent)]
    Ingest(#[from] crate::ingest::IngestError),
    /// A count matrix is inconsistent, or a selection lies outside it.
    #[error(transparent)]
    Csr(#[from] crate::csr::CsrError),
    /// Gene selection, k-means or macrogene weights refused to run.
    #[error(transparent)]
    Macrogene(#[from] crate::macrogene::MacrogeneError),
    /// The SATURN network, its training or a checkpoint failed.
    #[error(transparent)]
    Model(#[from] crate::model::ModelError),
    /// No model run meets what a command needs.
    #[error(transparent)]
    Run(#[from] crate::runs::RunError),
    /// A SQL procedure was called with an argument of the wrong kind.
    #[error(transparent)]
    Args(#[from] crate::sql::ArgsError),
    /// Building, loading or searching the HNSW index, or a label transfer, failed.
    #[error(transparent)]
    Index(#[from] crate::index::IndexError),
    /// An evaluation (`satlas eval`) was refused or failed.
    #[error(transparent)]
    Eval(#[from] crate::eval::EvalError),
    /// An export was refused.
    #[error(transparent)]
    Export(#[from] crate::export::ExportError),
    /// A differential-expression request (`satlas de`) was refused.
    #[error(transparent)]
    De(#[from] crate::de::DeError),
    /// A UMAP layout could not be computed, read or stored.
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    /// A picture or the report could not be drawn or written.
    #[error(transparent)]
    Plot(#[from] crate::plot::PlotError),
    /// A synthetic dataset (`satlas simulate`) was refused or could not be written.
    #[error(transparent)]
    Synth(#[from] crate::synth::SynthError),
}

/// `Result` with the crate [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The messages of an error and of each of its causes that adds something: a cause whose text
/// the message before it already holds is left out, and so is DuckDB's bare status code
/// ("Error code 1: Unknown error code") under the DuckDB error that carries the real message.
pub fn messages(error: &(dyn std::error::Error + 'static)) -> Vec<String> {
    let mut out = vec![error.to_string()];
    let mut source = error.source();
    while let Some(cause) = source {
        let text = cause.to_string();
        let bare_code = cause.downcast_ref::<duckdb::ffi::Error>().is_some();
        if !bare_code && !out.last().is_some_and(|shown| shown.contains(&text)) {
            out.push(text);
        }
        source = cause.source();
    }
    out
}
