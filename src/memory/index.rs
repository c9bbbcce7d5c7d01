//! The SQLite side of memory: schema, the writer connection, a pool of reader connections,
//! and rebuilding a database that is corrupt, foreign or gone.
//!
//! The database is a cache (it lives in the cache dir and is rebuilt from the files), so
//! nothing here is ever fatal for the daemon: a bad file is deleted and recreated.
//!
//! WAL mode lets searches read the last committed state while the writer works, and lets
//! the CLI and the daemon use the same file. Connections are opened in `db`; the
//! statements of a write are in `writer`.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use log::warn;
use rusqlite::{Connection, OptionalExtension, params};

use super::db::{Layout, check_header, drop_legacy, open_reader, open_writer, rebuildable};
use super::query::FtsQuery;
use crate::dbfile::{make_private, wal_path};

#[cfg(test)]
use super::chunk::Chunk;

pub use super::db::SCHEMA_VERSION;
pub use super::writer::Writer;

/// Idle reader connections kept for reuse; more may exist while many searches run at once.
const READER_POOL: usize = 4;

/// Keys per `IN (…)` list when reading vectors (well under SQLite's variable limit).
const VECTOR_LOOKUP_KEYS: usize = 250;

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
            IndexError::Sqlite(_, e) => crate::dbfile::is_corruption(e),
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

pub(super) trait Context<T> {
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
    /// The chunk's row id (of the schema 1 table while that is served).
    pub id: i64,
    pub path: String,
    pub line_start: usize,
    pub line_end: usize,
    pub content: String,
    /// FTS5 `bm25()`: negative, lower is better; 0 for a hit found by its vector.
    pub rank: f64,
}

/// A chunk near a hit, for showing the hit with the lines around it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Neighbour {
    pub id: i64,
    pub line_start: usize,
    pub line_end: usize,
    pub content: String,
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
    /// Searches read the schema 1 tables: this build's are being filled (see
    /// [`Layout::Legacy`]).
    legacy: AtomicBool,
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
        let ((writer, layout), opened) = match check_header(path).and_then(|()| open_writer(path)) {
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
                legacy: AtomicBool::new(layout == Layout::Legacy),
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
        crate::dbfile::has_moved(&lock(&self.writer), &self.path)
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
        let (layout, opened) = if discard {
            remove_db_files(&self.path)?;
            let (conn, layout) = open_writer(&self.path)?;
            *writer = conn;
            (layout, Opened::Rebuilt("discarded".into()))
        } else {
            let existed = self.path.exists();
            match check_header(&self.path).and_then(|()| open_writer(&self.path)) {
                Ok((conn, layout)) => {
                    *writer = conn;
                    if existed {
                        (layout, Opened::Existing)
                    } else {
                        (layout, Opened::Created)
                    }
                }
                Err(e) if rebuildable(&e) => {
                    let why = e.to_string();
                    warn!("memory index is unusable ({why}); rebuilding it");
                    remove_db_files(&self.path)?;
                    let (conn, layout) = open_writer(&self.path)?;
                    *writer = conn;
                    (layout, Opened::Rebuilt(why))
                }
                Err(e) => return Err(e),
            }
        };
        self.legacy
            .store(layout == Layout::Legacy, Ordering::SeqCst);
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

    /// True while searches read a schema 1 database's tables, during its migration.
    pub fn is_legacy(&self) -> bool {
        self.legacy.load(Ordering::SeqCst)
    }

    /// Ends a migration: drops the schema 1 tables, so searches read this build's tables
    /// (which a full pass has just filled).
    pub fn finish_migration(&self) -> Result<(), IndexError> {
        let _exclusive = self.swap.write().unwrap_or_else(|p| p.into_inner());
        if !self.is_legacy() {
            return Ok(());
        }
        drop_legacy(&lock(&self.writer))?;
        // Pooled readers hold statements prepared on the dropped tables.
        lock(&self.readers).clear();
        self.generation.fetch_add(1, Ordering::SeqCst);
        self.legacy.store(false, Ordering::SeqCst);
        Ok(())
    }

    /// The best `limit` chunks for an FTS5 `MATCH` expression, best first.
    pub fn search(&self, expr: &str, limit: usize) -> Result<Vec<RawHit>, IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        self.with_reader(|conn| match_chunks(conn, expr, limit, self.is_legacy()))
    }

    /// The best `limit` chunks for a user's query, best first: those holding every term,
    /// or when there are none, those holding any. Also says whether the schema 1 tables
    /// answered (their chunks have no neighbours to show).
    pub fn search_query(
        &self,
        query: &FtsQuery,
        limit: usize,
    ) -> Result<(Vec<RawHit>, bool), IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        let legacy = self.is_legacy();
        let (all, any) = if legacy {
            (query.legacy_all_terms(), query.legacy_any_term())
        } else {
            (query.all_terms(), query.any_term())
        };
        let Some(all) = all else {
            return Ok((Vec::new(), legacy));
        };
        let hits = self.with_reader(|conn| {
            let hits = match_chunks(conn, &all, limit, legacy)?;
            match any {
                Some(any) if hits.is_empty() => match_chunks(conn, &any, limit, legacy),
                _ => Ok(hits),
            }
        })?;
        Ok((hits, legacy))
    }

    /// The chunks whose text hashes to each of `hashes` (in that order; several chunks may
    /// share a text, and a hash whose chunks are gone finds none).
    pub fn chunks_with_hashes(&self, hashes: &[u64]) -> Result<Vec<(u64, RawHit)>, IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, path, line_start, line_end, content FROM chunks
                     WHERE hash = ?1 ORDER BY id",
                )
                .ctx("finding chunks by vector")?;
            let mut out = Vec::new();
            for &hash in hashes {
                let rows = stmt
                    .query_map([hash as i64], |r| {
                        Ok(RawHit {
                            id: r.get(0)?,
                            path: r.get(1)?,
                            line_start: r.get::<_, i64>(2)?.max(1) as usize,
                            line_end: r.get::<_, i64>(3)?.max(1) as usize,
                            content: r.get(4)?,
                            rank: 0.0,
                        })
                    })
                    .ctx("finding chunks by vector")?;
                for row in rows {
                    out.push((hash, row.ctx("finding chunks by vector")?));
                }
            }
            Ok(out)
        })
    }

    /// The chunks of `path` that touch lines `from..=to`, in line order.
    pub fn neighbours(
        &self,
        path: &str,
        from: usize,
        to: usize,
    ) -> Result<Vec<Neighbour>, IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        if self.is_legacy() {
            return Ok(Vec::new());
        }
        self.with_reader(|conn| {
            // `line_start` is indexed with the path; chunks are short, so one starting
            // before `from` and reaching into the range is found by looking a little back.
            let mut stmt = conn
                .prepare_cached(
                    "SELECT id, line_start, line_end, content FROM chunks
                     WHERE path = ?1 AND line_start <= ?3 AND line_start >= ?2 - 200
                       AND line_end >= ?2
                     ORDER BY line_start, id",
                )
                .ctx("reading neighbouring chunks")?;
            let rows = stmt
                .query_map(params![path, from as i64, to as i64], |r| {
                    Ok(Neighbour {
                        id: r.get(0)?,
                        line_start: r.get::<_, i64>(1)?.max(1) as usize,
                        line_end: r.get::<_, i64>(2)?.max(1) as usize,
                        content: r.get(3)?,
                    })
                })
                .ctx("reading neighbouring chunks")?;
            rows.collect::<Result<Vec<_>, _>>()
                .ctx("reading neighbouring chunks")
        })
    }

    /// The text hash of every chunk (repeated when chunks share a text).
    pub fn chunk_hashes(&self) -> Result<Vec<u64>, IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT hash FROM chunks")
                .ctx("listing chunk hashes")?;
            let rows = stmt
                .query_map([], |r| Ok(r.get::<_, i64>(0)? as u64))
                .ctx("listing chunk hashes")?;
            rows.collect::<Result<Vec<_>, _>>()
                .ctx("listing chunk hashes")
        })
    }

    /// What an embedder reads for each of `hashes` that some chunk still has.
    pub fn embed_texts(&self, hashes: &[u64]) -> Result<Vec<(u64, String)>, IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT context, content FROM chunks WHERE hash = ?1 LIMIT 1")
                .ctx("reading chunk texts")?;
            let mut out = Vec::with_capacity(hashes.len());
            for &hash in hashes {
                let row: Option<(String, String)> = stmt
                    .query_row([hash as i64], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
                    .ctx("reading chunk texts")?;
                if let Some((context, content)) = row {
                    out.push((hash, super::chunk::embed_text(&context, &content)));
                }
            }
            Ok(out)
        })
    }

    /// Calls `f` with every stored vector of `model`: its text hash and bytes.
    pub fn for_each_vector(
        &self,
        model: &str,
        mut f: impl FnMut(u64, &[u8]),
    ) -> Result<(), IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        self.with_reader(|conn| {
            let mut stmt = conn
                .prepare_cached("SELECT hash, data FROM vectors WHERE model = ?1")
                .ctx("loading vectors")?;
            let mut rows = stmt.query([model]).ctx("loading vectors")?;
            while let Some(row) = rows.next().ctx("loading vectors")? {
                let hash = row.get::<_, i64>(0).ctx("loading vectors")? as u64;
                let data = row.get_ref(1).ctx("loading vectors")?;
                if let rusqlite::types::ValueRef::Blob(bytes) = data {
                    f(hash, bytes);
                }
            }
            Ok(())
        })
    }

    /// The stored vectors of `model` for those of `hashes` that have one: (hash, scale,
    /// bytes).
    pub fn vectors_of(
        &self,
        model: &str,
        hashes: &[u64],
    ) -> Result<Vec<(u64, f32, Vec<i8>)>, IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        self.with_reader(|conn| {
            let mut out = Vec::with_capacity(hashes.len());
            // Few statements with many keys each: one lookup per candidate costs a
            // statement step; a few hundred keys in one IN list cost one.
            for group in hashes.chunks(VECTOR_LOOKUP_KEYS) {
                let marks: Vec<String> = (2..group.len() + 2).map(|i| format!("?{i}")).collect();
                let sql = format!(
                    "SELECT hash, scale, data FROM vectors WHERE model = ?1 AND hash IN ({})",
                    marks.join(", ")
                );
                let mut stmt = conn.prepare_cached(&sql).ctx("reading vectors")?;
                let mut params: Vec<rusqlite::types::Value> = Vec::with_capacity(group.len() + 1);
                params.push(model.to_string().into());
                params.extend(
                    group
                        .iter()
                        .map(|&h| rusqlite::types::Value::Integer(h as i64)),
                );
                let mut rows = stmt
                    .query(rusqlite::params_from_iter(params))
                    .ctx("reading vectors")?;
                while let Some(row) = rows.next().ctx("reading vectors")? {
                    let hash = row.get::<_, i64>(0).ctx("reading vectors")? as u64;
                    let scale = row.get::<_, f64>(1).ctx("reading vectors")? as f32;
                    if let rusqlite::types::ValueRef::Blob(bytes) =
                        row.get_ref(2).ctx("reading vectors")?
                    {
                        out.push((hash, scale, bytes.iter().map(|&b| b as i8).collect()));
                    }
                }
            }
            Ok(out)
        })
    }

    /// Number of files and chunks, counted in the database.
    pub fn count(&self) -> Result<(u64, u64), IndexError> {
        let _shared = self.swap.read().unwrap_or_else(|p| p.into_inner());
        self.with_reader(|conn| {
            conn.query_row(
                "SELECT (SELECT count(*) FROM files), (SELECT count(*) FROM chunks)",
                [],
                |r| Ok((r.get::<_, i64>(0)? as u64, r.get::<_, i64>(1)? as u64)),
            )
            .ctx("counting")
        })
    }

    /// Runs `f` on a pooled reader connection.
    fn with_reader<T>(
        &self,
        f: impl FnOnce(&Connection) -> Result<T, IndexError>,
    ) -> Result<T, IndexError> {
        let reader = self.reader()?;
        let result = f(&reader.conn);
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

/// Runs one FTS5 `MATCH` on the live tables, best `limit` first.
fn match_chunks(
    conn: &Connection,
    expr: &str,
    limit: usize,
    legacy: bool,
) -> Result<Vec<RawHit>, IndexError> {
    // `ORDER BY rank ... LIMIT` inside the FTS query lets FTS5 keep only the top rows
    // while scoring, instead of sorting every match. The BM25 weights are for the chunk's
    // text, its headings and its character pairs: headings weigh less, being shared by
    // every chunk of a section.
    let sql = if legacy {
        "SELECT c.id, c.path, c.line_start, c.line_end, c.content, f.rank
         FROM (SELECT rowid, rank FROM v1_chunks_fts WHERE v1_chunks_fts MATCH ?1
               ORDER BY rank LIMIT ?2) AS f
         JOIN v1_chunks AS c ON c.id = f.rowid
         ORDER BY f.rank"
    } else {
        const SQL: &str = concat!(
            "SELECT c.id, c.path, c.line_start, c.line_end, c.content, f.rank
             FROM (SELECT rowid, rank FROM chunks_fts WHERE chunks_fts MATCH ?1 AND rank MATCH '",
            "bm25(1.0, 0.5, 1.0)",
            "' ORDER BY rank LIMIT ?2) AS f
             JOIN chunks AS c ON c.id = f.rowid
             ORDER BY f.rank"
        );
        SQL
    };
    let mut stmt = conn.prepare_cached(sql).ctx("preparing a search")?;
    let rows = stmt
        .query_map(params![expr, limit as i64], |r| {
            Ok(RawHit {
                id: r.get(0)?,
                path: r.get(1)?,
                line_start: r.get::<_, i64>(2)?.max(1) as usize,
                line_end: r.get::<_, i64>(3)?.max(1) as usize,
                content: r.get(4)?,
                rank: r.get(5)?,
            })
        })
        .ctx("searching")?;
    rows.collect::<Result<Vec<_>, _>>().ctx("searching")
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic while holding the lock leaves a connection whose open transaction was rolled
    // back on unwind: still usable.
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn remove_db_files(db: &Path) -> Result<(), IndexError> {
    crate::dbfile::remove(db).map_err(|e| IndexError::Io(e.to_string()))
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
            context: String::new(),
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
