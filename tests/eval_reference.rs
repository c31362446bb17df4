//! satlas' evaluation classifier against scikit-learn: `LogisticRegression(C=0.005)` (multinomial,
//! lbfgs) fitted by `scripts/reference/eval_reference.py` on a fixed 300 × 16, 5-class dataset,
//! predicting 200 other points (`fixtures/reference/eval_*.npy`).
//!
//! Tolerances: at least 99 % of argmax predictions equal (observed: all), and every predicted
//! probability within 1e-5 of scikit-learn's (observed 2.7e-7; both fits stop at the optimum of
//! the same convex objective: sklearn at tol = 1e-10, satlas at max-gradient 1e-8 or when f64
//! gives no more progress, asserted here as max-gradient < 1e-6).

use satlas::eval::logreg::{fit, FitOptions};
use std::path::Path;

/// A float64 C-order `.npy` file: (shape, values).
fn read_f64(name: &str) -> (Vec<usize>, Vec<f64>) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/reference")
        .join(format!("eval_{name}.npy"));
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY", "{}", path.display());
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).unwrap();
    assert!(
        header.contains("'<f8'") && header.contains("'fortran_order': False"),
        "{header}"
    );
    let shape_text = header
        .split("'shape': (")
        .nth(1)
        .unwrap()
        .split(')')
        .next()
        .unwrap();
    let shape: Vec<usize> = shape_text
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().unwrap())
        .collect();
    let values: Vec<f64> = bytes[start + header_len..]
        .chunks_exact(8)
        .map(|c| f64::from_le_bytes(c.try_into().unwrap()))
        .collect();
    assert_eq!(values.len(), shape.iter().product::<usize>());
    (shape, values)
}

#[test]
fn logistic_regression_matches_scikit_learn() {
    let (shape, train_x) = read_f64("train_x");
    let dim = shape[1];
    let (_, train_y) = read_f64("train_y");
    let (_, test_x) = read_f64("test_x");
    let (proba_shape, proba) = read_f64("proba");
    let (_, pred) = read_f64("pred");
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
