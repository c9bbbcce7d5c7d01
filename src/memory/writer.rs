//! The statements of one write transaction on the index.

use rusqlite::params;

use super::chunk::Chunk;
use super::cjk;
use super::index::{Context, FileRow, IndexError};

/// The statements of one write transaction.
pub struct Writer<'a> {
    pub(super) tx: &'a rusqlite::Transaction<'a>,
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
                "INSERT INTO chunks (path, line_start, line_end, content, context, cjk, hash)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .ctx("storing a chunk")?;
        let mut added = Vec::with_capacity(files.iter().map(|(_, c)| c.len()).sum());
        for (file, chunks) in files {
            for c in chunks.iter() {
                let pairs = cjk::index_text(&c.text);
                insert
                    .execute(params![
                        file.path,
                        c.line_start as i64,
                        c.line_end as i64,
                        c.text,
                        c.context,
                        pairs,
                        c.key() as i64
                    ])
                    .ctx("storing a chunk")?;
                added.push((self.tx.last_insert_rowid(), c, pairs));
            }
        }
        let mut insert_fts = self
            .tx
            .prepare_cached(
                "INSERT INTO chunks_fts (rowid, content, context, cjk) VALUES (?1, ?2, ?3, ?4)",
            )
            .ctx("indexing a chunk")?;
        for (id, c, pairs) in added {
            insert_fts
                .execute(params![id, c.text, c.context, pairs])
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

    /// Forgets `path` and its chunks (their vectors stay: the same text may come back
    /// under another name, see [`Writer::prune_vectors`]).
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

    /// Stores quantised vectors of `model`, one per chunk text hash.
    pub fn put_vectors(
        &self,
        model: &str,
        vectors: &[(u64, f32, &[i8])],
    ) -> Result<(), IndexError> {
        let mut insert = self
            .tx
            .prepare_cached(
                "INSERT INTO vectors (hash, model, scale, data) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (hash, model) DO UPDATE SET scale = excluded.scale,
                   data = excluded.data",
            )
            .ctx("storing a vector")?;
        for (hash, scale, data) in vectors {
            let bytes: Vec<u8> = data.iter().map(|&v| v as u8).collect();
            insert
                .execute(params![*hash as i64, model, *scale as f64, bytes])
                .ctx("storing a vector")?;
        }
        Ok(())
    }

    /// Deletes the vectors no chunk has the text of any more, and those of every model but
    /// `model`. Returns how many went.
    pub fn prune_vectors(&self, model: &str) -> Result<usize, IndexError> {
        self.tx
            .prepare_cached(
                "DELETE FROM vectors WHERE model <> ?1
                   OR NOT EXISTS (SELECT 1 FROM chunks c WHERE c.hash = vectors.hash)",
            )
            .and_then(|mut s| s.execute([model]))
            .ctx("pruning vectors")
    }

    /// Deletes every vector of `model` (its embedder changed the vectors' size).
    pub fn drop_vectors(&self, model: &str) -> Result<(), IndexError> {
        self.tx
            .prepare_cached("DELETE FROM vectors WHERE model = ?1")
            .and_then(|mut s| s.execute([model]))
            .ctx("dropping vectors")?;
        Ok(())
    }

    fn remove_chunks(&self, path: &str) -> Result<(), IndexError> {
        // An external-content FTS table forgets a row only when told its old text.
        self.tx
            .prepare_cached(
                "INSERT INTO chunks_fts (chunks_fts, rowid, content, context, cjk)
                 SELECT 'delete', id, content, context, cjk FROM chunks WHERE path = ?1",
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
