//! Seurat v3 highly variable genes on raw counts (SATURN.md section 2).
//!
//! Reproduces scanpy's `sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=N)`
//! for a single batch (scanpy `_highly_variable_genes_seurat_v3`):
//!
//! 1. per gene, mean and unbiased variance of the raw counts;
//! 2. for genes with variance > 0, a loess fit (degree 2, span 0.3) of log10 variance on log10
//!    mean — skmisc's `loess(x, y, span=0.3, degree=2)`, whose default `surface="interpolate"`
//!    fits at the vertices of a k-d tree and blends with cubic Hermite polynomials ([`loess`]);
//! 3. the fitted standard deviation `sd = sqrt(10^fit)` (1 for constant genes); counts clipped at
//!    `mean + sqrt(n_cells) * sd`;
//! 4. the normalised variance `(N mean^2 + sum x^2 - 2 mean sum x) / ((N - 1) sd^2)` of the
//!    clipped counts; the `N` genes with the largest normalised variance are selected (ties: the
//!    lower gene index first; numpy's unstable argsort leaves them unspecified).
//!
//! The selection is returned in the original gene order.

use super::error::{invalid, MacrogeneError, Result};
use crate::csr::CsrView;

/// Parameters of [`highly_variable_genes`].
#[derive(Debug, Clone, PartialEq)]
pub struct HvgParams {
    /// How many genes to select (SATURN default 8000).
    pub n_top_genes: usize,
    /// Loess span (scanpy default 0.3).
    pub span: f64,
}

impl Default for HvgParams {
    fn default() -> Self {
        Self {
            n_top_genes: 8000,
            span: 0.3,
        }
    }
}

impl HvgParams {
    /// Validates the parameters against a matrix of `n_cells` x `n_genes`.
    pub fn check(&self, n_cells: usize, n_genes: usize) -> Result<()> {
        if self.n_top_genes == 0 || self.n_top_genes > n_genes {
            return Err(invalid(
                "n_top_genes",
                self.n_top_genes,
                format!("must be between 1 and the number of genes ({n_genes})"),
            ));
        }
        if !(self.span > 0.0 && self.span <= 1.0) {
            return Err(invalid("span", self.span, "must be in (0, 1]"));
        }
        if n_cells < 2 {
            return Err(invalid(
                "n_cells",
                n_cells,
                "the variance needs at least 2 cells",
            ));
        }
        Ok(())
    }
}

/// Per-gene statistics and the selection.
#[derive(Debug, Clone, PartialEq)]
pub struct HvgResult {
    /// Selected gene (column) indices, ascending (original gene order).
    pub selected: Vec<usize>,
    /// Mean count per gene.
    pub means: Vec<f64>,
    /// Unbiased variance per gene.
    pub variances: Vec<f64>,
    /// Normalised (clipped, trend-standardised) variance per gene: scanpy's `variances_norm`.
    pub variances_norm: Vec<f64>,
}

/// Selects the `params.n_top_genes` most variable genes of one species' raw counts.
pub fn highly_variable_genes(counts: &CsrView<'_>, params: &HvgParams) -> Result<HvgResult> {
    let (n_cells, n_genes) = (counts.n_rows(), counts.n_cols());
    params.check(n_cells, n_genes)?;
    let n = n_cells as f64;

    // 1. mean and unbiased variance (scanpy `_get_mean_var`, float64)
    let mut sum = vec![0f64; n_genes];
    let mut sum_sq = vec![0f64; n_genes];
    for i in 0..n_cells {
        let (idx, val) = counts.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            let v = f64::from(v);
            sum[j as usize] += v;
            sum_sq[j as usize] += v * v;
        }
    }
    let means: Vec<f64> = sum.iter().map(|s| s / n).collect();
    let variances: Vec<f64> = (0..n_genes)
        .map(|j| (sum_sq[j] / n - means[j] * means[j]) * (n / (n - 1.0)))
        .collect();

    // 2. loess of log10 variance on log10 mean over the non-constant genes
    let varying: Vec<usize> = (0..n_genes).filter(|&j| variances[j] > 0.0).collect();
    let x: Vec<f64> = varying.iter().map(|&j| means[j].log10()).collect();
    let y: Vec<f64> = varying.iter().map(|&j| variances[j].log10()).collect();
    let fitted = loess(&x, &y, params.span)?;
    let mut reg_std = vec![1f64; n_genes];
    for (&j, f) in varying.iter().zip(&fitted) {
        reg_std[j] = 10f64.powf(*f).sqrt();
    }

    // 3. clip at mean + sqrt(N) sd, 4. normalised variance of the clipped counts
    let clip: Vec<f64> = (0..n_genes)
        .map(|j| reg_std[j] * n.sqrt() + means[j])
        .collect();
    let mut csum = vec![0f64; n_genes];
    let mut csum_sq = vec![0f64; n_genes];
    for i in 0..n_cells {
        let (idx, val) = counts.row(i);
        for (&j, &v) in idx.iter().zip(val) {
            let j = j as usize;
            let v = f64::from(v).min(clip[j]);
            csum[j] += v;
            csum_sq[j] += v * v;
        }
    }
    let variances_norm: Vec<f64> = (0..n_genes)
        .map(|j| {
            let m = means[j];
            (n * m * m + csum_sq[j] - 2.0 * csum[j] * m) / ((n - 1.0) * reg_std[j] * reg_std[j])
        })
        .collect();

    let mut order: Vec<usize> = (0..n_genes).collect();
    order.sort_by(|&a, &b| {
        variances_norm[b]
            .total_cmp(&variances_norm[a])
            .then(a.cmp(&b))
    });
    let mut selected = order[..params.n_top_genes].to_vec();
    selected.sort_unstable();
    Ok(HvgResult {
        selected,
        means,
        variances,
        variances_norm,
    })
}

/// One-dimensional loess (local quadratic, tricube weights, gaussian family) evaluated at the data
/// points, as skmisc / netlib dloess with `surface="interpolate"`, `cell=0.2`:
///
/// * bounding box `[min - mu, max + mu]`, `mu = 0.005 * max(range, 1e-10 * max|x| + 1e-30)` (ehg126);
/// * k-d tree over the sorted x: a cell of points `l..=u` is split while it holds more than
///   `fc = floor(n * span * cell)` points, at `m = (l + u) / 2` moved to the nearest position
///   where `x[m] != x[m + 1]` (searching m, m+1, m-1, m+2, ...); the cut is `x[m]` (ehg124);
/// * at every vertex a local quadratic fit on the `q = floor(n * span + 1e-5)` nearest points
///   with weights `(1 - (d / d_q)^3)^3` gives the value and the slope (ehg127);
/// * every point is evaluated by cubic Hermite interpolation between its cell's vertices (ehg128).
pub fn loess(x: &[f64], y: &[f64], span: f64) -> Result<Vec<f64>> {
    const CELL: f64 = 0.2;
    let n = x.len();
    if n != y.len() {
        return Err(MacrogeneError::Shape {
            what: format!("loess: {n} x values, {} y values", y.len()),
        });
    }
    let q = ((n as f64 * span + 1e-5).floor() as usize).min(n);
    if q < 4 {
        return Err(MacrogeneError::Loess {
            reason: format!(
                "only {n} genes with non-zero variance: span {span} leaves {q} points per local \
                 quadratic fit (need 4); use more cells or genes"
            ),
        });
    }
    if let Some(i) = x.iter().chain(y).position(|v| !v.is_finite()) {
        return Err(MacrogeneError::Loess {
            reason: format!("non-finite input at position {}", i % n),
        });
    }
    let mut sorted = x.to_vec();
    sorted.sort_by(f64::total_cmp);
    let (lo, hi) = (sorted[0], sorted[n - 1]);
    let mu = 0.005 * (hi - lo).max(1e-10 * lo.abs().max(hi.abs()) + 1e-30);
    let fc = (n as f64 * span * CELL).floor() as usize;

    // k-d tree in one dimension: the vertices are the box ends and the cuts.
    let mut vertices = vec![lo - mu, hi + mu];
    let mut cells = vec![(0usize, n - 1, lo - mu, hi + mu)]; // 0-based point range, vertex bounds
    while let Some((l, u, vlo, vhi)) = cells.pop() {
        if u - l < fc || vhi - vlo <= 0.0 {
            continue;
        }
        // 1-based m = floor((l + u) / 2) in the Fortran; here 0-based l, u.
        let m0 = (l + u + 2) / 2 - 1;
        let mut m = m0;
        let mut offset: isize = 0;
        loop {
            let c = m0 as isize + offset;
            if c < l as isize || c >= u as isize {
                break;
            }
            let c = c as usize;
            if sorted[c] == sorted[c + 1] {
                offset = -offset;
                if offset >= 0 {
                    offset += 1;
                }
            } else {
                m = c;
                break;
            }
        }
        let cut = sorted[m];
        if cut == vlo || cut == vhi {
            continue;
        }
        vertices.push(cut);
        cells.push((l, m, vlo, cut));
        cells.push((m + 1, u, cut, vhi));
    }
    vertices.sort_by(f64::total_cmp);
    vertices.dedup();

    let fits: Vec<(f64, f64)> = vertices
        .iter()
        .map(|&v| local_quadratic(x, y, v, q))
        .collect::<Result<_>>()?;

    Ok(x.iter()
        .map(|&z| {
            // the leaf cell [v_k, v_{k+1}] holding z (z <= cut goes left, as ehg128)
            let k = vertices
                .partition_point(|&v| v < z)
                .clamp(1, vertices.len() - 1)
                - 1;
            let (v0, v1) = (vertices[k], vertices[k + 1]);
            let ((g0, s0), (g1, s1)) = (fits[k], fits[k + 1]);
            let h = (z - v0) / (v1 - v0);
            let phi0 = (1.0 - h).powi(2) * (1.0 + 2.0 * h);
            let phi1 = h * h * (3.0 - 2.0 * h);
            let psi0 = h * (1.0 - h).powi(2);
            let psi1 = h * h * (h - 1.0);
            phi0 * g0 + phi1 * g1 + (psi0 * s0 + psi1 * s1) * (v1 - v0)
        })
        .collect())
}

/// Weighted least squares fit of `a + b (x - v) + c (x - v)^2` on the `q` nearest points of `v`
/// with tricube weights; returns the value `a` and the slope `b` at `v` (ehg127).
fn local_quadratic(x: &[f64], y: &[f64], v: f64, q: usize) -> Result<(f64, f64)> {
    let mut d2: Vec<f64> = x.iter().map(|&xi| (xi - v) * (xi - v)).collect();
    let rho = *d2.select_nth_unstable_by(q - 1, f64::total_cmp).1;
    if rho <= 0.0 {
        return Err(MacrogeneError::Loess {
            reason: format!(
                "zero-width neighbourhood at log10 mean {v}: too many tied means; use more cells"
            ),
        });
    }
    // normal equations of the 3 scaled columns [1, t, t^2], t = (x - v) / r
    let r = rho.sqrt();
    let mut ata = [[0f64; 3]; 3];
    let mut aty = [0f64; 3];
    for (&xi, &yi) in x.iter().zip(y) {
        let dd = (xi - v) * (xi - v);
        if dd >= rho {
            continue;
        }
        let w = (1.0 - (dd / rho).sqrt().powi(3)).powi(3);
        let t = (xi - v) / r;
        let row = [1.0, t, t * t];
        for a in 0..3 {
            aty[a] += w * row[a] * yi;
            for b in 0..3 {
                ata[a][b] += w * row[a] * row[b];
            }
        }
    }
    let coef = solve3(ata, aty).ok_or_else(|| MacrogeneError::Loess {
        reason: format!("singular local fit at log10 mean {v}; increase span"),
    })?;
    Ok((coef[0], coef[1] / r))
}

/// Solves a symmetric 3x3 system by Gaussian elimination with partial pivoting.
fn solve3(mut a: [[f64; 3]; 3], mut b: [f64; 3]) -> Option<[f64; 3]> {
    for col in 0..3 {
        let piv = (col..3).max_by(|&i, &j| a[i][col].abs().total_cmp(&a[j][col].abs()))?;
        if a[piv][col].abs() < 1e-300 {
            return None;
        }
        a.swap(col, piv);
        b.swap(col, piv);
        let (pivot, pivot_b) = (a[col], b[col]);
        for row in col + 1..3 {
            let f = a[row][col] / pivot[col];
            for (x, p) in a[row][col..].iter_mut().zip(&pivot[col..]) {
                *x -= f * p;
            }
            b[row] -= f * pivot_b;
        }
    }
    let mut out = [0f64; 3];
    for row in (0..3).rev() {
        let s: f64 = (row + 1..3).map(|k| a[row][k] * out[k]).sum();
        out[row] = (b[row] - s) / a[row][row];
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loess_reproduces_a_quadratic_exactly() {
        let x: Vec<f64> = (0..200).map(|i| f64::from(i) / 10.0).collect();
        let y: Vec<f64> = x.iter().map(|v| 1.0 + 2.0 * v - 0.3 * v * v).collect();
        let fit = loess(&x, &y, 0.3).unwrap();
        for (a, b) in fit.iter().zip(&y) {
            assert!((a - b).abs() < 1e-8, "{a} vs {b}");
        }
    }

    #[test]
    fn params_are_checked_before_compute() {
        let p = HvgParams {
            n_top_genes: 0,
            ..Default::default()
        };
        assert!(p.check(10, 10).is_err());
        let p = HvgParams {
            n_top_genes: 11,
            ..Default::default()
        };
        assert!(p.check(10, 10).is_err());
        let p = HvgParams {
            n_top_genes: 5,
            span: 0.0,
        };
        assert!(p.check(10, 10).is_err());
    }
}
