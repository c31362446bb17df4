//! `satlas_de` on a small in-memory atlas (the Baron fixtures, synthetic gene embeddings, a short
//! pretraining and fine-tuning): the atlas plumbing around the Wilcoxon tests, whose numerics
//! `tests/integration/de_reference.rs` checks against scanpy.
//!
//! Checked: the rows of every group (ranks, scores sorted, p_adj ≥ p), that scope and grouping
//! select the right cells (statistics equal to the tests run on the matrix read with plain SQL),
//! that listed genes are each species' largest trained weights, and the refusals (atlas
//! unchanged).

use crate::common::{atlas_with_embeddings, train, TRAINING};
use ndarray::Array2;
use satlas::de::wilcoxon::{rank_sum_tests, Reference};
use satlas::model::trained_weights;
use satlas::Atlas;
use std::collections::{BTreeSet, HashMap};

/// (group, rank, macrogene, score, logfc, pval, pval_adj, top_genes)
type Row = (String, i32, i32, f64, f64, f64, f64, String);

fn de_rows(atlas: &Atlas, args: &str) -> Vec<Row> {
    let sql = format!("SELECT * FROM satlas_de({args}) ORDER BY \"group\", rank");
    let mut stmt = atlas.connection().prepare(&sql).unwrap();
    stmt.query_map([], |r| {
        Ok((
            r.get(0)?,
            r.get(1)?,
            r.get(2)?,
            r.get(3)?,
            r.get(4)?,
            r.get(5)?,
            r.get(6)?,
            r.get(7)?,
        ))
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn de_failure(atlas: &Atlas, args: &str) -> String {
    let sql = format!("SELECT count(*) FROM satlas_de({args})");
    crate::common::failure(atlas, &sql).to_string()
}

/// The macrogene expression and cell types of a dataset's embedded, labelled cells, read with
/// plain SQL: (matrix, group per cell, group names sorted).
fn matrix_of(atlas: &Atlas, dataset: &str) -> (Array2<f32>, Vec<usize>, Vec<String>) {
    let mut stmt = atlas
        .connection()
        .prepare(
            "SELECT c.cell_type, e.macrogene_expression::VARCHAR FROM cell_embeddings e \
             JOIN cell_info c USING (cell_id) WHERE c.dataset = ? AND c.cell_type IS NOT NULL \
             ORDER BY cell_id",
        )
        .unwrap();
    let rows: Vec<(String, Vec<f32>)> = stmt
        .query_map([dataset], |r| {
            let text: String = r.get(1)?;
            let values = text
                .trim_matches(|c| c == '[' || c == ']')
                .split(',')
                .map(|v| v.trim().parse::<f32>().unwrap())
                .collect();
            Ok((r.get(0)?, values))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let names: Vec<String> = rows
        .iter()
        .map(|(g, _)| g.clone())
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let groups = rows
        .iter()
        .map(|(g, _)| names.binary_search(g).unwrap())
        .collect();
    let dim = rows[0].1.len();
    let values = rows.iter().flat_map(|(_, v)| v.iter().copied()).collect();
    (
        Array2::from_shape_vec((rows.len(), dim), values).unwrap(),
        groups,
        names,
    )
}

/// Every row's statistics equal those of the tests on `matrix_of(dataset)`.
fn assert_same_statistics(atlas: &Atlas, dataset: &str, rows: &[Row], reference: Option<&str>) {
    let (x, groups, names) = matrix_of(atlas, dataset);
    let sizes: Vec<usize> = (0..names.len())
        .map(|g| groups.iter().filter(|&&x| x == g).count())
        .collect();
    let reference = match reference {
        Some(name) => Reference::Group(names.iter().position(|n| n == name).unwrap()),
        None => Reference::Rest,
    };
    let tested: Vec<usize> = (0..names.len())
        .filter(|&g| sizes[g] >= 2 && reference != Reference::Group(g))
        .collect();
    let tests = rank_sum_tests(x.view(), &groups, names.len(), &tested, reference, &|| {});
    let reported: BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let expected: BTreeSet<&str> = tested.iter().map(|&g| names[g].as_str()).collect();
    assert_eq!(reported, expected, "tested groups");
    for (group, _, macrogene, score, logfc, pval, pval_adj, _) in rows {
        let g = names.iter().position(|n| n == group).unwrap();
        let t = tests.iter().find(|t| t.group == g).unwrap();
        let m = *macrogene as usize;
        for (what, ours, want) in [
            ("score", score, t.scores[m]),
            ("logfc", logfc, t.logfc[m]),
            ("pval", pval, t.pvals[m]),
            ("pval_adj", pval_adj, t.pvals_adj[m]),
        ] {
            assert!(
                (ours - want).abs() <= 1e-9 * want.abs().max(1e-300),
                "{group} macrogene {m} {what}: {ours} vs {want}"
            );
        }
    }
}

/// Each species' listed genes are its largest trained weights for the macrogene, largest first.
fn assert_top_genes(atlas: &Atlas, rows: &[Row], genes: usize) {
    let weights = trained_weights(atlas.connection(), 2).unwrap();
    let symbols: HashMap<i32, String> = {
        let mut stmt = atlas
            .connection()
            .prepare("SELECT gene_id, symbol FROM genes")
            .unwrap();
        stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    for (group, _, macrogene, .., text) in rows {
        let parts: Vec<&str> = text.split("; ").collect();
        assert_eq!(parts.len(), weights.len(), "{group}: {text}");
        for (part, w) in parts.iter().zip(&weights) {
            let (species, list) = part.split_once(": ").unwrap();
            assert_eq!(species, w.species);
            let listed: Vec<&str> = list
                .split(", ")
                .map(|e| e.split(' ').next().unwrap())
                .collect();
            let row = w.weights.row(*macrogene as usize);
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[b].total_cmp(&row[a]));
            let want: Vec<&str> = order[..genes]
                .iter()
                .map(|&i| symbols[&w.gene_ids[i]].as_str())
                .collect();
            assert_eq!(listed, want, "{group} macrogene {macrogene} {species}");
        }
    }
}

#[test]
fn de_reports_marker_macrogenes_and_refuses_bad_arguments() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let atlas = atlas_with_embeddings();
    train(&atlas, (2, 0), 1);
    let before = atlas.content_digest().unwrap();

    // Each cell type of the mouse dataset vs the rest of it.
    let rows = de_rows(&atlas, "dataset := 'baron_mouse', top := 4, genes := 3");
    assert!(rows.len() >= 4 * 5, "{} rows", rows.len());
    for group in rows.chunk_by(|a, b| a.0 == b.0) {
        let ranks: Vec<i32> = group.iter().map(|r| r.1).collect();
        assert_eq!(ranks, (1..=group.len() as i32).collect::<Vec<_>>());
        assert_eq!(group.len(), 4);
        assert!(group.windows(2).all(|w| w[0].3 >= w[1].3), "scores sorted");
        assert!(group.iter().all(|r| r.6 >= r.5 && r.6 <= 1.0), "p_adj");
    }
    assert_same_statistics(&atlas, "baron_mouse", &rows, None);
    assert_top_genes(&atlas, &rows, 3);

    // Against one reference cell type: every other type, none of the reference's rows.
    let rows = de_rows(
        &atlas,
        "dataset := 'baron_mouse', reference := 'beta', top := 2, genes := 1",
    );
    assert!(rows.iter().all(|r| r.0 != "beta"));
    assert_same_statistics(&atlas, "baron_mouse", &rows, Some("beta"));

    // An obs column as the grouping, over both species.
    let rows = de_rows(&atlas, "groupby := 'donor', top := 1, genes := 0");
    let donors: BTreeSet<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    assert!(donors.len() >= 4, "{donors:?}");
    assert!(donors.iter().any(|d| d.starts_with("human")) && donors.contains("mouse1"));

    for (args, expected) in [
        (
            "groupby := 'no_such_column'",
            "no group column \"no_such_column\"",
        ),
        (
            "reference := 'no_such_type'",
            "reference group \"no_such_type\"",
        ),
        ("top := 0", "top = 0"),
        ("species := 'human', dataset := 'baron_mouse'", "not both"),
        ("species := 'zebrafish'", "unknown species \"zebrafish\""),
        (
            "run := 1",
            "model run 1 is not a finished finetune run with cell embeddings",
        ),
    ] {
        let error = de_failure(&atlas, args);
        assert!(error.contains(expected), "{args}: {error}");
    }
    assert_eq!(atlas.content_digest().unwrap(), before);
}
