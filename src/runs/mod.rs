//! Model runs and their cell embeddings in the atlas: the one place that says which run a
//! command uses ([`select`]), reads a run's `model_runs` row ([`RunInfo`]) and writes and reads
//! `cell_embeddings` ([`embeddings`]), and which of the cells a command takes ([`Scope`]).
//!
//! Every command that needs a run takes an optional run id. One rule picks it: a run given must
//! have what the command needs ([`Need`]); without one, the newest such run (the highest id) is
//! used. The training loops that create runs live in `model::runs`; the stages after the model
//! (`index`, `eval`, `export`, `de`, `layout`, `plot`) read runs only through this module.

pub mod embeddings;
pub mod scope;

pub use embeddings::{CellVector, CellsDigest, Embeddings};
pub use scope::Scope;

use crate::atlas::{query_all, AtlasError, DbContext};
use duckdb::Connection;

/// What a command needs of a model run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Need {
    /// A finished pretraining run (to fine-tune).
    Pretrained,
    /// A finished run whose model embeds cells (`finetune` or `add_species`) and whose cell
    /// embeddings are stored: to embed more cells, add a species, index, search, evaluate,
    /// export, lay out or plot.
    Embedded,
}

impl Need {
    /// The SQL condition on `model_runs r` for a run that meets the need.
    fn condition(self) -> &'static str {
        match self {
            Need::Pretrained => "r.kind = 'pretrain' AND r.status = 'done'",
            Need::Embedded => {
                "r.kind IN ('finetune', 'add_species') AND r.status = 'done' AND EXISTS \
                 (SELECT 1 FROM cell_embeddings e WHERE e.model_run_id = r.model_run_id)"
            }
        }
    }

    /// Such a run, in words.
    fn what(self) -> &'static str {
        match self {
            Need::Pretrained => "finished pretraining run",
            Need::Embedded => "finished finetune run with cell embeddings",
        }
    }

    /// How to make one.
    fn remedy(self) -> &'static str {
        match self {
            Need::Pretrained => "pretrain first (`satlas pretrain`, CALL saturn_pretrain())",
            Need::Embedded => "fine-tune first (`satlas finetune`, CALL saturn_finetune())",
        }
    }
}

/// Why no run could be selected.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// No run given, and none in the atlas meets the need.
    #[error("no {what} in the atlas: {remedy}, or name a run with --run / run := N")]
    NoRun {
        /// The run needed, in words.
        what: &'static str,
        /// How to make one.
        remedy: &'static str,
    },
    /// The run given does not meet the need.
    #[error("model run {run} is not a {what} (such runs: {known})")]
    Unsuitable {
        /// The run asked for.
        run: i32,
        /// The run needed, in words.
        what: &'static str,
        /// The runs that would do, comma-separated, or "none".
        known: String,
    },
    /// Both a species and a dataset given as the scope.
    #[error("give a species or a dataset, not both (species {species:?}, dataset {dataset:?})")]
    TwoScopes {
        /// The species given.
        species: String,
        /// The dataset given.
        dataset: String,
    },
    /// A species or dataset name that the atlas does not know.
    #[error("unknown {kind} {name:?} (known: {known})")]
    UnknownName {
        /// "species" or "dataset".
        kind: &'static str,
        /// The name asked for.
        name: String,
        /// Known names, comma-separated.
        known: String,
    },
    /// The atlas could not be read.
    #[error(transparent)]
    Atlas(#[from] AtlasError),
}

/// The run a command uses: `run` if given and it meets `need`, else the newest run that does.
pub fn select(conn: &Connection, need: Need, run: Option<i32>) -> Result<i32, RunError> {
    let suitable = query_all(
        conn,
        &format!(
            "SELECT r.model_run_id FROM model_runs r WHERE {} ORDER BY r.model_run_id",
            need.condition()
        ),
        [],
        "listing model runs",
        |row| row.get::<_, i32>(0),
    )?;
    match run {
        Some(run) if suitable.contains(&run) => Ok(run),
        Some(run) => Err(RunError::Unsuitable {
            run,
            what: need.what(),
            known: join(&suitable),
        }),
        None => suitable.last().copied().ok_or(RunError::NoRun {
            what: need.what(),
            remedy: need.remedy(),
        }),
    }
}

fn join(runs: &[i32]) -> String {
    if runs.is_empty() {
        return "none".into();
    }
    runs.iter()
        .map(i32::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One run as `model_runs` records it (without its weights).
#[derive(Debug, Clone, PartialEq)]
pub struct RunInfo {
    /// `model_run_id`.
    pub id: i32,
    /// `pretrain`, `finetune`, `add_species`.
    pub kind: String,
    /// The macrogene set it trained on.
    pub macrogene_set_id: Option<i32>,
    /// Its parameters (JSON).
    pub params: String,
    /// Its metrics (JSON), if recorded.
    pub metrics: Option<String>,
    /// When it was created.
    pub created_at: String,
}

impl RunInfo {
    /// Reads run `id`.
    pub fn read(conn: &Connection, id: i32) -> Result<RunInfo, AtlasError> {
        conn.query_row(
            "SELECT kind, macrogene_set_id, params, metrics, created_at::VARCHAR FROM model_runs \
             WHERE model_run_id = ?",
            [id],
            |r| {
                Ok(RunInfo {
                    id,
                    kind: r.get(0)?,
                    macrogene_set_id: r.get(1)?,
                    params: r.get(2)?,
                    metrics: r.get(3)?,
                    created_at: r.get(4)?,
                })
            },
        )
        .context("reading the model run")
    }
}
