//! Writes that survive a crash: a file is either the old or the new version, never empty.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::Path;

/// Replaces `path` with `data`: temp file in the same directory, fsync, rename, fsync dir.
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let name = path
        .file_name()
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "path has no file name"))?;
    let tmp = dir.join(format!(
        ".{}.tmp-{}-{}",
        name.to_string_lossy(),
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    let result = (|| {
        let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
        // Keep the mode of the file being replaced (a private file stays private).
        if let Ok(meta) = fs::metadata(path) {
            f.set_permissions(meta.permissions())?;
        }
        f.write_all(data)?;
        f.sync_all()?;
        fs::rename(&tmp, path)?;
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
        Ok(())
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Whether `name` is a temp file of [`write_atomic`] left by a process that is gone (a
/// crash or `kill -9` between create and rename). A live writer's temp file is kept.
fn is_orphan_temp(name: &str) -> bool {
    let Some((_, tail)) = name.strip_prefix('.').and_then(|n| n.rsplit_once(".tmp-")) else {
        return false;
    };
    let Some((pid, id)) = tail.split_once('-') else {
        return false;
    };
    let well_formed = id.len() == 32 && id.bytes().all(|b| b.is_ascii_hexdigit());
    match pid.parse::<u32>() {
        Ok(pid) if well_formed => {
            pid != std::process::id() && !Path::new(&format!("/proc/{pid}")).exists()
        }
        _ => false,
    }
}

/// Reads a small JSON state file: `Ok(None)` when it does not exist, `Err(why)` when it is
/// larger than `max_bytes` (not one we wrote) or not the JSON we expect.
pub fn read_state<T: serde::de::DeserializeOwned>(
    path: &Path,
    max_bytes: u64,
) -> Result<Option<T>, String> {
    use std::io::Read;
    let file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let mut bytes = Vec::new();
    file.take(max_bytes + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| e.to_string())?;
    if bytes.len() as u64 > max_bytes {
        return Err(format!("larger than {max_bytes} bytes"));
    }
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Writes `value` as pretty JSON to `path` atomically, readable by the owner only.
pub fn write_state<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut json = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    json.push(b'\n');
    // A new file is created 0600 first: the atomic write keeps the mode of the file it
    // replaces, so the data never sits in a world-readable file.
    match fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    write_atomic(path, &json)
}

/// Removes the orphaned temp files of [`write_atomic`] under `root` (not following
/// symlinks, not entering hidden folders, at most `max_depth` levels); returns how many.
/// The old or new file they stand beside is whole either way: they are only litter.
pub fn sweep_orphan_temps(root: &Path, max_depth: usize) -> usize {
    // Whether a writer is alive is read from /proc: without it, sweep nothing.
    if !Path::new("/proc/self").exists() {
        return 0;
    }
    let mut removed = 0;
    let mut stack = vec![(root.to_path_buf(), 0)];
    while let Some((dir, depth)) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            if kind.is_dir() && !name.starts_with('.') && depth + 1 < max_depth {
                stack.push((entry.path(), depth + 1));
            } else if kind.is_file()
                && is_orphan_temp(name)
                && fs::remove_file(entry.path()).is_ok()
            {
                removed += 1;
            }
        }
    }
    removed
}

/// Appends `data` in append mode and syncs it; creates the file when missing.
pub fn append(path: &Path, data: &[u8]) -> io::Result<()> {
    let mut f = OpenOptions::new().create(true).append(true).open(path)?;
    f.write_all(data)?;
    f.sync_data()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn orphaned_temps_are_swept_and_live_ones_kept() {
        let dir = std::env::temp_dir().join(format!("lgpt-sweep-{}", std::process::id()));
        let sub = dir.join("memory");
        fs::create_dir_all(&sub).unwrap();
        let id = "0123456789abcdef0123456789abcdef";
        // No process has pid 4194304 + 1 (above the kernel's pid_max limit).
        let dead = sub.join(format!(".notes.md.tmp-4194305-{id}"));
        let live = sub.join(format!(".notes.md.tmp-{}-{id}", std::process::id()));
        let other = dir.join(".notes.md.tmp-x");
        for p in [&dead, &live, &other] {
            fs::write(p, b"partial").unwrap();
        }
        fs::write(dir.join("notes.md"), b"whole").unwrap();
        assert_eq!(sweep_orphan_temps(&dir, 8), 1);
        assert!(!dead.exists());
        assert!(live.exists() && other.exists() && dir.join("notes.md").exists());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn replaces_and_appends() {
        let dir = std::env::temp_dir().join(format!("lgpt-durable-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("a.md");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        append(&p, b"\nthree").unwrap();
        assert_eq!(fs::read_to_string(&p).unwrap(), "two\nthree");
        // No temp files left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
