//! Pictures of a model run, as SVG or PNG: the UMAP layout coloured by a cell attribute
//! (`satlas plot umap`), the training curves (`satlas plot training`) and the top macrogenes per
//! cell type as a heatmap (`satlas plot de`); and the one-page HTML report that holds them all
//! with the atlas summary and the evaluation ([`report`]).
//!
//! Every chart is drawn as SVG by [`charts`] (a small writer in [`svg`], no font needed); PNG is
//! that SVG rasterised by resvg with a system font ([`output`]). The output path is checked
//! (extension, existing folder) before anything is computed or stored, and the file is written
//! to a temporary file renamed into place, so a refused or failed plot writes nothing.

pub mod charts;
pub mod output;
pub mod report;
pub mod svg;

use crate::atlas::{query_all, AtlasError};
use crate::de::{differential_expression, DeSpec};
use crate::export::read_cells;
use crate::layout::{self, Layout, LayoutOrigin};
use crate::runs::embeddings::read_vectors;
use crate::runs::{self, CellVector, Need};
use crate::Atlas;
use charts::{Colouring, Heatmap, ScatterText, Series};
use duckdb::Connection;
use output::{Format, Output};
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Why a picture could not be drawn or written.
#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    /// The output file name has no extension satlas can write.
    #[error("cannot tell what to write to {path}: give a file name ending in {expected}")]
    OutputFormat {
        /// The path given.
        path: PathBuf,
        /// The extensions accepted.
        expected: String,
    },
    /// The output file's folder does not exist.
    #[error("cannot write {path}: the folder {folder} does not exist; create it first")]
    MissingFolder {
        /// The path given.
        path: PathBuf,
        /// Its folder.
        folder: PathBuf,
    },
    /// An unknown colour column.
    #[error("unknown colour column {given:?}: choose one of {}", ColourBy::NAMES.join(", "))]
    UnknownColour {
        /// The name given.
        given: String,
    },
    /// Colouring by a label transfer of a run that has none.
    #[error(
        "model run {run} has no label transfer to colour by {colour}: run `satlas transfer \
         --reference SPECIES --query DATASET` first, or colour by species, cell_type or dataset"
    )]
    NoTransfer {
        /// The run.
        run: i32,
        /// The colour asked for.
        colour: ColourBy,
    },
    /// No training log for the run or its parents.
    #[error("model run {run} and the runs it continues have no training log: train with `satlas pretrain` / `satlas finetune` first")]
    NoTrainingLog {
        /// The run.
        run: i32,
    },
    /// The picture could not be rendered or its file written.
    #[error("cannot write {path}: {message}")]
    Render {
        /// The output path.
        path: PathBuf,
        /// What failed.
        message: String,
    },
    /// The atlas could not be read or the file not moved into place.
    #[error(transparent)]
    Atlas(#[from] AtlasError),
}

/// What colours the cells of a UMAP plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColourBy {
    /// The cell's species.
    Species,
    /// The cell's label in its dataset.
    CellType,
    /// The cell's dataset.
    Dataset,
    /// The run's latest label transfer's label.
    TransferredLabel,
    /// That transfer's confidence (continuous).
    Confidence,
}

impl ColourBy {
    /// The names `--color` accepts, in the order of the variants.
    pub const NAMES: [&'static str; 5] = [
        "species",
        "cell_type",
        "dataset",
        "transferred_label",
        "confidence",
    ];
    const ALL: [ColourBy; 5] = [
        ColourBy::Species,
        ColourBy::CellType,
        ColourBy::Dataset,
        ColourBy::TransferredLabel,
        ColourBy::Confidence,
    ];

    /// The column name.
    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|c| *c == self).unwrap_or(0)]
    }
}

impl fmt::Display for ColourBy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for ColourBy {
    type Err = PlotError;
    fn from_str(s: &str) -> Result<Self, PlotError> {
        Self::NAMES
            .iter()
            .position(|n| n.eq_ignore_ascii_case(s))
            .map(|i| Self::ALL[i])
            .ok_or_else(|| PlotError::UnknownColour { given: s.into() })
    }
}

/// What a plot command wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotReport {
    /// The model run drawn.
    pub run: i32,
    /// What was drawn.
    pub what: String,
    /// The file written.
    pub path: PathBuf,
}

impl fmt::Display for PlotReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "wrote {} of run {} to {}",
            self.what,
            self.run,
            self.path.display()
        )
    }
}

/// The scatter of `layout` coloured by `colour` (cells as `export::read_cells` reads them).
pub fn umap_chart(
    conn: &Connection,
    layout: &Layout,
    colour: ColourBy,
) -> Result<svg::Svg, PlotError> {
    let cells = read_cells(conn, layout.run)?;
    let by_id: HashMap<i64, usize> = cells
        .iter()
        .enumerate()
        .map(|(i, c)| (c.cell_id, i))
        .collect();
    let cell = |id: i64| by_id.get(&id).map(|&i| &cells[i]);
    let label = |f: &dyn Fn(&crate::export::CellRow) -> Option<String>| -> Vec<Option<String>> {
        layout
            .cell_ids
            .iter()
            .map(|&id| cell(id).and_then(f))
            .collect()
    };
    let colouring = match colour {
        ColourBy::Species => Colouring::Categories(label(&|c| Some(c.species.clone()))),
        ColourBy::CellType => Colouring::Categories(label(&|c| c.cell_type.clone())),
        ColourBy::Dataset => Colouring::Categories(label(&|c| Some(c.dataset.clone()))),
        ColourBy::TransferredLabel => {
            Colouring::Categories(label(&|c| c.transferred_label.clone()))
        }
        ColourBy::Confidence => Colouring::Continuous(
            layout
                .cell_ids
                .iter()
                .map(|&id| cell(id).and_then(|c| c.transfer_confidence))
                .collect(),
        ),
    };
    let transfers = matches!(colour, ColourBy::TransferredLabel | ColourBy::Confidence);
    if transfers && cells.iter().all(|c| c.transfer_confidence.is_none()) {
        return Err(PlotError::NoTransfer {
            run: layout.run,
            colour,
        });
    }
    let text = ScatterText {
        title: format!(
            "UMAP of run {}: {} cells by {}",
            layout.run,
            layout.cell_ids.len(),
            colour
        ),
        colour_by: colour.to_string(),
        missing: if transfers { "(no transfer)" } else { "(none)" }.into(),
    };
    Ok(charts::scatter(&layout.points, &colouring, &text))
}

/// `satlas plot umap`: the UMAP of `run` (default: the newest finetune or add-species run)
/// coloured by `colour`, to `out` (.svg or .png). A missing or stale layout is computed (or
/// extended) and stored first, in one transaction, when the atlas is writable.
pub fn plot_umap(
    atlas: &mut Atlas,
    run: Option<i32>,
    colour: ColourBy,
    out: &Path,
) -> crate::Result<(PlotReport, LayoutOrigin)> {
    let out = Output::check(out, &[Format::Svg, Format::Png])?;
    let (layout, origin) = layout::current(atlas, run)?;
    let chart = umap_chart(atlas.connection(), &layout, colour)?;
    out.write_svg(&chart.finish())?;
    Ok((
        PlotReport {
            run: layout.run,
            what: format!("the UMAP by {colour}"),
            path: out.path().into(),
        },
        origin,
    ))
}

/// The training curves of `run` and of the runs it continues (pretraining before fine-tuning):
/// one chart per run with a training log, the total loss and each loss term per epoch.
pub fn training_charts(conn: &Connection, run: i32) -> Result<Vec<svg::Svg>, PlotError> {
    let mut lineage = vec![run];
    while let Some(parent) = query_all(
        conn,
        "SELECT parent_run_id FROM model_runs WHERE model_run_id = ? AND parent_run_id IS NOT NULL",
        [*lineage.last().unwrap_or(&run)],
        "reading the runs a run continues",
        |r| r.get::<_, i32>(0),
    )?
    .first()
    .copied()
    .filter(|p| !lineage.contains(p))
    {
        lineage.push(parent);
    }
    lineage.reverse();
    let mut charts = Vec::new();
    for id in lineage {
        let rows = query_all(
            conn,
            "SELECT r.kind, l.epoch, l.loss, l.components FROM training_log l \
             JOIN model_runs r USING (model_run_id) WHERE l.model_run_id = ? ORDER BY l.epoch",
            [id],
            "reading the training log",
            |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, i32>(1)?,
                    r.get::<_, f64>(2)?,
                    r.get::<_, Option<String>>(3)?,
                ))
            },
        )?;
        let Some(kind) = rows.first().map(|r| r.0.clone()) else {
            continue;
        };
        let mut series: Vec<Series> = vec![Series {
            name: "loss (total)".into(),
            points: rows.iter().map(|r| (f64::from(r.1 + 1), r.2)).collect(),
        }];
        for term in ["zinb", "regulariser"] {
            let points: Vec<(f64, f64)> = rows
                .iter()
                .filter_map(|r| {
                    let json: serde_json::Value = serde_json::from_str(r.3.as_deref()?).ok()?;
                    Some((f64::from(r.1 + 1), json.get(term)?.as_f64()?))
                })
                .collect();
            if points.iter().any(|p| p.1 != 0.0) {
                series.push(Series {
                    name: term.into(),
                    points,
                });
            }
        }
        let title = format!("run {id} ({kind}): loss per epoch");
        charts.push(charts::lines(&title, "epoch", &series, 760.0, 320.0));
    }
    if charts.is_empty() {
        return Err(PlotError::NoTrainingLog { run });
    }
    Ok(charts)
}

/// The charts stacked into one SVG, one under the other.
pub fn stack(charts: &[svg::Svg]) -> String {
    let width = charts.iter().map(svg::Svg::width).fold(0f64, f64::max);
    let height: f64 = charts.iter().map(svg::Svg::height).sum();
    let mut out = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n"
    );
    let mut y = 0.0;
    for chart in charts {
        out.push_str(&format!("<g transform=\"translate(0 {y})\">\n"));
        out.push_str(&chart.finish());
        out.push_str("</g>\n");
        y += chart.height();
    }
    out.push_str("</svg>\n");
    out
}

/// `satlas plot training`: [`training_charts`] of `run` (default: the newest finetune or
/// add-species run) to `out`.
pub fn plot_training(atlas: &Atlas, run: Option<i32>, out: &Path) -> crate::Result<PlotReport> {
    let conn = atlas.connection();
    let out = Output::check(out, &[Format::Svg, Format::Png])?;
    let run = runs::select(conn, Need::Embedded, run)?;
    let charts = training_charts(conn, run)?;
    out.write_svg(&stack(&charts))?;
    Ok(PlotReport {
        run,
        what: "the training curves".into(),
        path: out.path().into(),
    })
}

/// Macrogenes shown per cell type in the DE heatmap.
pub const DE_TOP: usize = 3;

/// The DE heatmap of `spec`'s run: rows are the groups, columns the union of each group's
/// [`DE_TOP`] macrogenes by z-score (labelled with the top gene of the first species), values
/// the mean stored macrogene expression of the group's cells scaled to [0, 1] per macrogene
/// (scanpy's `standard_scale='var'`), over the cells of the spec's scope; each cell's tooltip
/// has the value.
pub fn de_chart(atlas: &Atlas, spec: &DeSpec) -> crate::Result<svg::Svg> {
    let conn = atlas.connection();
    let spec = DeSpec {
        top: DE_TOP,
        genes: 1,
        ..spec.clone()
    };
    let report = differential_expression(atlas, &spec)?;
    let mut columns: Vec<(usize, String)> = Vec::new();
    for row in &report.rows {
        if !columns.iter().any(|c| c.0 == row.macrogene) {
            let gene = row
                .genes
                .iter()
                .find_map(|(_, g)| g.first().map(|g| g.0.clone()))
                .unwrap_or_default();
            columns.push((row.macrogene, format!("MG{} {gene}", row.macrogene)));
        }
    }
    let groups: Vec<String> = report.groups.iter().map(|g| g.0.clone()).collect();
    let mut group_of = group_labels(conn, report.run, &spec.group)?;
    if let Some(in_scope) = spec.scope.cells(conn)? {
        let in_scope: std::collections::HashSet<i64> = in_scope.into_iter().collect();
        group_of.retain(|id, _| in_scope.contains(id));
    }
    let expression = read_vectors(conn, report.run, CellVector::MacrogeneExpression, |id| {
        group_of.contains_key(&id)
    })?;
    let mut sums = vec![vec![0f64; columns.len()]; groups.len()];
    let mut counts = vec![0usize; groups.len()];
    let index: HashMap<&str, usize> = groups
        .iter()
        .enumerate()
        .map(|(i, g)| (g.as_str(), i))
        .collect();
    for (row, id) in expression.cell_ids.iter().enumerate() {
        let Some(&g) = group_of.get(id).and_then(|g| index.get(g.as_str())) else {
            continue;
        };
        counts[g] += 1;
        let values = expression.row(row);
        for (c, (mg, _)) in columns.iter().enumerate() {
            sums[g][c] += f64::from(values.get(*mg).copied().unwrap_or(0.0));
        }
    }
    let means: Vec<Vec<f64>> = sums
        .iter()
        .zip(&counts)
        .map(|(s, &n)| s.iter().map(|v| v / n.max(1) as f64).collect())
        .collect();
    let mut values = vec![vec![None; columns.len()]; groups.len()];
    for c in 0..columns.len() {
        let (lo, hi) = means
            .iter()
            .map(|m| m[c])
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        for g in 0..groups.len() {
            let span = if hi > lo { hi - lo } else { 1.0 };
            values[g][c] = Some((means[g][c] - lo) / span);
        }
    }
    let cols: Vec<String> = columns.into_iter().map(|c| c.1).collect();
    let title = format!(
        "run {}: top {DE_TOP} macrogenes per {} (Wilcoxon vs {})",
        report.run, report.column, report.reference
    );
    Ok(charts::heatmap(&Heatmap {
        title: &title,
        rows: &groups,
        cols: &cols,
        values: &values,
        notes: None,
        scale_label: "mean expression, scaled per macrogene",
    }))
}

/// Each embedded cell's value of `column` (`cell_type` or an obs column).
fn group_labels(
    conn: &Connection,
    run: i32,
    column: &str,
) -> Result<HashMap<i64, String>, AtlasError> {
    let rows = if column == crate::de::LABEL_GROUP {
        query_all(
            conn,
            "SELECT c.cell_id, c.cell_type FROM cells c JOIN cell_embeddings e USING (cell_id) \
             WHERE e.model_run_id = ? AND c.cell_type IS NOT NULL",
            duckdb::params![run],
            "reading cell types",
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?
    } else {
        query_all(
            conn,
            "SELECT o.cell_id, o.value FROM cell_obs o JOIN cell_embeddings e USING (cell_id) \
             WHERE e.model_run_id = ? AND o.\"column\" = ?",
            duckdb::params![run, column],
            "reading the group column",
            |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
        )?
    };
    Ok(rows.into_iter().collect())
}

/// `satlas plot de`: [`de_chart`] to `out`.
pub fn plot_de(atlas: &Atlas, spec: &DeSpec, out: &Path) -> crate::Result<PlotReport> {
    let conn = atlas.connection();
    let out = Output::check(out, &[Format::Svg, Format::Png])?;
    let run = runs::select(conn, Need::Embedded, spec.run)?;
    let chart = de_chart(
        atlas,
        &DeSpec {
            run: Some(run),
            ..spec.clone()
        },
    )?;
    out.write_svg(&chart.finish())?;
    Ok(PlotReport {
        run,
        what: "the DE heatmap".into(),
        path: out.path().into(),
    })
}
