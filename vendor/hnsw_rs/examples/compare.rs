//! Side-by-side bench of this hnsw_rs against hnswlib (driven by
//! `scripts/bench_index.sh` in satlas; hnswlib runs in
//! `scripts/reference/hnswlib_compare.py` on the `.npy` files written here).
//!
//! ```text
//! compare --out DIR [--n N] [--set synthetic|resample:FILE.npy] [--m 16] [--efc 200]
//!         [--ef 10,16,32,64,128,256,512] [--extra 100000] [--batch B] [--queries 1000]
//!         [--prepare 1]
//! ```
//!
//! 1. Makes the data: `synthetic` is satlas' index bench set (`benches/index.rs`: 100 blobs of
//!    256-d points, centres uniform in [-1, 1), every coordinate +-0.5 uniform noise) **sorted by
//!    cluster**, as an atlas stores its cells by dataset and cell type; `resample:FILE.npy` takes
//!    the rows of an `f32`/`f16` matrix (e.g. cell embeddings of a trained run) in file order and
//!    resamples them with Gaussian noise (0.1 of the coordinates' standard deviation) to N rows.
//!    Everything is L2-normalised (the index distance is `1 - a.b`, as satlas' `UnitCosine`);
//!    queries are fresh points of the same generator.
//! 2. With `--prepare 1`, writes `points.npy`, `queries.npy` and `extra.npy` for the Python side
//!    and stops. Otherwise reads the exact top-10 (`truth.npy` over the N points,
//!    `truth_after.npy` over N + extra, from `hnswlib_compare.py --truth`, numpy being faster at
//!    it), or computes and writes them if absent.
//! 3. Builds the index ([`PackedHnsw`], parallel insert on all rayon threads, given the points
//!    in the stored order), sweeps ef (single-thread queries), dumps it, reloads it (timed: both
//!    files read and parsed), inserts the extra points into the reloaded index and measures
//!    recall again. Results go to `DIR/hnsw_rs.json`.

use hnsw_rs::packed::{Found, PackedHnsw};
use rayon::prelude::*;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

const K: usize = 10;
const DIM: usize = 256;
const CLUSTERS: usize = 100;

fn dot(a: &[f32], b: &[f32]) -> f32 {
    hnsw_rs::simd::dot_f32(a, b)
}

/// splitmix64: a small deterministic generator (the data only needs to be reproducible).
struct Rng(u64);

impl Rng {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [lo, hi).
    fn uniform(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Standard normal (Box-Muller).
    fn normal(&mut self) -> f32 {
        let u1 = self.uniform(f32::EPSILON, 1.0);
        let u2 = self.uniform(0.0, 1.0);
        (-2.0 * u1.ln()).sqrt() * (std::f32::consts::TAU * u2).cos()
    }
}

fn normalise(rows: &mut [f32], dim: usize) {
    rows.par_chunks_mut(dim).for_each(|v| {
        let norm = dot(v, v).sqrt();
        v.iter_mut().for_each(|x| *x /= norm);
    });
}

/// A data set: `points` (stored order), `queries`, `extra` (inserted after a reload).
struct Data {
    dim: usize,
    points: Vec<f32>,
    queries: Vec<f32>,
    extra: Vec<f32>,
}

/// `n` points of the clustered generator, sorted by cluster.
fn clustered(n: usize, centres: &[f32], rng: &mut Rng) -> Vec<f32> {
    let mut labelled: Vec<(usize, Vec<f32>)> = (0..n)
        .map(|_| {
            let c = rng.below(CLUSTERS);
            let v = (0..DIM)
                .map(|d| centres[c * DIM + d] + 0.5 * rng.uniform(-1.0, 1.0))
                .collect();
            (c, v)
        })
        .collect();
    labelled.sort_by_key(|(c, _)| *c);
    labelled.into_iter().flat_map(|(_, v)| v).collect()
}

fn synthetic(n: usize, n_queries: usize, n_extra: usize) -> Data {
    let mut rng = Rng(0);
    let centres: Vec<f32> = (0..CLUSTERS * DIM)
        .map(|_| rng.uniform(-1.0, 1.0))
        .collect();
    Data {
        dim: DIM,
        points: clustered(n, &centres, &mut rng),
        queries: clustered(n_queries, &centres, &mut rng),
        extra: clustered(n_extra, &centres, &mut rng),
    }
}

/// Rows of `file` resampled with noise: output row i comes from source row `i * rows / n`, so the
/// file's order (dataset, cell type) is kept.
fn resampled(file: &Path, n: usize, n_queries: usize, n_extra: usize) -> Data {
    let (rows, dim, source) = read_npy_f32(file);
    let mean: Vec<f64> = (0..dim)
        .map(|d| (0..rows).map(|r| source[r * dim + d] as f64).sum::<f64>() / rows as f64)
        .collect();
    let var = (0..rows * dim)
        .map(|i| (source[i] as f64 - mean[i % dim]).powi(2))
        .sum::<f64>()
        / (rows * dim) as f64;
    let sigma = 0.1 * var.sqrt() as f32;
    let mut rng = Rng(1);
    let take = |count: usize, rng: &mut Rng, ordered: bool| -> Vec<f32> {
        (0..count)
            .flat_map(|i| {
                let r = if ordered {
                    i * rows / count
                } else {
                    rng.below(rows)
                };
                (0..dim)
                    .map(|d| source[r * dim + d] + sigma * rng.normal())
                    .collect::<Vec<f32>>()
            })
            .collect()
    };
    Data {
        dim,
        points: take(n, &mut rng, true),
        queries: take(n_queries, &mut rng, false),
        extra: take(n_extra, &mut rng, true),
    }
}

/// Exact top-`K` row numbers of every query among `points`, nearest first (blocked brute force).
fn exact(points: &[f32], queries: &[f32], dim: usize) -> Vec<[i32; K]> {
    queries
        .par_chunks(dim * 16)
        .flat_map_iter(|block| {
            let nq = block.len() / dim;
            let mut best = vec![Vec::<(f32, i32)>::with_capacity(K + 1); nq];
            for (c, chunk) in points.chunks(dim * 256).enumerate() {
                for (q, top) in block.chunks(dim).zip(best.iter_mut()) {
                    for (j, p) in chunk.chunks(dim).enumerate() {
                        let d = 1.0 - dot(q, p);
                        if top.len() < K || d < top[K - 1].0 {
                            let pos = top.partition_point(|&(x, _)| x <= d);
                            top.insert(pos, (d, (c * 256 + j) as i32));
                            top.truncate(K);
                        }
                    }
                }
            }
            best.into_iter().map(|top| {
                let mut ids = [0i32; K];
                for (slot, &(_, id)) in ids.iter_mut().zip(&top) {
                    *slot = id;
                }
                ids
            })
        })
        .collect()
}

fn write_npy(path: &Path, descr: &str, rows: usize, cols: usize, bytes: &[u8]) {
    let mut header =
        format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut file = std::io::BufWriter::new(std::fs::File::create(path).expect("creating .npy"));
    file.write_all(b"\x93NUMPY\x01\x00").unwrap();
    file.write_all(&(header.len() as u16).to_le_bytes())
        .unwrap();
    file.write_all(header.as_bytes()).unwrap();
    file.write_all(bytes).unwrap();
}

fn write_f32(path: &Path, values: &[f32], dim: usize) {
    let bytes: Vec<u8> = values.iter().flat_map(|x| x.to_le_bytes()).collect();
    write_npy(path, "<f4", values.len() / dim, dim, &bytes);
}

/// The exact top-`K` from `path` (an `<i4` or `<i8` `.npy` of row numbers, as
/// `hnswlib_compare.py --truth` writes with numpy) if it exists, else computed here and written.
fn read_or_compute_truth(
    path: &Path,
    points: &[f32],
    queries: &[f32],
    dim: usize,
) -> Vec<[i32; K]> {
    if let Ok(bytes) = std::fs::read(path) {
        let len = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
        let header = std::str::from_utf8(&bytes[10..10 + len]).expect("header");
        let wide = header.contains("'<i8'");
        assert!(
            wide || header.contains("'<i4'"),
            "{}: <i4 or <i8",
            path.display()
        );
        let width = if wide { 8 } else { 4 };
        let ids: Vec<i32> = bytes[10 + len..]
            .chunks_exact(width)
            .map(|b| {
                if wide {
                    i64::from_le_bytes(b.try_into().unwrap()) as i32
                } else {
                    i32::from_le_bytes(b.try_into().unwrap())
                }
            })
            .collect();
        return ids.chunks_exact(K).map(|c| c.try_into().unwrap()).collect();
    }
    let truth = exact(points, queries, dim);
    let bytes: Vec<u8> = truth
        .iter()
        .flatten()
        .flat_map(|x| x.to_le_bytes())
        .collect();
    write_npy(path, "<i4", truth.len(), K, &bytes);
    truth
}

/// A 2-D C-order `<f4` or `<f2` `.npy` file as f32: (rows, cols, values).
fn read_npy_f32(path: &Path) -> (usize, usize, Vec<f32>) {
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|mut f| f.read_to_end(&mut bytes))
        .unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not a .npy file");
    let (start, len) = if bytes[6] == 1 {
        (10, u16::from_le_bytes([bytes[8], bytes[9]]) as usize)
    } else {
        (
            12,
            u32::from_le_bytes(bytes[8..12].try_into().unwrap()) as usize,
        )
    };
    let header = std::str::from_utf8(&bytes[start..start + len]).expect("header");
    assert!(header.contains("'fortran_order': False"), "C order only");
    let shape = &header[header.find("'shape': (").expect("shape") + 10..];
    let dims: Vec<usize> = shape[..shape.find(')').unwrap()]
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    assert_eq!(dims.len(), 2, "a 2-D array");
    let data = &bytes[start + len..];
    let values = if header.contains("'<f4'") {
        data.chunks_exact(4)
            .map(|b| f32::from_le_bytes(b.try_into().unwrap()))
            .collect()
    } else if header.contains("'<f2'") {
        data.chunks_exact(2)
            .map(|b| f16_to_f32(u16::from_le_bytes([b[0], b[1]])))
            .collect()
    } else {
        panic!("{}: only <f4 and <f2 are read", path.display())
    };
    (dims[0], dims[1], values)
}

fn f16_to_f32(h: u16) -> f32 {
    let sign = if h & 0x8000 != 0 { -1.0 } else { 1.0 };
    let exp = ((h >> 10) & 0x1f) as i32;
    let frac = (h & 0x3ff) as f32;
    sign * match exp {
        0 => frac * 2f32.powi(-24),
        31 => f32::INFINITY,
        _ => (1.0 + frac / 1024.0) * 2f32.powi(exp - 15),
    }
}

fn insert(index: &mut PackedHnsw, rows: &[f32], first_id: usize, batch: usize) {
    let dim = index.dim();
    let n = rows.len() / dim;
    let ids: Vec<usize> = (first_id..first_id + n).collect();
    for (chunk, ids) in rows
        .chunks(batch.max(1) * dim)
        .zip(ids.chunks(batch.max(1)))
    {
        index.insert(chunk, ids);
    }
}

/// (recall@K, single-thread queries per second) at `ef`.
fn sweep_point(
    hnsw: &PackedHnsw,
    queries: &[f32],
    dim: usize,
    truth: &[[i32; K]],
    ef: usize,
) -> (f64, f64) {
    let start = Instant::now();
    let found: Vec<Vec<Found>> = queries
        .chunks(dim)
        .map(|q| hnsw.search(q, K, ef.max(K), None))
        .collect();
    let qps = truth.len() as f64 / start.elapsed().as_secs_f64();
    let hits: usize = found
        .iter()
        .zip(truth)
        .map(|(f, t)| f.iter().filter(|n| t.contains(&(n.id as i32))).count())
        .sum();
    (hits as f64 / (K * truth.len()) as f64, qps)
}

fn main() {
    let mut out = None;
    let (mut n, mut set, mut m, mut efc) =
        (100_000usize, "synthetic".to_string(), 16usize, 200usize);
    let (mut extra, mut batch, mut n_queries) = (100_000usize, usize::MAX, 1000usize);
    let mut prepare = false;
    let mut efs = vec![10usize, 16, 32, 64, 128, 256, 512];
    let args: Vec<String> = std::env::args().skip(1).collect();
    for pair in args.chunks(2) {
        let value = pair.get(1).expect("every option takes a value");
        match pair[0].as_str() {
            "--out" => out = Some(PathBuf::from(value)),
            "--n" => n = value.parse().expect("--n"),
            "--set" => set = value.clone(),
            "--m" => m = value.parse().expect("--m"),
            "--efc" => efc = value.parse().expect("--efc"),
            "--extra" => extra = value.parse().expect("--extra"),
            "--batch" => batch = value.parse().expect("--batch"),
            "--queries" => n_queries = value.parse().expect("--queries"),
            "--prepare" => prepare = value == "1",
            "--ef" => efs = value.split(',').map(|s| s.parse().expect("--ef")).collect(),
            other => panic!("unknown option {other}"),
        }
    }
    let out = out.expect("--out DIR");
    std::fs::create_dir_all(&out).unwrap();
    let start = Instant::now();
    let mut data = match set.strip_prefix("resample:") {
        Some(file) => resampled(Path::new(file), n, n_queries, extra),
        None => synthetic(n, n_queries, extra),
    };
    let dim = data.dim;
    normalise(&mut data.points, dim);
    normalise(&mut data.queries, dim);
    normalise(&mut data.extra, dim);
    if prepare {
        write_f32(&out.join("points.npy"), &data.points, dim);
        write_f32(&out.join("queries.npy"), &data.queries, dim);
        write_f32(&out.join("extra.npy"), &data.extra, dim);
        println!("data: {set}, n={n} dim={dim}: written to {}", out.display());
        return;
    }
    let truth = read_or_compute_truth(&out.join("truth.npy"), &data.points, &data.queries, dim);
    let all: Vec<f32> = data.points.iter().chain(&data.extra).copied().collect();
    let truth_after = read_or_compute_truth(&out.join("truth_after.npy"), &all, &data.queries, dim);
    drop(all);
    let threads = rayon::current_num_threads();
    println!(
        "data: {set}, n={n} dim={dim} queries={n_queries} extra={extra} ({:.1}s with the exact top-{K})",
        start.elapsed().as_secs_f64()
    );

    let mut hnsw = PackedHnsw::new(dim, m, efc);
    let start = Instant::now();
    insert(&mut hnsw, &data.points, 0, batch);
    let build = start.elapsed().as_secs_f64();
    println!("hnsw_rs: M={m} ef_construction={efc}: build {build:.1}s ({threads} threads)");
    let mut sweep = Vec::new();
    for &ef in &efs {
        let (recall, qps) = sweep_point(&hnsw, &data.queries, dim, &truth, ef);
        println!("hnsw_rs: ef={ef}: recall@{K} {recall:.4}, {qps:.0} q/s (single thread)");
        sweep.push(format!(
            r#"{{"ef": {ef}, "recall": {recall}, "qps": {qps}}}"#
        ));
    }

    let (graph_file, data_file) = (out.join("hnsw_rs.graph"), out.join("hnsw_rs.data"));
    {
        let mut graph = std::io::BufWriter::new(std::fs::File::create(&graph_file).unwrap());
        let mut data = std::io::BufWriter::new(std::fs::File::create(&data_file).unwrap());
        hnsw.dump(&mut graph, &mut data).expect("dump");
        graph.flush().unwrap();
        data.flush().unwrap();
    }
    let bytes = std::fs::metadata(&graph_file).unwrap().len()
        + std::fs::metadata(&data_file).unwrap().len();
    drop(hnsw);
    let start = Instant::now();
    let mut reloaded = PackedHnsw::load(
        &std::fs::read(&graph_file).unwrap(),
        &std::fs::read(&data_file).unwrap(),
    )
    .expect("reload");
    let load = start.elapsed().as_secs_f64();
    let ef_check = 128;
    let (recall_reloaded, _) = sweep_point(&reloaded, &data.queries, dim, &truth, ef_check);
    println!(
        "hnsw_rs: index {:.1} MB, reload {load:.2}s, recall@{K} at ef {ef_check} after reload {recall_reloaded:.4}",
        bytes as f64 / 1e6
    );
    let start = Instant::now();
    insert(&mut reloaded, &data.extra, n, batch);
    let insert_extra = start.elapsed().as_secs_f64();
    let mut after = Vec::new();
    for &ef in &efs {
        let (recall, qps) = sweep_point(&reloaded, &data.queries, dim, &truth_after, ef);
        after.push(format!(
            r#"{{"ef": {ef}, "recall": {recall}, "qps": {qps}}}"#
        ));
        if ef == ef_check {
            println!(
                "hnsw_rs: inserted {extra} more into the reloaded index in {insert_extra:.1}s: recall@{K} at ef {ef} {recall:.4}"
            );
        }
    }
    let json = format!(
        r#"{{"n": {n}, "set": "{set}", "m": {m}, "ef_construction": {efc}, "threads": {threads}, "build_seconds": {build}, "index_bytes": {bytes}, "load_seconds": {load}, "recall_reloaded": {recall_reloaded}, "insert_extra_seconds": {insert_extra}, "sweep": [{}], "sweep_after": [{}]}}"#,
        sweep.join(", "),
        after.join(", ")
    );
    std::fs::write(out.join("hnsw_rs.json"), json).unwrap();
}
