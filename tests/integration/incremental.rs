//! Incremental integration: a dataset of a trained species added after training is embedded with
//! the finished model (no training) and inserted into the existing HNSW index; `satlas transfer`
//! with a query file does the same for a file, then transfers labels to it.
//!
//! Trains a small SATURN on `baron_human` + `baron_mouse` (synthetic gene embeddings, as in
//! `saturn_atlas.rs`), builds the index, then adds `baron/human_modern.h5ad` — the same cells and
//! counts as `baron/human.h5ad`, another encoding and file — as the new dataset `human_again`.

use crate::common::{
    atlas_with_embeddings, count, dataset_spec, failure, fill_atlas, fixture, satlas_ok, train,
    TRAINING,
};
use satlas::index::{self, Access, IndexParams, Origin};
use satlas::ingest::{add_dataset, add_proteome};
use satlas::io::FastaOptions;
use satlas::model::embed_dataset;
use satlas::Atlas;

fn text(atlas: &Atlas, sql: &str) -> String {
    atlas.connection().query_row(sql, [], |r| r.get(0)).unwrap()
}

/// Every stored embedding, as `(cell_id, hash of its embedding and macrogene expression)`.
fn embedding_hashes(atlas: &Atlas, run: i64) -> Vec<(i64, u64)> {
    let mut stmt = atlas
        .connection()
        .prepare(
            "SELECT cell_id, hash(embedding, macrogene_expression) FROM cell_embeddings
             WHERE model_run_id = ? ORDER BY cell_id",
        )
        .unwrap();
    stmt.query_map([run], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

#[test]
fn a_new_dataset_of_a_trained_species_is_embedded_and_searchable() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let mut atlas = atlas_with_embeddings();

    let err = failure(
        &atlas,
        "SELECT count(*) FROM satlas_embed_dataset(dataset := 'baron_human')",
    )
    .to_string();
    assert!(err.contains("no finished finetune run"), "{err}");

    train(&atlas, (2, 1), 1);
    let run = count(
        &atlas,
        "SELECT max(model_run_id) FROM model_runs WHERE kind = 'finetune' AND status = 'done'",
    );
    let built = index::build(&mut atlas, None, IndexParams::default()).unwrap();
    assert_eq!(built.run as i64, run);
    let before = embedding_hashes(&atlas, run);
    let old_cells = before.len();
    assert_eq!(
        old_cells as i64,
        count(&atlas, "SELECT count(*) FROM cells")
    );

    add_dataset(
        &mut atlas,
        &dataset_spec("human", "human_again", "baron/human_modern.h5ad"),
    )
    .unwrap();
    let new_cells = count(
        &atlas,
        "SELECT count(*) FROM cell_info WHERE dataset = 'human_again'",
    );
    assert!(new_cells > 0);

    // Embed through SQL: one row describing what was done.
    let (embedded, dropped, index_state): (i64, i64, String) = atlas
        .connection()
        .query_row(
            "SELECT embedded_cells, dropped_cells, index FROM satlas_embed_dataset(dataset := 'human_again')",
            [],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .unwrap();
    assert_eq!((embedded, dropped), (new_cells, 0));
    assert_eq!(index_state, format!("extended with {new_cells} new cells"));

    // (a) The embeddings of the cells that were there are bit-identical.
    let after = embedding_hashes(&atlas, run);
    assert_eq!(after.len(), old_cells + new_cells as usize);
    let old_after: Vec<(i64, u64)> = after
        .iter()
        .copied()
        .filter(|(id, _)| before.iter().any(|(b, _)| b == id))
        .collect();
    assert_eq!(old_after, before, "existing embeddings changed");

    // (b) Same counts, same model: each new cell's embedding equals its baron_human twin's.
    let twins_sql =
        "FROM cells a JOIN datasets da ON da.dataset_id = a.dataset_id AND da.name = 'human_again'
         JOIN cells b ON b.barcode = a.barcode
         JOIN datasets db ON db.dataset_id = b.dataset_id AND db.name = 'baron_human'
         JOIN cell_embeddings ea ON ea.cell_id = a.cell_id
         JOIN cell_embeddings eb ON eb.cell_id = b.cell_id AND eb.model_run_id = ea.model_run_id";
    assert_eq!(
        count(&atlas, &format!("SELECT count(*) {twins_sql}")),
        new_cells
    );
    let max_diff: f64 = atlas
        .connection()
        .query_row(
            &format!(
                "SELECT max(list_max(list_transform(list_zip(ea.embedding, eb.embedding),
                                                    lambda p: abs(p[1] - p[2])))) {twins_sql}"
            ),
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert!(max_diff <= 1e-6, "twin embeddings differ by {max_diff}");

    // (c) The stored index covers the new cells: it is current (no rebuild, even read-only)...
    assert_eq!(
        count(
            &atlas,
            &format!("SELECT n_cells FROM hnsw_indexes WHERE model_run_id = {run}")
        ),
        old_cells as i64 + new_cells
    );
    let (stored, origin) = index::open(
        atlas.connection(),
        run as i32,
        Access::ReadOnly,
        IndexParams::default().check().unwrap(),
    )
    .unwrap();
    assert_eq!(origin, Origin::Loaded);
    assert_eq!(stored.len(), old_cells + new_cells as usize);
    // ... and a new cell's nearest neighbour is its twin, at distance ~0.
    let mut stmt = atlas
        .connection()
        .prepare(&format!(
            "SELECT a.cell_id, b.cell_id {twins_sql} ORDER BY a.cell_id LIMIT 5"
        ))
        .unwrap();
    let pairs: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(pairs.len(), 5);
    for (new, twin) in pairs {
        let (nearest, distance, dataset): (i64, f32, String) = atlas
            .connection()
            .query_row(
                &format!(
                    "SELECT cell_id, distance, dataset FROM knn_cells(cell_id := {new}, k := 1)"
                ),
                [],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .unwrap();
        assert_eq!((nearest, dataset.as_str()), (twin, "baron_human"));
        assert!(distance.abs() < 1e-5, "distance to twin {distance}");
    }

    // (d) Embedding it again is refused and changes nothing.
    let digest = atlas.content_digest().unwrap();
    let err = failure(
        &atlas,
        "SELECT count(*) FROM satlas_embed_dataset(dataset := 'human_again')",
    )
    .to_string();
    assert!(err.contains("already embedded"), "{err}");
    assert_eq!(atlas.content_digest().unwrap(), digest);

    // (e) An unknown dataset is refused.
    let err = failure(
        &atlas,
        "SELECT count(*) FROM satlas_embed_dataset(dataset := 'no_such_dataset')",
    )
    .to_string();
    assert!(
        err.contains("unknown dataset") && err.contains("human_again"),
        "{err}"
    );
    let err = failure(
        &atlas,
        &format!(
            "SELECT count(*) FROM satlas_embed_dataset(dataset := 'human_again', run := {})",
            run + 100
        ),
    )
    .to_string();
    assert!(err.contains("not a finished finetune run"), "{err}");
    assert_eq!(atlas.content_digest().unwrap(), digest);

    // A species the model was not trained on needs saturn_add_species.
    add_proteome(
        &mut atlas,
        "rat",
        &fixture("proteins/mouse_surrogate.fa.gz"),
        &FastaOptions::default(),
    )
    .unwrap();
    let mut rat = dataset_spec("rat", "rat_cells", "baron/human_10x");
    rat.read.obs_file = Some(fixture("baron/human_10x/obs.csv"));
    add_dataset(&mut atlas, &rat).unwrap();
    let digest = atlas.content_digest().unwrap();
    let err = embed_dataset(&mut atlas, "rat_cells", None)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("saturn_add_species") && err.contains("rat"),
        "{err}"
    );
    assert_eq!(atlas.content_digest().unwrap(), digest);
    assert_eq!(
        text(&atlas, "SELECT string_agg(DISTINCT dataset, ',' ORDER BY dataset) FROM cell_info c JOIN cell_embeddings USING (cell_id)"),
        "baron_human,baron_mouse,human_again"
    );

    // Full overlap for the re-added human data; a 200-gene dataset gets the low-overlap warning.
    add_dataset(
        &mut atlas,
        &dataset_spec("human", "few_genes", "legacy/anndata06.h5ad"),
    )
    .unwrap();
    let report = embed_dataset(&mut atlas, "few_genes", None).unwrap();
    let (present, total) = report.gene_overlap;
    assert!(total > 0 && present < total / 2, "{present} of {total}");
    assert!(
        report.to_string().contains("WARNING: low gene overlap"),
        "{report}"
    );
}

#[test]
fn transfer_to_a_file_adds_embeds_and_labels_it() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("atlas.satlas");
    {
        let mut atlas = fill_atlas(Atlas::create(&path).unwrap(), &["human", "mouse"]);
        for sql in [
            "SELECT count(*) FROM satlas_build_macrogenes(n := 30, n_top_genes := 300, seed := 0)",
            "SELECT count(*) FROM saturn_pretrain(epochs := 2, seed := 1)",
            "SELECT count(*) FROM saturn_finetune(epochs := 1, seed := 0)",
        ] {
            count(&atlas, sql);
        }
        index::build(&mut atlas, None, IndexParams::default()).unwrap();
    }
    // The query file holds the same cells as baron_human: with k = 1 each cell's nearest
    // baron_human cell is its twin, so every cell gets back its own label.
    let query = fixture("baron/human_modern.h5ad");
    let labels = dir.path().join("labels.csv");
    let args = [
        "transfer",
        "--reference",
        "baron_human",
        "--query",
        query.to_str().unwrap(),
        "--species",
        "human",
        "--label",
        "cell_type1",
        "-k",
        "1",
        "--out",
        labels.to_str().unwrap(),
    ];
    let stdout = satlas_ok(&path, &args);
    assert!(
        stdout.contains("human_modern [human, h5ad]: added 215 cells")
            && stdout.contains("gene overlap: ")
            && !stdout.contains("WARNING"),
        "{stdout}"
    );
    let atlas = Atlas::open(&path).unwrap();
    let (cells, correct): (i64, i64) = atlas
        .connection()
        .query_row(
            "SELECT count(*), count(*) FILTER (WHERE t.predicted_label = c.cell_type)
             FROM label_transfers t JOIN cell_info c USING (cell_id)
             WHERE t.transfer_id = (SELECT max(transfer_id) FROM label_transfers)
               AND c.dataset = 'human_modern'",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    assert_eq!((cells, correct), (215, 215));
    let csv = std::fs::read_to_string(&labels).unwrap();
    assert_eq!(csv.lines().count(), 216, "header + one line per cell");

    // The same file again: its dataset name exists, refused with the way out, nothing changed.
    let digest = atlas.content_digest().unwrap();
    drop(atlas);
    let again = crate::common::satlas(&path, &args);
    let stderr = String::from_utf8_lossy(&again.stderr);
    assert!(!again.status.success());
    assert!(
        stderr.contains("already in the atlas") && stderr.contains("--query human_modern"),
        "{stderr}"
    );
    let missing_species = crate::common::satlas(
        &path,
        &[
            "transfer",
            "--reference",
            "human",
            "--query",
            query.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&missing_species.stderr);
    assert!(
        !missing_species.status.success() && stderr.contains("--species"),
        "{stderr}"
    );
    assert_eq!(
        Atlas::open(&path).unwrap().content_digest().unwrap(),
        digest
    );

    // A query file without labels whose genes barely overlap the model's: added unlabelled,
    // transferred, with the overlap warning.
    let few = fixture("legacy/anndata06.h5ad");
    let stdout = satlas_ok(
        &path,
        &[
            "transfer",
            "--reference",
            "human",
            "--query",
            few.to_str().unwrap(),
            "--species",
            "human",
        ],
    );
    assert!(stdout.contains("WARNING: low gene overlap"), "{stdout}");
    let atlas = Atlas::open(&path).unwrap();
    assert_eq!(
        count(
            &atlas,
            "SELECT count(*) FROM cell_info WHERE dataset = 'anndata06' AND cell_type IS NULL"
        ),
        8
    );
    assert_eq!(
        count(
            &atlas,
            "SELECT count(*) FROM label_transfers t JOIN cell_info c USING (cell_id)
             WHERE c.dataset = 'anndata06'"
        ),
        8
    );
}
