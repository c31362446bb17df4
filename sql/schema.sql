-- satlas atlas schema, version 1.
-- The one schema of the atlas file. SCHEMA_VERSION in src/atlas/schema.rs must equal the version
-- written to satlas_meta below; a change here is a new numbered migration (sql/migrations/NNN_*.sql).

CREATE TABLE satlas_meta (
    key   VARCHAR PRIMARY KEY,
    value VARCHAR NOT NULL
);

-- Species known to the atlas.
CREATE SEQUENCE species_id_seq START 1;
CREATE TABLE species (
    species_id INTEGER PRIMARY KEY DEFAULT nextval('species_id_seq'),
    name       VARCHAR NOT NULL UNIQUE,
    added_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Every gene symbol the atlas has seen for a species (from a proteome or a dataset).
-- symbol_key is the upper-cased symbol: genes match case-insensitively within a species.
CREATE TABLE genes (
    gene_id    INTEGER PRIMARY KEY,
    species_id INTEGER NOT NULL REFERENCES species (species_id),
    symbol     VARCHAR NOT NULL,
    symbol_key VARCHAR NOT NULL,
    UNIQUE (species_id, symbol_key)
);

-- Protein sequences, one row per kept FASTA record.
CREATE TABLE proteins (
    protein_id  INTEGER PRIMARY KEY,
    species_id  INTEGER NOT NULL REFERENCES species (species_id),
    gene_id     INTEGER NOT NULL REFERENCES genes (gene_id),
    accession   VARCHAR NOT NULL,
    header      VARCHAR NOT NULL,
    sequence    VARCHAR NOT NULL,
    source_file VARCHAR NOT NULL,
    UNIQUE (species_id, accession, gene_id)  -- one accession may serve several genes (e.g. H3-3A/B)
);

-- Protein language models (or imported embedding files) that produced embeddings.
CREATE SEQUENCE embedding_model_id_seq START 1;
CREATE TABLE embedding_models (
    embedding_model_id INTEGER PRIMARY KEY DEFAULT nextval('embedding_model_id_seq'),
    name       VARCHAR NOT NULL,
    checksum   VARCHAR NOT NULL,
    layer      INTEGER,
    dim        INTEGER NOT NULL,
    source     VARCHAR NOT NULL,           -- 'esm2' (computed in satlas) or 'import'
    added_at   TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Per-protein embeddings (mean over residues of one layer).
CREATE TABLE protein_embeddings (
    protein_id         INTEGER NOT NULL REFERENCES proteins (protein_id),
    embedding_model_id INTEGER NOT NULL REFERENCES embedding_models (embedding_model_id),
    embedding          FLOAT[] NOT NULL,
    PRIMARY KEY (protein_id, embedding_model_id)
);

-- Per-gene embeddings (mean over the gene's proteins, or imported).
CREATE TABLE gene_embeddings (
    gene_id            INTEGER NOT NULL REFERENCES genes (gene_id),
    embedding_model_id INTEGER NOT NULL REFERENCES embedding_models (embedding_model_id),
    embedding          FLOAT[] NOT NULL,
    PRIMARY KEY (gene_id, embedding_model_id)
);

-- Datasets: one ingested count matrix with its provenance.
CREATE SEQUENCE dataset_id_seq START 1;
CREATE TABLE datasets (
    dataset_id     INTEGER PRIMARY KEY DEFAULT nextval('dataset_id_seq'),
    name           VARCHAR NOT NULL UNIQUE,
    species_id     INTEGER NOT NULL REFERENCES species (species_id),
    source_file    VARCHAR NOT NULL,
    checksum       VARCHAR NOT NULL UNIQUE,  -- sha256 of the source file(s)
    format         VARCHAR NOT NULL,
    label_column   VARCHAR NOT NULL,
    n_cells        INTEGER NOT NULL,
    n_genes        INTEGER NOT NULL,
    n_genes_with_protein INTEGER NOT NULL,
    nnz            BIGINT NOT NULL,
    added_at       TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- The genes (var) of a dataset, in file order.
CREATE TABLE dataset_genes (
    dataset_id INTEGER NOT NULL REFERENCES datasets (dataset_id),
    position   INTEGER NOT NULL,
    gene_id    INTEGER NOT NULL REFERENCES genes (gene_id),
    PRIMARY KEY (dataset_id, position)
);

-- Cells; cell_type is the value of the dataset's label column.
CREATE TABLE cells (
    cell_id      BIGINT PRIMARY KEY,
    dataset_id   INTEGER NOT NULL REFERENCES datasets (dataset_id),
    barcode      VARCHAR NOT NULL,
    cell_type    VARCHAR,
    library_size BIGINT NOT NULL,
    n_genes      INTEGER NOT NULL,
    UNIQUE (dataset_id, barcode)
);

-- Every other per-cell annotation of the source file, long format.
CREATE TABLE cell_obs (
    cell_id BIGINT NOT NULL,
    "column" VARCHAR NOT NULL,
    value   VARCHAR NOT NULL
);

-- Raw counts, sparse, one row per cell: parallel lists of gene ids and counts (training reads
-- whole cells, so a cell's counts are one contiguous row).
CREATE TABLE counts (
    cell_id  BIGINT NOT NULL,
    gene_ids INTEGER[] NOT NULL,
    counts   INTEGER[] NOT NULL
);

-- Macrogene sets: one k-means over gene embeddings.
CREATE SEQUENCE macrogene_set_id_seq START 1;
CREATE TABLE macrogene_sets (
    macrogene_set_id   INTEGER PRIMARY KEY DEFAULT nextval('macrogene_set_id_seq'),
    embedding_model_id INTEGER NOT NULL REFERENCES embedding_models (embedding_model_id),
    n_macrogenes       INTEGER NOT NULL,
    params             VARCHAR NOT NULL,  -- JSON
    created_at         TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE macrogenes (
    macrogene_set_id INTEGER NOT NULL REFERENCES macrogene_sets (macrogene_set_id),
    macrogene        INTEGER NOT NULL,
    centroid         FLOAT[] NOT NULL,
    PRIMARY KEY (macrogene_set_id, macrogene)
);

-- Gene -> macrogene weights, dense over macrogenes (one list per gene). Trained weights are per
-- model run.
CREATE TABLE gene_macrogene (
    macrogene_set_id INTEGER NOT NULL REFERENCES macrogene_sets (macrogene_set_id),
    gene_id          INTEGER NOT NULL REFERENCES genes (gene_id),
    initial_weights  FLOAT[] NOT NULL,
    PRIMARY KEY (macrogene_set_id, gene_id)
);

-- Model runs (pretrain, finetune, add-species): parameters, metrics and weights (zstd blob).
CREATE SEQUENCE model_run_id_seq START 1;
CREATE TABLE model_runs (
    model_run_id     INTEGER PRIMARY KEY DEFAULT nextval('model_run_id_seq'),
    kind             VARCHAR NOT NULL,
    parent_run_id    INTEGER,
    macrogene_set_id INTEGER REFERENCES macrogene_sets (macrogene_set_id),
    params           VARCHAR NOT NULL,  -- JSON
    metrics          VARCHAR,           -- JSON
    status           VARCHAR NOT NULL,  -- 'running', 'done'
    weights          BLOB,              -- zstd-compressed model state
    created_at       TIMESTAMP NOT NULL DEFAULT current_timestamp
);

CREATE TABLE trained_gene_macrogene (
    model_run_id INTEGER NOT NULL REFERENCES model_runs (model_run_id),
    gene_id      INTEGER NOT NULL REFERENCES genes (gene_id),
    weights      FLOAT[] NOT NULL,
    PRIMARY KEY (model_run_id, gene_id)
);

CREATE TABLE training_log (
    model_run_id INTEGER NOT NULL REFERENCES model_runs (model_run_id),
    epoch        INTEGER NOT NULL,
    loss         DOUBLE NOT NULL,
    components   VARCHAR,               -- JSON: named loss terms
    seconds      DOUBLE NOT NULL,
    PRIMARY KEY (model_run_id, epoch)
);

CREATE TABLE cell_embeddings (
    model_run_id INTEGER NOT NULL REFERENCES model_runs (model_run_id),
    cell_id      BIGINT NOT NULL,
    embedding    FLOAT[] NOT NULL,
    macrogene_expression FLOAT[],
    PRIMARY KEY (model_run_id, cell_id)
);

-- HNSW indexes over a run's cell embeddings (hnsw_rs dump, zstd-compressed).
CREATE TABLE hnsw_indexes (
    model_run_id INTEGER PRIMARY KEY REFERENCES model_runs (model_run_id),
    params       VARCHAR NOT NULL,      -- JSON: m, ef_construction, ef_search, distance, dim
    n_cells      BIGINT NOT NULL,
    cells_digest VARCHAR NOT NULL,      -- 'count:sum(hash(cell_id, embedding))' of the cells it covers
    graph        BLOB NOT NULL,         -- zstd of hnsw_rs' <basename>.hnsw.graph
    data         BLOB NOT NULL,         -- zstd of hnsw_rs' <basename>.hnsw.data
    built_at     TIMESTAMP NOT NULL DEFAULT current_timestamp
);

-- Label transfers: one row per query cell of one transfer (kNN vote over the reference cells).
CREATE TABLE label_transfers (
    transfer_id     INTEGER NOT NULL,
    model_run_id    INTEGER NOT NULL REFERENCES model_runs (model_run_id),
    cell_id         BIGINT NOT NULL,
    reference       VARCHAR NOT NULL,   -- species or dataset name the labels came from
    predicted_label VARCHAR NOT NULL,   -- 'unknown' when confidence < min_confidence
    confidence      DOUBLE NOT NULL,    -- winning label's share of the neighbours' weight
    k               INTEGER NOT NULL,
    min_confidence  DOUBLE NOT NULL,
    neighbours      BIGINT[] NOT NULL,  -- the reference cells that voted, nearest first
    created_at      TIMESTAMP NOT NULL DEFAULT current_timestamp,
    PRIMARY KEY (transfer_id, cell_id)
);

-- Cells with their dataset and species names: the everyday lookup table.
CREATE VIEW cell_info AS
SELECT c.cell_id, s.name AS species, d.name AS dataset, c.barcode, c.cell_type,
       c.library_size, c.n_genes
FROM cells c JOIN datasets d USING (dataset_id) JOIN species s USING (species_id);

INSERT INTO satlas_meta VALUES ('schema_version', '1');
