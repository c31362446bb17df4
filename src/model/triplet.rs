//! The cross-species semi-hard triplet miner of fine-tuning (SATURN.md section 6).
//!
//! Inputs: the cosine-similarity matrix `S` of one batch (row-major, B x B), a label id per cell
//! (labels are species-specific: every label belongs to one species) and a species id per cell.
//! For each label `L` in the batch, in ascending id order, with cells `P` (ascending) of species `s`:
//!
//! 1. for each `p` in `P`, `n(p)` = the most similar cell of another species; `n(p)` is kept only if
//!    its most similar cell within `s` has label `L` (the label-level mutual check);
//! 2. `P+ = P` plus the kept `n(p)` (a set, ascending); skip `L` if `|P+| < 2`;
//! 3. for each species `sp` of `P+` (ascending): every anchor `a` in `P+` of `sp` (ascending) gets a
//!    positive drawn uniformly from `P+` outside `sp`, then a negative drawn uniformly from the
//!    cells of `a`'s or `p`'s species whose label is neither `a`'s nor `p`'s (ascending order);
//!    no positive or no negative candidate: the anchor is skipped, nothing is drawn;
//! 4. the triplet is kept if it is semi-hard: `0 < S(a,p) - S(a,n) <= margin`.
//!
//! Ties in "most similar" go to the lowest index (as `argmax`). Random draws come from the
//! caller as uniforms in `[0, 1)`, index `floor(u * len)`, in exactly the order above: the
//! training loop passes a seeded RNG, the parity test the draws of the Python reference.

use crate::kernels::pool::map_parts;
use std::cmp::Ordering;
use std::collections::HashMap;

/// Rows of `S` per parallel part of the nearest-cell pass.
const ROWS_PER_PART: usize = 64;

/// One (anchor, positive, negative) triplet of batch indices.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Triplet {
    /// The anchor cell.
    pub anchor: usize,
    /// A cell of another species that belongs to the anchor's group `P+`.
    pub positive: usize,
    /// A cell of the anchor's or the positive's species with neither of their labels.
    pub negative: usize,
}

/// Mines the semi-hard cross-species triplets of one batch (see the module doc).
///
/// `sim` is the B x B similarity matrix, `labels` and `species` have length B, `draw` returns
/// uniforms in `[0, 1)`. Never fails: a batch without usable structure yields no triplets.
pub fn mine_triplets(
    sim: &[f32],
    labels: &[usize],
    species: &[usize],
    margin: f32,
    draw: &mut impl FnMut() -> f64,
) -> Vec<Triplet> {
    let b = labels.len();
    debug_assert_eq!(sim.len(), b * b);
    debug_assert_eq!(species.len(), b);
    let s = |i: usize, j: usize| sim[i * b + j];
    let nearest = Nearest::new(sim, species);
    let pick = |cands: &[usize], draw: &mut dyn FnMut() -> f64| {
        let k = ((draw() * cands.len() as f64) as usize).min(cands.len() - 1);
        cands[k]
    };

    let mut distinct: Vec<usize> = labels.to_vec();
    distinct.sort_unstable();
    distinct.dedup();
    let mut out = Vec::new();
    // the negative candidates depend only on the anchor's and the positive's species and labels
    let mut negatives: HashMap<(usize, usize, usize, usize), Vec<usize>> = HashMap::new();
    for &label in &distinct {
        let members: Vec<usize> = (0..b).filter(|&i| labels[i] == label).collect();
        let sp = species[members[0]];
        let mut group = members.clone();
        for &p in &members {
            let Some(n) = nearest.outside(p, sp) else {
                continue;
            };
            if nearest
                .within(n, sp)
                .is_some_and(|back| labels[back] == label)
            {
                group.push(n);
            }
        }
        group.sort_unstable();
        group.dedup();
        if group.len() < 2 {
            continue;
        }
        let mut group_species: Vec<usize> = group.iter().map(|&i| species[i]).collect();
        group_species.sort_unstable();
        group_species.dedup();
        for &anchor_species in &group_species {
            let positives: Vec<usize> = group
                .iter()
                .copied()
                .filter(|&i| species[i] != anchor_species)
                .collect();
            if positives.is_empty() {
                continue;
            }
            for &a in group.iter().filter(|&&i| species[i] == anchor_species) {
                let p = pick(&positives, draw);
                let key = (species[a], species[p], labels[a], labels[p]);
                let negatives = negatives.entry(key).or_insert_with(|| {
                    (0..b)
                        .filter(|&j| {
                            (species[j] == key.0 || species[j] == key.1)
                                && labels[j] != key.2
                                && labels[j] != key.3
                        })
                        .collect()
                });
                if negatives.is_empty() {
                    continue;
                }
                let n = pick(negatives, draw);
                let gap = s(a, p) - s(a, n);
                if gap > 0.0 && gap <= margin {
                    out.push(Triplet {
                        anchor: a,
                        positive: p,
                        negative: n,
                    });
                }
            }
        }
    }
    out
}

/// Every cell's most similar cell of each species, found in one pass over `S`: the "most similar"
/// lookups of the miner without a scan of the batch each. Ties go to the lowest index, as
/// `argmax` (a scan that keeps the first of equal maxima).
struct Nearest<'a> {
    sim: &'a [f32],
    batch: usize,
    /// `best[i * n_species + s]`: cell `i`'s most similar cell of species `s`, if any.
    best: Vec<Option<usize>>,
    n_species: usize,
}

impl<'a> Nearest<'a> {
    fn new(sim: &'a [f32], species: &[usize]) -> Self {
        let n_species = species.iter().max().map_or(0, |&m| m + 1);
        let mut best = vec![None; species.len() * n_species];
        if n_species > 0 {
            // blocks of rows in parallel (on libtorch's threads, as the rest of training)
            let b = species.len();
            let blocks = best.chunks_mut(ROWS_PER_PART * n_species).collect();
            map_parts(blocks, |k, out| {
                let rows = sim[k * ROWS_PER_PART * b..].chunks(b);
                // the value of out[sp]; NaN, like no cell yet, is replaced by the next one
                // (as in `first_max`: replaced unless at least as large)
                let mut value = vec![f32::NAN; n_species];
                for (out, row) in out.chunks_mut(n_species).zip(rows) {
                    value.fill(f32::NAN);
                    for ((j, &sp), &v) in species.iter().enumerate().zip(row) {
                        if matches!(value[sp].partial_cmp(&v), None | Some(Ordering::Less)) {
                            (value[sp], out[sp]) = (v, Some(j));
                        }
                    }
                }
            });
        }
        Self {
            sim,
            batch: species.len(),
            best,
            n_species,
        }
    }

    /// Cell `i`'s most similar cell of species `s`.
    fn within(&self, i: usize, s: usize) -> Option<usize> {
        self.best[i * self.n_species + s]
    }

    /// Cell `i`'s most similar cell of any species but `s`: the best of the other species'
    /// nearest cells, taken in index order (so ties still go to the lowest index).
    fn outside(&self, i: usize, s: usize) -> Option<usize> {
        let row = &self.sim[i * self.batch..][..self.batch];
        let mut cands: Vec<usize> = (0..self.n_species)
            .filter(|&sp| sp != s)
            .filter_map(|sp| self.within(i, sp))
            .collect();
        cands.sort_unstable();
        cands
            .into_iter()
            .fold(None, |best, j| first_max(row, best, j))
    }
}

/// One step of an `argmax` scan of `row` in index order: `j` replaces `best` unless `best` is at
/// least as large.
fn first_max(row: &[f32], best: Option<usize>, j: usize) -> Option<usize> {
    match best {
        Some(k) if row[k] >= row[j] => Some(k),
        _ => Some(j),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_species_batch_gives_no_triplets() {
        let sim = vec![1.0; 9];
        let mut u = || 0.5;
        assert!(mine_triplets(&sim, &[0, 0, 1], &[0, 0, 0], 0.2, &mut u).is_empty());
    }

    #[test]
    fn mutual_nearest_cells_form_a_cross_species_triplet() {
        // cells: 0,1 species 0 (labels 0,1); 2,3 species 1 (labels 2,3); 0<->2 and 1<->3 similar
        #[rustfmt::skip]
        let sim = vec![
            1.0, 0.1, 0.9, 0.8,
            0.1, 1.0, 0.2, 0.9,
            0.9, 0.2, 1.0, 0.1,
            0.8, 0.9, 0.1, 1.0,
        ];
        // u = 0.9 always picks the last candidate: negative 3 for anchor 0 (gap 0.1, kept, once
        // from label 0 and once from label 2); every other gap is >= 0.7 (too easy, dropped).
        let mut u = || 0.9;
        let t = mine_triplets(&sim, &[0, 1, 2, 3], &[0, 0, 1, 1], 0.2, &mut u);
        let want = Triplet {
            anchor: 0,
            positive: 2,
            negative: 3,
        };
        assert_eq!(t, vec![want, want]);
    }

    /// The one-pass lookups against a scan of the whole row, on similarities with many ties.
    #[test]
    fn nearest_by_species_equals_a_scan_of_the_row() {
        let (b, n_species) = (2 * ROWS_PER_PART + 22, 3); // three parallel parts
        let species: Vec<usize> = (0..b).map(|i| (i * 7 % 5) % n_species).collect();
        // few distinct values, so ties are common
        let sim: Vec<f32> = (0..b * b)
            .map(|k| ((k * 31 + 7) % 6) as f32 / 5.0)
            .collect();
        let nearest = Nearest::new(&sim, &species);
        // the largest value, then the lowest index
        let scan = |i: usize, keep: &dyn Fn(usize) -> bool| {
            (0..b)
                .filter(|&j| keep(j))
                .min_by(|&j, &k| sim[i * b + k].total_cmp(&sim[i * b + j]).then(j.cmp(&k)))
        };
        for i in 0..b {
            for s in 0..n_species {
                assert_eq!(nearest.within(i, s), scan(i, &|j| species[j] == s));
                assert_eq!(nearest.outside(i, s), scan(i, &|j| species[j] != s));
            }
        }
    }
}
