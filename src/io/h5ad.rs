//! AnnData `.h5ad` reader over the `hdf5` crate.
//!
//! Handles both encodings found in the wild:
//!
//! * **old** (anndata 0.7, e.g. `raw-Baron_*.h5ad`): categorical obs columns are integer code
//!   datasets whose `categories` attribute is an HDF5 object reference into
//!   `obs/__categories/<col>` (a `__categories/<col>` dataset without the reference is used too);
//!   sparse matrices may carry `h5sparse_format`/`h5sparse_shape` instead of `encoding-type`.
//! * **current** (anndata >= 0.8): `encoding-type` attributes; categoricals are groups with
//!   `codes` + `categories`; nullable columns are groups with `values` + `mask`.
//!
//! * **oldest** (anndata < 0.7): `obs`/`var` are compound datasets (one field per column, the
//!   index in field `index`), categorical codes with their categories in `uns/<col>_categories`;
//!   fields are read one at a time through a one-field compound memory type (`Field`).
//!
//! Dataframe group indices come from the dataset the `_index` attribute names (else `_index`,
//! else `index`). Counts come from `X`, `raw/X` (genes from `raw/var`) or `layers/NAME`, per
//! [`ReadOptions::layer`]; each may be a CSR group, a CSC group or a dense 2-D dataset, read with
//! whole-dataset reads and decoded by the shared `sparse` module. Every value must be
//! a non-negative integer whatever the stored type.
//!
//! Obs columns: string and categorical columns are read as they are; numeric and boolean columns
//! are stringified (integers exactly, floats in Rust's shortest round-trip form, NaN as missing),
//! so nothing is silently lost. Not supported (a clear error says so): fixed-length strings.

use super::sparse::{
    check_pointers, check_unique, push_compressed, push_dense, CountsBuilder, Major,
};
use super::text::ObsTable;
use super::{CountMatrix, DatasetFile, DatasetStream, ObsColumn, ReadError, ReadOptions, Rows};
use encoding::{CATEGORICAL, CATEGORIES, CODES, COLUMN_ORDER, INDEX, NULLABLE_PREFIX, TYPE};
use hdf5::types::{CompoundField, CompoundType, TypeDescriptor, VarLenAscii, VarLenUnicode};
use hdf5::{Dataset, File, Group, H5Type, Location, ObjectReference1, ReferencedObject};
use std::cell::RefCell;
use std::path::Path;

/// The names of AnnData's on-disk encoding (anndata >= 0.8), shared by this reader and the h5ad
/// writer of `satlas export`.
pub mod encoding {
    /// Attribute naming an element's encoding.
    pub const TYPE: &str = "encoding-type";
    /// Attribute naming the encoding's version.
    pub const VERSION: &str = "encoding-version";
    /// Dataframe attribute naming the member that holds the index; its usual value.
    pub const INDEX: &str = "_index";
    /// Dataframe attribute listing the columns in order.
    pub const COLUMN_ORDER: &str = "column-order";
    /// Encoding type of a dataframe group (obs, var).
    pub const DATAFRAME: &str = "dataframe";
    /// Encoding type of a categorical column group.
    pub const CATEGORICAL: &str = "categorical";
    /// Member of a categorical group holding the integer codes (-1: missing).
    pub const CODES: &str = "codes";
    /// Member of a categorical group holding the category values.
    pub const CATEGORIES: &str = "categories";
    /// Attribute of a categorical group saying whether its categories are ordered.
    pub const ORDERED: &str = "ordered";
    /// Prefix of the encoding types of nullable columns (`values` + `mask`).
    pub const NULLABLE_PREFIX: &str = "nullable-";
    /// Encoding type of the root group.
    pub const ANNDATA: &str = "anndata";
    /// Encoding type of a dense array.
    pub const ARRAY: &str = "array";
    /// Encoding type of an array of strings.
    pub const STRING_ARRAY: &str = "string-array";
    /// Encoding type of a group of named elements (obsm, uns).
    pub const DICT: &str = "dict";
    /// Encoding type of a scalar string.
    pub const STRING: &str = "string";
    /// Encoding type of a scalar number.
    pub const NUMERIC_SCALAR: &str = "numeric-scalar";
    /// Version of the root, dict encodings.
    pub const VERSION_0_1: &str = "0.1.0";
    /// Version of the dataframe, categorical, array and scalar encodings.
    pub const VERSION_0_2: &str = "0.2.0";
}

/// Reads an h5ad file: counts per `options.layer`, obs columns, and `options.obs_file` joined on.
pub fn read_h5ad(path: &Path, options: &ReadOptions) -> Result<DatasetFile, ReadError> {
    let h5ad = H5ad::open(path)?;
    let barcodes = h5ad.frame_index("obs")?;
    let counts = h5ad.counts(&barcodes, options.layer.as_deref())?;
    let mut obs = h5ad.obs_columns(barcodes.len())?;
    if let Some(obs_file) = &options.obs_file {
        ObsTable::read(obs_file)?.join(&counts.barcodes, &mut obs)?;
    }
    Ok(DatasetFile {
        counts,
        obs,
        format: "h5ad",
    })
}

/// Opens an h5ad whose counts (per `options.layer`, `X` when none) are a CSR matrix for reading
/// a chunk of cells at a time; `None` when they are not (CSC, dense, or a missing layer, which
/// [`read_h5ad`] reads or reports). Obs, var and the row pointer are read and checked now.
pub(crate) fn open_csr(
    path: &Path,
    options: &ReadOptions,
) -> Result<Option<DatasetStream>, ReadError> {
    let h5ad = H5ad::open(path)?;
    let (object, var) = match options.layer.as_deref() {
        Some(layer) => layer_matrix(layer),
        None => ("X".to_string(), "var"),
    };
    if !h5ad.is_group(&object) {
        return Ok(None);
    }
    let barcodes = h5ad.frame_index("obs")?;
    let genes = h5ad.frame_index(var)?;
    check_unique(path, "cell", &barcodes)?;
    check_unique(path, "gene", &genes)?;
    if h5ad.sparse_layout(&object, var, [barcodes.len(), genes.len()])? != Major::Cell {
        return Ok(None);
    }
    let rows = CsrRows::open(&h5ad, &object, barcodes.len())?;
    let mut obs = h5ad.obs_columns(barcodes.len())?;
    if let Some(obs_file) = &options.obs_file {
        ObsTable::read(obs_file)?.join(&barcodes, &mut obs)?;
    }
    let fallback =
        (options.layer.is_none() && h5ad.file.link_exists("raw/X")).then(|| ReadOptions {
            layer: Some("raw/X".into()),
            ..options.clone()
        });
    Ok(Some(DatasetStream {
        barcodes,
        genes,
        obs,
        format: "h5ad",
        fallback,
        rows: Rows::Csr(rows),
    }))
}

/// Stored entries a streamed chunk holds at most (unless one cell alone holds more): about
/// 100 MB of buffers while it is decoded.
const ENTRIES_PER_CHUNK: i64 = 1 << 21;

/// A CSR matrix of an h5ad read a chunk of cells at a time: the row pointer whole, `indices`
/// and `data` by hyperslab.
pub(crate) struct CsrRows {
    path: std::path::PathBuf,
    object: String,
    indptr: Vec<i64>,
    indices: Dataset,
    data: Dataset,
    next: usize,
}

impl CsrRows {
    /// Reads and checks the row pointer of the CSR group `object` of `n_cells` rows.
    fn open(h5ad: &H5ad<'_>, object: &str, n_cells: usize) -> Result<CsrRows, ReadError> {
        let member = |name: &str| h5ad.dataset(&format!("{object}/{name}"));
        let fail = |e: hdf5::Error| h5ad.error(object, e);
        let indptr = read_values::<i64>(&member("indptr")?, None).map_err(fail)?;
        let (indices, data) = (member("indices")?, member("data")?);
        check_declared(&indices).map_err(fail)?;
        check_declared(&data).map_err(fail)?;
        check_pointers(
            Major::Cell,
            n_cells,
            &indptr,
            indices.size(),
            data.size(),
            |m| h5ad.error(object, m),
        )?;
        Ok(CsrRows {
            path: h5ad.path.to_path_buf(),
            object: object.to_string(),
            indptr,
            indices,
            data,
            next: 0,
        })
    }

    /// The next cells holding about [`ENTRIES_PER_CHUNK`] entries, validated and in CSR order.
    pub(crate) fn next_chunk(
        &mut self,
        barcodes: &[String],
        genes: &[String],
    ) -> Result<Option<CountMatrix>, ReadError> {
        let start = self.next;
        if start == barcodes.len() {
            return Ok(None);
        }
        let first = self.indptr[start];
        let limit = first.saturating_add(ENTRIES_PER_CHUNK);
        let end = (start + self.indptr[start + 1..].partition_point(|&p| p <= limit))
            .clamp(start + 1, barcodes.len());
        let last = self.indptr[end];
        let fail = |e: hdf5::Error| self.error(e.to_string());
        let range = first as usize..last as usize;
        let (indices, data) = if range.is_empty() {
            (Vec::new(), Vec::new())
        } else {
            let indices = self.indices.read_slice_1d::<i64, _>(range.clone());
            let data = self.data.read_slice_1d::<f64, _>(range);
            (
                indices.map_err(fail)?.to_vec(),
                data.map_err(fail)?.to_vec(),
            )
        };
        let pointer: Vec<i64> = self.indptr[start..=end].iter().map(|p| p - first).collect();
        let mut builder =
            CountsBuilder::new(&self.path, barcodes[start..end].to_vec(), genes.to_vec())?;
        push_compressed(&mut builder, Major::Cell, &pointer, &indices, &data, |m| {
            self.error(format!("{m} (of the chunk from cell {start})"))
        })?;
        self.next = end;
        Ok(Some(builder.finish()))
    }

    fn error(&self, message: String) -> ReadError {
        ReadError::Hdf5 {
            path: self.path.clone(),
            object: self.object.clone(),
            message,
        }
    }
}

/// The matrix and its var dataframe for a [`ReadOptions::layer`] value.
fn layer_matrix(layer: &str) -> (String, &'static str) {
    match layer {
        "X" => ("X".to_string(), "var"),
        "raw/X" | "raw" => ("raw/X".to_string(), "raw/var"),
        l => (
            format!("layers/{}", l.strip_prefix("layers/").unwrap_or(l)),
            "var",
        ),
    }
}

/// An open h5ad file and its path (for errors).
struct H5ad<'a> {
    path: &'a Path,
    file: File,
}

impl<'a> H5ad<'a> {
    fn open(path: &'a Path) -> Result<H5ad<'a>, ReadError> {
        std::fs::metadata(path).map_err(|source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let file = File::open(path).map_err(|e| ReadError::Hdf5 {
            path: path.to_path_buf(),
            object: "/".into(),
            message: format!(
                "{e}; the file is truncated, corrupt or not HDF5 (re-download or re-write it)"
            ),
        })?;
        Ok(H5ad { path, file })
    }

    fn error(&self, object: &str, message: impl std::fmt::Display) -> ReadError {
        ReadError::Hdf5 {
            path: self.path.to_path_buf(),
            object: object.to_string(),
            message: message.to_string(),
        }
    }

    fn group(&self, name: &str) -> Result<Group, ReadError> {
        self.file.group(name).map_err(|e| self.error(name, e))
    }

    fn dataset(&self, name: &str) -> Result<Dataset, ReadError> {
        self.file.dataset(name).map_err(|e| self.error(name, e))
    }

    fn is_group(&self, name: &str) -> bool {
        self.file.link_exists(name) && self.file.group(name).is_ok()
    }

    /// The index (row names) of the dataframe `frame` (`obs`, `var`, `raw/var`).
    fn frame_index(&self, frame: &str) -> Result<Vec<String>, ReadError> {
        let (dataset, field, object) = if self.is_group(frame) {
            let group = self.group(frame)?;
            let name = match attr_string(&group, INDEX) {
                Some(name) => name,
                None if group.link_exists(INDEX) => INDEX.into(),
                None => "index".into(),
            };
            let object = format!("{frame}/{name}");
            (self.dataset(&object)?, None, object)
        } else if self.file.link_exists(frame) {
            (
                self.dataset(frame)?,
                Some("index"),
                format!("{frame}.index"),
            )
        } else {
            return Err(self.error(frame, "missing; an h5ad needs obs and var dataframes"));
        };
        let values = self.values(&dataset, field, &object)?;
        Ok(values.into_iter().map(Option::unwrap_or_default).collect())
    }

    /// Every value of a 1-D dataset, or of one `field` of a compound dataset, stringified (see
    /// the module doc).
    fn values(
        &self,
        dataset: &Dataset,
        field: Option<&str>,
        object: &str,
    ) -> Result<Vec<Option<String>>, ReadError> {
        let fail = |e: hdf5::Error| self.error(object, e);
        let mut descriptor = dataset
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(fail)?;
        if let (Some(name), TypeDescriptor::Compound(compound)) = (field, &descriptor) {
            let found = compound.fields.iter().find(|f| f.name == name);
            descriptor = found
                .ok_or_else(|| self.error(object, format!("no field {name:?}")))?
                .ty
                .clone();
        }
        let strings = |v: Vec<String>| v.into_iter().map(Some).collect();
        let values = match descriptor {
            TypeDescriptor::VarLenUnicode => {
                let v = read_values::<VarLenUnicode>(dataset, field).map_err(fail)?;
                strings(v.iter().map(|s| s.to_string()).collect())
            }
            TypeDescriptor::VarLenAscii => {
                let v = read_values::<VarLenAscii>(dataset, field).map_err(fail)?;
                strings(v.iter().map(|s| s.to_string()).collect())
            }
            TypeDescriptor::Integer(_) | TypeDescriptor::Unsigned(_) => {
                let v = read_values::<i64>(dataset, field).map_err(fail)?;
                strings(v.iter().map(i64::to_string).collect())
            }
            TypeDescriptor::Boolean => {
                let v = read_values::<bool>(dataset, field).map_err(fail)?;
                strings(v.iter().map(bool::to_string).collect())
            }
            TypeDescriptor::Float(_) => read_values::<f64>(dataset, field)
                .map_err(fail)?
                .into_iter()
                .map(|v| (!v.is_nan()).then(|| v.to_string()))
                .collect(),
            other => {
                return Err(self.error(
                    object,
                    format!(
                        "values of type {other} are not supported (strings must be \
                         variable-length; re-save the file with a current anndata)"
                    ),
                ))
            }
        };
        Ok(values)
    }

    /// The obs columns, in `column-order` (else member) order.
    fn obs_columns(&self, n_cells: usize) -> Result<Vec<ObsColumn>, ReadError> {
        if !self.is_group("obs") {
            return self.compound_obs_columns();
        }
        let obs = self.group("obs")?;
        let index = attr_string(&obs, INDEX).unwrap_or_else(|| INDEX.into());
        let names = match attr_strings(&obs, COLUMN_ORDER) {
            Some(names) => names,
            None => {
                let mut names = obs.member_names().map_err(|e| self.error("obs", e))?;
                names.retain(|n| n != &index && n != "index" && n != "__categories");
                names
            }
        };
        let mut columns = Vec::with_capacity(names.len());
        for name in names {
            let object = format!("obs/{name}");
            let values = self.obs_column(&object, &name)?;
            if values.len() != n_cells {
                return Err(self.error(
                    &object,
                    format!("{} values for {n_cells} cells", values.len()),
                ));
            }
            columns.push(ObsColumn { name, values });
        }
        Ok(columns)
    }

    /// The columns of a compound `obs` dataset (anndata < 0.7): every field but `index`;
    /// a field with a `uns/<name>_categories` array holds categorical codes.
    fn compound_obs_columns(&self) -> Result<Vec<ObsColumn>, ReadError> {
        let obs = self.dataset("obs")?;
        let descriptor = obs
            .dtype()
            .and_then(|t| t.to_descriptor())
            .map_err(|e| self.error("obs", e))?;
        let TypeDescriptor::Compound(compound) = descriptor else {
            return Err(self.error("obs", "neither a group nor a compound dataset"));
        };
        let mut columns = Vec::new();
        for field in compound.fields.iter().filter(|f| f.name != "index") {
            let name = field.name.clone();
            let object = format!("obs.{name}");
            let categories = format!("uns/{name}_categories");
            let values = if self.file.link_exists(&categories) {
                let categories = self.values(&self.dataset(&categories)?, None, &categories)?;
                let codes = read_values::<i64>(&obs, Some(&name));
                let codes = codes.map_err(|e| self.error(&object, e))?;
                self.decode_categories(codes.into_iter(), &categories, &object)?
            } else {
                self.values(&obs, Some(&name), &object)?
            };
            columns.push(ObsColumn { name, values });
        }
        Ok(columns)
    }

    fn obs_column(&self, object: &str, name: &str) -> Result<Vec<Option<String>>, ReadError> {
        if self.is_group(object) {
            let group = self.group(object)?;
            let encoding = attr_string(&group, TYPE).unwrap_or_default();
            let part = |member: &str| self.dataset(&format!("{object}/{member}"));
            return match encoding.as_str() {
                CATEGORICAL => self.categorical(
                    &part(CODES)?,
                    &part(CATEGORIES)?,
                    &format!("{object}/{CODES}"),
                ),
                e if e.starts_with(NULLABLE_PREFIX) => {
                    let values = self.values(&part("values")?, None, object)?;
                    let mask = read_values::<bool>(&part("mask")?, None)
                        .map_err(|e| self.error(object, e))?;
                    Ok(values
                        .into_iter()
                        .zip(mask)
                        .map(|(v, missing)| v.filter(|_| !missing))
                        .collect())
                }
                other => Err(self.error(
                    object,
                    format!("obs column encoding {other:?} is not supported"),
                )),
            };
        }
        let codes = self.dataset(object)?;
        if let Ok(reference) = codes
            .attr(CATEGORIES)
            .and_then(|a| a.read_scalar::<ObjectReference1>())
        {
            let target = self
                .file
                .dereference(&reference)
                .map_err(|e| self.error(object, e))?;
            let ReferencedObject::Dataset(categories) = target else {
                return Err(self.error(object, "`categories` does not reference a dataset"));
            };
            return self.categorical(&codes, &categories, object);
        }
        let legacy = format!("obs/__categories/{name}");
        if self.file.link_exists(&legacy) {
            return self.categorical(&codes, &self.dataset(&legacy)?, object);
        }
        self.values(&codes, None, object)
    }

    fn categorical(
        &self,
        codes: &Dataset,
        categories: &Dataset,
        object: &str,
    ) -> Result<Vec<Option<String>>, ReadError> {
        let categories = self.values(categories, None, object)?;
        let codes = read_values::<i64>(codes, None).map_err(|e| self.error(object, e))?;
        self.decode_categories(codes.into_iter(), &categories, object)
    }

    /// Category of every code; negative codes are missing values.
    fn decode_categories(
        &self,
        codes: impl Iterator<Item = i64>,
        categories: &[Option<String>],
        object: &str,
    ) -> Result<Vec<Option<String>>, ReadError> {
        codes
            .map(|c| match usize::try_from(c) {
                Err(_) => Ok(None),
                Ok(c) => categories.get(c).cloned().ok_or_else(|| {
                    self.error(
                        object,
                        format!("category code {c} but only {} categories", categories.len()),
                    )
                }),
            })
            .collect()
    }

    /// The counts per `layer` (see [`ReadOptions::layer`]).
    fn counts(&self, barcodes: &[String], layer: Option<&str>) -> Result<CountMatrix, ReadError> {
        if let Some(layer) = layer {
            let (matrix, var) = layer_matrix(layer);
            if !self.file.link_exists(&matrix) {
                return Err(self.error(
                    &matrix,
                    format!("no such matrix; available: {}", self.matrices().join(", ")),
                ));
            }
            return self.matrix(&matrix, var, barcodes);
        }
        match self.matrix("X", "var", barcodes) {
            Err(e @ ReadError::NonIntegerCounts { .. }) if self.file.link_exists("raw/X") => {
                self.matrix("raw/X", "raw/var", barcodes).map_err(|_| e)
            }
            other => other,
        }
    }

    /// The count matrices the file holds (for error messages).
    fn matrices(&self) -> Vec<String> {
        let mut found: Vec<String> = ["X", "raw/X"]
            .into_iter()
            .filter(|m| self.file.link_exists(m))
            .map(str::to_string)
            .collect();
        if let Ok(layers) = self.file.group("layers") {
            let names = layers.member_names().unwrap_or_default();
            found.extend(names.into_iter().map(|n| format!("layers/{n}")));
        }
        found
    }

    fn shape_error(
        &self,
        object: &str,
        var: &str,
        shape: &[usize],
        expected: [usize; 2],
    ) -> ReadError {
        self.error(
            object,
            format!(
                "shape {shape:?} does not match {} obs x {} {var} rows",
                expected[0], expected[1]
            ),
        )
    }

    /// The compression axis of the sparse matrix group `object`, checked to be `expected`
    /// (cells x genes of `var`) in shape.
    fn sparse_layout(
        &self,
        object: &str,
        var: &str,
        expected: [usize; 2],
    ) -> Result<Major, ReadError> {
        let group = self.group(object)?;
        let format = attr_string(&group, TYPE)
            .or_else(|| attr_string(&group, "h5sparse_format"))
            .unwrap_or_default();
        let major = match format.as_str() {
            "csr_matrix" | "csr" => Major::Cell,
            "csc_matrix" | "csc" => Major::Gene,
            other => {
                return Err(self.error(
                    object,
                    format!("matrix encoding {other:?} is neither CSR nor CSC"),
                ))
            }
        };
        let shape = ["shape", "h5sparse_shape"]
            .iter()
            .find_map(|a| group.attr(a).and_then(|a| a.read_raw::<u64>()).ok())
            .ok_or_else(|| self.error(object, "sparse matrix without a shape attribute"))?;
        let shape: Vec<usize> = shape.into_iter().map(|v| v as usize).collect();
        if shape != expected {
            return Err(self.shape_error(object, var, &shape, expected));
        }
        Ok(major)
    }

    /// Reads the matrix at `object` (cells x genes of `var`) into a validated [`CountMatrix`].
    fn matrix(
        &self,
        object: &str,
        var: &str,
        barcodes: &[String],
    ) -> Result<CountMatrix, ReadError> {
        let genes = self.frame_index(var)?;
        let mut builder = CountsBuilder::new(self.path, barcodes.to_vec(), genes)?;
        let expected = [builder.n_cells(), builder.n_genes()];
        if !self.is_group(object) {
            let dense = self.dataset(object)?;
            if dense.shape() != expected {
                return Err(self.shape_error(object, var, &dense.shape(), expected));
            }
            let values = read_values::<f64>(&dense, None).map_err(|e| self.error(object, e))?;
            push_dense(&mut builder, &values)?;
            return Ok(builder.finish());
        }
        let major = self.sparse_layout(object, var, expected)?;
        let read = |name: &str| self.dataset(&format!("{object}/{name}"));
        let indptr = read_values::<i64>(&read("indptr")?, None);
        let indices = read_values::<i64>(&read("indices")?, None);
        let data = read_values::<f64>(&read("data")?, None);
        let fail = |e: hdf5::Error| self.error(object, e);
        let (indptr, indices, data) = (
            indptr.map_err(fail)?,
            indices.map_err(fail)?,
            data.map_err(fail)?,
        );
        push_compressed(&mut builder, major, &indptr, &indices, &data, |m| {
            self.error(object, m)
        })?;
        Ok(builder.finish())
    }
}

thread_local! {
    /// The field [`Field`] reads; set by [`read_values`] just before each read.
    static FIELD_NAME: RefCell<String> = const { RefCell::new(String::new()) };
}

/// A one-field compound memory type: reading a compound dataset into it makes HDF5 convert
/// just the field named [`FIELD_NAME`] (HDF5 matches compound members by name).
#[repr(C)]
struct Field<V>(V);

// SAFETY: `Field<V>` is `repr(C)` with its only member at offset 0, so its layout is exactly
// the compound type described: one member of `V`'s type at offset 0, size `size_of::<V>()`.
unsafe impl<V: H5Type> H5Type for Field<V> {
    fn type_descriptor() -> TypeDescriptor {
        let name = FIELD_NAME.with(|n| n.borrow().clone());
        TypeDescriptor::Compound(CompoundType {
            fields: vec![CompoundField::new(&name, V::type_descriptor(), 0, 0)],
            size: std::mem::size_of::<V>(),
        })
    }
}

/// Elements a dataset may declare per byte it stores: deflate, HDF5's usual filter, compresses
/// at most about 1,032:1.
const MAX_ELEMENTS_PER_STORED_BYTE: u64 = 1100;

/// Elements any dataset may declare whatever it stores (a dataset of fill values stores none).
const MIN_ELEMENT_LIMIT: u64 = 1 << 20;

/// All values of a dataset, or of one field of a compound dataset, as `V`. A dataset declaring
/// far more elements than its stored bytes can hold is refused before anything is allocated: a
/// corrupt dataspace must not make the reader allocate terabytes.
fn read_values<V: H5Type>(dataset: &Dataset, field: Option<&str>) -> hdf5::Result<Vec<V>> {
    check_declared(dataset)?;
    let Some(name) = field else {
        return dataset.read_raw::<V>();
    };
    FIELD_NAME.with(|n| name.clone_into(&mut n.borrow_mut()));
    let values = dataset.read_raw::<Field<V>>()?;
    Ok(values.into_iter().map(|f| f.0).collect())
}

/// Refuses a dataset declaring far more elements than its stored bytes can hold (see
/// [`read_values`]).
fn check_declared(dataset: &Dataset) -> hdf5::Result<()> {
    let (declared, stored) = (dataset.size() as u64, dataset.storage_size());
    let limit = stored
        .saturating_mul(MAX_ELEMENTS_PER_STORED_BYTE)
        .max(MIN_ELEMENT_LIMIT);
    if declared > limit {
        return Err(format!(
            "declares {declared} elements but stores only {stored} bytes: its dataspace is \
             corrupt; re-write the file"
        )
        .into());
    }
    Ok(())
}

/// A scalar string attribute, if present and a string.
fn attr_string(location: &Location, name: &str) -> Option<String> {
    let attr = location.attr(name).ok()?;
    match attr.dtype().ok()?.to_descriptor().ok()? {
        TypeDescriptor::VarLenUnicode => attr
            .read_scalar::<VarLenUnicode>()
            .ok()
            .map(|s| s.to_string()),
        TypeDescriptor::VarLenAscii => attr
            .read_scalar::<VarLenAscii>()
            .ok()
            .map(|s| s.to_string()),
        _ => None,
    }
}

/// A string-array attribute; an empty non-string array (h5py's empty `column-order`) is empty.
fn attr_strings(location: &Location, name: &str) -> Option<Vec<String>> {
    let attr = location.attr(name).ok()?;
    match attr.dtype().ok()?.to_descriptor().ok()? {
        TypeDescriptor::VarLenUnicode => attr
            .read_raw::<VarLenUnicode>()
            .ok()
            .map(|v| v.iter().map(|s| s.to_string()).collect()),
        TypeDescriptor::VarLenAscii => attr
            .read_raw::<VarLenAscii>()
            .ok()
            .map(|v| v.iter().map(|s| s.to_string()).collect()),
        _ => (attr.size() == 0).then(Vec::new),
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::str::FromStr;

    type H5Result<T = ()> = hdf5::Result<T>;

    fn text(s: &str) -> VarLenUnicode {
        VarLenUnicode::from_str(s).unwrap()
    }

    fn attr_text(location: &Location, name: &str, value: &str) -> H5Result {
        location
            .new_attr::<VarLenUnicode>()
            .create(name)?
            .write_scalar(&text(value))
    }

    fn strings(group: &Group, name: &str, values: &[&str]) -> H5Result<Dataset> {
        let values: Vec<VarLenUnicode> = values.iter().map(|s| text(s)).collect();
        group.new_dataset_builder().with_data(&values).create(name)
    }

    /// A current-encoding dataframe group with index `names`.
    fn frame(parent: &Group, name: &str, names: &[&str]) -> H5Result<Group> {
        let g = parent.create_group(name)?;
        attr_text(&g, "encoding-type", "dataframe")?;
        attr_text(&g, "_index", "_index")?;
        strings(&g, "_index", names)?;
        Ok(g)
    }

    fn sparse(
        parent: &Group,
        name: &str,
        format: &str,
        shape: [i64; 2],
        indptr: &[i32],
        indices: &[i32],
        data: &[f64],
    ) -> H5Result {
        let g = parent.create_group(name)?;
        attr_text(&g, "encoding-type", format)?;
        g.new_attr::<i64>()
            .shape(2)
            .create("shape")?
            .write_raw(&shape)?;
        g.new_dataset_builder().with_data(indptr).create("indptr")?;
        g.new_dataset_builder()
            .with_data(indices)
            .create("indices")?;
        g.new_dataset_builder().with_data(data).create("data")?;
        Ok(())
    }

    /// Cells c0, c1 x genes A, B, C holding [[0, 2, 0], [1, 0, 3]]: X as CSC (float64),
    /// `layers/dense` as a dense int32 dataset, `layers/lognorm` non-integer, plus obs columns of
    /// every supported kind.
    fn write_example(path: &Path) -> H5Result {
        let f = File::create(path)?;
        let obs = frame(&f, "obs", &["c0", "c1"])?;
        frame(&f, "var", &["A", "B", "C"])?;
        sparse(
            &f,
            "X",
            "csc_matrix",
            [2, 3],
            &[0, 1, 2, 3],
            &[1, 0, 1],
            &[1.0, 2.0, 3.0],
        )?;
        let layers = f.create_group("layers")?;
        let dense = layers.new_dataset::<i32>().shape([2, 3]).create("dense")?;
        dense.write_raw(&[0, 2, 0, 1, 0, 3])?;
        sparse(
            &layers,
            "lognorm",
            "csr_matrix",
            [2, 3],
            &[0, 1, 3],
            &[1, 0, 2],
            &[0.7, 0.5, 1.2],
        )?;
        let kind = obs.create_group("kind")?;
        attr_text(&kind, "encoding-type", "categorical")?;
        strings(&kind, "categories", &["alpha", "beta"])?;
        kind.new_dataset_builder()
            .with_data(&[1i8, -1])
            .create("codes")?;
        let n = obs.create_group("n")?;
        attr_text(&n, "encoding-type", "nullable-integer")?;
        n.new_dataset_builder()
            .with_data(&[7i64, 8])
            .create("values")?;
        n.new_dataset_builder()
            .with_data(&[false, true])
            .create("mask")?;
        obs.new_dataset_builder()
            .with_data(&[0.5f64, f64::NAN])
            .create("score")?;
        strings(&obs, "donor", &["d1", "d2"])?;
        Ok(())
    }

    fn example() -> (tempfile::TempDir, std::path::PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("example.h5ad");
        write_example(&path).unwrap();
        (dir, path)
    }

    fn with_layer(layer: &str) -> ReadOptions {
        ReadOptions {
            layer: Some(layer.into()),
            ..ReadOptions::default()
        }
    }

    #[test]
    fn csc_and_dense_layers_decode_to_the_same_csr() {
        let (_dir, path) = example();
        let d = read_h5ad(&path, &ReadOptions::default()).unwrap();
        assert_eq!(d.counts.barcodes, ["c0", "c1"]);
        assert_eq!(d.counts.genes, ["A", "B", "C"]);
        assert_eq!(d.counts.csr.indptr, [0, 1, 3]);
        assert_eq!(d.counts.csr.indices, [1, 0, 2]);
        assert_eq!(d.counts.csr.data, [2, 1, 3]);
        let dense = read_h5ad(&path, &with_layer("layers/dense")).unwrap();
        assert_eq!(dense.counts, d.counts);
        assert_eq!(
            read_h5ad(&path, &with_layer("dense")).unwrap().counts,
            d.counts
        );
    }

    #[test]
    fn obs_columns_of_every_kind_are_read() {
        let (_dir, path) = example();
        let d = read_h5ad(&path, &ReadOptions::default()).unwrap();
        let values = |name: &str| d.obs_column(name).unwrap().values.clone();
        assert_eq!(values("kind"), [Some("beta".into()), None]);
        assert_eq!(values("n"), [Some("7".into()), None]);
        assert_eq!(values("score"), [Some("0.5".into()), None]);
        assert_eq!(values("donor"), [Some("d1".into()), Some("d2".into())]);
    }

    #[test]
    fn layer_choice_and_its_errors() {
        let (_dir, path) = example();
        let err = read_h5ad(&path, &with_layer("lognorm")).unwrap_err();
        assert!(
            matches!(&err, ReadError::NonIntegerCounts { cell, gene, .. } if cell == "c0" && gene == "B"),
            "{err}"
        );
        let err = read_h5ad(&path, &with_layer("counts")).unwrap_err();
        assert!(matches!(err, ReadError::Hdf5 { .. }), "{err}");
        assert!(err.to_string().contains("layers/dense"), "{err}");
    }

    #[test]
    fn raw_x_is_the_fallback_when_x_is_normalised() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.h5ad");
        write_normalised_with_raw(&path).unwrap();
        let d = read_h5ad(&path, &ReadOptions::default()).unwrap();
        assert_eq!(d.counts.genes, ["A", "B"]);
        assert_eq!(d.counts.csr.data, [4]);
        let err = read_h5ad(&path, &with_layer("X")).unwrap_err();
        assert!(matches!(err, ReadError::NonIntegerCounts { .. }), "{err}");
    }

    /// One cell c0: `X` over gene A holds 0.25 (normalised), `raw/X` over A, B holds B = 4.
    pub(crate) fn write_normalised_with_raw(path: &Path) -> H5Result {
        let f = File::create(path)?;
        frame(&f, "obs", &["c0"])?;
        frame(&f, "var", &["A"])?;
        sparse(&f, "X", "csr_matrix", [1, 1], &[0, 1], &[0], &[0.25])?;
        let raw = f.create_group("raw")?;
        frame(&raw, "var", &["A", "B"])?;
        sparse(&raw, "X", "csr_matrix", [1, 2], &[0, 1], &[1], &[4.0])
    }

    /// The streamed CSR reader gives what the whole-file reader gives, names raw/X as the
    /// fallback of a streamed X, and finds X's non-integer value while streaming.
    #[test]
    fn streamed_csr_matches_the_whole_read() {
        let (_dir, path) = example();
        let lognorm = with_layer("lognorm");
        let mut stream = crate::io::open_dataset(&path, &lognorm).unwrap();
        assert!(stream.fallback.is_none());
        let err = stream.next_chunk().unwrap_err();
        assert!(
            matches!(&err, ReadError::NonIntegerCounts { cell, gene, .. } if cell == "c0" && gene == "B"),
            "{err}"
        );

        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("raw.h5ad");
        write_normalised_with_raw(&path).unwrap();
        let mut stream = crate::io::open_dataset(&path, &ReadOptions::default()).unwrap();
        let fallback = stream.fallback.clone().unwrap();
        assert_eq!(fallback.layer.as_deref(), Some("raw/X"));
        let err = stream.next_chunk().unwrap_err();
        assert!(matches!(err, ReadError::NonIntegerCounts { .. }), "{err}");
        let mut raw = crate::io::open_dataset(&path, &fallback).unwrap();
        let whole = read_h5ad(&path, &ReadOptions::default()).unwrap();
        assert_eq!(raw.genes, whole.counts.genes);
        assert_eq!(raw.next_chunk().unwrap(), Some(whole.counts));
        assert_eq!(raw.next_chunk().unwrap(), None);
    }

    #[test]
    fn duplicate_genes_and_missing_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("dup.h5ad");
        (|| -> H5Result {
            let f = File::create(&path)?;
            frame(&f, "obs", &["c0"])?;
            frame(&f, "var", &["A", "A"])?;
            sparse(&f, "X", "csr_matrix", [1, 2], &[0, 0], &[], &[])
        })()
        .unwrap();
        let err = read_h5ad(&path, &ReadOptions::default()).unwrap_err();
        assert!(
            matches!(err, ReadError::Duplicate { kind: "gene", .. }),
            "{err}"
        );
        let err = read_h5ad(&dir.path().join("none.h5ad"), &ReadOptions::default()).unwrap_err();
        assert!(matches!(err, ReadError::Io { .. }), "{err}");
    }

    /// Found by fuzzing: a corrupt dataspace declaring billions of elements made the reader
    /// allocate them (and abort); a dataset that stores nothing may declare at most 2^20.
    #[test]
    fn a_dataset_declaring_more_than_it_stores_is_refused_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.h5ad");
        (|| -> H5Result {
            let f = File::create(&path)?;
            f.new_dataset::<f64>()
                .chunk(4096)
                .shape(1 << 21)
                .create("unwritten")?;
            f.new_dataset::<f64>()
                .chunk(4096)
                .shape(1 << 20)
                .create("small")?;
            Ok(())
        })()
        .unwrap();
        let f = File::open(&path).unwrap();
        let err = read_values::<f64>(&f.dataset("unwritten").unwrap(), None).unwrap_err();
        assert!(
            err.to_string()
                .contains("declares 2097152 elements but stores only 0 bytes"),
            "{err}"
        );
        let small = read_values::<f64>(&f.dataset("small").unwrap(), None).unwrap();
        assert_eq!(small.len(), 1 << 20);
    }
}
