//! ESM-2, the protein language model SATURN embeds proteins with, in `tch`.
//!
//! Paper: Lin et al., "Evolutionary-scale prediction of atomic-level protein structure with a
//! language model", *Science* 379 (2023) (ESM-2); weights and original code: fair-esm
//! (github.com/facebookresearch/esm, `esm/model/esm2.py`). This file follows the Hugging Face port,
//! `transformers/models/esm/modeling_esm.py` (`EsmModel`), block for block, and every parameter
//! path is the Hugging Face `EsmModel` checkpoint key (`embeddings.word_embeddings.weight`,
//! `encoder.layer.N.attention.self.query.weight`, ...). Checkpoints of `EsmForMaskedLM` /
//! `EsmForSequenceClassification` carry the same keys behind an `esm.` prefix; both load, and the
//! heads they add (`lm_head`, `classifier`, `contact_head`) are ignored. Any ESM-2 size loads with no
//! code change: the shapes come from `config.json`.
//!
//! The model runs on *packed* sequences: a batch's proteins one after another in one `[tokens,
//! hidden]` matrix ([`Esm2::forward_packed`]), so the projections, layer norms and feed-forward
//! blocks never compute padding, and the attention core ([`super::attention`], by hand) attends
//! within each sequence. [`Esm2::forward`] takes a padded batch as transformers does.
//!
//! fair-esm `.pt` checkpoints (`esm2_t33_650M_UR50D.pt`, as `esm.pretrained` downloads them) load
//! into the same model: `fair_esm` reads them without Python and renames their tensors to these
//! keys ([`Esm2::load_fair_esm`]; [`Esm2::open`] takes either form).
//!
//! Numerics are tested against transformers in `tests/integration/esm2_parity.rs` (reference:
//! `scripts/reference/esm2_reference.py`) and against fair-esm in `tests/integration/fair_esm.rs` (reference:
//! `scripts/reference/fair_esm_reference.py`).

use super::attention::{attention, check_segments, RotaryTables, Segment};
use super::{Alphabet, Esm2Config, ProteinError};
use std::collections::HashMap;
use std::path::Path;
use tch::nn::{self, Module};
use tch::{Device, Kind, Tensor};

/// Every Linear / LayerNorm is created zero-filled and then overwritten by the checkpoint.
const ZERO: nn::Init = nn::Init::Const(0.0);

fn linear(path: nn::Path, input: usize, output: usize) -> nn::Linear {
    let config = nn::LinearConfig {
        ws_init: ZERO,
        bs_init: Some(ZERO),
        bias: true,
    };
    nn::linear(path, input as i64, output as i64, config)
}

fn layer_norm(path: nn::Path, width: usize, eps: f64) -> nn::LayerNorm {
    let config = nn::LayerNormConfig {
        eps,
        ws_init: ZERO,
        bs_init: ZERO,
        ..Default::default()
    };
    nn::layer_norm(path, vec![width as i64], config)
}

/// `EsmEmbeddings`: token embedding, token-dropout rescaling, padding zeroed.
#[derive(Debug)]
pub struct EsmEmbeddings {
    word_embeddings: nn::Embedding,
    layer_norm: Option<nn::LayerNorm>,
    token_dropout: bool,
    mask_token_id: i64,
}

impl EsmEmbeddings {
    /// Parameters under `path` (`embeddings`).
    pub fn new(path: nn::Path, cfg: &Esm2Config) -> Self {
        let config = nn::EmbeddingConfig {
            ws_init: ZERO,
            padding_idx: cfg.pad_token_id,
            ..Default::default()
        };
        let word_embeddings = nn::embedding(
            &path / "word_embeddings",
            cfg.vocab_size as i64,
            cfg.hidden_size as i64,
            config,
        );
        let layer_norm = cfg
            .emb_layer_norm_before
            .then(|| layer_norm(&path / "layer_norm", cfg.hidden_size, cfg.layer_norm_eps));
        Self {
            word_embeddings,
            layer_norm,
            token_dropout: cfg.token_dropout,
            mask_token_id: cfg.mask_token_id,
        }
    }

    /// `input_ids`: int64 `[tokens]`, the sequences `segments` packed one after another.
    pub fn forward(&self, input_ids: &Tensor, segments: &[Segment]) -> Tensor {
        let mut x = self.word_embeddings.forward(input_ids);
        if self.token_dropout {
            // modeling_esm.py EsmEmbeddings.forward: `<mask>` embeddings are zeroed and the rest
            // scaled by (1 - 0.15 * 0.8) / (1 - mask_ratio_observed), the expected share of tokens
            // ESM-2 saw unmasked in training, with mask_ratio_observed = a sequence's `<mask>`
            // tokens / its attended tokens. With no `<mask>` in the input the factor is 0.88.
            let is_mask = input_ids.eq(self.mask_token_id);
            let masks = Vec::<bool>::try_from(&is_mask).expect("a bool tensor");
            x = x.masked_fill(&is_mask.unsqueeze(-1), 0.0);
            let mask_ratio_train = 0.15 * 0.8;
            let unmasked: Vec<f32> = segments
                .iter()
                .flat_map(|s| {
                    let masked = masks[s.start..s.start + s.queries].iter().filter(|&&m| m);
                    let ratio = masked.count() as f32 / s.keys as f32;
                    std::iter::repeat_n(1.0 - ratio, s.queries)
                })
                .collect();
            let unmasked = Tensor::from_slice(&unmasked)
                .to_device(x.device())
                .view([-1, 1]);
            x = (x * (1.0 - mask_ratio_train) / unmasked).to_kind(self.kind());
        }
        if let Some(ln) = &self.layer_norm {
            x = ln.forward(&x);
        }
        // Padding positions (past a sequence's attended tokens) are zeroed before the first layer.
        if segments.iter().any(|s| s.keys < s.queries) {
            let attended: Vec<f32> = segments
                .iter()
                .flat_map(|s| (0..s.queries).map(move |i| f32::from(u8::from(i < s.keys))))
                .collect();
            let attended = Tensor::from_slice(&attended)
                .to_device(x.device())
                .view([-1, 1]);
            x *= attended.to_kind(self.kind());
        }
        x
    }

    fn kind(&self) -> Kind {
        self.word_embeddings.ws.kind()
    }
}

/// `RotaryEmbedding` (Su et al., RoFormer, arXiv:2104.09864), as in modeling_esm.py: frequencies
/// `1 / rope_theta^(2i / head_dim)` (`rope_theta` = 10000 for ESM-2) and the angle table
/// `cat(freqs, freqs)`; [`attention`] applies `x * cos + rotate_half(x) * sin` to queries and
/// keys.
#[derive(Debug)]
pub struct RotaryEmbedding {
    inv_freq: Tensor,
}

impl RotaryEmbedding {
    /// Frequencies for heads of size `head_dim`, computed. [`Esm2::load`] replaces them by the
    /// checkpoint's `inv_freq` buffer when it has one, as transformers and fair-esm do (the buffer
    /// is loaded with the state dict); the published ESM-2 buffers differ from the formula by up to
    /// 7e-5, which moves the final hidden states by ~1e-4.
    pub fn new(head_dim: usize, rope_theta: f64, device: Device) -> Self {
        let dim = head_dim as i64;
        let exponent = Tensor::arange_start_step(0, dim, 2, (Kind::Int64, device))
            .to_kind(Kind::Float)
            / dim as f64;
        let inv_freq = Tensor::pow_scalar(rope_theta, &exponent).reciprocal();
        Self { inv_freq }
    }

    /// Frequencies taken from a checkpoint (`[head_dim / 2]`, f32).
    pub fn from_inv_freq(inv_freq: Tensor) -> Self {
        Self { inv_freq }
    }

    /// The `cos` and `sin` tables of positions `0 .. tokens`, `[tokens, head_dim]` each, in
    /// `kind` (transformers casts them to the hidden states' kind).
    pub fn tables(&self, tokens: i64, kind: Kind) -> RotaryTables {
        let t = Tensor::arange(tokens, (Kind::Float, self.inv_freq.device()));
        let freqs = t.outer(&self.inv_freq);
        let emb = Tensor::cat(&[&freqs, &freqs], -1);
        RotaryTables::new(&emb.cos().to_kind(kind), &emb.sin().to_kind(kind))
    }
}

/// `EsmSelfAttention`: multi-head attention with rotary queries/keys and a key padding mask.
#[derive(Debug)]
pub struct EsmSelfAttention {
    query: nn::Linear,
    key: nn::Linear,
    value: nn::Linear,
    heads: usize,
    head_dim: usize,
}

impl EsmSelfAttention {
    /// Parameters under `path` (`encoder.layer.N.attention.self`).
    pub fn new(path: nn::Path, cfg: &Esm2Config) -> Self {
        let d = cfg.hidden_size;
        Self {
            query: linear(&path / "query", d, d),
            key: linear(&path / "key", d, d),
            value: linear(&path / "value", d, d),
            heads: cfg.num_attention_heads,
            head_dim: cfg.head_dim(),
        }
    }

    /// `x`: packed hidden states `[tokens, hidden]` of the sequences `segments`; `rotary` from
    /// [`RotaryEmbedding::tables`]. The attention core runs by hand on the CPU ([`attention`]).
    pub fn forward(&self, x: &Tensor, segments: &[Segment], rotary: &RotaryTables) -> Tensor {
        // modeling_esm.py scales the queries by head_dim^-0.5 *before* the rotation.
        let scale = (self.head_dim as f64).powf(-0.5) as f32;
        let (q, k, v) = (
            self.query.forward(x),
            self.key.forward(x),
            self.value.forward(x),
        );
        attention(&q, &k, &v, self.heads, segments, rotary, scale).to_kind(x.kind())
    }
}

/// `EsmAttention`: pre-LayerNorm, self-attention, output projection, residual.
#[derive(Debug)]
pub struct EsmAttention {
    self_attention: EsmSelfAttention,
    output_dense: nn::Linear,
    layer_norm: nn::LayerNorm,
}

impl EsmAttention {
    /// Parameters under `path` (`encoder.layer.N.attention`).
    pub fn new(path: nn::Path, cfg: &Esm2Config) -> Self {
        let d = cfg.hidden_size;
        Self {
            self_attention: EsmSelfAttention::new(&path / "self", cfg),
            output_dense: linear(&path / "output" / "dense", d, d),
            layer_norm: layer_norm(&path / "LayerNorm", d, cfg.layer_norm_eps),
        }
    }

    /// `x + dense(self_attention(LayerNorm(x)))`.
    pub fn forward(&self, x: &Tensor, segments: &[Segment], rotary: &RotaryTables) -> Tensor {
        let h = self.layer_norm.forward(x);
        let h = self.self_attention.forward(&h, segments, rotary);
        self.output_dense.forward(&h) + x
    }
}

/// `EsmLayer`: attention block, then the pre-LayerNorm feed-forward block with erf-GELU.
#[derive(Debug)]
pub struct EsmLayer {
    attention: EsmAttention,
    intermediate_dense: nn::Linear,
    output_dense: nn::Linear,
    layer_norm: nn::LayerNorm,
}

impl EsmLayer {
    /// Parameters under `path` (`encoder.layer.N`).
    pub fn new(path: nn::Path, cfg: &Esm2Config) -> Self {
        let (d, f) = (cfg.hidden_size, cfg.intermediate_size);
        Self {
            attention: EsmAttention::new(&path / "attention", cfg),
            intermediate_dense: linear(&path / "intermediate" / "dense", d, f),
            output_dense: linear(&path / "output" / "dense", f, d),
            layer_norm: layer_norm(&path / "LayerNorm", d, cfg.layer_norm_eps),
        }
    }

    /// One transformer layer.
    pub fn forward(&self, x: &Tensor, segments: &[Segment], rotary: &RotaryTables) -> Tensor {
        let a = self.attention.forward(x, segments, rotary);
        // EsmIntermediate uses the exact (erf) GELU whatever `hidden_act` says.
        let h = self
            .intermediate_dense
            .forward(&self.layer_norm.forward(&a))
            .gelu("none");
        self.output_dense.forward(&h) + a
    }
}

/// `EsmEncoder`: the layers, then `emb_layer_norm_after` on the last one's output.
#[derive(Debug)]
pub struct EsmEncoder {
    layers: Vec<EsmLayer>,
    emb_layer_norm_after: nn::LayerNorm,
    rotary: RotaryEmbedding,
}

impl EsmEncoder {
    /// Parameters under `path` (`encoder`).
    pub fn new(path: nn::Path, cfg: &Esm2Config) -> Self {
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EsmLayer::new(&path / "layer" / i, cfg))
            .collect();
        Self {
            layers,
            emb_layer_norm_after: layer_norm(
                &path / "emb_layer_norm_after",
                cfg.hidden_size,
                cfg.layer_norm_eps,
            ),
            rotary: RotaryEmbedding::new(cfg.head_dim(), cfg.rope_theta, path.device()),
        }
    }

    /// Runs the first `repr_layer` layers; when that is all of them, the final layer norm too
    /// (fair-esm's `representations[num_layers]`, transformers' `last_hidden_state`).
    /// `x`: packed hidden states `[tokens, hidden]` of the sequences `segments`.
    pub fn forward(&self, x: Tensor, segments: &[Segment], repr_layer: usize) -> Tensor {
        let longest = segments.iter().map(|s| s.queries).max().unwrap_or(0);
        let rotary = self.rotary.tables(longest as i64, x.kind());
        let mut x = x;
        for layer in &self.layers[..repr_layer] {
            x = layer.forward(&x, segments, &rotary);
        }
        if repr_layer == self.layers.len() {
            x = self.emb_layer_norm_after.forward(&x);
        }
        x
    }
}

/// A loaded ESM-2 model with its alphabet.
#[derive(Debug)]
pub struct Esm2 {
    config: Esm2Config,
    alphabet: Alphabet,
    vs: nn::VarStore,
    embeddings: EsmEmbeddings,
    encoder: EsmEncoder,
}

impl Esm2 {
    /// Loads an ESM-2 checkpoint: a Hugging Face directory ([`Self::load_dir`]) or a fair-esm
    /// `.pt` file ([`Self::load_fair_esm`]).
    pub fn open(path: &Path, device: Device) -> Result<Self, ProteinError> {
        if path.is_dir() {
            Self::load_dir(path, device)
        } else {
            Self::load_fair_esm(path, device)
        }
    }

    /// Loads a fair-esm ESM-2 checkpoint (`torch.save`d `{"model": state_dict, "cfg": ...}`), with
    /// the standard ESM-2 alphabet (fair-esm's "ESM-1b" alphabet). Sizes come from the tensors,
    /// the number of heads from the checkpoint's config or the published ESM-2 sizes.
    pub fn load_fair_esm(path: &Path, device: Device) -> Result<Self, ProteinError> {
        let checkpoint = super::fair_esm::read(path)?;
        Self::from_tensors(
            checkpoint.config,
            Alphabet::esm2(),
            &checkpoint.tensors,
            path,
            device,
        )
    }

    /// Loads a Hugging Face ESM-2 directory: `config.json`, the weights (`model.safetensors`, or
    /// the shards listed by `model.safetensors.index.json` as for the 3B and 15B models) and, if
    /// present, `vocab.txt` (otherwise the standard ESM-2 alphabet).
    pub fn load_dir(dir: &Path, device: Device) -> Result<Self, ProteinError> {
        let config = Esm2Config::from_file(&dir.join("config.json"))?;
        let vocab = dir.join("vocab.txt");
        let alphabet = if vocab.exists() {
            Alphabet::from_vocab_file(&vocab)?
        } else {
            Alphabet::esm2()
        };
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let weights = if !single.exists() && index.exists() {
            index
        } else if !single.exists() {
            return Err(ProteinError::Weights {
                path: single,
                message: "no model.safetensors (nor model.safetensors.index.json); satlas reads \
                          Hugging Face safetensors: download the facebook/esm2_* safetensors files \
                          or convert pytorch_model.bin with transformers"
                    .into(),
            });
        } else {
            single
        };
        Self::load(config, alphabet, &weights, device)
    }

    /// Builds the model for `config` and fills it from a safetensors file (or a sharded
    /// checkpoint's `*.safetensors.index.json`), by Hugging Face name
    /// (with or without the `esm.` prefix). Every tensor the model needs must be present with the
    /// shape `config` implies. The rotary `inv_freq` buffer is used when present (see
    /// [`RotaryEmbedding::new`]); other tensors (heads, `position_ids`) are ignored.
    /// Weights stored in half precision are widened to f32.
    pub fn load(
        config: Esm2Config,
        alphabet: Alphabet,
        weights: &Path,
        device: Device,
    ) -> Result<Self, ProteinError> {
        let tensors = read_checkpoint(weights)?;
        Self::from_tensors(config, alphabet, &tensors, weights, device)
    }

    /// Builds the model for `config` from `tensors` (Hugging Face names, see [`Self::load`]) read
    /// from the file `weights`, which error messages name.
    fn from_tensors(
        config: Esm2Config,
        alphabet: Alphabet,
        tensors: &HashMap<String, Tensor>,
        weights: &Path,
        device: Device,
    ) -> Result<Self, ProteinError> {
        config.validate().map_err(|message| ProteinError::Config {
            path: weights.into(),
            message,
        })?;
        if device != Device::Cpu {
            return Err(ProteinError::Options(format!(
                "ESM-2 runs on the CPU in satlas (its attention is a CPU kernel), not on {device:?}: \
                 load it with Device::Cpu"
            )));
        }
        if alphabet.len() != config.vocab_size
            || alphabet.mask_id() != config.mask_token_id
            || alphabet.pad_id() != config.pad_token_id
        {
            return Err(ProteinError::Config {
                path: weights.into(),
                message: format!(
                    "the vocabulary ({} tokens, <mask> {}, <pad> {}) does not match config.json \
                     (vocab_size {}, mask_token_id {}, pad_token_id {})",
                    alphabet.len(),
                    alphabet.mask_id(),
                    alphabet.pad_id(),
                    config.vocab_size,
                    config.mask_token_id,
                    config.pad_token_id
                ),
            });
        }
        let mut vs = nn::VarStore::new(device);
        let root = vs.root();
        let embeddings = EsmEmbeddings::new(&root / "embeddings", &config);
        let mut encoder = EsmEncoder::new(&root / "encoder", &config);
        let stored_inv_freq = copy_tensors(&vs, tensors, weights, &config)?;
        if let Some(inv_freq) = stored_inv_freq {
            encoder.rotary = RotaryEmbedding::from_inv_freq(inv_freq.to_device(device));
        }
        vs.freeze();
        Ok(Self {
            config,
            alphabet,
            vs,
            embeddings,
            encoder,
        })
    }

    /// Converts the weights to bfloat16 (about 2x less memory, lower precision; off by default).
    pub fn to_bfloat16(&mut self) {
        self.vs.bfloat16();
    }

    /// The hyper-parameters.
    pub fn config(&self) -> &Esm2Config {
        &self.config
    }

    /// The token alphabet.
    pub fn alphabet(&self) -> &Alphabet {
        &self.alphabet
    }

    /// The device the weights live on.
    pub fn device(&self) -> Device {
        self.vs.device()
    }

    /// Hidden states `[batch, tokens, hidden]` of a padded batch after `repr_layer` layers (0 =
    /// the embedding output, `num_hidden_layers` = the final representation, after
    /// `emb_layer_norm_after`), as transformers computes them, padding positions included.
    /// `input_ids` and `attention_mask` are int64 `[batch, tokens]`; each row's mask is 1 on its
    /// tokens and then 0 on its padding (`<pad>`). Panics if the shapes disagree, a row's mask is
    /// not of that form or `repr_layer > num_hidden_layers`; run it inside [`tch::no_grad`].
    pub fn forward(
        &self,
        input_ids: &Tensor,
        attention_mask: &Tensor,
        repr_layer: usize,
    ) -> Tensor {
        let (rows, width) = input_ids.size2().expect("input_ids are [batch, tokens]");
        assert_eq!(
            attention_mask.size(),
            [rows, width],
            "one mask value per token"
        );
        let mask = Vec::<i64>::try_from(attention_mask.flatten(0, -1)).expect("an int64 mask");
        let width = width as usize;
        let segments: Vec<Segment> = mask
            .chunks_exact(width.max(1))
            .enumerate()
            .map(|(r, row)| {
                let keys = row.iter().take_while(|&&m| m != 0).count();
                assert!(
                    row[keys..].iter().all(|&m| m == 0),
                    "row {r} of attention_mask is not ones followed by zeros"
                );
                Segment {
                    start: r * width,
                    queries: width,
                    keys,
                }
            })
            .collect();
        let hidden = self.forward_packed(&input_ids.flatten(0, -1), &segments, repr_layer);
        hidden.view([rows, width as i64, -1])
    }

    /// Hidden states `[tokens, hidden]` after `repr_layer` layers of sequences packed one after
    /// another with no padding: `input_ids` is int64 `[tokens]`, `segments` says where each
    /// sequence is (see [`Segment`]). The same numbers as [`Self::forward`] on the sequences
    /// padded into a batch, for their tokens, without computing any padding. Panics if the
    /// segments do not tile the tokens or `repr_layer > num_hidden_layers`; run it inside
    /// [`tch::no_grad`].
    pub fn forward_packed(
        &self,
        input_ids: &Tensor,
        segments: &[Segment],
        repr_layer: usize,
    ) -> Tensor {
        check_segments(segments, input_ids.numel()).expect("segments that tile the tokens");
        let x = self.embeddings.forward(input_ids, segments);
        self.encoder.forward(x, segments, repr_layer)
    }
}

/// Copies every variable of `vs` from the checkpoint's tensors, checking names and shapes, refuses
/// checkpoints with more layers than the config, and returns the rotary `inv_freq` buffer if the
/// checkpoint has one (transformers < 5 and fair-esm: per layer, all equal; transformers 5: one,
/// model-level).
fn copy_tensors(
    vs: &nn::VarStore,
    tensors: &HashMap<String, Tensor>,
    path: &Path,
    config: &Esm2Config,
) -> Result<Option<Tensor>, ProteinError> {
    let layers = config.num_hidden_layers;
    let extra_layer = format!("encoder.layer.{layers}.");
    if let Some(name) = tensors.keys().find(|k| k.contains(&extra_layer)) {
        return Err(ProteinError::Config {
            path: path.into(),
            message: format!(
                "the checkpoint has tensor {name:?} but config.json says num_hidden_layers = \
                 {layers}; use the config.json that came with these weights"
            ),
        });
    }
    let mut vars: Vec<(String, Tensor)> = vs.variables().into_iter().collect();
    vars.sort_by(|a, b| a.0.cmp(&b.0));
    tch::no_grad(|| {
        for (name, mut var) in vars {
            let found = checkpoint_keys(&name)
                .into_iter()
                .find_map(|key| tensors.get(&key).map(|t| (key, t)));
            let Some((key, src)) = found else {
                return Err(ProteinError::MissingTensor {
                    path: path.into(),
                    name,
                });
            };
            if src.size() != var.size() {
                return Err(ProteinError::TensorShape {
                    path: path.into(),
                    name: key,
                    expected: var.size(),
                    found: src.size(),
                });
            }
            var.f_copy_(&src.to_kind(var.kind()))
                .map_err(ProteinError::torch(format!("copying {key}")))?;
        }
        Ok(())
    })?;
    let inv_freq = [
        "rotary_embeddings.inv_freq",
        "encoder.layer.0.attention.self.rotary_embeddings.inv_freq",
    ]
    .into_iter()
    .flat_map(checkpoint_keys)
    .find_map(|key| tensors.get(&key).map(|t| (key, t)));
    let Some((key, inv_freq)) = inv_freq else {
        return Ok(None);
    };
    let expected = vec![(config.head_dim() / 2) as i64];
    if inv_freq.size() != expected {
        return Err(ProteinError::TensorShape {
            path: path.into(),
            name: key,
            expected,
            found: inv_freq.size(),
        });
    }
    Ok(Some(inv_freq.to_kind(Kind::Float)))
}

/// All tensors of a safetensors file, or of the shards a `*.index.json` names in its `weight_map`.
fn read_checkpoint(path: &Path) -> Result<HashMap<String, Tensor>, ProteinError> {
    let read = |file: &Path| {
        Tensor::read_safetensors(file).map_err(|e| match e {
            tch::TchError::Io(source) => ProteinError::Io {
                path: file.into(),
                source,
            },
            other => ProteinError::Weights {
                path: file.into(),
                message: other.to_string(),
            },
        })
    };
    if path.extension().is_none_or(|e| e != "json") {
        return Ok(read(path)?.into_iter().collect());
    }
    #[derive(serde::Deserialize)]
    struct Index {
        weight_map: std::collections::BTreeMap<String, String>,
    }
    let text = std::fs::read_to_string(path).map_err(|source| ProteinError::Io {
        path: path.into(),
        source,
    })?;
    let index: Index = serde_json::from_str(&text).map_err(|e| ProteinError::Weights {
        path: path.into(),
        message: format!("not a safetensors index (no weight_map): {e}"),
    })?;
    let shards: std::collections::BTreeSet<&String> = index.weight_map.values().collect();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut tensors = HashMap::new();
    for shard in shards {
        tensors.extend(read(&dir.join(shard))?);
    }
    Ok(tensors)
}

/// Where the parameter `name` (`EsmModel` naming) may be in a checkpoint: as is, behind the `esm.`
/// prefix of the task models, and, for layer norms, under the legacy `gamma`/`beta` names that
/// transformers still maps on load (and that transformers 5's `save_pretrained` writes).
fn checkpoint_keys(name: &str) -> Vec<String> {
    let legacy = name
        .strip_suffix("LayerNorm.weight")
        .map(|stem| format!("{stem}LayerNorm.gamma"))
        .or_else(|| {
            name.strip_suffix("LayerNorm.bias")
                .map(|stem| format!("{stem}LayerNorm.beta"))
        });
    std::iter::once(name.to_string())
        .chain(legacy)
        .flat_map(|key| [format!("esm.{key}"), key].into_iter().rev())
        .collect()
}
