//! `transfer_labels(query := 'baron_mouse', reference := 'human', k := 15, min_confidence := 0.5,
//! run := ...)`: kNN label transfer from a species or dataset to a query dataset; stores the
//! result in `label_transfers` and returns `(transfer_id, cell_id, predicted_label, confidence)`.

use super::knn_cells::{k_arg, run_arg};
use super::{Args, Procedure};
use crate::index::transfer::{transfer, TransferSpec};
use crate::index::IndexError;
use crate::Atlas;
use duckdb::arrow::array::{ArrayRef, Float64Array, Int32Array, Int64Array, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::LogicalTypeId;
use std::sync::Arc;

/// `SELECT * FROM transfer_labels(query := 'baron_mouse', reference := 'human')`.
pub struct TransferLabels;

impl Procedure for TransferLabels {
    const NAME: &'static str = "transfer_labels";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        vec![
            ("query", LogicalTypeId::Varchar),
            ("reference", LogicalTypeId::Varchar),
            ("k", LogicalTypeId::Bigint),
            ("min_confidence", LogicalTypeId::Double),
            ("run", LogicalTypeId::Integer),
        ]
    }

    fn schema() -> Schema {
        Schema::new(vec![
            Field::new("transfer_id", DataType::Int32, false),
            Field::new("cell_id", DataType::Int64, false),
            Field::new("predicted_label", DataType::Utf8, false),
            Field::new("confidence", DataType::Float64, false),
        ])
    }

    /// Runs the transfer in one transaction of the procedure connection (committed only if it
    /// succeeds) and returns one row per query cell.
    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let required = |name: &'static str| -> crate::Result<String> {
            Ok(args.text(name)?.ok_or(IndexError::InvalidParam {
                name,
                value: "missing".into(),
                rule: "transfer_labels needs query := 'DATASET' and reference := 'SPECIES or DATASET'",
            })?)
        };
        let mut spec = TransferSpec::new(&required("query")?, &required("reference")?);
        spec.k = k_arg(args, spec.k)?;
        if let Some(c) = args.float("min_confidence")? {
            spec.min_confidence = c;
        }
        spec.run = run_arg(args)?;
        let result = transfer(atlas, &spec)?;
        let n = result.predictions.len();
        let p = &result.predictions;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(Int32Array::from(vec![result.transfer_id; n])),
            Arc::new(Int64Array::from_iter_values(p.iter().map(|p| p.cell_id))),
            Arc::new(StringArray::from_iter_values(
                p.iter().map(|p| p.label.as_str()),
            )),
            Arc::new(Float64Array::from_iter_values(
                p.iter().map(|p| p.confidence),
            )),
        ];
        Ok(Self::batch(columns)?)
    }
}
