//! End-to-end tests of the `satlas` binary on the bundled fixtures: ingest both species, check the
//! atlas against the facts `scripts/make_fixtures.py` computed independently
//! (`fixtures/expected.json`). Refused inputs are in `tests/integration/bad_input.rs`.

use crate::common::{fixture, satlas, satlas_ok as ok};
use satlas::Atlas;
use serde_json::Value;
use std::path::{Path, PathBuf};

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixture("expected.json")).unwrap()).unwrap()
}

/// A temporary atlas with both proteomes and both Baron datasets.
fn ingested() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let atlas = dir.path().join("test.satlas");
    ok(&atlas, &["init"]);
    let human_fa = fixture("proteins/human.fa.gz");
    let mouse_fa = fixture("proteins/mouse_surrogate.fa.gz");
    ok(
        &atlas,
        &[
            "add-proteome",
            "--species",
            "human",
            human_fa.to_str().unwrap(),
        ],
    );
    ok(
        &atlas,
        &[
            "add-proteome",
            "--species",
            "mouse",
            mouse_fa.to_str().unwrap(),
        ],
    );
    for (species, file) in [("human", "baron/human.h5ad"), ("mouse", "baron/mouse.h5ad")] {
        let path = fixture(file);
        let name = format!("baron_{species}");
        ok(
            &atlas,
            &[
                "add-dataset",
                "--species",
                species,
                "--label",
                "cell_type1",
                "--name",
                &name,
                path.to_str().unwrap(),
            ],
        );
    }
    (dir, atlas)
}

/// Asserts that `sql` returns the integer `want` (a fact from `expected.json`).
fn assert_fact(atlas: &Atlas, sql: &str, want: &serde_json::Value) {
    let got: i64 = atlas
        .connection()
        .query_row(sql, [], |r| r.get(0))
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    assert_eq!(Some(got), want.as_i64(), "{sql}");
}

#[test]
fn ingest_matches_the_source_files_exactly() {
    let (_dir, path) = ingested();
    let atlas = Atlas::open_read_only(&path).unwrap();
    let facts = expected();
    for (species, file) in [("human", "baron/human.h5ad"), ("mouse", "baron/mouse.h5ad")] {
        let want = &facts["datasets"][file];
        let name = format!("baron_{species}");
        let cells =
            format!("FROM cells c JOIN datasets d USING (dataset_id) WHERE d.name = '{name}'");
        let counts = format!("FROM counts k JOIN cells c USING (cell_id) JOIN datasets d USING (dataset_id) WHERE d.name = '{name}'");
        assert_fact(
            &atlas,
            &format!("SELECT count(*) {cells}"),
            &want["n_cells"],
        );
        assert_fact(
            &atlas,
            &format!("SELECT n_genes FROM datasets WHERE name = '{name}'"),
            &want["n_genes"],
        );
        assert_fact(
            &atlas,
            &format!("SELECT sum(len(k.counts)) {counts}"),
            &want["nnz"],
        );
        assert_fact(
            &atlas,
            &format!("SELECT sum(c.library_size)::BIGINT {cells}"),
            &want["total_counts"],
        );
        assert_fact(
            &atlas,
            &format!("SELECT sum(list_sum(k.counts))::BIGINT {counts}"),
            &want["total_counts"],
        );
        for (cell_type, n) in want["cell_type1"].as_object().unwrap() {
            assert_fact(
                &atlas,
                &format!("SELECT count(*) {cells} AND c.cell_type = '{cell_type}'"),
                n,
            );
        }
    }
    for (species, file) in [
        ("human", "proteins/human.fa.gz"),
        ("mouse", "proteins/mouse_surrogate.fa.gz"),
    ] {
        let want = &facts["proteomes"][file];
        let proteins =
            format!("FROM proteins JOIN species USING (species_id) WHERE name = '{species}'");
        assert_fact(
            &atlas,
            &format!("SELECT count(*) {proteins}"),
            &want["kept"],
        );
        assert_fact(
            &atlas,
            &format!("SELECT count(DISTINCT gene_id) {proteins}"),
            &want["distinct_genes"],
        );
    }
}

#[test]
fn info_and_sql_show_the_atlas() {
    let (_dir, atlas) = ingested();
    let info = ok(&atlas, &["info"]);
    assert!(
        info.contains("baron_human [human]: 215 cells x 20125 genes"),
        "{info}"
    );
    assert!(info.contains("1447 with protein"), "{info}");
    // Gene loss by kind of symbol: the kinds add up to the genes without a protein.
    assert!(info.contains("genes without a protein (13689), by kind of symbol:"));
    assert!(
        info.contains("688  RIKEN cDNA clones (*Rik) (e.g. 0610007P14Rik, 0610009B22Rik"),
        "{info}"
    );
    let out = ok(
        &atlas,
        &[
            "sql",
            "-c",
            "SELECT sum(count)::BIGINT AS lost FROM satlas_info() \
             WHERE section = 'gene_loss' AND name = 'baron_mouse'",
        ],
    );
    assert!(out.contains("13689"), "{out}");
    let sql = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("sql/examples/cells_per_type.sql"),
    )
    .unwrap();
    let out = ok(&atlas, &["sql", "--read-only", "-c", &sql]);
    assert!(
        out.contains("| mouse   | B_cell             | 10    |"),
        "{out}"
    );
    assert!(out.contains("(27 rows)"), "{out}");
    let out = ok(&atlas, &["sql", "-c", "SELECT count FROM satlas_info() WHERE section = 'dataset' AND name = 'baron_mouse' AND detail = 'cells'"]);
    assert!(out.contains("205"), "{out}");
}

#[test]
fn the_same_data_from_10x_matches_h5ad() {
    let (_dir, atlas) = ingested();
    let dir = fixture("baron/human_10x");
    let obs = dir.join("obs.csv");
    let args = [
        "add-dataset",
        "--species",
        "human",
        "--label",
        "cell_type1",
        "--name",
        "human_10x",
        "--obs",
        obs.to_str().unwrap(),
        dir.to_str().unwrap(),
    ];
    ok(&atlas, &args);
    let a = Atlas::open_read_only(&atlas).unwrap();
    let per_cell = |name: &str| {
        format!("SELECT list(c.barcode || ':' || c.cell_type || ':' || c.library_size ORDER BY c.barcode)::VARCHAR FROM cells c JOIN datasets d USING (dataset_id) WHERE d.name = '{name}'")
    };
    let h5ad: String = a
        .connection()
        .query_row(&per_cell("baron_human"), [], |r| r.get(0))
        .unwrap();
    let tenx: String = a
        .connection()
        .query_row(&per_cell("human_10x"), [], |r| r.get(0))
        .unwrap();
    assert_eq!(h5ad, tenx);
}

#[test]
fn init_refuses_to_overwrite_and_commands_need_an_atlas() {
    let dir = tempfile::tempdir().unwrap();
    let atlas = dir.path().join("a.satlas");
    let out = satlas(&atlas, &["info"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("satlas init"));
    ok(&atlas, &["init"]);
    let out = satlas(&atlas, &["init"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("already exists"));
}
