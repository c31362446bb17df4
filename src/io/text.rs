//! Line-oriented text input shared by the FASTA and 10x readers and the obs-table join.
//!
//! Owns three things: opening a text file with transparent gzip (detected by the magic bytes
//! `1f 8b`, whatever the extension), reading it line by line with 1-based line numbers (a UTF-8
//! byte-order mark is skipped) and I/O failures (truncated gzip, invalid UTF-8, UTF-16 text)
//! turned into [`ReadError`]s that name the line, and the obs table (CSV or TSV with a header,
//! first column = barcode) joined onto a matrix's cells.

use super::{ObsColumn, ReadError};
use flate2::bufread::MultiGzDecoder;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, ErrorKind};
use std::path::{Path, PathBuf};

/// The two bytes every gzip member starts with.
const GZIP_MAGIC: [u8; 2] = [0x1f, 0x8b];

/// The byte-order marks of UTF-16 (little- and big-endian) text.
const UTF16_BOMS: [[u8; 2]; 2] = [[0xff, 0xfe], [0xfe, 0xff]];

/// The byte-order mark some editors put at the start of UTF-8 text.
const UTF8_BOM: char = '\u{feff}';

/// A text file read line by line, gunzipped on the fly when it is gzip.
pub(crate) struct Lines {
    path: PathBuf,
    reader: Box<dyn BufRead>,
    gzip: bool,
    utf16: bool,
    line: usize,
}

impl Lines {
    /// Opens `path`, detecting gzip by its magic bytes.
    pub(crate) fn open(path: &Path) -> Result<Self, ReadError> {
        let io_error = |source| ReadError::Io {
            path: path.to_path_buf(),
            source,
        };
        let mut file = BufReader::with_capacity(1 << 16, File::open(path).map_err(io_error)?);
        let head = file.fill_buf().map_err(io_error)?;
        let gzip = head.starts_with(&GZIP_MAGIC);
        let utf16 = UTF16_BOMS.iter().any(|bom| head.starts_with(bom));
        let reader: Box<dyn BufRead> = if gzip {
            Box::new(BufReader::with_capacity(1 << 16, MultiGzDecoder::new(file)))
        } else {
            Box::new(file)
        };
        Ok(Lines {
            path: path.to_path_buf(),
            reader,
            gzip,
            utf16,
            line: 0,
        })
    }

    /// The file being read.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// 1-based number of the line last read (0 before the first).
    pub(crate) fn line(&self) -> usize {
        self.line
    }

    /// Reads the next line into `buf` without its line ending; `false` at end of file.
    pub(crate) fn next_into(&mut self, buf: &mut String) -> Result<bool, ReadError> {
        buf.clear();
        match self.reader.read_line(buf) {
            Ok(0) => Ok(false),
            Ok(_) => {
                self.line += 1;
                let trimmed = buf.trim_end_matches(['\n', '\r']).len();
                buf.truncate(trimmed);
                if self.line == 1 && buf.starts_with(UTF8_BOM) {
                    buf.drain(..UTF8_BOM.len_utf8());
                }
                Ok(true)
            }
            Err(e) => Err(self.read_failure(&e)),
        }
    }

    /// A [`ReadError::Malformed`] at the line last read.
    pub(crate) fn malformed(&self, message: impl Into<String>) -> ReadError {
        ReadError::malformed(&self.path, self.line, message)
    }

    fn read_failure(&self, e: &std::io::Error) -> ReadError {
        let line = self.line + 1;
        let message = match (e.kind(), self.gzip) {
            (ErrorKind::InvalidData, false) if self.utf16 => {
                "the file is UTF-16 text (it starts with a UTF-16 byte-order mark); convert it to \
                 UTF-8, e.g. `iconv -f UTF-16 -t UTF-8`"
                    .to_string()
            }
            (ErrorKind::InvalidData, false) => {
                "the file is not UTF-8 text; convert it to UTF-8 (or gzip it intact)".to_string()
            }
            (_, true) => format!(
                "the gzip stream is truncated or corrupt ({e}); re-download or re-compress the file \
                 (`gzip -t` checks it)"
            ),
            (_, false) => format!("read failed: {e}"),
        };
        ReadError::malformed(&self.path, line, message)
    }
}

/// Splits one delimited line into fields. With `,` as delimiter, fields may be double-quoted
/// (RFC 4180: `""` inside quotes is one quote); tab-separated fields are taken verbatim.
pub(crate) fn split_fields(line: &str, delimiter: char) -> Vec<String> {
    if delimiter != ',' || !line.contains('"') {
        return line.split(delimiter).map(str::to_string).collect();
    }
    let mut fields = Vec::new();
    let mut field = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match (c, quoted) {
            ('"', true) if chars.peek() == Some(&'"') => {
                field.push('"');
                chars.next();
            }
            ('"', _) => quoted = !quoted,
            (',', false) => fields.push(std::mem::take(&mut field)),
            _ => field.push(c),
        }
    }
    fields.push(field);
    fields
}

/// An obs table: per-barcode annotation columns read from a CSV or TSV file with a header.
pub(crate) struct ObsTable {
    path: PathBuf,
    /// Column names after the barcode column.
    columns: Vec<String>,
    /// Row of every barcode.
    rows: HashMap<String, usize>,
    /// `values[row][column]`; empty fields are `None`.
    values: Vec<Vec<Option<String>>>,
}

impl ObsTable {
    /// Reads the table. The delimiter is a tab for `.tsv`/`.txt` (optionally `.gz`), a comma
    /// for `.csv`, and otherwise whichever of the two the header line holds.
    pub(crate) fn read(path: &Path) -> Result<Self, ReadError> {
        let mut lines = Lines::open(path)?;
        let mut buf = String::new();
        if !lines.next_into(&mut buf)? {
            return Err(ReadError::Empty {
                path: path.to_path_buf(),
                what: "a header line (barcode column first, then annotation columns)".into(),
            });
        }
        let delimiter = delimiter_for(path, &buf);
        let header = split_fields(&buf, delimiter);
        let columns = header[1..].to_vec();
        let mut rows = HashMap::new();
        let mut values = Vec::new();
        while lines.next_into(&mut buf)? {
            if buf.trim().is_empty() {
                continue;
            }
            let mut fields = split_fields(&buf, delimiter);
            if fields.len() != header.len() {
                return Err(lines.malformed(format!(
                    "{} fields where the header has {}; every row needs a barcode and one value \
                     per column",
                    fields.len(),
                    header.len()
                )));
            }
            let barcode = fields.remove(0);
            let row = values.len();
            if let Some(first) = rows.insert(barcode.clone(), row) {
                return Err(ReadError::Duplicate {
                    path: path.to_path_buf(),
                    kind: "cell",
                    name: barcode,
                    first,
                    second: row,
                });
            }
            values.push(
                fields
                    .into_iter()
                    .map(|v| (!v.is_empty()).then_some(v))
                    .collect(),
            );
        }
        Ok(ObsTable {
            path: path.to_path_buf(),
            columns,
            rows,
            values,
        })
    }

    /// Joins the table onto `barcodes`: every table column becomes an obs column (replacing a
    /// column of the same name already in `obs`). Rows for barcodes not in the matrix are
    /// ignored; a cell without a row is an error.
    pub(crate) fn join(
        &self,
        barcodes: &[String],
        obs: &mut Vec<ObsColumn>,
    ) -> Result<(), ReadError> {
        let rows: Vec<Option<usize>> = barcodes.iter().map(|b| self.rows.get(b).copied()).collect();
        let missing = rows.iter().filter(|r| r.is_none()).count();
        if let Some(first) = rows.iter().position(Option::is_none) {
            return Err(ReadError::MissingCell {
                path: self.path.clone(),
                barcode: barcodes[first].clone(),
                missing,
                total: barcodes.len(),
            });
        }
        for (c, name) in self.columns.iter().enumerate() {
            let values = rows
                .iter()
                .flatten()
                .map(|&r| self.values[r][c].clone())
                .collect();
            obs.retain(|o| &o.name != name);
            obs.push(ObsColumn {
                name: name.clone(),
                values,
            });
        }
        Ok(())
    }
}

fn delimiter_for(path: &Path, header: &str) -> char {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".tsv") || name.ends_with(".txt") {
        '\t'
    } else if name.ends_with(".csv") {
        ','
    } else if header.contains('\t') {
        '\t'
    } else {
        ','
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{write::GzEncoder, Compression};
    use std::io::Write;

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    }

    fn all_lines(path: &Path) -> Result<Vec<String>, ReadError> {
        let mut lines = Lines::open(path)?;
        let mut buf = String::new();
        let mut out = Vec::new();
        while lines.next_into(&mut buf)? {
            out.push(buf.clone());
        }
        Ok(out)
    }

    #[test]
    fn gzip_is_detected_by_magic_bytes_not_extension() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain_name.txt");
        std::fs::write(&path, gzip(b"a\r\nb\n")).unwrap();
        assert_eq!(all_lines(&path).unwrap(), ["a", "b"]);
    }

    #[test]
    fn truncated_gzip_names_the_line_and_the_cure() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gz");
        let text: String = (0..5000).map(|i| format!("line {i}\n")).collect();
        let gz = gzip(text.as_bytes());
        std::fs::write(&path, &gz[..gz.len() / 2]).unwrap();
        let err = all_lines(&path).unwrap_err();
        assert!(
            matches!(err, ReadError::Malformed { line, .. } if line > 1),
            "{err}"
        );
        assert!(err.to_string().contains("truncated"), "{err}");
    }

    #[test]
    fn encodings_utf8_bom_is_skipped_utf16_and_latin1_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.txt");
        std::fs::write(&path, b"\xef\xbb\xbfa\nb\n").unwrap();
        assert_eq!(all_lines(&path).unwrap(), ["a", "b"]);
        std::fs::write(&path, b"\xff\xfea\x00\n\x00").unwrap();
        let err = all_lines(&path).unwrap_err().to_string();
        assert!(err.contains("x.txt:1: the file is UTF-16"), "{err}");
        std::fs::write(&path, b"ok\ncaf\xe9\n").unwrap();
        let err = all_lines(&path).unwrap_err().to_string();
        assert!(err.contains("x.txt:2: the file is not UTF-8"), "{err}");
    }

    #[test]
    fn csv_quotes_are_honoured() {
        assert_eq!(
            split_fields(r#"a,"b,c","say ""hi""",d"#, ','),
            ["a", "b,c", r#"say "hi""#, "d"]
        );
        assert_eq!(split_fields("a\t\"b\"", '\t'), ["a", "\"b\""]);
    }

    #[test]
    fn obs_table_joins_by_barcode_and_names_a_missing_cell() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obs.tsv");
        std::fs::write(
            &path,
            "barcode\ttype\tdonor\nc2\tbeta\t\nc1\talpha\td1\nc9\tx\ty\n",
        )
        .unwrap();
        let table = ObsTable::read(&path).unwrap();
        let mut obs = vec![ObsColumn {
            name: "type".into(),
            values: vec![None, None],
        }];
        table.join(&["c1".into(), "c2".into()], &mut obs).unwrap();
        assert_eq!(obs.len(), 2);
        let type_col = obs.iter().find(|c| c.name == "type").unwrap();
        assert_eq!(type_col.values, [Some("alpha".into()), Some("beta".into())]);
        let donor = obs.iter().find(|c| c.name == "donor").unwrap();
        assert_eq!(donor.values, [Some("d1".into()), None]);
        let err = table
            .join(&["c1".into(), "c3".into()], &mut obs)
            .unwrap_err();
        assert!(
            matches!(&err, ReadError::MissingCell { barcode, missing: 1, .. } if barcode == "c3")
        );
    }

    #[test]
    fn obs_table_rejects_ragged_rows_and_duplicate_barcodes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("obs.csv");
        std::fs::write(&path, "barcode,type\nc1,a\nc2\n").unwrap();
        let err = ObsTable::read(&path).err().unwrap();
        assert!(matches!(err, ReadError::Malformed { line: 3, .. }), "{err}");
        std::fs::write(&path, "barcode,type\nc1,a\nc1,b\n").unwrap();
        let err = ObsTable::read(&path).err().unwrap();
        assert!(
            matches!(
                err,
                ReadError::Duplicate {
                    first: 0,
                    second: 1,
                    ..
                }
            ),
            "{err}"
        );
    }
}
