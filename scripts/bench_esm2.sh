#!/usr/bin/env bash
# ESM-2 tokens/s: satlas (tch, benches/esm2.rs) vs Hugging Face transformers
# (scripts/reference/esm2_bench.py) on the same 64 proteins, threads and batches. satlas runs both
# its default (like PyTorch, one batch at a time on intra-op threads) and --batch-workers
# (concurrent batches, one libtorch thread each).
#
#   scripts/bench_esm2.sh [THREADS] [--release]     (THREADS default 2)
#
# Needs ../shared/data and the reference environment (scripts/refenv.sh). By default the criterion
# bench runs through `cargo test --bench esm2 -- --bench`, i.e. the dev profile, whose dependencies
# are built at opt-level 2: the work happens inside the prebuilt libtorch. `--release` uses
# `cargo bench` (the release profile) instead.
set -euo pipefail
cd "$(dirname "$0")/.."
THREADS=${1:-2}
source scripts/env.sh
PY=${SATLAS_REFENV:-$HOME/.cache/satlas/refenv}/bin/python
LOG=$(mktemp)

if [ "${2:-}" = "--release" ]; then
  SATLAS_BENCH_THREADS=$THREADS cargo bench --bench esm2 -- --noplot 2>&1 | tee "$LOG"
else
  SATLAS_BENCH_THREADS=$THREADS cargo test --bench esm2 -- --bench --noplot 2>&1 | tee "$LOG"
fi
TOKENS=$(sed -n 's/.*, \([0-9]*\) tokens per iteration.*/\1/p' "$LOG" | tail -1)
if [ -z "$TOKENS" ]; then
  echo "the Rust bench did not run (see above)"; exit 1
fi
tokens_per_s() {
  "$PY" -c "import json; e=json.load(open('$CARGO_TARGET_DIR/criterion/esm2_t6_8m/$1/new/estimates.json')); print(f'{$TOKENS / (e[\"median\"][\"point_estimate\"] * 1e-9):.1f}')"
}
RUST=$(tokens_per_s embed_64_proteins)
RUST_WORKERS=$(tokens_per_s embed_64_proteins_batch_workers)

OMP_NUM_THREADS=$THREADS "$PY" scripts/reference/esm2_bench.py "$THREADS" 2>/dev/null > "$LOG.hf"
cat "$LOG.hf"
HF=$(sed -n 's/^hf_tokens_per_s //p' "$LOG.hf")
rm -f "$LOG" "$LOG.hf"

echo "threads=$THREADS tokens/iteration=$TOKENS (criterion median; transformers median of 5)"
echo "satlas (tch), intra-op threads  tokens/s: $RUST"
echo "satlas (tch), batch workers     tokens/s: $RUST_WORKERS"
echo "transformers, intra-op threads  tokens/s: $HF"
"$PY" -c "print(f'ratio satlas / transformers: {$RUST / $HF:.2f} (batch workers: {$RUST_WORKERS / $HF:.2f})')"
uptime
