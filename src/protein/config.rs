//! The ESM-2 hyper-parameters, read from a Hugging Face `config.json` (`EsmConfig`), with named
//! constructors for the six published ESM-2 sizes (Lin et al., *Science* 2023; model cards
//! `facebook/esm2_t{6,12,30,33,36,48}_*_UR50D` on the Hugging Face hub).
//!
//! Only the fields the forward pass needs are read; every other key of `config.json` is ignored.
//! Defaults of absent keys are those of `transformers.EsmConfig`.

use super::ProteinError;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// ESM-2 hyper-parameters, field names as in the Hugging Face `config.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Esm2Config {
    /// Number of transformer layers.
    pub num_hidden_layers: usize,
    /// Model width (embedding dimension of a token and of the protein embedding).
    pub hidden_size: usize,
    /// Attention heads per layer; must divide `hidden_size` into an even head size (rotary).
    pub num_attention_heads: usize,
    /// Width of the feed-forward layer.
    pub intermediate_size: usize,
    /// Epsilon of every layer norm.
    #[serde(default = "default_layer_norm_eps")]
    pub layer_norm_eps: f64,
    /// Must be `"rotary"` (ESM-2); ESM-1b's learned absolute positions are not supported.
    #[serde(default = "default_position_embedding_type")]
    pub position_embedding_type: String,
    /// Base of the rotary frequencies (10000 for ESM-2; key absent before transformers 5).
    #[serde(default = "default_rope_theta")]
    pub rope_theta: f64,
    /// Token-dropout rescaling of the embeddings (true for every ESM-2 checkpoint).
    #[serde(default)]
    pub token_dropout: bool,
    /// A layer norm right after the token embedding (false for ESM-2). JSON `null` means false.
    #[serde(default, deserialize_with = "null_as_false")]
    pub emb_layer_norm_before: bool,
    /// Id of `<mask>`.
    #[serde(default = "default_mask_token_id")]
    pub mask_token_id: i64,
    /// Id of `<pad>`.
    #[serde(default = "default_pad_token_id")]
    pub pad_token_id: i64,
    /// Number of tokens of the alphabet (33 for ESM-2).
    pub vocab_size: usize,
}

fn default_layer_norm_eps() -> f64 {
    1e-12
}
fn default_rope_theta() -> f64 {
    10000.0
}
fn default_position_embedding_type() -> String {
    "absolute".into()
}
fn default_mask_token_id() -> i64 {
    32
}
fn default_pad_token_id() -> i64 {
    1
}
fn null_as_false<'de, D: serde::Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    Ok(Option::<bool>::deserialize(d)?.unwrap_or(false))
}

impl Esm2Config {
    /// Reads and validates a Hugging Face `config.json`.
    pub fn from_file(path: &Path) -> Result<Self, ProteinError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProteinError::Io {
            path: path.into(),
            source,
        })?;
        let config: Self = serde_json::from_str(&text).map_err(|e| ProteinError::Config {
            path: path.into(),
            message: format!("not an ESM config.json: {e}"),
        })?;
        config.validate().map_err(|message| ProteinError::Config {
            path: path.into(),
            message,
        })?;
        Ok(config)
    }

    /// Checks what the forward pass relies on; the message says what is wrong.
    pub fn validate(&self) -> Result<(), String> {
        if self.position_embedding_type != "rotary" {
            return Err(format!(
                "position_embedding_type is {:?}; satlas runs ESM-2 models, which use \"rotary\"",
                self.position_embedding_type
            ));
        }
        if self.rope_theta.is_nan() || self.rope_theta <= 1.0 {
            return Err(format!("rope_theta {} must be > 1", self.rope_theta));
        }
        if self.num_hidden_layers == 0 || self.hidden_size == 0 || self.intermediate_size == 0 {
            return Err("num_hidden_layers, hidden_size and intermediate_size must be > 0".into());
        }
        let heads = self.num_attention_heads;
        if heads == 0
            || !self.hidden_size.is_multiple_of(heads)
            || !(self.hidden_size / heads).is_multiple_of(2)
        {
            return Err(format!(
                "hidden_size {} must split into num_attention_heads {} heads of even size",
                self.hidden_size, heads
            ));
        }
        for (name, id) in [("mask", self.mask_token_id), ("pad", self.pad_token_id)] {
            if id < 0 || id as usize >= self.vocab_size {
                return Err(format!(
                    "{name}_token_id {id} is outside the vocabulary of {} tokens",
                    self.vocab_size
                ));
            }
        }
        Ok(())
    }

    /// Size of one attention head.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads
    }

    fn esm2(layers: usize, hidden: usize, heads: usize) -> Self {
        Self {
            num_hidden_layers: layers,
            hidden_size: hidden,
            num_attention_heads: heads,
            intermediate_size: 4 * hidden,
            layer_norm_eps: 1e-5,
            position_embedding_type: "rotary".into(),
            rope_theta: 10000.0,
            token_dropout: true,
            emb_layer_norm_before: false,
            mask_token_id: 32,
            pad_token_id: 1,
            vocab_size: 33,
        }
    }

    /// Attention heads of the published ESM-2 model of width `hidden` (20 up to 1280, 40 for 2560
    /// and 5120), for checkpoints that do not state them (fair-esm `.pt` files).
    pub fn published_heads(hidden: usize) -> Option<usize> {
        match hidden {
            320 | 480 | 640 | 1280 => Some(20),
            2560 | 5120 => Some(40),
            _ => None,
        }
    }

    /// `facebook/esm2_t6_8M_UR50D`: 6 layers, width 320, 20 heads.
    pub fn esm2_t6_8m() -> Self {
        Self::esm2(6, 320, 20)
    }

    /// `facebook/esm2_t12_35M_UR50D`: 12 layers, width 480, 20 heads.
    pub fn esm2_t12_35m() -> Self {
        Self::esm2(12, 480, 20)
    }

    /// `facebook/esm2_t30_150M_UR50D`: 30 layers, width 640, 20 heads.
    pub fn esm2_t30_150m() -> Self {
        Self::esm2(30, 640, 20)
    }

    /// `facebook/esm2_t33_650M_UR50D`: 33 layers, width 1280, 20 heads.
    pub fn esm2_t33_650m() -> Self {
        Self::esm2(33, 1280, 20)
    }

    /// `facebook/esm2_t36_3B_UR50D`: 36 layers, width 2560, 40 heads.
    pub fn esm2_t36_3b() -> Self {
        Self::esm2(36, 2560, 40)
    }

    /// `facebook/esm2_t48_15B_UR50D`: 48 layers, width 5120, 40 heads (the model SATURN's paper
    /// recommends).
    pub fn esm2_t48_15b() -> Self {
        Self::esm2(48, 5120, 40)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn named_sizes_are_valid() {
        for c in [
            Esm2Config::esm2_t6_8m(),
            Esm2Config::esm2_t12_35m(),
            Esm2Config::esm2_t30_150m(),
            Esm2Config::esm2_t33_650m(),
            Esm2Config::esm2_t36_3b(),
            Esm2Config::esm2_t48_15b(),
        ] {
            c.validate().unwrap();
        }
        assert_eq!(Esm2Config::esm2_t6_8m().head_dim(), 16);
        assert_eq!(Esm2Config::esm2_t48_15b().head_dim(), 128);
        for c in [Esm2Config::esm2_t30_150m(), Esm2Config::esm2_t36_3b()] {
            assert_eq!(
                Esm2Config::published_heads(c.hidden_size),
                Some(c.num_attention_heads)
            );
        }
        assert_eq!(Esm2Config::published_heads(32), None);
    }

    #[test]
    fn parses_hf_config_and_rejects_absolute_positions() {
        // The keys of facebook/esm2_t6_8M_UR50D's config.json that matter, plus ones ignored.
        let json = r#"{"architectures": ["EsmForMaskedLM"], "emb_layer_norm_before": null,
            "hidden_size": 320, "intermediate_size": 1280, "layer_norm_eps": 1e-05,
            "mask_token_id": 32, "num_attention_heads": 20, "num_hidden_layers": 6,
            "pad_token_id": 1, "position_embedding_type": "rotary", "token_dropout": true,
            "vocab_size": 33}"#;
        let c: Esm2Config = serde_json::from_str(json).unwrap();
        assert_eq!(c, Esm2Config::esm2_t6_8m());
        let absolute = Esm2Config {
            position_embedding_type: "absolute".into(),
            ..c
        };
        assert!(absolute.validate().unwrap_err().contains("rotary"));
    }
}
