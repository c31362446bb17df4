//! Seeded k-means over gene embeddings (rows = genes): the centroids are the macrogenes
//! (SATURN.md section 3; the reference uses scikit-learn `KMeans(n_clusters, random_state=seed)`).
//!
//! Initialisation is scikit-learn's greedy k-means++ (`2 + ln k` candidate centres per step, the
//! one that lowers the potential most is kept); iterations are exact Lloyd steps. Distances use
//! `||x||^2 - 2 x.c + ||c||^2` as one libtorch matrix multiply per block of rows, which is what
//! makes 40k genes x 5120 dims x 2000 clusters feasible on a laptop (linfa-clustering's KMeans
//! computes distances row by row; see the timing test `tests/integration/kmeans_timing.rs`).
//!
//! An empty cluster is moved to the point farthest from its centroid, so the inertia never rises.

use super::error::{invalid, MacrogeneError, Result};
use ndarray::{Array2, ArrayView2};
use rand::{rngs::StdRng, Rng, SeedableRng};
use tch::{Device, Kind, Tensor};

/// Parameters of [`kmeans`].
#[derive(Debug, Clone, PartialEq)]
pub struct KMeansParams {
    /// Number of clusters (macrogenes; SATURN default 2000).
    pub n_clusters: usize,
    /// Maximum number of Lloyd iterations (scikit-learn default 300).
    pub max_iter: usize,
    /// Relative tolerance: stop when the summed squared centroid shift is at most
    /// `tol * mean per-dimension variance of the data` (scikit-learn's rule, default 1e-4).
    pub tol: f64,
    /// Seed of the k-means++ sampling.
    pub seed: u64,
}

impl Default for KMeansParams {
    fn default() -> Self {
        Self {
            n_clusters: 2000,
            max_iter: 300,
            tol: 1e-4,
            seed: 0,
        }
    }
}

impl KMeansParams {
    /// Validates the parameters for `n_points` points.
    pub fn check(&self, n_points: usize) -> Result<()> {
        if self.n_clusters == 0 || self.n_clusters > n_points {
            return Err(invalid(
                "n_macrogenes",
                self.n_clusters,
                format!("must be between 1 and the number of genes ({n_points})"),
            ));
        }
        if self.max_iter == 0 {
            return Err(invalid("max_iter", self.max_iter, "must be at least 1"));
        }
        if !(self.tol >= 0.0 && self.tol.is_finite()) {
            return Err(invalid("tol", self.tol, "must be a finite number >= 0"));
        }
        Ok(())
    }
}

/// The result of [`kmeans`].
#[derive(Debug, Clone)]
pub struct KMeansFit {
    /// Centroids, `n_clusters` x dims.
    pub centroids: Array2<f32>,
    /// Cluster of every point.
    pub labels: Vec<usize>,
    /// Inertia (sum of squared distances to the assigned centroid) after each assignment step.
    pub inertia: Vec<f64>,
    /// Lloyd iterations run.
    pub n_iter: usize,
}

/// Rows per block in the distance computation (bounds memory at block x k floats).
const BLOCK: i64 = 4096;

/// Runs seeded k-means++ and Lloyd iterations over the rows of `x` (points x dims).
pub fn kmeans(x: ArrayView2<'_, f32>, params: &KMeansParams) -> Result<KMeansFit> {
    let (n, d) = x.dim();
    params.check(n)?;
    if let Some((k, _)) = x.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        return Err(MacrogeneError::NonFinite {
            what: "gene embeddings",
            row: k / d,
            col: k % d,
        });
    }
    let torch = |context| move |source| MacrogeneError::Torch { context, source };
    let xs = to_tensor(x).map_err(torch("copying embeddings"))?;
    let x_sq = xs.square().sum_dim_intlist(1, false, Kind::Float);
    let mut rng = StdRng::seed_from_u64(params.seed);
    let mut centroids =
        init_plus_plus(&xs, &x_sq, params.n_clusters, &mut rng).map_err(torch("k-means++ init"))?;
    let tol = params.tol
        * xs.var_dim(0, false, false)
            .mean(Kind::Float)
            .double_value(&[]);

    let mut inertia = Vec::new();
    let mut labels = Tensor::zeros([n as i64], (Kind::Int64, Device::Cpu));
    let mut n_iter = 0;
    while n_iter < params.max_iter {
        n_iter += 1;
        let (new_labels, min_d) = assign(&xs, &x_sq, &centroids);
        inertia.push(min_d.sum(Kind::Double).double_value(&[]));
        let new_centroids =
            update(&xs, &new_labels, &min_d, &centroids).map_err(torch("Lloyd update"))?;
        let shift = (&new_centroids - &centroids)
            .square()
            .sum(Kind::Double)
            .double_value(&[]);
        let unchanged = n_iter > 1 && new_labels.equal(&labels);
        centroids = new_centroids;
        labels = new_labels;
        if unchanged || shift <= tol {
            break;
        }
    }
    // final assignment against the final centroids (as scikit-learn does)
    let (labels, min_d) = assign(&xs, &x_sq, &centroids);
    inertia.push(min_d.sum(Kind::Double).double_value(&[]));
    let labels: Vec<i64> = Vec::try_from(&labels).map_err(torch("reading labels"))?;
    let flat: Vec<f32> =
        Vec::try_from(&centroids.reshape([-1])).map_err(torch("reading centroids"))?;
    let centroids = Array2::from_shape_vec((params.n_clusters, d), flat).map_err(|e| {
        MacrogeneError::Shape {
            what: format!("centroids: {e}"),
        }
    })?;
    Ok(KMeansFit {
        centroids,
        labels: labels.into_iter().map(|l| l as usize).collect(),
        inertia,
        n_iter,
    })
}

/// An `ndarray` view as a CPU float tensor.
pub(crate) fn to_tensor(x: ArrayView2<'_, f32>) -> Result<Tensor, tch::TchError> {
    let (r, c) = x.dim();
    let flat: Vec<f32> = x.iter().copied().collect();
    Tensor::f_from_slice(&flat)?.f_reshape([r as i64, c as i64])
}

/// Squared Euclidean distances of the rows of `xs` to `centroids`, clamped at 0.
fn sq_dists(xs: &Tensor, x_sq: &Tensor, centroids: &Tensor) -> Tensor {
    let c_sq = centroids.square().sum_dim_intlist(1, false, Kind::Float);
    (x_sq.unsqueeze(1) - xs.matmul(&centroids.tr()) * 2.0 + c_sq.unsqueeze(0)).clamp_min(0.0)
}

/// Nearest centroid and its squared distance for every point, computed block by block.
fn assign(xs: &Tensor, x_sq: &Tensor, centroids: &Tensor) -> (Tensor, Tensor) {
    let n = xs.size()[0];
    let (mut labels, mut mins) = (Vec::new(), Vec::new());
    let mut start = 0;
    while start < n {
        let len = BLOCK.min(n - start);
        let d = sq_dists(
            &xs.narrow(0, start, len),
            &x_sq.narrow(0, start, len),
            centroids,
        );
        let (m, l) = d.min_dim(1, false);
        labels.push(l);
        mins.push(m);
        start += len;
    }
    (Tensor::cat(&labels, 0), Tensor::cat(&mins, 0))
}

/// Lloyd update: every centroid becomes the mean of its points; an empty cluster takes the point
/// farthest from its current centroid (one distinct point per empty cluster).
fn update(
    xs: &Tensor,
    labels: &Tensor,
    min_d: &Tensor,
    old: &Tensor,
) -> Result<Tensor, tch::TchError> {
    let (k, d) = (old.size()[0], xs.size()[1]);
    let sums = Tensor::zeros([k, d], (Kind::Float, Device::Cpu)).index_add(0, labels, xs);
    let counts = Tensor::zeros([k], (Kind::Float, Device::Cpu)).index_add(
        0,
        labels,
        &Tensor::ones([xs.size()[0]], (Kind::Float, Device::Cpu)),
    );
    let mut new = sums / counts.clamp_min(1.0).unsqueeze(1);
    let counts: Vec<f32> = Vec::try_from(&counts)?;
    let empty: Vec<i64> = counts
        .iter()
        .enumerate()
        .filter(|(_, &c)| c == 0.0)
        .map(|(i, _)| i as i64)
        .collect();
    if !empty.is_empty() {
        let far = min_d.argsort(0, true).narrow(0, 0, empty.len() as i64);
        let rows = xs.index_select(0, &far);
        let _ = new.index_copy_(0, &Tensor::from_slice(&empty), &rows);
    }
    Ok(new)
}

/// Greedy k-means++ (scikit-learn `_kmeans_plusplus`): the first centre uniformly, then
/// `2 + floor(ln k)` candidates sampled proportionally to the current squared distance; the one
/// giving the lowest potential is kept.
fn init_plus_plus(
    xs: &Tensor,
    x_sq: &Tensor,
    k: usize,
    rng: &mut StdRng,
) -> Result<Tensor, tch::TchError> {
    let n = xs.size()[0] as usize;
    let trials = 2 + (k as f64).ln().floor() as usize;
    let first = rng.random_range(0..n) as i64;
    let mut chosen = vec![first];
    let mut closest = sq_dists(xs, x_sq, &xs.narrow(0, first, 1)).squeeze_dim(1);
    for _ in 1..k {
        let weights: Vec<f64> = Vec::try_from(&closest.to_kind(Kind::Double))?;
        let cumulative: Vec<f64> = weights
            .iter()
            .scan(0.0, |acc, w| {
                *acc += w;
                Some(*acc)
            })
            .collect();
        let total = cumulative[n - 1];
        let candidates: Vec<i64> = (0..trials)
            .map(|_| {
                if total <= 0.0 {
                    return rng.random_range(0..n) as i64;
                }
                let target = rng.random::<f64>() * total;
                cumulative.partition_point(|&c| c <= target).min(n - 1) as i64
            })
            .collect();
        let cand = xs.index_select(0, &Tensor::from_slice(&candidates));
        let d = sq_dists(xs, x_sq, &cand); // n x trials
        let candidate_closest = d.minimum(&closest.unsqueeze(1));
        let pots = candidate_closest.sum_dim_intlist(0, false, Kind::Double);
        let best = pots.argmin(0, false).int64_value(&[]);
        chosen.push(candidates[best as usize]);
        closest = candidate_closest.select(1, best);
    }
    Ok(xs.index_select(0, &Tensor::from_slice(&chosen)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;

    fn blobs() -> Array2<f32> {
        let mut rng = StdRng::seed_from_u64(7);
        Array2::from_shape_fn((300, 8), |(i, _)| {
            (i % 3) as f32 * 10.0 + rng.random::<f32>()
        })
    }

    #[test]
    fn inertia_never_rises_and_seed_reproduces() {
        let x = blobs();
        let p = KMeansParams {
            n_clusters: 7,
            seed: 3,
            ..Default::default()
        };
        let a = kmeans(x.view(), &p).unwrap();
        for w in a.inertia.windows(2) {
            assert!(w[1] <= w[0] * (1.0 + 1e-6), "inertia rose: {:?}", a.inertia);
        }
        let b = kmeans(x.view(), &p).unwrap();
        assert_eq!(a.labels, b.labels);
        assert_eq!(a.centroids, b.centroids);
    }

    #[test]
    fn finds_three_blobs() {
        let x = blobs();
        let fit = kmeans(
            x.view(),
            &KMeansParams {
                n_clusters: 3,
                ..Default::default()
            },
        )
        .unwrap();
        for i in 0..300 {
            assert_eq!(fit.labels[i], fit.labels[i % 3]);
        }
    }

    #[test]
    fn checks_parameters_first() {
        let x = blobs();
        let p = KMeansParams {
            n_clusters: 301,
            ..Default::default()
        };
        assert!(matches!(
            kmeans(x.view(), &p),
            Err(MacrogeneError::InvalidParameter { .. })
        ));
    }
}
