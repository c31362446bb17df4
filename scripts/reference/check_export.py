"""Checks that `satlas export` output opens in the Python ecosystem (anndata, scanpy, pyarrow).

Run with the reference environment (scripts/refenv.sh) on an exported file, from the repository
root, e.g. after `bash scripts/demo.sh` (which writes both exports):

    ~/.cache/satlas/refenv/bin/python scripts/reference/check_export.py out/demo.h5ad [out/demo_tables]

The h5ad is opened with `anndata.read_h5ad`; the script checks the shapes (X and
obsm["X_saturn"] equal, float32, one row per obs), the obs columns and their dtypes (categoricals,
float confidence, NaN exactly where no label was transferred), var, uns["satlas"], then runs
`scanpy.pp.neighbors(use_rep="X_saturn")` and `scanpy.tl.umap`. With a Parquet directory it also
reads cells.parquet, embeddings.parquet and macrogene_weights.parquet with pyarrow/pandas and
checks that they agree with the h5ad. Prints OK (and a few facts) or fails with an assertion.
"""

import json
import os
import sys

import anndata
import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import scanpy as sc

OBS_COLUMNS = ["barcode", "species", "dataset", "cell_type", "transferred_label", "transfer_confidence"]
CATEGORICAL = ["species", "dataset", "cell_type", "transferred_label"]


def check_h5ad(path):
    adata = anndata.read_h5ad(path)
    n, d = adata.shape
    assert n > 0 and d > 0, adata
    z = adata.obsm["X_saturn"]
    assert z.dtype == np.float32 and z.shape == (n, d), (z.dtype, z.shape)
    assert np.array_equal(np.asarray(adata.X), z), "X and obsm['X_saturn'] differ"
    assert np.isfinite(z).all()
    assert list(adata.obs.columns) == OBS_COLUMNS, list(adata.obs.columns)
    for column in CATEGORICAL:
        assert isinstance(adata.obs[column].dtype, pd.CategoricalDtype), (column, adata.obs[column].dtype)
    assert adata.obs["transfer_confidence"].dtype == np.float64
    assert adata.obs_names.is_unique
    no_label = adata.obs["transferred_label"].isna()
    assert (adata.obs["transfer_confidence"].isna() == no_label).all(), "NaN confidence exactly where no label"
    assert list(adata.var_names) == [f"dim_{i}" for i in range(d)]
    if "X_macrogenes" in adata.obsm:
        assert adata.obsm["X_macrogenes"].shape[0] == n
    meta = adata.uns["satlas"]
    assert meta["kind"] == "finetune", meta["kind"]
    params = json.loads(meta["params"])
    species = params["config"]["species"]
    assert set(adata.obs["species"].cat.categories) <= set(species), (species, adata.obs["species"].cat.categories)
    sc.pp.neighbors(adata, use_rep="X_saturn")
    sc.tl.umap(adata)
    assert adata.obsm["X_umap"].shape == (n, 2)
    print(
        f"{path}: {n} cells x {d} dims, run {int(meta['model_run_id'])} ({meta['kind']}), species "
        f"{ {k: int(v) for k, v in adata.obs['species'].value_counts().items()} }, {int((~no_label).sum())} with a transferred label; "
        f"scanpy neighbors + umap ran"
    )
    return adata


def check_tables(directory, adata):
    cells = pq.read_table(os.path.join(directory, "cells.parquet")).to_pandas()
    assert list(cells.columns) == ["cell_id"] + OBS_COLUMNS, list(cells.columns)
    assert list(cells["cell_id"].astype(str)) == list(adata.obs_names)
    for column in OBS_COLUMNS:
        a = cells[column].reset_index(drop=True)
        b = adata.obs[column].astype(float if column == "transfer_confidence" else object).reset_index(drop=True)
        assert a.isna().equals(b.isna()), column
        assert (a[~a.isna()].values == b[~b.isna()].values).all(), column
    embeddings = pq.read_table(os.path.join(directory, "embeddings.parquet"))
    z = np.stack(embeddings.column("embedding").to_numpy(zero_copy_only=False)).astype(np.float32)
    assert np.array_equal(z, adata.obsm["X_saturn"]), "embeddings.parquet differs from the h5ad"
    weights = pq.read_table(os.path.join(directory, "macrogene_weights.parquet")).to_pandas()
    assert list(weights.columns) == ["species", "gene", "macrogene", "weight", "initial_weight"]
    per_gene = weights.groupby(["species", "gene"]).size()
    assert per_gene.nunique() == 1, "every gene has one row per macrogene"
    assert (weights["weight"] > 0).all() and (weights["initial_weight"] >= 0).all()
    print(
        f"{directory}: cells.parquet and embeddings.parquet agree with the h5ad; "
        f"macrogene_weights.parquet: {len(per_gene)} genes x {per_gene.iloc[0]} macrogenes"
    )


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit(__doc__)
    adata = check_h5ad(sys.argv[1])
    if len(sys.argv) == 3:
        check_tables(sys.argv[2], adata)
    print("OK")


if __name__ == "__main__":
    main()
