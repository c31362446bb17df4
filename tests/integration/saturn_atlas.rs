//! SATURN on an atlas through SQL: macrogenes, pretraining, fine-tuning, cell embeddings, then
//! the index and label transfer over them — the whole path on the bundled fixtures, small sizes.
//!
//! Gene embeddings are synthetic here (deterministic, from each gene's upper-cased symbol, so
//! orthologs with the same symbol share one): the test is about the atlas plumbing, numerics are
//! checked against PyTorch in `saturn_parity.rs` and `esm2_parity.rs`.

use crate::common::{atlas_with_embeddings, count, failure, TRAINING};
use satlas::Atlas;

fn column_f64(atlas: &Atlas, sql: &str) -> Vec<f64> {
    let mut stmt = atlas.connection().prepare(sql).unwrap();
    stmt.query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn saturn_runs_end_to_end_from_sql() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let atlas = atlas_with_embeddings();
    let species = count(
        &atlas,
        "SELECT count(*) FROM satlas_build_macrogenes(n := 30, n_top_genes := 300, seed := 0)",
    );
    assert_eq!(species, 2);
    assert_eq!(count(&atlas, "SELECT count(*) FROM macrogenes"), 30);
    assert_eq!(count(&atlas, "SELECT count(*) FROM gene_macrogene"), 600);
    assert_eq!(
        count(
            &atlas,
            "SELECT count(*) FROM gene_macrogene WHERE len(initial_weights) = 30"
        ),
        600
    );

    let losses = column_f64(&atlas, "SELECT loss FROM saturn_pretrain(epochs := 6, seed := 3, checkpoint_every := 2) ORDER BY epoch");
    assert_eq!(losses.len(), 6);
    assert!(
        losses[5] < losses[0],
        "pretraining loss should fall: {losses:?}"
    );
    assert_eq!(
        count(
            &atlas,
            "SELECT count(*) FROM training_log WHERE model_run_id = 1"
        ),
        6
    );
    assert_eq!(
        count(
            &atlas,
            "SELECT count(*) FROM model_runs WHERE status = 'done' AND weights IS NOT NULL"
        ),
        1
    );

    let again = column_f64(&atlas, "SELECT loss FROM saturn_pretrain(epochs := 6, seed := 3, checkpoint_every := 2) ORDER BY epoch");
    assert_eq!(again, losses, "the same seed gives the same losses");

    let triplet_losses = column_f64(
        &atlas,
        "SELECT loss FROM saturn_finetune(epochs := 3, seed := 0)",
    );
    assert_eq!(triplet_losses.len(), 3);
    let cells = count(&atlas, "SELECT count(*) FROM cells");
    let finetune_run = count(
        &atlas,
        "SELECT max(model_run_id) FROM model_runs WHERE kind = 'finetune' AND status = 'done'",
    );
    let embedded = count(
        &atlas,
        &format!("SELECT count(*) FROM cell_embeddings WHERE model_run_id = {finetune_run}"),
    );
    assert_eq!(
        embedded, cells,
        "every cell (all have counts in the selected genes) is embedded"
    );
    assert_eq!(
        count(&atlas, "SELECT count(*) FROM cell_embeddings WHERE len(embedding) = 256 AND len(macrogene_expression) = 30"),
        cells
    );

    // SATURN's VAE variant from SQL: the run's stored configuration says so, and fine-tuning
    // from it embeds every cell
    let vae = column_f64(
        &atlas,
        "SELECT loss FROM saturn_pretrain(epochs := 2, seed := 1, vae := true)",
    );
    assert_eq!(vae.len(), 2);
    assert_eq!(
        count(
            &atlas,
            "SELECT count(*) FROM model_runs WHERE kind = 'pretrain' AND params LIKE '%\"vae\":true%'"
        ),
        1
    );
    column_f64(
        &atlas,
        "SELECT loss FROM saturn_finetune(epochs := 1, seed := 0)",
    );
    let vae_run = count(
        &atlas,
        "SELECT max(model_run_id) FROM model_runs WHERE kind = 'finetune' AND status = 'done'",
    );
    assert_eq!(
        count(
            &atlas,
            &format!("SELECT count(*) FROM cell_embeddings WHERE model_run_id = {vae_run}")
        ),
        cells
    );

    let mouse_cells = count(
        &atlas,
        "SELECT count(*) FROM cell_info WHERE species = 'mouse'",
    );
    let transferred = count(&atlas, "SELECT count(*) FROM transfer_labels(query := 'baron_mouse', reference := 'human', k := 10)");
    assert_eq!(transferred, mouse_cells);
    assert_eq!(
        count(&atlas, "SELECT count(*) FROM label_transfers"),
        mouse_cells,
        "a transfer is stored once"
    );
}

#[test]
fn bad_training_parameters_change_nothing() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let atlas = atlas_with_embeddings();
    let before = atlas.content_digest().unwrap();
    for (sql, needle) in [
        (
            "SELECT * FROM saturn_pretrain(epochs := 2)",
            "satlas build-macrogenes",
        ),
        (
            "SELECT * FROM satlas_build_macrogenes(n := 100000)",
            "n_macrogenes",
        ),
        (
            "SELECT * FROM satlas_build_macrogenes(n := 10, score := 'best')",
            "score",
        ),
        (
            "SELECT * FROM saturn_finetune(epochs := 2)",
            "satlas pretrain",
        ),
    ] {
        let err = failure(&atlas, sql);
        assert!(err.to_string().contains(needle), "{sql}: {err}");
        assert_eq!(
            atlas.content_digest().unwrap(),
            before,
            "{sql} changed the atlas"
        );
    }
    count(
        &atlas,
        "SELECT count(*) FROM satlas_build_macrogenes(n := 10, n_top_genes := 100)",
    );
    let after_build = atlas.content_digest().unwrap();
    let err = failure(&atlas, "SELECT * FROM saturn_pretrain(epochs := 0)");
    assert!(err.to_string().contains("epochs"), "{err}");
    assert_eq!(atlas.content_digest().unwrap(), after_build);
}
