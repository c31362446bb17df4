//! FASTA reader: any bytes (plain or gzip) must give a proteome or a `ReadError`, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use satlas_fuzz::io::{read_proteome, FastaOptions};

fuzz_target!(|data: &[u8]| {
    let path = satlas_fuzz::files(&[("input.fa", data)]).join("input.fa");
    for gene_fallback in [false, true] {
        let _ = read_proteome(&path, &FastaOptions { gene_fallback });
    }
});
