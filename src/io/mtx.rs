//! 10x MatrixMarket reader (placeholder until the reader lands).
use super::{DatasetFile, ReadError, ReadOptions};
use std::path::Path;
/// Reads a 10x directory.
pub fn read_10x(path: &Path, _options: &ReadOptions) -> Result<DatasetFile, ReadError> {
    Err(ReadError::Empty {
        path: path.into(),
        what: "mtx reader not built yet".into(),
    })
}
