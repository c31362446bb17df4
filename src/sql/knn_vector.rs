//! `knn_vector(embedding := [...]::FLOAT[], k := 10, species := ..., dataset := ..., run := ...)`:
//! the cells nearest to a vector in a run's embedding space, as rows `(rank, cell_id, distance,
//! species, dataset, cell_type)`.

use super::knn_cells::{knn_query, neighbours_columns, neighbours_schema, query_parameters};
use super::{Args, Procedure};
use crate::index::search::{knn, QueryPoint};
use crate::index::IndexError;
use crate::Atlas;
use duckdb::arrow::datatypes::Schema;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::LogicalTypeId;

/// `SELECT * FROM knn_vector(embedding := [0.1, 0.2, ...]::FLOAT[], k := 5)`.
pub struct KnnVector;

impl Procedure for KnnVector {
    const NAME: &'static str = "knn_vector";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        let mut params = vec![("embedding", LogicalTypeId::List)];
        params.extend(query_parameters());
        params
    }

    fn schema() -> Schema {
        neighbours_schema(false)
    }

    /// Searches the run's index for the vector (its length must be the run's dimension).
    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let embedding = args.floats("embedding")?.ok_or(IndexError::InvalidParam {
            name: "embedding",
            value: "missing".into(),
            rule: "knn_vector needs embedding := [..]::FLOAT[] of the run's dimension",
        })?;
        let point = QueryPoint::Vector(embedding.iter().map(|&x| x as f32).collect());
        let (_, neighbours) = knn(atlas, &point, &knn_query(args)?)?;
        Ok(Self::batch(neighbours_columns(None, &neighbours))?)
    }
}
