//! ESM-2 throughput (tokens/s) on the real 6-layer weights in `../shared/data`.
//!
//! Proteins: records 0, 256, 512, ... (64 of them) of
//! `../shared/data/proteins/human_swissprot2014_baron_genes.fa`, embedded with the default options
//! (SATURN truncation, 4096-token batches). `scripts/reference/esm2_bench.py` times Hugging Face
//! transformers on the same proteins; `scripts/bench_esm2.sh` runs both and prints the ratio.
//! Threads: `SATLAS_BENCH_THREADS` (default 2). Skips with a notice if the data is absent.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use satlas::protein::{embed_chunk, EmbedOptions, Esm2, Parallelism};
use std::path::PathBuf;

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

criterion_group!(benches, esm2_tokens_per_second);
criterion_main!(benches);
