//! Macrogene differential expression (`satlas de`, SQL `satlas_de(...)`): which macrogenes mark
//! each cell type, by a Wilcoxon rank-sum test of the macrogene expression that fine-tuning stored
//! per cell (`cell_embeddings.macrogene_expression`), with each top macrogene's genes by trained
//! weight, per species. Read-only: nothing is written to the atlas.
//!
//! - [`wilcoxon`]: the tests (scanpy `rank_genes_groups(method="wilcoxon", tie_correct=True)`
//!   semantics: z-score, two-sided p, Benjamini-Hochberg, log fold change), checked against scanpy
//!   by `tests/integration/de_reference.rs`.
//! - this module: which cells (a run's embedded cells, optionally of one species or dataset), their
//!   groups (the cell-type label, or an obs column), the reference (the rest, or one group), and the
//!   top genes of a macrogene (the run's trained weights `W = exp(P)`, largest first).

pub mod wilcoxon;

use crate::atlas::{query_all, AtlasError};
use crate::model::{trained_weights, SpeciesWeights};
use crate::progress;
use crate::runs::embeddings::read_vectors;
use crate::runs::{self, CellVector, Need, Scope};
use crate::Atlas;
use duckdb::Connection;
use ndarray::ArrayView2;
use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use wilcoxon::{rank_sum_tests, GroupTest, Reference};

/// The group column that means each dataset's cell-type label column.
pub const LABEL_GROUP: &str = "cell_type";
/// Default macrogenes reported per group.
pub const DEFAULT_TOP: usize = 10;
/// Default genes reported per macrogene and species.
pub const DEFAULT_GENES: usize = 5;

/// Why a differential-expression request was refused.
#[derive(Debug, thiserror::Error)]
pub enum DeError {
    /// The group column is neither `cell_type` nor an obs column of the selected cells.
    #[error(
        "no group column {column:?}: use cell_type (each dataset's label column) or one of the obs \
         columns of the selected cells: {known}"
    )]
    UnknownColumn {
        /// The column asked for.
        column: String,
        /// The obs columns available.
        known: String,
    },
    /// The reference group does not exist among the selected cells.
    #[error("reference group {name:?} has no cells in column {column} (groups: {known}); pass --reference rest or one of them")]
    UnknownReference {
        /// The reference asked for.
        name: String,
        /// The group column.
        column: String,
        /// The groups present.
        known: String,
    },
    /// Too few groups or cells to compare.
    #[error("{what}: differential expression needs at least two groups of at least 2 cells ({column} among {cells} cells with macrogene expression in run {run})")]
    TooFewGroups {
        /// What is missing.
        what: String,
        /// The group column.
        column: String,
        /// Cells with a group value and macrogene expression.
        cells: usize,
        /// The model run.
        run: i32,
    },
    /// A stored macrogene expression value is NaN or infinite.
    #[error("cell {cell_id} has a non-finite macrogene expression value in run {run}: re-run fine-tuning")]
    NonFinite {
        /// The cell.
        cell_id: i64,
        /// The run.
        run: i32,
    },
    /// A parameter is out of range.
    #[error("invalid differential-expression parameter {name} = {value}: {rule}")]
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
}

/// A differential-expression request.
#[derive(Debug, Clone, PartialEq)]
pub struct DeSpec {
    /// The model run (default: the newest finetune run with embeddings).
    pub run: Option<i32>,
    /// `cell_type` (the label) or an obs column.
    pub group: String,
    /// Which cells take part.
    pub scope: Scope,
    /// The comparison group (`None`: each group against all other cells).
    pub reference: Option<String>,
    /// Macrogenes reported per group (by score, largest first).
    pub top: usize,
    /// Genes reported per macrogene and species (by weight, largest first).
    pub genes: usize,
}

impl Default for DeSpec {
    /// Every embedded cell, grouped by cell type, each type against the rest.
    fn default() -> Self {
        DeSpec {
            run: None,
            group: LABEL_GROUP.into(),
            scope: Scope::All,
            reference: None,
            top: DEFAULT_TOP,
            genes: DEFAULT_GENES,
        }
    }
}

/// One macrogene of one group.
#[derive(Debug, Clone, PartialEq)]
pub struct DeRow {
    /// The group (cell type or obs value).
    pub group: String,
    /// 1 for the group's highest score.
    pub rank: usize,
    /// The macrogene (0-based, as in `macrogenes.macrogene`).
    pub macrogene: usize,
    /// Rank-sum z-score (positive: higher in the group).
    pub score: f64,
    /// log2 fold change (scanpy's definition, see [`wilcoxon`]).
    pub logfc: f64,
    /// Two-sided p-value.
    pub pval: f64,
    /// Benjamini-Hochberg adjusted p-value (over the group's macrogenes).
    pub pval_adj: f64,
    /// Per species: the macrogene's top genes and their weights.
    pub genes: Vec<(String, Vec<(String, f32)>)>,
}

impl DeRow {
    /// The top genes as text: `human: INS 3.1, IAPP 2.0; mouse: Ins1 2.9, ...`.
    pub fn genes_text(&self) -> String {
        self.genes
            .iter()
            .map(|(species, genes)| {
                let list: Vec<String> = genes.iter().map(|(g, w)| format!("{g} {w:.3}")).collect();
                format!("{species}: {}", list.join(", "))
            })
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// The result of [`differential_expression`].
#[derive(Debug, Clone, PartialEq)]
pub struct DeReport {
    /// The model run.
    pub run: i32,
    /// The group column.
    pub column: String,
    /// The reference (`rest` or a group).
    pub reference: String,
    /// Cells compared.
    pub cells: usize,
    /// Groups tested, with their number of cells.
    pub groups: Vec<(String, usize)>,
    /// Groups not tested because they have a single cell (their cell still counts as "rest").
    pub skipped: Vec<String>,
    /// The top macrogenes of every tested group, group by group.
    pub rows: Vec<DeRow>,
}

impl fmt::Display for DeReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "macrogene differential expression, run {}: {} cells, {} groups of {} vs {} \
             (Wilcoxon rank-sum, tie-corrected; p_adj: Benjamini-Hochberg per group)",
            self.run,
            self.cells,
            self.groups.len(),
            self.column,
            self.reference
        )?;
        if !self.skipped.is_empty() {
            writeln!(f, "not tested (a single cell): {}", self.skipped.join(", "))?;
        }
        writeln!(
            f,
            "| group | rank | macrogene | score | logfc | pval | pval_adj | top genes (weight) |"
        )?;
        writeln!(f, "| --- | ---: | ---: | ---: | ---: | ---: | ---: | --- |")?;
        for r in &self.rows {
            writeln!(
                f,
                "| {} | {} | {} | {:.2} | {:.2} | {:.2e} | {:.2e} | {} |",
                r.group,
                r.rank,
                r.macrogene,
                r.score,
                r.logfc,
                r.pval,
                r.pval_adj,
                r.genes_text()
            )?;
        }
        Ok(())
    }
}

/// The cells taking part, their groups and their macrogene expression.
struct Cells {
    group_names: Vec<String>,
    groups: Vec<usize>,
    n_macrogenes: usize,
    expression: Vec<f32>,
}

/// Runs the tests (read-only) and returns each tested group's top macrogenes.
pub fn differential_expression(atlas: &Atlas, spec: &DeSpec) -> crate::Result<DeReport> {
    let conn = atlas.connection();
    check(spec)?;
    let run = runs::select(conn, Need::Embedded, spec.run)?;
    let in_scope: Option<HashSet<i64>> =
        spec.scope.cells(conn)?.map(|ids| ids.into_iter().collect());
    let values = group_values(conn, &spec.group, in_scope.as_ref())?;
    let cells = load(conn, run, values)?;
    let plan = plan(&cells, spec, run)?;

    let x = ArrayView2::from_shape((cells.groups.len(), cells.n_macrogenes), &cells.expression)
        .expect("one expression row per cell");
    let bar = progress::bar(cells.n_macrogenes as u64, "ranking");
    let n_groups = cells.group_names.len();
    let tests = rank_sum_tests(
        x,
        &cells.groups,
        n_groups,
        &plan.tested,
        plan.reference,
        &|| bar.inc(1),
    );
    bar.finish_and_clear();
    let weights = trained_weights(conn, run)?;
    let symbols = gene_symbols(conn, &weights)?;
    let rows = tests
        .iter()
        .flat_map(|t| top_rows(t, &cells.group_names, spec, &weights, &symbols))
        .collect();
    Ok(DeReport {
        run,
        column: spec.group.clone(),
        reference: spec.reference.clone().unwrap_or_else(|| "rest".into()),
        cells: cells.groups.len(),
        groups: plan
            .tested
            .iter()
            .map(|&g| (cells.group_names[g].clone(), plan.sizes[g]))
            .collect(),
        skipped: plan
            .skipped
            .iter()
            .map(|&g| cells.group_names[g].clone())
            .collect(),
        rows,
    })
}

/// Which groups are tested, against what, and the groups' sizes.
struct Plan {
    reference: Reference,
    sizes: Vec<usize>,
    tested: Vec<usize>,
    skipped: Vec<usize>,
}

/// Resolves the reference group and splits the groups into tested (2 cells or more) and skipped;
/// refuses when there is nothing to compare.
fn plan(cells: &Cells, spec: &DeSpec, run: i32) -> Result<Plan, DeError> {
    let mut sizes = vec![0usize; cells.group_names.len()];
    for &g in &cells.groups {
        sizes[g] += 1;
    }
    let too_few = |what: String| DeError::TooFewGroups {
        what,
        column: spec.group.clone(),
        cells: cells.groups.len(),
        run,
    };
    let reference = match &spec.reference {
        None => Reference::Rest,
        Some(name) => {
            let r = cells
                .group_names
                .iter()
                .position(|g| g == name)
                .ok_or_else(|| DeError::UnknownReference {
                    name: name.clone(),
                    column: spec.group.clone(),
                    known: cells.group_names.join(", "),
                })?;
            if sizes[r] < 2 {
                return Err(too_few(format!(
                    "reference group {name:?} has a single cell"
                )));
            }
            Reference::Group(r)
        }
    };
    let (tested, skipped): (Vec<usize>, Vec<usize>) = (0..sizes.len())
        .filter(|&g| reference != Reference::Group(g))
        .partition(|&g| sizes[g] >= 2);
    let needed = if reference == Reference::Rest { 2 } else { 1 };
    if tested.len() < needed {
        return Err(too_few(format!(
            "{} group(s) with 2 or more cells",
            tested.len()
        )));
    }
    Ok(Plan {
        reference,
        sizes,
        tested,
        skipped,
    })
}

fn check(spec: &DeSpec) -> Result<(), DeError> {
    if spec.top == 0 {
        return Err(DeError::InvalidParam {
            name: "top",
            value: "0".into(),
            rule: "at least 1 macrogene per group",
        });
    }
    Ok(())
}

/// Each cell's value of the group column (`cell_type`: the label; else an obs column), for the
/// cells in scope; cells without a value are left out.
fn group_values(
    conn: &Connection,
    column: &str,
    in_scope: Option<&HashSet<i64>>,
) -> Result<HashMap<i64, String>, DeError> {
    let rows = if column == LABEL_GROUP {
        query_all(
            conn,
            "SELECT cell_id, cell_type FROM cells WHERE cell_type IS NOT NULL",
            [],
            "reading cell labels",
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?
    } else {
        query_all(
            conn,
            "SELECT cell_id, value FROM cell_obs WHERE \"column\" = ?",
            [column],
            "reading the group column",
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?
    };
    let values: HashMap<i64, String> = rows
        .into_iter()
        .filter(|(id, _)| in_scope.is_none_or(|s| s.contains(id)))
        .collect();
    if values.is_empty() && column != LABEL_GROUP {
        let known = query_all(
            conn,
            "SELECT DISTINCT \"column\" FROM cell_obs ORDER BY 1",
            [],
            "listing obs columns",
            |r| r.get::<_, String>(0),
        )?;
        return Err(DeError::UnknownColumn {
            column: column.into(),
            known: known.join(", "),
        });
    }
    Ok(values)
}

/// The macrogene expression of the run's cells that have a group value, groups sorted by name.
fn load(conn: &Connection, run: i32, values: HashMap<i64, String>) -> crate::Result<Cells> {
    let expression = read_vectors(conn, run, CellVector::MacrogeneExpression, |id| {
        values.contains_key(&id)
    })?;
    if let Some(i) = expression.values.iter().position(|v| !v.is_finite()) {
        return Err(DeError::NonFinite {
            cell_id: expression.cell_ids[i / expression.dim.max(1)],
            run,
        }
        .into());
    }
    let names: BTreeSet<&String> = expression.cell_ids.iter().map(|id| &values[id]).collect();
    let group_names: Vec<String> = names.into_iter().cloned().collect();
    let groups = expression
        .cell_ids
        .iter()
        .map(|id| group_names.binary_search(&values[id]).unwrap_or_default())
        .collect();
    Ok(Cells {
        group_names,
        groups,
        n_macrogenes: expression.dim,
        expression: expression.values,
    })
}

/// Gene id → symbol for the genes of the run's weights.
fn gene_symbols(
    conn: &Connection,
    weights: &[SpeciesWeights],
) -> Result<HashMap<i32, String>, AtlasError> {
    let wanted: HashSet<i32> = weights
        .iter()
        .flat_map(|w| w.gene_ids.iter().copied())
        .collect();
    Ok(query_all(
        conn,
        "SELECT gene_id, symbol FROM genes",
        [],
        "reading gene symbols",
        |r| Ok((r.get::<_, i32>(0)?, r.get::<_, String>(1)?)),
    )?
    .into_iter()
    .filter(|(id, _)| wanted.contains(id))
    .collect())
}

/// A group's `top` macrogenes by score, each with its top genes per species.
fn top_rows(
    test: &GroupTest,
    names: &[String],
    spec: &DeSpec,
    weights: &[SpeciesWeights],
    symbols: &HashMap<i32, String>,
) -> Vec<DeRow> {
    let mut order: Vec<usize> = (0..test.scores.len()).collect();
    order.sort_by(|&a, &b| test.scores[b].total_cmp(&test.scores[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(spec.top)
        .zip(1..)
        .map(|(m, rank)| DeRow {
            group: names[test.group].clone(),
            rank,
            macrogene: m,
            score: test.scores[m],
            logfc: test.logfc[m],
            pval: test.pvals[m],
            pval_adj: test.pvals_adj[m],
            genes: weights
                .iter()
                .map(|w| (w.species.clone(), top_genes(w, m, spec.genes, symbols)))
                .collect(),
        })
        .collect()
}

/// The `n` genes of a species with the largest weight in macrogene `m`.
fn top_genes(
    w: &SpeciesWeights,
    m: usize,
    n: usize,
    symbols: &HashMap<i32, String>,
) -> Vec<(String, f32)> {
    let row = w.weights.row(m);
    let mut order: Vec<usize> = (0..row.len()).collect();
    order.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    order
        .into_iter()
        .take(n)
        .map(|g| {
            let id = w.gene_ids[g];
            let symbol = symbols
                .get(&id)
                .cloned()
                .unwrap_or_else(|| format!("gene#{id}"));
            (symbol, row[g])
        })
        .collect()
}
