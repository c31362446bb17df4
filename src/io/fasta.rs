//! Proteome FASTA reader: one protein record per header, each assigned to a gene symbol.
//!
//! Two header styles are recognised, decided per record:
//!
//! * **Ensembl** (`*.pep.all.fa`), iff the header has a `gene_symbol:` or `gene:` token:
//!   `>ENSP00000... pep chromosome:... gene:ENSG... transcript:... gene_symbol:INS description:...`.
//!   Protein id = first token; gene = the `gene_symbol:` value, or with
//!   [`FastaOptions::gene_fallback`] the `gene:` value when there is no symbol; a record with no
//!   usable gene is dropped and counted in [`FastaReport::dropped_no_gene`].
//! * **Plain**: `>SYMBOL uniprot=ACCESSION` (or just `>SYMBOL`). Gene = first token; protein id =
//!   the `uniprot=` value when present, else the first token.
//!
//! Sequences may span lines; they are joined and uppercased. Records whose sequence holds a stop
//! `*` are dropped and counted. Gzip input is detected by its magic bytes.

use super::text::Lines;
use super::ReadError;
use std::collections::HashSet;
use std::path::Path;

/// Options of the FASTA reader.
#[derive(Debug, Clone, Default)]
pub struct FastaOptions {
    /// Use the `gene:` token when an Ensembl record has no `gene_symbol:` token.
    pub gene_fallback: bool,
}

/// One protein.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProteinRecord {
    /// Protein id: the first header token (Ensembl, plain without `uniprot=`) or the `uniprot=`
    /// accession (plain headers that carry one).
    pub protein_id: String,
    /// Gene symbol.
    pub gene: String,
    /// The full header line without `>`.
    pub header: String,
    /// Amino-acid sequence, uppercase.
    pub sequence: String,
}

/// What the reader kept and dropped.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FastaReport {
    /// Records (headers) in the file.
    pub records: usize,
    /// Records kept.
    pub kept: usize,
    /// Records dropped because the sequence holds `*`.
    pub dropped_stop: usize,
    /// Records dropped because no gene could be found in the header.
    pub dropped_no_gene: usize,
}

impl FastaReport {
    /// All dropped records.
    pub fn dropped(&self) -> usize {
        self.dropped_stop + self.dropped_no_gene
    }
}

/// A parsed proteome.
#[derive(Debug, Clone, Default)]
pub struct Proteome {
    /// Kept records, in file order.
    pub records: Vec<ProteinRecord>,
    /// Counts of kept and dropped records.
    pub report: FastaReport,
}

impl Proteome {
    /// Number of distinct genes among the kept records.
    pub fn n_genes(&self) -> usize {
        self.records
            .iter()
            .map(|r| r.gene.as_str())
            .collect::<HashSet<_>>()
            .len()
    }
}

/// Reads a proteome FASTA (plain or gzip).
pub fn read_proteome(path: &Path, options: &FastaOptions) -> Result<Proteome, ReadError> {
    let mut lines = Lines::open(path)?;
    let mut proteome = Proteome::default();
    let mut current: Option<Pending> = None;
    let mut buf = String::new();
    while lines.next_into(&mut buf)? {
        if let Some(header) = buf.strip_prefix('>') {
            if let Some(done) = current.take() {
                done.finish(&mut proteome, options, &lines)?;
            }
            let header = header.trim();
            if header.is_empty() {
                return Err(lines.malformed(
                    "header with an empty id; every `>` line must start with an identifier",
                ));
            }
            proteome.report.records += 1;
            current = Some(Pending {
                header: header.to_string(),
                line: lines.line(),
                sequence: String::new(),
            });
            continue;
        }
        let residues = buf.trim();
        if residues.is_empty() {
            continue;
        }
        let Some(pending) = current.as_mut() else {
            return Err(lines.malformed(
                "sequence before any header; a FASTA file must start with a `>` header line",
            ));
        };
        if let Some(bad) = residues
            .chars()
            .find(|c| !c.is_ascii_alphabetic() && *c != '*')
        {
            return Err(lines.malformed(format!(
                "invalid residue {bad:?} in the sequence of {:?}; only amino-acid letters and `*` \
                 are allowed (is this really a protein FASTA?)",
                first_token(&pending.header)
            )));
        }
        pending.sequence.push_str(&residues.to_ascii_uppercase());
    }
    if let Some(done) = current.take() {
        done.finish(&mut proteome, options, &lines)?;
    }
    let report = &proteome.report;
    if report.records == 0 {
        return Err(ReadError::Empty {
            path: path.to_path_buf(),
            what: "no FASTA records (`>` header lines); check the file is a protein FASTA".into(),
        });
    }
    if report.kept == 0 {
        return Err(ReadError::Empty {
            path: path.to_path_buf(),
            what: format!(
                "no protein to keep: all {} records were dropped ({} with a stop codon '*', {} \
                 without a gene symbol; --gene-fallback uses Ensembl `gene:` ids)",
                report.records, report.dropped_stop, report.dropped_no_gene
            ),
        });
    }
    Ok(proteome)
}

/// A record whose sequence lines are still being read.
struct Pending {
    header: String,
    line: usize,
    sequence: String,
}

impl Pending {
    fn finish(
        self,
        proteome: &mut Proteome,
        options: &FastaOptions,
        lines: &Lines,
    ) -> Result<(), ReadError> {
        if self.sequence.is_empty() {
            return Err(ReadError::malformed(
                lines.path(),
                self.line,
                format!(
                    "record {:?} has no sequence; remove the header or restore its sequence \
                     (a truncated file?)",
                    first_token(&self.header)
                ),
            ));
        }
        let report = &mut proteome.report;
        let Some((protein_id, gene)) = parse_header(&self.header, options) else {
            report.dropped_no_gene += 1;
            return Ok(());
        };
        if self.sequence.contains('*') {
            report.dropped_stop += 1;
            return Ok(());
        }
        report.kept += 1;
        proteome.records.push(ProteinRecord {
            protein_id,
            gene,
            header: self.header,
            sequence: self.sequence,
        });
        Ok(())
    }
}

fn first_token(header: &str) -> &str {
    header.split_whitespace().next().unwrap_or("")
}

/// `(protein id, gene)` of a header, `None` when an Ensembl header names no usable gene.
fn parse_header(header: &str, options: &FastaOptions) -> Option<(String, String)> {
    let id = first_token(header);
    // `description:` runs to the end of an Ensembl header; its words are not tokens.
    let value_of = |key: &str| {
        header
            .split_whitespace()
            .skip(1)
            .take_while(|t| !t.starts_with("description:"))
            .find_map(|t| t.strip_prefix(key))
    };
    let symbol = value_of("gene_symbol:");
    let gene_id = value_of("gene:");
    if symbol.is_some() || gene_id.is_some() {
        let gene = symbol.or(gene_id.filter(|_| options.gene_fallback))?;
        return (!gene.is_empty()).then(|| (id.to_string(), gene.to_string()));
    }
    let protein = value_of("uniprot=").filter(|a| !a.is_empty()).unwrap_or(id);
    Some((protein.to_string(), id.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn write(dir: &tempfile::TempDir, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    }

    const ENSEMBL: &str = "\
>ENSP01.1 pep chromosome:GRCh38:11:1:2:-1 gene:ENSG01.1 transcript:ENST01.1 gene_biotype:protein_coding transcript_biotype:protein_coding gene_symbol:INS description:insulin [Source:HGNC]
malwmr
llpllalla
>ENSP02.1 pep chromosome:GRCh38:1:1:2:1 gene:ENSG02.3 transcript:ENST02.1 gene_biotype:protein_coding description:binds gene_symbol:FAKE
MKV
>ENSP03.1 pep gene:ENSG03.1 gene_symbol:GCG
MKS*LL
";

    #[test]
    fn ensembl_headers_take_the_gene_symbol_and_drop_what_they_must() {
        let dir = tempfile::tempdir().unwrap();
        let path = write(&dir, "x.pep.all.fa", ENSEMBL.as_bytes());
        let p = read_proteome(&path, &FastaOptions::default()).unwrap();
        assert_eq!(p.records.len(), 1);
        let r = &p.records[0];
        assert_eq!(
            (r.protein_id.as_str(), r.gene.as_str()),
            ("ENSP01.1", "INS")
        );
        assert_eq!(r.sequence, "MALWMRLLPLLALLA");
        assert!(r.header.starts_with("ENSP01.1 pep"));
        let expected = FastaReport {
            records: 3,
            kept: 1,
            dropped_stop: 1,
            dropped_no_gene: 1,
        };
        assert_eq!(p.report, expected);
        assert_eq!(p.report.dropped(), 2);

        let fallback = FastaOptions {
            gene_fallback: true,
        };
        let p = read_proteome(&path, &fallback).unwrap();
        assert_eq!(p.records[1].gene, "ENSG02.3");
        assert_eq!(p.report.dropped_no_gene, 0);
        assert_eq!(p.n_genes(), 2);
    }

    #[test]
    fn plain_headers_take_symbol_and_uniprot_accession() {
        let dir = tempfile::tempdir().unwrap();
        let text = b">INS uniprot=P01308\nMALW\n\n>GCG\nmks\n>INS uniprot=P99999\nMAAA\n";
        let p = read_proteome(&write(&dir, "h.fa", text), &FastaOptions::default()).unwrap();
        let got: Vec<_> = p
            .records
            .iter()
            .map(|r| (r.protein_id.as_str(), r.gene.as_str(), r.sequence.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("P01308", "INS", "MALW"),
                ("GCG", "GCG", "MKS"),
                ("P99999", "INS", "MAAA")
            ]
        );
        assert_eq!(p.n_genes(), 2);
    }

    #[test]
    fn gzip_is_read_whatever_the_name() {
        let dir = tempfile::tempdir().unwrap();
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(ENSEMBL.as_bytes()).unwrap();
        let path = write(&dir, "proteome.fa", &enc.finish().unwrap());
        let p = read_proteome(&path, &FastaOptions::default()).unwrap();
        assert_eq!(p.report.kept, 1);
    }

    fn error_of(text: &str) -> ReadError {
        let dir = tempfile::tempdir().unwrap();
        read_proteome(
            &write(&dir, "bad.fa", text.as_bytes()),
            &FastaOptions::default(),
        )
        .unwrap_err()
    }

    #[test]
    fn bad_inputs_name_the_line_and_the_problem() {
        assert!(matches!(error_of(""), ReadError::Empty { .. }));
        assert!(matches!(error_of("\n\n"), ReadError::Empty { .. }));
        let e = error_of("MKV\n>A\nMKV\n");
        assert!(matches!(e, ReadError::Malformed { line: 1, .. }), "{e}");
        assert!(e.to_string().contains("before any header"), "{e}");
        let e = error_of(">A\nMKV\n>  \nMKV\n");
        assert!(matches!(e, ReadError::Malformed { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("empty id"), "{e}");
        let e = error_of(">A\nMKV\nMK1V\n");
        assert!(matches!(e, ReadError::Malformed { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("invalid residue '1'"), "{e}");
        let e = error_of(">A\nMKV\n>B\n");
        assert!(matches!(e, ReadError::Malformed { line: 3, .. }), "{e}");
        assert!(e.to_string().contains("no sequence"), "{e}");
    }
}
