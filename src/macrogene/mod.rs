//! Gene selection and macrogenes (SATURN.md sections 2 and 3).
//!
//! 1. [`hvg`] — Seurat v3 highly variable genes on raw counts, per species (scanpy's
//!    `highly_variable_genes(flavor="seurat_v3")`, with skmisc's loess re-implemented).
//! 2. [`kmeans`] — one seeded k-means (k-means++ init) over the pooled gene embeddings; its
//!    centroids are the macrogenes.
//! 3. [`weights`] — gene-to-macrogene initial weights from the rank of each centroid's distance.
//!
//! These three are pure and in memory: counts come in as borrowed CSR slices ([`CsrView`]),
//! embeddings as `ndarray` matrices. [`build`] is the atlas side: it reads the counts and gene
//! embeddings, runs the three steps and writes one macrogene set (`satlas build-macrogenes`), and
//! [`MacrogeneSet::read`] reads a set back.

pub mod build;
pub mod hvg;
pub mod kmeans;
pub mod weights;

mod error;

pub use build::{
    build_macrogenes, highly_variable_genes_with_protein, species_highly_variable_genes,
    BuildParams, MacrogeneReport, MacrogeneSet, SpeciesAssignment, SpeciesGenes,
};
pub use error::{MacrogeneError, Result};
pub use hvg::{highly_variable_genes, HvgParams, HvgResult};
pub use kmeans::{kmeans, KMeansFit, KMeansParams};
pub use weights::{gene_centroid_distances, rank_weights, ranks_average, ScoreFunction};

use error::MacrogeneError as E;

/// A borrowed cells x genes count matrix in CSR layout (the layout of `io::CountMatrix`).
#[derive(Debug, Clone, Copy)]
pub struct CsrView<'a> {
    n_cols: usize,
    indptr: &'a [u64],
    indices: &'a [u32],
    data: &'a [u32],
}

impl<'a> CsrView<'a> {
    /// Checks the slices and wraps them: `indptr` has one entry per row plus one, starts at 0, never
    /// decreases and ends at `indices.len() == data.len()`; every index is below `n_cols`.
    pub fn new(
        n_cols: usize,
        indptr: &'a [u64],
        indices: &'a [u32],
        data: &'a [u32],
    ) -> Result<Self> {
        let bad = |what: String| Err(E::MalformedCsr { what });
        if indptr.is_empty() || indptr[0] != 0 {
            return bad("indptr must start with 0 and hold n_rows + 1 entries".into());
        }
        if indices.len() != data.len() {
            return bad(format!(
                "{} indices but {} values",
                indices.len(),
                data.len()
            ));
        }
        if indptr[indptr.len() - 1] as usize != indices.len() {
            return bad(format!(
                "indptr ends at {} but there are {} entries",
                indptr[indptr.len() - 1],
                indices.len()
            ));
        }
        if let Some(row) = indptr.windows(2).position(|w| w[1] < w[0]) {
            return bad(format!("indptr decreases at row {row}"));
        }
        if let Some(k) = indices.iter().position(|&j| j as usize >= n_cols) {
            return bad(format!(
                "entry {k} has column {} but there are {n_cols} columns",
                indices[k]
            ));
        }
        Ok(Self {
            n_cols,
            indptr,
            indices,
            data,
        })
    }

    /// Number of rows (cells).
    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// Number of columns (genes).
    pub fn n_cols(&self) -> usize {
        self.n_cols
    }

    /// The column indices and counts stored for `row`.
    pub fn row(&self, row: usize) -> (&'a [u32], &'a [u32]) {
        let (a, b) = (self.indptr[row] as usize, self.indptr[row + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// The sum of the counts of every row (the library size).
    pub fn row_sums(&self) -> Vec<u64> {
        (0..self.n_rows()).map(|i| self.row_sum(i)).collect()
    }

    /// The sum of the counts of `row` (its library size).
    pub fn row_sum(&self, row: usize) -> u64 {
        self.row(row).1.iter().map(|&v| u64::from(v)).sum()
    }

    /// A new matrix holding only `columns` (in that order; e.g. the selected genes), and `rows`.
    pub fn select(&self, rows: &[usize], columns: &[usize]) -> Result<Csr> {
        let mut new_index = vec![u32::MAX; self.n_cols];
        for (k, &j) in columns.iter().enumerate() {
            if j >= self.n_cols {
                return Err(E::Shape {
                    what: format!(
                        "selected column {j} but the matrix has {} columns",
                        self.n_cols
                    ),
                });
            }
            new_index[j] = k as u32;
        }
        let mut out = Csr {
            n_cols: columns.len(),
            indptr: vec![0],
            indices: vec![],
            data: vec![],
        };
        for &i in rows {
            if i >= self.n_rows() {
                return Err(E::Shape {
                    what: format!("selected row {i} but the matrix has {} rows", self.n_rows()),
                });
            }
            let (idx, val) = self.row(i);
            let mut entries: Vec<(u32, u32)> = idx
                .iter()
                .zip(val)
                .filter(|(&j, &v)| new_index[j as usize] != u32::MAX && v != 0)
                .map(|(&j, &v)| (new_index[j as usize], v))
                .collect();
            entries.sort_unstable();
            out.indices.extend(entries.iter().map(|e| e.0));
            out.data.extend(entries.iter().map(|e| e.1));
            out.indptr.push(out.indices.len() as u64);
        }
        Ok(out)
    }
}

/// An owned CSR count matrix (what [`CsrView::select`] returns).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Csr {
    /// Number of columns (genes).
    pub n_cols: usize,
    /// Row pointer: row `i` is `indptr[i]..indptr[i + 1]`.
    pub indptr: Vec<u64>,
    /// Column of every stored entry.
    pub indices: Vec<u32>,
    /// Count of every stored entry.
    pub data: Vec<u32>,
}

impl Csr {
    /// Borrows the matrix (checking it).
    pub fn view(&self) -> Result<CsrView<'_>> {
        CsrView::new(self.n_cols, &self.indptr, &self.indices, &self.data)
    }
}
