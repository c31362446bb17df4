//! `satlas sql`: run SQL against an atlas and print results as tables, one-shot or interactively.

use crate::atlas::{AtlasError, DbContext};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::arrow::util::pretty::pretty_format_batches;
use duckdb::Connection;
use std::io::{BufRead, Write};

/// Runs every `;`-separated statement of `sql` and returns the formatted result of each query.
pub fn run(conn: &Connection, sql: &str) -> Result<String, AtlasError> {
    let mut out = String::new();
    for statement in split_statements(sql) {
        out.push_str(&run_statement(conn, &statement)?);
    }
    Ok(out)
}

/// Reads statements from `input` (a statement ends at a line ending in `;`), runs each and writes
/// its result or error to `output`; errors do not end the session. `.quit` or end of input ends it.
pub fn interactive(
    conn: &Connection,
    input: impl BufRead,
    mut output: impl Write,
) -> std::io::Result<()> {
    let mut pending = String::new();
    for line in input.lines() {
        let line = line?;
        if pending.is_empty() && matches!(line.trim(), ".quit" | ".exit") {
            break;
        }
        pending.push_str(&line);
        pending.push('\n');
        if line.trim_end().ends_with(';') {
            match run(conn, &pending) {
                Ok(text) => write!(output, "{text}")?,
                Err(e) => writeln!(output, "Error: {}", super::error_chain(&e))?,
            }
            pending.clear();
        }
    }
    Ok(())
}

fn run_statement(conn: &Connection, statement: &str) -> Result<String, AtlasError> {
    let mut stmt = conn.prepare(statement).context("preparing the statement")?;
    let batches: Vec<RecordBatch> = stmt
        .query_arrow([])
        .context("running the statement")?
        .collect();
    if batches.first().is_none_or(|b| b.num_columns() == 0) {
        return Ok(String::new());
    }
    let table = pretty_format_batches(&batches).map_err(|e| {
        AtlasError::db(
            "formatting the result",
            duckdb::Error::ToSqlConversionFailure(Box::new(e)),
        )
    })?;
    let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
    Ok(format!(
        "{table}\n({rows} row{})\n",
        if rows == 1 { "" } else { "s" }
    ))
}

/// Splits on `;` outside quotes and comments; empty statements are dropped.
fn split_statements(sql: &str) -> Vec<String> {
    let mut statements = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        match (quote, c) {
            (Some(q), _) if c == q => quote = None,
            (None, '\'' | '"') => quote = Some(c),
            (None, '-') if chars.peek() == Some(&'-') => {
                for skipped in chars.by_ref() {
                    if skipped == '\n' {
                        break;
                    }
                }
                current.push('\n');
                continue;
            }
            (None, ';') => {
                statements.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    statements.push(current);
    statements
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_outside_quotes_and_comments() {
        let parts = split_statements("SELECT ';' AS a; -- x; y\nSELECT \"b;c\" FROM t;;");
        assert_eq!(parts.len(), 2, "{parts:?}");
        assert_eq!(parts[0], "SELECT ';' AS a");
        assert!(parts[1].contains("SELECT \"b;c\" FROM t"));
    }

    #[test]
    fn runs_queries_and_reports_rows() {
        let atlas = crate::Atlas::in_memory().unwrap();
        let out = run(
            atlas.connection(),
            "CREATE TABLE t AS SELECT 42 AS answer; SELECT * FROM t;",
        )
        .unwrap();
        assert!(
            out.contains("answer") && out.contains("42") && out.contains("(1 row)"),
            "{out}"
        );
    }

    #[test]
    fn interactive_survives_errors() {
        let atlas = crate::Atlas::in_memory().unwrap();
        let input = b"SELECT nope;\nSELECT 7\n AS seven;\n.quit\nSELECT 8;\n";
        let mut out = Vec::new();
        interactive(atlas.connection(), &input[..], &mut out).unwrap();
        let out = String::from_utf8(out).unwrap();
        assert!(
            out.contains("Error:") && out.contains("seven") && !out.contains('8'),
            "{out}"
        );
    }
}
