//! The two training loops: ZINB pretraining (SATURN.md section 5) and weakly supervised
//! metric-learning fine-tuning (section 6); the first also trains the parts of a species added
//! to a trained model ([`train_species`]).
//!
//! Both are seeded and resumable: epoch `e` draws its shuffle, partners, dropout masks and mining
//! from seeds derived from `(seed, e)` only, so running epochs `k..n` after loading the weights of
//! epoch `k` repeats the same data order (the Adam moments restart from zero: a resumed run is
//! close to, not identical with, an uninterrupted one). After every epoch a callback receives the
//! [`EpochLog`] and the model (to write the training log, show progress, checkpoint); an error it
//! returns stops training and is passed through.
//!
//! libtorch's RNG is process-global (`tch::manual_seed`): two trainings running at the same time
//! in one process interleave their dropout and partner draws and are no longer reproducible.

use super::adam::{Adam, AdamConfig};
use super::error::{invalid, torch, ModelError, Result};
use super::losses::{anchored_regulariser_fused, triplet_loss, triplet_rows, UnitRows};
use super::network::{check_counts, BatchPart, Encoder, MacrogeneLayer, Saturn};
use super::product::{MacrogeneProduct, SparseRows};
use super::triplet::mine_triplets;
use super::zinb::zinb_nll_fused;
use crate::csr::CsrView;
use crate::kernels::host::{cpu_f32, f32_data};
use ndarray::ArrayView2;
use rand::{rngs::StdRng, seq::SliceRandom, Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::time::Instant;
use tch::{nn, Device, Kind, Tensor};

/// One species' training cells: counts restricted to the model's genes for that species (same
/// column order as the weights), and one label per cell (may be empty for pretraining).
#[derive(Debug, Clone, Copy)]
pub struct SpeciesData<'a> {
    /// Species name, as in [`super::SaturnConfig::species`].
    pub species: &'a str,
    /// Raw counts, cells x selected genes; every cell needs a count > 0.
    pub counts: CsrView<'a>,
    /// Cell-type (or cluster) label per cell; labels are made species-specific internally.
    pub labels: &'a [String],
}

/// Pretraining parameters (SATURN defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PretrainParams {
    /// Epochs (200).
    pub epochs: usize,
    /// First epoch to run (0; set to resume).
    pub start_epoch: usize,
    /// Cells per batch, species mixed (4096).
    pub batch_size: usize,
    /// Adam learning rate (5e-4; betas 0.9, 0.999).
    pub lr: f64,
    /// Weight of the protein-similarity regulariser R (0.2).
    pub regulariser_weight: f64,
    /// Weight of an L1 penalty on W = exp(P) (0).
    pub l1_penalty: f64,
    /// Seed of shuffling, partners and dropout.
    pub seed: u64,
}

impl Default for PretrainParams {
    fn default() -> Self {
        Self {
            epochs: 200,
            start_epoch: 0,
            batch_size: 4096,
            lr: 5e-4,
            regulariser_weight: 0.2,
            l1_penalty: 0.0,
            seed: 0,
        }
    }
}

impl PretrainParams {
    /// Validates the parameters.
    pub fn check(&self) -> Result<()> {
        check_common(self.epochs, self.start_epoch, self.batch_size, self.lr)?;
        for (name, v) in [
            ("regulariser_weight", self.regulariser_weight),
            ("l1_penalty", self.l1_penalty),
        ] {
            if !(v >= 0.0 && v.is_finite()) {
                return Err(invalid(name, v, "must be a finite number >= 0"));
            }
        }
        Ok(())
    }
}

/// Fine-tuning parameters (SATURN defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FinetuneParams {
    /// Epochs (50).
    pub epochs: usize,
    /// First epoch to run (0; set to resume).
    pub start_epoch: usize,
    /// Cells per batch, species mixed (4096).
    pub batch_size: usize,
    /// Adam learning rate (1e-3).
    pub lr: f64,
    /// Triplet margin and semi-hard window (0.2).
    pub margin: f64,
    /// Train the macrogene layer too (false: macrogene expression is computed once, frozen).
    pub unfreeze_macrogenes: bool,
    /// Seed of shuffling, dropout and mining.
    pub seed: u64,
}

impl Default for FinetuneParams {
    fn default() -> Self {
        Self {
            epochs: 50,
            start_epoch: 0,
            batch_size: 4096,
            lr: 1e-3,
            margin: 0.2,
            unfreeze_macrogenes: false,
            seed: 0,
        }
    }
}

impl FinetuneParams {
    /// Validates the parameters.
    pub fn check(&self) -> Result<()> {
        check_common(self.epochs, self.start_epoch, self.batch_size, self.lr)?;
        if !(self.margin > 0.0 && self.margin.is_finite()) {
            return Err(invalid(
                "margin",
                self.margin,
                "must be a finite number > 0",
            ));
        }
        Ok(())
    }
}

fn check_common(epochs: usize, start_epoch: usize, batch_size: usize, lr: f64) -> Result<()> {
    if epochs == 0 {
        return Err(invalid("epochs", epochs, "must be at least 1"));
    }
    if start_epoch > epochs {
        return Err(invalid(
            "start_epoch",
            start_epoch,
            format!("must be at most epochs ({epochs})"),
        ));
    }
    if batch_size < 2 {
        return Err(invalid("batch_size", batch_size, "must be at least 2"));
    }
    if !(lr > 0.0 && lr.is_finite()) {
        return Err(invalid("lr", lr, "must be a finite number > 0"));
    }
    Ok(())
}

/// Which loop produced an [`EpochLog`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Phase {
    /// ZINB pretraining.
    Pretrain,
    /// Triplet fine-tuning.
    Finetune,
    /// ZINB training of a species added to a trained model ([`train_species`]).
    AddSpecies,
}

/// One epoch's summary (batch means).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochLog {
    /// Which loop.
    pub phase: Phase,
    /// 0-based epoch.
    pub epoch: usize,
    /// Total epochs of the run.
    pub epochs: usize,
    /// Mean total loss per batch.
    pub loss: f64,
    /// Mean ZINB term per batch (pretraining).
    pub zinb: f64,
    /// Mean regulariser R per batch, unweighted (pretraining).
    pub regulariser: f64,
    /// Triplets kept over the epoch (fine-tuning).
    pub n_triplets: usize,
    /// Batches run.
    pub n_batches: usize,
    /// Wall-clock seconds.
    pub seconds: f64,
}

/// The RNG and libtorch seed of one epoch.
fn epoch_rng(seed: u64, epoch: usize) -> StdRng {
    let mixed = seed ^ (epoch as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    tch::manual_seed((mixed >> 1) as i64);
    StdRng::seed_from_u64(mixed)
}

/// Checks the data against the model: known species (each once), gene counts, labels, no empty
/// cells. Returns each entry's species index.
fn check_data(model: &Saturn, data: &[SpeciesData<'_>], need_labels: bool) -> Result<Vec<usize>> {
    let config = model.config();
    let mut seen = BTreeMap::new();
    let mut out = Vec::with_capacity(data.len());
    for d in data {
        let s = config.species_index(d.species)?;
        if seen.insert(s, ()).is_some() {
            return Err(invalid("data", d.species, "each species may appear once"));
        }
        check_counts(d.species, &d.counts, config.genes_per_species[s])?;
        if need_labels && d.labels.len() != d.counts.n_rows() {
            return Err(ModelError::Shape {
                species: d.species.to_string(),
                what: format!("{} labels for {} cells", d.labels.len(), d.counts.n_rows()),
            });
        }
        if let Some(cell) = d.counts.row_sums().iter().position(|&l| l == 0) {
            return Err(ModelError::EmptyCell {
                species: d.species.to_string(),
                cell,
            });
        }
        out.push(s);
    }
    if data.iter().map(|d| d.counts.n_rows()).sum::<usize>() == 0 {
        return Err(invalid(
            "data",
            "no cells",
            "give at least one species with cells",
        ));
    }
    Ok(out)
}

/// All (data entry, row) pairs, entry by entry.
fn all_cells(data: &[SpeciesData<'_>]) -> Vec<(usize, usize)> {
    data.iter()
        .enumerate()
        .flat_map(|(d, sd)| (0..sd.counts.n_rows()).map(move |r| (d, r)))
        .collect()
}

/// Pretrains every parameter on the ZINB likelihood plus the protein-similarity regulariser.
///
/// `gene_embeddings` are the protein embeddings of all G genes (G x D), rows in the order of P's
/// columns (species by species, as in the config). Returns the logs of the epochs run.
pub fn pretrain<E: From<ModelError>>(
    model: &mut Saturn,
    data: &[SpeciesData<'_>],
    gene_embeddings: ArrayView2<'_, f32>,
    params: &PretrainParams,
    on_epoch: impl FnMut(&EpochLog, &Saturn) -> Result<(), E>,
) -> Result<Vec<EpochLog>, E> {
    let everything = ZinbScope {
        phase: Phase::Pretrain,
        anchors: (0, model.config().n_genes()),
        masks: Vec::new(),
    };
    zinb_training(model, data, gene_embeddings, params, &everything, on_epoch)
}

/// Trains only the parts of one species (a species added to a trained model, appended by
/// [`Saturn::with_species`]) with the pretraining objective on its cells: ZINB plus the
/// protein-similarity regulariser over its genes, each paired with a random partner among all
/// genes (so its gene vectors are placed relative to the frozen species' genes). Everything
/// shared (encoder, macrogene layer norm, decoders, the other species' weights and heads) stays
/// bit-identical ([`Saturn::train_only_species`]).
pub fn train_species<E: From<ModelError>>(
    model: &mut Saturn,
    data: &SpeciesData<'_>,
    gene_embeddings: ArrayView2<'_, f32>,
    params: &PretrainParams,
    on_epoch: impl FnMut(&EpochLog, &Saturn) -> Result<(), E>,
) -> Result<Vec<EpochLog>, E> {
    let s = model.config().species_index(data.species)?;
    let scope = ZinbScope {
        phase: Phase::AddSpecies,
        anchors: model.config().gene_block(s),
        masks: model.train_only_species(s),
    };
    zinb_training(
        model,
        std::slice::from_ref(data),
        gene_embeddings,
        params,
        &scope,
        on_epoch,
    )
}

/// What a ZINB training loop trains: the phase it logs, the genes the regulariser sums over
/// (first, count) and gradient masks of partly frozen parameters.
struct ZinbScope {
    phase: Phase,
    anchors: (usize, usize),
    masks: Vec<(Tensor, Tensor)>,
}

/// The ZINB + regulariser loop of [`pretrain`] and [`train_species`].
fn zinb_training<E: From<ModelError>>(
    model: &mut Saturn,
    data: &[SpeciesData<'_>],
    gene_embeddings: ArrayView2<'_, f32>,
    params: &PretrainParams,
    scope: &ZinbScope,
    mut on_epoch: impl FnMut(&EpochLog, &Saturn) -> Result<(), E>,
) -> Result<Vec<EpochLog>, E> {
    params.check()?;
    let species_of = check_data(model, data, false)?;
    let n_genes = model.config().n_genes();
    let (first, n_anchors) = (scope.anchors.0, scope.anchors.1 as i64);
    if gene_embeddings.nrows() != n_genes {
        return Err(ModelError::Shape {
            species: String::new(),
            what: format!(
                "{} gene embeddings for {n_genes} genes",
                gene_embeddings.nrows()
            ),
        }
        .into());
    }
    let e = UnitRows::new(gene_embeddings);
    let mut opt = Adam::new(model.var_store(), AdamConfig::new(params.lr));
    for (var, mask) in &scope.masks {
        opt.mask(var, mask.shallow_clone());
    }
    let mut cells = all_cells(data);
    let mut logs = Vec::new();
    for epoch in params.start_epoch..params.epochs {
        let start = Instant::now();
        let mut rng = epoch_rng(params.seed, epoch);
        cells.shuffle(&mut rng);
        let (mut sum_loss, mut sum_zinb, mut sum_reg, mut n_batches) = (0.0, 0.0, 0.0, 0);
        for batch in cells.chunks(params.batch_size) {
            let mut groups: BTreeMap<usize, Vec<usize>> = BTreeMap::new();
            for &(d, r) in batch {
                groups.entry(d).or_default().push(r);
            }
            // one term per species present in the batch (FIX: absent species are skipped)
            let weights = model.macrogene_layer().weight_leaves(); // exp(P) once per step
            let parts: Vec<BatchPart<'_>> = groups
                .iter()
                .map(|(d, rows)| BatchPart {
                    species: species_of[*d],
                    counts: &data[*d].counts,
                    rows,
                    w_t: weights.block(species_of[*d]).shallow_clone(),
                })
                .collect();
            let mut forwards = model.forward_parts(&parts, true);
            let products: Vec<MacrogeneProduct> = forwards
                .iter_mut()
                .filter_map(|f| f.product.take())
                .collect();
            let terms: Vec<Tensor> = forwards
                .iter()
                .zip(&parts)
                .map(|(f, p)| zinb_nll_fused(p.counts, p.rows, &f.px_logits, &f.theta, &f.pi))
                .collect();
            let zinb = Tensor::stack(&terms, 0).sum(Kind::Float);
            // VAE variant: + w(epoch) * (mean KL over each species' cells)
            let kl = forwards
                .iter()
                .filter_map(|f| f.kl.as_ref().map(|kl| kl.mean(Kind::Float)))
                .reduce(|a, b| a + b);
            let partners = Tensor::randint(n_genes as i64, [n_anchors], (Kind::Int64, Device::Cpu));
            let partners = Vec::<i64>::try_from(&partners).map_err(torch("drawing partners"))?;
            let q = model.gene_vectors(weights.all(), true);
            let reg = anchored_regulariser_fused(&q, &e, first, &partners);
            let mut loss = &zinb + params.regulariser_weight * &reg;
            if let Some(kl) = kl {
                loss = &loss + kl * kl_weight(epoch);
            }
            if params.l1_penalty > 0.0 {
                loss = &loss + weights.all().sum(Kind::Float) * params.l1_penalty;
            }
            opt.backward_step(&loss, Some(&weights), &products);
            sum_loss += loss.double_value(&[]);
            sum_zinb += zinb.double_value(&[]);
            sum_reg += reg.double_value(&[]);
            n_batches += 1;
        }
        let nb = n_batches.max(1) as f64;
        let log = EpochLog {
            phase: scope.phase,
            epoch,
            epochs: params.epochs,
            loss: sum_loss / nb,
            zinb: sum_zinb / nb,
            regulariser: sum_reg / nb,
            n_triplets: 0,
            n_batches,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&log, model)?;
        logs.push(log);
    }
    Ok(logs)
}

/// The VAE variant's KL weight in epoch `epoch` (from 0): SATURN's cycle of 50 epochs, rising
/// linearly from 0 over the first 25 and 1 for the next 25 (upstream `get_kld_cycle(epoch - 1,
/// period=50)` with epochs from 1).
pub fn kl_weight(epoch: usize) -> f64 {
    const PERIOD: usize = 50;
    if epoch % PERIOD >= PERIOD / 2 {
        1.0
    } else {
        (epoch % (PERIOD / 2)) as f64 / (PERIOD / 2) as f64
    }
}

/// Fine-tunes the encoder (and, if asked, the macrogene layer) with the cross-species triplet
/// loss. A copy of the trained parts lives in its own `VarStore` and is written back into `model`
/// after every epoch (before the callback). Labels are made species-specific
/// (`"{species}_{label}"`), so no label is assumed shared across species.
pub fn finetune<E: From<ModelError>>(
    model: &mut Saturn,
    data: &[SpeciesData<'_>],
    params: &FinetuneParams,
    mut on_epoch: impl FnMut(&EpochLog, &Saturn) -> Result<(), E>,
) -> Result<Vec<EpochLog>, E> {
    params.check()?;
    let species_of = check_data(model, data, true)?;
    let config = model.config().clone();

    // species-specific label ids, ordered by (species index, label)
    let mut names: Vec<(usize, &str)> = data
        .iter()
        .zip(&species_of)
        .flat_map(|(d, &s)| d.labels.iter().map(move |l| (s, l.as_str())))
        .collect();
    names.sort_unstable();
    names.dedup();
    let label_id: HashMap<(usize, &str), usize> =
        names.iter().enumerate().map(|(i, &k)| (k, i)).collect();
    let cells = all_cells(data);
    let cell_labels: Vec<usize> = cells
        .iter()
        .map(|&(d, r)| label_id[&(species_of[d], data[d].labels[r].as_str())])
        .collect();
    let cell_species: Vec<usize> = cells.iter().map(|&(d, _)| species_of[d]).collect();

    // the trained copy
    let mut ft = nn::VarStore::new(Device::Cpu);
    let encoder = Encoder::new(&ft.root(), &config);
    let source = if params.unfreeze_macrogenes {
        Source::Trainable(MacrogeneLayer::new(&ft.root(), &config))
    } else {
        Source::Frozen(frozen_macrogenes(model, data, &species_of))
    };
    ft.copy(model.var_store())
        .map_err(torch("copying the encoder"))?;
    let mut opt = Adam::new(&ft, AdamConfig::new(params.lr));

    let mut order: Vec<usize> = (0..cells.len()).collect();
    let mut logs = Vec::new();
    for epoch in params.start_epoch..params.epochs {
        let start = Instant::now();
        let mut rng = epoch_rng(params.seed, epoch);
        order.shuffle(&mut rng);
        let (mut sum_loss, mut n_triplets, mut n_batches) = (0.0, 0, 0);
        for chunk in order.chunks(params.batch_size) {
            let mut batch = chunk.to_vec();
            batch.sort_unstable(); // groups the batch by species, in a fixed order
            let mut products = Vec::new();
            let mut weights = None;
            let m = match &source {
                Source::Frozen(all) => all.index_select(
                    0,
                    &Tensor::from_slice(&batch.iter().map(|&i| i as i64).collect::<Vec<_>>()),
                ),
                Source::Trainable(layer) => {
                    let leaves = weights.insert(layer.weight_leaves());
                    let mut parts = Vec::new();
                    let mut k = 0;
                    while k < batch.len() {
                        let d = cells[batch[k]].0;
                        let rows: Vec<usize> = batch[k..]
                            .iter()
                            .take_while(|&&i| cells[i].0 == d)
                            .map(|&i| cells[i].1)
                            .collect();
                        k += rows.len();
                        let s = species_of[d];
                        let (m, product) = layer.forward_t(
                            SparseRows::log1p_counts(&data[d].counts, &rows),
                            leaves.block(s),
                            Some(s),
                            true,
                        );
                        parts.push(m);
                        products.extend(product);
                    }
                    Tensor::cat(&parts, 0)
                }
            };
            // mine on the whole batch without gradients, then back-propagate through the
            // triplets' cells only, with the same dropout masks
            let masks = encoder.draw_masks(batch.len());
            let sim = tch::no_grad(|| {
                let zn = unit_rows(&encoder.forward_masked(&m, &masks));
                cpu_f32(&zn.matmul(&zn.tr()))
            });
            let sim = f32_data(&sim); // read in place: B x B floats, 64 MB at batch 4096
            let labels: Vec<usize> = batch.iter().map(|&i| cell_labels[i]).collect();
            let species: Vec<usize> = batch.iter().map(|&i| cell_species[i]).collect();
            let triplets = mine_triplets(sim, &labels, &species, params.margin as f32, &mut || {
                rng.random::<f64>()
            });
            if !triplets.is_empty() {
                let (rows, triplets) = triplet_rows(&triplets);
                let rows = Tensor::from_slice(&rows);
                let z = encoder.forward_masked(&m.index_select(0, &rows), &masks.rows(&rows));
                let loss = triplet_loss(&unit_rows(&z), &triplets, params.margin);
                opt.backward_step(&loss, weights.as_ref(), &products);
                sum_loss += loss.double_value(&[]);
            }
            n_triplets += triplets.len();
            n_batches += 1;
        }
        copy_back(model, &ft)?;
        let log = EpochLog {
            phase: Phase::Finetune,
            epoch,
            epochs: params.epochs,
            loss: sum_loss / n_batches.max(1) as f64,
            zinb: 0.0,
            regulariser: 0.0,
            n_triplets,
            n_batches,
            seconds: start.elapsed().as_secs_f64(),
        };
        on_epoch(&log, model)?;
        logs.push(log);
    }
    Ok(logs)
}

/// Rows divided by their L2 norm (at least 1e-12, as `torch.nn.functional.normalize`).
fn unit_rows(z: &Tensor) -> Tensor {
    z / z.norm_scalaropt_dim(2.0, [1], true).clamp_min(1e-12)
}

/// Where fine-tuning gets macrogene expression from.
enum Source {
    /// Computed once in eval mode (default): one row per cell, entry by entry.
    Frozen(Tensor),
    /// A trainable copy of the macrogene layer (`unfreeze_macrogenes`).
    Trainable(MacrogeneLayer),
}

/// Macrogene expression of every cell (eval mode, no gradients), entry by entry.
fn frozen_macrogenes(model: &Saturn, data: &[SpeciesData<'_>], species_of: &[usize]) -> Tensor {
    let layer = model.macrogene_layer();
    tch::no_grad(|| {
        let parts: Vec<Tensor> = data
            .iter()
            .zip(species_of)
            .filter(|(d, _)| d.counts.n_rows() > 0)
            .map(|(d, &s)| {
                let rows: Vec<usize> = (0..d.counts.n_rows()).collect();
                let w_t = layer.species_weights_t(s);
                let chunks: Vec<Tensor> = rows
                    .chunks(4096)
                    .map(|c| {
                        let x = SparseRows::log1p_counts(&d.counts, c);
                        layer.forward_t(x, &w_t, None, false).0
                    })
                    .collect();
                Tensor::cat(&chunks, 0)
            })
            .collect();
        Tensor::cat(&parts, 0)
    })
}

/// Writes the fine-tuned copy's parameters back into the model.
fn copy_back(model: &mut Saturn, ft: &nn::VarStore) -> Result<()> {
    let named: Vec<(String, Tensor)> = ft.variables().into_iter().collect();
    model.set_parameters(&named)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::SaturnConfig;
    use crate::model::Triplet;

    /// What fine-tuning relies on: with the masks drawn once, the loss of the triplets on their
    /// cells' rows only has the value and the parameter gradients of the loss on the whole batch.
    #[test]
    fn backward_through_triplet_rows_equals_backward_through_the_batch() {
        let _rng = crate::model::torch_rng();
        tch::manual_seed(3);
        let config = SaturnConfig::new(vec!["a".into(), "b".into()], vec![5, 5], 12);
        let vs = nn::VarStore::new(Device::Cpu);
        let encoder = Encoder::new(&vs.root(), &config);
        let m = Tensor::rand([20, 12], (Kind::Float, Device::Cpu));
        let masks = encoder.draw_masks(20);
        let triplets: Vec<Triplet> = [(0, 11, 4), (3, 17, 9), (11, 0, 19), (3, 11, 4)]
            .map(|(anchor, positive, negative)| Triplet {
                anchor,
                positive,
                negative,
            })
            .to_vec();
        let gradients = |loss: Tensor| {
            let params: Vec<Tensor> = vs.trainable_variables();
            let grads = Tensor::run_backward(&[&loss], &params, false, false);
            (loss.double_value(&[]), grads)
        };
        // a margin large enough that every triplet contributes
        let (want, want_grads) = gradients(triplet_loss(
            &unit_rows(&encoder.forward_masked(&m, &masks)),
            &triplets,
            2.0,
        ));
        let (rows, remapped) = triplet_rows(&triplets);
        assert_eq!(rows, vec![0, 3, 4, 9, 11, 17, 19]);
        let rows = Tensor::from_slice(&rows);
        let z = encoder.forward_masked(&m.index_select(0, &rows), &masks.rows(&rows));
        let (got, got_grads) = gradients(triplet_loss(&unit_rows(&z), &remapped, 2.0));
        assert!((got - want).abs() < 1e-6, "loss {got} vs {want}");
        for (g, w) in got_grads.iter().zip(&want_grads) {
            let err = (g - w).abs().max().double_value(&[]);
            let scale = w.abs().max().double_value(&[]);
            assert!(
                scale > 0.0 && err <= 1e-5 * scale,
                "gradient error {err} of {scale}"
            );
        }
    }

    #[test]
    fn drawn_masks_are_the_masks_of_a_training_pass() {
        let _rng = crate::model::torch_rng();
        let config = SaturnConfig::new(vec!["a".into()], vec![5], 12);
        let vs = nn::VarStore::new(Device::Cpu);
        let encoder = Encoder::new(&vs.root(), &config);
        let m = Tensor::rand([30, 12], (Kind::Float, Device::Cpu));
        tch::manual_seed(9);
        let want = encoder.forward_t(&m, true);
        tch::manual_seed(9);
        let masks = encoder.draw_masks(30);
        assert!(encoder.forward_masked(&m, &masks).equal(&want));
    }
}
