//! Proteome FASTA reader (placeholder until the reader lands).
use super::ReadError;
use std::path::Path;
/// Options of the FASTA reader.
#[derive(Debug, Clone, Default)]
pub struct FastaOptions {
    /// Use the `gene:` token when a record has no `gene_symbol:` token.
    pub gene_fallback: bool,
}
/// One protein.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProteinRecord {
    /// Protein id: the first whitespace token of the header.
    pub protein_id: String,
    /// Gene symbol.
    pub gene: String,
    /// The full header line without `>`.
    pub header: String,
    /// Amino-acid sequence.
    pub sequence: String,
}
/// What the reader kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastaReport {
    /// Records kept.
    pub kept: usize,
    /// Records dropped because the sequence holds `*`.
    pub dropped_stop: usize,
    /// Records dropped because no gene could be found in the header.
    pub dropped_no_gene: usize,
}
/// A parsed proteome.
#[derive(Debug, Clone, Default)]
pub struct Proteome {
    /// Kept records, in file order.
    pub records: Vec<ProteinRecord>,
    /// Counts of kept and dropped records.
    pub report: FastaReport,
}
/// Reads a proteome FASTA.
pub fn read_proteome(path: &Path, _options: &FastaOptions) -> Result<Proteome, ReadError> {
    Err(ReadError::Empty {
        path: path.into(),
        what: "FASTA reader not built yet".into(),
    })
}
