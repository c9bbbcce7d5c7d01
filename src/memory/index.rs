//! The SQLite side of memory: schema, the writer connection, a pool of reader connections,
//! and rebuilding a database that is corrupt, foreign or gone.
//!
//! The database is a cache (it lives in the cache dir and is rebuilt from the files), so
//! nothing here is ever fatal for the daemon: a bad file is deleted and recreated.
//!
//! WAL mode lets searches read the last committed state while the writer works, and lets
//! the CLI and the daemon use the same file. Every connection keeps its WAL file on close
//! (`PERSIST_WAL`): SQLite otherwise deletes `-wal`/`-shm` *by name* when the last
//! connection to a database closes, and a connection still open on a replaced (rebuilt or
//! deleted) database would then delete the new database's files.

use std::fs;
use std::os::raw::c_int;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};
use std::time::Duration;

use log::warn;
use rusqlite::{Connection, ErrorCode, FileControl, OpenFlags, OptionalExtension, params};

use super::chunk::Chunk;

/// Bumped whenever the schema or what is stored changes; a database with another version
/// is rebuilt.
pub const SCHEMA_VERSION: i32 = 1;

/// How long a connection waits for another writer (the CLI while the daemon runs, or the
/// other way round) before giving up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// Idle reader connections kept for reuse; more may exist while many searches run at once.
const READER_POOL: usize = 4;

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

/// Why the index could not do something.
#[derive(Debug)]
pub enum IndexError {
    /// SQLite failed; the string says what we were doing.
    Sqlite(&'static str, rusqlite::Error),
    /// A file operation on the database files failed.
    Io(String),
}

impl IndexError {
    /// True when the database file itself is damaged and should be rebuilt.
    pub fn is_corruption(&self) -> bool {
        match self {
            IndexError::Sqlite(_, e) => is_corruption(e),
            IndexError::Io(_) => false,
        }
    }
}

impl std::fmt::Display for IndexError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IndexError::Sqlite(what, e) => write!(f, "memory index: {what}: {e}"),
            IndexError::Io(e) => write!(f, "memory index: {e}"),
        }
    }
}

impl std::error::Error for IndexError {}

fn is_corruption(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase)
    )
}

trait Context<T> {
    fn ctx(self, what: &'static str) -> Result<T, IndexError>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, what: &'static str) -> Result<T, IndexError> {
        self.map_err(|e| IndexError::Sqlite(what, e))
    }
}

/// How [`MemoryIndex::open`] found the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Opened {
    /// It was there and usable.
    Existing,
    /// There was none; an empty one was created.
    Created,
    /// It was unusable (the reason given) and was replaced by an empty one.
    Rebuilt(String),
}

/// One row of the `files` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileRow {
    pub path: String,
    pub size: u64,
    pub mtime_ns: i64,
    pub hash: u64,
    pub lines: u64,
    pub chunks: u64,
}

/// A search match before scoring and trimming.
#[derive(Debug, Clone)]
pub struct RawHit {
    pub path: String,
    pub line_start: usize,
    pub line_end: usize,
    pub content: String,
    /// FTS5 `bm25()`: negative, lower is better.
    pub rank: f64,
}

/// The memory index database.
pub struct MemoryIndex {
    path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<(u64, Connection)>>,
    /// Bumped when the database file is replaced; pooled readers of an older one are
    /// dropped instead of reused.
    generation: AtomicU64,
    /// Searches hold it shared; replacing the database holds it exclusively, so the swap
    /// is never seen half done.
    swap: RwLock<()>,
}

impl MemoryIndex {
    /// Opens the database at `path`, creating it (and its folder) when missing and
    /// rebuilding it, with a warning, when it is corrupt, not a database, or of another
    /// schema version.
    pub fn open(path: &Path) -> Result<(MemoryIndex, Opened), IndexError> {
        if let Some(dir) = path.parent() {
            crate::paths::create_private_dir(dir).map_err(|e| IndexError::Io(e.to_string()))?;
        }
        let existed = path.exists();
        let (writer, opened) = match check_header(path).and_then(|()| open_writer(path)) {
            Ok(conn) if existed => (conn, Opened::Existing),
            Ok(conn) => (conn, Opened::Created),
            Err(e) if rebuildable(&e) => {
                let why = e.to_string();
                warn!(
                    "memory index {} is unusable ({why}); rebuilding it from the workspace",
                    path.display()
                );
                remove_db_files(path)?;
                (open_writer(path)?, Opened::Rebuilt(why))
            }
            Err(e) => return Err(e),
        };
        make_private(path);
        Ok((
            MemoryIndex {
                path: path.to_path_buf(),
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
                generation: AtomicU64::new(0),
                swap: RwLock::new(()),
            },
            opened,
        ))
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes the database takes on disk, WAL included.
    pub fn size_bytes(&self) -> u64 {
        [self.path.clone(), wal_path(&self.path)]
            .iter()
            .filter_map(|p| fs::metadata(p).ok())
            .map(|m| m.len())
            .sum()
    }

    /// True when the database file was deleted or replaced (by a user cleaning the cache, or
    /// by another process that rebuilt it) since this index opened it.
    pub fn file_replaced(&self) -> bool {
        let conn = lock(&self.writer);
        let mut moved: c_int = 0;
        match conn.file_control(Some("main"), FileControl::HasMoved(&mut moved)) {
            Ok(()) => moved != 0,
            Err(_) => !self.path.exists(),
        }
    }

    /// True when the file no longer starts like an SQLite database (overwritten in place,
    /// which SQLite does not notice while the pages it needs are cached).
    pub fn file_damaged(&self) -> bool {
        check_header(&self.path).is_err()
    }

    /// Reopens the database at the same path: used when the file was replaced. With
    /// `discard`, the current file is deleted first and an empty database created (a
    /// corrupt one is never reused).
    pub fn reopen(&self, discard: bool) -> Result<Opened, IndexError> {
        let _exclusive = self.swap.write().unwrap_or_else(|p| p.into_inner());
        let mut writer = lock(&self.writer);
        lock(&self.readers).clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
        // Close ours before touching the files.
        let old = std::mem::replace(
            &mut *writer,
            Connection::open_in_memory().ctx("opening a placeholder connection")?,
        );
        drop(old);
        let opened = if discard {
            remove_db_files(&self.path)?;
            *writer = open_writer(&self.path)?;
            Opened::Rebuilt("discarded".into())
        } else {
            let existed = self.path.exists();
            match check_header(&self.path).and_then(|()| open_writer(&self.path)) {
                Ok(conn) => {
                    *writer = conn;
                    if existed {
                        Opened::Existing
                    } else {
                        Opened::Created
                    }
                }
                Err(e) if rebuildable(&e) => {
                    let why = e.to_string();
                    warn!("memory index is unusable ({why}); rebuilding it");
                    remove_db_files(&self.path)?;
                    *writer = open_writer(&self.path)?;
                    Opened::Rebuilt(why)
                }
                Err(e) => return Err(e),
            }
        };
        make_private(&self.path);
        Ok(opened)
    }

    /// Every row of the `files` table.
    pub fn load_files(&self) -> Result<Vec<FileRow>, IndexError> {
        let conn = lock(&self.writer);
        let mut stmt = conn
            .prepare("SELECT path, size, mtime_ns, hash, lines, chunks FROM files")
            .ctx("reading the file list")?;
        let rows = stmt
            .query_map([], |r| {
                Ok(FileRow {
                    path: r.get(0)?,
                    size: r.get::<_, i64>(1)? as u64,
                    mtime_ns: r.get(2)?,
                    hash: r.get::<_, i64>(3)? as u64,
                    lines: r.get::<_, i64>(4)? as u64,
                    chunks: r.get::<_, i64>(5)? as u64,
                })
            })
            .ctx("reading the file list")?;
        rows.collect::<Result<Vec<_>, _>>()
            .ctx("reading the file list")
    }

    /// A value from the `meta` table.
    pub fn meta(&self, key: &str) -> Result<Option<String>, IndexError> {
        lock(&self.writer)
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .ctx("reading metadata")
    }

    /// Runs `f` in one write transaction, committed when it returns `Ok`.
    pub fn write<T>(
        &self,
        f: impl FnOnce(&Writer<'_>) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let mut conn = lock(&self.writer);
        let tx = conn
            .transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)
            .ctx("starting a write")?;
        let value = f(&Writer { tx: &tx })?;
        tx.commit().ctx("committing")?;
        Ok(value)
    }

    /// The best `limit` chunks for an FTS5 `MATCH` expression, best first.
    pub fn search(&self, expr: &str, limit: usize) -> Result<Vec<RawHit>, IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        let reader = self.reader()?;
        let result = (|| {
            // `ORDER BY rank ... LIMIT` inside the FTS query lets FTS5 keep only the top
            // rows while scoring, instead of sorting every match.
            let mut stmt = reader
                .conn
                .prepare_cached(
                    "SELECT c.path, c.line_start, c.line_end, c.content, f.rank
                     FROM (SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ?1
                           ORDER BY rank LIMIT ?2) AS f
                     JOIN chunks AS c ON c.id = f.rowid
                     ORDER BY f.rank",
                )
                .ctx("preparing a search")?;
            let rows = stmt
                .query_map(params![expr, limit as i64], |r| {
                    Ok(RawHit {
                        path: r.get(0)?,
                        line_start: r.get::<_, i64>(1)?.max(1) as usize,
                        line_end: r.get::<_, i64>(2)?.max(1) as usize,
                        content: r.get(3)?,
                        rank: r.get(4)?,
                    })
                })
                .ctx("searching")?;
            rows.collect::<Result<Vec<_>, _>>().ctx("searching")
        })();
        self.give_back(reader);
        result
    }

    /// Number of chunks and files, counted in the database.
    pub fn count(&self) -> Result<(u64, u64), IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        let reader = self.reader()?;
        let result = reader
            .conn
            .query_row(
                "SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM chunks)",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .ctx("counting");
        self.give_back(reader);
        result
    }

    fn reader(&self) -> Result<Reader, IndexError> {
        let generation = self.generation.load(Ordering::SeqCst);
        let mut pool = lock(&self.readers);
        while let Some((g, conn)) = pool.pop() {
            if g == generation {
                return Ok(Reader { generation, conn });
            }
        }
        drop(pool);
        Ok(Reader {
            generation,
            conn: open_reader(&self.path)?,
        })
    }

    fn give_back(&self, reader: Reader) {
        if reader.generation == self.generation.load(Ordering::SeqCst) {
            let mut pool = lock(&self.readers);
            if pool.len() < READER_POOL {
                pool.push((reader.generation, reader.conn));
            }
        }
    }
}

struct Reader {
    generation: u64,
    conn: Connection,
}

/// The statements of one write transaction.
pub struct Writer<'a> {
    tx: &'a rusqlite::Transaction<'a>,
}

impl Writer<'_> {
    /// Replaces everything indexed for each file with its new chunks.
    ///
    /// The FTS inserts come last, back to back. FTS5 writes its pending terms out as a new
    /// segment whenever another statement of the transaction opens a statement savepoint
    /// (an upsert, an `INSERT ... SELECT`); interleaved with the per-file statements, a
    /// full index would write one tiny segment per file and then spend most of its time
    /// merging them (measured: 1.8x slower).
    pub fn replace_files(
        &self,
        files: &[(&FileRow, &[Chunk])],
        now: i64,
    ) -> Result<(), IndexError> {
        for (file, _) in files {
            self.remove_chunks(&file.path)?;
            self.upsert_file(file, now)?;
        }
        let mut insert = self
            .tx
            .prepare_cached(
                "INSERT INTO chunks (path, line_start, line_end, content) VALUES (?1, ?2, ?3, ?4)",
            )
            .ctx("storing a chunk")?;
        let mut added = Vec::with_capacity(files.iter().map(|(_, c)| c.len()).sum());
        for (file, chunks) in files {
            for c in chunks.iter() {
                insert
                    .execute(params![
                        file.path,
                        c.line_start as i64,
                        c.line_end as i64,
                        c.text
                    ])
                    .ctx("storing a chunk")?;
                added.push((self.tx.last_insert_rowid(), c.text.as_str()));
            }
        }
        let mut insert_fts = self
            .tx
            .prepare_cached("INSERT INTO chunks_fts (rowid, content) VALUES (?1, ?2)")
            .ctx("indexing a chunk")?;
        for (id, text) in added {
            insert_fts
                .execute(params![id, text])
                .ctx("indexing a chunk")?;
        }
        Ok(())
    }

    /// Records new size and mtime for a file whose content did not change.
    pub fn touch_file(&self, path: &str, size: u64, mtime_ns: i64) -> Result<(), IndexError> {
        self.tx
            .prepare_cached("UPDATE files SET size = ?2, mtime_ns = ?3 WHERE path = ?1")
            .and_then(|mut s| s.execute(params![path, size as i64, mtime_ns]))
            .ctx("updating a file's metadata")?;
        Ok(())
    }

    /// Forgets `path` and its chunks.
    pub fn remove_file(&self, path: &str) -> Result<(), IndexError> {
        self.remove_chunks(path)?;
        self.tx
            .prepare_cached("DELETE FROM files WHERE path = ?1")
            .and_then(|mut s| s.execute([path]))
            .ctx("removing a file")?;
        Ok(())
    }

    pub fn set_meta(&self, key: &str, value: &str) -> Result<(), IndexError> {
        self.tx
            .prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )
            .and_then(|mut s| s.execute([key, value]))
            .ctx("writing metadata")?;
        Ok(())
    }

    fn remove_chunks(&self, path: &str) -> Result<(), IndexError> {
        // An external-content FTS table forgets a row only when told its old text.
        self.tx
            .prepare_cached(
                "INSERT INTO chunks_fts (chunks_fts, rowid, content)
                 SELECT 'delete', id, content FROM chunks WHERE path = ?1",
            )
            .and_then(|mut s| s.execute([path]))
            .ctx("unindexing old chunks")?;
        self.tx
            .prepare_cached("DELETE FROM chunks WHERE path = ?1")
            .and_then(|mut s| s.execute([path]))
            .ctx("deleting old chunks")?;
        Ok(())
    }

    fn upsert_file(&self, f: &FileRow, now: i64) -> Result<(), IndexError> {
        self.tx
            .prepare_cached(
                "INSERT INTO files (path, size, mtime_ns, hash, lines, chunks, indexed_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
                 ON CONFLICT (path) DO UPDATE SET size = excluded.size,
                   mtime_ns = excluded.mtime_ns, hash = excluded.hash, lines = excluded.lines,
                   chunks = excluded.chunks, indexed_at = excluded.indexed_at",
            )
            .and_then(|mut s| {
                s.execute(params![
                    f.path,
                    f.size as i64,
                    f.mtime_ns,
                    f.hash as i64,
                    f.lines as i64,
                    f.chunks as i64,
                    now
                ])
            })
            .ctx("recording a file")?;
        Ok(())
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a connection whose open transaction was rolled
    // back on unwind: still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn wal_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-wal");
    PathBuf::from(name)
}

fn shm_path(db: &Path) -> PathBuf {
    let mut name = db.as_os_str().to_owned();
    name.push("-shm");
    PathBuf::from(name)
}

/// Memory is personal: the database and its WAL files are the owner's alone, whatever the
/// umask (SQLite gives `-wal` and `-shm` the database file's mode).
fn make_private(db: &Path) {
    for p in [db.to_path_buf(), wal_path(db), shm_path(db)] {
        let _ = crate::paths::make_private(&p);
    }
}

fn remove_db_files(db: &Path) -> Result<(), IndexError> {
    for p in [db.to_path_buf(), wal_path(db), shm_path(db)] {
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                return Err(IndexError::Io(format!(
                    "cannot remove {}: {e}",
                    p.display()
                )));
            }
        }
    }
    Ok(())
}

/// Errors that a fresh database fixes: damage, a foreign file, an old schema. Not: a
/// folder we may not write, a lock held too long by another process.
fn rebuildable(e: &IndexError) -> bool {
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
fn check_header(path: &Path) -> Result<(), IndexError> {
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

fn open_writer(path: &Path) -> Result<Connection, IndexError> {
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

fn open_reader(path: &Path) -> Result<Connection, IndexError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_db(tag: &str) -> (PathBuf, PathBuf) {
        let dir = std::env::temp_dir().join(format!(
            "lgpt-index-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        let db = dir.join("index.sqlite");
        (dir, db)
    }

    fn row(path: &str, chunks: u64) -> FileRow {
        FileRow {
            path: path.into(),
            size: 10,
            mtime_ns: 1,
            hash: u64::MAX,
            lines: 3,
            chunks,
        }
    }

    fn chunk(text: &str) -> Chunk {
        Chunk {
            line_start: 1,
            line_end: 2,
            text: text.into(),
        }
    }

    #[test]
    fn write_search_replace_remove() {
        let (dir, db) = temp_db("basic");
        let (index, opened) = MemoryIndex::open(&db).unwrap();
        assert_eq!(opened, Opened::Created);
        index
            .write(|w| {
                w.replace_files(
                    &[
                        (&row("a.md", 2), &[chunk("alpha beta"), chunk("gamma")]),
                        (&row("b.md", 1), &[chunk("beta delta")]),
                    ],
                    5,
                )
            })
            .unwrap();
        assert_eq!(index.search("\"beta\"", 10).unwrap().len(), 2);
        assert_eq!(index.count().unwrap(), (2, 3));
        let files = index.load_files().unwrap();
        assert_eq!(files[0], row("a.md", 2), "u64 hash survives the i64 column");

        index
            .write(|w| w.replace_files(&[(&row("a.md", 1), &[chunk("omega")])], 6))
            .unwrap();
        assert_eq!(index.search("\"alpha\"", 10).unwrap().len(), 0);
        assert_eq!(index.search("\"omega\"", 10).unwrap().len(), 1);
        index.write(|w| w.remove_file("b.md")).unwrap();
        assert_eq!(index.search("\"beta\"", 10).unwrap().len(), 0);
        assert_eq!(index.count().unwrap(), (1, 1));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn garbage_file_is_rebuilt() {
        let (dir, db) = temp_db("garbage");
        fs::write(&db, vec![0x5a; 64 * 1024]).unwrap();
        fs::write(wal_path(&db), b"junk").unwrap();
        let (index, opened) = MemoryIndex::open(&db).unwrap();
        assert!(matches!(opened, Opened::Rebuilt(_)), "{opened:?}");
        assert_eq!(index.count().unwrap(), (0, 0));
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn other_schema_version_is_rebuilt() {
        let (dir, db) = temp_db("version");
        {
            let conn = Connection::open(&db).unwrap();
            conn.execute_batch("CREATE TABLE t(x); PRAGMA user_version = 99;")
                .unwrap();
        }
        let (_index, opened) = MemoryIndex::open(&db).unwrap();
        assert!(matches!(opened, Opened::Rebuilt(_)), "{opened:?}");
        let (_again, opened) = MemoryIndex::open(&db).unwrap();
        assert_eq!(opened, Opened::Existing);
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn foreign_database_without_version_is_rebuilt() {
        let (dir, db) = temp_db("foreign");
        Connection::open(&db)
            .unwrap()
            .execute_batch("CREATE TABLE other(x);")
            .unwrap();
        let (_index, opened) = MemoryIndex::open(&db).unwrap();
        assert!(matches!(opened, Opened::Rebuilt(_)), "{opened:?}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn deleted_database_is_noticed_and_reopened() {
        let (dir, db) = temp_db("deleted");
        let (index, _) = MemoryIndex::open(&db).unwrap();
        index
            .write(|w| w.replace_files(&[(&row("a.md", 1), &[chunk("alpha")])], 1))
            .unwrap();
        assert!(!index.file_replaced());
        remove_db_files(&db).unwrap();
        assert!(index.file_replaced());
        assert_eq!(index.reopen(false).unwrap(), Opened::Created);
        assert!(!index.file_replaced());
        assert_eq!(index.count().unwrap(), (0, 0));
        assert!(db.exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn readers_see_committed_state_while_a_write_is_open() {
        let (dir, db) = temp_db("wal");
        let (index, _) = MemoryIndex::open(&db).unwrap();
        index
            .write(|w| w.replace_files(&[(&row("a.md", 1), &[chunk("alpha")])], 1))
            .unwrap();
        index
            .write(|w| {
                w.replace_files(&[(&row("b.md", 1), &[chunk("alpha again")])], 1)?;
                // Mid-transaction, a search answers at once with the committed state.
                assert_eq!(index.search("\"alpha\"", 10)?.len(), 1);
                Ok(())
            })
            .unwrap();
        assert_eq!(index.search("\"alpha\"", 10).unwrap().len(), 2);
        fs::remove_dir_all(&dir).unwrap();
    }
}
