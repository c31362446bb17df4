//! 10x MatrixMarket reader: the input is `matrix.mtx`, then optionally a NUL byte and
//! `features.tsv`, another NUL and `barcodes.tsv` (defaults: 3 genes, 2 cells). Any bytes must
//! give a dataset or a `ReadError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satlas_fuzz::io::{mtx::read_10x, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let mut parts = data.splitn(3, |&b| b == 0);
    let matrix = parts.next().unwrap_or_default();
    let features = parts.next().unwrap_or(b"INS\tINS\nGCG\tGCG\nSST\tSST\n");
    let barcodes = parts.next().unwrap_or(b"AAAC-1\nAAAG-1\n");
    let dir = satlas_fuzz::files(&[
        ("matrix.mtx", matrix),
        ("features.tsv", features),
        ("barcodes.tsv", barcodes),
    ]);
    let _ = read_10x(&dir, &ReadOptions::default());
});
