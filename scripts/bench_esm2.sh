#!/usr/bin/env bash
# ESM-2 tokens/s: satlas (tch, benches/esm2.rs) vs Hugging Face transformers
# (scripts/reference/esm2_bench.py) on the same 64 proteins, threads and batching.
#   scripts/bench_esm2.sh [THREADS]      (default 2; needs ../shared/data and the reference env)
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
source scripts/env.sh
PY=${SATLAS_REFENV:-$HOME/.cache/satlas/refenv}/bin/python

SATLAS_BENCH_THREADS=$THREADS cargo bench --bench esm2 -- --noplot 2>&1 | tee /tmp/satlas_bench_esm2.log
TOKENS=$(sed -n 's/.*, \([0-9]*\) tokens per iteration.*/\1/p' /tmp/satlas_bench_esm2.log | tail -1)
ESTIMATES=$CARGO_TARGET_DIR/criterion/esm2_t6_8m/embed_64_proteins/new/estimates.json
RUST=$("$PY" -c "import json,sys; e=json.load(open('$ESTIMATES')); print(f'{$TOKENS / (e[\"median\"][\"point_estimate\"] * 1e-9):.1f}')")

HF=$(OMP_NUM_THREADS=$THREADS "$PY" scripts/reference/esm2_bench.py "$THREADS" | tee /dev/stderr | sed -n 's/^hf_tokens_per_s //p')

echo "threads=$THREADS tokens/iteration=$TOKENS"
echo "satlas (tch)   tokens/s: $RUST"
echo "transformers   tokens/s: $HF"
"$PY" -c "print(f'ratio satlas / transformers: {$RUST / $HF:.2f}')"
