//! SQL procedures: the stages of satlas as DuckDB table functions, registered on every connection
//! an [`Atlas`](crate::Atlas) opens (so `satlas sql` and library users see the same surface).
//!
//! Every procedure is a [`Procedure`]: it declares its named parameters, and `run` turns the
//! validated arguments into an Arrow [`RecordBatch`] using a second connection to the same
//! database. [`ProcedureVTab`] adapts any procedure to DuckDB's table-function interface: bind
//! reads the arguments and runs the procedure (so errors surface as query errors before any row is
//! produced), init starts a cursor, func streams the batch one vector at a time.

mod args;
pub mod console;
mod info;
mod knn_cells;
mod knn_vector;
mod transfer_labels;

pub use args::{Args, ArgsError};

use crate::atlas::{AtlasError, DbContext};
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::{DataChunkHandle, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{
    record_batch_to_duckdb_data_chunk, to_duckdb_logical_type_for_field, BindInfo, InitInfo,
    TableFunctionInfo, VTab,
};
use duckdb::Connection;
use std::marker::PhantomData;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// A second connection to the atlas database, shared by the procedures of one [`Atlas`](crate::Atlas).
pub type SharedConnection = Arc<Mutex<Connection>>;

/// A satlas operation callable from SQL as `SELECT * FROM name(param := value, ...)` or
/// `CALL name(...)`.
pub trait Procedure: 'static {
    /// The SQL name.
    const NAME: &'static str;
    /// Named parameters and their DuckDB types. `LogicalTypeId::List` declares a list of
    /// numbers (`DOUBLE[]`; DuckDB casts `FLOAT[]`, `INTEGER[]`, ... to it), read with
    /// [`Args::floats`].
    fn parameters() -> Vec<(&'static str, LogicalTypeId)>;
    /// Runs the procedure on the atlas behind `conn`; the rows it returns become the result.
    fn run(conn: &Connection, args: &Args) -> crate::Result<RecordBatch>;
}

/// Registers every satlas procedure on `conn`.
pub(crate) fn register(conn: &Connection) -> Result<(), AtlasError> {
    let shared: SharedConnection = Arc::new(Mutex::new(
        conn.try_clone()
            .context("opening the procedure connection")?,
    ));
    register_one::<info::SatlasInfo>(conn, &shared)?;
    register_one::<knn_cells::KnnCells>(conn, &shared)?;
    register_one::<knn_vector::KnnVector>(conn, &shared)?;
    register_one::<transfer_labels::TransferLabels>(conn, &shared)
}

fn register_one<P: Procedure>(
    conn: &Connection,
    shared: &SharedConnection,
) -> Result<(), AtlasError> {
    conn.register_table_function_with_extra_info::<ProcedureVTab<P>, _>(P::NAME, shared)
        .context(&format!("registering SQL procedure {}", P::NAME))
}

/// Adapts a [`Procedure`] to DuckDB's table-function interface.
pub struct ProcedureVTab<P>(PhantomData<P>);

/// The procedure's result, computed at bind time.
pub struct ProcedureResult {
    batch: RecordBatch,
}

/// How many rows have been emitted so far, and how many fit in one output chunk.
pub struct Cursor {
    offset: AtomicUsize,
    vector_size: usize,
}

impl<P: Procedure> VTab for ProcedureVTab<P> {
    type BindData = ProcedureResult;
    type InitData = Cursor;

    /// Reads the named arguments, runs the procedure, declares its result columns.
    fn bind(bind: &BindInfo) -> Result<ProcedureResult, Box<dyn std::error::Error>> {
        let args = Args::from_bind(bind, &P::parameters())?;
        // SAFETY: the extra info was set at registration to a `SharedConnection` that DuckDB
        // keeps alive as long as the function is registered.
        let shared = unsafe { &*bind.get_extra_info::<SharedConnection>() };
        let conn = shared.lock().map_err(|_| {
            format!(
                "{}: the atlas connection is poisoned by an earlier panic; reopen the atlas",
                P::NAME
            )
        })?;
        let batch =
            P::run(&conn, &args).map_err(|e| format!("{}: {}", P::NAME, error_chain(&e)))?;
        for field in batch.schema().fields() {
            bind.add_result_column(field.name(), to_duckdb_logical_type_for_field(field)?);
        }
        Ok(ProcedureResult { batch })
    }

    /// Starts the cursor at the first row.
    fn init(_: &InitInfo) -> Result<Cursor, Box<dyn std::error::Error>> {
        // SAFETY: a constant getter of the linked DuckDB library, no arguments, no state.
        let vector_size = unsafe { duckdb::ffi::duckdb_vector_size() } as usize;
        Ok(Cursor {
            offset: AtomicUsize::new(0),
            vector_size,
        })
    }

    /// Emits the next vector-sized slice of the result.
    fn func(
        func: &TableFunctionInfo<Self>,
        output: &mut DataChunkHandle,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let batch = &func.get_bind_data().batch;
        let cursor = func.get_init_data();
        let vector_size = cursor.vector_size;
        let offset = cursor.offset.fetch_add(vector_size, Ordering::Relaxed);
        if offset >= batch.num_rows() {
            output.set_len(0);
            return Ok(());
        }
        let len = (batch.num_rows() - offset).min(vector_size);
        record_batch_to_duckdb_data_chunk(&batch.slice(offset, len), output)?;
        Ok(())
    }

    fn named_parameters() -> Option<Vec<(String, LogicalTypeHandle)>> {
        Some(
            P::parameters()
                .into_iter()
                .map(|(name, ty)| (name.to_string(), parameter_type(ty)))
                .collect(),
        )
    }
}

/// The DuckDB type of a declared parameter: `List` is a list of doubles, the rest as named.
fn parameter_type(ty: LogicalTypeId) -> LogicalTypeHandle {
    match ty {
        LogicalTypeId::List => {
            LogicalTypeHandle::list(&LogicalTypeHandle::from(LogicalTypeId::Double))
        }
        ty => LogicalTypeHandle::from(ty),
    }
}

/// An error and its causes on one line, for SQL error messages.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
