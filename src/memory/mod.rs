//! Memory: the Markdown workspace, its SQLite index, search by words and by meaning, and
//! stats.
//!
//! [`Memory`] ties the parts together. The index follows the files on its own: a scan at
//! start, [`Memory::refresh_file`] right after the daemon's own writes, and a periodic
//! stat-only scan ([`Memory::spawn_scanner`]) for edits made in an editor. A scan that finds
//! nothing changed compares sizes and mtimes with an in-memory map and runs no SQL at all;
//! a file whose mtime moved but whose content hash did not is not re-chunked.
//!
//! With `[memory.embeddings]` configured, a background thread embeds every chunk's text
//! (`embed`, over [`embedder`]), vectors are kept by text hash and model in the index and as
//! sign bits in memory ([`vectors`]), and a search merges the lexical and vector rankings
//! ([`fusion`]); without vectors it is lexical, and says so ([`SearchOutcome::mode`]).
//!
//! Where things are: [`workspace`] (the folder and its files), [`chunk`] (cutting files),
//! [`cjk`] (words of scripts written without spaces), `sync` (index passes), `scan` (the
//! periodic scan and embedding threads), [`index`] with `db` and `writer` (the SQLite side),
//! [`query`] and `search` (free text to ranked chunks), `excerpt` (what a hit shows),
//! `embed`, [`embedder`], [`vectors`] and [`fusion`] (meaning), `stats` and `report` (what
//! memory reports).
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
pub mod cjk;
mod db;
mod embed;
pub mod embedder;
mod excerpt;
pub mod fusion;
pub mod index;
pub mod query;
mod report;
mod scan;
mod search;
mod stats;
mod sync;
pub mod vectors;
pub mod workspace;
mod writer;

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};

use log::{info, warn};

use crate::config::MemoryConfig;
use chunk::ChunkParams;
use embed::Embedding;
use index::{IndexError, MemoryIndex, Opened};
use sync::FileState;

pub use embed::{EmbedState, EmbeddingsStatus};

pub use report::{
    DailyLogs, FileSummary, IndexCounts, IndexStats, MemoryStats, ReindexReport, SearchHit,
    WorkspaceFiles,
};
pub use scan::ScanHandle;
pub use search::{SearchMode, SearchOutcome};
pub use workspace::daily_log_rel;

// The unit tests in `tests.rs` reach these through `use super::*`.
#[cfg(test)]
use {
    excerpt::excerpt,
    search::score,
    std::{
        fs,
        sync::Arc,
        time::{Duration, Instant},
    },
};

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
    /// Set once a pass has brought the index up to date with the workspace.
    indexed_once: AtomicBool,
    /// Vectors and the embedder; `None` when `memory.embeddings` is off.
    embedding: Option<Embedding>,
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
            indexed_once: AtomicBool::new(false),
            embedding: Embedding::new(&config.embeddings),
        };
        if memory.index.is_legacy() {
            info!(
                "memory: the index is of an older schema; searches use it while the new one \
                 is built beside it"
            );
        }
        memory.load_state()?;
        Ok(memory)
    }

    /// The workspace folder.
    pub fn workspace(&self) -> &Path {
        &self.workspace
    }

    /// Files and chunks in the index; cheap (no I/O).
    pub fn counts(&self) -> IndexCounts {
        IndexCounts {
            files: self.files.load(Ordering::Relaxed),
            chunks: self.chunks.load(Ordering::Relaxed),
        }
    }

    /// What the embedding side is doing, for `/api/status`; cheap (no I/O).
    pub fn embeddings_status(&self) -> EmbeddingsStatus {
        match &self.embedding {
            Some(e) => e.status(self.counts().chunks),
            None => EmbeddingsStatus::off(),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn now_seconds() -> i64 {
    jiff::Timestamp::now().as_second()
}

#[cfg(test)]
mod tests;
