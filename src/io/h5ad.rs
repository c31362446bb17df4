//! h5ad reader (placeholder until the reader lands).
use super::{DatasetFile, ReadError, ReadOptions};
use std::path::Path;
/// Reads an h5ad file.
pub fn read_h5ad(path: &Path, _options: &ReadOptions) -> Result<DatasetFile, ReadError> {
    Err(ReadError::Empty {
        path: path.into(),
        what: "h5ad reader not built yet".into(),
    })
}
