//! The versioned schema: the one place that knows [`SCHEMA_VERSION`] and creates or checks it.

use super::AtlasError;
use duckdb::Connection;

/// The schema version this build of satlas reads and writes.
pub const SCHEMA_VERSION: u32 = 1;

/// The DDL of the current schema (`sql/schema.sql`).
const SCHEMA_SQL: &str = include_str!("../../sql/schema.sql");
/// Tables added after version 1 without a version change (also created at first use).
const LAYOUT_SQL: &str = include_str!("../../sql/layout.sql");

/// Creates every table of the current schema in an empty database.
pub(crate) fn create(conn: &Connection) -> Result<(), AtlasError> {
    conn.execute_batch(&format!(
        "BEGIN TRANSACTION;\n{SCHEMA_SQL}\n{LAYOUT_SQL}\nCOMMIT;"
    ))
    .map_err(|source| AtlasError::db("creating the atlas schema", source))
}

/// Reads the schema version of an open database and refuses one this build cannot use.
pub(crate) fn check(conn: &Connection, path: &str) -> Result<(), AtlasError> {
    let found = read_version(conn).ok_or_else(|| AtlasError::NotAnAtlas { path: path.into() })?;
    match found.cmp(&SCHEMA_VERSION) {
        std::cmp::Ordering::Equal => Ok(()),
        std::cmp::Ordering::Greater => Err(AtlasError::SchemaTooNew {
            path: path.into(),
            found,
            supported: SCHEMA_VERSION,
        }),
        std::cmp::Ordering::Less => Err(AtlasError::SchemaTooOld {
            path: path.into(),
            found,
            supported: SCHEMA_VERSION,
        }),
    }
}

fn read_version(conn: &Connection) -> Option<u32> {
    let value: String = conn
        .query_row(
            "SELECT value FROM satlas_meta WHERE key = 'schema_version'",
            [],
            |row| row.get(0),
        )
        .ok()?;
    value.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_file_declares_the_code_version() {
        let line =
            format!("INSERT INTO satlas_meta VALUES ('schema_version', '{SCHEMA_VERSION}');");
        assert!(
            SCHEMA_SQL.contains(&line),
            "sql/schema.sql must write version {SCHEMA_VERSION}"
        );
    }

    #[test]
    fn fresh_schema_checks_and_newer_is_refused() {
        let conn = Connection::open_in_memory().unwrap();
        create(&conn).unwrap();
        check(&conn, ":memory:").unwrap();
        conn.execute(
            "UPDATE satlas_meta SET value = '99' WHERE key = 'schema_version'",
            [],
        )
        .unwrap();
        let err = check(&conn, ":memory:").unwrap_err();
        assert!(
            matches!(err, AtlasError::SchemaTooNew { found: 99, .. }),
            "{err}"
        );
    }
}
