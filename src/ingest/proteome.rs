//! `add-proteome`: a FASTA of protein sequences becomes the species' genes and proteins.

use super::{check_name, genes, IngestError};
use crate::atlas::{bulk, query_all, species, AtlasError, DbContext};
use crate::io::{read_proteome, FastaOptions, FastaReport, Proteome};
use crate::Atlas;
use duckdb::arrow::array::{ArrayRef, Int32Array, StringArray};
use duckdb::Connection;
use std::collections::HashSet;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// What `add_proteome` added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProteomeReport {
    /// The species the proteins were added to.
    pub species: String,
    /// Kept and dropped record counts.
    pub fasta: FastaReport,
    /// Distinct genes among the kept proteins.
    pub genes: usize,
    /// Of those, genes the atlas did not know before.
    pub new_genes: usize,
}

impl fmt::Display for ProteomeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}: added {} proteins of {} genes ({} new); dropped {} with a stop codon '*', {} without a gene symbol",
            self.species,
            self.fasta.kept,
            self.genes,
            self.new_genes,
            self.fasta.dropped_stop,
            self.fasta.dropped_no_gene
        )
    }
}

/// Reads a proteome FASTA and adds its proteins to `species` (created if new), in one transaction.
pub fn add_proteome(
    atlas: &mut Atlas,
    species_name: &str,
    path: &Path,
    options: &FastaOptions,
) -> crate::Result<ProteomeReport> {
    check_name("species", species_name)?;
    let proteome = read_proteome(path, options)?;
    atlas.write(|tx| write_proteome(tx, species_name, path, &proteome))
}

fn write_proteome(
    conn: &Connection,
    species_name: &str,
    path: &Path,
    proteome: &Proteome,
) -> crate::Result<ProteomeReport> {
    let species_id = species::find_or_create(conn, species_name)?;
    refuse_known_proteins(conn, species_id, species_name, path, proteome)?;
    let symbols: Vec<&str> = proteome.records.iter().map(|r| r.gene.as_str()).collect();
    let (gene_ids, new_genes) = genes::resolve_or_create(conn, species_id, &symbols)?;
    insert_proteins(conn, species_id, path, proteome, gene_ids.clone())?;
    Ok(ProteomeReport {
        species: species_name.into(),
        fasta: proteome.report.clone(),
        genes: gene_ids.into_iter().collect::<HashSet<_>>().len(),
        new_genes,
    })
}

/// A proteome is added once: a (protein, gene) pair already present for the species (or
/// repeated within the file) refuses the whole file. One accession may serve several genes.
fn refuse_known_proteins(
    conn: &Connection,
    species_id: i32,
    species_name: &str,
    path: &Path,
    proteome: &Proteome,
) -> crate::Result<()> {
    let in_atlas: HashSet<(String, String)> = query_all(
        conn,
        "SELECT p.accession, g.symbol_key FROM proteins p JOIN genes g USING (gene_id)
         WHERE p.species_id = ?",
        [species_id],
        "reading proteins",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?
    .into_iter()
    .collect();
    let mut in_file = HashSet::new();
    for record in &proteome.records {
        let key = (record.protein_id.clone(), genes::symbol_key(&record.gene));
        let found = if in_atlas.contains(&key) {
            format!("is already in the atlas for species {species_name:?}")
        } else if !in_file.insert(key) {
            "appears twice in the file".to_string()
        } else {
            continue;
        };
        return Err(IngestError::DuplicateProtein {
            path: path.into(),
            accession: format!("{} ({})", record.protein_id, record.gene),
            found,
        }
        .into());
    }
    Ok(())
}

fn insert_proteins(
    conn: &Connection,
    species_id: i32,
    path: &Path,
    proteome: &Proteome,
    gene_ids: Vec<i32>,
) -> Result<(), AtlasError> {
    let first_id: i32 = conn
        .query_row(
            "SELECT coalesce(max(protein_id), 0) + 1 FROM proteins",
            [],
            |r| r.get(0),
        )
        .context("allocating protein ids")?;
    let n = proteome.records.len() as i32;
    let source = path.display().to_string();
    let records = &proteome.records;
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "protein_id",
            Arc::new(Int32Array::from_iter_values(first_id..first_id + n)),
        ),
        (
            "species_id",
            Arc::new(Int32Array::from(vec![species_id; n as usize])),
        ),
        ("gene_id", Arc::new(Int32Array::from(gene_ids))),
        (
            "accession",
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| &r.protein_id),
            )),
        ),
        (
            "header",
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| &r.header),
            )),
        ),
        (
            "sequence",
            Arc::new(StringArray::from_iter_values(
                records.iter().map(|r| &r.sequence),
            )),
        ),
        (
            "source_file",
            Arc::new(StringArray::from(vec![source; n as usize])),
        ),
    ];
    bulk::append(conn, "proteins", columns)
}
