//! The atlas file (work in progress).
use std::path::Path;
/// Atlas errors.
#[derive(Debug, thiserror::Error)]
pub enum AtlasError {
    /// DuckDB failed.
    #[error("atlas database error: {0}")]
    Db(#[from] duckdb::Error),
}
/// An open atlas.
pub struct Atlas {
    conn: duckdb::Connection,
}
impl Atlas {
    /// Creates an atlas.
    pub fn create(path: impl AsRef<Path>) -> crate::Result<Atlas> {
        let conn = duckdb::Connection::open(path).map_err(AtlasError::from)?;
        Ok(Atlas { conn })
    }
    /// A summary.
    pub fn summary(&self) -> crate::Result<String> {
        let n: i64 = self
            .conn
            .query_row("SELECT 1", [], |r| r.get(0))
            .map_err(AtlasError::from)?;
        Ok(n.to_string())
    }
}
