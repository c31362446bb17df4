//! Zero-inflated negative binomial log-likelihood (SATURN.md section 5), as scvi-tools'
//! `log_zinb_positive` (`ZeroInflatedNegativeBinomial.log_prob`), which SATURN's reference uses.
//!
//! Two forms of the same function: [`zinb_log_likelihood`] / [`zinb_nll`] as tensor operations
//! (the formula, for checks and small inputs), and [`zinb_nll_fused`], which training uses: one
//! pass over the batch computes the loss and its analytic gradient with respect to `mu`, `theta`
//! and `pi`, instead of some fifty tensor operations and their autograd graph. Counts are mostly
//! zero, and a zero needs neither `lgamma` nor `digamma`.

use crate::kernels::host::{cpu_f32, f32_data, with_gradients};
use crate::kernels::pool::map_parts;
use crate::kernels::simd::widest;
use crate::kernels::vmath;
use tch::{Kind, Tensor};

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

/// [`zinb_nll`] with its gradient computed analytically in one pass over the batch (blocks of
/// cells on libtorch's threads, [`super::pool`]). The result is a scalar with the value of [`zinb_nll`] whose backward pass hands
/// `d nll / d mu`, `d nll / d theta` and `d nll / d pi` to the graphs of `mu`, `theta` and `pi`.
///
/// `x`, `mu`, `pi`: B x G; `theta`: G. Per entry, with `s(y) = sigmoid(y)`, `t = theta`,
/// `m = mu`, `p = pi`, `r = t + m + eps` and `ptl` as in [`zinb_log_likelihood`]:
///
/// ```text
/// ptl = -p - t ln(1 + m / (t + eps))
/// dptl/dp = -1,  dptl/dm = -t / r,  dptl/dt = t m / ((t + eps) r) - ln(1 + m / (t + eps))
/// x = 0: dll/dp = s(-p) - s(ptl),  dll/dm = s(ptl) dptl/dm,  dll/dt = s(ptl) dptl/dt
/// x > 0: dll/dp = s(-p) - 1,       dll/dm = (t / r) (x / (m + eps) - 1),
///        dll/dt = dptl/dt - x / r + digamma(x + t) - digamma(t)
/// ```
/// Elementwise terms are evaluated in f32, the gamma-function terms and all sums in f64: more
/// precise than the tensor form in f32 (whose `lgamma(2501)` alone is off by ~1e-3). Tensors must
/// be on the CPU.
pub fn zinb_nll_fused(x: &Tensor, mu: &Tensor, theta: &Tensor, pi: &Tensor) -> Tensor {
    let (b, g) = x.size2().expect("counts are cells x genes");
    let (x, mu_data, theta_data, pi_data) = (cpu_f32(x), cpu_f32(mu), cpu_f32(theta), cpu_f32(pi));
    let (value, grads) = zinb_nll_grad(
        f32_data(&x),
        f32_data(&mu_data),
        f32_data(&theta_data),
        f32_data(&pi_data),
        b as usize,
        g as usize,
    );
    with_gradients(
        value,
        &[
            (mu, Tensor::from_slice(&grads.mu)),
            (theta, Tensor::from_slice(&grads.theta)),
            (pi, Tensor::from_slice(&grads.pi)),
        ],
    )
}

/// The gradients of the batch's negative log-likelihood.
struct ZinbGrads {
    mu: Vec<f32>,
    theta: Vec<f32>,
    pi: Vec<f32>,
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

widest! {
    /// A block of whole cells (row-major, the genes' width): fills their `d_mu` and `d_pi`,
    /// returns the sum of their log-likelihoods and their `d_theta` summed over the cells (in
    /// f64).
    fn zinb_block(
        cells: Cell<'_>,
        genes: &GeneColumns,
        scale: f64,
        d_mu: &mut [f32],
        d_pi: &mut [f32],
    ) -> (f64, Vec<f64>) {
        let g = genes.theta.len();
        let (mut sum_ll, mut d_theta) = (0f64, vec![0f64; g]);
        let (mut ll, mut d_theta_row) = (vec![0f32; g], vec![0f32; g]);
        let mut non_zero = vec![0usize; g];
        let rows = cells
            .x
            .chunks(g)
            .zip(cells.mu.chunks(g))
            .zip(cells.pi.chunks(g));
        let outputs = d_mu.chunks_mut(g).zip(d_pi.chunks_mut(g));
        for (((x, mu), pi), (d_mu, d_pi)) in rows.zip(outputs) {
            let terms = CellTerms {
                ll: &mut ll,
                d_mu,
                d_theta: &mut d_theta_row,
                d_pi,
            };
            zinb_row(Cell { x, mu, pi }, genes, scale as f32, terms);
            sum_ll += sum_f64(&ll);
            for (acc, &d) in d_theta.iter_mut().zip(&d_theta_row) {
                *acc += f64::from(d);
            }
            sum_ll += add_gamma_terms(x, &mut non_zero, genes, scale, &mut d_theta);
        }
        (sum_ll, d_theta)
    }
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
/// `scale (digamma(x + t) - digamma(t))` (added to `d_theta`).
#[inline(always)]
fn add_gamma_terms(
    x: &[f32],
    non_zero: &mut [usize],
    genes: &GeneColumns,
    scale: f64,
    d_theta: &mut [f64],
) -> f64 {
    let mut n = 0;
    for (j, &x) in x.iter().enumerate() {
        non_zero[n] = j; // kept only if the count is non-zero: no branch to mispredict
        n += usize::from(x > ZINB_EPS as f32);
    }
    let mut ll = 0.0;
    for &j in &non_zero[..n] {
        let (lgamma, digamma) = gamma_terms(f64::from(x[j]), j, genes);
        ll += lgamma;
        d_theta[j] += scale * digamma;
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

/// `mean_c(-sum_g ll)` over a B x G batch and its gradients (row-major slices).
fn zinb_nll_grad(
    x: &[f32],
    mu: &[f32],
    theta: &[f32],
    pi: &[f32],
    b: usize,
    g: usize,
) -> (f64, ZinbGrads) {
    let genes = GeneColumns::new(theta);
    let scale = -1.0 / b.max(1) as f64;
    let (mut d_mu, mut d_pi) = (vec![0f32; b * g], vec![0f32; b * g]);
    let block = ZINB_BLOCK * g.max(1);
    let blocks = d_mu.chunks_mut(block).zip(d_pi.chunks_mut(block)).collect();
    let partial = map_parts(blocks, |k, (d_mu, d_pi)| {
        let cells = k * block..k * block + d_mu.len();
        let inputs = Cell {
            x: &x[cells.clone()],
            mu: &mu[cells.clone()],
            pi: &pi[cells],
        };
        zinb_block(inputs, &genes, scale, d_mu, d_pi)
    });
    let mut sum_ll = 0.0;
    let mut d_theta = vec![0f64; g];
    for (ll, d) in &partial {
        sum_ll += ll;
        d_theta.iter_mut().zip(d).for_each(|(u, v)| *u += v);
    }
    let grads = ZinbGrads {
        mu: d_mu,
        theta: d_theta.iter().map(|&v| v as f32).collect(),
        pi: d_pi,
    };
    (scale * sum_ll, grads)
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

    /// Blocks are summed in a fixed order: one thread and four give the same bits.
    #[test]
    fn fused_gradients_do_not_depend_on_the_thread_count() {
        let (b, g) = (100, 53);
        let x: Vec<f32> = (0..b * g)
            .map(|i| ((i * 7919) % 13) as f32 * ((i % 3) as f32))
            .collect();
        let mu: Vec<f32> = (0..b * g).map(|i| 0.01 + (i % 97) as f32 * 0.37).collect();
        let pi: Vec<f32> = (0..b * g).map(|i| (i % 11) as f32 - 5.0).collect();
        let theta: Vec<f32> = (0..g).map(|j| 0.05 * (j + 1) as f32).collect();
        let before = tch::get_num_threads();
        let run = |threads| {
            tch::set_num_threads(threads); // the OpenMP threads the blocks run on
            let (nll, d) = zinb_nll_grad(&x, &mu, &theta, &pi, b, g);
            (nll.to_bits(), d.mu, d.theta, d.pi)
        };
        let (one, four) = (run(1), run(4));
        tch::set_num_threads(before);
        assert_eq!(one, four);
    }

    /// A batch like a training batch (mostly zeros, a few large counts): the fused loss and its
    /// gradients against autograd through the tensor form.
    #[test]
    fn fused_loss_and_gradients_match_autograd_of_the_formula() {
        let _rng = crate::model::torch_rng();
        tch::manual_seed(3);
        let (b, g) = (37, 211);
        let opts = (Kind::Float, Device::Cpu);
        let keep = Tensor::rand([b, g], opts).lt(0.15).to_kind(Kind::Float);
        let x = (Tensor::rand([b, g], opts) * 40.0).floor() * keep;
        let leaf = |t: Tensor| t.set_requires_grad(true);
        let mu = leaf(Tensor::rand([b, g], opts) * 30.0 + 1e-3);
        let theta = leaf((Tensor::randn([g], opts) * 2.0).exp());
        let pi = leaf(Tensor::randn([b, g], opts) * 3.0);
        let grads = |loss: Tensor| {
            let g =
                Tensor::run_backward(&[loss.shallow_clone()], &[&mu, &theta, &pi], false, false);
            (loss.double_value(&[]), g)
        };
        let (want, want_grads) = grads(zinb_nll(&x, &mu, &theta, &pi));
        let (got, got_grads) = grads(zinb_nll_fused(&x, &mu, &theta, &pi));
        assert!(
            (got - want).abs() <= 1e-5 * want.abs(),
            "nll {got} vs {want}"
        );
        for (name, (a, w)) in ["mu", "theta", "pi"]
            .iter()
            .zip(got_grads.iter().zip(&want_grads))
        {
            let err = (a - w).abs().max().double_value(&[]);
            let scale = w.abs().max().double_value(&[]);
            assert!(
                err <= 1e-4 * scale,
                "d/d{name}: max error {err} (max |grad| {scale})"
            );
        }
    }
}
