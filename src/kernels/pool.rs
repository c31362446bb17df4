//! Running the hand-written training kernels on libtorch's own OpenMP threads.
//!
//! libtorch parallelises its operations with OpenMP (GNU libgomp), whose idle threads spin for a
//! while after every parallel operation. A rayon loop right after a libtorch operation therefore
//! shares the cores with a spinning thread, and on 2 cores gains little over one thread. Handing
//! the loop to libgomp instead (`GOMP_parallel`, the entry point GCC compiles `#pragma omp
//! parallel` to) runs it on the threads that are spinning anyway. The functions are looked up in
//! the process (libtorch has loaded libgomp); without them, rayon runs the parts.

use rayon::prelude::*;
use std::ffi::{c_char, c_int, c_uint, c_void, CStr};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

type Body = unsafe extern "C" fn(*mut c_void);
type Parallel = unsafe extern "C" fn(Body, *mut c_void, c_uint, c_uint);
type Query = unsafe extern "C" fn() -> c_int;

/// The libgomp functions used.
struct Omp {
    parallel: Parallel,
    thread_num: Query,
    num_threads: Query,
}

extern "C" {
    fn dlsym(handle: *mut c_void, symbol: *const c_char) -> *mut c_void;
}

/// glibc's `RTLD_DEFAULT`: search the global symbols of the process.
const RTLD_DEFAULT: *mut c_void = std::ptr::null_mut();

fn omp() -> Option<&'static Omp> {
    static OMP: OnceLock<Option<Omp>> = OnceLock::new();
    OMP.get_or_init(|| {
        let find = |name: &CStr| {
            // SAFETY: `dlsym` with RTLD_DEFAULT and a NUL-terminated name only reads the name.
            let f = unsafe { dlsym(RTLD_DEFAULT, name.as_ptr()) };
            (!f.is_null()).then_some(f)
        };
        let (parallel, thread_num, num_threads) = (
            find(c"GOMP_parallel")?,
            find(c"omp_get_thread_num")?,
            find(c"omp_get_num_threads")?,
        );
        // SAFETY: these are libgomp's functions with these C signatures (libgomp's ABI:
        // `void GOMP_parallel(void (*)(void *), void *, unsigned, unsigned)`, `int (void)`).
        unsafe {
            Some(Omp {
                parallel: std::mem::transmute::<*mut c_void, Parallel>(parallel),
                thread_num: std::mem::transmute::<*mut c_void, Query>(thread_num),
                num_threads: std::mem::transmute::<*mut c_void, Query>(num_threads),
            })
        }
    })
    .as_ref()
}

/// What each OpenMP thread of [`for_each_part`] runs.
struct Job<'a> {
    parts: usize,
    f: &'a (dyn Fn(usize) + Sync),
    omp: &'a Omp,
    panicked: AtomicBool,
}

unsafe extern "C" fn run_job(data: *mut c_void) {
    // SAFETY: `for_each_part` passes a pointer to a `Job` that outlives `GOMP_parallel`.
    let job = unsafe { &*(data as *const Job<'_>) };
    // SAFETY: called inside the parallel region, as OpenMP requires.
    let (thread, threads) = unsafe { ((job.omp.thread_num)(), (job.omp.num_threads)()) };
    let (thread, threads) = (thread.max(0) as usize, threads.max(1) as usize);
    for part in (thread..job.parts).step_by(threads) {
        // a panic must not unwind into C: it is recorded and raised after the region
        if catch_unwind(AssertUnwindSafe(|| (job.f)(part))).is_err() {
            job.panicked.store(true, Ordering::Relaxed);
        }
    }
}

/// Runs `f(part)` for every `part` in `0..parts`, spread over libtorch's OpenMP threads (part
/// `k` on thread `k mod threads`), or over rayon's when libgomp is not loaded. Returns when all
/// parts are done; a panic in a part is raised here.
pub(crate) fn for_each_part(parts: usize, f: impl Fn(usize) + Sync) {
    let Some(omp) = omp() else {
        (0..parts).into_par_iter().for_each(&f);
        return;
    };
    let job = Job {
        parts,
        f: &f,
        omp,
        panicked: AtomicBool::new(false),
    };
    // SAFETY: `run_job` has the signature libgomp calls, `job` lives until the region ends
    // (GOMP_parallel returns after every thread finished), and 0 threads means the default.
    unsafe { (omp.parallel)(run_job, &job as *const Job<'_> as *mut c_void, 0, 0) };
    assert!(
        !job.panicked.load(Ordering::Relaxed),
        "a parallel part panicked"
    );
}

/// `f(k, part_k)` for every part (e.g. disjoint `&mut` chunks of buffers), in parallel as
/// [`for_each_part`]; returns the results in the parts' order.
pub(crate) fn map_parts<P: Send, R: Send>(
    parts: Vec<P>,
    f: impl Fn(usize, P) -> R + Sync,
) -> Vec<R> {
    let slots: Vec<Mutex<(Option<P>, Option<R>)>> = parts
        .into_iter()
        .map(|p| Mutex::new((Some(p), None)))
        .collect();
    for_each_part(slots.len(), |k| {
        let part = slots[k].lock().expect("no part panicked").0.take();
        let r = f(k, part.expect("each part is taken once"));
        slots[k].lock().expect("no part panicked").1 = Some(r);
    });
    slots
        .into_iter()
        .map(|s| {
            s.into_inner()
                .ok()
                .and_then(|s| s.1)
                .expect("every part ran")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn libgomp_is_found_in_a_process_with_libtorch() {
        let _ = tch::Tensor::ones([4], (tch::Kind::Float, tch::Device::Cpu)).sum(tch::Kind::Float);
        assert!(omp().is_some(), "GOMP_parallel was not found");
    }

    #[test]
    fn every_chunk_is_visited_once_and_results_keep_chunk_order() {
        let mut data: Vec<u32> = (0..1000).collect();
        let sums = map_parts(data.chunks_mut(64).collect(), |k, chunk| {
            chunk.iter_mut().for_each(|v| *v += 1);
            (k, chunk.iter().map(|&v| u64::from(v)).sum::<u64>())
        });
        assert_eq!(sums.len(), 16);
        assert!(sums.iter().enumerate().all(|(i, &(k, _))| i == k));
        assert_eq!(
            sums.iter().map(|s| s.1).sum::<u64>(),
            (1..=1000).sum::<u64>()
        );
        assert_eq!(data, (1..=1000).collect::<Vec<u32>>());
    }

    #[test]
    #[should_panic(expected = "a parallel part panicked")]
    fn a_panicking_part_is_reported() {
        for_each_part(8, |k| assert_ne!(k, 5));
    }
}
