//! File tools and the guard that keeps them inside the workspace (plus allowed paths).

use std::path::{Component, Path, PathBuf};

use serde_json::Value;

use super::{ToolContext, ToolOutput, str_arg, uint_arg};
use crate::durable;

/// Resolves tool paths and refuses any that leave the allowed roots, by `..`, by an
/// absolute path or through a symlink.
#[derive(Debug, Clone)]
pub struct PathGuard {
    workspace: PathBuf,
    roots: Vec<PathBuf>,
}

impl PathGuard {
    pub fn new(workspace: &Path, allowed: &[PathBuf]) -> PathGuard {
        let real = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
        let mut roots = vec![real(workspace)];
        roots.extend(allowed.iter().map(|p| real(p)));
        PathGuard {
            workspace: real(workspace),
            roots,
        }
    }

    /// The real path `raw` names (relative paths are taken from the workspace), if it is
    /// inside a root. Symlinks anywhere in the existing part are followed before checking.
    pub fn resolve(&self, raw: &str) -> Result<PathBuf, String> {
        if raw.trim().is_empty() {
            return Err("path is empty".into());
        }
        if raw.contains('\0') {
            return Err("path contains a NUL byte".into());
        }
        let given = Path::new(raw);
        let joined = if given.is_absolute() {
            given.to_path_buf()
        } else {
            self.workspace.join(given)
        };
        let lexical = normalize(&joined)
            .ok_or_else(|| format!("path {raw:?} climbs above the filesystem root"))?;
        let real = real_path(&lexical).map_err(|e| format!("cannot resolve path {raw:?}: {e}"))?;
        if self.roots.iter().any(|root| real.starts_with(root)) {
            Ok(real)
        } else {
            Err(format!(
                "path {raw:?} is outside the workspace ({}); file tools may only use the workspace and tools.allowed_paths",
                self.workspace.display()
            ))
        }
    }

    /// `path` relative to the workspace when inside it, for messages.
    pub fn show(&self, path: &Path) -> String {
        path.strip_prefix(&self.workspace)
            .unwrap_or(path)
            .display()
            .to_string()
    }
}

/// Removes `.` and resolves `..` lexically; `None` if `..` climbs above the root.
fn normalize(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::ParentDir => {
                if !out.pop() || out.as_os_str().is_empty() {
                    return None;
                }
            }
            Component::CurDir => {}
            other => out.push(other.as_os_str()),
        }
    }
    Some(out)
}

/// Canonicalizes the longest existing prefix of `path` (following symlinks) and appends the
/// rest, which does not exist and so cannot be a symlink.
fn real_path(path: &Path) -> std::io::Result<PathBuf> {
    let mut existing = path.to_path_buf();
    let mut rest: Vec<std::ffi::OsString> = Vec::new();
    loop {
        // symlink_metadata: a dangling symlink exists too, and must be followed (and fail).
        if existing.symlink_metadata().is_ok() {
            let mut real = existing.canonicalize()?;
            for part in rest.iter().rev() {
                real.push(part);
            }
            return Ok(real);
        }
        match (existing.file_name(), existing.parent()) {
            (Some(name), Some(parent)) => {
                rest.push(name.to_os_string());
                existing = parent.to_path_buf();
            }
            _ => return Ok(path.to_path_buf()),
        }
    }
}

fn read_text(path: &Path, shown: &str) -> Result<String, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read {shown}: {e}"))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

pub fn read(ctx: &ToolContext, args: &Value) -> Result<ToolOutput, String> {
    let raw = str_arg(args, "path")?;
    let path = ctx.guard.resolve(raw)?;
    if path.is_dir() {
        let mut names: Vec<String> = std::fs::read_dir(&path)
            .map_err(|e| format!("cannot list {raw}: {e}"))?
            .filter_map(|e| e.ok())
            .map(|e| {
                let name = e.file_name().to_string_lossy().into_owned();
                if e.path().is_dir() {
                    format!("{name}/")
                } else {
                    name
                }
            })
            .collect();
        names.sort();
        return Ok(ToolOutput::ok(format!(
            "{raw} is a directory:\n{}",
            names.join("\n")
        )));
    }
    let text = read_text(&path, raw)?;
    let offset = uint_arg(args, "offset")?.unwrap_or(0) as usize;
    let limit = uint_arg(args, "limit")?.map(|l| l as usize);
    if offset == 0 && limit.is_none() {
        return Ok(ToolOutput::ok(text));
    }
    let lines: Vec<&str> = text
        .lines()
        .skip(offset)
        .take(limit.unwrap_or(usize::MAX))
        .collect();
    Ok(ToolOutput::ok(lines.join("\n")))
}

pub fn write(ctx: &ToolContext, args: &Value) -> Result<ToolOutput, String> {
    let raw = str_arg(args, "path")?;
    let content = str_arg(args, "content")?;
    let path = ctx.guard.resolve(raw)?;
    if path.is_dir() {
        return Err(format!("{raw} is a directory"));
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {raw}'s directory: {e}"))?;
    }
    durable::write_atomic(&path, content.as_bytes())
        .map_err(|e| format!("cannot write {raw}: {e}"))?;
    refresh_index(ctx, &path);
    Ok(ToolOutput::ok(format!(
        "wrote {} bytes to {}",
        content.len(),
        ctx.guard.show(&path)
    )))
}

pub fn edit(ctx: &ToolContext, args: &Value) -> Result<ToolOutput, String> {
    let raw = str_arg(args, "path")?;
    let old = str_arg(args, "old_text")?;
    let new = str_arg(args, "new_text")?;
    if old.is_empty() {
        return Err("old_text must not be empty".into());
    }
    let path = ctx.guard.resolve(raw)?;
    let text = read_text(&path, raw)?;
    match text.matches(old).count() {
        0 => Err(format!(
            "old_text was not found in {raw}; read the file and copy the text exactly"
        )),
        1 => {
            let updated = text.replacen(old, new, 1);
            durable::write_atomic(&path, updated.as_bytes())
                .map_err(|e| format!("cannot write {raw}: {e}"))?;
            refresh_index(ctx, &path);
            Ok(ToolOutput::ok(format!("edited {}", ctx.guard.show(&path))))
        }
        n => Err(format!(
            "old_text occurs {n} times in {raw}; include more surrounding text so it matches once"
        )),
    }
}

/// Markdown the agent wrote in the workspace is searchable at once.
fn refresh_index(ctx: &ToolContext, path: &Path) {
    // The guard works on canonical paths; the index on the workspace path as configured.
    let Ok(rel) = path.strip_prefix(&ctx.guard.workspace) else {
        return;
    };
    if path.extension().is_some_and(|e| e == "md")
        && let Err(e) = ctx.memory.refresh_file(&ctx.memory.workspace().join(rel))
    {
        log::warn!("cannot index {}: {e}", path.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tmp(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("lgpt-guard-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(d.join("ws/notes")).unwrap();
        std::fs::create_dir_all(d.join("outside")).unwrap();
        d
    }

    #[test]
    fn guard_refuses_escapes() {
        let d = tmp("esc");
        let ws = d.join("ws");
        std::os::unix::fs::symlink(d.join("outside"), ws.join("link")).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", ws.join("pw")).unwrap();
        let g = PathGuard::new(&ws, &[]);
        assert!(g.resolve("notes/a.md").is_ok());
        assert!(g.resolve("new/dir/file.md").is_ok());
        assert!(g.resolve("notes/../MEMORY.md").is_ok());
        for bad in [
            "../outside/x",
            "/etc/passwd",
            "link/x.md",
            "pw",
            "notes/../../outside",
            "/",
            "",
        ] {
            assert!(g.resolve(bad).is_err(), "{bad} must be refused");
        }
        let allowed = PathGuard::new(&ws, &[d.join("outside")]);
        assert!(
            allowed
                .resolve(d.join("outside/x").to_str().unwrap())
                .is_ok()
        );
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn normalize_handles_dots() {
        assert_eq!(
            normalize(Path::new("/a/./b/../c")),
            Some(PathBuf::from("/a/c"))
        );
        assert_eq!(normalize(Path::new("/a/../..")), None);
    }
}
