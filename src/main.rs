//! The `satlas` command line: parses arguments and calls one library function per subcommand.

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, Parser, Subcommand};
use satlas::de::{self, DeSpec};
use satlas::eval::baseline::OrthologBaseline;
use satlas::eval::{self, CorrespondenceSource, EvalSpec, Features};
use satlas::export::{self, ExportSpec};
use satlas::index::search::{Neighbour, QueryPoint};
use satlas::index::transfer::{self, TransferSpec};
use satlas::index::{self as index, IndexError, IndexParams, KnnQuery};
use satlas::ingest::{self, DatasetSpec};
use satlas::io::{FastaOptions, ReadOptions};
use satlas::layout::UmapParams;
use satlas::macrogene::{
    build_macrogenes, highly_variable_genes_with_protein, BuildParams, ScoreFunction,
};
use satlas::model::{
    add_and_embed_dataset, embed_dataset, run_add_species, run_finetune, run_pretrain,
    AddSpeciesRequest, FinetuneParams, FinetuneRequest, ModelError, PretrainParams,
    PretrainRequest, RunReport, Schedule, DEFAULT_CHECKPOINT_EVERY,
};
use satlas::plot::{self, report::ReportSpec};
use satlas::protein::{store, EmbedOptions, Parallelism};
use satlas::runs::{RunError, Scope};
use satlas::Atlas;
use std::io::IsTerminal;
use std::path::PathBuf;

/// satlas: a cross-species single-cell atlas in one file (SATURN on DuckDB).
///
/// Typical flow: `satlas init`, `satlas add-proteome` per species, `satlas add-dataset` per
/// count matrix, then `satlas info` and `satlas sql` to look inside.
#[derive(Parser)]
#[command(version, about, long_about)]
struct Cli {
    /// The atlas file.
    #[arg(
        short,
        long,
        global = true,
        env = "SATLAS_ATLAS",
        default_value = "atlas.satlas"
    )]
    atlas: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a new, empty atlas file.
    Init,
    /// Show what the atlas holds: species, datasets, cells per type, model runs, index state.
    Info,
    /// Run SQL against the atlas (interactive shell without -c). satlas' SQL procedures are
    /// registered; try `SELECT * FROM satlas_info()` or `SELECT species, cell_type, count(*)
    /// FROM cell_info GROUP BY ALL`.
    Sql {
        /// Run these statements and exit.
        #[arg(short, long, allow_hyphen_values = true)]
        command: Option<String>,
        /// Open the atlas read-only (several readers may share it).
        #[arg(long)]
        read_only: bool,
    },
    /// Add a species' protein sequences from a FASTA file (plain or gzipped).
    ///
    /// Ensembl `*.pep.all.fa` headers (gene from `gene_symbol:`) and plain `>SYMBOL ...` headers
    /// are understood. Records whose sequence holds a stop `*` are dropped and counted.
    AddProteome(AddProteome),
    /// Add a dataset of raw integer counts with cell-type labels (h5ad or 10x directory).
    ///
    /// With --embed, the dataset is then embedded with the trained model (as `embed-dataset`):
    /// two transactions, so if embedding fails the dataset stays added; run `embed-dataset` then.
    AddDataset(AddDataset),
    /// Embed a species' proteins with an ESM-2 checkpoint (Hugging Face directory with
    /// config.json and model.safetensors, or a fair-esm .pt file); gene embedding = mean over the gene's proteins.
    /// Resumable: proteins embedded by an earlier, interrupted run are skipped.
    EmbedProteins(EmbedProteins),
    /// Import precomputed gene embeddings: SATURN's torch.save'd {gene: tensor} dict (.pt/.torch),
    /// a Parquet file with columns gene (string) and embedding (list of floats), or a .npy matrix
    /// with --genes.
    ImportEmbeddings(ImportEmbeddings),
    /// SATURN step 1: per-species highly variable genes among genes with an embedding, one
    /// k-means over their protein embeddings (the macrogenes), rank-based gene weights.
    BuildMacrogenes(BuildMacrogenes),
    /// SATURN step 2: pretrain the autoencoder (ZINB + protein-similarity regulariser). An
    /// interrupted run with the same parameters resumes from its last checkpoint.
    Pretrain(Pretrain),
    /// SATURN step 3: fine-tune with the cross-species triplet loss (weak supervision from each
    /// dataset's own labels), then embed every cell.
    Finetune(Finetune),
    /// Embed a dataset added after training (a species the model was trained on) with the
    /// finished fine-tuned model, no training; the run's HNSW index, if any, is extended with the
    /// new cells so they are searchable at once.
    EmbedDataset(EmbedDataset),
    /// Add a new species to the trained model without retraining it: its genes are assigned to
    /// the stored macrogenes (same rules as build-macrogenes), only its own parameters (gene
    /// weights, decoder head) are trained on its cells with the pretraining objective while the
    /// shared encoder stays frozen, then its cells are embedded and added to the HNSW index.
    /// Existing cells keep their embeddings bit for bit. The result is a new model run
    /// (kind add_species) that knn, transfer and eval use by default. Resumable like pretrain.
    ///
    /// Needs the species' proteome (add-proteome), its gene embeddings from the same protein
    /// model as the macrogenes (embed-proteins / import-embeddings --model) and its datasets
    /// (add-dataset).
    AddSpecies(AddSpecies),
    /// Build or update the HNSW index over a model run's cell embeddings.
    #[command(subcommand)]
    Index(IndexCommand),
    /// The nearest cells of a cell (cosine distance in the embedding space).
    Knn(Knn),
    /// Transfer cell-type labels from a species or dataset to a query dataset (kNN vote).
    Transfer(Transfer),
    /// SATURN's evaluation: cross-species logistic-regression and kNN label transfer, species
    /// mixing (read-only).
    Eval(Eval),
    /// Export a model run's embedded cells for other tools (read-only): an AnnData .h5ad that
    /// scanpy reads, or Parquet tables.
    ///
    /// h5ad: X and obsm/X_saturn hold the embedding; obs (indexed by cell id) has barcode, species,
    /// dataset, cell_type, transferred_label and transfer_confidence (the run's latest label
    /// transfer; missing where none); uns/satlas records the run. Parquet: --out is a directory
    /// that gets cells.parquet, embeddings.parquet and macrogene_weights.parquet.
    Export(Export),
    /// Macrogene differential expression: which macrogenes mark each cell type (Wilcoxon
    /// rank-sum of the stored macrogene expression, each group vs the rest or a reference group),
    /// with each top macrogene's genes by trained weight, per species (read-only).
    De(De),
    /// Compute and store the 2-D UMAP layout of a model run's cell embeddings (replacing a
    /// stored one). `plot umap` and `report` compute it with the defaults when it is missing,
    /// and place cells embedded later by their neighbours.
    Layout(LayoutArgs),
    /// Pictures of a model run as SVG or PNG (by the --out file name).
    #[command(subcommand)]
    Plot(PlotCommand),
    /// One self-contained HTML page about a model run: atlas summary, datasets, UMAPs, training
    /// curves, evaluation (with the 1:1-ortholog baseline given --orthologs), species mixing,
    /// label-transfer confusion matrix, DE heatmap.
    Report(ReportArgs),
    /// Write a synthetic dataset (h5ad or 10x) of any size drawn from a real one (capacity planning and
    /// benchmarks): cell-type shares, library sizes, mean expression and dispersions fitted to
    /// --like, negative-binomial counts, the same gene symbols, the true type in obs. Seeded: the
    /// same arguments give the same file content. Needs no atlas.
    Simulate(SimulateArgs),
}

#[derive(ClapArgs)]
struct SimulateArgs {
    /// The real dataset to imitate (h5ad or 10x directory of raw counts).
    #[arg(long)]
    like: PathBuf,
    /// obs column of its cell types (kept under the same name in the output).
    #[arg(short, long)]
    label: String,
    /// Number of cells to write.
    #[arg(long)]
    cells: usize,
    /// Seed of every random draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// The .h5ad file to write (replaced once complete), or any other name: a new 10x directory
    /// (matrix.mtx, features.tsv, barcodes.tsv, and obs.csv for `add-dataset --obs`).
    #[arg(long)]
    out: PathBuf,
}

#[derive(ClapArgs)]
struct LayoutArgs {
    /// Model run (default: the newest finetune or add-species run with embeddings).
    #[arg(long)]
    run: Option<i32>,
    /// Neighbourhood size, the cell itself included (umap-learn's n_neighbors).
    #[arg(long, default_value_t = satlas::layout::DEFAULT_NEIGHBORS)]
    neighbors: usize,
    /// Minimum distance between points in the layout (umap-learn's min_dist).
    #[arg(long, default_value_t = satlas::layout::DEFAULT_MIN_DIST)]
    min_dist: f64,
    /// SGD epochs (default: 500 up to 10,000 cells, else 200).
    #[arg(long)]
    epochs: Option<usize>,
    /// Seed of the layout.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl From<&LayoutArgs> for UmapParams {
    fn from(args: &LayoutArgs) -> Self {
        UmapParams {
            n_neighbors: args.neighbors,
            min_dist: args.min_dist,
            n_epochs: args.epochs,
            seed: args.seed,
        }
    }
}

#[derive(Subcommand)]
enum PlotCommand {
    /// The UMAP of a run's cells coloured by species, cell_type, dataset, transferred_label or
    /// confidence (the run's latest label transfer).
    Umap {
        /// Model run (default: the newest finetune or add-species run with embeddings).
        #[arg(long)]
        run: Option<i32>,
        /// What colours the cells: species, cell_type, dataset, transferred_label, confidence.
        #[arg(long, visible_alias = "colour", default_value = "cell_type")]
        color: String,
        /// Output file: .svg or .png.
        #[arg(long)]
        out: PathBuf,
    },
    /// Loss per epoch, and each loss term, of a run and the runs it continues.
    Training {
        /// Model run (default: the newest finetune or add-species run with embeddings).
        #[arg(long)]
        run: Option<i32>,
        /// Output file: .svg or .png.
        #[arg(long)]
        out: PathBuf,
    },
    /// The top macrogenes per cell type (Wilcoxon, each type vs the rest) as a heatmap of their
    /// mean expression per type.
    De {
        /// Model run (default: the newest finetune or add-species run with embeddings).
        #[arg(long)]
        run: Option<i32>,
        /// Only cells of this species.
        #[arg(long)]
        species: Option<String>,
        /// Output file: .svg or .png.
        #[arg(long)]
        out: PathBuf,
    },
}

#[derive(ClapArgs)]
struct ReportArgs {
    /// Model run (default: the newest finetune or add-species run with embeddings).
    #[arg(long)]
    run: Option<i32>,
    /// Species A of the evaluation (default: the run's two species).
    #[arg(long, requires = "b")]
    a: Option<String>,
    /// Species B of the evaluation.
    #[arg(long, requires = "a")]
    b: Option<String>,
    /// Ortholog table (as `satlas eval --orthologs`): adds the 1:1-ortholog baseline beside the
    /// run's evaluation.
    #[arg(long)]
    orthologs: Option<PathBuf>,
    /// Output file (.html).
    #[arg(long)]
    out: PathBuf,
}

impl From<&ReportArgs> for ReportSpec {
    fn from(args: &ReportArgs) -> Self {
        ReportSpec {
            run: args.run,
            species: args.a.clone().zip(args.b.clone()),
            orthologs: args.orthologs.clone(),
        }
    }
}

#[derive(ClapArgs)]
struct Export {
    /// Output format.
    #[arg(short, long, value_enum)]
    format: ExportFormat,
    /// Output: the .h5ad file, or the directory for the Parquet tables (created if missing).
    /// Written to a temporary file first, so a failed export leaves nothing half-written.
    #[arg(short, long)]
    out: PathBuf,
    /// Model run (default: the newest finetune run with embeddings).
    #[arg(long)]
    run: Option<i32>,
    /// h5ad only: also write each cell's macrogene expression as obsm/X_macrogenes.
    #[arg(long)]
    macrogenes: bool,
}

#[derive(Clone, Copy, clap::ValueEnum)]
enum ExportFormat {
    /// AnnData (scanpy's format).
    H5ad,
    /// Parquet tables in a directory.
    Parquet,
}

impl From<&Export> for ExportSpec {
    fn from(args: &Export) -> Self {
        ExportSpec {
            format: match args.format {
                ExportFormat::H5ad => export::ExportFormat::H5ad,
                ExportFormat::Parquet => export::ExportFormat::Parquet,
            },
            run: args.run,
            macrogenes: args.macrogenes,
        }
    }
}

#[derive(ClapArgs)]
struct EmbedProteins {
    /// Species whose proteins to embed.
    #[arg(short, long)]
    species: String,
    /// ESM-2 checkpoint: a Hugging Face directory (config.json, model.safetensors[, vocab.txt])
    /// or a fair-esm .pt file (e.g. esm2_t33_650M_UR50D.pt as esm.pretrained downloads it).
    #[arg(short, long)]
    model: PathBuf,
    /// Layer to pool (default: the last, after the final layer norm).
    #[arg(long)]
    layer: Option<usize>,
    /// Batch size bound: proteins per batch x the longest one's tokens, as fair-esm's
    /// --toks_per_batch (a batch's proteins are packed; no padding is computed).
    #[arg(long, default_value_t = 4096)]
    tokens_per_batch: usize,
    /// Threads (default: one per physical core), used by libtorch within each batch.
    #[arg(long)]
    threads: Option<usize>,
    /// Run whole batches concurrently instead, one per thread with one libtorch thread each:
    /// about as fast on an idle machine, 2x faster on one other processes load.
    #[arg(long)]
    batch_workers: bool,
    /// Embed only the proteins of the species' N Seurat v3 highly variable genes (over all its
    /// datasets, among the genes with a protein): the genes `build-macrogenes --n-top-genes N`
    /// will select. Saves most of the embedding time; a later run with a larger N (or without
    /// this option) embeds only what is missing. Add the datasets first.
    #[arg(long, value_name = "N")]
    highly_variable: Option<usize>,
}

impl From<&EmbedProteins> for EmbedOptions {
    fn from(args: &EmbedProteins) -> Self {
        let threads = args
            .threads
            .unwrap_or_else(|| tch::get_num_threads().max(1) as usize);
        EmbedOptions {
            layer: args.layer,
            tokens_per_batch: args.tokens_per_batch,
            parallelism: if args.batch_workers {
                Parallelism::Batches(threads)
            } else {
                Parallelism::IntraOp(threads)
            },
            ..EmbedOptions::default()
        }
    }
}

#[derive(ClapArgs)]
struct ImportEmbeddings {
    /// Species the genes belong to.
    #[arg(short, long)]
    species: String,
    /// Gene list (one symbol per line, in row order) for a .npy matrix.
    #[arg(long)]
    genes: Option<PathBuf>,
    /// Embedding model name: files imported under the same name (e.g. each species' file of one
    /// ESM-2) share one embedding space, as macrogenes need. Default: each file is its own model.
    #[arg(long)]
    model: Option<String>,
    /// The embedding file (.pt, .torch, .parquet or .npy).
    file: PathBuf,
}

#[derive(ClapArgs)]
struct BuildMacrogenes {
    /// Number of macrogenes (k-means clusters).
    #[arg(short, long, default_value_t = BuildParams::default().n_macrogenes)]
    n: usize,
    /// Highly variable genes per species (Seurat v3).
    #[arg(long, default_value_t = BuildParams::default().n_top_genes)]
    n_top_genes: usize,
    /// k-means seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Rank → weight function: default, one_hot or smoothed.
    #[arg(long, default_value = "default")]
    score: ScoreFunction,
    /// Embedding model id (default: the newest covering every species).
    #[arg(long)]
    embedding_model: Option<i32>,
}

impl From<&BuildMacrogenes> for BuildParams {
    fn from(args: &BuildMacrogenes) -> Self {
        BuildParams {
            n_macrogenes: args.n,
            n_top_genes: args.n_top_genes,
            seed: args.seed,
            score: args.score,
            embedding_model: args.embedding_model,
            ..BuildParams::default()
        }
    }
}

#[derive(ClapArgs)]
struct TrainingArgs {
    /// Epochs.
    #[arg(short, long)]
    epochs: Option<usize>,
    /// Seed (shuffling, dropout, partners, mining).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Cells per batch.
    #[arg(long)]
    batch_size: Option<usize>,
    /// Adam learning rate.
    #[arg(long)]
    lr: Option<f64>,
    /// Store weights every this many epochs (resume granularity).
    #[arg(long, default_value_t = DEFAULT_CHECKPOINT_EVERY)]
    checkpoint_every: usize,
}

impl From<&TrainingArgs> for Schedule {
    fn from(args: &TrainingArgs) -> Self {
        Schedule {
            epochs: args.epochs,
            batch_size: args.batch_size,
            lr: args.lr,
            seed: Some(args.seed),
            checkpoint_every: Some(args.checkpoint_every),
        }
    }
}

#[derive(ClapArgs)]
struct Pretrain {
    #[command(flatten)]
    training: TrainingArgs,
    /// Macrogene set (default: the newest).
    #[arg(long)]
    macrogene_set: Option<i32>,
    /// SATURN's VAE variant: the encoder outputs a mean and a log-variance, the decoder a
    /// sample, pretraining adds the KL divergence with a cyclic weight (50-epoch period);
    /// embeddings are the mean. Fine-tuning and embedding follow the run's choice.
    #[arg(long)]
    vae: bool,
}

impl From<&Pretrain> for PretrainRequest {
    fn from(args: &Pretrain) -> Self {
        let schedule = Schedule::from(&args.training);
        PretrainRequest {
            params: schedule.pretrain(),
            macrogene_set: args.macrogene_set,
            checkpoint_every: schedule.checkpoint_every(),
            vae: args.vae,
        }
    }
}

#[derive(ClapArgs)]
struct Finetune {
    #[command(flatten)]
    training: TrainingArgs,
    /// Triplet margin.
    #[arg(long, default_value_t = FinetuneParams::default().margin)]
    margin: f64,
    /// Also train the macrogene weights.
    #[arg(long)]
    unfreeze: bool,
    /// Pretraining run to start from (default: the newest finished).
    #[arg(long)]
    pretrain_run: Option<i32>,
}

impl From<&Finetune> for FinetuneRequest {
    fn from(args: &Finetune) -> Self {
        let schedule = Schedule::from(&args.training);
        FinetuneRequest {
            params: FinetuneParams {
                margin: args.margin,
                unfreeze_macrogenes: args.unfreeze,
                ..schedule.finetune()
            },
            pretrain_run: args.pretrain_run,
            checkpoint_every: schedule.checkpoint_every(),
        }
    }
}

#[derive(ClapArgs)]
struct EmbedDataset {
    /// The dataset (datasets.name).
    #[arg(short, long)]
    dataset: String,
    /// Finished finetune or add-species run to embed with (default: the newest).
    #[arg(long)]
    run: Option<i32>,
}

#[derive(ClapArgs)]
struct AddSpecies {
    /// The species to add (species.name).
    #[arg(short, long)]
    species: String,
    #[command(flatten)]
    training: TrainingArgs,
    /// Weight of the protein-similarity regulariser on the new species' gene weights.
    #[arg(long, default_value_t = PretrainParams::default().regulariser_weight)]
    regulariser_weight: f64,
    /// The finished finetune (or add-species) run to extend (default: the newest).
    #[arg(long)]
    run: Option<i32>,
}

impl From<&AddSpecies> for AddSpeciesRequest {
    fn from(args: &AddSpecies) -> Self {
        let schedule = Schedule::from(&args.training);
        AddSpeciesRequest {
            species: args.species.clone(),
            params: PretrainParams {
                regulariser_weight: args.regulariser_weight,
                ..schedule.pretrain()
            },
            parent_run: args.run,
            checkpoint_every: schedule.checkpoint_every(),
        }
    }
}

#[derive(Subcommand)]
enum IndexCommand {
    /// (Re)build the index of a run and store it in the atlas.
    Build(IndexBuild),
    /// Insert newly embedded cells into the stored index (rebuilds if cells were removed).
    Update {
        /// Model run (default: the newest finetune or add-species run with embeddings).
        #[arg(long)]
        run: Option<i32>,
    },
}

#[derive(ClapArgs)]
struct IndexBuild {
    /// Model run (default: the newest finetune or add-species run with embeddings).
    #[arg(long)]
    run: Option<i32>,
    /// Neighbours per node and layer (HNSW's M).
    #[arg(long, default_value_t = IndexParams::default().m)]
    m: usize,
    /// Candidate list size while building.
    #[arg(long, default_value_t = IndexParams::default().ef_construction)]
    ef_construction: usize,
    /// Candidate list size while searching.
    #[arg(long, default_value_t = IndexParams::default().ef_search)]
    ef_search: usize,
}

impl From<&IndexBuild> for IndexParams {
    fn from(args: &IndexBuild) -> Self {
        IndexParams {
            m: args.m,
            ef_construction: args.ef_construction,
            ef_search: args.ef_search,
        }
    }
}

#[derive(ClapArgs)]
struct Knn {
    /// The query cell (cells.cell_id).
    #[arg(long)]
    cell: i64,
    /// Neighbours wanted.
    #[arg(short, long, default_value_t = 10)]
    k: usize,
    /// Only cells of this species.
    #[arg(long, conflicts_with = "dataset")]
    species: Option<String>,
    /// Only cells of this dataset.
    #[arg(long)]
    dataset: Option<String>,
    /// Model run (default: the newest finetune or add-species run with embeddings).
    #[arg(long)]
    run: Option<i32>,
}

impl Knn {
    fn to_query(&self) -> Result<KnnQuery, IndexError> {
        Ok(KnnQuery {
            run: self.run,
            k: self.k,
            scope: Scope::from_names(self.species.clone(), self.dataset.clone())?,
        })
    }
}

#[derive(ClapArgs)]
struct Transfer {
    /// Where labels come from: a species name, else a dataset name.
    #[arg(long)]
    reference: String,
    /// The cells that get labels: a dataset in the atlas, or a path to an .h5ad file or 10x
    /// directory not in the atlas yet, which is then added as a dataset (needs --species) and
    /// embedded with the model first (as add-dataset --embed).
    #[arg(long)]
    query: String,
    /// Species of a query file.
    #[arg(long)]
    species: Option<String>,
    /// obs column of a query file holding its own labels, if any (kept for comparison; the
    /// transfer does not use them).
    #[arg(long)]
    label: Option<String>,
    /// Dataset name of a query file (default: the file name without extension).
    #[arg(long)]
    name: Option<String>,
    /// CSV/TSV of per-cell annotations of a query 10x directory (first column: barcode).
    #[arg(long)]
    obs: Option<PathBuf>,
    /// Neighbours per query cell.
    #[arg(short, long, default_value_t = transfer::DEFAULT_K)]
    k: usize,
    /// Below this share of the vote a cell is labelled "unknown".
    #[arg(long, default_value_t = transfer::DEFAULT_MIN_CONFIDENCE)]
    min_confidence: f64,
    /// Model run (default: the newest finetune or add-species run with embeddings).
    #[arg(long)]
    run: Option<i32>,
    /// File for the labels (cell, dataset, barcode, original and predicted label, confidence,
    /// reference, k): Parquet when it ends in .parquet, CSV otherwise.
    #[arg(long)]
    out: Option<PathBuf>,
}

impl Transfer {
    /// The transfer to the dataset named `query`, with the run `run`.
    fn to_spec(&self, query: String, run: Option<i32>) -> TransferSpec {
        TransferSpec {
            query,
            reference: self.reference.clone(),
            k: self.k,
            min_confidence: self.min_confidence,
            run,
        }
    }

    /// `--query` as a file to add first (`None`: it names a dataset of the atlas).
    fn query_file(&self) -> Result<Option<DatasetSpec>> {
        let file = PathBuf::from(&self.query);
        if !file.exists() {
            return Ok(None);
        }
        let Some(species) = self.species.clone() else {
            anyhow::bail!(
                "--query {} is a file: give its species with --species (to transfer to a dataset \
                 of the atlas, give the dataset's name instead)",
                file.display()
            );
        };
        Ok(Some(DatasetSpec {
            path: file,
            species,
            name: self.name.clone(),
            label_column: self.label.clone().unwrap_or_default(),
            read: ReadOptions {
                layer: None,
                obs_file: self.obs.clone(),
            },
        }))
    }
}

#[derive(ClapArgs)]
struct Eval {
    /// Species A.
    #[arg(long)]
    a: String,
    /// Species B.
    #[arg(long)]
    b: String,
    /// Model run (default: the newest finetune or add-species run with embeddings).
    #[arg(long)]
    run: Option<i32>,
    /// obs column both species have that says which cell types correspond.
    #[arg(long, default_value = eval::DEFAULT_CORRESPONDENCE, conflicts_with = "correspondence_csv")]
    correspondence: String,
    /// CSV with columns {a}_cell_type and {b}_cell_type: the corresponding label pairs.
    #[arg(long)]
    correspondence_csv: Option<PathBuf>,
    /// Seed of the 80/20 split of the training species.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Inverse L2 regularisation strength of the logistic regression.
    #[arg(long, default_value_t = eval::DEFAULT_C)]
    c: f64,
    /// Neighbours for kNN transfer and species mixing.
    #[arg(short, long, default_value_t = eval::DEFAULT_K)]
    k: usize,
    /// Evaluate a baseline instead of a model run: `orthologs` = PCA of the log-normalised
    /// (scanpy normalize_total 1e4 + log1p) expression of the shared 1:1 orthologs of --orthologs,
    /// through the same classifiers, split and scores.
    #[arg(long, value_enum, requires = "orthologs", conflicts_with = "run")]
    baseline: Option<Baseline>,
    /// Ortholog table for --baseline orthologs: CSV with a header; first column A's gene symbol,
    /// second B's (e.g. Ensembl's gene_matches_1v1_human2mouse.csv for --a human --b mouse).
    #[arg(long, requires = "baseline")]
    orthologs: Option<PathBuf>,
    /// Principal components of the ortholog baseline.
    #[arg(long, default_value_t = eval::baseline::DEFAULT_PCS)]
    pcs: usize,
    /// Split the training species 80/20 within each cell type (stratified) instead of overall.
    #[arg(long)]
    stratified: bool,
    /// Repeat the logistic regression with seeds SEED..SEED+N and report each score's median.
    #[arg(long, default_value_t = 1, value_name = "N")]
    seeds: usize,
}

impl From<&Eval> for EvalSpec {
    fn from(args: &Eval) -> Self {
        EvalSpec {
            a: args.a.clone(),
            b: args.b.clone(),
            features: match (args.baseline, &args.orthologs) {
                (Some(Baseline::Orthologs), Some(table)) => Features::Orthologs(OrthologBaseline {
                    table: table.clone(),
                    pcs: args.pcs,
                }),
                _ => Features::Run(args.run),
            },
            correspondence: match &args.correspondence_csv {
                Some(csv) => CorrespondenceSource::Csv(csv.clone()),
                None => CorrespondenceSource::ObsColumn(args.correspondence.clone()),
            },
            seed: args.seed,
            c: args.c,
            k: args.k,
            stratified: args.stratified,
            seeds: args.seeds,
        }
    }
}

/// Baselines `satlas eval` can evaluate instead of a model run.
#[derive(Clone, Copy, clap::ValueEnum)]
enum Baseline {
    /// PCA of log-normalised shared 1:1-ortholog expression.
    Orthologs,
}

#[derive(ClapArgs)]
struct De {
    /// Model run (default: the newest finetune run with embeddings).
    #[arg(long)]
    run: Option<i32>,
    /// What defines the groups: cell_type (each dataset's label column) or an obs column.
    #[arg(long, default_value = de::LABEL_GROUP)]
    group: String,
    /// Only cells of this species.
    #[arg(long, conflicts_with = "dataset")]
    species: Option<String>,
    /// Only cells of this dataset.
    #[arg(long)]
    dataset: Option<String>,
    /// Compare each group with "rest" (all other cells) or with this one group.
    #[arg(long, default_value = "rest")]
    reference: String,
    /// Macrogenes reported per group, highest z-score first.
    #[arg(long, default_value_t = de::DEFAULT_TOP)]
    top: usize,
    /// Genes listed per macrogene and species, largest weight first.
    #[arg(long, default_value_t = de::DEFAULT_GENES)]
    genes: usize,
}

impl De {
    fn to_spec(&self) -> Result<DeSpec, RunError> {
        Ok(DeSpec {
            run: self.run,
            group: self.group.clone(),
            scope: Scope::from_names(self.species.clone(), self.dataset.clone())?,
            reference: Some(self.reference.clone()).filter(|r| r != "rest"),
            top: self.top,
            genes: self.genes,
        })
    }
}

#[derive(ClapArgs)]
struct AddProteome {
    /// Species name (created if new), e.g. human, mouse.
    #[arg(short, long)]
    species: String,
    /// Use the `gene:` id when a record has no `gene_symbol:`.
    #[arg(long)]
    gene_fallback: bool,
    /// The FASTA file (.fa, .fa.gz).
    file: PathBuf,
}

impl From<&AddProteome> for FastaOptions {
    fn from(args: &AddProteome) -> Self {
        FastaOptions {
            gene_fallback: args.gene_fallback,
        }
    }
}

#[derive(ClapArgs)]
struct AddDataset {
    /// Species of the cells; its proteome must be in the atlas already.
    #[arg(short, long)]
    species: String,
    /// obs column with the cell-type labels (SATURN's weak supervision).
    #[arg(short, long)]
    label: String,
    /// Dataset name (default: the file name without extension).
    #[arg(short, long)]
    name: Option<String>,
    /// Where the raw counts are in an h5ad: X, raw/X or layers/NAME (default: X, else raw/X).
    #[arg(long)]
    layer: Option<String>,
    /// CSV/TSV of per-cell annotations (first column: barcode), e.g. labels for a 10x directory.
    #[arg(long)]
    obs: Option<PathBuf>,
    /// Then embed the new cells with the newest finished finetune run (or --run) and extend its
    /// HNSW index: a second transaction after the ingest's, as `satlas embed-dataset`.
    #[arg(long)]
    embed: bool,
    /// Finetune or add-species run for --embed (default: the newest finished).
    #[arg(long, requires = "embed")]
    run: Option<i32>,
    /// An .h5ad file or a 10x directory (matrix.mtx[.gz], features.tsv[.gz], barcodes.tsv[.gz]).
    file: PathBuf,
}

impl From<&AddDataset> for DatasetSpec {
    fn from(args: &AddDataset) -> Self {
        DatasetSpec {
            path: args.file.clone(),
            species: args.species.clone(),
            name: args.name.clone(),
            label_column: args.label.clone(),
            read: ReadOptions {
                layer: args.layer.clone(),
                obs_file: args.obs.clone(),
            },
        }
    }
}

fn main() {
    heap::keep_freed_memory();
    if let Err(error) = run(Cli::parse()) {
        let error: &(dyn std::error::Error + 'static) = error.as_ref();
        let messages = satlas::error::messages(error);
        eprintln!("error: {}", messages[0]);
        for cause in &messages[1..] {
            eprintln!("  caused by: {cause}");
        }
        std::process::exit(1);
    }
}

/// glibc's heap, set for a process that trains: memory a training step frees is kept for the
/// next step instead of being returned to the kernel and faulted in again, page by page.
///
/// Two things return it by default. glibc unmaps blocks above an adaptive size when they are
/// freed and shrinks the heap when its top grows free; and DuckDB calls `malloc_trim` whenever a
/// worker thread has been idle for half a second (so once per epoch, after the training log's
/// insert), which discards every free page of the heap. Pretraining on the Baron data then took
/// about 2,000 page faults per step (8 MB of fresh zeroed pages); with this, none once training
/// runs. The heap keeps its peak size until the process ends.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
mod heap {
    use std::ffi::c_int;

    extern "C" {
        fn mallopt(param: c_int, value: c_int) -> c_int;
    }

    /// `mallopt` parameters (glibc's `malloc.h`).
    const M_TRIM_THRESHOLD: c_int = -1;
    const M_MMAP_THRESHOLD: c_int = -3;

    /// Blocks up to 32 MB (glibc's largest threshold) come from the heap, and the heap never
    /// shrinks.
    pub fn keep_freed_memory() {
        // SAFETY: `mallopt` only changes glibc's allocation parameters; it is called first
        // thing in `main`, before any other thread exists.
        unsafe {
            mallopt(M_MMAP_THRESHOLD, 32 << 20);
            mallopt(M_TRIM_THRESHOLD, c_int::MAX);
        }
    }

    /// glibc's `malloc_trim`, made a no-op for this program (the definition in the executable
    /// takes precedence over the C library's): DuckDB's idle threads call it.
    #[no_mangle]
    pub extern "C" fn malloc_trim(_pad: usize) -> c_int {
        0
    }
}

/// Other C libraries: their allocators are left as they are.
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
mod heap {
    pub fn keep_freed_memory() {}
}

fn run(cli: Cli) -> Result<()> {
    let path = &cli.atlas;
    match cli.command {
        Command::Init => {
            Atlas::create(path)?;
            println!("created atlas {}", path.display());
        }
        Command::Info => print!("{}", Atlas::open_read_only(path)?.summary()?),
        Command::Sql { command, read_only } => {
            let atlas = if read_only {
                Atlas::open_read_only(path)?
            } else {
                Atlas::open(path)?
            };
            sql(&satlas::sql::with_procedures(atlas)?, command.as_deref())?;
        }
        Command::AddProteome(args) => {
            let report = ingest::add_proteome(
                &mut Atlas::open(path)?,
                &args.species,
                &args.file,
                &(&args).into(),
            )
            .with_context(|| format!("adding proteome {}", args.file.display()))?;
            println!("{report}");
        }
        Command::AddDataset(args) => {
            let mut atlas = Atlas::open(path)?;
            let spec = DatasetSpec::from(&args);
            let context = || format!("adding dataset {}", args.file.display());
            if args.embed {
                let (added, embedded) =
                    add_and_embed_dataset(&mut atlas, &spec, args.run).with_context(context)?;
                println!("{added}");
                print!("{embedded}");
            } else {
                println!(
                    "{}",
                    ingest::add_dataset(&mut atlas, &spec).with_context(context)?
                );
            }
        }
        Command::EmbedDataset(args) => {
            let report = embed_dataset(&mut Atlas::open(path)?, &args.dataset, args.run)
                .with_context(|| format!("embedding dataset {}", args.dataset))?;
            print!("{report}");
        }
        Command::EmbedProteins(args) => embed_proteins(&mut Atlas::open(path)?, &args)?,
        Command::ImportEmbeddings(args) => {
            let report = store::import_embeddings(
                &mut Atlas::open(path)?,
                &args.species,
                &args.file,
                args.genes.as_deref(),
                args.model.as_deref(),
            )
            .with_context(|| format!("importing {}", args.file.display()))?;
            println!("{report}");
        }
        Command::BuildMacrogenes(args) => {
            let report = build_macrogenes(&mut Atlas::open(path)?, &(&args).into())?;
            println!("{report}");
        }
        Command::Pretrain(args) => {
            let report = run_pretrain(&mut Atlas::open(path)?, &(&args).into())?;
            print_run("pretrain", &report);
        }
        Command::Finetune(args) => {
            let report = run_finetune(&mut Atlas::open(path)?, &(&args).into())?;
            print_run("finetune", &report);
        }
        Command::AddSpecies(args) => {
            let report = run_add_species(&mut Atlas::open(path)?, &(&args).into())
                .with_context(|| format!("adding species {}", args.species))?;
            print_run("add_species", &report.run);
            print!("{report}");
        }
        Command::Index(IndexCommand::Build(args)) => {
            let params = IndexParams::from(&args);
            print!(
                "{}",
                index::build(&mut Atlas::open(path)?, args.run, params)?
            );
        }
        Command::Index(IndexCommand::Update { run }) => {
            print!("{}", index::insert_new_cells(&mut Atlas::open(path)?, run)?);
        }
        Command::Knn(args) => {
            let point = QueryPoint::Cell(args.cell);
            let (run, neighbours) = index::knn(&Atlas::open(path)?, &point, &args.to_query()?)?;
            println!("neighbours of cell {} (run {run}):", args.cell);
            print_neighbours(&neighbours);
        }
        Command::Transfer(args) => transfer_labels(&mut Atlas::open(path)?, &args)?,
        Command::Export(args) => {
            let report = export::export(&Atlas::open_read_only(path)?, &(&args).into(), &args.out)
                .with_context(|| format!("exporting to {}", args.out.display()))?;
            print!("{report}");
        }
        Command::Eval(args) => {
            let spec = EvalSpec::from(&args);
            let report = eval::evaluate(&Atlas::open_read_only(path)?, &spec)
                .with_context(|| format!("evaluating {} vs {}", spec.a, spec.b))?;
            print!("{report}");
        }
        Command::De(args) => {
            let spec = args.to_spec()?;
            let report = de::differential_expression(&Atlas::open_read_only(path)?, &spec)
                .with_context(|| format!("differential expression by {}", spec.group))?;
            print!("{report}");
        }
        Command::Layout(args) => {
            let params = UmapParams::from(&args);
            let report = satlas::layout::compute(&mut Atlas::open(path)?, args.run, params)?;
            print!("{report}");
        }
        Command::Plot(PlotCommand::Umap { run, color, out }) => {
            let colour: plot::ColourBy = color.parse()?;
            let (report, origin) = plot::plot_umap(&mut Atlas::open(path)?, run, colour, &out)?;
            print!("{report}");
            println!("layout: {origin}");
        }
        Command::Plot(PlotCommand::Training { run, out }) => {
            print!(
                "{}",
                plot::plot_training(&Atlas::open_read_only(path)?, run, &out)?
            );
        }
        Command::Plot(PlotCommand::De { run, species, out }) => {
            let spec = DeSpec {
                run,
                scope: Scope::from_names(species, None)?,
                ..DeSpec::default()
            };
            print!(
                "{}",
                plot::plot_de(&Atlas::open_read_only(path)?, &spec, &out)?
            );
        }
        Command::Report(args) => {
            let report =
                plot::report::write_report(&mut Atlas::open(path)?, &(&args).into(), &args.out)?;
            print!("{report}");
        }
        Command::Simulate(args) => {
            let params = satlas::synth::SimulateParams {
                like: args.like,
                read: ReadOptions::default(),
                label: args.label,
                cells: args.cells,
                seed: args.seed,
                out: args.out,
            };
            println!("{}", satlas::synth::simulate(&params.check()?)?);
        }
    }
    Ok(())
}

/// `satlas embed-proteins`: with --highly-variable, only the proteins of the species' highly
/// variable genes.
fn embed_proteins(atlas: &mut Atlas, args: &EmbedProteins) -> Result<()> {
    let genes = match args.highly_variable {
        Some(n) => {
            let genes =
                highly_variable_genes_with_protein(atlas, &args.species, n).with_context(|| {
                    format!(
                        "selecting the {n} highly variable genes of {}",
                        args.species
                    )
                })?;
            println!(
                "{}: embedding the proteins of {} highly variable genes (top {n} among the \
                 dataset genes with a protein)",
                args.species,
                genes.len()
            );
            Some(genes)
        }
        None => None,
    };
    let report = store::embed_species(
        atlas,
        &args.species,
        &args.model,
        &args.into(),
        genes.as_deref(),
    )
    .with_context(|| {
        format!(
            "embedding {} proteins with {}",
            args.species,
            args.model.display()
        )
    })?;
    println!("{report}");
    Ok(())
}

/// `satlas transfer`: a query file is added and embedded first (`add_and_embed_dataset`).
fn transfer_labels(atlas: &mut Atlas, args: &Transfer) -> Result<()> {
    let spec = match args.query_file()? {
        Some(file) => {
            let name = file.dataset_name();
            let (added, embedded) = add_and_embed_dataset(atlas, &file, args.run).map_err(|e| {
                let hint = format!(
                    "adding query file {} as dataset {name} (to transfer to the dataset already \
                     in the atlas, pass --query {name}; to add the file under another name, pass \
                     --name)",
                    file.path.display()
                );
                match e {
                    satlas::Error::Model(ModelError::AddedNotEmbedded { .. }) => {
                        anyhow::Error::from(e)
                    }
                    e => anyhow::Error::from(e).context(hint),
                }
            })?;
            println!("{added}");
            println!("{embedded}");
            args.to_spec(name, Some(embedded.run_id))
        }
        None => args.to_spec(args.query.clone(), args.run),
    };
    let result = transfer::transfer(atlas, &spec)
        .with_context(|| format!("transferring labels to {}", spec.query))?;
    print!("{result}");
    if let Some(out) = &args.out {
        transfer::write_labels(atlas, result.transfer_id, out)?;
        println!("wrote {}", out.display());
    }
    Ok(())
}

fn print_neighbours(neighbours: &[Neighbour]) {
    println!("rank\tcell_id\tdistance\tspecies\tdataset\tcell_type");
    for n in neighbours {
        println!(
            "{}\t{}\t{:.4}\t{}\t{}\t{}",
            n.rank,
            n.cell_id,
            n.distance,
            n.species,
            n.dataset,
            n.cell_type.as_deref().unwrap_or_default()
        );
    }
}

fn print_run(kind: &str, report: &RunReport) {
    for log in &report.logs {
        println!(
            "{kind} run #{} epoch {:>4}: loss {:.4} (zinb {:.4}, regulariser {:.4}, triplets {}) {:.1}s",
            report.run_id, log.epoch, log.loss, log.zinb, log.regulariser, log.n_triplets, log.seconds
        );
    }
    if report.embedded_cells > 0 {
        println!(
            "{kind} run #{}: embedded {} cells",
            report.run_id, report.embedded_cells
        );
    }
}

fn sql(atlas: &satlas::sql::SqlAtlas, command: Option<&str>) -> Result<()> {
    let conn = atlas.connection();
    match command {
        Some(sql) => print!("{}", satlas::sql::console::run(conn, sql)?),
        None => {
            let stdin = std::io::stdin();
            if stdin.is_terminal() {
                eprintln!(
                    "satlas sql on {}: end statements with ';', .quit to leave",
                    atlas.path().display()
                );
            }
            satlas::sql::console::interactive(conn, stdin.lock(), std::io::stdout())?;
        }
    }
    Ok(())
}
