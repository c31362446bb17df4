//! `satlas report`: one self-contained HTML page about a model run (inline CSS and SVG, no
//! script, no external URL, so it opens offline and prints): the atlas summary and datasets, the
//! UMAP by species, cell type, dataset and transferred label, the training curves, SATURN's
//! evaluation (computed here with `satlas eval`'s defaults, nothing stored) with the 1:1-ortholog
//! baseline beside it when an ortholog table is given, per-cell-type species mixing as bars, the
//! latest label transfer's confusion matrix and the DE heatmap.
//!
//! A section whose input is missing (no transfer, no correspondence column for the evaluation)
//! says why in place of its picture; the page is still written.

use super::charts::{self, Heatmap};
use super::output::{Format, Output};
use super::svg::escape;
use super::{de_chart, training_charts, umap_chart, ColourBy, PlotReport};
use crate::atlas::query_all;
use crate::de::DeSpec;
use crate::eval::baseline::OrthologBaseline;
use crate::eval::{self, EvalReport, EvalSpec, Features};
use crate::layout;
use crate::Atlas;
use duckdb::Connection;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// What the report covers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ReportSpec {
    /// The model run (default: the newest finetune or add-species run).
    pub run: Option<i32>,
    /// The species pair of the evaluation (default: the atlas's two species, when it has two).
    pub species: Option<(String, String)>,
    /// An ortholog table for the baseline column of the evaluation (`satlas eval --orthologs`).
    pub orthologs: Option<PathBuf>,
}

const STYLE: &str = "
body { font-family: 'DejaVu Sans', Verdana, sans-serif; margin: 2em auto; max-width: 1000px;
       color: #222; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { font-size: 1.25em; border-bottom: 1px solid #ccc; margin-top: 2em; }
table { border-collapse: collapse; margin: 0.8em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: left; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
th { background: #f2f2f2; }
.note { color: #8a5a00; background: #fff6e0; padding: 0.5em 0.8em; border-left: 4px solid #e0a800; }
figure { margin: 1em 0; } svg { max-width: 100%; height: auto; }
";

/// `satlas report`: writes the page to `out` (.html). A missing or stale layout is computed and
/// stored first when the atlas is writable (as `satlas plot umap`); nothing else is stored.
pub fn write_report(atlas: &mut Atlas, spec: &ReportSpec, out: &Path) -> crate::Result<PlotReport> {
    let out = Output::check(out, &[Format::Html])?;
    let (layout, _) = layout::current(atlas, spec.run)?;
    let conn = atlas.connection();
    let run = layout.run;
    let mut html = String::new();
    let _ = write!(
        html,
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">\
         <title>satlas report: run {run}</title><style>{STYLE}</style></head><body>\n\
         <h1>satlas report: model run {run}</h1>\n"
    );
    summary(&mut html, atlas)?;

    html.push_str("<h2 id=\"umap\">UMAP of the integrated cells</h2>\n");
    let _ = writeln!(
        html,
        "<p>{} cells; UMAP with n_neighbors {}, min_dist {}, {} epochs, seed {} (stored in \
         <code>umap_layouts</code>).</p>",
        layout.cell_ids.len(),
        layout.params.params.n_neighbors,
        layout.params.params.min_dist,
        layout.params.epochs,
        layout.params.params.seed
    );
    for colour in [
        ColourBy::Species,
        ColourBy::CellType,
        ColourBy::Dataset,
        ColourBy::TransferredLabel,
    ] {
        match umap_chart(conn, &layout, colour) {
            Ok(svg) => figure(&mut html, &svg.finish()),
            Err(e) => note(&mut html, &e.to_string()),
        }
    }

    html.push_str("<h2 id=\"training\">Training</h2>\n");
    match training_charts(conn, run) {
        Ok(charts) => charts.iter().for_each(|c| figure(&mut html, &c.finish())),
        Err(e) => note(&mut html, &e.to_string()),
    }

    html.push_str("<h2 id=\"evaluation\">Evaluation</h2>\n");
    evaluation(&mut html, atlas, run, spec)?;

    html.push_str("<h2 id=\"transfer\">Label transfer</h2>\n");
    confusion(&mut html, conn, run)?;

    html.push_str("<h2 id=\"de\">Macrogene differential expression</h2>\n");
    let de = DeSpec {
        run: Some(run),
        ..DeSpec::default()
    };
    match de_chart(atlas, &de) {
        Ok(svg) => figure(&mut html, &svg.finish()),
        Err(e) => note(&mut html, &crate::error::messages(&e).join(": ")),
    }
    html.push_str("</body></html>\n");
    out.write_bytes(html.as_bytes())?;
    Ok(PlotReport {
        run,
        what: "the report".into(),
        path: out.path().into(),
    })
}

fn figure(html: &mut String, svg: &str) {
    html.push_str("<figure>\n");
    html.push_str(svg);
    html.push_str("</figure>\n");
}

fn note(html: &mut String, text: &str) {
    let _ = writeln!(html, "<p class=\"note\">{}</p>", escape(text));
}

/// A table with a header row; cells that parse as numbers are right-aligned.
fn table(html: &mut String, header: &[&str], rows: &[Vec<String>]) {
    html.push_str("<table><tr>");
    for h in header {
        let _ = write!(html, "<th>{}</th>", escape(h));
    }
    html.push_str("</tr>\n");
    for row in rows {
        html.push_str("<tr>");
        for cell in row {
            let class = if cell.parse::<f64>().is_ok() {
                " class=\"num\""
            } else {
                ""
            };
            let _ = write!(html, "<td{class}>{}</td>", escape(cell));
        }
        html.push_str("</tr>\n");
    }
    html.push_str("</table>\n");
}

fn summary(html: &mut String, atlas: &Atlas) -> crate::Result<()> {
    let s = atlas.summary()?;
    let _ = writeln!(
        html,
        "<p>Atlas <code>{}</code>, schema version {}.</p>",
        escape(&s.path.display().to_string()),
        s.schema_version
    );
    html.push_str("<h2 id=\"atlas\">Species</h2>\n");
    let rows: Vec<Vec<String>> = s
        .species
        .iter()
        .map(|sp| {
            vec![
                sp.name.clone(),
                sp.genes.to_string(),
                sp.proteins.to_string(),
                sp.genes_with_embedding.to_string(),
            ]
        })
        .collect();
    table(
        html,
        &["species", "genes", "proteins", "genes with an embedding"],
        &rows,
    );
    html.push_str("<h2 id=\"datasets\">Datasets</h2>\n");
    let rows: Vec<Vec<String>> = s
        .datasets
        .iter()
        .map(|d| {
            vec![
                d.name.clone(),
                d.species.clone(),
                d.cells.to_string(),
                d.genes.to_string(),
                d.genes_with_protein.to_string(),
                d.label_column.clone(),
                d.cell_types.len().to_string(),
            ]
        })
        .collect();
    table(
        html,
        &[
            "dataset",
            "species",
            "cells",
            "genes",
            "genes with a protein",
            "label column",
            "cell types",
        ],
        &rows,
    );
    html.push_str("<h3>Model runs</h3>\n");
    let rows: Vec<Vec<String>> = s
        .model_runs
        .iter()
        .map(|r| {
            vec![
                r.id.to_string(),
                r.kind.clone(),
                r.status.clone(),
                r.embedded_cells.to_string(),
                r.indexed_cells.map_or("-".into(), |n| n.to_string()),
            ]
        })
        .collect();
    table(
        html,
        &["run", "kind", "status", "embedded cells", "indexed cells"],
        &rows,
    );
    Ok(())
}

/// The species pair to evaluate: the spec's, else the two species with embedded cells.
fn species_pair(
    conn: &Connection,
    run: i32,
    spec: &ReportSpec,
) -> crate::Result<Option<(String, String)>> {
    if let Some(pair) = &spec.species {
        return Ok(Some(pair.clone()));
    }
    let names = query_all(
        conn,
        "SELECT DISTINCT c.species FROM cell_info c JOIN cell_embeddings e USING (cell_id) \
         WHERE e.model_run_id = ? ORDER BY 1",
        [run],
        "listing the run's species",
        |r| r.get::<_, String>(0),
    )?;
    Ok(match names.as_slice() {
        [a, b] => Some((a.clone(), b.clone())),
        _ => None,
    })
}

fn evaluation(html: &mut String, atlas: &Atlas, run: i32, spec: &ReportSpec) -> crate::Result<()> {
    let conn = atlas.connection();
    let Some((a, b)) = species_pair(conn, run, spec)? else {
        note(
            html,
            "the evaluation needs two species: pass --a and --b to choose them",
        );
        return Ok(());
    };
    let mut eval_spec = EvalSpec::new(&a, &b);
    eval_spec.features = Features::Run(Some(run));
    let model = match eval::evaluate(atlas, &eval_spec) {
        Ok(r) => r,
        Err(e) => {
            note(
                html,
                &format!("no evaluation: {}", crate::error::messages(&e).join(": ")),
            );
            return Ok(());
        }
    };
    let baseline: Option<Result<EvalReport, String>> = spec.orthologs.as_ref().map(|table| {
        let spec = EvalSpec {
            features: Features::Orthologs(OrthologBaseline {
                table: table.clone(),
                pcs: eval::baseline::DEFAULT_PCS,
            }),
            ..EvalSpec::new(&a, &b)
        };
        eval::evaluate(atlas, &spec).map_err(|e| crate::error::messages(&e).join(": "))
    });
    let _ = writeln!(
        html,
        "<p>SATURN's protocol ({a} vs {b}; as <code>satlas eval --a {a} --b {b}</code>, computed \
         for this page): logistic regression and kNN label transfer across species, species mixing.</p>",
        a = escape(&a),
        b = escape(&b)
    );
    let value_of = |report: &EvalReport, d: &str, m: &str| {
        report
            .rows
            .iter()
            .find(|r| r.direction == d && r.metric == m)
            .map(|r| format!("{:.3}", r.value))
    };
    let mut header = vec!["direction", "metric", "run"];
    if let Some(Ok(_)) = &baseline {
        header.push("1:1 orthologs");
    }
    let rows: Vec<Vec<String>> = model
        .rows
        .iter()
        .filter(|r| !r.metric.starts_with("mixing["))
        .map(|r| {
            let mut row = vec![
                r.direction.clone(),
                r.metric.clone(),
                format!("{:.3}", r.value),
            ];
            if let Some(Ok(base)) = &baseline {
                row.push(value_of(base, &r.direction, &r.metric).unwrap_or_else(|| "-".into()));
            }
            row
        })
        .collect();
    table(html, &header, &rows);
    if let Some(Err(message)) = &baseline {
        note(html, &format!("no ortholog baseline: {message}"));
    }
    let items: Vec<(String, f64, String)> = model
        .rows
        .iter()
        .filter_map(|r| {
            let label = r.metric.strip_prefix("mixing[")?.strip_suffix(']')?;
            Some((
                format!("{label} ({})", r.direction),
                r.value,
                r.direction.clone(),
            ))
        })
        .collect();
    if !items.is_empty() {
        let shares = species_shares(conn, run)?;
        let reference: Vec<(String, f64)> = [&a, &b]
            .iter()
            .filter_map(|s| shares.get(*s).map(|share| ((*s).clone(), 1.0 - share)))
            .collect();
        let svg = charts::bars(
            "species mixing per cell type: share of each cell's neighbours from the other species",
            &items,
            &reference,
        );
        figure(html, &svg.finish());
    }
    Ok(())
}

/// Each species' share of the run's embedded cells.
fn species_shares(conn: &Connection, run: i32) -> crate::Result<BTreeMap<String, f64>> {
    let counts = query_all(
        conn,
        "SELECT c.species, count(*) FROM cell_info c JOIN cell_embeddings e USING (cell_id) \
         WHERE e.model_run_id = ? GROUP BY 1",
        [run],
        "counting cells per species",
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)),
    )?;
    let total: i64 = counts.iter().map(|c| c.1).sum();
    Ok(counts
        .into_iter()
        .map(|(s, n)| (s, n as f64 / total.max(1) as f64))
        .collect())
}

/// The run's latest label transfer as a confusion matrix: rows the query cells' own labels,
/// columns the transferred labels, colour the row share, text the count.
fn confusion(html: &mut String, conn: &Connection, run: i32) -> crate::Result<()> {
    let rows = query_all(
        conn,
        "WITH latest AS (SELECT max(transfer_id) AS id FROM label_transfers WHERE model_run_id = ?)
         SELECT coalesce(c.cell_type, '(none)'), t.predicted_label, any_value(t.reference), count(*)
         FROM label_transfers t JOIN latest ON t.transfer_id = latest.id JOIN cells c USING (cell_id)
         GROUP BY ALL ORDER BY 1, 2",
        [run],
        "reading the latest label transfer",
        |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, i64>(3)?,
            ))
        },
    )?;
    if rows.is_empty() {
        note(
            html,
            "no label transfer in this run: `satlas transfer --reference SPECIES --query DATASET` makes one",
        );
        return Ok(());
    }
    let mut truths: Vec<String> = rows.iter().map(|r| r.0.clone()).collect();
    truths.dedup();
    let mut predicted: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
    predicted.sort();
    predicted.dedup();
    let mut counts = vec![vec![0i64; predicted.len()]; truths.len()];
    for (t, p, _, n) in &rows {
        let (i, j) = (
            truths.iter().position(|x| x == t).unwrap_or(0),
            predicted.iter().position(|x| x == p).unwrap_or(0),
        );
        counts[i][j] = *n;
    }
    let values: Vec<Vec<Option<f64>>> = counts
        .iter()
        .map(|row| {
            let total: i64 = row.iter().sum();
            row.iter()
                .map(|&n| Some(n as f64 / total.max(1) as f64))
                .collect()
        })
        .collect();
    let notes: Vec<Vec<String>> = counts
        .iter()
        .map(|row| {
            row.iter()
                .map(|&n| if n > 0 { n.to_string() } else { String::new() })
                .collect()
        })
        .collect();
    let matched: i64 = rows.iter().filter(|r| r.0 == r.1).map(|r| r.3).sum();
    let total: i64 = rows.iter().map(|r| r.3).sum();
    let title = format!(
        "labels from {}: own label (rows) vs transferred label (columns)",
        rows[0].2
    );
    let _ = writeln!(
        html,
        "<p>The latest transfer of run {run}: {total} cells, {matched} ({:.1} %) given exactly \
         their own label (names may differ between species).</p>",
        100.0 * matched as f64 / total.max(1) as f64
    );
    let svg = charts::heatmap(&Heatmap {
        title: &title,
        rows: &truths,
        cols: &predicted,
        values: &values,
        notes: Some(&notes),
        scale_label: "share of the row's cells",
    });
    figure(html, &svg.finish());
    Ok(())
}
