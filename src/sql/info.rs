//! `satlas_info()`: the `satlas info` overview as rows (section, name, detail, count).

use super::{Args, Procedure};
use crate::atlas::AtlasSummary;
use crate::Atlas;
use duckdb::arrow::array::{Int64Array, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::LogicalTypeId;
use std::sync::Arc;

/// `SELECT * FROM satlas_info()`: one row per species figure, dataset figure, cell type, kind of gene
/// without a protein (`gene_loss`) and model run.
pub struct SatlasInfo;

impl Procedure for SatlasInfo {
    const NAME: &'static str = "satlas_info";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        Vec::new()
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("section", DataType::Utf8, false),
            Field::new("name", DataType::Utf8, false),
            Field::new("detail", DataType::Utf8, false),
            Field::new("count", DataType::Int64, false),
        ])
    }

    fn run(atlas: &mut Atlas, _args: &Args) -> crate::Result<RecordBatch> {
        let summary = AtlasSummary::read(atlas.connection(), std::path::Path::new(""))?;
        let rows = summary_rows(&summary);
        Ok(Self::batch(vec![
            Arc::new(StringArray::from_iter_values(rows.iter().map(|r| r.0))),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.1.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.2.as_str()),
            )),
            Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.3))),
        ])?)
    }
}

type Row = (&'static str, String, String, i64);

fn summary_rows(summary: &AtlasSummary) -> Vec<Row> {
    let mut rows = Vec::new();
    for s in &summary.species {
        rows.push(("species", s.name.clone(), "genes".into(), s.genes));
        rows.push(("species", s.name.clone(), "proteins".into(), s.proteins));
        rows.push((
            "species",
            s.name.clone(),
            "genes_with_protein".into(),
            s.genes_with_protein,
        ));
        rows.push((
            "species",
            s.name.clone(),
            "genes_with_embedding".into(),
            s.genes_with_embedding,
        ));
    }
    for d in &summary.datasets {
        rows.push(("dataset", d.name.clone(), "cells".into(), d.cells));
        rows.push(("dataset", d.name.clone(), "genes".into(), d.genes));
        rows.push((
            "dataset",
            d.name.clone(),
            "genes_with_protein".into(),
            d.genes_with_protein,
        ));
        rows.push(("dataset", d.name.clone(), "nnz".into(), d.nnz));
        for (label, n) in &d.cell_types {
            rows.push((
                "cell_type",
                d.name.clone(),
                label.clone().unwrap_or_default(),
                *n,
            ));
        }
        for loss in &d.gene_loss {
            rows.push(("gene_loss", d.name.clone(), loss.kind.clone(), loss.genes));
        }
    }
    for r in &summary.model_runs {
        let name = format!("#{} {}", r.id, r.kind);
        rows.push((
            "model_run",
            name.clone(),
            "embedded_cells".into(),
            r.embedded_cells,
        ));
        if let Some(n) = r.indexed_cells {
            rows.push(("model_run", name, "indexed_cells".into(), n));
        }
    }
    rows
}
