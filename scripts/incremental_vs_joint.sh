#!/usr/bin/env bash
# A species added incrementally vs the same species in a joint training, on the bundled fixtures.
#
#   joint:       human + mouse datasets -> build-macrogenes -> pretrain -> finetune
#   incremental: human dataset only     -> build-macrogenes -> pretrain -> finetune -> index build,
#                then the mouse dataset -> add-species --species mouse
#
# Prints, for both atlases, `satlas eval --a human --b mouse` (logistic regression and kNN label
# transfer human -> mouse / mouse -> human through cell_ontology_class, species mixing), the
# accuracy of `satlas transfer --reference human --query baron_mouse` (sql/examples/
# transfer_accuracy.sql), and for the incremental atlas how far the human cells' embeddings moved
# between the finetune run and the add-species run (max |diff|; must be 0).
#
# Both fixture proteomes are real Swiss-Prot sequences (mouse: fixtures/proteins/mouse.fa.gz), at
# fixture size (215 + 205 cells): a check of adding a species, not an integration benchmark.
#
# Usage: bash scripts/incremental_vs_joint.sh    (env: SEED, PRETRAIN_EPOCHS, FINETUNE_EPOCHS,
#        ADD_EPOCHS, OUT; defaults 0, 30, 20, 30, out/incremental)
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh
cargo build --locked --bin satlas
SEED=${SEED:-0}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-30}
FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-20}
ADD_EPOCHS=${ADD_EPOCHS:-30}
OUT=${OUT:-out/incremental}
mkdir -p "$OUT"
rm -f "$OUT"/joint.satlas* "$OUT"/incremental.satlas*
satlas() { "$CARGO_TARGET_DIR/debug/satlas" --atlas "$atlas" "$@"; }
step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

# proteomes and ESM-2 t6 gene embeddings of both species, as scripts/demo.sh
setup() {
    satlas init
    satlas add-proteome --species human fixtures/proteins/human.fa.gz
    satlas add-proteome --species mouse fixtures/proteins/mouse.fa.gz
    satlas import-embeddings --model esm2_t6_8M --species human \
        --genes fixtures/embeddings/esm2_t6_human.genes.txt fixtures/embeddings/esm2_t6_human.npy
    satlas import-embeddings --model esm2_t6_8M --species mouse fixtures/embeddings/esm2_t6_mouse.parquet
}
add_human() { satlas add-dataset --species human --label cell_type1 --name baron_human fixtures/baron/human.h5ad; }
add_mouse() { satlas add-dataset --species mouse --label cell_type1 --name baron_mouse fixtures/baron/mouse.h5ad; }
train() {
    satlas build-macrogenes -n 200 --n-top-genes 1000 --seed "$SEED"
    satlas pretrain --epochs "$PRETRAIN_EPOCHS" --seed "$SEED" --batch-size 256
    satlas finetune --epochs "$FINETUNE_EPOCHS" --seed "$SEED" --batch-size 256
    satlas index build
}
measure() {
    satlas sql -c "COPY (SELECT direction, metric, value FROM satlas_eval(a := 'human', b := 'mouse', seed := $SEED)
                         WHERE metric NOT LIKE 'mixing[%') TO '$OUT/$1_eval.csv' (HEADER)"
    satlas transfer --reference human --query baron_mouse --out "$OUT/$1_mouse_labels.csv"
    satlas sql -c "COPY ($(grep -v '^--' sql/examples/transfer_accuracy.sql | tr -d ';')) TO '$OUT/$1_transfer.csv' (HEADER)"
}

step "joint: human + mouse trained together"
atlas=$OUT/joint.satlas
setup
add_human
add_mouse
train
measure joint

step "incremental: human only, then add-species mouse"
atlas=$OUT/incremental.satlas
setup
add_human
train
add_mouse
satlas add-species --species mouse --epochs "$ADD_EPOCHS" --seed "$SEED" --batch-size 256
measure incremental
satlas sql -c "COPY (
    SELECT count(*) AS human_cells,
           max(list_max(list_transform(list_zip(a.embedding, b.embedding), lambda p: abs(p[1] - p[2]))))
             AS max_abs_diff
    FROM cell_embeddings a JOIN cell_embeddings b USING (cell_id)
    JOIN model_runs ra ON ra.model_run_id = a.model_run_id AND ra.kind = 'finetune'
    JOIN model_runs rb ON rb.model_run_id = b.model_run_id AND rb.kind = 'add_species'
    ) TO '$OUT/incremental_moved.csv' (HEADER)"

step "result (seed $SEED; pretrain $PRETRAIN_EPOCHS, finetune $FINETUNE_EPOCHS, add-species $ADD_EPOCHS epochs)"
python3 - "$OUT" <<'EOF'
import csv, sys
out = sys.argv[1]
rows = lambda name: list(csv.DictReader(open(f"{out}/{name}.csv")))
joint = {(r["direction"], r["metric"]): float(r["value"]) for r in rows("joint_eval")}
incr = {(r["direction"], r["metric"]): float(r["value"]) for r in rows("incremental_eval")}
print("| direction | metric | incremental | joint |")
print("| --- | --- | ---: | ---: |")
for key in joint:
    print(f"| {key[0]} | {key[1]} | {incr.get(key, float('nan')):.3f} | {joint[key]:.3f} |")
ti, tj = rows("incremental_transfer")[0], rows("joint_transfer")[0]
print(f"| human->mouse | satlas transfer accuracy (k=15) | {float(ti['accuracy']):.3f} | {float(tj['accuracy']):.3f} |")
print(f"| human->mouse | satlas transfer unknown calls | {ti['unknown']} of {ti['cells']} | {tj['unknown']} of {tj['cells']} |")
moved = rows("incremental_moved")[0]
print(f"\nhuman cells' embeddings, finetune run vs add-species run: {moved['human_cells']} cells, "
      f"max |diff| = {moved['max_abs_diff']}")
EOF
