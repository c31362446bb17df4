//! `satlas export --format h5ad`: one run's embedded cells as an AnnData file (current on-disk
//! encoding, the names shared with the reader in [`crate::io::h5ad::encoding`]).
//!
//! Layout: `X` and `obsm/X_saturn` both hold the cells x latent embedding (float32, dense; `X` so
//! scanpy tools work directly); `obsm/X_macrogenes` the macrogene expression when asked for.
//! `obs` is indexed by the atlas cell id (as text, unique) with columns `barcode` (string),
//! `species`, `dataset`, `cell_type`, `transferred_label` (categoricals; missing values are code
//! -1) and `transfer_confidence` (float64, NaN where missing). `var` is indexed by the embedding
//! dimensions `dim_0`, `dim_1`, ... `uns/satlas` records the model run (id, kind, parameters and
//! metrics as JSON, creation time), the atlas path and the satlas version.

use super::{cell_matrix, read_cells, CellRow, ExportReport, ExportSpec};
use crate::atlas::{persist, temp_file_beside, AtlasError};
use crate::io::h5ad::encoding::*;
use crate::runs::{self, CellVector, Embeddings, Need, RunInfo};
use crate::Atlas;
use hdf5::types::VarLenUnicode;
use hdf5::{File, Group, Location};
use std::collections::BTreeSet;
use std::path::Path;

/// Everything that goes into the file.
struct Content<'a> {
    run: RunInfo,
    atlas: &'a Path,
    cells: Vec<CellRow>,
    embedding: Embeddings,
    macrogenes: Option<Embeddings>,
}

/// Writes the embedded cells of a run of `atlas` to `out` (see the module doc).
pub fn export_h5ad(atlas: &Atlas, spec: &ExportSpec, out: &Path) -> crate::Result<ExportReport> {
    let conn = atlas.connection();
    let run = runs::select(conn, Need::Embedded, spec.run)?;
    let cells = read_cells(conn, run)?;
    let content = Content {
        run: RunInfo::read(conn, run)?,
        atlas: atlas.path(),
        embedding: cell_matrix(conn, run, CellVector::Embedding, &cells)?,
        macrogenes: if spec.macrogenes {
            Some(cell_matrix(
                conn,
                run,
                CellVector::MacrogeneExpression,
                &cells,
            )?)
        } else {
            None
        },
        cells,
    };
    let temp = temp_file_beside(out)?;
    write_file(temp.path(), &content).map_err(|e| AtlasError::Output {
        path: out.into(),
        message: format!("HDF5 error: {e}"),
    })?;
    persist(temp, out)?;
    Ok(ExportReport {
        run,
        cells: content.cells.len(),
        files: vec![(out.into(), content.cells.len())],
    })
}

fn write_file(path: &Path, content: &Content<'_>) -> hdf5::Result<()> {
    let file = File::create(path)?;
    encode(&file, ANNDATA, VERSION_0_1)?;
    let n = content.cells.len();
    matrix(&file, "X", n, &content.embedding)?;
    obs(&file, &content.cells)?;
    let dims: Vec<String> = (0..content.embedding.dim)
        .map(|i| format!("dim_{i}"))
        .collect();
    dataframe(&file, "var", &dims, &[])?;
    let obsm = dict(&file, "obsm")?;
    matrix(&obsm, "X_saturn", n, &content.embedding)?;
    if let Some(m) = &content.macrogenes {
        matrix(&obsm, "X_macrogenes", n, m)?;
    }
    let satlas = dict(&dict(&file, "uns")?, "satlas")?;
    let run = &content.run;
    numeric(&satlas, "model_run_id", i64::from(run.id))?;
    string(&satlas, "kind", &run.kind)?;
    string(&satlas, "params", &run.params)?;
    string(&satlas, "metrics", run.metrics.as_deref().unwrap_or("{}"))?;
    string(&satlas, "created_at", &run.created_at)?;
    string(&satlas, "atlas", &content.atlas.display().to_string())?;
    string(&satlas, "satlas_version", env!("CARGO_PKG_VERSION"))?;
    file.close()
}

/// `obs`: the cell table, indexed by cell id.
fn obs(file: &File, cells: &[CellRow]) -> hdf5::Result<()> {
    let index: Vec<String> = cells.iter().map(|c| c.cell_id.to_string()).collect();
    let columns = [
        "barcode",
        "species",
        "dataset",
        "cell_type",
        "transferred_label",
        "transfer_confidence",
    ];
    let obs = dataframe(file, "obs", &index, &columns)?;
    let barcodes: Vec<&str> = cells.iter().map(|c| c.barcode.as_str()).collect();
    strings(&obs, "barcode", &barcodes)?;
    categorical(
        &obs,
        "species",
        cells.iter().map(|c| Some(c.species.as_str())),
    )?;
    categorical(
        &obs,
        "dataset",
        cells.iter().map(|c| Some(c.dataset.as_str())),
    )?;
    categorical(
        &obs,
        "cell_type",
        cells.iter().map(|c| c.cell_type.as_deref()),
    )?;
    categorical(
        &obs,
        "transferred_label",
        cells.iter().map(|c| c.transferred_label.as_deref()),
    )?;
    let confidence: Vec<f64> = cells
        .iter()
        .map(|c| c.transfer_confidence.unwrap_or(f64::NAN))
        .collect();
    let data = obs
        .new_dataset_builder()
        .with_data(&confidence)
        .create("transfer_confidence")?;
    encode(&data, ARRAY, VERSION_0_2)
}

fn text(value: &str) -> hdf5::Result<VarLenUnicode> {
    value
        .parse()
        .map_err(|e| format!("cannot store {value:?} as an HDF5 string: {e}").into())
}

fn attr(location: &Location, name: &str, value: &str) -> hdf5::Result<()> {
    location
        .new_attr::<VarLenUnicode>()
        .create(name)?
        .write_scalar(&text(value)?)
}

/// The `encoding-type` and `encoding-version` attributes.
pub(crate) fn encode(location: &Location, kind: &str, version: &str) -> hdf5::Result<()> {
    attr(location, TYPE, kind)?;
    attr(location, VERSION, version)
}

fn dict(parent: &Group, name: &str) -> hdf5::Result<Group> {
    let group = parent.create_group(name)?;
    encode(&group, DICT, VERSION_0_1)?;
    Ok(group)
}

/// A dense `rows x dim` float32 array.
fn matrix(parent: &Group, name: &str, rows: usize, m: &Embeddings) -> hdf5::Result<()> {
    let data = parent
        .new_dataset::<f32>()
        .shape([rows, m.dim])
        .create(name)?;
    data.write_raw(&m.values)?;
    encode(&data, ARRAY, VERSION_0_2)
}

fn strings<S: AsRef<str>>(parent: &Group, name: &str, values: &[S]) -> hdf5::Result<()> {
    let values = values
        .iter()
        .map(|v| text(v.as_ref()))
        .collect::<hdf5::Result<Vec<_>>>()?;
    let data = parent
        .new_dataset_builder()
        .with_data(&values)
        .create(name)?;
    encode(&data, STRING_ARRAY, VERSION_0_2)
}

/// A dataframe group with index `index` (stored as `_index`) and `columns` in order (written by
/// the caller); an empty `column-order` is an empty float array, as h5py writes it.
pub(crate) fn dataframe(
    parent: &Group,
    name: &str,
    index: &[String],
    columns: &[&str],
) -> hdf5::Result<Group> {
    let frame = parent.create_group(name)?;
    encode(&frame, DATAFRAME, VERSION_0_2)?;
    attr(&frame, INDEX, INDEX)?;
    if columns.is_empty() {
        frame.new_attr::<f64>().shape(0).create(COLUMN_ORDER)?;
    } else {
        let names = columns
            .iter()
            .map(|c| text(c))
            .collect::<hdf5::Result<Vec<_>>>()?;
        frame
            .new_attr::<VarLenUnicode>()
            .shape(names.len())
            .create(COLUMN_ORDER)?
            .write_raw(&names)?;
    }
    strings(&frame, INDEX, index)?;
    Ok(frame)
}

/// A categorical column: sorted distinct values as categories, code -1 for a missing value.
pub(crate) fn categorical<'a>(
    parent: &Group,
    name: &str,
    values: impl Iterator<Item = Option<&'a str>> + Clone,
) -> hdf5::Result<()> {
    let categories: Vec<&str> = values
        .clone()
        .flatten()
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let codes: Vec<i32> = values
        .map(|v| {
            v.map_or(-1, |v| {
                categories.binary_search(&v).map_or(-1, |i| i as i32)
            })
        })
        .collect();
    let group = parent.create_group(name)?;
    encode(&group, CATEGORICAL, VERSION_0_2)?;
    group
        .new_attr::<bool>()
        .create(ORDERED)?
        .write_scalar(&false)?;
    let data = group
        .new_dataset_builder()
        .with_data(&codes)
        .create(CODES)?;
    encode(&data, ARRAY, VERSION_0_2)?;
    strings(&group, CATEGORIES, &categories)
}

fn string(parent: &Group, name: &str, value: &str) -> hdf5::Result<()> {
    let data = parent.new_dataset::<VarLenUnicode>().create(name)?;
    data.write_scalar(&text(value)?)?;
    encode(&data, STRING, VERSION_0_2)
}

fn numeric(parent: &Group, name: &str, value: i64) -> hdf5::Result<()> {
    let data = parent.new_dataset::<i64>().create(name)?;
    data.write_scalar(&value)?;
    encode(&data, NUMERIC_SCALAR, VERSION_0_2)
}
