//! Gene embeddings from Parquet, read by DuckDB's `read_parquet` (every Parquet codec).
//!
//! The file needs two columns, one row per gene: `gene` (string) and `embedding` (list or
//! fixed-size list of float16, float32 or float64). Other columns are ignored. Rows are checked
//! here for what only Parquet can get wrong (missing columns, wrong types, null genes, null
//! embeddings, null values), each error naming the row (0-based) and gene; then the shared
//! validation of every embedding format applies (one dimension for all, finite values, no gene
//! twice).

use super::embeddings::{validate, GeneEmbeddings};
use super::ReadError;
use crate::atlas::parquet::sql_string;
use duckdb::arrow::array::{Array, AsArray, RecordBatch};
use duckdb::arrow::compute::cast;
use duckdb::arrow::datatypes::{DataType, Field, Float32Type, Schema};
use duckdb::Connection;
use std::path::Path;
use std::sync::Arc;

/// The column holding gene symbols.
pub const GENE_COLUMN: &str = "gene";
/// The column holding embeddings.
pub const EMBEDDING_COLUMN: &str = "embedding";

/// Reads a Parquet file of gene embeddings (columns [`GENE_COLUMN`], [`EMBEDDING_COLUMN`]), in
/// row order.
pub fn read_parquet_embeddings(path: &Path) -> Result<GeneEmbeddings, ReadError> {
    std::fs::File::open(path).map_err(|source| ReadError::Io {
        path: path.into(),
        source,
    })?;
    let unreadable = |e: duckdb::Error| {
        ReadError::malformed(
            path,
            0,
            format!("not a readable Parquet file ({e}); write it with pyarrow, pandas or DuckDB"),
        )
    };
    let conn = Connection::open_in_memory().map_err(unreadable)?;
    let file = format!("read_parquet({})", sql_string(&path.display().to_string()));
    let mut probe = conn
        .prepare(&format!("SELECT * FROM {file} LIMIT 0"))
        .map_err(unreadable)?;
    let schema = probe.query_arrow([]).map_err(unreadable)?.get_schema();
    column(path, &schema, GENE_COLUMN, is_text, "strings")?;
    column(
        path,
        &schema,
        EMBEDDING_COLUMN,
        is_float_list,
        "lists of float32 or float64",
    )?;
    let mut rows = conn
        .prepare(&format!(
            "SELECT \"{GENE_COLUMN}\", \"{EMBEDDING_COLUMN}\" FROM {file}"
        ))
        .map_err(unreadable)?;
    let mut out = GeneEmbeddings::new();
    for batch in rows.query_arrow([]).map_err(unreadable)? {
        append_rows(path, &batch, &mut out)?;
    }
    validate(path, &out)?;
    Ok(out)
}

/// Checks that column `name` exists and holds what `accepts`.
fn column(
    path: &Path,
    schema: &Schema,
    name: &str,
    accepts: fn(&DataType) -> bool,
    expected: &str,
) -> Result<(), ReadError> {
    let Ok(index) = schema.index_of(name) else {
        let present: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
        return Err(ReadError::malformed(
            path,
            0,
            format!(
                "no column {name:?} (columns: {}); gene embeddings in Parquet need a {GENE_COLUMN:?} \
                 column of strings and an {EMBEDDING_COLUMN:?} column of float lists",
                present.join(", ")
            ),
        ));
    };
    let found = schema.field(index).data_type();
    if !accepts(found) {
        return Err(ReadError::malformed(
            path,
            0,
            format!("column {name:?} holds {found}, expected {expected}"),
        ));
    }
    Ok(())
}

fn is_text(ty: &DataType) -> bool {
    match ty {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, values) => is_text(values),
        _ => false,
    }
}

fn is_float_list(ty: &DataType) -> bool {
    match ty {
        DataType::List(item) | DataType::LargeList(item) | DataType::FixedSizeList(item, _) => {
            matches!(
                item.data_type(),
                DataType::Float16 | DataType::Float32 | DataType::Float64
            )
        }
        _ => false,
    }
}

/// Appends the `(gene, embedding)` rows of one batch, refusing nulls.
fn append_rows(
    path: &Path,
    batch: &RecordBatch,
    out: &mut GeneEmbeddings,
) -> Result<(), ReadError> {
    let convert = |name: &str, to: DataType| {
        let column = batch.column_by_name(name).expect("selected column");
        cast(column, &to)
            .map_err(|e| ReadError::malformed(path, 0, format!("column {name:?}: {e}")))
    };
    let genes = convert(GENE_COLUMN, DataType::Utf8)?;
    let genes = genes.as_string::<i32>();
    let float_list = DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true)));
    let lists = convert(EMBEDDING_COLUMN, float_list)?;
    let lists = lists.as_list::<i32>();
    for i in 0..batch.num_rows() {
        let row = out.len();
        let bad = |what: String| ReadError::malformed(path, 0, format!("row {row}: {what}"));
        if genes.is_null(i) {
            return Err(bad("the gene is null; every row needs a gene symbol".into()));
        }
        let gene = genes.value(i);
        if lists.is_null(i) {
            return Err(bad(format!("gene {gene:?} has a null embedding")));
        }
        let values = lists.value(i);
        let values = values.as_primitive::<Float32Type>();
        if let Some(j) = (0..values.len()).find(|&j| values.is_null(j)) {
            return Err(bad(format!(
                "gene {gene:?}: value {j} of the embedding is null"
            )));
        }
        out.push((gene.to_string(), values.values().to_vec()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::io::embeddings::read_npy_embeddings;
    use crate::io::embeddings::tests::fixture;

    /// scripts/reference/embeddings_reference.py writes the same 4 x 6 matrix as .npy and as
    /// Parquet (list<float32>, and fixed_size_list<float64> with a large_string gene column).
    #[test]
    fn reads_list_and_fixed_size_list_columns_like_the_npy() {
        let npy = read_npy_embeddings(&fixture("genes.npy"), &fixture("genes.txt")).unwrap();
        for name in ["genes.parquet", "genes_f64_fixed.parquet"] {
            let parquet = read_parquet_embeddings(&fixture(name)).unwrap();
            assert_eq!(parquet, npy, "{name}");
        }
    }

    #[test]
    fn rejects_bad_files_naming_row_gene_and_problem() {
        let cases: [(&str, &[&str]); 9] = [
            (
                "bad_no_embedding.parquet",
                &["no column \"embedding\"", "gene, vector"],
            ),
            (
                "bad_strings.parquet",
                &["column \"embedding\"", "Utf8", "float32"],
            ),
            ("bad_null_gene.parquet", &["row 1", "gene is null"]),
            (
                "bad_null_embedding.parquet",
                &["row 2", "\"SST\"", "null embedding"],
            ),
            (
                "bad_null_value.parquet",
                &["row 1", "\"GCG\"", "value 3", "null"],
            ),
            (
                "bad_ragged.parquet",
                &["row 3", "\"PPY\"", "dimension 5", "has 6"],
            ),
            ("bad_nan.parquet", &["row 1", "\"GCG\"", "value 2 is NaN"]),
            ("bad_inf.parquet", &["row 0", "\"INS\"", "value 5 is inf"]),
            (
                "bad_duplicate.parquet",
                &["duplicate gene", "\"ins\"", "position 0", "at 2"],
            ),
        ];
        for (name, needles) in cases {
            let e = read_parquet_embeddings(&fixture(name))
                .unwrap_err()
                .to_string();
            assert!(e.contains(name), "{e}");
            for needle in needles {
                assert!(e.contains(needle), "{name}: {needle:?} not in {e}");
            }
        }
        let e = read_parquet_embeddings(&fixture("genes.npy"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a readable Parquet file"), "{e}");
    }
}
