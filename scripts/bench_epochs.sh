#!/usr/bin/env bash
# Seconds per SATURN pretraining and fine-tuning epoch on the full Baron data (cells/s) and peak
# memory: satlas vs the same network and losses in PyTorch (scripts/reference/saturn_bench.py,
# built on the parity reference saturn_reference.py), in the same run, on the same cells, genes,
# macrogenes, batch size and thread count. Prints the ratios (goal: satlas <= 0.5 x PyTorch).
#
#   bash scripts/bench_epochs.sh       # needs out/baron.satlas from scripts/eval_baron.sh
#                                      # (its macrogene set) and the reference venv (refenv.sh)
#
# EPOCHS (default 5) epochs of each phase, medians reported. satlas trains a copy of the atlas
# (`satlas pretrain` / `satlas finetune`; per-epoch seconds from training_log, i.e. the training
# loop without the atlas writes between epochs); peak RSS of each process by /usr/bin/time.
# ROUNDS (default 3) alternates the two programs (satlas, PyTorch, satlas, ...), one row per
# round, and prints the median of the rounds' ratios: the machine's speed drifts by 10-20% over
# minutes, for both programs alike, and alternating keeps that out of the ratio.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
ATLAS=${ATLAS:-out/baron.satlas}
DATA=${DATA:-../shared/data}
EPOCHS=${EPOCHS:-5}
BATCH_SIZE=${BATCH_SIZE:-512}
ROUNDS=${ROUNDS:-3}
PY=${SATLAS_REFENV:-$SATLAS_CACHE/refenv}/bin/python
[ -f "$ATLAS" ] || { echo "bench_epochs: no $ATLAS: run scripts/eval_baron.sh first" >&2; exit 1; }
[ -x "$PY" ] || { echo "bench_epochs: no reference venv at $PY: run scripts/refenv.sh" >&2; exit 1; }
cargo build --locked --bin satlas
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
cp "$ATLAS" "$SCRATCH/bench.satlas"
SATLAS=("$CARGO_TARGET_DIR/debug/satlas" --atlas "$SCRATCH/bench.satlas")
query() { "${SATLAS[@]}" sql -c "COPY ($1) TO '$SCRATCH/q.csv' (FORMAT csv, HEADER false)" > /dev/null; cat "$SCRATCH/q.csv"; }
# peak RSS (MB) of one satlas command
rss() { /usr/bin/time -f %M -o "$SCRATCH/rss" "${SATLAS[@]}" "$@" > /dev/null; echo $(($(cat "$SCRATCH/rss") / 1024)); }

SET="(SELECT max(macrogene_set_id) FROM macrogene_sets)"
MACROGENES=$(query "SELECT n_macrogenes FROM macrogene_sets WHERE macrogene_set_id = $SET")
for species in human mouse; do   # the model's genes in weight-column order (MacrogeneSet::read)
  query "SELECT g.symbol FROM gene_macrogene gm JOIN genes g USING (gene_id) JOIN species s USING (species_id)
         WHERE gm.macrogene_set_id = $SET AND s.name = '$species' ORDER BY gm.gene_id" > "$SCRATCH/$species.genes.txt"
done
query "SELECT gm.initial_weights FROM gene_macrogene gm JOIN genes g USING (gene_id) JOIN species s USING (species_id)
       WHERE gm.macrogene_set_id = $SET ORDER BY s.name, gm.gene_id" > "$SCRATCH/weights.txt"
echo "data: $(wc -l < "$SCRATCH/human.genes.txt") human + $(wc -l < "$SCRATCH/mouse.genes.txt") mouse genes," \
  "$MACROGENES macrogenes, batch $BATCH_SIZE, $EPOCHS epochs per phase, $ROUNDS rounds," \
  "load $(cut -d' ' -f1 /proc/loadavg)"

median() { query "SELECT median(l.seconds) FROM training_log l JOIN model_runs r USING (model_run_id)
                  WHERE r.model_run_id = (SELECT max(model_run_id) FROM model_runs WHERE kind = '$1')"; }
value() { awk -v k="$1" '$1 == k { print $2 }' "$SCRATCH/py.out"; }
: > "$SCRATCH/rounds"
for round in $(seq "$ROUNDS"); do
  pre_rss=$(rss pretrain --epochs "$EPOCHS" --seed 0 --batch-size "$BATCH_SIZE" --checkpoint-every 100000)
  fine_rss=$(rss finetune --epochs "$EPOCHS" --seed 0 --batch-size "$BATCH_SIZE" --checkpoint-every 100000)
  CELLS=$(query "SELECT count(*) FROM cell_embeddings WHERE model_run_id = (SELECT max(model_run_id) FROM model_runs)")
  RS_PRE=$(median pretrain)
  RS_FINE=$(median finetune)
  "$PY" scripts/reference/saturn_bench.py --weights "$SCRATCH/weights.txt" --batch-size "$BATCH_SIZE" \
    --pretrain-epochs "$EPOCHS" --finetune-epochs "$EPOCHS" \
    --h5ad "$DATA/baron_pancreas/raw-Baron_human.h5ad" --genes "$SCRATCH/human.genes.txt" \
    --h5ad "$DATA/baron_pancreas/raw-Baron_mouse.h5ad" --genes "$SCRATCH/mouse.genes.txt" \
    2> "$SCRATCH/py.err" > "$SCRATCH/py.out" || { cat "$SCRATCH/py.err" >&2; exit 1; }
  PY_CELLS=$(value cells)
  [ "$PY_CELLS" = "$CELLS" ] || echo "warning: satlas trained on $CELLS cells, PyTorch on $PY_CELLS" >&2
  echo "$round $CELLS $RS_PRE $RS_FINE $(value pretrain_epoch_seconds_median) $(value finetune_epoch_seconds_median)" \
    "$pre_rss $fine_rss $(value peak_rss_mb) $(value threads)" >> "$SCRATCH/rounds"
done

# one row per round and phase, then the median ratio over the rounds
sort -n "$SCRATCH/rounds" | awk '
  function median(a, n,   i, j, t) {
    for (i = 2; i <= n; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
  }
  BEGIN {
    printf "| round | phase | satlas s/epoch | PyTorch s/epoch | satlas cells/s | PyTorch cells/s | satlas / PyTorch time |\n"
    printf "| ---: | --- | ---: | ---: | ---: | ---: | ---: |\n"
  }
  {
    c = $2; n++
    printf "| %d | pretraining | %.3f | %.3f | %.0f | %.0f | %.2f |\n", $1, $3, $5, c / $3, c / $5, $3 / $5
    printf "| %d | fine-tuning | %.3f | %.3f | %.0f | %.0f | %.2f |\n", $1, $4, $6, c / $4, c / $6, $4 / $6
    pre[n] = $3 / $5; fine[n] = $4 / $6
    rss = rss sprintf("%s%d/%d/%d", n > 1 ? ", " : "", $7, $8, $9); threads = $10
  }
  END {
    printf "median ratio over %d rounds: pretraining %.2f, fine-tuning %.2f\n", n, median(pre, n), median(fine, n)
    printf "peak RSS MB per round (satlas pretrain/finetune/PyTorch both phases): %s; %d cells; torch threads %d\n", rss, c, threads
  }'
