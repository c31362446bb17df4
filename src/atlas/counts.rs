//! The read side of the `counts` table: the cells of a species or dataset as one CSR matrix over a
//! chosen list of genes (the layout training and embedding consume).

use super::{AtlasError, DbContext};
use crate::csr::Csr;
use duckdb::arrow::array::{Array, AsArray, Int32Array, ListArray};
use duckdb::arrow::datatypes::Int64Type;
use duckdb::Connection;
use std::collections::HashMap;

/// Which cells to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cells {
    /// Every cell of every dataset of a species.
    Species(i32),
    /// Every cell of one dataset.
    Dataset(i32),
}

/// Cells x genes counts restricted to a gene list, in CSR layout, with each cell's id and label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CellCounts {
    /// Cell ids, ascending; row `i` is cell `cell_ids[i]`.
    pub cell_ids: Vec<i64>,
    /// Cell-type label of each cell (`None` when the source had none).
    pub labels: Vec<Option<String>>,
    /// The counts: one row per cell, one column per gene of the list asked for (column `j` is
    /// `genes[j]`), column indices ascending within a row.
    pub csr: Csr,
}

impl CellCounts {
    /// Number of cells.
    pub fn n_cells(&self) -> usize {
        self.cell_ids.len()
    }
}

/// Reads the counts of `cells` over `genes` (gene ids; column `j` is `genes[j]`). Counts of genes
/// not in the list are left out.
pub fn read_counts(
    conn: &Connection,
    cells: Cells,
    genes: &[i32],
) -> Result<CellCounts, AtlasError> {
    let column: HashMap<i32, u32> = genes
        .iter()
        .enumerate()
        .map(|(j, &g)| (g, j as u32))
        .collect();
    let (filter, id) = match cells {
        Cells::Species(id) => ("d.species_id", id),
        Cells::Dataset(id) => ("d.dataset_id", id),
    };
    let sql = format!(
        "SELECT c.cell_id, c.cell_type, k.gene_ids, k.counts
         FROM cells c JOIN datasets d USING (dataset_id) JOIN counts k USING (cell_id)
         WHERE {filter} = ? ORDER BY c.cell_id"
    );
    let context = "reading counts";
    let mut stmt = conn.prepare(&sql).context(context)?;
    let mut out = CellCounts {
        csr: Csr::empty(genes.len()),
        ..CellCounts::default()
    };
    for batch in stmt.query_arrow([id]).context(context)? {
        let ids = batch.column(0).as_primitive::<Int64Type>();
        let labels = batch.column(1).as_string::<i32>();
        let gene_lists = batch.column(2).as_list::<i32>();
        let count_lists = batch.column(3).as_list::<i32>();
        for row in 0..batch.num_rows() {
            out.cell_ids.push(ids.value(row));
            out.labels
                .push(labels.is_valid(row).then(|| labels.value(row).to_string()));
            push_row(&mut out, &column, gene_lists, count_lists, row)?;
        }
    }
    Ok(out)
}

fn push_row(
    out: &mut CellCounts,
    column: &HashMap<i32, u32>,
    genes: &ListArray,
    counts: &ListArray,
    row: usize,
) -> Result<(), AtlasError> {
    let (genes, counts) = (genes.value(row), counts.value(row));
    let (Some(genes), Some(counts)) = (
        genes.as_any().downcast_ref::<Int32Array>(),
        counts.as_any().downcast_ref::<Int32Array>(),
    ) else {
        return Err(AtlasError::Inconsistent {
            what: "counts.gene_ids and counts.counts must be INTEGER[]".into(),
        });
    };
    out.csr.push_row(
        genes
            .values()
            .iter()
            .zip(counts.values())
            .filter_map(|(g, &c)| column.get(g).map(|&j| (j, c as u32)))
            .collect(),
    );
    Ok(())
}
