//! Hot loops compiled for the widest vector instructions the CPU has. The crate is built for
//! baseline x86-64 (SSE2), so a plain loop over `f32`s gets four lanes; [`widest!`] defines a
//! function that runs the same code compiled for AVX-512 or AVX2 when the CPU has them (checked at
//! run time; the same operations, so the same results), and as written otherwise.

/// `widest!(fn name(args) -> T = body;)` defines `fn name(args) -> T` that calls the
/// `#[inline(always)]` function `body` with the same arguments, compiled for AVX-512 (F, DQ) or
/// AVX2 when the CPU has them.
macro_rules! widest {
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? = $body:path;) => {
        $(#[$attr])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    $body($($arg),*)
                }
                if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has the feature `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

pub(crate) use widest;
