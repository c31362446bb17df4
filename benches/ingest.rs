//! Ingest throughput: the full Baron human h5ad (2,142 cells x 20,125 genes) into a fresh atlas
//! (read + validate + gene matching + one transaction), in cells per second. The baseline in the
//! same run is reading the file alone, so the atlas write cost is the ratio of the two.
//!
//! Run: `cargo bench --bench ingest`. Skips (with a notice) when `../shared/data` is absent.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use satlas::ingest::{add_dataset, add_proteome, DatasetSpec};
use satlas::io::{read_dataset, FastaOptions, ReadOptions};
use satlas::Atlas;
use std::path::{Path, PathBuf};

fn shared(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../shared/data")
        .join(rel)
}

fn ingest(c: &mut Criterion) {
    let h5ad = shared("baron_pancreas/raw-Baron_human.h5ad");
    let proteome = shared("proteins/human_swissprot2014_baron_genes.fa");
    if !h5ad.exists() || !proteome.exists() {
        eprintln!("skipping ingest bench: {} not found", h5ad.display());
        return;
    }
    let cells = read_dataset(&h5ad, &ReadOptions::default())
        .expect("Baron human reads")
        .counts
        .n_cells();
    let mut group = c.benchmark_group("baron_human");
    group
        .throughput(Throughput::Elements(cells as u64))
        .sample_size(10);
    group.bench_function("read_h5ad", |b| {
        b.iter(|| read_dataset(&h5ad, &ReadOptions::default()).unwrap())
    });
    group.bench_function("ingest_into_atlas", |b| {
        b.iter_batched(
            || {
                let mut atlas = Atlas::in_memory().unwrap();
                add_proteome(&mut atlas, "human", &proteome, &FastaOptions::default()).unwrap();
                atlas
            },
            |mut atlas| {
                let spec = DatasetSpec {
                    path: h5ad.clone(),
                    species: "human".into(),
                    name: Some("baron_human".into()),
                    label_column: "cell_type1".into(),
                    read: ReadOptions::default(),
                };
                add_dataset(&mut atlas, &spec).unwrap()
            },
            criterion::BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, ingest);
criterion_main!(benches);
