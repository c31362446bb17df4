-- UMAP layouts of model runs' cell embeddings (src/layout/). Added after schema version 1
-- without a version change: `IF NOT EXISTS`, run with sql/schema.sql by a new atlas and by an
-- older atlas when its first layout is stored.
CREATE TABLE IF NOT EXISTS umap_layouts (
    model_run_id INTEGER PRIMARY KEY,
    params       VARCHAR NOT NULL,      -- JSON: n_neighbors, min_dist, n_epochs, seed, a, b
    n_cells      BIGINT NOT NULL,
    n_placed     BIGINT NOT NULL,       -- cells placed by their neighbours after the layout ran
    cells_digest VARCHAR NOT NULL,      -- 'count:sum(hash(cell_id, embedding))', as hnsw_indexes
    seconds      DOUBLE NOT NULL,
    built_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);
CREATE TABLE IF NOT EXISTS umap_coordinates (
    model_run_id INTEGER NOT NULL,
    cell_id      BIGINT NOT NULL,
    x            FLOAT NOT NULL,
    y            FLOAT NOT NULL,
    placed       BOOLEAN NOT NULL,      -- true: placed by its neighbours, not by the SGD
    PRIMARY KEY (model_run_id, cell_id)
);
