//! Zero-inflated negative binomial log-likelihood (SATURN.md section 5), as scvi-tools'
//! `log_zinb_positive` (`ZeroInflatedNegativeBinomial.log_prob`), which SATURN's reference uses.
//!
//! Two forms of the same function: [`zinb_log_likelihood`] / [`zinb_nll`] as tensor operations
//! (the formula, for checks and small inputs), and [`zinb_nll_fused`], which training uses: one
//! pass over the batch computes the loss and its analytic gradient with respect to `mu`, `theta`
//! and `pi`, instead of some fifty tensor operations and their autograd graph. Counts are mostly
//! zero, and a zero needs neither `lgamma` nor `digamma`.

use super::host::{cpu_f32, f32_data, with_gradients};
use rayon::prelude::*;
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

/// [`zinb_nll`] with its gradient computed analytically in one pass over the batch (rayon over
/// cells). The result is a scalar with the value of [`zinb_nll`] whose backward pass hands
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
        &[(mu, &grads.mu), (theta, &grads.theta), (pi, &grads.pi)],
    )
}

/// The gradients of the batch's negative log-likelihood.
struct ZinbGrads {
    mu: Vec<f32>,
    theta: Vec<f32>,
    pi: Vec<f32>,
}

/// What every entry of one gene needs of its `theta`.
struct GeneTerms {
    theta: f32,
    inv_theta_eps: f32,
    lgamma_theta: f64,
    digamma_theta: f64,
}

impl GeneTerms {
    fn new(theta: f32) -> Self {
        let t = f64::from(theta);
        Self {
            theta,
            inv_theta_eps: 1.0 / (theta + ZINB_EPS as f32),
            lgamma_theta: libm::lgamma(t),
            digamma_theta: digamma(t),
        }
    }
}

/// One entry's log-likelihood and its derivatives with respect to `mu`, `theta` and `pi`. The
/// differences of logarithms are evaluated as `ln1p` of a ratio (the same values; float32 keeps
/// its precision when `theta` or `x` is large).
fn zinb_entry(x: f32, mu: f32, pi: f32, gene: &GeneTerms) -> (f64, f32, f32, f32) {
    let eps = ZINB_EPS as f32;
    let t = gene.theta;
    let inv_r = 1.0 / (t + mu + eps);
    let log_r_theta = ln_1p(mu * gene.inv_theta_eps); // ln(r) - ln(t + eps)
    let ptl = -pi - t * log_r_theta;
    let d_ptl_d_t = t * mu * inv_r * gene.inv_theta_eps - log_r_theta;
    let (softplus_neg_pi, sigmoid_neg_pi) = softplus_sigmoid(-pi);
    if x < eps {
        let (softplus_ptl, sigmoid_ptl) = softplus_sigmoid(ptl);
        let ll = f64::from(softplus_ptl - softplus_neg_pi);
        let d_m = -sigmoid_ptl * t * inv_r;
        (
            ll,
            d_m,
            sigmoid_ptl * d_ptl_d_t,
            sigmoid_neg_pi - sigmoid_ptl,
        )
    } else if x > eps {
        let log_mu_r = -ln_1p(t / (mu + eps)); // ln(m + eps) - ln(r)
        let (xt, x64) = (f64::from(x + t), f64::from(x));
        let ll = f64::from(-softplus_neg_pi + ptl + x * log_mu_r) + libm::lgamma(xt)
            - gene.lgamma_theta
            - libm::lgamma(x64 + 1.0);
        let d_m = t * inv_r * (x / (mu + eps) - 1.0);
        let d_t = f64::from(d_ptl_d_t - x * inv_r) + digamma(xt) - gene.digamma_theta;
        (ll, d_m, d_t as f32, sigmoid_neg_pi - 1.0)
    } else {
        (0.0, 0.0, 0.0, 0.0) // x == eps: neither of scvi-tools' masks
    }
}

/// Cells per block of [`zinb_nll_grad`]: blocks are summed in a fixed order, so the result does
/// not depend on how rayon schedules them.
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
    let genes: Vec<GeneTerms> = theta.iter().map(|&t| GeneTerms::new(t)).collect();
    let scale = -1.0 / b.max(1) as f64;
    let (mut d_mu, mut d_pi) = (vec![0f32; b * g], vec![0f32; b * g]);
    let block = ZINB_BLOCK * g.max(1);
    let partial: Vec<(f64, Vec<f64>)> = d_mu
        .par_chunks_mut(block)
        .zip(d_pi.par_chunks_mut(block))
        .enumerate()
        .map(|(k, (d_mu, d_pi))| {
            let (mut sum_ll, mut d_theta) = (0f64, vec![0f64; g]);
            let cells = k * block..k * block + d_mu.len();
            let entries = x[cells.clone()]
                .iter()
                .zip(&mu[cells.clone()])
                .zip(&pi[cells]);
            for (i, ((&x, &m), &p)) in entries.enumerate() {
                let j = i % g;
                let (ll, d_m, d_t, d_p) = zinb_entry(x, m, p, &genes[j]);
                sum_ll += ll;
                d_mu[i] = (scale * f64::from(d_m)) as f32;
                d_pi[i] = (scale * f64::from(d_p)) as f32;
                d_theta[j] += scale * f64::from(d_t);
            }
            (sum_ll, d_theta)
        })
        .collect();
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

/// `(softplus(y), sigmoid(y))` from one `exp`, stable for any `y`.
fn softplus_sigmoid(y: f32) -> (f32, f32) {
    let a = (-y.abs()).exp();
    let softplus = y.max(0.0) + ln_1p(a);
    let sigmoid = if y >= 0.0 {
        1.0 / (1.0 + a)
    } else {
        a / (1.0 + a)
    };
    (softplus, sigmoid)
}

/// `ln(1 + u)` for `u > -1` to within a few ulp, from one `ln` (Goldberg's correction of the
/// rounding of `1 + u`): glibc's `log1pf` costs several times more than its `logf`.
fn ln_1p(u: f32) -> f32 {
    let w = 1.0 + u;
    if w == 1.0 {
        u
    } else {
        w.ln() * (u / (w - 1.0))
    }
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
        let run = |threads| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let (nll, d) = pool.install(|| zinb_nll_grad(&x, &mu, &theta, &pi, b, g));
            (nll.to_bits(), d.mu, d.theta, d.pi)
        };
        assert_eq!(run(1), run(4));
    }

    #[test]
    fn ln_1p_is_within_a_few_ulp_of_float64() {
        let us = (0..4000).map(|i| 10f64.powf(-12.0 + i as f64 * 0.0045));
        for u in us.clone().chain(us.map(|u| -u * 0.99 / 1e6)) {
            let (got, want) = (f64::from(ln_1p(u as f32)), (u as f32 as f64).ln_1p());
            assert!(
                (got - want).abs() <= 4.0 * f64::from(f32::EPSILON) * want.abs(),
                "ln_1p({u}): {got} vs {want}"
            );
        }
    }

    /// A batch like a training batch (mostly zeros, a few large counts): the fused loss and its
    /// gradients against autograd through the tensor form.
    #[test]
    fn fused_loss_and_gradients_match_autograd_of_the_formula() {
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
