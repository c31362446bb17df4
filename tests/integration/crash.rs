//! Crash safety of ingest and index build: a `satlas` process killed hard (SIGKILL, no clean-up)
//! part-way through leaves an atlas that opens and holds the last committed state — exactly the
//! state before the command, or the command's complete result — and the same command then
//! succeeds. Each command is killed at several fractions of its uninterrupted run time, every
//! time on a fresh copy of the atlas as it was before. (Training: `tests/integration/resume.rs`.)

use crate::common::{digest, fixture, satlas_killed, satlas_ok, training_ready_atlas, KillAt};
use satlas::Atlas;
use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// When to kill, as fractions of the command's uninterrupted run time.
const KILL_AT: [f64; 5] = [0.2, 0.4, 0.6, 0.8, 0.95];

/// The large dataset to ingest: the `add-dataset` arguments it needs and its number of cells.
/// The full Baron human h5ad (2,142 cells x 20,125 genes) when `../shared/data` is there, else a
/// synthetic 10x directory of 4,000 cells written into `dir`.
fn large_dataset(dir: &Path) -> (Vec<String>, usize) {
    let baron = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/baron_pancreas/raw-Baron_human.h5ad");
    if baron.exists() {
        return (
            vec!["--label".into(), "cell_type1".into(), path_arg(&baron)],
            2142,
        );
    }
    eprintln!("../shared/data is absent: ingesting a synthetic 10x directory instead of Baron");
    let n_cells = 4000;
    let tenx = synthetic_10x(dir, n_cells);
    let obs = tenx.join("obs.csv");
    let args = vec![
        "--label".into(),
        "cell_type".into(),
        "--obs".into(),
        path_arg(&obs),
        path_arg(&tenx),
    ];
    (args, n_cells)
}

fn path_arg(path: &Path) -> String {
    path.to_str().unwrap().to_string()
}

/// A 10x directory of `n_cells` cells over the human fixture genes, 150 counts of 1-5 per cell at
/// pseudo-random genes (a fixed linear congruential sequence), four cell types.
fn synthetic_10x(dir: &Path, n_cells: usize) -> PathBuf {
    let out = dir.join("synthetic_10x");
    std::fs::create_dir(&out).unwrap();
    let genes = std::fs::read_to_string(fixture("embeddings/esm2_t6_human.genes.txt")).unwrap();
    let genes: Vec<&str> = genes.lines().collect();
    let mut features = String::new();
    for g in &genes {
        writeln!(features, "{g}\t{g}\tGene Expression").unwrap();
    }
    std::fs::write(out.join("features.tsv"), features).unwrap();
    let (mut barcodes, mut obs) = (String::new(), String::from("barcode,cell_type\n"));
    for c in 0..n_cells {
        writeln!(barcodes, "cell{c}-1").unwrap();
        writeln!(obs, "cell{c}-1,type{}", c % 4).unwrap();
    }
    std::fs::write(out.join("barcodes.tsv"), barcodes).unwrap();
    std::fs::write(out.join("obs.csv"), obs).unwrap();
    let per_cell = 150;
    let mut matrix =
        std::io::BufWriter::new(std::fs::File::create(out.join("matrix.mtx")).unwrap());
    writeln!(matrix, "%%MatrixMarket matrix coordinate integer general").unwrap();
    writeln!(matrix, "{} {n_cells} {}", genes.len(), n_cells * per_cell).unwrap();
    let mut state: u64 = 12345;
    for c in 1..=n_cells {
        for _ in 0..per_cell {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let gene = (state >> 33) as usize % genes.len() + 1;
            writeln!(matrix, "{gene} {c} {}", (state >> 20) % 5 + 1).unwrap();
        }
    }
    matrix.flush().unwrap();
    out
}

/// Runs `args` to completion once to time it and record `facts` of its result, then kills it at
/// each of [`KILL_AT`] on a fresh copy of the atlas as it is now, checking each time that the
/// atlas opens (read-write, replaying any log) and holds the state before or the complete result;
/// after a kill that left the state before, the same command must succeed. Leaves the atlas with
/// the command's result.
fn kill_and_check(atlas: &Path, args: &[&str], facts: impl Fn(&Atlas) -> String) {
    let pristine = std::fs::read(atlas).unwrap();
    let before = digest(atlas);
    let started = Instant::now();
    satlas_ok(atlas, args);
    let full = started.elapsed();
    let done = facts(&Atlas::open_read_only(atlas).unwrap());
    let mut killed_running = 0;
    for fraction in KILL_AT {
        std::fs::write(atlas, &pristine).unwrap();
        let mut wal = atlas.as_os_str().to_owned();
        wal.push(".wal");
        let _ = std::fs::remove_file(&wal);
        let delay = Duration::from_secs_f64(full.as_secs_f64() * fraction);
        let (running, _) = satlas_killed(atlas, args, KillAt::After(delay));
        killed_running += usize::from(running);
        let reopened = Atlas::open(atlas).expect("a killed command leaves an atlas that opens");
        let unchanged = reopened.content_digest().unwrap() == before;
        let state = facts(&reopened);
        drop(reopened);
        assert!(
            unchanged || state == done,
            "{args:?} killed after {delay:?}: neither the state before nor the complete result: {state}"
        );
        eprintln!(
            "{args:?} killed after {delay:?} ({:.0}% of {full:?}, {}): atlas holds {}",
            fraction * 100.0,
            if running { "running" } else { "already done" },
            if unchanged {
                "the state before"
            } else {
                "the complete result"
            }
        );
        if unchanged {
            satlas_ok(atlas, args);
            assert_eq!(facts(&Atlas::open_read_only(atlas).unwrap()), done);
        }
    }
    assert!(killed_running > 0, "{args:?}: no kill landed while it ran");
}

/// Cells, non-zeros and total counts of the dataset `name`.
fn dataset_facts(atlas: &Atlas, name: &str) -> String {
    atlas
        .connection()
        .query_row(
            "SELECT count(*) || ' cells, ' || coalesce(sum(len(k.counts)), 0) || ' non-zeros, '
                 || coalesce(sum(c.library_size), 0) || ' counts'
             FROM cells c JOIN datasets d USING (dataset_id) JOIN counts k USING (cell_id)
             WHERE d.name = ?",
            [name],
            |r| r.get(0),
        )
        .unwrap()
}

/// The stored indexes: run, cell count and parameters.
fn index_facts(atlas: &Atlas) -> String {
    atlas
        .connection()
        .query_row(
            "SELECT count(*) || ': ' || coalesce(string_agg(model_run_id || '/' || n_cells, ','), '')
             FROM hnsw_indexes",
            [],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn killed_ingest_and_index_build_leave_the_last_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let atlas = training_ready_atlas(dir.path());

    let mut ingest = vec!["add-dataset", "--species", "human", "--name", "large"];
    let (dataset, n_cells) = large_dataset(dir.path());
    ingest.extend(dataset.iter().map(String::as_str));
    kill_and_check(&atlas, &ingest, |a| dataset_facts(a, "large"));
    let added = dataset_facts(&Atlas::open_read_only(&atlas).unwrap(), "large");
    assert!(added.starts_with(&format!("{n_cells} cells")), "{added}");

    // A finetuned run over every cell (in child processes: no in-process training), then its index.
    for step in [
        &["pretrain", "--epochs", "1", "--batch-size", "256"][..],
        &["finetune", "--epochs", "1", "--batch-size", "256"],
    ] {
        satlas_ok(&atlas, step);
    }
    let build = ["index", "build", "--m", "32", "--ef-construction", "400"];
    kill_and_check(&atlas, &build, index_facts);
}

/// The streaming ingest at several read chunks: a synthetic h5ad of 6,000 cells (simulated from
/// the full Baron human file when `../shared/data` is there, about 11M non-zeros in 6 chunks;
/// else from the fixture) killed while its chunks are being written.
#[test]
fn killed_streaming_ingest_leaves_the_last_committed_state() {
    let dir = tempfile::tempdir().unwrap();
    let atlas = dir.path().join("stream.satlas");
    satlas_ok(&atlas, &["init"]);
    let proteome = crate::common::fixture_arg("proteins/human.fa.gz");
    satlas_ok(&atlas, &["add-proteome", "--species", "human", &proteome]);
    let baron = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data/baron_pancreas/raw-Baron_human.h5ad");
    let like = if baron.exists() {
        baron
    } else {
        fixture("baron/human.h5ad")
    };
    let sim = path_arg(&dir.path().join("sim.h5ad"));
    let simulate = [
        "simulate",
        "--like",
        &path_arg(&like),
        "--label",
        "cell_type1",
        "--cells",
        "6000",
        "--seed",
        "3",
        "--out",
        &sim,
    ];
    satlas_ok(&atlas, &simulate);
    let ingest = [
        "add-dataset",
        "--species",
        "human",
        "--label",
        "cell_type1",
        "--name",
        "sim",
        &sim,
    ];
    kill_and_check(&atlas, &ingest, |a| dataset_facts(a, "sim"));
    let added = dataset_facts(&Atlas::open_read_only(&atlas).unwrap(), "sim");
    assert!(added.starts_with("6000 cells"), "{added}");
}
