//! The SATURN network, its losses and its two training loops (SATURN.md sections 4-6).
//!
//! 1. [`network`] — the network ([`Saturn`]): its configuration (the VAE variant included),
//!    blocks, forward pass and embedding; [`ops`] — the tensor ops the blocks use (dropout,
//!    `ndarray` conversion); [`checkpoint`] — weights to and from bytes; [`surgery`] — a trained
//!    network grown by one species; [`product`] — the macrogene layer's product on sparse
//!    counts, with the backward pass by hand.
//! 2. [`zinb`] — the ZINB log-likelihood of the pretraining loss.
//! 3. [`losses`] — the protein-similarity regulariser and the triplet loss.
//! 4. [`triplet`] — the cross-species semi-hard triplet miner.
//! 5. [`train`] — pretraining and fine-tuning, seeded, with a per-epoch callback; [`adam`] —
//!    their optimiser.
//! 6. [`runs`] — runs in the atlas (resumable, weights and embeddings stored); [`embed`] —
//!    embedding a dataset added after training with the finished model; [`species`] — adding a
//!    new species to a trained model (only its own parameters trained).
//!
//! Typical use: `Saturn::new(config, weights)` → [`pretrain`] → [`finetune`] →
//! [`Saturn::embed`] per species → [`Saturn::save_bytes`].

pub mod adam;
pub mod checkpoint;
pub mod embed;
pub mod losses;
pub mod network;
pub mod ops;
pub mod product;
pub mod runs;
pub mod species;
pub mod surgery;
pub mod train;
pub mod triplet;
pub mod zinb;

mod error;

pub use embed::{add_and_embed_dataset, embed_dataset, EmbedReport};
pub use error::{ModelError, Result};
pub use network::{Embedding, Forward, Saturn, SaturnConfig};
pub use runs::{
    load_run_model, run_finetune, run_pretrain, trained_weights, FinetuneRequest, PretrainRequest,
    RunReport, Schedule, SpeciesWeights, DEFAULT_CHECKPOINT_EVERY,
};
pub use species::{run_add_species, AddSpeciesReport, AddSpeciesRequest};
pub use train::{
    finetune, kl_weight, pretrain, train_species, EpochLog, FinetuneParams, Phase, PretrainParams,
    SpeciesData,
};
pub use triplet::{mine_triplets, Triplet};
pub use zinb::{zinb_log_likelihood, zinb_nll, zinb_nll_fused};

/// Serialises the unit tests that seed or draw from libtorch's process-global random generator
/// (directly, through dropout, or by initialising layers), so that a test which seeds and then
/// draws gets the numbers it expects while other tests run in parallel.
#[cfg(test)]
pub(crate) fn torch_rng() -> std::sync::MutexGuard<'static, ()> {
    static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}
