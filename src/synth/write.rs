//! The h5ad writer of synthetic datasets: `X` as a CSR matrix (`data` float32, `indices` int32,
//! `indptr` int64, gzip level 4, chunked and extendable) appended a chunk of cells at a time, so
//! the matrix is never held whole; `obs` (barcodes, the ground-truth type as a categorical) and
//! `var` (the source's gene symbols) in AnnData's current encoding, as `satlas export` writes it.

use super::sample::Cell;
use crate::export::h5ad::{categorical, dataframe, encode};
use crate::io::h5ad::encoding::{ANNDATA, VERSION_0_1};
use hdf5::{Dataset, File, Group};
use std::path::Path;

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

impl H5adWriter {
    /// Creates `path` with an empty `X`.
    pub(super) fn create(path: &Path) -> hdf5::Result<H5adWriter> {
        let file = File::create(path)?;
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
    pub(super) fn append(&mut self, cells: &[Cell]) -> hdf5::Result<()> {
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
    pub(super) fn finish(
        self,
        genes: &[String],
        type_names: &[String],
        label: &str,
        barcode: impl Fn(usize) -> String,
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
