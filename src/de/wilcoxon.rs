//! Wilcoxon rank-sum tests of every feature (column) of a cells x features matrix between groups
//! of cells, with scanpy's `rank_genes_groups(method="wilcoxon", tie_correct=True,
//! corr_method="benjamini-hochberg")` semantics (scanpy 1.11, `_rank_genes_groups.py`):
//!
//! - **vs rest**: each feature is ranked once over all `n` cells (average ranks for ties); for a
//!   group of `n₁` cells with rank sum `R`, `z = (R − n₁(n+1)/2) / sqrt(T·n₁(n−n₁)(n+1)/12)` where
//!   `T = 1 − Σ(t³ − t)/(n³ − n)` over the tie blocks of the feature (scipy's `tiecorrect`);
//! - **vs a reference group** of `n₂` cells: ranks over the group's and the reference's cells
//!   only, `n = n₁ + n₂`, `T` over those;
//! - `z = 0` where it is undefined (every value tied), two-sided `p = 2·Φ(−|z|) = erfc(|z|/√2)`,
//!   `p_adj`: Benjamini-Hochberg over the features of one group (statsmodels `fdr_bh`);
//! - `logfc = log2((expm1(mean₁) + 1e-9) / (expm1(mean₂) + 1e-9))`, means over the group's and the
//!   rest's (or the reference's) cells: scanpy's definition, which reads the values as `ln(1+x)`.
//!
//! Pure and in memory; parallel (rayon) over features, or over (group, feature) pairs.

use ndarray::ArrayView2;
use rayon::prelude::*;

/// What each tested group is compared with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reference {
    /// All cells outside the group.
    Rest,
    /// The cells of this group.
    Group(usize),
}

/// One group's statistics, one entry per feature.
#[derive(Debug, Clone, PartialEq)]
pub struct GroupTest {
    /// The group.
    pub group: usize,
    /// z-scores.
    pub scores: Vec<f64>,
    /// log2 fold changes.
    pub logfc: Vec<f64>,
    /// Two-sided p-values.
    pub pvals: Vec<f64>,
    /// Benjamini-Hochberg adjusted p-values.
    pub pvals_adj: Vec<f64>,
}

/// Tests every group of `tested` against `reference`. `x` is cells x features (finite values),
/// `groups[i]` the group of cell `i` (below `n_groups`); every tested group and the reference
/// need at least one cell, and the tested groups must not include the reference.
/// `on_feature` is called once per feature ranked (progress).
pub fn rank_sum_tests(
    x: ArrayView2<'_, f32>,
    groups: &[usize],
    n_groups: usize,
    tested: &[usize],
    reference: Reference,
    on_feature: &(dyn Fn() + Sync),
) -> Vec<GroupTest> {
    let members = members(groups, n_groups);
    let sums = match reference {
        Reference::Rest => sums_vs_rest(x, groups, &members, tested, on_feature),
        Reference::Group(r) => sums_vs_group(x, &members, tested, r, on_feature),
    };
    tested
        .iter()
        .zip(sums)
        .map(|(&g, sums)| {
            let scores: Vec<f64> = sums
                .iter()
                .map(|&(sum, tie, n1, n2)| z_score(sum, tie, n1, n2))
                .collect();
            let pvals: Vec<f64> = scores.iter().map(|&z| two_sided_p(z)).collect();
            let other: Vec<usize> = match reference {
                Reference::Rest => (0..groups.len()).filter(|&i| groups[i] != g).collect(),
                Reference::Group(r) => members[r].clone(),
            };
            let (mean1, mean2) = (column_means(x, &members[g]), column_means(x, &other));
            GroupTest {
                group: g,
                logfc: mean1
                    .iter()
                    .zip(&mean2)
                    .map(|(&a, &b)| log2_fold(a, b))
                    .collect(),
                pvals_adj: benjamini_hochberg(&pvals),
                scores,
                pvals,
            }
        })
        .collect()
}

/// Per feature: (rank sum, tie coefficient, n₁, n₂) of one tested group.
type RankSums = Vec<(f64, f64, usize, usize)>;

/// Each feature ranked once over all cells; every tested group's rank sums (parallel over
/// features).
fn sums_vs_rest(
    x: ArrayView2<'_, f32>,
    groups: &[usize],
    members: &[Vec<usize>],
    tested: &[usize],
    on_feature: &(dyn Fn() + Sync),
) -> Vec<RankSums> {
    let per_feature: Vec<(Vec<f64>, f64)> = (0..x.ncols())
        .into_par_iter()
        .map(|j| {
            let (ranks, tie) = average_ranks(x.column(j).iter().copied());
            let mut sums = vec![0.0; members.len()];
            for (&g, r) in groups.iter().zip(ranks) {
                sums[g] += r;
            }
            on_feature();
            (sums, tie)
        })
        .collect();
    tested
        .iter()
        .map(|&g| {
            let n1 = members[g].len();
            per_feature
                .iter()
                .map(|(sums, tie)| (sums[g], *tie, n1, groups.len() - n1))
                .collect()
        })
        .collect()
}

/// Each (tested group, feature) ranked over the group's and the reference's cells (parallel over
/// the pairs).
fn sums_vs_group(
    x: ArrayView2<'_, f32>,
    members: &[Vec<usize>],
    tested: &[usize],
    r: usize,
    on_feature: &(dyn Fn() + Sync),
) -> Vec<RankSums> {
    let n_features = x.ncols();
    let pairs: Vec<(usize, usize)> = tested
        .iter()
        .flat_map(|&g| (0..n_features).map(move |j| (g, j)))
        .collect();
    let flat: RankSums = pairs
        .par_iter()
        .map(|&(g, j)| {
            let column = x.column(j);
            let values = members[g].iter().chain(&members[r]).map(|&i| column[i]);
            let (ranks, tie) = average_ranks(values);
            let n1 = members[g].len();
            if g == tested[0] {
                on_feature();
            }
            (ranks[..n1].iter().sum(), tie, n1, members[r].len())
        })
        .collect();
    flat.chunks(n_features.max(1)).map(<[_]>::to_vec).collect()
}

/// The cells of each group, in order.
fn members(groups: &[usize], n_groups: usize) -> Vec<Vec<usize>> {
    let mut out = vec![Vec::new(); n_groups];
    for (i, &g) in groups.iter().enumerate() {
        out[g].push(i);
    }
    out
}

/// 1-based average ranks of `values` (ties share the mean of their ranks) and the tie
/// coefficient `1 − Σ(t³ − t)/(n³ − n)` (1 when fewer than two values).
pub fn average_ranks(values: impl Iterator<Item = f32>) -> (Vec<f64>, f64) {
    let values: Vec<f32> = values.collect();
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_unstable_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; n];
    let mut ties = 0.0;
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let rank = (start + end + 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = rank;
        }
        let t = (end - start) as f64;
        ties += t * t * t - t;
        start = end;
    }
    let size = n as f64;
    let tie = if n < 2 {
        1.0
    } else {
        1.0 - ties / (size * size * size - size)
    };
    (ranks, tie)
}

/// The rank-sum z-score of a group of `n1` cells with rank sum `sum` against `n2` others.
fn z_score(sum: f64, tie: f64, n1: usize, n2: usize) -> f64 {
    let (n1, n2) = (n1 as f64, n2 as f64);
    let std_dev = (tie * n1 * n2 * (n1 + n2 + 1.0) / 12.0).sqrt();
    let z = (sum - n1 * (n1 + n2 + 1.0) / 2.0) / std_dev;
    if z.is_nan() {
        0.0
    } else {
        z
    }
}

/// `2·Φ(−|z|)`: the two-sided normal p-value.
pub fn two_sided_p(z: f64) -> f64 {
    libm::erfc(z.abs() / std::f64::consts::SQRT_2)
}

/// Benjamini-Hochberg adjusted p-values (statsmodels `multipletests(method="fdr_bh")`): sorted
/// ascending, `p·n/i`, made monotone from the largest down, capped at 1; NaN counts as 1.
pub fn benjamini_hochberg(pvals: &[f64]) -> Vec<f64> {
    let n = pvals.len();
    let p = |i: usize| if pvals[i].is_nan() { 1.0 } else { pvals[i] };
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&a, &b| p(a).total_cmp(&p(b)));
    let mut adjusted = vec![0.0; n];
    let mut running = f64::INFINITY;
    for (position, &i) in order.iter().enumerate().rev() {
        running = running.min(p(i) * n as f64 / (position + 1) as f64);
        adjusted[i] = running.min(1.0);
    }
    adjusted
}

/// Per-column means (f64) over the rows `rows`.
fn column_means(x: ArrayView2<'_, f32>, rows: &[usize]) -> Vec<f64> {
    let mut sums = vec![0.0f64; x.ncols()];
    for &i in rows {
        for (s, &v) in sums.iter_mut().zip(x.row(i)) {
            *s += f64::from(v);
        }
    }
    let n = rows.len().max(1) as f64;
    sums.into_iter().map(|s| s / n).collect()
}

/// scanpy's log2 fold change of two means of `ln(1+x)` values.
fn log2_fold(mean1: f64, mean2: f64) -> f64 {
    ((mean1.exp_m1() + 1e-9) / (mean2.exp_m1() + 1e-9)).log2()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranks_average_ties_and_tie_coefficient() {
        let (ranks, tie) = average_ranks([3.0, 1.0, 3.0, 2.0, 3.0].into_iter());
        assert_eq!(ranks, vec![4.0, 1.0, 4.0, 2.0, 4.0]);
        // One block of 3: 1 - (27 - 3) / (125 - 5).
        assert!((tie - (1.0 - 24.0 / 120.0)).abs() < 1e-15);
        assert_eq!(average_ranks([7.0].into_iter()).1, 1.0);
    }

    #[test]
    fn benjamini_hochberg_is_monotone_and_capped() {
        // statsmodels: multipletests([0.01, 0.04, 0.03, 0.5], method="fdr_bh")[1]
        let adjusted = benjamini_hochberg(&[0.01, 0.04, 0.03, 0.5]);
        let expected = [0.04, 0.04 * 4.0 / 3.0, 0.04 * 4.0 / 3.0, 0.5];
        for (a, e) in adjusted.iter().zip(expected) {
            assert!((a - e).abs() < 1e-15, "{adjusted:?}");
        }
        assert_eq!(benjamini_hochberg(&[0.9, f64::NAN]), vec![1.0, 1.0]);
    }

    #[test]
    fn all_tied_feature_scores_zero_with_p_one() {
        let x = ndarray::Array2::<f32>::zeros((6, 1));
        let tests = rank_sum_tests(
            x.view(),
            &[0, 0, 0, 1, 1, 1],
            2,
            &[0],
            Reference::Rest,
            &|| {},
        );
        assert_eq!(tests[0].scores, vec![0.0]);
        assert_eq!(tests[0].pvals, vec![1.0]);
        assert_eq!(tests[0].logfc, vec![0.0]);
    }

    #[test]
    fn two_sided_p_of_196_is_five_percent() {
        assert!((two_sided_p(1.959_963_984_540_054) - 0.05).abs() < 1e-12);
        assert!((two_sided_p(-1.959_963_984_540_054) - 0.05).abs() < 1e-12);
    }
}
