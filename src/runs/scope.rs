//! Which cells a command works on: all of a run's embedded cells, or those of one species or one
//! dataset (`--species` / `--dataset`, `species :=` / `dataset :=`).

use super::RunError;
use crate::atlas::query_all;
use duckdb::Connection;

/// Which cells a query or an analysis takes.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Scope {
    /// Every cell with an embedding.
    #[default]
    All,
    /// Cells of one species.
    Species(String),
    /// Cells of one dataset.
    Dataset(String),
}

impl Scope {
    /// The scope named by optional species / dataset arguments (at most one may be given).
    pub fn from_names(species: Option<String>, dataset: Option<String>) -> Result<Scope, RunError> {
        match (species, dataset) {
            (None, None) => Ok(Scope::All),
            (Some(s), None) => Ok(Scope::Species(s)),
            (None, Some(d)) => Ok(Scope::Dataset(d)),
            (Some(species), Some(dataset)) => Err(RunError::TwoScopes { species, dataset }),
        }
    }

    /// The cell ids of the scope (`None` for all cells), checking that the name exists.
    pub fn cells(&self, conn: &Connection) -> Result<Option<Vec<i64>>, RunError> {
        let (kind, column, table, name) = match self {
            Scope::All => return Ok(None),
            Scope::Species(name) => ("species", "species", "species", name),
            Scope::Dataset(name) => ("dataset", "dataset", "datasets", name),
        };
        let known = query_all(
            conn,
            &format!("SELECT name FROM {table} ORDER BY name"),
            [],
            "listing names",
            |r| r.get::<_, String>(0),
        )?;
        if !known.contains(name) {
            return Err(RunError::UnknownName {
                kind,
                name: name.clone(),
                known: known.join(", "),
            });
        }
        Ok(Some(query_all(
            conn,
            &format!("SELECT cell_id FROM cell_info WHERE {column} = ? ORDER BY cell_id"),
            [name],
            "listing the cells of a scope",
            |r| r.get(0),
        )?))
    }
}
