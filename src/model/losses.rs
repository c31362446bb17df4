//! The two auxiliary losses: the protein-similarity regulariser of pretraining (SATURN.md
//! section 5; [`anchored_regulariser`] for a species added later) and the triplet loss of
//! fine-tuning (section 6). Free functions; the training loops in [`super::train`] call them.

use super::triplet::Triplet;
use tch::{Kind, Tensor};

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
