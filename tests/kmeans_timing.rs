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

#[test]
#[ignore]
fn linfa_vs_lloyd_timing() {
    // linfa on a reduced problem; its cost scales with n * k * d per iteration and per init step
    let (n, d, k, iters) = (4000, 1280, 500, 3);
    let x = data(n, d).mapv(f64::from);
    let ds = DatasetBase::from(x);
    let t = Instant::now();
    let fit = KMeans::params(k)
        .n_runs(1)
        .max_n_iterations(iters)
        .tolerance(0.0)
        .fit(&ds)
        .unwrap();
    let linfa = t.elapsed().as_secs_f64();
    eprintln!("linfa   {n} x {d} x {k}: {linfa:.1} s for k-means++ init + {iters} iterations ({} centroids)", fit.centroids().nrows());

    for (n, d, k, iters) in [(4000, 1280, 500, 3), (16_000, 1280, 2000, 5)] {
        let x = data(n, d);
        let t = Instant::now();
        let p = KMeansParams {
            n_clusters: k,
            max_iter: 1,
            tol: 0.0,
            seed: 0,
        };
        macrogene::kmeans(x.view(), &p).unwrap();
        let init = t.elapsed().as_secs_f64();
        let t = Instant::now();
        let p = KMeansParams {
            n_clusters: k,
            max_iter: iters,
            tol: 0.0,
            seed: 0,
        };
        let fit = macrogene::kmeans(x.view(), &p).unwrap();
        let total = t.elapsed().as_secs_f64();
        eprintln!(
            "satlas  {n} x {d} x {k}: {init:.1} s for init + 1 iteration, {total:.1} s for init + {} iterations -> {:.2} s/iteration",
            fit.n_iter,
            (total - init) / (fit.n_iter.max(2) - 1) as f64
        );
    }
}
