//! kNN benches: HNSW build time, query throughput and recall@10 against exact (brute-force)
//! search, all measured in the same run, on synthetic clustered 256-d points and, if given, on
//! the real cell embeddings of an atlas.
//!
//! `cargo test --bench index -- --bench` (never `cargo bench`: see README). Settings:
//!
//! | variable | meaning |
//! | --- | --- |
//! | `SATLAS_BENCH_POINTS` | synthetic points (default 100 000 with `--bench`; 2 000 as a smoke test) |
//! | `SATLAS_BENCH_ATLAS` | also bench the embeddings of this atlas' newest finetune run |
//! | `SATLAS_BENCH_EF` | ef_search values to sweep, comma-separated (default 16,32,64,128,256,512) |
//!
//! Building is timed once (parallel insert, all cores); recall@10 and single-thread QPS are
//! measured for every ef_search of the sweep; the exact search's QPS is that of computing the
//! ground truth. Criterion then measures per-query times of both searches on the synthetic points.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use satlas::index::{exact_knn, Candidates, CellIndex, IndexParams};
use satlas::runs::embeddings::read;
use satlas::runs::{self, Embeddings, Need};
use satlas::Atlas;
use std::collections::HashSet;
use std::hint::black_box;
use std::path::Path;
use std::time::Instant;

const DIM: usize = 256;
const K: usize = 10;
/// Queries per measurement (at most this many cells of a real atlas).
const QUERIES: usize = 1000;
const CLUSTERS: usize = 100;

/// Clustered points (100 noisy blobs), closer to cell embeddings than uniform noise.
fn points(n: usize, centres: &[f32], rng: &mut StdRng) -> Vec<f32> {
    let mut values = Vec::with_capacity(n * DIM);
    for _ in 0..n {
        let c = rng.random_range(0..CLUSTERS);
        values
            .extend((0..DIM).map(|d| centres[c * DIM + d] + 0.5 * rng.random_range(-1.0f32..1.0)));
    }
    values
}

/// `n` synthetic points (cell ids 1..=n) and `QUERIES` fresh points from the same blobs.
fn synthetic(n: usize) -> (Embeddings, Vec<f32>) {
    let mut rng = StdRng::seed_from_u64(0);
    let centres: Vec<f32> = (0..CLUSTERS * DIM)
        .map(|_| rng.random_range(-1.0..1.0))
        .collect();
    let embeddings = Embeddings {
        cell_ids: (1..=n as i64).collect(),
        hashes: vec![0; n],
        dim: DIM,
        values: points(n, &centres, &mut rng),
    };
    (embeddings, points(QUERIES, &centres, &mut rng))
}

/// The newest finetune run's embeddings of `atlas`; the queries are (up to) `QUERIES` of its
/// cells, evenly spaced.
fn real(atlas: &Path) -> (Embeddings, Vec<f32>) {
    let atlas = Atlas::open_read_only(atlas).expect("SATLAS_BENCH_ATLAS opens");
    let conn = atlas.connection();
    let run =
        runs::select(conn, Need::Embedded, None).expect("the atlas has an embedded finetune run");
    let embeddings = read(conn, run, |_| true).expect("cell embeddings");
    let step = embeddings.len().div_ceil(QUERIES).max(1);
    let queries = (0..embeddings.len())
        .step_by(step)
        .flat_map(|i| embeddings.row(i).to_vec())
        .collect();
    (embeddings, queries)
}

/// What one data set measured.
struct Measured {
    index: CellIndex,
    queries: Vec<f32>,
}

/// Builds, computes the exact neighbours, sweeps ef_search; prints one line per step.
fn measure(name: &str, embeddings: &Embeddings, queries: Vec<f32>, efs: &[usize]) -> Measured {
    let dim = embeddings.dim;
    let n_queries = queries.len() / dim.max(1);
    let params = IndexParams::default().check().expect("default parameters");
    let p = *params.get();
    let start = Instant::now();
    let mut index = CellIndex::build(1, embeddings, params).expect("index builds");
    let build = start.elapsed().as_secs_f64();
    println!(
        "index bench [{name}]: n={} dim={dim} M={} ef_construction={}: build {build:.1}s \
         ({:.0} points/s, {} threads)",
        embeddings.len(),
        p.m,
        p.ef_construction,
        embeddings.len() as f64 / build,
        rayon::current_num_threads()
    );
    let all = || (0..embeddings.len()).map(|i| (embeddings.cell_ids[i], embeddings.row(i)));
    let start = Instant::now();
    let truth: Vec<Vec<i64>> = queries
        .chunks(dim)
        .map(|q| exact_knn(all(), q, K).iter().map(|h| h.cell_id).collect())
        .collect();
    let exact_qps = n_queries as f64 / start.elapsed().as_secs_f64();
    println!("index bench [{name}]: exact search {exact_qps:.1} q/s (single thread)");
    for &ef_search in efs {
        index.set_ef_search(ef_search).expect("ef_search in range");
        let start = Instant::now();
        let found: usize = queries
            .chunks(dim)
            .zip(&truth)
            .map(|(q, t)| {
                let t: HashSet<&i64> = t.iter().collect();
                let hits = index.search(q, K, &Candidates::All, None).expect("query");
                hits.iter().filter(|h| t.contains(&h.cell_id)).count()
            })
            .sum();
        let qps = n_queries as f64 / start.elapsed().as_secs_f64();
        let recall = found as f64 / truth.iter().map(Vec::len).sum::<usize>().max(1) as f64;
        println!(
            "index bench [{name}]: ef_search={ef_search}: recall@{K} {recall:.4}, \
             {qps:.0} q/s (single thread, x{:.1} exact)",
            qps / exact_qps
        );
    }
    index.set_ef_search(p.ef_search).expect("default ef_search");
    Measured { index, queries }
}

fn bench(c: &mut Criterion) {
    // `cargo test --all-targets` runs this once as a smoke test (no `--bench` flag): keep it small.
    let benchmarking = std::env::args().any(|a| a == "--bench");
    let n: usize = std::env::var("SATLAS_BENCH_POINTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if benchmarking { 100_000 } else { 2_000 });
    let efs: Vec<usize> = std::env::var("SATLAS_BENCH_EF")
        .unwrap_or_else(|_| "16,32,64,128,256,512".into())
        .split(',')
        .map(|v| {
            v.trim()
                .parse()
                .expect("SATLAS_BENCH_EF: comma-separated integers")
        })
        .collect();

    if let Some(atlas) = std::env::var_os("SATLAS_BENCH_ATLAS") {
        let (embeddings, queries) = real(Path::new(&atlas));
        measure("atlas", &embeddings, queries, &efs);
    }
    let (embeddings, queries) = synthetic(n);
    let measured = measure("synthetic", &embeddings, queries, &efs);

    let Measured { index, queries } = measured;
    let all = || (0..n).map(|i| (i as i64 + 1, embeddings.row(i)));
    let queries: Vec<&[f32]> = queries.chunks(DIM).collect();
    let mut group = c.benchmark_group(format!("knn_{n}x{DIM}"));
    group.throughput(Throughput::Elements(1));
    group.sample_size(10);
    let mut i = 0;
    group.bench_function("hnsw_k10", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(index.search(queries[i], K, &Candidates::All, None))
        })
    });
    group.bench_function("exact_k10", |b| {
        b.iter(|| {
            i = (i + 1) % queries.len();
            black_box(exact_knn(all(), queries[i], K))
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
