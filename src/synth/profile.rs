//! The expression profile a synthetic dataset is drawn from, fitted to a real dataset: per cell
//! type its share of the cells, its library sizes (log-normal) and its mean expression (each
//! gene's share of the type's counts), and per gene one negative-binomial dispersion pooled over
//! all types.
//!
//! Fitting: for type `t` and gene `g`, `m[t][g] = sum of g's counts / sum of library sizes` over
//! the type's cells (so a cell of library size `L` expects `L * m[t][g]` counts of `g`). The
//! dispersion `phi[g]` is the method-of-moments estimate of `var = mu + phi * mu^2` around those
//! expectations, `sum((x - mu)^2 - mu) / sum(mu^2)` over every cell, clamped to
//! [`MIN_DISPERSION`]..=[`MAX_DISPERSION`].

use super::SynthError;
use crate::io::DatasetFile;
use std::collections::BTreeMap;

/// Smallest dispersion used (genes whose counts vary less than Poisson's, or never seen).
pub const MIN_DISPERSION: f64 = 0.01;
/// Largest dispersion used.
pub const MAX_DISPERSION: f64 = 20.0;

/// One cell type of a profile.
#[derive(Debug, Clone, PartialEq)]
pub struct CellType {
    /// The label, as in the source's label column.
    pub name: String,
    /// Share of the source's labelled cells.
    pub share: f64,
    /// Mean of the natural log of the library size.
    pub log_library_mean: f64,
    /// Standard deviation of the natural log of the library size.
    pub log_library_sd: f64,
    /// The genes the type expresses (column, expected share of a cell's counts), by column.
    pub expressed: Vec<(u32, f64)>,
}

/// What a synthetic dataset is drawn from.
#[derive(Debug, Clone, PartialEq)]
pub struct Profile {
    /// Gene symbols of the source, in its column order.
    pub genes: Vec<String>,
    /// Cell types, by name.
    pub types: Vec<CellType>,
    /// Negative-binomial dispersion of each gene.
    pub dispersion: Vec<f64>,
}

/// Per-type sums of the source's counts, the first pass of the fit.
struct TypeSums {
    cells: Vec<usize>,
    library: f64,
    library_sq: f64,
    log_library: Vec<f64>,
    gene_counts: BTreeMap<u32, f64>,
}

/// Fits a profile to `file`'s cells labelled in obs column `label` (unlabelled cells and cells
/// without counts are left out).
pub fn fit(file: &DatasetFile, label: &str) -> Result<Profile, SynthError> {
    let column = file
        .obs_column(label)
        .ok_or_else(|| SynthError::BadSource {
            reason: format!(
                "label column {label:?} is not in the file; available: {}",
                file.obs
                    .iter()
                    .map(|c| c.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
    let counts = &file.counts;
    let mut sums: BTreeMap<&str, TypeSums> = BTreeMap::new();
    for (cell, value) in column.values.iter().enumerate() {
        let (genes, values) = counts.row(cell);
        let library: f64 = values.iter().map(|&v| f64::from(v)).sum();
        let Some(name) = value.as_deref().filter(|_| library > 0.0) else {
            continue;
        };
        let s = sums.entry(name).or_insert_with(|| TypeSums {
            cells: Vec::new(),
            library: 0.0,
            library_sq: 0.0,
            log_library: Vec::new(),
            gene_counts: BTreeMap::new(),
        });
        s.cells.push(cell);
        s.library += library;
        s.library_sq += library * library;
        s.log_library.push(library.ln());
        for (&g, &v) in genes.iter().zip(values) {
            *s.gene_counts.entry(g).or_default() += f64::from(v);
        }
    }
    let n_labelled: usize = sums.values().map(|s| s.cells.len()).sum();
    if n_labelled == 0 {
        return Err(SynthError::BadSource {
            reason: format!("no cell has both a {label:?} label and a count"),
        });
    }
    let types: Vec<CellType> = sums
        .iter()
        .map(|(name, s)| {
            let (mean, sd) = mean_sd(&s.log_library);
            CellType {
                name: name.to_string(),
                share: s.cells.len() as f64 / n_labelled as f64,
                log_library_mean: mean,
                log_library_sd: sd,
                expressed: s
                    .gene_counts
                    .iter()
                    .map(|(&g, &c)| (g, c / s.library))
                    .collect(),
            }
        })
        .collect();
    let dispersion = dispersions(file, &sums, &types);
    Ok(Profile {
        genes: counts.genes.clone(),
        types,
        dispersion,
    })
}

/// The pooled method-of-moments dispersion of every gene (see the module doc).
fn dispersions(
    file: &DatasetFile,
    sums: &BTreeMap<&str, TypeSums>,
    types: &[CellType],
) -> Vec<f64> {
    let n_genes = file.counts.n_genes();
    // sum(x^2) - 2 sum(x mu) - sum(x) over the stored entries, plus sum(mu^2) over every cell.
    let (mut numerator, mut mu_sq) = (vec![0.0f64; n_genes], vec![0.0f64; n_genes]);
    for (s, t) in sums.values().zip(types) {
        let share: BTreeMap<u32, f64> = t.expressed.iter().copied().collect();
        for (&g, &m) in &share {
            let sq = m * m * s.library_sq;
            mu_sq[g as usize] += sq;
            numerator[g as usize] += sq;
        }
        for &cell in &s.cells {
            let (genes, values) = file.counts.row(cell);
            let library: f64 = values.iter().map(|&v| f64::from(v)).sum();
            for (&g, &v) in genes.iter().zip(values) {
                let (x, mu) = (f64::from(v), library * share[&g]);
                numerator[g as usize] += x * x - 2.0 * x * mu - x;
            }
        }
    }
    numerator
        .iter()
        .zip(&mu_sq)
        .map(|(&n, &d)| {
            let phi = if d > 0.0 { n / d } else { MIN_DISPERSION };
            phi.clamp(MIN_DISPERSION, MAX_DISPERSION)
        })
        .collect()
}

/// Mean and sample standard deviation (0 for fewer than two values).
fn mean_sd(values: &[f64]) -> (f64, f64) {
    let n = values.len() as f64;
    let mean = values.iter().sum::<f64>() / n;
    if values.len() < 2 {
        return (mean, 0.0);
    }
    let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csr::Csr;
    use crate::io::{CountMatrix, ObsColumn};

    /// Two types: "a" cells (library 10 and 30) all in gene 0 and 1; "b" one cell in gene 2.
    fn source() -> DatasetFile {
        let counts = CountMatrix {
            barcodes: vec!["c0".into(), "c1".into(), "c2".into(), "c3".into()],
            genes: vec!["G0".into(), "G1".into(), "G2".into()],
            csr: Csr {
                n_cols: 3,
                indptr: vec![0, 2, 4, 5, 5],
                indices: vec![0, 1, 0, 1, 2],
                data: vec![5, 5, 20, 10, 7],
            },
        };
        let label = |s: &str| Some(s.to_string());
        DatasetFile {
            counts,
            obs: vec![ObsColumn {
                name: "type".into(),
                values: vec![label("a"), label("a"), label("b"), label("b")],
            }],
            format: "h5ad",
        }
    }

    #[test]
    fn fit_gives_shares_means_and_library_sizes() {
        let profile = fit(&source(), "type").unwrap();
        assert_eq!(profile.genes, ["G0", "G1", "G2"]);
        let a = &profile.types[0];
        assert_eq!(a.name, "a");
        // The cell without counts is left out: 2 of 3 labelled cells are "a".
        assert!((a.share - 2.0 / 3.0).abs() < 1e-12);
        assert_eq!(a.expressed, [(0, 25.0 / 40.0), (1, 15.0 / 40.0)]);
        assert!((a.log_library_mean - (10f64.ln() + 30f64.ln()) / 2.0).abs() < 1e-12);
        assert_eq!(profile.types[1].log_library_sd, 0.0);
        assert!(profile
            .dispersion
            .iter()
            .all(|&d| (MIN_DISPERSION..=MAX_DISPERSION).contains(&d)));
        // Gene 0: mu = 10 * 5/8 and 30 * 5/8 against counts 5 and 20.
        let (mu0, mu1) = (6.25, 18.75);
        let expected = ((5.0f64 - mu0).powi(2) - mu0 + (20.0f64 - mu1).powi(2) - mu1)
            / (mu0 * mu0 + mu1 * mu1);
        let expected = expected.clamp(MIN_DISPERSION, MAX_DISPERSION);
        assert!((profile.dispersion[0] - expected).abs() < 1e-9);
    }

    #[test]
    fn a_missing_label_column_is_named() {
        let err = fit(&source(), "cell_type").unwrap_err();
        assert!(err.to_string().contains("\"cell_type\""), "{err}");
        assert!(err.to_string().contains("available: type"), "{err}");
    }
}
