//! The tensor ops SATURN's blocks use beside libtorch's: inverted dropout with a mask from a
//! counter-based generator (filled in parallel, seeded from libtorch's generator), and the
//! conversions between `ndarray` matrices and tensors.

use super::error::{torch, ModelError, Result};
use crate::kernels::host::f32_data_mut;
use crate::kernels::pool::map_parts;
use crate::kernels::simd::widest;
use ndarray::{Array2, ArrayView2};
use tch::{Device, Kind, Tensor};

/// Inverted dropout: when `train`, each entry is zeroed with probability `p` and the others are
/// scaled by `1 / (1 - p)`, as `Tensor::dropout`. The mask comes from a counter-based generator
/// (SplitMix64 of the entry's index) in parallel instead of libtorch's serial Bernoulli sampler;
/// its seed is drawn from libtorch's generator, so `tch::manual_seed` still fixes it.
pub(crate) fn dropout(xs: &Tensor, p: f64, train: bool) -> Tensor {
    if !train || p == 0.0 {
        return xs.shallow_clone();
    }
    xs * dropout_mask_tensor(&xs.size(), p)
}

/// A mask of [`dropout`] of the given shape, its seed drawn from libtorch's generator (all ones
/// when `p` is 0, without a draw, as [`dropout`] draws nothing then).
pub(super) fn dropout_mask_tensor(shape: &[i64], p: f64) -> Tensor {
    if p == 0.0 {
        return Tensor::ones(shape, (Kind::Float, Device::Cpu));
    }
    let seed = Tensor::randint(i64::MAX, [1], (Kind::Int64, Device::Cpu)).int64_value(&[0]) as u64;
    let mut mask = Tensor::empty(shape, (Kind::Float, Device::Cpu));
    // SAFETY: `mask` is a new contiguous float tensor on the CPU, not shared yet; every element
    // is written before it is read.
    fill_dropout_mask(unsafe { f32_data_mut(&mut mask) }, p, seed);
    mask
}

/// Fills `mask` with `0` (probability `p`) or `1 / (1 - p)`; entry `i` depends only on `seed` and
/// `i` (SplitMix64 of the index), so chunks are filled in parallel.
fn fill_dropout_mask(mask: &mut [f32], p: f64, seed: u64) {
    const CHUNK: usize = 1 << 14;
    let threshold = (p * 2f64.powi(32)) as u64; // dropped when the top 32 bits fall below it
    let keep = (1.0 / (1.0 - p)) as f32;
    map_parts(mask.chunks_mut(CHUNK).collect(), |c, chunk| {
        mask_chunk(chunk, (c * CHUNK) as u64, seed, threshold, keep)
    });
}

widest! {
    /// One chunk of [`fill_dropout_mask`], its first entry at index `first`.
    fn mask_chunk(chunk: &mut [f32], first: u64, seed: u64, threshold: u64, keep: f32) {
        const GOLDEN: u64 = 0x9e37_79b9_7f4a_7c15;
        for (i, m) in chunk.iter_mut().enumerate() {
            let mut z = seed.wrapping_add(GOLDEN.wrapping_mul(first + i as u64 + 1));
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^= z >> 31;
            *m = if z >> 32 >= threshold { keep } else { 0.0 };
        }
    }
}

/// An `ndarray` matrix as a float tensor.
pub(crate) fn dense_tensor(a: ArrayView2<'_, f32>) -> Tensor {
    let flat: Vec<f32> = a.iter().copied().collect();
    Tensor::from_slice(&flat).reshape([a.nrows() as i64, a.ncols() as i64])
}

/// A 2-D float tensor as an `ndarray` matrix.
pub(crate) fn to_array(t: &Tensor) -> Result<Array2<f32>> {
    let size = t.size();
    let flat: Vec<f32> = Vec::try_from(&t.to_kind(Kind::Float).contiguous().view([-1]))
        .map_err(torch("reading a tensor"))?;
    Array2::from_shape_vec((size[0] as usize, size[1] as usize), flat).map_err(|e| {
        ModelError::Shape {
            species: String::new(),
            what: e.to_string(),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dropout_mask_drops_a_fraction_p_and_scales_the_rest() {
        let (n, p) = (1 << 20, 0.1);
        let mask = |seed| {
            let mut m = vec![0f32; n];
            fill_dropout_mask(&mut m, p, seed);
            m
        };
        let (mask, again, other) = (mask(42), mask(42), mask(43));
        let kept: Vec<&f32> = mask.iter().filter(|&&m| m != 0.0).collect();
        let dropped = 1.0 - kept.len() as f64 / n as f64;
        assert!((dropped - p).abs() < 2e-3, "dropped {dropped}, want {p}");
        assert!(kept.iter().all(|&&m| m == (1.0 / (1.0 - p)) as f32));
        assert_eq!(mask, again, "same seed, same mask");
        assert_ne!(mask, other, "another seed, another mask");
    }

    #[test]
    fn dropout_follows_libtorch_seed_and_is_identity_in_eval() {
        let _rng = crate::model::torch_rng();
        let x = Tensor::ones([64, 100], (Kind::Float, Device::Cpu));
        let draw = || {
            tch::manual_seed(7);
            dropout(&x, 0.1, true)
        };
        assert!(draw().equal(&draw()), "tch::manual_seed fixes the mask");
        assert!(dropout(&x, 0.1, false).equal(&x));
        let mean = draw().mean(Kind::Float).double_value(&[]);
        assert!(
            (mean - 1.0).abs() < 0.05,
            "inverted dropout keeps the mean: {mean}"
        );
    }
}
