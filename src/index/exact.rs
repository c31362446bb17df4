//! Exact (brute-force) cosine kNN: the fallback for small filtered subsets, and the reference
//! the HNSW recall is measured against.

use super::distance::cosine_distance;
use std::cmp::Ordering;

/// One search result: a cell and its cosine distance to the query.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Hit {
    /// The cell.
    pub cell_id: i64,
    /// Cosine distance `1 - a·b / (|a||b|)`, in [0, 2].
    pub distance: f32,
}

/// Orders hits nearest first; equal distances by cell id, so results are deterministic.
pub fn by_distance(a: &Hit, b: &Hit) -> Ordering {
    a.distance
        .total_cmp(&b.distance)
        .then(a.cell_id.cmp(&b.cell_id))
}

/// The `k` candidates nearest to `query` by cosine distance ([`cosine_distance`], equal to the
/// index's distance up to f32 rounding), nearest first. Fewer than `k` when there are fewer candidates.
pub fn exact_knn<'a>(
    candidates: impl IntoIterator<Item = (i64, &'a [f32])>,
    query: &[f32],
    k: usize,
) -> Vec<Hit> {
    let mut hits: Vec<Hit> = candidates
        .into_iter()
        .map(|(cell_id, v)| Hit {
            cell_id,
            distance: cosine_distance(query, v),
        })
        .collect();
    if hits.len() > k && k > 0 {
        hits.select_nth_unstable_by(k - 1, by_distance);
    }
    hits.truncate(k);
    hits.sort_by(by_distance);
    hits
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nearest_first_and_truncated() {
        let points: Vec<(i64, Vec<f32>)> = vec![
            (1, vec![1.0, 0.0]),
            (2, vec![0.0, 1.0]),
            (3, vec![1.0, 0.1]),
            (4, vec![-1.0, 0.0]),
        ];
        let hits = exact_knn(
            points.iter().map(|(i, v)| (*i, v.as_slice())),
            &[1.0, 0.0],
            3,
        );
        let ids: Vec<i64> = hits.iter().map(|h| h.cell_id).collect();
        assert_eq!(ids, vec![1, 3, 2]);
        assert!(hits[0].distance.abs() < 1e-6);
        assert!((hits[2].distance - 1.0).abs() < 1e-6);
        assert_eq!(
            exact_knn(
                points.iter().map(|(i, v)| (*i, v.as_slice())),
                &[1.0, 0.0],
                10
            )
            .len(),
            4
        );
    }
}
