#!/usr/bin/env bash
# Regenerates the demo gene embeddings in fixtures/embeddings/ with satlas' own ESM-2 code:
#
#   scripts/make_embedding_fixtures.sh [ESM2_DIR]     (default ../shared/data/esm2_t6_8M_finetuned)
#
# Builds satlas, adds both fixture proteomes to a scratch atlas, runs `satlas embed-proteins` for
# human then mouse (the mouse surrogate proteome is made of human sequences, so its proteins reuse
# the human embeddings), and exports each species' gene embeddings (DuckDB COPY to CSV, then
# numpy) as a float16 genes x 320 matrix plus its gene list:
#   fixtures/embeddings/esm2_t6_{human,mouse}.npy, esm2_t6_{human,mouse}.genes.txt
# Needs numpy: the reference environment of scripts/refenv.sh (system python3 may lack it).
set -euo pipefail
cd "$(dirname "$0")/.."
MODEL=$(realpath "${1:-../shared/data/esm2_t6_8M_finetuned}")
PY=${SATLAS_REFENV:-$HOME/.cache/satlas/refenv}/bin/python
source scripts/env.sh
cargo build --locked --bin satlas
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
satlas() { "$CARGO_TARGET_DIR/debug/satlas" --atlas "$SCRATCH/emb.satlas" "$@"; }

satlas init
satlas add-proteome --species human fixtures/proteins/human.fa.gz
satlas add-proteome --species mouse fixtures/proteins/mouse_surrogate.fa.gz
for species in human mouse; do
  start=$(date +%s)
  satlas embed-proteins --species "$species" --model "$MODEL"
  echo "$species: embed-proteins took $(($(date +%s) - start)) s"
  satlas sql -c "COPY (
      SELECT g.symbol, e.embedding
      FROM gene_embeddings e JOIN genes g USING (gene_id) JOIN species s USING (species_id)
        JOIN embedding_models m USING (embedding_model_id)
      WHERE s.name = '$species' AND m.source = 'esm2'
      ORDER BY g.symbol
    ) TO '$SCRATCH/$species.csv' (FORMAT csv, HEADER)" > /dev/null
  "$PY" scripts/embeddings_csv_to_npy.py "$SCRATCH/$species.csv" "fixtures/embeddings/esm2_t6_$species" float16
done
