#!/usr/bin/env bash
# Regenerates the demo gene embeddings in fixtures/embeddings/ with satlas' own ESM-2 code:
#
#   scripts/make_embedding_fixtures.sh [ESM2_DIR]     (default ../shared/data/esm2_t6_8M_finetuned)
#
# Builds satlas, runs `satlas embed-proteins` on the fixture proteomes in scratch atlases and
# exports each species' gene embeddings (genes x 320):
#   esm2_t6_human.npy + .genes.txt        human Swiss-Prot (float16, via CSV and numpy)
#   esm2_t6_mouse.parquet                 REAL mouse Swiss-Prot (fixtures/proteins/mouse.fa.gz,
#                                         scripts/real_mouse_fixture.py), float32, DuckDB COPY
#   esm2_t6_mouse_surrogate.npy + .txt    the SURROGATE mouse proteome (human sequences under
#                                         mouse symbols; it reuses the human embeddings), float16,
#                                         kept for the tests that need identical sequences
# The .npy files need numpy: the reference environment of scripts/refenv.sh (system python3 may
# lack it); `--real-mouse-only` makes only the Parquet file and needs no Python.
set -euo pipefail
cd "$(dirname "$0")/.."
REAL_ONLY=0
if [ "${1:-}" = "--real-mouse-only" ]; then REAL_ONLY=1; shift; fi
MODEL=$(realpath "${1:-../shared/data/esm2_t6_8M_finetuned}")
PY=${SATLAS_REFENV:-$HOME/.cache/satlas/refenv}/bin/python
source scripts/env.sh
cargo build --locked --bin satlas
SCRATCH=$(mktemp -d)
trap 'rm -rf "$SCRATCH"' EXIT
satlas() { "$CARGO_TARGET_DIR/debug/satlas" "$@"; }

# Embeds `species` of atlas $1 and writes its gene embeddings to $2 (DuckDB COPY; the format
# follows the extension).
embed() {
  local atlas=$1 species=$2 out=$3 start=$SECONDS
  satlas --atlas "$atlas" embed-proteins --species "$species" --model "$MODEL"
  echo "$species: embed-proteins took $((SECONDS - start)) s"
  satlas --atlas "$atlas" sql -c "COPY (
      SELECT g.symbol AS gene, e.embedding
      FROM gene_embeddings e JOIN genes g USING (gene_id) JOIN species s USING (species_id)
        JOIN embedding_models m USING (embedding_model_id)
      WHERE s.name = '$species' AND m.source = 'esm2'
      ORDER BY g.symbol
    ) TO '$out'" > /dev/null
}

real=$SCRATCH/real.satlas
satlas --atlas "$real" init
satlas --atlas "$real" add-proteome --species mouse fixtures/proteins/mouse.fa.gz
embed "$real" mouse fixtures/embeddings/esm2_t6_mouse.parquet
[ "$REAL_ONLY" = 1 ] && exit 0

surrogate=$SCRATCH/surrogate.satlas
satlas --atlas "$surrogate" init
satlas --atlas "$surrogate" add-proteome --species human fixtures/proteins/human.fa.gz
satlas --atlas "$surrogate" add-proteome --species mouse fixtures/proteins/mouse_surrogate.fa.gz
for species in human mouse; do   # mouse after human: identical sequences reuse the embeddings
  embed "$surrogate" "$species" "$SCRATCH/$species.csv"
done
"$PY" scripts/embeddings_csv_to_npy.py "$SCRATCH/human.csv" fixtures/embeddings/esm2_t6_human float16
"$PY" scripts/embeddings_csv_to_npy.py "$SCRATCH/mouse.csv" fixtures/embeddings/esm2_t6_mouse_surrogate float16
