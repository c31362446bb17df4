//! fair-esm `.pt` checkpoints (`esm2_t33_650M_UR50D.pt` as `esm.pretrained` downloads them, the
//! files SATURN's own embedding script loads) as an [`Esm2Config`] and the tensors [`super::Esm2`]
//! loads, under their Hugging Face names.
//!
//! The file is `torch.save({"model": state_dict, "cfg": {"model": args}, ...})`, read by
//! [`crate::io::torch_pickle`]. As fair-esm 2.0's `_load_model_and_alphabet_core_v2` does, the
//! prefixes `encoder.sentence_encoder.` / `encoder.` are stripped from the state-dict names; the
//! rest maps 1:1 onto transformers' (`models/esm/convert_esm.py`): `layers.N.self_attn.q_proj` →
//! `encoder.layer.N.attention.self.query`, `self_attn.out_proj` → `attention.output.dense`,
//! `self_attn_layer_norm` → `attention.LayerNorm`, `fc1` → `intermediate.dense`, `fc2` →
//! `output.dense`, `final_layer_norm` → `LayerNorm`, `embed_tokens` →
//! `embeddings.word_embeddings`, `emb_layer_norm_after` → `encoder.emb_layer_norm_after`,
//! `rot_emb.inv_freq` → `attention.self.rotary_embeddings.inv_freq`. The heads `lm_head` and
//! `contact_head` are skipped; any other name is refused (ESM-1, ESM-1b and ESM-IF checkpoints are
//! not ESM-2).
//!
//! The sizes come from the tensors (layers, width, feed-forward width, vocabulary); the number of
//! attention heads from `cfg["model"].encoder_attention_heads` when the config is a plain object
//! (an `argparse.Namespace`, as in the published checkpoints), otherwise from the published ESM-2
//! sizes ([`Esm2Config::published_heads`]). Readable `encoder_layers` / `encoder_embed_dim` must
//! agree with the tensors; `token_dropout` is read when present (default true, as every ESM-2).

use super::{Esm2Config, ProteinError};
use crate::io::torch_pickle::{TensorRef, TorchArchive, Value};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use tch::Tensor;

/// Per-layer parameters: fair-esm name after `layers.N.` → Hugging Face name after
/// `encoder.layer.N.`.
const LAYER_PARAMS: [(&str, &str); 16] = [
    ("self_attn.q_proj.weight", "attention.self.query.weight"),
    ("self_attn.q_proj.bias", "attention.self.query.bias"),
    ("self_attn.k_proj.weight", "attention.self.key.weight"),
    ("self_attn.k_proj.bias", "attention.self.key.bias"),
    ("self_attn.v_proj.weight", "attention.self.value.weight"),
    ("self_attn.v_proj.bias", "attention.self.value.bias"),
    ("self_attn.out_proj.weight", "attention.output.dense.weight"),
    ("self_attn.out_proj.bias", "attention.output.dense.bias"),
    ("self_attn_layer_norm.weight", "attention.LayerNorm.weight"),
    ("self_attn_layer_norm.bias", "attention.LayerNorm.bias"),
    ("fc1.weight", "intermediate.dense.weight"),
    ("fc1.bias", "intermediate.dense.bias"),
    ("fc2.weight", "output.dense.weight"),
    ("fc2.bias", "output.dense.bias"),
    ("final_layer_norm.weight", "LayerNorm.weight"),
    ("final_layer_norm.bias", "LayerNorm.bias"),
];

/// The rotary frequencies buffer (optional; used when present, as fair-esm does).
const INV_FREQ: (&str, &str) = (
    "self_attn.rot_emb.inv_freq",
    "attention.self.rotary_embeddings.inv_freq",
);

/// Model-level parameters: fair-esm name → Hugging Face name.
const MODEL_PARAMS: [(&str, &str); 3] = [
    ("embed_tokens.weight", "embeddings.word_embeddings.weight"),
    (
        "emb_layer_norm_after.weight",
        "encoder.emb_layer_norm_after.weight",
    ),
    (
        "emb_layer_norm_after.bias",
        "encoder.emb_layer_norm_after.bias",
    ),
];

/// A fair-esm checkpoint, read: the hyper-parameters and every tensor the model needs, by
/// Hugging Face `EsmModel` name.
pub(super) struct FairEsmCheckpoint {
    pub config: Esm2Config,
    pub tensors: HashMap<String, Tensor>,
}

/// Reads a fair-esm ESM-2 `.pt` checkpoint.
pub(super) fn read(path: &Path) -> Result<FairEsmCheckpoint, ProteinError> {
    let mut archive = TorchArchive::open(path)?;
    let wrong = |message: String| ProteinError::Weights {
        path: path.into(),
        message,
    };
    let root = archive.root().clone();
    let state = root.get("model").ok_or_else(|| {
        wrong(format!(
            "no \"model\" entry (the file holds {}); a fair-esm checkpoint is \
             torch.save({{\"model\": state_dict, \"cfg\": ...}}) as esm.pretrained downloads it",
            top_level(&root)
        ))
    })?;
    let named = map_names(path, state)?;
    let config = infer_config(path, &named, root.get("cfg").and_then(|c| c.get("model")))?;
    let mut tensors = HashMap::with_capacity(named.len());
    for (hf, (original, t)) in named {
        tensors.insert(hf, archive.tensor(&original, &t)?);
    }
    Ok(FairEsmCheckpoint { config, tensors })
}

/// What a top-level object is, naming its keys when it is a dict.
fn top_level(root: &Value) -> String {
    match root {
        Value::Dict(items) => {
            let keys: Vec<String> = items
                .iter()
                .map(|(k, _)| match k {
                    Value::Str(s) => format!("{s:?}"),
                    other => other.describe(),
                })
                .collect();
            format!("a dict with keys {}", keys.join(", "))
        }
        other => other.describe(),
    }
}

/// The state dict's tensors the model needs, keyed by Hugging Face name, with their original
/// names; unknown names are refused, heads skipped.
fn map_names(
    path: &Path,
    state: &Value,
) -> Result<BTreeMap<String, (String, TensorRef)>, ProteinError> {
    let wrong = |message: String| ProteinError::Weights {
        path: path.into(),
        message,
    };
    let Value::Dict(items) = state else {
        return Err(wrong(format!(
            "\"model\" is {}, not a state dict of tensors",
            state.describe()
        )));
    };
    let mut named = BTreeMap::new();
    for (key, value) in items {
        let Value::Str(original) = key else {
            return Err(wrong(format!(
                "a state-dict key is {}, not a name",
                key.describe()
            )));
        };
        let Value::Tensor(t) = value else {
            return Err(wrong(format!(
                "state-dict entry {original:?} is {}, not a tensor",
                value.describe()
            )));
        };
        match hf_name(strip_prefix(original)) {
            Some(Some(hf)) => {
                named.insert(hf, (original.clone(), t.clone()));
            }
            Some(None) => {}
            None => {
                return Err(wrong(format!(
                    "tensor {original:?} is not part of an ESM-2 model (fair-esm names: \
                     embed_tokens, layers.N.self_attn.*, layers.N.fc1/fc2, ..., \
                     emb_layer_norm_after, lm_head, contact_head); satlas reads ESM-2 checkpoints, \
                     not ESM-1/ESM-1b/ESM-1v/ESM-IF ones"
                )))
            }
        }
    }
    Ok(named)
}

/// fair-esm's `upgrade_state_dict`: drops one leading `encoder.sentence_encoder.` or `encoder.`.
fn strip_prefix(name: &str) -> &str {
    name.strip_prefix("encoder.sentence_encoder.")
        .or_else(|| name.strip_prefix("encoder."))
        .unwrap_or(name)
}

/// `Some(Some(hf))` for a parameter the model loads, `Some(None)` for a head it skips, `None` for
/// a name that is not ESM-2's.
fn hf_name(name: &str) -> Option<Option<String>> {
    if ["lm_head.", "contact_head."]
        .iter()
        .any(|head| name.starts_with(head))
    {
        return Some(None);
    }
    if let Some((_, hf)) = MODEL_PARAMS.iter().find(|(fair, _)| *fair == name) {
        return Some(Some(hf.to_string()));
    }
    let rest = name.strip_prefix("layers.")?;
    let (index, param) = rest.split_once('.')?;
    let index: usize = index.parse().ok()?;
    let (_, hf) = LAYER_PARAMS
        .iter()
        .chain([&INV_FREQ])
        .find(|(fair, _)| *fair == param)?;
    Some(Some(format!("encoder.layer.{index}.{hf}")))
}

/// The hyper-parameters implied by the tensors (and the config object, for the heads).
fn infer_config(
    path: &Path,
    named: &BTreeMap<String, (String, TensorRef)>,
    cfg: Option<&Value>,
) -> Result<Esm2Config, ProteinError> {
    let wrong = |message: String| ProteinError::Weights {
        path: path.into(),
        message,
    };
    let shape = |hf: &str, fair: &str| -> Result<Vec<i64>, ProteinError> {
        named.get(hf).map(|(_, t)| t.size.clone()).ok_or_else(|| {
            wrong(format!(
                "no tensor {fair} (under encoder.sentence_encoder. or encoder.); the \
                     checkpoint is incomplete: download it again"
            ))
        })
    };
    let layers = check_layers(path, named)?;
    let embed = shape(MODEL_PARAMS[0].1, "embed_tokens.weight")?;
    let fc1 = shape(
        "encoder.layer.0.intermediate.dense.weight",
        "layers.0.fc1.weight",
    )?;
    let (Some([vocab, hidden]), Some([intermediate, _])) = (two_d(&embed), two_d(&fc1)) else {
        return Err(wrong(format!(
            "embed_tokens.weight has shape {embed:?} and layers.0.fc1.weight {fc1:?}; both must \
             be 2-D matrices"
        )));
    };
    let (hidden, vocab, intermediate) = (hidden as usize, vocab as usize, intermediate as usize);
    let attr = |name: &str| cfg.and_then(|c| c.get(name));
    for (name, found) in [("encoder_layers", layers), ("encoder_embed_dim", hidden)] {
        if let Some(stated) = attr(name).and_then(Value::as_int) {
            if stated as usize != found {
                return Err(wrong(format!(
                    "cfg[\"model\"].{name} is {stated} but the tensors imply {found}; the \
                     checkpoint is inconsistent"
                )));
            }
        }
    }
    let heads = match attr("encoder_attention_heads").and_then(Value::as_int) {
        Some(h) if h > 0 => h as usize,
        _ => Esm2Config::published_heads(hidden).ok_or_else(|| {
            wrong(format!(
                "width {hidden} is not a published ESM-2 size (320, 480, 640, 1280, 2560, 5120) \
                 and the checkpoint's cfg[\"model\"] has no readable encoder_attention_heads, so \
                 the number of attention heads is unknown; convert the checkpoint to a Hugging \
                 Face directory with a config.json instead"
            ))
        })?,
    };
    let config = Esm2Config {
        num_hidden_layers: layers,
        hidden_size: hidden,
        num_attention_heads: heads,
        intermediate_size: intermediate,
        vocab_size: vocab,
        token_dropout: attr("token_dropout")
            .and_then(Value::as_bool)
            .unwrap_or(true),
        ..Esm2Config::esm2_t6_8m()
    };
    config.validate().map_err(wrong)?;
    Ok(config)
}

/// Number of layers: indices 0..n, each with all of [`LAYER_PARAMS`].
fn check_layers(
    path: &Path,
    named: &BTreeMap<String, (String, TensorRef)>,
) -> Result<usize, ProteinError> {
    let layers = named
        .keys()
        .filter_map(|k| k.strip_prefix("encoder.layer.")?.split_once('.'))
        .filter_map(|(i, _)| i.parse::<usize>().ok())
        .max()
        .map_or(0, |last| last + 1);
    if layers == 0 {
        return Err(ProteinError::Weights {
            path: path.into(),
            message: "no transformer layer (layers.N.*) in the state dict; not an ESM-2 checkpoint"
                .into(),
        });
    }
    for layer in 0..layers {
        for (fair, hf) in LAYER_PARAMS {
            if !named.contains_key(&format!("encoder.layer.{layer}.{hf}")) {
                return Err(ProteinError::Weights {
                    path: path.into(),
                    message: format!(
                        "layer {layer} of {layers} has no tensor layers.{layer}.{fair}; the \
                         checkpoint is incomplete: download it again"
                    ),
                });
            }
        }
    }
    Ok(layers)
}

/// A 2-D shape of positive sizes.
fn two_d(shape: &[i64]) -> Option<[i64; 2]> {
    let pair: [i64; 2] = shape.try_into().ok()?;
    pair.iter().all(|&n| n > 0).then_some(pair)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_like_convert_esm() {
        let map = |n: &str| hf_name(strip_prefix(n));
        assert_eq!(
            map("encoder.sentence_encoder.layers.12.self_attn.q_proj.weight"),
            Some(Some("encoder.layer.12.attention.self.query.weight".into()))
        );
        assert_eq!(
            map("encoder.layers.0.final_layer_norm.bias"),
            Some(Some("encoder.layer.0.LayerNorm.bias".into()))
        );
        assert_eq!(
            map("layers.3.self_attn.rot_emb.inv_freq"),
            Some(Some(
                "encoder.layer.3.attention.self.rotary_embeddings.inv_freq".into()
            ))
        );
        assert_eq!(
            map("encoder.sentence_encoder.embed_tokens.weight"),
            Some(Some("embeddings.word_embeddings.weight".into()))
        );
        assert_eq!(map("encoder.lm_head.dense.weight"), Some(None));
        assert_eq!(map("contact_head.regression.bias"), Some(None));
        assert_eq!(map("encoder.sentence_encoder.embed_positions.weight"), None);
        assert_eq!(map("layers.x.fc1.weight"), None);
        assert_eq!(map("layers.0.fc3.weight"), None);
    }
}
