//! What is in an atlas, read in one pass for `satlas info` and the `satlas_info()` SQL function.

use super::{AtlasError, DbContext, SCHEMA_VERSION};
use duckdb::{Connection, OptionalExt};
use std::fmt;
use std::path::{Path, PathBuf};

/// One species and how much of it the atlas holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeciesInfo {
    /// Species name.
    pub name: String,
    /// Distinct genes known (from proteomes and datasets).
    pub genes: i64,
    /// Protein sequences.
    pub proteins: i64,
    /// Genes with at least one protein.
    pub genes_with_protein: i64,
    /// Genes with an embedding (any model).
    pub genes_with_embedding: i64,
}

/// One dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatasetInfo {
    /// Dataset name.
    pub name: String,
    /// Its species.
    pub species: String,
    /// Cells.
    pub cells: i64,
    /// Genes of the source matrix.
    pub genes: i64,
    /// Of those, genes with a protein in the atlas.
    pub genes_with_protein: i64,
    /// Stored non-zero counts.
    pub nnz: i64,
    /// The obs column used as cell-type label.
    pub label_column: String,
    /// Cells per label, most frequent first (`None` label = missing).
    pub cell_types: Vec<(Option<String>, i64)>,
    /// The genes without a protein, by kind, most first.
    pub gene_loss: Vec<GeneLoss>,
}

/// One kind of gene (told by its symbol) that a dataset has without a protein.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GeneLoss {
    /// The kind, e.g. `predicted genes (Gm*)`.
    pub kind: String,
    /// How many of the dataset's genes.
    pub genes: i64,
    /// Up to three of them, alphabetically.
    pub examples: Vec<String>,
}

/// The kinds of genes without a protein, told apart by symbol patterns of MGI and HGNC
/// nomenclature (first match wins): an approximation of biotypes, which the atlas does not store.
const GENE_KINDS: &str = "CASE
    WHEN regexp_matches(symbol, '^(ENS[A-Z]*G[0-9]+|LOC[0-9]+)') THEN 'unnamed loci (Ensembl ids, LOC*)'
    WHEN regexp_matches(symbol, '^Gm[0-9]+$') THEN 'predicted genes (Gm*)'
    WHEN regexp_matches(symbol, 'Rik[0-9]*$') THEN 'RIKEN cDNA clones (*Rik)'
    WHEN regexp_matches(symbol, '^(Mir|MIR).*(hg|HG)[0-9]*$') THEN 'microRNA host genes (Mir*hg)'
    WHEN regexp_matches(symbol, '^(Mir|MIR|Mirlet|MIRLET)[0-9]|^(Snor|SNOR)[a-dA-D][0-9]|^(Scarna|SCARNA|Rn|RN)[0-9]') THEN 'small RNAs (Mir*, Snor*, Rn*)'
    WHEN regexp_matches(symbol, '^(LINC|Linc)[0-9]|-(AS|as|IT|OT)[0-9]*$|[a-z0-9]os[0-9]*$|^(AC|AL|AP|AF|BX|CR|CT[AB]|RP[0-9]+)[0-9]*[.-]') THEN 'long non-coding (LINC*, *-AS*, *os, clone-based)'
    WHEN regexp_matches(symbol, '^(mt-|MT-)') THEN 'mitochondrial (mt-*)'
    WHEN regexp_matches(symbol, '(-ps[0-9]*|[A-Z0-9]P[0-9]+)$') THEN 'pseudogenes (*-ps*, *P<n>)'
    ELSE 'other (protein-coding names with no sequence in the proteome)' END";

/// One model run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelRunInfo {
    /// Run id.
    pub id: i32,
    /// `pretrain`, `finetune`, ...
    pub kind: String,
    /// `running` or `done`.
    pub status: String,
    /// Cells with an embedding from this run.
    pub embedded_cells: i64,
    /// Cells covered by the run's HNSW index (`None`: no index).
    pub indexed_cells: Option<i64>,
}

/// A whole-atlas overview.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AtlasSummary {
    /// The atlas file.
    pub path: PathBuf,
    /// Its schema version.
    pub schema_version: u32,
    /// Species, by name.
    pub species: Vec<SpeciesInfo>,
    /// Datasets, by name.
    pub datasets: Vec<DatasetInfo>,
    /// Model runs, oldest first.
    pub model_runs: Vec<ModelRunInfo>,
}

impl AtlasSummary {
    pub(crate) fn read(conn: &Connection, path: &Path) -> Result<AtlasSummary, AtlasError> {
        let mut datasets = read_datasets(conn)?;
        for dataset in &mut datasets {
            dataset.cell_types = read_cell_types(conn, &dataset.name)?;
            dataset.gene_loss = read_gene_loss(conn, &dataset.name)?;
        }
        Ok(AtlasSummary {
            path: path.into(),
            schema_version: SCHEMA_VERSION,
            species: read_species(conn)?,
            datasets,
            model_runs: read_model_runs(conn)?,
        })
    }
}

fn read_species(conn: &Connection) -> Result<Vec<SpeciesInfo>, AtlasError> {
    let sql = "SELECT s.name,
            (SELECT count(*) FROM genes g WHERE g.species_id = s.species_id),
            (SELECT count(*) FROM proteins p WHERE p.species_id = s.species_id),
            (SELECT count(DISTINCT p.gene_id) FROM proteins p WHERE p.species_id = s.species_id),
            (SELECT count(DISTINCT e.gene_id) FROM gene_embeddings e JOIN genes g USING (gene_id)
              WHERE g.species_id = s.species_id)
        FROM species s ORDER BY s.name";
    query_all(conn, sql, [], "reading species", |row| {
        Ok(SpeciesInfo {
            name: row.get(0)?,
            genes: row.get(1)?,
            proteins: row.get(2)?,
            genes_with_protein: row.get(3)?,
            genes_with_embedding: row.get(4)?,
        })
    })
}

fn read_datasets(conn: &Connection) -> Result<Vec<DatasetInfo>, AtlasError> {
    let sql =
        "SELECT d.name, s.name, d.n_cells, d.n_genes, d.n_genes_with_protein, d.nnz, d.label_column
        FROM datasets d JOIN species s USING (species_id) ORDER BY d.name";
    query_all(conn, sql, [], "reading datasets", |row| {
        Ok(DatasetInfo {
            name: row.get(0)?,
            species: row.get(1)?,
            cells: row.get(2)?,
            genes: row.get(3)?,
            genes_with_protein: row.get(4)?,
            nnz: row.get(5)?,
            label_column: row.get(6)?,
            cell_types: Vec::new(),
            gene_loss: Vec::new(),
        })
    })
}

fn read_gene_loss(conn: &Connection, dataset: &str) -> Result<Vec<GeneLoss>, AtlasError> {
    let sql = format!(
        "WITH missing AS (
            SELECT g.symbol FROM dataset_genes dg JOIN datasets d USING (dataset_id)
            JOIN genes g ON g.gene_id = dg.gene_id
            WHERE d.name = ? AND NOT EXISTS (SELECT 1 FROM proteins p WHERE p.gene_id = dg.gene_id)
        )
        SELECT {GENE_KINDS} AS kind, count(*) AS n, list(symbol ORDER BY symbol)[1:3]
        FROM missing GROUP BY kind ORDER BY n DESC, kind"
    );
    query_all(
        conn,
        &sql,
        [dataset],
        "reading genes without a protein",
        |row| {
            let examples: duckdb::types::Value = row.get(2)?;
            Ok(GeneLoss {
                kind: row.get(0)?,
                genes: row.get(1)?,
                examples: texts(examples),
            })
        },
    )
}

/// The strings of a `VARCHAR[]` value.
fn texts(list: duckdb::types::Value) -> Vec<String> {
    match list {
        duckdb::types::Value::List(items) => items
            .into_iter()
            .filter_map(|item| match item {
                duckdb::types::Value::Text(text) => Some(text),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

fn read_cell_types(
    conn: &Connection,
    dataset: &str,
) -> Result<Vec<(Option<String>, i64)>, AtlasError> {
    let sql = "SELECT c.cell_type, count(*) AS n FROM cells c JOIN datasets d USING (dataset_id)
        WHERE d.name = ? GROUP BY c.cell_type ORDER BY n DESC, c.cell_type";
    query_all(conn, sql, [dataset], "reading cell types", |row| {
        Ok((row.get(0)?, row.get(1)?))
    })
}

fn read_model_runs(conn: &Connection) -> Result<Vec<ModelRunInfo>, AtlasError> {
    let sql = "SELECT r.model_run_id, r.kind, r.status,
            (SELECT count(*) FROM cell_embeddings e WHERE e.model_run_id = r.model_run_id),
            (SELECT h.n_cells FROM hnsw_indexes h WHERE h.model_run_id = r.model_run_id)
        FROM model_runs r ORDER BY r.model_run_id";
    query_all(conn, sql, [], "reading model runs", |row| {
        Ok(ModelRunInfo {
            id: row.get(0)?,
            kind: row.get(1)?,
            status: row.get(2)?,
            embedded_cells: row.get(3)?,
            indexed_cells: row.get(4)?,
        })
    })
}

/// Runs `sql` and maps every row; the one helper all atlas readers share.
pub(crate) fn query_all<T, P: duckdb::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    context: &str,
    map: impl FnMut(&duckdb::Row<'_>) -> duckdb::Result<T>,
) -> Result<Vec<T>, AtlasError> {
    let mut stmt = conn.prepare(sql).context(context)?;
    let rows = stmt.query_map(params, map).context(context)?;
    rows.collect::<duckdb::Result<Vec<T>>>().context(context)
}

/// The row `sql` returns, mapped by `map`, or `None` when it returns none; errors carry
/// `context`.
pub(crate) fn query_opt<T, P: duckdb::Params>(
    conn: &Connection,
    sql: &str,
    params: P,
    context: &str,
    map: impl FnOnce(&duckdb::Row<'_>) -> duckdb::Result<T>,
) -> Result<Option<T>, AtlasError> {
    conn.query_row(sql, params, map).optional().context(context)
}

impl fmt::Display for AtlasSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "atlas {} (schema v{})",
            self.path.display(),
            self.schema_version
        )?;
        writeln!(f, "\nspecies ({}):", self.species.len())?;
        for s in &self.species {
            writeln!(
                f,
                "  {:<12} {:>7} genes  {:>7} proteins  {:>7} genes with protein  {:>7} embedded",
                s.name, s.genes, s.proteins, s.genes_with_protein, s.genes_with_embedding
            )?;
        }
        writeln!(f, "\ndatasets ({}):", self.datasets.len())?;
        for d in &self.datasets {
            writeln!(
                f,
                "  {} [{}]: {} cells x {} genes ({} with protein, {:.1}%), {} non-zeros, labels from {:?}",
                d.name,
                d.species,
                d.cells,
                d.genes,
                d.genes_with_protein,
                percent(d.genes_with_protein, d.genes),
                d.nnz,
                d.label_column
            )?;
            for (label, n) in &d.cell_types {
                writeln!(
                    f,
                    "      {:>6}  {}",
                    n,
                    label.as_deref().unwrap_or("(missing)")
                )?;
            }
            if !d.gene_loss.is_empty() {
                writeln!(
                    f,
                    "    genes without a protein ({}), by kind of symbol:",
                    d.genes - d.genes_with_protein
                )?;
            }
            for loss in &d.gene_loss {
                writeln!(
                    f,
                    "      {:>6}  {} (e.g. {})",
                    loss.genes,
                    loss.kind,
                    loss.examples.join(", ")
                )?;
            }
        }
        writeln!(f, "\nmodel runs ({}):", self.model_runs.len())?;
        for r in &self.model_runs {
            let index = match r.indexed_cells {
                None => "no index".to_string(),
                Some(n) if n == r.embedded_cells => format!("index current ({n} cells)"),
                Some(n) => format!("index STALE ({n} of {} cells)", r.embedded_cells),
            };
            writeln!(
                f,
                "  #{} {} [{}]: {} cells embedded, {index}",
                r.id, r.kind, r.status, r.embedded_cells
            )?;
        }
        Ok(())
    }
}

fn percent(part: i64, whole: i64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}
