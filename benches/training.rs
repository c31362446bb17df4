//! The hand-written pretraining kernels against the tensor forms they replace, value and
//! gradient (forward and backward), on the shapes of `scripts/eval_baron.sh`'s pretraining step at
//! batch 512 (2 x 2,000 genes, 500 macrogenes, 256 hidden, ESM-2 t6's 320-d protein embeddings);
//! random inputs, no data needed. Threads: `SATLAS_BENCH_THREADS` (default 2).
//!
//! - `regulariser`: [`anchored_regulariser_fused`] against autograd through
//!   [`anchored_regulariser`], 4,000 genes each paired with a random partner;
//! - `zinb`: [`zinb_nll_fused`] (sparse counts, the decoder's logits) against autograd through
//!   `zinb_nll(x, library * softmax(logits), theta, pi)`, 256 cells x 2,000 genes of counts with
//!   nine zeros in ten.

use criterion::{criterion_group, criterion_main, Criterion};
use ndarray::Array2;
use satlas::csr::Csr;
use satlas::model::losses::{anchored_regulariser, anchored_regulariser_fused, UnitRows};
use satlas::model::{zinb_nll, zinb_nll_fused};
use tch::{Device, Kind, Tensor};

const GENES: i64 = 4000;
const HIDDEN: i64 = 256;
const PROTEIN_DIM: i64 = 320;
const CELLS: i64 = 256;
const SPECIES_GENES: i64 = 2000;

/// The value and the gradients of `loss` with respect to `inputs`, as a training step needs.
fn backward(loss: Tensor, inputs: &[&Tensor]) -> f64 {
    let grads = Tensor::run_backward(&[&loss], inputs, false, false);
    loss.double_value(&[]) + grads.len() as f64
}

fn regulariser(c: &mut Criterion) {
    let q = Tensor::randn([GENES, HIDDEN], (Kind::Float, Device::Cpu)).set_requires_grad(true);
    let e = Tensor::randn([GENES, PROTEIN_DIM], (Kind::Float, Device::Cpu));
    let partners = Tensor::randint(GENES, [GENES], (Kind::Int64, Device::Cpu));
    let partner_list = Vec::<i64>::try_from(&partners).expect("int64 partners");
    let e_rows = Vec::<f32>::try_from(&e.view([-1])).expect("float embeddings");
    let e_unit = UnitRows::new(
        Array2::from_shape_vec((GENES as usize, PROTEIN_DIM as usize), e_rows)
            .expect("genes x dim")
            .view(),
    );
    let mut group = c.benchmark_group(format!("regulariser_{GENES}x{HIDDEN}"));
    group.sample_size(20);
    group.bench_function("fused", |b| {
        b.iter(|| {
            backward(
                anchored_regulariser_fused(&q, &e_unit, 0, &partner_list),
                &[&q],
            )
        })
    });
    group.bench_function("tensor_autograd", |b| {
        b.iter(|| backward(anchored_regulariser(&q, &e, 0, &partners), &[&q]))
    });
    group.finish();
}

fn zinb(c: &mut Criterion) {
    let opts = (Kind::Float, Device::Cpu);
    let shape = [CELLS, SPECIES_GENES];
    let kept = Tensor::rand(shape, opts).gt(0.9).to_kind(Kind::Float);
    let x = (Tensor::rand(shape, opts) * 8.0).floor() * &kept + &kept;
    let csr = csr_of(&x);
    let counts = csr.view().expect("valid CSR");
    let rows: Vec<usize> = (0..CELLS as usize).collect();
    let logits = Tensor::randn(shape, opts).set_requires_grad(true);
    let theta = (Tensor::rand([SPECIES_GENES], opts) * 4.0 + 0.1).set_requires_grad(true);
    let pi = Tensor::randn(shape, opts).set_requires_grad(true);
    let library = x.sum_dim_intlist(1, true, Kind::Float);
    let inputs = [&logits, &theta, &pi];
    let mut group = c.benchmark_group(format!("zinb_{CELLS}x{SPECIES_GENES}"));
    group.sample_size(20);
    group.bench_function("fused", |b| {
        b.iter(|| {
            backward(
                zinb_nll_fused(&counts, &rows, &logits, &theta, &pi),
                &inputs,
            )
        })
    });
    group.bench_function("tensor_autograd", |b| {
        b.iter(|| {
            let mu = &library * logits.softmax(-1, Kind::Float);
            backward(zinb_nll(&x, &mu, &theta, &pi), &inputs)
        })
    });
    group.finish();
}

/// The CSR form of a dense (cells x genes) count matrix.
fn csr_of(x: &Tensor) -> Csr {
    let genes = x.size()[1] as usize;
    let dense = Vec::<f32>::try_from(&x.reshape([-1])).expect("float counts");
    let mut csr = Csr::empty(genes);
    for row in dense.chunks(genes) {
        let entries = row.iter().enumerate().filter(|(_, &v)| v > 0.0);
        csr.push_row(entries.map(|(j, &v)| (j as u32, v as u32)).collect());
    }
    csr
}

fn threads() {
    let threads = std::env::var("SATLAS_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    tch::set_num_threads(threads);
}

fn benches(c: &mut Criterion) {
    threads();
    regulariser(c);
    zinb(c);
}

criterion_group!(training, benches);
criterion_main!(training);
