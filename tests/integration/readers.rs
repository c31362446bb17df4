//! Integration tests of the readers against the checked-in fixtures (`fixtures/`, facts in
//! `fixtures/expected.json`, both made by `scripts/make_fixtures.py`) and, when present, the full
//! real data in `../shared/data` (skipped with a notice otherwise).

use crate::common::fixture;
use satlas::io::{read_dataset, read_proteome, DatasetFile, FastaOptions, ReadError, ReadOptions};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

fn expected() -> Value {
    let text = std::fs::read_to_string(fixture("expected.json")).unwrap();
    serde_json::from_str(&text).unwrap()
}

fn read(rel: &str) -> DatasetFile {
    let path = fixture(rel);
    let obs_file = path.join("obs.csv");
    let options = ReadOptions {
        obs_file: obs_file.is_file().then_some(obs_file),
        ..ReadOptions::default()
    };
    read_dataset(&path, &options).unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn cells_per_type(d: &DatasetFile) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::new();
    for v in &d.obs_column("cell_type1").expect("cell_type1").values {
        *counts.entry(v.clone().expect("a cell type")).or_insert(0) += 1;
    }
    counts
}

#[test]
fn old_and_modern_h5ad_encodings_read_identically() {
    let old = read("baron/human.h5ad");
    let modern = read("baron/human_modern.h5ad");
    assert_eq!(old.format, "h5ad");
    assert_eq!(old.counts, modern.counts);
    assert_eq!(old.obs, modern.obs);
    let names: Vec<_> = old.obs.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "cell_ontology_class",
            "cell_ontology_id",
            "cell_type1",
            "dataset_name",
            "donor",
            "library",
            "organ",
            "organism",
            "platform"
        ]
    );
}

#[test]
fn tenx_directory_gives_the_same_matrix_and_obs() {
    let h5ad = read("baron/human.h5ad");
    let tenx = read("baron/human_10x");
    assert_eq!(tenx.format, "mtx");
    assert_eq!(h5ad.counts, tenx.counts);
    assert_eq!(h5ad.obs, tenx.obs);
}

#[test]
fn anndata_06_compound_dataframes_read_like_the_current_encoding() {
    let legacy = read("legacy/anndata06.h5ad");
    let full = read("baron/human.h5ad");
    let m = &legacy.counts;
    assert_eq!(m.barcodes, full.counts.barcodes[..8]);
    assert_eq!(m.genes, full.counts.genes[..200]);
    for cell in 0..8 {
        let (genes, counts) = full.counts.row(cell);
        let keep = genes.iter().take_while(|&&g| g < 200).count();
        assert_eq!(
            m.row(cell),
            (&genes[..keep], &counts[..keep]),
            "cell {cell}"
        );
        let total: u32 = counts[..keep].iter().sum();
        let n_counts = &legacy.obs_column("n_counts").unwrap().values[cell];
        assert_eq!(n_counts.as_deref(), Some(total.to_string().as_str()));
    }
    for column in ["cell_type1", "donor"] {
        let values = &legacy.obs_column(column).unwrap().values;
        assert_eq!(
            values,
            &full.obs_column(column).unwrap().values[..8],
            "{column}"
        );
    }
}

#[test]
fn an_obs_file_joins_onto_an_h5ad_by_barcode() {
    let plain = read("baron/human.h5ad");
    let options = ReadOptions {
        obs_file: Some(fixture("baron/human_10x/obs.csv")),
        ..ReadOptions::default()
    };
    let joined = read_dataset(&fixture("baron/human_modern.h5ad"), &options).unwrap();
    assert_eq!(joined.obs, plain.obs);
    let options = ReadOptions {
        obs_file: Some(fixture("bad/truncated_10x/barcodes.tsv")),
        ..ReadOptions::default()
    };
    let err = read_dataset(&fixture("baron/human.h5ad"), &options).unwrap_err();
    assert!(matches!(err, ReadError::MissingCell { .. }), "{err}");
}

#[test]
fn datasets_match_expected_facts() {
    let expected = expected();
    let datasets = expected["datasets"].as_object().unwrap();
    assert_eq!(datasets.len(), 4);
    for (rel, facts) in datasets {
        let d = read(rel);
        let m = &d.counts;
        assert_eq!(
            m.n_cells() as u64,
            facts["n_cells"].as_u64().unwrap(),
            "{rel}"
        );
        assert_eq!(
            m.n_genes() as u64,
            facts["n_genes"].as_u64().unwrap(),
            "{rel}"
        );
        assert_eq!(m.nnz() as u64, facts["nnz"].as_u64().unwrap(), "{rel}");
        let total: u64 = m.csr.data.iter().map(|&v| u64::from(v)).sum();
        assert_eq!(total, facts["total_counts"].as_u64().unwrap(), "{rel}");
        let types: BTreeMap<String, u64> = facts["cell_type1"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
            .collect();
        assert_eq!(cells_per_type(&d), types, "{rel}");
        for i in 0..m.n_cells() {
            let (genes, counts) = m.row(i);
            assert!(
                genes.windows(2).all(|w| w[0] < w[1]),
                "{rel}: row {i} unsorted"
            );
            assert!(
                counts.iter().all(|&c| c > 0),
                "{rel}: stored zero in row {i}"
            );
        }
    }
}

#[test]
fn proteomes_match_expected_facts() {
    let expected = expected();
    for (rel, facts) in expected["proteomes"].as_object().unwrap() {
        let p = read_proteome(&fixture(rel), &FastaOptions::default()).unwrap();
        let count = |key: &str| facts[key].as_u64().unwrap() as usize;
        assert_eq!(p.report.records, count("records"), "{rel}");
        assert_eq!(p.report.kept, count("kept"), "{rel}");
        assert_eq!(p.report.dropped(), count("dropped"), "{rel}");
        assert_eq!(p.n_genes(), count("distinct_genes"), "{rel}");
        assert!(p.records.iter().all(|r| !r.sequence.is_empty()));
    }
    let surrogate = read_proteome(
        &fixture("proteins/mouse_surrogate.fa.gz"),
        &FastaOptions::default(),
    )
    .unwrap();
    assert!(surrogate
        .records
        .iter()
        .all(|r| r.header.contains(" surrogate=human:")));
}

#[test]
fn bad_fixtures_give_the_intended_errors() {
    let err = read_dataset(&fixture("bad/truncated.h5ad"), &ReadOptions::default()).unwrap_err();
    assert!(matches!(err, ReadError::Hdf5 { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");

    let err = read_dataset(&fixture("bad/lognorm.h5ad"), &ReadOptions::default()).unwrap_err();
    match &err {
        ReadError::NonIntegerCounts { cell, gene, .. } => {
            assert_eq!((cell.as_str(), gene.as_str()), ("c1", "GCG"))
        }
        other => panic!("{other}"),
    }
    assert!(err.to_string().contains("raw integer"), "{err}");

    let err = read_proteome(&fixture("bad/empty.fa"), &FastaOptions::default()).unwrap_err();
    assert!(matches!(err, ReadError::Empty { .. }), "{err}");

    let err = read_proteome(
        &fixture("bad/sequence_before_header.fa"),
        &FastaOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, ReadError::Malformed { line: 1, .. }), "{err}");
    assert!(err.to_string().contains("before any header"), "{err}");

    let err = read_dataset(&fixture("bad/truncated_10x"), &ReadOptions::default()).unwrap_err();
    assert!(matches!(err, ReadError::Malformed { .. }), "{err}");
    assert!(err.to_string().contains("truncated"), "{err}");
}

/// The full real data, when this checkout sits beside `shared/data`.
fn shared_data() -> Option<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data");
    if dir.is_dir() {
        Some(dir)
    } else {
        eprintln!("skipped: {} is absent", dir.display());
        None
    }
}

#[test]
fn full_baron_files_read_identically_in_both_encodings() {
    let Some(data) = shared_data() else { return };
    for (species, cells, genes, nnz, total) in [
        ("human", 2142, 20125, 4_015_200, 12_261_492u64),
        ("mouse", 1886, 14877, 3_094_361, 9_411_303),
    ] {
        let start = Instant::now();
        let old_path = data.join(format!("baron_pancreas/raw-Baron_{species}.h5ad"));
        let old = read_dataset(&old_path, &ReadOptions::default()).unwrap();
        eprintln!("read {} in {:?}", old_path.display(), start.elapsed());
        let modern_path = data.join(format!("baron_pancreas/Baron_{species}_modern.h5ad"));
        let modern = read_dataset(&modern_path, &ReadOptions::default()).unwrap();
        let m = &old.counts;
        assert_eq!((m.n_cells(), m.n_genes(), m.nnz()), (cells, genes, nnz));
        assert_eq!(m.csr.data.iter().map(|&v| u64::from(v)).sum::<u64>(), total);
        assert_eq!(old.counts, modern.counts);
        assert_eq!(old.obs, modern.obs);
        assert_eq!(old.obs.len(), 9);
    }
}

#[test]
fn full_human_proteome_reads() {
    let Some(data) = shared_data() else { return };
    let path = data.join("proteins/human_swissprot2014_baron_genes.fa");
    let p = read_proteome(&path, &FastaOptions::default()).unwrap();
    assert_eq!(p.report.records, 17_205);
    assert_eq!(p.n_genes(), p.report.kept);
}

/// A child process started while an HDF5 file is open for writing inherits its descriptor; the
/// file must still read back once the writer closed it (see `common::HDF5_FILE_LOCKS_OFF`).
#[test]
fn an_hdf5_file_written_while_a_child_starts_reads_back() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("written.h5");
    let file = hdf5::File::create(&path).unwrap();
    file.new_dataset_builder()
        .with_data(&[1u8, 2, 3])
        .create("x")
        .unwrap();
    let mut child = std::process::Command::new("sleep")
        .arg("60")
        .spawn()
        .unwrap();
    drop(file);
    let read_back = hdf5::File::open(&path).and_then(|f| f.dataset("x")?.read_raw::<u8>());
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(read_back.unwrap(), [1, 2, 3]);
}
