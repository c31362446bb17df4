//! The species' gene table: case-insensitive symbol lookup and creation of new genes.

use crate::atlas::{bulk, AtlasError, DbContext};
use duckdb::arrow::array::{ArrayRef, Int32Array, StringArray};
use duckdb::Connection;
use std::collections::HashMap;
use std::sync::Arc;

/// The key genes are matched on: the symbol, upper-cased.
pub fn symbol_key(symbol: &str) -> String {
    symbol.to_uppercase()
}

/// Returns the gene id of every symbol (same order) and how many genes were created for
/// symbols the species lacked.
pub fn resolve_or_create(
    conn: &Connection,
    species_id: i32,
    symbols: &[&str],
) -> Result<(Vec<i32>, usize), AtlasError> {
    let mut known = existing(conn, species_id)?;
    let mut next_id: i32 = conn
        .query_row("SELECT coalesce(max(gene_id), 0) + 1 FROM genes", [], |r| {
            r.get(0)
        })
        .context("allocating gene ids")?;
    let (mut new_ids, mut new_symbols, mut new_keys) = (Vec::new(), Vec::new(), Vec::new());
    let ids: Vec<i32> = symbols
        .iter()
        .map(|symbol| {
            let key = symbol_key(symbol);
            *known.entry(key.clone()).or_insert_with(|| {
                new_ids.push(next_id);
                new_symbols.push(symbol.to_string());
                new_keys.push(key);
                next_id += 1;
                next_id - 1
            })
        })
        .collect();
    let n = new_ids.len();
    if n > 0 {
        let columns: Vec<(&str, ArrayRef)> = vec![
            ("gene_id", Arc::new(Int32Array::from(new_ids))),
            (
                "species_id",
                Arc::new(Int32Array::from(vec![species_id; n])),
            ),
            ("symbol", Arc::new(StringArray::from(new_symbols))),
            ("symbol_key", Arc::new(StringArray::from(new_keys))),
        ];
        bulk::append(conn, "genes", columns)?;
    }
    Ok((ids, n))
}

/// symbol key -> gene id for every gene of the species.
fn existing(conn: &Connection, species_id: i32) -> Result<HashMap<String, i32>, AtlasError> {
    let rows = crate::atlas::query_all(
        conn,
        "SELECT symbol_key, gene_id FROM genes WHERE species_id = ?",
        [species_id],
        "reading genes",
        |row| Ok((row.get::<_, String>(0)?, row.get::<_, i32>(1)?)),
    )?;
    Ok(rows.into_iter().collect())
}
