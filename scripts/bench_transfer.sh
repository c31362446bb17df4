#!/usr/bin/env bash
# End-to-end label-transfer time for N_QUERY query cells against N_REF reference cells, with the
# satlas CLI (dev build) on a scratch atlas of SYNTHETIC 256-d embeddings (no training: the
# embeddings are written straight into cell_embeddings of a finished finetune run; 20 cell
# types, each a random centre plus uniform noise, the same types in both species).
#   bash scripts/bench_transfer.sh [N_QUERY] [N_REF]     (defaults 10000 10000)
# Times `satlas index build` (over all N_REF + N_QUERY cells) and `satlas transfer --reference
# human --query query --out labels.csv` (load the stored index, kNN of every query cell, vote,
# store in label_transfers, write the CSV) separately; prints the machine's load.
set -euo pipefail
N_QUERY=${1:-10000}
N_REF=${2:-10000}
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --locked --bin satlas 2>&1 | tail -1
DIR=$(mktemp -d)
trap 'rm -rf "$DIR"' EXIT
satlas() { nice "$CARGO_TARGET_DIR/debug/satlas" --atlas "$DIR/bench.satlas" "$@"; }
# "wall user+sys" seconds of a command (its output goes to $DIR/out.txt).
seconds() {
  local TIMEFORMAT='%R %U %S'
  { time "$@" > "$DIR/out.txt" 2> "$DIR/err.txt"; } 2>&1 | awk '{ printf "%s %s", $1, $2 + $3 }'
}

satlas init > /dev/null
satlas sql -c "
SELECT setseed(0.5);
INSERT INTO species (name) VALUES ('human'), ('mouse');
INSERT INTO datasets (name, species_id, source_file, checksum, format, label_column, n_cells,
                      n_genes, n_genes_with_protein, nnz)
VALUES ('reference', 1, 'synthetic', 'synthetic-reference', 'synthetic', 'cell_type', $N_REF, 0, 0, 0),
       ('query', 2, 'synthetic', 'synthetic-query', 'synthetic', 'cell_type', $N_QUERY, 0, 0, 0);
INSERT INTO cells
SELECT i, CASE WHEN i <= $N_REF THEN 1 ELSE 2 END, 'cell' || i, 'type' || (hash(i) % 20), 0, 0
FROM range(1, $N_REF + $N_QUERY + 1) t(i);
INSERT INTO model_runs (kind, params, status) VALUES ('finetune', '{}', 'done');
INSERT INTO cell_embeddings
SELECT 1, cell_id,
       list_transform(range(256), lambda d: ((hash(cell_type, d) % 2000) / 1000.0 - 1.0 + random() - 0.5)::FLOAT),
       NULL
FROM cells;" > /dev/null
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
read -r build build_cpu <<< "$(seconds satlas index build)"
read -r transfer transfer_cpu <<< "$(seconds satlas transfer --reference human --query query --out "$DIR/labels.csv")"
echo "atlas: $N_REF reference (human) + $N_QUERY query (mouse) cells, synthetic 256-d embeddings, 20 types"
printf 'index build (%d cells): %.1f s wall, %.1f s CPU\n' $((N_REF + N_QUERY)) "$build" "$build_cpu"
printf 'transfer of %d query cells (k = 15, index loaded from the atlas, CSV written): %.1f s wall (%.0f cells/s), %.1f s CPU\n' \
  "$N_QUERY" "$transfer" "$(echo "$N_QUERY / $transfer" | bc -l)" "$transfer_cpu"
satlas sql --read-only -c "
SELECT count(*) AS cells, round(avg((t.predicted_label = c.cell_type)::INT), 4) AS accuracy,
       sum((t.predicted_label = 'unknown')::INT) AS unknown
FROM label_transfers t JOIN cells c USING (cell_id);"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
