"""Reference for satlas' 1:1-ortholog baseline (src/eval/baseline.rs): scanpy on the Baron
fixtures (fixtures/baron/{human,mouse}.h5ad, all cells in file order, human then mouse).

1. Ortholog pairs: the first two columns of ../shared/data/baron_pancreas/
   gene_matches_1v1_human2mouse.csv (human symbol, mouse symbol); symbols paired more than once on
   their side dropped; pairs whose genes are both in the fixture datasets kept. They are written
   to fixtures/reference/baseline_orthologs.csv (header + "human,mouse" rows), the table the Rust
   test gives satlas, so the test needs nothing outside fixtures/.
2. The joint cells x shared-genes count matrix; sc.pp.normalize_total(target_sum=1e4);
   sc.pp.log1p; sc.pp.pca(n_comps=50) (scanpy's defaults: centred, not scaled).
3. Signs normalised as satlas does: each component's largest-|.| score positive.

Writes fixtures/reference/baseline_pca.npy (cells x 50 scores, float64) and
baseline_variance.npy (adata.uns["pca"]["variance"], float64).

Run: ~/.cache/satlas/refenv/bin/python scripts/reference/baseline_reference.py [--data ../shared/data]
"""
import argparse
import collections
import importlib.metadata
import csv
import os
import sys

import anndata
import numpy as np
import scanpy as sc
import scipy.sparse as sp

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
from make_fixtures import load_old_h5ad  # noqa: E402

ROOT = os.path.join(HERE, "..", "..")
OUT = os.path.join(ROOT, "fixtures", "reference")
PCS = 50


def one_to_one(table):
    with open(table, encoding="utf-8", newline="") as f:
        rows = [(r[0], r[1]) for r in list(csv.reader(f))[1:] if len(r) >= 2 and r[0] and r[1]]
    count_a = collections.Counter(a.upper() for a, _ in rows)
    count_b = collections.Counter(b.upper() for _, b in rows)
    return [(a, b) for a, b in rows if count_a[a.upper()] == 1 and count_b[b.upper()] == 1]


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", default=os.path.join(ROOT, "..", "shared", "data"))
    args = parser.parse_args()
    table = os.path.join(args.data, "baron_pancreas", "gene_matches_1v1_human2mouse.csv")
    h, _, h_genes, _ = load_old_h5ad(os.path.join(ROOT, "fixtures", "baron", "human.h5ad"))
    m, _, m_genes, _ = load_old_h5ad(os.path.join(ROOT, "fixtures", "baron", "mouse.h5ad"))
    h_col = {g.upper(): j for j, g in enumerate(h_genes)}
    m_col = {g.upper(): j for j, g in enumerate(m_genes)}
    assert len(h_col) == len(h_genes) and len(m_col) == len(m_genes), "case-insensitive duplicates"
    pairs = [(a, b) for a, b in one_to_one(table) if a.upper() in h_col and b.upper() in m_col]
    with open(os.path.join(OUT, "baseline_orthologs.csv"), "w", encoding="utf-8") as f:
        f.write("human,mouse\n")
        f.writelines(f"{a},{b}\n" for a, b in pairs)
    hi = [h_col[a.upper()] for a, _ in pairs]
    mi = [m_col[b.upper()] for _, b in pairs]
    x = sp.vstack([h[:, hi], m[:, mi]]).tocsr().astype(np.float64)
    adata = anndata.AnnData(x)
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    sc.pp.pca(adata, n_comps=PCS)
    scores = np.asarray(adata.obsm["X_pca"], dtype=np.float64)
    peak = np.abs(scores).argmax(axis=0)
    scores *= np.sign(scores[peak, np.arange(PCS)])
    variance = np.asarray(adata.uns["pca"]["variance"], dtype=np.float64)
    np.save(os.path.join(OUT, "baseline_pca.npy"), np.ascontiguousarray(scores))
    np.save(os.path.join(OUT, "baseline_variance.npy"), variance)
    gaps = np.diff(variance[::-1])[::-1] / variance[:-1]
    print(
        f"scanpy {importlib.metadata.version('scanpy')}: {h.shape[0]} + {m.shape[0]} cells, {len(pairs)} shared 1:1 "
        f"orthologs, {PCS} PCs; variance {variance[0]:.3f} .. {variance[-1]:.3f}; smallest "
        f"relative gap between consecutive variances {np.abs(gaps).min():.2e}"
    )


if __name__ == "__main__":
    main()
