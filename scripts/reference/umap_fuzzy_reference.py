"""umap-learn's fuzzy simplicial set on a tiny kNN graph, for tests/integration/plot.rs.

Writes fixtures/reference/umap_fuzzy.json: 12 seeded points in 3-d, their exact euclidean kNN
(n_neighbors 5, the point itself first, as umap-learn counts), and umap-learn's symmetric
membership matrix (umap.umap_.fuzzy_simplicial_set with those knn_indices / knn_dists), plus
find_ab_params(1.0, 0.1).

    /root/.cache/satlas/umap-venv/bin/python scripts/reference/umap_fuzzy_reference.py
"""

import json

import numpy as np
import umap
from umap.umap_ import find_ab_params, fuzzy_simplicial_set

N_NEIGHBORS = 5

rng = np.random.default_rng(3)
x = np.concatenate([rng.normal(0, 1, (6, 3)), rng.normal(4, 1, (6, 3))]).astype(np.float32)
d = np.sqrt(((x[:, None, :] - x[None, :, :]) ** 2).sum(-1))
order = np.argsort(d, axis=1, kind="stable")[:, :N_NEIGHBORS]
dists = np.take_along_axis(d, order, axis=1)
graph, _, _ = fuzzy_simplicial_set(
    x, N_NEIGHBORS, 0, "euclidean", knn_indices=order, knn_dists=dists
)
a, b = find_ab_params(1.0, 0.1)
out = {
    "umap_learn": umap.__version__,
    "n_neighbors": N_NEIGHBORS,
    "knn_indices": order[:, 1:].tolist(),
    "knn_dists": dists[:, 1:].astype(float).tolist(),
    "membership": graph.toarray().astype(float).tolist(),
    "a": float(a),
    "b": float(b),
}
with open("fixtures/reference/umap_fuzzy.json", "w") as f:
    json.dump(out, f, indent=1)
print("wrote fixtures/reference/umap_fuzzy.json")
