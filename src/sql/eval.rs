//! `satlas_eval(a := 'human', b := 'mouse', ...)`: SATURN's evaluation protocol from SQL, one row
//! per (direction, metric); see [`crate::eval`].

use super::{Args, Procedure};
use crate::eval::baseline::{OrthologBaseline, DEFAULT_PCS};
use crate::eval::{evaluate, CorrespondenceSource, EvalSpec, Features};
use crate::Atlas;
use duckdb::arrow::array::{Float64Array, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::LogicalTypeId;
use std::sync::Arc;

/// `SELECT * FROM satlas_eval(a := 'human', b := 'mouse', run := N, correspondence := 'col',
/// correspondence_csv := 'file.csv', seed := 0, c := 0.005, k := 15)`; `orthologs := 'table.csv'`
/// (with `pcs := 50`) evaluates the 1:1-ortholog baseline instead of a run; `stratified := true`
/// splits per label, `seeds := N` reports medians over N splits.
pub struct Eval;

impl Procedure for Eval {
    const NAME: &'static str = "satlas_eval";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        vec![
            ("a", LogicalTypeId::Varchar),
            ("b", LogicalTypeId::Varchar),
            ("run", LogicalTypeId::Integer),
            ("correspondence", LogicalTypeId::Varchar),
            ("correspondence_csv", LogicalTypeId::Varchar),
            ("seed", LogicalTypeId::Bigint),
            ("c", LogicalTypeId::Double),
            ("k", LogicalTypeId::Bigint),
            ("orthologs", LogicalTypeId::Varchar),
            ("pcs", LogicalTypeId::Bigint),
            ("stratified", LogicalTypeId::Boolean),
            ("seeds", LogicalTypeId::Bigint),
        ]
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("direction", DataType::Utf8, false),
            Field::new("metric", DataType::Utf8, false),
            Field::new("value", DataType::Float64, false),
        ])
    }

    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let mut spec = EvalSpec::new(&args.required_text("a")?, &args.required_text("b")?);
        spec.features = match args.text("orthologs")? {
            Some(table) => Features::Orthologs(OrthologBaseline {
                table: table.into(),
                pcs: args.usize("pcs")?.unwrap_or(DEFAULT_PCS),
            }),
            None => Features::Run(args.int("run")?.map(|r| r as i32)),
        };
        if let Some(column) = args.text("correspondence")? {
            spec.correspondence = CorrespondenceSource::ObsColumn(column);
        }
        if let Some(csv) = args.text("correspondence_csv")? {
            spec.correspondence = CorrespondenceSource::Csv(csv.into());
        }
        spec.seed = args.usize("seed")?.map_or(spec.seed, |s| s as u64);
        spec.c = args.float("c")?.unwrap_or(spec.c);
        spec.k = args.usize("k")?.unwrap_or(spec.k);
        spec.stratified = args.bool("stratified")?.unwrap_or(spec.stratified);
        spec.seeds = args.usize("seeds")?.unwrap_or(spec.seeds);
        let report = evaluate(atlas, &spec)?;
        let rows = &report.rows;
        Ok(Self::batch(vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.direction.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|r| r.metric.as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(rows.iter().map(|r| r.value))),
        ])?)
    }
}
