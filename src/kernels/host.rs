//! Glue for the kernels computed by hand on the CPU ([`crate::model::zinb::zinb_nll_fused`],
//! [`crate::model::losses::anchored_regulariser_fused`], [`crate::model::adam`], the ESM-2
//! attention of [`crate::protein`]): reading and writing a tensor's data without a copy, and handing an analytically computed gradient back to autograd.

use tch::{Device, Kind, Tensor};

/// The tensor as a contiguous CPU float tensor (itself when it already is one).
pub(crate) fn cpu_f32(t: &Tensor) -> Tensor {
    assert_eq!(
        t.device(),
        Device::Cpu,
        "satlas' hand-written kernels run on the CPU"
    );
    t.to_kind(Kind::Float).contiguous()
}

/// The data of a contiguous CPU float tensor made by [`cpu_f32`].
pub(crate) fn f32_data(t: &Tensor) -> &[f32] {
    let n = t.numel();
    if n == 0 {
        return &[];
    }
    // SAFETY: `cpu_f32` made `t` a contiguous f32 tensor on the CPU, so its storage holds `n`
    // initialised f32 values from `data_ptr`; the slice borrows `t`, which keeps the storage
    // alive, and nothing writes to it while the slice lives (the callers only read it).
    unsafe { std::slice::from_raw_parts(t.data_ptr() as *const f32, n) }
}

/// The data of a contiguous float32 CPU tensor, for writing (e.g. a new tensor being filled, or
/// a parameter being updated).
///
/// # Safety
/// `t` must be a contiguous float32 tensor on the CPU, and nothing else may read or write its
/// storage (through another tensor sharing it) while the slice lives.
pub(crate) unsafe fn f32_data_mut(t: &mut Tensor) -> &mut [f32] {
    let n = t.numel();
    if n == 0 {
        return &mut [];
    }
    debug_assert!(t.kind() == Kind::Float && t.device() == Device::Cpu && t.is_contiguous());
    // SAFETY: the caller's contract: `n` initialised f32 values from `data_ptr`, borrowed
    // exclusively for the slice's lifetime; `t` keeps the storage alive.
    unsafe { std::slice::from_raw_parts_mut(t.data_ptr() as *mut f32, n) }
}

/// A new contiguous float32 CPU tensor of shape `shape`, its entries written by `fill` (which
/// must write every one: the storage starts uninitialised).
pub(crate) fn new_f32(shape: &[i64], fill: impl FnOnce(&mut [f32])) -> Tensor {
    let mut t = Tensor::empty(shape, (Kind::Float, Device::Cpu));
    // SAFETY: `t` is a new contiguous float32 CPU tensor that nothing else refers to yet.
    fill(unsafe { f32_data_mut(&mut t) });
    t
}

/// A scalar with the value `value` whose backward pass adds `grad` to the gradient of each
/// `input` (same number of elements): `sum(input * grad)` minus its own value, plus `value`.
pub(crate) fn with_gradients(value: f64, parts: &[(&Tensor, Tensor)]) -> Tensor {
    let linear = parts
        .iter()
        .map(|(input, grad)| input.reshape([-1]).dot(&grad.reshape([-1])))
        .reduce(|a, b| a + b)
        .expect("at least one input");
    &linear - linear.detach() + value
}
