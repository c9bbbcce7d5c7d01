//! Index passes: compare the workspace with what the index last saw, read and chunk what
//! changed, and write it in batched transactions.

use std::collections::{HashMap, HashSet};
use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use log::{info, warn};

use super::chunk::{self, Chunk};
use super::index::{FileRow, IndexError};
use super::workspace::{self, MdFile};
use super::{BATCH_BYTES, BATCH_FILES, Memory, MemoryError, ReindexReport, lock, now_seconds};

/// What the index last saw of a file.
#[derive(Debug, Clone, Copy)]
pub(super) struct FileState {
    pub size: u64,
    pub mtime_ns: i64,
    /// `None`: seen but not indexed (unreadable or too large); retried when its stat changes.
    pub hash: Option<u64>,
    pub lines: u64,
    pub chunks: u64,
}

/// What a pass decided to do with one file.
enum Action {
    Replace(FileRow, Vec<Chunk>),
    /// Same content under a new mtime: record the stat only.
    Touch(MdFile),
    /// Gone, or no longer indexable.
    Remove(String),
    /// Not indexed (a warning was logged); remembered so it is not retried every scan.
    Skip(MdFile),
}

impl Memory {
    /// Brings the index up to date with the workspace now. With `force`, every file is
    /// re-read and re-chunked even if unchanged. `progress` is called with (files done,
    /// files to do) as changed files are indexed.
    pub fn reindex(
        &self,
        force: bool,
        progress: Option<&mut dyn FnMut(usize, usize)>,
    ) -> Result<ReindexReport, MemoryError> {
        self.sync(force, progress, &AtomicBool::new(false))
    }

    /// Re-indexes one file right after the daemon itself wrote (or deleted) it; `path` is
    /// absolute, inside the workspace. Paths the index ignores (not `.md`, hidden, behind a
    /// symlink) are accepted and do nothing. Waits for a running scan to finish.
    pub fn refresh_file(&self, path: &Path) -> Result<(), MemoryError> {
        let rel_path = path
            .strip_prefix(&self.workspace)
            .map_err(|_| MemoryError::OutsideWorkspace(path.to_path_buf()))?;
        let Some(rel) = rel_path.to_str().map(str::to_string) else {
            return Ok(());
        };
        if !workspace::is_indexable_rel(&rel) || self.behind_symlink(rel_path) {
            return Ok(());
        }
        let _pass = lock(&self.pass);
        self.check_database()?;
        let action = match fs::symlink_metadata(path) {
            Ok(meta) if meta.is_file() => {
                let file = MdFile {
                    rel: rel.clone(),
                    abs: path.to_path_buf(),
                    size: meta.len(),
                    mtime_ns: workspace::mtime_ns(&meta),
                };
                let prev = lock(&self.tracked).get(&rel).copied();
                self.prepare(&file, prev, false)
            }
            Ok(_) => Action::Remove(rel.clone()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Action::Remove(rel.clone()),
            Err(e) => {
                return Err(MemoryError::Workspace(format!("{}: {e}", path.display())));
            }
        };
        if matches!(&action, Action::Remove(r) if !lock(&self.tracked).contains_key(r)) {
            return Ok(());
        }
        self.apply(vec![action], now_seconds())?;
        Ok(())
    }

    /// Loads the index's view of the files, so an unchanged file is recognised by stat.
    pub(super) fn load_state(&self) -> Result<(), MemoryError> {
        let rows = self.index.load_files()?;
        let mut tracked = lock(&self.tracked);
        tracked.clear();
        for r in &rows {
            tracked.insert(
                r.path.clone(),
                FileState {
                    size: r.size,
                    mtime_ns: r.mtime_ns,
                    hash: Some(r.hash),
                    lines: r.lines,
                    chunks: r.chunks,
                },
            );
        }
        self.recount(&tracked);
        drop(tracked);
        let chunking = self.index.meta("chunking")?;
        self.rechunk.store(
            !rows.is_empty() && chunking.as_deref() != Some(self.chunking_key().as_str()),
            Ordering::SeqCst,
        );
        let last = self
            .index
            .meta("last_indexed")?
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        self.last_indexed.store(last, Ordering::Relaxed);
        Ok(())
    }

    fn chunking_key(&self) -> String {
        format!("{}/{}", self.params.chunk_chars, self.params.overlap_lines)
    }

    fn recount(&self, tracked: &HashMap<String, FileState>) {
        let indexed = tracked.values().filter(|s| s.hash.is_some());
        let (files, chunks) = indexed.fold((0, 0), |(f, c), s| (f + 1, c + s.chunks));
        self.files.store(files, Ordering::Relaxed);
        self.chunks.store(chunks, Ordering::Relaxed);
    }

    /// Notes a corruption seen at run time so the next pass rebuilds the database.
    pub(super) fn watch<T>(&self, result: Result<T, IndexError>) -> Result<T, MemoryError> {
        result.map_err(|e| {
            if e.is_corruption() && !self.corrupt.swap(true, Ordering::SeqCst) {
                warn!("memory: the index is corrupt ({e}); it will be rebuilt");
            }
            MemoryError::Index(e)
        })
    }

    /// Before a pass: rebuild a database found corrupt, reopen one deleted or replaced.
    /// Called with the pass lock held.
    fn check_database(&self) -> Result<(), MemoryError> {
        if self.corrupt.swap(false, Ordering::SeqCst) {
            self.index.reopen(true)?;
        } else if self.index.file_replaced() {
            info!(
                "memory: {} was deleted or replaced; reopening it",
                self.index.path().display()
            );
            self.index.reopen(false)?;
        } else if self.index.file_damaged() {
            warn!(
                "memory: {} was overwritten with something that is not a database; \
                 rebuilding it from the workspace",
                self.index.path().display()
            );
            self.index.reopen(true)?;
        } else {
            return Ok(());
        }
        self.load_state()?;
        if let Some(e) = &self.embedding {
            // The vectors in memory may not be the new database's.
            e.note_reopen();
        }
        Ok(())
    }

    pub(super) fn sync(
        &self,
        force: bool,
        mut progress: Option<&mut dyn FnMut(usize, usize)>,
        stop: &AtomicBool,
    ) -> Result<ReindexReport, MemoryError> {
        let started = Instant::now();
        let _pass = lock(&self.pass);
        self.check_database()?;
        let rechunk = self.rechunk.load(Ordering::SeqCst);
        let force = force || rechunk;
        let walked =
            workspace::walk(&self.workspace).map_err(|e| MemoryError::Workspace(e.to_string()))?;
        let (changed, removed) = {
            let tracked = lock(&self.tracked);
            let changed: Vec<&MdFile> = walked
                .iter()
                .filter(|f| {
                    force
                        || !tracked
                            .get(&f.rel)
                            .is_some_and(|s| s.size == f.size && s.mtime_ns == f.mtime_ns)
                })
                .collect();
            let present: HashSet<&str> = walked.iter().map(|f| f.rel.as_str()).collect();
            let removed: Vec<String> = tracked
                .keys()
                .filter(|k| !present.contains(k.as_str()))
                .cloned()
                .collect();
            (changed, removed)
        };
        let mut updated = 0;
        let mut complete = true;
        let now = now_seconds();
        if !changed.is_empty() || !removed.is_empty() {
            updated += self.apply(removed.into_iter().map(Action::Remove).collect(), now)?;
            let total = changed.len();
            let mut done = 0;
            let mut rest = changed.into_iter().peekable();
            while rest.peek().is_some() {
                if stop.load(Ordering::SeqCst) {
                    complete = false;
                    break;
                }
                let mut batch = Vec::new();
                let mut bytes = 0;
                while let Some(f) =
                    rest.next_if(|_| bytes < BATCH_BYTES && batch.len() < BATCH_FILES)
                {
                    let prev = lock(&self.tracked).get(&f.rel).copied();
                    bytes += f.size;
                    batch.push(self.prepare(f, prev, force));
                }
                done += batch.len();
                updated += self.apply(batch, now)?;
                if let Some(p) = progress.as_mut() {
                    p(done, total);
                }
            }
            if complete {
                let key = self.chunking_key();
                self.watch(self.index.write(|w| {
                    w.set_meta("last_indexed", &now.to_string())?;
                    w.set_meta("chunking", &key)
                }))?;
                self.rechunk.store(false, Ordering::SeqCst);
            }
        }
        if complete {
            self.last_indexed.store(now, Ordering::Relaxed);
            if self.index.is_legacy() {
                self.watch(self.index.finish_migration())?;
                info!(
                    "memory: the new index is complete ({} chunks); the old one was dropped",
                    self.counts().chunks
                );
            }
            self.indexed_once.store(true, Ordering::SeqCst);
        }
        Ok(ReindexReport {
            files_processed: walked.len(),
            files_updated: updated,
            chunks: self.counts().chunks,
            duration_ms: started.elapsed().as_millis() as u64,
        })
    }

    /// Reads, hashes and chunks one file (outside any transaction).
    fn prepare(&self, f: &MdFile, prev: Option<FileState>, force: bool) -> Action {
        if f.size > self.max_file_bytes {
            warn!(
                "memory: {} is {} bytes, over memory.max_file_bytes ({}); not indexed",
                f.rel, f.size, self.max_file_bytes
            );
            return Action::Skip(f.clone());
        }
        let bytes = match read_capped(&f.abs, self.max_file_bytes) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Action::Remove(f.rel.clone()),
            Err(e) => {
                warn!("memory: cannot read {}: {e}; not indexed", f.abs.display());
                return Action::Skip(f.clone());
            }
        };
        let hash = xxhash_rust::xxh3::xxh3_64(&bytes);
        if !force && prev.is_some_and(|p| p.hash == Some(hash)) {
            return Action::Touch(f.clone());
        }
        let chunks = chunk::chunk_bytes(&bytes, self.params);
        Action::Replace(
            FileRow {
                path: f.rel.clone(),
                size: f.size,
                mtime_ns: f.mtime_ns,
                hash,
                lines: chunk::count_lines(&bytes) as u64,
                chunks: chunks.len() as u64,
            },
            chunks,
        )
    }

    /// Writes a batch of actions in one transaction, then updates the in-memory view.
    /// Returns how many files changed in the index.
    fn apply(&self, actions: Vec<Action>, now: i64) -> Result<usize, MemoryError> {
        if actions.is_empty() {
            return Ok(0);
        }
        let was_indexed = |rel: &str| {
            lock(&self.tracked)
                .get(rel)
                .is_some_and(|s| s.hash.is_some())
        };
        let skipped_indexed: Vec<bool> = actions
            .iter()
            .map(|a| match a {
                Action::Skip(f) => was_indexed(&f.rel),
                _ => false,
            })
            .collect();
        let replaced: Vec<(&FileRow, &[Chunk])> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Replace(row, chunks) => Some((row, chunks.as_slice())),
                _ => None,
            })
            .collect();
        self.watch(self.index.write(|w| {
            for (a, &drop_old) in actions.iter().zip(&skipped_indexed) {
                match a {
                    Action::Replace(..) => {}
                    Action::Touch(f) => w.touch_file(&f.rel, f.size, f.mtime_ns)?,
                    Action::Remove(rel) => w.remove_file(rel)?,
                    Action::Skip(f) if drop_old => w.remove_file(&f.rel)?,
                    Action::Skip(_) => {}
                }
            }
            w.replace_files(&replaced, now)
        }))?;
        drop(replaced);
        let mut tracked = lock(&self.tracked);
        let mut updated = 0;
        for (a, drop_old) in actions.into_iter().zip(skipped_indexed) {
            match a {
                Action::Replace(row, _) => {
                    updated += 1;
                    tracked.insert(
                        row.path,
                        FileState {
                            size: row.size,
                            mtime_ns: row.mtime_ns,
                            hash: Some(row.hash),
                            lines: row.lines,
                            chunks: row.chunks,
                        },
                    );
                }
                Action::Touch(f) => {
                    if let Some(s) = tracked.get_mut(&f.rel) {
                        s.size = f.size;
                        s.mtime_ns = f.mtime_ns;
                    }
                }
                Action::Remove(rel) => {
                    if tracked.remove(&rel).is_some() {
                        updated += 1;
                    }
                }
                Action::Skip(f) => {
                    updated += usize::from(drop_old);
                    tracked.insert(
                        f.rel,
                        FileState {
                            size: f.size,
                            mtime_ns: f.mtime_ns,
                            hash: None,
                            lines: 0,
                            chunks: 0,
                        },
                    );
                }
            }
        }
        self.recount(&tracked);
        drop(tracked);
        if updated > 0
            && let Some(e) = &self.embedding
        {
            e.note_change();
        }
        Ok(updated)
    }

    /// True when a folder on the way to `rel` is a symlink (the walk would not go there).
    fn behind_symlink(&self, rel: &Path) -> bool {
        let mut at = self.workspace.clone();
        let Some(parent) = rel.parent() else {
            return false;
        };
        parent.components().any(|c| {
            at.push(c);
            fs::symlink_metadata(&at).is_ok_and(|m| m.file_type().is_symlink())
        })
    }
}

/// Reads at most `cap` bytes: a file that grew past the limit since its stat is indexed
/// up to it rather than read whole.
fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    fs::File::open(path)?.take(cap).read_to_end(&mut out)?;
    Ok(out)
}
