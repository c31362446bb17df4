//! Growing a trained network by one species (`satlas add-species`): the network rebuilt with the
//! species appended and every existing parameter copied, then everything but the new species'
//! parts frozen for its training.

use super::error::Result;
use super::network::check_initial_weights;
use super::ops::dense_tensor;
use super::Saturn;
use ndarray::ArrayView2;
use tch::{Device, Kind, Tensor};

impl Saturn {
    /// This network extended with one more species (appended last): every existing parameter is
    /// copied unchanged, the new species' block of `P` is `ln(initial_weights)` (M x G_new, from
    /// [`crate::macrogene::rank_weights`] against the stored centroids), and its parts that do not
    /// exist yet (its one-hot column of `px_decoder`, its `px_dropout_decoders` and `px_rs`) get
    /// PyTorch's default initialisation. Seed with `tch::manual_seed` first for reproducibility.
    pub fn with_species(
        &self,
        species: &str,
        initial_weights: ArrayView2<'_, f32>,
    ) -> Result<Self> {
        let mut config = self.config.clone();
        config.species.push(species.to_string());
        config.genes_per_species.push(initial_weights.ncols());
        let model = Self::build(config)?;
        check_initial_weights(
            initial_weights,
            self.config.n_macrogenes,
            initial_weights.ncols(),
        )?;
        let old = self.vs.variables();
        tch::no_grad(|| {
            for (name, var) in model.vs.variables() {
                let Some(src) = old.get(&name) else {
                    continue; // a part of the new species
                };
                let grown = src.size().iter().zip(var.size()).position(|(a, b)| *a != b);
                let mut target = match grown {
                    None => var,
                    Some(dim) => var.narrow(dim as i64, 0, src.size()[dim]),
                };
                target.copy_(src);
            }
            let w = dense_tensor(initial_weights).log();
            let old_genes = self.config.n_genes() as i64;
            let mut block = model.macrogenes.p_weights.narrow(1, old_genes, w.size()[1]);
            block.copy_(&w);
        });
        Ok(model)
    }

    /// Freezes every parameter except those of species `species` (its block of `P`, its one-hot
    /// column of `px_decoder`, its `px_dropout_decoders` and `px_rs`): the others stop requiring
    /// gradients. `P` and `px_decoder`'s weight are shared tensors, so they keep requiring
    /// gradients and are returned with a 0/1 mask of the same shape that the training loop
    /// multiplies their gradient by (Adam leaves a parameter whose gradient is always 0 exactly
    /// as it was).
    pub fn train_only_species(&self, species: usize) -> Vec<(Tensor, Tensor)> {
        for var in self.vs.variables().values() {
            let _ = var.set_requires_grad(false);
        }
        let head = &self.px_dropout_decoders[species];
        let mut own = vec![head.ws.shallow_clone(), self.px_rs[species].shallow_clone()];
        own.extend(head.bs.iter().map(Tensor::shallow_clone));
        for var in &own {
            let _ = var.set_requires_grad(true);
        }
        let p = &self.macrogenes.p_weights;
        let decoder = &self.px_decoder.linear.ws;
        let onehot_column = (self.config.latent_dim + species) as i64;
        let masks = [
            (
                p,
                self.macrogenes.offsets[species],
                self.macrogenes.genes[species],
            ),
            (decoder, onehot_column, 1),
        ];
        masks
            .into_iter()
            .map(|(var, first, width)| {
                let _ = var.set_requires_grad(true);
                let mask = Tensor::zeros(var.size(), (Kind::Float, Device::Cpu));
                let _ = mask.narrow(1, first, width).fill_(1.0);
                (var.shallow_clone(), mask)
            })
            .collect()
    }
}
