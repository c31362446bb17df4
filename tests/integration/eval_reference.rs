//! satlas' evaluation against its references. The classifier against scikit-learn:
//! `LogisticRegression(C=0.005)` (multinomial, lbfgs) fitted by `scripts/reference/eval_reference.py` on a fixed 300 × 16, 5-class dataset,
//! predicting 200 other points (`fixtures/reference/eval_*.npy`).
//!
//! Tolerances: at least 99 % of argmax predictions equal (observed: all), and every predicted
//! probability within 1e-5 of scikit-learn's (observed 2.7e-7; both fits stop at the optimum of
//! the same convex objective: sklearn at tol = 1e-10, satlas at max-gradient 1e-8 or when f64
//! gives no more progress, asserted here as max-gradient < 1e-6).

use satlas::eval::baseline::{ortholog_features, OrthologBaseline};
use satlas::eval::logreg::{fit, FitOptions};

/// A float64 reference array `fixtures/reference/NAME.npy`: (shape, values).
fn read_f64(name: &str) -> (Vec<usize>, Vec<f64>) {
    crate::common::read_npy_f64(&crate::common::reference(&format!("{name}.npy")))
}

#[test]
fn logistic_regression_matches_scikit_learn() {
    let (shape, train_x) = read_f64("eval_train_x");
    let dim = shape[1];
    let (_, train_y) = read_f64("eval_train_y");
    let (_, test_x) = read_f64("eval_test_x");
    let (proba_shape, proba) = read_f64("eval_proba");
    let (_, pred) = read_f64("eval_pred");
    let labels: Vec<String> = train_y
        .iter()
        .map(|y| format!("c{}", *y as usize))
        .collect();
    let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
    let model = fit(&train_x, dim, &labels, &FitOptions::default());
    assert!(
        model.gradient_norm < 1e-6,
        "did not converge: {}",
        model.gradient_norm
    );
    assert_eq!(model.classes.len(), proba_shape[1]);

    let ours = model.predict(&test_x);
    let same = ours
        .iter()
        .zip(&pred)
        .filter(|(o, p)| **o == format!("c{}", **p as usize))
        .count();
    assert!(
        same as f64 >= 0.99 * pred.len() as f64,
        "{same} of {} predictions agree",
        pred.len()
    );
    let ours = model.predict_proba(&test_x);
    let worst = ours
        .iter()
        .zip(&proba)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0, f64::max);
    assert!(worst < 1e-5, "largest probability difference {worst:e}");
    eprintln!(
        "{same}/{} argmax agree, max |p - p_sklearn| = {worst:.2e}, {} L-BFGS iterations",
        pred.len(),
        model.iterations
    );
}

/// The 1:1-ortholog baseline's PCA against scanpy (`scripts/reference/baseline_reference.py`):
/// both Baron fixtures, the shared orthologs of `reference/baseline_orthologs.csv`, normalize_total
/// 1e4 + log1p + 50 PCs. Scores are compared per component after the same sign normalisation
/// (largest-magnitude score positive), relative to the component's largest score: the f32 storage
/// of the features alone costs 6e-8; the smallest relative gap between consecutive variances is
/// 1.5e-3, so every component is well defined.
#[test]
fn ortholog_baseline_pca_matches_scanpy() {
    let atlas = crate::common::atlas_with_embeddings();
    let table = crate::common::reference("baseline_orthologs.csv");
    let params = OrthologBaseline { table, pcs: 50 };
    let features = ortholog_features(atlas.connection(), "human", "mouse", &params).unwrap();

    let (shape, expected) = read_f64("baseline_pca");
    let (_, expected_variance) = read_f64("baseline_variance");
    let pairs = std::fs::read_to_string(&params.table)
        .unwrap()
        .lines()
        .count()
        - 1;
    assert_eq!(features.shared_genes, pairs);
    assert_eq!(
        (features.a.cell_ids.len(), features.b.cell_ids.len()),
        (215, 205)
    );
    assert_eq!(shape, vec![420, 50]);
    for (k, (got, want)) in features
        .explained_variance
        .iter()
        .zip(&expected_variance)
        .enumerate()
    {
        assert!(
            (got - want).abs() <= 1e-8 * want,
            "variance of PC {k}: {got} vs {want}"
        );
    }
    let got: Vec<f64> = features
        .a
        .values
        .iter()
        .chain(&features.b.values)
        .map(|&v| f64::from(v))
        .collect();
    let mut worst: f64 = 0.0;
    for k in 0..50 {
        let scale = (0..420).fold(0.0f64, |s, i| s.max(expected[i * 50 + k].abs()));
        let diff = (0..420).fold(0.0f64, |s, i| {
            s.max((got[i * 50 + k] - expected[i * 50 + k]).abs())
        });
        worst = worst.max(diff / scale);
    }
    println!("largest score difference relative to its component's largest score: {worst:.2e}");
    assert!(
        worst < 1e-5,
        "scores differ from scanpy by {worst:.2e} (relative)"
    );
}
