//! Concurrency: DuckDB's file lock between `satlas` processes. Any number of read-only openers
//! (`satlas info`, `satlas sql --read-only`, `satlas eval`) share an atlas; a writer excludes
//! everyone else, and whoever is refused is told clearly that the atlas is in use, with nothing
//! changed.

use crate::common::{digest, fixture_arg, satlas, satlas_ok};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};

/// An atlas with the human proteome.
fn small_atlas(dir: &Path) -> PathBuf {
    let atlas = dir.join("shared.satlas");
    satlas_ok(&atlas, &["init"]);
    let fasta = fixture_arg("proteins/human.fa.gz");
    satlas_ok(&atlas, &["add-proteome", "--species", "human", &fasta]);
    atlas
}

/// A `satlas sql` shell (read-only or not) holding the atlas open until dropped.
struct Holder {
    child: Child,
    stdout: BufReader<ChildStdout>,
}

impl Holder {
    /// Starts the shell and waits until it has answered a query, so it holds the file.
    fn start(atlas: &Path, read_only: bool) -> Holder {
        let mut command = Command::new(env!("CARGO_BIN_EXE_satlas"));
        command.arg("--atlas").arg(atlas).arg("sql");
        if read_only {
            command.arg("--read-only");
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        let mut holder = Holder { child, stdout };
        assert!(holder.query_count().is_some(), "the holder shell answers");
        holder
    }

    /// Runs `SELECT count(*) FROM proteins` in the shell; the count, if it answered.
    fn query_count(&mut self) -> Option<i64> {
        let stdin = self.child.stdin.as_mut().unwrap();
        writeln!(stdin, "SELECT count(*) AS n FROM proteins;").ok()?;
        stdin.flush().ok()?;
        let mut line = String::new();
        while self.stdout.read_line(&mut line).ok()? > 0 {
            if let Some(n) = line
                .trim()
                .trim_matches('|')
                .trim()
                .parse::<i64>()
                .ok()
                .filter(|_| line.starts_with('|'))
            {
                return Some(n);
            }
            line.clear();
        }
        None
    }
}

impl Drop for Holder {
    fn drop(&mut self) {
        drop(self.child.stdin.take()); // end of input: the shell exits
        self.child.wait().unwrap();
    }
}

fn assert_in_use(atlas: &Path, args: &[&str]) {
    let out = satlas(atlas, args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should be refused");
    for needle in ["is in use by another process", "one writer", "--read-only"] {
        assert!(
            stderr.contains(needle),
            "{args:?}: {needle:?} missing: {stderr}"
        );
    }
}

#[test]
fn read_only_openers_share_the_atlas_and_writers_wait() {
    let dir = tempfile::tempdir().unwrap();
    let atlas = small_atlas(dir.path());
    let before = digest(&atlas);
    let mut reader = Holder::start(&atlas, true);
    let proteins = reader.query_count().unwrap();
    assert!(proteins > 1000, "{proteins}");

    // Other readers open it at the same time.
    let info = satlas_ok(&atlas, &["info"]);
    assert!(info.contains("human"), "{info}");
    let out = satlas_ok(
        &atlas,
        &[
            "sql",
            "--read-only",
            "-c",
            "SELECT count(*) AS n FROM proteins",
        ],
    );
    assert!(out.contains(&format!("| {proteins} |")), "{out}");
    let mut second = Holder::start(&atlas, true);
    assert_eq!(second.query_count(), Some(proteins));

    // A writer is refused while readers hold it, and changes nothing.
    let mouse = fixture_arg("proteins/mouse_surrogate.fa.gz");
    assert_in_use(&atlas, &["add-proteome", "--species", "mouse", &mouse]);
    assert_in_use(&atlas, &["sql", "-c", "SELECT 1"]);
    drop(second);
    drop(reader);
    assert_eq!(digest(&atlas), before);

    // Once the readers are gone, the same write succeeds.
    satlas_ok(&atlas, &["add-proteome", "--species", "mouse", &mouse]);
}

#[test]
fn a_writer_excludes_readers_and_other_writers() {
    let dir = tempfile::tempdir().unwrap();
    let atlas = small_atlas(dir.path());
    let mut writer = Holder::start(&atlas, false);
    assert_in_use(&atlas, &["info"]);
    assert_in_use(&atlas, &["sql", "--read-only", "-c", "SELECT 1"]);
    assert_in_use(&atlas, &["eval", "--a", "human", "--b", "mouse"]);
    let mouse = fixture_arg("proteins/mouse_surrogate.fa.gz");
    assert_in_use(&atlas, &["add-proteome", "--species", "mouse", &mouse]);
    assert!(writer.query_count().is_some(), "the writer is unaffected");
    drop(writer);
    assert!(satlas_ok(&atlas, &["info"]).contains("human"));
}
