//! Incremental integration: a dataset added after training, of a species the model was trained
//! on, is embedded with the finished fine-tuned model (no training) and becomes searchable
//! (`satlas embed-dataset`, `satlas add-dataset --embed`, `CALL satlas_embed_dataset(...)`).
//!
//! The dataset's counts are read over its species' selected genes of the run's macrogene set,
//! cells without any count there are dropped (as in training), the rest are embedded with
//! [`Saturn::embed`] and stored in `cell_embeddings` in one transaction. If the run has an HNSW
//! index it is then extended with just the new cells (the index module's extend path), in a
//! second transaction. [`add_and_embed_dataset`] chains the ingest and the embedding
//! (`add-dataset --embed`, `transfer --query FILE`).

use super::runs::{finished_model_run, species_cells, weights_of, write_embeddings};
use super::{ModelError, Saturn};
use crate::atlas::counts::Cells;
use crate::atlas::{self, query_all, query_opt, DbContext};
use crate::index::{self, Access, IndexParams, Origin};
use crate::ingest::{add_dataset, DatasetReport, DatasetSpec};
use crate::macrogene::MacrogeneSet;
use crate::runs::embeddings;
use crate::Atlas;
use duckdb::Connection;
use std::fmt;

/// Adds the dataset of `spec` and embeds it with the finished run `run` (default: the newest):
/// two transactions, the ingest's then the embedding's, so if embedding fails the dataset stays
/// added and the error ([`ModelError::AddedNotEmbedded`]) says how to finish.
pub fn add_and_embed_dataset(
    atlas: &mut Atlas,
    spec: &DatasetSpec,
    run: Option<i32>,
) -> crate::Result<(DatasetReport, EmbedReport)> {
    let added = add_dataset(atlas, spec)?;
    let embedded =
        embed_dataset(atlas, &added.name, run).map_err(|e| ModelError::AddedNotEmbedded {
            dataset: added.name.clone(),
            source: Box::new(e),
        })?;
    Ok((added, embedded))
}

/// What [`embed_dataset`] did.
#[derive(Debug, Clone)]
pub struct EmbedReport {
    /// The fine-tuning run whose model embedded the cells.
    pub run_id: i32,
    /// The dataset.
    pub dataset: String,
    /// Its species.
    pub species: String,
    /// Cells embedded and stored.
    pub embedded_cells: usize,
    /// Cells left out because they have no count in the selected genes.
    pub dropped_cells: usize,
    /// What happened to the run's HNSW index (`None`: the run has no index).
    pub index: Option<Origin>,
    /// How many of the model's genes for the species the dataset measures, of how many.
    pub gene_overlap: (usize, usize),
}

/// Below this share of the model's genes, a dataset's embeddings get a warning.
pub const LOW_GENE_OVERLAP: f64 = 0.5;

impl EmbedReport {
    /// The share of the model's genes for the species that the dataset measures.
    pub fn overlap_fraction(&self) -> f64 {
        self.gene_overlap.0 as f64 / self.gene_overlap.1.max(1) as f64
    }
}

impl fmt::Display for EmbedReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} [{}]: embedded {} cells with finetune run #{}",
            self.dataset, self.species, self.embedded_cells, self.run_id
        )?;
        if self.dropped_cells > 0 {
            write!(
                f,
                " ({} cells without counts in the selected genes left out)",
                self.dropped_cells
            )?;
        }
        match self.index {
            Some(origin) => writeln!(f, "; HNSW index {origin}")?,
            None => writeln!(
                f,
                "; the run has no HNSW index (`satlas index build` to make one)"
            )?,
        }
        let (present, total) = self.gene_overlap;
        write!(
            f,
            "  gene overlap: {present} of the model's {total} {} genes ({:.1}%)",
            self.species,
            100.0 * self.overlap_fraction()
        )?;
        if self.overlap_fraction() < LOW_GENE_OVERLAP {
            write!(
                f,
                "\n  WARNING: low gene overlap: the missing genes count as zero, so these cells' embeddings \
                 are unreliable; check gene symbols (species, case) or use a dataset with more genes"
            )?;
        }
        Ok(())
    }
}

/// Embeds the cells of `dataset` with finetune run `run` (default: the newest finished one) and
/// stores them in one transaction; then inserts them into the run's HNSW index, if it has one.
///
/// Refused, with the atlas unchanged, when the dataset is unknown, its species is not one the
/// model was trained on, the run has embedded it already, or there is no finished finetune run.
pub fn embed_dataset(
    atlas: &mut Atlas,
    dataset: &str,
    run: Option<i32>,
) -> crate::Result<EmbedReport> {
    let conn = atlas.connection_mut();
    let (dataset_id, species) = find_dataset(conn, dataset)?;
    let (run, set_id, config) = finished_model_run(conn, run)?;
    let set = MacrogeneSet::read(conn, Some(set_id))?;
    let Some(genes) = set.species.iter().find(|s| s.name == species) else {
        return Err(ModelError::NewSpecies {
            dataset: dataset.into(),
            species,
            run,
            known: config.species.join(", "),
        }
        .into());
    };
    let already = embeddings::count_in_dataset(conn, run, dataset_id)?;
    if already > 0 {
        return Err(ModelError::AlreadyEmbedded {
            dataset: dataset.into(),
            run,
            cells: already,
        }
        .into());
    }
    let gene_overlap = gene_overlap(conn, dataset_id, &genes.gene_ids)?;
    let (cells, dropped) = species_cells(conn, Cells::Dataset(dataset_id), genes)?;
    if dropped > 0 {
        eprintln!(
            "warning: {dropped} cells of {dataset} have no count in the selected genes and are left out"
        );
    }
    let model = Saturn::load_bytes(config, &weights_of(conn, run)?)?;
    let embedded = if cells.cell_ids.is_empty() {
        0
    } else {
        atlas::write(conn, |tx| {
            write_embeddings(tx, run, &model, std::slice::from_ref(&cells))
        })?
    };
    let has_index: bool = conn
        .query_row(
            "SELECT count(*) > 0 FROM hnsw_indexes WHERE model_run_id = ?",
            [run],
            |r| r.get(0),
        )
        .context("looking for the run's HNSW index")?;
    let index = if has_index && embedded > 0 {
        let params = IndexParams::default().check()?;
        let (_, origin) = atlas::write(conn, |tx| index::open(tx, run, Access::ReadWrite, params))?;
        Some(origin)
    } else if has_index {
        Some(Origin::Loaded)
    } else {
        None
    };
    Ok(EmbedReport {
        run_id: run,
        dataset: dataset.into(),
        species,
        embedded_cells: embedded,
        dropped_cells: dropped,
        index,
        gene_overlap,
    })
}

/// How many of `model_genes` the dataset measures, and how many there are.
fn gene_overlap(
    conn: &Connection,
    dataset_id: i32,
    model_genes: &[i32],
) -> crate::Result<(usize, usize)> {
    let measured: std::collections::HashSet<i32> = crate::atlas::query_all(
        conn,
        "SELECT gene_id FROM dataset_genes WHERE dataset_id = ?",
        [dataset_id],
        "reading the dataset's genes",
        |r| r.get(0),
    )?
    .into_iter()
    .collect();
    let present = model_genes.iter().filter(|g| measured.contains(g)).count();
    Ok((present, model_genes.len()))
}

/// The dataset's id and species name.
fn find_dataset(conn: &Connection, name: &str) -> crate::Result<(i32, String)> {
    let row: Option<(i32, String)> = query_opt(
        conn,
        "SELECT d.dataset_id, s.name FROM datasets d JOIN species s USING (species_id)
             WHERE d.name = ?",
        [name],
        "finding the dataset",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some(found) = row {
        return Ok(found);
    }
    let known = query_all(
        conn,
        "SELECT name FROM datasets ORDER BY name",
        [],
        "listing datasets",
        |r| r.get::<_, String>(0),
    )?;
    Err(ModelError::UnknownDataset {
        name: name.into(),
        known: if known.is_empty() {
            "none".into()
        } else {
            known.join(", ")
        },
    }
    .into())
}
