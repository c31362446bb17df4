//! The pieces of the evaluation that need no atlas: the seeded 80/20 split, the cell-type
//! correspondence between two species, and the scores (accuracy, balanced accuracy, maximum
//! achievable accuracy) of predicted labels read through that correspondence.
//!
//! A correspondence is a set of allowed pairs `(label of species A, class of a B cell)`: a
//! prediction `p` (an A label) for a B cell of class `t` is correct iff `(p, t)` is allowed.
//! With an obs column (default `cell_ontology_class`), `t` is the B cell's value of that column
//! and each A label is allowed with exactly one class, the majority value of the column among the
//! A cells with that label. With a CSV (`{a}_cell_type`, `{b}_cell_type` columns), `t` is the B
//! cell's own label and the CSV rows are the allowed pairs.

use rand::{rngs::StdRng, seq::SliceRandom, SeedableRng};
use std::collections::{BTreeMap, HashSet};

/// Splits `0..n` into (train, test) with a seeded shuffle: `ceil(0.2 n)` test indices (as
/// scikit-learn's `train_test_split(test_size=0.2)`), both sorted. The same `n` and seed give
/// the same split.
pub fn split(n: usize, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut StdRng::seed_from_u64(seed));
    let n_test = (n as f64 * 0.2).ceil() as usize;
    let mut test = order[..n_test].to_vec();
    let mut train = order[n_test..].to_vec();
    test.sort_unstable();
    train.sort_unstable();
    (train, test)
}

/// Splits the cells of every label separately (seeded shuffle per label, labels in sorted order):
/// `ceil(0.2 n_label)` test cells of a label with at least 2 cells, none of a single-cell label,
/// so every label is in training in its proportion (SATURN's stratified `train_test_split`, not
/// scikit-learn's exact draw). Both lists sorted.
pub fn stratified_split(labels: &[String], seed: u64) -> (Vec<usize>, Vec<usize>) {
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (i, label) in labels.iter().enumerate() {
        by_label.entry(label).or_default().push(i);
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut cells in by_label.into_values() {
        cells.shuffle(&mut rng);
        let n_test = if cells.len() < 2 {
            0
        } else {
            (cells.len() as f64 * 0.2).ceil() as usize
        };
        test.extend_from_slice(&cells[..n_test]);
        train.extend_from_slice(&cells[n_test..]);
    }
    test.sort_unstable();
    train.sort_unstable();
    (train, test)
}

/// Allowed (A label, B class) pairs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Correspondence {
    allowed: HashSet<(String, String)>,
}

impl Correspondence {
    /// From explicit pairs (a CSV).
    pub fn from_pairs(pairs: impl IntoIterator<Item = (String, String)>) -> Correspondence {
        Correspondence {
            allowed: pairs.into_iter().collect(),
        }
    }

    /// From the A cells' (label, class) pairs: each label maps to its majority class (ties: the
    /// alphabetically first class). Cells without a class do not vote.
    pub fn majority<'a>(
        cells: impl IntoIterator<Item = (&'a str, Option<&'a str>)>,
    ) -> Correspondence {
        let mut votes: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
        for (label, class) in cells {
            if let Some(class) = class {
                *votes.entry(label).or_default().entry(class).or_default() += 1;
            }
        }
        let pairs = votes.into_iter().map(|(label, classes)| {
            // max_by_key keeps the last maximum; reversed, ties go to the first class.
            let (class, _) = classes
                .into_iter()
                .rev()
                .max_by_key(|(_, n)| *n)
                .expect("a label with votes has a class");
            (label.to_string(), class.to_string())
        });
        Correspondence::from_pairs(pairs)
    }

    /// Whether predicting A label `predicted` for a B cell of class `truth` is correct.
    pub fn correct(&self, predicted: &str, truth: Option<&str>) -> bool {
        truth.is_some_and(|t| {
            self.allowed
                .contains(&(predicted.to_string(), t.to_string()))
        })
    }

    /// The classes some label in `a_labels` can be correct for.
    pub fn reachable<'a>(&self, a_labels: impl IntoIterator<Item = &'a str>) -> HashSet<String> {
        let labels: HashSet<&str> = a_labels.into_iter().collect();
        self.allowed
            .iter()
            .filter(|(a, _)| labels.contains(a.as_str()))
            .map(|(_, t)| t.clone())
            .collect()
    }
}

/// The scores of one direction's predictions.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Scores {
    /// Share of B cells predicted correctly.
    pub accuracy: f64,
    /// Mean over B classes (cells without a class form one group) of the share predicted
    /// correctly.
    pub balanced_accuracy: f64,
    /// Share of B cells whose class some A label (of those the classifier knows) is correct for:
    /// the accuracy of a perfect classifier.
    pub max_achievable: f64,
}

/// Scores predictions (`predicted[i]` for a B cell of class `truth[i]`); `known` are the A labels
/// the classifier can predict.
pub fn score(
    predicted: &[&str],
    truth: &[Option<&str>],
    correspondence: &Correspondence,
    known: &[&str],
) -> Scores {
    assert_eq!(predicted.len(), truth.len());
    let n = predicted.len().max(1) as f64;
    let reachable = correspondence.reachable(known.iter().copied());
    let mut per_class: BTreeMap<Option<&str>, (usize, usize)> = BTreeMap::new();
    let (mut correct, mut achievable) = (0usize, 0usize);
    for (p, t) in predicted.iter().zip(truth) {
        let ok = correspondence.correct(p, *t);
        let entry = per_class.entry(*t).or_default();
        entry.1 += 1;
        if ok {
            correct += 1;
            entry.0 += 1;
        }
        if t.is_some_and(|t| reachable.contains(t)) {
            achievable += 1;
        }
    }
    Scores {
        accuracy: correct as f64 / n,
        balanced_accuracy: balanced(per_class.values().copied()),
        max_achievable: achievable as f64 / n,
    }
}

/// Mean of per-class recalls, from (correct, total) per class; 0 without classes.
pub fn balanced(per_class: impl IntoIterator<Item = (usize, usize)>) -> f64 {
    let recalls: Vec<f64> = per_class
        .into_iter()
        .filter(|(_, total)| *total > 0)
        .map(|(ok, total)| ok as f64 / total as f64)
        .collect();
    if recalls.is_empty() {
        0.0
    } else {
        recalls.iter().sum::<f64>() / recalls.len() as f64
    }
}

/// A class of B cells that the transfer mostly calls by an A label belonging to *another* class of
/// B: the two cell types sit on each other's side of the joint space, the misalignment a bad
/// training seed produces (whole clusters swapped). A user with one run cannot see it otherwise.
#[derive(Debug, Clone, PartialEq)]
pub struct Swap {
    /// The B class.
    pub class: String,
    /// B cells of that class.
    pub cells: usize,
    /// The A label most of them are called.
    pub called: String,
    /// Share of the class called `called`.
    pub share: f64,
}

/// Classes smaller than this are never reported as swapped (too few cells to tell).
pub const SWAP_MIN_CELLS: usize = 20;

/// The swapped classes among B cells (`predicted[i]` for a cell of class `truth[i]`): classes of at
/// least [`SWAP_MIN_CELLS`] cells whose most frequent prediction, given to at least half of them,
/// is wrong for them but correct for another class present among the B cells, while one of
/// `known` (the labels the predictor can give, A's) would have been right. A class no A label
/// corresponds to cannot be named from A (human acinar cells predicted from Baron mouse, which
/// has none): calling it something else is a limit of the data, not a swap. Sorted by class.
pub fn swaps(
    predicted: &[&str],
    truth: &[Option<&str>],
    correspondence: &Correspondence,
    known: &[&str],
) -> Vec<Swap> {
    assert_eq!(predicted.len(), truth.len());
    let mut calls: BTreeMap<&str, BTreeMap<&str, usize>> = BTreeMap::new();
    for (p, t) in predicted.iter().zip(truth) {
        if let Some(t) = t {
            *calls.entry(t).or_default().entry(p).or_default() += 1;
        }
    }
    let classes: Vec<&str> = calls.keys().copied().collect();
    let nameable = correspondence.reachable(known.iter().copied());
    calls
        .iter()
        .filter_map(|(&class, called)| {
            let cells: usize = called.values().sum();
            let (&label, &n) = called.iter().rev().max_by_key(|(_, n)| **n)?;
            let share = n as f64 / cells as f64;
            let belongs_elsewhere = classes
                .iter()
                .any(|&other| other != class && correspondence.correct(label, Some(other)));
            (cells >= SWAP_MIN_CELLS
                && share >= 0.5
                && !correspondence.correct(label, Some(class))
                && belongs_elsewhere
                && nameable.contains(class))
            .then(|| Swap {
                class: class.to_string(),
                cells,
                called: label.to_string(),
                share,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_is_deterministic_disjoint_and_80_20() {
        let (train, test) = split(101, 7);
        assert_eq!(test.len(), 21);
        assert_eq!(train.len(), 80);
        assert_eq!(split(101, 7), (train.clone(), test.clone()));
        assert_ne!(split(101, 8).1, test, "another seed, another split");
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..101).collect::<Vec<_>>());
    }

    #[test]
    fn stratified_split_takes_a_fifth_of_every_label() {
        let labels: Vec<String> = (0..103)
            .map(|i| match i % 10 {
                0..=6 => "alpha".to_string(),
                7 | 8 => "beta".to_string(),
                _ => "delta".to_string(),
            })
            .chain(["single".to_string()])
            .collect();
        let (train, test) = stratified_split(&labels, 3);
        let in_test = |l: &str| test.iter().filter(|&&i| labels[i] == l).count();
        // alpha 73 cells, beta 20, delta 10, single 1
        assert_eq!(
            [
                in_test("alpha"),
                in_test("beta"),
                in_test("delta"),
                in_test("single")
            ],
            [15, 4, 2, 0]
        );
        let mut all: Vec<usize> = train.iter().chain(&test).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..labels.len()).collect::<Vec<_>>());
        assert_eq!(stratified_split(&labels, 3), (train.clone(), test.clone()));
        assert_ne!(stratified_split(&labels, 4).1, test);
    }

    #[test]
    fn majority_mapping_and_ties() {
        let c = Correspondence::majority([
            ("alpha", Some("type A")),
            ("alpha", Some("type A")),
            ("alpha", Some("type B")),
            ("beta", Some("type Z")),
            ("beta", Some("type B")),
            ("gamma", None),
        ]);
        assert!(c.correct("alpha", Some("type A")));
        assert!(!c.correct("alpha", Some("type B")));
        assert!(c.correct("beta", Some("type B")), "ties: first class");
        assert!(!c.correct("gamma", None));
        assert!(!c.correct("alpha", None));
        let reachable = c.reachable(["alpha", "gamma"]);
        assert_eq!(reachable, HashSet::from(["type A".to_string()]));
    }

    #[test]
    fn balanced_accuracy_is_the_mean_recall() {
        assert!((balanced([(9, 10), (0, 2)]) - 0.45).abs() < 1e-12);
        assert_eq!(balanced([]), 0.0);
        let c = Correspondence::from_pairs([
            ("a".to_string(), "A".to_string()),
            ("b".to_string(), "B".to_string()),
        ]);
        let s = score(
            &["a", "a", "a", "b", "a"],
            &[Some("A"), Some("A"), Some("A"), Some("B"), Some("C")],
            &c,
            &["a", "b"],
        );
        assert!((s.accuracy - 0.8).abs() < 1e-12);
        // A: 3/3, B: 1/1, C: 0/1.
        assert!((s.balanced_accuracy - 2.0 / 3.0).abs() < 1e-12);
        assert!((s.max_achievable - 0.8).abs() < 1e-12);
        let only_a = score(&["a", "a"], &[Some("A"), Some("B")], &c, &["a"]);
        assert!((only_a.max_achievable - 0.5).abs() < 1e-12);
    }
    #[test]
    fn a_class_called_by_another_class_label_is_a_swap() {
        let c = Correspondence::from_pairs(
            [("alpha", "alpha"), ("gamma", "gamma"), ("beta", "beta")]
                .map(|(a, b)| (a.to_string(), b.to_string())),
        );
        // 30 alpha cells, 24 called gamma; 30 gamma cells, all right; 30 beta cells, 20 called
        // "acinar" (a label no B class corresponds to: wrong, but not a swap); 10 delta cells
        // all called beta (too few to tell).
        let mut predicted = vec!["gamma"; 24];
        predicted.extend(["alpha"; 6]);
        predicted.extend(["gamma"; 30]);
        predicted.extend(["acinar"; 20]);
        predicted.extend(["beta"; 10]);
        predicted.extend(["beta"; 10]);
        let mut truth = vec![Some("alpha"); 30];
        truth.extend([Some("gamma"); 30]);
        truth.extend([Some("beta"); 30]);
        truth.extend([Some("delta"); 10]);
        let known = ["alpha", "gamma", "beta", "acinar"];
        let found = swaps(&predicted, &truth, &c, &known);
        assert_eq!(
            found,
            vec![Swap {
                class: "alpha".into(),
                cells: 30,
                called: "gamma".into(),
                share: 0.8,
            }]
        );
        // A majority of the class is enough; a minority is not a swap.
        let mut predicted = vec!["gamma"; 16];
        predicted.extend(["alpha"; 14]);
        let truth = vec![Some("alpha"); 30];
        let with_gamma: Vec<Option<&str>> = truth.iter().copied().chain([Some("gamma")]).collect();
        let predicted_plus: Vec<&str> = predicted.iter().copied().chain(["gamma"]).collect();
        assert_eq!(swaps(&predicted_plus, &with_gamma, &c, &known).len(), 1);
        let mut predicted = vec!["gamma"; 14];
        predicted.extend(["alpha"; 17]);
        assert!(swaps(&predicted, &with_gamma, &c, &known).is_empty());
        // A class that no label of A corresponds to (A has no "alpha" cells) is not a swap, however
        // it is called.
        let predicted = vec!["gamma"; 31];
        assert_eq!(swaps(&predicted, &with_gamma, &c, &known).len(), 1);
        assert!(swaps(&predicted, &with_gamma, &c, &["gamma", "beta"]).is_empty());
    }
}
