//! Multinomial logistic regression with an L2 penalty, fitted by L-BFGS: the classifier of
//! SATURN's label-transfer evaluation, with scikit-learn's
//! `LogisticRegression(C, multi_class="multinomial", solver="lbfgs")` semantics.
//!
//! For samples `x_i` with labels `y_i` among `K` classes, weights `W` (`K × d`) and intercepts
//! `b` (`K`, not penalised):
//!
//! ```text
//! z_i  = W x_i + b
//! f    = Σ_i [ logsumexp(z_i) - z_i[y_i] ]  +  1/(2C) · ||W||²
//! ∇_W  = Σ_i (softmax(z_i) - onehot(y_i)) x_iᵀ  +  W / C
//! ∇_b  = Σ_i (softmax(z_i) - onehot(y_i))
//! ```
//!
//! The objective is minimised as `f / n` (scikit-learn scales it the same way; the minimiser is
//! the same) in `f64` by L-BFGS (memory 10, backtracking Armijo line search) until the largest
//! gradient component of `f / n` is below [`FitOptions::gtol`] (default 1e-8, far tighter than
//! scikit-learn's default `tol = 1e-4`, so the result is the optimum itself, not an early stop),
//! or an iteration lowers `f / n` by less than [`FitOptions::ftol`] relative (default
//! `64 · f64::EPSILON`, scikit-learn's `ftol`: no more progress is possible in `f64`).
//! Classes are the sorted distinct labels (as scikit-learn's `classes_`); argmax ties go to the
//! first class.

use rayon::prelude::*;

/// How the fit stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FitOptions {
    /// Inverse regularisation strength `C` (> 0).
    pub c: f64,
    /// Stop when `max |∇(f/n)|` is below this.
    pub gtol: f64,
    /// Stop when an iteration lowers `f/n` by less than this, relative to `max(|f/n|, 1)`.
    pub ftol: f64,
    /// Give up after this many L-BFGS iterations (the fit is then returned as it is).
    pub max_iter: usize,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions {
            c: 0.005,
            gtol: 1e-8,
            ftol: 64.0 * f64::EPSILON,
            max_iter: 10_000,
        }
    }
}

/// A fitted model.
#[derive(Debug, Clone, PartialEq)]
pub struct LogisticRegression {
    /// The class labels, sorted; class `j` is row `j` of `weights`.
    pub classes: Vec<String>,
    /// `K × d`, row-major.
    pub weights: Vec<f64>,
    /// `K` intercepts.
    pub intercepts: Vec<f64>,
    /// Feature dimension `d`.
    pub dim: usize,
    /// L-BFGS iterations used.
    pub iterations: usize,
    /// Final `max |∇(f/n)|`.
    pub gradient_norm: f64,
}

/// Fits the model on `n` samples (`x`, row-major `n × dim`) with string labels.
///
/// Panics if `x.len() != labels.len() * dim` (callers build both from one table).
pub fn fit(x: &[f64], dim: usize, labels: &[&str], options: &FitOptions) -> LogisticRegression {
    assert_eq!(x.len(), labels.len() * dim, "x must be n × dim");
    let mut classes: Vec<String> = labels.iter().map(|s| s.to_string()).collect();
    classes.sort();
    classes.dedup();
    let y: Vec<usize> = labels
        .iter()
        .map(|l| classes.binary_search_by(|c| c.as_str().cmp(l)).unwrap())
        .collect();
    let k = classes.len();
    let problem = Problem {
        x,
        y: &y,
        dim,
        k,
        c: options.c,
    };
    let mut theta = vec![0.0; k * dim + k];
    let (iterations, gradient_norm) = lbfgs(&problem, &mut theta, options);
    let intercepts = theta.split_off(k * dim);
    LogisticRegression {
        classes,
        weights: theta,
        intercepts,
        dim,
        iterations,
        gradient_norm,
    }
}

impl LogisticRegression {
    /// Class probabilities of one sample (softmax of its scores).
    pub fn predict_proba_row(&self, x: &[f64]) -> Vec<f64> {
        let mut z: Vec<f64> = (0..self.classes.len())
            .map(|j| {
                let w = &self.weights[j * self.dim..(j + 1) * self.dim];
                self.intercepts[j] + dot(w, x)
            })
            .collect();
        softmax_in_place(&mut z);
        z
    }

    /// Class probabilities of every row of `x` (row-major, `n × dim`), row-major `n × K`.
    pub fn predict_proba(&self, x: &[f64]) -> Vec<f64> {
        x.par_chunks(self.dim)
            .flat_map_iter(|row| self.predict_proba_row(row))
            .collect()
    }

    /// The most probable class of every row of `x`.
    pub fn predict(&self, x: &[f64]) -> Vec<&str> {
        x.par_chunks(self.dim)
            .map(|row| self.classes[argmax(&self.predict_proba_row(row))].as_str())
            .collect()
    }
}

/// The index of the largest value; ties go to the first.
pub fn argmax(values: &[f64]) -> usize {
    let mut best = 0;
    for (i, v) in values.iter().enumerate() {
        if *v > values[best] {
            best = i;
        }
    }
    best
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Softmax in place; returns `logsumexp` of the input.
fn softmax_in_place(z: &mut [f64]) -> f64 {
    let max = z.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
    let sum: f64 = z.iter().map(|v| (v - max).exp()).sum();
    let lse = max + sum.ln();
    for v in z.iter_mut() {
        *v = (*v - lse).exp();
    }
    lse
}

struct Problem<'a> {
    x: &'a [f64],
    y: &'a [usize],
    dim: usize,
    k: usize,
    c: f64,
}

impl Problem<'_> {
    /// `f / n` and its gradient at `theta` (`W` row-major, then `b`).
    fn value_and_gradient(&self, theta: &[f64]) -> (f64, Vec<f64>) {
        let (d, k) = (self.dim, self.k);
        let n = self.y.len();
        let (w, b) = theta.split_at(k * d);
        let zero = || (0.0, vec![0.0; k * d + k]);
        let (loss, mut grad) = self
            .x
            .par_chunks(d)
            .zip(self.y.par_iter())
            .fold(zero, |(mut loss, mut grad), (x, &y)| {
                let mut z: Vec<f64> = (0..k)
                    .map(|j| b[j] + dot(&w[j * d..(j + 1) * d], x))
                    .collect();
                let zy = z[y];
                loss += softmax_in_place(&mut z) - zy;
                z[y] -= 1.0;
                for (j, r) in z.iter().enumerate() {
                    let g = &mut grad[j * d..(j + 1) * d];
                    for (gi, xi) in g.iter_mut().zip(x) {
                        *gi += r * xi;
                    }
                    grad[k * d + j] += r;
                }
                (loss, grad)
            })
            .reduce(zero, |(l1, mut g1), (l2, g2)| {
                for (a, b) in g1.iter_mut().zip(&g2) {
                    *a += b;
                }
                (l1 + l2, g1)
            });
        let penalty = w.iter().map(|v| v * v).sum::<f64>() / (2.0 * self.c);
        for (g, wi) in grad.iter_mut().zip(w) {
            *g += wi / self.c;
        }
        let scale = 1.0 / n.max(1) as f64;
        for g in grad.iter_mut() {
            *g *= scale;
        }
        ((loss + penalty) * scale, grad)
    }
}

fn max_abs(v: &[f64]) -> f64 {
    v.iter().fold(0.0, |m, x| m.max(x.abs()))
}

/// L-BFGS from `theta`; returns (iterations, final max |gradient|).
fn lbfgs(problem: &Problem, theta: &mut [f64], options: &FitOptions) -> (usize, f64) {
    const MEMORY: usize = 10;
    let (mut f, mut g) = problem.value_and_gradient(theta);
    let mut history: std::collections::VecDeque<(Vec<f64>, Vec<f64>, f64)> =
        std::collections::VecDeque::new();
    for iteration in 0..options.max_iter {
        let gnorm = max_abs(&g);
        if gnorm < options.gtol {
            return (iteration, gnorm);
        }
        // Two-loop recursion: direction = -H g.
        let mut q = g.clone();
        let mut alphas = Vec::with_capacity(history.len());
        for (s, y, rho) in history.iter().rev() {
            let a = rho * dot(s, &q);
            for (qi, yi) in q.iter_mut().zip(y) {
                *qi -= a * yi;
            }
            alphas.push(a);
        }
        let gamma = match history.back() {
            Some((s, y, _)) => dot(s, y) / dot(y, y),
            None => 1.0 / g.iter().map(|v| v * v).sum::<f64>().sqrt().max(1e-300),
        };
        for qi in q.iter_mut() {
            *qi *= gamma;
        }
        for ((s, y, rho), a) in history.iter().zip(alphas.iter().rev()) {
            let beta = rho * dot(y, &q);
            for (qi, si) in q.iter_mut().zip(s) {
                *qi += (a - beta) * si;
            }
        }
        let mut direction: Vec<f64> = q.iter().map(|v| -v).collect();
        let mut slope = dot(&g, &direction);
        if slope >= 0.0 {
            // Not a descent direction (numerical trouble): restart from steepest descent.
            history.clear();
            direction = g.iter().map(|v| -v).collect();
            slope = dot(&g, &direction);
        }
        // Backtracking Armijo line search.
        let mut step = 1.0;
        let mut accepted = None;
        for _ in 0..60 {
            let candidate: Vec<f64> = theta
                .iter()
                .zip(&direction)
                .map(|(t, d)| t + step * d)
                .collect();
            let (fc, gc) = problem.value_and_gradient(&candidate);
            if fc <= f + 1e-4 * step * slope {
                accepted = Some((candidate, fc, gc));
                break;
            }
            step *= 0.5;
        }
        let Some((candidate, fc, gc)) = accepted else {
            // No decrease possible at f64 precision: this is the optimum as far as we can tell.
            return (iteration, gnorm);
        };
        let s: Vec<f64> = candidate
            .iter()
            .zip(theta.iter())
            .map(|(a, b)| a - b)
            .collect();
        let y: Vec<f64> = gc.iter().zip(&g).map(|(a, b)| a - b).collect();
        let sy = dot(&s, &y);
        if sy > 1e-16 {
            if history.len() == MEMORY {
                history.pop_front();
            }
            history.push_back((s, y, 1.0 / sy));
        }
        theta.copy_from_slice(&candidate);
        let decrease = f - fc;
        f = fc;
        g = gc;
        if decrease <= options.ftol * f.abs().max(1.0) {
            return (iteration + 1, max_abs(&g));
        }
    }
    (options.max_iter, max_abs(&g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blobs() -> (Vec<f64>, Vec<&'static str>) {
        let mut x = Vec::new();
        let mut y = Vec::new();
        for i in 0..60 {
            let (label, cx, cy) = match i % 3 {
                0 => ("a", 1.0, 0.0),
                1 => ("b", -1.0, 0.5),
                _ => ("c", 0.0, -1.0),
            };
            let jitter = ((i * 37 % 11) as f64 - 5.0) / 10.0;
            x.extend([cx + jitter, cy - jitter * 0.5, jitter]);
            y.push(label);
        }
        (x, y)
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (x, labels) = blobs();
        let y: Vec<usize> = labels
            .iter()
            .map(|l| (l.as_bytes()[0] - b'a') as usize)
            .collect();
        let problem = Problem {
            x: &x,
            y: &y,
            dim: 3,
            k: 3,
            c: 0.7,
        };
        let theta: Vec<f64> = (0..12).map(|i| (i as f64 * 0.37).sin()).collect();
        let (_, g) = problem.value_and_gradient(&theta);
        for i in 0..theta.len() {
            let h = 1e-6;
            let mut plus = theta.clone();
            plus[i] += h;
            let mut minus = theta.clone();
            minus[i] -= h;
            let numeric = (problem.value_and_gradient(&plus).0
                - problem.value_and_gradient(&minus).0)
                / (2.0 * h);
            assert!(
                (numeric - g[i]).abs() < 1e-7,
                "component {i}: {numeric} vs {}",
                g[i]
            );
        }
    }

    #[test]
    fn converges_and_separates_blobs() {
        let (x, labels) = blobs();
        let model = fit(
            &x,
            3,
            &labels,
            &FitOptions {
                c: 10.0,
                ..FitOptions::default()
            },
        );
        assert!(model.gradient_norm < 1e-8, "{model:?}");
        assert_eq!(model.classes, vec!["a", "b", "c"]);
        let predicted = model.predict(&x);
        let correct = predicted
            .iter()
            .zip(&labels)
            .filter(|(p, l)| p == l)
            .count();
        assert!(correct >= 55, "{correct} of 60");
        let p = model.predict_proba(&x);
        assert!((p[0..3].iter().sum::<f64>() - 1.0).abs() < 1e-12);
    }
}
