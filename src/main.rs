//! The `satlas` command line: parses arguments and calls one library function per subcommand.

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, Parser, Subcommand};
use satlas::de::{self, DeSpec};
use satlas::eval::baseline::OrthologBaseline;
use satlas::eval::{self, CorrespondenceSource, EvalSpec, Features};
use satlas::export::h5ad::{export_h5ad, H5adOptions};
use satlas::export::parquet::export_parquet;
use satlas::index::search::QueryPoint;
use satlas::index::transfer::{self, TransferSpec};
use satlas::index::{self as index, Access, IndexParams, KnnQuery, Scope};
use satlas::ingest::{self, DatasetSpec};
use satlas::io::{FastaOptions, ReadOptions};
use satlas::macrogene::{
    build_macrogenes, highly_variable_genes_with_protein, BuildParams, ScoreFunction,
};
use satlas::model::{
    embed_dataset, run_add_species, run_finetune, run_pretrain, AddSpeciesRequest, FinetuneParams,
    FinetuneRequest, PretrainParams, PretrainRequest, RunReport, Schedule,
};
use satlas::plot;
use satlas::protein::{store, EmbedOptions, Parallelism};
use satlas::sql::DEFAULT_CHECKPOINT_EVERY;
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

impl TrainingArgs {
    fn schedule(&self) -> Schedule {
        Schedule {
            epochs: self.epochs,
            batch_size: self.batch_size,
            lr: self.lr,
            seed: Some(self.seed),
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

#[derive(Subcommand)]
enum IndexCommand {
    /// (Re)build the index of a run and store it in the atlas.
    Build {
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
    },
    /// Insert newly embedded cells into the stored index (rebuilds if cells were removed).
    Update {
        /// Model run (default: the newest finetune or add-species run with embeddings).
        #[arg(long)]
        run: Option<i32>,
    },
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
            sql(&atlas, command.as_deref())?;
        }
        Command::AddProteome(args) => {
            let mut atlas = Atlas::open(path)?;
            let options = FastaOptions {
                gene_fallback: args.gene_fallback,
            };
            let report = ingest::add_proteome(&mut atlas, &args.species, &args.file, &options)
                .with_context(|| format!("adding proteome {}", args.file.display()))?;
            println!("{report}");
        }
        Command::AddDataset(args) => {
            let mut atlas = Atlas::open(path)?;
            let spec = DatasetSpec {
                path: args.file.clone(),
                species: args.species,
                name: args.name,
                label_column: args.label,
                read: ReadOptions {
                    layer: args.layer,
                    obs_file: args.obs,
                },
            };
            let report = ingest::add_dataset(&mut atlas, &spec)
                .with_context(|| format!("adding dataset {}", args.file.display()))?;
            println!("{report}");
            if args.embed {
                let embedded = embed_dataset(atlas.connection_mut(), &report.name, args.run)
                    .with_context(|| {
                        format!(
                            "embedding dataset {} (it was added; retry with `satlas embed-dataset --dataset {}`)",
                            report.name, report.name
                        )
                    })?;
                print!("{embedded}");
            }
        }
        Command::EmbedDataset(args) => {
            let report =
                embed_dataset(Atlas::open(path)?.connection_mut(), &args.dataset, args.run)
                    .with_context(|| format!("embedding dataset {}", args.dataset))?;
            print!("{report}");
        }
        Command::EmbedProteins(args) => {
            let mut atlas = Atlas::open(path)?;
            let options = EmbedOptions {
                layer: args.layer,
                tokens_per_batch: args.tokens_per_batch,
                parallelism: parallelism(args.threads, args.batch_workers),
                ..EmbedOptions::default()
            };
            let genes = match args.highly_variable {
                Some(n) => {
                    let genes =
                        highly_variable_genes_with_protein(atlas.connection(), &args.species, n)
                            .with_context(|| {
                                format!(
                                    "selecting the {n} highly variable genes of {}",
                                    args.species
                                )
                            })?;
                    println!(
                        "{}: embedding the proteins of {} highly variable genes (top {n} among \
                         the dataset genes with a protein)",
                        args.species,
                        genes.len()
                    );
                    Some(genes)
                }
                None => None,
            };
            let report = store::embed_species(
                atlas.connection_mut(),
                &args.species,
                &args.model,
                &options,
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
        }
        Command::ImportEmbeddings(args) => {
            let mut atlas = Atlas::open(path)?;
            let report = store::import_embeddings(
                atlas.connection_mut(),
                &args.species,
                &args.file,
                args.genes.as_deref(),
                args.model.as_deref(),
            )
            .with_context(|| format!("importing {}", args.file.display()))?;
            println!("{report}");
        }
        Command::BuildMacrogenes(args) => {
            let params = BuildParams {
                n_macrogenes: args.n,
                n_top_genes: args.n_top_genes,
                seed: args.seed,
                score: args.score,
                embedding_model: args.embedding_model,
                ..BuildParams::default()
            };
            println!(
                "{}",
                build_macrogenes(Atlas::open(path)?.connection_mut(), &params)?
            );
        }
        Command::Pretrain(args) => {
            let t = &args.training;
            let params = t.schedule().pretrain();
            let request = PretrainRequest {
                params,
                macrogene_set: args.macrogene_set,
                checkpoint_every: t.checkpoint_every,
                vae: args.vae,
            };
            print_run(
                "pretrain",
                &run_pretrain(Atlas::open(path)?.connection_mut(), &request)?,
            );
        }
        Command::Finetune(args) => {
            let t = &args.training;
            let params = FinetuneParams {
                margin: args.margin,
                unfreeze_macrogenes: args.unfreeze,
                ..t.schedule().finetune()
            };
            let request = FinetuneRequest {
                params,
                pretrain_run: args.pretrain_run,
                checkpoint_every: t.checkpoint_every,
            };
            print_run(
                "finetune",
                &run_finetune(Atlas::open(path)?.connection_mut(), &request)?,
            );
        }
        Command::AddSpecies(args) => {
            let t = &args.training;
            let request = AddSpeciesRequest {
                species: args.species.clone(),
                params: PretrainParams {
                    regulariser_weight: args.regulariser_weight,
                    ..t.schedule().pretrain()
                },
                parent_run: args.run,
                checkpoint_every: t.checkpoint_every,
            };
            let report = run_add_species(Atlas::open(path)?.connection_mut(), &request)
                .with_context(|| format!("adding species {}", args.species))?;
            print_run("add_species", &report.run);
            print!("{report}");
        }
        Command::Index(IndexCommand::Build {
            run,
            m,
            ef_construction,
            ef_search,
        }) => {
            let params = IndexParams {
                m,
                ef_construction,
                ef_search,
            };
            print!("{}", index::build(&mut Atlas::open(path)?, run, params)?);
        }
        Command::Index(IndexCommand::Update { run }) => {
            print!("{}", index::insert_new_cells(&mut Atlas::open(path)?, run)?);
        }
        Command::Knn(args) => {
            let atlas = Atlas::open(path)?;
            let query = KnnQuery {
                run: args.run,
                k: args.k,
                scope: Scope::from_names(args.species, args.dataset)?,
            };
            let conn = atlas.connection();
            let (run, neighbours) = index::knn(
                conn,
                &QueryPoint::Cell(args.cell),
                &query,
                Access::of(conn)?,
            )?;
            println!("neighbours of cell {} (run {run}):", args.cell);
            println!("rank\tcell_id\tdistance\tspecies\tdataset\tcell_type");
            for n in neighbours {
                println!(
                    "{}\t{}\t{:.4}\t{}\t{}\t{}",
                    n.rank,
                    n.cell_id,
                    n.distance,
                    n.species,
                    n.dataset,
                    n.cell_type.unwrap_or_default()
                );
            }
        }
        Command::Transfer(args) => {
            let mut atlas = Atlas::open(path)?;
            let (query, run) = match add_query_file(&mut atlas, &args)? {
                Some((name, run)) => (name, Some(run)),
                None => (args.query, args.run),
            };
            let spec = TransferSpec {
                query,
                reference: args.reference,
                k: args.k,
                min_confidence: args.min_confidence,
                run,
            };
            let result = transfer::transfer(&mut atlas, &spec)
                .with_context(|| format!("transferring labels to {}", spec.query))?;
            print!("{result}");
            if let Some(out) = args.out {
                transfer::write_labels(atlas.connection(), result.transfer_id, &out)?;
                println!("wrote {}", out.display());
            }
        }
        Command::Export(args) => {
            let atlas = Atlas::open_read_only(path)?;
            let report = match args.format {
                ExportFormat::H5ad => {
                    let options = H5adOptions {
                        run: args.run,
                        macrogenes: args.macrogenes,
                    };
                    export_h5ad(&atlas, &options, &args.out)
                }
                ExportFormat::Parquet if args.macrogenes => {
                    anyhow::bail!("--macrogenes is for --format h5ad (Parquet exports the macrogene weights, not expression)")
                }
                ExportFormat::Parquet => export_parquet(atlas.connection(), args.run, &args.out),
            }
            .with_context(|| format!("exporting to {}", args.out.display()))?;
            print!("{report}");
        }
        Command::Eval(args) => {
            let atlas = Atlas::open_read_only(path)?;
            let spec = EvalSpec {
                a: args.a,
                b: args.b,
                features: match (args.baseline, args.orthologs) {
                    (Some(Baseline::Orthologs), Some(table)) => {
                        Features::Orthologs(OrthologBaseline {
                            table,
                            pcs: args.pcs,
                        })
                    }
                    _ => Features::Run(args.run),
                },
                correspondence: match args.correspondence_csv {
                    Some(csv) => CorrespondenceSource::Csv(csv),
                    None => CorrespondenceSource::ObsColumn(args.correspondence),
                },
                seed: args.seed,
                c: args.c,
                k: args.k,
                stratified: args.stratified,
                seeds: args.seeds,
            };
            let report = eval::evaluate(atlas.connection(), &spec)
                .with_context(|| format!("evaluating {} vs {}", spec.a, spec.b))?;
            print!("{report}");
        }
        Command::De(args) => {
            let atlas = Atlas::open_read_only(path)?;
            let spec = DeSpec {
                run: args.run,
                group: args.group,
                scope: Scope::from_names(args.species, args.dataset)?,
                reference: Some(args.reference).filter(|r| r != "rest"),
                top: args.top,
                genes: args.genes,
            };
            let report = de::differential_expression(atlas.connection(), &spec)
                .with_context(|| format!("differential expression by {}", spec.group))?;
            print!("{report}");
        }
        Command::Layout(args) => {
            let params = satlas::layout::UmapParams {
                n_neighbors: args.neighbors,
                min_dist: args.min_dist,
                n_epochs: args.epochs,
                seed: args.seed,
            };
            print!(
                "{}",
                satlas::layout::compute(&mut Atlas::open(path)?, args.run, params)?
            );
        }
        Command::Plot(PlotCommand::Umap { run, color, out }) => {
            let colour: plot::ColourBy = color.parse()?;
            let (report, origin) = plot::plot_umap(&mut Atlas::open(path)?, run, colour, &out)?;
            print!("{report}");
            println!("layout: {origin}");
        }
        Command::Plot(PlotCommand::Training { run, out }) => {
            let atlas = Atlas::open_read_only(path)?;
            print!("{}", plot::plot_training(atlas.connection(), run, &out)?);
        }
        Command::Plot(PlotCommand::De { run, species, out }) => {
            let atlas = Atlas::open_read_only(path)?;
            let spec = DeSpec {
                run,
                scope: Scope::from_names(species, None)?,
                ..DeSpec::default()
            };
            print!("{}", plot::plot_de(atlas.connection(), &spec, &out)?);
        }
        Command::Report(args) => {
            let spec = plot::report::ReportSpec {
                run: args.run,
                species: args.a.zip(args.b),
                orthologs: args.orthologs,
            };
            let mut atlas = Atlas::open(path)?;
            print!(
                "{}",
                plot::report::write_report(&mut atlas, &spec, &args.out)?
            );
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

/// `--threads` / `--batch-workers` of `embed-proteins`.
fn parallelism(threads: Option<usize>, batch_workers: bool) -> Parallelism {
    let n = threads.unwrap_or_else(|| tch::get_num_threads().max(1) as usize);
    if batch_workers {
        Parallelism::Batches(n)
    } else {
        Parallelism::IntraOp(n)
    }
}

/// `satlas transfer --query PATH`: adds the file as a dataset and embeds it (two steps, as
/// `add-dataset --embed`); returns its name and the run that embedded it. `None` when the query is
/// not a path on disk (then it names a dataset in the atlas).
fn add_query_file(atlas: &mut Atlas, args: &Transfer) -> Result<Option<(String, i32)>> {
    let file = PathBuf::from(&args.query);
    if !file.exists() {
        return Ok(None);
    }
    let Some(species) = args.species.clone() else {
        anyhow::bail!(
            "--query {} is a file: give its species with --species (to transfer to a dataset of \
             the atlas, give the dataset's name instead)",
            file.display()
        );
    };
    let spec = DatasetSpec {
        path: file.clone(),
        species,
        name: args.name.clone(),
        label_column: args.label.clone().unwrap_or_default(),
        read: ReadOptions {
            layer: None,
            obs_file: args.obs.clone(),
        },
    };
    let name = spec.dataset_name();
    let added = ingest::add_dataset(atlas, &spec).with_context(|| {
        format!(
            "adding query file {} as dataset {name} (to transfer to the dataset already in the \
             atlas, pass --query {name}; to add the file under another name, pass --name)",
            file.display()
        )
    })?;
    println!("{added}");
    let embedded = embed_dataset(atlas.connection_mut(), &name, args.run).with_context(|| {
        format!(
            "embedding query dataset {name} (it was added; finish with `satlas embed-dataset \
             --dataset {name}`, then `satlas transfer --query {name}`)"
        )
    })?;
    println!("{embedded}");
    Ok(Some((name, embedded.run_id)))
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

fn sql(atlas: &Atlas, command: Option<&str>) -> Result<()> {
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
