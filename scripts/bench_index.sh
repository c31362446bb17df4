#!/usr/bin/env bash
# Index bench: satlas' HNSW (benches/index.rs, dev profile) and hnswlib (PyPI, the refenv) on the
# same N synthetic clustered 256-d points, same M / ef_construction, ef_search swept; prints
# build times, recall@10 / QPS curves and QPS at matched recall with the ratio.
#   bash scripts/bench_index.sh [N]      (default 100000; SATLAS_BENCH_ATLAS=FILE adds an atlas)
# The machine's load is printed before and after: the numbers are only comparable within a run.
set -euo pipefail
N=${1:-100000}
cd "$(dirname "$0")/.."
source scripts/env.sh
PY=$(bash scripts/refenv.sh)
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
SATLAS_BENCH_POINTS=$N SATLAS_BENCH_NPY=$DIR nice cargo test --bench index -- --bench 2>&1 \
  | grep -E '^index bench|^knn_|time:|thrpt:'
nice "$PY" scripts/reference/hnswlib_bench.py "$DIR"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
