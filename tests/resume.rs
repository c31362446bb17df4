//! Crash safety of training: a `satlas pretrain` process killed mid-run leaves an atlas that opens,
//! holds the epochs committed so far, and the same command resumes from the last checkpoint.

mod common;

use common::satlas_ok;
use satlas::Atlas;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;

fn fixture(rel: &str) -> String {
    common::fixture(rel).to_str().unwrap().to_string()
}
use std::process::{Command, Stdio};

fn trained_atlas_inputs() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let atlas = dir.path().join("resume.satlas");
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
            &["add-proteome", "--species", species, &fixture(fasta)],
        );
        let npy = fixture(&format!("embeddings/esm2_t6_{species}.npy"));
        let genes = fixture(&format!("embeddings/esm2_t6_{species}.genes.txt"));
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
                &fixture(h5ad),
            ],
        );
    }
    satlas_ok(
        &atlas,
        &["build-macrogenes", "-n", "40", "--n-top-genes", "400"],
    );
    (dir, atlas)
}

#[test]
fn killed_pretraining_resumes_from_its_checkpoint() {
    let (_dir, atlas) = trained_atlas_inputs();
    let args = [
        "pretrain",
        "--epochs",
        "12",
        "--batch-size",
        "128",
        "--checkpoint-every",
        "2",
    ];
    let mut child = Command::new(env!("CARGO_BIN_EXE_satlas"))
        .arg("--atlas")
        .arg(&atlas)
        .args(args)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Kill it hard as soon as its first checkpoint is committed.
    let stderr = BufReader::new(child.stderr.take().unwrap());
    let first = stderr
        .lines()
        .map_while(Result::ok)
        .find(|l| l.starts_with("checkpoint:"));
    assert_eq!(first.as_deref(), Some("checkpoint: run #1 after epoch 1"));
    child.kill().unwrap();
    child.wait().unwrap();

    let a = Atlas::open_read_only(&atlas).expect("a killed run leaves an atlas that opens");
    let conn = a.connection();
    let status: String = conn
        .query_row("SELECT status FROM model_runs", [], |r| r.get(0))
        .unwrap();
    let logged: i64 = conn
        .query_row("SELECT count(*) FROM training_log", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        status, "running",
        "killed before its end ({logged} epochs logged)"
    );
    assert!(
        (2..12).contains(&logged),
        "the epochs before the kill were committed: {logged}"
    );
    drop(a);

    let out = common::satlas(&atlas, &args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("resuming pretrain run #1 after epoch"),
        "{stderr}"
    );
    let a = Atlas::open_read_only(&atlas).unwrap();
    let conn = a.connection();
    let (runs, status): (i64, String) = conn
        .query_row(
            "SELECT count(*), any_value(status) FROM model_runs",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!(
        (runs, status.as_str()),
        (1, "done"),
        "the same run finished"
    );
    let (n, first, last): (i64, i32, i32) = conn
        .query_row(
            "SELECT count(*), min(epoch), max(epoch) FROM training_log WHERE model_run_id = 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!(
        (n, first, last),
        (12, 0, 11),
        "every epoch logged exactly once"
    );
}
