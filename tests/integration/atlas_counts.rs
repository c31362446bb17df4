//! What ingest writes to `counts` reads back exactly as the source matrix (the training read path).

use crate::common::fixture;
use satlas::atlas::counts::{read_counts, Cells};
use satlas::atlas::species;
use satlas::ingest::{add_dataset, add_proteome, DatasetSpec};
use satlas::io::{read_dataset, FastaOptions, ReadOptions};
use satlas::Atlas;

#[test]
fn counts_read_back_exactly_over_the_dataset_genes() {
    let mut atlas = Atlas::in_memory().unwrap();
    add_proteome(
        &mut atlas,
        "mouse",
        &fixture("proteins/mouse_surrogate.fa.gz"),
        &FastaOptions::default(),
    )
    .unwrap();
    let spec = DatasetSpec {
        path: fixture("baron/mouse.h5ad"),
        species: "mouse".into(),
        name: None,
        label_column: "cell_type1".into(),
        read: ReadOptions::default(),
    };
    add_dataset(&mut atlas, &spec).unwrap();
    let source = read_dataset(&spec.path, &ReadOptions::default()).unwrap();
    let conn = atlas.connection();
    let genes: Vec<i32> = {
        let mut stmt = conn
            .prepare("SELECT gene_id FROM dataset_genes ORDER BY position")
            .unwrap();
        stmt.query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let mouse = species::require(conn, "mouse").unwrap();
    let read = read_counts(conn, Cells::Species(mouse), &genes).unwrap();
    assert_eq!(read.n_cells(), source.counts.n_cells());
    assert_eq!(read.csr, source.counts.csr);
    let labels: Vec<Option<String>> = source.obs_column("cell_type1").unwrap().values.clone();
    assert_eq!(read.labels, labels);

    // A gene subset keeps only those columns, renumbered in the order asked for.
    let subset = [genes[10], genes[3]];
    let part = read_counts(conn, Cells::Species(mouse), &subset).unwrap();
    for cell in 0..source.counts.n_cells() {
        let (cols, vals) = source.counts.row(cell);
        let mut want: Vec<(u32, u32)> = cols
            .iter()
            .zip(vals)
            .filter_map(|(&c, &v)| match c {
                10 => Some((0, v)),
                3 => Some((1, v)),
                _ => None,
            })
            .collect();
        want.sort_unstable();
        let (cols, vals) = part.csr.row(cell);
        let got: Vec<(u32, u32)> = cols.iter().copied().zip(vals.iter().copied()).collect();
        assert_eq!(got, want, "cell {cell}");
    }
}
