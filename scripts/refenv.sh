#!/usr/bin/env bash
# Creates the Python reference environment (PyTorch, HF transformers, fair-esm, scanpy, anndata) used ONLY by
# the scripts that regenerate reference fixtures and by comparison benches. satlas itself never
# needs it. Idempotent; lives outside the clone (about 5 GB).
set -euo pipefail
REFENV=${SATLAS_REFENV:-$HOME/.cache/satlas/refenv}
if [ ! -x "$REFENV/bin/python" ] || ! "$REFENV/bin/python" -c "import torch, transformers, esm, scanpy, anndata, pyarrow" 2>/dev/null; then
  python3 -m venv "$REFENV"
  "$REFENV/bin/pip" install --quiet --upgrade pip
  "$REFENV/bin/pip" install --quiet "torch==2.13.0" "transformers" "safetensors" "scanpy" "anndata" "h5py" \
     "scikit-misc" "scikit-learn" "numpy" "pandas" "hnswlib" "fair-esm==2.0.0" "pyarrow"
fi
echo "$REFENV/bin/python"
