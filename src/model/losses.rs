//! The two auxiliary losses: the protein-similarity regulariser of pretraining (SATURN.md
//! section 5; [`anchored_regulariser`] for a species added later) and the triplet loss of
//! fine-tuning (section 6). Free functions; the training loops in [`super::train`] call them.
//! Pretraining uses [`anchored_regulariser_fused`], the regulariser with its gradient computed by
//! hand in one pass, instead of the tensor form [`anchored_regulariser`].

use super::triplet::Triplet;
use crate::index::distance::dot;
use crate::kernels::host::{cpu_f32, f32_data, new_f32, with_gradients};
use crate::kernels::pool::map_parts;
use crate::kernels::simd::widest;
use ndarray::ArrayView2;
use tch::{Kind, Tensor};

/// Gene pairs per parallel part of [`anchored_regulariser_fused`].
const PAIRS_PER_PART: usize = 256;

/// The `eps` of `torch.nn.functional.cosine_similarity` as the regulariser calls it.
const COS_EPS: f32 = 1e-8;

/// Protein-similarity regulariser `R`.
///
/// ```text
/// R = sum_g ( cos(Q_g, Q_j(g)) - cos(E_g, E_j(g)) )^2
/// ```
/// `q`: one learned vector per gene (`Q = full_block(M, 256)(W^T)`, G x 256); `e`: the protein
/// embeddings (G x D); `partners`: the random partner `j(g)` of every gene (int64, length G).
/// Cosine as `torch.nn.functional.cosine_similarity` (eps 1e-8).
pub fn protein_similarity_regulariser(q: &Tensor, e: &Tensor, partners: &Tensor) -> Tensor {
    anchored_regulariser(q, e, 0, partners)
}

/// `R` summed over the genes `first .. first + partners.len()` only (a species added later),
/// each against its partner `partners[i]`, which may be any of the rows of `q` and `e`.
pub fn anchored_regulariser(q: &Tensor, e: &Tensor, first: i64, partners: &Tensor) -> Tensor {
    let n = partners.size()[0];
    let (qa, ea) = (q.narrow(0, first, n), e.narrow(0, first, n));
    let cos_q = Tensor::cosine_similarity(&qa, &q.index_select(0, partners), 1, 1e-8);
    let cos_e = Tensor::cosine_similarity(&ea, &e.index_select(0, partners), 1, 1e-8);
    (cos_q - cos_e).square().sum(Kind::Float)
}

/// Rows of a matrix divided by their norm (at least [`COS_EPS`]), as `cosine_similarity`
/// normalises its inputs: the protein embeddings of [`anchored_regulariser_fused`], normalised once
/// per training run instead of every batch.
#[derive(Debug, Clone)]
pub struct UnitRows {
    data: Vec<f32>,
    width: usize,
}

impl UnitRows {
    /// Normalises every row of `m`.
    pub fn new(m: ArrayView2<'_, f32>) -> Self {
        let width = m.ncols();
        let mut data = Vec::with_capacity(m.len());
        for row in m.rows() {
            let norm = row.dot(&row).sqrt().max(COS_EPS);
            data.extend(row.iter().map(|v| v / norm));
        }
        Self { data, width }
    }

    fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.width..(i + 1) * self.width]
    }
}

/// [`anchored_regulariser`] with its gradient with respect to `q` computed by hand (what
/// pretraining and `add-species` use): `e` is the protein embeddings as [`UnitRows`], `partners`
/// the partner `j(g)` of each anchor `first + i`. With `c = cos(Q_a, Q_b)` and
/// `d = c - cos(E_a, E_b)`, each pair adds `d^2` to `R` and
///
/// ```text
/// dR/dQ_a += 2 d (Q_b / (|Q_a| |Q_b|) - c Q_a / |Q_a|^2)      (and symmetrically to Q_b)
/// ```
/// Norms below `1e-8` are clamped as in `cosine_similarity` and then treated as constants.
///
/// Both passes run in parallel and are deterministic: the cosines part by part of the pairs, then
/// the gradient part by part of its rows, each part adding the pairs' terms to its rows in pair
/// order (the order of one serial pass), so no two threads write one row and the sums do not
/// depend on the number of threads.
pub fn anchored_regulariser_fused(
    q: &Tensor,
    e: &UnitRows,
    first: usize,
    partners: &[i64],
) -> Tensor {
    let (n_rows, width) = q.size2().expect("gene vectors are genes x hidden");
    let width = width as usize;
    let q_data = cpu_f32(q);
    let rows: Vec<&[f32]> = f32_data(&q_data).chunks(width).collect();
    let norms: Vec<f32> = rows.iter().map(|r| row_norm(r)).collect();
    let chunks: Vec<(usize, &[i64])> = partners
        .chunks(PAIRS_PER_PART)
        .enumerate()
        .map(|(k, c)| (first + k * PAIRS_PER_PART, c))
        .collect();
    let pairs: Vec<Pair> = map_parts(chunks, |_, (first, partners)| {
        let anchors = first..first + partners.len();
        anchors
            .zip(partners)
            .map(|(a, &b)| Pair::new(a, b as usize, &rows, &norms, e))
            .collect::<Vec<_>>()
    })
    .into_iter()
    .flatten()
    .collect();
    let value: f64 = pairs.iter().map(|p| f64::from(p.d * p.d)).sum();
    let grad = new_f32(&[n_rows, width as i64], |grad| {
        let blocks = grad.chunks_mut(ROWS_PER_PART * width).collect();
        map_parts(blocks, |k, block: &mut [f32]| {
            block.fill(0.0);
            let own = k * ROWS_PER_PART..k * ROWS_PER_PART + block.len() / width;
            for p in &pairs {
                for (row, other) in [(p.a, p.b), (p.b, p.a)] {
                    if own.contains(&row) {
                        let target = &mut block[(row - own.start) * width..][..width];
                        let (cross, scaled_own) = p.coefficients(row, &norms);
                        add_pair_term(target, rows[other], rows[row], cross, scaled_own);
                    }
                }
            }
        });
    });
    with_gradients(value, &[(q, grad)])
}

/// Gradient rows per parallel part of [`anchored_regulariser_fused`].
const ROWS_PER_PART: usize = 256;

/// One gene pair of the regulariser: anchor `a`, partner `b`, the cosine `cos` of their gene
/// vectors and its difference `d` from their protein embeddings' cosine.
struct Pair {
    a: usize,
    b: usize,
    cos: f32,
    d: f32,
}

impl Pair {
    fn new(a: usize, b: usize, rows: &[&[f32]], norms: &[f32], e: &UnitRows) -> Self {
        let cos = lane_dot(rows[a], rows[b]) / (norms[a] * norms[b]);
        let d = cos - lane_dot(e.row(a), e.row(b));
        Self { a, b, cos, d }
    }

    /// The factors of the pair's term in the gradient of `row` (`a` or `b`):
    /// `2 d / (|Q_a| |Q_b|)` for the other row and `2 d c / |Q_row|^2` for its own.
    fn coefficients(&self, row: usize, norms: &[f32]) -> (f32, f32) {
        let cross = 2.0 * self.d / (norms[self.a] * norms[self.b]);
        let norm = norms[row];
        (cross, 2.0 * self.d * self.cos / (norm * norm))
    }
}

/// `|v|`, at least [`COS_EPS`].
fn row_norm(v: &[f32]) -> f32 {
    lane_dot(v, v).sqrt().max(COS_EPS)
}

widest! {
    /// `a . b` ([`dot`], compiled for the widest vectors).
    fn lane_dot(a: &[f32], b: &[f32]) -> f32 {
        dot(a, b)
    }
}

widest! {
    /// `target += cross * other - own * row`, entry by entry.
    fn add_pair_term(target: &mut [f32], other: &[f32], row: &[f32], cross: f32, own: f32) {
        for ((t, &o), &s) in target.iter_mut().zip(other).zip(row) {
            *t += cross * o - own * s;
        }
    }
}

/// Triplet margin loss on cosine similarities of L2-normalised embeddings `z` (B x d):
///
/// ```text
/// l_t  = relu( S(a, n) - S(a, p) + margin ),   S(u, v) = z_u . z_v
/// loss = mean of l_t over the triplets with l_t > 0   (0 when there is none)
/// ```
/// (pytorch-metric-learning's `TripletMarginLoss` with `CosineSimilarity` and its default
/// `AvgNonZeroReducer`.)
pub fn triplet_loss(z: &Tensor, triplets: &[Triplet], margin: f64) -> Tensor {
    if triplets.is_empty() {
        return Tensor::zeros([], (Kind::Float, z.device()));
    }
    let idx = |f: fn(&Triplet) -> usize| {
        Tensor::from_slice(&triplets.iter().map(|t| f(t) as i64).collect::<Vec<_>>())
            .to_device(z.device())
    };
    let (a, p, n) = (
        z.index_select(0, &idx(|t| t.anchor)),
        z.index_select(0, &idx(|t| t.positive)),
        z.index_select(0, &idx(|t| t.negative)),
    );
    let sap = (&a * &p).sum_dim_intlist(1, false, Kind::Float);
    let san = (&a * &n).sum_dim_intlist(1, false, Kind::Float);
    let l = (san - sap + margin).relu();
    let n_pos = l.gt(0.0).sum(Kind::Float);
    l.sum(Kind::Float) / n_pos.clamp_min(1.0)
}

/// The distinct cells of some triplets (ascending) and the triplets re-indexed into that list:
/// the loss of the re-indexed triplets on those rows of `z` equals the loss on all of `z`, and
/// only those rows get a gradient.
pub fn triplet_rows(triplets: &[Triplet]) -> (Vec<i64>, Vec<Triplet>) {
    let mut rows: Vec<usize> = triplets
        .iter()
        .flat_map(|t| [t.anchor, t.positive, t.negative])
        .collect();
    rows.sort_unstable();
    rows.dedup();
    let at = |i: usize| rows.binary_search(&i).expect("a row of the triplets");
    let remapped = triplets
        .iter()
        .map(|t| Triplet {
            anchor: at(t.anchor),
            positive: at(t.positive),
            negative: at(t.negative),
        })
        .collect();
    (rows.iter().map(|&r| r as i64).collect(), remapped)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::Array2;
    use tch::Device;

    /// Anchors in the middle of the genes (a species added later), partners anywhere, some pairs
    /// of a gene with itself: value and gradient against autograd through the tensor form.
    #[test]
    fn fused_regulariser_matches_autograd_of_the_tensor_form() {
        let _rng = crate::model::torch_rng();
        tch::manual_seed(5);
        // more pairs than one parallel part holds, so the parts' order matters
        let (genes, hidden, dim) = (600, 24, 17);
        let q = Tensor::randn([genes, hidden], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let e = Tensor::randn([genes, dim], (Kind::Float, Device::Cpu));
        let (first, n) = (10usize, 2 * PAIRS_PER_PART + 13);
        let mut partners: Vec<i64> = (0..n as i64).map(|i| (i * 7 + 3) % genes).collect();
        partners[0] = first as i64; // a gene paired with itself
        let e_rows: Vec<f32> = Vec::try_from(&e.view([-1])).unwrap();
        let e_unit = UnitRows::new(
            Array2::from_shape_vec((genes as usize, dim as usize), e_rows)
                .unwrap()
                .view(),
        );
        let grad = |r: Tensor| {
            let d = Tensor::run_backward(&[r.shallow_clone()], &[&q], false, false).remove(0);
            (r.double_value(&[]), d)
        };
        let (want, want_d) = grad(anchored_regulariser(
            &q,
            &e,
            first as i64,
            &Tensor::from_slice(&partners),
        ));
        let (got, got_d) = grad(anchored_regulariser_fused(&q, &e_unit, first, &partners));
        assert!((got - want).abs() <= 1e-5 * want.abs(), "R {got} vs {want}");
        let err = (&got_d - &want_d).abs().max().double_value(&[]);
        assert!(err <= 1e-5, "dR/dQ: max error {err}");
        // rows are summed in pair order by one part each: one thread and four give the same bits
        let before = tch::get_num_threads();
        let run = |threads| {
            tch::set_num_threads(threads); // the OpenMP threads the parts run on
            grad(anchored_regulariser_fused(&q, &e_unit, first, &partners))
        };
        let ((one, one_d), (four, four_d)) = (run(1), run(4));
        tch::set_num_threads(before);
        assert_eq!(one.to_bits(), four.to_bits());
        assert!(
            one_d.equal(&four_d),
            "the gradient depends on the thread count"
        );
    }
}
