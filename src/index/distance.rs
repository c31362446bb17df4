//! Cosine distance `1 - a·b / (|a||b|)` for vectors of any length ([`cosine_distance`]: exact
//! search, evaluation), [`dot`] and [`normalized`], as f32 sums over eight independent lanes that
//! the compiler vectorises. (The HNSW graph normalises every vector once when it enters the
//! index, so its distance is one dot product: hnsw_rs' `simd::dot_f32`.)
//!
//! hnsw_rs' own `DistCosine` sums three f64 products one element at a time.

/// Lanes of the partial sums (two AVX registers of f32, or four SSE ones).
const LANES: usize = 8;

/// `v / |v|`; `v` must be non-zero (the index refuses zero vectors before this).
pub fn normalized(v: &[f32]) -> Vec<f32> {
    let norm = dot(v, v).sqrt();
    v.iter().map(|x| x / norm).collect()
}

/// Cosine distance of vectors of any non-zero length, in [0, 2]; 0 when either is zero (as
/// hnsw_rs' `DistCosine`).
pub fn cosine_distance(a: &[f32], b: &[f32]) -> f32 {
    let [ab, aa, bb] = sums(a, b, |x, y| [x * y, x * x, y * y]);
    if aa > 0.0 && bb > 0.0 {
        (1.0 - ab / (aa * bb).sqrt()).clamp(0.0, 2.0)
    } else {
        0.0
    }
}

/// `a·b`.
#[inline(always)]
pub fn dot(a: &[f32], b: &[f32]) -> f32 {
    let [ab] = sums(a, b, |x, y| [x * y]);
    ab
}

/// The sums over `i` of `terms(a[i], b[i])`, accumulated in [`LANES`] independent partial sums.
#[inline(always)]
fn sums<const N: usize>(a: &[f32], b: &[f32], terms: impl Fn(f32, f32) -> [f32; N]) -> [f32; N] {
    assert_eq!(a.len(), b.len(), "vectors of different dimensions");
    let mut acc = [[0.0f32; LANES]; N];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let (a_rest, b_rest) = (a_chunks.remainder(), b_chunks.remainder());
    for (ca, cb) in a_chunks.zip(b_chunks) {
        for lane in 0..LANES {
            let t = terms(ca[lane], cb[lane]);
            for (s, v) in acc.iter_mut().zip(t) {
                s[lane] += v;
            }
        }
    }
    let mut total = acc.map(|lanes| lanes.iter().sum::<f32>());
    for (&x, &y) in a_rest.iter().zip(b_rest) {
        for (s, v) in total.iter_mut().zip(terms(x, y)) {
            *s += v;
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use hnsw_rs::prelude::{DistCosine, Distance};
    use rand::{Rng, SeedableRng};

    #[test]
    fn agrees_with_hnsw_rs_cosine() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        for dim in [1, 7, 8, 9, 64, 256, 259] {
            let a: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let b: Vec<f32> = (0..dim).map(|_| rng.random_range(-1.0..1.0)).collect();
            let reference = DistCosine.eval(&a, &b);
            assert!(
                (cosine_distance(&a, &b) - reference).abs() < 1e-5,
                "dim {dim}"
            );
            let unit = 1.0 - dot(&normalized(&a), &normalized(&b));
            assert!((unit - reference).abs() < 1e-5, "dim {dim}");
        }
    }

    #[test]
    fn bounds_and_zero_vectors() {
        let v = [3.0, -4.0, 0.5];
        let minus: Vec<f32> = v.iter().map(|x| -x).collect();
        assert!((cosine_distance(&v, &minus) - 2.0).abs() < 1e-6);
        assert_eq!(cosine_distance(&v, &[0.0; 3]), 0.0);
        assert!((dot(&normalized(&v), &normalized(&v)) - 1.0).abs() < 1e-6);
    }
}
