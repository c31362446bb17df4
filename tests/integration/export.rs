//! `satlas export` (h5ad and Parquet) and `satlas transfer --out x.parquet`, run as the binary on
//! a trained file atlas; the files are read back with the hdf5 crate and DuckDB's `read_parquet` and compared
//! with the atlas tables (values, AnnData encodings and attributes; no Python needed).

use crate::common::{count, fill_atlas, satlas, satlas_ok, train, TRAINING};
use duckdb::arrow::array::{Array, AsArray, RecordBatch};
use duckdb::arrow::datatypes::{Float32Type, Float64Type, Int32Type, Int64Type};
use hdf5::types::VarLenUnicode;
use hdf5::{Dataset, File, Group, Location};
use satlas::index::transfer::{self, TransferSpec};
use satlas::index::{self, IndexParams};
use satlas::model::runs::trained_macrogene_weights;
use satlas::protein::store::float_list;
use satlas::Atlas;
use std::collections::HashMap;
use std::path::Path;

/// What the atlas says about one exported cell.
#[derive(Debug, Clone, PartialEq)]
struct Cell {
    cell_id: i64,
    barcode: String,
    species: String,
    dataset: String,
    cell_type: Option<String>,
    label: Option<String>,
    confidence: Option<f64>,
    embedding: Vec<f32>,
}

/// Two datasets, macrogenes, a short pretraining and fine-tuning, an index and two label
/// transfers to the mouse cells (the second, with k = 5, is the latest); closed when returned.
fn trained_atlas(path: &Path) {
    let mut atlas = fill_atlas(Atlas::create(path).unwrap(), &["human", "mouse"]);
    train(&atlas, (2, 1), 1);
    index::build(&mut atlas, None, IndexParams::default()).unwrap();
    for k in [15, 5] {
        let spec = TransferSpec {
            k,
            ..TransferSpec::new("baron_mouse", "human")
        };
        transfer::transfer(&mut atlas, &spec).unwrap();
    }
}

/// The cells of the newest finetune run, with the latest transfer's label, from the atlas tables.
fn expected_cells(atlas: &Atlas) -> (i64, Vec<Cell>) {
    let run = count(
        atlas,
        "SELECT max(model_run_id) FROM model_runs WHERE kind = 'finetune'",
    );
    let latest = count(atlas, "SELECT max(transfer_id) FROM label_transfers");
    let mut stmt = atlas
        .connection()
        .prepare(
            "SELECT e.cell_id, c.barcode, c.species, c.dataset, c.cell_type, t.predicted_label,
                    t.confidence, e.embedding
             FROM cell_embeddings e JOIN cell_info c USING (cell_id)
             LEFT JOIN label_transfers t ON t.cell_id = e.cell_id AND t.transfer_id = ?
             WHERE e.model_run_id = ? ORDER BY e.cell_id",
        )
        .unwrap();
    let cells = stmt
        .query_map([latest, run], |r| {
            Ok(Cell {
                cell_id: r.get(0)?,
                barcode: r.get(1)?,
                species: r.get(2)?,
                dataset: r.get(3)?,
                cell_type: r.get(4)?,
                label: r.get(5)?,
                confidence: r.get(6)?,
                embedding: float_list(r.get_ref(7)?),
            })
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    (run, cells)
}

fn attr(location: &Location, name: &str) -> String {
    location
        .attr(name)
        .and_then(|a| a.read_scalar::<VarLenUnicode>())
        .unwrap_or_else(|e| panic!("attribute {name}: {e}"))
        .to_string()
}

fn encoding(location: &Location) -> (String, String) {
    (
        attr(location, "encoding-type"),
        attr(location, "encoding-version"),
    )
}

fn texts(dataset: &Dataset) -> Vec<String> {
    dataset
        .read_raw::<VarLenUnicode>()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect()
}

/// A categorical obs column decoded (code -1: missing), after checking its encoding.
fn categorical(obs: &Group, name: &str) -> Vec<Option<String>> {
    let group = obs.group(name).unwrap();
    assert_eq!(encoding(&group), ("categorical".into(), "0.2.0".into()));
    assert!(!group
        .attr("ordered")
        .unwrap()
        .read_scalar::<bool>()
        .unwrap());
    let categories = texts(&group.dataset("categories").unwrap());
    let mut sorted = categories.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(categories, sorted, "{name}: distinct sorted categories");
    let codes = group.dataset("codes").unwrap().read_raw::<i32>().unwrap();
    codes
        .into_iter()
        .map(|c| usize::try_from(c).ok().map(|c| categories[c].clone()))
        .collect()
}

fn check_h5ad(path: &Path, run: i64, cells: &[Cell], atlas_path: &Path) {
    let file = File::open(path).unwrap();
    assert_eq!(encoding(&file), ("anndata".into(), "0.1.0".into()));
    let n = cells.len();
    let dim = cells[0].embedding.len();
    let flat: Vec<f32> = cells.iter().flat_map(|c| c.embedding.clone()).collect();
    for name in ["X", "obsm/X_saturn"] {
        let x = file.dataset(name).unwrap();
        assert_eq!(x.shape(), vec![n, dim], "{name}");
        assert_eq!(encoding(&x), ("array".into(), "0.2.0".into()), "{name}");
        assert_eq!(x.read_raw::<f32>().unwrap(), flat, "{name}");
    }
    assert_eq!(
        encoding(&file.group("obsm").unwrap()),
        ("dict".into(), "0.1.0".into())
    );
    let macrogenes = file.dataset("obsm/X_macrogenes").unwrap();
    assert_eq!(macrogenes.shape(), vec![n, 30]);

    let obs = file.group("obs").unwrap();
    assert_eq!(encoding(&obs), ("dataframe".into(), "0.2.0".into()));
    assert_eq!(attr(&obs, "_index"), "_index");
    let order: Vec<String> = obs
        .attr("column-order")
        .unwrap()
        .read_raw::<VarLenUnicode>()
        .unwrap()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let columns = [
        "barcode",
        "species",
        "dataset",
        "cell_type",
        "transferred_label",
        "transfer_confidence",
    ];
    assert_eq!(order, columns);
    let index = obs.dataset("_index").unwrap();
    assert_eq!(encoding(&index), ("string-array".into(), "0.2.0".into()));
    let ids: Vec<String> = cells.iter().map(|c| c.cell_id.to_string()).collect();
    assert_eq!(texts(&index), ids);
    let barcodes: Vec<String> = cells.iter().map(|c| c.barcode.clone()).collect();
    assert_eq!(texts(&obs.dataset("barcode").unwrap()), barcodes);
    let some = |f: fn(&Cell) -> &str| -> Vec<Option<String>> {
        cells.iter().map(|c| Some(f(c).to_string())).collect()
    };
    assert_eq!(categorical(&obs, "species"), some(|c| &c.species));
    assert_eq!(categorical(&obs, "dataset"), some(|c| &c.dataset));
    let types: Vec<Option<String>> = cells.iter().map(|c| c.cell_type.clone()).collect();
    assert_eq!(categorical(&obs, "cell_type"), types);
    let labels: Vec<Option<String>> = cells.iter().map(|c| c.label.clone()).collect();
    assert_eq!(categorical(&obs, "transferred_label"), labels);
    let confidence = obs.dataset("transfer_confidence").unwrap();
    let confidence = confidence.read_raw::<f64>().unwrap();
    for (got, cell) in confidence.iter().zip(cells) {
        match cell.confidence {
            Some(want) => assert_eq!(*got, want, "cell {}", cell.cell_id),
            None => assert!(got.is_nan(), "cell {}: {got}", cell.cell_id),
        }
    }

    let var = file.group("var").unwrap();
    assert_eq!(encoding(&var), ("dataframe".into(), "0.2.0".into()));
    let dims: Vec<String> = (0..dim).map(|i| format!("dim_{i}")).collect();
    assert_eq!(texts(&var.dataset("_index").unwrap()), dims);

    let uns = file.group("uns/satlas").unwrap();
    assert_eq!(encoding(&uns), ("dict".into(), "0.1.0".into()));
    let run_id = uns.dataset("model_run_id").unwrap();
    assert_eq!(encoding(&run_id), ("numeric-scalar".into(), "0.2.0".into()));
    assert_eq!(run_id.read_scalar::<i64>().unwrap(), run);
    let text = |name: &str| {
        let d = uns.dataset(name).unwrap();
        assert_eq!(encoding(&d), ("string".into(), "0.2.0".into()), "{name}");
        d.read_scalar::<VarLenUnicode>().unwrap().to_string()
    };
    assert_eq!(text("kind"), "finetune");
    assert_eq!(text("atlas"), atlas_path.display().to_string());
    let params: serde_json::Value = serde_json::from_str(&text("params")).unwrap();
    assert_eq!(
        params["config"]["species"],
        serde_json::json!(["human", "mouse"])
    );
}

/// The rows of a Parquet file, as DuckDB (or any Parquet reader) reads them.
fn read_parquet(path: &Path) -> Vec<RecordBatch> {
    let conn = duckdb::Connection::open_in_memory().unwrap();
    let sql = format!("SELECT * FROM read_parquet('{}')", path.display());
    let mut stmt = conn.prepare(&sql).unwrap();
    let batches = stmt.query_arrow([]).unwrap().collect();
    batches
}

fn strings(batch: &RecordBatch, name: &str) -> Vec<Option<String>> {
    let column = batch.column_by_name(name).unwrap().as_string::<i32>();
    (0..column.len())
        .map(|i| column.is_valid(i).then(|| column.value(i).to_string()))
        .collect()
}

fn check_parquet_cells(dir: &Path, cells: &[Cell]) {
    let mut got = Vec::new();
    for batch in read_parquet(&dir.join("cells.parquet")) {
        let ids = batch
            .column_by_name("cell_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        let confidence = batch.column_by_name("transfer_confidence").unwrap();
        let confidence = confidence.as_primitive::<Float64Type>();
        let [barcode, species, dataset, cell_type, label] = [
            "barcode",
            "species",
            "dataset",
            "cell_type",
            "transferred_label",
        ]
        .map(|name| strings(&batch, name));
        for i in 0..batch.num_rows() {
            got.push(Cell {
                cell_id: ids.value(i),
                barcode: barcode[i].clone().unwrap(),
                species: species[i].clone().unwrap(),
                dataset: dataset[i].clone().unwrap(),
                cell_type: cell_type[i].clone(),
                label: label[i].clone(),
                confidence: confidence.is_valid(i).then(|| confidence.value(i)),
                embedding: Vec::new(),
            });
        }
    }
    let want: Vec<Cell> = cells
        .iter()
        .map(|c| Cell {
            embedding: Vec::new(),
            ..c.clone()
        })
        .collect();
    assert_eq!(got, want);

    let mut embeddings = Vec::new();
    for batch in read_parquet(&dir.join("embeddings.parquet")) {
        let ids = batch
            .column_by_name("cell_id")
            .unwrap()
            .as_primitive::<Int64Type>();
        let lists = batch.column_by_name("embedding").unwrap().as_list::<i32>();
        for i in 0..batch.num_rows() {
            let values = lists.value(i);
            let values = values.as_primitive::<Float32Type>().values().to_vec();
            embeddings.push((ids.value(i), values));
        }
    }
    let want: Vec<(i64, Vec<f32>)> = cells
        .iter()
        .map(|c| (c.cell_id, c.embedding.clone()))
        .collect();
    assert_eq!(embeddings, want);
}

/// `(species, gene) -> (weights, initial weights)` over the 30 macrogenes.
type Weights = HashMap<(String, String), (Vec<f32>, Vec<f32>)>;

fn read_weights(dir: &Path) -> Weights {
    let mut out: Weights = HashMap::new();
    for batch in read_parquet(&dir.join("macrogene_weights.parquet")) {
        let [species, genes] = ["species", "gene"].map(|name| strings(&batch, name));
        let macrogene = batch.column_by_name("macrogene").unwrap();
        let macrogene = macrogene.as_primitive::<Int32Type>();
        let column = |name| {
            batch
                .column_by_name(name)
                .unwrap()
                .as_primitive::<Float32Type>()
        };
        let (weight, initial) = (column("weight"), column("initial_weight"));
        for i in 0..batch.num_rows() {
            let key = (species[i].clone().unwrap(), genes[i].clone().unwrap());
            let entry = out.entry(key).or_default();
            assert_eq!(
                macrogene.value(i) as usize,
                entry.0.len(),
                "macrogenes in order"
            );
            entry.0.push(weight.value(i));
            entry.1.push(initial.value(i));
        }
    }
    out
}

/// Initial weights equal `gene_macrogene`; the fine-tuned run (macrogenes frozen) carries the
/// weights its pretraining run left, which moved away from the initial ones.
fn check_macrogene_weights(dir: &Path, atlas: &Atlas, run: i64) {
    let weights = read_weights(dir);
    let mut stmt = atlas
        .connection()
        .prepare(
            "SELECT s.name, g.symbol, gm.initial_weights FROM gene_macrogene gm
             JOIN genes g USING (gene_id) JOIN species s USING (species_id)
             WHERE gm.macrogene_set_id = (SELECT macrogene_set_id FROM model_runs WHERE model_run_id = ?)
             ORDER BY s.name, gm.gene_id",
        )
        .unwrap();
    let initial: Vec<((String, String), Vec<f32>)> = stmt
        .query_map([run], |r| {
            Ok(((r.get(0)?, r.get(1)?), float_list(r.get_ref(2)?)))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(weights.len(), initial.len());
    let pretrain = count(
        atlas,
        &format!("SELECT parent_run_id FROM model_runs WHERE model_run_id = {run}"),
    );
    let (_, pretrained) = trained_macrogene_weights(atlas.connection(), pretrain as i32).unwrap();
    let mut moved = 0;
    for (column, (key, want_initial)) in initial.iter().enumerate() {
        let (weight, got_initial) = &weights[key];
        assert_eq!(got_initial, want_initial, "{key:?}");
        assert_eq!(weight, &pretrained.column(column).to_vec(), "{key:?}");
        moved += weight
            .iter()
            .zip(want_initial)
            .filter(|(w, i)| w != i)
            .count();
    }
    assert!(
        moved > 0,
        "pretraining left every macrogene weight unchanged"
    );
}

/// `transfer --out x.parquet` writes the rows `--out x.csv` writes.
fn check_transfer_outputs(atlas: &Path, dir: &Path) {
    let args = |out: &Path| -> Vec<String> {
        [
            "transfer",
            "--reference",
            "human",
            "--query",
            "baron_mouse",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    };
    let (csv, parquet) = (dir.join("labels.csv"), dir.join("labels.parquet"));
    for out in [&csv, &parquet] {
        let args = args(out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        satlas_ok(atlas, &args);
    }
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap().split(',').collect();
    let batches = read_parquet(&parquet);
    let schema = batches[0].schema();
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    assert_eq!(names, header);
    let rows: Vec<Vec<String>> = lines
        .map(|l| l.split(',').map(str::to_string).collect())
        .collect();
    let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
    assert_eq!(total, rows.len());
    let mut csv_rows = rows.iter();
    for batch in &batches {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let predicted = strings(batch, "predicted_label");
        let confidence = batch.column(5).as_primitive::<Float64Type>();
        for (i, label) in predicted.iter().enumerate() {
            let row = csv_rows.next().unwrap();
            assert_eq!(ids.value(i).to_string(), row[0]);
            assert_eq!(label.as_deref(), Some(row[4].as_str()));
            let csv_confidence: f64 = row[5].parse().unwrap();
            assert!((confidence.value(i) - csv_confidence).abs() < 1e-12);
        }
    }
}

#[test]
fn exports_match_the_atlas_tables() {
    let _turn = TRAINING.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let atlas_path = dir.path().join("export.satlas");
    trained_atlas(&atlas_path);

    let h5ad = dir.path().join("cells.h5ad");
    let h5ad_arg = h5ad.display().to_string();
    let out = satlas_ok(
        &atlas_path,
        &[
            "export",
            "--format",
            "h5ad",
            "--macrogenes",
            "--out",
            &h5ad_arg,
        ],
    );
    let tables = dir.path().join("tables");
    let tables_arg = tables.display().to_string();
    satlas_ok(
        &atlas_path,
        &["export", "--format", "parquet", "--out", &tables_arg],
    );
    // Write failures: no temporary file can be made; the target is a directory (the rename fails).
    let missing = dir.path().join("no/such/dir/x.h5ad").display().to_string();
    for (out, needle) in [
        (missing.as_str(), "cannot create a temporary file in"),
        (
            tables_arg.as_str(),
            "cannot move the finished file into place",
        ),
    ] {
        let output = satlas(&atlas_path, &["export", "--format", "h5ad", "--out", out]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(needle),
            "{stderr}"
        );
    }
    let partial = std::fs::read_dir(dir.path())
        .unwrap()
        .chain(std::fs::read_dir(&tables).unwrap())
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".partial"))
        .count();
    assert_eq!(partial, 0, "temporary files left behind");

    let atlas = Atlas::open_read_only(&atlas_path).unwrap();
    let (run, cells) = expected_cells(&atlas);
    assert!(
        out.contains(&format!("exported {} cells of run {run}", cells.len())),
        "{out}"
    );
    let labelled = cells.iter().filter(|c| c.label.is_some()).count();
    assert!(labelled > 0 && labelled < cells.len(), "mouse cells only");
    check_h5ad(&h5ad, run, &cells, &atlas_path);
    check_parquet_cells(&tables, &cells);
    check_macrogene_weights(&tables, &atlas, run);
    let per_species = ["human", "mouse"].map(|species| {
        let sql = format!("SELECT count(*) FROM cell_info WHERE species = '{species}'");
        (species, count(&atlas, &sql))
    });
    drop(atlas);
    check_transfer_outputs(&atlas_path, dir.path());
    check_python_client(&atlas_path, run, &per_species, &cells[0]);
}

/// `scripts/query_atlas.py` (the PyPI `duckdb` package, read-only) sees the cells per species
/// and the first cell's embedding that satlas wrote.
fn check_python_client(atlas: &Path, run: i64, per_species: &[(&str, i64)], cell: &Cell) {
    let python = std::env::var("SATLAS_PYTHON").expect(
        "SATLAS_PYTHON names a Python with the duckdb package: run scripts/setup.sh and source \
         scripts/env.sh (scripts/test.sh does both)",
    );
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/query_atlas.py");
    let out = std::process::Command::new(python)
        .arg(script)
        .arg(atlas)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let answer: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for (species, n) in per_species {
        assert_eq!(answer["cells_per_species"][species], *n, "{answer}");
    }
    let got = &answer["cell"];
    assert_eq!(
        (got["model_run_id"].as_i64(), got["cell_id"].as_i64()),
        (Some(run), Some(cell.cell_id))
    );
    let embedding: Vec<f32> = serde_json::from_value(got["embedding"].clone()).unwrap();
    assert_eq!(embedding, cell.embedding);
}

/// Refused exports print what is wrong and leave no file (not even a temporary one) behind.
#[test]
fn refused_exports_leave_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let atlas = dir.path().join("empty.satlas");
    satlas_ok(&atlas, &["init"]);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let [h5ad, tables, zarr] = ["x.h5ad", "t", "x.zarr"].map(|n| out.join(n).display().to_string());
    let cases: [(Vec<&str>, &str); 4] = [
        (
            vec!["--format", "h5ad", "--out", &h5ad],
            "no finished finetune run with cell embeddings",
        ),
        (
            vec!["--format", "parquet", "--run", "7", "--out", &tables],
            "model run 7 is not a finished finetune run with cell embeddings",
        ),
        (
            vec!["--format", "parquet", "--macrogenes", "--out", &tables],
            "--macrogenes is for --format h5ad",
        ),
        (
            vec!["--format", "zarr", "--out", &zarr],
            "invalid value 'zarr'",
        ),
    ];
    for (args, needle) in cases {
        let args: Vec<&str> = ["export"].into_iter().chain(args).collect();
        let output = satlas(&atlas, &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            !output.status.success() && stderr.contains(needle),
            "{args:?}: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(&out).unwrap().collect();
        assert!(left.is_empty(), "{args:?} left {left:?}");
    }
}
