"""hnswlib (PyPI) on the points satlas' index bench wrote, with the same HNSW parameters, and the
comparison of query throughput at equal recall.

Reads DIR/points.npy, DIR/queries.npy, DIR/truth.npy (exact cosine top-10 row numbers computed by
satlas) and DIR/satlas_synthetic.json (satlas' build time and ef_search sweep), written by
`SATLAS_BENCH_NPY=DIR cargo test --bench index -- --bench`. Builds an hnswlib cosine index
(M=16, ef_construction=200, as satlas' defaults; all threads), sweeps ef_search measuring
recall@10 and single-thread QPS (one knn_query over all queries with num_threads=1: the loop runs
in C++), then prints QPS at the recall levels both libraries reach (each curve interpolated
linearly between its sweep points) and the ratio hnswlib / satlas.

Run: scripts/bench_index.sh [N] (or ~/.cache/satlas/refenv/bin/python scripts/reference/hnswlib_bench.py DIR)
"""
import json
import os
import sys
import time
from importlib.metadata import version

import hnswlib
import numpy as np

M, EF_CONSTRUCTION, K = 16, 200, 10
EF_SEARCH = [10, 16, 32, 64, 128, 256, 512]
RECALL_LEVELS = [0.80, 0.90, 0.95, 0.98, 0.99]


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def qps_at(curve, level):
    """(QPS where the (recall, qps) curve reaches `level`, linear between sweep points; whether
    it is a lower bound because even the fastest setting swept has a higher recall), or None
    if the curve never reaches `level`."""
    curve = sorted(curve)
    if curve and curve[0][0] >= level:
        return max(q for _, q in curve), True
    for (r0, q0), (r1, q1) in zip(curve, curve[1:]):
        if r0 <= level <= r1:
            return (q0 if r1 == r0 else q0 + (q1 - q0) * (level - r0) / (r1 - r0)), False
    return None


def main(directory):
    points = np.load(os.path.join(directory, "points.npy"))
    queries = np.load(os.path.join(directory, "queries.npy"))
    truth = np.load(os.path.join(directory, "truth.npy"))
    with open(os.path.join(directory, "satlas_synthetic.json")) as f:
        satlas = json.load(f)
    threads = satlas["threads"]

    index = hnswlib.Index(space="cosine", dim=points.shape[1])
    index.init_index(max_elements=len(points), M=M, ef_construction=EF_CONSTRUCTION, random_seed=0)
    index.set_num_threads(threads)
    start = time.perf_counter()
    index.add_items(points, np.arange(len(points)))
    build = time.perf_counter() - start
    print(f"hnswlib {version('hnswlib')}: "
          f"n={len(points)} dim={points.shape[1]} M={M} ef_construction={EF_CONSTRUCTION}: "
          f"build {build:.1f}s ({len(points) / build:.0f} points/s, {threads} threads)")
    index.set_num_threads(1)
    curve = []
    for ef in EF_SEARCH:
        index.set_ef(max(ef, K))
        start = time.perf_counter()
        labels, _ = index.knn_query(queries, k=K, num_threads=1)
        qps = len(queries) / (time.perf_counter() - start)
        r = recall(labels, truth)
        curve.append((r, qps))
        print(f"hnswlib: ef_search={ef}: recall@{K} {r:.4f}, {qps:.0f} q/s (single thread)")

    ours = [(p["recall"], p["qps"]) for p in satlas["sweep"]]
    print()
    print(f"build: satlas {satlas['build_seconds']:.1f}s, hnswlib {build:.1f}s "
          f"(hnswlib x{satlas['build_seconds'] / build:.1f} faster)")
    print("| recall@10 | satlas q/s | hnswlib q/s | hnswlib / satlas |")
    print("| ---: | ---: | ---: | ---: |")
    shown = lambda m: "-" if m is None else f"{'>=' if m[1] else ''}{m[0]:.0f}"
    for level in RECALL_LEVELS:
        a, b = qps_at(ours, level), qps_at(curve, level)
        ratio = "-" if a is None or b is None else f"{b[0] / a[0]:.1f}"
        print(f"| {level:.2f} | {shown(a)} | {shown(b)} | {ratio} |")
    print(">=: even the fastest ef_search swept exceeds this recall; -: the curve never reaches it")


if __name__ == "__main__":
    main(sys.argv[1])
