//! The two auxiliary losses: the protein-similarity regulariser of pretraining (SATURN.md
//! section 5; [`anchored_regulariser`] for a species added later) and the triplet loss of
//! fine-tuning (section 6). Free functions; the training loops in [`super::train`] call them.
//! Pretraining uses [`anchored_regulariser_fused`], the regulariser with its gradient computed by
//! hand in one pass, instead of the tensor form [`anchored_regulariser`].

use super::triplet::Triplet;
use crate::index::distance::dot;
use crate::kernels::host::{cpu_f32, f32_data, with_gradients};
use crate::kernels::pool::map_parts;
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

/// [`anchored_regulariser`] with its gradient with respect to `q` computed by hand in one pass
/// over the anchors (what pretraining and `add-species` use): `e` is the protein embeddings as
/// [`UnitRows`], `partners` the partner `j(g)` of each anchor `first + i`. With `c = cos(Q_a, Q_b)`
/// and `d = c - cos(E_a, E_b)`, each pair adds `d^2` to `R` and
///
/// ```text
/// dR/dQ_a += 2 d (Q_b / (|Q_a| |Q_b|) - c Q_a / |Q_a|^2)      (and symmetrically to Q_b)
/// ```
/// Norms below `1e-8` are clamped as in `cosine_similarity` and then treated as constants.
pub fn anchored_regulariser_fused(
    q: &Tensor,
    e: &UnitRows,
    first: usize,
    partners: &[i64],
) -> Tensor {
    let (_, width) = q.size2().expect("gene vectors are genes x hidden");
    let q_data = cpu_f32(q);
    let rows: Vec<&[f32]> = f32_data(&q_data).chunks(width as usize).collect();
    let norms: Vec<f32> = rows.iter().map(|r| dot(r, r).sqrt().max(COS_EPS)).collect();
    // the dot products in parallel; the sums below in pair order, so the result is deterministic
    let chunks: Vec<(usize, &[i64])> = partners
        .chunks(PAIRS_PER_PART)
        .enumerate()
        .map(|(k, c)| (first + k * PAIRS_PER_PART, c))
        .collect();
    let cosines: Vec<Vec<(f32, f32)>> = map_parts(chunks, |_, (first, partners)| {
        let pairs = partners
            .iter()
            .enumerate()
            .map(|(i, &b)| (first + i, b as usize));
        pairs
            .map(|(a, b)| {
                let cos = dot(rows[a], rows[b]) / (norms[a] * norms[b]);
                (cos, cos - dot(e.row(a), e.row(b)))
            })
            .collect()
    });
    let mut grad = vec![0f32; rows.len() * width as usize];
    let mut value = 0f64;
    let pairs = partners
        .iter()
        .enumerate()
        .map(|(i, &b)| (first + i, b as usize));
    for ((a, b), (cos, d)) in pairs.zip(cosines.into_iter().flatten()) {
        let (norm_a, norm_b) = (norms[a], norms[b]);
        value += f64::from(d * d);
        let (cross, own) = (2.0 * d / (norm_a * norm_b), 2.0 * d * cos);
        for (row, other, norm) in [(a, b, norm_a), (b, a, norm_b)] {
            let own = own / (norm * norm);
            let target = &mut grad[row * width as usize..(row + 1) * width as usize];
            for ((t, &o), &s) in target.iter_mut().zip(rows[other]).zip(rows[row]) {
                *t += cross * o - own * s;
            }
        }
    }
    with_gradients(value, &[(q, &grad)])
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
    }
}
