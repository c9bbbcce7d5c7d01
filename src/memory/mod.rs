//! Memory: the Markdown workspace, its SQLite FTS5 index, search and stats.
//!
//! [`Memory`] ties the parts together. The index follows the files on its own: a scan at
//! start, [`Memory::refresh_file`] right after the daemon's own writes, and a periodic
//! stat-only scan ([`Memory::spawn_scanner`]) for edits made in an editor. A scan that finds
//! nothing changed compares sizes and mtimes with an in-memory map and runs no SQL at all;
//! a file whose mtime moved but whose content hash did not is not re-chunked.
//!
//! ```no_run
//! # use std::{path::Path, sync::Arc, time::Duration};
//! # use localgpt::{config::MemoryConfig, memory::Memory};
//! let memory = Arc::new(Memory::open(
//!     &MemoryConfig::default(),
//!     Path::new("/tmp/ws"),
//!     Path::new("/tmp/index.sqlite"),
//! )?);
//! let scanner = memory.spawn_scanner(Duration::from_secs(3));
//! for hit in memory.search("rust async", 5)? {
//!     println!("{}:{}-{} {:.2}", hit.file, hit.line_start, hit.line_end, hit.score);
//! }
//! scanner.stop();
//! # Ok::<(), localgpt::memory::MemoryError>(())
//! ```

pub mod chunk;
pub mod index;
pub mod query;
pub mod workspace;

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{RecvTimeoutError, Sender, bounded};
use log::{debug, info, warn};
use serde::Serialize;

use crate::config::MemoryConfig;
use chunk::{Chunk, ChunkParams};
use index::{FileRow, IndexError, MemoryIndex, Opened};
use query::FtsQuery;
use workspace::MdFile;

pub use workspace::daily_log_rel;

/// Results a search returns when no limit is given.
pub const DEFAULT_LIMIT: usize = 10;
/// The most results one search returns.
pub const MAX_LIMIT: usize = 100;
/// The longest query text accepted over the API, in characters.
pub const MAX_QUERY_CHARS: usize = 1000;

/// A full index commits every this many bytes of Markdown (or [`BATCH_FILES`] files), so
/// memory stays bounded, progress is visible to searches, and a stop request is honoured
/// between batches.
const BATCH_BYTES: u64 = 8 * 1024 * 1024;
const BATCH_FILES: usize = 512;

/// Why a memory operation failed.
#[derive(Debug)]
#[non_exhaustive]
pub enum MemoryError {
    /// The workspace folder or a starter file could not be created.
    Workspace(String),
    /// The index database failed (after any rebuild it could do).
    Index(IndexError),
    /// A path given to [`Memory::refresh_file`] is not inside the workspace.
    OutsideWorkspace(PathBuf),
}

impl fmt::Display for MemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MemoryError::Workspace(e) => write!(f, "memory workspace: {e}"),
            MemoryError::Index(e) => write!(f, "{e}"),
            MemoryError::OutsideWorkspace(p) => {
                write!(f, "{} is not inside the memory workspace", p.display())
            }
        }
    }
}

impl std::error::Error for MemoryError {}

impl From<IndexError> for MemoryError {
    fn from(e: IndexError) -> Self {
        MemoryError::Index(e)
    }
}

/// One search result.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchHit {
    /// Workspace-relative, `/`-separated.
    pub file: String,
    /// The matching chunk, cut to `memory.result_chars` around the first match.
    pub content: String,
    /// In (0, 1]; the best result of a search is 1.
    pub score: f64,
    /// 1-based, inclusive: the lines `content` comes from.
    pub line_start: usize,
    pub line_end: usize,
}

/// What the index holds, for `/api/status`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct IndexCounts {
    pub files: u64,
    pub chunks: u64,
}

/// `GET /api/memory/stats`.
#[derive(Debug, Clone, Serialize)]
pub struct MemoryStats {
    pub workspace: String,
    pub files: WorkspaceFiles,
    pub index: IndexStats,
}

/// The workspace's Markdown files, as found on disk now.
#[derive(Debug, Clone, Serialize)]
pub struct WorkspaceFiles {
    /// Every `*.md` file the index covers (hidden folders and symlinks excluded).
    pub total: u64,
    pub memory_md: FileSummary,
    pub heartbeat_md: FileSummary,
    pub daily_logs: DailyLogs,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct FileSummary {
    pub size_bytes: u64,
    pub lines: u64,
}

#[derive(Debug, Clone, Copy, Default, Serialize)]
pub struct DailyLogs {
    pub count: u64,
    pub total_size_bytes: u64,
}

/// The index database.
#[derive(Debug, Clone, Serialize)]
pub struct IndexStats {
    pub files: u64,
    pub chunks: u64,
    /// When the index was last checked against the files (RFC 3339 UTC); null before the
    /// first index.
    pub last_indexed: Option<String>,
    pub database_size_bytes: u64,
}

/// `POST /api/memory/reindex`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct ReindexReport {
    /// Markdown files found in the workspace.
    pub files_processed: usize,
    /// Files whose chunks were rewritten, plus files that left the index.
    pub files_updated: usize,
    /// Chunks in the index afterwards.
    pub chunks: u64,
    pub duration_ms: u64,
}

/// What the index last saw of a file.
#[derive(Debug, Clone, Copy)]
struct FileState {
    size: u64,
    mtime_ns: i64,
    /// `None`: seen but not indexed (unreadable or too large); retried when its stat changes.
    hash: Option<u64>,
    lines: u64,
    chunks: u64,
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

/// The memory subsystem: workspace, index, search. `Send + Sync`; share it as `Arc<Memory>`.
pub struct Memory {
    workspace: PathBuf,
    params: ChunkParams,
    result_chars: usize,
    max_file_bytes: u64,
    index: MemoryIndex,
    /// Serialises index passes (scan, reindex, refresh) so they never interleave.
    pass: Mutex<()>,
    tracked: Mutex<HashMap<String, FileState>>,
    files: AtomicU64,
    chunks: AtomicU64,
    /// Unix seconds of the last completed pass; 0 before the first.
    last_indexed: AtomicI64,
    /// The chunk settings changed since the index was built: the next pass re-chunks all.
    rechunk: AtomicBool,
    /// A corruption was seen at run time: the next pass rebuilds the database.
    corrupt: AtomicBool,
}

impl Memory {
    /// Creates the workspace and its starter files if missing, and opens the index (or
    /// rebuilds it, with a warning, when it is corrupt). Does no indexing: that is the first
    /// scan's job, so a daemon answers at once.
    pub fn open(
        config: &MemoryConfig,
        workspace: &Path,
        index_db: &Path,
    ) -> Result<Memory, MemoryError> {
        match workspace::ensure(workspace) {
            Ok(created) => {
                for path in created {
                    info!("memory: created {}", path.display());
                }
            }
            // A read-only workspace (a mount, a backup being restored) is still worth
            // searching: the starter files are a convenience, not a requirement.
            Err(e) if workspace.is_dir() => warn!(
                "memory: cannot create the starter files in {} ({e}); going on without them \
                 (is the workspace read-only? memory writes will fail until it is writable)",
                workspace.display()
            ),
            Err(e) => {
                return Err(MemoryError::Workspace(format!(
                    "{}: {e}",
                    workspace.display()
                )));
            }
        }
        let swept = crate::durable::sweep_orphan_temps(workspace, workspace::MAX_DEPTH);
        if swept > 0 {
            info!("memory: removed {swept} temp file(s) left by an interrupted write");
        }
        let (index, opened) = MemoryIndex::open(index_db)?;
        if let Opened::Rebuilt(why) = &opened {
            warn!("memory: the index was rebuilt ({why}); it will be refilled from the workspace");
        }
        let params = ChunkParams::from_config(config);
        let memory = Memory {
            workspace: workspace.to_path_buf(),
            params,
            result_chars: config.result_chars.max(1),
            max_file_bytes: config.max_file_bytes,
            index,
            pass: Mutex::new(()),
            tracked: Mutex::new(HashMap::new()),
            files: AtomicU64::new(0),
            chunks: AtomicU64::new(0),
            last_indexed: AtomicI64::new(0),
            rechunk: AtomicBool::new(false),
            corrupt: AtomicBool::new(false),
        };
        memory.load_state()?;
        Ok(memory)
    }

    /// The workspace folder.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// The best chunks for free user text, best first. Any text is safe: it is reduced to
    /// plain terms (see [`query`]). Chunks holding every term are preferred; when none
    /// does, chunks holding any term are returned. Text without a searchable term finds
    /// nothing. `limit` is capped at [`MAX_LIMIT`].
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<SearchHit>, MemoryError> {
        let query = FtsQuery::parse(text);
        let limit = limit.min(MAX_LIMIT);
        let Some(all) = query.all_terms() else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut raw = self.watch(self.index.search(&all, limit))?;
        if raw.is_empty()
            && let Some(any) = query.any_term()
        {
            raw = self.watch(self.index.search(&any, limit))?;
        }
        let best = raw.first().map(|h| h.rank).unwrap_or(-1.0);
        Ok(raw
            .into_iter()
            .map(|h| {
                let cut = excerpt(&h.content, query.terms(), self.result_chars);
                SearchHit {
                    file: h.path,
                    content: cut.text,
                    score: score(h.rank, best),
                    line_start: h.line_start + cut.first_line,
                    line_end: (h.line_start + cut.last_line).min(h.line_end.max(h.line_start)),
                }
            })
            .collect())
    }

    /// Files and chunks in the index; cheap (no I/O).
    pub fn counts(&self) -> IndexCounts {
        IndexCounts {
            files: self.files.load(Ordering::Relaxed),
            chunks: self.chunks.load(Ordering::Relaxed),
        }
    }

    /// Workspace and index statistics. The `files` part is what is on disk now (a stat of
    /// every Markdown file); the `index` part is what has been indexed.
    pub fn stats(&self) -> Result<MemoryStats, MemoryError> {
        let walked =
            workspace::walk(&self.workspace).map_err(|e| MemoryError::Workspace(e.to_string()))?;
        let mut daily = DailyLogs::default();
        let mut memory_md = FileSummary::default();
        let mut heartbeat_md = FileSummary::default();
        for f in &walked {
            if workspace::is_daily_log(&f.rel) {
                daily.count += 1;
                daily.total_size_bytes += f.size;
            } else if f.rel == workspace::MEMORY_MD {
                memory_md = self.summary(f);
            } else if f.rel == workspace::HEARTBEAT_MD {
                heartbeat_md = self.summary(f);
            }
        }
        let counts = self.counts();
        let last = self.last_indexed.load(Ordering::Relaxed);
        Ok(MemoryStats {
            workspace: self.workspace.display().to_string(),
            files: WorkspaceFiles {
                total: walked.len() as u64,
                memory_md,
                heartbeat_md,
                daily_logs: daily,
            },
            index: IndexStats {
                files: counts.files,
                chunks: counts.chunks,
                last_indexed: (last > 0)
                    .then(|| jiff::Timestamp::from_second(last).ok())
                    .flatten()
                    .map(|t| t.to_string()),
                database_size_bytes: self.index.size_bytes(),
            },
        })
    }

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

    /// Starts the periodic scan thread. Its first scan runs at once (the index at start);
    /// then one every `interval` (zero: no periodic scans). The thread stops when the
    /// handle is dropped or [`ScanHandle::stop`] is called, between two batches of a long
    /// index at the latest.
    pub fn spawn_scanner(self: &Arc<Self>, interval: Duration) -> ScanHandle {
        let stop = Arc::new(AtomicBool::new(false));
        let (wake_tx, wake_rx) = bounded::<()>(0);
        let memory = Arc::clone(self);
        let flag = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("memory-scan".into())
            .spawn(move || {
                let mut first = true;
                let mut last_error = None;
                loop {
                    memory.scan_once(first, &flag, &mut last_error);
                    first = false;
                    if flag.load(Ordering::SeqCst) {
                        break;
                    }
                    let wait = if interval.is_zero() {
                        Duration::MAX
                    } else {
                        interval
                    };
                    match wake_rx.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        _ => break,
                    }
                }
            });
        let thread = match thread {
            Ok(t) => Some(t),
            Err(e) => {
                warn!(
                    "memory: cannot start the scan thread ({e}); the index will not follow edits"
                );
                None
            }
        };
        ScanHandle {
            stop,
            wake: Some(wake_tx),
            thread,
        }
    }

    /// One periodic pass. A failure is logged once, not every few seconds while it lasts
    /// (an unmounted workspace, a full disk), and its end is logged too.
    fn scan_once(&self, first: bool, stop: &AtomicBool, last_error: &mut Option<String>) {
        let started = Instant::now();
        let result = self.sync(false, None, stop);
        match (&result, last_error.as_ref()) {
            (Ok(_), Some(_)) => info!("memory: scanning works again"),
            (Err(e), Some(last)) if e.to_string() == *last => return,
            _ => {}
        }
        *last_error = result.as_ref().err().map(|e| e.to_string());
        match result {
            Ok(report) if first => info!(
                "memory: {} files, {} chunks indexed ({} updated) in {} ms",
                report.files_processed, report.chunks, report.files_updated, report.duration_ms
            ),
            Ok(report) if report.files_updated > 0 => debug!(
                "memory: {} files updated in {} ms",
                report.files_updated, report.duration_ms
            ),
            Ok(_) => {}
            Err(e) => warn!(
                "memory: scan failed after {} ms: {e}",
                started.elapsed().as_millis()
            ),
        }
    }

    /// Loads the index's view of the files, so an unchanged file is recognised by stat.
    fn load_state(&self) -> Result<(), MemoryError> {
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
    fn watch<T>(&self, result: Result<T, IndexError>) -> Result<T, MemoryError> {
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
            self.load_state()?;
        } else if self.index.file_replaced() {
            info!(
                "memory: {} was deleted or replaced; reopening it",
                self.index.path().display()
            );
            self.index.reopen(false)?;
            self.load_state()?;
        } else if self.index.file_damaged() {
            warn!(
                "memory: {} was overwritten with something that is not a database; \
                 rebuilding it from the workspace",
                self.index.path().display()
            );
            self.index.reopen(true)?;
            self.load_state()?;
        }
        Ok(())
    }

    fn sync(
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
        Ok(updated)
    }

    /// Size and line count of a file found by a walk; the line count comes from the index
    /// when the file has not changed since, else from reading it.
    fn summary(&self, f: &MdFile) -> FileSummary {
        let known = lock(&self.tracked)
            .get(&f.rel)
            .filter(|s| s.hash.is_some() && s.size == f.size && s.mtime_ns == f.mtime_ns)
            .map(|s| s.lines);
        FileSummary {
            size_bytes: f.size,
            lines: known.unwrap_or_else(|| count_file_lines(&f.abs).unwrap_or(0)),
        }
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

/// Stops the periodic scan thread when dropped.
pub struct ScanHandle {
    stop: Arc<AtomicBool>,
    wake: Option<Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl ScanHandle {
    /// Stops the scanner and waits for it: a running index stops after its current batch.
    pub fn stop(mut self) {
        self.shut();
    }

    fn shut(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Dropping the sender wakes the thread from its wait.
        self.wake = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ScanHandle {
    fn drop(&mut self) {
        self.shut();
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

/// Reads at most `cap` bytes: a file that grew past the limit since its stat is indexed
/// up to it rather than read whole.
fn read_capped(path: &Path, cap: u64) -> io::Result<Vec<u8>> {
    let mut out = Vec::new();
    fs::File::open(path)?.take(cap).read_to_end(&mut out)?;
    Ok(out)
}

fn count_file_lines(path: &Path) -> io::Result<u64> {
    let mut file = fs::File::open(path)?;
    let mut buf = vec![0u8; 64 * 1024];
    let (mut lines, mut last) = (0u64, b'\n');
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        lines += buf[..n].iter().filter(|&&b| b == b'\n').count() as u64;
        last = buf[n - 1];
    }
    Ok(lines + u64::from(last != b'\n'))
}

/// A rank relative to the best one: FTS5's bm25 is negative and lower is better, so the
/// best result scores 1 and every other a fraction of it, never 0.
fn score(rank: f64, best: f64) -> f64 {
    if !(rank < 0.0 && best < 0.0) {
        return 1.0;
    }
    let s = (rank / best).clamp(0.0, 1.0);
    ((s * 10_000.0).round() / 10_000.0).max(0.0001)
}

/// Part of a chunk shown in a result, with its lines relative to the chunk's first line.
struct Excerpt {
    text: String,
    first_line: usize,
    last_line: usize,
}

/// Cuts `text` to at most `max` characters around the first term found: blank lines at
/// either end are dropped, and a long chunk is shown from the line holding the match
/// (or shortly before the match, on a very long line), with `…` where it was cut.
fn excerpt(text: &str, terms: &[String], max: usize) -> Excerpt {
    let lead = text.len() - text.trim_start().len();
    let start = text[..lead].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = text.trim_end().len().max(start);
    let body = &text[start..end];
    let first_line = newlines(&text[..start]);
    if body.chars().count() <= max {
        return Excerpt {
            text: body.to_string(),
            first_line,
            last_line: first_line + newlines(body),
        };
    }
    let room = max.saturating_sub(2).max(1);
    let at = query::first_match(body, terms).unwrap_or(0);
    let line_start = body[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let from = if body[line_start..at].chars().count() <= max / 3 {
        line_start
    } else {
        let back = max / 4;
        body[..at]
            .char_indices()
            .rev()
            .nth(back.saturating_sub(1))
            .map(|(i, _)| i)
            .unwrap_or(line_start)
    };
    let mut to = body[from..]
        .char_indices()
        .nth(room)
        .map(|(i, _)| from + i)
        .unwrap_or(body.len());
    if to < body.len()
        && let Some(ws) = body[from..to].rfind(char::is_whitespace)
        && ws >= (to - from) * 4 / 5
    {
        to = from + ws;
    }
    let mut shown = String::with_capacity(to - from + 8);
    if from > 0 {
        shown.push('…');
    }
    shown.push_str(body[from..to].trim_end());
    if to < body.len() {
        shown.push('…');
    }
    let first = first_line + newlines(&body[..from]);
    Excerpt {
        text: shown,
        first_line: first,
        last_line: first + newlines(body[from..to].trim_end()),
    }
}

fn newlines(s: &str) -> usize {
    s.bytes().filter(|&b| b == b'\n').count()
}

#[cfg(test)]
mod tests;
