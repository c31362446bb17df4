#!/usr/bin/env bash
# The satlas demo on the bundled real fixtures (Baron et al. 2016 human + mouse pancreas):
# installs what is missing, builds, and runs the pipeline into out/demo.satlas.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
source scripts/env.sh
cargo build --locked --bin satlas
satlas() { "$CARGO_TARGET_DIR/debug/satlas" --atlas out/demo.satlas "$@"; }
mkdir -p out && rm -f out/demo.satlas out/demo.satlas.wal

step() { printf '\n\033[1m== %s\033[0m\n' "$*"; }
step "1. create the atlas"
satlas init
step "2. proteomes (human and mouse Swiss-Prot, see fixtures/README.md)"
satlas add-proteome --species human fixtures/proteins/human.fa.gz
satlas add-proteome --species mouse fixtures/proteins/mouse.fa.gz
step "3. gene embeddings (ESM-2 t6, computed by satlas' embed-proteins; see fixtures/README.md)"
satlas import-embeddings --model esm2_t6_8M --species human --genes fixtures/embeddings/esm2_t6_human.genes.txt fixtures/embeddings/esm2_t6_human.npy
satlas import-embeddings --model esm2_t6_8M --species mouse fixtures/embeddings/esm2_t6_mouse.parquet
step "4. datasets (raw counts + cell-type labels)"
satlas add-dataset --species human --label cell_type1 --name baron_human fixtures/baron/human.h5ad
satlas add-dataset --species mouse --label cell_type1 --name baron_mouse fixtures/baron/mouse.h5ad
step "5. what is in the atlas"
satlas info
step "6. SQL: cells per species and cell type"
satlas sql -c "$(cat sql/examples/cells_per_type.sql)"
step "7. SATURN: macrogenes, pretraining, fine-tuning (small sizes for the demo)"
satlas build-macrogenes -n 200 --n-top-genes 1000 --seed 0
satlas pretrain --epochs 30 --seed 0 --batch-size 256
satlas finetune --epochs 20 --seed 0 --batch-size 256
step "8. HNSW index, kNN label transfer mouse <- human, nearest cells in SQL"
satlas index build
satlas transfer --reference human --query baron_mouse --out out/mouse_labels.csv
satlas sql -c "$(cat sql/examples/transfer_accuracy.sql)"
satlas sql -c "$(cat sql/examples/cross_species_neighbours.sql)"
step "9. SATURN's evaluation: cross-species logistic regression and kNN transfer, species mixing"
satlas eval --a human --b mouse
step "10. a new dataset into the trained atlas: embedded with the stored model, searchable at once"
satlas add-dataset --species human --label cell_type1 --name human_again --embed fixtures/baron/human_modern.h5ad
satlas info | tail -4
step "11. export for scanpy (h5ad) and as Parquet tables"
satlas export --format h5ad --macrogenes --out out/demo.h5ad
satlas export --format parquet --out out/demo_tables
step "12. pictures: the UMAP (computed once, stored in the atlas) and the one-page report"
mkdir -p out/plots
satlas plot umap --color cell_type --out out/plots/umap_cell_type.svg
satlas plot umap --color species --out out/plots/umap_species.png
satlas report --orthologs fixtures/reference/baseline_orthologs.csv --out out/report.html
