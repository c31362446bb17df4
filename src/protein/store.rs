//! Protein and gene embeddings in the atlas: embedding a species' proteins with ESM-2 (resumable,
//! in committed chunks), importing precomputed gene embeddings, and reading them back.
//!
//! Every embedding row names the `embedding_models` row that made it (model name, checksum of the
//! weights or imported file, layer, dimension), so embeddings of different models never mix.

use super::{embed_chunk, EmbedOptions, Esm2, GeneMeans, ProteinError};
use crate::atlas::{self, bulk, query_all, query_opt, species, AtlasError, DbContext};
use crate::ingest::genes;
use crate::io::embeddings::read_gene_embeddings;
use crate::progress;
use crate::Atlas;
use duckdb::arrow::array::{ArrayRef, Int32Array};
use duckdb::arrow::datatypes::Float32Type;
use duckdb::Connection;
use ndarray::Array2;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::fmt;
use std::path::Path;
use std::sync::Arc;

/// Proteins embedded and committed per transaction (the resume granularity).
const PROTEINS_PER_COMMIT: usize = 64;

/// Identifies the model (or imported file) that produced a set of embeddings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingModel {
    /// Model or file name.
    pub name: String,
    /// sha256 of the weights or of the imported file.
    pub checksum: String,
    /// Layer whose representation was pooled (`None` for imports).
    pub layer: Option<usize>,
    /// Embedding dimension.
    pub dim: usize,
    /// `esm2` or `import`.
    pub source: &'static str,
}

/// What an embedding run or import did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EmbeddingReport {
    /// Species.
    pub species: String,
    /// The `embedding_models` row used.
    pub embedding_model_id: i32,
    /// Model name.
    pub model: String,
    /// `esm2` (computed by [`embed_species`]) or `import` ([`import_embeddings`]).
    pub source: &'static str,
    /// Proteins given an embedding by this call (0 for imports): computed plus reused.
    pub proteins_embedded: usize,
    /// Of those, proteins whose exact sequence already had an embedding from the same model (any
    /// species, any protein, or an earlier protein of this run) and got a copy of it.
    pub proteins_reused: usize,
    /// Proteins skipped because an earlier run had embedded them already.
    pub proteins_skipped: usize,
    /// Genes of the species with an embedding from this model afterwards.
    pub genes: usize,
}

impl fmt::Display for EmbeddingReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.source == "import" {
            return write!(
                f,
                "{}: imported {} gene embeddings from {} (model #{})",
                self.species, self.genes, self.model, self.embedding_model_id
            );
        }
        write!(
            f,
            "{}: {} proteins embedded ({} computed, {} reused from identical sequences; {} already \
             done) with {} (model #{}); {} genes have an embedding",
            self.species,
            self.proteins_embedded,
            self.proteins_embedded - self.proteins_reused,
            self.proteins_reused,
            self.proteins_skipped,
            self.model,
            self.embedding_model_id,
            self.genes
        )
    }
}

/// Embeds every not-yet-embedded protein of `species_name` with the ESM-2 checkpoint `model` (a
/// Hugging Face directory or a fair-esm `.pt` file, see [`Esm2::open`]), then recomputes the species' gene embeddings (mean over each gene's proteins) in
/// one transaction.
///
/// A protein whose exact sequence already has an embedding from the same model (any species, any
/// protein) gets a copy of it; identical sequences among the remaining proteins are computed once.
/// Computed embeddings are committed every [`PROTEINS_PER_COMMIT`] sequences, so an interrupted run
/// resumes where it stopped.
///
/// `genes` restricts the work to the proteins of those genes (ids of the species' genes, e.g. its
/// highly variable genes); the report then counts only them.
pub fn embed_species(
    atlas: &mut Atlas,
    species_name: &str,
    model_path: &Path,
    options: &EmbedOptions,
    genes: Option<&[i32]>,
) -> crate::Result<EmbeddingReport> {
    let conn = atlas.connection_mut();
    let only = gene_filter(genes);
    let species_id = species::require(conn, species_name)?;
    let model = Esm2::open(model_path, tch::Device::Cpu)?;
    let layer = options.layer.unwrap_or(model.config().num_hidden_layers);
    let identity = EmbeddingModel {
        name: model_name(model_path),
        checksum: checksum_weights(model_path)?,
        layer: Some(layer),
        dim: model.config().hidden_size,
        source: "esm2",
    };
    let model_id = atlas::write(conn, |tx| find_or_create_model(tx, &identity))?;
    let total: i64 = conn
        .query_row(
            &format!("SELECT count(*) FROM proteins p WHERE p.species_id = ?{only}"),
            [species_id],
            |r| r.get(0),
        )
        .context("counting proteins")?;
    let copied = atlas::write(conn, |tx| {
        copy_embeddings_of_identical_sequences(tx, species_id, model_id, &only)
    })?;
    let todo = pending_sequences(conn, species_id, model_id, &only)?;
    let pending: usize = todo.iter().map(|s| s.proteins.len()).sum();
    let bar = progress::bar(todo.len() as u64, "embedding");
    for chunk in todo.chunks(PROTEINS_PER_COMMIT) {
        let sequences: Vec<(String, &str)> = chunk
            .iter()
            .map(|s| (s.proteins[0].to_string(), s.sequence.as_str()))
            .collect();
        let embedded = embed_chunk(&model, &sequences, options)?;
        atlas::write(conn, |tx| {
            insert_protein_embeddings(
                tx,
                model_id,
                chunk
                    .iter()
                    .zip(&embedded)
                    .flat_map(|(s, (_, e))| s.proteins.iter().map(move |&p| (p, e.as_slice()))),
            )
        })?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    let genes = atlas::write(conn, |tx| pool_gene_embeddings(tx, species_id, model_id))?;
    let embedded = copied + pending;
    Ok(EmbeddingReport {
        species: species_name.into(),
        embedding_model_id: model_id,
        model: identity.name,
        source: identity.source,
        proteins_embedded: embedded,
        proteins_reused: embedded - todo.len(),
        proteins_skipped: total as usize - embedded,
        genes,
    })
}

/// Imports precomputed gene embeddings (SATURN's `.pt` dict, `.parquet`, or `.npy` + gene list)
/// for a species, in one transaction. Genes the atlas lacks are added (they may appear in later
/// datasets). Under a `model` name that is already in the atlas, the dimension must match it.
pub fn import_embeddings(
    atlas: &mut Atlas,
    species_name: &str,
    path: &Path,
    gene_list: Option<&Path>,
    model: Option<&str>,
) -> crate::Result<EmbeddingReport> {
    let conn = atlas.connection_mut();
    let species_id = species::require(conn, species_name)?;
    let embeddings = read_gene_embeddings(path, gene_list)?;
    // Files imported under one model name share one embedding space (one `embedding_models` row,
    // e.g. the human and the mouse file of the same ESM-2); otherwise each file is its own model.
    let (name, checksum) = match model {
        Some(name) => (name.to_string(), format!("import:{name}")),
        None => (model_name(path), checksum_file(path)?),
    };
    let identity = EmbeddingModel {
        name,
        checksum,
        layer: None,
        dim: embeddings.first().map_or(0, |e| e.1.len()),
        source: "import",
    };
    atlas::write(conn, |tx| {
        let symbols: Vec<&str> = embeddings.iter().map(|(g, _)| g.as_str()).collect();
        check_species_of_symbols(tx, species_name, path, &symbols)?;
        let model_id = find_or_create_model(tx, &identity)?;
        let (gene_ids, _) = genes::resolve_or_create(tx, species_id, &symbols)?;
        let vectors = embeddings.iter().map(|(_, e)| e.as_slice());
        replace_gene_embeddings(tx, model_id, species_id, &gene_ids, vectors)?;
        Ok::<_, crate::Error>(EmbeddingReport {
            species: species_name.into(),
            embedding_model_id: model_id,
            model: identity.name.clone(),
            source: identity.source,
            proteins_embedded: 0,
            proteins_reused: 0,
            proteins_skipped: 0,
            genes: gene_ids.len(),
        })
    })
}

/// Refuses `symbols` (an embedding file's genes) for `species` when another species of the atlas
/// has more of them as exact symbols. Genes are matched case-insensitively on import, so a mouse
/// file (`Gcg`) would otherwise land on the human genes (`GCG`); exact symbols tell them apart.
fn check_species_of_symbols(
    conn: &Connection,
    species: &str,
    path: &Path,
    symbols: &[&str],
) -> crate::Result<()> {
    let in_file: std::collections::HashSet<&str> = symbols.iter().copied().collect();
    let mut by_species: HashMap<String, usize> = HashMap::new();
    for (name, symbol) in query_all(
        conn,
        "SELECT s.name, g.symbol FROM genes g JOIN species s USING (species_id)",
        [],
        "reading the gene symbols of every species",
        |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)),
    )? {
        if in_file.contains(symbol.as_str()) {
            *by_species.entry(name).or_default() += 1;
        }
    }
    let mut counts: Vec<(String, usize)> = by_species.into_iter().collect();
    counts.sort_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
    let count_of = |name: &str| counts.iter().find(|(s, _)| s == name).map_or(0, |c| c.1);
    let n_species = count_of(species);
    match counts.first() {
        Some((other, n_other)) if other != species && *n_other > n_species => {
            Err(ProteinError::SpeciesMismatch {
                path: path.display().to_string(),
                species: species.into(),
                other: other.clone(),
                total: symbols.len(),
                n_species,
                n_other: *n_other,
            }
            .into())
        }
        _ => Ok(()),
    }
}

/// The gene embeddings of `model_id` for `gene_ids` (rows in that order); genes without an
/// embedding are reported as an error naming the first.
pub fn read_gene_matrix(
    conn: &Connection,
    model_id: i32,
    gene_ids: &[i32],
) -> Result<Array2<f32>, AtlasError> {
    let rows: HashMap<i32, Vec<f32>> = query_all(
        conn,
        "SELECT gene_id, embedding FROM gene_embeddings WHERE embedding_model_id = ?",
        [model_id],
        "reading gene embeddings",
        |r| Ok((r.get(0)?, float_list(r.get_ref(1)?))),
    )?
    .into_iter()
    .collect();
    let dim = rows.values().next().map_or(0, Vec::len);
    let mut matrix = Array2::zeros((gene_ids.len(), dim));
    for (i, gene) in gene_ids.iter().enumerate() {
        let row = rows.get(gene).ok_or_else(|| AtlasError::Inconsistent {
            what: format!("gene {gene} has no embedding from model #{model_id}"),
        })?;
        matrix
            .row_mut(i)
            .assign(&ndarray::ArrayView1::from(row.as_slice()));
    }
    Ok(matrix)
}

/// A `FLOAT[]` value as a vector (empty when NULL or not a float list).
pub fn float_list(value: duckdb::types::ValueRef<'_>) -> Vec<f32> {
    match value.to_owned() {
        duckdb::types::Value::List(items) => items
            .into_iter()
            .filter_map(|v| match v {
                duckdb::types::Value::Float(x) => Some(x),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// The `embedding_models` row of `model`, created if new; an existing row of another dimension is
/// refused (its embeddings and these could not share one space).
fn find_or_create_model(conn: &Connection, model: &EmbeddingModel) -> crate::Result<i32> {
    let layer = model.layer.map(|l| l as i32);
    let existing: Option<(i32, i32)> = query_opt(
        conn,
        "SELECT embedding_model_id, dim FROM embedding_models
             WHERE name = ? AND checksum = ? AND layer IS NOT DISTINCT FROM ? AND source = ?",
        duckdb::params![model.name, model.checksum, layer, model.source],
        "looking up the embedding model",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if let Some((id, dim)) = existing {
        if dim as usize != model.dim {
            return Err(ProteinError::ModelDimension {
                model: model.name.clone(),
                id,
                expected: dim as usize,
                found: model.dim,
            }
            .into());
        }
        return Ok(id);
    }
    conn.query_row(
        "INSERT INTO embedding_models (name, checksum, layer, dim, source) VALUES (?, ?, ?, ?, ?)
         RETURNING embedding_model_id",
        duckdb::params![
            model.name,
            model.checksum,
            layer,
            model.dim as i32,
            model.source
        ],
        |r| r.get(0),
    )
    .context("recording the embedding model")
    .map_err(Into::into)
}

/// Gives each protein of the species without an embedding from `model_id` a copy of the
/// embedding of a protein (any species) with the same sequence, where one exists; returns how many
/// proteins got one. `only` is a [`gene_filter`].
fn copy_embeddings_of_identical_sequences(
    conn: &Connection,
    species_id: i32,
    model_id: i32,
    only: &str,
) -> Result<usize, AtlasError> {
    conn.execute(
        &format!(
            "INSERT INTO protein_embeddings (protein_id, embedding_model_id, embedding)
             SELECT p.protein_id, e.embedding_model_id, any_value(e.embedding)
             FROM proteins p
             JOIN proteins q ON q.sequence = p.sequence
             JOIN protein_embeddings e ON e.protein_id = q.protein_id AND e.embedding_model_id = ?
             WHERE p.species_id = ?{only} AND NOT EXISTS (SELECT 1 FROM protein_embeddings d
                 WHERE d.protein_id = p.protein_id AND d.embedding_model_id = ?)
             GROUP BY p.protein_id, e.embedding_model_id"
        ),
        [model_id, species_id, model_id],
    )
    .context("copying embeddings of identical sequences")
}

/// A distinct sequence still to embed and the proteins (ids) that carry it.
struct PendingSequence {
    sequence: String,
    proteins: Vec<i32>,
}

/// The distinct sequences of the species' proteins without an embedding from the model, shortest
/// first (similar lengths batch together). `only` is a [`gene_filter`].
fn pending_sequences(
    conn: &Connection,
    species_id: i32,
    model_id: i32,
    only: &str,
) -> Result<Vec<PendingSequence>, AtlasError> {
    let rows: Vec<(i32, String)> = query_all(
        conn,
        &format!(
            "SELECT p.protein_id, p.sequence FROM proteins p
             WHERE p.species_id = ?{only} AND NOT EXISTS (SELECT 1 FROM protein_embeddings e
                 WHERE e.protein_id = p.protein_id AND e.embedding_model_id = ?)
             ORDER BY length(p.sequence), p.protein_id"
        ),
        [species_id, model_id],
        "listing proteins to embed",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let mut index: HashMap<String, usize> = HashMap::new();
    let mut pending: Vec<PendingSequence> = Vec::new();
    for (protein, sequence) in rows {
        match index.get(&sequence) {
            Some(&i) => pending[i].proteins.push(protein),
            None => {
                index.insert(sequence.clone(), pending.len());
                pending.push(PendingSequence {
                    sequence,
                    proteins: vec![protein],
                });
            }
        }
    }
    Ok(pending)
}

/// A SQL condition on the proteins `p` restricting them to `genes` (empty: no restriction).
fn gene_filter(genes: Option<&[i32]>) -> String {
    genes.map_or_else(String::new, |ids| {
        let list: Vec<String> = ids.iter().map(i32::to_string).collect();
        format!(
            " AND p.gene_id IN (SELECT unnest([{}]::INTEGER[]))",
            list.join(",")
        )
    })
}

fn insert_protein_embeddings<'a>(
    conn: &Connection,
    model_id: i32,
    embedded: impl Iterator<Item = (i32, &'a [f32])>,
) -> Result<(), AtlasError> {
    let (ids, embeddings): (Vec<i32>, Vec<&[f32]>) = embedded.unzip();
    let n = ids.len();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("protein_id", Arc::new(Int32Array::from(ids))),
        (
            "embedding_model_id",
            Arc::new(Int32Array::from(vec![model_id; n])),
        ),
        ("embedding", bulk::list_column::<Float32Type, _>(embeddings)),
    ];
    bulk::append(conn, "protein_embeddings", columns)
}

/// Replaces the species' gene embeddings of `model_id` with the mean over each gene's proteins.
fn pool_gene_embeddings(conn: &Connection, species_id: i32, model_id: i32) -> crate::Result<usize> {
    let rows: Vec<(String, Vec<f32>)> = query_all(
        conn,
        "SELECT p.gene_id::VARCHAR, e.embedding FROM protein_embeddings e JOIN proteins p USING (protein_id)
         WHERE p.species_id = ? AND e.embedding_model_id = ? ORDER BY p.gene_id, p.protein_id",
        [species_id, model_id],
        "reading protein embeddings",
        |r| Ok((r.get(0)?, float_list(r.get_ref(1)?))),
    )?;
    let mut means = GeneMeans::new();
    for (gene, embedding) in &rows {
        means.add(gene, embedding)?;
    }
    let pooled = means.finish();
    let gene_ids = pooled
        .iter()
        .map(|(g, _)| g.parse::<i32>())
        .collect::<Result<Vec<i32>, _>>()
        .map_err(|_| AtlasError::Inconsistent {
            what: "gene ids are integers".into(),
        })?;
    let vectors = pooled.iter().map(|(_, e)| e.as_slice());
    replace_gene_embeddings(conn, model_id, species_id, &gene_ids, vectors)?;
    Ok(gene_ids.len())
}

/// Replaces the species' gene embeddings of `model_id` with `embeddings` (one per gene id).
fn replace_gene_embeddings<'a>(
    conn: &Connection,
    model_id: i32,
    species_id: i32,
    gene_ids: &[i32],
    embeddings: impl Iterator<Item = &'a [f32]>,
) -> Result<(), AtlasError> {
    conn.execute(
        "DELETE FROM gene_embeddings WHERE embedding_model_id = ?
           AND gene_id IN (SELECT gene_id FROM genes WHERE species_id = ?)",
        [model_id, species_id],
    )
    .context("replacing gene embeddings")?;
    insert_gene_embeddings(conn, model_id, gene_ids, embeddings)
}

fn insert_gene_embeddings<'a>(
    conn: &Connection,
    model_id: i32,
    gene_ids: &[i32],
    embeddings: impl Iterator<Item = &'a [f32]>,
) -> Result<(), AtlasError> {
    let n = gene_ids.len();
    let columns: Vec<(&str, ArrayRef)> = vec![
        ("gene_id", Arc::new(Int32Array::from(gene_ids.to_vec()))),
        (
            "embedding_model_id",
            Arc::new(Int32Array::from(vec![model_id; n])),
        ),
        ("embedding", bulk::list_column::<Float32Type, _>(embeddings)),
    ];
    bulk::append(conn, "gene_embeddings", columns)
}

fn model_name(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

/// sha256 of a `.pt` checkpoint, or of the safetensors files of a checkpoint directory.
fn checksum_weights(path: &Path) -> Result<String, ProteinError> {
    if path.is_dir() {
        checksum_dir(path)
    } else {
        checksum_file(path)
    }
}

fn checksum_dir(dir: &Path) -> Result<String, ProteinError> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|source| ProteinError::Io {
            path: dir.into(),
            source,
        })?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "safetensors"))
        .collect();
    files.sort();
    let mut hasher = Sha256::new();
    for file in files {
        hasher.update(checksum_file(&file)?.as_bytes());
    }
    Ok(format!("{:x}", hasher.finalize()))
}

fn checksum_file(path: &Path) -> Result<String, ProteinError> {
    let io = |source| ProteinError::Io {
        path: path.into(),
        source,
    };
    let mut file = std::fs::File::open(path).map_err(io)?;
    let mut hasher = Sha256::new();
    std::io::copy(&mut file, &mut hasher).map_err(io)?;
    Ok(format!("{:x}", hasher.finalize()))
}
