//! Shared by the integration tests: fixture paths, running the `satlas` binary (to completion, or
//! killed at a chosen moment), the bundled fixtures in a fresh in-memory atlas with synthetic gene
//! embeddings, an atlas file ready for training, and the lock that makes training tests take turns.

use satlas::ingest::{add_dataset, add_proteome, DatasetSpec};
use satlas::io::{FastaOptions, ReadOptions};
use satlas::sql::{with_procedures, SqlAtlas};
use satlas::Atlas;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::Duration;

/// libtorch's random generator is process-wide: tests that train take turns.
pub static TRAINING: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// HDF5 file locks off in this test process and the satlas processes it starts. Tests run in
/// parallel threads and some start child processes; a child forked while another test has an
/// HDF5 file open inherits the descriptor (libhdf5 opens without close-on-exec) and with it the
/// file's lock, so reading back a file just written failed now and then with "unable to lock
/// file, errno = 11" for as long as that unrelated child lived. libhdf5 1.10 reads
/// `HDF5_USE_FILE_LOCKING` once, when it initialises, so the variable is set before `main`.
#[used]
#[link_section = ".init_array"]
static HDF5_FILE_LOCKS_OFF: extern "C" fn() = {
    extern "C" fn off() {
        std::env::set_var("HDF5_USE_FILE_LOCKING", "FALSE");
    }
    off
};

/// A file under `fixtures/`.
pub fn fixture(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures")
        .join(rel)
}

/// A file under `fixtures/reference/` (values computed by the reference implementations).
pub fn reference(name: &str) -> PathBuf {
    fixture("reference").join(name)
}

/// The tensors of a `.safetensors` file, by name.
pub fn safetensors(path: &Path) -> std::collections::HashMap<String, tch::Tensor> {
    tch::Tensor::read_safetensors(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .into_iter()
        .collect()
}

/// The error `sql` fails with on `atlas` (the test fails if it succeeds).
pub fn failure(atlas: &Atlas, sql: &str) -> duckdb::Error {
    let result = atlas.connection().prepare(sql).and_then(|mut stmt| {
        let mut rows = stmt.query([])?;
        while rows.next()?.is_some() {}
        Ok(())
    });
    result.expect_err(sql)
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

/// A fixture path as a string argument.
pub fn fixture_arg(rel: &str) -> String {
    fixture(rel).to_str().unwrap().to_string()
}

/// When [`satlas_killed`] kills its child.
pub enum KillAt<'a> {
    /// As soon as a stderr line starts with this prefix; `None` if the process ended first.
    Line(&'a str),
    /// After this long (the process may have finished by then).
    After(Duration),
}

/// Starts `satlas --atlas ATLAS args...`, kills it hard (SIGKILL, no clean-up) at `at`, and
/// returns whether it was still running when killed, plus the stderr line that triggered a
/// [`KillAt::Line`].
pub fn satlas_killed(atlas: &Path, args: &[&str], at: KillAt) -> (bool, Option<String>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_satlas"))
        .arg("--atlas")
        .arg(atlas)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the satlas binary starts");
    let stderr = child.stderr.take().unwrap();
    let line = match at {
        KillAt::Line(prefix) => BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
            .find(|l| l.starts_with(prefix)),
        KillAt::After(delay) => {
            drop(stderr);
            std::thread::sleep(delay);
            None
        }
    };
    let running = child.try_wait().unwrap().is_none();
    child.kill().unwrap();
    child.wait().unwrap();
    (running, line)
}

/// The content digest of the atlas file (opened read-only).
pub fn digest(atlas: &Path) -> String {
    Atlas::open_read_only(atlas)
        .expect("the atlas opens")
        .content_digest()
        .unwrap()
}

/// An atlas file's state, to prove a refused action changed nothing.
pub struct Snapshot {
    path: PathBuf,
    bytes: Vec<u8>,
    digest: String,
}

impl Snapshot {
    /// The file's bytes and content digest now.
    pub fn take(atlas: &Path) -> Snapshot {
        Snapshot {
            path: atlas.to_path_buf(),
            bytes: Self::file_state(atlas),
            digest: digest(atlas),
        }
    }

    /// Whether the content is as it was: the same bytes with no write-ahead log beside them
    /// (a quick, stronger check), or else the same content digest.
    pub fn unchanged(&self) -> bool {
        Self::file_state(&self.path) == self.bytes || digest(&self.path) == self.digest
    }

    /// The file's bytes, or nothing when a write-ahead log holds more of its content.
    fn file_state(atlas: &Path) -> Vec<u8> {
        let mut wal = atlas.as_os_str().to_owned();
        wal.push(".wal");
        if Path::new(&wal).exists() {
            return Vec::new();
        }
        std::fs::read(atlas).unwrap()
    }
}

/// An atlas file with both proteomes, both Baron fixture datasets, the demo ESM-2 t6 gene
/// embeddings (one model, `t6`) and 40 macrogenes over 400 highly variable genes: ready for
/// `satlas pretrain`.
pub fn training_ready_atlas(dir: &Path) -> PathBuf {
    let atlas = dir.join("train.satlas");
    satlas_ok(&atlas, &["init"]);
    for (species, fasta, h5ad) in [
        ("human", "proteins/human.fa.gz", "baron/human.h5ad"),
        (
            "mouse",
            "proteins/mouse_surrogate.fa.gz",
            "baron/mouse.h5ad",
        ),
    ] {
        satlas_ok(
            &atlas,
            &["add-proteome", "--species", species, &fixture_arg(fasta)],
        );
        // The surrogate proteome's embeddings (fixtures/README.md).
        let stem = if species == "mouse" {
            "mouse_surrogate"
        } else {
            species
        };
        let npy = fixture_arg(&format!("embeddings/esm2_t6_{stem}.npy"));
        let genes = fixture_arg(&format!("embeddings/esm2_t6_{stem}.genes.txt"));
        satlas_ok(
            &atlas,
            &[
                "import-embeddings",
                "--model",
                "t6",
                "--species",
                species,
                "--genes",
                &genes,
                &npy,
            ],
        );
        satlas_ok(
            &atlas,
            &[
                "add-dataset",
                "--species",
                species,
                "--label",
                "cell_type1",
                &fixture_arg(h5ad),
            ],
        );
    }
    satlas_ok(
        &atlas,
        &["build-macrogenes", "-n", "40", "--n-top-genes", "400"],
    );
    atlas
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
pub fn atlas_with_embeddings() -> SqlAtlas {
    fill_atlas(Atlas::in_memory().unwrap(), &["human", "mouse"])
}

/// `atlas` with both proteomes and the synthetic gene embeddings of [`atlas_with_embeddings`],
/// and the Baron dataset (`baron_{species}`) of each of `datasets` only; with the SQL procedures.
pub fn fill_atlas(mut atlas: Atlas, datasets: &[&str]) -> SqlAtlas {
    for (species, fasta) in [
        ("human", "proteins/human.fa.gz"),
        ("mouse", "proteins/mouse_surrogate.fa.gz"),
    ] {
        add_proteome(
            &mut atlas,
            species,
            &fixture(fasta),
            &FastaOptions::default(),
        )
        .unwrap();
        if datasets.contains(&species) {
            add_baron(&mut atlas, species);
        }
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
    with_procedures(atlas).unwrap()
}

/// SATURN at test size through its SQL procedures: 30 macrogenes over 300 highly variable genes
/// per species (seed 0), pretraining for `pretrain.0` epochs with seed `pretrain.1`, then
/// `finetune_epochs` epochs of fine-tuning (seed 0), which embeds every cell.
pub fn train(atlas: &SqlAtlas, pretrain: (usize, u64), finetune_epochs: usize) {
    count(
        atlas,
        "SELECT count(*) FROM satlas_build_macrogenes(n := 30, n_top_genes := 300, seed := 0)",
    );
    count(
        atlas,
        &format!(
            "SELECT count(*) FROM saturn_pretrain(epochs := {}, seed := {})",
            pretrain.0, pretrain.1
        ),
    );
    count(
        atlas,
        &format!("SELECT count(*) FROM saturn_finetune(epochs := {finetune_epochs}, seed := 0)"),
    );
}

/// Adds the Baron fixture of `species` (human or mouse) as dataset `baron_{species}`.
pub fn add_baron(atlas: &mut Atlas, species: &str) {
    let h5ad = format!("baron/{species}.h5ad");
    add_dataset(
        atlas,
        &dataset_spec(species, &format!("baron_{species}"), &h5ad),
    )
    .unwrap();
}

/// The single integer a query returns.
pub fn count(atlas: &Atlas, sql: &str) -> i64 {
    atlas
        .connection()
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
}

/// Asserts `actual` and `expected` are allclose element-wise (`|a - e| <= atol + rtol * |e|`), prints
/// and returns the max absolute difference.
pub fn assert_close(
    what: &str,
    actual: &tch::Tensor,
    expected: &tch::Tensor,
    atol: f64,
    rtol: f64,
) -> f64 {
    use tch::Kind;
    assert_eq!(actual.size(), expected.size(), "{what}: shapes differ");
    let (a, e) = (actual.to_kind(Kind::Double), expected.to_kind(Kind::Double));
    let diff = (&a - &e).abs();
    let max_abs = diff.max().double_value(&[]);
    let excess = (diff - (e.abs() * rtol + atol)).max().double_value(&[]);
    println!("{what}: max |diff| = {max_abs:.3e}");
    assert!(
        excess <= 0.0,
        "{what}: not allclose (atol {atol}, rtol {rtol}); max |diff| = {max_abs:.3e}"
    );
    max_abs
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
