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
  genes.parquet          the same rows: gene (string), embedding (list<float32>)
  genes_f64_fixed.parquet  gene (large_string), embedding (fixed_size_list<float64, 6>), plus an
                         extra column (ignored)
  bad_*.parquet          one defect each: no "embedding" column, embedding of strings, a null
                         gene, a null embedding, a null value, a 5-d row, NaN, Inf, a gene twice
                         (case-insensitive)
"""

import os

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
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
    write_parquet(matrix.numpy())
    print("wrote", sorted(os.listdir(OUT)))


def parquet(name, genes, embeddings, **extra):
    """Writes columns gene, embedding (and `extra`) with pyarrow."""
    table = pa.table({"gene": genes, "embedding": embeddings, **extra})
    pq.write_table(table, os.path.join(OUT, name))


def write_parquet(matrix):
    rows = [list(map(float, r)) for r in matrix]
    floats = pa.list_(pa.float32())
    parquet("genes.parquet", pa.array(GENES, pa.string()), pa.array(rows, floats))
    parquet(
        "genes_f64_fixed.parquet",
        pa.array(GENES, pa.large_string()),
        pa.array(rows, pa.list_(pa.float64(), 6)),
        note=pa.array(["a", "b", "c", "d"]),
    )
    pq.write_table(pa.table({"gene": GENES, "vector": pa.array(rows, floats)}),
                   os.path.join(OUT, "bad_no_embedding.parquet"))
    parquet("bad_strings.parquet", GENES, pa.array([[str(v) for v in r] for r in rows]))

    def defect(name, row, value, genes=GENES):
        bad = [list(r) for r in rows]
        bad[row] = value(bad[row])
        parquet(name, pa.array(genes, pa.string()), pa.array(bad, floats))

    parquet("bad_null_gene.parquet", pa.array(["INS", None, "SST", "PPY"]), pa.array(rows, floats))
    defect("bad_null_embedding.parquet", 2, lambda r: None)
    defect("bad_null_value.parquet", 1, lambda r: r[:3] + [None] + r[4:])
    defect("bad_ragged.parquet", 3, lambda r: r[:5])
    defect("bad_nan.parquet", 1, lambda r: r[:2] + [float("nan")] + r[3:])
    defect("bad_inf.parquet", 0, lambda r: r[:5] + [float("inf")])
    defect("bad_duplicate.parquet", 0, lambda r: r, genes=["INS", "GCG", "ins", "PPY"])


if __name__ == "__main__":
    main()
