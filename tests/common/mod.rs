//! Shared by the integration tests: fixture paths, running the `satlas` binary, the bundled
//! fixtures in a fresh in-memory atlas with synthetic gene embeddings, and the lock that makes
//! training tests take turns.
#![allow(dead_code)] // each test crate uses its own subset

use satlas::ingest::{add_dataset, add_proteome, DatasetSpec};
use satlas::io::{FastaOptions, ReadOptions};
use satlas::Atlas;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// libtorch's random generator is process-wide: tests that train take turns.
pub static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// A file under `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// Runs `satlas --atlas ATLAS args...` (the binary under test).
pub fn satlas(atlas: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_satlas"))
        .arg("--atlas")
        .arg(atlas)
        .args(args)
        .output()
        .expect("the satlas binary runs")
}

/// Runs `satlas` and asserts it succeeded; returns its standard output.
pub fn satlas_ok(atlas: &Path, args: &[&str]) -> String {
    let out = satlas(atlas, args);
    assert!(
        out.status.success(),
        "satlas {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// A dataset of the fixtures labelled by `cell_type1`.
pub fn dataset_spec(species: &str, name: &str, path: &str) -> DatasetSpec {
    DatasetSpec {
        path: fixture(path),
        species: species.into(),
        name: Some(name.into()),
        label_column: "cell_type1".into(),
        read: ReadOptions::default(),
    }
}

/// Both Baron fixtures (`baron_human`, `baron_mouse`) with their proteomes, and synthetic 16-d gene
/// embeddings (deterministic, from each gene's upper-cased symbol, so orthologs with the same
/// symbol share one) under one embedding model. Numerics are checked against PyTorch elsewhere;
/// these tests are about the atlas plumbing.
pub fn atlas_with_embeddings() -> Atlas {
    let mut atlas = Atlas::in_memory().unwrap();
    for (species, fasta, h5ad) in [
        ("human", "proteins/human.fa.gz", "baron/human.h5ad"),
        (
            "mouse",
            "proteins/mouse_surrogate.fa.gz",
            "baron/mouse.h5ad",
        ),
    ] {
        add_proteome(
            &mut atlas,
            species,
            &fixture(fasta),
            &FastaOptions::default(),
        )
        .unwrap();
        add_dataset(
            &mut atlas,
            &dataset_spec(species, &format!("baron_{species}"), h5ad),
        )
        .unwrap();
    }
    atlas
        .connection()
        .execute_batch(
            "INSERT INTO embedding_models (name, checksum, dim, source) VALUES ('synthetic', 'none', 16, 'import');
             INSERT INTO gene_embeddings
             SELECT g.gene_id, 1, list_transform(range(16), lambda i: ((hash(g.symbol_key || i::VARCHAR) % 2000) / 1000.0 - 1.0)::FLOAT)
             FROM genes g WHERE g.gene_id IN (SELECT gene_id FROM proteins);",
        )
        .unwrap();
    atlas
}

/// The single integer a query returns.
pub fn count(atlas: &Atlas, sql: &str) -> i64 {
    atlas
        .connection()
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// A float64 C-order `.npy` file: (shape, values).
pub fn read_npy_f64(path: &Path) -> (Vec<usize>, Vec<f64>) {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(
        header.contains("'<f8'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values: Vec<f64> = bytes[start + header_len..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}
