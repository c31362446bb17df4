//! Drawing synthetic cells from a [`Profile`]: each cell has its own random stream (seeded by
//! the run's seed and the cell's index, so any cell is the same whatever the chunking or thread),
//! picks a type by share, a library size `L` from the type's log-normal, and for each gene the
//! type expresses a negative-binomial count of mean `L * m` and the gene's dispersion.
//!
//! Samplers: negative binomial by inversion of its CDF for small means (most genes: usually one
//! uniform and one `exp`), else as a gamma-Poisson mixture; gamma by Marsaglia and Tsang (2000);
//! Poisson by inversion below 10, else by Hörmann's PTRS (1993, numpy's `random_poisson_ptrs`).

use super::profile::Profile;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Means below which the negative binomial is drawn by inversion.
const INVERSION_BELOW: f64 = 16.0;

/// One synthetic cell: its type (index into the profile's types) and its non-zero counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cell {
    /// Index of the cell's type in [`Profile::types`].
    pub cell_type: usize,
    /// Columns of the non-zero counts, ascending.
    pub genes: Vec<u32>,
    /// The non-zero counts.
    pub counts: Vec<u32>,
}

/// Cell `index` of the dataset seeded `seed`.
pub fn cell(profile: &Profile, seed: u64, index: u64) -> Cell {
    let mut rng = StdRng::seed_from_u64(splitmix(seed ^ splitmix(index)));
    let u: f64 = rng.random();
    let mut cumulative = 0.0;
    let cell_type = profile
        .types
        .iter()
        .position(|t| {
            cumulative += t.share;
            u < cumulative
        })
        .unwrap_or(profile.types.len() - 1);
    let t = &profile.types[cell_type];
    let library = (t.log_library_mean + t.log_library_sd * standard_normal(&mut rng)).exp();
    let (mut genes, mut counts) = (Vec::new(), Vec::new());
    for &(g, share) in &t.expressed {
        let k = negative_binomial(&mut rng, library * share, profile.dispersion[g as usize]);
        if k > 0 {
            genes.push(g);
            counts.push(k);
        }
    }
    Cell {
        cell_type,
        genes,
        counts,
    }
}

/// SplitMix64's finaliser: decorrelates seeds that differ in few bits.
fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A standard normal draw (Box-Muller).
fn standard_normal(rng: &mut StdRng) -> f64 {
    let u1: f64 = 1.0 - rng.random::<f64>(); // in (0, 1]
    let u2: f64 = rng.random();
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

/// A negative-binomial draw of mean `mu` and dispersion `phi` (variance `mu + phi * mu^2`).
pub fn negative_binomial(rng: &mut StdRng, mu: f64, phi: f64) -> u32 {
    if mu <= 0.0 {
        return 0;
    }
    if mu >= INVERSION_BELOW {
        let r = 1.0 / phi;
        let lambda = gamma(rng, r) * mu / r;
        return poisson(rng, lambda);
    }
    // P(0) = (1 + mu phi)^(-1/phi); P(k+1) = P(k) (k + r) / (k + 1) * q, q = mu phi / (1 + mu phi).
    let r = 1.0 / phi;
    let q = mu * phi / (1.0 + mu * phi);
    let mut p = (-r * (mu * phi).ln_1p()).exp();
    let mut cdf = p;
    let u: f64 = rng.random();
    let mut k = 0u32;
    while u > cdf && p > 0.0 {
        p *= (f64::from(k) + r) / f64::from(k + 1) * q;
        cdf += p;
        k += 1;
    }
    k
}

/// A gamma draw of shape `a` and scale 1 (Marsaglia and Tsang; `a < 1` boosted by `U^(1/a)`).
fn gamma(rng: &mut StdRng, a: f64) -> f64 {
    if a < 1.0 {
        let u: f64 = 1.0 - rng.random::<f64>();
        return gamma(rng, a + 1.0) * u.powf(1.0 / a);
    }
    let d = a - 1.0 / 3.0;
    let c = 1.0 / (9.0 * d).sqrt();
    loop {
        let x = standard_normal(rng);
        let v = (1.0 + c * x).powi(3);
        if v <= 0.0 {
            continue;
        }
        let u: f64 = rng.random();
        if u.ln() < 0.5 * x * x + d - d * v + d * v.ln() {
            return d * v;
        }
    }
}

/// A Poisson draw of mean `lambda`.
fn poisson(rng: &mut StdRng, lambda: f64) -> u32 {
    if lambda < 10.0 {
        let limit = (-lambda).exp();
        let (mut k, mut product) = (0u32, rng.random::<f64>());
        while product > limit {
            product *= rng.random::<f64>();
            k += 1;
        }
        return k;
    }
    let (sqrt_lambda, log_lambda) = (lambda.sqrt(), lambda.ln());
    let b = 0.931 + 2.53 * sqrt_lambda;
    let a = -0.059 + 0.02483 * b;
    let inv_alpha = 1.1239 + 1.1328 / (b - 3.4);
    let vr = 0.9277 - 3.6224 / (b - 2.0);
    loop {
        let u = rng.random::<f64>() - 0.5;
        let v: f64 = rng.random();
        let us = 0.5 - u.abs();
        let k = ((2.0 * a / us + b) * u + lambda + 0.43).floor();
        if us >= 0.07 && v <= vr {
            return k as u32;
        }
        if k < 0.0 || (us < 0.013 && v > us) {
            continue;
        }
        let accept = v.ln() + inv_alpha.ln() - (a / (us * us) + b).ln();
        if accept <= -lambda + k * log_lambda - libm::lgamma(k + 1.0) {
            return k as u32;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Mean and variance of `n` draws.
    fn moments(mu: f64, phi: f64, n: usize) -> (f64, f64) {
        let mut rng = StdRng::seed_from_u64(7);
        let draws: Vec<f64> = (0..n)
            .map(|_| f64::from(negative_binomial(&mut rng, mu, phi)))
            .collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        (mean, var)
    }

    /// Both sampler paths (inversion below 16, gamma-Poisson above, PTRS for large Poisson
    /// means) give the negative binomial's mean and variance, within 4 standard errors.
    #[test]
    fn negative_binomial_moments_match() {
        let n = 40_000;
        for (mu, phi) in [
            (0.05, 0.5),
            (2.0, 0.1),
            (9.0, 2.0),
            (40.0, 0.2),
            (500.0, 0.05),
        ] {
            let (mean, var) = moments(mu, phi, n);
            let expected_var = mu + phi * mu * mu;
            let se = (expected_var / n as f64).sqrt();
            assert!(
                (mean - mu).abs() < 4.0 * se,
                "mu {mu} phi {phi}: mean {mean}"
            );
            assert!(
                (var / expected_var - 1.0).abs() < 0.1,
                "mu {mu} phi {phi}: variance {var}, expected {expected_var}"
            );
        }
    }

    #[test]
    fn poisson_above_ten_has_its_mean_and_variance() {
        let mut rng = StdRng::seed_from_u64(3);
        let n = 40_000;
        let draws: Vec<f64> = (0..n).map(|_| f64::from(poisson(&mut rng, 25.0))).collect();
        let mean = draws.iter().sum::<f64>() / n as f64;
        let var = draws.iter().map(|d| (d - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        assert!(
            (mean - 25.0).abs() < 4.0 * (25.0 / n as f64).sqrt(),
            "{mean}"
        );
        assert!((var / 25.0 - 1.0).abs() < 0.05, "{var}");
    }
}
