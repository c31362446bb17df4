//! The process-wide cache of loaded indexes, so repeated SQL queries do not reload.
//!
//! Entries are keyed by run id and [`CellsDigest`] of the embeddings they cover. The digest hashes
//! every cell id *and* embedding, so an entry is correct for any atlas whose run has exactly
//! those embeddings (the key is the content, not the file): a stale entry can never match, and
//! every lookup checks the digest against `cell_embeddings` first. The cache holds the
//! [`CACHE_CAPACITY`] most recently used indexes.

use super::store::{self, Access, Origin};
use super::{CellIndex, IndexError, IndexParams};
use crate::runs::{embeddings, CellsDigest};
use duckdb::Connection;
use std::sync::{Arc, Mutex};

/// Indexes kept in memory at most.
pub const CACHE_CAPACITY: usize = 4;

static CACHE: Mutex<Vec<Arc<CellIndex>>> = Mutex::new(Vec::new());

/// The index of `run`, current with `cell_embeddings`: from the cache if present, else through
/// [`store::open`] (reload, extend or rebuild; refused read-only when stale), then cached.
pub fn get(
    conn: &Connection,
    run: i32,
    access: Access,
) -> Result<(Arc<CellIndex>, Origin), IndexError> {
    let current = embeddings::digest(conn, run)?;
    // A poisoned cache only means a panic elsewhere; its entries are still whole indexes.
    let mut cache = CACHE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(pos) = cache.iter().position(|i| matches(i, run, current)) {
        let index = cache.remove(pos);
        cache.push(Arc::clone(&index));
        return Ok((index, Origin::Cached));
    }
    let params = IndexParams::default().check()?;
    let (index, origin) = store::open_at(conn, run, access, params, current)?;
    let index = Arc::new(index);
    cache.push(Arc::clone(&index));
    if cache.len() > CACHE_CAPACITY {
        cache.remove(0);
    }
    Ok((index, origin))
}

fn matches(index: &CellIndex, run: i32, digest: CellsDigest) -> bool {
    index.run() == run && index.digest() == digest
}
