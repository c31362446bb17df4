//! The species table: the one place that reads and writes it.

use super::query_opt;
use super::{query_all, AtlasError, DbContext};
use duckdb::Connection;

/// The id of species `name`, or [`AtlasError::UnknownSpecies`] listing the known ones.
pub fn require(conn: &Connection, name: &str) -> Result<i32, AtlasError> {
    match find(conn, name)? {
        Some(id) => Ok(id),
        None => Err(AtlasError::UnknownSpecies {
            name: name.into(),
            known: known(conn)?.join(", "),
        }),
    }
}

/// The id of species `name`, creating the species if the atlas lacks it.
pub fn find_or_create(conn: &Connection, name: &str) -> Result<i32, AtlasError> {
    if let Some(id) = find(conn, name)? {
        return Ok(id);
    }
    conn.query_row(
        "INSERT INTO species (name) VALUES (?) RETURNING species_id",
        [name],
        |r| r.get(0),
    )
    .context("adding a species")
}

/// The id of species `name`, if known.
pub fn find(conn: &Connection, name: &str) -> Result<Option<i32>, AtlasError> {
    query_opt(
        conn,
        "SELECT species_id FROM species WHERE name = ?",
        [name],
        "looking up a species",
        |r| r.get(0),
    )
}

/// Names of all species, sorted.
pub fn known(conn: &Connection) -> Result<Vec<String>, AtlasError> {
    query_all(
        conn,
        "SELECT name FROM species ORDER BY name",
        [],
        "listing species",
        |r| r.get(0),
    )
}
