"""hnswlib (PyPI) side of scripts/bench_index.sh: the same points, queries and HNSW
parameters as the vendored hnsw_rs' `examples/compare.rs`, and the side-by-side report.

    python hnswlib_compare.py DIR --truth   exact top-10 of DIR/queries.npy among DIR/points.npy
                                            (truth.npy) and among points + extra (truth_after.npy),
                                            numpy matmul on the L2-normalised vectors
    python hnswlib_compare.py DIR           hnswlib on DIR/*.npy, then the comparison with
                                            DIR/hnsw_rs.json (written by compare.rs)

hnswlib: space "cosine", M and ef_construction and thread count as hnsw_rs' run, points added in
the stored order (cluster order for the synthetic set) in one add_items call; ef swept with
single-thread queries (one knn_query over all queries, num_threads=1: the loop runs in C++);
save_index size and load_index time; then the extra points are added to the reloaded index
(resized) and recall is measured again against truth_after.npy. Unless HNSWLIB_SHUFFLED=0, a
second hnswlib index is built from the same points added in a seeded random order (hnswlib
follows the input order; hnsw_rs shuffles internally) and swept too, for reference.
"""
import json
import os
import sys
import time
from importlib.metadata import version

import hnswlib
import numpy as np

K = 10
RECALL_LEVELS = [0.80, 0.90, 0.95, 0.98, 0.99]


def exact(points, queries, k=K, block=65536):
    """Row numbers of the k largest dot products (vectors are unit: smallest cosine distance)."""
    best_d = np.full((len(queries), k), -np.inf, dtype=np.float32)
    best_i = np.zeros((len(queries), k), dtype=np.int64)
    for start in range(0, len(points), block):
        d = queries @ points[start:start + block].T
        top = np.argpartition(-d, min(k, d.shape[1] - 1), axis=1)[:, :k]
        cand_d = np.concatenate([best_d, np.take_along_axis(d, top, axis=1)], axis=1)
        cand_i = np.concatenate([best_i, top + start], axis=1)
        keep = np.argsort(-cand_d, axis=1, kind="stable")[:, :k]
        best_d = np.take_along_axis(cand_d, keep, axis=1)
        best_i = np.take_along_axis(cand_i, keep, axis=1)
    return best_i.astype(np.int32)


def recall(found, truth):
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def qps_at(curve, level):
    """(q/s where the (recall, q/s) curve reaches `level`, linear between sweep points; whether it
    is a lower bound because even the fastest setting swept is above `level`), or None."""
    curve = sorted(curve)
    if curve and curve[0][0] >= level:
        return max(q for _, q in curve), True
    for (r0, q0), (r1, q1) in zip(curve, curve[1:]):
        if r0 <= level <= r1:
            return (q0 if r1 == r0 else q0 + (q1 - q0) * (level - r0) / (r1 - r0)), False
    return None


def sweep(index, queries, truth, efs):
    index.set_num_threads(1)
    out = []
    for ef in efs:
        index.set_ef(max(ef, K))
        start = time.perf_counter()
        labels, _ = index.knn_query(queries, k=K, num_threads=1)
        qps = len(queries) / (time.perf_counter() - start)
        out.append({"ef": ef, "recall": recall(labels, truth), "qps": qps})
    return out


def main(directory):
    load = lambda name: np.load(os.path.join(directory, name))
    if "--truth" in sys.argv:
        points, queries, extra = load("points.npy"), load("queries.npy"), load("extra.npy")
        start = time.perf_counter()
        np.save(os.path.join(directory, "truth.npy"), exact(points, queries))
        np.save(os.path.join(directory, "truth_after.npy"),
                exact(np.concatenate([points, extra]), queries))
        print(f"exact top-{K}: {time.perf_counter() - start:.1f}s (numpy)")
        return
    points, queries, extra = load("points.npy"), load("queries.npy"), load("extra.npy")
    truth, truth_after = load("truth.npy"), load("truth_after.npy")
    with open(os.path.join(directory, "hnsw_rs.json")) as f:
        ours = json.load(f)
    m, efc, threads = ours["m"], ours["ef_construction"], ours["threads"]
    efs = [p["ef"] for p in ours["sweep"]]
    n, dim = points.shape

    index = hnswlib.Index(space="cosine", dim=dim)
    index.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=100)
    index.set_num_threads(threads)
    start = time.perf_counter()
    index.add_items(points, np.arange(n))
    build = time.perf_counter() - start
    curve = sweep(index, queries, truth, efs)
    shuffled = None
    if os.environ.get("HNSWLIB_SHUFFLED", "1") == "1":
        # hnswlib inserts in the given order: the same points in a seeded random order, for
        # reference (hnsw_rs shuffles internally).
        order = np.random.default_rng(0).permutation(n)
        other = hnswlib.Index(space="cosine", dim=dim)
        other.init_index(max_elements=n, M=m, ef_construction=efc, random_seed=100)
        other.set_num_threads(threads)
        start = time.perf_counter()
        other.add_items(points[order], order)
        shuffled = (time.perf_counter() - start, sweep(other, queries, truth, efs))
        del other
    path = os.path.join(directory, "hnswlib.bin")
    index.save_index(path)
    size = os.path.getsize(path)
    del index
    start = time.perf_counter()
    index = hnswlib.Index(space="cosine", dim=dim)
    index.load_index(path, max_elements=n + len(extra))
    load_s = time.perf_counter() - start
    index.set_num_threads(threads)
    start = time.perf_counter()
    index.add_items(extra, np.arange(n, n + len(extra)))
    insert_extra = time.perf_counter() - start
    after = sweep(index, queries, truth_after, efs)

    print(f"\n## {ours['set']}, n={n}, dim={dim}, M={m}, ef_construction={efc}, {threads} threads "
          f"(hnswlib {version('hnswlib')})\n")
    print("| ef | hnsw_rs recall@10 | hnswlib recall@10 | hnsw_rs q/s | hnswlib q/s | hnsw_rs / hnswlib q/s |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for a, b in zip(ours["sweep"], curve):
        print(f"| {a['ef']} | {a['recall']:.4f} | {b['recall']:.4f} | {a['qps']:.0f} | {b['qps']:.0f} "
              f"| {a['qps'] / b['qps']:.2f} |")
    if shuffled is not None:
        print(f"\nhnswlib with the points added in a seeded random order (build {shuffled[0]:.1f}s):\n")
        print("| ef | hnsw_rs recall@10 | hnswlib shuffled recall@10 | hnsw_rs q/s | hnswlib shuffled q/s | hnsw_rs / hnswlib q/s |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: |")
        for a, b in zip(ours["sweep"], shuffled[1]):
            print(f"| {a['ef']} | {a['recall']:.4f} | {b['recall']:.4f} | {a['qps']:.0f} | {b['qps']:.0f} "
                  f"| {a['qps'] / b['qps']:.2f} |")
    print("\nq/s at equal recall (single thread, interpolated between sweep points):\n")
    print("| recall@10 | hnsw_rs q/s | hnswlib q/s | hnsw_rs / hnswlib | hnswlib shuffled q/s | hnsw_rs / hnswlib shuffled |")
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    shown = lambda v: "-" if v is None else f"{'>=' if v[1] else ''}{v[0]:.0f}"
    ratio = lambda a, b: "-" if a is None or b is None else f"{a[0] / b[0]:.2f}"
    mine = [(p["recall"], p["qps"]) for p in ours["sweep"]]
    theirs = [(p["recall"], p["qps"]) for p in curve]
    theirs_shuffled = [] if shuffled is None else [(p["recall"], p["qps"]) for p in shuffled[1]]
    for level in RECALL_LEVELS:
        a, b, c = qps_at(mine, level), qps_at(theirs, level), qps_at(theirs_shuffled, level)
        print(f"| {level:.2f} | {shown(a)} | {shown(b)} | {ratio(a, b)} | {shown(c)} | {ratio(a, c)} |")
    print("\n| | hnsw_rs | hnswlib | hnsw_rs / hnswlib |")
    print("| --- | ---: | ---: | ---: |")
    rows = [
        ("build (s)", ours["build_seconds"], build),
        ("index bytes (MB)", ours["index_bytes"] / 1e6, size / 1e6),
        ("load (s)", ours["load_seconds"], load_s),
        (f"insert {len(extra)} into the reloaded index (s)", ours["insert_extra_seconds"], insert_extra),
    ]
    for name, a, b in rows:
        print(f"| {name} | {a:.2f} | {b:.2f} | {a / b:.2f} |")
    print("\nrecall@10 after the extra insert (against the exact top-10 of points + extra):\n")
    print("| ef | hnsw_rs | hnswlib |")
    print("| ---: | ---: | ---: |")
    for a, b in zip(ours["sweep_after"], after):
        print(f"| {a['ef']} | {a['recall']:.4f} | {b['recall']:.4f} |")
    print(f"\nhnsw_rs recall@10 at ef 128 right after reload: {ours['recall_reloaded']:.4f}")
    os.remove(path)


if __name__ == "__main__":
    main(sys.argv[1])
