//! `satlas simulate` / `satlas::synth`: a synthetic dataset drawn from the Baron human fixture is
//! deterministic, reads back with the h5ad and 10x readers (the same cells in both), keeps the
//! source's genes and cell types, and reproduces the fitted profile (type shares, library sizes,
//! mean expression); bad arguments are refused before anything is written.

use crate::common::fixture;
use satlas::io::h5ad::read_h5ad;
use satlas::io::{read_dataset, ReadOptions};
use satlas::synth::profile::{fit, Profile};
use satlas::synth::{simulate, SimulateParams};
use std::path::Path;

fn params(out: &Path, cells: usize, seed: u64) -> SimulateParams {
    SimulateParams {
        like: fixture("baron/human.h5ad"),
        read: ReadOptions::default(),
        label: "cell_type1".into(),
        cells,
        seed,
        out: out.into(),
    }
}

fn source_profile() -> Profile {
    let source = read_dataset(&fixture("baron/human.h5ad"), &ReadOptions::default()).unwrap();
    fit(&source, "cell_type1").unwrap()
}

#[test]
fn same_seed_same_content_other_seed_other_cells() {
    let dir = tempfile::tempdir().unwrap();
    let paths = ["a", "b", "c"].map(|n| dir.path().join(format!("{n}.h5ad")));
    for (path, seed) in paths.iter().zip([7, 7, 8]) {
        let report = simulate(&params(path, 500, seed).check().unwrap()).unwrap();
        assert_eq!(report.cells, 500);
    }
    let read = |p: &Path| read_h5ad(p, &ReadOptions::default()).unwrap();
    let (a, b, c) = (read(&paths[0]), read(&paths[1]), read(&paths[2]));
    assert_eq!(a, b);
    assert_ne!(a.counts.csr.data, c.counts.csr.data);
}

/// A 10x directory of the same seed holds the same cells as the h5ad (labels in `obs.csv`).
#[test]
fn tenx_output_matches_the_h5ad() {
    let dir = tempfile::tempdir().unwrap();
    let (h5ad, tenx) = (dir.path().join("a.h5ad"), dir.path().join("a_10x"));
    for out in [&h5ad, &tenx] {
        simulate(&params(out, 300, 4).check().unwrap()).unwrap();
    }
    let from_h5ad = read_h5ad(&h5ad, &ReadOptions::default()).unwrap();
    let with_obs = ReadOptions {
        obs_file: Some(tenx.join("obs.csv")),
        ..ReadOptions::default()
    };
    let from_10x = read_dataset(&tenx, &with_obs).unwrap();
    assert_eq!(from_10x.counts, from_h5ad.counts);
    assert_eq!(
        from_10x.obs_column("cell_type1"),
        from_h5ad.obs_column("cell_type1")
    );
}

#[test]
fn simulated_cells_follow_the_fitted_profile() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("sim.h5ad");
    let report = simulate(&params(&out, 6000, 1).check().unwrap()).unwrap();
    let file = read_h5ad(&out, &ReadOptions::default()).unwrap();
    let source = source_profile();
    assert_eq!(file.counts.n_cells(), 6000);
    assert_eq!(file.counts.genes, source.genes);
    assert_eq!(report.nnz, file.counts.nnz() as u64);

    let simulated = fit(&file, "cell_type1").unwrap();
    let names = |p: &Profile| p.types.iter().map(|t| t.name.clone()).collect::<Vec<_>>();
    assert_eq!(names(&simulated), names(&source));
    for (sim, real) in simulated.types.iter().zip(&source.types) {
        let n = 6000.0 * real.share;
        let se = (real.share * (1.0 - real.share) / 6000.0).sqrt();
        assert!(
            (sim.share - real.share).abs() < 4.0 * se + 1e-3,
            "{}: share {} vs {}",
            real.name,
            sim.share,
            real.share
        );
        if n < 100.0 {
            continue;
        }
        assert!(
            (sim.log_library_mean - real.log_library_mean).abs()
                < 4.0 * real.log_library_sd / n.sqrt() + 0.02,
            "{}: mean log library size {} vs {}",
            real.name,
            sim.log_library_mean,
            real.log_library_mean
        );
        // The type's 20 most expressed genes keep their share of the counts within 4 standard
        // errors of a ratio of sums over n cells of variance mu + phi mu^2 (library sizes vary:
        // +1 bounds their squared coefficient of variation).
        let mut top = real.expressed.clone();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        for &(gene, share) in &top[..20] {
            let found = sim
                .expressed
                .iter()
                .find(|e| e.0 == gene)
                .map_or(0.0, |e| e.1);
            let tolerance = 4.0 * ((source.dispersion[gene as usize] + 1.0) / n).sqrt();
            assert!(
                (found / share - 1.0).abs() < tolerance,
                "{}: gene {} share {found} vs {share}",
                real.name,
                source.genes[gene as usize]
            );
        }
    }
}

#[test]
fn bad_arguments_are_refused_before_writing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out.h5ad");
    let refused = |p: SimulateParams| p.check().unwrap_err().to_string();
    assert!(refused(params(&out, 0, 0)).contains("--cells 0 is out of range"));
    let mut p = params(dir.path(), 10, 0);
    assert!(refused(p.clone()).contains("a 10x directory is written only where nothing exists"));
    p.out = out.clone();
    p.like = dir.path().join("missing.h5ad");
    assert!(refused(p).contains("no such file"));
    let same = params(&fixture("baron/human.h5ad"), 10, 0);
    assert!(refused(same).contains("is the --like file"));

    let mut p = params(&out, 10, 0);
    p.label = "tissue".into();
    let err = simulate(&p.check().unwrap()).unwrap_err().to_string();
    assert!(
        err.contains("label column \"tissue\" is not in the file"),
        "{err}"
    );
    assert!(!out.exists());
}
