//! Zero-inflated negative binomial log-likelihood (SATURN.md section 5), as scvi-tools'
//! `log_zinb_positive` (`ZeroInflatedNegativeBinomial.log_prob`), which SATURN's reference uses.
//!
//! Two forms of the same function: [`zinb_log_likelihood`] / [`zinb_nll`] as tensor operations
//! (the formula, for checks and small inputs), and [`zinb_nll_fused`], which training uses: one
//! pass over the batch's sparse counts computes the decoder's softmax, the means, the loss and its
//! analytic gradient with respect to the decoder's logits, `theta` and `pi`, instead of some fifty
//! tensor operations and their autograd graph. Counts are mostly zero, and a zero needs neither
//! `lgamma` nor `digamma`.

use crate::csr::CsrView;
use crate::kernels::host::{cpu_f32, f32_data, f32_data_mut, with_gradients};
use crate::kernels::pool::map_parts;
use crate::kernels::simd::widest;
use crate::kernels::vmath;
use tch::{Device, Kind, Tensor};

/// The `eps` scvi-tools uses inside the logarithms.
pub const ZINB_EPS: f64 = 1e-8;

/// Element-wise ZINB log-likelihood of counts `x` given mean `mu`, inverse dispersion `theta`
/// and zero-inflation logits `pi` (all broadcastable; `theta` is per gene).
///
/// ```text
/// softplus_pi  = softplus(-pi)
/// pi_theta_log = -pi + theta * (ln(theta + eps) - ln(theta + mu + eps))
/// x = 0: softplus(pi_theta_log) - softplus_pi
/// x > 0: -softplus_pi + pi_theta_log + x * (ln(mu + eps) - ln(theta + mu + eps))
///        + lgamma(x + theta) - lgamma(theta) - lgamma(x + 1)
/// ```
/// (scvi-tools selects the cases with the masks `x < eps` and `x > eps`.)
pub fn zinb_log_likelihood(
    x: &Tensor,
    mu: &Tensor,
    theta: &Tensor,
    pi: &Tensor,
    eps: f64,
) -> Tensor {
    let softplus_pi = (-pi).softplus();
    let log_theta_eps = (theta + eps).log();
    let log_theta_mu_eps = (theta + mu + eps).log();
    let pi_theta_log = -pi + theta * (&log_theta_eps - &log_theta_mu_eps);
    let case_zero = pi_theta_log.softplus() - &softplus_pi;
    let case_non_zero = -&softplus_pi
        + &pi_theta_log
        + x * ((mu + eps).log() - &log_theta_mu_eps)
        + (x + theta).lgamma()
        - theta.lgamma()
        - (x + 1.0).lgamma();
    x.lt(eps).to_kind(Kind::Float) * case_zero + x.gt(eps).to_kind(Kind::Float) * case_non_zero
}

/// The pretraining reconstruction term for one species: the mean over cells of the negative
/// log-likelihood summed over genes, `mean_c( -sum_g ll(x_cg) )`.
pub fn zinb_nll(x: &Tensor, mu: &Tensor, theta: &Tensor, pi: &Tensor) -> Tensor {
    -zinb_log_likelihood(x, mu, theta, pi, ZINB_EPS)
        .sum_dim_intlist(-1, false, Kind::Float)
        .mean(Kind::Float)
}

/// [`zinb_nll`] of the decoder's output as training computes it, `mu = library * softmax(logits)`,
/// with its gradient computed analytically in one pass over the batch (blocks of cells on
/// libtorch's threads, [`crate::kernels::pool`]): the softmax, the means, the loss and its
/// gradients with respect to `logits`, `theta` and `pi`, instead of some fifty tensor operations
/// and their autograd graph. The result is a scalar whose backward pass hands those gradients to
/// the graphs of `logits`, `theta` and `pi`.
///
/// `counts`' rows `rows` are the cells (their sums are the library sizes; a column stored twice
/// in a row adds up, as in the macrogene layer), read sparse; `logits`, `pi`: B x G; `theta`: G.
/// Per entry, with `s(y) = sigmoid(y)`, `t = theta`, `m = mu`, `p = pi`, `r = t + m + eps` and
/// `ptl` as in [`zinb_log_likelihood`]:
///
/// ```text
/// ptl = -p - t ln(1 + m / (t + eps))
/// dptl/dp = -1,  dptl/dm = -t / r,  dptl/dt = t m / ((t + eps) r) - ln(1 + m / (t + eps))
/// x = 0: dll/dp = s(-p) - s(ptl),  dll/dm = s(ptl) dptl/dm,  dll/dt = s(ptl) dptl/dt
/// x > 0: dll/dp = s(-p) - 1,       dll/dm = (t / r) (x / (m + eps) - 1),
///        dll/dt = dptl/dt - x / r + digamma(x + t) - digamma(t)
/// and through the softmax, with q = softmax(logits) and L the library size:
///        dll/dlogits_j = L q_j (dll/dm_j - sum_g q_g dll/dm_g)
/// ```
/// Elementwise terms are evaluated in f32, the gamma-function terms and all sums in f64: more
/// precise than the tensor form in f32 (whose `lgamma(2501)` alone is off by ~1e-3). Tensors must
/// be on the CPU.
pub fn zinb_nll_fused(
    counts: &CsrView<'_>,
    rows: &[usize],
    logits: &Tensor,
    theta: &Tensor,
    pi: &Tensor,
) -> Tensor {
    let (b, g) = logits.size2().expect("logits are cells x genes");
    assert_eq!(
        (rows.len(), counts.n_cols()),
        (b as usize, g as usize),
        "one row of logits per cell and one column per gene"
    );
    let (logits_data, theta_data, pi_data) = (cpu_f32(logits), cpu_f32(theta), cpu_f32(pi));
    let batch = Batch {
        counts,
        rows,
        logits: f32_data(&logits_data),
        pi: f32_data(&pi_data),
    };
    let opts = (Kind::Float, Device::Cpu);
    let (mut d_logits, mut d_pi) = (Tensor::empty([b, g], opts), Tensor::empty([b, g], opts));
    // SAFETY: two new contiguous float32 CPU tensors, not shared yet; `zinb_nll_grad` writes
    // every entry of both.
    let (nll, d_theta) = zinb_nll_grad(&batch, f32_data(&theta_data), unsafe {
        (f32_data_mut(&mut d_logits), f32_data_mut(&mut d_pi))
    });
    with_gradients(
        nll,
        &[
            (logits, d_logits),
            (theta, Tensor::from_slice(&d_theta)),
            (pi, d_pi),
        ],
    )
}

/// A batch's inputs to the fused loss: the cells' counts, and the decoder's logits and
/// zero-inflation logits (row-major, cells x genes).
struct Batch<'a> {
    counts: &'a CsrView<'a>,
    rows: &'a [usize],
    logits: &'a [f32],
    pi: &'a [f32],
}

/// What the entries of each gene need of its `theta`, one column per quantity (so that the loop
/// over a cell's genes vectorises).
struct GeneColumns<'a> {
    theta: &'a [f32],
    inv_theta_eps: Vec<f32>,
    lgamma_theta: Vec<f64>,
    digamma_theta: Vec<f64>,
}

impl<'a> GeneColumns<'a> {
    fn new(theta: &'a [f32]) -> Self {
        let t64 = || theta.iter().map(|&t| f64::from(t));
        Self {
            theta,
            inv_theta_eps: theta.iter().map(|&t| 1.0 / (t + ZINB_EPS as f32)).collect(),
            lgamma_theta: t64().map(libm::lgamma).collect(),
            digamma_theta: t64().map(digamma).collect(),
        }
    }
}

/// One cell's inputs: counts, means and zero-inflation logits over its genes.
struct Cell<'a> {
    x: &'a [f32],
    mu: &'a [f32],
    pi: &'a [f32],
}

/// Where [`zinb_row`] writes one cell's per-gene results.
struct CellTerms<'a> {
    ll: &'a mut [f32],
    d_mu: &'a mut [f32],
    d_theta: &'a mut [f32],
    d_pi: &'a mut [f32],
}

/// One cell's entries, except the gamma-function terms of its non-zero counts (added by
/// [`add_gamma_terms`]): the log-likelihood `ll` and the derivatives with respect to `mu`,
/// `theta` and `pi`, each scaled by `scale`. Both cases are computed for every entry and one is
/// selected, with no branch, so that the loop vectorises. The differences of logarithms are
/// evaluated as `ln1p` of a ratio (the same values; float32 keeps its precision when `theta` or
/// `x` is large).
#[inline(always)]
fn zinb_row(cell: Cell<'_>, genes: &GeneColumns, scale: f32, out: CellTerms<'_>) {
    let Cell { x, mu, pi } = cell;
    let CellTerms {
        ll,
        d_mu,
        d_theta,
        d_pi,
    } = out;
    let eps = ZINB_EPS as f32;
    let inputs = x
        .iter()
        .zip(mu)
        .zip(pi)
        .zip(genes.theta)
        .zip(&genes.inv_theta_eps);
    let outputs = ll.iter_mut().zip(d_mu).zip(d_theta).zip(d_pi);
    for (((((&x, &m), &p), &t), &inv_theta_eps), (((ll, d_mu), d_theta), d_pi)) in
        inputs.zip(outputs)
    {
        let inv_r = 1.0 / (t + m + eps);
        let log_r_theta = vmath::ln_1p(m * inv_theta_eps); // ln(r) - ln(t + eps)
        let log_mu_r = -vmath::ln_1p(t / (m + eps)); // ln(m + eps) - ln(r)
        let ptl = -p - t * log_r_theta;
        let d_ptl_d_t = t * m * inv_r * inv_theta_eps - log_r_theta;
        let (softplus_neg_pi, sigmoid_neg_pi) = softplus_sigmoid(-p);
        let (softplus_ptl, sigmoid_ptl) = softplus_sigmoid(ptl);
        let (zero, positive) = (x < eps, x > eps); // scvi-tools' masks; x == eps is in neither
        let pick = |if_zero: f32, if_positive: f32| {
            let v = if positive { if_positive } else { 0.0 };
            if zero {
                if_zero
            } else {
                v
            }
        };
        *ll = pick(
            softplus_ptl - softplus_neg_pi,
            ptl - softplus_neg_pi + x * log_mu_r,
        );
        *d_mu = scale * pick(-sigmoid_ptl * t * inv_r, t * inv_r * (x / (m + eps) - 1.0));
        *d_theta = scale * pick(sigmoid_ptl * d_ptl_d_t, d_ptl_d_t - x * inv_r);
        *d_pi = scale * pick(sigmoid_neg_pi - sigmoid_ptl, sigmoid_neg_pi - 1.0);
    }
}

/// One cell's per-gene working rows in [`zinb_block`].
struct Scratch {
    /// Counts, dense; zero again after each cell ([`add_gamma_terms`] clears what it reads).
    x: Vec<f32>,
    /// `softmax(logits)`.
    q: Vec<f32>,
    mu: Vec<f32>,
    ll: Vec<f32>,
    d_mu: Vec<f32>,
    d_theta: Vec<f32>,
}

impl Scratch {
    fn new(g: usize) -> Self {
        let row = || vec![0f32; g];
        Self {
            x: row(),
            q: row(),
            mu: row(),
            ll: row(),
            d_mu: row(),
            d_theta: row(),
        }
    }
}

widest! {
    /// The cells `cells` of the batch (a block of whole cells): fills their rows of `d_logits`
    /// and `d_pi`, returns the sum of their log-likelihoods and their `d_theta` summed over the
    /// cells (in f64).
    fn zinb_block(
        batch: &Batch<'_>,
        cells: std::ops::Range<usize>,
        genes: &GeneColumns,
        scale: f64,
        d_logits: &mut [f32],
        d_pi: &mut [f32],
    ) -> (f64, Vec<f64>) {
        let g = genes.theta.len();
        let (mut sum_ll, mut d_theta) = (0f64, vec![0f64; g]);
        let mut s = Scratch::new(g);
        let outputs = d_logits.chunks_mut(g).zip(d_pi.chunks_mut(g));
        for (c, (d_logits, d_pi)) in cells.zip(outputs) {
            let (cols, counts) = batch.counts.row(batch.rows[c]);
            for (&j, &v) in cols.iter().zip(counts) {
                s.x[j as usize] += v as f32;
            }
            let library = counts.iter().map(|&v| u64::from(v)).sum::<u64>() as f32;
            softmax(&batch.logits[c * g..][..g], &mut s.q);
            for (m, &q) in s.mu.iter_mut().zip(&s.q) {
                *m = library * q;
            }
            let cell = Cell {
                x: &s.x,
                mu: &s.mu,
                pi: &batch.pi[c * g..][..g],
            };
            let terms = CellTerms {
                ll: &mut s.ll,
                d_mu: &mut s.d_mu,
                d_theta: &mut s.d_theta,
                d_pi,
            };
            zinb_row(cell, genes, scale as f32, terms);
            let mean_d_mu = dot_f64(&s.q, &s.d_mu) as f32;
            for ((dl, &q), &dm) in d_logits.iter_mut().zip(&s.q).zip(&s.d_mu) {
                *dl = library * q * (dm - mean_d_mu);
            }
            sum_ll += sum_f64(&s.ll);
            for (acc, &d) in d_theta.iter_mut().zip(&s.d_theta) {
                *acc += f64::from(d);
            }
            sum_ll += add_gamma_terms(cols, &mut s.x, genes, scale, &mut d_theta);
        }
        (sum_ll, d_theta)
    }
}

/// `q = softmax(logits)`: `exp(l - max)` over its sum (in f64), as libtorch's softmax.
#[inline(always)]
fn softmax(logits: &[f32], q: &mut [f32]) {
    let mut lanes = [f32::NEG_INFINITY; 16];
    let chunks = logits.chunks_exact(16);
    let rest = chunks
        .remainder()
        .iter()
        .fold(f32::NEG_INFINITY, |a, &b| a.max(b));
    for chunk in chunks {
        for (lane, &l) in lanes.iter_mut().zip(chunk) {
            *lane = lane.max(l);
        }
    }
    let max = lanes.iter().fold(rest, |a, &b| a.max(b));
    for (q, &l) in q.iter_mut().zip(logits) {
        *q = vmath::exp(l - max);
    }
    let inv_sum = (1.0 / sum_f64(q)) as f32;
    for q in q.iter_mut() {
        *q *= inv_sum;
    }
}

/// `a . b` in f64, in eight interleaved partial sums (so that it vectorises).
#[inline(always)]
fn dot_f64(a: &[f32], b: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let (ca, cb) = (a.chunks_exact(8), b.chunks_exact(8));
    let rest: f64 = (ca.remainder().iter().zip(cb.remainder()))
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    for (ca, cb) in ca.zip(cb) {
        for ((lane, &x), &y) in lanes.iter_mut().zip(ca).zip(cb) {
            *lane += f64::from(x) * f64::from(y);
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// The sum of `v` in f64, in eight interleaved partial sums (so that it vectorises).
#[inline(always)]
fn sum_f64(v: &[f32]) -> f64 {
    let mut lanes = [0f64; 8];
    let chunks = v.chunks_exact(8);
    let rest: f64 = chunks.remainder().iter().map(|&x| f64::from(x)).sum();
    for chunk in chunks {
        for (lane, &x) in lanes.iter_mut().zip(chunk) {
            *lane += f64::from(x);
        }
    }
    lanes.iter().sum::<f64>() + rest
}

/// Counts up to this are integers whose gamma-function terms [`gamma_terms`] sums directly.
const SMALL_COUNT: f64 = 16.0;

/// The gamma-function terms of one cell's non-zero counts, in f64:
/// `lgamma(x + t) - lgamma(t) - lgamma(x + 1)` (returned, summed) and
/// `scale (digamma(x + t) - digamma(t))` (added to `d_theta`). `cols` are the cell's stored
/// columns, `x` its dense counts, which this sets back to zero (each column is counted once).
#[inline(always)]
fn add_gamma_terms(
    cols: &[u32],
    x: &mut [f32],
    genes: &GeneColumns,
    scale: f64,
    d_theta: &mut [f64],
) -> f64 {
    let mut ll = 0.0;
    for &j in cols {
        let j = j as usize;
        let count = std::mem::take(&mut x[j]);
        if count > ZINB_EPS as f32 {
            let (lgamma, digamma) = gamma_terms(f64::from(count), j, genes);
            ll += lgamma;
            d_theta[j] += scale * digamma;
        }
    }
    ll
}

/// `(lgamma(x + t) - lgamma(t) - lgamma(x + 1), digamma(x + t) - digamma(t))` for the count `x`
/// of gene `j`. Most counts are small integers, for which the recurrences of both functions give
/// `ln(prod_k (t + k) / (k + 1))` and `sum_k 1 / (t + k)` over `k < x`: a few products and one
/// logarithm instead of three special functions.
fn gamma_terms(x: f64, j: usize, genes: &GeneColumns) -> (f64, f64) {
    let t = f64::from(genes.theta[j]);
    if x <= SMALL_COUNT && x.fract() == 0.0 {
        let (mut ratio, mut digamma) = (1.0, 0.0);
        for k in 0..x as usize {
            let tk = t + k as f64;
            ratio *= tk / (k + 1) as f64;
            digamma += 1.0 / tk;
        }
        (ratio.ln(), digamma)
    } else {
        let lgamma = libm::lgamma(x + t) - genes.lgamma_theta[j] - libm::lgamma(x + 1.0);
        (lgamma, digamma(x + t) - genes.digamma_theta[j])
    }
}

/// Cells per block of [`zinb_nll_grad`]: blocks are summed in a fixed order, so the result does
/// not depend on how many threads run them.
const ZINB_BLOCK: usize = 16;

/// `mean_c(-sum_g ll)` over a batch of B cells x G genes, its gradients with respect to the
/// logits and `pi` written into `d_logits` and `d_pi` (row-major), and its gradient with respect
/// to `theta` (returned).
fn zinb_nll_grad(
    batch: &Batch<'_>,
    theta: &[f32],
    (d_logits, d_pi): (&mut [f32], &mut [f32]),
) -> (f64, Vec<f32>) {
    let (b, g) = (batch.rows.len(), theta.len());
    let genes = GeneColumns::new(theta);
    let scale = -1.0 / b.max(1) as f64;
    let block = ZINB_BLOCK * g.max(1);
    let blocks = d_logits
        .chunks_mut(block)
        .zip(d_pi.chunks_mut(block))
        .collect();
    let partial = map_parts(blocks, |k, (d_logits, d_pi)| {
        let cells = k * ZINB_BLOCK..k * ZINB_BLOCK + d_logits.len() / g.max(1);
        zinb_block(batch, cells, &genes, scale, d_logits, d_pi)
    });
    let mut sum_ll = 0.0;
    let mut d_theta = vec![0f64; g];
    for (ll, d) in &partial {
        sum_ll += ll;
        d_theta.iter_mut().zip(d).for_each(|(u, v)| *u += v);
    }
    (scale * sum_ll, d_theta.iter().map(|&v| v as f32).collect())
}

/// `(softplus(y), sigmoid(y))` from one `exp`, stable for any `y`, branch-free.
#[inline(always)]
fn softplus_sigmoid(y: f32) -> (f32, f32) {
    let a = vmath::exp(-y.abs());
    let softplus = y.max(0.0) + vmath::ln_1p(a);
    let numerator = if y >= 0.0 { 1.0 } else { a };
    (softplus, numerator / (1.0 + a))
}

/// The digamma function for `x > 0`: the recurrence up to 6, then the asymptotic series
/// (absolute error below 1e-12).
fn digamma(mut x: f64) -> f64 {
    let mut shift = 0.0;
    while x < 6.0 {
        shift -= 1.0 / x;
        x += 1.0;
    }
    let f = 1.0 / (x * x);
    let series =
        f * (1.0 / 12.0 - f * (1.0 / 120.0 - f * (1.0 / 252.0 - f * (1.0 / 240.0 - f / 132.0))));
    shift + x.ln() - 0.5 / x - series
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csr::Csr;
    use tch::Device;

    #[test]
    fn digamma_matches_known_values() {
        // digamma(1) = -Euler's gamma, digamma(1/2) = -gamma - 2 ln 2, digamma(10) = H_9 - gamma
        let gamma = 0.577_215_664_901_532_9;
        let h9: f64 = (1..10).map(|k| 1.0 / k as f64).sum();
        for (x, want) in [
            (1.0, -gamma),
            (0.5, -gamma - 2.0 * std::f64::consts::LN_2),
            (10.0, h9 - gamma),
            (1e-3, -1_000.575_571_931_810_4), // torch.special.digamma, float64
        ] {
            assert!(
                (digamma(x) - want).abs() < 1e-9,
                "digamma({x}) = {}, want {want}",
                digamma(x)
            );
        }
    }

    /// The recurrence for small integer counts against the special functions themselves.
    #[test]
    fn small_count_gamma_terms_match_the_special_functions() {
        let genes = GeneColumns::new(&[1e-3, 0.37, 5.0, 80.0, 1e4]);
        for (j, &t) in genes.theta.iter().enumerate() {
            let t = f64::from(t);
            for x in 1..=16 {
                let x = f64::from(x);
                let (lgamma, dg) = gamma_terms(x, j, &genes);
                let want = libm::lgamma(x + t) - libm::lgamma(t) - libm::lgamma(x + 1.0);
                let want_dg = digamma(x + t) - digamma(t);
                assert!(
                    (lgamma - want).abs() <= 1e-9 * want.abs().max(1.0),
                    "lgamma x={x} t={t}: {lgamma} vs {want}"
                );
                assert!(
                    (dg - want_dg).abs() <= 1e-9 * want_dg.abs().max(1.0),
                    "digamma x={x} t={t}: {dg} vs {want_dg}"
                );
            }
        }
    }

    /// Sparse rows of a dense count matrix (cells x genes, integer values); the first cell's first
    /// count is stored as two entries of the same column (which add up).
    fn sparse(x: &Tensor) -> Csr {
        let (_, g) = x.size2().unwrap();
        let dense = Vec::<f32>::try_from(&x.reshape([-1])).unwrap();
        let mut csr = Csr::empty(g as usize);
        for (c, row) in dense.chunks(g as usize).enumerate() {
            let mut entries: Vec<(u32, u32)> = vec![];
            for (j, &v) in row.iter().enumerate().filter(|(_, &v)| v > 0.0) {
                let v = v as u32;
                if c == 0 && entries.is_empty() && v > 1 {
                    entries.extend([(j as u32, 1), (j as u32, v - 1)]);
                } else {
                    entries.push((j as u32, v));
                }
            }
            csr.push_row(entries);
        }
        csr
    }

    /// Counts like a training batch's (mostly zeros, a few large counts, every cell non-empty),
    /// logits, theta and pi as leaves.
    fn batch(b: i64, g: i64) -> (Tensor, [Tensor; 3]) {
        let opts = (Kind::Float, Device::Cpu);
        let keep = Tensor::rand([b, g], opts).lt(0.15).to_kind(Kind::Float);
        let x = (Tensor::rand([b, g], opts) * 40.0).floor() * keep;
        let _ = x.narrow(1, 0, 1).fill_(3.0);
        let leaf = |t: Tensor| t.set_requires_grad(true);
        let logits = leaf(Tensor::randn([b, g], opts) * 2.0);
        let theta = leaf((Tensor::randn([g], opts) * 2.0).exp());
        let pi = leaf(Tensor::randn([b, g], opts) * 3.0);
        (x, [logits, theta, pi])
    }

    /// Blocks are summed in a fixed order: one thread and four give the same bits.
    #[test]
    fn fused_gradients_do_not_depend_on_the_thread_count() {
        let _rng = crate::model::torch_rng();
        tch::manual_seed(4);
        let (b, g) = (100, 53);
        let (x, [logits, theta, pi]) = batch(b, g);
        let sparse = sparse(&x);
        let counts = sparse.view().unwrap();
        let rows: Vec<usize> = (0..b as usize).rev().collect();
        let before = tch::get_num_threads();
        let run = |threads| {
            tch::set_num_threads(threads); // the OpenMP threads the blocks run on
            let nll = zinb_nll_fused(&counts, &rows, &logits, &theta, &pi);
            let grads = Tensor::run_backward(&[&nll], &[&logits, &theta, &pi], false, false);
            (nll.double_value(&[]).to_bits(), grads)
        };
        let ((one, one_grads), (four, four_grads)) = (run(1), run(4));
        tch::set_num_threads(before);
        assert_eq!(one, four);
        for (a, b) in one_grads.iter().zip(&four_grads) {
            assert!(a.equal(b), "a gradient depends on the thread count");
        }
    }

    /// The fused loss and its gradients against autograd through the tensor form of what it
    /// replaces, `zinb_nll(x, library * softmax(logits), theta, pi)`, on cells taken out of order.
    #[test]
    fn fused_loss_and_gradients_match_autograd_of_the_formula() {
        let _rng = crate::model::torch_rng();
        tch::manual_seed(3);
        let (b, g) = (37, 211);
        let (x, [logits, theta, pi]) = batch(b, g);
        let sparse = sparse(&x);
        let rows: Vec<usize> = (0..b as usize).map(|i| (i * 5) % b as usize).collect();
        let index = Tensor::from_slice(&rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
        let x_rows = x.index_select(0, &index);
        let grads = |loss: Tensor| {
            let inputs = [&logits, &theta, &pi];
            let g = Tensor::run_backward(&[loss.shallow_clone()], &inputs, false, false);
            (loss.double_value(&[]), g)
        };
        let library = x_rows.sum_dim_intlist(1, true, Kind::Float);
        let mu = library * logits.softmax(-1, Kind::Float);
        let (want, want_grads) = grads(zinb_nll(&x_rows, &mu, &theta, &pi));
        let (got, got_grads) = grads(zinb_nll_fused(
            &sparse.view().unwrap(),
            &rows,
            &logits,
            &theta,
            &pi,
        ));
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "nll {got} vs {want}"
        );
        for (name, (a, w)) in ["logits", "theta", "pi"]
            .iter()
            .zip(got_grads.iter().zip(&want_grads))
        {
            let err = (a - w).abs().max().double_value(&[]);
            let scale = w.abs().max().double_value(&[]);
            assert!(
                scale > 0.0 && err <= 1e-4 * scale,
                "d/d{name}: max error {err} (max |grad| {scale})"
            );
        }
    }
}
