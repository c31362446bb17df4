//! Precomputed gene embeddings: SATURN's `torch.save`d dicts, `.npy` matrices and Parquet.
//!
//! - `.pt` / `.torch` / `.pth`: what SATURN loads with `torch.load` (`SATURN.md` section 1): a
//!   Python dict `{gene symbol: 1-D float tensor}` written by `torch.save` (the zip format of
//!   PyTorch 1.6 and later). libtorch's own unpickler reads it (`tch::Tensor::loadz_multi`); no
//!   Python involved. Entries come back sorted by gene symbol.
//! - `.npy`: a 2-D float16/float32/float64 matrix, genes x dimensions (C or Fortran order), with a text
//!   file naming one gene per line in row order.
//!
//! - `.parquet`: columns `gene` and `embedding` (list of floats), read by [`super::parquet`].
//!
//! Every file is validated the same way ([`validate`]): at least one gene, one dimension for all,
//! finite values, and no gene twice (compared case-insensitively, as genes are matched
//! case-insensitively against count matrices). Errors name the gene and its row (0-based: the
//! matrix row, the Parquet row, or the entry of a `.pt` dict in gene order).

use super::ReadError;
use std::collections::HashMap;
use std::path::Path;
use tch::{Kind, Tensor};

/// Gene embeddings as read: `(gene symbol, embedding)`.
pub type GeneEmbeddings = Vec<(String, Vec<f32>)>;

/// Reads a gene-embedding file, by extension: `.pt`/`.torch`/`.pth` (SATURN's dict), `.parquet`
/// (`gene`, `embedding` columns), or `.npy` together with `gene_list` (one symbol per line, in row
/// order).
pub fn read_gene_embeddings(
    path: &Path,
    gene_list: Option<&Path>,
) -> Result<GeneEmbeddings, ReadError> {
    let ext = path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    match (ext.as_deref(), gene_list) {
        (Some("npy"), Some(genes)) => read_npy_embeddings(path, genes),
        (Some("npy"), None) => Err(malformed(
            path,
            0,
            "a .npy matrix has no gene names: give the gene list file (one symbol per line, in row \
             order) too"
                .into(),
        )),
        (Some("pt" | "torch" | "pth"), _) => read_torch_embeddings(path),
        (Some("parquet"), _) => super::parquet::read_parquet_embeddings(path),
        _ => Err(malformed(
            path,
            0,
            "unknown gene-embedding format: expected .pt/.torch (torch.save'd dict, as SATURN), \
             .parquet (gene, embedding columns) or .npy with a gene list"
                .into(),
        )),
    }
}

/// Reads SATURN's `torch.save({gene symbol: 1-D float tensor})` file; sorted by gene.
pub fn read_torch_embeddings(path: &Path) -> Result<GeneEmbeddings, ReadError> {
    std::fs::metadata(path).map_err(|source| ReadError::Io {
        path: path.into(),
        source,
    })?;
    let tensors = Tensor::loadz_multi(path).map_err(|e| {
        malformed(
            path,
            0,
            format!(
                "not a torch.save'd dict of tensors ({e}); SATURN embedding files are \
                 torch.save({{gene symbol: 1-D tensor}}) in the zip format of PyTorch >= 1.6"
            ),
        )
    })?;
    let mut out = Vec::with_capacity(tensors.len());
    for (gene, t) in tensors {
        let float = matches!(
            t.kind(),
            Kind::Float | Kind::Double | Kind::Half | Kind::BFloat16
        );
        if t.dim() != 1 || !float {
            return Err(malformed(
                path,
                0,
                format!(
                    "gene {gene:?}: expected a 1-D float tensor, found {:?} of shape {:?}",
                    t.kind(),
                    t.size()
                ),
            ));
        }
        let values = Vec::<f32>::try_from(t.to_kind(Kind::Float))
            .map_err(|e| malformed(path, 0, format!("gene {gene:?}: {e}")))?;
        out.push((gene, values));
    }
    validate(path, &out)?;
    Ok(out)
}

/// Reads a genes x dimensions `.npy` matrix (float16, float32 or float64) and its gene list.
pub fn read_npy_embeddings(npy: &Path, gene_list: &Path) -> Result<GeneEmbeddings, ReadError> {
    let text = std::fs::read_to_string(gene_list).map_err(|source| ReadError::Io {
        path: gene_list.into(),
        source,
    })?;
    let mut genes: Vec<&str> = text.lines().map(str::trim).collect();
    while genes.last() == Some(&"") {
        genes.pop();
    }
    if let Some(i) = genes.iter().position(|g| g.is_empty()) {
        return Err(malformed(gene_list, i + 1, "empty gene symbol".into()));
    }
    let (rows, cols, values) = read_npy_matrix(npy)?;
    if rows != genes.len() {
        return Err(malformed(
            npy,
            0,
            format!(
                "the matrix has {rows} rows but {} names {} genes; they must match row for row",
                gene_list.display(),
                genes.len()
            ),
        ));
    }
    let out: GeneEmbeddings = genes
        .into_iter()
        .zip(values.chunks_exact(cols.max(1)))
        .map(|(g, row)| (g.to_string(), row.to_vec()))
        .collect();
    validate(npy, &out)?;
    Ok(out)
}

/// `(rows, cols, row-major values)` of a 2-D float `.npy` file (format versions 1-3).
fn read_npy_matrix(path: &Path) -> Result<(usize, usize, Vec<f32>), ReadError> {
    let bytes = std::fs::read(path).map_err(|source| ReadError::Io {
        path: path.into(),
        source,
    })?;
    let bad = |message: String| malformed(path, 0, message);
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file (no \\x93NUMPY magic)".into()));
    }
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (
            u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize,
            12,
        ),
        v => return Err(bad(format!("unsupported .npy format version {v}"))),
    };
    let header = bytes
        .get(start..start + header_len)
        .and_then(|h| std::str::from_utf8(h).ok())
        .ok_or_else(|| bad("truncated .npy header".into()))?;
    let field = |key: &str| {
        let at = header.find(&format!("'{key}':"))? + key.len() + 3;
        Some(header[at..].trim_start())
    };
    let descr = field("descr")
        .and_then(|d| d.strip_prefix('\'')?.split('\'').next())
        .ok_or_else(|| bad(format!("no descr in the .npy header {header:?}")))?;
    let fortran = field("fortran_order").is_some_and(|f| f.starts_with("True"));
    let shape: Vec<usize> = field("shape")
        .and_then(|s| s.strip_prefix('(')?.split(')').next())
        .and_then(|s| {
            s.split(',')
                .map(str::trim)
                .filter(|d| !d.is_empty())
                .map(|d| d.parse().ok())
                .collect::<Option<Vec<usize>>>()
        })
        .ok_or_else(|| bad(format!("no shape in the .npy header {header:?}")))?;
    let [rows, cols] = shape[..] else {
        return Err(bad(format!(
            "expected a 2-D genes x dimensions matrix, found shape {shape:?}"
        )));
    };
    let big_endian = descr.starts_with('>');
    let width = match descr.trim_start_matches(['<', '>', '=']) {
        "f2" => 2,
        "f4" => 4,
        "f8" => 8,
        _ => {
            return Err(bad(format!(
                "dtype {descr:?} is not supported: save the matrix as float16, float32 or float64"
            )))
        }
    };
    let data = &bytes[start + header_len..];
    if data.len() != rows * cols * width {
        return Err(bad(format!(
            "{} data bytes for a {rows} x {cols} matrix of {width}-byte floats (truncated file?)",
            data.len()
        )));
    }
    let values: Vec<f32> = data
        .chunks_exact(width)
        .map(|b| {
            let mut raw = [0u8; 8];
            raw[..width].copy_from_slice(b);
            if big_endian {
                raw[..width].reverse();
            }
            match width {
                2 => f16_to_f32(u16::from_le_bytes([raw[0], raw[1]])),
                4 => f32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]),
                _ => f64::from_le_bytes(raw) as f32,
            }
        })
        .collect();
    let values = if fortran {
        // Column-major on disk: element (r, c) is at c * rows + r.
        (0..rows * cols)
            .map(|i| values[(i % cols) * rows + i / cols])
            .collect()
    } else {
        values
    };
    Ok((rows, cols, values))
}

/// The IEEE 754 half-precision value with these bits, as f32 (exact: every f16 is an f32).
fn f16_to_f32(bits: u16) -> f32 {
    let sign = u32::from(bits >> 15) << 31;
    let exponent = u32::from((bits >> 10) & 0x1f);
    let mantissa = u32::from(bits & 0x3ff);
    let magnitude = match exponent {
        // Zero and subnormals: mantissa x 2^-24, exact in f32.
        0 => (mantissa as f32 * f32::from_bits(0x3380_0000)).to_bits(),
        // Infinities and NaNs (payload kept).
        0x1f => 0x7f80_0000 | (mantissa << 13),
        // Normal numbers: rebias the exponent from 15 to 127.
        _ => ((exponent + 127 - 15) << 23) | (mantissa << 13),
    };
    f32::from_bits(sign | magnitude)
}

/// At least one gene, one dimension (> 0) for all, finite values, no gene twice (case-insensitive).
pub(super) fn validate(path: &Path, genes: &GeneEmbeddings) -> Result<(), ReadError> {
    let Some((first_gene, first)) = genes.first() else {
        return Err(ReadError::Empty {
            path: path.into(),
            what: "no gene embedding".into(),
        });
    };
    if first.is_empty() {
        return Err(malformed(
            path,
            0,
            format!("gene {first_gene:?} has an empty embedding"),
        ));
    }
    let mut seen: HashMap<String, usize> = HashMap::with_capacity(genes.len());
    for (i, (gene, values)) in genes.iter().enumerate() {
        if values.len() != first.len() {
            return Err(malformed(
                path,
                0,
                format!(
                    "row {i}: gene {gene:?} has an embedding of dimension {}, but {first_gene:?} \
                     (row 0) has {}; all genes need one dimension",
                    values.len(),
                    first.len()
                ),
            ));
        }
        if let Some(j) = values.iter().position(|v| !v.is_finite()) {
            return Err(malformed(
                path,
                0,
                format!(
                    "row {i}: gene {gene:?}: value {j} is {}; embeddings must be finite",
                    values[j]
                ),
            ));
        }
        if let Some(&first) = seen.get(&gene.to_lowercase()) {
            return Err(ReadError::Duplicate {
                path: path.into(),
                kind: "gene (case-insensitive)",
                name: gene.clone(),
                first,
                second: i,
            });
        }
        seen.insert(gene.to_lowercase(), i);
    }
    Ok(())
}

fn malformed(path: &Path, line: usize, message: String) -> ReadError {
    ReadError::Malformed {
        path: path.into(),
        line,
        message,
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::path::PathBuf;

    /// A file of `fixtures/embeddings`.
    pub(crate) fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("fixtures/embeddings")
            .join(name)
    }

    /// scripts/reference/embeddings_reference.py: gene i, dimension j holds i + j / 8, genes
    /// INS, GCG, SST, PPY in rows 0..4.
    fn expected(gene: &str) -> Vec<f32> {
        let i = ["INS", "GCG", "SST", "PPY"]
            .iter()
            .position(|g| *g == gene)
            .unwrap();
        (0..6).map(|j| i as f32 + j as f32 / 8.0).collect()
    }

    #[test]
    fn reads_saturn_torch_dicts() {
        for name in ["saturn_genes.torch", "saturn_f64.pt"] {
            let genes = read_gene_embeddings(&fixture(name), None).unwrap();
            let names: Vec<&str> = genes.iter().map(|(g, _)| g.as_str()).collect();
            assert_eq!(names, ["GCG", "INS", "PPY", "SST"], "{name}");
            for (g, v) in &genes {
                assert_eq!(v, &expected(g), "{name} {g}");
            }
        }
    }

    #[test]
    fn reads_npy_with_gene_list() {
        for name in ["genes.npy", "genes_f64.npy"] {
            let genes = read_gene_embeddings(&fixture(name), Some(&fixture("genes.txt"))).unwrap();
            let names: Vec<&str> = genes.iter().map(|(g, _)| g.as_str()).collect();
            assert_eq!(names, ["INS", "GCG", "SST", "PPY"], "{name}");
            for (g, v) in &genes {
                assert_eq!(v, &expected(g), "{name} {g}");
            }
        }
    }

    #[test]
    fn converts_float16_exactly() {
        let cases: [(u16, f32); 11] = [
            (0x3c00, 1.0),
            (0xc000, -2.0),
            (0x3555, 0.333_251_95),
            (0x7bff, 65504.0),
            (0x0400, 1.0 / 16_384.0),        // smallest normal, 2^-14
            (0x0001, 1.0 / 16_777_216.0),    // smallest subnormal, 2^-24
            (0x03ff, 1023.0 / 16_777_216.0), // largest subnormal
            (0x0000, 0.0),
            (0x8000, -0.0),
            (0x7c00, f32::INFINITY),
            (0xfc00, f32::NEG_INFINITY),
        ];
        for (bits, value) in cases {
            let got = f16_to_f32(bits);
            assert_eq!(
                got.to_bits(),
                value.to_bits(),
                "{bits:#06x}: {got} != {value}"
            );
        }
        assert!(f16_to_f32(0x7e00).is_nan());
    }

    #[test]
    fn reads_float16_npy_in_both_byte_orders() {
        // 2 genes x 3 dimensions: 1.0, -2.0, 0.333251953125 / 65504, 2^-24, -0.0.
        let bits: [u16; 6] = [0x3c00, 0xc000, 0x3555, 0x7bff, 0x0001, 0x8000];
        let expected = [
            vec![1.0, -2.0, 0.333_251_95],
            vec![65504.0, 1.0 / 16_777_216.0, -0.0],
        ];
        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("genes.txt");
        std::fs::write(&list, "INS\nGCG\n").unwrap();
        for (descr, big_endian) in [("<f2", false), (">f2", true)] {
            let header =
                format!("{{'descr': '{descr}', 'fortran_order': False, 'shape': (2, 3), }}");
            let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
            let padded = format!("{header:<117}\n"); // 10 + 118 bytes: 64-byte aligned
            bytes.extend((padded.len() as u16).to_le_bytes());
            bytes.extend(padded.as_bytes());
            for b in bits {
                bytes.extend(if big_endian {
                    b.to_be_bytes()
                } else {
                    b.to_le_bytes()
                });
            }
            let npy = dir.path().join("half.npy");
            std::fs::write(&npy, bytes).unwrap();
            let genes = read_gene_embeddings(&npy, Some(&list)).unwrap();
            assert_eq!(
                genes[0],
                ("INS".to_string(), expected[0].clone()),
                "{descr}"
            );
            assert_eq!(genes[1].1.len(), 3);
            for (got, want) in genes[1].1.iter().zip(&expected[1]) {
                assert_eq!(got.to_bits(), f32::to_bits(*want), "{descr}");
            }
        }
    }

    #[test]
    fn rejects_bad_files_naming_path_and_gene() {
        let err = |name: &str| {
            read_gene_embeddings(&fixture(name), None)
                .unwrap_err()
                .to_string()
        };
        let e = err("bad_dim.pt");
        assert!(
            e.contains("bad_dim.pt") && e.contains("\"SST\"") && e.contains("dimension 5"),
            "{e}"
        );
        let e = err("bad_nan.pt");
        assert!(
            e.contains("bad_nan.pt") && e.contains("\"GCG\"") && e.contains("NaN"),
            "{e}"
        );
        let e = err("empty.pt");
        assert!(e.contains("empty.pt") && e.contains("empty"), "{e}");
        let e = err("genes.npy");
        assert!(e.contains("gene list"), "{e}");

        let dir = tempfile::tempdir().unwrap();
        let list = dir.path().join("genes.txt");
        std::fs::write(&list, "INS\nGCG\nins\nPPY\n").unwrap();
        let e = read_gene_embeddings(&fixture("genes.npy"), Some(&list)).unwrap_err();
        assert!(
            matches!(&e, ReadError::Duplicate { name, first: 0, second: 2, .. } if name == "ins"),
            "{e}"
        );
        std::fs::write(&list, "INS\nGCG\n").unwrap();
        let e = read_gene_embeddings(&fixture("genes.npy"), Some(&list)).unwrap_err();
        assert!(e.to_string().contains("4 rows"), "{e}");
    }
}
