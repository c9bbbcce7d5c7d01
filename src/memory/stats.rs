//! Statistics: what is on disk in the workspace, and what the index holds.

use std::fs;
use std::io::{self, Read};
use std::path::Path;
use std::sync::atomic::Ordering;

use super::workspace::{self, MdFile};
use super::{
    DailyLogs, FileSummary, IndexStats, Memory, MemoryError, MemoryStats, WorkspaceFiles, lock,
};

impl Memory {
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
                state: if self.indexed_once.load(Ordering::SeqCst) {
                    "ready"
                } else {
                    "indexing"
                },
            },
            embeddings: {
                self.prepare_vectors();
                self.embeddings_status()
            },
        })
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
