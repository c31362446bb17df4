#!/usr/bin/env bash
# SATURN on the FULL Baron et al. 2016 pancreas data (2,142 human + 1,886 mouse cells) with REAL
# proteomes (human and mouse Swiss-Prot 2014, ../shared/data/proteins), evaluated as SATURN's paper
# does, over several TRAINING seeds, beside two references:
#   saturn    the pipeline as a user runs it;
#   shuffled  the same pipeline with each species' protein embeddings permuted across its genes
#             (how much the protein signal contributes);
#   baseline  PCA of log-normalised shared 1:1-ortholog expression (no training; the seed only
#             moves the train/test split);
#   incremental  (opt-in) human alone through macrogenes, pretraining and fine-tuning, then the
#             mouse dataset added with `satlas add-species` (SATURN's way to add a species to a
#             trained atlas), evaluated like saturn, its joint counterpart.
#
#   bash scripts/eval_baron.sh          # parameters below, overridable by environment variables
#   SETTINGS="saturn incremental" SEEDS="0 1 2" bash scripts/eval_baron.sh
#
# Each seed trains on its own copy of the ingested atlas (macrogene k-means, pretraining and
# fine-tuning all take the seed). Results: $OUT/results.csv (setting, seed, direction, metric,
# value, seconds) and the table printed by scripts/eval_summary.py (median and inter-quartile
# range over the seeds). Gene embeddings (ESM-2 t6 of the proteins of the N_TOP_GENES highly
# variable genes per species, the expensive step) are cached as Parquet under $SATLAS_CACHE/eval/.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/env.sh

DATA=${DATA:-../shared/data}
MODEL=${MODEL:-$DATA/esm2_t6_8M_finetuned}
N_TOP_GENES=${N_TOP_GENES:-2000}     # SATURN: 8000
MACROGENES=${MACROGENES:-500}        # SATURN: 2000
PRETRAIN_EPOCHS=${PRETRAIN_EPOCHS:-200}
FINETUNE_EPOCHS=${FINETUNE_EPOCHS:-50}
BATCH_SIZE=${BATCH_SIZE:-512}        # SATURN: 4096
ADD_EPOCHS=${ADD_EPOCHS:-$PRETRAIN_EPOCHS}   # add-species (incremental setting)
SEEDS=${SEEDS:-0 1 2 3 4}
SETTINGS=${SETTINGS:-saturn shuffled baseline}
PCS=${PCS:-50}
OUT=${OUT:-out/eval}
CACHE=$SATLAS_CACHE/eval
BARON=$DATA/baron_pancreas
ORTHOLOGS=$BARON/gene_matches_1v1_human2mouse.csv
EMBEDDINGS=esm2_t6_hvg$N_TOP_GENES

if [ ! -d "$BARON" ]; then
  echo "eval_baron: $BARON is absent: this script needs the full Baron files of ../shared/data" >&2
  exit 1
fi
cargo build --locked --bin satlas
BIN=$CARGO_TARGET_DIR/debug/satlas
on() { local atlas=$1; shift; "$BIN" --atlas "$atlas" "$@"; }
step() { printf '\n\033[1m== %s\033[0m (%s)\n' "$*" "$(date +%T)"; }
timed() { local t0=$SECONDS; "$@"; echo "   [$((SECONDS - t0)) s] $*" | cut -c1-150; }
# One value of a query, through DuckDB's COPY (satlas sql prints tables for people).
value() { local atlas=$1 sql=$2 f; f=$(mktemp); on "$atlas" sql -c "COPY ($sql) TO '$f' (FORMAT csv, HEADER false)" > /dev/null; cat "$f"; rm -f "$f"; }

echo "parameters: seeds=[$SEEDS] settings=[$SETTINGS] n_top_genes=$N_TOP_GENES" \
  "macrogenes=$MACROGENES pretrain_epochs=$PRETRAIN_EPOCHS finetune_epochs=$FINETUNE_EPOCHS" \
  "batch_size=$BATCH_SIZE add_epochs=$ADD_EPOCHS baseline_pcs=$PCS model=$MODEL"
mkdir -p "$OUT" "$CACHE"
BASE=$OUT/base.satlas
BASE_HUMAN=$OUT/base_human.satlas    # the incremental setting's start: no mouse cells yet
rm -f "$BASE" "$BASE.wal" "$BASE_HUMAN" "$BASE_HUMAN.wal" "$OUT/results.csv"
echo "setting,seed,direction,metric,value,seconds" > "$OUT/results.csv"
start=$SECONDS

add_dataset() {
  timed on "$1" add-dataset --species "$2" --label cell_type1 --name "baron_$2" "$BARON/raw-Baron_$2.h5ad"
}

step "1. atlas, real proteomes, full datasets"
on "$BASE" init
timed on "$BASE" add-proteome --species human "$DATA/proteins/human_swissprot2014_baron_genes.fa"
timed on "$BASE" add-proteome --species mouse "$DATA/proteins/mouse_swissprot2014_baron_genes.fa"
add_dataset "$BASE" human
add_dataset "$BASE" mouse

step "2. gene embeddings ($EMBEDDINGS), and the same embeddings shuffled across each species' genes"
for species in human mouse; do
  cached=$CACHE/${EMBEDDINGS}_real_$species.parquet
  if [ -f "$cached" ]; then
    timed on "$BASE" import-embeddings --model "$EMBEDDINGS" --species "$species" "$cached"
  else
    timed on "$BASE" embed-proteins --species "$species" --model "$MODEL" --highly-variable "$N_TOP_GENES"
    on "$BASE" sql -c "COPY (
        SELECT g.symbol AS gene, e.embedding
        FROM gene_embeddings e JOIN genes g USING (gene_id) JOIN species s USING (species_id)
        JOIN embedding_models m USING (embedding_model_id)
        WHERE s.name = '$species' AND m.source = 'esm2' ORDER BY g.symbol
      ) TO '$cached' (FORMAT parquet)" > /dev/null
  fi
done
# The model each species' embeddings are under: computed (esm2, named after the checkpoint) or
# imported from the cache (named $EMBEDDINGS); one model covers both species either way.
real_model=$(value "$BASE" "SELECT max(embedding_model_id) FROM embedding_models")
for species in human mouse; do
  shuffled=$OUT/shuffled_$species.parquet
  # A fixed permutation: gene i gets the embedding of the gene ranked i by a hash of its symbol.
  on "$BASE" sql -c "COPY (
      WITH e AS (
        SELECT g.symbol, e.embedding, row_number() OVER (ORDER BY g.symbol) AS i,
               row_number() OVER (ORDER BY hash(g.symbol || '-shuffle'), g.symbol) AS j
        FROM gene_embeddings e JOIN genes g USING (gene_id) JOIN species s USING (species_id)
        WHERE s.name = '$species' AND e.embedding_model_id = $real_model)
      SELECT a.symbol AS gene, b.embedding FROM e a JOIN e b ON a.i = b.j ORDER BY a.symbol
    ) TO '$shuffled' (FORMAT parquet)" > /dev/null
  on "$BASE" import-embeddings --model "${EMBEDDINGS}_shuffled" --species "$species" "$shuffled"
done
shuffled_model=$(value "$BASE" "SELECT max(embedding_model_id) FROM embedding_models")

if [[ " $SETTINGS " == *" incremental "* ]]; then
  step "2b. the incremental setting's atlas: both proteomes and embeddings, human cells only"
  on "$BASE_HUMAN" init
  for species in human mouse; do
    on "$BASE_HUMAN" add-proteome --species "$species" "$DATA/proteins/${species}_swissprot2014_baron_genes.fa" > /dev/null
    on "$BASE_HUMAN" import-embeddings --model "$EMBEDDINGS" --species "$species" \
      "$CACHE/${EMBEDDINGS}_real_$species.parquet" > /dev/null
  done
  add_dataset "$BASE_HUMAN" human
fi

# Appends the evaluation rows of `atlas` (a run, or the baseline) to results.csv.
record() {
  local setting=$1 seed=$2 atlas=$3 seconds=$4 args=$5 f
  f=$(mktemp)
  on "$atlas" sql -c "COPY (SELECT '$setting', $seed, direction, metric, value, $seconds
      FROM satlas_eval(a := 'human', b := 'mouse', seed := $seed$args)) TO '$f' (FORMAT csv, HEADER false)" > /dev/null
  cat "$f" >> "$OUT/results.csv"
  rm -f "$f"
}

# Trains on a copy of atlas $4 (default $BASE) with gene embeddings of model $3, then runs
# the optional extra step $5 (a function of the atlas and the seed) and records the evaluation.
train() {
  local setting=$1 seed=$2 model=$3 base=${4:-$BASE} then=${5:-} atlas=$OUT/${1}_seed$2.satlas t0=$SECONDS
  rm -f "$atlas.wal"    # a log left by an interrupted run does not belong to the new copy
  cp "$base" "$atlas"
  timed on "$atlas" build-macrogenes -n "$MACROGENES" --n-top-genes "$N_TOP_GENES" --seed "$seed" --embedding-model "$model" > /dev/null
  timed on "$atlas" pretrain --epochs "$PRETRAIN_EPOCHS" --seed "$seed" --batch-size "$BATCH_SIZE" > /dev/null
  timed on "$atlas" finetune --epochs "$FINETUNE_EPOCHS" --seed "$seed" --batch-size "$BATCH_SIZE" > /dev/null
  [ -z "$then" ] || "$then" "$atlas" "$seed"
  record "$setting" "$seed" "$atlas" $((SECONDS - t0)) ""
  rm -f "$atlas" "$atlas.wal"
}

# The incremental setting's second step: the mouse cells, then add-species.
add_mouse() {
  add_dataset "$1" mouse
  timed on "$1" add-species --species mouse --epochs "$ADD_EPOCHS" --seed "$2" --batch-size "$BATCH_SIZE" > /dev/null
}

for seed in $SEEDS; do
  for setting in $SETTINGS; do
    step "3. $setting, seed $seed"
    case $setting in
      saturn) train saturn "$seed" "$real_model" ;;
      shuffled) train shuffled "$seed" "$shuffled_model" ;;
      baseline) record baseline "$seed" "$BASE" 0 ", orthologs := '$ORTHOLOGS', pcs := $PCS" ;;
      incremental)
        train incremental "$seed" "$(value "$BASE_HUMAN" "SELECT max(embedding_model_id) FROM embedding_models")" \
          "$BASE_HUMAN" add_mouse ;;
      *) echo "eval_baron: unknown setting $setting (saturn, shuffled, baseline, incremental)" >&2; exit 1 ;;
    esac
  done
done

echo
echo "total: $((SECONDS - start)) s; rows in $OUT/results.csv"
python3 scripts/eval_summary.py "$OUT/results.csv"
