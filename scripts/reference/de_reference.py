"""Reference for satlas' macrogene differential expression (src/de/wilcoxon.rs): scanpy's
rank_genes_groups(method="wilcoxon", tie_correct=True, corr_method="benjamini-hochberg") on a small
fixed matrix shaped like stored macrogene expression (ReLU output: many exact zeros; values rounded
to 0.05 so non-zero ties occur too), each group vs the rest and vs reference group "g1".

Writes fixtures/reference/de_wilcoxon.safetensors:
  x          float32 cells x features (the matrix)
  groups     int64   group index per cell (groups are named g0, g1, ...)
  {rest,ref_g1}_{scores,logfc,pvals,pvals_adj}  float64 tested groups x features, rows in group
             order (ref_g1 leaves g1 out), columns in feature order

Run: ~/.cache/satlas/refenv/bin/python scripts/reference/de_reference.py
"""
import os
from importlib.metadata import version

import anndata
import numpy as np
import pandas as pd
import scanpy as sc
import torch
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "fixtures", "reference")
rng = np.random.default_rng(20240607)
SIZES = [30, 24, 18, 9, 3]  # the last group is small: few observations, as in real cell types
N_FEATURES = 40

groups = np.concatenate([np.full(n, g) for g, n in enumerate(SIZES)])
effects = rng.normal(0.0, 0.8, size=(len(SIZES), N_FEATURES))
x = np.maximum(rng.normal(0.0, 1.0, size=(len(groups), N_FEATURES)) + effects[groups], 0.0)
x = np.round(x * 20.0) / 20.0
x[:, 0] = 0.0  # an all-zero feature: z undefined, scanpy reports 0 and p = 1
x[:, 1] = (groups == 0) * 1.5  # perfectly separated, all tied within groups
x = x.astype(np.float32)
names = [f"g{g}" for g in range(len(SIZES))]

adata = anndata.AnnData(
    X=x,
    obs=pd.DataFrame({"group": pd.Categorical([names[g] for g in groups], categories=names)},
                     index=[f"c{i}" for i in range(len(groups))]),
    var=pd.DataFrame(index=[f"m{j}" for j in range(N_FEATURES)]),
)


def table(key, tested):
    """groups x features arrays of each statistic, in feature order."""
    out = {}
    frames = {g: sc.get.rank_genes_groups_df(adata, group=g, key=key).set_index("names")
              for g in tested}
    for stat, column in [("scores", "scores"), ("logfc", "logfoldchanges"), ("pvals", "pvals"),
                         ("pvals_adj", "pvals_adj")]:
        out[stat] = np.stack([frames[g].loc[adata.var_names, column].to_numpy(np.float64)
                              for g in tested])
    return out


tensors = {"x": torch.from_numpy(x), "groups": torch.from_numpy(groups.astype(np.int64))}
runs = [("rest", "rest", names), ("ref_g1", "g1", [n for n in names if n != "g1"])]
for prefix, reference, tested in runs:
    sc.tl.rank_genes_groups(adata, "group", method="wilcoxon", tie_correct=True,
                            reference=reference, key_added=prefix, n_genes=N_FEATURES)
    for stat, values in table(prefix, tested).items():
        tensors[f"{prefix}_{stat}"] = torch.from_numpy(np.ascontiguousarray(values))
save_file(tensors, os.path.join(OUT, "de_wilcoxon.safetensors"))
print(f"scanpy {version('scanpy')}: {x.shape[0]} cells x {x.shape[1]} features, groups {SIZES}; "
      f"zeros {np.mean(x == 0):.2f}; rest scores range "
      f"{tensors['rest_scores'].min():.3f}..{tensors['rest_scores'].max():.3f}")
