//! kNN label transfer: each cell of a query dataset gets the cell-type label its nearest
//! reference cells (a species or a dataset) vote for, weighted by similarity.
//!
//! Vote (for a query cell with reference neighbours `n_1..n_k` at cosine distances `d_i`):
//!
//! ```text
//! w_i        = 1 - d_i / 2                      (= (1 + cos) / 2, in [0, 1]; never negative,
//!                                                 no eps, no blow-up at d = 0)
//! score(l)   = Σ_{i : label(n_i) = l} w_i
//! prediction = argmax_l score(l)                (ties: the alphabetically first label)
//! confidence = score(prediction) / Σ_i w_i      (the winner's share of the weight)
//! label      = prediction if confidence ≥ min_confidence, else "unknown"
//! ```
//!
//! The default `min_confidence` is 0.5 ([`DEFAULT_MIN_CONFIDENCE`]): a label is given only when
//! it holds a weighted majority of the neighbours. The reference never includes the query
//! dataset's own cells, nor cells without a label. Results go to `label_transfers` (one
//! transfer id, written by the caller's transaction) and are returned.

use super::cache;
use super::search::{check_k, restrict};
use super::store::Access;
use super::IndexError;
use crate::atlas::{bulk, query_all, DbContext};
use crate::runs::{self, Need, Scope};
use crate::Atlas;
use duckdb::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
use duckdb::arrow::datatypes::Int64Type;
use duckdb::Connection;
use rayon::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// The label of a cell whose winning label has less than `min_confidence` of the weight.
pub const UNKNOWN_LABEL: &str = "unknown";
/// Default neighbours per query cell.
pub const DEFAULT_K: usize = 15;
/// Default confidence below which a cell is labelled [`UNKNOWN_LABEL`].
pub const DEFAULT_MIN_CONFIDENCE: f64 = 0.5;

/// A label transfer request.
#[derive(Debug, Clone, PartialEq)]
pub struct TransferSpec {
    /// The dataset whose cells get labels.
    pub query: String,
    /// Where labels come from: a species name, else a dataset name.
    pub reference: String,
    /// Neighbours per query cell.
    pub k: usize,
    /// Below this confidence the label is [`UNKNOWN_LABEL`] (0 ..= 1).
    pub min_confidence: f64,
    /// The model run (default: the newest finetune or add-species run with embeddings).
    pub run: Option<i32>,
}

impl TransferSpec {
    /// A transfer with the default k and confidence threshold.
    pub fn new(query: &str, reference: &str) -> TransferSpec {
        TransferSpec {
            query: query.into(),
            reference: reference.into(),
            k: DEFAULT_K,
            min_confidence: DEFAULT_MIN_CONFIDENCE,
            run: None,
        }
    }

    fn check(&self) -> Result<(), IndexError> {
        check_k(self.k)?;
        if !(0.0..=1.0).contains(&self.min_confidence) {
            return Err(IndexError::InvalidParam {
                name: "min_confidence",
                value: self.min_confidence.to_string(),
                rule: "between 0 and 1",
            });
        }
        Ok(())
    }
}

/// One query cell's transferred label.
#[derive(Debug, Clone, PartialEq)]
pub struct Prediction {
    /// The query cell.
    pub cell_id: i64,
    /// The winning label, or [`UNKNOWN_LABEL`].
    pub label: String,
    /// The winning label's share of the neighbours' weight.
    pub confidence: f64,
    /// The reference cells that voted, nearest first.
    pub neighbours: Vec<i64>,
}

/// A stored label transfer.
#[derive(Debug, Clone, PartialEq)]
pub struct LabelTransfer {
    /// Its id in `label_transfers`.
    pub transfer_id: i32,
    /// The model run whose embeddings were used.
    pub run: i32,
    /// One prediction per query cell with an embedding, by cell id.
    pub predictions: Vec<Prediction>,
}

impl std::fmt::Display for LabelTransfer {
    /// A summary: cells labelled per label, and how many are unknown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for p in &self.predictions {
            *counts.entry(p.label.as_str()).or_default() += 1;
        }
        writeln!(
            f,
            "label transfer #{} (run {}): {} cells",
            self.transfer_id,
            self.run,
            self.predictions.len()
        )?;
        for (label, n) in counts {
            writeln!(f, "  {label}: {n}")?;
        }
        Ok(())
    }
}

/// Runs a transfer on `conn` and stores it in `label_transfers`, in the caller's transaction
/// ([`transfer`]).
fn transfer_labels(
    conn: &Connection,
    spec: &TransferSpec,
    access: Access,
) -> Result<LabelTransfer, IndexError> {
    spec.check()?;
    let run = runs::select(conn, Need::Embedded, spec.run)?;
    let query_cells = Scope::Dataset(spec.query.clone())
        .cells(conn)?
        .unwrap_or_default();
    let column = reference_column(conn, &spec.reference)?;
    let labels = reference_labels(conn, column, &spec.reference, &spec.query)?;
    let (index, _) = cache::get(conn, run, access)?;
    let query_cells: Vec<i64> = query_cells
        .into_iter()
        .filter(|&c| index.contains(c))
        .collect();
    if query_cells.is_empty() {
        return Err(IndexError::QueryNotEmbedded {
            dataset: spec.query.clone(),
            run,
        });
    }
    let reference = restrict(&index, labels.keys().copied());
    if matches!(&reference, super::Candidates::Only(ids) if ids.is_empty()) {
        return Err(IndexError::EmptyReference {
            reference: spec.reference.clone(),
            run,
        });
    }
    let predictions = query_cells
        .par_iter()
        .map(|&cell_id| {
            let hits =
                index.search(index.embedding(cell_id)?, spec.k, &reference, Some(cell_id))?;
            let votes = hits
                .iter()
                .map(|h| (labels[&h.cell_id].as_str(), h.distance));
            let (label, confidence) = vote(votes, spec.min_confidence);
            Ok(Prediction {
                cell_id,
                label,
                confidence,
                neighbours: hits.iter().map(|h| h.cell_id).collect(),
            })
        })
        .collect::<Result<Vec<_>, IndexError>>()?;
    let transfer_id = store(conn, run, spec, &predictions)?;
    Ok(LabelTransfer {
        transfer_id,
        run,
        predictions,
    })
}

/// `satlas transfer`, `transfer_labels(...)`: [`transfer_labels`] as one transaction of the
/// atlas (a stale index is refused on a read-only atlas, as every index user does).
pub fn transfer(atlas: &mut Atlas, spec: &TransferSpec) -> crate::Result<LabelTransfer> {
    let access = Access::of(atlas.connection())?;
    Ok(atlas.write(|tx| transfer_labels(tx, spec, access))?)
}

/// The distance-weighted vote of the module doc: `(label, confidence)`.
pub fn vote<'a>(
    neighbours: impl Iterator<Item = (&'a str, f32)>,
    min_confidence: f64,
) -> (String, f64) {
    let mut scores: BTreeMap<&str, f64> = BTreeMap::new();
    for (label, distance) in neighbours {
        *scores.entry(label).or_default() += 1.0 - f64::from(distance) / 2.0;
    }
    let total: f64 = scores.values().sum();
    // max_by keeps the last maximum; iterating in reverse makes ties go to the first label.
    let best = scores
        .iter()
        .rev()
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(l, s)| (l.to_string(), if total > 0.0 { s / total } else { 0.0 }));
    match best {
        Some((label, confidence)) if confidence >= min_confidence => (label, confidence),
        Some((_, confidence)) => (UNKNOWN_LABEL.into(), confidence),
        None => (UNKNOWN_LABEL.into(), 0.0),
    }
}

/// A reference name is a species if one has that name, else a dataset: the `cell_info` column
/// to select it by.
fn reference_column(conn: &Connection, name: &str) -> Result<&'static str, IndexError> {
    let species = crate::atlas::species::known(conn)?;
    if species.iter().any(|s| s == name) {
        return Ok("species");
    }
    let datasets = query_all(
        conn,
        "SELECT name FROM datasets ORDER BY name",
        [],
        "listing datasets",
        |r| r.get::<_, String>(0),
    )?;
    if datasets.iter().any(|d| d == name) {
        return Ok("dataset");
    }
    Err(IndexError::UnknownName {
        kind: "species or dataset",
        name: name.into(),
        known: species
            .into_iter()
            .chain(datasets)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// Labels of the reference cells, without the query dataset's cells and unlabelled cells.
fn reference_labels(
    conn: &Connection,
    column: &str,
    name: &str,
    query_dataset: &str,
) -> Result<HashMap<i64, String>, IndexError> {
    let rows = query_all(
        conn,
        &format!(
            "SELECT cell_id, cell_type FROM cell_info \
             WHERE {column} = ? AND dataset <> ? AND cell_type IS NOT NULL"
        ),
        [name, query_dataset],
        "reading reference labels",
        |r| Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?)),
    )?;
    Ok(rows.into_iter().collect())
}

/// Appends the predictions to `label_transfers` under a new transfer id.
fn store(
    conn: &Connection,
    run: i32,
    spec: &TransferSpec,
    predictions: &[Prediction],
) -> Result<i32, IndexError> {
    let transfer_id: i32 = conn
        .query_row(
            "SELECT coalesce(max(transfer_id), 0) + 1 FROM label_transfers",
            [],
            |r| r.get(0),
        )
        .context("allocating a transfer id")?;
    let n = predictions.len();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "transfer_id",
            Arc::new(Int32Array::from(vec![transfer_id; n])),
        ),
        ("model_run_id", Arc::new(Int32Array::from(vec![run; n]))),
        (
            "cell_id",
            Arc::new(Int64Array::from_iter_values(
                predictions.iter().map(|p| p.cell_id),
            )),
        ),
        (
            "reference",
            Arc::new(StringArray::from(vec![spec.reference.as_str(); n])),
        ),
        (
            "predicted_label",
            Arc::new(StringArray::from_iter_values(
                predictions.iter().map(|p| p.label.as_str()),
            )),
        ),
        (
            "confidence",
            Arc::new(Float64Array::from_iter_values(
                predictions.iter().map(|p| p.confidence),
            )),
        ),
        ("k", Arc::new(Int32Array::from(vec![spec.k as i32; n]))),
        (
            "min_confidence",
            Arc::new(Float64Array::from(vec![spec.min_confidence; n])),
        ),
        (
            "neighbours",
            bulk::list_column::<Int64Type, _>(predictions.iter().map(|p| p.neighbours.as_slice())),
        ),
    ];
    bulk::append(conn, "label_transfers", columns)?;
    Ok(transfer_id)
}

/// Writes transfer `transfer_id` with each cell's dataset, barcode and original label: as Parquet
/// when `path` ends in `.parquet`, else as CSV (DuckDB's `COPY`). Same columns either way.
pub fn write_labels(atlas: &Atlas, transfer_id: i32, path: &Path) -> Result<(), IndexError> {
    let conn = atlas.connection();
    let rows = format!(
        "SELECT t.cell_id, c.dataset, c.barcode, c.cell_type AS original_label, \
                t.predicted_label, t.confidence, t.reference, t.k \
         FROM label_transfers t JOIN cell_info c USING (cell_id) \
         WHERE t.transfer_id = {transfer_id} ORDER BY t.cell_id"
    );
    let parquet = path
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("parquet"));
    if parquet {
        crate::atlas::parquet::write_query(conn, &rows, [], path)?;
        return Ok(());
    }
    let target = crate::atlas::parquet::sql_string(&path.display().to_string());
    conn.execute(
        &format!("COPY ({rows}) TO {target} (HEADER, DELIMITER ',')"),
        [],
    )
    .map_err(|source| IndexError::Output {
        path: path.into(),
        source,
    })?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vote_weights_by_similarity_and_says_unknown_when_split() {
        let (label, conf) = vote([("a", 0.0), ("a", 0.1), ("b", 0.2)].into_iter(), 0.5);
        assert_eq!(label, "a");
        assert!(conf > 0.6 && conf < 0.7, "{conf}");
        let (label, conf) = vote([("a", 0.1), ("b", 0.1), ("c", 0.1)].into_iter(), 0.5);
        assert_eq!(label, UNKNOWN_LABEL);
        assert!((conf - 1.0 / 3.0).abs() < 1e-9);
        let (label, _) = vote([("b", 0.1), ("a", 0.1)].into_iter(), 0.0);
        assert_eq!(label, "a", "ties go to the alphabetically first label");
        assert_eq!(vote(std::iter::empty(), 0.5).0, UNKNOWN_LABEL);
    }
}
