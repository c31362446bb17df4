//! Adam for the training loops, with each parameter's update fused into one pass over its
//! values, gradient and moments (chunks on libtorch's threads, [`super::pool`]). libtorch's `torch::optim::Adam` makes six
//! tensor operations per parameter and step, each a pass over millions of floats (a pretraining
//! step updates about 3.5 million parameters); the arithmetic is the same:
//!
//! ```text
//! m = b1 m + (1 - b1) g             v = b2 v + (1 - b2) g^2
//! p -= lr / (1 - b1^t) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
//! ```
//! with `t` counted per parameter over the steps at which it had a gradient (a parameter the loss
//! does not reach is skipped, as libtorch skips one whose gradient is none), and no weight decay.

use super::product::{MacrogeneProduct, WeightLeaves};
use crate::kernels::host::{cpu_f32, f32_data, f32_data_mut};
use crate::kernels::pool::map_parts;
use crate::kernels::simd::widest;
use tch::{nn, Kind, Tensor};

/// Entries per parallel part.
const CHUNK: usize = 1 << 15;

/// Adam's hyper-parameters (betas 0.9 and 0.999, eps 1e-8 as SATURN).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// Decay of the first moment.
    pub beta1: f64,
    /// Decay of the second moment.
    pub beta2: f64,
    /// Added to the denominator.
    pub eps: f64,
}

impl AdamConfig {
    /// SATURN's Adam with learning rate `lr`.
    pub fn new(lr: f64) -> Self {
        Self {
            lr,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
        }
    }
}

/// One parameter and its moments.
struct Slot {
    param: Tensor,
    m: Vec<f32>,
    v: Vec<f32>,
    steps: i32,
    mask: Option<Tensor>,
}

/// The optimiser over the trainable variables of a `VarStore`.
pub struct Adam {
    config: AdamConfig,
    slots: Vec<Slot>,
}

impl std::fmt::Debug for Adam {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Adam")
            .field("config", &self.config)
            .field("parameters", &self.slots.len())
            .finish()
    }
}

impl Adam {
    /// Adam over `vs`' trainable variables (float32 on the CPU, contiguous or the transpose of a
    /// contiguous matrix, as the macrogene layer's `P`), moments at zero.
    pub fn new(vs: &nn::VarStore, config: AdamConfig) -> Self {
        let slots = vs
            .trainable_variables()
            .into_iter()
            .map(|param| {
                assert_eq!(param.kind(), Kind::Float, "Adam updates float32 parameters");
                assert!(
                    param.is_contiguous() || (param.dim() == 2 && param.tr().is_contiguous()),
                    "Adam updates contiguous parameters (or transposes of contiguous ones)"
                );
                let n = param.numel();
                Slot {
                    param,
                    m: vec![0.0; n],
                    v: vec![0.0; n],
                    steps: 0,
                    mask: None,
                }
            })
            .collect();
        Self { config, slots }
    }

    /// Multiplies the gradient of `param` (one of the trainable variables) by `mask` before
    /// every update: the 0/1 masks of partly frozen parameters
    /// ([`super::Saturn::train_only_species`]). Adam leaves an entry whose gradient is always 0
    /// exactly as it was.
    pub fn mask(&mut self, param: &Tensor, mask: Tensor) {
        let slot = self
            .slots
            .iter_mut()
            .find(|s| s.param.data_ptr() == param.data_ptr())
            .expect("a masked parameter is one of the optimiser's");
        slot.mask = Some(mask);
    }

    /// Back-propagates `loss` to the parameters that require a gradient and updates them.
    /// Gradients are computed afresh (not accumulated in the tensors' `.grad`), so a parameter
    /// the loss does not reach has none and is skipped, as libtorch skips a parameter whose
    /// gradient `zero_grad` set to none. `weights` are the step's leaves of `W^T = exp(P)^T` and
    /// `products` its macrogene-layer products, whose backward passes are by hand: autograd stops
    /// at them, and [`WeightLeaves::parameter_gradient_t`] gives `P`'s gradient from theirs.
    pub fn backward_step(
        &mut self,
        loss: &Tensor,
        weights: Option<&WeightLeaves>,
        products: &[MacrogeneProduct],
    ) {
        assert!(
            weights.is_some() || products.is_empty(),
            "macrogene products come with the leaves of the weights they read"
        );
        let live: Vec<usize> = (0..self.slots.len())
            .filter(|&i| self.slots[i].param.requires_grad())
            .collect();
        let mut inputs: Vec<&Tensor> = live.iter().map(|&i| &self.slots[i].param).collect();
        let leaves = weights.map(WeightLeaves::leaves).unwrap_or_default();
        let n_leaves = leaves.len();
        inputs.extend(leaves);
        inputs.extend(products.iter().map(MacrogeneProduct::output));
        let mut grads = Tensor::run_backward(&[loss], &inputs, false, false);
        let output_grads = grads.split_off(live.len() + n_leaves);
        let leaf_grads = grads.split_off(live.len());
        if let Some(weights) = weights {
            let param = weights.parameter();
            let k = live
                .iter()
                .position(|&i| self.slots[i].param.data_ptr() == param.data_ptr())
                .expect("the weights' parameter is one of the optimiser's, requiring a gradient");
            let products: Vec<(&MacrogeneProduct, &Tensor)> =
                products.iter().zip(&output_grads).collect();
            grads[k] = weights.parameter_gradient_t(&leaf_grads, &products).tr();
        }
        for (i, grad) in live.into_iter().zip(grads) {
            if grad.defined() {
                self.update(i, &grad);
            }
        }
    }

    /// One update of parameter `i` with its gradient.
    fn update(&mut self, i: usize, grad: &Tensor) {
        let AdamConfig {
            lr,
            beta1,
            beta2,
            eps,
        } = self.config;
        let slot = &mut self.slots[i];
        let grad = match &slot.mask {
            Some(mask) => grad * mask,
            None => grad.shallow_clone(),
        };
        // the parameter's values in memory order, and the gradient in the same order
        let transposed = !slot.param.is_contiguous();
        let (mut storage, grad) = if transposed {
            (slot.param.tr(), cpu_f32(&grad.tr()))
        } else {
            (slot.param.shallow_clone(), cpu_f32(&grad))
        };
        slot.steps += 1;
        let t = slot.steps;
        let step = Step {
            size: (lr / (1.0 - beta1.powi(t))) as f32,
            inv_sqrt_bc2: (1.0 / (1.0 - beta2.powi(t)).sqrt()) as f32,
            beta1: beta1 as f32,
            beta2: beta2 as f32,
            eps: eps as f32,
        };
        assert_eq!(
            grad.numel(),
            slot.m.len(),
            "a gradient of the parameter's shape"
        );
        let grad = f32_data(&grad);
        // SAFETY: `storage` is the parameter, or its transpose, contiguous float32 on the CPU
        // (checked in `new`); the gradient is a separate tensor, and nothing else reads or
        // writes the parameter during the update.
        let param = unsafe { f32_data_mut(&mut storage) };
        let chunks = param
            .chunks_mut(CHUNK)
            .zip(grad.chunks(CHUNK))
            .zip(slot.m.chunks_mut(CHUNK))
            .zip(slot.v.chunks_mut(CHUNK))
            .collect();
        map_parts(chunks, |_, (((p, g), m), v)| update_chunk(p, g, m, v, step));
    }
}

/// The scalars of one update.
#[derive(Debug, Clone, Copy)]
struct Step {
    /// `lr / (1 - b1^t)`.
    size: f32,
    /// `1 / sqrt(1 - b2^t)`.
    inv_sqrt_bc2: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
}

widest! {
    /// Adam's update of a chunk of a parameter: values, gradient, moments.
    fn update_chunk(p: &mut [f32], g: &[f32], m: &mut [f32], v: &mut [f32], step: Step) {
        let Step {
            size,
            inv_sqrt_bc2,
            beta1,
            beta2,
            eps,
        } = step;
        for (((p, &g), m), v) in p.iter_mut().zip(g).zip(m).zip(v) {
            *m = beta1 * *m + (1.0 - beta1) * g;
            *v = beta2 * *v + (1.0 - beta2) * g * g;
            *p -= size * *m / (v.sqrt() * inv_sqrt_bc2 + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tch::{nn::OptimizerConfig, Device};

    /// Two identical models, one trained with libtorch's Adam and one with this one, on the same
    /// losses: the parameters agree after several steps, including a step whose loss does not
    /// reach one layer (both skip that layer then).
    #[test]
    fn matches_libtorch_adam() {
        let _rng = crate::model::torch_rng();
        // `b`'s weight stored transposed, as the macrogene layer's `P`
        let build = || {
            let vs = nn::VarStore::new(Device::Cpu);
            let a = nn::linear(vs.root() / "a", 7, 5, Default::default());
            let mut b = nn::linear(vs.root() / "b", 5, 3, Default::default());
            let w_t = b.ws.detach().tr().contiguous();
            b.ws = (vs.root() / "bt").add("weight", w_t.tr(), true);
            (vs, a, b)
        };
        let (vs_ref, a_ref, b_ref) = build();
        let (mut vs, a, b) = build();
        assert!(!b.ws.is_contiguous() && b.ws.tr().is_contiguous());
        vs.copy(&vs_ref).unwrap();
        let initial = vs_ref.variables()["a.weight"].copy();
        let mut reference = nn::Adam::default().build(&vs_ref, 1e-2).unwrap();
        let mut fused = Adam::new(&vs, AdamConfig::new(1e-2));
        let x = Tensor::randn([9, 7], (Kind::Float, Device::Cpu));
        let loss = |a: &nn::Linear, b: &nn::Linear, step: usize| {
            use tch::nn::Module;
            let h = a.forward(&x).tanh();
            if step == 2 {
                h.square().mean(Kind::Float) // `b` gets no gradient in this step
            } else {
                b.forward(&h).sin().sum(Kind::Float)
            }
        };
        for step in 0..6 {
            reference.backward_step(&loss(&a_ref, &b_ref, step));
            fused.backward_step(&loss(&a, &b, step), None, &[]);
        }
        let want = vs_ref.variables();
        for (name, got) in vs.variables() {
            let err = (&got - &want[&name]).abs().max().double_value(&[]);
            assert!(err < 1e-6, "{name}: max difference {err}");
        }
        let moved = (&vs.variables()["a.weight"] - &initial)
            .abs()
            .max()
            .double_value(&[]);
        assert!(moved > 1e-3, "the parameters were updated ({moved})");
    }

    #[test]
    fn masked_entries_stay_exactly_as_they_were() {
        let _rng = crate::model::torch_rng();
        let vs = nn::VarStore::new(Device::Cpu);
        let w = vs.root().randn("w", &[4, 6], 0.0, 1.0);
        let before = w.copy();
        let mask = Tensor::zeros([4, 6], (Kind::Float, Device::Cpu));
        let _ = mask.narrow(1, 2, 3).fill_(1.0);
        let mut adam = Adam::new(&vs, AdamConfig::new(0.1));
        adam.mask(&w, mask.shallow_clone());
        for _ in 0..3 {
            adam.backward_step(&w.sin().sum(Kind::Float), None, &[]);
        }
        let changed = w.ne_tensor(&before).to_kind(Kind::Float);
        assert!(changed.equal(&mask), "only the unmasked entries moved");
    }
}
