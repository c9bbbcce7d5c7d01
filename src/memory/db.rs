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

/// Bumped whenever the schema or what is stored changes. A database of
/// `LEGACY_VERSION` is migrated in place (see `Layout::Legacy`); any other version is
/// rebuilt.
pub const SCHEMA_VERSION: i32 = 2;

/// The schema migrated from in place: version 1, one FTS column of 1,600-character chunks.
pub const LEGACY_VERSION: i32 = 1;

/// Which tables a database opened with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    /// Only this build's tables.
    Current,
    /// A schema 1 database being migrated: its tables, renamed `v1_*`, keep answering
    /// searches while this build's tables are filled by a full pass; then they are dropped.
    /// (The index is a cache and could simply be rebuilt, but search must not go blind
    /// while a large workspace is indexed again.)
    Legacy,
}

/// How long a connection waits for another writer (the CLI while the daemon runs, or the
/// other way round) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// After a checkpoint the kept WAL file is cut back to this size.
const WAL_SIZE_LIMIT: i64 = 4 * 1024 * 1024;

// Chunk text is stored once, in `chunks`; the FTS table indexes it as an external-content
// table. (A contentless-delete table would do the same, but needs SQLite 3.43; external
// content keeps the database readable by the `sqlite3` shipped with older distributions,
// which is how a user inspects it.)
//
// `hash` is the xxh3 of the text a chunk is embedded as (its headings and its text, not its
// path): vectors are keyed by it and the model, so unchanged text is never embedded twice
// and a renamed file costs nothing. `cjk` holds the character pairs of text in scripts
// written without spaces (see `cjk.rs`).
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
    content TEXT NOT NULL,
    context TEXT NOT NULL,
    cjk TEXT NOT NULL,
    hash INTEGER NOT NULL
);
CREATE INDEX chunks_path ON chunks(path, line_start);
CREATE INDEX chunks_hash ON chunks(hash);
CREATE VIRTUAL TABLE chunks_fts USING fts5(
    content,
    context,
    cjk,
    content = 'chunks',
    content_rowid = 'id',
    tokenize = 'porter unicode61 remove_diacritics 2'
);
CREATE TABLE vectors (
    hash INTEGER NOT NULL,
    model TEXT NOT NULL,
    scale REAL NOT NULL,
    data BLOB NOT NULL,
    PRIMARY KEY (hash, model)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
) WITHOUT ROWID;
";

/// Moves schema 1's tables out of the way (their FTS table keeps its index and still
/// answers `MATCH … ORDER BY rank`, which reads no content), so this build's tables take
/// the usual names.
const SET_LEGACY_ASIDE: &str = "
ALTER TABLE chunks_fts RENAME TO v1_chunks_fts;
ALTER TABLE chunks RENAME TO v1_chunks;
ALTER TABLE files RENAME TO v1_files;
DROP INDEX IF EXISTS chunks_path;
";

/// Schema 1's tables, dropped once this build's are filled.
const LEGACY_TABLES: &str = "
DROP TABLE IF EXISTS v1_chunks_fts;
DROP TABLE IF EXISTS v1_chunks;
DROP TABLE IF EXISTS v1_files;
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

pub(super) fn open_writer(path: &Path) -> Result<(Connection, Layout), IndexError> {
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
    let layout = match user_version(&conn)? {
        0 => {
            create_schema(&conn)?;
            Layout::Current
        }
        LEGACY_VERSION => migrate(&conn)?,
        SCHEMA_VERSION if has_table(&conn, "v1_chunks_fts")? => Layout::Legacy,
        SCHEMA_VERSION => Layout::Current,
        version => {
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
    };
    // Touching every table catches a damaged schema at open rather than at the first search.
    conn.query_row(
        "SELECT (SELECT count(*) FROM meta), (SELECT rowid FROM chunks_fts LIMIT 1),
                (SELECT 1 FROM files LIMIT 1), (SELECT hash FROM chunks LIMIT 1),
                (SELECT 1 FROM vectors LIMIT 1)",
        [],
        |_| Ok(()),
    )
    .ctx("checking the schema")?;
    Ok((conn, layout))
}

/// Starts the migration of a schema 1 database: its tables are set aside (and checked:
/// damaged ones make the database rebuilt instead) and this build's created, in one
/// transaction, so another process opening it meanwhile sees one or the other.
fn migrate(conn: &Connection) -> Result<Layout, IndexError> {
    let tx = conn.unchecked_transaction().ctx("starting the migration")?;
    if user_version(&tx)? == LEGACY_VERSION {
        tx.query_row(
            "SELECT (SELECT rowid FROM chunks_fts LIMIT 1), (SELECT 1 FROM files LIMIT 1),
                    (SELECT 1 FROM chunks LIMIT 1)",
            [],
            |_| Ok(()),
        )
        .ctx("checking the schema 1 tables")?;
        tx.execute_batch(SET_LEGACY_ASIDE)
            .ctx("setting the schema 1 tables aside")?;
        tx.execute_batch(SCHEMA).ctx("creating the schema")?;
        tx.pragma_update(None, "user_version", SCHEMA_VERSION)
            .ctx("writing the schema version")?;
    }
    tx.commit().ctx("starting the migration")?;
    Ok(Layout::Legacy)
}

fn has_table(conn: &Connection, name: &str) -> Result<bool, IndexError> {
    conn.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |r| r.get::<_, i64>(0),
    )
    .map(|n| n > 0)
    .ctx("reading the schema")
}

fn user_version(conn: &Connection) -> Result<i32, IndexError> {
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .ctx("reading the schema version")
}

/// Drops schema 1's tables: the end of a migration, once a full pass filled the new ones.
pub(super) fn drop_legacy(conn: &Connection) -> Result<(), IndexError> {
    conn.execute_batch(&format!("BEGIN IMMEDIATE; {LEGACY_TABLES} COMMIT;"))
        .ctx("dropping the schema 1 tables")
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
