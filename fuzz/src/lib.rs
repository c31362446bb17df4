//! satlas' readers (`src/io`, with the count matrix type they fill, `src/csr.rs`) compiled on
//! their own for fuzzing, and the one helper every target shares: fuzz bytes written to files a
//! reader can open. The gene-embedding reader needs
//! libtorch and is left out (`cfg(fuzzing)` in `src/io/mod.rs`).

#[path = "../../src/csr.rs"]
#[allow(dead_code)]
pub mod csr;

#[path = "../../src/io/mod.rs"]
#[allow(dead_code)]
pub mod io;

use std::path::PathBuf;

/// A scratch directory of this process, created once.
fn scratch() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("satlas-fuzz-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the scratch directory");
    dir
}

/// Writes each `(name, bytes)` into this process' scratch directory and returns the directory.
pub fn files(contents: &[(&str, &[u8])]) -> PathBuf {
    let dir = scratch();
    for (name, bytes) in contents {
        std::fs::write(dir.join(name), bytes).expect("writing a scratch file");
    }
    dir
}
