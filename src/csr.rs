//! The cells x genes count matrix in CSR layout (one row per cell), shared by every stage that
//! holds counts: the readers (`io::CountMatrix`), the atlas' count reads (`atlas::counts`), gene
//! selection and macrogenes, and training. [`Csr`] owns the arrays, [`CsrView`] borrows checked
//! slices of them.

/// A CSR matrix whose arrays do not agree, or a selection outside it.
#[derive(Debug, thiserror::Error)]
pub enum CsrError {
    /// `indptr`, `indices` and `data` are inconsistent.
    #[error("malformed CSR count matrix: {what}")]
    Malformed {
        /// What is inconsistent, with the offending row or entry.
        what: String,
    },
    /// A selected row or column lies outside the matrix.
    #[error("shape mismatch: {what}")]
    Shape {
        /// The selection and the matrix's shape.
        what: String,
    },
}

/// A borrowed cells x genes count matrix in CSR layout .
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
    ) -> Result<Self, CsrError> {
        let bad = |what: String| Err(CsrError::Malformed { what });
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
    pub fn select(&self, rows: &[usize], columns: &[usize]) -> Result<Csr, CsrError> {
        let mut new_index = vec![u32::MAX; self.n_cols];
        for (k, &j) in columns.iter().enumerate() {
            if j >= self.n_cols {
                return Err(CsrError::Shape {
                    what: format!(
                        "selected column {j} but the matrix has {} columns",
                        self.n_cols
                    ),
                });
            }
            new_index[j] = k as u32;
        }
        let mut out = Csr::empty(columns.len());
        for &i in rows {
            if i >= self.n_rows() {
                return Err(CsrError::Shape {
                    what: format!("selected row {i} but the matrix has {} rows", self.n_rows()),
                });
            }
            let (idx, val) = self.row(i);
            out.push_row(
                idx.iter()
                    .zip(val)
                    .filter(|(&j, &v)| new_index[j as usize] != u32::MAX && v != 0)
                    .map(|(&j, &v)| (new_index[j as usize], v))
                    .collect(),
            );
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
    /// A matrix with `n_cols` columns and no rows yet (rows are appended by pushing to
    /// `indices` and `data`, then the new end to `indptr`).
    pub fn empty(n_cols: usize) -> Self {
        Self {
            n_cols,
            indptr: vec![0],
            ..Self::default()
        }
    }

    /// Appends a row given its `(column, count)` entries in any order.
    pub fn push_row(&mut self, mut entries: Vec<(u32, u32)>) {
        entries.sort_unstable();
        self.indices.extend(entries.iter().map(|e| e.0));
        self.data.extend(entries.iter().map(|e| e.1));
        self.indptr.push(self.indices.len() as u64);
    }

    /// Number of rows (cells).
    pub fn n_rows(&self) -> usize {
        self.indptr.len().saturating_sub(1)
    }

    /// Number of stored entries.
    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    /// The column indices and counts stored for `row`.
    pub fn row(&self, row: usize) -> (&[u32], &[u32]) {
        let (a, b) = (self.indptr[row] as usize, self.indptr[row + 1] as usize);
        (&self.indices[a..b], &self.data[a..b])
    }

    /// Borrows the matrix (checking it).
    pub fn view(&self) -> Result<CsrView<'_>, CsrError> {
        CsrView::new(self.n_cols, &self.indptr, &self.indices, &self.data)
    }
}
