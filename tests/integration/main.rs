//! satlas' integration tests, one binary (libtorch and DuckDB are linked once): each module
//! tests one capability through the library, the SQL procedures or the `satlas` binary, on the
//! bundled fixtures. Shared helpers live in [`common`].

mod common;

mod add_species;
mod atlas_counts;
mod bad_input;
mod cli_ingest;
mod concurrency;
mod crash;
mod de_atlas;
mod de_reference;
mod esm2_parity;
mod eval_atlas;
mod eval_reference;
mod export;
mod fair_esm;
mod incremental;
mod index;
mod kmeans_timing;
mod plot;
mod protein_store;
mod readers;
mod resume;
mod saturn_atlas;
mod saturn_parity;
mod saturn_training;
mod structure;
mod synth;
