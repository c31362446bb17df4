//! Branch-free `f32` exponential and logarithm for the hand-written kernels
//! ([`crate::model::zinb::zinb_nll_fused`], the ESM-2 attention's softmax): plain arithmetic and
//! bit operations that the compiler vectorises inside a loop, where glibc's `expf` / `logf` are calls, one element at a time.
//! Cephes' polynomials (`expf.c`, `logf.c`), evaluated with fused multiply-adds (one instruction
//! in the bodies [`crate::kernels::simd::widest`] compiles, which enable FMA); within 2 ulp of the
//! exact values on their domains.
//! Integer steps wrap explicitly: an overflow check (debug assertions) would stop vectorisation.

pub(crate) const LN2_HI: f32 = 0.693_359_4;
pub(crate) const LN2_LO: f32 = -2.121_944_4e-4;
pub(crate) const EXP_POLY: [f32; 6] = [
    1.987_569_1e-4,
    1.398_2e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    5e-1,
];
const LN_POLY: [f32; 9] = [
    7.037_683_6e-2,
    -1.151_461e-1,
    1.167_699_9e-1,
    -1.242_014_1e-1,
    1.424_932_3e-1,
    -1.666_805_8e-1,
    2.000_071_4e-1,
    -2.499_999_4e-1,
    3.333_333e-1,
];

/// `c[0] x^(n-1) + ... + c[n-1]`.
#[inline(always)]
fn horner(c: &[f32], x: f32) -> f32 {
    c.iter().fold(0.0, |acc, &c| acc.mul_add(x, c))
}

/// `e^x`, for `x` in [-87, 88] (clamped there: 0 and overflow are never needed here).
#[inline(always)]
pub(crate) fn exp(x: f32) -> f32 {
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23: adding it rounds to an integer in the low bits
    let x = x.clamp(-87.0, 88.0);
    let shifted = x * std::f32::consts::LOG2_E + ROUND;
    let n = shifted - ROUND;
    let k = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32; // n as an integer
    let r = x - n * LN2_HI - n * LN2_LO;
    let p = horner(&EXP_POLY, r);
    let e_r = p * r * r + r + 1.0;
    e_r * f32::from_bits((k.wrapping_add(127) as u32) << 23)
}

/// `ln(x)` for finite `x > 0` (normal numbers).
#[inline(always)]
pub(crate) fn ln(x: f32) -> f32 {
    let bits = x.to_bits();
    let mut e = ((bits >> 23) & 0xff) as i32; // biased by 127
    let mut m = f32::from_bits((bits & 0x007f_ffff) | 0x3f80_0000); // [1, 2)
    let big = m > std::f32::consts::SQRT_2;
    m = if big { m * 0.5 } else { m };
    e = e.wrapping_add(i32::from(big)).wrapping_sub(127);
    let f = m - 1.0;
    let z = f * f;
    let p = horner(&LN_POLY, f);
    let e = e as f32;
    let y = p * f * z + e * LN2_LO - 0.5 * z;
    f + y + e * LN2_HI
}

/// `ln(1 + u)` for `u >= 0`, to a few ulp also for tiny `u` (Goldberg's correction of the
/// rounding of `1 + u`).
#[inline(always)]
pub(crate) fn ln_1p(u: f32) -> f32 {
    let w = 1.0 + u;
    let corrected = ln(w) * (u / (w - 1.0));
    if w == 1.0 {
        u
    } else {
        corrected
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ulps(got: f32, want: f64) -> f64 {
        (f64::from(got) - want).abs()
            / (f64::from(f32::EPSILON) * want.abs().max(f64::MIN_POSITIVE))
    }

    #[test]
    fn exp_is_within_two_ulp() {
        for i in 0..=200_000 {
            let x = -87.0 + i as f32 * (175.0 / 200_000.0);
            let err = ulps(exp(x), f64::from(x).exp());
            assert!(err <= 2.0, "exp({x}): {} is {err} ulp off", exp(x));
        }
    }

    #[test]
    fn ln_and_ln_1p_are_within_two_ulp() {
        for i in 0..=200_000 {
            let x = 10f32.powf(-30.0 + i as f32 * (60.0 / 200_000.0));
            let err = ulps(ln(x), f64::from(x).ln());
            // near x = 1 ln(x) -> 0 and the relative error is not meaningful: absolute instead
            let abs_err = (f64::from(ln(x)) - f64::from(x).ln()).abs();
            assert!(
                err <= 2.0 || abs_err <= 1e-7,
                "ln({x}): {} is {err} ulp off",
                ln(x)
            );
            let err = ulps(ln_1p(x), f64::from(x).ln_1p());
            assert!(err <= 4.0, "ln_1p({x}): {} is {err} ulp off", ln_1p(x));
        }
    }
}
