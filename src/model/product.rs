//! The macrogene layer's product `ln(1 + x) W_s^T` (SATURN.md section 4) on sparse counts, with
//! its backward pass written by hand.
//!
//! A cell expresses about a tenth of the selected genes, so the product over the non-zero counts
//! does a tenth of the dense product's arithmetic, forward and backward (the gradient with
//! respect to `W_s` is `ln(1 + x)^T dM`, as sparse). Both are one kernel, [`SparseRows::times`]:
//! rows of a sparse matrix times a dense matrix, on libtorch's threads ([`super::pool`]).
//!
//! libtorch's autograd cannot call a Rust backward function, so the product's output is a new
//! leaf that requires a gradient ([`MacrogeneProduct`]): autograd stops there. A training step's
//! `W^T = exp(P)^T` is made of leaves too ([`WeightLeaves`]: the whole matrix, which the
//! regulariser's gene vectors read, and each species' block, which its decoder reads), and the
//! optimiser ([`super::adam::Adam::backward_step`]) forms `P`'s gradient from all of theirs in
//! one pass: `dP^T = W^T ⊙ dW^T`, `dW^T` being the leaves' gradients plus each product's
//! `ln(1 + x)^T dM` in its species' rows. Autograd's own `exp`, `split` and sums over the G x M
//! matrix are not run. The macrogene layer stores `P` gene by gene (`P^T` in memory), so `W^T`,
//! its blocks and these gradients are contiguous rows and nothing here is transposed but the
//! sparse counts ([`SparseRows::transpose`]).

use crate::csr::CsrView;
use crate::kernels::host::{cpu_f32, f32_data, f32_data_mut, new_f32};
use crate::kernels::pool::map_parts;
use crate::kernels::simd::widest;
use std::sync::OnceLock;
use tch::Tensor;

/// Output columns per pass over a row's non-zeros: the dense matrix's column block (e.g. 128 x
/// 2,000 genes of `W_s^T`, 1 MB) stays in a core's L2 cache while every row reads it.
const COLUMN_BLOCK: usize = 128;

/// Rows per parallel part of [`SparseRows::times`].
const ROWS_PER_PART: usize = 1024;

/// `ln(1 + x)` for a count, from a table for the small counts most entries are.
fn log1p_count(x: u32) -> f32 {
    const SMALL: usize = 1024;
    static TABLE: OnceLock<Vec<f32>> = OnceLock::new();
    let table = TABLE.get_or_init(|| (0..SMALL).map(|x| (x as f32).ln_1p()).collect());
    match table.get(x as usize) {
        Some(&v) => v,
        None => (x as f32).ln_1p(),
    }
}

/// Some rows of a sparse matrix (CSR), e.g. a batch of cells' counts over a species' genes with
/// `ln(1 + x)` for every non-zero `x`: the macrogene layer's input.
#[derive(Debug, Clone, PartialEq)]
pub struct SparseRows {
    n_cols: usize,
    indptr: Vec<usize>,
    cols: Vec<u32>,
    values: Vec<f32>,
}

impl SparseRows {
    /// Rows `rows` of `counts` with `ln(1 + x)` for every stored count `x` (a column stored twice
    /// in a row adds up, as in a sparse matrix).
    pub fn log1p_counts(counts: &CsrView<'_>, rows: &[usize]) -> Self {
        let mut out = Self {
            n_cols: counts.n_cols(),
            indptr: Vec::with_capacity(rows.len() + 1),
            cols: Vec::new(),
            values: Vec::new(),
        };
        out.indptr.push(0);
        for &r in rows {
            let (cols, counts) = counts.row(r);
            out.cols.extend_from_slice(cols);
            out.values.extend(counts.iter().map(|&x| log1p_count(x)));
            out.indptr.push(out.cols.len());
        }
        out
    }

    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.indptr.len() - 1
    }

    /// The transposed matrix (columns become rows), e.g. genes x cells from cells x genes.
    pub fn transpose(&self) -> Self {
        let mut indptr = vec![0usize; self.n_cols + 1];
        for &c in &self.cols {
            indptr[c as usize + 1] += 1;
        }
        for j in 0..self.n_cols {
            indptr[j + 1] += indptr[j];
        }
        let mut next = indptr.clone();
        let mut cols = vec![0u32; self.cols.len()];
        let mut values = vec![0f32; self.values.len()];
        for r in 0..self.n_rows() {
            for k in self.indptr[r]..self.indptr[r + 1] {
                let at = &mut next[self.cols[k] as usize];
                cols[*at] = r as u32;
                values[*at] = self.values[k];
                *at += 1;
            }
        }
        Self {
            n_cols: self.n_rows(),
            indptr,
            cols,
            values,
        }
    }

    /// This matrix (rows x n) times `dense` (n x width): rows x width.
    pub fn times(&self, dense: &Panels) -> Panels {
        assert_eq!(dense.rows, self.n_cols, "dense has one row per column");
        let mut out = Panels::zeros(self.n_rows(), dense.width);
        let rows = self.n_rows();
        // each part is some rows of one output panel: a thread reads one panel of `dense` for
        // many rows before the next
        let parts: Vec<(usize, usize, &mut [[f32; COLUMN_BLOCK]])> = out
            .data
            .as_chunks_mut::<COLUMN_BLOCK>()
            .0
            .chunks_mut(rows.max(1))
            .enumerate()
            .flat_map(|(p, panel)| {
                panel
                    .chunks_mut(ROWS_PER_PART)
                    .enumerate()
                    .map(move |(c, part)| (p, c * ROWS_PER_PART, part))
            })
            .collect();
        map_parts(parts, |_, (p, first, part)| {
            let (a, b) = (self.indptr[first], self.indptr[first + part.len()]);
            let indptr = &self.indptr[first..=first + part.len()];
            let rows = Rows {
                indptr,
                offset: a,
                cols: &self.cols[a..b],
                values: &self.values[a..b],
            };
            times_panel(rows, dense.panel(p), part);
        });
        out
    }
}

/// Some rows of a sparse matrix: row `r`'s non-zeros are `indptr[r] - offset..indptr[r + 1] -
/// offset` of `cols` and `values`.
#[derive(Clone, Copy)]
struct Rows<'a> {
    indptr: &'a [usize],
    offset: usize,
    cols: &'a [u32],
    values: &'a [f32],
}

widest! {
    /// The rows times one panel of a dense matrix (one panel row per column of the rows) into
    /// `out` (one panel row per row).
    fn times_panel(rows: Rows<'_>, panel: &[[f32; COLUMN_BLOCK]], out: &mut [[f32; COLUMN_BLOCK]]) {
        let Some(last) = panel.len().checked_sub(1) else {
            return;
        };
        for (r, out) in out.iter_mut().enumerate() {
            let nonzeros = rows.indptr[r] - rows.offset..rows.indptr[r + 1] - rows.offset;
            let (cols, values) = (&rows.cols[nonzeros.clone()], &rows.values[nonzeros]);
            let mut acc = [0f32; COLUMN_BLOCK];
            for k in 0..cols.len().min(values.len()) {
                // no branch inside the loop, so the sums stay in registers (`times` checks the
                // columns against the panel's rows; `min` only makes the access provably valid)
                let (d, v) = (&panel[(cols[k] as usize).min(last)], values[k]);
                for (a, d) in acc.iter_mut().zip(d) {
                    *a += v * d;
                }
            }
            *out = acc;
        }
    }
}

/// A dense matrix (rows x width) stored as panels of [`COLUMN_BLOCK`] columns, each panel
/// row-major and contiguous (the last one padded with zeros): the operand and result of
/// [`SparseRows::times`]. A sparse row reads one panel row per non-zero, and a panel (e.g. 2,000
/// genes x 128 floats, 1 MB) stays in a core's L2 cache, where the rows of a row-major matrix
/// with a power-of-two stride would fall into a few of the cache's sets.
#[derive(Debug, Clone, PartialEq)]
pub struct Panels {
    rows: usize,
    width: usize,
    data: Vec<f32>,
}

impl Panels {
    fn zeros(rows: usize, width: usize) -> Self {
        Self {
            rows,
            width,
            data: vec![0f32; width.div_ceil(COLUMN_BLOCK) * rows * COLUMN_BLOCK],
        }
    }

    /// A row-major `rows` x `width` matrix as panels.
    pub fn from_rows(a: &[f32], rows: usize, width: usize) -> Self {
        Self::build(rows, width, |panel, first, len| {
            for (r, out) in panel.chunks_exact_mut(COLUMN_BLOCK).enumerate() {
                out[..len].copy_from_slice(&a[r * width + first..][..len]);
            }
        })
    }

    /// Zero panels filled in parallel by `fill(panel, first column, columns)`.
    fn build(rows: usize, width: usize, fill: impl Fn(&mut [f32], usize, usize) + Sync) -> Self {
        let mut out = Self::zeros(rows, width);
        if rows > 0 {
            map_parts(
                out.data.chunks_mut(rows * COLUMN_BLOCK).collect(),
                |p, panel| {
                    let first = p * COLUMN_BLOCK;
                    fill(panel, first, COLUMN_BLOCK.min(width - first))
                },
            );
        }
        out
    }

    /// Writes the matrix into `out`, row-major (rows x width).
    pub fn write_rows(&self, out: &mut [f32]) {
        assert_eq!(out.len(), self.rows * self.width, "out is rows x width");
        for (r, row) in out.chunks_exact_mut(self.width.max(1)).enumerate() {
            for (p, block) in row.chunks_mut(COLUMN_BLOCK).enumerate() {
                block.copy_from_slice(&self.panel(p)[r][..block.len()]);
            }
        }
    }

    /// The matrix as a new float tensor (rows x width).
    pub fn to_tensor(&self) -> Tensor {
        let mut t = Tensor::empty(
            [self.rows as i64, self.width as i64],
            (tch::Kind::Float, tch::Device::Cpu),
        );
        // SAFETY: a new contiguous float tensor on the CPU, not shared yet; every element is
        // written before it is read.
        self.write_rows(unsafe { f32_data_mut(&mut t) });
        t
    }

    /// Adds row `r` to `out` (the matrix's width).
    fn add_row(&self, r: usize, out: &mut [f32]) {
        for (p, out) in out.chunks_mut(COLUMN_BLOCK).enumerate() {
            add_into(out, &self.panel(p)[r][..out.len()]);
        }
    }

    fn panel(&self, p: usize) -> &[[f32; COLUMN_BLOCK]] {
        self.panel_data(p).as_chunks::<COLUMN_BLOCK>().0
    }

    /// Panel `p`, row-major (rows x [`COLUMN_BLOCK`]).
    fn panel_data(&self, p: usize) -> &[f32] {
        &self.data[p * self.rows * COLUMN_BLOCK..][..self.rows * COLUMN_BLOCK]
    }
}

/// One macrogene-layer product of a training step, kept for its backward pass: the leaf that
/// stands for `ln(1 + x) W_s^T` in autograd's graph, and what its gradient needs.
#[derive(Debug)]
pub struct MacrogeneProduct {
    output: Tensor,
    first_gene: usize,
    inputs: SparseRows,
}

impl MacrogeneProduct {
    /// `ln(1 + x) W_s^T` for the rows `inputs` and `w_t` = `W_s^T` (G_s x M, contiguous). When
    /// `w_t` requires a gradient (a block of [`WeightLeaves`]), `first_gene` must say where its
    /// rows start in `W^T`, and the product comes back with its record, whose gradient
    /// [`WeightLeaves::parameter_gradient_t`] adds to `P`'s.
    pub fn new(
        inputs: SparseRows,
        w_t: &Tensor,
        first_gene: Option<usize>,
    ) -> (Tensor, Option<Self>) {
        let weights_t = cpu_f32(&w_t.detach());
        let (g, m) = (weights_t.size()[0] as usize, weights_t.size()[1] as usize);
        assert_eq!(g, inputs.n_cols, "W_s^T has one row per column of the rows");
        let panels = Panels::from_rows(f32_data(&weights_t), g, m);
        let output = inputs.times(&panels).to_tensor();
        if !w_t.requires_grad() {
            return (output, None);
        }
        let first_gene =
            first_gene.expect("weights that require a gradient come with their place in W^T");
        let output = output.set_requires_grad(true);
        let record = Self {
            output: output.shallow_clone(),
            first_gene,
            inputs,
        };
        (output, Some(record))
    }

    /// The leaf standing for the product in autograd's graph.
    pub fn output(&self) -> &Tensor {
        &self.output
    }

    /// The product's gradient with respect to `W_s^T`, `ln(1 + x)^T dM` (G_s x M, as panels),
    /// `dM` being the output's gradient.
    fn weights_gradient(&self, output_grad: &Tensor) -> Panels {
        let m = self.output.size()[1] as usize;
        let d_out = cpu_f32(output_grad);
        let d_out = Panels::from_rows(f32_data(&d_out), self.inputs.n_rows(), m);
        self.inputs.transpose().times(&d_out)
    }
}

/// `W^T = exp(P)^T` (G x M) of one training step as autograd leaves: the whole matrix and each
/// species' block, views of one tensor computed without a graph. Autograd stops at them;
/// [`WeightLeaves::parameter_gradient_t`] turns their gradients and the step's products' into
/// `P`'s.
#[derive(Debug)]
pub struct WeightLeaves {
    parameter: Tensor,
    weights_t: Tensor,
    all: Tensor,
    blocks: Vec<Tensor>,
    first_genes: Vec<usize>,
}

impl WeightLeaves {
    /// The leaves of `exp(P)^T` for `P` (M x G, stored as `P^T`) whose species' blocks of genes
    /// have the sizes `genes`.
    pub fn new(parameter: &Tensor, genes: &[i64]) -> Self {
        let weights_t = tch::no_grad(|| parameter.tr().exp());
        assert!(weights_t.is_contiguous(), "P is stored as P^T");
        let leaf = |t: Tensor| t.detach().set_requires_grad(true);
        let mut first_genes = Vec::with_capacity(genes.len());
        let mut first = 0;
        let blocks = genes
            .iter()
            .map(|&g| {
                first_genes.push(first as usize);
                first += g;
                leaf(weights_t.narrow(0, first - g, g))
            })
            .collect();
        Self {
            parameter: parameter.shallow_clone(),
            all: leaf(weights_t.shallow_clone()),
            weights_t,
            blocks,
            first_genes,
        }
    }

    /// `P`, whose gradient the leaves give.
    pub fn parameter(&self) -> &Tensor {
        &self.parameter
    }

    /// `W^T` (G x M), for what reads every gene (the regulariser's gene vectors).
    pub fn all(&self) -> &Tensor {
        &self.all
    }

    /// `W_s^T` (G_s x M), for what reads species `species`' genes.
    pub fn block(&self, species: usize) -> &Tensor {
        &self.blocks[species]
    }

    /// The leaves, in the order [`WeightLeaves::parameter_gradient_t`] takes their gradients:
    /// the whole matrix, then the blocks.
    pub fn leaves(&self) -> Vec<&Tensor> {
        std::iter::once(&self.all).chain(&self.blocks).collect()
    }

    /// `P^T`'s gradient (G x M, contiguous): `W^T ⊙ dW^T`, `dW^T` summing, row by row, the
    /// leaves' gradients (in [`WeightLeaves::leaves`]' order; undefined when the loss does not
    /// reach a leaf) and each product's `ln(1 + x)^T dM` (its output's gradient `dM`, undefined
    /// when the loss does not reach it).
    pub fn parameter_gradient_t(
        &self,
        leaf_grads: &[Tensor],
        products: &[(&MacrogeneProduct, &Tensor)],
    ) -> Tensor {
        let (g, m) = self.weights_t.size2().expect("W^T is G x M");
        let (g, m) = (g as usize, m as usize);
        assert_eq!(
            leaf_grads.len(),
            1 + self.blocks.len(),
            "one gradient per leaf"
        );
        // every term with its first gene: the leaves' (rows x M, row-major), the products' (panels)
        let dense: Vec<(usize, Tensor)> = leaf_grads
            .iter()
            .zip(std::iter::once(0).chain(self.first_genes.iter().copied()))
            .filter(|(grad, _)| grad.defined())
            .map(|(grad, first)| (first, cpu_f32(grad)))
            .collect();
        let dense: Vec<(usize, &[f32])> = dense.iter().map(|(f, t)| (*f, f32_data(t))).collect();
        let sparse: Vec<(usize, Panels)> = products
            .iter()
            .filter(|(_, grad)| grad.defined())
            .map(|(p, grad)| (p.first_gene, p.weights_gradient(grad)))
            .collect();
        let w_t = f32_data(&self.weights_t);
        new_f32(&[g as i64, m as i64], |out| {
            const GENES_PER_PART: usize = 64;
            let parts: Vec<&mut [f32]> = out.chunks_mut(GENES_PER_PART * m).collect();
            map_parts(parts, |k, rows| {
                for (j, row) in rows.chunks_exact_mut(m).enumerate() {
                    let gene = k * GENES_PER_PART + j;
                    row.fill(0.0);
                    for &(first, grad) in &dense {
                        let at = gene.checked_sub(first).map(|r| r * m..(r + 1) * m);
                        if let Some(src) = at.and_then(|at| grad.get(at)) {
                            add_into(row, src);
                        }
                    }
                    for (first, panels) in &sparse {
                        if let Some(r) = gene.checked_sub(*first).filter(|&r| r < panels.rows) {
                            panels.add_row(r, row);
                        }
                    }
                    scale_by(row, &w_t[gene * m..(gene + 1) * m]);
                }
            });
        })
    }
}

widest! {
    /// `out += src`, entry by entry.
    fn add_into(out: &mut [f32], src: &[f32]) {
        for (o, s) in out.iter_mut().zip(src) {
            *o += s;
        }
    }
}

widest! {
    /// `out *= w`, entry by entry.
    fn scale_by(out: &mut [f32], w: &[f32]) {
        for (o, w) in out.iter_mut().zip(w) {
            *o *= w;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::csr::CsrView;
    use tch::{Device, Kind};

    /// Random counts (rows x cols, about a fifth non-zero, up to 40) as CSR arrays.
    fn random_counts(rows: usize, cols: usize, seed: u64) -> (Vec<u64>, Vec<u32>, Vec<u32>) {
        let mut state = seed;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (state >> 33) as u32
        };
        let (mut indptr, mut cols_, mut data) = (vec![0u64], vec![], vec![]);
        for _ in 0..rows {
            for c in 0..cols as u32 {
                if next() % 5 == 0 {
                    cols_.push(c);
                    data.push(1 + next() % 40);
                }
            }
            indptr.push(cols_.len() as u64);
        }
        (indptr, cols_, data)
    }

    fn dense(rows: &SparseRows) -> Tensor {
        let mut d = vec![0f32; rows.n_rows() * rows.n_cols];
        for r in 0..rows.n_rows() {
            for k in rows.indptr[r]..rows.indptr[r + 1] {
                d[r * rows.n_cols + rows.cols[k] as usize] += rows.values[k];
            }
        }
        Tensor::from_slice(&d).reshape([rows.n_rows() as i64, rows.n_cols as i64])
    }

    fn assert_close(got: &Tensor, want: &Tensor, what: &str) {
        let err = (got - want).abs().max().double_value(&[]);
        let scale = want.abs().max().double_value(&[]);
        assert!(
            err <= 1e-5 * scale,
            "{what}: max error {err}, scale {scale}"
        );
    }

    #[test]
    fn sparse_times_dense_and_its_transpose_match_dense_products() {
        let _rng = crate::model::torch_rng();
        let (indptr, cols, data) = random_counts(70, 300, 1);
        let counts = CsrView::new(300, &indptr, &cols, &data).unwrap();
        let picked = [3, 0, 69, 3, 41]; // any rows, repeated ones too
        let x = SparseRows::log1p_counts(&counts, &picked);
        assert_eq!(x.n_rows(), 5);
        let b = Tensor::randn([300, 150], (Kind::Float, Device::Cpu)); // 150: two column blocks
        let b_panels = Panels::from_rows(f32_data(&b), 300, 150);
        let got = x.times(&b_panels).to_tensor();
        assert_close(&got, &dense(&x).matmul(&b), "x b");
        let xt = x.transpose();
        assert_eq!(xt.transpose(), x, "transposing twice gives the rows back");
        let c = Tensor::randn([5, 7], (Kind::Float, Device::Cpu));
        let got = xt.times(&Panels::from_rows(f32_data(&c), 5, 7)).to_tensor();
        assert_close(&got, &dense(&x).tr().matmul(&c), "x^T c");
    }

    /// `P`'s gradient by hand, from the leaves' gradients and a product's, against autograd
    /// through `exp` and the dense product. Two species (60 and 90 genes); the loss reads the
    /// whole `W` (as the regulariser does), species 0's block (as its decoder does) and species
    /// 1's through the product; a second product whose output the loss ignores adds nothing.
    #[test]
    fn parameter_gradient_equals_autograd_of_the_dense_product() {
        let _rng = crate::model::torch_rng();
        tch::manual_seed(8);
        let (indptr, cols, data) = random_counts(40, 90, 2);
        let counts = CsrView::new(90, &indptr, &cols, &data).unwrap();
        let rows: Vec<usize> = (0..40).collect();
        let opts = (Kind::Float, Device::Cpu);
        // P stored transposed (150 genes x 33 macrogenes), as the macrogene layer stores it
        let p = (Tensor::randn([150, 33], opts) * 0.5)
            .tr()
            .set_requires_grad(true);
        let (target, c) = (Tensor::randn([40, 33], opts), Tensor::randn([60, 33], opts));
        // the reference: autograd through exp and the dense product
        let w_t = p.tr().exp();
        let x = dense(&SparseRows::log1p_counts(&counts, &rows));
        let reference = (x.matmul(&w_t.narrow(0, 60, 90)) * &target).sum(Kind::Float)
            + w_t.square().sum(Kind::Float)
            + (w_t.narrow(0, 0, 60) * &c).sum(Kind::Float);
        let want = Tensor::run_backward(&[&reference], &[&p], false, false).remove(0);

        let leaves = WeightLeaves::new(&p, &[60, 90]);
        assert!(leaves.block(1).is_contiguous() && leaves.block(1).requires_grad());
        let product = |rows: &[usize]| {
            let x = SparseRows::log1p_counts(&counts, rows);
            let (out, record) = MacrogeneProduct::new(x, leaves.block(1), Some(60));
            (out, record.expect("the block requires a gradient"))
        };
        let ((out, record), (_, ignored)) = (product(&rows), product(&rows[..7]));
        assert_close(&out, &x.matmul(&w_t.narrow(0, 60, 90)), "the product");
        let loss = (&out * &target).sum(Kind::Float)
            + leaves.all().square().sum(Kind::Float)
            + (leaves.block(0) * &c).sum(Kind::Float);
        let mut inputs = leaves.leaves();
        inputs.extend([record.output(), ignored.output()]);
        let mut grads = Tensor::run_backward(&[&loss], &inputs, false, false);
        let product_grads = grads.split_off(3);
        assert!(
            !grads[2].defined() && !product_grads[1].defined(),
            "unused leaves"
        );
        let products = [(&record, &product_grads[0]), (&ignored, &product_grads[1])];
        let got = leaves.parameter_gradient_t(&grads, &products);
        assert_close(&got.tr(), &want, "P's gradient");
        let (_, none) = tch::no_grad(|| {
            let w_t = p.tr().narrow(0, 60, 90).exp();
            MacrogeneProduct::new(SparseRows::log1p_counts(&counts, &rows), &w_t, None)
        });
        assert!(none.is_none(), "no record without gradients");
    }
}
