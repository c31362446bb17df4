//! Assembling a validated [`CountMatrix`] from whatever layout a file stores: CSR, CSC, dense, or
//! coordinate entries (MatrixMarket).
//!
//! Every reader hands its barcodes and genes to a [`CountsBuilder`] (which rejects duplicates),
//! then pushes entries; the builder checks each value is a non-negative integer (naming the cell
//! and gene when it is not), drops zeros, and finally sorts entries into CSR order, summing
//! duplicate coordinates. [`push_compressed`] and [`push_dense`] are the shared decoders of the
//! stored layouts.

use super::{CountMatrix, ReadError};
use crate::csr::Csr;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// Which axis a compressed sparse matrix is compressed along.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Major {
    /// CSR: `indptr` runs over cells, `indices` are genes.
    Cell,
    /// CSC: `indptr` runs over genes, `indices` are cells.
    Gene,
}

/// `value` as a count, if it is a finite non-negative integer that fits in `u32`.
pub(crate) fn count_value(value: f64) -> Option<u32> {
    (value.is_finite() && value >= 0.0 && value.fract() == 0.0 && value <= f64::from(u32::MAX))
        .then_some(value as u32)
}

/// Collects entries of a cells x genes matrix and assembles them into a [`CountMatrix`].
pub(crate) struct CountsBuilder {
    path: PathBuf,
    barcodes: Vec<String>,
    genes: Vec<String>,
    cells: Vec<u32>,
    gene_idx: Vec<u32>,
    counts: Vec<u32>,
}

impl CountsBuilder {
    /// A builder for `barcodes` x `genes`; fails on a duplicate barcode or gene.
    pub(crate) fn new(
        path: &Path,
        barcodes: Vec<String>,
        genes: Vec<String>,
    ) -> Result<Self, ReadError> {
        check_unique(path, "cell", &barcodes)?;
        check_unique(path, "gene", &genes)?;
        Ok(CountsBuilder {
            path: path.to_path_buf(),
            barcodes,
            genes,
            cells: Vec::new(),
            gene_idx: Vec::new(),
            counts: Vec::new(),
        })
    }

    /// Number of cells.
    pub(crate) fn n_cells(&self) -> usize {
        self.barcodes.len()
    }

    /// Number of genes.
    pub(crate) fn n_genes(&self) -> usize {
        self.genes.len()
    }

    /// Reserves room for `n` more entries.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.cells.reserve(n);
        self.gene_idx.reserve(n);
        self.counts.reserve(n);
    }

    /// Adds one entry; `cell` and `gene` must be in range (callers check, naming their source).
    pub(crate) fn push(&mut self, cell: usize, gene: usize, value: f64) -> Result<(), ReadError> {
        let count = count_value(value).ok_or_else(|| ReadError::NonIntegerCounts {
            path: self.path.clone(),
            cell: self.barcodes[cell].clone(),
            gene: self.genes[gene].clone(),
            value,
        })?;
        if count > 0 {
            self.cells.push(cell as u32);
            self.gene_idx.push(gene as u32);
            self.counts.push(count);
        }
        Ok(())
    }

    /// Sorts the entries into CSR order (cells, then genes ascending), summing duplicates.
    pub(crate) fn finish(self) -> CountMatrix {
        let n_cells = self.barcodes.len();
        let mut indptr = vec![0u64; n_cells + 1];
        for &c in &self.cells {
            indptr[c as usize + 1] += 1;
        }
        for i in 0..n_cells {
            indptr[i + 1] += indptr[i];
        }
        // Stable counting sort by cell; skipped when entries already arrive cell by cell.
        let (mut indices, mut data) = if self.cells.is_sorted() {
            (self.gene_idx, self.counts)
        } else {
            let mut next: Vec<u64> = indptr[..n_cells].to_vec();
            let mut indices = vec![0u32; self.cells.len()];
            let mut data = vec![0u32; self.cells.len()];
            for ((&c, &g), &v) in self.cells.iter().zip(&self.gene_idx).zip(&self.counts) {
                let slot = &mut next[c as usize];
                indices[*slot as usize] = g;
                data[*slot as usize] = v;
                *slot += 1;
            }
            (indices, data)
        };
        // Sort each row by gene and merge repeated genes, compacting in place.
        let mut write = 0usize;
        let mut row = Vec::new();
        for i in 0..n_cells {
            let (a, b) = (indptr[i] as usize, indptr[i + 1] as usize);
            indptr[i] = write as u64;
            let sorted = indices[a..b].windows(2).all(|w| w[0] < w[1]);
            if sorted {
                indices.copy_within(a..b, write);
                data.copy_within(a..b, write);
                write += b - a;
                continue;
            }
            row.clear();
            row.extend(
                indices[a..b]
                    .iter()
                    .copied()
                    .zip(data[a..b].iter().copied()),
            );
            row.sort_unstable_by_key(|&(g, _)| g);
            for &(g, v) in &row {
                if write > indptr[i] as usize && indices[write - 1] == g {
                    data[write - 1] = data[write - 1].saturating_add(v);
                } else {
                    indices[write] = g;
                    data[write] = v;
                    write += 1;
                }
            }
        }
        indptr[n_cells] = write as u64;
        indices.truncate(write);
        data.truncate(write);
        let csr = Csr {
            n_cols: self.genes.len(),
            indptr,
            indices,
            data,
        };
        CountMatrix {
            barcodes: self.barcodes,
            genes: self.genes,
            csr,
        }
    }
}

/// Decodes a compressed sparse matrix (CSR or CSC, per `major`) into `builder`. Structural faults
/// (pointer not monotone, index out of range, lengths disagreeing) become `invalid(message)`.
pub(crate) fn push_compressed(
    builder: &mut CountsBuilder,
    major: Major,
    indptr: &[i64],
    indices: &[i64],
    values: &[f64],
    invalid: impl Fn(String) -> ReadError,
) -> Result<(), ReadError> {
    let (n_major, n_minor) = match major {
        Major::Cell => (builder.n_cells(), builder.n_genes()),
        Major::Gene => (builder.n_genes(), builder.n_cells()),
    };
    check_pointers(
        major,
        n_major,
        indptr,
        indices.len(),
        values.len(),
        &invalid,
    )?;
    builder.reserve(values.len());
    for k in 0..n_major {
        for p in indptr[k] as usize..indptr[k + 1] as usize {
            let minor = indices[p];
            if minor < 0 || minor as usize >= n_minor {
                return Err(invalid(format!(
                    "index {minor} at entry {p} is outside 0..{n_minor}"
                )));
            }
            let (cell, gene) = match major {
                Major::Cell => (k, minor as usize),
                Major::Gene => (minor as usize, k),
            };
            builder.push(cell, gene, values[p])?;
        }
    }
    Ok(())
}

/// Checks a compressed matrix's pointer against its `n_major` rows (or columns) and the lengths of
/// its index and value arrays: one more entry than rows, from 0 to the stored entries, never
/// decreasing.
pub(crate) fn check_pointers(
    major: Major,
    n_major: usize,
    indptr: &[i64],
    n_indices: usize,
    n_values: usize,
    invalid: impl Fn(String) -> ReadError,
) -> Result<(), ReadError> {
    if indptr.len() != n_major + 1 {
        return Err(invalid(format!(
            "indptr has {} entries, expected {} (one more than the {} {})",
            indptr.len(),
            n_major + 1,
            n_major,
            if major == Major::Cell {
                "cells"
            } else {
                "genes"
            }
        )));
    }
    if n_indices != n_values {
        return Err(invalid(format!(
            "indices has {n_indices} entries but data has {n_values}"
        )));
    }
    if indptr[0] != 0 || indptr[n_major] != n_indices as i64 {
        return Err(invalid(format!(
            "indptr must run from 0 to the {n_indices} stored entries, found {}..{}",
            indptr[0], indptr[n_major]
        )));
    }
    if let Some(k) = indptr.windows(2).position(|w| w[1] < w[0]) {
        return Err(invalid(format!(
            "indptr decreases at position {k} ({} then {})",
            indptr[k],
            indptr[k + 1]
        )));
    }
    Ok(())
}

/// Decodes a dense row-major cells x genes matrix into `builder`.
pub(crate) fn push_dense(builder: &mut CountsBuilder, values: &[f64]) -> Result<(), ReadError> {
    let n_genes = builder.n_genes();
    for (p, &v) in values.iter().enumerate() {
        if v != 0.0 {
            builder.push(p / n_genes, p % n_genes, v)?;
        }
    }
    Ok(())
}

pub(crate) fn check_unique(
    path: &Path,
    kind: &'static str,
    names: &[String],
) -> Result<(), ReadError> {
    let mut seen: HashMap<&str, usize> = HashMap::with_capacity(names.len());
    for (second, name) in names.iter().enumerate() {
        if let Some(first) = seen.insert(name, second) {
            return Err(ReadError::Duplicate {
                path: path.to_path_buf(),
                kind,
                name: name.clone(),
                first,
                second,
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(prefix: &str, n: usize) -> Vec<String> {
        (0..n).map(|i| format!("{prefix}{i}")).collect()
    }

    fn builder(cells: usize, genes: usize) -> CountsBuilder {
        CountsBuilder::new(Path::new("t"), names("c", cells), names("g", genes)).unwrap()
    }

    fn invalid(message: String) -> ReadError {
        ReadError::malformed(Path::new("t"), 0, message)
    }

    /// [[0, 2, 0], [1, 0, 3]] as CSR, CSC and dense all give one matrix.
    #[test]
    fn csr_csc_and_dense_agree() {
        let mut csr = builder(2, 3);
        push_compressed(
            &mut csr,
            Major::Cell,
            &[0, 1, 3],
            &[1, 0, 2],
            &[2.0, 1.0, 3.0],
            invalid,
        )
        .unwrap();
        let mut csc = builder(2, 3);
        push_compressed(
            &mut csc,
            Major::Gene,
            &[0, 1, 2, 3],
            &[1, 0, 1],
            &[1.0, 2.0, 3.0],
            invalid,
        )
        .unwrap();
        let mut dense = builder(2, 3);
        push_dense(&mut dense, &[0.0, 2.0, 0.0, 1.0, 0.0, 3.0]).unwrap();
        let m = csr.finish();
        assert_eq!(m.csr.indptr, [0, 1, 3]);
        assert_eq!(m.csr.indices, [1, 0, 2]);
        assert_eq!(m.csr.data, [2, 1, 3]);
        assert_eq!(m, csc.finish());
        assert_eq!(m, dense.finish());
    }

    #[test]
    fn unsorted_rows_explicit_zeros_and_duplicates_are_normalised() {
        let mut b = builder(2, 3);
        for (c, g, v) in [
            (1, 2, 1.0),
            (0, 2, 4.0),
            (1, 0, 0.0),
            (0, 0, 1.0),
            (1, 2, 2.0),
        ] {
            b.push(c, g, v).unwrap();
        }
        let m = b.finish();
        assert_eq!(m.csr.indptr, [0, 2, 3]);
        assert_eq!(m.csr.indices, [0, 2, 2]);
        assert_eq!(m.csr.data, [1, 4, 3]);
    }

    #[test]
    fn non_integer_values_name_cell_and_gene() {
        for bad in [0.5, -1.0, f64::NAN, f64::INFINITY, 5e9] {
            let mut b = builder(2, 3);
            let err = push_dense(&mut b, &[0.0, 0.0, 0.0, 0.0, bad, 0.0]).unwrap_err();
            match err {
                ReadError::NonIntegerCounts { cell, gene, .. } => {
                    assert_eq!((cell.as_str(), gene.as_str()), ("c1", "g1"))
                }
                other => panic!("{other}"),
            }
        }
    }

    #[test]
    fn structural_faults_are_reported() {
        let cases: [(&[i64], &[i64]); 4] = [
            (&[0, 1], &[0]),
            (&[0, 2, 1], &[0]),
            (&[0, 1, 1], &[3]),
            (&[0, 1, 1], &[-1]),
        ];
        for (indptr, indices) in cases {
            let mut b = builder(2, 3);
            let values = vec![1.0; indices.len()];
            let err = push_compressed(&mut b, Major::Cell, indptr, indices, &values, invalid);
            assert!(
                matches!(err, Err(ReadError::Malformed { .. })),
                "{indptr:?}"
            );
        }
    }

    #[test]
    fn duplicate_names_are_rejected() {
        let err = CountsBuilder::new(Path::new("t"), names("c", 2), vec!["A".into(), "A".into()])
            .err()
            .unwrap();
        assert!(matches!(
            err,
            ReadError::Duplicate {
                kind: "gene",
                first: 0,
                second: 1,
                ..
            }
        ));
    }
}
