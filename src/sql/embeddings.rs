//! `satlas_embed_proteins(...)` and `satlas_import_embeddings(...)`: the protein-embedding stage
//! from SQL. Both return one row describing what was done.

use super::{Args, Procedure};
use crate::macrogene::highly_variable_genes_with_protein;
use crate::protein::store::{embed_species, import_embeddings, EmbeddingReport};
use crate::protein::EmbedOptions;
use crate::Atlas;
use duckdb::arrow::array::{ArrayRef, Int64Array, StringArray};
use duckdb::arrow::datatypes::{DataType, Field, Schema};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::LogicalTypeId;
use std::path::Path;
use std::sync::Arc;

/// `CALL satlas_embed_proteins(species := 'human', model := '/path/to/esm2_dir', layer := 6)`;
/// `model` may also be a fair-esm `.pt` file.
/// `highly_variable := N` embeds only the proteins of the species' N highly variable genes.
pub struct EmbedProteins;

impl Procedure for EmbedProteins {
    const NAME: &'static str = "satlas_embed_proteins";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        vec![
            ("species", LogicalTypeId::Varchar),
            ("model", LogicalTypeId::Varchar),
            ("layer", LogicalTypeId::Bigint),
            ("highly_variable", LogicalTypeId::Bigint),
        ]
    }

    fn schema() -> Schema {
        report_schema()
    }

    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let species = args.required_text("species")?;
        let model = args.required_text("model")?;
        let options = EmbedOptions {
            layer: args.usize("layer")?,
            ..EmbedOptions::default()
        };
        let genes = match args.usize("highly_variable")? {
            Some(n) => Some(highly_variable_genes_with_protein(atlas, &species, n)?),
            None => None,
        };
        let report = embed_species(
            atlas,
            &species,
            Path::new(&model),
            &options,
            genes.as_deref(),
        )?;
        Ok(Self::batch(report_columns(&report))?)
    }
}

/// `CALL satlas_import_embeddings(species := 'human', file := 'human_embeddings.pt')` (or a
/// `.parquet` file with `gene` and `embedding` columns; `genes := 'genes.txt'` for a `.npy`
/// matrix; `model := 'NAME'` to share one embedding space with other files imported under that
/// name).
pub struct ImportEmbeddings;

impl Procedure for ImportEmbeddings {
    const NAME: &'static str = "satlas_import_embeddings";

    fn parameters() -> Vec<(&'static str, LogicalTypeId)> {
        vec![
            ("species", LogicalTypeId::Varchar),
            ("file", LogicalTypeId::Varchar),
            ("genes", LogicalTypeId::Varchar),
            ("model", LogicalTypeId::Varchar),
        ]
    }

    fn schema() -> Schema {
        report_schema()
    }

    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch> {
        let species = args.required_text("species")?;
        let file = args.required_text("file")?;
        let genes = args.text("genes")?;
        let model = args.text("model")?;
        let genes = genes.as_deref().map(Path::new);
        let report = import_embeddings(atlas, &species, Path::new(&file), genes, model.as_deref())?;
        Ok(Self::batch(report_columns(&report))?)
    }
}

fn report_schema() -> Schema {
    let int = |name| Field::new(name, DataType::Int64, false);
    let text = |name| Field::new(name, DataType::Utf8, false);
    Schema::new(vec![
        text("species"),
        int("embedding_model_id"),
        text("model"),
        text("source"),
        int("proteins_embedded"),
        int("proteins_reused"),
        int("proteins_skipped"),
        int("genes"),
    ])
}

fn report_columns(report: &EmbeddingReport) -> Vec<ArrayRef> {
    let int = |v: usize| -> ArrayRef { Arc::new(Int64Array::from(vec![v as i64])) };
    let text = |v: &str| -> ArrayRef { Arc::new(StringArray::from(vec![v])) };
    vec![
        text(&report.species),
        int(report.embedding_model_id as usize),
        text(&report.model),
        text(report.source),
        int(report.proteins_embedded),
        int(report.proteins_reused),
        int(report.proteins_skipped),
        int(report.genes),
    ]
}
