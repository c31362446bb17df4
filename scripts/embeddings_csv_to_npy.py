#!/usr/bin/env python3
"""Converts a DuckDB CSV export of gene embeddings (columns `gene`, `embedding` = "[x, y, ...]")
into PREFIX.npy (genes x dim, float16 or float32) + PREFIX.genes.txt, the pair that
`satlas import-embeddings --genes PREFIX.genes.txt PREFIX.npy` reads.

    python scripts/embeddings_csv_to_npy.py EXPORT.csv PREFIX [float16|float32]

Needs numpy (the reference environment of scripts/refenv.sh).
"""

import csv
import json
import sys

import numpy as np


def main():
    if len(sys.argv) not in (3, 4):
        sys.exit(__doc__)
    source, prefix = sys.argv[1:3]
    dtype = sys.argv[3] if len(sys.argv) == 4 else "float16"
    rows = list(csv.DictReader(open(source, newline="")))
    matrix = np.array([json.loads(r["embedding"]) for r in rows], dtype=np.float32)
    stored = matrix.astype("<f2" if dtype == "float16" else "<f4")
    assert np.isfinite(stored).all(), f"an embedding value overflows {dtype}"
    np.save(prefix + ".npy", stored)
    with open(prefix + ".genes.txt", "w") as f:
        f.writelines(r["gene"] + "\n" for r in rows)
    err = np.abs(stored.astype(np.float32) - matrix).max()
    print(f"{prefix}.npy: {stored.shape[0]} genes x {stored.shape[1]}, {dtype} (max abs rounding {err:.2e})")


if __name__ == "__main__":
    main()
