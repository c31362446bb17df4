//! Zero-inflated negative binomial log-likelihood (SATURN.md section 5), as scvi-tools'
//! `log_zinb_positive` (`ZeroInflatedNegativeBinomial.log_prob`), which SATURN's reference uses.

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
