//! `satlas_eval` on a small in-memory atlas: the bundled Baron fixtures, synthetic gene
//! embeddings (as in `saturn_atlas.rs`), macrogenes, a short pretraining and fine-tuning through
//! SQL, then the evaluation (obs-column and CSV correspondences) and its refusals.
//!
//! The numbers are not checked for quality (a few epochs on synthetic gene embeddings), only
//! that every row exists, lies in [0, 1], that the maximum achievable accuracy bounds the
//! accuracy, and that a refused call leaves the atlas unchanged.

use crate::common::{atlas_with_embeddings, failure, train, TRAINING};
use satlas::Atlas;
use std::collections::HashMap;

fn eval_rows(atlas: &Atlas, sql: &str) -> HashMap<(String, String), f64> {
    let mut stmt = atlas.connection().prepare(sql).unwrap();
    stmt.query_map([], |r| Ok(((r.get(0)?, r.get(1)?), r.get(2)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `sql` fails with a message containing `needle` and leaves the atlas' digest at `before`.
fn assert_refused(atlas: &Atlas, sql: &str, needle: &str, before: &str) {
    let err = failure(atlas, sql);
    assert!(err.to_string().contains(needle), "{sql}: {err}");
    assert_eq!(
        atlas.content_digest().unwrap(),
        before,
        "{sql} changed the atlas"
    );
}

fn check_rows(rows: &HashMap<(String, String), f64>) {
    for ((direction, metric), value) in rows {
        assert!(
            (0.0..=1.0).contains(value),
            "{direction} {metric} = {value}"
        );
    }
    for direction in ["human->mouse", "mouse->human"] {
        let get = |metric: &str| rows[&(direction.to_string(), metric.to_string())];
        for metric in ["lr_accuracy", "lr_balanced_accuracy", "knn_accuracy"] {
            assert!(
                get(metric) <= get("lr_max_achievable") + 1e-12,
                "{direction} {metric}"
            );
        }
        assert!(get("knn_balanced_accuracy") >= 0.0);
        // At least half of a swapped class's cells are called wrongly by kNN transfer.
        assert!(
            0.5 * get("swapped_cells") <= 1.0 - get("knn_accuracy") + 1e-12,
            "{direction}: swapped_cells {} with knn_accuracy {}",
            get("swapped_cells"),
            get("knn_accuracy")
        );
    }
    for species in ["human", "mouse"] {
        assert!(rows.contains_key(&(species.to_string(), "lr_heldout_accuracy".to_string())));
        assert!(rows.contains_key(&(species.to_string(), "mixing[alpha]".to_string())));
    }
    assert!(rows.contains_key(&("both".to_string(), "mixing_mean".to_string())));
}

#[test]
fn eval_reports_saturn_metrics_and_refuses_bad_arguments() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let atlas = atlas_with_embeddings();
    train(&atlas, (3, 0), 2);
    let before = atlas.content_digest().unwrap();

    let rows = eval_rows(
        &atlas,
        "SELECT * FROM satlas_eval(a := 'human', b := 'mouse', k := 10)",
    );
    check_rows(&rows);
    // Every mouse cell type's ontology class except B cell / leukocyte occurs in human.
    let ceiling = rows[&("human->mouse".to_string(), "lr_max_achievable".to_string())];
    assert!(ceiling > 0.5 && ceiling < 1.0, "{ceiling}");
    assert_eq!(
        eval_rows(
            &atlas,
            "SELECT * FROM satlas_eval(a := 'human', b := 'mouse', k := 10)"
        ),
        rows,
        "the same seed gives the same numbers"
    );
    assert_eq!(atlas.content_digest().unwrap(), before, "eval is read-only");

    // A CSV correspondence: same-name labels correspond.
    let dir = tempfile::tempdir().unwrap();
    let csv = dir.path().join("pairs.csv");
    std::fs::write(
        &csv,
        "human_cell_type,mouse_cell_type\nalpha,alpha\nbeta,beta\ndelta,delta\ngamma,gamma\n\
         ductal,ductal\nendothelial,endothelial\nmacrophage,macrophage\nt_cell,T_cell\n\
         schwann,schwann\nactivated_stellate,activated_stellate\n\
         quiescent_stellate,quiescent_stellate\n",
    )
    .unwrap();
    let rows = eval_rows(
        &atlas,
        &format!(
            "SELECT * FROM satlas_eval(a := 'human', b := 'mouse', correspondence_csv := '{}')",
            csv.display()
        ),
    );
    check_rows(&rows);

    let bad_csv = dir.path().join("bad.csv");
    std::fs::write(&bad_csv, "human,mouse\nalpha,alpha\n").unwrap();
    for (sql, needle) in [
        (
            "SELECT * FROM satlas_eval(a := 'human', b := 'frog')".to_string(),
            "unknown species \"frog\"",
        ),
        (
            "SELECT * FROM satlas_eval(a := 'human', b := 'mouse', correspondence := 'no_such')"
                .to_string(),
            "no obs column \"no_such\"",
        ),
        (
            "SELECT * FROM satlas_eval(a := 'human', b := 'human')".to_string(),
            "two different species",
        ),
        (
            "SELECT * FROM satlas_eval(a := 'human', b := 'mouse', c := 0)".to_string(),
            "invalid evaluation parameter c",
        ),
        (
            "SELECT * FROM satlas_eval(a := 'human', b := 'mouse', run := 1)".to_string(),
            "is not a finished finetune run with cell embeddings",
        ),
        (
            format!(
                "SELECT * FROM satlas_eval(a := 'human', b := 'mouse', correspondence_csv := '{}')",
                bad_csv.display()
            ),
            "no column human_cell_type",
        ),
    ] {
        assert_refused(&atlas, &sql, needle, &before);
    }
}

/// The 1:1-ortholog baseline through SQL (`orthologs :=`, `pcs :=`): no model run needed, the
/// same rows as a run's evaluation (also with `stratified :=`, `seeds :=`), and refusals that name the problem and change nothing. Its
/// PCA is checked against scanpy in `eval_reference.rs`.
#[test]
fn ortholog_baseline_evaluates_without_a_run_and_refuses_bad_tables() {
    let atlas = atlas_with_embeddings();
    let before = atlas.content_digest().unwrap();
    let table = crate::common::reference("baseline_orthologs.csv");
    let sql = |extra: &str| {
        format!(
            "SELECT * FROM satlas_eval(a := 'human', b := 'mouse', orthologs := '{}'{extra})",
            table.display()
        )
    };
    let rows = eval_rows(&atlas, &sql(", pcs := 20"));
    check_rows(&rows);
    // Real expression separates the cell types within a species.
    for species in ["human", "mouse"] {
        let held_out = rows[&(species.to_string(), "lr_heldout_accuracy".to_string())];
        assert!(held_out > 0.5, "{species}: held-out accuracy {held_out}");
    }
    assert_eq!(atlas.content_digest().unwrap(), before, "eval is read-only");

    // Stratified splits, median over 3 seeds: the kNN rows do not depend on the split.
    let stratified = eval_rows(&atlas, &sql(", pcs := 20, stratified := true, seeds := 3"));
    check_rows(&stratified);
    for direction in ["human->mouse", "mouse->human"] {
        let key = (direction.to_string(), "knn_accuracy".to_string());
        assert_eq!(stratified[&key], rows[&key]);
    }

    let dir = tempfile::tempdir().unwrap();
    // B's column names no mouse gene (e.g. a table for another species).
    let unmatched = dir.path().join("other_species.csv");
    let text = std::fs::read_to_string(&table).unwrap();
    let renamed: String = text
        .lines()
        .map(|l| {
            let (a, b) = l.split_once(',').unwrap();
            format!("{a},{b}_zebrafish\n")
        })
        .collect();
    std::fs::write(&unmatched, renamed).unwrap();
    let missing = dir.path().join("missing.csv");
    for (sql, needle) in [
        (sql(", pcs := 0"), "invalid evaluation parameter pcs"),
        (sql(", seeds := 0"), "invalid evaluation parameter seeds"),
        (
            sql(", pcs := 100000"),
            "fewer than the 100000 principal components",
        ),
        (
            format!(
                "SELECT * FROM satlas_eval(a := 'human', b := 'mouse', orthologs := '{}')",
                unmatched.display()
            ),
            "only 0 one-to-one orthologs",
        ),
        (
            format!(
                "SELECT * FROM satlas_eval(a := 'human', b := 'mouse', orthologs := '{}')",
                missing.display()
            ),
            "cannot read the ortholog table",
        ),
    ] {
        assert_refused(&atlas, &sql, needle, &before);
    }
}
