//! The hand-written CPU kernels' toolkit, shared by the stages that run hot loops outside
//! libtorch ([`crate::protein`]'s attention, [`crate::model`]'s losses, product and optimiser).
//!
//! - [`simd`] — `widest!`: a function body compiled for AVX-512 and AVX2 (with FMA) besides the
//!   baseline, the widest chosen at run time.
//! - [`pool`] — parts of a loop run on libtorch's own OpenMP threads (rayon without libgomp).
//! - [`vmath`] — branch-free `exp` / `ln` that vectorise inside those loops.
//! - [`host`] — a tensor's data read and written in place; a hand-computed gradient handed back to
//!   autograd.

pub(crate) mod host;
pub(crate) mod pool;
pub(crate) mod simd;
pub(crate) mod vmath;
