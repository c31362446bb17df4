#!/usr/bin/env python3
"""Summarises scripts/eval_baron.sh's results.csv: for each setting (saturn, incremental, shuffled,
baseline) and each of SATURN's headline metrics, the median, the inter-quartile range and the
worst value over the seeds, as a Markdown table (swapped_cells: the share of cells in classes
called by another class's label, see `satlas eval`; lower is better); then each setting's
training seconds per seed.

    python3 scripts/eval_summary.py out/eval/results.csv [more results.csv ...]

Several files (runs of the script with other SEEDS or SETTINGS) are pooled.

Standard library only.
"""

import csv
import statistics
import sys
from collections import defaultdict

METRICS = [
    ("human->mouse", "lr_accuracy"),
    ("mouse->human", "lr_accuracy"),
    ("human->mouse", "lr_balanced_accuracy"),
    ("mouse->human", "lr_balanced_accuracy"),
    ("human->mouse", "knn_accuracy"),
    ("mouse->human", "knn_accuracy"),
    ("both", "mixing_mean"),
    ("human->mouse", "swapped_cells"),
    ("mouse->human", "swapped_cells"),
]
# Lower is better for these: their worst value is the maximum.
LOWER_IS_BETTER = {"swapped_cells"}


def quartiles(values):
    values = sorted(values)
    if len(values) == 1:
        return values[0], values[0]
    q = statistics.quantiles(values, n=4, method="inclusive")
    return q[0], q[2]


def main(paths):
    values = defaultdict(list)
    seconds = defaultdict(dict)
    for path in paths:
        with open(path, newline="") as f:
            for row in csv.DictReader(f):
                key = (row["setting"], row["direction"], row["metric"])
                values[key].append(float(row["value"]))
                seconds[row["setting"]][int(row["seed"])] = int(float(row["seconds"]))
    settings = [s for s in ("saturn", "incremental", "shuffled", "baseline") if s in seconds]
    n = {s: len(seconds[s]) for s in settings}
    print("| metric | " + " | ".join(f"{s} (n={n[s]}) median [IQR] worst" for s in settings) + " |")
    print("| --- |" + " ---: |" * len(settings))
    for direction, metric in METRICS:
        cells = []
        for s in settings:
            v = values.get((s, direction, metric))
            if not v:
                cells.append("")
                continue
            q1, q3 = quartiles(v)
            worst = max(v) if metric in LOWER_IS_BETTER else min(v)
            cells.append(f"{statistics.median(v):.3f} [{q1:.3f}-{q3:.3f}] {worst:.3f}")
        print(f"| {direction} {metric} | " + " | ".join(cells) + " |")
    for s in settings:
        if any(seconds[s].values()):
            per_seed = ", ".join(f"{seed}: {t} s" for seed, t in sorted(seconds[s].items()))
            print(f"\n{s} training + evaluation time per seed: {per_seed}")


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1:])
