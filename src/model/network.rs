//! The SATURN network in tch (SATURN.md section 4; upstream: snap-stanford/SATURN
//! `model/saturn_model.py`, `SATURNPretrainModel`).
//!
//! Parameter paths mirror the upstream PyTorch state-dict keys (`nn.Sequential` indices included),
//! except that per-species modules are indexed by the species' position in
//! [`SaturnConfig::species`] instead of its name (tch paths cannot hold dots):
//!
//! | path | shape | upstream |
//! |---|---|---|
//! | `p_weights` | M x G (in memory gene by gene, G x M) | `p_weights` (P = ln W) |
//! | `cl_layer_norm.{weight,bias}` | M | `cl_layer_norm` |
//! | `encoder.{0,1}.{0,1}.*` | | `encoder` = two `full_block`s |
//! | `px_decoder.0.{0,1}.*` | | `px_decoder` |
//! | `cl_scale_decoder.{0,1}.*` | | `cl_scale_decoder` |
//! | `px_dropout_decoders.{s}.0.*` | G_s x hidden | `px_dropout_decoders[species]` |
//! | `px_rs.{s}` | G_s | `px_rs[species]` |
//! | `p_weights_embeddings.0.{0,1}.*` | | `p_weights_embeddings` |
//!
//! FIXes against upstream: dropout on the macrogene layer only in training; the decoder gets the
//! real species one-hot (upstream always set column 0).
//!
//! The blocks are here; the tensor ops they use are in [`super::ops`], weights to and from bytes
//! in [`super::checkpoint`], and growing a trained network by a species in [`super::surgery`].

use super::error::{invalid, ModelError, Result};
use super::ops::{dense_tensor, dropout, dropout_mask_tensor, to_array};
use super::product::{MacrogeneProduct, SparseRows, WeightLeaves};
use crate::csr::CsrView;
use ndarray::{Array2, ArrayView2};
use serde::{Deserialize, Serialize};
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// The network's shape. Stored beside the weights (JSON) so a checkpoint can be rebuilt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SaturnConfig {
    /// Species names; the position is the species index (one-hot column, per-species modules).
    pub species: Vec<String>,
    /// Number of selected genes per species, in the same order; P's columns are these blocks.
    pub genes_per_species: Vec<usize>,
    /// Number of macrogenes M (default 2000).
    pub n_macrogenes: usize,
    /// Hidden width (default 256; also the width of the regulariser's gene vectors Q).
    pub hidden_dim: usize,
    /// Latent (embedding) width (default 256).
    pub latent_dim: usize,
    /// Dropout probability of every `full_block` and the macrogene layer (default 0.1).
    pub dropout: f64,
    /// SATURN's optional VAE variant: the encoder is `full_block(M, hidden)` followed by
    /// `fc_mu` and `fc_var` (`Linear(hidden, latent)`), the decoder gets a sample
    /// `mu + eps * exp(log_var / 2)` in training, embeddings are `mu`, and pretraining adds the
    /// KL divergence to N(0, I) with a cyclic weight (default off).
    #[serde(default)]
    pub vae: bool,
}

impl SaturnConfig {
    /// A configuration with SATURN's defaults for the given species and gene counts.
    pub fn new(species: Vec<String>, genes_per_species: Vec<usize>, n_macrogenes: usize) -> Self {
        Self {
            species,
            genes_per_species,
            n_macrogenes,
            hidden_dim: 256,
            latent_dim: 256,
            dropout: 0.1,
            vae: false,
        }
    }

    /// Validates the configuration.
    pub fn check(&self) -> Result<()> {
        if self.species.is_empty() || self.species.len() != self.genes_per_species.len() {
            return Err(invalid(
                "species",
                format!(
                    "{} species, {} gene counts",
                    self.species.len(),
                    self.genes_per_species.len()
                ),
                "give one gene count per species, at least one species",
            ));
        }
        let mut names = self.species.clone();
        names.sort();
        if let Some(w) = names.windows(2).find(|w| w[0] == w[1]) {
            return Err(invalid("species", &w[0], "species names must be unique"));
        }
        if let Some(i) = self.genes_per_species.iter().position(|&g| g == 0) {
            return Err(invalid(
                "genes_per_species",
                0,
                format!("species {:?} has no genes", self.species[i]),
            ));
        }
        for (name, v) in [
            ("n_macrogenes", self.n_macrogenes),
            ("hidden_dim", self.hidden_dim),
            ("latent_dim", self.latent_dim),
        ] {
            if v == 0 {
                return Err(invalid(name, v, "must be at least 1"));
            }
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(invalid("dropout", self.dropout, "must be in [0, 1)"));
        }
        Ok(())
    }

    /// Total number of genes G over all species.
    pub fn n_genes(&self) -> usize {
        self.genes_per_species.iter().sum()
    }

    /// The index of a species, or [`ModelError::UnknownSpecies`].
    pub fn species_index(&self, name: &str) -> Result<usize> {
        self.species
            .iter()
            .position(|s| s == name)
            .ok_or_else(|| ModelError::UnknownSpecies {
                species: name.to_string(),
                known: self.species.join(", "),
            })
    }

    /// Species `species`' block of P's columns (and of the gene order): first column, width.
    pub fn gene_block(&self, species: usize) -> (usize, usize) {
        let first = self.genes_per_species[..species].iter().sum();
        (first, self.genes_per_species[species])
    }

    /// First column of every species' block in P.
    fn offsets(&self) -> Vec<i64> {
        let mut acc = 0;
        self.genes_per_species
            .iter()
            .map(|&g| {
                let o = acc;
                acc += g as i64;
                o
            })
            .collect()
    }
}

/// `full_block(in, out)` = Linear -> LayerNorm -> ReLU -> Dropout (paths `0` and `1`).
#[derive(Debug)]
pub struct FullBlock {
    pub(super) linear: nn::Linear,
    norm: nn::LayerNorm,
    dropout: f64,
}

impl FullBlock {
    /// Creates the block's parameters under `path`.
    pub fn new(path: &nn::Path<'_>, input: usize, output: usize, dropout: f64) -> Self {
        let linear = nn::linear(path / "0", input as i64, output as i64, Default::default());
        let norm = nn::layer_norm(path / "1", vec![output as i64], Default::default());
        Self {
            linear,
            norm,
            dropout,
        }
    }

    /// Applies the block; dropout only when `train`.
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        dropout(&self.activation(xs), self.dropout, train)
    }

    /// Applies the block with a given dropout mask (as drawn by [`FullBlock::draw_mask`]).
    fn forward_masked(&self, xs: &Tensor, mask: &Tensor) -> Tensor {
        self.activation(xs) * mask
    }

    /// `ReLU(LayerNorm(Linear(xs)))`, before dropout.
    fn activation(&self, xs: &Tensor) -> Tensor {
        self.norm.forward(&self.linear.forward(xs)).relu()
    }

    /// The dropout mask a training pass over `rows` inputs draws (rows x output width).
    fn draw_mask(&self, rows: i64) -> Tensor {
        let width = self.linear.ws.size()[0];
        dropout_mask_tensor(&[rows, width], self.dropout)
    }
}

/// The dropout masks of one training pass of the [`Encoder`] over a batch, drawn once so that
/// the pass can be repeated, with the same masks, on some of the batch's rows: fine-tuning embeds
/// the whole batch without gradients to mine triplets, then back-propagates through the cells of
/// the triplets only (layer norms act row by row, so those rows' outputs are the same).
#[derive(Debug)]
pub struct EncoderMasks(Vec<Tensor>);

impl EncoderMasks {
    /// The masks of some rows (indices into the batch, int64).
    pub fn rows(&self, index: &Tensor) -> Self {
        Self(self.0.iter().map(|m| m.index_select(0, index)).collect())
    }
}

/// The encoder: `full_block(M, hidden)` then `full_block(hidden, latent)` (z >= 0), or in the
/// VAE variant `full_block(M, hidden)` then the heads `fc_mu` and `fc_var`.
#[derive(Debug)]
pub struct Encoder {
    blocks: Vec<FullBlock>,
    vae: Option<VaeHeads>,
}

/// The VAE variant's heads (upstream `fc_mu`, `fc_var`: `Linear(hidden, latent)`).
#[derive(Debug)]
struct VaeHeads {
    mu: nn::Linear,
    log_var: nn::Linear,
}

/// What the encoder gives the decoder in a training pass.
#[derive(Debug)]
pub struct Latent {
    /// The decoder's input (B x latent): the embedding, or in the VAE variant a sample of
    /// N(mu, exp(log_var)) in training and `mu` otherwise.
    pub z: Tensor,
    /// VAE variant: each cell's KL divergence from N(0, I),
    /// `-1/2 sum(1 + log_var - mu^2 - exp(log_var))` (B).
    pub kl: Option<Tensor>,
}

impl Encoder {
    /// Creates the encoder's parameters under `root` (`encoder.*`, and in the VAE variant
    /// `fc_mu.*` and `fc_var.*`, as upstream).
    pub fn new(root: &nn::Path<'_>, config: &SaturnConfig) -> Self {
        let (m, h, l, p) = (
            config.n_macrogenes,
            config.hidden_dim,
            config.latent_dim,
            config.dropout,
        );
        let path = root / "encoder";
        let mut blocks = vec![FullBlock::new(&(&path / "0"), m, h, p)];
        if !config.vae {
            blocks.push(FullBlock::new(&(&path / "1"), h, l, p));
        }
        let linear = |name: &str| nn::linear(root / name, h as i64, l as i64, Default::default());
        let vae = config.vae.then(|| VaeHeads {
            mu: linear("fc_mu"),
            log_var: linear("fc_var"),
        });
        Self { blocks, vae }
    }

    /// Macrogene expression (B x M) to embedding (B x latent): the blocks' output, or `mu` in
    /// the VAE variant.
    pub fn forward_t(&self, m: &Tensor, train: bool) -> Tensor {
        let h = self
            .blocks
            .iter()
            .fold(m.shallow_clone(), |x, b| b.forward_t(&x, train));
        self.embedding(h)
    }

    /// The pass pretraining makes: the decoder's input and, in the VAE variant, the KL terms.
    pub fn latent_t(&self, m: &Tensor, train: bool) -> Latent {
        let h = self
            .blocks
            .iter()
            .fold(m.shallow_clone(), |x, b| b.forward_t(&x, train));
        let Some(heads) = &self.vae else {
            return Latent { z: h, kl: None };
        };
        let (mu, log_var) = (heads.mu.forward(&h), heads.log_var.forward(&h));
        let terms: Tensor = (&log_var + 1.0) - mu.square() - log_var.exp();
        let kl = terms.sum_dim_intlist(1, false, Kind::Float) * -0.5;
        let z = if train {
            &mu + Tensor::randn_like(&mu) * (&log_var * 0.5).exp()
        } else {
            mu
        };
        Latent { z, kl: Some(kl) }
    }

    /// The embedding of the blocks' output `h`: itself, or `fc_mu(h)` in the VAE variant.
    fn embedding(&self, h: Tensor) -> Tensor {
        match &self.vae {
            Some(heads) => heads.mu.forward(&h),
            None => h,
        }
    }

    /// Draws the dropout masks of a training pass over `rows` cells: the same draws, in the same
    /// order, as [`Encoder::forward_t`] in training makes.
    pub fn draw_masks(&self, rows: usize) -> EncoderMasks {
        EncoderMasks(
            self.blocks
                .iter()
                .map(|b| b.draw_mask(rows as i64))
                .collect(),
        )
    }

    /// The training pass with given masks (one mask row per row of `m`).
    pub fn forward_masked(&self, m: &Tensor, masks: &EncoderMasks) -> Tensor {
        let h = self
            .blocks
            .iter()
            .zip(&masks.0)
            .fold(m.shallow_clone(), |x, (b, mask)| b.forward_masked(&x, mask));
        self.embedding(h)
    }
}

/// The macrogene layer: trainable `P` (M x G), its LayerNorm and the per-species column blocks.
#[derive(Debug)]
pub struct MacrogeneLayer {
    pub(super) p_weights: Tensor,
    norm: nn::LayerNorm,
    pub(super) offsets: Vec<i64>,
    pub(super) genes: Vec<i64>,
    dropout: f64,
}

impl MacrogeneLayer {
    /// Creates `p_weights` (zeros until loaded or initialised) and `cl_layer_norm` under `root`.
    /// `P` (M x G, the state dict's shape) is stored transposed, gene by gene (G x M in memory),
    /// so that `W^T = exp(P)^T`, each species' block of it, and their gradients are contiguous
    /// rows: the layout the sparse product ([`MacrogeneProduct`]) and the gene vectors read.
    pub fn new(root: &nn::Path<'_>, config: &SaturnConfig) -> Self {
        let m = config.n_macrogenes as i64;
        let p_t = Tensor::zeros([config.n_genes() as i64, m], (Kind::Float, Device::Cpu));
        Self {
            p_weights: root.add("p_weights", p_t.tr(), true),
            norm: nn::layer_norm(root / "cl_layer_norm", vec![m], Default::default()),
            offsets: config.offsets(),
            genes: config.genes_per_species.iter().map(|&g| g as i64).collect(),
            dropout: config.dropout,
        }
    }

    /// `W_s^T = exp(P[:, species block])^T` (G_s x M, contiguous).
    pub fn species_weights_t(&self, species: usize) -> Tensor {
        self.p_weights
            .tr()
            .narrow(0, self.offsets[species], self.genes[species])
            .exp()
    }

    /// `W^T = exp(P)^T` for all genes (G x M, contiguous).
    pub fn weights_t(&self) -> Tensor {
        self.p_weights.tr().exp()
    }

    /// `W^T = exp(P)^T` of a training step as autograd leaves (the whole matrix and each
    /// species' block), whose gradients and the step's products' give `P`'s
    /// ([`super::adam::Adam::backward_step`]).
    pub fn weight_leaves(&self) -> WeightLeaves {
        WeightLeaves::new(&self.p_weights, &self.genes)
    }

    /// `m = Dropout(ReLU(LayerNorm(ln(1 + x) W_s^T)))` for the counts `x` of some cells and
    /// `w_t` = `W_s^T` (G_s x M); dropout only when `train` (FIX). When `w_t` requires a
    /// gradient (a block of [`MacrogeneLayer::weight_leaves`]), `species` says which block it is,
    /// and the product's record comes back too: its gradient reaches `P` only through
    /// [`super::adam::Adam::backward_step`].
    pub fn forward_t(
        &self,
        counts: SparseRows,
        w_t: &Tensor,
        species: Option<usize>,
        train: bool,
    ) -> (Tensor, Option<MacrogeneProduct>) {
        let first_gene = species.map(|s| self.offsets[s] as usize);
        let (product, record) = MacrogeneProduct::new(counts, w_t, first_gene);
        let m = dropout(&self.norm.forward(&product).relu(), self.dropout, train);
        (m, record)
    }
}

/// One species' cells of a batch: `rows` of `counts`, and `W_s^T` (G_s x M).
#[derive(Debug)]
pub struct BatchPart<'a> {
    /// The species' index.
    pub species: usize,
    /// The species' counts over its genes.
    pub counts: &'a CsrView<'a>,
    /// The cells (rows of `counts`) in the batch.
    pub rows: &'a [usize],
    /// `W_s^T`: in training a block of [`MacrogeneLayer::weight_leaves`], otherwise e.g.
    /// [`MacrogeneLayer::species_weights_t`].
    pub w_t: Tensor,
}

/// Everything one forward pass of a species' batch produces.
#[derive(Debug)]
pub struct Forward {
    /// Macrogene expression (B x M).
    pub macrogenes: Tensor,
    /// The decoder's input (B x latent): the embedding (post-ReLU), or in the VAE variant its
    /// sample in training and `mu` otherwise ([`Latent`]).
    pub z: Tensor,
    /// Logits of the expression proportions over the species' genes (B x G_s):
    /// `px = softmax(px_logits)` ([`Forward::px`]).
    pub px_logits: Tensor,
    /// Each cell's library size, its total count (B x 1).
    pub library: Tensor,
    /// Zero-inflation logits (B x G_s).
    pub pi: Tensor,
    /// Inverse dispersion per gene (G_s).
    pub theta: Tensor,
    /// VAE variant: each cell's KL divergence from N(0, I) (B); see [`Latent`].
    pub kl: Option<Tensor>,
    /// The macrogene-layer product's record, when `W_s^T` is a leaf of
    /// [`MacrogeneLayer::weight_leaves`]: pass it to [`super::adam::Adam::backward_step`] with
    /// the loss and the leaves.
    pub product: Option<MacrogeneProduct>,
}

impl Forward {
    /// Expression proportions over the species' genes (B x G_s), rows sum to 1.
    pub fn px(&self) -> Tensor {
        self.px_logits.softmax(-1, Kind::Float)
    }

    /// The ZINB mean `library * px` (B x G_s). Training does not form it: the fused loss
    /// ([`super::zinb::zinb_nll_fused`]) takes the logits.
    pub fn mu(&self) -> Tensor {
        &self.library * self.px()
    }
}

/// The SATURN network: one `VarStore` holding every parameter listed in the module doc.
pub struct Saturn {
    pub(super) vs: nn::VarStore,
    pub(super) config: SaturnConfig,
    pub(super) macrogenes: MacrogeneLayer,
    encoder: Encoder,
    pub(super) px_decoder: FullBlock,
    cl_scale_decoder: FullBlock,
    pub(super) px_dropout_decoders: Vec<nn::Linear>,
    pub(super) px_rs: Vec<Tensor>,
    p_weights_embeddings: FullBlock,
}

impl std::fmt::Debug for Saturn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Saturn")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Cells per chunk when embedding without gradients.
const EVAL_CHUNK: usize = 4096;

impl Saturn {
    /// Builds the network with `P = ln(initial_weights)` (M x G, columns in species order, from
    /// [`crate::macrogene::rank_weights`]); other parameters get PyTorch's default initialisation,
    /// `px_rs` standard normal. Seed with `tch::manual_seed` first for reproducible weights.
    pub fn new(config: SaturnConfig, initial_weights: ArrayView2<'_, f32>) -> Result<Self> {
        let model = Self::build(config)?;
        let (m, g) = (model.config.n_macrogenes, model.config.n_genes());
        check_initial_weights(initial_weights, m, g)?;
        let w = dense_tensor(initial_weights);
        tch::no_grad(|| model.macrogenes.p_weights.shallow_clone().copy_(&w.log()));
        Ok(model)
    }

    /// Builds the network with `P = 0`, to be filled by [`Saturn::load_bytes`] or
    /// [`Saturn::set_parameters`].
    pub fn build(config: SaturnConfig) -> Result<Self> {
        config.check()?;
        let vs = nn::VarStore::new(Device::Cpu);
        let root = vs.root();
        let (h, l, m, p) = (
            config.hidden_dim,
            config.latent_dim,
            config.n_macrogenes,
            config.dropout,
        );
        let n_species = config.species.len();
        let macrogenes = MacrogeneLayer::new(&root, &config);
        let encoder = Encoder::new(&root, &config);
        let px_decoder = FullBlock::new(&(&root / "px_decoder" / "0"), l + n_species, h, p);
        let cl_scale_decoder = FullBlock::new(&(&root / "cl_scale_decoder"), h, m, p);
        let px_dropout_decoders = config
            .genes_per_species
            .iter()
            .enumerate()
            .map(|(s, &g)| {
                nn::linear(
                    &root / "px_dropout_decoders" / s / "0",
                    h as i64,
                    g as i64,
                    Default::default(),
                )
            })
            .collect();
        let px_rs = config
            .genes_per_species
            .iter()
            .enumerate()
            .map(|(s, &g)| {
                (&root / "px_rs").var(
                    &s.to_string(),
                    &[g as i64],
                    nn::Init::Randn {
                        mean: 0.0,
                        stdev: 1.0,
                    },
                )
            })
            .collect();
        let p_weights_embeddings = FullBlock::new(&(&root / "p_weights_embeddings" / "0"), m, h, p);
        Ok(Self {
            vs,
            config,
            macrogenes,
            encoder,
            px_decoder,
            cl_scale_decoder,
            px_dropout_decoders,
            px_rs,
            p_weights_embeddings,
        })
    }

    /// The configuration.
    pub fn config(&self) -> &SaturnConfig {
        &self.config
    }

    /// The parameters (for optimisers and checkpoints).
    pub fn var_store(&self) -> &nn::VarStore {
        &self.vs
    }

    /// The macrogene layer.
    pub fn macrogene_layer(&self) -> &MacrogeneLayer {
        &self.macrogenes
    }

    /// The encoder.
    pub fn encoder(&self) -> &Encoder {
        &self.encoder
    }

    /// The current gene-to-macrogene weights `W = exp(P)` as M x G.
    pub fn macrogene_weights(&self) -> Result<Array2<f32>> {
        to_array(&tch::no_grad(|| self.macrogenes.weights_t().tr()))
    }

    /// The forward pass of cells `rows` of `counts` (species `species`). `P` gets no gradient
    /// from it (training passes the leaves of [`MacrogeneLayer::weight_leaves`] to
    /// [`Saturn::forward_parts`]).
    pub fn forward_t(
        &self,
        species: usize,
        counts: &CsrView<'_>,
        rows: &[usize],
        train: bool,
    ) -> Forward {
        let w_t = tch::no_grad(|| self.macrogenes.species_weights_t(species));
        let part = BatchPart {
            species,
            counts,
            rows,
            w_t,
        };
        self.forward_parts(&[part], train).remove(0)
    }

    /// The forward pass of a batch holding cells of several species, one [`BatchPart`] per
    /// species (in training `W_s^T` a block of [`MacrogeneLayer::weight_leaves`], so that a
    /// step takes `exp` of `P` once). The macrogene layer and the decoder's heads run
    /// per part; the encoder and the decoder's trunk, which act row by row, run once over all
    /// the batch's rows (their dropout masks drawn once for all rows).
    pub fn forward_parts(&self, parts: &[BatchPart<'_>], train: bool) -> Vec<Forward> {
        let (macrogenes, mut products): (Vec<Tensor>, Vec<Option<MacrogeneProduct>>) = parts
            .iter()
            .map(|p| {
                let x = SparseRows::log1p_counts(p.counts, p.rows);
                self.macrogenes.forward_t(x, &p.w_t, Some(p.species), train)
            })
            .unzip();
        let Latent { z, kl } = self.encoder.latent_t(&Tensor::cat(&macrogenes, 0), train);
        let onehot: Vec<Tensor> = parts
            .iter()
            .map(|p| {
                Tensor::zeros(
                    [p.rows.len() as i64, self.config.species.len() as i64],
                    (Kind::Float, Device::Cpu),
                )
                .index_fill(1, &Tensor::from_slice(&[p.species as i64]), 1.0)
            })
            .collect();
        let onehot = Tensor::cat(&onehot, 0);
        let h = self
            .px_decoder
            .forward_t(&Tensor::cat(&[&z, &onehot], 1), train);
        let c = self.cl_scale_decoder.forward_t(&h, train);
        let mut first = 0;
        parts
            .iter()
            .zip(macrogenes)
            .zip(products.iter_mut())
            .map(|((p, macrogenes), product)| {
                let b = p.rows.len() as i64;
                let rows = |t: &Tensor| t.narrow(0, first, b);
                let (z, h, c) = (rows(&z), rows(&h), rows(&c));
                let kl = kl.as_ref().map(rows);
                first += b;
                let library: Vec<f32> =
                    p.rows.iter().map(|&r| p.counts.row_sum(r) as f32).collect();
                Forward {
                    macrogenes,
                    z,
                    px_logits: c.matmul(&p.w_t.tr()),
                    library: Tensor::from_slice(&library).reshape([b, 1]),
                    pi: self.px_dropout_decoders[p.species].forward(&h),
                    theta: self.px_rs[p.species].exp(),
                    kl,
                    product: product.take(),
                }
            })
            .collect()
    }

    /// The regulariser's gene vectors `Q = full_block(M, hidden)(W^T)` (G x hidden) for
    /// `W^T = exp(P)^T` ([`MacrogeneLayer::weights_t`]).
    pub fn gene_vectors(&self, w_t: &Tensor, train: bool) -> Tensor {
        self.p_weights_embeddings.forward_t(w_t, train)
    }

    /// Embedding and macrogene expression (eval mode, no gradients) of cells of a known species.
    pub fn embed(&self, species: &str, counts: &CsrView<'_>) -> Result<Embedding> {
        let s = self.config.species_index(species)?;
        check_counts(species, counts, self.config.genes_per_species[s])?;
        self.embed_inner(
            counts,
            &tch::no_grad(|| self.macrogenes.species_weights_t(s)),
        )
    }

    /// Embedding and macrogene expression of cells of a species the model was not trained on,
    /// with its initial weights (M x G_new, from [`crate::macrogene::rank_weights`] against the
    /// stored centroids).
    pub fn embed_with_weights(
        &self,
        counts: &CsrView<'_>,
        weights: ArrayView2<'_, f32>,
    ) -> Result<Embedding> {
        if weights.nrows() != self.config.n_macrogenes || weights.ncols() != counts.n_cols() {
            return Err(ModelError::Shape {
                species: String::new(),
                what: format!(
                    "weights are {:?}, counts have {} genes, the model has {} macrogenes",
                    weights.dim(),
                    counts.n_cols(),
                    self.config.n_macrogenes
                ),
            });
        }
        self.embed_inner(counts, &dense_tensor(weights.t()))
    }

    /// Embedding and macrogene expression of every cell of `counts` with `w_t` = `W^T` (its
    /// genes x M), in chunks, without gradients.
    fn embed_inner(&self, counts: &CsrView<'_>, w_t: &Tensor) -> Result<Embedding> {
        let n = counts.n_rows();
        let (mut zs, mut ms) = (Vec::new(), Vec::new());
        tch::no_grad(|| {
            for start in (0..n).step_by(EVAL_CHUNK) {
                let rows: Vec<usize> = (start..(start + EVAL_CHUNK).min(n)).collect();
                let x = SparseRows::log1p_counts(counts, &rows);
                let (m, _) = self.macrogenes.forward_t(x, w_t, None, false);
                zs.push(self.encoder.forward_t(&m, false));
                ms.push(m);
            }
        });
        let cat = |v: Vec<Tensor>, width: usize| {
            if v.is_empty() {
                Ok(Array2::zeros((0, width)))
            } else {
                to_array(&Tensor::cat(&v, 0))
            }
        };
        Ok(Embedding {
            z: cat(zs, self.config.latent_dim)?,
            macrogenes: cat(ms, self.config.n_macrogenes)?,
        })
    }
}

/// The per-cell outputs stored in the atlas.
#[derive(Debug, Clone)]
pub struct Embedding {
    /// Encoder output, not normalised (cells x latent).
    pub z: Array2<f32>,
    /// Macrogene expression (cells x M).
    pub macrogenes: Array2<f32>,
}

/// Checks initial gene weights: `m` x `g`, finite and >= 0.
pub(super) fn check_initial_weights(
    weights: ArrayView2<'_, f32>,
    m: usize,
    g: usize,
) -> Result<()> {
    if weights.dim() != (m, g) {
        return Err(ModelError::Shape {
            species: String::new(),
            what: format!(
                "initial weights are {:?}, the model needs {m} x {g}",
                weights.dim()
            ),
        });
    }
    if let Some(v) = weights.iter().find(|v| !(v.is_finite() && **v >= 0.0)) {
        return Err(invalid(
            "initial_weights",
            v,
            "weights must be finite and >= 0",
        ));
    }
    Ok(())
}

/// Checks that a species' counts have the model's gene count.
pub(crate) fn check_counts(species: &str, counts: &CsrView<'_>, genes: usize) -> Result<()> {
    if counts.n_cols() != genes {
        return Err(ModelError::Shape {
            species: species.to_string(),
            what: format!(
                "counts have {} genes, the model was built with {genes}",
                counts.n_cols()
            ),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What pretraining relies on: the encoder and the decoder's trunk act row by row, so one
    /// pass over several species' cells gives each species' outputs of a pass of its own.
    #[test]
    fn a_pass_over_several_species_equals_one_pass_per_species() {
        let _rng = crate::model::torch_rng();
        tch::manual_seed(5);
        let config = SaturnConfig::new(vec!["a".into(), "b".into()], vec![7, 4], 6);
        let model = Saturn::build(config).unwrap();
        tch::no_grad(|| {
            let _ = model.macrogenes.p_weights.shallow_clone().normal_(0.0, 0.5);
        });
        // CSR counts: species a (7 genes) and b (4 genes), every third entry non-zero
        let csr = |rows: usize, genes: usize| {
            let (mut indptr, mut cols, mut data) = (vec![0u64], vec![], vec![]);
            for r in 0..rows {
                for g in (r % 3..genes).step_by(3) {
                    cols.push(g as u32);
                    data.push(1 + ((r * 7 + g) % 5) as u32);
                }
                indptr.push(cols.len() as u64);
            }
            (indptr, cols, data)
        };
        let (a, b) = (csr(3, 7), csr(5, 4));
        let xa = CsrView::new(7, &a.0, &a.1, &a.2).unwrap();
        let xb = CsrView::new(4, &b.0, &b.1, &b.2).unwrap();
        let (ra, rb): (Vec<usize>, Vec<usize>) = ((0..3).collect(), (0..5).collect());
        let leaves = model.macrogene_layer().weight_leaves();
        let (wa, wb) = (
            leaves.block(0).shallow_clone(),
            leaves.block(1).shallow_clone(),
        );
        let parts = [
            BatchPart {
                species: 1,
                counts: &xb,
                rows: &rb,
                w_t: wb,
            },
            BatchPart {
                species: 0,
                counts: &xa,
                rows: &ra,
                w_t: wa,
            },
        ];
        let together = tch::no_grad(|| model.forward_parts(&parts, false));
        for (got, (species, x, rows)) in together.iter().zip([(1, &xb, &rb), (0, &xa, &ra)]) {
            let want = tch::no_grad(|| model.forward_t(species, x, rows, false));
            for (name, a, b) in [
                ("macrogenes", &got.macrogenes, &want.macrogenes),
                ("z", &got.z, &want.z),
                ("mu", &got.mu(), &want.mu()),
                ("pi", &got.pi, &want.pi),
                ("theta", &got.theta, &want.theta),
            ] {
                assert_eq!(a.size(), b.size(), "{name} of species {species}");
                let err = (a - b).abs().max().double_value(&[]);
                assert!(err < 1e-5, "{name} of species {species}: {err}");
            }
        }
    }

    /// The VAE variant's latent: in training a sample `mu + eps * exp(log_var / 2)` with standard
    /// normal `eps`, otherwise `mu`; the KL divergence of N(mu, exp(log_var)) from N(0, I).
    #[test]
    fn vae_latent_samples_around_mu_and_gives_the_kl_divergence() {
        let _rng = crate::model::torch_rng();
        tch::manual_seed(9);
        let mut config = SaturnConfig::new(vec!["a".into()], vec![3], 4);
        config.vae = true;
        let vs = nn::VarStore::new(Device::Cpu);
        let encoder = Encoder::new(&vs.root(), &config);
        let heads = encoder.vae.as_ref().expect("VAE heads");
        // mu = 3 and log_var = ln 4 (std 2) for every cell and dimension
        tch::no_grad(|| {
            for (head, value) in [(&heads.mu, 3.0), (&heads.log_var, 4f64.ln())] {
                let _ = head.ws.shallow_clone().zero_();
                let _ = head.bs.as_ref().unwrap().shallow_clone().fill_(value);
            }
        });
        let m = Tensor::rand([20_000, 4], (Kind::Float, Device::Cpu));
        let sampled = tch::no_grad(|| encoder.latent_t(&m, true));
        let (mean, std) = (
            sampled.z.mean(Kind::Float).double_value(&[]),
            sampled.z.std(true).double_value(&[]),
        );
        assert!(
            (mean - 3.0).abs() < 0.02 && (std - 2.0).abs() < 0.02,
            "{mean} {std}"
        );
        let kl_one = -0.5 * (1.0 + 4f64.ln() - 9.0 - 4.0) * config.latent_dim as f64;
        let kl = sampled.kl.expect("KL");
        assert!((kl - kl_one).abs().max().double_value(&[]) < 1e-3);
        let eval = tch::no_grad(|| encoder.latent_t(&m, false));
        assert!(eval.z.equal(&tch::no_grad(|| encoder.forward_t(&m, false))));
        assert_eq!(eval.z.mean(Kind::Float).double_value(&[]), 3.0);
    }
}
