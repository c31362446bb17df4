//! ESM-2's attention core by hand: rotary queries and keys, then `softmax(q k^T) v` for every
//! head of every sequence of a packed batch, on the CPU.
//!
//! libtorch's CPU `scaled_dot_product_attention` (a flash attention) multiplies blocks through its
//! BLAS; with ESM-2's narrow heads (16 dimensions in the 8M model, 24 to 128 in the others) those
//! products are small, and it reached about 110 GFLOP/s here against about 300 for the
//! projections, while attention is over half of the arithmetic of a 1,022-token protein in the
//! 8M model. Here one (sequence, head) pair is one part on libtorch's OpenMP threads
//! ([`crate::kernels::pool`]). Within it, sixteen queries at a time, one per vector lane, are
//! scored against eight keys at a time (one broadcast key value times the queries' vector per
//! dimension: eight independent FMA chains), the softmax is computed lane by lane with a
//! vectorised `exp` (no horizontal reductions), and the context is accumulated sixteen
//! dimensions at a time (one broadcast value times the queries' weights). Every key of a sequence
//! fits in the cache, so the softmax is exact in two passes (scores and their maximum, then
//! exponentials) instead of flash attention's running rescale. AVX-512 intrinsics where the CPU
//! has them (`benches/esm2.rs`, `attention_core`, t6 shapes: 0.70x the time of the rotary by
//! tensor operations + `scaled_dot_product_attention` for 1,022-token proteins, 0.54x for 128),
//! plain loops elsewhere.
//!
//! Sequences are *segments* of one token matrix: rows `start .. start + queries`, of which the
//! first `keys` may be attended to. A packed batch has `queries == keys` (no padding is computed);
//! a padded batch row has `queries` = its width and `keys` = its length, so padding positions get
//! what transformers computes for them (they attend to the real tokens).
//!
//! Reference: transformers `modeling_esm.py`, `EsmSelfAttention.forward` (queries scaled by
//! `head_dim^-0.5` before the rotation; `RotaryEmbedding`: `x * cos + rotate_half(x) * sin`).

use super::ProteinError;
use crate::kernels::host::{cpu_f32, f32_data, f32_data_mut};
use crate::kernels::pool::for_each_part;
use crate::kernels::vmath;
use tch::{Device, Kind, Tensor};

/// Lanes of one vector of scores or values (an AVX-512 register of `f32`).
const LANES: usize = 16;

/// One sequence in a token matrix: rows `start .. start + queries`; the first `keys` of them are
/// the ones attended to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Segment {
    /// First row.
    pub start: usize,
    /// Rows (tokens) whose attention output is computed.
    pub queries: usize,
    /// Leading rows that may be attended to (`1 ..= queries`).
    pub keys: usize,
}

impl Segment {
    /// A sequence of `len` tokens with no padding.
    pub fn packed(start: usize, len: usize) -> Self {
        Self {
            start,
            queries: len,
            keys: len,
        }
    }
}

/// Checks that `segments` cover rows `0 .. tokens` in order, each with `1 ..= queries` keys.
pub fn check_segments(segments: &[Segment], tokens: usize) -> Result<(), ProteinError> {
    let mut next = 0;
    for (i, s) in segments.iter().enumerate() {
        if s.start != next || s.keys == 0 || s.keys > s.queries {
            return Err(ProteinError::Options(format!(
                "sequence {i} of the batch (rows {} + {}, {} attended) does not follow row {next} \
                 or attends to no or too many tokens; a batch's sequences must tile its tokens",
                s.start, s.queries, s.keys
            )));
        }
        next += s.queries;
    }
    if next != tokens {
        return Err(ProteinError::Options(format!(
            "the batch's sequences cover {next} tokens, the token matrix has {tokens}"
        )));
    }
    Ok(())
}

/// The rotary angle tables, `[positions, head_dim]` each, as transformers builds them.
#[derive(Debug)]
pub struct RotaryTables {
    cos: Tensor,
    sin: Tensor,
    head_dim: usize,
}

impl RotaryTables {
    /// `cos` and `sin` as `[positions, head_dim]` tensors (any float kind; read as f32).
    pub fn new(cos: &Tensor, sin: &Tensor) -> Self {
        let head_dim = *cos
            .size()
            .last()
            .expect("a rotary table has a head dimension") as usize;
        let flat = |t: &Tensor| cpu_f32(&t.reshape([-1, head_dim as i64]));
        Self {
            cos: flat(cos),
            sin: flat(sin),
            head_dim,
        }
    }

    fn positions(&self) -> usize {
        self.cos.size()[0] as usize
    }

    /// The tables' data, readable from the parts.
    fn data(&self) -> Rotation<'_> {
        Rotation {
            cos: f32_data(&self.cos),
            sin: f32_data(&self.sin),
            head_dim: self.head_dim,
        }
    }
}

/// [`RotaryTables`]' data.
struct Rotation<'a> {
    cos: &'a [f32],
    sin: &'a [f32],
    head_dim: usize,
}

impl Rotation<'_> {
    /// `x * cos + rotate_half(x) * sin` at `position`, with `rotate_half(x) = [-x2, x1]` and `x`
    /// scaled by `scale` first (transformers scales the queries before the rotation), written
    /// transposed: dimension `c` to `out[c * stride + lane]`.
    fn rotate_into(&self, x: &[f32], scale: f32, position: usize, out: &mut [f32], lane: usize) {
        let (d, half) = (self.head_dim, self.head_dim / 2);
        let stride = out.len() / d;
        let (cos, sin) = (
            &self.cos[position * d..][..d],
            &self.sin[position * d..][..d],
        );
        let ((x1, x2), (cos1, cos2), (sin1, sin2)) = (
            x[..d].split_at(half),
            cos.split_at(half),
            sin.split_at(half),
        );
        let (out1, out2) = out.split_at_mut(half * stride);
        let firsts = x1
            .iter()
            .zip(cos1)
            .zip(sin1)
            .zip(out1.chunks_exact_mut(stride));
        let seconds = x2
            .iter()
            .zip(cos2)
            .zip(sin2)
            .zip(out2.chunks_exact_mut(stride));
        for ((((&a, &c1), &s1), o1), (((&b, &c2), &s2), o2)) in firsts.zip(seconds) {
            let (a, b) = (a * scale, b * scale);
            o1[lane] = a * c1 + -b * s1;
            o2[lane] = b * c2 + a * s2;
        }
    }
}

/// Multi-head attention output `[tokens, heads * head_dim]` (f32, CPU) of the projected queries,
/// keys and values `q`, `k`, `v` (`[tokens, heads * head_dim]`, before the rotation and the
/// scaling). Queries are scaled by `scale` and both are rotated with `rotary` at their position in
/// their segment. Panics if the segments do not tile the tokens (see [`check_segments`]) or a
/// segment is longer than the rotary tables.
pub fn attention(
    q: &Tensor,
    k: &Tensor,
    v: &Tensor,
    heads: usize,
    segments: &[Segment],
    rotary: &RotaryTables,
    scale: f32,
) -> Tensor {
    let (q, k, v) = (cpu_f32(q), cpu_f32(k), cpu_f32(v));
    let size = q.size();
    let (tokens, width) = (size[0] as usize, size[1] as usize);
    check_segments(segments, tokens).expect("the caller's segments tile the batch");
    assert_eq!(width, heads * rotary.head_dim, "width = heads x head_dim");
    let longest = segments.iter().map(|s| s.queries).max().unwrap_or(0);
    assert!(longest <= rotary.positions(), "rotary tables too short");
    let mut out = Tensor::empty([tokens as i64, width as i64], (Kind::Float, Device::Cpu));
    // SAFETY: `out` is a new contiguous f32 CPU tensor that nothing else references.
    let out_data = Shared(unsafe { f32_data_mut(&mut out) }.as_mut_ptr());
    let inputs = [f32_data(&q), f32_data(&k), f32_data(&v)];
    let (rotation, head_dim) = (rotary.data(), rotary.head_dim);
    // Parts in (segment, head) order: with round-robin parts, every thread gets its share of
    // every sequence's heads.
    for_each_part(segments.len() * heads, |part| {
        let (segment, head) = (&segments[part / heads], part % heads);
        let context = attend(inputs, width, head * head_dim, segment, &rotation, scale);
        let dims = context.len() / (segment.queries.div_ceil(LANES) * LANES);
        for (i, row) in context.chunks_exact(dims).take(segment.queries).enumerate() {
            let at = (segment.start + i) * width + head * head_dim;
            // SAFETY: part (segment, head) writes only rows `segment.start ..` (disjoint between
            // segments) at columns `head * head_dim ..` (disjoint between heads), inside `out`,
            // which outlives `for_each_part`; no one reads `out` until it returns.
            unsafe { std::ptr::copy_nonoverlapping(row.as_ptr(), out_data.at(at), head_dim) };
        }
    });
    out
}

/// The output pointer, shared by the parts, which write disjoint places.
struct Shared(*mut f32);
// SAFETY: see `attention`: each part writes its own rows and columns.
unsafe impl Sync for Shared {}

impl Shared {
    /// The pointer to element `at` (the caller keeps it inside the output).
    fn at(&self, at: usize) -> *mut f32 {
        self.0.wrapping_add(at)
    }
}

/// One head of one segment: the context, `queries padded x dims`, row by row.
fn attend(
    [q, k, v]: [&[f32]; 3],
    width: usize,
    column: usize,
    segment: &Segment,
    rotary: &Rotation<'_>,
    scale: f32,
) -> Vec<f32> {
    let d = rotary.head_dim;
    let dims = d.div_ceil(LANES) * LANES;
    let queries = segment.queries.div_ceil(LANES) * LANES;
    let keys = segment.keys.div_ceil(KEYS) * KEYS;
    let at = |i: usize| (segment.start + i) * width + column; // row i's head in q, k, v
                                                              // Panels, padded with zeros (see `Panels`): queries scaled and rotated, keys rotated, values.
    let mut q_panel = vec![0f32; queries * dims];
    let mut k_panel = vec![0f32; keys * dims];
    for (b, block) in q_panel.chunks_exact_mut(dims * LANES).enumerate() {
        for (l, i) in (b * LANES..segment.queries.min((b + 1) * LANES)).enumerate() {
            rotary.rotate_into(&q[at(i)..], scale, i, &mut block[..d * LANES], l);
        }
    }
    for (b, block) in k_panel.chunks_exact_mut(dims * KEYS).enumerate() {
        for (l, j) in (b * KEYS..segment.keys.min((b + 1) * KEYS)).enumerate() {
            rotary.rotate_into(&k[at(j)..], 1.0, j, &mut block[..d * KEYS], l);
        }
    }
    // Values are read in place (rows `width` apart) when a head fills whole vectors.
    let v_panel: Vec<f32>;
    let (values, v_stride) = if d == dims {
        (&v[at(0)..at(segment.keys - 1) + d], width)
    } else {
        let mut padded = vec![0f32; segment.keys * dims];
        for (j, row) in padded.chunks_exact_mut(dims).enumerate() {
            row[..d].copy_from_slice(&v[at(j)..at(j) + d]);
        }
        v_panel = padded;
        (&v_panel[..], dims)
    };
    let mut scores = vec![0f32; keys * LANES];
    let mut context = vec![0f32; queries * dims];
    let panels = Panels::new(&q_panel, &k_panel, (values, v_stride), dims, segment.keys);
    attend_panels(panels, &mut scores, &mut context);
    context
}

/// Keys scored together against a block of queries: KEYS independent accumulators keep both FMA
/// units busy (an FMA waits four cycles for its accumulator).
const KEYS: usize = 8;

/// `softmax(q k^T) v` of one (sequence, head) on its [`Panels`]. `scores` is scratch (`keys
/// padded to KEYS x LANES`), `out` the context, `queries padded x dims`, row by row. AVX-512
/// where the CPU has it, else the portable loops.
fn attend_panels(panels: Panels<'_>, scores: &mut [f32], out: &mut [f32]) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx512f") {
        // SAFETY: the CPU has AVX-512 F; `Panels::new` checked the panels' sizes.
        return unsafe { avx512::attend_panels(panels, scores, out) };
    }
    portable_attend_panels(panels, scores, out)
}

/// The three panels of one (sequence, head), zero-padded to `dims` (a multiple of [`LANES`])
/// dimensions, with their sizes checked:
/// - `q`: blocks of [`LANES`] queries, each `dims x LANES` (one vector per dimension holds it
///   for the block's queries), scaled and rotated;
/// - `k`: blocks of [`KEYS`] keys, each `dims x KEYS` (one dimension of the block's keys
///   side by side), rotated;
/// - `v`: `keys` rows of `dims` values, `v_stride` apart.
#[derive(Clone, Copy)]
struct Panels<'a> {
    q: &'a [f32],
    k: &'a [f32],
    v: &'a [f32],
    v_stride: usize,
    dims: usize,
    keys: usize,
}

impl<'a> Panels<'a> {
    fn new(
        q: &'a [f32],
        k: &'a [f32],
        (v, v_stride): (&'a [f32], usize),
        dims: usize,
        keys: usize,
    ) -> Self {
        assert!(dims.is_multiple_of(LANES) && q.len().is_multiple_of(LANES * dims) && keys > 0);
        assert!(k.len() == keys.div_ceil(KEYS) * KEYS * dims);
        assert!(v_stride >= dims && v.len() == (keys - 1) * v_stride + dims);
        Self {
            q,
            k,
            v,
            v_stride,
            dims,
            keys,
        }
    }

    /// Value row `j`.
    fn value(&self, j: usize) -> &'a [f32] {
        &self.v[j * self.v_stride..][..self.dims]
    }

    /// Query `l` of a block's dimension `c`.
    fn query(block: &[f32], c: usize, l: usize) -> f32 {
        block[c * LANES + l]
    }

    /// Key `j`'s dimension `c`.
    fn key(&self, j: usize, c: usize) -> f32 {
        self.k[(j / KEYS) * self.dims * KEYS + c * KEYS + j % KEYS]
    }
}

/// [`attend_panels`] in plain loops (CPUs without AVX-512), query by query.
fn portable_attend_panels(panels: Panels<'_>, scores: &mut [f32], out: &mut [f32]) {
    let Panels { q, dims, keys, .. } = panels;
    let scores = &mut scores[..keys];
    for (block, out) in q
        .chunks_exact(dims * LANES)
        .zip(out.chunks_exact_mut(dims * LANES))
    {
        for (l, o_row) in out.chunks_exact_mut(dims).enumerate() {
            for (j, s) in scores.iter_mut().enumerate() {
                *s = (0..dims).fold(0.0, |acc, c| {
                    Panels::query(block, c, l).mul_add(panels.key(j, c), acc)
                });
            }
            let max = scores.iter().fold(f32::NEG_INFINITY, |a, &b| a.max(b));
            let mut sum = 0.0;
            for s in scores.iter_mut() {
                *s = vmath::exp(*s - max);
                sum += *s;
            }
            o_row.fill(0.0);
            for (j, &p) in scores.iter().enumerate() {
                let v_row = panels.value(j);
                for (o, &x) in o_row.iter_mut().zip(v_row) {
                    *o = p.mul_add(x, *o);
                }
            }
            o_row.iter_mut().for_each(|o| *o /= sum);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    //! [`super::attend_panels`] with AVX-512 intrinsics, a block of sixteen queries at a time,
    //! one query per lane: scores `KEYS` keys at a time (one broadcast key value times one
    //! vector of the queries' values per dimension), softmax lane by lane, then sixteen output
    //! dimensions at a time (one broadcast value times the vector of the queries' weights).

    use super::{Panels, KEYS, LANES};
    use std::arch::x86_64::*;

    /// # Safety
    /// The CPU must have AVX-512 F; the panels' sizes are those [`Panels::new`] checks, `scores`
    /// holds at least `keys padded to KEYS x LANES` values and `out` as many as `q`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn attend_panels(panels: Panels<'_>, scores: &mut [f32], out: &mut [f32]) {
        let Panels {
            q,
            k,
            v,
            v_stride,
            dims,
            keys,
        } = panels;
        assert!(scores.len() >= keys.div_ceil(KEYS) * KEYS * LANES && out.len() == q.len());
        let s = scores.as_mut_ptr();
        let mut transposed = [0f32; LANES * LANES];
        for (qb, ob) in q
            .chunks_exact(dims * LANES)
            .zip(out.chunks_exact_mut(dims * LANES))
        {
            // Pass 1: scores of KEYS keys at a time (row j of `s`: key j against the block's
            // queries), and the queries' maxima.
            let mut max = _mm512_set1_ps(f32::NEG_INFINITY);
            for first in (0..keys).step_by(KEYS) {
                let mut acc = [zero(); KEYS];
                let (mut qp, mut kp) = (qb.as_ptr(), k.as_ptr().wrapping_add(first * dims));
                for _ in 0..dims {
                    let qc = _mm512_loadu_ps(qp);
                    for (t, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_fmadd_ps(bcast(kp.wrapping_add(t)), qc, *acc);
                    }
                    qp = qp.wrapping_add(LANES);
                    kp = kp.wrapping_add(KEYS);
                }
                for (t, acc) in acc.iter().enumerate().take(keys - first) {
                    max = _mm512_max_ps(max, *acc);
                    _mm512_storeu_ps(s.wrapping_add((first + t) * LANES), *acc);
                }
            }
            // Pass 2: numerators exp(s - max) in place and their sums, lane by lane.
            let mut sum = zero();
            let mut sp = s;
            for _ in 0..keys {
                let e = exp(_mm512_sub_ps(_mm512_loadu_ps(sp), max));
                _mm512_storeu_ps(sp, e);
                sum = _mm512_add_ps(sum, e);
                sp = sp.wrapping_add(LANES);
            }
            let inverse = _mm512_div_ps(_mm512_set1_ps(1.0), sum);
            // Pass 3: the numerator-weighted values, LANES dimensions at a time, then / sum,
            // stored transposed into the block's rows.
            for first in (0..dims).step_by(LANES) {
                let mut acc = [zero(); LANES];
                let (mut sp, mut vp) = (s.cast_const(), v.as_ptr().wrapping_add(first));
                for _ in 0..keys {
                    let p = _mm512_loadu_ps(sp);
                    for (c, acc) in acc.iter_mut().enumerate() {
                        *acc = _mm512_fmadd_ps(bcast(vp.wrapping_add(c)), p, *acc);
                    }
                    sp = sp.wrapping_add(LANES);
                    vp = vp.wrapping_add(v_stride);
                }
                for (c, acc) in acc.iter().enumerate() {
                    let at = transposed.as_mut_ptr().wrapping_add(c * LANES);
                    _mm512_storeu_ps(at, _mm512_mul_ps(*acc, inverse));
                }
                for (l, row) in ob.chunks_exact_mut(dims).enumerate() {
                    for (c, o) in row[first..first + LANES].iter_mut().enumerate() {
                        *o = transposed[c * LANES + l];
                    }
                }
            }
        }
    }

    #[inline(always)]
    fn zero() -> __m512 {
        // SAFETY: only called from the AVX-512 functions above.
        unsafe { _mm512_setzero_ps() }
    }

    /// `*p` in every lane. Memory is only touched through intrinsics and pointers only moved
    /// with `wrapping_add` in this module: a dereference or `add` of a raw pointer gets a
    /// run-time check in the dev profile (debug assertions), which made the loops 2x slower.
    #[inline(always)]
    unsafe fn bcast(p: *const f32) -> __m512 {
        _mm512_broadcastss_ps(_mm_load_ss(p))
    }

    /// `e^x` on sixteen lanes for `x <= 0` (clamped at -87), with Cephes' polynomial as in
    /// [`crate::kernels::vmath::exp`], evaluated with FMA, and the power of two applied by
    /// `vscalefps` (within 2 ulp like it; fewer instructions).
    #[target_feature(enable = "avx512f")]
    fn exp(x: __m512) -> __m512 {
        use crate::kernels::vmath::{EXP_POLY, LN2_HI, LN2_LO};
        let x = _mm512_max_ps(x, _mm512_set1_ps(-87.0));
        // n = round(x / ln 2), r = x - n ln 2 (in two parts), e^x = 2^n e^r
        let n = _mm512_roundscale_ps::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(
            _mm512_mul_ps(x, _mm512_set1_ps(std::f32::consts::LOG2_E)),
        );
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_HI), x);
        let r = _mm512_fnmadd_ps(n, _mm512_set1_ps(LN2_LO), r);
        let p = EXP_POLY
            .iter()
            .fold(zero(), |acc, &c| _mm512_fmadd_ps(acc, r, _mm512_set1_ps(c)));
        let e_r = _mm512_add_ps(
            _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, r),
            _mm512_set1_ps(1.0),
        );
        _mm512_scalef_ps(e_r, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The same attention through libtorch's tensor operations, one segment at a time.
    fn reference(
        [q, k, v]: [&Tensor; 3],
        heads: i64,
        segments: &[Segment],
        (cos, sin): (&Tensor, &Tensor),
        scale: f64,
    ) -> Tensor {
        let d = q.size()[1] / heads;
        let rotate = |x: &Tensor, n: i64| {
            let halves = x.chunk(2, -1);
            let rotated = Tensor::cat(&[&(-&halves[1]), &halves[0]], -1);
            x * cos.narrow(0, 0, n).unsqueeze(1) + rotated * sin.narrow(0, 0, n).unsqueeze(1)
        };
        let parts: Vec<Tensor> = segments
            .iter()
            .map(|s| {
                let (start, n, keys) = (s.start as i64, s.queries as i64, s.keys as i64);
                let split = |t: &Tensor| t.narrow(0, start, n).view([n, heads, d]);
                let qs = rotate(&(split(q) * scale), n).transpose(0, 1);
                let ks = rotate(&split(k), n).transpose(0, 1).narrow(1, 0, keys);
                let vs = split(v).transpose(0, 1).narrow(1, 0, keys);
                let weights = qs.matmul(&ks.transpose(1, 2)).softmax(-1, Kind::Float);
                weights.matmul(&vs).transpose(0, 1).reshape([n, heads * d])
            })
            .collect();
        Tensor::cat(&parts, 0)
    }

    fn tables(positions: i64, d: i64) -> (Tensor, Tensor) {
        let exponent = Tensor::arange_start_step(0, d, 2, (Kind::Float, Device::Cpu)) / d as f64;
        let inv = Tensor::pow_scalar(10000.0, &exponent).reciprocal();
        let freqs = Tensor::arange(positions, (Kind::Float, Device::Cpu)).outer(&inv);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        (emb.cos(), emb.sin())
    }

    #[test]
    fn matches_tensor_attention_for_packed_and_padded_segments() {
        tch::manual_seed(7);
        // head sizes below, at and above one vector; segments shorter and longer than a block
        for (heads, d) in [(3, 8), (2, 16), (2, 24), (1, 64)] {
            let segments = [
                Segment::packed(0, 1),
                Segment::packed(1, 17),
                Segment {
                    start: 18,
                    queries: 40,
                    keys: 29,
                },
                Segment::packed(58, 70),
            ];
            let tokens = 128;
            let opts = (Kind::Float, Device::Cpu);
            let [q, k, v] = [0, 1, 2].map(|_| Tensor::randn([tokens, heads * d], opts) * 2.0);
            let (cos, sin) = tables(70, d);
            let scale = (d as f64).powf(-0.5);
            let rotary = RotaryTables::new(&cos, &sin);
            let ours = attention(&q, &k, &v, heads as usize, &segments, &rotary, scale as f32);
            let expected = reference([&q, &k, &v], heads, &segments, (&cos, &sin), scale);
            let diff = (&ours - &expected).abs().max().double_value(&[]);
            assert!(diff < 1e-5, "heads {heads} x {d}: max |diff| {diff}");
        }
    }

    #[test]
    fn portable_loops_match_the_dispatched_kernel() {
        // two query blocks, keys not a multiple of KEYS, two vectors per row, strided values
        let (dims, keys, stride) = (32usize, 37usize, 48usize);
        let values = |n: usize, seed: usize| -> Vec<f32> {
            (0..n)
                .map(|i| ((i * 7919 + seed) % 101) as f32 / 25.0 - 2.0)
                .collect()
        };
        let q = values(2 * LANES * dims, 1);
        let k = values(keys.div_ceil(KEYS) * KEYS * dims, 2);
        let v = values((keys - 1) * stride + dims, 3);
        let panels = Panels::new(&q, &k, (&v, stride), dims, keys);
        let run = |f: fn(Panels<'_>, &mut [f32], &mut [f32])| {
            let mut scores = vec![0f32; keys.div_ceil(KEYS) * KEYS * LANES];
            let mut out = vec![0f32; q.len()];
            f(panels, &mut scores, &mut out);
            out
        };
        let (dispatched, portable) = (run(attend_panels), run(portable_attend_panels));
        let diff = dispatched
            .iter()
            .zip(&portable)
            .map(|(a, b)| (a - b).abs())
            .fold(0f32, f32::max);
        assert!(diff < 1e-5, "max |diff| {diff}");
        assert!(portable.iter().any(|&x| x != 0.0));
    }

    #[test]
    fn segments_must_tile_the_tokens() {
        let ok = [Segment::packed(0, 3), Segment::packed(3, 2)];
        assert!(check_segments(&ok, 5).is_ok());
        assert!(check_segments(&ok, 6).is_err());
        let gap = [Segment::packed(0, 3), Segment::packed(4, 1)];
        assert!(check_segments(&gap, 5).is_err());
        let no_keys = [Segment {
            start: 0,
            queries: 2,
            keys: 0,
        }];
        assert!(check_segments(&no_keys, 2).is_err());
    }
}
