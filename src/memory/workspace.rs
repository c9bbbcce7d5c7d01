//! The workspace folder: starter files, which Markdown files belong to memory, and the
//! names of daily logs.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use log::{debug, warn};

/// Curated long-term memory.
pub const MEMORY_MD: &str = "MEMORY.md";
/// The heartbeat's task list.
pub const HEARTBEAT_MD: &str = "HEARTBEAT.md";
/// The assistant's persona.
pub const SOUL_MD: &str = "SOUL.md";
/// The folder of daily logs (`memory/YYYY-MM-DD.md`).
pub const DAILY_DIR: &str = "memory";

/// Deeper folders are not walked: no real workspace nests this far, and a bound keeps a
/// pathological tree from costing a scan its whole interval.
pub const MAX_DEPTH: usize = 32;

const STARTER_MEMORY: &str = "\
# Memory

Long-term notes the assistant keeps about you, your projects and your preferences.
Edit freely: this file is plain Markdown and is searched by `localgpt memory search`.
";

// Only a heading and a comment: the heartbeat treats this as empty and does not call the
// model until the user writes a task here.
const STARTER_HEARTBEAT: &str = "\
# Heartbeat

<!--
Tasks for the assistant to check on its own, one per line, for example:
- [ ] Every morning, summarise yesterday's daily log into MEMORY.md
While this file holds only headings and comments, the heartbeat does nothing.
-->
";

const STARTER_SOUL: &str = "\
# Soul

You are a helpful, concise personal assistant. You remember what matters to the user by
writing it to MEMORY.md and the daily log, and you say so when you are unsure.
";

/// The starter files created in a new workspace, as (relative path, text).
pub const STARTER_FILES: &[(&str, &str)] = &[
    (MEMORY_MD, STARTER_MEMORY),
    (HEARTBEAT_MD, STARTER_HEARTBEAT),
    (SOUL_MD, STARTER_SOUL),
];

/// Creates the workspace, its `memory/` folder and any missing starter file. An existing
/// file is never touched, even if it is empty. Returns the files it created.
pub fn ensure(workspace: &Path) -> io::Result<Vec<PathBuf>> {
    crate::paths::create_private_dir(workspace)?;
    crate::paths::create_private_dir(&workspace.join(DAILY_DIR))?;
    let mut created = Vec::new();
    for (rel, text) in STARTER_FILES {
        let path = workspace.join(rel);
        if fs::symlink_metadata(&path).is_ok() {
            continue;
        }
        if create_new_file(&path, text.as_bytes())? {
            created.push(path);
        }
    }
    Ok(created)
}

/// Writes a file that must not exist yet, so that a crash leaves either no file or the
/// whole text: the text goes to a temp file that is then hard-linked into place (a link
/// never replaces an existing name, so a file the user created meanwhile wins). Returns
/// false when the name was already taken.
fn create_new_file(path: &Path, data: &[u8]) -> io::Result<bool> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy())
        .unwrap_or_default();
    let tmp = dir.join(format!(
        ".{name}.tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let written = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        f.write_all(data)?;
        f.sync_all()
    })();
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        // Some filesystems (FAT, a few FUSE mounts) have no hard links: fall back to an
        // exclusive create, which still never overwrites.
        Err(e) if e.kind() == io::ErrorKind::Unsupported || e.raw_os_error() == Some(1) => {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    f.write_all(data)?;
                    f.sync_all()?;
                    Ok(true)
                }
                Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
                Err(e) => Err(e),
            }
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot create {}: {e}", path.display()),
        )),
    }
}

/// True when a Markdown text holds nothing but headings, blank lines, HTML comments (also
/// spanning lines), empty list items and checked-off items (`- [x] done`): nothing a
/// heartbeat could act on.
pub fn is_effectively_empty(text: &str) -> bool {
    let mut in_comment = false;
    for line in text.lines() {
        let mut rest = line.trim();
        loop {
            if in_comment {
                match rest.find("-->") {
                    Some(end) => {
                        in_comment = false;
                        rest = rest[end + 3..].trim();
                    }
                    None => {
                        rest = "";
                        break;
                    }
                }
            } else if let Some(start) = rest.find("<!--") {
                if !rest[..start].trim().is_empty() {
                    break;
                }
                in_comment = true;
                rest = rest[start + 4..].trim();
            } else {
                break;
            }
        }
        let item = rest.trim_start_matches(['-', '*', '+']).trim();
        // A checked-off task is done: it stays in the file as a record, not as work.
        let done = item.starts_with("[x]") || item.starts_with("[X]");
        let bare = item.trim_start_matches("[ ]").trim();
        if !(bare.is_empty() || done || rest.starts_with('#')) {
            return false;
        }
    }
    true
}

/// The workspace-relative path of the daily log for `date`: `memory/YYYY-MM-DD.md`.
pub fn daily_log_rel(date: jiff::civil::Date) -> String {
    format!("{DAILY_DIR}/{date}.md")
}

/// True when `rel` names a daily log (`memory/YYYY-MM-DD.md` with a real date).
pub fn is_daily_log(rel: &str) -> bool {
    rel.strip_prefix("memory/")
        .and_then(|name| name.strip_suffix(".md"))
        .is_some_and(|day| day.len() == 10 && day.parse::<jiff::civil::Date>().is_ok())
}

/// A Markdown file found in the workspace, with what a stat tells about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MdFile {
    /// Workspace-relative, `/`-separated.
    pub rel: String,
    pub abs: PathBuf,
    pub size: u64,
    /// Modification time in nanoseconds since the epoch.
    pub mtime_ns: i64,
}

/// What `stat` tells about `meta`, in the form the index compares.
pub fn mtime_ns(meta: &fs::Metadata) -> i64 {
    meta.mtime()
        .saturating_mul(1_000_000_000)
        .saturating_add(meta.mtime_nsec())
}

/// True for a name the walk ignores: hidden entries (editor swap and lock files, `.git`,
/// our own temp files).
fn is_hidden(name: &str) -> bool {
    name.starts_with('.')
}

/// True when `rel` is a path the index would hold: a `.md` file whose every component is
/// visible.
pub fn is_indexable_rel(rel: &str) -> bool {
    rel.ends_with(".md")
        && rel
            .split('/')
            .all(|part| !part.is_empty() && !is_hidden(part))
}

/// Every `*.md` file under `workspace`, by stat only. Hidden entries and symlinks are
/// skipped (a link could lead outside the workspace or into a cycle); names that are not
/// UTF-8 are skipped because the index and the API speak UTF-8 paths. Unreadable
/// subfolders are logged and skipped. Sorted by path.
///
/// A workspace that cannot be listed at all is an error, not an empty list: an unmounted
/// or unreadable folder must not look like every file was deleted.
pub fn walk(workspace: &Path) -> io::Result<Vec<MdFile>> {
    let mut out = Vec::new();
    let mut stack = vec![(workspace.to_path_buf(), String::new(), 0usize)];
    while let Some((dir, prefix, depth)) = stack.pop() {
        let entries = match fs::read_dir(&dir) {
            Ok(e) => e,
            Err(e) if dir == workspace => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot list {}: {e}", dir.display()),
                ));
            }
            Err(e) => {
                if e.kind() != io::ErrorKind::NotFound {
                    warn!("memory: cannot list {}: {e}", dir.display());
                }
                continue;
            }
        };
        for entry in entries.flatten() {
            let os_name = entry.file_name();
            let Some(name) = os_name.to_str() else {
                debug!("memory: skipping non-UTF-8 name {:?}", entry.path());
                continue;
            };
            if is_hidden(name) {
                continue;
            }
            // DirEntry::file_type does not follow symlinks.
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let rel = if prefix.is_empty() {
                name.to_string()
            } else {
                format!("{prefix}/{name}")
            };
            if kind.is_dir() {
                if depth + 1 < MAX_DEPTH {
                    stack.push((entry.path(), rel, depth + 1));
                }
            } else if kind.is_file() && name.ends_with(".md") {
                let Ok(meta) = entry.metadata() else {
                    continue;
                };
                out.push(MdFile {
                    rel,
                    abs: entry.path(),
                    size: meta.len(),
                    mtime_ns: mtime_ns(&meta),
                });
            }
        }
    }
    out.sort_by(|a, b| a.rel.cmp(&b.rel));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "lgpt-ws-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        fs::create_dir_all(&dir).unwrap();
        dir
    }

    #[test]
    fn starter_files_are_created_once_and_never_overwritten() {
        let root = temp("starter");
        let ws = root.join("ws");
        let created = ensure(&ws).unwrap();
        assert_eq!(created.len(), 3);
        assert!(ws.join("memory").is_dir());
        for (rel, text) in STARTER_FILES {
            assert_eq!(fs::read_to_string(ws.join(rel)).unwrap(), *text);
        }
        fs::write(ws.join("MEMORY.md"), "mine").unwrap();
        fs::write(ws.join("SOUL.md"), "").unwrap();
        assert!(ensure(&ws).unwrap().is_empty());
        assert_eq!(fs::read_to_string(ws.join("MEMORY.md")).unwrap(), "mine");
        assert_eq!(fs::read_to_string(ws.join("SOUL.md")).unwrap(), "");
        // No temp files left behind.
        let names: Vec<_> = fs::read_dir(&ws)
            .unwrap()
            .map(|e| e.unwrap().file_name())
            .collect();
        assert_eq!(names.len(), 4, "{names:?}");
        fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn starter_heartbeat_is_effectively_empty() {
        assert!(is_effectively_empty(STARTER_HEARTBEAT));
        assert!(is_effectively_empty(""));
        assert!(is_effectively_empty("# Tasks\n\n- [ ]\n<!-- a -->\n"));
        assert!(!is_effectively_empty("# Tasks\n- [ ] water the plants\n"));
        assert!(!is_effectively_empty("<!-- x --> do this\n"));
        assert!(!is_effectively_empty(STARTER_MEMORY));
        assert!(is_effectively_empty(
            "# Tasks\n- [x] water the plants\n* [X] call mum\n"
        ));
        assert!(is_effectively_empty(
            "<!--\n- [ ] not a task\n-->\n- [x] done\n"
        ));
        assert!(!is_effectively_empty("- [x] done\n- [ ] still open\n"));
        assert!(!is_effectively_empty("Check the backups every Monday.\n"));
    }

    #[test]
    fn daily_log_names() {
        let d = jiff::civil::date(2026, 2, 14);
        assert_eq!(daily_log_rel(d), "memory/2026-02-14.md");
        assert!(is_daily_log("memory/2026-02-14.md"));
        assert!(!is_daily_log("memory/2026-02-30.md"));
        assert!(!is_daily_log("memory/notes.md"));
        assert!(!is_daily_log("2026-02-14.md"));
        assert!(!is_daily_log("memory/sub/2026-02-14.md"));
    }

    #[test]
    fn walk_finds_markdown_only_and_skips_hidden_and_links() {
        let ws = temp("walk");
        fs::create_dir_all(ws.join("memory")).unwrap();
        fs::create_dir_all(ws.join("knowledge/deep")).unwrap();
        fs::create_dir_all(ws.join(".git")).unwrap();
        fs::write(ws.join("MEMORY.md"), "a").unwrap();
        fs::write(ws.join("memory/2026-01-01.md"), "b").unwrap();
        fs::write(ws.join("knowledge/deep/x.md"), "c").unwrap();
        fs::write(ws.join("knowledge/notes.txt"), "no").unwrap();
        fs::write(ws.join(".hidden.md"), "no").unwrap();
        fs::write(ws.join(".git/HEAD.md"), "no").unwrap();
        std::os::unix::fs::symlink(ws.join("MEMORY.md"), ws.join("link.md")).unwrap();
        std::os::unix::fs::symlink(&ws, ws.join("loop")).unwrap();
        let rels: Vec<String> = walk(&ws).unwrap().into_iter().map(|f| f.rel).collect();
        assert_eq!(
            rels,
            ["MEMORY.md", "knowledge/deep/x.md", "memory/2026-01-01.md"]
        );
        assert!(is_indexable_rel("memory/2026-01-01.md"));
        assert!(!is_indexable_rel(".git/x.md"));
        assert!(!is_indexable_rel("a/../b.md"));
        fs::remove_dir_all(&ws).unwrap();
        assert!(
            walk(&ws).is_err(),
            "a missing workspace is not an empty one"
        );
    }
}
