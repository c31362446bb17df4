//! Protein embeddings: ESM-2 in `tch`, from amino-acid sequences to one vector per protein and per
//! gene (SATURN's gene embeddings, `SATURN.md` section 1).
//!
//! - [`config`]: the model's hyper-parameters from a Hugging Face `config.json`.
//! - [`tokenizer`]: the ESM alphabet and SATURN's truncation rule.
//! - [`esm2`]: the model, loaded from Hugging Face safetensors or a fair-esm `.pt` checkpoint
//!   (names mapped by `fair_esm`), run on packed sequences; [`attention`]: its attention core,
//!   by hand.
//! - [`embed`]: batched mean-pooled protein embeddings and per-gene means.
//! - [`store`]: embeddings in the atlas (resumable ESM-2 runs, imports, reads).
//!
//! ```no_run
//! use satlas::protein::{embed_chunk, gene_embeddings, EmbedOptions, Esm2};
//! let model = Esm2::load_dir("esm2_t33_650M_UR50D".as_ref(), tch::Device::Cpu)?;
//! let proteins = [("INS-201", "MALWMRLLPLLALLALWGPDPAAA"), ("GCG-201", "MKSIYFVAGLFVMLVQGSWQ")];
//! let embedded = embed_chunk(&model, &proteins, &EmbedOptions::default())?;
//! let genes = gene_embeddings([("INS", &embedded[0].1), ("GCG", &embedded[1].1)])?;
//! assert_eq!(genes[0].1.len(), model.config().hidden_size);
//! # Ok::<(), satlas::protein::ProteinError>(())
//! ```

pub mod attention;
pub mod config;
pub mod embed;
pub mod esm2;
pub mod store;
pub mod tokenizer;

mod error;
mod fair_esm;

pub use attention::Segment;
pub use config::Esm2Config;
pub use embed::{
    embed_chunk, embed_proteins, gene_embeddings, EmbedOptions, GeneMeans, Parallelism,
};
pub use error::ProteinError;
pub use esm2::Esm2;
pub use tokenizer::{Alphabet, Encoded, Truncation};
