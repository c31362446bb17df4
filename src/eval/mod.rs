//! SATURN's evaluation protocol on a model run's cell embeddings, for two species A and B
//! (`satlas eval`, SQL `satlas_eval(...)`). Read-only: nothing is written to the atlas.
//!
//! For each direction X → Y (A → B and B → A):
//!
//! 1. **Logistic regression** (SATURN's protocol): X's labelled, embedded cells are split 80/20
//!    ([`metrics::split`], seeded); a multinomial L2 logistic regression ([`logreg`],
//!    scikit-learn `LogisticRegression(C)` semantics, no standardisation) is fitted on the 80 %
//!    and predicts every embedded Y cell. Predictions are read through the cell-type
//!    correspondence ([`metrics::Correspondence`]): `lr_accuracy`, `lr_balanced_accuracy`
//!    (mean per-class recall over Y's classes) and `lr_max_achievable` (share of Y cells whose
//!    class some X label corresponds to). `lr_heldout_accuracy` is the within-species accuracy on
//!    X's held-out 20 % (exact label match).
//! 2. **kNN transfer**: every Y cell gets the distance-weighted vote of its `k` nearest X cells
//!    (exact cosine kNN and the vote of [`crate::index::transfer::vote`], with no confidence
//!    threshold, so every cell gets a label): `knn_accuracy`, `knn_balanced_accuracy`.
//!
//! And, over the cells of both species together, **species mixing**: for each cell, the fraction
//! of its `k` nearest other cells that belong to the other species; averaged per cell type
//! (direction = the cell's species, metric `mixing[label]`), then over types (`mixing_mean`,
//! direction `both`). Perfect mixing is not 1: it is the other species' share of the cells.
//!
//! The cells are represented by a model run's embeddings ([`Features::Run`]) or, for the
//! 1:1-ortholog baseline, by principal components of shared-ortholog expression
//! ([`Features::Orthologs`], [`baseline`]); everything after that is the same.
//!
//! Every value is in [0, 1]. The correspondence is the obs column `cell_ontology_class`
//! (default) or a CSV with columns `{a}_cell_type` and `{b}_cell_type` (plain comma-separated,
//! no quoting), see [`metrics`].

pub mod baseline;
pub mod logreg;
pub mod metrics;

use crate::atlas::{query_all, AtlasError};
use crate::index::exact::exact_knn;
use crate::index::transfer::vote;
use crate::runs::embeddings::read;
use crate::runs::{self, Need};
use crate::Atlas;
use baseline::{ortholog_features, CellFeatures, OrthologBaseline};
use duckdb::Connection;
use metrics::{score, split, stratified_split, swaps, Correspondence, Swap};
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

/// The default correspondence obs column.
pub const DEFAULT_CORRESPONDENCE: &str = "cell_ontology_class";
/// SATURN's regularisation strength.
pub const DEFAULT_C: f64 = 0.005;
/// Default neighbours for kNN transfer and mixing.
pub const DEFAULT_K: usize = 15;

/// Why an evaluation could not run.
#[derive(Debug, thiserror::Error)]
pub enum EvalError {
    /// A species name the atlas does not have.
    #[error("unknown species {name:?} (the atlas has: {known}); pass --a/--b (a := / b :=) with one of them")]
    UnknownSpecies {
        /// The name given.
        name: String,
        /// The species in the atlas.
        known: String,
    },
    /// A and B are the same species.
    #[error("--a and --b are both {0:?}: the evaluation compares two different species")]
    SameSpecies(String),
    /// The correspondence obs column is missing for a species.
    #[error(
        "species {species} has no obs column {column:?} (its columns: {known}); pick one with \
         --correspondence, or give a CSV with --correspondence-csv"
    )]
    MissingColumn {
        /// The column asked for.
        column: String,
        /// The species lacking it.
        species: String,
        /// The obs columns the species' cells have.
        known: String,
    },
    /// A CSV (correspondence or ortholog table) could not be read.
    #[error("cannot read the {what} {path}: {source}")]
    CsvRead {
        /// Which file it is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A CSV (correspondence or ortholog table) is malformed.
    #[error("{what} {path}: {problem}")]
    CsvFormat {
        /// Which file it is.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// What is wrong and what is expected.
        problem: String,
    },
    /// A species has too few usable cells or labels for the evaluation.
    #[error(
        "species {species} has {cells} labelled cells with features in {features} and {labels} \
         distinct labels: the evaluation needs at least 5 cells and 2 labels per species"
    )]
    TooFewCells {
        /// The species.
        species: String,
        /// What represents the cells (`run N`, or the baseline).
        features: String,
        /// Labelled, embedded cells.
        cells: usize,
        /// Distinct labels among them.
        labels: usize,
    },
    /// Fewer shared one-to-one orthologs than principal components asked for.
    #[error(
        "only {shared} one-to-one orthologs of {table} are measured in both species' datasets, \
         fewer than the {pcs} principal components asked for: lower --pcs or check that the \
         table's first two columns are the two species' gene symbols"
    )]
    TooFewOrthologs {
        /// The ortholog table.
        table: PathBuf,
        /// Shared orthologs found.
        shared: usize,
        /// Components asked for.
        pcs: usize,
    },
    /// A libtorch computation failed.
    #[error("{what}: {source}")]
    Torch {
        /// What was being computed.
        what: &'static str,
        /// libtorch's error.
        source: tch::TchError,
    },
    /// A parameter is out of range.
    #[error("invalid evaluation parameter {name} = {value}: {rule}")]
    InvalidParam {
        /// The parameter.
        name: &'static str,
        /// The value given.
        value: String,
        /// What a valid value is.
        rule: &'static str,
    },
    /// Reading the atlas failed.
    #[error(transparent)]
    Atlas(#[from] AtlasError),
    /// No run to read.
    #[error(transparent)]
    Run(#[from] crate::runs::RunError),
}

/// Where the correspondence comes from.
#[derive(Debug, Clone, PartialEq)]
pub enum CorrespondenceSource {
    /// An obs column both species' cells have (see [`metrics`]).
    ObsColumn(String),
    /// A CSV with `{a}_cell_type` and `{b}_cell_type` columns.
    Csv(PathBuf),
}

/// What represents the cells.
#[derive(Debug, Clone, PartialEq)]
pub enum Features {
    /// A model run's cell embeddings (`None`: the newest finetune or add-species run).
    Run(Option<i32>),
    /// The 1:1-ortholog baseline: PCA of log-normalised shared-ortholog expression.
    Orthologs(OrthologBaseline),
}

/// An evaluation request.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalSpec {
    /// Species A.
    pub a: String,
    /// Species B.
    pub b: String,
    /// What represents the cells (default: the embeddings of the newest finetune or add-species
    /// run).
    pub features: Features,
    /// The cell-type correspondence.
    pub correspondence: CorrespondenceSource,
    /// Seed of the 80/20 split.
    pub seed: u64,
    /// Logistic regression `C`.
    pub c: f64,
    /// Neighbours for kNN transfer and mixing.
    pub k: usize,
    /// Split each label's cells 80/20 ([`metrics::stratified_split`]) instead of all cells.
    pub stratified: bool,
    /// Logistic-regression repeats with seeds `seed..seed + seeds`; the median of each score is
    /// reported (kNN and mixing do not depend on the split).
    pub seeds: usize,
}

impl EvalSpec {
    /// SATURN's defaults for species `a` and `b`.
    pub fn new(a: &str, b: &str) -> EvalSpec {
        EvalSpec {
            a: a.into(),
            b: b.into(),
            features: Features::Run(None),
            correspondence: CorrespondenceSource::ObsColumn(DEFAULT_CORRESPONDENCE.into()),
            seed: 0,
            c: DEFAULT_C,
            k: DEFAULT_K,
            stratified: false,
            seeds: 1,
        }
    }
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalRow {
    /// `A->B`, a species name, or `both`.
    pub direction: String,
    /// The metric (see the module doc).
    pub metric: String,
    /// Its value, in [0, 1].
    pub value: f64,
}

/// The evaluation's rows and the run they are for.
#[derive(Debug, Clone, PartialEq)]
pub struct EvalReport {
    /// What was evaluated: `run N`, or the baseline and its shared genes.
    pub features: String,
    /// The rows, in a fixed order.
    pub rows: Vec<EvalRow>,
    /// Per direction: L-BFGS iterations and the final max |gradient| of the logistic regression.
    pub fits: Vec<(String, usize, f64)>,
    /// Per direction: the classes kNN transfer calls by another class's label
    /// ([`metrics::swaps`]); their share of cells is the row `swapped_cells`.
    pub swaps: Vec<(String, Swap)>,
}

impl std::fmt::Display for EvalReport {
    /// A table: direction, metric, value.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "evaluation of {}", self.features)?;
        writeln!(f, "| direction | metric | value |")?;
        writeln!(f, "| --- | --- | ---: |")?;
        for r in &self.rows {
            writeln!(f, "| {} | {} | {:.3} |", r.direction, r.metric, r.value)?;
        }
        for (direction, iterations, gradient) in &self.fits {
            writeln!(
                f,
                "logistic regression {direction}: {iterations} L-BFGS iterations, \
                 max |gradient| {gradient:.1e}"
            )?;
        }
        for (direction, s) in &self.swaps {
            writeln!(
                f,
                "warning: {direction}: {} of the {} {:?} cells are called {:?}, another cell \
                 type's label",
                (s.share * s.cells as f64).round(),
                s.cells,
                s.class,
                s.called
            )?;
        }
        if !self.swaps.is_empty() {
            writeln!(
                f,
                "warning: {} cell type(s) above look swapped between species in this embedding \
                 (row swapped_cells); for a model run, train again with another --seed and \
                 compare (README, \"Training seeds\")",
                self.swaps.len()
            )?;
        }
        Ok(())
    }
}

/// One species' embedded cells: id, label, correspondence class (obs mode), embedding.
struct SpeciesCells {
    name: String,
    labels: Vec<String>,
    classes: Vec<Option<String>>,
    dim: usize,
    x: Vec<f32>,
}

impl SpeciesCells {
    fn row(&self, i: usize) -> &[f32] {
        &self.x[i * self.dim..(i + 1) * self.dim]
    }
    fn len(&self) -> usize {
        self.labels.len()
    }
}

/// Runs the evaluation (read-only) on the atlas behind `conn`.
pub fn evaluate(atlas: &Atlas, spec: &EvalSpec) -> Result<EvalReport, EvalError> {
    let conn = atlas.connection();
    check(conn, spec)?;
    let pairs = match &spec.correspondence {
        CorrespondenceSource::Csv(path) => Some(read_csv(path, &spec.a, &spec.b)?),
        CorrespondenceSource::ObsColumn(_) => None,
    };
    let column = match &spec.correspondence {
        CorrespondenceSource::ObsColumn(c) => Some(c.as_str()),
        CorrespondenceSource::Csv(_) => None,
    };
    let (features, a, b) = match &spec.features {
        Features::Run(run) => {
            let run = runs::select(conn, Need::Embedded, *run)?;
            let name = format!("run {run}");
            let of = |species: &str| {
                load(conn, species, column, &name, |keep| {
                    run_features(conn, run, keep)
                })
            };
            let (a, b) = (of(&spec.a)?, of(&spec.b)?);
            (name, a, b)
        }
        Features::Orthologs(params) => {
            let pca = ortholog_features(conn, &spec.a, &spec.b, params)?;
            let description = format!(
                "the 1:1-ortholog baseline: {} principal components of the log-normalised \
                 expression of {} shared one-to-one orthologs ({})",
                params.pcs,
                pca.shared_genes,
                params.table.display()
            );
            let a = load(conn, &spec.a, column, &description, |_| Ok(pca.a))?;
            let b = load(conn, &spec.b, column, &description, |_| Ok(pca.b))?;
            (description, a, b)
        }
    };
    let mut rows = Vec::new();
    let mut fits = Vec::new();
    let mut swapped_classes = Vec::new();
    let mut push = |direction: &str, metric: &str, value: f64| {
        rows.push(EvalRow {
            direction: direction.into(),
            metric: metric.into(),
            value,
        })
    };
    for (x, y, reversed) in [(&a, &b, false), (&b, &a, true)] {
        let direction = format!("{}->{}", x.name, y.name);
        let correspondence = match &pairs {
            Some(pairs) => Correspondence::from_pairs(pairs.iter().map(|(pa, pb)| {
                if reversed {
                    (pb.clone(), pa.clone())
                } else {
                    (pa.clone(), pb.clone())
                }
            })),
            None => Correspondence::majority(
                x.labels
                    .iter()
                    .zip(&x.classes)
                    .map(|(l, c)| (l.as_str(), c.as_deref())),
            ),
        };
        // The class of a Y cell: its obs value, or (CSV) its own label.
        let truth: Vec<Option<&str>> = match &pairs {
            Some(_) => y.labels.iter().map(|l| Some(l.as_str())).collect(),
            None => y.classes.iter().map(|c| c.as_deref()).collect(),
        };

        let mut runs: Vec<LrScores> = Vec::new();
        for seed in spec.seed..spec.seed + spec.seeds as u64 {
            let (train, test) = if spec.stratified {
                stratified_split(&x.labels, seed)
            } else {
                split(x.len(), seed)
            };
            let run = lr_scores(x, y, &truth, &correspondence, (&train, &test), spec.c);
            let name = match spec.seeds {
                0 | 1 => direction.clone(),
                _ => format!("{direction} (seed {seed})"),
            };
            fits.push((name, run.iterations, run.gradient));
            runs.push(run);
        }
        let median_of = |f: fn(&LrScores) -> f64| median(runs.iter().map(f).collect());
        push(&direction, "lr_accuracy", median_of(|r| r.accuracy));
        push(
            &direction,
            "lr_balanced_accuracy",
            median_of(|r| r.balanced),
        );
        push(
            &direction,
            "lr_max_achievable",
            median_of(|r| r.max_achievable),
        );
        push(&x.name, "lr_heldout_accuracy", median_of(|r| r.held_out));

        let x_labels: Vec<&str> = x.labels.iter().map(String::as_str).collect();
        let knn: Vec<String> = (0..y.len())
            .into_par_iter()
            .map(|j| {
                let hits = exact_knn((0..x.len()).map(|i| (i as i64, x.row(i))), y.row(j), spec.k);
                vote(
                    hits.iter()
                        .map(|h| (x_labels[h.cell_id as usize], h.distance)),
                    0.0,
                )
                .0
            })
            .collect();
        let knn: Vec<&str> = knn.iter().map(String::as_str).collect();
        let mut x_known = x_labels.clone();
        x_known.sort_unstable();
        x_known.dedup();
        let knn_scores = score(&knn, &truth, &correspondence, &x_known);
        push(&direction, "knn_accuracy", knn_scores.accuracy);
        push(
            &direction,
            "knn_balanced_accuracy",
            knn_scores.balanced_accuracy,
        );
        let swapped = swaps(&knn, &truth, &correspondence, &x_known);
        let swapped_cells: usize = swapped.iter().map(|s| s.cells).sum();
        push(
            &direction,
            "swapped_cells",
            swapped_cells as f64 / y.len().max(1) as f64,
        );
        swapped_classes.extend(swapped.into_iter().map(|s| (direction.clone(), s)));
    }
    let mixing = mixing(&a, &b, spec.k);
    let means: Vec<f64> = mixing.values().copied().collect();
    for ((species, label), value) in mixing {
        push(&species, &format!("mixing[{label}]"), value);
    }
    push(
        "both",
        "mixing_mean",
        means.iter().sum::<f64>() / means.len().max(1) as f64,
    );
    Ok(EvalReport {
        features,
        rows,
        fits,
        swaps: swapped_classes,
    })
}

/// One logistic-regression fit's scores (see the module doc) and convergence.
struct LrScores {
    accuracy: f64,
    balanced: f64,
    max_achievable: f64,
    held_out: f64,
    iterations: usize,
    gradient: f64,
}

/// Fits on X's `train` cells, scores X's `test` cells (exact labels) and every Y cell (through
/// the correspondence, against `truth`).
fn lr_scores(
    x: &SpeciesCells,
    y: &SpeciesCells,
    truth: &[Option<&str>],
    correspondence: &Correspondence,
    (train, test): (&[usize], &[usize]),
    c: f64,
) -> LrScores {
    let features = |cells: &SpeciesCells, idx: &[usize]| -> Vec<f64> {
        idx.iter()
            .flat_map(|&i| cells.row(i).iter().map(|&v| f64::from(v)))
            .collect()
    };
    let train_labels: Vec<&str> = train.iter().map(|&i| x.labels[i].as_str()).collect();
    let options = logreg::FitOptions {
        c,
        ..logreg::FitOptions::default()
    };
    let model = logreg::fit(&features(x, train), x.dim, &train_labels, &options);
    let known: Vec<&str> = model.classes.iter().map(String::as_str).collect();
    let held_out = model.predict(&features(x, test));
    let held_out_correct = held_out
        .iter()
        .zip(test)
        .filter(|(p, &i)| **p == x.labels[i])
        .count();
    let all_y: Vec<usize> = (0..y.len()).collect();
    let predicted = model.predict(&features(y, &all_y));
    let lr = score(&predicted, truth, correspondence, &known);
    LrScores {
        accuracy: lr.accuracy,
        balanced: lr.balanced_accuracy,
        max_achievable: lr.max_achievable,
        held_out: held_out_correct as f64 / test.len().max(1) as f64,
        iterations: model.iterations,
        gradient: model.gradient_norm,
    }
}

/// The median (mean of the two middle values for an even count) of a non-empty list.
fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    (values[(n - 1) / 2] + values[n / 2]) / 2.0
}

/// Per (species, label): the mean over its cells of the other species' share among each cell's
/// `k` nearest other cells (both species together).
fn mixing(a: &SpeciesCells, b: &SpeciesCells, k: usize) -> BTreeMap<(String, String), f64> {
    let all: Vec<(usize, &[f32])> = (0..a.len())
        .map(|i| (0, a.row(i)))
        .chain((0..b.len()).map(|i| (1, b.row(i))))
        .collect();
    let fractions: Vec<f64> = (0..all.len())
        .into_par_iter()
        .map(|q| {
            let hits = exact_knn(
                all.iter()
                    .enumerate()
                    .filter(|(i, _)| *i != q)
                    .map(|(i, (_, v))| (i as i64, *v)),
                all[q].1,
                k,
            );
            let other = hits
                .iter()
                .filter(|h| all[h.cell_id as usize].0 != all[q].0)
                .count();
            other as f64 / hits.len().max(1) as f64
        })
        .collect();
    let mut sums: BTreeMap<(String, String), (f64, usize)> = BTreeMap::new();
    for (q, fraction) in fractions.into_iter().enumerate() {
        let (species, i) = if q < a.len() {
            (a, q)
        } else {
            (b, q - a.len())
        };
        let entry = sums
            .entry((species.name.clone(), species.labels[i].clone()))
            .or_default();
        entry.0 += fraction;
        entry.1 += 1;
    }
    sums.into_iter()
        .map(|(key, (sum, n))| (key, sum / n as f64))
        .collect()
}

/// Checks names and parameters before any work.
fn check(conn: &Connection, spec: &EvalSpec) -> Result<(), EvalError> {
    let known = crate::atlas::species::known(conn)?;
    for name in [&spec.a, &spec.b] {
        if !known.contains(name) {
            return Err(EvalError::UnknownSpecies {
                name: name.clone(),
                known: known.join(", "),
            });
        }
    }
    if spec.a == spec.b {
        return Err(EvalError::SameSpecies(spec.a.clone()));
    }
    if !(spec.c > 0.0 && spec.c.is_finite()) {
        return Err(EvalError::InvalidParam {
            name: "c",
            value: spec.c.to_string(),
            rule: "a positive number (inverse regularisation strength)",
        });
    }
    if spec.seeds == 0 {
        return Err(EvalError::InvalidParam {
            name: "seeds",
            value: "0".into(),
            rule: "at least 1 (the number of splits whose median is reported)",
        });
    }
    if spec.k == 0 {
        return Err(EvalError::InvalidParam {
            name: "k",
            value: "0".into(),
            rule: "at least 1",
        });
    }
    if let CorrespondenceSource::ObsColumn(column) = &spec.correspondence {
        for species in [&spec.a, &spec.b] {
            let columns = query_all(
                conn,
                "SELECT DISTINCT o.\"column\" FROM cell_obs o JOIN cell_info c USING (cell_id) \
                 WHERE c.species = ? ORDER BY 1",
                [species],
                "listing obs columns",
                |r| r.get::<_, String>(0),
            )?;
            if !columns.contains(column) {
                return Err(EvalError::MissingColumn {
                    column: column.clone(),
                    species: species.clone(),
                    known: columns.join(", "),
                });
            }
        }
    }
    Ok(())
}

/// A run's embeddings of the cells `keep` accepts.
fn run_features(
    conn: &Connection,
    run: i32,
    keep: &dyn Fn(i64) -> bool,
) -> Result<CellFeatures, EvalError> {
    let embeddings = read(conn, run, keep)?;
    Ok(CellFeatures {
        cell_ids: embeddings.cell_ids,
        dim: embeddings.dim,
        values: embeddings.values,
    })
}

/// The labelled cells of `species` that `features` (given the labelled-cell filter) represents,
/// with their `column` values.
fn load(
    conn: &Connection,
    species: &str,
    column: Option<&str>,
    features_name: &str,
    features: impl FnOnce(&dyn Fn(i64) -> bool) -> Result<CellFeatures, EvalError>,
) -> Result<SpeciesCells, EvalError> {
    let labels: HashMap<i64, String> = query_all(
        conn,
        "SELECT cell_id, cell_type FROM cell_info WHERE species = ? AND cell_type IS NOT NULL",
        [species],
        "reading cell labels",
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )?
    .into_iter()
    .collect();
    let classes: HashMap<i64, String> = match column {
        Some(column) => query_all(
            conn,
            "SELECT o.cell_id, o.value FROM cell_obs o JOIN cell_info c USING (cell_id) \
             WHERE c.species = ? AND o.\"column\" = ?",
            [species, column],
            "reading the correspondence column",
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?
        .into_iter()
        .collect(),
        None => HashMap::new(),
    };
    let all = features(&|id| labels.contains_key(&id))?;
    let kept: Vec<usize> = (0..all.cell_ids.len())
        .filter(|&i| labels.contains_key(&all.cell_ids[i]))
        .collect();
    let cells = SpeciesCells {
        name: species.into(),
        labels: kept
            .iter()
            .map(|&i| labels[&all.cell_ids[i]].clone())
            .collect(),
        classes: kept
            .iter()
            .map(|&i| classes.get(&all.cell_ids[i]).cloned())
            .collect(),
        dim: all.dim,
        x: kept
            .iter()
            .flat_map(|&i| all.values[i * all.dim..(i + 1) * all.dim].iter().copied())
            .collect(),
    };
    let mut distinct: Vec<&String> = cells.labels.iter().collect();
    distinct.sort();
    distinct.dedup();
    if cells.len() < 5 || distinct.len() < 2 {
        return Err(EvalError::TooFewCells {
            species: species.into(),
            features: features_name.into(),
            cells: cells.len(),
            labels: distinct.len(),
        });
    }
    Ok(cells)
}

/// The (A label, B label) pairs of a correspondence CSV.
fn read_csv(path: &PathBuf, a: &str, b: &str) -> Result<Vec<(String, String)>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::CsvRead {
        what: "correspondence CSV",
        path: path.clone(),
        source,
    })?;
    let format = |problem: String| EvalError::CsvFormat {
        what: "correspondence CSV",
        path: path.clone(),
        problem,
    };
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines
        .next()
        .ok_or_else(|| format("the file is empty".into()))?
        .split(',')
        .map(str::trim)
        .collect();
    let find = |species: &str| {
        let name = format!("{species}_cell_type");
        header
            .iter()
            .position(|h| *h == name)
            .ok_or_else(|| format(format!("no column {name} (header: {})", header.join(","))))
    };
    let (ia, ib) = (find(a)?, find(b)?);
    let mut pairs = Vec::new();
    for (n, line) in lines.enumerate() {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        match (fields.get(ia), fields.get(ib)) {
            (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() => {
                pairs.push((x.to_string(), y.to_string()))
            }
            (Some(_), Some(_)) => {}
            _ => {
                return Err(format(format!(
                    "data line {} has {} fields, the header {}",
                    n + 1,
                    fields.len(),
                    header.len()
                )))
            }
        }
    }
    if pairs.is_empty() {
        return Err(format("no row pairs two cell types".into()));
    }
    Ok(pairs)
}
