//! Crash safety of training: a `satlas pretrain` process killed mid-run leaves an atlas that opens,
//! holds the epochs committed so far, and the same command resumes from the last checkpoint.

use crate::common::{satlas_killed, training_ready_atlas, KillAt};
use satlas::Atlas;

#[test]
fn killed_pretraining_resumes_from_its_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let atlas = training_ready_atlas(dir.path());
    let args = [
        "pretrain",
        "--epochs",
        "12",
        "--batch-size",
        "128",
        "--checkpoint-every",
        "2",
    ];
    // Kill it hard as soon as its first checkpoint is committed.
    let (running, first) = satlas_killed(&atlas, &args, KillAt::Line("checkpoint:"));
    assert_eq!(first.as_deref(), Some("checkpoint: run #1 after epoch 1"));
    assert!(running, "killed before it finished");

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

    let out = crate::common::satlas(&atlas, &args);
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
