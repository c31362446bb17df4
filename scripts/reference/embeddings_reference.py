"""Precomputed gene-embedding files in SATURN's and numpy's formats, for src/io/embeddings.rs tests.

Run with the reference environment (scripts/refenv.sh), from the repository root:

    ~/.cache/satlas/refenv/bin/python scripts/reference/embeddings_reference.py

SATURN reads `torch.load(path)` -> {gene symbol: 1-D float tensor} (`.pt` / `.torch`, written by
`torch.save`). The values here are rows of one stacked tensor, so they share a storage and have
storage offsets, as happens when a dict is built from `torch.stack(...)[i]`.

Writes fixtures/embeddings/:
  saturn_genes.torch     {INS, GCG, SST, PPY}: 6-d float32, values i + j / 8 (gene i, dim j)
  saturn_f64.pt          the same, float64, plain (not views)
  bad_dim.pt, bad_nan.pt, empty.pt   one wrong-dimension entry / one NaN / an empty dict
  genes.npy + genes.txt  the same 4 x 6 float32 matrix, one gene per line
  genes_f64.npy          the same, float64, Fortran order
"""

import os

import numpy as np
import torch

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "fixtures", "embeddings")
GENES = ["INS", "GCG", "SST", "PPY"]


def main():
    os.makedirs(OUT, exist_ok=True)
    matrix = torch.arange(4, dtype=torch.float32)[:, None] + torch.arange(6, dtype=torch.float32) / 8
    torch.save({g: matrix[i] for i, g in enumerate(GENES)}, os.path.join(OUT, "saturn_genes.torch"))
    torch.save({g: matrix[i].double().clone() for i, g in enumerate(GENES)}, os.path.join(OUT, "saturn_f64.pt"))
    bad = {g: matrix[i].clone() for i, g in enumerate(GENES)}
    bad["SST"] = torch.zeros(5)
    torch.save(bad, os.path.join(OUT, "bad_dim.pt"))
    nan = {g: matrix[i].clone() for i, g in enumerate(GENES)}
    nan["GCG"][3] = float("nan")
    torch.save(nan, os.path.join(OUT, "bad_nan.pt"))
    torch.save({}, os.path.join(OUT, "empty.pt"))
    np.save(os.path.join(OUT, "genes.npy"), matrix.numpy())
    np.save(os.path.join(OUT, "genes_f64.npy"), np.asfortranarray(matrix.numpy().astype(np.float64)))
    with open(os.path.join(OUT, "genes.txt"), "w") as f:
        f.write("\n".join(GENES) + "\n")
    print("wrote", sorted(os.listdir(OUT)))


if __name__ == "__main__":
    main()
