//! Opening the index's SQLite connections: pragmas, the schema and its version, and which
//! failures a new database cures.
//!
//! Every connection keeps its WAL file on close (`PERSIST_WAL`): SQLite otherwise deletes
//! `-wal`/`-shm` *by name* when the last connection to a database closes, and a connection
//! still open on a replaced (rebuilt or deleted) database would then delete the new
//! database's files.

use std::os::raw::c_int;
use std::path::Path;
use std::time::Duration;

use log::warn;
use rusqlite::{Connection, ErrorCode, FileControl, OpenFlags};

use super::index::{Context, IndexError};

/// Bumped whenever the schema or what is stored changes; a database with another version
/// is rebuilt.
pub const SCHEMA_VERSION: i32 = 1;

/// How long a connection waits for another writer (the CLI while the daemon runs, or the
/// other way round) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// After a checkpoint the kept WAL file is cut back to this size.
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

// Chunk text is stored once, in `chunks`; the FTS table indexes it as an external-content
// table. (A contentless-delete table would do the same, but needs SQLite 3.43; external
// content keeps the database readable by the `sqlite3` shipped with older distributions,
// which is how a user inspects it.)
const SCHEMA: &str = "
CREATE TABLE files (
    path TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    hash INTEGER NOT NULL,
    lines INTEGER NOT NULL,
    chunks INTEGER NOT NULL,
    indexed_at INTEGER NOT NULL
) WITHOUT ROWID;
CREATE TABLE chunks (
    id INTEGER PRIMARY KEY,
    path TEXT NOT NULL,
    line_start INTEGER NOT NULL,
    line_end INTEGER NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX chunks_path ON chunks(path);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    content,
    content = 'chunks',
    content_rowid = 'id',
    tokenize = 'unicode61 remove_diacritics 2'
);
CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Errors that a fresh database fixes: damage, a foreign file, an old schema. Not: a
/// folder we may not write, a lock held too long by another process.
pub(super) fn rebuildable(e: &IndexError) -> bool {
    match e {
        IndexError::Io(_) => false,
        IndexError::Sqlite(_, e) => !matches!(
            e.sqlite_error_code(),
            Some(
                ErrorCode::CannotOpen
                    | ErrorCode::PermissionDenied
                    | ErrorCode::ReadOnly
                    | ErrorCode::DatabaseBusy
                    | ErrorCode::DatabaseLocked
                    | ErrorCode::OutOfMemory
                    | ErrorCode::DiskFull
                    | ErrorCode::SystemIoFailure
            )
        ),
    }
}

fn configure(conn: &Connection) -> Result<(), IndexError> {
    conn.busy_timeout(BUSY_TIMEOUT)
        .ctx("setting busy_timeout")?;
    // Whichever connection closes last truncates the kept WAL file.
    conn.execute_batch(&format!("PRAGMA journal_size_limit = {WAL_SIZE_LIMIT}"))
        .ctx("setting journal_size_limit")?;
    let mut persist: c_int = 1;
    conn.file_control(Some("main"), FileControl::PersistWal(&mut persist))
        .ctx("keeping the WAL file")?;
    Ok(())
}

/// Refuses a non-empty file that does not start with SQLite's magic string. SQLite itself
/// would read page 1 from a leftover WAL and only find the damage later, page by page.
pub(super) fn check_header(path: &Path) -> Result<(), IndexError> {
    crate::dbfile::check_header(path).map_err(|why| {
        IndexError::Sqlite(
            "reading the file header",
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_NOTADB),
                Some(why),
            ),
        )
    })
}

pub(super) fn open_writer(path: &Path) -> Result<Connection, IndexError> {
    let conn = Connection::open(path).ctx("opening")?;
    configure(&conn)?;
    // The first statements read the header: a file that is not a database fails here.
    let mode: String = conn
        .query_row("PRAGMA journal_mode = WAL", [], |r| r.get(0))
        .ctx("switching to WAL")?;
    if !mode.eq_ignore_ascii_case("wal") {
        warn!("memory index: journal mode is {mode}, not WAL; searches may wait on writes");
    }
    // A cache can lose its last transactions on power loss without harm (the next scan
    // redoes them); NORMAL avoids an fsync per commit and is still never corrupt in WAL.
    conn.execute_batch("PRAGMA synchronous = NORMAL")
        .ctx("setting pragmas")?;
    let version: i32 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("reading the schema version")?;
    if version == 0 {
        create_schema(&conn)?;
    } else if version != SCHEMA_VERSION {
        return Err(IndexError::Sqlite(
            "checking the schema version",
            rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                Some(format!(
                    "schema version {version}, this build uses {SCHEMA_VERSION}"
                )),
            ),
        ));
    }
    // Touching every table catches a damaged schema at open rather than at the first search.
    conn.query_row(
        "SELECT (SELECT count(*) FROM meta), (SELECT rowid FROM chunks_fts LIMIT 1),
                (SELECT 1 FROM files LIMIT 1), (SELECT 1 FROM chunks LIMIT 1)",
        [],
        |_| Ok(()),
    )
    .ctx("checking the schema")?;
    Ok(conn)
}

fn create_schema(conn: &Connection) -> Result<(), IndexError> {
    let tx = conn
        .unchecked_transaction()
        .ctx("starting schema creation")?;
    // Another process may have created it between our check and our lock.
    let version: i32 = tx
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("reading the schema version")?;
    if version == 0 {
        let has_tables: i64 = tx
            .query_row("SELECT count(*) FROM sqlite_master", [], |r| r.get(0))
            .ctx("reading the schema")?;
        if has_tables > 0 {
            return Err(IndexError::Sqlite(
                "checking the schema",
                rusqlite::Error::SqliteFailure(
                    rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_CORRUPT),
                    Some("a database without our schema version".into()),
                ),
            ));
        }
        tx.execute_batch(SCHEMA).ctx("creating the schema")?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .ctx("writing the schema version")?;
    }
    tx.commit().ctx("creating the schema")
}

pub(super) fn open_reader(path: &Path) -> Result<Connection, IndexError> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .ctx("opening a reader")?;
    configure(&conn)?;
    conn.execute_batch("PRAGMA query_only = 1")
        .ctx("setting query_only")?;
    Ok(conn)
}
