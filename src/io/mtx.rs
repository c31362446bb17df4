//! 10x Genomics MatrixMarket directory reader.
//!
//! A directory holds `matrix.mtx[.gz]` (genes x cells, `%%MatrixMarket matrix coordinate
//! integer|real general`), `features.tsv[.gz]` (Cell Ranger >= 3) or `genes.tsv[.gz]` (older),
//! and `barcodes.tsv[.gz]`. Gene names are the second feature column (the symbol) when present,
//! else the first. Real-valued entries must still be non-negative integers. Cell annotations come
//! from [`ReadOptions::obs_file`]; without one the dataset has no obs columns.

use super::sparse::CountsBuilder;
use super::text::{Lines, ObsTable};
use super::{DatasetFile, ReadError, ReadOptions};
use std::path::{Path, PathBuf};

/// Entries reserved up front at most: the size line's count is only a claim until the entries
/// are read (a corrupt count must not allocate terabytes).
const MAX_RESERVED_ENTRIES: usize = 1 << 24;

const LAYOUT_HINT: &str = "a 10x directory holds matrix.mtx[.gz], features.tsv[.gz] (or \
                           genes.tsv[.gz]) and barcodes.tsv[.gz]";

/// Reads a 10x directory, or a MatrixMarket file with the features and barcodes beside it.
pub fn read_10x(path: &Path, options: &ReadOptions) -> Result<DatasetFile, ReadError> {
    let (dir, matrix) = if path.is_dir() {
        (
            path,
            find(path, &["matrix.mtx.gz", "matrix.mtx"], "matrix.mtx[.gz]")?,
        )
    } else if path.is_file() {
        (path.parent().unwrap_or(Path::new(".")), path.to_path_buf())
    } else {
        return Err(ReadError::Io {
            path: path.to_path_buf(),
            source: std::io::ErrorKind::NotFound.into(),
        });
    };
    let features = find(
        dir,
        &[
            "features.tsv.gz",
            "features.tsv",
            "genes.tsv.gz",
            "genes.tsv",
        ],
        "features.tsv[.gz] or genes.tsv[.gz]",
    )?;
    let barcodes = find(
        dir,
        &["barcodes.tsv.gz", "barcodes.tsv"],
        "barcodes.tsv[.gz]",
    )?;
    let genes = read_names(&features, 1)?;
    let barcodes = read_names(&barcodes, 0)?;
    let mut builder = CountsBuilder::new(&matrix, barcodes, genes)?;
    read_matrix(&matrix, &mut builder)?;
    let counts = builder.finish();
    let mut obs = Vec::new();
    if let Some(obs_file) = &options.obs_file {
        ObsTable::read(obs_file)?.join(&counts.barcodes, &mut obs)?;
    }
    Ok(DatasetFile {
        counts,
        obs,
        format: "mtx",
    })
}

fn find(dir: &Path, names: &[&str], expected: &str) -> Result<PathBuf, ReadError> {
    names
        .iter()
        .map(|n| dir.join(n))
        .find(|p| p.is_file())
        .ok_or_else(|| ReadError::MissingFile {
            path: dir.to_path_buf(),
            expected: expected.to_string(),
            hint: LAYOUT_HINT,
        })
}

/// Column `column` of a tab-separated file (falling back to the first column on shorter lines).
fn read_names(path: &Path, column: usize) -> Result<Vec<String>, ReadError> {
    let mut lines = Lines::open(path)?;
    let mut buf = String::new();
    let mut names = Vec::new();
    while lines.next_into(&mut buf)? {
        if buf.is_empty() {
            continue;
        }
        let fields: Vec<&str> = buf.split('\t').collect();
        let name = fields.get(column).unwrap_or(&fields[0]).trim();
        if name.is_empty() {
            return Err(lines.malformed("empty name; every line needs an identifier"));
        }
        names.push(name.to_string());
    }
    if names.is_empty() {
        return Err(ReadError::Empty {
            path: path.to_path_buf(),
            what: "no names (one per line)".into(),
        });
    }
    Ok(names)
}

/// Reads the coordinate entries of a genes x cells MatrixMarket file into `builder`.
fn read_matrix(path: &Path, builder: &mut CountsBuilder) -> Result<(), ReadError> {
    let mut lines = Lines::open(path)?;
    let mut buf = String::new();
    if !lines.next_into(&mut buf)? {
        return Err(ReadError::Empty {
            path: path.to_path_buf(),
            what: "a MatrixMarket header".into(),
        });
    }
    let banner: Vec<String> = buf
        .split_whitespace()
        .map(str::to_ascii_lowercase)
        .collect();
    let supported = banner.len() == 5
        && banner[0] == "%%matrixmarket"
        && banner[1] == "matrix"
        && banner[2] == "coordinate"
        && (banner[3] == "integer" || banner[3] == "real")
        && banner[4] == "general";
    if !supported {
        return Err(lines.malformed(format!(
            "header {buf:?} is not `%%MatrixMarket matrix coordinate integer|real general`; \
             write the matrix with scipy.io.mmwrite or Cell Ranger"
        )));
    }
    let size = loop {
        if !lines.next_into(&mut buf)? {
            return Err(lines.malformed("no size line (`genes cells entries`) after the header"));
        }
        if !buf.starts_with('%') && !buf.trim().is_empty() {
            break parse_fields::<3>(&buf).ok_or_else(|| {
                lines.malformed(format!("size line {buf:?} is not `genes cells entries`"))
            })?;
        }
    };
    let [n_genes, n_cells, n_entries] = size.map(|v| v as usize);
    if n_genes != builder.n_genes() || n_cells != builder.n_cells() {
        return Err(lines.malformed(format!(
            "the matrix is {n_genes} genes x {n_cells} cells but the directory lists {} features \
             and {} barcodes; the three files must come from the same run",
            builder.n_genes(),
            builder.n_cells()
        )));
    }
    builder.reserve(n_entries.min(MAX_RESERVED_ENTRIES));
    let mut seen = 0usize;
    while lines.next_into(&mut buf)? {
        if buf.trim().is_empty() || buf.starts_with('%') {
            continue;
        }
        seen += 1;
        if seen > n_entries {
            return Err(lines.malformed(format!(
                "more entries than the {n_entries} the size line declares"
            )));
        }
        let mut fields = buf.split_whitespace();
        let (Some(i), Some(j), Some(v), None) =
            (fields.next(), fields.next(), fields.next(), fields.next())
        else {
            return Err(lines.malformed(format!("entry {buf:?} is not `gene cell value`")));
        };
        let (Ok(gene), Ok(cell), Ok(value)) =
            (i.parse::<u64>(), j.parse::<u64>(), v.parse::<f64>())
        else {
            return Err(lines.malformed(format!("entry {buf:?} is not `gene cell value`")));
        };
        if gene == 0 || gene as usize > n_genes || cell == 0 || cell as usize > n_cells {
            return Err(lines.malformed(format!(
                "entry ({gene}, {cell}) is outside the 1-based {n_genes} x {n_cells} matrix"
            )));
        }
        builder.push(cell as usize - 1, gene as usize - 1, value)?;
    }
    if seen < n_entries {
        return Err(lines.malformed(format!(
            "the size line declares {n_entries} entries but the file ends after {seen}: the file \
             is truncated; re-download or re-export it"
        )));
    }
    Ok(())
}

fn parse_fields<const N: usize>(line: &str) -> Option<[u64; N]> {
    let mut out = [0u64; N];
    let mut fields = line.split_whitespace();
    for slot in &mut out {
        *slot = fields.next()?.parse().ok()?;
    }
    fields.next().is_none().then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MATRIX: &str = "%%MatrixMarket matrix coordinate integer general\n%metadata\n3 2 4\n\
                          2 1 5\n1 2 1\n3 2 2\n1 1 7\n";

    fn dir_with(matrix: &str, features: &str, barcodes: &str) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("matrix.mtx"), matrix).unwrap();
        std::fs::write(dir.path().join("features.tsv"), features).unwrap();
        std::fs::write(dir.path().join("barcodes.tsv"), barcodes).unwrap();
        dir
    }

    const FEATURES: &str = "ENSG1\tINS\tGene Expression\nENSG2\tGCG\tGene Expression\nENSG3\tSST\n";

    fn read(dir: &tempfile::TempDir) -> Result<DatasetFile, ReadError> {
        read_10x(dir.path(), &ReadOptions::default())
    }

    #[test]
    fn reads_genes_by_cells_into_cells_by_genes() {
        let dir = dir_with(MATRIX, FEATURES, "AAA-1\nCCC-1\n");
        let d = read(&dir).unwrap();
        assert_eq!(d.format, "mtx");
        let m = &d.counts;
        assert_eq!(m.genes, ["INS", "GCG", "SST"]);
        assert_eq!(m.barcodes, ["AAA-1", "CCC-1"]);
        assert_eq!(m.row(0), (&[0u32, 1][..], &[7u32, 5][..]));
        assert_eq!(m.row(1), (&[0u32, 2][..], &[1u32, 2][..]));
        // The matrix file itself is accepted too, and genes.tsv with one column.
        std::fs::remove_file(dir.path().join("features.tsv")).unwrap();
        std::fs::write(dir.path().join("genes.tsv"), "A\nB\nC\n").unwrap();
        let d = read_10x(&dir.path().join("matrix.mtx"), &ReadOptions::default()).unwrap();
        assert_eq!(d.counts.genes, ["A", "B", "C"]);
    }

    #[test]
    fn real_values_must_be_integers() {
        let real = MATRIX
            .replace("integer", "real")
            .replace("3 2 2", "3 2 2.0");
        assert!(read(&dir_with(&real, FEATURES, "A\nB\n")).is_ok());
        let frac = real.replace("3 2 2.0", "3 2 0.5");
        let err = read(&dir_with(&frac, FEATURES, "A\nB\n")).unwrap_err();
        assert!(
            matches!(&err, ReadError::NonIntegerCounts { cell, gene, .. } if cell == "B" && gene == "SST"),
            "{err}"
        );
    }

    #[test]
    fn faults_are_named() {
        let cases = [
            (
                MATRIX.replace("coordinate", "array"),
                "is not `%%MatrixMarket",
            ),
            (MATRIX.replace("3 2 4", "3 3 4"), "same run"),
            (MATRIX.replace("3 2 4", "3 2 5"), "truncated"),
            (MATRIX.replace("3 2 4", "3 2 3"), "more entries"),
            (MATRIX.replace("3 2 2", "4 2 2"), "outside"),
            (MATRIX.replace("3 2 2", "3 2"), "not `gene cell value`"),
        ];
        for (matrix, needle) in cases {
            let err = read(&dir_with(&matrix, FEATURES, "A\nB\n")).unwrap_err();
            assert!(matches!(err, ReadError::Malformed { .. }), "{err}");
            assert!(err.to_string().contains(needle), "{needle}: {err}");
        }
        let err = read(&dir_with(MATRIX, FEATURES, "A\nA\n")).unwrap_err();
        assert!(
            matches!(err, ReadError::Duplicate { kind: "cell", .. }),
            "{err}"
        );
    }

    #[test]
    fn missing_files_and_obs_file_are_handled() {
        let dir = dir_with(MATRIX, FEATURES, "A\nB\n");
        std::fs::remove_file(dir.path().join("barcodes.tsv")).unwrap();
        let err = read(&dir).unwrap_err();
        assert!(
            matches!(&err, ReadError::MissingFile { expected, .. } if expected.contains("barcodes")),
            "{err}"
        );

        let dir = dir_with(MATRIX, FEATURES, "A\nB\n");
        let obs = dir.path().join("obs.csv");
        std::fs::write(&obs, "barcode,cell_type1\nB,beta\nA,alpha\n").unwrap();
        let options = ReadOptions {
            obs_file: Some(obs.clone()),
            ..ReadOptions::default()
        };
        let d = read_10x(dir.path(), &options).unwrap();
        let col = d.obs_column("cell_type1").unwrap();
        assert_eq!(col.values, [Some("alpha".into()), Some("beta".into())]);
        std::fs::write(&obs, "barcode,cell_type1\nB,beta\n").unwrap();
        let err = read_10x(dir.path(), &options).unwrap_err();
        assert!(
            matches!(&err, ReadError::MissingCell { barcode, .. } if barcode == "A"),
            "{err}"
        );
    }
}
