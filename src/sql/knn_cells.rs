//! `knn_cells(cell_id := ..., k := 10, species := ..., dataset := ..., run := ...)`: the nearest
//! cells of an atlas cell, as rows `(query_cell_id, rank, cell_id, distance, species, dataset,
//! cell_type)` that join with `cells` / `cell_info`.

use super::{Args, Procedure};
use crate::index::search::{knn, QueryPoint};
use crate::index::{IndexError, KnnQuery, Neighbour};
use crate::runs::Scope;
use crate::Atlas;
use duckdb::arrow::array::{ArrayRef, Float32Array, Int64Array, StringArray, UInt32Array};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::LogicalTypeId;
use std::sync::Arc;

/// Default neighbours per query.
const DEFAULT_K: usize = 10;

/// `SELECT * FROM knn_cells(cell_id := 42, k := 10, species := 'mouse')`.
pub struct KnnCells;

impl Procedure for KnnCells {
    const NAME: &'static str = "knn_cells";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        let mut params = vec![("cell_id", LogicalTypeId::Bigint)];
        params.extend(query_parameters());
        params
    }

    fn schema() -> Schema {
        neighbours_schema(true)
    }

    /// Finds the neighbours of the cell (never the cell itself) in the run's index.
    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let cell_id = args.int("cell_id")?.ok_or(IndexError::InvalidParam {
            name: "cell_id",
            value: "missing".into(),
            rule: "knn_cells needs cell_id := <a cell id from cells>",
        })?;
        let query = knn_query(args)?;
        let (_, neighbours) = knn(atlas, &QueryPoint::Cell(cell_id), &query)?;
        Ok(Self::batch(neighbours_columns(Some(cell_id), &neighbours))?)
    }
}

/// The parameters every kNN procedure shares.
pub(super) fn query_parameters() -> Vec<(&'static str, LogicalTypeId)> {
    vec![
        ("k", LogicalTypeId::Bigint),
        ("species", LogicalTypeId::Varchar),
        ("dataset", LogicalTypeId::Varchar),
        ("run", LogicalTypeId::Integer),
    ]
}

/// The [`KnnQuery`] named by [`query_parameters`].
pub(super) fn knn_query(args: &Args) -> crate::Result<KnnQuery> {
    Ok(KnnQuery {
        run: run_arg(args)?,
        k: k_arg(args, DEFAULT_K)?,
        scope: Scope::from_names(args.text("species")?, args.text("dataset")?)?,
    })
}

/// The `k := N` argument (default `default`); range-checked later by the index.
pub(super) fn k_arg(args: &Args, default: usize) -> crate::Result<usize> {
    match args.int("k")? {
        None => Ok(default),
        Some(k) => Ok(usize::try_from(k).map_err(|_| IndexError::InvalidParam {
            name: "k",
            value: k.to_string(),
            rule: "between 1 and 10000",
        })?),
    }
}

/// The `run := N` argument, if given.
pub(super) fn run_arg(args: &Args) -> crate::Result<Option<i32>> {
    let Some(run) = args.int("run")? else {
        return Ok(None);
    };
    Ok(Some(i32::try_from(run).map_err(|_| {
        IndexError::InvalidParam {
            name: "run",
            value: run.to_string(),
            rule: "a model_run_id from model_runs",
        }
    })?))
}

/// The columns of a neighbour list; with a `query_cell_id` column first when the query is a cell.
pub(super) fn neighbours_schema(with_query_cell: bool) -> Schema {
    let mut fields = Vec::new();
    if with_query_cell {
        fields.push(Field::new("query_cell_id", DataType::Int64, false));
    }
    fields.extend([
        Field::new("rank", DataType::UInt32, false),
        Field::new("cell_id", DataType::Int64, false),
        Field::new("distance", DataType::Float32, false),
        Field::new("species", DataType::Utf8, false),
        Field::new("dataset", DataType::Utf8, false),
        Field::new("cell_type", DataType::Utf8, true),
    ]);
    Schema::new(fields)
}

/// The neighbours as columns of [`neighbours_schema`].
pub(super) fn neighbours_columns(
    query_cell_id: Option<i64>,
    neighbours: &[Neighbour],
) -> Vec<ArrayRef> {
    let mut columns: Vec<ArrayRef> = Vec::new();
    if let Some(id) = query_cell_id {
        columns.push(Arc::new(Int64Array::from(vec![id; neighbours.len()])));
    }
    columns.extend([
        Arc::new(UInt32Array::from_iter_values(
            neighbours.iter().map(|n| n.rank),
        )) as ArrayRef,
        Arc::new(Int64Array::from_iter_values(
            neighbours.iter().map(|n| n.cell_id),
        )),
        Arc::new(Float32Array::from_iter_values(
            neighbours.iter().map(|n| n.distance),
        )),
        Arc::new(StringArray::from_iter_values(
            neighbours.iter().map(|n| n.species.as_str()),
        )),
        Arc::new(StringArray::from_iter_values(
            neighbours.iter().map(|n| n.dataset.as_str()),
        )),
        Arc::new(StringArray::from_iter(
            neighbours.iter().map(|n| n.cell_type.as_deref()),
        )),
    ]);
    columns
}
