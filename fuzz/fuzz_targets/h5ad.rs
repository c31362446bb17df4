//! h5ad reader: any bytes, written to a file, must give a dataset or a `ReadError`, never a panic
//! (crashes inside the HDF5 C library itself are reported by libFuzzer too).
#![no_main]

use libfuzzer_sys::fuzz_target;
use satlas_fuzz::io::{h5ad::read_h5ad, ReadOptions};

fuzz_target!(|data: &[u8]| {
    let path = satlas_fuzz::files(&[("input.h5ad", data)]).join("input.h5ad");
    let _ = read_h5ad(&path, &ReadOptions::default());
});
