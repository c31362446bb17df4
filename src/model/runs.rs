//! Model runs in the atlas: SATURN pretraining and fine-tuning on the atlas' cells, with the
//! per-epoch log, resumable checkpoints, weights (zstd blobs) and the final cell embeddings all
//! written back (`satlas pretrain` / `finetune`, `CALL saturn_pretrain(...)` / `saturn_finetune`).
//!
//! A run is recorded as `running` when it starts; each epoch's losses are committed as they come
//! and the weights every `checkpoint_every` epochs, so a killed run resumes from its last
//! checkpoint when the same command is given again. The run becomes `done` in the transaction
//! that stores its final weights (and, for fine-tuning, every cell's embedding).

use super::{
    finetune, pretrain, EpochLog, FinetuneParams, ModelError, PretrainParams, Saturn, SaturnConfig,
    SpeciesData,
};
use crate::atlas::counts::{read_counts, Cells};
use crate::atlas::{self, query_opt, AtlasError, DbContext};
use crate::csr::Csr;
use crate::macrogene::{MacrogeneSet, SpeciesGenes};
use crate::progress;
use crate::runs::{self, embeddings, Need, RunInfo};
use crate::Atlas;
use duckdb::Connection;
use ndarray::Array2;
use serde::{Deserialize, Serialize};

/// zstd level of stored weights.
const ZSTD_LEVEL: i32 = 3;

/// Default epochs between stored checkpoints (the resume granularity).
pub const DEFAULT_CHECKPOINT_EVERY: usize = 10;

/// The settings both training loops share, as a caller overrides them (CLI flags, SQL named
/// parameters); unset ones keep SATURN's defaults for the loop.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Schedule {
    /// Epochs.
    pub epochs: Option<usize>,
    /// Cells per batch.
    pub batch_size: Option<usize>,
    /// Adam learning rate.
    pub lr: Option<f64>,
    /// Seed.
    pub seed: Option<u64>,
    /// Store the weights every this many epochs.
    pub checkpoint_every: Option<usize>,
}

impl Schedule {
    /// Epochs between stored checkpoints: as set, else [`DEFAULT_CHECKPOINT_EVERY`].
    pub fn checkpoint_every(&self) -> usize {
        self.checkpoint_every.unwrap_or(DEFAULT_CHECKPOINT_EVERY)
    }

    /// Pretraining parameters: SATURN's defaults with this schedule applied.
    pub fn pretrain(&self) -> PretrainParams {
        let d = PretrainParams::default();
        PretrainParams {
            epochs: self.epochs.unwrap_or(d.epochs),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            lr: self.lr.unwrap_or(d.lr),
            seed: self.seed.unwrap_or(d.seed),
            ..d
        }
    }

    /// Fine-tuning parameters: SATURN's defaults with this schedule applied.
    pub fn finetune(&self) -> FinetuneParams {
        let d = FinetuneParams::default();
        FinetuneParams {
            epochs: self.epochs.unwrap_or(d.epochs),
            batch_size: self.batch_size.unwrap_or(d.batch_size),
            lr: self.lr.unwrap_or(d.lr),
            seed: self.seed.unwrap_or(d.seed),
            ..d
        }
    }
}

/// What `run_pretrain` needs beyond SATURN's training parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainRequest {
    /// Training parameters (epochs, batch size, lr, seed, ...).
    pub params: PretrainParams,
    /// Macrogene set (default: the newest).
    pub macrogene_set: Option<i32>,
    /// Store the weights every this many epochs (the resume granularity).
    pub checkpoint_every: usize,
    /// Build SATURN's VAE variant ([`SaturnConfig::vae`]) instead of the default autoencoder.
    #[serde(default)]
    pub vae: bool,
}

/// What `run_finetune` needs beyond SATURN's fine-tuning parameters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneRequest {
    /// Fine-tuning parameters.
    pub params: FinetuneParams,
    /// The pretraining run to start from (default: the newest finished one).
    pub pretrain_run: Option<i32>,
    /// Store the weights every this many epochs.
    pub checkpoint_every: usize,
}

/// A finished run.
#[derive(Debug, Clone, PartialEq)]
pub struct RunReport {
    /// The run's id.
    pub run_id: i32,
    /// Per-epoch losses of the epochs this call ran.
    pub logs: Vec<EpochLog>,
    /// Cells left out because they have no count in the selected genes.
    pub dropped_cells: usize,
    /// Cells embedded (fine-tuning only).
    pub embedded_cells: usize,
}

/// What is stored as a run's parameters: enough to rebuild and resume it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct StoredParams<R> {
    pub(super) config: SaturnConfig,
    pub(super) request: R,
}

/// A stored checkpoint: the last epoch it includes and the (decompressed) weights.
pub(super) type Checkpoint = (usize, Vec<u8>);

/// One species' cells (to train on, or to embed), owned.
pub(super) struct SpeciesCells {
    pub(super) name: String,
    pub(super) cell_ids: Vec<i64>,
    pub(super) labels: Vec<String>,
    pub(super) counts: Csr,
}

/// Pretrains SATURN (ZINB + protein-similarity regulariser) on every cell of the macrogene set's
/// species, resuming an interrupted run with the same parameters.
pub fn run_pretrain(atlas: &mut Atlas, request: &PretrainRequest) -> crate::Result<RunReport> {
    let conn = atlas.connection_mut();
    request.params.check()?;
    let set = MacrogeneSet::read(conn, request.macrogene_set)?;
    let (cells, dropped) = training_cells(conn, &set)?;
    let config = SaturnConfig {
        vae: request.vae,
        ..SaturnConfig::new(
            set.species.iter().map(|s| s.name.clone()).collect(),
            set.species.iter().map(|s| s.gene_ids.len()).collect(),
            set.weights.nrows(),
        )
    };
    let stored = StoredParams {
        config: config.clone(),
        request: request.clone(),
    };
    let (run_id, checkpoint) = start_or_resume(conn, "pretrain", None, |_| Ok(set.id), &stored)?;
    tch::manual_seed(request.params.seed as i64); // the initial weights are part of the seed
    let mut model = match &checkpoint {
        Some((_, bytes)) => Saturn::load_bytes(config, bytes)?,
        None => Saturn::new(config, set.weights.view())?,
    };
    let mut params = request.params.clone();
    params.start_epoch = checkpoint.as_ref().map_or(0, |(epoch, _)| epoch + 1);
    let embeddings = set.gene_embeddings(conn)?;
    let data = species_data(&cells)?;
    let epochs = (params.start_epoch, params.epochs);
    let logs = train_recorded(
        conn,
        run_id,
        epochs,
        request.checkpoint_every,
        "pretraining",
        |on_epoch| pretrain(&mut model, &data, embeddings.view(), &params, on_epoch),
    )?;
    atlas::write(conn, |tx| finish_run(tx, run_id, &model, &logs))?;
    Ok(RunReport {
        run_id,
        logs,
        dropped_cells: dropped,
        embedded_cells: 0,
    })
}

/// Fine-tunes a pretrained SATURN with the cross-species triplet loss, then embeds every cell and
/// stores the embeddings (and macrogene expression) with the run.
pub fn run_finetune(atlas: &mut Atlas, request: &FinetuneRequest) -> crate::Result<RunReport> {
    let conn = atlas.connection_mut();
    request.params.check()?;
    let (base_run, base): (i32, StoredParams<PretrainRequest>) =
        finished_pretrain(conn, request.pretrain_run)?;
    let set = MacrogeneSet::read(conn, Some(macrogene_set_of(conn, base_run)?))?;
    let (cells, dropped) = training_cells(conn, &set)?;
    let stored = StoredParams {
        config: base.config.clone(),
        request: request.clone(),
    };
    let (run_id, checkpoint) =
        start_or_resume(conn, "finetune", Some(base_run), |_| Ok(set.id), &stored)?;
    let bytes = match &checkpoint {
        Some((_, bytes)) => bytes.clone(),
        None => weights_of(conn, base_run)?,
    };
    let mut model = Saturn::load_bytes(base.config, &bytes)?;
    let mut params = request.params.clone();
    params.start_epoch = checkpoint.as_ref().map_or(0, |(epoch, _)| epoch + 1);
    let data = species_data(&cells)?;
    let epochs = (params.start_epoch, params.epochs);
    let logs = train_recorded(
        conn,
        run_id,
        epochs,
        request.checkpoint_every,
        "fine-tuning",
        |on_epoch| finetune(&mut model, &data, &params, on_epoch),
    )?;
    let embedded = atlas::write(conn, |tx| {
        let n = write_embeddings(tx, run_id, &model, &cells)?;
        finish_run(tx, run_id, &model, &logs)?;
        Ok::<_, crate::Error>(n)
    })?;
    Ok(RunReport {
        run_id,
        logs,
        dropped_cells: dropped,
        embedded_cells: embedded,
    })
}

/// The macrogene set a run trained on.
fn macrogene_set_of(conn: &Connection, run: i32) -> Result<i32, AtlasError> {
    RunInfo::read(conn, run)?
        .macrogene_set_id
        .ok_or_else(|| AtlasError::Inconsistent {
            what: format!("model run {run} has no macrogene set"),
        })
}

/// Every cell of the set's species over the set's genes; cells without any count in those genes
/// are dropped (SATURN.md section 2, FIX) and counted.
fn training_cells(
    conn: &Connection,
    set: &MacrogeneSet,
) -> crate::Result<(Vec<SpeciesCells>, usize)> {
    let mut out = Vec::new();
    let mut dropped = 0;
    for species in &set.species {
        let (cells, n) = species_cells(conn, Cells::Species(species.species_id), species)?;
        out.push(cells);
        dropped += n;
    }
    if dropped > 0 {
        eprintln!("warning: {dropped} cells have no count in the selected genes and are left out");
    }
    Ok((out, dropped))
}

/// The counts of `cells` (of one species) over the species' selected genes, without the cells
/// that have no count in them; and the number of cells dropped.
pub(super) fn species_cells(
    conn: &Connection,
    cells: Cells,
    species: &SpeciesGenes,
) -> crate::Result<(SpeciesCells, usize)> {
    let counts = read_counts(conn, cells, &species.gene_ids)?;
    let view = counts.csr.view()?;
    let keep: Vec<usize> = view
        .row_sums()
        .iter()
        .enumerate()
        .filter(|(_, &s)| s > 0)
        .map(|(i, _)| i)
        .collect();
    let columns: Vec<usize> = (0..view.n_cols()).collect();
    let out = SpeciesCells {
        name: species.name.clone(),
        cell_ids: keep.iter().map(|&i| counts.cell_ids[i]).collect(),
        labels: keep
            .iter()
            .map(|&i| {
                counts.labels[i]
                    .clone()
                    .unwrap_or_else(|| "unlabelled".into())
            })
            .collect(),
        counts: view.select(&keep, &columns)?,
    };
    Ok((out, counts.n_cells() - keep.len()))
}

fn species_data(cells: &[SpeciesCells]) -> crate::Result<Vec<SpeciesData<'_>>> {
    cells
        .iter()
        .map(|c| {
            Ok(SpeciesData {
                species: &c.name,
                counts: c.counts.view()?,
                labels: &c.labels,
            })
        })
        .collect()
}

/// The unfinished run of this kind with identical stored parameters (to resume, with its last
/// checkpoint), or a new `running` run whose macrogene set `set` gives (called in the transaction
/// that records the run, so a set written for the run is written with it).
pub(super) fn start_or_resume<R: Serialize>(
    conn: &mut Connection,
    kind: &str,
    parent: Option<i32>,
    set: impl FnOnce(&Connection) -> crate::Result<i32>,
    stored: &StoredParams<R>,
) -> crate::Result<(i32, Option<Checkpoint>)> {
    let json = serde_json::to_string(stored).map_err(|e| ModelError::Checkpoint {
        reason: e.to_string(),
    })?;
    let existing: Option<(i32, Option<Vec<u8>>, Option<String>)> = query_opt(
        conn,
        "SELECT model_run_id, weights, metrics FROM model_runs
         WHERE kind = ? AND status = 'running' AND params = ? ORDER BY model_run_id DESC LIMIT 1",
        [kind, &json],
        "looking for an interrupted run",
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )?;
    if let Some((run, blob, metrics)) = existing {
        let checkpoint = match (blob, metrics) {
            (Some(blob), Some(metrics)) => {
                let epoch = serde_json::from_str::<serde_json::Value>(&metrics)
                    .ok()
                    .and_then(|m| m["checkpoint_epoch"].as_u64())
                    .unwrap_or(0) as usize;
                let bytes =
                    zstd::decode_all(blob.as_slice()).map_err(|e| ModelError::Checkpoint {
                        reason: e.to_string(),
                    })?;
                Some((epoch, bytes))
            }
            _ => None,
        };
        // Epochs after the checkpoint (all of them without one) are run again.
        let keep_through = checkpoint.as_ref().map_or(-1, |(epoch, _)| *epoch as i64);
        atlas::write(conn, |tx| {
            tx.execute(
                "DELETE FROM training_log WHERE model_run_id = ? AND epoch > ?",
                duckdb::params![run, keep_through],
            )
            .context("trimming the training log to the checkpoint")
        })?;
        match &checkpoint {
            Some((epoch, _)) => eprintln!("resuming {kind} run #{run} after epoch {epoch}"),
            None => eprintln!("restarting {kind} run #{run} from epoch 0 (it stopped before its first checkpoint)"),
        }
        return Ok((run, checkpoint));
    }
    let run = atlas::write(conn, |tx| {
        let set = set(tx)?;
        Ok::<_, crate::Error>(
            tx.query_row(
                "INSERT INTO model_runs (kind, parent_run_id, macrogene_set_id, params, status)
                 VALUES (?, ?, ?, ?, 'running') RETURNING model_run_id",
                duckdb::params![kind, parent, set, json],
                |r| r.get(0),
            )
            .context("recording the model run")?,
        )
    })?;
    Ok((run, None))
}

/// Runs `train` over epochs `start..epochs` (`epochs` = `(start, epochs)`) with a progress bar
/// named `label`, committing each epoch's losses to `run` as it ends, and the weights every
/// `checkpoint_every` epochs (what a resumed run starts from).
pub(super) fn train_recorded(
    conn: &mut Connection,
    run: i32,
    (start, epochs): (usize, usize),
    checkpoint_every: usize,
    label: &str,
    train: impl FnOnce(
        &mut dyn FnMut(&EpochLog, &Saturn) -> crate::Result<()>,
    ) -> crate::Result<Vec<EpochLog>>,
) -> crate::Result<Vec<EpochLog>> {
    let bar = progress::bar((epochs - start.min(epochs)) as u64, label);
    let logs = train(&mut |log, model| {
        bar.inc(1);
        record_epoch(conn, run, log, model, checkpoint_every)
    })?;
    bar.finish_and_clear();
    Ok(logs)
}

/// Commits one epoch's losses, and the weights every `checkpoint_every` epochs.
fn record_epoch(
    conn: &mut Connection,
    run: i32,
    log: &EpochLog,
    model: &Saturn,
    every: usize,
) -> crate::Result<()> {
    let components = serde_json::to_string(log).unwrap_or_default();
    let checkpoint = every > 0 && (log.epoch + 1).is_multiple_of(every);
    let blob = if checkpoint {
        Some(compress(&model.save_bytes()?)?)
    } else {
        None
    };
    atlas::write(conn, |tx| {
        tx.execute(
            "INSERT INTO training_log (model_run_id, epoch, loss, components, seconds) VALUES (?, ?, ?, ?, ?)",
            duckdb::params![run, log.epoch as i32, log.loss, components, log.seconds],
        )
        .context("recording the epoch")?;
        if let Some(blob) = &blob {
            let metrics = serde_json::json!({ "checkpoint_epoch": log.epoch }).to_string();
            tx.execute(
                "UPDATE model_runs SET weights = ?, metrics = ? WHERE model_run_id = ?",
                duckdb::params![blob, metrics, run],
            )
            .context("storing the checkpoint")?;
        }
        Ok::<_, crate::Error>(())
    })?;
    if blob.is_some() {
        eprintln!("checkpoint: run #{run} after epoch {}", log.epoch);
    }
    Ok(())
}

pub(super) fn finish_run(
    conn: &Connection,
    run: i32,
    model: &Saturn,
    logs: &[EpochLog],
) -> crate::Result<()> {
    let blob = compress(&model.save_bytes()?)?;
    let metrics =
        serde_json::json!({ "final_loss": logs.last().map(|l| l.loss), "epochs_run": logs.len() })
            .to_string();
    conn.execute(
        "UPDATE model_runs SET status = 'done', weights = ?, metrics = ? WHERE model_run_id = ?",
        duckdb::params![blob, metrics, run],
    )
    .context("finishing the model run")?;
    Ok(())
}

/// The finished pretraining run `run` (default: the newest) with its stored parameters.
fn finished_pretrain(
    conn: &Connection,
    run: Option<i32>,
) -> crate::Result<(i32, StoredParams<PretrainRequest>)> {
    let id = runs::select(conn, Need::Pretrained, run)?;
    let json = RunInfo::read(conn, id)?.params;
    let stored = serde_json::from_str(&json).map_err(|e| ModelError::Checkpoint {
        reason: format!("run #{id}: {e}"),
    })?;
    Ok((id, stored))
}

/// The gene-to-macrogene weights of run `run` as trained (`W = exp(P)`, macrogenes x genes),
/// with the run's macrogene set, whose initial weights have the same gene columns.
pub fn trained_macrogene_weights(
    conn: &Connection,
    run: i32,
) -> crate::Result<(MacrogeneSet, Array2<f32>)> {
    let json: String = conn
        .query_row(
            "SELECT params FROM model_runs WHERE model_run_id = ?",
            [run],
            |r| r.get(0),
        )
        .context("reading the model run's parameters")?;
    let stored: StoredParams<serde_json::Value> =
        serde_json::from_str(&json).map_err(|e| ModelError::Checkpoint {
            reason: format!("run #{run}: {e}"),
        })?;
    let set = MacrogeneSet::read(conn, Some(macrogene_set_of(conn, run)?))?;
    let model = Saturn::load_bytes(stored.config, &weights_of(conn, run)?)?;
    Ok((set, model.macrogene_weights()?))
}

pub(super) fn weights_of(conn: &Connection, run: i32) -> crate::Result<Vec<u8>> {
    let blob: Vec<u8> = conn
        .query_row(
            "SELECT weights FROM model_runs WHERE model_run_id = ?",
            [run],
            |r| r.get(0),
        )
        .context("reading model weights")?;
    Ok(
        zstd::decode_all(blob.as_slice()).map_err(|e| ModelError::Checkpoint {
            reason: e.to_string(),
        })?,
    )
}

fn compress(bytes: &[u8]) -> crate::Result<Vec<u8>> {
    Ok(
        zstd::encode_all(bytes, ZSTD_LEVEL).map_err(|e| ModelError::Checkpoint {
            reason: e.to_string(),
        })?,
    )
}

/// Embeds `cells` with the fine-tuned model and stores embedding and macrogene expression per
/// cell (fine-tuning: every training cell; `embed_dataset`: a dataset added later).
pub(super) fn write_embeddings(
    conn: &Connection,
    run: i32,
    model: &Saturn,
    cells: &[SpeciesCells],
) -> crate::Result<usize> {
    let mut total = 0;
    for species in cells {
        let embedding = model.embed(&species.name, &species.counts.view()?)?;
        embeddings::append(
            conn,
            run,
            &species.cell_ids,
            embedding.z.view(),
            embedding.macrogenes.view(),
        )?;
        total += species.cell_ids.len();
    }
    Ok(total)
}

/// The finished run `run` whose model embeds cells (a finetune or add-species run; default: the
/// newest, [`runs::select`]), with its macrogene set and model configuration.
pub(super) fn finished_model_run(
    conn: &Connection,
    run: Option<i32>,
) -> crate::Result<(i32, i32, SaturnConfig)> {
    let id = runs::select(conn, Need::Embedded, run)?;
    let set = macrogene_set_of(conn, id)?;
    Ok((
        id,
        set,
        stored_config(id, &RunInfo::read(conn, id)?.params)?,
    ))
}

/// The model configuration in a run's stored parameters.
fn stored_config(run: i32, json: &str) -> Result<SaturnConfig, ModelError> {
    serde_json::from_str::<StoredParams<serde::de::IgnoredAny>>(json)
        .map(|stored| stored.config)
        .map_err(|e| ModelError::Checkpoint {
            reason: format!("run #{run}: {e}"),
        })
}

/// The stored model of run `run` (its last checkpoint, or its final weights when done).
pub fn load_run_model(conn: &Connection, run: i32) -> crate::Result<Saturn> {
    let json: Option<String> = query_opt(
        conn,
        "SELECT params FROM model_runs WHERE model_run_id = ? AND weights IS NOT NULL",
        [run],
        "reading the model run",
        |r| r.get(0),
    )?;
    let Some(json) = json else {
        return Err(ModelError::Checkpoint {
            reason: format!("model run {run} does not exist or has no stored weights yet"),
        }
        .into());
    };
    Ok(Saturn::load_bytes(
        stored_config(run, &json)?,
        &weights_of(conn, run)?,
    )?)
}

/// One species' block of a run's trained gene-to-macrogene weights.
#[derive(Debug, Clone)]
pub struct SpeciesWeights {
    /// The species.
    pub species: String,
    /// Its selected genes, in the column order of `weights`.
    pub gene_ids: Vec<i32>,
    /// `W = exp(P)`, macrogenes x genes: the weights the run's macrogene expression is made with.
    pub weights: Array2<f32>,
}

/// The trained gene-to-macrogene weights of run `run`, per species (split from
/// [`trained_macrogene_weights`] along the set's species, whose genes are the model's columns).
pub fn trained_weights(conn: &Connection, run: i32) -> crate::Result<Vec<SpeciesWeights>> {
    let (set, all) = trained_macrogene_weights(conn, run)?;
    let mut start = 0;
    let mut out = Vec::with_capacity(set.species.len());
    for species in set.species {
        let n = species.gene_ids.len();
        if start + n > all.ncols() {
            return Err(ModelError::Shape {
                species: species.name,
                what: format!(
                    "run #{run} has {} gene weights but macrogene set #{} selects more genes",
                    all.ncols(),
                    set.id
                ),
            }
            .into());
        }
        out.push(SpeciesWeights {
            species: species.name,
            gene_ids: species.gene_ids,
            weights: all.slice(ndarray::s![.., start..start + n]).to_owned(),
        });
        start += n;
    }
    Ok(out)
}
