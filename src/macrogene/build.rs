//! Macrogenes in the atlas: per-species highly variable genes among the genes that have an
//! embedding, one seeded k-means over the pooled embeddings, rank-based weights, all written as
//! one macrogene set in one transaction (`satlas build-macrogenes`, `CALL satlas_build_macrogenes`).
//!
//! A macrogene set's genes are ordered by species name, then gene id; [`MacrogeneSet::read`] is
//! the one reader of that order, which the model's weight columns follow. A species added to a
//! trained model is assigned to a set's stored centroids by the same rules
//! ([`MacrogeneSet::assign_species`]) and stored as a new set extending it
//! ([`MacrogeneSet::write_extended`]).

use super::{
    gene_centroid_distances, highly_variable_genes, kmeans, rank_weights, HvgParams, KMeansParams,
    MacrogeneError, ScoreFunction,
};
use crate::atlas::counts::{read_counts, Cells};
use crate::atlas::{self, bulk, query_all, query_opt, species, AtlasError, DbContext};
use crate::protein::store::{float_list, read_gene_matrix};
use crate::Atlas;
use duckdb::arrow::array::{ArrayRef, Int32Array};
use duckdb::arrow::datatypes::Float32Type;
use duckdb::Connection;
use ndarray::{Array2, Axis};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::sync::Arc;

/// Parameters of `build_macrogenes` (SATURN defaults).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BuildParams {
    /// Number of macrogenes (k-means clusters).
    pub n_macrogenes: usize,
    /// Highly variable genes kept per species.
    pub n_top_genes: usize,
    /// k-means seed.
    pub seed: u64,
    /// Rank → weight function.
    pub score: ScoreFunction,
    /// Maximum Lloyd iterations.
    pub max_iter: usize,
    /// Embedding model to use (default: the newest one covering every species with datasets).
    pub embedding_model: Option<i32>,
}

impl Default for BuildParams {
    fn default() -> Self {
        BuildParams {
            n_macrogenes: 2000,
            n_top_genes: 8000,
            seed: 0,
            score: ScoreFunction::Default,
            max_iter: 300,
            embedding_model: None,
        }
    }
}

/// One species' genes in a macrogene set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpeciesGenes {
    /// Species id.
    pub species_id: i32,
    /// Species name.
    pub name: String,
    /// Selected gene ids, ascending.
    pub gene_ids: Vec<i32>,
}

/// A stored macrogene set, as the model consumes it.
#[derive(Debug, Clone)]
pub struct MacrogeneSet {
    /// Its id.
    pub id: i32,
    /// The embedding model its genes were clustered with.
    pub embedding_model_id: i32,
    /// Species in order (by name), each with its genes.
    pub species: Vec<SpeciesGenes>,
    /// Initial weights, macrogenes x genes (genes in species order).
    pub weights: Array2<f32>,
}

/// What `build_macrogenes` made.
#[derive(Debug, Clone, PartialEq)]
pub struct MacrogeneReport {
    /// The new set's id.
    pub macrogene_set_id: i32,
    /// Embedding model used.
    pub embedding_model_id: i32,
    /// Macrogenes.
    pub n_macrogenes: usize,
    /// Per species: (name, genes with an embedding, selected genes).
    pub species: Vec<(String, usize, usize)>,
    /// Final k-means inertia.
    pub inertia: f64,
}

impl fmt::Display for MacrogeneReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "macrogene set #{}: {} macrogenes from embedding model #{} (k-means inertia {:.4e})",
            self.macrogene_set_id, self.n_macrogenes, self.embedding_model_id, self.inertia
        )?;
        for (name, candidates, selected) in &self.species {
            write!(
                f,
                "\n  {name}: {selected} highly variable genes of {candidates} with an embedding"
            )?;
        }
        Ok(())
    }
}

impl std::str::FromStr for ScoreFunction {
    type Err = MacrogeneError;

    /// `default`, `one_hot` or `smoothed`.
    fn from_str(name: &str) -> Result<Self, MacrogeneError> {
        match name {
            "default" => Ok(ScoreFunction::Default),
            "one_hot" => Ok(ScoreFunction::OneHot),
            "smoothed" => Ok(ScoreFunction::Smoothed),
            other => Err(MacrogeneError::InvalidParameter {
                name: "score",
                value: other.into(),
                reason: "must be 'default', 'one_hot' or 'smoothed'".into(),
            }),
        }
    }
}

/// Builds a macrogene set from the atlas' datasets and gene embeddings.
pub fn build_macrogenes(atlas: &mut Atlas, params: &BuildParams) -> crate::Result<MacrogeneReport> {
    let conn = atlas.connection_mut();
    let species = species_with_datasets(conn)?;
    let model = match params.embedding_model {
        Some(id) => id,
        None => covering_model(conn, &species)?,
    };
    let mut selected = Vec::new();
    let mut report_species = Vec::new();
    for (species_id, name) in &species {
        let (genes, candidates) = select_genes(conn, *species_id, name, model, params.n_top_genes)?;
        report_species.push((name.clone(), candidates, genes.gene_ids.len()));
        selected.push(genes);
    }
    let all_genes: Vec<i32> = selected
        .iter()
        .flat_map(|s| s.gene_ids.iter().copied())
        .collect();
    let embeddings = read_gene_matrix(conn, model, &all_genes)?;
    let kmeans_params = KMeansParams {
        n_clusters: params.n_macrogenes,
        max_iter: params.max_iter,
        seed: params.seed,
        ..KMeansParams::default()
    };
    let fit = kmeans(embeddings.view(), &kmeans_params)?;
    let distances = gene_centroid_distances(embeddings.view(), fit.centroids.view())?;
    let weights = rank_weights(distances.view(), params.score)?;
    let set_id = atlas::write(conn, |tx| {
        write_set(tx, params, model, &all_genes, &fit.centroids, &weights)
    })?;
    Ok(MacrogeneReport {
        macrogene_set_id: set_id,
        embedding_model_id: model,
        n_macrogenes: params.n_macrogenes,
        species: report_species,
        inertia: fit.inertia.last().copied().unwrap_or(f64::NAN),
    })
}

/// A species' highly variable genes (Seurat v3, `n_top_genes` at most) among its datasets' genes
/// that have an embedding from `model`, in the order they were picked; and the number of such
/// candidate genes.
fn select_genes(
    conn: &Connection,
    species_id: i32,
    name: &str,
    model: i32,
    n_top_genes: usize,
) -> crate::Result<(SpeciesGenes, usize)> {
    let candidates = embedded_dataset_genes(conn, species_id, model)?;
    if candidates.is_empty() {
        return Err(not_ready(format!(
            "species {name:?} has no dataset gene with an embedding from model #{model}: embed or import its genes"
        )));
    }
    let gene_ids = species_highly_variable_genes(conn, species_id, &candidates, n_top_genes)?;
    let genes = SpeciesGenes {
        species_id,
        name: name.into(),
        gene_ids,
    };
    Ok((genes, candidates.len()))
}

/// The Seurat v3 highly variable genes of all cells of a species among `candidates` (gene ids,
/// ascending): the `n_top_genes` most variable (all candidates when there are fewer), ascending.
///
/// [`build_macrogenes`] selects among the dataset genes with an embedding,
/// [`highly_variable_genes_with_protein`] among those with a protein: when a species' embedded
/// genes are exactly the latter selection, the former (same `n_top_genes`) selects them all.
pub fn species_highly_variable_genes(
    conn: &Connection,
    species_id: i32,
    candidates: &[i32],
    n_top_genes: usize,
) -> crate::Result<Vec<i32>> {
    let counts = read_counts(conn, Cells::Species(species_id), candidates)?;
    let view = counts.csr.view()?;
    let hvg = HvgParams {
        n_top_genes: n_top_genes.min(candidates.len()),
        ..HvgParams::default()
    };
    let picked = highly_variable_genes(&view, &hvg)?.selected;
    Ok(picked.iter().map(|&j| candidates[j]).collect())
}

/// The `n_top_genes` Seurat v3 highly variable genes of a species' datasets among its genes that
/// have a protein (gene ids, ascending): the genes whose proteins `satlas embed-proteins
/// --highly-variable N` embeds, so that `build-macrogenes --n-top-genes N` later selects the same.
pub fn highly_variable_genes_with_protein(
    atlas: &Atlas,
    species_name: &str,
    n_top_genes: usize,
) -> crate::Result<Vec<i32>> {
    let conn = atlas.connection();
    let species_id = species::require(conn, species_name)?;
    let candidates: Vec<i32> = query_all(
        conn,
        "SELECT DISTINCT dg.gene_id FROM dataset_genes dg JOIN datasets d USING (dataset_id)
         WHERE d.species_id = ? AND dg.gene_id IN (SELECT gene_id FROM proteins)
         ORDER BY dg.gene_id",
        [species_id],
        "listing dataset genes with a protein",
        |r| r.get(0),
    )?;
    if candidates.is_empty() {
        return Err(not_ready(format!(
            "species {species_name:?} has no dataset gene with a protein: add its proteome \
             (`satlas add-proteome`) and a dataset (`satlas add-dataset`) before selecting \
             highly variable genes"
        )));
    }
    species_highly_variable_genes(conn, species_id, &candidates, n_top_genes)
}

/// A species assigned to the stored macrogenes of a set (`saturn_add_species`).
#[derive(Debug, Clone)]
pub struct SpeciesAssignment {
    /// Its selected genes, ascending (the order of the model's weight columns).
    pub genes: SpeciesGenes,
    /// Its dataset genes with an embedding (the highly-variable-gene candidates).
    pub candidates: usize,
    /// Initial weights, macrogenes x selected genes.
    pub weights: Array2<f32>,
}

impl MacrogeneSet {
    /// Assigns species `name` to this set's stored centroids as `build_macrogenes` assigned the
    /// set's own species: its highly variable genes among its dataset genes with an embedding from
    /// the set's embedding model (the set's `n_top_genes`), weighted by the set's rank rule and
    /// score function against the centroids. Writes nothing.
    pub fn assign_species(
        &self,
        conn: &Connection,
        species_id: i32,
        name: &str,
    ) -> crate::Result<SpeciesAssignment> {
        let params = self.params(conn)?;
        let (mut genes, candidates) = select_genes(
            conn,
            species_id,
            name,
            self.embedding_model_id,
            params.n_top_genes,
        )?;
        genes.gene_ids.sort_unstable();
        let embeddings = read_gene_matrix(conn, self.embedding_model_id, &genes.gene_ids)?;
        let centroids = self.centroids(conn)?;
        let distances = gene_centroid_distances(embeddings.view(), centroids.view())?;
        let weights = rank_weights(distances.view(), params.score)?;
        Ok(SpeciesAssignment {
            genes,
            candidates,
            weights,
        })
    }

    /// Stores this set extended with `added` as a new macrogene set (same centroids and
    /// embedding model; the set's gene weights copied, the new species' appended), so that the
    /// set a run trained on never changes. Returns the new set's id. The caller owns the
    /// transaction.
    pub fn write_extended(
        &self,
        conn: &Connection,
        added: &SpeciesAssignment,
    ) -> crate::Result<i32> {
        let mut params = serde_json::to_value(self.params(conn)?).unwrap_or_default();
        params["extends_set"] = self.id.into();
        params["added_species"] = added.genes.name.clone().into();
        let set_id: i32 = conn
            .query_row(
                "INSERT INTO macrogene_sets (embedding_model_id, n_macrogenes, params)
                 VALUES (?, ?, ?) RETURNING macrogene_set_id",
                duckdb::params![
                    self.embedding_model_id,
                    self.weights.nrows() as i32,
                    params.to_string()
                ],
                |r| r.get(0),
            )
            .context("recording the extended macrogene set")?;
        conn.execute(
            "INSERT INTO macrogenes SELECT ?, macrogene, centroid FROM macrogenes
             WHERE macrogene_set_id = ?",
            [set_id, self.id],
        )
        .context("copying the macrogene centroids")?;
        conn.execute(
            "INSERT INTO gene_macrogene SELECT ?, gene_id, initial_weights FROM gene_macrogene
             WHERE macrogene_set_id = ?",
            [set_id, self.id],
        )
        .context("copying the gene weights")?;
        write_gene_weights(conn, set_id, &added.genes.gene_ids, &added.weights)?;
        Ok(set_id)
    }

    /// The parameters the set was built with.
    fn params(&self, conn: &Connection) -> crate::Result<BuildParams> {
        let json: String = conn
            .query_row(
                "SELECT params FROM macrogene_sets WHERE macrogene_set_id = ?",
                [self.id],
                |r| r.get(0),
            )
            .context("reading the macrogene set's parameters")?;
        serde_json::from_str(&json).map_err(|e| {
            AtlasError::Inconsistent {
                what: format!(
                    "macrogene set {} has unreadable parameters {json:?}: {e}",
                    self.id
                ),
            }
            .into()
        })
    }

    /// The stored centroids, macrogenes x embedding dimension.
    fn centroids(&self, conn: &Connection) -> crate::Result<Array2<f32>> {
        let rows = query_all(
            conn,
            "SELECT centroid FROM macrogenes WHERE macrogene_set_id = ? ORDER BY macrogene",
            [self.id],
            "reading the macrogene centroids",
            |r| Ok(float_list(r.get_ref(0)?)),
        )?;
        let dim = rows.first().map_or(0, Vec::len);
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        Array2::from_shape_vec((rows.len(), dim), flat).map_err(|e| {
            AtlasError::Inconsistent {
                what: format!(
                    "macrogene set {}: centroids of unequal length ({e})",
                    self.id
                ),
            }
            .into()
        })
    }

    /// Reads set `id`, or the newest set when `None`.
    pub fn read(conn: &Connection, id: Option<i32>) -> crate::Result<MacrogeneSet> {
        let row: Option<(i32, i32, i32)> = query_opt(
            conn,
            "SELECT macrogene_set_id, embedding_model_id, n_macrogenes FROM macrogene_sets
             WHERE macrogene_set_id = coalesce(?, (SELECT max(macrogene_set_id) FROM macrogene_sets))",
            [id],
            "reading the macrogene set",
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )?;
        let Some((id, embedding_model_id, n_macrogenes)) = row else {
            return Err(not_ready(
                "no macrogene set in the atlas: run `satlas build-macrogenes` (CALL satlas_build_macrogenes()) first".into(),
            ));
        };
        let rows = query_all(
            conn,
            "SELECT s.species_id, s.name, gm.gene_id, gm.initial_weights
             FROM gene_macrogene gm JOIN genes g USING (gene_id) JOIN species s USING (species_id)
             WHERE gm.macrogene_set_id = ? ORDER BY s.name, gm.gene_id",
            [id],
            "reading gene-macrogene weights",
            |r| {
                Ok((
                    r.get::<_, i32>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i32>(2)?,
                    float_list(r.get_ref(3)?),
                ))
            },
        )?;
        let mut species: Vec<SpeciesGenes> = Vec::new();
        let mut weights = Array2::zeros((n_macrogenes as usize, rows.len()));
        for (g, (species_id, name, gene_id, w)) in rows.into_iter().enumerate() {
            if w.len() != n_macrogenes as usize {
                return Err(AtlasError::Inconsistent {
                    what: format!("gene {gene_id} has {} weights, not {n_macrogenes}", w.len()),
                }
                .into());
            }
            weights
                .column_mut(g)
                .assign(&ndarray::ArrayView1::from(w.as_slice()));
            match species.last_mut() {
                Some(last) if last.species_id == species_id => last.gene_ids.push(gene_id),
                _ => species.push(SpeciesGenes {
                    species_id,
                    name,
                    gene_ids: vec![gene_id],
                }),
            }
        }
        Ok(MacrogeneSet {
            id,
            embedding_model_id,
            species,
            weights,
        })
    }

    /// The gene embeddings of the set's genes (rows in the set's gene order).
    pub fn gene_embeddings(&self, conn: &Connection) -> Result<Array2<f32>, AtlasError> {
        let genes: Vec<i32> = self
            .species
            .iter()
            .flat_map(|s| s.gene_ids.iter().copied())
            .collect();
        read_gene_matrix(conn, self.embedding_model_id, &genes)
    }
}

fn not_ready(what: String) -> crate::Error {
    MacrogeneError::NotReady { what }.into()
}

fn species_with_datasets(conn: &Connection) -> crate::Result<Vec<(i32, String)>> {
    let species = query_all(
        conn,
        "SELECT DISTINCT s.species_id, s.name FROM species s JOIN datasets d USING (species_id) ORDER BY s.name",
        [],
        "listing species with datasets",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    if species.is_empty() {
        return Err(not_ready(
            "the atlas has no dataset: add one with `satlas add-dataset` first".into(),
        ));
    }
    Ok(species)
}

/// The newest embedding model with gene embeddings for every species in `species`.
fn covering_model(conn: &Connection, species: &[(i32, String)]) -> crate::Result<i32> {
    let covered: Vec<(i32, i64)> = query_all(
        conn,
        "SELECT e.embedding_model_id, count(DISTINCT g.species_id) FROM gene_embeddings e
         JOIN genes g USING (gene_id) GROUP BY ALL ORDER BY e.embedding_model_id DESC",
        [],
        "finding gene embeddings",
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    for (model, _) in covered.iter().filter(|(_, n)| *n as usize >= species.len()) {
        let ok: i64 = conn
            .query_row(
                &format!(
                    "SELECT count(DISTINCT g.species_id) FROM gene_embeddings e JOIN genes g USING (gene_id)
                     WHERE e.embedding_model_id = ? AND g.species_id IN ({})",
                    species.iter().map(|s| s.0.to_string()).collect::<Vec<_>>().join(",")
                ),
                [model],
                |r| r.get(0),
            )
            .context("checking embedding coverage")?;
        if ok as usize == species.len() {
            return Ok(*model);
        }
    }
    let names: Vec<&str> = species.iter().map(|s| s.1.as_str()).collect();
    Err(not_ready(format!(
        "no embedding model covers every species with datasets ({}): run `satlas embed-proteins` or \
         `satlas import-embeddings` for each",
        names.join(", ")
    )))
}

/// Genes of the species' datasets that have an embedding from `model`, ascending.
fn embedded_dataset_genes(
    conn: &Connection,
    species_id: i32,
    model: i32,
) -> Result<Vec<i32>, AtlasError> {
    query_all(
        conn,
        "SELECT DISTINCT dg.gene_id FROM dataset_genes dg JOIN datasets d USING (dataset_id)
         JOIN gene_embeddings e ON e.gene_id = dg.gene_id AND e.embedding_model_id = ?
         WHERE d.species_id = ? ORDER BY dg.gene_id",
        [model, species_id],
        "listing genes with embeddings",
        |r| r.get(0),
    )
}

fn write_set(
    conn: &Connection,
    params: &BuildParams,
    model: i32,
    genes: &[i32],
    centroids: &Array2<f32>,
    weights: &Array2<f32>,
) -> crate::Result<i32> {
    let json = serde_json::to_string(params).unwrap_or_default();
    let set_id: i32 = conn
        .query_row(
            "INSERT INTO macrogene_sets (embedding_model_id, n_macrogenes, params) VALUES (?, ?, ?)
             RETURNING macrogene_set_id",
            duckdb::params![model, params.n_macrogenes as i32, json],
            |r| r.get(0),
        )
        .context("recording the macrogene set")?;
    let m = centroids.nrows();
    let centroid_rows: Vec<Vec<f32>> = centroids.axis_iter(Axis(0)).map(|r| r.to_vec()).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "macrogene_set_id",
            Arc::new(Int32Array::from(vec![set_id; m])),
        ),
        (
            "macrogene",
            Arc::new(Int32Array::from_iter_values(0..m as i32)),
        ),
        (
            "centroid",
            bulk::list_column::<Float32Type, _>(centroid_rows.iter().map(Vec::as_slice)),
        ),
    ];
    bulk::append(conn, "macrogenes", columns)?;
    write_gene_weights(conn, set_id, genes, weights)?;
    Ok(set_id)
}

/// Appends the initial weights (macrogenes x genes) of `genes` to set `set_id`.
fn write_gene_weights(
    conn: &Connection,
    set_id: i32,
    genes: &[i32],
    weights: &Array2<f32>,
) -> crate::Result<()> {
    let weight_cols: Vec<Vec<f32>> = weights.axis_iter(Axis(1)).map(|c| c.to_vec()).collect();
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "macrogene_set_id",
            Arc::new(Int32Array::from(vec![set_id; genes.len()])),
        ),
        ("gene_id", Arc::new(Int32Array::from(genes.to_vec()))),
        (
            "initial_weights",
            bulk::list_column::<Float32Type, _>(weight_cols.iter().map(Vec::as_slice)),
        ),
    ];
    bulk::append(conn, "gene_macrogene", columns)?;
    Ok(())
}
