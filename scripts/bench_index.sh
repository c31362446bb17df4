#!/usr/bin/env bash
# Index bench: satlas' HNSW (the vendored hnsw_rs' PackedHnsw, driven by
# vendor/hnsw_rs/examples/compare.rs, release build) and hnswlib (PyPI) side by side in one run,
# on the same N points, same M / ef_construction / threads: recall@10 vs ef, single-thread q/s
# at equal recall, build time, index bytes, load time, and inserting EXTRA more points into the
# reloaded index (recall after). (benches/index.rs times satlas' own CellIndex wrapper.)
#   bash scripts/bench_index.sh [N] [SET] [EXTRA]
# N: points (default 100000). SET: synthetic (default; satlas' clustered 256-d set, stored in
# cluster order) or resample:FILE.npy (rows of an f32/f16 matrix, e.g. a trained run's cell
# embeddings, resampled with noise to N in file order). EXTRA: default 100000.
# hnswlib runs from a small venv (/root/.cache/satlas/hnswlib-venv: hnswlib + numpy), created on
# first use. HNSWLIB_SHUFFLED=0 skips the reference hnswlib build in shuffled order.
# Everything runs under nice; the load is printed: compare numbers within a run only.
set -euo pipefail
N=${1:-100000}
SET=${2:-synthetic}
EXTRA=${3:-100000}
cd "$(dirname "$0")/.."
VENV=/root/.cache/satlas/hnswlib-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import hnswlib, numpy' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q hnswlib numpy
fi
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-/root/.cache/satlas/target-hnsw}
(cd vendor/hnsw_rs && nice -n 10 cargo build -q --release --example compare)
BIN=$CARGO_TARGET_DIR/release/examples/compare
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
nice -n 10 "$BIN" --out "$DIR" --n "$N" --set "$SET" --extra "$EXTRA" --prepare 1
nice -n 10 "$VENV/bin/python" scripts/reference/hnswlib_compare.py "$DIR" --truth
nice -n 10 "$BIN" --out "$DIR" --n "$N" --set "$SET" --extra "$EXTRA"
nice -n 10 "$VENV/bin/python" scripts/reference/hnswlib_compare.py "$DIR"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
