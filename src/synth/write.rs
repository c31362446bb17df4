//! The writers of synthetic datasets, both appended a chunk of cells at a time so the matrix is
//! never held whole ([`Sink`]):
//!
//! * h5ad: `X` as a CSR matrix (`data` float32, `indices` int32, `indptr` int64, gzip level 4,
//!   chunked and extendable); `obs` (barcodes, the ground-truth type as a categorical) and `var`
//!   (the source's gene symbols) in AnnData's current encoding, as `satlas export` writes it.
//! * 10x directory: `matrix.mtx` (MatrixMarket coordinate integers, genes x cells, its size line
//!   padded and rewritten at the end, once the entry count is known), `features.tsv`,
//!   `barcodes.tsv`, and `obs.csv` (barcode, type) for `add-dataset --obs`.

use super::sample::Cell;
use crate::export::h5ad::{categorical, dataframe, encode};
use crate::io::h5ad::encoding::{ANNDATA, VERSION_0_1};
use hdf5::file::FileCloseDegree;
use hdf5::{Dataset, File, Group};
use std::fs;
use std::io::{BufWriter, Seek, SeekFrom, Write};
use std::path::Path;

/// Where drawn cells go.
pub(super) trait Sink {
    /// Appends `cells` as the next rows.
    fn append(&mut self, cells: &[Cell]) -> Result<(), String>;
    /// Writes the names: `genes`, each cell's type name in obs column `label`, `barcode(i)`.
    fn finish(
        self: Box<Self>,
        genes: &[String],
        type_names: &[String],
        label: &str,
        barcode: &dyn Fn(usize) -> String,
    ) -> Result<(), String>;
}

/// Entries per HDF5 chunk of `data` and `indices`.
const STORAGE_CHUNK: usize = 1 << 16;

/// A CSR `X` being appended to.
pub(super) struct H5adWriter {
    file: File,
    data: Dataset,
    indices: Dataset,
    indptr: Vec<i64>,
    cell_types: Vec<u32>,
}

impl Sink for H5adWriter {
    fn append(&mut self, cells: &[Cell]) -> Result<(), String> {
        self.append_rows(cells).map_err(|e| e.to_string())
    }

    fn finish(
        self: Box<Self>,
        genes: &[String],
        type_names: &[String],
        label: &str,
        barcode: &dyn Fn(usize) -> String,
    ) -> Result<(), String> {
        self.finish_file(genes, type_names, label, barcode)
            .map_err(|e| e.to_string())
    }
}

impl H5adWriter {
    /// Creates `path` with an empty `X`.
    pub(super) fn create(path: &Path) -> hdf5::Result<H5adWriter> {
        // A strong close closes every object of the file with it: the file is free for readers
        // (HDF5's file lock) as soon as `finish` returns.
        let file = File::with_options()
            .with_fapl(|p| p.fclose_degree(FileCloseDegree::Strong))
            .create(path)?;
        encode(&file, ANNDATA, VERSION_0_1)?;
        let x = file.create_group("X")?;
        encode(&x, "csr_matrix", VERSION_0_1)?;
        let data = extendable::<f32>(&x, "data")?;
        let indices = extendable::<i32>(&x, "indices")?;
        Ok(H5adWriter {
            file,
            data,
            indices,
            indptr: vec![0],
            cell_types: Vec::new(),
        })
    }

    /// Appends `cells` as the next rows of `X`.
    fn append_rows(&mut self, cells: &[Cell]) -> hdf5::Result<()> {
        let start = *self.indptr.last().unwrap_or(&0) as usize;
        let (mut data, mut indices) = (Vec::new(), Vec::new());
        for cell in cells {
            data.extend(cell.counts.iter().map(|&c| c as f32));
            indices.extend(cell.genes.iter().map(|&g| g as i32));
            self.indptr.push((start + indices.len()) as i64);
            self.cell_types.push(cell.cell_type as u32);
        }
        let end = start + data.len();
        self.data.resize(end)?;
        self.indices.resize(end)?;
        self.data.write_slice(&data, start..end)?;
        self.indices.write_slice(&indices, start..end)
    }

    /// Writes `indptr`, the shape, `obs` (index `barcode(i)`, column `label` holding each cell's
    /// type name) and `var` (index `genes`), and closes the file.
    fn finish_file(
        self,
        genes: &[String],
        type_names: &[String],
        label: &str,
        barcode: &dyn Fn(usize) -> String,
    ) -> hdf5::Result<()> {
        let H5adWriter {
            file,
            data,
            indices,
            indptr,
            cell_types,
        } = self;
        // HDF5 keeps a file open while any of its objects is.
        drop((data, indices));
        let x = file.group("X")?;
        let n_cells = cell_types.len();
        x.new_dataset_builder()
            .with_data(&indptr)
            .create("indptr")?;
        x.new_attr::<i64>()
            .shape(2)
            .create("shape")?
            .write_raw(&[n_cells as i64, genes.len() as i64])?;
        let barcodes: Vec<String> = (0..n_cells).map(barcode).collect();
        let obs = dataframe(&file, "obs", &barcodes, &[label])?;
        let types = cell_types
            .iter()
            .map(|&t| Some(type_names[t as usize].as_str()));
        categorical(&obs, label, types)?;
        dataframe(&file, "var", genes, &[])?;
        drop((x, obs));
        file.close()
    }
}

/// A 1-D dataset of `T` that starts empty and grows, gzip-compressed.
fn extendable<T: hdf5::H5Type>(group: &Group, name: &str) -> hdf5::Result<Dataset> {
    group
        .new_dataset::<T>()
        .chunk(STORAGE_CHUNK)
        .deflate(4)
        .shape(0..)
        .create(name)
}

/// Width the size line's entry count is padded to, so it can be rewritten in place.
const ENTRY_COUNT_WIDTH: usize = 20;

/// A 10x directory being appended to.
pub(super) struct TenxWriter {
    dir: std::path::PathBuf,
    matrix: BufWriter<fs::File>,
    size_line_at: u64,
    entries: u64,
    cell_types: Vec<u32>,
}

impl TenxWriter {
    /// Creates `matrix.mtx` in the (existing, empty) directory `dir`.
    pub(super) fn create(dir: &Path, n_genes: usize) -> std::io::Result<TenxWriter> {
        let mut matrix = BufWriter::new(fs::File::create(dir.join("matrix.mtx"))?);
        let header = "%%MatrixMarket matrix coordinate integer general\n";
        matrix.write_all(header.as_bytes())?;
        // The cell count is not known yet either: both are rewritten by `finish`.
        writeln!(matrix, "{}", size_line(n_genes, 0, 0))?;
        Ok(TenxWriter {
            dir: dir.into(),
            matrix,
            size_line_at: header.len() as u64,
            entries: 0,
            cell_types: Vec::new(),
        })
    }
}

/// `genes cells entries`, the counts padded to a fixed width.
fn size_line(genes: usize, cells: usize, entries: u64) -> String {
    format!("{genes} {cells:<w$} {entries:<w$}", w = ENTRY_COUNT_WIDTH)
}

impl Sink for TenxWriter {
    fn append(&mut self, cells: &[Cell]) -> Result<(), String> {
        (|| -> std::io::Result<()> {
            for cell in cells {
                self.cell_types.push(cell.cell_type as u32);
                let column = self.cell_types.len();
                for (g, c) in cell.genes.iter().zip(&cell.counts) {
                    writeln!(self.matrix, "{} {column} {c}", g + 1)?;
                }
                self.entries += cell.genes.len() as u64;
            }
            Ok(())
        })()
        .map_err(|e| e.to_string())
    }

    fn finish(
        self: Box<Self>,
        genes: &[String],
        type_names: &[String],
        label: &str,
        barcode: &dyn Fn(usize) -> String,
    ) -> Result<(), String> {
        if let Some(name) = type_names.iter().find(|n| n.contains([',', '"', '\n'])) {
            return Err(format!(
                "cell type {name:?} cannot be written to obs.csv unquoted; write an .h5ad instead"
            ));
        }
        (|| -> std::io::Result<()> {
            let n_cells = self.cell_types.len();
            let mut matrix = self.matrix.into_inner().map_err(|e| e.into_error())?;
            matrix.seek(SeekFrom::Start(self.size_line_at))?;
            matrix.write_all(size_line(genes.len(), n_cells, self.entries).as_bytes())?;
            matrix.sync_all()?;
            let mut features = BufWriter::new(fs::File::create(self.dir.join("features.tsv"))?);
            for gene in genes {
                writeln!(features, "{gene}\t{gene}\tGene Expression")?;
            }
            features.flush()?;
            let mut barcodes = BufWriter::new(fs::File::create(self.dir.join("barcodes.tsv"))?);
            let mut obs = BufWriter::new(fs::File::create(self.dir.join("obs.csv"))?);
            writeln!(obs, "barcode,{label}")?;
            for (i, &t) in self.cell_types.iter().enumerate() {
                let code = barcode(i);
                writeln!(barcodes, "{code}")?;
                writeln!(obs, "{code},{}", type_names[t as usize])?;
            }
            barcodes.flush()?;
            obs.flush()
        })()
        .map_err(|e| e.to_string())
    }
}
