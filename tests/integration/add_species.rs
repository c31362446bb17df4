//! Adding a new species to a trained model (`saturn_add_species`): a SATURN trained on
//! `baron_human` only (synthetic gene embeddings, as in `incremental.rs`), then `baron_mouse` added
//! as a new species. Checks that only the species' parts train, existing cells do not move, the
//! new cells are searchable, runs are reproducible, and refusals change nothing.

use crate::common::{add_baron, count, failure, fill_atlas, TRAINING};
use satlas::index::{self, Access, IndexParams, Origin};
use satlas::ingest::{add_dataset, add_proteome};
use satlas::io::FastaOptions;
use satlas::model::{load_run_model, Saturn};
use satlas::sql::SqlAtlas;
use satlas::Atlas;

/// A small SATURN trained on human only, with an HNSW index; the mouse proteome and gene
/// embeddings are in the atlas, the mouse dataset too when `with_mouse`.
fn human_model(with_mouse: bool) -> SqlAtlas {
    human_model_of(with_mouse, false)
}

/// [`human_model`], of SATURN's VAE variant if `vae`.
fn human_model_of(with_mouse: bool, vae: bool) -> SqlAtlas {
    let mut atlas = fill_atlas(Atlas::in_memory().unwrap(), &["human"]);
    let pretrain =
        format!("SELECT count(*) FROM saturn_pretrain(epochs := 2, seed := 1, batch_size := 64, vae := {vae})");
    for sql in [
        "SELECT count(*) FROM satlas_build_macrogenes(n := 30, n_top_genes := 300, seed := 0)",
        &pretrain,
        "SELECT count(*) FROM saturn_finetune(epochs := 1, seed := 0)",
    ] {
        count(&atlas, sql);
    }
    index::build(&mut atlas, None, IndexParams::default()).unwrap();
    if with_mouse {
        add_baron(&mut atlas, "mouse");
    }
    atlas
}

const ADD_MOUSE: &str =
    "SELECT epoch, loss FROM saturn_add_species(species := 'mouse', epochs := 8, seed := 3, batch_size := 64) ORDER BY epoch";

/// The (epoch, loss) rows of a query.
fn losses(atlas: &Atlas, sql: &str) -> Vec<(i64, f64)> {
    let mut stmt = atlas.connection().prepare(sql).unwrap();
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect()
}

/// `(cell_id, hash of embedding and macrogene expression)` of a run's cells of one species.
fn embedding_hashes(atlas: &Atlas, run: i64, species: &str) -> Vec<(i64, u64)> {
    let mut stmt = atlas
        .connection()
        .prepare(
            "SELECT cell_id, hash(embedding, macrogene_expression) FROM cell_embeddings
             JOIN cell_info USING (cell_id) WHERE model_run_id = ? AND species = ? ORDER BY cell_id",
        )
        .unwrap();
    stmt.query_map(duckdb::params![run, species], |r| {
        Ok((r.get(0)?, r.get(1)?))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn run_of_kind(atlas: &Atlas, kind: &str) -> i64 {
    count(
        atlas,
        &format!(
            "SELECT max(model_run_id) FROM model_runs WHERE kind = '{kind}' AND status = 'done'"
        ),
    )
}

/// Existing cells do not move (the parent's embeddings are untouched and copied bit for bit
/// into the add-species run `run`) and every mouse cell is embedded; returns the mouse cells.
fn cells_kept_and_added(atlas: &Atlas, parent: i64, run: i64, human_before: &[(i64, u64)]) -> i64 {
    assert_eq!(embedding_hashes(atlas, parent, "human"), human_before);
    assert_eq!(embedding_hashes(atlas, run, "human"), human_before);
    let mouse_cells = embedding_hashes(atlas, run, "mouse").len() as i64;
    assert_eq!(
        mouse_cells,
        count(
            atlas,
            "SELECT count(*) FROM cell_info WHERE species = 'mouse'"
        )
    );
    mouse_cells
}

/// The parent run's model and the add-species run's model.
fn parent_and_new_model(atlas: &Atlas, parent: i64, run: i64) -> (Saturn, Saturn) {
    (
        load_run_model(atlas.connection(), parent as i32).unwrap(),
        load_run_model(atlas.connection(), run as i32).unwrap(),
    )
}

#[test]
fn a_new_species_is_trained_alone_embedded_and_searchable() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let atlas = human_model(true);
    let parent = run_of_kind(&atlas, "finetune");
    let human_before = embedding_hashes(&atlas, parent, "human");
    let parent_cells = human_before.len() as i64;
    assert_eq!(
        parent_cells,
        count(
            &atlas,
            "SELECT count(*) FROM cell_info WHERE species = 'human'"
        )
    );

    let rows = losses(&atlas, ADD_MOUSE);
    assert_eq!(
        rows.iter().map(|r| r.0).collect::<Vec<_>>(),
        (0..8).collect::<Vec<_>>()
    );
    let (first, last) = (rows[0].1, rows[7].1);
    assert!(last < first, "add-species losses did not fall: {rows:?}");

    // The new run: kind, parent, its own macrogene set (the parent's plus the mouse genes).
    let run = run_of_kind(&atlas, "add_species");
    assert_eq!(
        count(
            &atlas,
            &format!("SELECT parent_run_id FROM model_runs WHERE model_run_id = {run}")
        ),
        parent
    );
    let (parent_set, set): (i64, i64) = (
        count(
            &atlas,
            &format!("SELECT macrogene_set_id FROM model_runs WHERE model_run_id = {parent}"),
        ),
        count(
            &atlas,
            &format!("SELECT macrogene_set_id FROM model_runs WHERE model_run_id = {run}"),
        ),
    );
    assert_ne!(set, parent_set);
    let genes_in = |set: i64, species: &str| {
        count(
            &atlas,
            &format!(
                "SELECT count(*) FROM gene_macrogene JOIN genes USING (gene_id) JOIN species s USING (species_id)
                 WHERE macrogene_set_id = {set} AND s.name = '{species}'"
            ),
        )
    };
    assert_eq!(genes_in(set, "human"), genes_in(parent_set, "human"));
    assert_eq!(genes_in(parent_set, "mouse"), 0);
    let mouse_genes = genes_in(set, "mouse");
    assert!(
        mouse_genes > 0 && mouse_genes <= 300,
        "{mouse_genes} mouse genes"
    );
    assert_eq!(
        count(&atlas, &format!(
            "SELECT count(*) FROM macrogenes a JOIN macrogenes b USING (macrogene)
             WHERE a.macrogene_set_id = {parent_set} AND b.macrogene_set_id = {set} AND a.centroid = b.centroid"
        )),
        30,
        "the stored centroids are reused as they are"
    );

    let mouse_cells = cells_kept_and_added(&atlas, parent, run, &human_before);

    // Only the species' parameters changed: everything of the parent is bit-identical.
    let (old, new) = parent_and_new_model(&atlas, parent, run);
    assert_eq!(new.config().species, ["human", "mouse"]);
    assert_eq!(new.config().genes_per_species[1] as i64, mouse_genes);
    let new_vars = new.var_store().variables();
    let mut compared = 0;
    for (name, value) in old.var_store().variables() {
        let extended = &new_vars[&name];
        let shared = if extended.size() == value.size() {
            extended.shallow_clone()
        } else {
            extended.narrow(1, 0, value.size()[1]) // P and px_decoder's weight grew by columns
        };
        assert!(shared.equal(&value), "parameter {name} changed");
        compared += 1;
    }
    assert!(compared >= 20 && new_vars.keys().any(|k| k.starts_with("encoder.")));
    let grown = |name: &str, width: i64| {
        let v = &new_vars[name];
        v.narrow(1, v.size()[1] - width, width)
    };
    let mouse_block = grown("p_weights", mouse_genes);
    let initial = load_initial_mouse_weights(&atlas, set);
    assert!(
        !mouse_block.exp().allclose(&initial, 1e-6, 1e-6, false),
        "the mouse weights did not train"
    );

    // Searchable at once: the run's index holds every cell and is current (loads read-only).
    let (stored, origin) = index::open(
        atlas.connection(),
        run as i32,
        Access::ReadOnly,
        IndexParams::default().check().unwrap(),
    )
    .unwrap();
    assert_eq!(origin, Origin::Loaded);
    assert_eq!(stored.len() as i64, parent_cells + mouse_cells);
    let mouse_cell = count(
        &atlas,
        "SELECT min(cell_id) FROM cell_info WHERE species = 'mouse'",
    );
    for (filter, species) in [
        ("", None),
        (", species := 'mouse'", Some("mouse")),
        (", species := 'human'", Some("human")),
    ] {
        // no run given: the default is the newest run, the add-species one (the parent has no
        // embedding of this cell)
        let sql = format!(
            "SELECT count(*), count(DISTINCT species), any_value(species)
             FROM knn_cells(cell_id := {mouse_cell}, k := 10{filter})"
        );
        let (n, kinds, one): (i64, i64, String) = atlas
            .connection()
            .query_row(&sql, [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
            .unwrap();
        assert_eq!(n, 10, "{sql}");
        if let Some(species) = species {
            assert_eq!((kinds, one.as_str()), (1, species), "{sql}");
        }
    }

    // Adding the species again is refused.
    let digest = atlas.content_digest().unwrap();
    let err = failure(
        &atlas,
        "SELECT count(*) FROM saturn_add_species(species := 'mouse', epochs := 1)",
    )
    .to_string();
    assert!(
        err.contains("already in model run") && err.contains(&format!("{run}")),
        "{err}"
    );
    assert_eq!(atlas.content_digest().unwrap(), digest);
}

/// A species added to a model of SATURN's VAE variant: the new model is one too, the parent's
/// parameters (the VAE heads included) and cells do not change, the new cells are embedded, and
/// the species' training loss includes the KL term (`loss - zinb - 0.2 R > 0` once its cyclic
/// weight is above 0, from epoch 1).
#[test]
fn a_new_species_joins_a_vae_model() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let atlas = human_model_of(true, true);
    let parent = run_of_kind(&atlas, "finetune");
    let human_before = embedding_hashes(&atlas, parent, "human");
    let kl_parts = losses(
        &atlas,
        &ADD_MOUSE.replace("epoch, loss", "epoch, loss - zinb - 0.2 * regulariser"),
    );
    assert_eq!(kl_parts.len(), 8);
    let run = run_of_kind(&atlas, "add_species");
    cells_kept_and_added(&atlas, parent, run, &human_before);
    let (old, new) = parent_and_new_model(&atlas, parent, run);
    assert!(new.config().vae);
    let new_vars = new.var_store().variables();
    for name in ["fc_mu.weight", "fc_var.bias", "encoder.0.0.weight"] {
        assert!(
            new_vars[name].equal(&old.var_store().variables()[name]),
            "{name} changed"
        );
    }
    assert!(kl_parts[0].1.abs() < 1e-3, "{kl_parts:?}");
    assert!(kl_parts[1..].iter().all(|r| r.1 > 0.0), "{kl_parts:?}");
}

/// The initial (rank-rule) weights of the mouse genes in set `set`, macrogenes x genes.
fn load_initial_mouse_weights(atlas: &Atlas, set: i64) -> tch::Tensor {
    let mut stmt = atlas
        .connection()
        .prepare(
            "SELECT gm.initial_weights
             FROM gene_macrogene gm JOIN genes g USING (gene_id) JOIN species s USING (species_id)
             WHERE gm.macrogene_set_id = ? AND s.name = 'mouse' ORDER BY gm.gene_id",
        )
        .unwrap();
    let flat: Vec<f32> = stmt
        .query_map([set], |r| r.get::<_, duckdb::types::Value>(0))
        .unwrap()
        .flat_map(|row| match row.unwrap() {
            duckdb::types::Value::List(values) => values,
            other => panic!("initial_weights is {other:?}"),
        })
        .map(|v| match v {
            duckdb::types::Value::Float(f) => f,
            other => panic!("weight {other:?}"),
        })
        .collect();
    tch::Tensor::from_slice(&flat).reshape([-1, 30]).tr()
}

#[test]
fn the_same_seed_adds_the_same_species() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let a = human_model(true);
    let b = human_model(true);
    let (la, lb) = (losses(&a, ADD_MOUSE), losses(&b, ADD_MOUSE));
    assert_eq!(la, lb);
    let (ra, rb) = (
        run_of_kind(&a, "add_species"),
        run_of_kind(&b, "add_species"),
    );
    assert_eq!(
        embedding_hashes(&a, ra, "mouse"),
        embedding_hashes(&b, rb, "mouse")
    );
    // ... and the seed matters.
    let c = human_model(true);
    let lc = losses(&c, &ADD_MOUSE.replace("seed := 3", "seed := 4"));
    assert_ne!(la, lc);
}

#[test]
fn refusals_name_what_is_missing_and_change_nothing() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let mut atlas = human_model(false);
    // rat: a proteome and a dataset, but no gene embeddings.
    add_proteome(
        &mut atlas,
        "rat",
        &crate::common::fixture("proteins/mouse_surrogate.fa.gz"),
        &FastaOptions::default(),
    )
    .unwrap();
    let mut rat = crate::common::dataset_spec("rat", "rat_cells", "baron/human_10x");
    rat.read.obs_file = Some(crate::common::fixture("baron/human_10x/obs.csv"));
    add_dataset(&mut atlas, &rat).unwrap();
    let digest = atlas.content_digest().unwrap();
    for (species, expected) in [
        (
            "mouse",
            vec!["no dataset", "satlas add-dataset --species mouse"],
        ),
        (
            "rat",
            vec![
                "no gene embeddings",
                "synthetic",
                "import-embeddings --species rat",
            ],
        ),
        ("zebrafish", vec!["unknown species", "add-proteome"]),
        ("human", vec!["already in model run"]),
    ] {
        let err = failure(
            &atlas,
            &format!(
                "SELECT count(*) FROM saturn_add_species(species := '{species}', epochs := 1)"
            ),
        )
        .to_string();
        for part in expected {
            assert!(err.contains(part), "{species}: {err:?} lacks {part:?}");
        }
        assert_eq!(atlas.content_digest().unwrap(), digest, "{species}");
    }
    let err = failure(
        &atlas,
        "SELECT count(*) FROM saturn_add_species(species := 'mouse', run := 99)",
    )
    .to_string();
    assert!(
        err.contains("model run 99 is not a finished finetune run"),
        "{err}"
    );
    assert_eq!(atlas.content_digest().unwrap(), digest);
}
