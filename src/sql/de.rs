//! `satlas_de(groupby := 'cell_type', reference := 'rest', species := ..., dataset := ..., run := N,
//! top := 10, genes := 5)`: macrogene differential expression from SQL, one row per (group,
//! macrogene); see [`crate::de`]. The group parameter is `groupby` (scanpy's name) because
//! `group` is an SQL keyword; so is the result column `"group"`, which needs quotes.

use super::knn_cells::run_arg;
use super::{Args, Procedure};
use crate::de::{differential_expression, DeSpec};
use crate::runs::Scope;
use crate::Atlas;
use duckdb::arrow::array::{Float64Array, Int32Array, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::LogicalTypeId;
use std::sync::Arc;

/// `SELECT * FROM satlas_de(groupby := 'cell_type')`.
pub struct De;

impl Procedure for De {
    const NAME: &'static str = "satlas_de";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        vec![
            ("groupby", LogicalTypeId::Varchar),
            ("reference", LogicalTypeId::Varchar),
            ("species", LogicalTypeId::Varchar),
            ("dataset", LogicalTypeId::Varchar),
            ("run", LogicalTypeId::Integer),
            ("top", LogicalTypeId::Bigint),
            ("genes", LogicalTypeId::Bigint),
        ]
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("group", DataType::Utf8, false),
            Field::new("rank", DataType::Int32, false),
            Field::new("macrogene", DataType::Int32, false),
            Field::new("score", DataType::Float64, false),
            Field::new("logfc", DataType::Float64, false),
            Field::new("pval", DataType::Float64, false),
            Field::new("pval_adj", DataType::Float64, false),
            Field::new("top_genes", DataType::Utf8, false),
        ])
    }

    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let defaults = DeSpec::default();
        let spec = DeSpec {
            run: run_arg(args)?,
            group: args.text("groupby")?.unwrap_or(defaults.group),
            scope: Scope::from_names(args.text("species")?, args.text("dataset")?)?,
            reference: args.text("reference")?.filter(|r| r != "rest"),
            top: args.usize("top")?.unwrap_or(defaults.top),
            genes: args.usize("genes")?.unwrap_or(defaults.genes),
        };
        let rows = differential_expression(atlas, &spec)?.rows;
        let float = |f: fn(&crate::de::DeRow) -> f64| {
            Arc::new(Float64Array::from_iter_values(rows.iter().map(f)))
        };
        Ok(Self::batch(vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.group.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.rank as i32),
            )),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|r| r.macrogene as i32),
            )),
            float(|r| r.score),
            float(|r| r.logfc),
            float(|r| r.pval),
            float(|r| r.pval_adj),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.genes_text()),
            )),
        ])?)
    }
}
