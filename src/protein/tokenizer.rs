//! The ESM alphabet (`vocab.txt`) and the tokenisation + truncation rule of protein embedding.
//!
//! Tokens are `<cls>` + one token per residue + `<eos>`, as fair-esm's `BatchConverter` and Hugging
//! Face's `EsmTokenizer` build them. A character that is not a one-letter token of the alphabet
//! becomes `<unk>` (no case folding: ESM's alphabet is upper case).
//!
//! Long proteins are truncated by [`Truncation`]. The default, [`Truncation::Tokens`]`(1022)`, is what
//! SATURN used (its README runs fair-esm's `scripts/extract.py --include mean --truncate`, fair-esm
//! <= 1.0): the batch of `<cls> residues <eos>` tokens is cut to its first 1022 tokens
//! (`toks = toks[:, :1022]`), so a protein of 1021 or more residues loses its `<eos>` and its mean is
//! over its first 1021 residues (`t[i, 1 : len(strs[i]) + 1].mean(0)` on the cut tensor).
//! fair-esm >= 2.0 replaced the flag by `--truncation_seq_length 1022`, which keeps the first 1022
//! residues and then adds `<cls>`/`<eos>` (1024 tokens): that is [`Truncation::Residues`]`(1022)`.

use super::ProteinError;
use std::collections::HashMap;
use std::path::Path;

/// The ESM-2 alphabet in `vocab.txt` order (token id = line index), as shipped with every
/// `facebook/esm2_*` checkpoint and fair-esm's `Alphabet.from_architecture("ESM-1b")`.
pub const ESM2_VOCAB: [&str; 33] = [
    "<cls>", "<pad>", "<eos>", "<unk>", "L", "A", "G", "V", "S", "E", "R", "T", "I", "D", "P", "K",
    "Q", "N", "F", "Y", "M", "H", "W", "C", "X", "B", "U", "Z", "O", ".", "-", "<null_1>",
    "<mask>",
];

/// How long proteins are cut before they enter the model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Truncation {
    /// Keep at most this many tokens of `<cls> residues <eos>` (fair-esm <= 1.0 `--truncate` with
    /// 1022, SATURN's setting): long proteins lose `<eos>` and keep `n - 1` residues.
    Tokens(usize),
    /// Keep at most this many residues, then add `<cls>` and `<eos>` (fair-esm >= 2.0
    /// `--truncation_seq_length`).
    Residues(usize),
    /// No truncation (ESM-2's rotary positions accept any length; the model was trained on at most
    /// 1024 tokens).
    None,
}

impl Default for Truncation {
    /// SATURN's rule: `Tokens(1022)`.
    fn default() -> Self {
        Truncation::Tokens(1022)
    }
}

/// One tokenised protein.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Encoded {
    /// Token ids, starting with `<cls>`.
    pub ids: Vec<i64>,
    /// Number of residue tokens kept: they are at positions `1..=n_residues` of `ids`.
    pub n_residues: usize,
}

/// The token alphabet of an ESM model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Alphabet {
    tokens: Vec<String>,
    residues: HashMap<char, i64>,
    cls: i64,
    pad: i64,
    eos: i64,
    unk: i64,
    mask: i64,
}

impl Alphabet {
    /// The standard ESM-2 alphabet ([`ESM2_VOCAB`]).
    pub fn esm2() -> Self {
        Self::from_tokens(ESM2_VOCAB.iter().map(|t| t.to_string()).collect())
            .expect("ESM2_VOCAB holds the special tokens")
    }

    /// Reads a Hugging Face `vocab.txt`: one token per line, the id is the line index.
    pub fn from_vocab_file(path: &Path) -> Result<Self, ProteinError> {
        let text = std::fs::read_to_string(path).map_err(|source| ProteinError::Io {
            path: path.into(),
            source,
        })?;
        let tokens = text.lines().map(|l| l.trim().to_string()).collect();
        Self::from_tokens(tokens).map_err(|message| ProteinError::Vocab {
            path: path.into(),
            message,
        })
    }

    fn from_tokens(tokens: Vec<String>) -> Result<Self, String> {
        let find = |name: &str| {
            tokens
                .iter()
                .position(|t| t == name)
                .map(|i| i as i64)
                .ok_or_else(|| format!("the vocabulary has no {name} token; not an ESM vocab.txt"))
        };
        let residues = tokens
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let mut chars = t.chars();
                match (chars.next(), chars.next()) {
                    (Some(c), None) => Some((c, i as i64)),
                    _ => None,
                }
            })
            .collect();
        Ok(Self {
            cls: find("<cls>")?,
            pad: find("<pad>")?,
            eos: find("<eos>")?,
            unk: find("<unk>")?,
            mask: find("<mask>")?,
            residues,
            tokens,
        })
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    /// Whether the alphabet has no token (never true for a valid alphabet).
    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Id of `<pad>`.
    pub fn pad_id(&self) -> i64 {
        self.pad
    }

    /// Id of `<mask>`.
    pub fn mask_id(&self) -> i64 {
        self.mask
    }

    /// The token of an id.
    pub fn token(&self, id: i64) -> Option<&str> {
        usize::try_from(id)
            .ok()
            .and_then(|i| self.tokens.get(i))
            .map(String::as_str)
    }

    /// Tokenises one sequence: `<cls>` + residues + `<eos>`, then [`Truncation`].
    pub fn encode(&self, sequence: &str, truncation: Truncation) -> Encoded {
        let residues = sequence
            .chars()
            .map(|c| self.residues.get(&c).copied().unwrap_or(self.unk));
        let n = sequence.chars().count();
        match truncation {
            Truncation::Tokens(max) => {
                let ids = std::iter::once(self.cls)
                    .chain(residues)
                    .chain(std::iter::once(self.eos))
                    .take(max)
                    .collect();
                let n_residues = n.min(max.saturating_sub(1));
                Encoded { ids, n_residues }
            }
            Truncation::Residues(max) => {
                let n_residues = n.min(max);
                let ids = std::iter::once(self.cls)
                    .chain(residues.take(n_residues))
                    .chain(std::iter::once(self.eos))
                    .collect();
                Encoded { ids, n_residues }
            }
            Truncation::None => {
                let ids = std::iter::once(self.cls)
                    .chain(residues)
                    .chain(std::iter::once(self.eos))
                    .collect();
                Encoded { ids, n_residues: n }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_like_the_esm_tokenizer() {
        let a = Alphabet::esm2();
        // transformers: EsmTokenizer.from_pretrained("facebook/esm2_t6_8M_UR50D")("MKTJ-").input_ids
        // == [0, 20, 15, 11, 3, 30, 2]  (J is not in the alphabet -> <unk> = 3)
        let e = a.encode("MKTJ-", Truncation::default());
        assert_eq!(e.ids, vec![0, 20, 15, 11, 3, 30, 2]);
        assert_eq!(e.n_residues, 5);
        assert_eq!(a.encode("m", Truncation::None).ids, vec![0, 3, 2]);
        assert_eq!(a.token(32), Some("<mask>"));
        assert_eq!(a.len(), 33);
    }

    #[test]
    fn truncation_rules() {
        let a = Alphabet::esm2();
        let seq = |n: usize| "A".repeat(n);
        // fair-esm <= 1.0 --truncate: toks[:, :1022]; mean over t[i, 1:len+1] on the cut tensor.
        for (len, tokens, residues, ends_with_eos) in [
            (1020, 1022, 1020, true),
            (1021, 1022, 1021, false),
            (1022, 1022, 1021, false),
            (5000, 1022, 1021, false),
        ] {
            let e = a.encode(&seq(len), Truncation::Tokens(1022));
            assert_eq!((e.ids.len(), e.n_residues), (tokens, residues), "len {len}");
            assert_eq!(*e.ids.last().unwrap() == 2, ends_with_eos, "len {len}");
        }
        // fair-esm >= 2.0 --truncation_seq_length 1022: residues cut first, then <cls>/<eos>.
        let e = a.encode(&seq(5000), Truncation::Residues(1022));
        assert_eq!((e.ids.len(), e.n_residues), (1024, 1022));
        assert_eq!((e.ids[0], e.ids[1023]), (0, 2));
        let e = a.encode(&seq(5000), Truncation::None);
        assert_eq!((e.ids.len(), e.n_residues), (5002, 5000));
    }

    #[test]
    fn vocab_file_needs_special_tokens() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vocab.txt");
        std::fs::write(&path, ESM2_VOCAB.join("\n")).unwrap();
        assert_eq!(Alphabet::from_vocab_file(&path).unwrap(), Alphabet::esm2());
        std::fs::write(&path, "<cls>\n<pad>\nA\n").unwrap();
        let err = Alphabet::from_vocab_file(&path).unwrap_err().to_string();
        assert!(err.contains("<eos>") && err.contains("vocab.txt"), "{err}");
    }
}
