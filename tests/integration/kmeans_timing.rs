//! k-means timing: linfa-clustering's KMeans against satlas' libtorch Lloyd (`macrogene::kmeans`).
//! Ignored by default (minutes); run with
//! `cargo test --test kmeans_timing -- --ignored --nocapture`.
//! Dependencies are built with opt-level 2 even in the dev profile, so the numbers hold for
//! release builds too (the hot loops live in linfa / libtorch, not in satlas).

use linfa::prelude::*;
use linfa_clustering::KMeans;
use ndarray::Array2;
use rand::{rngs::StdRng, Rng, SeedableRng};
use satlas::macrogene::{self, KMeansParams};
use std::time::Instant;

fn data(n: usize, d: usize) -> Array2<f32> {
    let mut rng = StdRng::seed_from_u64(0);
    Array2::from_shape_fn((n, d), |_| rng.random::<f32>())
}

fn time_satlas(n: usize, d: usize, k: usize, iters: usize) {
    let x = data(n, d);
    let t = Instant::now();
    let p = KMeansParams {
        n_clusters: k,
        max_iter: 1,
        tol: 0.0,
        seed: 0,
    };
    macrogene::kmeans(x.view(), &p).unwrap();
    let one = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let p = KMeansParams {
        n_clusters: k,
        max_iter: iters,
        tol: 0.0,
        seed: 0,
    };
    let fit = macrogene::kmeans(x.view(), &p).unwrap();
    let total = t.elapsed().as_secs_f64();
    let per_iter = (total - one) / (fit.n_iter.max(2) - 1) as f64;
    eprintln!("satlas  {n} x {d} x {k}: init + 1 iteration {one:.1} s; {} iterations {total:.1} s; {per_iter:.2} s/iteration", fit.n_iter);
}

fn time_linfa(n: usize, d: usize, k: usize, iters: u64) {
    let ds = DatasetBase::from(data(n, d).mapv(f64::from));
    let t = Instant::now();
    KMeans::params(k)
        .n_runs(1)
        .max_n_iterations(1)
        .tolerance(1e-12)
        .fit(&ds)
        .unwrap();
    let one = t.elapsed().as_secs_f64();
    let t = Instant::now();
    KMeans::params(k)
        .n_runs(1)
        .max_n_iterations(iters)
        .tolerance(1e-12)
        .fit(&ds)
        .unwrap();
    let total = t.elapsed().as_secs_f64();
    let per_iter = (total - one) / (iters - 1) as f64;
    eprintln!("linfa   {n} x {d} x {k}: init + 1 iteration {one:.1} s; {iters} iterations {total:.1} s; {per_iter:.2} s/iteration");
}

#[test]
#[ignore]
fn satlas_lloyd_timing() {
    time_satlas(2000, 1280, 200, 3);
    time_satlas(16_000, 1280, 2000, 4);
}

#[test]
#[ignore]
fn linfa_timing() {
    // a reduced problem: linfa's cost scales with n * k * d per iteration and per init step
    time_linfa(2000, 1280, 200, 3);
}
