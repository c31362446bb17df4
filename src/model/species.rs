//! A new species added to a trained model without retraining the shared network
//! (`satlas add-species`, `CALL saturn_add_species(...)`).
//!
//! On top of a finished finetune (or add-species) run, the species' genes are assigned to the
//! run's STORED macrogene centroids by the rules the set was built with
//! ([`MacrogeneSet::assign_species`]); the network gets the species appended
//! ([`Saturn::with_species`]) and only its own parts (its gene weights, its one-hot column of the
//! decoder, its dropout decoder and dispersion) are trained on its cells with the pretraining
//! objective ([`train_species`]); the shared encoder is frozen, so every existing cell's
//! embedding is unchanged. The result is a new run (`kind = 'add_species'`, parent = the run it
//! extends) that owns: the extended model, a macrogene set extending the parent's, the parent's
//! cell embeddings copied bit for bit plus the new species' cells, and the parent's HNSW index
//! (if any) copied and extended with the new cells.
//!
//! Like other runs, the run is recorded as `running` (with its extended macrogene set, in one
//! transaction) before it trains, logs losses per epoch in `training_log` and stores weights every
//! `checkpoint_every` epochs; the same command resumes it. Embeddings and index are written in
//! the one transaction that marks it `done`: until then no cell of the species is searchable and
//! no default (knn, transfer, eval, embed-dataset) uses the run. A refused call writes nothing.

use super::runs::{
    finish_run, finished_model_run, species_cells, start_or_resume, train_recorded, weights_of,
    write_embeddings, RunReport, SpeciesCells, StoredParams,
};
use super::{train_species, ModelError, PretrainParams, Saturn, SaturnConfig, SpeciesData};
use crate::atlas::counts::Cells;
use crate::atlas::{self, query_opt, species, AtlasError, DbContext};
use crate::index::{self, Access, IndexParams, Origin};
use crate::macrogene::{MacrogeneSet, SpeciesAssignment};
use crate::protein::store::read_gene_matrix;
use crate::runs::embeddings;
use crate::Atlas;
use duckdb::Connection;
use ndarray::Array2;
use serde::{Deserialize, Serialize};
use std::fmt;

/// What `run_add_species` needs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AddSpeciesRequest {
    /// The species to add (proteome, gene embeddings and datasets in the atlas).
    pub species: String,
    /// Training parameters (SATURN's pretraining defaults; `regulariser_weight` and `l1_penalty`
    /// apply to the new species' weights).
    pub params: PretrainParams,
    /// The finished finetune or add-species run to extend (default: the newest).
    pub parent_run: Option<i32>,
    /// Store the weights every this many epochs (the resume granularity).
    pub checkpoint_every: usize,
}

/// What `run_add_species` did.
#[derive(Debug, Clone)]
pub struct AddSpeciesReport {
    /// The new run: its id, the epochs run, the new species' cells embedded and dropped.
    pub run: RunReport,
    /// The run it extends.
    pub parent_run: i32,
    /// The species added.
    pub species: String,
    /// The macrogene set written for the new run (the parent's extended with the species).
    pub macrogene_set_id: i32,
    /// Macrogenes the species' genes were assigned to.
    pub n_macrogenes: usize,
    /// Genes selected (highly variable among those with an embedding).
    pub selected_genes: usize,
    /// The species' dataset genes with an embedding.
    pub candidate_genes: usize,
    /// Embeddings of the parent's cells copied unchanged.
    pub copied_cells: usize,
    /// What happened to the index (`None`: the parent has no HNSW index).
    pub index: Option<Origin>,
}

impl fmt::Display for AddSpeciesReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "{} added to model run #{} as run #{} (macrogene set #{}): {} highly variable genes of {} \
             with an embedding assigned to the {} stored macrogenes",
            self.species,
            self.parent_run,
            self.run.run_id,
            self.macrogene_set_id,
            self.selected_genes,
            self.candidate_genes,
            self.n_macrogenes
        )?;
        if let (Some(first), Some(last)) = (self.run.logs.first(), self.run.logs.last()) {
            writeln!(
                f,
                "  trained its weights and decoder head (encoder frozen), epochs {}..{}: loss {:.4} -> {:.4}",
                first.epoch, last.epoch, first.loss, last.loss
            )?;
        }
        write!(
            f,
            "  embedded {} {} cells",
            self.run.embedded_cells, self.species
        )?;
        if self.run.dropped_cells > 0 {
            write!(
                f,
                " ({} without counts in the selected genes left out)",
                self.run.dropped_cells
            )?;
        }
        write!(
            f,
            "; {} embeddings of run #{} copied unchanged",
            self.copied_cells, self.parent_run
        )?;
        match self.index {
            Some(origin) => writeln!(f, "; HNSW index {origin}"),
            None => writeln!(
                f,
                "; run #{} had no HNSW index (`satlas index build` makes one)",
                self.parent_run
            ),
        }
    }
}

/// Adds `request.species` to a trained model: assigns its genes to the stored macrogenes, trains
/// its own parameters with the shared network frozen, embeds its cells and makes them searchable,
/// as a new run (see the module doc). Refused, with the atlas unchanged, for an unknown species,
/// a species the run already has, or one whose proteome, gene embeddings or datasets are missing.
pub fn run_add_species(
    atlas: &mut Atlas,
    request: &AddSpeciesRequest,
) -> crate::Result<AddSpeciesReport> {
    let conn = atlas.connection_mut();
    request.params.check()?;
    let (parent, parent_set, parent_config) = finished_model_run(conn, request.parent_run)?;
    let name = request.species.as_str();
    let species_id = species::require(conn, name)?;
    if parent_config.species.iter().any(|s| s == name) {
        return Err(ModelError::SpeciesAlreadyTrained {
            species: name.into(),
            run: parent,
            known: parent_config.species.join(", "),
        }
        .into());
    }
    let set = MacrogeneSet::read(conn, Some(parent_set))?;
    check_ready(conn, parent, species_id, name, set.embedding_model_id)?;
    let assignment = set.assign_species(conn, species_id, name)?;
    let (cells, dropped) = species_cells(conn, Cells::Species(species_id), &assignment.genes)?;
    if dropped > 0 {
        eprintln!(
            "warning: {dropped} {name} cells have no count in the selected genes and are left out"
        );
    }
    let mut config = parent_config.clone();
    config.species.push(name.into());
    config
        .genes_per_species
        .push(assignment.genes.gene_ids.len());
    let request = AddSpeciesRequest {
        parent_run: Some(parent),
        ..request.clone()
    };
    let stored = StoredParams {
        config: config.clone(),
        request: request.clone(),
    };
    let (run_id, checkpoint) = start_or_resume(
        conn,
        "add_species",
        Some(parent),
        |tx| set.write_extended(tx, &assignment),
        &stored,
    )?;
    let mut model = match &checkpoint {
        Some((_, bytes)) => Saturn::load_bytes(config, bytes)?,
        None => {
            let base = Saturn::load_bytes(parent_config, &weights_of(conn, parent)?)?;
            tch::manual_seed(request.params.seed as i64); // the new parts' initial weights
            base.with_species(name, assignment.weights.view())?
        }
    };
    let mut params = request.params.clone();
    params.start_epoch = checkpoint.as_ref().map_or(0, |(epoch, _)| epoch + 1);
    let embeddings = gene_embeddings(conn, &set, model.config(), &assignment)?;
    let data = SpeciesData {
        species: name,
        counts: cells.counts.view()?,
        labels: &cells.labels,
    };
    let epochs = (params.start_epoch, params.epochs);
    let logs = train_recorded(
        conn,
        run_id,
        epochs,
        request.checkpoint_every,
        &format!("adding {name}"),
        |on_epoch| train_species(&mut model, &data, embeddings.view(), &params, on_epoch),
    )?;
    let (copied, embedded, index) =
        atlas::write(conn, |tx| finish(tx, run_id, parent, &model, &cells, &logs))?;
    let set_id = conn
        .query_row(
            "SELECT macrogene_set_id FROM model_runs WHERE model_run_id = ?",
            [run_id],
            |r| r.get(0),
        )
        .context("reading the run's macrogene set")?;
    Ok(AddSpeciesReport {
        run: RunReport {
            run_id,
            logs,
            dropped_cells: dropped,
            embedded_cells: embedded,
        },
        parent_run: parent,
        species: name.into(),
        macrogene_set_id: set_id,
        n_macrogenes: set.weights.nrows(),
        selected_genes: assignment.genes.gene_ids.len(),
        candidate_genes: assignment.candidates,
        copied_cells: copied,
        index,
    })
}

/// The final transaction: the parent's embeddings copied, the new cells embedded, the parent's
/// index copied and extended, the run marked done. Returns (copied cells, embedded cells, index
/// origin).
fn finish(
    tx: &Connection,
    run: i32,
    parent: i32,
    model: &Saturn,
    cells: &SpeciesCells,
    logs: &[super::EpochLog],
) -> crate::Result<(usize, usize, Option<Origin>)> {
    let copied = embeddings::copy(tx, parent, run)?;
    let embedded = write_embeddings(tx, run, model, std::slice::from_ref(cells))?;
    let index = extend_index(tx, parent, run)?;
    finish_run(tx, run, model, logs)?;
    Ok((copied, embedded, index))
}

/// Copies the parent run's stored HNSW index to `run` and brings it up to date (the copied cells
/// match it, so only the new species' cells are inserted). `None` if the parent has no index.
fn extend_index(tx: &Connection, parent: i32, run: i32) -> crate::Result<Option<Origin>> {
    let copied = tx
        .execute(
            "INSERT INTO hnsw_indexes
             SELECT ?, params, n_cells, cells_digest, graph, data, current_timestamp
             FROM hnsw_indexes WHERE model_run_id = ?",
            [run, parent],
        )
        .context("copying the parent run's HNSW index")?;
    if copied == 0 {
        return Ok(None);
    }
    let (_, origin) = index::open(tx, run, Access::ReadWrite, IndexParams::default().check()?)?;
    Ok(Some(origin))
}

/// Refuses a species without a proteome, without datasets, or without gene embeddings from the
/// macrogene set's embedding model, naming everything that is missing and the commands to run.
fn check_ready(
    conn: &Connection,
    run: i32,
    species_id: i32,
    name: &str,
    embedding_model: i32,
) -> crate::Result<()> {
    let model_name: Option<String> = query_opt(
        conn,
        "SELECT name FROM embedding_models WHERE embedding_model_id = ?",
        [embedding_model],
        "reading the embedding model",
        |r| r.get(0),
    )?;
    let model_name = model_name.unwrap_or_else(|| format!("#{embedding_model}"));
    let proteins = count_rows(
        conn,
        "SELECT count(*) FROM proteins WHERE species_id = ?",
        [species_id],
    )?;
    let datasets = count_rows(
        conn,
        "SELECT count(*) FROM datasets WHERE species_id = ?",
        [species_id],
    )?;
    let embedded = count_rows(
        conn,
        "SELECT count(*) FROM gene_embeddings e JOIN genes g USING (gene_id)
         WHERE g.species_id = ? AND e.embedding_model_id = ?",
        [species_id, embedding_model],
    )?;
    let checks = [
        (
            proteins,
            "no proteome".to_string(),
            format!("`satlas add-proteome --species {name} FILE.fa`"),
        ),
        (
            datasets,
            "no dataset".to_string(),
            format!("`satlas add-dataset --species {name} --label COLUMN FILE`"),
        ),
        (
            embedded,
            format!("no gene embeddings from embedding model {model_name:?}, the one its macrogenes were built with"),
            format!(
                "`satlas embed-proteins --species {name} --model DIR` with the same protein model, or \
                 `satlas import-embeddings --species {name} --model {model_name} FILE`"
            ),
        ),
    ];
    let mut missing = Vec::new();
    let mut todo = Vec::new();
    for (n, what, command) in checks {
        if n == 0 {
            missing.push(what);
            todo.push(command);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    Err(ModelError::SpeciesNotReady {
        species: name.into(),
        run,
        missing: missing.join(", "),
        todo: format!("run {} first", todo.join(", then ")),
    }
    .into())
}

/// The single count a query returns.
fn count_rows(
    conn: &Connection,
    sql: &str,
    params: impl duckdb::Params,
) -> Result<i64, AtlasError> {
    conn.query_row(sql, params, |r| r.get(0))
        .context("checking what the atlas holds for the species")
}

/// The gene embeddings of every gene of the extended model, rows in the order of its weight
/// columns: the parent's species in the model's order (each in the set's gene order), then the
/// new species.
fn gene_embeddings(
    conn: &Connection,
    set: &MacrogeneSet,
    config: &SaturnConfig,
    added: &SpeciesAssignment,
) -> crate::Result<Array2<f32>> {
    let mut genes = Vec::with_capacity(config.n_genes());
    for (name, &n) in config.species.iter().zip(&config.genes_per_species) {
        let ids: &[i32] = match set.species.iter().find(|s| &s.name == name) {
            Some(s) => &s.gene_ids,
            None if name == &added.genes.name => &added.genes.gene_ids,
            None => &[],
        };
        if ids.len() != n {
            return Err(AtlasError::Inconsistent {
                what: format!(
                    "the model has {n} {name} genes, macrogene set #{} has {}",
                    set.id,
                    ids.len()
                ),
            }
            .into());
        }
        genes.extend_from_slice(ids);
    }
    Ok(read_gene_matrix(conn, set.embedding_model_id, &genes)?)
}
