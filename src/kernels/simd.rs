//! Hot loops compiled for the widest vector instructions the CPU has. The crate is built for
//! baseline x86-64 (SSE2), so a plain loop over `f32`s gets four lanes; [`widest!`] defines a
//! function whose body is also compiled for AVX-512 and AVX2, both with FMA, and runs the widest
//! version the CPU has (checked at run time; the same operations, so the same results: `a * b + c`
//! is never fused by the compiler, and `f32::mul_add` is fused in every version, a single
//! instruction where FMA is enabled).

/// `widest! { fn name(args) -> T { body } }` defines `fn name(args) -> T` whose body is compiled
/// three times, as written and for AVX-512 (F, DQ) and AVX2, each with FMA, and runs the widest
/// the CPU has.
macro_rules! widest {
    ($(#[$attr:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $(-> $ret:ty)? $body:block) => {
        $(#[$attr])*
        fn $name($($arg: $ty),*) $(-> $ret)? {
            #[inline(always)]
            fn portable($($arg: $ty),*) $(-> $ret)? $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512dq,fma")]
                unsafe fn avx512($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                #[target_feature(enable = "avx2,fma")]
                unsafe fn avx2($($arg: $ty),*) $(-> $ret)? {
                    portable($($arg),*)
                }
                let fma = is_x86_feature_detected!("fma");
                if fma && is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512dq") {
                    // SAFETY: the CPU has the features `avx512` is compiled for.
                    return unsafe { avx512($($arg),*) };
                }
                if fma && is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has the feature `avx2` is compiled for.
                    return unsafe { avx2($($arg),*) };
                }
            }
            portable($($arg),*)
        }
    };
}

pub(crate) use widest;
