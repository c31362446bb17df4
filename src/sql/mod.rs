//! SQL procedures: the stages of satlas as DuckDB table functions, registered on an opened
//! [`Atlas`] by [`with_procedures`] (what `satlas sql` does, and library users who want to call
//! them). The atlas itself knows nothing of them: this module sits on top of every stage.
//!
//! Every procedure is a [`Procedure`]: it declares its named parameters, and `run` turns the
//! validated arguments into an Arrow [`RecordBatch`] using a second connection to the same
//! database. [`ProcedureVTab`] adapts any procedure to DuckDB's table-function interface: bind
//! reads the arguments and declares the result's schema, init runs the procedure once per
//! execution (DuckDB may bind a prepared query more than once; errors still surface as query
//! errors before any row is produced), func streams the batch one vector at a time.

mod args;
pub mod console;
mod de;
mod embeddings;
mod eval;
mod info;
mod knn_cells;
mod knn_vector;
mod training;
mod transfer_labels;

pub use args::{Args, ArgsError};

use crate::atlas::{AtlasError, DbContext};
use crate::Atlas;
use duckdb::arrow::array::ArrayRef;
use duckdb::arrow::datatypes::Schema;
use duckdb::arrow::record_batch::RecordBatch;
use duckdb::core::{DataChunkHandle, LogicalTypeHandle, LogicalTypeId};
use duckdb::vtab::{
    record_batch_to_duckdb_data_chunk, to_duckdb_logical_type_for_field, BindInfo, InitInfo,
    TableFunctionInfo, VTab,
};
use duckdb::Connection;
use std::marker::PhantomData;
use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

/// A second handle on the atlas ([`Atlas::try_clone`]), owned by the [`SqlAtlas`] and used by its
/// procedures.
type SharedAtlas = Arc<Mutex<Atlas>>;

/// An [`Atlas`] whose connection has every satlas procedure registered; it derefs to the atlas.
pub struct SqlAtlas {
    // Field order is drop order: the atlas' connection closes before the procedures' one.
    atlas: Atlas,
    /// Keeps alive the handle the procedures run on (they hold a weak one).
    _procedures: SharedAtlas,
}

impl Deref for SqlAtlas {
    type Target = Atlas;
    fn deref(&self) -> &Atlas {
        &self.atlas
    }
}

impl DerefMut for SqlAtlas {
    fn deref_mut(&mut self) -> &mut Atlas {
        &mut self.atlas
    }
}

/// `atlas` with satlas' SQL procedures registered on its connection.
pub fn with_procedures(atlas: Atlas) -> Result<SqlAtlas, AtlasError> {
    let procedures = register(&atlas)?;
    Ok(SqlAtlas {
        atlas,
        _procedures: procedures,
    })
}

/// What the registered functions hold: a weak handle, so that the database (which owns the
/// registrations) does not keep its own connection alive and closes when the `SqlAtlas` is
/// dropped.
type ProcedureHandle = Weak<Mutex<Atlas>>;

/// A satlas operation callable from SQL as `SELECT * FROM name(param := value, ...)` or
/// `CALL name(...)`.
pub trait Procedure: 'static {
    /// The SQL name.
    const NAME: &'static str;
    /// Named parameters and their DuckDB types.
    fn parameters() -> Vec<(&'static str, LogicalTypeId)>;
    /// The result columns (declared at bind time, before anything runs).
    fn schema() -> Schema;
    /// Runs the procedure on `atlas`; the rows it returns become the result.
    fn run(atlas: &mut Atlas, args: &Args) -> crate::Result<RecordBatch>;

    /// A result batch of [`Procedure::schema`] from its columns, in order.
    fn batch(columns: Vec<ArrayRef>) -> Result<RecordBatch, AtlasError> {
        RecordBatch::try_new(Arc::new(Self::schema()), columns).map_err(|e| {
            let context = format!("building the result of {}", Self::NAME);
            AtlasError::db(context, duckdb::Error::ToSqlConversionFailure(Box::new(e)))
        })
    }
}

/// Registers every satlas procedure on `atlas`' connection; returns the handle the procedures
/// use, which the caller must keep alive as long as `atlas`.
fn register(atlas: &Atlas) -> Result<SharedAtlas, AtlasError> {
    let conn = atlas.connection();
    let shared: SharedAtlas = Arc::new(Mutex::new(atlas.try_clone()?));
    let handle = Arc::downgrade(&shared);
    register_one::<info::SatlasInfo>(conn, &handle)?;
    register_one::<embeddings::EmbedProteins>(conn, &handle)?;
    register_one::<embeddings::ImportEmbeddings>(conn, &handle)?;
    register_one::<knn_cells::KnnCells>(conn, &handle)?;
    register_one::<knn_vector::KnnVector>(conn, &handle)?;
    register_one::<transfer_labels::TransferLabels>(conn, &handle)?;
    register_one::<training::BuildMacrogenes>(conn, &handle)?;
    register_one::<training::Pretrain>(conn, &handle)?;
    register_one::<training::Finetune>(conn, &handle)?;
    register_one::<training::EmbedDataset>(conn, &handle)?;
    register_one::<training::AddSpecies>(conn, &handle)?;
    register_one::<eval::Eval>(conn, &handle)?;
    register_one::<de::De>(conn, &handle)?;
    Ok(shared)
}

fn register_one<P: Procedure>(
    conn: &Connection,
    handle: &ProcedureHandle,
) -> Result<(), AtlasError> {
    conn.register_table_function_with_extra_info::<ProcedureVTab<P>, _>(P::NAME, handle)
        .context(&format!("registering SQL procedure {}", P::NAME))
}

/// Adapts a [`Procedure`] to DuckDB's table-function interface.
///
/// The procedure runs in `init`, once per execution: DuckDB may bind a statement more than once
/// (a prepared statement is re-bound when the database changed since it was prepared), so `bind`
/// only reads the arguments and declares the columns.
pub struct ProcedureVTab<P>(PhantomData<P>);

/// The arguments, read at bind time.
pub struct Bound {
    args: Args,
}

/// The procedure's result and how many rows have been emitted so far.
pub struct Running {
    batch: RecordBatch,
    offset: AtomicUsize,
    vector_size: usize,
}

impl<P: Procedure> VTab for ProcedureVTab<P> {
    type BindData = Bound;
    type InitData = Running;

    /// Reads the named arguments and declares the result columns.
    fn bind(bind: &BindInfo) -> Result<Bound, Box<dyn std::error::Error>> {
        let args = Args::from_bind(bind, &P::parameters())?;
        for field in P::schema().fields() {
            bind.add_result_column(field.name(), to_duckdb_logical_type_for_field(field)?);
        }
        Ok(Bound { args })
    }

    /// Runs the procedure on the atlas' procedure connection.
    fn init(init: &InitInfo) -> Result<Running, Box<dyn std::error::Error>> {
        // SAFETY: the bind data was set by `bind` above and the extra info at registration to a
        // `ProcedureHandle`; DuckDB keeps both alive for the whole execution.
        let (bound, handle) = unsafe {
            (
                &*init.get_bind_data::<Bound>(),
                &*init.get_extra_info::<ProcedureHandle>(),
            )
        };
        let shared = handle
            .upgrade()
            .ok_or_else(|| format!("{}: the atlas was closed", P::NAME))?;
        let mut atlas = shared.lock().map_err(|_| {
            format!(
                "{}: the atlas connection is poisoned by an earlier panic; reopen the atlas",
                P::NAME
            )
        })?;
        let batch = P::run(&mut atlas, &bound.args)
            .map_err(|e| format!("{}: {}", P::NAME, error_chain(&e)))?;
        // SAFETY: a constant getter of the linked DuckDB library, no arguments, no state.
        let vector_size = unsafe { duckdb::ffi::duckdb_vector_size() } as usize;
        Ok(Running {
            batch,
            offset: AtomicUsize::new(0),
            vector_size,
        })
    }

    /// Emits the next vector-sized slice of the result.
    fn func(
        func: &TableFunctionInfo<Self>,
        output: &mut DataChunkHandle,
    ) -> Result<(), Box<dyn std::error::Error>> {
        let running = func.get_init_data();
        let batch = &running.batch;
        let offset = running
            .offset
            .fetch_add(running.vector_size, Ordering::Relaxed);
        if offset >= batch.num_rows() {
            output.set_len(0);
            return Ok(());
        }
        let len = (batch.num_rows() - offset).min(running.vector_size);
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
        other => LogicalTypeHandle::from(other),
    }
}

/// An error and its causes ([`crate::error::messages`]) on one line, for SQL error messages.
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    crate::error::messages(error).join(": ")
}
