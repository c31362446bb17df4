//! SATURN from SQL: `satlas_build_macrogenes(...)`, `saturn_pretrain(...)` and
//! `saturn_finetune(...)`. Parameters default to SATURN's; the training procedures return one row
//! per epoch. After training, `satlas_embed_dataset(...)` embeds a dataset of a trained species
//! and `saturn_add_species(...)` adds a new species (also one row per epoch).

use super::{Args, Procedure};
use crate::macrogene::{build_macrogenes, BuildParams};
use crate::model::{
    embed_dataset, run_add_species, run_finetune, run_pretrain, AddSpeciesRequest, EpochLog,
    FinetuneParams, FinetuneRequest, PretrainParams, PretrainRequest, RunReport, Schedule,
};
use crate::Atlas;
use duckdb::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::LogicalTypeId;
use std::sync::Arc;

/// `CALL satlas_build_macrogenes(n := 2000, n_top_genes := 8000, seed := 0, score := 'default')`.
pub struct BuildMacrogenes;

impl Procedure for BuildMacrogenes {
    const NAME: &'static str = "satlas_build_macrogenes";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        vec![
            ("n", LogicalTypeId::Bigint),
            ("n_top_genes", LogicalTypeId::Bigint),
            ("seed", LogicalTypeId::Bigint),
            ("score", LogicalTypeId::Varchar),
            ("max_iter", LogicalTypeId::Bigint),
            ("embedding_model", LogicalTypeId::Integer),
        ]
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("macrogene_set_id", DataType::Int32, false),
            Field::new("species", DataType::Utf8, false),
            Field::new("genes_with_embedding", DataType::Int64, false),
            Field::new("selected_genes", DataType::Int64, false),
            Field::new("n_macrogenes", DataType::Int64, false),
            Field::new("inertia", DataType::Float64, false),
        ])
    }

    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let defaults = BuildParams::default();
        let params = BuildParams {
            n_macrogenes: args.usize("n")?.unwrap_or(defaults.n_macrogenes),
            n_top_genes: args.usize("n_top_genes")?.unwrap_or(defaults.n_top_genes),
            seed: args.usize("seed")?.map_or(defaults.seed, |s| s as u64),
            score: args
                .text("score")?
                .map_or(Ok(defaults.score), |s| s.parse())?,
            max_iter: args.usize("max_iter")?.unwrap_or(defaults.max_iter),
            embedding_model: args.int("embedding_model")?.map(|m| m as i32),
        };
        let report = build_macrogenes(atlas, &params)?;
        let n = report.species.len();
        Ok(Self::batch(vec![
            Arc::new(Int32Array::from(vec![report.macrogene_set_id; n])),
            Arc::new(StringArray::from_iter_values(
                report.species.iter().map(|s| s.0.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(
                report.species.iter().map(|s| s.1 as i64),
            )),
            Arc::new(Int64Array::from_iter_values(
                report.species.iter().map(|s| s.2 as i64),
            )),
            Arc::new(Int64Array::from(vec![report.n_macrogenes as i64; n])),
            Arc::new(Float64Array::from(vec![report.inertia; n])),
        ])?)
    }
}

/// `CALL saturn_pretrain(epochs := 200, seed := 0, batch_size := 4096, lr := 5e-4, vae := false)`.
pub struct Pretrain;

impl Procedure for Pretrain {
    const NAME: &'static str = "saturn_pretrain";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        let mut params = common_parameters();
        params.extend([
            ("regulariser_weight", LogicalTypeId::Double),
            ("macrogene_set", LogicalTypeId::Integer),
            ("vae", LogicalTypeId::Boolean),
        ]);
        params
    }

    fn schema() -> Schema {
        epochs_schema()
    }

    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let (params, checkpoint_every) = pretrain_params(args)?;
        let request = PretrainRequest {
            params,
            macrogene_set: args.int("macrogene_set")?.map(|s| s as i32),
            checkpoint_every,
            vae: args.bool("vae")?.unwrap_or(false),
        };
        Ok(Self::batch(epoch_columns(&run_pretrain(atlas, &request)?))?)
    }
}

/// `CALL saturn_finetune(epochs := 50, seed := 0, margin := 0.2, unfreeze := false)`.
pub struct Finetune;

impl Procedure for Finetune {
    const NAME: &'static str = "saturn_finetune";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        let mut params = common_parameters();
        params.extend([
            ("margin", LogicalTypeId::Double),
            ("unfreeze", LogicalTypeId::Boolean),
            ("pretrain_run", LogicalTypeId::Integer),
        ]);
        params
    }

    fn schema() -> Schema {
        epochs_schema()
    }

    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let plan = schedule(args)?;
        let schedule = plan.finetune();
        let params = FinetuneParams {
            margin: args.float("margin")?.unwrap_or(schedule.margin),
            unfreeze_macrogenes: args
                .bool("unfreeze")?
                .unwrap_or(schedule.unfreeze_macrogenes),
            ..schedule
        };
        let request = FinetuneRequest {
            params,
            pretrain_run: args.int("pretrain_run")?.map(|r| r as i32),
            checkpoint_every: plan.checkpoint_every(),
        };
        Ok(Self::batch(epoch_columns(&run_finetune(atlas, &request)?))?)
    }
}

/// `CALL saturn_add_species(species := 'mouse', epochs := 200, seed := 0, run := N)`: adds a
/// species to a trained model (its parts trained, the shared network frozen), embeds its cells
/// and extends the HNSW index; one row per epoch of the new run.
pub struct AddSpecies;

impl Procedure for AddSpecies {
    const NAME: &'static str = "saturn_add_species";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        let mut params = common_parameters();
        params.extend([
            ("species", LogicalTypeId::Varchar),
            ("regulariser_weight", LogicalTypeId::Double),
            ("run", LogicalTypeId::Integer),
        ]);
        params
    }

    fn schema() -> Schema {
        epochs_schema()
    }

    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let (params, checkpoint_every) = pretrain_params(args)?;
        let request = AddSpeciesRequest {
            species: args.required_text("species")?,
            params,
            parent_run: args.int("run")?.map(|r| r as i32),
            checkpoint_every,
        };
        let report = run_add_species(atlas, &request)?;
        Ok(Self::batch(epoch_columns(&report.run))?)
    }
}

/// `CALL satlas_embed_dataset(dataset := 'x', run := N)`: embeds a dataset of a trained species
/// with the finished finetune run (default: the newest), then extends the run's HNSW index.
pub struct EmbedDataset;

impl Procedure for EmbedDataset {
    const NAME: &'static str = "satlas_embed_dataset";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        vec![
            ("dataset", LogicalTypeId::Varchar),
            ("run", LogicalTypeId::Integer),
        ]
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("model_run_id", DataType::Int32, false),
            Field::new("dataset", DataType::Utf8, false),
            Field::new("species", DataType::Utf8, false),
            Field::new("embedded_cells", DataType::Int64, false),
            Field::new("dropped_cells", DataType::Int64, false),
            Field::new("index", DataType::Utf8, false),
            Field::new("gene_overlap", DataType::Float64, false),
        ])
    }

    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let dataset = args.required_text("dataset")?;
        let run = args.int("run")?.map(|r| r as i32);
        let report = embed_dataset(atlas, &dataset, run)?;
        let index = report
            .index
            .map_or_else(|| "no index".to_string(), |o| o.to_string());
        let overlap = report.overlap_fraction();
        Ok(Self::batch(vec![
            Arc::new(Int32Array::from(vec![report.run_id])),
            Arc::new(StringArray::from(vec![report.dataset])),
            Arc::new(StringArray::from(vec![report.species])),
            Arc::new(Int64Array::from(vec![report.embedded_cells as i64])),
            Arc::new(Int64Array::from(vec![report.dropped_cells as i64])),
            Arc::new(StringArray::from(vec![index])),
            Arc::new(Float64Array::from(vec![overlap])),
        ])?)
    }
}

/// The shared training settings named by [`common_parameters`].
/// The pretraining parameters of `saturn_pretrain` and `saturn_add_species` (the schedule and
/// `regulariser_weight :=` over SATURN's defaults), with the checkpoint interval.
fn pretrain_params(args: &Args) -> crate::Result<(PretrainParams, usize)> {
    let plan = schedule(args)?;
    let defaults = plan.pretrain();
    let params = PretrainParams {
        regulariser_weight: args
            .float("regulariser_weight")?
            .unwrap_or(defaults.regulariser_weight),
        ..defaults
    };
    Ok((params, plan.checkpoint_every()))
}

fn schedule(args: &Args) -> crate::Result<Schedule> {
    Ok(Schedule {
        epochs: args.usize("epochs")?,
        batch_size: args.usize("batch_size")?,
        lr: args.float("lr")?,
        seed: args.usize("seed")?.map(|s| s as u64),
        checkpoint_every: args.usize("checkpoint_every")?,
    })
}

fn common_parameters() -> Vec<(&'static str, LogicalTypeId)> {
    vec![
        ("epochs", LogicalTypeId::Bigint),
        ("seed", LogicalTypeId::Bigint),
        ("batch_size", LogicalTypeId::Bigint),
        ("lr", LogicalTypeId::Double),
        ("checkpoint_every", LogicalTypeId::Bigint),
    ]
}

fn epochs_schema() -> Schema {
    Schema::new(vec![
        Field::new("model_run_id", DataType::Int32, false),
        Field::new("epoch", DataType::Int64, false),
        Field::new("loss", DataType::Float64, false),
        Field::new("zinb", DataType::Float64, false),
        Field::new("regulariser", DataType::Float64, false),
        Field::new("triplets", DataType::Int64, false),
        Field::new("seconds", DataType::Float64, false),
    ])
}

fn epoch_columns(report: &RunReport) -> Vec<ArrayRef> {
    let logs: &[EpochLog] = &report.logs;
    let float = |f: fn(&EpochLog) -> f64| -> ArrayRef {
        Arc::new(Float64Array::from_iter_values(logs.iter().map(f)))
    };
    vec![
        Arc::new(Int32Array::from(vec![report.run_id; logs.len()])),
        Arc::new(Int64Array::from_iter_values(
            logs.iter().map(|l| l.epoch as i64),
        )),
        float(|l| l.loss),
        float(|l| l.zinb),
        float(|l| l.regulariser),
        Arc::new(Int64Array::from_iter_values(
            logs.iter().map(|l| l.n_triplets as i64),
        )),
        float(|l| l.seconds),
    ]
}
