//! Build script: links satlas' binaries, tests and benches to the prebuilt DuckDB library that
//! `scripts/setup.sh` installs, with a run path (so they start without `LD_LIBRARY_PATH`), and
//! refuses to build against a missing or different library with a message that says how to fix
//! it. The DuckDB version satlas is built for is passed to the library as
//! `SATLAS_DUCKDB_VERSION`, which `Atlas::open` checks against the library it loaded.

use std::env;
use std::fs;
use std::path::Path;

/// The DuckDB release the `duckdb` crate (=1.10506.1) is built for.
const DUCKDB_VERSION: &str = "v1.5.6";
/// The SHA-256 of that release's `libduckdb.so` (x86_64 Linux), as `scripts/setup.sh` installs it.
const DUCKDB_SHA256: &str = "3f4962cdd266eab2b479a5b5a4a6d063d279b2954ae814ed00385d553b747633";
/// Written by `scripts/setup.sh` beside the library once its checksum has been verified.
const STAMP: &str = "satlas-duckdb.stamp";

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=DUCKDB_LIB_DIR");
    println!("cargo:rerun-if-env-changed=LIBTORCH");
    println!("cargo:rustc-env=SATLAS_DUCKDB_VERSION={DUCKDB_VERSION}");
    if env::var_os("CARGO_FEATURE_DUCKDB_FROM_SOURCE").is_none() {
        let dir = duckdb_lib_dir().unwrap_or_else(|message| {
            panic!("\n\nsatlas cannot link DuckDB: {message}\nFix: run `bash scripts/setup.sh`, then `source scripts/env.sh` (or build with `--features duckdb-from-source`).\n\n")
        });
        run_path(&dir);
    }
    if let Ok(libtorch) = env::var("LIBTORCH") {
        run_path(&format!("{libtorch}/lib"));
    }
}

/// `DUCKDB_LIB_DIR`, checked to hold the verified library of [`DUCKDB_VERSION`].
fn duckdb_lib_dir() -> Result<String, String> {
    let dir = env::var("DUCKDB_LIB_DIR").map_err(|_| "DUCKDB_LIB_DIR is not set".to_string())?;
    let lib = Path::new(&dir).join("libduckdb.so");
    if !lib.is_file() {
        return Err(format!("{} does not exist", lib.display()));
    }
    let stamp = Path::new(&dir).join(STAMP);
    println!("cargo:rerun-if-changed={}", stamp.display());
    let expected = format!("{DUCKDB_VERSION} {DUCKDB_SHA256}");
    match fs::read_to_string(&stamp) {
        Ok(found) if found.trim() == expected => Ok(dir),
        Ok(found) => Err(format!(
            "{} is for {:?}, satlas needs DuckDB {expected:?}",
            lib.display(),
            found.trim()
        )),
        Err(_) => Err(format!(
            "{} has not been verified by scripts/setup.sh (no {})",
            lib.display(),
            stamp.display()
        )),
    }
}

fn run_path(dir: &str) {
    println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
}
