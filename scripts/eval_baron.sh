#!/usr/bin/env bash
# SATURN on the FULL Baron et al. 2016 pancreas data (2,142 human + 1,886 mouse cells) into
# out/baron.satlas, then SATURN's evaluation table (both directions) and the 1:1-ortholog baseline:
#
#   bash scripts/eval_baron.sh            # parameters below, overridable by environment variables
#
# The mouse proteome is a SURROGATE (human ortholog sequences under mouse symbols,
# scripts/surrogate_proteome.py): no real mouse proteome is on this machine. The numbers this prints
# measure the pipeline on that surrogate, NOT real cross-species integration quality.
#
# Gene embeddings (ESM-2 t6 via `satlas embed-proteins --highly-variable N`, the expensive step) are
# cached as float32 .npy under $SATLAS_CACHE/eval/ (exported with numpy from the reference
# environment of scripts/refenv.sh); reruns with the same N import them instead of re-embedding.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

DATA=${DATA:-../shared/data}
MODEL=${MODEL:-$DATA/esm2_t6_8M_finetuned}
N_TOP_GENES=${N_TOP_GENES:-2000}     # SATURN: 8000 (README: embedding and training cost on 2 cores)
MACROGENES=${MACROGENES:-500}        # SATURN: 2000 for 2 x 8000 genes; same genes per macrogene
SEED=${SEED:-0}
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-200}
FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-50}
BATCH_SIZE=${BATCH_SIZE:-512}        # SATURN: 4096, i.e. one Adam step per epoch at 4,028 cells
SEEDS=${SEEDS:-5}                    # > 1: also the median over that many stratified splits
PCS=${PCS:-50}
ATLAS=${ATLAS:-out/baron.satlas}
PY=${SATLAS_REFENV:-$SATLAS_CACHE/refenv}/bin/python
CACHE=$SATLAS_CACHE/eval
BARON=$DATA/baron_pancreas
ORTHOLOGS=$BARON/gene_matches_1v1_human2mouse.csv

if [ ! -d "$BARON" ]; then
  echo "eval_baron: $BARON is absent: this script needs the full Baron files of ../shared/data" >&2
  exit 1
fi
cargo build --locked --bin satlas
satlas() { "$CARGO_TARGET_DIR/debug/satlas" --atlas "$ATLAS" "$@"; }
step() { printf '\n\033[1m== %s\033[0m (%s)\n' "$*" "$(date +%T)"; }
timed() { local t0=$SECONDS; "$@"; echo "   [$((SECONDS - t0)) s] $*" | cut -c1-150; }

echo "parameters: seed=$SEED n_top_genes=$N_TOP_GENES macrogenes=$MACROGENES" \
  "pretrain_epochs=$PRETRAIN_EPOCHS finetune_epochs=$FINETUNE_EPOCHS batch_size=$BATCH_SIZE" \
  "baseline_pcs=$PCS stratified_seeds=$SEEDS model=$MODEL"
mkdir -p out "$CACHE"
rm -f "$ATLAS" "$ATLAS.wal"
start=$SECONDS

step "1. atlas, proteomes (human: Swiss-Prot 2014; mouse: SURROGATE), full datasets"
satlas init
timed satlas add-proteome --species human "$DATA/proteins/human_swissprot2014_baron_genes.fa"
python3 scripts/surrogate_proteome.py "$DATA/proteins/human_swissprot2014_baron_genes.fa" \
  "$ORTHOLOGS" "$CACHE/mouse_surrogate.fa.gz"
timed satlas add-proteome --species mouse "$CACHE/mouse_surrogate.fa.gz"
timed satlas add-dataset --species human --label cell_type1 --name baron_human "$BARON/raw-Baron_human.h5ad"
timed satlas add-dataset --species mouse --label cell_type1 --name baron_mouse "$BARON/raw-Baron_mouse.h5ad"

step "2. gene embeddings: ESM-2 t6 of the proteins of the $N_TOP_GENES highly variable genes per species"
prefix=$CACHE/esm2_t6_hvg$N_TOP_GENES
if [ -f "${prefix}_human.npy" ] && [ -f "${prefix}_mouse.npy" ]; then
  for species in human mouse; do
    timed satlas import-embeddings --model "esm2_t6_hvg$N_TOP_GENES" --species "$species" \
      --genes "${prefix}_$species.genes.txt" "${prefix}_$species.npy"
  done
else
  for species in human mouse; do   # mouse after human: identical (surrogate) sequences are reused
    timed satlas embed-proteins --species "$species" --model "$MODEL" --highly-variable "$N_TOP_GENES"
  done
  for species in human mouse; do
    if [ ! -x "$PY" ]; then echo "   (no reference environment at $PY: embeddings not cached)"; break; fi
    satlas sql -c "COPY (
        SELECT g.symbol, e.embedding
        FROM gene_embeddings e JOIN genes g USING (gene_id) JOIN species s USING (species_id)
        WHERE s.name = '$species' ORDER BY g.symbol
      ) TO '${prefix}_$species.csv' (FORMAT csv, HEADER)" > /dev/null
    "$PY" scripts/embeddings_csv_to_npy.py "${prefix}_$species.csv" "${prefix}_$species" float32
    rm "${prefix}_$species.csv"
  done
fi

step "3. SATURN: macrogenes, pretraining, fine-tuning"
timed satlas build-macrogenes -n "$MACROGENES" --n-top-genes "$N_TOP_GENES" --seed "$SEED"
timed satlas pretrain --epochs "$PRETRAIN_EPOCHS" --seed "$SEED" --batch-size "$BATCH_SIZE"
timed satlas finetune --epochs "$FINETUNE_EPOCHS" --seed "$SEED" --batch-size "$BATCH_SIZE"

step "4. evaluation (SATURN embeddings; SURROGATE mouse proteome), seed $SEED"
timed satlas eval --a human --b mouse --seed "$SEED"
if [ "$SEEDS" -gt 1 ]; then
  timed satlas eval --a human --b mouse --seed "$SEED" --stratified --seeds "$SEEDS"
fi

step "5. baseline: PCA ($PCS PCs) of log-normalised shared 1:1-ortholog expression, seed $SEED"
baseline=(--baseline orthologs --orthologs "$ORTHOLOGS" --pcs "$PCS")
timed satlas eval --a human --b mouse --seed "$SEED" "${baseline[@]}"
if [ "$SEEDS" -gt 1 ]; then
  timed satlas eval --a human --b mouse --seed "$SEED" --stratified --seeds "$SEEDS" "${baseline[@]}"
fi

echo
echo "total: $((SECONDS - start)) s"
