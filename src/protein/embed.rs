//! Per-protein and per-gene embeddings (SATURN's inputs, see `SATURN.md` section 1).
//!
//! A protein's embedding is the mean, over its residue positions only (no `<cls>`, `<eos>` or
//! padding), of one layer's hidden states, by default the final one after `emb_layer_norm_after`
//! (fair-esm `extract.py --include mean --repr_layers <last>`, transformers `last_hidden_state`).
//! A gene's embedding is the mean of its proteins' embeddings.
//!
//! Proteins are sorted by length and cut into batches bounded by a token budget (`batch size x
//! longest`), like fair-esm's `FastaBatchedDataset.get_batch_indices`; a batch's proteins are
//! packed one after another into one token matrix ([`Esm2::forward_packed`]), so no compute goes
//! to padding.
//! [`embed_chunk`] works on one chunk of `(id, sequence)` pairs at a time, so a caller can stream a
//! proteome through it, skip ids it already has, and store results as they come; [`GeneMeans`]
//! accumulates gene means across chunks.

use super::{Encoded, Esm2, ProteinError, Segment, Truncation};
use std::collections::HashMap;
use tch::{Kind, Tensor};

/// How proteins are embedded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbedOptions {
    /// Layer whose hidden states are averaged: `None` = the final representation (default);
    /// `Some(l)` with `0 <= l <= num_hidden_layers` (0 = the embedding layer's output).
    pub layer: Option<usize>,
    /// How long proteins are cut (default: SATURN's, `Truncation::Tokens(1022)`).
    pub truncation: Truncation,
    /// Upper bound of `batch size x longest protein in the batch`, in tokens (fair-esm's
    /// `--toks_per_batch` default, 4096). A protein longer than this runs alone.
    pub tokens_per_batch: usize,
    /// How the CPU cores are used.
    pub parallelism: Parallelism,
}

/// How batches use the CPU cores (`scripts/bench_esm2.sh` measures both side by side).
///
/// On an idle machine the two were about as fast (10,500 intra-op vs 10,595 tokens/s on 2 cores
/// with the t6 model, 2026-12-05; 7,327 vs 3,676 in one run of 2026-11-25). On a machine other
/// processes load, intra-op threads spin and wait for each other, and batch workers were 2.1x
/// faster (1,242 vs 595 tokens/s at load 17).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parallelism {
    /// `n` worker threads take batches in turn (longest first), each with one libtorch thread.
    Batches(usize),
    /// One batch at a time, on `n` libtorch intra-op threads (`tch::set_num_threads`, which is
    /// process-wide) — what PyTorch and transformers do.
    IntraOp(usize),
}

impl Parallelism {
    /// Intra-op threads, libtorch's default count (the physical cores).
    pub fn default_threads() -> Self {
        Self::IntraOp(tch::get_num_threads().max(1) as usize)
    }

    fn threads(self) -> usize {
        match self {
            Self::Batches(n) | Self::IntraOp(n) => n,
        }
    }
}

impl Default for EmbedOptions {
    fn default() -> Self {
        Self {
            layer: None,
            truncation: Truncation::default(),
            tokens_per_batch: 4096,
            parallelism: Parallelism::default_threads(),
        }
    }
}

impl EmbedOptions {
    fn repr_layer(&self, model: &Esm2) -> Result<usize, ProteinError> {
        let layers = model.config().num_hidden_layers;
        match self.layer {
            None => Ok(layers),
            Some(l) if l <= layers => Ok(l),
            Some(l) => Err(ProteinError::Options(format!(
                "layer {l} does not exist: the model has layers 0..={layers}"
            ))),
        }
    }

    fn check(&self) -> Result<(), ProteinError> {
        let too_short = match self.truncation {
            Truncation::Tokens(n) => n < 2,
            Truncation::Residues(n) => n < 1,
            Truncation::None => false,
        };
        if too_short {
            return Err(ProteinError::Options(format!(
                "{:?} keeps no residue; use at least Tokens(2) or Residues(1)",
                self.truncation
            )));
        }
        if self.tokens_per_batch == 0 || self.parallelism.threads() == 0 {
            return Err(ProteinError::Options(
                "tokens_per_batch and threads must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// Embeds `(id, sequence)` pairs; returns `(id, embedding)` in input order. Every embedding has
/// `hidden_size` values. An empty sequence is an error naming its id.
pub fn embed_chunk<I: AsRef<str>, S: AsRef<str>>(
    model: &Esm2,
    chunk: &[(I, S)],
    options: &EmbedOptions,
) -> Result<Vec<(String, Vec<f32>)>, ProteinError> {
    options.check()?;
    let repr_layer = options.repr_layer(model)?;
    let encoded: Vec<_> = chunk
        .iter()
        .map(|(id, seq)| {
            let e = model.alphabet().encode(seq.as_ref(), options.truncation);
            if e.n_residues == 0 {
                Err(ProteinError::EmptySequence {
                    id: id.as_ref().to_string(),
                })
            } else {
                Ok(e)
            }
        })
        .collect::<Result<_, _>>()?;
    let lengths: Vec<usize> = encoded.iter().map(|e| e.ids.len()).collect();
    let batches = length_batches(&lengths, options.tokens_per_batch);
    let shared = SharedModel(model);
    let pooled = run_batches(&batches, options.parallelism, |batch| {
        embed_batch(shared.get(), &encoded, batch, repr_layer)
    })?;
    let mut out: Vec<Option<Vec<f32>>> = vec![None; chunk.len()];
    for (batch, embeddings) in batches.iter().zip(pooled) {
        for (&i, emb) in batch.iter().zip(embeddings) {
            out[i] = Some(emb);
        }
    }
    Ok(chunk
        .iter()
        .zip(out)
        .map(|((id, _), emb)| {
            (
                id.as_ref().to_string(),
                emb.expect("every protein is batched"),
            )
        })
        .collect())
}

/// The model, readable from the batch workers.
struct SharedModel<'a>(&'a Esm2);

// SAFETY: `tch::Tensor` is `Send` but not `Sync` because libtorch tensors may be mutated in place.
// The workers only read the model's parameters, inside `no_grad`, with out-of-place operations;
// libtorch supports concurrent inference on shared parameters from several threads.
unsafe impl Sync for SharedModel<'_> {}

impl SharedModel<'_> {
    fn get(&self) -> &Esm2 {
        self.0
    }
}

/// Runs the forward pass and mean pooling of one batch of `encoded` proteins; one embedding per
/// protein of `batch`, in its order.
fn embed_batch(
    model: &Esm2,
    encoded: &[Encoded],
    batch: &[usize],
    repr_layer: usize,
) -> Result<Vec<Vec<f32>>, ProteinError> {
    let mut ids = Vec::new();
    let mut segments = Vec::with_capacity(batch.len());
    for &i in batch {
        segments.push(Segment::packed(ids.len(), encoded[i].ids.len()));
        ids.extend(encoded[i].ids.iter().copied());
    }
    let ids = Tensor::from_slice(&ids).to_device(model.device());
    let pooled = tch::no_grad(|| {
        let hidden = model
            .forward_packed(&ids, &segments, repr_layer)
            .to_kind(Kind::Float);
        // Mean over residue positions only (after `<cls>`, before `<eos>`).
        let means: Vec<Tensor> = segments
            .iter()
            .zip(batch)
            .map(|(s, &i)| {
                let residues = hidden.narrow(0, s.start as i64 + 1, encoded[i].n_residues as i64);
                residues.mean_dim(0, false, Kind::Float)
            })
            .collect();
        Tensor::stack(&means, 0)
    });
    let dim = pooled.size()[1] as usize;
    let flat = Vec::<f32>::try_from(pooled.flatten(0, -1).to_device(tch::Device::Cpu))
        .map_err(ProteinError::torch("copying embeddings out"))?;
    Ok(flat.chunks_exact(dim).map(<[f32]>::to_vec).collect())
}

/// Runs `work` on every batch, as `parallelism` says; results in batch order.
fn run_batches<T: Send>(
    batches: &[Vec<usize>],
    parallelism: Parallelism,
    work: impl Fn(&[usize]) -> Result<T, ProteinError> + Sync,
) -> Result<Vec<T>, ProteinError> {
    let workers = match parallelism {
        Parallelism::IntraOp(threads) => {
            tch::set_num_threads(threads as i32);
            1
        }
        Parallelism::Batches(workers) => workers.min(batches.len()),
    };
    if workers <= 1 {
        return batches.iter().map(|b| work(b)).collect();
    }
    // The intra-op thread count is process-wide state in libtorch: each worker sets its own
    // (OpenMP's is per thread) and the caller's is put back afterwards.
    let previous = tch::get_num_threads();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: Vec<(usize, Result<T, ProteinError>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..workers)
            .map(|_| {
                scope.spawn(|| {
                    tch::set_num_threads(1);
                    let mut mine = Vec::new();
                    loop {
                        let b = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let Some(batch) = batches.get(b) else { break };
                        mine.push((b, work(batch)));
                    }
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().expect("an embedding worker panicked"))
            .collect()
    });
    tch::set_num_threads(previous);
    let mut ordered: Vec<Option<Result<T, ProteinError>>> =
        (0..batches.len()).map(|_| None).collect();
    for (b, result) in done {
        ordered[b] = Some(result);
    }
    ordered
        .into_iter()
        .map(|r| r.expect("every batch ran"))
        .collect()
}

/// Embeds sequences; one embedding per sequence, in input order (ids in errors are `#index`).
pub fn embed_proteins<S: AsRef<str>>(
    model: &Esm2,
    sequences: &[S],
    options: &EmbedOptions,
) -> Result<Vec<Vec<f32>>, ProteinError> {
    let chunk: Vec<(String, &str)> = sequences
        .iter()
        .enumerate()
        .map(|(i, s)| (format!("#{i}"), s.as_ref()))
        .collect();
    Ok(embed_chunk(model, &chunk, options)?
        .into_iter()
        .map(|(_, e)| e)
        .collect())
}

/// Groups indices into batches: sorted by length (longest first), each batch as large as the token
/// budget allows (`batch size x longest <= budget`; a longer protein alone).
fn length_batches(lengths: &[usize], budget: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(lengths[i]));
    let mut batches: Vec<Vec<usize>> = Vec::new();
    let mut current: Vec<usize> = Vec::new();
    for i in order {
        // Longest first: the batch's width is the length of its first protein.
        let width = current.first().map_or(lengths[i], |&f| lengths[f]);
        if !current.is_empty() && (current.len() + 1) * width > budget {
            batches.push(std::mem::take(&mut current));
        }
        current.push(i);
    }
    if !current.is_empty() {
        batches.push(current);
    }
    batches
}

/// Mean embedding per gene, accumulated protein by protein (in f64), across chunks.
#[derive(Debug, Clone, Default)]
pub struct GeneMeans {
    genes: Vec<String>,
    index: HashMap<String, usize>,
    sums: Vec<(Vec<f64>, usize)>,
}

impl GeneMeans {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds one protein's embedding to its gene. All embeddings must have one dimension.
    pub fn add(&mut self, gene: &str, embedding: &[f32]) -> Result<(), ProteinError> {
        if let Some((first, _)) = self.sums.first() {
            if first.len() != embedding.len() {
                return Err(ProteinError::Dimension {
                    gene: gene.to_string(),
                    expected: first.len(),
                    found: embedding.len(),
                });
            }
        }
        let slot = *self.index.entry(gene.to_string()).or_insert_with(|| {
            self.genes.push(gene.to_string());
            self.sums.push((vec![0.0; embedding.len()], 0));
            self.sums.len() - 1
        });
        let (sum, n) = &mut self.sums[slot];
        sum.iter_mut()
            .zip(embedding)
            .for_each(|(s, &x)| *s += f64::from(x));
        *n += 1;
        Ok(())
    }

    /// `(gene, mean embedding)` in order of first appearance.
    pub fn finish(self) -> Vec<(String, Vec<f32>)> {
        self.genes
            .into_iter()
            .zip(self.sums)
            .map(|(g, (sum, n))| (g, sum.iter().map(|s| (s / n as f64) as f32).collect()))
            .collect()
    }
}

/// Mean embedding per gene from `(gene, protein embedding)` pairs (all isoforms of a gene), in
/// order of first appearance.
pub fn gene_embeddings<G: AsRef<str>, E: AsRef<[f32]>>(
    proteins: impl IntoIterator<Item = (G, E)>,
) -> Result<Vec<(String, Vec<f32>)>, ProteinError> {
    let mut means = GeneMeans::new();
    for (gene, emb) in proteins {
        means.add(gene.as_ref(), emb.as_ref())?;
    }
    Ok(means.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_respect_the_token_budget() {
        let lengths = [10, 300, 50, 1200, 40, 40, 12];
        let batches = length_batches(&lengths, 128);
        assert_eq!(batches, vec![vec![3], vec![1], vec![2, 4], vec![5, 6, 0]]);
        for b in &batches {
            let width = b.iter().map(|&i| lengths[i]).max().unwrap();
            assert!(b.len() == 1 || b.len() * width <= 128);
        }
        let mut all: Vec<usize> = batches.concat();
        all.sort();
        assert_eq!(all, (0..lengths.len()).collect::<Vec<_>>());
    }

    #[test]
    fn gene_means_average_isoforms() {
        let genes = gene_embeddings([
            ("INS", vec![1.0f32, 2.0]),
            ("GCG", vec![0.0, 0.0]),
            ("INS", vec![3.0, 6.0]),
        ])
        .unwrap();
        assert_eq!(
            genes,
            vec![
                ("INS".into(), vec![2.0, 4.0]),
                ("GCG".into(), vec![0.0, 0.0])
            ]
        );
        let err = gene_embeddings([("A", vec![1.0f32]), ("B", vec![1.0, 2.0])]).unwrap_err();
        assert!(
            matches!(err, ProteinError::Dimension { ref gene, expected: 1, found: 2 } if gene == "B")
        );
    }
}
