//! Initial gene-to-macrogene weights from centroid ranks (SATURN.md section 3).
//!
//! For every gene, the Euclidean distance to every centroid is ranked across centroids
//! (1 = nearest, ties averaged, as `scipy.stats.rankdata(method="average")`) and scored:
//!
//! * [`ScoreFunction::Default`]: `2 * ln(1 + 1/rank)^2` (rank 1 -> 0.960906, 2 -> 0.328804,
//!   3 -> 0.165522, 10 -> 0.018168); dense, no top-k;
//! * [`ScoreFunction::OneHot`]: 1 for rank 1, else 0;
//! * [`ScoreFunction::Smoothed`]: `1 / rank`.
//!
//! The result is macrogenes x genes (`M x G`), the layout of the network's `P = ln(W)`. A species
//! added later gets its columns by the same rule against the stored centroids.

use super::error::{MacrogeneError, Result};
use super::kmeans::to_tensor;
use ndarray::{Array2, ArrayView2, Axis};
use rayon::prelude::*;
use tch::Kind;

/// How a rank becomes an initial weight.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ScoreFunction {
    /// `2 * ln(1 + 1/rank)^2` (SATURN's default).
    #[default]
    Default,
    /// 1 for the nearest centroid, 0 elsewhere.
    OneHot,
    /// `1 / rank`.
    Smoothed,
}

impl ScoreFunction {
    /// The weight of a (possibly tie-averaged) rank.
    pub fn score(self, rank: f64) -> f64 {
        match self {
            Self::Default => 2.0 * (1.0 + 1.0 / rank).ln().powi(2),
            Self::OneHot => f64::from(u8::from(rank == 1.0)),
            Self::Smoothed => 1.0 / rank,
        }
    }
}

/// Euclidean distances (genes x centroids), in f64: `sqrt(max(0, |x|^2 - 2 x.c + |c|^2))`.
pub fn gene_centroid_distances(
    genes: ArrayView2<'_, f32>,
    centroids: ArrayView2<'_, f32>,
) -> Result<Array2<f64>> {
    let (g, d) = genes.dim();
    let (m, dc) = centroids.dim();
    if d != dc {
        return Err(MacrogeneError::Shape {
            what: format!("gene embeddings have {d} dims but the centroids have {dc}"),
        });
    }
    let torch = |source| MacrogeneError::Torch {
        context: "gene-centroid distances",
        source,
    };
    let x = to_tensor(genes).map_err(torch)?.to_kind(Kind::Double);
    let c = to_tensor(centroids).map_err(torch)?.to_kind(Kind::Double);
    let x_sq = x.square().sum_dim_intlist(1, true, Kind::Double);
    let c_sq = c
        .square()
        .sum_dim_intlist(1, false, Kind::Double)
        .unsqueeze(0);
    let dist = (x_sq - x.matmul(&c.tr()) * 2.0 + c_sq)
        .clamp_min(0.0)
        .sqrt();
    let flat: Vec<f64> = Vec::try_from(&dist.reshape([-1])).map_err(torch)?;
    Array2::from_shape_vec((g, m), flat).map_err(|e| MacrogeneError::Shape {
        what: e.to_string(),
    })
}

/// Ranks every row of `values` (1 = smallest; ties get the average of their ranks).
pub fn ranks_average(values: ArrayView2<'_, f64>) -> Array2<f64> {
    let mut out = Array2::zeros(values.dim());
    out.axis_iter_mut(Axis(0))
        .into_par_iter()
        .zip(values.axis_iter(Axis(0)))
        .for_each(|(mut o, row)| {
            let mut order: Vec<usize> = (0..row.len()).collect();
            order.sort_by(|&a, &b| row[a].total_cmp(&row[b]));
            let mut i = 0;
            while i < order.len() {
                let mut j = i;
                while j + 1 < order.len() && row[order[j + 1]] == row[order[i]] {
                    j += 1;
                }
                let rank = (i + j) as f64 / 2.0 + 1.0;
                for &k in &order[i..=j] {
                    o[k] = rank;
                }
                i = j + 1;
            }
        });
    out
}

/// Initial weights `M x G` from a genes x centroids distance matrix.
pub fn rank_weights(distances: ArrayView2<'_, f64>, score: ScoreFunction) -> Result<Array2<f32>> {
    if let Some((k, _)) = distances.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        let m = distances.ncols();
        return Err(MacrogeneError::NonFinite {
            what: "gene-centroid distances",
            row: k / m,
            col: k % m,
        });
    }
    let ranks = ranks_average(distances);
    Ok(Array2::from_shape_fn(
        (ranks.ncols(), ranks.nrows()),
        |(m, g)| score.score(ranks[[g, m]]) as f32,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn default_scores_match_the_spec() {
        for (rank, want) in [
            (1.0, 0.960906),
            (2.0, 0.328804),
            (3.0, 0.165522),
            (10.0, 0.018168),
        ] {
            assert!((ScoreFunction::Default.score(rank) - want).abs() < 1e-6);
        }
    }

    #[test]
    fn ties_are_averaged() {
        let r = ranks_average(array![[3.0, 1.0, 3.0, 0.5]].view());
        assert_eq!(r, array![[3.5, 2.0, 3.5, 1.0]]);
    }
}
