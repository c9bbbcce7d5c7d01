//! What memory reports: search hits, statistics and reindex reports, in the shapes the
//! API and the CLI print.

use serde::Serialize;

use super::EmbeddingsStatus;

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
    pub embeddings: EmbeddingsStatus,
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
    /// `indexing` until a first pass has brought the index up to date with the files
    /// (searches meanwhile see what is indexed so far, or an older index being replaced);
    /// `ready` after.
    pub state: &'static str,
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
