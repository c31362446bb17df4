"""Reference values for satlas' Seurat v3 highly-variable-gene selection (src/macrogene/hvg.rs).

Run with the reference environment (scripts/refenv.sh):
    ~/.cache/satlas/refenv/bin/python scripts/reference/hvg_reference.py

Writes to fixtures/reference/:
  hvg_baron_human_top{2000,8000}.npy   scanpy's selection on the full Baron human counts
                                       (raw-Baron_human.h5ad, 2142 cells x 20125 genes), int64
  hvg_direct_baron_human_top{2000,8000}.npy
                                       the same with skmisc surface="direct" (exact loess), int64
  hvg_subset_{indptr,indices,data}.npy a 300-cell x 3000-gene subset (seed 0) as CSR (int32)
  hvg_subset_top500.npy                scanpy's selection of 500 genes on that subset, int64
  hvg_subset_loess_{x,fitted}.npy      the loess input (log10 mean) and fitted log10 variance (f64)
"""
import os
import numpy as np
import scanpy as sc
import scipy.sparse as sp
from skmisc.loess import loess

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "fixtures", "reference")
DATA = "/work/shared/data/baron_pancreas/raw-Baron_human.h5ad"


def scanpy_hvg(X, n_top):
    ad = sc.AnnData(X=sp.csr_matrix(X, dtype=np.float32))
    sc.pp.highly_variable_genes(ad, flavor="seurat_v3", n_top_genes=n_top)
    return np.flatnonzero(ad.var["highly_variable"].to_numpy()).astype(np.int64)


def direct_hvg(X, n_top):
    """scanpy's seurat_v3 algorithm with loess(surface="direct") instead of "interpolate"."""
    X = sp.csr_matrix(X, dtype=np.float64)
    n = X.shape[0]
    mean = np.asarray(X.mean(0)).ravel()
    var = (np.asarray(X.multiply(X).mean(0)).ravel() - mean**2) * n / (n - 1)
    nc = var > 0
    est = np.zeros(X.shape[1])
    m = loess(np.log10(mean[nc]), np.log10(var[nc]), span=0.3, degree=2, surface="direct")
    m.fit()
    est[nc] = m.outputs.fitted_values
    sd = np.sqrt(10**est)
    clip = sd * np.sqrt(n) + mean
    C = X.copy()
    mask = C.data > clip[C.indices]
    C.data[mask] = clip[C.indices[mask]]
    s2 = np.asarray(C.multiply(C).sum(0)).ravel()
    s1 = np.asarray(C.sum(0)).ravel()
    nv = (n * mean**2 + s2 - 2 * s1 * mean) / ((n - 1) * sd**2)
    return np.sort(np.argsort(-nv, kind="stable")[:n_top]).astype(np.int64)


def main():
    os.makedirs(OUT, exist_ok=True)
    adata = sc.read_h5ad(DATA)
    X = sp.csr_matrix(adata.X)
    for n_top in (2000, 8000):
        sel = scanpy_hvg(X, n_top)
        np.save(os.path.join(OUT, f"hvg_baron_human_top{n_top}.npy"), sel)
        direct = direct_hvg(X, n_top)
        np.save(os.path.join(OUT, f"hvg_direct_baron_human_top{n_top}.npy"), direct)
        print(n_top, "interpolate vs direct overlap", len(np.intersect1d(sel, direct)))

    rng = np.random.default_rng(0)
    cells = np.sort(rng.choice(X.shape[0], 300, replace=False))
    S = sp.csr_matrix(X[cells][:, :3000])
    S.sort_indices()
    np.save(os.path.join(OUT, "hvg_subset_indptr.npy"), S.indptr.astype(np.int64))
    np.save(os.path.join(OUT, "hvg_subset_indices.npy"), S.indices.astype(np.int32))
    np.save(os.path.join(OUT, "hvg_subset_data.npy"), S.data.astype(np.int32))
    np.save(os.path.join(OUT, "hvg_subset_top500.npy"), scanpy_hvg(S, 500))

    D = S.astype(np.float64)
    n = D.shape[0]
    mean = np.asarray(D.mean(0)).ravel()
    var = (np.asarray(D.multiply(D).mean(0)).ravel() - mean**2) * n / (n - 1)
    nc = var > 0
    x, y = np.log10(mean[nc]), np.log10(var[nc])
    m = loess(x, y, span=0.3, degree=2)
    m.fit()
    np.save(os.path.join(OUT, "hvg_subset_loess_x.npy"), x)
    np.save(os.path.join(OUT, "hvg_subset_loess_y.npy"), y)
    np.save(os.path.join(OUT, "hvg_subset_loess_fitted.npy"), np.asarray(m.outputs.fitted_values))
    print("subset nnz", S.nnz, "non-constant genes", nc.sum())


if __name__ == "__main__":
    main()
