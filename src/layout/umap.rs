//! UMAP (McInnes, Healy & Melville 2018, arXiv:1802.03426) on a precomputed kNN graph: the fuzzy
//! simplicial set and the seeded SGD layout, following umap-learn 0.5 (`umap/umap_.py`,
//! `umap/layouts.py`). Pure functions of their inputs; the kNN graph comes from the index stage.
//!
//! Differences from umap-learn, on purpose: the initial layout is the first two principal
//! components of the (unit-length) embeddings instead of a spectral layout of the graph, and the
//! SGD runs on one thread in a fixed edge order, so a seed gives the same layout bit for bit.

/// A kNN graph: for each of `n` points its `k` nearest other points, nearest first.
#[derive(Debug, Clone, PartialEq)]
pub struct KnnGraph {
    /// Neighbours per point.
    pub k: usize,
    /// `n × k` neighbour indices (row-major).
    pub indices: Vec<u32>,
    /// `n × k` distances, each row ascending.
    pub distances: Vec<f32>,
}

impl KnnGraph {
    /// Number of points.
    pub fn len(&self) -> usize {
        self.indices.len().checked_div(self.k).unwrap_or(0)
    }

    /// True for a graph without points.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }
}

/// The fuzzy simplicial set: a symmetric weighted graph as a list of edges `(i, j, w)` with
/// `i != j`, both directions present, sorted by `(i, j)`.
#[derive(Debug, Clone, PartialEq)]
pub struct FuzzyGraph {
    /// Number of vertices.
    pub n: usize,
    /// The edges.
    pub edges: Vec<(u32, u32, f32)>,
}

/// umap-learn's `SMOOTH_K_TOLERANCE` and `MIN_K_DIST_SCALE`.
const SMOOTH_K_TOLERANCE: f64 = 1e-5;
const MIN_K_DIST_SCALE: f64 = 1e-3;

/// Per point, `(sigma, rho)` of umap-learn's `smooth_knn_dist` (local_connectivity 1,
/// bandwidth 1) for rows of `k` distances to other points: `rho` is the distance to the nearest
/// neighbour with a positive distance and `sigma` solves
/// `Σ_j exp(-max(0, d_j - rho) / sigma) = log2(n_neighbors)` by bisection (64 steps).
/// umap-learn's `n_neighbors` counts the point itself, so its rows hold `n_neighbors - 1` others:
/// pass `k + 1` to match it.
pub fn smooth_knn_dist(distances: &[f32], k: usize, n_neighbors: usize) -> (Vec<f32>, Vec<f32>) {
    let n = distances.len().checked_div(k).unwrap_or(0);
    let target = (n_neighbors as f64).log2();
    let mean_all = if distances.is_empty() {
        0.0
    } else {
        distances.iter().map(|&d| f64::from(d)).sum::<f64>() / distances.len() as f64
    };
    let mut sigmas = vec![0f32; n];
    let mut rhos = vec![0f32; n];
    for i in 0..n {
        let row: Vec<f64> = distances[i * k..(i + 1) * k]
            .iter()
            .map(|&d| f64::from(d))
            .collect();
        let rho = row.iter().copied().find(|&d| d > 0.0).unwrap_or(0.0);
        let (mut lo, mut hi, mut mid) = (0.0f64, f64::INFINITY, 1.0f64);
        for _ in 0..64 {
            // umap-learn sums over neighbours 1..k (its rows include the point itself first).
            let psum: f64 = row
                .iter()
                .map(|&d| {
                    let d = d - rho;
                    if d > 0.0 {
                        (-d / mid).exp()
                    } else {
                        1.0
                    }
                })
                .sum();
            if (psum - target).abs() < SMOOTH_K_TOLERANCE {
                break;
            }
            if psum > target {
                hi = mid;
                mid = (lo + hi) / 2.0;
            } else {
                lo = mid;
                mid = if hi.is_infinite() {
                    mid * 2.0
                } else {
                    (lo + hi) / 2.0
                };
            }
        }
        let mean_row = row.iter().sum::<f64>() / k.max(1) as f64;
        let floor = if rho > 0.0 { mean_row } else { mean_all } * MIN_K_DIST_SCALE;
        sigmas[i] = mid.max(floor) as f32;
        rhos[i] = rho as f32;
    }
    (sigmas, rhos)
}

/// The membership strength of `i`'s neighbour at distance `d`: `exp(-max(0, d - rho) / sigma)`.
pub fn membership(d: f32, sigma: f32, rho: f32) -> f32 {
    if d - rho <= 0.0 || sigma <= 0.0 {
        1.0
    } else {
        (-(d - rho) / sigma).exp()
    }
}

/// umap-learn's `fuzzy_simplicial_set` on a kNN graph without self-loops: directed memberships
/// (see [`membership`]), then the fuzzy union `w_ij + w_ji - w_ij·w_ji`.
pub fn fuzzy_simplicial_set(knn: &KnnGraph) -> FuzzyGraph {
    let (n, k) = (knn.len(), knn.k);
    let (sigmas, rhos) = smooth_knn_dist(&knn.distances, k, k + 1);
    let mut directed: std::collections::BTreeMap<(u32, u32), f32> = Default::default();
    for i in 0..n {
        for slot in i * k..(i + 1) * k {
            let j = knn.indices[slot];
            if j as usize == i {
                continue;
            }
            let w = membership(knn.distances[slot], sigmas[i], rhos[i]);
            directed.insert((i as u32, j), w);
        }
    }
    let mut edges = Vec::with_capacity(directed.len() * 2);
    for (&(i, j), &w) in &directed {
        let back = directed.get(&(j, i)).copied();
        let union = match back {
            Some(b) => w + b - w * b,
            None => w,
        };
        edges.push((i, j, union));
        if back.is_none() {
            edges.push((j, i, union));
        }
    }
    edges.sort_by_key(|&(i, j, _)| (i, j));
    FuzzyGraph { n, edges }
}

/// `(a, b)` of the output kernel `1 / (1 + a·d^(2b))` fitted, as umap-learn's `find_ab_params`
/// does with scipy's `curve_fit`, to `1` for `d < min_dist` and `exp(-(d - min_dist) / spread)`
/// beyond, on 300 points of `[0, 3·spread]` (Gauss-Newton with step halving).
pub fn find_ab_params(spread: f64, min_dist: f64) -> (f64, f64) {
    let xs: Vec<f64> = (0..300).map(|i| 3.0 * spread * i as f64 / 299.0).collect();
    let ys: Vec<f64> = xs
        .iter()
        .map(|&x| {
            if x < min_dist {
                1.0
            } else {
                (-(x - min_dist) / spread).exp()
            }
        })
        .collect();
    let loss = |a: f64, b: f64| -> f64 {
        xs.iter()
            .zip(&ys)
            .map(|(&x, &y)| (1.0 / (1.0 + a * x.powf(2.0 * b)) - y).powi(2))
            .sum()
    };
    let (mut a, mut b) = (1.0f64, 1.0f64);
    let mut current = loss(a, b);
    for _ in 0..200 {
        // Normal equations of the residuals' Jacobian in (a, b).
        let (mut jtj, mut jtr) = ([0f64; 3], [0f64; 2]);
        for (&x, &y) in xs.iter().zip(&ys) {
            if x <= 0.0 {
                continue;
            }
            let p = x.powf(2.0 * b);
            let f = 1.0 / (1.0 + a * p);
            let da = -p * f * f;
            let db = -a * p * 2.0 * x.ln() * f * f;
            let r = f - y;
            jtj[0] += da * da;
            jtj[1] += da * db;
            jtj[2] += db * db;
            jtr[0] += da * r;
            jtr[1] += db * r;
        }
        let det = jtj[0] * jtj[2] - jtj[1] * jtj[1];
        if det.abs() < 1e-300 {
            break;
        }
        let step_a = (jtj[2] * jtr[0] - jtj[1] * jtr[1]) / det;
        let step_b = (jtj[0] * jtr[1] - jtj[1] * jtr[0]) / det;
        let mut t = 1.0;
        let mut improved = false;
        while t > 1e-6 {
            let (na, nb) = (a - t * step_a, b - t * step_b);
            if na > 0.0 && nb > 0.0 {
                let l = loss(na, nb);
                if l < current {
                    (a, b, current, improved) = (na, nb, l, true);
                    break;
                }
            }
            t /= 2.0;
        }
        if !improved {
            break;
        }
    }
    (a, b)
}

/// A small, fast, seedable generator (xorshift64*), as umap-learn's `tau_rand` serves its SGD.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator from `seed` (any value; mixed by splitmix64 so 0 is fine).
    pub fn new(seed: u64) -> Rng {
        let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        Rng((z ^ (z >> 31)) | 1)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: usize) -> usize {
        ((u128::from(self.next_u64()) * n as u128) >> 64) as usize
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The initial layout: the first two principal components of the rows of `x` (`n × dim`,
/// row-major; rows scaled to unit length first, as the layout is of cosine neighbourhoods), by
/// power iteration from a seeded start, scaled so the largest coordinate is 10 (umap-learn's
/// scaling of its spectral start), plus umap-learn's tiny seeded noise.
pub fn pca_init(x: &[f32], dim: usize, seed: u64) -> Vec<[f32; 2]> {
    let n = x.len().checked_div(dim).unwrap_or(0);
    let mut rows: Vec<f64> = Vec::with_capacity(n * dim);
    for r in x.chunks_exact(dim.max(1)) {
        let norm = r.iter().map(|&v| f64::from(v).powi(2)).sum::<f64>().sqrt();
        let norm = if norm > 0.0 { norm } else { 1.0 };
        rows.extend(r.iter().map(|&v| f64::from(v) / norm));
    }
    let mut mean = vec![0f64; dim];
    for r in rows.chunks_exact(dim.max(1)) {
        for (m, v) in mean.iter_mut().zip(r) {
            *m += v / n.max(1) as f64;
        }
    }
    for r in rows.chunks_exact_mut(dim.max(1)) {
        for (v, m) in r.iter_mut().zip(&mean) {
            *v -= m;
        }
    }
    let mut rng = Rng::new(seed);
    let mut components: Vec<Vec<f64>> = Vec::new();
    for _ in 0..2 {
        let mut v: Vec<f64> = (0..dim).map(|_| rng.unit() - 0.5).collect();
        for _ in 0..100 {
            // w = Xᵀ X v, with earlier components projected out.
            let mut w = vec![0f64; dim];
            for r in rows.chunks_exact(dim.max(1)) {
                let s: f64 = r.iter().zip(&v).map(|(a, b)| a * b).sum();
                for (wi, ri) in w.iter_mut().zip(r) {
                    *wi += s * ri;
                }
            }
            for c in &components {
                let s: f64 = w.iter().zip(c).map(|(a, b)| a * b).sum();
                for (wi, ci) in w.iter_mut().zip(c) {
                    *wi -= s * ci;
                }
            }
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt();
            if norm == 0.0 {
                break;
            }
            v = w.into_iter().map(|a| a / norm).collect();
        }
        components.push(v);
    }
    let mut out: Vec<[f64; 2]> = rows
        .chunks_exact(dim.max(1))
        .map(|r| {
            let p = |c: &Vec<f64>| r.iter().zip(c).map(|(a, b)| a * b).sum::<f64>();
            [p(&components[0]), p(&components[1])]
        })
        .collect();
    let max = out
        .iter()
        .flat_map(|p| p.iter().map(|v| v.abs()))
        .fold(0f64, f64::max);
    let expansion = if max > 0.0 { 10.0 / max } else { 1.0 };
    out.iter_mut()
        .map(|p| {
            let noise = |rng: &mut Rng| (rng.unit() - 0.5) * 2e-4;
            [
                (p[0] * expansion + noise(&mut rng)) as f32,
                (p[1] * expansion + noise(&mut rng)) as f32,
            ]
        })
        .collect()
}

/// The SGD layout's settings (umap-learn's defaults for the rest: learning rate 1, 5 negative
/// samples per positive, repulsion strength 1).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SgdSettings {
    /// Epochs.
    pub n_epochs: usize,
    /// Kernel `a`.
    pub a: f64,
    /// Kernel `b`.
    pub b: f64,
    /// Seed of the negative sampling.
    pub seed: u64,
}

const NEGATIVE_SAMPLE_RATE: f64 = 5.0;
const GAMMA: f64 = 1.0;
const CLIP: f64 = 4.0;

fn clip(v: f64) -> f64 {
    v.clamp(-CLIP, CLIP)
}

/// umap-learn's `optimize_layout_euclidean` (`move_other=True`): edges are sampled in
/// proportion to their weight (`epochs_per_sample = max_w / w`; edges below `max_w / n_epochs`
/// dropped), each sample pulls both ends together and pushes the head away from
/// [`NEGATIVE_SAMPLE_RATE`] random vertices, with a learning rate falling linearly to 0. The
/// start is rescaled to `[0, 10]` per axis first, as umap-learn's `simplicial_set_embedding`
/// does.
pub fn optimize_layout(
    graph: &FuzzyGraph,
    init: Vec<[f32; 2]>,
    settings: &SgdSettings,
) -> Vec<[f32; 2]> {
    let mut y = rescale(init);
    let n = y.len();
    let max_w = graph.edges.iter().map(|e| e.2).fold(0f32, f32::max);
    if n < 2 || max_w <= 0.0 || settings.n_epochs == 0 {
        return y;
    }
    let n_epochs = settings.n_epochs as f64;
    let edges: Vec<(usize, usize, f64)> = graph
        .edges
        .iter()
        .filter(|e| f64::from(e.2) >= f64::from(max_w) / n_epochs)
        .map(|&(i, j, w)| (i as usize, j as usize, f64::from(max_w) / f64::from(w)))
        .collect();
    let (a, b) = (settings.a, settings.b);
    let mut next_sample: Vec<f64> = edges.iter().map(|e| e.2).collect();
    let per_negative: Vec<f64> = edges.iter().map(|e| e.2 / NEGATIVE_SAMPLE_RATE).collect();
    let mut next_negative = per_negative.clone();
    let mut rng = Rng::new(settings.seed);
    for epoch in 0..settings.n_epochs {
        let alpha = 1.0 - epoch as f64 / n_epochs;
        let now = epoch as f64;
        for (e, &(i, j, per_sample)) in edges.iter().enumerate() {
            if next_sample[e] > now {
                continue;
            }
            let (dx, dy) = (f64::from(y[i][0] - y[j][0]), f64::from(y[i][1] - y[j][1]));
            let d2 = dx * dx + dy * dy;
            if d2 > 0.0 {
                let coeff = -2.0 * a * b * d2.powf(b - 1.0) / (a * d2.powf(b) + 1.0);
                let (gx, gy) = (clip(coeff * dx) * alpha, clip(coeff * dy) * alpha);
                y[i][0] += gx as f32;
                y[i][1] += gy as f32;
                y[j][0] -= gx as f32;
                y[j][1] -= gy as f32;
            }
            next_sample[e] += per_sample;
            let negatives = ((now - next_negative[e]) / per_negative[e]).max(0.0) as usize;
            for _ in 0..negatives {
                let k = rng.below(n);
                if k == i {
                    continue;
                }
                let (dx, dy) = (f64::from(y[i][0] - y[k][0]), f64::from(y[i][1] - y[k][1]));
                let d2 = dx * dx + dy * dy;
                let (gx, gy) = if d2 > 0.0 {
                    let coeff = 2.0 * GAMMA * b / ((0.001 + d2) * (a * d2.powf(b) + 1.0));
                    (clip(coeff * dx), clip(coeff * dy))
                } else {
                    (CLIP, CLIP)
                };
                y[i][0] += (gx * alpha) as f32;
                y[i][1] += (gy * alpha) as f32;
            }
            next_negative[e] += negatives as f64 * per_negative[e];
        }
    }
    y
}

/// Each axis mapped to `[0, 10]`.
fn rescale(mut y: Vec<[f32; 2]>) -> Vec<[f32; 2]> {
    for axis in 0..2 {
        let (lo, hi) = y
            .iter()
            .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), p| {
                (lo.min(p[axis]), hi.max(p[axis]))
            });
        let span = if hi > lo { hi - lo } else { 1.0 };
        for p in &mut y {
            p[axis] = 10.0 * (p[axis] - lo) / span;
        }
    }
    y
}

/// Trustworthiness (Venna & Kaski 2001; scikit-learn's `sklearn.manifold.trustworthiness`) of a
/// layout at `k`: `1 - 2/(n·k·(2n - 3k - 1)) · Σ_i Σ_{j ∈ U_i} (r(i, j) - k)`, where `U_i` are
/// the `k` nearest neighbours of `i` in the layout that are not among its `k` nearest in the
/// original space and `r(i, j)` is `j`'s rank among `i`'s neighbours in the original space.
/// `original_rank(i)` gives all other points ordered by original distance, nearest first.
pub fn trustworthiness(
    layout: &[[f32; 2]],
    k: usize,
    original_rank: impl Fn(usize) -> Vec<usize> + Sync,
) -> f64 {
    use rayon::prelude::*;
    let n = layout.len();
    if n < 3 || k == 0 || 2 * n < 3 * k + 1 {
        return 1.0;
    }
    let penalty: f64 = (0..n)
        .into_par_iter()
        .map(|i| {
            let order = original_rank(i);
            let mut rank = vec![0usize; n];
            for (r, &j) in order.iter().enumerate() {
                rank[j] = r + 1;
            }
            let mut near: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let (dx, dy) = (layout[i][0] - layout[j][0], layout[i][1] - layout[j][1]);
                    (dx * dx + dy * dy, j)
                })
                .collect();
            let kk = k.min(near.len());
            near.select_nth_unstable_by(kk - 1, |a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
            near[..kk]
                .iter()
                .map(|&(_, j)| rank[j].saturating_sub(k) as f64)
                .sum::<f64>()
        })
        .sum();
    let (n, k) = (n as f64, k as f64);
    1.0 - penalty * 2.0 / (n * k * (2.0 * n - 3.0 * k - 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// umap-learn 0.5: `find_ab_params(1.0, 0.1)` = (1.5769434603113077, 0.8950608781227859).
    #[test]
    fn ab_params_match_umap_learn() {
        let (a, b) = find_ab_params(1.0, 0.1);
        assert!((a - 1.576_943).abs() < 5e-3, "a = {a}");
        assert!((b - 0.895_061).abs() < 2e-3, "b = {b}");
    }

    /// Hand-computed: one point with neighbours at 1, 2, 3 and n_neighbors 4 (target
    /// log2 4 = 2): rho = 1 and sigma solves 1 + x + x² = 2 with x = exp(-1/sigma), so x is the
    /// golden ratio's inverse (√5 - 1)/2 = 0.618 and sigma = -1 / ln x = 2.078.
    #[test]
    fn smooth_knn_dist_by_hand() {
        let (sigmas, rhos) = smooth_knn_dist(&[1.0, 2.0, 3.0], 3, 4);
        assert_eq!(rhos, vec![1.0]);
        let x = (5f64.sqrt() - 1.0) / 2.0;
        let expected = -1.0 / x.ln();
        assert!(
            (f64::from(sigmas[0]) - expected).abs() < 1e-4,
            "{sigmas:?} vs {expected}"
        );
    }

    /// The fuzzy union of a two-way edge with memberships 1 and 0.5 is 1; a one-way edge keeps
    /// its weight in both directions.
    #[test]
    fn fuzzy_union_is_symmetric() {
        // Three points on a line at 0, 1, 3; k = 1: 0 -> 1, 1 -> 0, 2 -> 1.
        let knn = KnnGraph {
            k: 1,
            indices: vec![1, 0, 1],
            distances: vec![1.0, 1.0, 2.0],
        };
        let g = fuzzy_simplicial_set(&knn);
        // With k = 1, each nearest neighbour is at rho: membership 1 everywhere.
        assert_eq!(
            g.edges,
            vec![(0, 1, 1.0), (1, 0, 1.0), (1, 2, 1.0), (2, 1, 1.0)]
        );
        assert_eq!(g.n, 3);
    }

    #[test]
    fn layout_is_seeded_and_separates_clusters() {
        // Two clusters of 30 points in 4-d; kNN graph within each cluster only.
        let n = 60;
        let mut x = Vec::new();
        let mut rng = Rng::new(7);
        for i in 0..n {
            let c = if i < 30 { 1.0 } else { -1.0 };
            for d in 0..4 {
                x.push(if d == 0 { c } else { 0.0 } + (rng.unit() as f32 - 0.5) * 0.2);
            }
        }
        let k = 5;
        let mut indices = Vec::new();
        let mut distances = Vec::new();
        for i in 0..n {
            let mut others: Vec<(f32, usize)> = (0..n)
                .filter(|&j| j != i)
                .map(|j| {
                    let d: f32 = (0..4).map(|d| (x[i * 4 + d] - x[j * 4 + d]).powi(2)).sum();
                    (d.sqrt(), j)
                })
                .collect();
            others.sort_by(|a, b| a.0.total_cmp(&b.0));
            for &(d, j) in &others[..k] {
                indices.push(j as u32);
                distances.push(d);
            }
        }
        let graph = fuzzy_simplicial_set(&KnnGraph {
            k,
            indices,
            distances,
        });
        let (a, b) = find_ab_params(1.0, 0.1);
        let settings = SgdSettings {
            n_epochs: 200,
            a,
            b,
            seed: 3,
        };
        let one = optimize_layout(&graph, pca_init(&x, 4, 3), &settings);
        let two = optimize_layout(&graph, pca_init(&x, 4, 3), &settings);
        assert_eq!(one, two);
        let centre = |r: std::ops::Range<usize>| {
            let m = r.len() as f32;
            r.fold([0f32; 2], |acc, i| {
                [acc[0] + one[i][0] / m, acc[1] + one[i][1] / m]
            })
        };
        let (c0, c1) = (centre(0..30), centre(30..60));
        let between = ((c0[0] - c1[0]).powi(2) + (c0[1] - c1[1]).powi(2)).sqrt();
        let spread = (0..30)
            .map(|i| ((one[i][0] - c0[0]).powi(2) + (one[i][1] - c0[1]).powi(2)).sqrt())
            .fold(0f32, f32::max);
        assert!(between > 2.0 * spread, "between {between}, spread {spread}");
    }

    #[test]
    fn trustworthiness_of_identity_is_one() {
        let layout: Vec<[f32; 2]> = (0..20).map(|i| [i as f32, 0.0]).collect();
        let rank = |i: usize| {
            let mut o: Vec<usize> = (0..20).filter(|&j| j != i).collect();
            o.sort_by_key(|&j| ((j as i64 - i as i64).abs(), j));
            o
        };
        assert!((trustworthiness(&layout, 3, rank) - 1.0).abs() < 1e-12);
        // A reversed original order is as untrustworthy as it gets.
        let reversed = |i: usize| {
            let mut o = rank(i);
            o.reverse();
            o
        };
        assert!(trustworthiness(&layout, 3, reversed) < 0.5);
    }
}
