//! `add-dataset`: a count matrix with cell-type labels becomes a dataset, its cells and counts.

use super::{check_name, genes, IngestError};
use crate::atlas::{bulk, query_all, query_opt, species, AtlasError, DbContext};
use crate::io::{open_dataset, CountMatrix, DatasetStream, ReadError, ReadOptions};
use crate::progress;
use crate::Atlas;
use duckdb::arrow::array::{ArrayRef, Int32Array, Int64Array, StringArray};
use duckdb::arrow::datatypes::Int32Type;
use duckdb::Connection;
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Cells written per Arrow batch.
const CELLS_PER_BATCH: usize = 4096;

/// What to ingest and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetSpec {
    /// An `.h5ad` file or a 10x MatrixMarket directory.
    pub path: PathBuf,
    /// The species of the cells (must already be in the atlas).
    pub species: String,
    /// The dataset name; defaults to the file stem.
    pub name: Option<String>,
    /// The obs column holding cell-type labels; empty: the cells have no label (e.g. the query
    /// of a label transfer).
    pub label_column: String,
    /// Where the counts are and extra annotations.
    pub read: ReadOptions,
}

impl DatasetSpec {
    /// The dataset name: given, or the file (or directory) stem.
    pub fn dataset_name(&self) -> String {
        self.name.clone().unwrap_or_else(|| {
            let stem = self
                .path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned());
            stem.unwrap_or_else(|| "dataset".into())
        })
    }
}

/// What `add_dataset` added.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetReport {
    /// Dataset name.
    pub name: String,
    /// Species.
    pub species: String,
    /// Format read (`h5ad`, `mtx`).
    pub format: String,
    /// Cells added.
    pub cells: usize,
    /// Genes (columns) of the matrix.
    pub genes: usize,
    /// Genes with a protein sequence in the atlas for the species.
    pub genes_with_protein: usize,
    /// Columns whose symbol repeated an earlier one case-insensitively (their counts are summed).
    pub merged_genes: usize,
    /// Stored non-zero counts.
    pub nnz: usize,
    /// Sum of all counts.
    pub total_counts: u64,
    /// Cells per label, most frequent first.
    pub cell_types: Vec<(Option<String>, usize)>,
}

impl fmt::Display for DatasetReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} [{}, {}]: added {} cells x {} genes, {} non-zeros, {} counts",
            self.name,
            self.species,
            self.format,
            self.cells,
            self.genes,
            self.nnz,
            self.total_counts
        )?;
        let lost = self.genes - self.genes_with_protein;
        write!(
            f,
            "  genes with a protein: {} of {} ({:.1}%); {} genes have no protein and cannot enter macrogenes",
            self.genes_with_protein,
            self.genes,
            100.0 * self.genes_with_protein as f64 / self.genes.max(1) as f64,
            lost
        )?;
        if self.merged_genes > 0 {
            write!(
                f,
                "\n  {} columns repeated a symbol case-insensitively; their counts were summed",
                self.merged_genes
            )?;
        }
        write!(f, "\n  cell types: {}", self.cell_types.len())
    }
}

/// Reads a dataset file and adds it to the atlas in one transaction. The counts are read a chunk
/// of cells at a time ([`open_dataset`]) and written as they come, so memory does not grow with
/// the number of cells (CSR h5ad); a fault found in any chunk rolls the whole dataset back.
pub fn add_dataset(atlas: &mut Atlas, spec: &DatasetSpec) -> crate::Result<DatasetReport> {
    let name = spec.dataset_name();
    check_name("dataset", &name)?;
    species::require(atlas.connection(), &spec.species)?;
    let checksum = checksum(&spec.path)?;
    let stream = open_dataset(&spec.path, &spec.read)?;
    let fallback = stream.fallback.clone();
    let mut add = |stream| add_stream(atlas, spec, &name, &checksum, stream);
    match (add(stream), fallback) {
        // X held non-integers: the counts are in raw/X, as `read_dataset` decides (its error
        // is X's when raw/X cannot be read either).
        (Err(crate::Error::Read(error @ ReadError::NonIntegerCounts { .. })), Some(options)) => {
            let retried = open_dataset(&spec.path, &options).map_err(crate::Error::from);
            retried.and_then(&mut add).map_err(|e| match e {
                crate::Error::Read(_) => error.into(),
                other => other,
            })
        }
        (result, _) => result,
    }
}

fn add_stream(
    atlas: &mut Atlas,
    spec: &DatasetSpec,
    name: &str,
    checksum: &str,
    mut stream: DatasetStream,
) -> crate::Result<DatasetReport> {
    if stream.n_cells() == 0 {
        return Err(unusable(spec, "the count matrix has no cells".into()).into());
    }
    let labels = label_values(spec, &stream)?;
    bulk::flush_each_row_group(atlas.connection())?;
    atlas.write(|tx| write_dataset(tx, spec, name, checksum, &mut stream, &labels))
}

fn label_values(
    spec: &DatasetSpec,
    file: &DatasetStream,
) -> Result<Vec<Option<String>>, IngestError> {
    if spec.label_column.is_empty() {
        return Ok(vec![None; file.n_cells()]);
    }
    let problem = match file.obs_column(&spec.label_column) {
        Some(column) if column.values.iter().any(Option::is_some) => {
            return Ok(column.values.clone())
        }
        Some(_) => "holds no value (every cell is missing it)",
        None if file.obs.is_empty() => {
            "is not there: the file has no cell annotations (give a 10x directory's labels with \
             --obs FILE.csv, barcode first)"
        }
        None => "is not in the file",
    };
    Err(IngestError::BadLabelColumn {
        path: spec.path.clone(),
        column: spec.label_column.clone(),
        problem,
        available: match file.obs.len() {
            0 => "(none)".into(),
            _ => file
                .obs
                .iter()
                .map(|c| c.name.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        },
    })
}

/// Sums over the chunks written.
#[derive(Default)]
struct Totals {
    nnz: usize,
    counts: u64,
}

fn write_dataset(
    conn: &Connection,
    spec: &DatasetSpec,
    name: &str,
    checksum: &str,
    file: &mut DatasetStream,
    labels: &[Option<String>],
) -> crate::Result<DatasetReport> {
    let species_id = species::require(conn, &spec.species)?;
    refuse_duplicate(conn, spec, name, checksum)?;
    let symbols: Vec<&str> = file.genes.iter().map(String::as_str).collect();
    let (gene_ids, _) = genes::resolve_or_create(conn, species_id, &symbols)?;
    let with_protein = genes_with_protein(conn, species_id)?;
    if !gene_ids.iter().any(|g| with_protein.contains(g)) {
        let reason = format!(
            "none of its {} genes has a protein of species {:?}, so none can enter macrogenes; \
             check --species and that the genes are named as in the species' proteome (symbols, \
             matched case-insensitively)",
            gene_ids.len(),
            spec.species
        );
        return Err(unusable(spec, reason).into());
    }
    let distinct: HashSet<i32> = gene_ids.iter().copied().collect();
    let n_with_protein = gene_ids.iter().filter(|g| with_protein.contains(g)).count();
    let dataset_id = insert_dataset(conn, spec, name, checksum, file, species_id, n_with_protein)?;
    insert_dataset_genes(conn, dataset_id, &gene_ids)?;
    let first_cell: i64 = conn
        .query_row("SELECT coalesce(max(cell_id), 0) + 1 FROM cells", [], |r| {
            r.get(0)
        })
        .context("allocating cell ids")?;
    insert_obs(conn, first_cell, file, &spec.label_column)?;
    let merge = distinct.len() < gene_ids.len();
    let totals = insert_chunks(conn, dataset_id, first_cell, file, labels, &gene_ids, merge)?;
    conn.execute(
        "UPDATE datasets SET nnz = ? WHERE dataset_id = ?",
        duckdb::params![totals.nnz as i64, dataset_id],
    )
    .context("recording the dataset's non-zeros")?;
    Ok(DatasetReport {
        name: name.into(),
        species: spec.species.clone(),
        format: file.format.into(),
        cells: file.n_cells(),
        genes: file.genes.len(),
        genes_with_protein: n_with_protein,
        merged_genes: gene_ids.len() - distinct.len(),
        nnz: totals.nnz,
        total_counts: totals.counts,
        cell_types: cell_type_counts(labels),
    })
}

/// Reads the counts chunk by chunk, writing each chunk's cells and counts.
fn insert_chunks(
    conn: &Connection,
    dataset_id: i32,
    first_cell: i64,
    file: &mut DatasetStream,
    labels: &[Option<String>],
    gene_ids: &[i32],
    merge: bool,
) -> crate::Result<Totals> {
    let bar = progress::bar(file.n_cells() as u64, "ingesting cells");
    let (mut done, mut totals) = (0usize, Totals::default());
    while let Some(chunk) = file.next_chunk()? {
        let n = chunk.n_cells();
        let first = first_cell + done as i64;
        insert_cells(conn, dataset_id, first, &chunk, &labels[done..done + n])?;
        insert_counts(conn, first, &chunk, gene_ids, merge)?;
        totals.nnz += chunk.nnz();
        totals.counts += chunk.csr.data.iter().map(|&c| u64::from(c)).sum::<u64>();
        done += n;
        bar.inc(n as u64);
    }
    bar.finish_and_clear();
    Ok(totals)
}

fn unusable(spec: &DatasetSpec, reason: String) -> IngestError {
    IngestError::UnusableDataset {
        path: spec.path.clone(),
        reason,
    }
}

fn refuse_duplicate(
    conn: &Connection,
    spec: &DatasetSpec,
    name: &str,
    checksum: &str,
) -> crate::Result<()> {
    let by_name: Option<String> = query_opt(
        conn,
        "SELECT name FROM datasets WHERE name = ?",
        [name],
        "checking dataset names",
        |r| r.get(0),
    )?;
    let by_content: Option<String> = query_opt(
        conn,
        "SELECT name FROM datasets WHERE checksum = ?",
        [checksum],
        "checking dataset checksums",
        |r| r.get(0),
    )?;
    let reason = match (by_name, by_content) {
        (Some(existing), _) => {
            format!("a dataset named {existing:?} is already in the atlas (choose another --name)")
        }
        (None, Some(existing)) => format!(
            "identical content (sha256 {checksum}) is already in the atlas as dataset {existing:?}"
        ),
        (None, None) => return Ok(()),
    };
    Err(IngestError::DuplicateDataset {
        path: spec.path.clone(),
        reason,
    }
    .into())
}

fn genes_with_protein(conn: &Connection, species_id: i32) -> Result<HashSet<i32>, AtlasError> {
    let ids = query_all(
        conn,
        "SELECT DISTINCT gene_id FROM proteins WHERE species_id = ?",
        [species_id],
        "reading genes with proteins",
        |r| r.get(0),
    )?;
    Ok(ids.into_iter().collect())
}

/// The dataset's row; its `nnz` is set once the counts are written.
fn insert_dataset(
    conn: &Connection,
    spec: &DatasetSpec,
    name: &str,
    checksum: &str,
    file: &DatasetStream,
    species_id: i32,
    n_with_protein: usize,
) -> Result<i32, AtlasError> {
    conn.query_row(
        "INSERT INTO datasets (name, species_id, source_file, checksum, format, label_column,
             n_cells, n_genes, n_genes_with_protein, nnz)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING dataset_id",
        duckdb::params![
            name,
            species_id,
            spec.path.display().to_string(),
            checksum,
            file.format,
            spec.label_column,
            file.n_cells() as i64,
            file.genes.len() as i64,
            n_with_protein as i64,
            0i64
        ],
        |r| r.get(0),
    )
    .context("adding the dataset")
}

fn insert_dataset_genes(
    conn: &Connection,
    dataset_id: i32,
    gene_ids: &[i32],
) -> Result<(), AtlasError> {
    let n = gene_ids.len();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "dataset_id",
            Arc::new(Int32Array::from(vec![dataset_id; n])),
        ),
        (
            "position",
            Arc::new(Int32Array::from_iter_values(0..n as i32)),
        ),
        ("gene_id", Arc::new(Int32Array::from(gene_ids.to_vec()))),
    ];
    bulk::append(conn, "dataset_genes", columns)
}

fn insert_cells(
    conn: &Connection,
    dataset_id: i32,
    first_cell: i64,
    counts: &CountMatrix,
    labels: &[Option<String>],
) -> Result<(), AtlasError> {
    let n = counts.n_cells();
    let rows = (0..n).map(|i| counts.row(i));
    let library: Vec<i64> = rows
        .clone()
        .map(|(_, c)| c.iter().map(|&x| x as i64).sum())
        .collect();
    let n_genes: Vec<i32> = rows.map(|(g, _)| g.len() as i32).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "cell_id",
            Arc::new(Int64Array::from_iter_values(
                first_cell..first_cell + n as i64,
            )),
        ),
        (
            "dataset_id",
            Arc::new(Int32Array::from(vec![dataset_id; n])),
        ),
        (
            "barcode",
            Arc::new(StringArray::from_iter_values(&counts.barcodes)),
        ),
        ("cell_type", Arc::new(StringArray::from(labels.to_vec()))),
        ("library_size", Arc::new(Int64Array::from(library))),
        ("n_genes", Arc::new(Int32Array::from(n_genes))),
    ];
    bulk::append(conn, "cells", columns)
}

/// Every obs column but the label, long format, missing values skipped.
fn insert_obs(
    conn: &Connection,
    first_cell: i64,
    file: &DatasetStream,
    label: &str,
) -> Result<(), AtlasError> {
    let (mut cells, mut names, mut values) = (Vec::new(), Vec::new(), Vec::new());
    for column in file.obs.iter().filter(|c| c.name != label) {
        for (i, value) in column.values.iter().enumerate() {
            if let Some(value) = value {
                cells.push(first_cell + i as i64);
                names.push(column.name.as_str());
                values.push(value.as_str());
            }
        }
    }
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("cell_id", Arc::new(Int64Array::from(cells))),
        ("column", Arc::new(StringArray::from(names))),
        ("value", Arc::new(StringArray::from(values))),
    ];
    bulk::append(conn, "cell_obs", columns)
}

/// One row per cell: the cell's gene ids and counts as two parallel lists.
fn insert_counts(
    conn: &Connection,
    first_cell: i64,
    counts: &CountMatrix,
    gene_ids: &[i32],
    merge_repeats: bool,
) -> Result<(), AtlasError> {
    for start in (0..counts.n_cells()).step_by(CELLS_PER_BATCH) {
        let end = (start + CELLS_PER_BATCH).min(counts.n_cells());
        let rows: Vec<(Vec<i32>, Vec<i32>)> = (start..end)
            .map(|i| cell_row(counts.row(i), gene_ids, merge_repeats))
            .collect();
        let columns: Vec<(&str, ArrayRef)> = vec![
            (
                "cell_id",
                Arc::new(Int64Array::from_iter_values(
                    first_cell + start as i64..first_cell + end as i64,
                )),
            ),
            (
                "gene_ids",
                bulk::list_column::<Int32Type, _>(rows.iter().map(|r| r.0.as_slice())),
            ),
            (
                "counts",
                bulk::list_column::<Int32Type, _>(rows.iter().map(|r| r.1.as_slice())),
            ),
        ];
        bulk::append(conn, "counts", columns)?;
    }
    Ok(())
}

/// A cell's entries as (gene id, count) lists; repeated gene ids are summed when `merge`.
fn cell_row(
    (columns, values): (&[u32], &[u32]),
    gene_ids: &[i32],
    merge: bool,
) -> (Vec<i32>, Vec<i32>) {
    if !merge {
        let ids = columns.iter().map(|&c| gene_ids[c as usize]).collect();
        return (ids, values.iter().map(|&v| v as i32).collect());
    }
    let mut summed: BTreeMap<i32, i32> = BTreeMap::new();
    for (&c, &v) in columns.iter().zip(values) {
        *summed.entry(gene_ids[c as usize]).or_default() += v as i32;
    }
    summed.into_iter().unzip()
}

fn cell_type_counts(labels: &[Option<String>]) -> Vec<(Option<String>, usize)> {
    let mut counts: BTreeMap<&Option<String>, usize> = BTreeMap::new();
    for label in labels {
        *counts.entry(label).or_default() += 1;
    }
    let mut counts: Vec<(Option<String>, usize)> =
        counts.into_iter().map(|(l, n)| (l.clone(), n)).collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    counts
}

/// sha256 of a file, or of every file of a directory (names and contents, sorted by name).
fn checksum(path: &Path) -> Result<String, ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.into(),
        source,
    };
    let mut hasher = Sha256::new();
    if path.is_dir() {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(io_err)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
            .collect();
        entries.sort();
        for entry in entries {
            hasher.update(entry.file_name().unwrap_or_default().as_encoded_bytes());
            hash_file(&entry, &mut hasher)?;
        }
    } else {
        hash_file(path, &mut hasher)?;
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn hash_file(path: &Path, hasher: &mut Sha256) -> Result<(), ReadError> {
    let io_err = |source| ReadError::Io {
        path: path.into(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io_err)?;
    std::io::copy(&mut file, hasher).map_err(io_err)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::add_proteome;
    use crate::io::FastaOptions;

    /// `X` normalised, `raw/X` counts: the streamed `X` fails on its first value and the dataset
    /// is read from `raw/X` instead, in a new transaction; the dataset row gets the stored nnz.
    #[test]
    fn a_normalised_x_is_retried_from_raw_x() {
        let dir = tempfile::tempdir().unwrap();
        let fasta = dir.path().join("p.fa");
        std::fs::write(&fasta, ">A\nMKV\n>B\nMKL\n").unwrap();
        let h5ad = dir.path().join("raw.h5ad");
        crate::io::h5ad::tests::write_normalised_with_raw(&h5ad).unwrap();
        let mut atlas = Atlas::in_memory().unwrap();
        add_proteome(&mut atlas, "human", &fasta, &FastaOptions::default()).unwrap();
        let spec = DatasetSpec {
            path: h5ad,
            species: "human".into(),
            name: None,
            label_column: String::new(),
            read: ReadOptions::default(),
        };
        let report = add_dataset(&mut atlas, &spec).unwrap();
        assert_eq!((report.genes, report.nnz, report.total_counts), (2, 1, 4));
        let stored: (i64, i64) = atlas
            .connection()
            .query_row("SELECT nnz, n_cells FROM datasets", [], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .unwrap();
        assert_eq!(stored, (1, 1));
    }
}
