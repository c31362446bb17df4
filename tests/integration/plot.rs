//! Pictures: the stored UMAP layout (seeded, trustworthy, extended by placing new cells), the
//! `satlas plot` pictures (SVG points and legend, PNG colours), the HTML report, and the refused
//! inputs that must write nothing.

use crate::common::{
    count, dataset_spec, fill_atlas, satlas, satlas_ok, train, Snapshot, TRAINING,
};
use satlas::index::exact::exact_knn;
use satlas::index::{self, IndexParams, TransferSpec};
use satlas::ingest::add_dataset;
use satlas::layout::{self, umap, LayoutOrigin, UmapParams};
use satlas::runs::embeddings::read;
use satlas::sql::SqlAtlas;
use satlas::Atlas;
use std::path::Path;

/// Both Baron datasets (synthetic gene embeddings), a short pretraining and fine-tuning, an index
/// and a label transfer mouse <- human.
fn trained(atlas: Atlas) -> SqlAtlas {
    let mut atlas = fill_atlas(atlas, &["human", "mouse"]);
    train(&atlas, (3, 1), 2);
    index::build(&mut atlas, None, IndexParams::default()).unwrap();
    index::transfer::transfer(&mut atlas, &TransferSpec::new("baron_mouse", "human")).unwrap();
    atlas
}

/// Trustworthiness at k = 15 of `points` (rows = cells in id order) against the exact cosine
/// neighbourhoods of the run's embeddings.
fn trustworthiness(atlas: &Atlas, run: i32, points: &[[f32; 2]]) -> f64 {
    let emb = read(atlas.connection(), run, |_| true).unwrap();
    let unit: Vec<Vec<f32>> = (0..emb.len())
        .map(|i| satlas::index::distance::normalized(emb.row(i)))
        .collect();
    let row_of: std::collections::HashMap<i64, usize> = emb
        .cell_ids
        .iter()
        .enumerate()
        .map(|(i, &c)| (c, i))
        .collect();
    umap::trustworthiness(points, 15, |i| {
        let others = (0..emb.len())
            .filter(|&j| j != i)
            .map(|j| (emb.cell_ids[j], unit[j].as_slice()));
        exact_knn(others, &unit[i], emb.len())
            .into_iter()
            .map(|h| row_of[&h.cell_id])
            .collect()
    })
}

#[test]
fn layout_is_seeded_trustworthy_stored_and_extended_by_placement() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let mut atlas = trained(Atlas::in_memory().unwrap());
    let run = count(&atlas, "SELECT max(model_run_id) FROM cell_embeddings") as i32;

    let params = UmapParams {
        n_epochs: Some(200),
        ..UmapParams::default()
    };
    let first = layout::compute(&mut atlas, None, params).unwrap();
    assert_eq!(first.run, run);
    let stored = layout::read_layout(atlas.connection(), run)
        .unwrap()
        .unwrap();
    layout::compute(&mut atlas, None, params).unwrap();
    let again = layout::read_layout(atlas.connection(), run)
        .unwrap()
        .unwrap();
    assert_eq!(stored.points, again.points, "one seed, one layout");
    layout::compute(&mut atlas, None, UmapParams { seed: 1, ..params }).unwrap();
    let other = layout::read_layout(atlas.connection(), run)
        .unwrap()
        .unwrap();
    assert_ne!(stored.points, other.points, "another seed, another layout");
    let n = count(&atlas, "SELECT count(*) FROM cell_embeddings") as usize;
    assert_eq!(stored.cell_ids.len(), n);

    // Neighbours in the embedding space stay neighbours: measured 0.913 on this atlas (a random
    // layout: 0.509); on the demo atlas satlas 0.952 vs umap-learn 0.952 (benches/README.md).
    let t = trustworthiness(&atlas, run, &stored.points);
    assert!(t > 0.85, "trustworthiness {t}");
    // A random layout is far less trustworthy: the check can fail.
    let mut rng = umap::Rng::new(5);
    let random: Vec<[f32; 2]> = (0..n)
        .map(|_| [rng.unit() as f32, rng.unit() as f32])
        .collect();
    let t_random = trustworthiness(&atlas, run, &random);
    eprintln!("trustworthiness k=15: layout {t:.4}, random {t_random:.4}");
    assert!(t_random < 0.7, "random layout trustworthiness {t_random}");

    // Reused while the embeddings are unchanged.
    let (current, origin) = layout::current(&mut atlas, None).unwrap();
    assert_eq!(origin, LayoutOrigin::Loaded);
    assert_eq!(current.points, other.points);

    // A new dataset embedded later: its cells are placed, the others keep their points.
    add_dataset(
        &mut atlas,
        &dataset_spec("human", "human_again", "baron/human_modern.h5ad"),
    )
    .unwrap();
    satlas::model::embed_dataset(&mut atlas, "human_again", None).unwrap();
    let new = count(&atlas, "SELECT count(*) FROM cell_embeddings") as usize - n;
    assert!(new > 0);
    let (placed, origin) = layout::current(&mut atlas, None).unwrap();
    assert_eq!(origin, LayoutOrigin::Placed(new));
    assert_eq!(placed.cell_ids.len(), n + new);
    assert_eq!(placed.placed.iter().filter(|&&p| p).count(), new);
    let (lo, hi) = other.points.iter().fold(
        ([f32::INFINITY; 2], [f32::NEG_INFINITY; 2]),
        |(lo, hi), p| {
            (
                [lo[0].min(p[0]), lo[1].min(p[1])],
                [hi[0].max(p[0]), hi[1].max(p[1])],
            )
        },
    );
    for (i, id) in placed.cell_ids.iter().enumerate() {
        match other.cell_ids.binary_search(id) {
            Ok(j) => assert_eq!(placed.points[i], other.points[j]),
            Err(_) => {
                let p = placed.points[i];
                assert!((lo[0]..=hi[0]).contains(&p[0]) && (lo[1]..=hi[1]).contains(&p[1]));
            }
        }
    }
    // human_modern holds the same cells as baron_human: each placed cell lands near its twin.
    let stored_again = layout::read_layout(atlas.connection(), run)
        .unwrap()
        .unwrap();
    assert_eq!(stored_again.points, placed.points);
    assert_eq!(
        count(&atlas, "SELECT n_placed FROM umap_layouts") as usize,
        new
    );
}

/// Distinct colours of a PNG (RGBA pixels).
fn png_colours(path: &Path) -> usize {
    let pixmap = resvg::tiny_skia::Pixmap::load_png(path).unwrap();
    let colours: std::collections::HashSet<[u8; 4]> = pixmap
        .pixels()
        .iter()
        .map(|p| [p.red(), p.green(), p.blue(), p.alpha()])
        .collect();
    colours.len()
}

fn read_text(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn plots_and_report_are_written_and_refusals_write_nothing() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("atlas.satlas");
    drop(trained(Atlas::create(&path).unwrap()));
    let at = |name: &str| dir.path().join(name).display().to_string();
    let n = {
        let atlas = Atlas::open_read_only(&path).unwrap();
        count(&atlas, "SELECT count(*) FROM cell_embeddings")
    } as usize;

    // UMAP by cell type, SVG: one circle per cell, one legend row per cell type.
    let out = satlas_ok(
        &path,
        &[
            "plot",
            "umap",
            "--color",
            "cell_type",
            "--out",
            &at("types.svg"),
        ],
    );
    assert!(out.contains("layout: computed"), "{out}");
    let svg = read_text(&dir.path().join("types.svg"));
    assert_eq!(svg.matches("<circle").count(), n);
    let legend = svg.split(r#"<g class="legend">"#).nth(1).unwrap();
    let legend = legend.split("</g>").next().unwrap();
    let types = {
        let atlas = Atlas::open_read_only(&path).unwrap();
        count(
            &atlas,
            "SELECT count(DISTINCT cell_type) FROM cells WHERE cell_type IS NOT NULL",
        )
    } as usize;
    let expected_rows = types.min(satlas::plot::charts::MAX_NAMED + 1);
    assert!(legend.matches("<rect").count() >= expected_rows.min(types));
    assert!(legend.matches("<rect").count() <= satlas::plot::charts::MAX_NAMED + 2);
    parse_svg(&svg);

    // Species as PNG: decodes, white background, both species' colours and more.
    let out = satlas_ok(
        &path,
        &[
            "plot",
            "umap",
            "--color",
            "species",
            "--out",
            &at("species.png"),
        ],
    );
    assert!(
        out.contains("layout: stored"),
        "the stored layout is reused: {out}"
    );
    assert!(png_colours(&dir.path().join("species.png")) > 10);

    // Confidence (continuous) and the transferred labels.
    satlas_ok(
        &path,
        &[
            "plot",
            "umap",
            "--color",
            "confidence",
            "--out",
            &at("conf.svg"),
        ],
    );
    assert!(read_text(&dir.path().join("conf.svg")).contains("(no transfer)"));
    satlas_ok(
        &path,
        &[
            "plot",
            "umap",
            "--color",
            "transferred_label",
            "--out",
            &at("label.svg"),
        ],
    );

    // Training curves: one chart per run (pretrain, finetune), one line per loss term.
    satlas_ok(&path, &["plot", "training", "--out", &at("training.svg")]);
    let training = read_text(&dir.path().join("training.svg"));
    assert!(training.contains("(pretrain)") && training.contains("(finetune)"));
    assert!(
        training.matches(r#"class="series""#).count() >= 4,
        "{training}"
    );
    satlas_ok(&path, &["plot", "training", "--out", &at("training.png")]);
    assert!(png_colours(&dir.path().join("training.png")) > 4);

    // DE heatmap: one row per cell type with at least two cells.
    satlas_ok(&path, &["plot", "de", "--out", &at("de.svg")]);
    let de = read_text(&dir.path().join("de.svg"));
    parse_svg(&de);
    parse_svg(&training);
    assert!(de.matches("<title>").count() >= 2 * 3, "{de}");

    // The report: self-contained, every section present.
    satlas_ok(&path, &["report", "--out", &at("report.html")]);
    let html = read_text(&dir.path().join("report.html"));
    for section in [
        "id=\"umap\"",
        "id=\"training\"",
        "id=\"evaluation\"",
        "id=\"transfer\"",
        "id=\"de\"",
        "id=\"datasets\"",
    ] {
        assert!(html.contains(section), "report lacks {section}");
    }
    assert!(
        html.matches("<svg").count() >= 7,
        "UMAPs, curves, mixing, confusion, DE"
    );
    assert!(!html.contains("<script"), "no script");
    for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!html.contains(external), "report refers to {external}");
    }
    assert!(html.contains("mixing_mean"), "the evaluation table");

    // Refusals: a clear message, no file, the atlas unchanged.
    let empty = dir.path().join("empty.satlas");
    satlas_ok(&empty, &["init"]);
    let before = Snapshot::take(&path);
    let cases: [(&Path, Vec<String>, &str); 6] = [
        (
            &empty,
            vec!["plot".into(), "umap".into(), "--out".into(), at("x.svg")],
            "no finished finetune run with cell embeddings",
        ),
        (
            &path,
            vec![
                "plot".into(),
                "umap".into(),
                "--run".into(),
                "1".into(),
                "--out".into(),
                at("x.svg"),
            ],
            "model run 1 is not a finished finetune run with cell embeddings",
        ),
        (
            &path,
            vec![
                "plot".into(),
                "umap".into(),
                "--color".into(),
                "tissue".into(),
                "--out".into(),
                at("x.svg"),
            ],
            "unknown colour column \"tissue\": choose one of species, cell_type",
        ),
        (
            &path,
            vec![
                "plot".into(),
                "umap".into(),
                "--out".into(),
                at("missing/x.svg"),
            ],
            "does not exist; create it first",
        ),
        (
            &path,
            vec![
                "plot".into(),
                "training".into(),
                "--out".into(),
                at("x.jpg"),
            ],
            "give a file name ending in .svg or .png",
        ),
        (
            &path,
            vec!["report".into(), "--out".into(), at("missing/r.html")],
            "does not exist; create it first",
        ),
    ];
    let listing = || {
        let mut names: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    };
    let files = listing();
    for (atlas, args, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let output = satlas(atlas, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
        assert_eq!(listing(), files, "{args:?} wrote a file");
    }
    assert!(before.unchanged(), "a refused plot changed the atlas");
}

/// The SVG parses (usvg's XML and SVG parser) and has its declared size.
fn parse_svg(svg: &str) {
    let tree = resvg::usvg::Tree::from_str(svg, &resvg::usvg::Options::default())
        .unwrap_or_else(|e| panic!("invalid SVG: {e}"));
    assert!(tree.size().width() > 100.0 && tree.size().height() > 100.0);
}

/// The fuzzy simplicial set and the kernel's (a, b) against umap-learn 0.5.12 on 12 points
/// (`scripts/reference/umap_fuzzy_reference.py` wrote the fixture:
/// `fuzzy_simplicial_set(x, 5, 0, "euclidean", knn_indices=..., knn_dists=...)` and
/// `find_ab_params(1.0, 0.1)`).
#[test]
fn fuzzy_set_matches_umap_learn() {
    let text = std::fs::read_to_string(crate::common::reference("umap_fuzzy.json")).unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let rows =
        |key: &str| -> Vec<Vec<f64>> { serde_json::from_value(fixture[key].clone()).unwrap() };
    let indices = rows("knn_indices");
    let distances = rows("knn_dists");
    let expected = rows("membership");
    let k = indices[0].len();
    let knn = umap::KnnGraph {
        k,
        indices: indices.iter().flatten().map(|&i| i as u32).collect(),
        distances: distances.iter().flatten().map(|&d| d as f32).collect(),
    };
    let graph = umap::fuzzy_simplicial_set(&knn);
    let n = expected.len();
    let mut dense = vec![vec![0f64; n]; n];
    for &(i, j, w) in &graph.edges {
        dense[i as usize][j as usize] = f64::from(w);
    }
    for i in 0..n {
        for j in 0..n {
            assert!(
                (dense[i][j] - expected[i][j]).abs() < 1e-5,
                "membership ({i}, {j}): {} vs umap-learn {}",
                dense[i][j],
                expected[i][j]
            );
        }
    }
    let (a, b) = umap::find_ab_params(1.0, 0.1);
    assert!((a - fixture["a"].as_f64().unwrap()).abs() < 1e-4, "a = {a}");
    assert!((b - fixture["b"].as_f64().unwrap()).abs() < 1e-4, "b = {b}");
}
