//! The atlas file: one DuckDB database holding everything satlas knows.
//!
//! This module owns opening, creating and version-checking the file ([`schema`]), the rule that
//! every user action is one transaction ([`Atlas::write`]), and the read-side views of the whole
//! atlas ([`AtlasSummary`], [`Atlas::content_digest`]). Stage modules read and write their own
//! tables through the connection handed to them here.

pub mod bulk;
pub mod counts;
pub mod parquet;
mod schema;
pub mod species;
mod summary;

pub use schema::SCHEMA_VERSION;
pub(crate) use summary::{query_all, query_opt};
pub use summary::{AtlasSummary, DatasetInfo, GeneLoss, ModelRunInfo, SpeciesInfo};

use duckdb::{AccessMode, Config, Connection, Transaction};
use std::path::{Path, PathBuf};

/// Why the atlas could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum AtlasError {
    /// `open` was asked for a file that does not exist.
    #[error("no atlas at {path}: create one with `satlas init {path}`")]
    NotFound {
        /// The path asked for.
        path: PathBuf,
    },
    /// `create` was asked for a file that already exists.
    #[error("{path} already exists: open it, or choose another path for a new atlas")]
    AlreadyExists {
        /// The path asked for.
        path: PathBuf,
    },
    /// Another process holds the atlas open in a mode that excludes this one: a writer excludes
    /// everyone, a reader excludes writers.
    #[error(
        "atlas {path} is in use by another process (DuckDB allows one writer, or any number of \
         read-only readers, at a time): wait for it to finish; queries can share the atlas with \
         other readers (`satlas info`, `satlas sql --read-only`)"
    )]
    InUse {
        /// The atlas path.
        path: PathBuf,
    },
    /// The file is a database, but not a satlas atlas.
    #[error(
        "{path} is not a satlas atlas (no schema version found): use `satlas init` to create one"
    )]
    NotAnAtlas {
        /// The path.
        path: PathBuf,
    },
    /// The atlas was written by a newer satlas.
    #[error(
        "{path} has schema version {found}, newer than this satlas supports ({supported}): \
         upgrade satlas to open it"
    )]
    SchemaTooNew {
        /// The path.
        path: PathBuf,
        /// Version stored in the file.
        found: u32,
        /// Version this build understands.
        supported: u32,
    },
    /// The atlas was written by an older satlas and no migration exists.
    #[error(
        "{path} has schema version {found}, older than this satlas ({supported}) and no migration \
         exists: re-create the atlas with `satlas init` and re-ingest"
    )]
    SchemaTooOld {
        /// The path.
        path: PathBuf,
        /// Version stored in the file.
        found: u32,
        /// Version this build understands.
        supported: u32,
    },
    /// A species the atlas does not know.
    #[error(
        "unknown species {name:?} (known: {known}): add its proteome first with \
         `satlas add-proteome --species {name} FILE.fa`"
    )]
    UnknownSpecies {
        /// The species asked for.
        name: String,
        /// The species the atlas knows, comma-separated.
        known: String,
    },
    /// The atlas content breaks an invariant satlas relies on.
    #[error("the atlas is inconsistent: {what}; it was probably modified outside satlas")]
    Inconsistent {
        /// What does not hold.
        what: String,
    },
    /// An output file (an export, a label table) could not be written.
    #[error("cannot write {path}: {message}")]
    Output {
        /// The file.
        path: PathBuf,
        /// What failed, and what to do.
        message: String,
    },
    /// The DuckDB library loaded at run time is not the release satlas was built for.
    #[error(
        "satlas was built for DuckDB {expected} but loaded libduckdb {found}: run \
         `bash scripts/setup.sh` and `source scripts/env.sh` (or unset LD_LIBRARY_PATH entries \
         that point to another libduckdb.so), then rebuild"
    )]
    DuckDbVersion {
        /// The version satlas was built for.
        expected: &'static str,
        /// The version of the loaded library.
        found: String,
    },
    /// The write-ahead log beside the file cannot be replayed onto it.
    #[error(
        "cannot open {path}: DuckDB failed to replay the write-ahead log {wal} ({message}). The log \
         does not belong to this file: usually the .satlas file was copied or restored without \
         its .wal, or a stale .wal was left beside a new copy. If the atlas was closed cleanly, \
         move {wal} away and open it again; otherwise restore the .satlas and .wal files together"
    )]
    ForeignWal {
        /// The atlas.
        path: PathBuf,
        /// Its write-ahead log.
        wal: PathBuf,
        /// The first line of DuckDB's error.
        message: String,
    },
    /// A database operation failed.
    #[error("atlas database error while {context}: {source}")]
    Db {
        /// What satlas was doing.
        context: String,
        /// DuckDB's error.
        #[source]
        source: duckdb::Error,
    },
}

impl AtlasError {
    /// Wraps a DuckDB error with what satlas was doing when it happened.
    pub fn db(context: impl Into<String>, source: duckdb::Error) -> Self {
        AtlasError::Db {
            context: context.into(),
            source,
        }
    }
}

/// Attaches what satlas was doing to a DuckDB result.
pub trait DbContext<T> {
    /// Turns a DuckDB error into [`AtlasError::Db`] with `context`.
    fn context(self, context: &str) -> Result<T, AtlasError>;
}

impl<T> DbContext<T> for Result<T, duckdb::Error> {
    fn context(self, context: &str) -> Result<T, AtlasError> {
        self.map_err(|source| AtlasError::db(context, source))
    }
}

/// An open atlas file (or an in-memory atlas, for tests).
pub struct Atlas {
    conn: Connection,
    path: PathBuf,
}

impl Atlas {
    /// Creates a new, empty atlas at `path`; refuses to overwrite an existing file.
    pub fn create(path: impl AsRef<Path>) -> Result<Atlas, AtlasError> {
        let path = path.as_ref();
        if path.exists() {
            return Err(AtlasError::AlreadyExists { path: path.into() });
        }
        let conn = connect(path, AccessMode::ReadWrite)?;
        schema::create(&conn)?;
        Ok(Atlas::wrap(conn, path))
    }

    /// Opens an existing atlas for reading and writing.
    pub fn open(path: impl AsRef<Path>) -> Result<Atlas, AtlasError> {
        Atlas::open_with(path.as_ref(), AccessMode::ReadWrite)
    }

    /// Opens an existing atlas read-only: any number of readers may share a file no one writes.
    pub fn open_read_only(path: impl AsRef<Path>) -> Result<Atlas, AtlasError> {
        Atlas::open_with(path.as_ref(), AccessMode::ReadOnly)
    }

    /// A fresh atlas that lives in memory only (tests, scratch work).
    pub fn in_memory() -> Result<Atlas, AtlasError> {
        check_duckdb_library()?;
        let conn = Connection::open_in_memory().context("opening an in-memory database")?;
        schema::create(&conn)?;
        Ok(Atlas::wrap(conn, Path::new(":memory:")))
    }

    fn open_with(path: &Path, mode: AccessMode) -> Result<Atlas, AtlasError> {
        if !path.exists() {
            return Err(AtlasError::NotFound { path: path.into() });
        }
        let conn = connect(path, mode)?;
        schema::check(&conn, &path.display().to_string())?;
        Ok(Atlas::wrap(conn, path))
    }

    fn wrap(conn: Connection, path: &Path) -> Atlas {
        Atlas {
            conn,
            path: path.into(),
        }
    }

    /// A second handle on the same database (its own connection, the same file and access mode):
    /// what satlas' SQL procedures run on while a query holds the first.
    pub fn try_clone(&self) -> Result<Atlas, AtlasError> {
        let conn = self
            .conn
            .try_clone()
            .context("opening a second connection to the atlas")?;
        Ok(Atlas::wrap(conn, &self.path))
    }

    /// Where the atlas lives (`:memory:` for an in-memory atlas).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The DuckDB connection (satlas' SQL procedures are registered on it only when the atlas was
    /// opened through `sql::with_procedures`).
    pub fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Runs one user action as one transaction: committed if `action` succeeds, rolled back (the
    /// atlas left exactly as it was) if it fails.
    pub fn write<T, E>(
        &mut self,
        action: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
    ) -> Result<T, E>
    where
        E: From<AtlasError>,
    {
        write(&mut self.conn, action)
    }

    /// The connection, for stage functions that open their own transactions (long work committed
    /// in resumable steps).
    pub fn connection_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// Everything a user wants to know about the atlas at a glance (`satlas info`).
    pub fn summary(&self) -> Result<AtlasSummary, AtlasError> {
        AtlasSummary::read(&self.conn, &self.path)
    }

    /// A digest of the content of every table: equal digests mean equal content. Used to prove
    /// that a refused action left the atlas unchanged.
    pub fn content_digest(&self) -> Result<String, AtlasError> {
        content_digest(&self.conn)
    }
}

/// Runs `action` in one transaction on `conn`: committed on success, rolled back on error.
pub fn write<T, E>(
    conn: &mut Connection,
    action: impl FnOnce(&Transaction<'_>) -> Result<T, E>,
) -> Result<T, E>
where
    E: From<AtlasError>,
{
    let tx = conn.transaction().context("starting a transaction")?;
    let value = action(&tx)?; // dropping `tx` on error rolls back
    tx.commit().context("committing the transaction")?;
    Ok(value)
}

/// The DuckDB release satlas is built for (set by build.rs).
pub const DUCKDB_VERSION: &str = env!("SATLAS_DUCKDB_VERSION");

/// Refuses a libduckdb of another release than [`DUCKDB_VERSION`] (the file format and the C API
/// the bindings were generated for differ between releases).
pub fn check_duckdb_library() -> Result<(), AtlasError> {
    // SAFETY: duckdb_library_version takes no arguments and returns a pointer to a static,
    // NUL-terminated string owned by the library.
    let found = unsafe { std::ffi::CStr::from_ptr(duckdb::ffi::duckdb_library_version()) };
    same_release(&found.to_string_lossy())
}

fn same_release(found: &str) -> Result<(), AtlasError> {
    if found == DUCKDB_VERSION {
        Ok(())
    } else {
        Err(AtlasError::DuckDbVersion {
            expected: DUCKDB_VERSION,
            found: found.into(),
        })
    }
}

fn connect(path: &Path, mode: AccessMode) -> Result<Connection, AtlasError> {
    check_duckdb_library()?;
    let config = Config::default()
        .access_mode(mode)
        .and_then(|c| c.enable_autoload_extension(false))
        .context("configuring DuckDB")?;
    Connection::open_with_flags(path, config).map_err(|source| {
        if source.to_string().contains("Could not set lock") {
            AtlasError::InUse { path: path.into() }
        } else if source.to_string().contains("not a valid DuckDB database") {
            AtlasError::NotAnAtlas { path: path.into() }
        } else if source.to_string().contains("replaying WAL") {
            AtlasError::ForeignWal {
                path: path.into(),
                wal: PathBuf::from(format!("{}.wal", path.display())),
                message: source.to_string().lines().next().unwrap_or("").to_string(),
            }
        } else {
            AtlasError::db(format!("opening {}", path.display()), source)
        }
    })
}

fn content_digest(conn: &Connection) -> Result<String, AtlasError> {
    let mut stmt = conn
        .prepare(
            "SELECT table_name FROM information_schema.tables \
             WHERE table_schema = 'main' AND table_type = 'BASE TABLE' ORDER BY table_name",
        )
        .context("listing tables")?;
    let tables: Vec<String> = stmt
        .query_map([], |row| row.get(0))
        .and_then(|rows| rows.collect())
        .context("listing tables")?;
    let mut digest = String::new();
    for table in tables {
        let (rows, sum): (i64, String) = conn
            .query_row(
                &format!(
                    "SELECT count(*), coalesce(sum(hash(t)::HUGEINT), 0)::VARCHAR FROM \"{table}\" t"
                ),
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )
            .context(&format!("digesting table {table}"))?;
        digest.push_str(&format!("{table}:{rows}:{sum};"));
    }
    Ok(digest)
}

/// A temporary file in the directory of `target` (so it can be renamed onto `target`).
pub fn temp_file_beside(target: &Path) -> Result<tempfile::NamedTempFile, AtlasError> {
    let dir = match target.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut builder = tempfile::Builder::new();
    builder.prefix(".satlas-").suffix(".partial");
    #[cfg(unix)]
    {
        // As `File::create` would: 0666 less the umask (tempfile's default is 0600).
        use std::os::unix::fs::PermissionsExt;
        builder.permissions(std::fs::Permissions::from_mode(0o666));
    }
    builder.tempfile_in(dir).map_err(|e| AtlasError::Output {
        path: target.into(),
        message: format!("cannot create a temporary file in {}: {e}", dir.display()),
    })
}

/// Renames the finished `temp` onto `target`.
pub fn persist(temp: tempfile::NamedTempFile, target: &Path) -> Result<(), AtlasError> {
    temp.persist(target)
        .map(drop)
        .map_err(|e| AtlasError::Output {
            path: target.into(),
            message: format!("cannot move the finished file into place: {}", e.error),
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn another_duckdb_release_is_refused_with_the_fix() {
        check_duckdb_library().expect("the linked libduckdb is the release satlas is built for");
        let err = same_release("v2.0.1").unwrap_err().to_string();
        assert!(
            err.contains("built for DuckDB v1.5.6 but loaded libduckdb v2.0.1")
                && err.contains("bash scripts/setup.sh"),
            "{err}"
        );
    }

    #[test]
    fn create_open_and_refuse_overwrite() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a.satlas");
        drop(Atlas::create(&path).unwrap());
        assert!(matches!(
            Atlas::create(&path),
            Err(AtlasError::AlreadyExists { .. })
        ));
        let atlas = Atlas::open(&path).unwrap();
        assert_eq!(atlas.summary().unwrap().schema_version, SCHEMA_VERSION);
    }

    #[test]
    fn a_stale_wal_from_another_copy_is_named_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let (old, new) = (dir.path().join("old.satlas"), dir.path().join("new.satlas"));
        drop(Atlas::create(&new).unwrap());
        // `old` has a species row on disk and an update of it only in its write-ahead log; the
        // log is copied beside `new`, whose species table is empty (a copy without its .wal).
        let atlas = Atlas::create(&old).unwrap();
        atlas
            .connection()
            .execute_batch(
                "INSERT INTO species (species_id, name) VALUES (1, 'human'); CHECKPOINT; \
                 UPDATE species SET added_at = TIMESTAMP '2000-01-01' WHERE species_id = 1",
            )
            .unwrap();
        std::fs::copy(
            dir.path().join("old.satlas.wal"),
            dir.path().join("new.satlas.wal"),
        )
        .unwrap();
        drop(atlas);
        let err = Atlas::open(&new).err().expect("the foreign log is refused");
        assert!(matches!(err, AtlasError::ForeignWal { .. }), "{err}");
        assert!(err.to_string().contains("new.satlas.wal"), "{err}");
        assert!(err.to_string().contains("move"), "{err}");
        // The fix the message gives works.
        std::fs::remove_file(dir.path().join("new.satlas.wal")).unwrap();
        Atlas::open(&new).unwrap();
    }

    #[test]
    fn missing_file_is_not_created_by_open() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("none.satlas");
        assert!(matches!(
            Atlas::open(&path),
            Err(AtlasError::NotFound { .. })
        ));
        assert!(!path.exists());
    }

    #[test]
    fn plain_duckdb_file_is_not_an_atlas() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plain.duckdb");
        Connection::open(&path)
            .unwrap()
            .execute_batch("CREATE TABLE t (x INT)")
            .unwrap();
        assert!(matches!(
            Atlas::open(&path),
            Err(AtlasError::NotAnAtlas { .. })
        ));
    }

    #[test]
    fn failed_write_rolls_back_and_digest_sees_changes() {
        let mut atlas = Atlas::in_memory().unwrap();
        let before = atlas.content_digest().unwrap();
        let result: Result<(), AtlasError> = atlas.write(|tx| {
            tx.execute("INSERT INTO species (name) VALUES ('human')", [])
                .context("insert")?;
            Err(AtlasError::NotAnAtlas { path: "x".into() })
        });
        assert!(result.is_err());
        assert_eq!(atlas.content_digest().unwrap(), before);
        atlas
            .write(|tx| {
                tx.execute("INSERT INTO species (name) VALUES ('human')", [])
                    .context("insert")
            })
            .unwrap();
        assert_ne!(atlas.content_digest().unwrap(), before);
    }
}
