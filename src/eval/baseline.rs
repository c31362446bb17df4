//! The 1:1-ortholog baseline (issue 4.6): instead of a model run's embeddings, the cells of two
//! species are represented by the principal components of their log-normalised expression of the
//! shared one-to-one orthologs, and go through the same classifiers, split and scores.
//!
//! 1. [`read_orthologs`]: the ortholog table (CSV, first column A's gene symbol, second B's, e.g.
//!    Ensembl's `gene_matches_1v1_human2mouse.csv`); a symbol paired more than once on its side is
//!    dropped (only one-to-one pairs are used).
//! 2. The pairs whose genes both occur in the species' datasets (symbols matched
//!    case-insensitively, as everywhere in the atlas) form the shared genes; each species' raw
//!    counts are read over them (all cells, ascending cell id, A then B).
//! 3. scanpy's `normalize_total(target_sum=1e4)` (each cell scaled to 10,000 over the shared
//!    genes; empty cells left at 0) and `log1p`, on the joint matrix.
//! 4. PCA as scikit-learn's / scanpy's `pca` (genes centred, not scaled): exact, through the
//!    eigendecomposition of the smaller of the Gram (cells x cells) and covariance (genes x
//!    genes) matrices in f64 (libtorch). Each component's sign is fixed so that its
//!    largest-magnitude score is positive (scikit-learn's `svd_flip` on U).
//!
//! The dense joint matrix is cells x shared genes in f64: fine for the Baron data (4,028 x ~12,000,
//! 0.4 GB), not for hundreds of thousands of cells.

use super::EvalError;
use crate::atlas::counts::{read_counts, CellCounts, Cells};
use crate::atlas::{query_all, species};
use crate::ingest::genes::symbol_key;
use duckdb::Connection;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use tch::{Kind, Tensor};

/// Default number of principal components.
pub const DEFAULT_PCS: usize = 50;
/// scanpy `normalize_total`'s target sum used here.
pub const TARGET_SUM: f64 = 1e4;

/// The baseline's parameters.
#[derive(Debug, Clone, PartialEq)]
pub struct OrthologBaseline {
    /// The ortholog table (first column: A's symbol, second: B's).
    pub table: PathBuf,
    /// Principal components kept.
    pub pcs: usize,
}

/// Cell features of one species: ids (ascending) and row-major values.
#[derive(Debug, Clone, PartialEq)]
pub struct CellFeatures {
    /// Cell ids, in row order.
    pub cell_ids: Vec<i64>,
    /// Values per cell.
    pub dim: usize,
    /// `cell_ids.len() × dim` values.
    pub values: Vec<f32>,
}

/// The baseline's features of both species and what they were computed from.
#[derive(Debug, Clone, PartialEq)]
pub struct BaselineFeatures {
    /// Species A's cells.
    pub a: CellFeatures,
    /// Species B's cells.
    pub b: CellFeatures,
    /// Shared 1:1 orthologs measured in both species' datasets.
    pub shared_genes: usize,
    /// Variance of the joint data along each component (scikit-learn's `explained_variance_`).
    pub explained_variance: Vec<f64>,
}

/// Computes the baseline features of species `a` and `b`.
pub fn ortholog_features(
    conn: &Connection,
    a: &str,
    b: &str,
    params: &OrthologBaseline,
) -> Result<BaselineFeatures, EvalError> {
    let pairs = read_orthologs(&params.table)?;
    let (genes_a, genes_b) = shared_genes(conn, a, b, &pairs)?;
    let too_few = |rule| EvalError::InvalidParam {
        name: "pcs",
        value: params.pcs.to_string(),
        rule,
    };
    if params.pcs == 0 {
        return Err(too_few("at least 1"));
    }
    if genes_a.len() < params.pcs {
        return Err(EvalError::TooFewOrthologs {
            table: params.table.clone(),
            shared: genes_a.len(),
            pcs: params.pcs,
        });
    }
    let counts_a = read_counts(conn, Cells::Species(species::require(conn, a)?), &genes_a)?;
    let counts_b = read_counts(conn, Cells::Species(species::require(conn, b)?), &genes_b)?;
    let n = counts_a.n_cells() + counts_b.n_cells();
    if n <= params.pcs {
        return Err(too_few(
            "below the number of cells of both species together",
        ));
    }
    let mut x = log_normalised(&counts_a);
    x.extend(log_normalised(&counts_b));
    let (scores, explained_variance) = pca(&x, n, genes_a.len(), params.pcs)?;
    let split = counts_a.n_cells() * params.pcs;
    let features = |counts: &CellCounts, values: &[f64]| CellFeatures {
        cell_ids: counts.cell_ids.clone(),
        dim: params.pcs,
        values: values.iter().map(|&v| v as f32).collect(),
    };
    Ok(BaselineFeatures {
        a: features(&counts_a, &scores[..split]),
        b: features(&counts_b, &scores[split..]),
        shared_genes: genes_a.len(),
        explained_variance,
    })
}

/// The (A symbol, B symbol) one-to-one pairs of an ortholog table: first two columns, header
/// skipped, double quotes stripped; symbols that occur in more than one pair on their side are
/// dropped with all their pairs.
pub fn read_orthologs(path: &Path) -> Result<Vec<(String, String)>, EvalError> {
    let text = std::fs::read_to_string(path).map_err(|source| EvalError::CsvRead {
        what: "ortholog table",
        path: path.to_path_buf(),
        source,
    })?;
    let mut pairs = Vec::new();
    for (n, line) in text.lines().enumerate().skip(1) {
        if line.trim().is_empty() {
            continue;
        }
        let mut fields = line.split(',').map(|f| f.trim().trim_matches('"'));
        match (fields.next(), fields.next()) {
            (Some(x), Some(y)) if !x.is_empty() && !y.is_empty() => {
                pairs.push((x.to_string(), y.to_string()))
            }
            _ => {
                return Err(EvalError::CsvFormat {
                    what: "ortholog table",
                    path: path.to_path_buf(),
                    problem: format!(
                        "line {} has no gene symbol in its first two columns (expected: A's \
                         symbol, B's symbol, ...)",
                        n + 1
                    ),
                })
            }
        }
    }
    let count = |side: fn(&(String, String)) -> &String| {
        let mut counts: HashMap<String, usize> = HashMap::new();
        for p in &pairs {
            *counts.entry(symbol_key(side(p))).or_default() += 1;
        }
        counts
    };
    let (count_a, count_b) = (count(|p| &p.0), count(|p| &p.1));
    pairs.retain(|(x, y)| count_a[&symbol_key(x)] == 1 && count_b[&symbol_key(y)] == 1);
    if pairs.is_empty() {
        return Err(EvalError::CsvFormat {
            what: "ortholog table",
            path: path.to_path_buf(),
            problem: "no one-to-one gene pair (header line, then A symbol,B symbol rows)".into(),
        });
    }
    Ok(pairs)
}

/// Gene ids (A's, B's; pair order) of the pairs whose genes both occur in the species' datasets.
fn shared_genes(
    conn: &Connection,
    a: &str,
    b: &str,
    pairs: &[(String, String)],
) -> Result<(Vec<i32>, Vec<i32>), EvalError> {
    let measured = |name: &str| -> Result<HashMap<String, i32>, EvalError> {
        Ok(query_all(
            conn,
            "SELECT DISTINCT g.symbol_key, g.gene_id FROM dataset_genes dg
             JOIN datasets d USING (dataset_id) JOIN genes g USING (gene_id)
             JOIN species s ON s.species_id = d.species_id WHERE s.name = ?",
            [name],
            "listing the genes of the species' datasets",
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?
        .into_iter()
        .collect())
    };
    let (in_a, in_b) = (measured(a)?, measured(b)?);
    Ok(pairs
        .iter()
        .filter_map(|(x, y)| Some((*in_a.get(&symbol_key(x))?, *in_b.get(&symbol_key(y))?)))
        .unzip())
}

/// Dense row-major `log1p(count / total * 1e4)` (scanpy `normalize_total` + `log1p`); a cell
/// without counts stays 0.
pub fn log_normalised(counts: &CellCounts) -> Vec<f64> {
    let g = counts.csr.n_cols;
    let mut x = vec![0.0; counts.n_cells() * g];
    for (i, row) in x.chunks_mut(g).enumerate() {
        let (indices, data) = counts.csr.row(i);
        let total: f64 = data.iter().map(|&c| f64::from(c)).sum();
        if total == 0.0 {
            continue;
        }
        for (&j, &c) in indices.iter().zip(data) {
            row[j as usize] = (f64::from(c) / total * TARGET_SUM).ln_1p();
        }
    }
    x
}

/// The first `k` principal-component scores (`n × k`, row-major) of the row-major `n × g` matrix
/// `x` (columns centred, not scaled), and the variance along each component (divided by
/// `n - 1`). Signs: each component's largest-magnitude score is positive.
pub fn pca(x: &[f64], n: usize, g: usize, k: usize) -> Result<(Vec<f64>, Vec<f64>), EvalError> {
    let _no_grad = tch::no_grad_guard();
    let x = Tensor::from_slice(x).view([n as i64, g as i64]);
    let centred = &x - x.mean_dim(0, true, Kind::Double);
    // Scores = U S of the SVD of the centred matrix, from the smaller symmetric product.
    let scores = if n <= g {
        let (values, vectors) = centred.mm(&centred.tr()).linalg_eigh("L");
        let top = vectors.narrow(1, n as i64 - k as i64, k as i64).flip([1]);
        let sd = values
            .narrow(0, n as i64 - k as i64, k as i64)
            .flip([0])
            .clamp_min(0.0)
            .sqrt();
        top * sd.unsqueeze(0)
    } else {
        let (_, vectors) = centred.tr().mm(&centred).linalg_eigh("L");
        centred.mm(&vectors.narrow(1, g as i64 - k as i64, k as i64).flip([1]))
    };
    let peak = scores.abs().argmax(0, true);
    let signs = scores.gather(0, &peak, false).sign();
    let scores = (scores * signs).contiguous();
    let variance = scores.square().sum_dim_intlist(0, false, Kind::Double) / (n as f64 - 1.0);
    Ok((to_vec(&scores)?, to_vec(&variance)?))
}

fn to_vec(t: &Tensor) -> Result<Vec<f64>, EvalError> {
    Vec::<f64>::try_from(t.flatten(0, -1)).map_err(|source| EvalError::Torch {
        what: "reading the principal components",
        source,
    })
}
