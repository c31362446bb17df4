"""satlas' stored UMAP layout against umap-learn on the same embeddings: trustworthiness at k=15.

Reads one model run's cell embeddings and its stored layout (umap_layouts / umap_coordinates,
written by `satlas layout`, `satlas plot umap` or `satlas report`) from an atlas file with the
PyPI duckdb package (1.5.6, the release satlas links), runs umap-learn on the embeddings with
the same settings (n_neighbors 15, min_dist 0.1, cosine metric, the layout's seed) and prints the
trustworthiness (sklearn.manifold.trustworthiness, k=15, cosine in the embedding space) of both
layouts and umap-learn's time. Exit status 1 when satlas' is more than 0.02 below umap-learn's.

Trustworthiness needs all pairwise distances, so above --sample cells (default 10,000) it is
computed on the same seeded random subset of cells for both layouts (each layout still computed
on all cells).

    python scripts/reference/umap_compare.py ATLAS [--run N] [--sample N]

Run by scripts/umap_compare.sh, which creates the venv (umap-learn, scikit-learn, numpy,
duckdb==1.5.6) under /root/.cache/satlas/umap-venv.
"""

import argparse
import json
import sys
import time

import duckdb
import numpy as np
import umap
from sklearn.manifold import trustworthiness

TOLERANCE = 0.02


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("atlas")
    parser.add_argument("--run", type=int)
    parser.add_argument("--sample", type=int, default=10_000)
    args = parser.parse_args()

    con = duckdb.connect(args.atlas, read_only=True)
    if args.run is None:
        row = con.execute("SELECT max(model_run_id) FROM umap_layouts").fetchone()
        args.run = row[0]
    if args.run is None:
        sys.exit(f"{args.atlas} has no stored layout: run `satlas layout` first")
    params = json.loads(
        con.execute(
            "SELECT params FROM umap_layouts WHERE model_run_id = ?", [args.run]
        ).fetchone()[0]
    )
    emb = con.execute(
        "SELECT cell_id, embedding FROM cell_embeddings WHERE model_run_id = ? ORDER BY cell_id",
        [args.run],
    ).fetchnumpy()
    lay = con.execute(
        "SELECT cell_id, x, y FROM umap_coordinates WHERE model_run_id = ? ORDER BY cell_id",
        [args.run],
    ).fetchnumpy()
    if not np.array_equal(emb["cell_id"], lay["cell_id"]):
        sys.exit("the stored layout does not cover the run's embeddings: recompute it")
    x = np.stack(emb["embedding"]).astype(np.float32)
    ours = np.stack([lay["x"], lay["y"]], axis=1).astype(np.float32)
    n = x.shape[0]
    print(f"run {args.run}: {n} cells x {x.shape[1]} dims; satlas params {params}")

    start = time.perf_counter()
    reference = umap.UMAP(
        n_neighbors=params["n_neighbors"],
        min_dist=params["min_dist"],
        metric="cosine",
        random_state=params["seed"],
    ).fit_transform(x)
    seconds = time.perf_counter() - start
    print(f"umap-learn {umap.__version__}: {seconds:.1f} s (random_state set: single-threaded)")

    rows = np.arange(n)
    if n > args.sample:
        rows = np.sort(np.random.default_rng(0).choice(n, args.sample, replace=False))
        print(f"trustworthiness on a random subset of {args.sample} cells")
    t_ours = trustworthiness(x[rows], ours[rows], n_neighbors=15, metric="cosine")
    t_ref = trustworthiness(x[rows], reference[rows], n_neighbors=15, metric="cosine")
    print(f"trustworthiness k=15: satlas {t_ours:.4f}, umap-learn {t_ref:.4f}, "
          f"difference {t_ours - t_ref:+.4f} (tolerance -{TOLERANCE})")
    if t_ours < t_ref - TOLERANCE:
        sys.exit("satlas' layout is less trustworthy than umap-learn's beyond the tolerance")


if __name__ == "__main__":
    main()
