#!/usr/bin/env bash
# satlas' stored UMAP layout vs umap-learn (PyPI) on the same embeddings: trustworthiness at k=15
# (scripts/reference/umap_compare.py; fails when satlas' is more than 0.02 below umap-learn's).
#   bash scripts/umap_compare.sh [ATLAS] [--run N] [--sample N]     (default ATLAS: out/demo.satlas)
# The layout must be stored first (`satlas layout`, `satlas plot umap` or `satlas report`; the
# demo does). The venv (umap-learn, scikit-learn, numpy, duckdb 1.5.6) is created on first use.
set -euo pipefail
cd "$(dirname "$0")/.."
ATLAS=${1:-out/demo.satlas}
shift || true
VENV=/root/.cache/satlas/umap-venv
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import umap, sklearn, duckdb' 2>/dev/null; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q umap-learn scikit-learn numpy duckdb==1.5.6
fi
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
nice -n 5 "$VENV/bin/python" -W ignore scripts/reference/umap_compare.py "$ATLAS" "$@"
