#!/usr/bin/env bash
# Scale bench, ingest stages: N synthetic cells (half human, half mouse, `satlas simulate` from
# the full Baron files of ../shared/data, seed 0) ingested into a fresh atlas with both real
# proteomes. One table row per stage: wall time, CPU time (user + sys), peak RSS, and the atlas
# file size after it, plus ingest cells/s and atlas bytes per stored non-zero.
#   bash scripts/bench_scale.sh N [DIR]      (DIR: where the files go, default a temporary one)
# Training, embedding, index and transfer stages are not in it yet (issue 17 parts 3-4).
set -euo pipefail
N=${1:?usage: bench_scale.sh N_CELLS [DIR]}
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --locked --bin satlas 2>&1 | tail -1
DATA=$(realpath ../shared/data)
if [ -n "${2:-}" ]; then DIR=$2; mkdir -p "$DIR"; else
  DIR=$(mktemp -d); trap 'rm -rf "$DIR"' EXIT
fi
ATLAS=$DIR/scale.satlas
rm -f "$ATLAS" "$ATLAS.wal" "$DIR/rates.txt"
BIN=$CARGO_TARGET_DIR/debug/satlas
HALF=$((N / 2))

# Runs one stage under /usr/bin/time -v and prints its row.
stage() {
  local name=$1; shift
  /usr/bin/time -v -o "$DIR/time.txt" nice -n 5 "$BIN" --atlas "$ATLAS" "$@" > "$DIR/out.txt"
  local wall cpu rss size
  wall=$(awk -F': ' '/Elapsed/ { n = split($2, t, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + t[i]; print s }' "$DIR/time.txt")
  cpu=$(awk -F': ' '/User time/ { u = $2 } /System time/ { s = $2 } END { print u + s }' "$DIR/time.txt")
  rss=$(awk -F': ' '/Maximum resident/ { printf "%.0f", $2 / 1024 }' "$DIR/time.txt")
  size=$(stat -c %s "$ATLAS" 2> /dev/null || echo 0)
  printf "| %-26s | %8.1f | %8.1f | %9s | %9.1f |\n" "$name" "$wall" "$cpu" "$rss" "$(echo "$size / 1048576" | bc -l)"
  echo "$wall" > "$DIR/wall.txt"
}

echo "load before: $(cut -d' ' -f1-3 /proc/loadavg); $(nproc) cores; $N cells ($HALF per species)"
echo "| stage                      | wall (s) | CPU (s)  | peak RSS (MB) | atlas (MB) |"
echo "|----------------------------|----------|----------|---------------|------------|"
for species in human mouse; do
  stage "simulate $species $HALF" simulate --like "$DATA/baron_pancreas/raw-Baron_$species.h5ad" \
    --label cell_type1 --cells "$HALF" --seed 0 --out "$DIR/$species.h5ad"
done
stage "init" init
for species in human mouse; do
  stage "add-proteome $species" add-proteome --species "$species" \
    "$DATA/proteins/${species}_swissprot2014_baron_genes.fa"
done
before=$(stat -c %s "$ATLAS")
for species in human mouse; do
  stage "add-dataset $species $HALF" add-dataset --species "$species" --label cell_type1 \
    --name "sim_$species" "$DIR/$species.h5ad"
  echo "$species: $(echo "$HALF / $(cat "$DIR/wall.txt")" | bc) cells/s" >> "$DIR/rates.txt"
done
after=$(stat -c %s "$ATLAS")
# One value of a query (satlas sql prints a table: the value is on its fourth line).
value() { "$BIN" --atlas "$ATLAS" sql --read-only -c "$1" | awk -F'|' 'NR == 4 { gsub(/ /, "", $2); print $2 }'; }
nnz=$(value "SELECT sum(nnz) FROM datasets")
counts_bytes=$(value "SELECT count(DISTINCT block_id) * 262144 FROM pragma_storage_info('counts')")
echo
cat "$DIR/rates.txt"
for species in human mouse; do echo "$species.h5ad: $(stat -c %s "$DIR/$species.h5ad") bytes"; done
echo "non-zeros: $nnz; counts table: $(echo "scale=2; $counts_bytes / $nnz" | bc) bytes per non-zero;" \
  "atlas file growth by the two ingests: $(echo "scale=2; ($after - $before) / $nnz" | bc) bytes per non-zero"
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)"
