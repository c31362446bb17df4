#!/usr/bin/env bash
# Fuzzes satlas' file readers with cargo-fuzz (libFuzzer): the FASTA, 10x MatrixMarket and h5ad
# targets of fuzz/, each for SECONDS (default 60), seeded from fixtures/. The stable toolchain
# runs cargo-fuzz through RUSTC_BOOTSTRAP=1; `-s none` because sanitizers need a nightly std.
# A crash leaves its input in fuzz/artifacts/TARGET/ and stops that target (the script goes on).
#
#   bash scripts/fuzz.sh [SECONDS] [TARGET...]
set -uo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
seconds=${1:-60}
shift || true
targets=("${@:-fasta mtx h5ad}")
read -r -a targets <<<"${targets[*]}"
command -v cargo-fuzz >/dev/null || env -u CARGO_TARGET_DIR cargo install cargo-fuzz --locked
export CARGO_TARGET_DIR=${FUZZ_TARGET_DIR:-$SATLAS_CACHE/target-fuzz}

# Seed corpora (regenerated each run; fuzz/corpus is not committed).
seed() { mkdir -p "fuzz/corpus/$1"; cp "${@:2}" "fuzz/corpus/$1/"; }
seed fasta fixtures/bad/*.fa fixtures/proteins/*.fa.gz
gunzip -c fixtures/proteins/human.fa.gz | head -40 >fuzz/corpus/fasta/human_head.fa
seed h5ad fixtures/bad/*.h5ad fixtures/legacy/anndata06.h5ad
mkdir -p fuzz/corpus/mtx
printf '%%%%MatrixMarket matrix coordinate integer general\n%%c\n3 2 4\n2 1 5\n1 2 1\n3 2 2\n1 1 7\n' \
    >fuzz/corpus/mtx/valid
printf '%%%%MatrixMarket matrix coordinate real general\n2 2 1\n1 2 3.0\n\0A\tA\nB\tB\n\0c1\nc2\n' \
    >fuzz/corpus/mtx/with_names
cp fixtures/bad/truncated_10x/matrix.mtx fuzz/corpus/mtx/truncated

status=0
for target in "${targets[@]}"; do
    options=(-max_len=4096)
    # libhdf5 itself can spend minutes on a corrupt file (see README, "What was found"): the h5ad
    # target runs in fork mode, which records such inputs (timeouts, crashes) in fuzz/artifacts/h5ad/
    # and goes on: replay each one to tell a libhdf5 crash from a Rust panic.
    [[ $target == h5ad ]] && options=(-max_len=65536 -fork=1 -ignore_timeouts=1 -ignore_crashes=1)
    echo "== $target: ${seconds}s"
    RUSTC_BOOTSTRAP=1 nice cargo fuzz run -s none "$target" "fuzz/corpus/$target" -- \
        -max_total_time="$seconds" -timeout=10 -print_final_stats=1 "${options[@]}" || status=1
done
exit $status
