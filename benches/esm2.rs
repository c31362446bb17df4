//! ESM-2 throughput (tokens/s) on the real 6-layer weights in `../shared/data`.
//!
//! Proteins: records 0, 256, 512, ... (64 of them) of
//! `../shared/data/proteins/human_swissprot2014_baron_genes.fa`, embedded with the default options
//! (SATURN truncation, 4096-token batches). `scripts/reference/esm2_bench.py` times Hugging Face
//! transformers on the same proteins; `scripts/bench_esm2.sh` runs both and prints the ratio.
//! Threads: `SATLAS_BENCH_THREADS` (default 2). Skips with a notice if the data is absent.
//!
//! `attention_core` times the hand-written attention ([`satlas::protein::attention`], rotary
//! included) against what it replaced, libtorch's rotary by tensor operations and
//! `scaled_dot_product_attention`, on the t6 model's shapes (20 heads of 16 dimensions) for four
//! 1,022-token sequences and for 32 sequences of 128 tokens; no data needed.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use satlas::protein::attention::{attention, RotaryTables};
use satlas::protein::{embed_chunk, EmbedOptions, Esm2, Parallelism, Segment};
use std::path::PathBuf;
use tch::{Device, Kind, Tensor};

fn proteins(fasta: &std::path::Path) -> Vec<(String, String)> {
    let text = std::fs::read_to_string(fasta).expect("readable FASTA");
    let mut records: Vec<(String, String)> = Vec::new();
    for line in text.lines() {
        if let Some(header) = line.strip_prefix('>') {
            let id = header.split_whitespace().next().unwrap_or("").to_string();
            records.push((id, String::new()));
        } else if let Some((_, seq)) = records.last_mut() {
            seq.push_str(line.trim());
        }
    }
    records.into_iter().step_by(256).take(64).collect()
}

fn esm2_tokens_per_second(c: &mut Criterion) {
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    let (dir, fasta) = (
        data.join("esm2_t6_8M_finetuned"),
        data.join("proteins/human_swissprot2014_baron_genes.fa"),
    );
    if !dir.is_dir() || !fasta.is_file() {
        eprintln!("SKIPPED esm2 bench: {} is absent", data.display());
        return;
    }
    let threads = std::env::var("SATLAS_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    let model = Esm2::load_dir(&dir, tch::Device::Cpu).expect("ESM-2 weights load");
    let proteins = proteins(&fasta);
    let options = EmbedOptions::default();
    let tokens: usize = proteins
        .iter()
        .map(|(_, s)| model.alphabet().encode(s, options.truncation).ids.len())
        .sum();
    eprintln!(
        "esm2 bench: {} proteins, {tokens} tokens per iteration, {threads} threads",
        proteins.len()
    );
    let mut group = c.benchmark_group("esm2_t6_8m");
    group.sample_size(10);
    group.throughput(Throughput::Elements(tokens as u64));
    for (name, parallelism) in [
        ("embed_64_proteins", Parallelism::IntraOp(threads)),
        (
            "embed_64_proteins_batch_workers",
            Parallelism::Batches(threads),
        ),
    ] {
        let options = EmbedOptions {
            parallelism,
            ..options.clone()
        };
        group.bench_function(name, |b| {
            b.iter(|| embed_chunk(&model, &proteins, &options).expect("embedding runs"))
        });
    }
    group.finish();
}

/// libtorch's attention of a padded batch `[batch, tokens, hidden]`: the rotation by tensor
/// operations, then `scaled_dot_product_attention` (the code `attention` replaced).
fn libtorch_attention(qkv: [&Tensor; 3], heads: i64, cos: &Tensor, sin: &Tensor) -> Tensor {
    let (b, t, d) = qkv[0].size3().unwrap();
    let split = |y: &Tensor| y.view([b, t, heads, d / heads]).transpose(1, 2);
    let rotate = |x: Tensor| {
        let halves = x.chunk(2, -1);
        let rotated = Tensor::cat(&[&(-&halves[1]), &halves[0]], -1);
        &x * cos + rotated * sin
    };
    let q = rotate(split(qkv[0]) * (d as f64 / heads as f64).powf(-0.5));
    let (k, v) = (rotate(split(qkv[1])), split(qkv[2]));
    let context =
        Tensor::scaled_dot_product_attention(&q, &k, &v, None::<Tensor>, 0.0, false, 1.0, false);
    context.transpose(1, 2).reshape([b, t, d])
}

fn attention_core(c: &mut Criterion) {
    let threads = std::env::var("SATLAS_BENCH_THREADS")
        .ok()
        .and_then(|t| t.parse().ok())
        .unwrap_or(2);
    tch::set_num_threads(threads);
    let (heads, head_dim) = (20i64, 16i64);
    let mut group = c.benchmark_group("attention_core");
    group.sample_size(10);
    for (batch, tokens) in [(4i64, 1022i64), (32, 128)] {
        let opts = (Kind::Float, Device::Cpu);
        let [q, k, v] = [0, 1, 2].map(|_| Tensor::randn([batch, tokens, heads * head_dim], opts));
        let exponent = Tensor::arange_start_step(0, head_dim, 2, opts) / head_dim as f64;
        let freqs = Tensor::arange(tokens, opts)
            .outer(&Tensor::pow_scalar(10000.0, &exponent).reciprocal());
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        let (cos, sin) = (emb.cos(), emb.sin());
        let rotary = RotaryTables::new(&cos, &sin);
        let segments: Vec<Segment> = (0..batch)
            .map(|s| Segment::packed((s * tokens) as usize, tokens as usize))
            .collect();
        let flat = |t: &Tensor| t.reshape([batch * tokens, heads * head_dim]);
        let (qf, kf, vf) = (flat(&q), flat(&k), flat(&v));
        group.throughput(Throughput::Elements((batch * tokens) as u64));
        group.bench_function(format!("satlas_{batch}x{tokens}"), |b| {
            b.iter(|| attention(&qf, &kf, &vf, heads as usize, &segments, &rotary, 0.25))
        });
        group.bench_function(format!("libtorch_sdpa_{batch}x{tokens}"), |b| {
            b.iter(|| tch::no_grad(|| libtorch_attention([&q, &k, &v], heads, &cos, &sin)))
        });
    }
    group.finish();
}

criterion_group!(benches, esm2_tokens_per_second, attention_core);
criterion_main!(benches);
