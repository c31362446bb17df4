//! kNN benches: HNSW build time, query throughput and recall@10 against exact (brute-force)
//! search measured in the same run, on synthetic 256-d points.
//!
//! `cargo bench --bench index` (N points from `SATLAS_BENCH_N`, default 100 000; dimension 256).
//! Building is timed once (criterion would repeat it ten times); recall and the QPS ratio are
//! printed before criterion measures the per-query times of both searches.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use satlas::index::embeddings::Embeddings;
use satlas::index::{exact_knn, Candidates, CellIndex, IndexParams};
use std::collections::HashSet;
use std::hint::black_box;
use std::time::Instant;

const DIM: usize = 256;
const K: usize = 10;
const QUERIES: usize = 200;

/// Clustered points (100 Gaussian-ish blobs), closer to cell embeddings than uniform noise.
fn points(n: usize, rng: &mut StdRng) -> Vec<f32> {
    let centres: Vec<f32> = (0..100 * DIM)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let mut values = Vec::with_capacity(n * DIM);
    for _ in 0..n {
        let c = rng.random_range(0..100);
        values
            .extend((0..DIM).map(|d| centres[c * DIM + d] + 0.5 * rng.random_range(-1.0f32..1.0)));
    }
    values
}

fn bench(c: &mut Criterion) {
    // `cargo test --all-targets` runs this once as a smoke test (no `--bench` flag): keep it small.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("SATLAS_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 100_000 } else { 2_000 });
    let mut rng = StdRng::seed_from_u64(0);
    let embeddings = Embeddings {
        cell_ids: (1..=n as i64).collect(),
        hashes: vec![0; n],
        dim: DIM,
        values: points(n, &mut rng),
    };
    let queries: Vec<Vec<f32>> = points(QUERIES, &mut rng)
        .chunks(DIM)
        .map(<[f32]>::to_vec)
        .collect();
    let params = IndexParams::default()
        .check()
        .expect("default parameters are valid");

    let start = Instant::now();
    let index = CellIndex::build(1, &embeddings, params).expect("synthetic points index");
    let build = start.elapsed().as_secs_f64();
    let all = || (0..n).map(|i| (i as i64 + 1, embeddings.row(i)));

    let start = Instant::now();
    let truth: Vec<HashSet<i64>> = queries
        .iter()
        .map(|q| exact_knn(all(), q, K).iter().map(|h| h.cell_id).collect())
        .collect();
    let exact_qps = QUERIES as f64 / start.elapsed().as_secs_f64();
    let start = Instant::now();
    let found: usize = queries
        .iter()
        .zip(&truth)
        .map(|(q, t)| {
            let hits = index
                .search(q, K, &Candidates::All, None)
                .expect("valid query");
            hits.iter().filter(|h| t.contains(&h.cell_id)).count()
        })
        .sum();
    let hnsw_qps = QUERIES as f64 / start.elapsed().as_secs_f64();
    let recall = found as f64 / (K * QUERIES) as f64;
    let p = params.get();
    println!(
        "index bench: n={n} dim={DIM} M={} ef_construction={} ef_search={}: build {build:.1}s \
         ({:.0} points/s); recall@{K} {recall:.3}; single-thread QPS hnsw {hnsw_qps:.0} vs exact \
         {exact_qps:.1} (x{:.0})",
        p.m,
        p.ef_construction,
        p.ef_search,
        n as f64 / build,
        hnsw_qps / exact_qps
    );

    let mut group = c.benchmark_group(format!("knn_{n}x{DIM}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    let mut i = 0;
    group.bench_function("hnsw_k10", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            black_box(index.search(&queries[i], K, &Candidates::All, None))
        })
    });
    group.bench_function("exact_k10", |b| {
        b.iter(|| {
            i = (i + 1) % QUERIES;
            black_box(exact_knn(all(), &queries[i], K))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
