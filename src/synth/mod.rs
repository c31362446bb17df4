//! Synthetic count data at any size, for capacity planning and benchmarks (`satlas simulate`).
//!
//! A real dataset (`--like`, e.g. the Baron pancreas h5ad of a species) is read once and a
//! [`profile::Profile`] fitted to it: cell-type shares, log-normal library sizes per type,
//! per-type mean expression and per-gene negative-binomial dispersions. Cells are then drawn from
//! it ([`sample`]) with the source's real gene symbols and the ground-truth type kept in `obs`,
//! and written to an h5ad or a 10x directory a chunk of cells at a time (`write`), so memory grows
//! with the number of cells only by a few tens of bytes per cell (row pointer, type, and the
//! barcodes written at the end). The same source, seed and size give the same file content;
//! cells are drawn in parallel, each from its own seeded stream.

pub mod profile;
pub mod sample;
mod write;

use crate::atlas::{persist, temp_file_beside};
use crate::io::{read_dataset, ReadOptions};
use crate::progress;
use rayon::prelude::*;
use std::path::{Path, PathBuf};

/// Cells drawn and written per chunk.
const CELLS_PER_CHUNK: usize = 4096;
/// The most cells one call writes (indices and the row pointer stay far inside their types).
pub const MAX_CELLS: usize = 100_000_000;

/// Why a simulation was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum SynthError {
    /// A parameter out of range.
    #[error("{0}")]
    BadParams(String),
    /// The source dataset cannot give a profile.
    #[error("the --like dataset cannot be simulated: {reason}")]
    BadSource {
        /// What is wrong and what to do.
        reason: String,
    },
    /// Writing the output file failed.
    #[error("{path}: writing the synthetic dataset failed: {message}")]
    Write {
        /// The output file.
        path: PathBuf,
        /// The HDF5 error.
        message: String,
    },
}

/// What to simulate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimulateParams {
    /// The real dataset the profile is fitted to (h5ad or 10x directory).
    pub like: PathBuf,
    /// Its counts and annotations (layer, obs file).
    pub read: ReadOptions,
    /// The obs column of its cell types; the output keeps the same column name.
    pub label: String,
    /// Number of cells to draw.
    pub cells: usize,
    /// Seed of every random draw.
    pub seed: u64,
    /// The `.h5ad` file to write, or (any other name) the 10x directory to create.
    pub out: PathBuf,
}

/// [`SimulateParams`] that passed [`SimulateParams::check`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ValidSimulateParams(SimulateParams);

impl SimulateParams {
    /// Refuses parameters that cannot give a file, before anything is read.
    pub fn check(self) -> Result<ValidSimulateParams, SynthError> {
        let bad = |m: String| Err(SynthError::BadParams(m));
        if self.cells == 0 || self.cells > MAX_CELLS {
            return bad(format!(
                "--cells {} is out of range: give 1 to {MAX_CELLS}",
                self.cells
            ));
        }
        if !is_h5ad(&self.out) && self.out.exists() {
            return bad(format!(
                "--out {}: a 10x directory is written only where nothing exists (an .h5ad \
                 file is replaced)",
                self.out.display()
            ));
        }
        if !self.like.exists() {
            return bad(format!(
                "--like {}: no such file or directory",
                self.like.display()
            ));
        }
        if self.out.exists() && same_file(&self.out, &self.like) {
            return bad(format!(
                "--out {} is the --like file: choose another output",
                self.out.display()
            ));
        }
        if self.label.is_empty() {
            return bad("--label must name the obs column of the cell types".into());
        }
        Ok(ValidSimulateParams(self))
    }
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(a), Ok(b)) if a == b)
}

/// What [`simulate`] wrote.
#[derive(Debug, Clone, PartialEq)]
pub struct SimulateReport {
    /// The file written.
    pub out: PathBuf,
    /// Cells written.
    pub cells: usize,
    /// Genes (the source's).
    pub genes: usize,
    /// Cell types of the profile.
    pub cell_types: usize,
    /// Stored non-zero counts.
    pub nnz: u64,
}

impl std::fmt::Display for SimulateReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}: {} cells x {} genes, {} cell types, {} non-zeros",
            self.out.display(),
            self.cells,
            self.genes,
            self.cell_types,
            self.nnz
        )
    }
}

/// Fits the profile of `params.like` and writes `params.cells` cells drawn from it to
/// `params.out` (an `.h5ad` file, else a 10x directory), moved into place only once complete.
pub fn simulate(params: &ValidSimulateParams) -> crate::Result<SimulateReport> {
    let p = &params.0;
    let source = read_dataset(&p.like, &p.read)?;
    let profile = profile::fit(&source, &p.label)?;
    drop(source);
    let write_error = |message: String| SynthError::Write {
        path: p.out.clone(),
        message,
    };
    let nnz = if is_h5ad(&p.out) {
        let temp = temp_file_beside(&p.out)?;
        let sink =
            write::H5adWriter::create(temp.path()).map_err(|e| write_error(e.to_string()))?;
        let nnz = write_cells(&profile, p, Box::new(sink)).map_err(write_error)?;
        persist(temp, &p.out)?;
        nnz
    } else {
        let parent = p.out.parent().filter(|d| !d.as_os_str().is_empty());
        let temp = tempfile::Builder::new()
            .prefix(".satlas-")
            .suffix(".partial")
            .tempdir_in(parent.unwrap_or(Path::new(".")))
            .map_err(|e| write_error(e.to_string()))?;
        let sink = write::TenxWriter::create(temp.path(), profile.genes.len())
            .map_err(|e| write_error(e.to_string()))?;
        let nnz = write_cells(&profile, p, Box::new(sink)).map_err(write_error)?;
        std::fs::rename(temp.keep(), &p.out).map_err(|e| write_error(e.to_string()))?;
        nnz
    };
    Ok(SimulateReport {
        out: p.out.clone(),
        cells: p.cells,
        genes: profile.genes.len(),
        cell_types: profile.types.len(),
        nnz,
    })
}

fn is_h5ad(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "h5ad")
}

/// Draws the cells chunk by chunk into `sink`; returns the non-zeros written.
fn write_cells(
    profile: &profile::Profile,
    p: &SimulateParams,
    mut sink: Box<dyn write::Sink>,
) -> Result<u64, String> {
    let bar = progress::bar(p.cells as u64, "simulating cells");
    let mut nnz = 0u64;
    for start in (0..p.cells).step_by(CELLS_PER_CHUNK) {
        let end = (start + CELLS_PER_CHUNK).min(p.cells);
        let cells: Vec<sample::Cell> = (start..end)
            .into_par_iter()
            .map(|i| sample::cell(profile, p.seed, i as u64))
            .collect();
        nnz += cells.iter().map(|c| c.genes.len() as u64).sum::<u64>();
        sink.append(&cells)?;
        bar.inc((end - start) as u64);
    }
    bar.finish_and_clear();
    let names: Vec<String> = profile.types.iter().map(|t| t.name.clone()).collect();
    let seed = p.seed;
    sink.finish(&profile.genes, &names, &p.label, &|i| {
        format!("sim{seed}-{i}")
    })?;
    Ok(nnz)
}
