//! Where things live on disk: XDG locations, their env overrides, and the files inside.

use std::fs;
use std::io;
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Resolved locations. Build with [`Paths::resolve`], then [`Paths::create_dirs`].
#[derive(Clone, Debug)]
pub struct Paths {
    pub config_file: PathBuf,
    pub data_dir: PathBuf,
    pub state_dir: PathBuf,
    pub cache_dir: PathBuf,
    pub runtime_dir: PathBuf,
    pub workspace: PathBuf,
}

/// Looks up an environment variable; a seam so tests need not mutate the process env.
pub type EnvLookup<'a> = &'a dyn Fn(&str) -> Option<String>;

pub fn process_env(key: &str) -> Option<String> {
    std::env::var(key).ok().filter(|v| !v.is_empty())
}

fn home(env: EnvLookup) -> PathBuf {
    env("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"))
}

/// Expands a leading `~/` to `$HOME/`.
pub fn expand_tilde(path: &str, env: EnvLookup) -> PathBuf {
    if path == "~" {
        home(env)
    } else if let Some(rest) = path.strip_prefix("~/") {
        home(env).join(rest)
    } else {
        PathBuf::from(path)
    }
}

fn xdg(env: EnvLookup, var: &str, fallback: &str) -> PathBuf {
    env(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home(env).join(fallback))
}

/// The config file: `--config`, else `LOCALGPT_CONFIG`, else XDG.
pub fn config_file(flag: Option<&Path>, env: EnvLookup) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = env("LOCALGPT_CONFIG") {
        return expand_tilde(&p, env);
    }
    xdg(env, "XDG_CONFIG_HOME", ".config")
        .join("localgpt")
        .join("config.toml")
}

impl Paths {
    /// Resolves every location; `workspace_setting` is `memory.workspace` from the config
    /// (already overridden by `LOCALGPT_WORKSPACE`), empty for the default.
    pub fn resolve(config_file: PathBuf, workspace_setting: &str, env: EnvLookup) -> Paths {
        let pick = |var: &str, xdg_var: &str, fallback: &str| {
            env(var)
                .map(|p| expand_tilde(&p, env))
                .unwrap_or_else(|| xdg(env, xdg_var, fallback).join("localgpt"))
        };
        let data_dir = pick("LOCALGPT_DATA_DIR", "XDG_DATA_HOME", ".local/share");
        let state_dir = pick("LOCALGPT_STATE_DIR", "XDG_STATE_HOME", ".local/state");
        let cache_dir = pick("LOCALGPT_CACHE_DIR", "XDG_CACHE_HOME", ".cache");
        let runtime_dir = match env("XDG_RUNTIME_DIR") {
            // With a state dir override (tests, several instances) the pid file follows it,
            // so two instances with different state never see each other's pid file.
            Some(run) if env("LOCALGPT_STATE_DIR").is_none() => PathBuf::from(run).join("localgpt"),
            _ => state_dir.join("run"),
        };
        let workspace = if workspace_setting.is_empty() {
            data_dir.join("workspace")
        } else {
            expand_tilde(workspace_setting, env)
        };
        Paths {
            config_file,
            data_dir,
            state_dir,
            cache_dir,
            runtime_dir,
            workspace,
        }
    }

    /// Creates every directory (0700) that does not exist yet.
    pub fn create_dirs(&self) -> io::Result<()> {
        for dir in [
            &self.data_dir,
            &self.state_dir,
            &self.cache_dir,
            &self.runtime_dir,
            &self.workspace,
        ] {
            create_private_dir(dir)?;
        }
        Ok(())
    }

    pub fn pid_file(&self) -> PathBuf {
        self.runtime_dir.join("localgpt.pid")
    }

    pub fn log_file(&self) -> PathBuf {
        self.state_dir.join("localgpt.log")
    }

    pub fn index_db(&self) -> PathBuf {
        self.cache_dir.join("memory-index.sqlite")
    }

    pub fn sessions_db(&self) -> PathBuf {
        self.state_dir.join("sessions.sqlite")
    }

    pub fn heartbeat_state(&self) -> PathBuf {
        self.state_dir.join("heartbeat.json")
    }
}

/// Creates `dir` and missing parents with mode 0700.
pub fn create_private_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", dir.display())))
}

/// Restricts an existing file to its owner (0600).
pub fn make_private(file: &Path) -> io::Result<()> {
    fs::set_permissions(file, fs::Permissions::from_mode(0o600))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn xdg_defaults() {
        let env = env_of(&[("HOME", "/home/u")]);
        let cfg = config_file(None, &env);
        assert_eq!(cfg, PathBuf::from("/home/u/.config/localgpt/config.toml"));
        let p = Paths::resolve(cfg, "", &env);
        assert_eq!(p.data_dir, PathBuf::from("/home/u/.local/share/localgpt"));
        assert_eq!(p.state_dir, PathBuf::from("/home/u/.local/state/localgpt"));
        assert_eq!(p.cache_dir, PathBuf::from("/home/u/.cache/localgpt"));
        assert_eq!(
            p.workspace,
            PathBuf::from("/home/u/.local/share/localgpt/workspace")
        );
        assert_eq!(
            p.pid_file(),
            PathBuf::from("/home/u/.local/state/localgpt/run/localgpt.pid")
        );
    }

    #[test]
    fn overrides_win() {
        let env = env_of(&[
            ("HOME", "/home/u"),
            ("XDG_CONFIG_HOME", "/xdg/config"),
            ("XDG_RUNTIME_DIR", "/run/user/1000"),
            ("LOCALGPT_DATA_DIR", "/d"),
            ("LOCALGPT_CACHE_DIR", "~/c"),
        ]);
        assert_eq!(
            config_file(None, &env),
            PathBuf::from("/xdg/config/localgpt/config.toml")
        );
        assert_eq!(
            config_file(Some(Path::new("/etc/x.toml")), &env),
            PathBuf::from("/etc/x.toml")
        );
        let p = Paths::resolve(PathBuf::from("/c.toml"), "", &env);
        assert_eq!(p.workspace, PathBuf::from("/d/workspace"));
        assert_eq!(p.cache_dir, PathBuf::from("/home/u/c"));
        assert_eq!(p.runtime_dir, PathBuf::from("/run/user/1000/localgpt"));
        let p = Paths::resolve(PathBuf::from("/c.toml"), "~/notes", &env);
        assert_eq!(p.workspace, PathBuf::from("/home/u/notes"));
    }

    #[test]
    fn dirs_are_private() {
        let base = std::env::temp_dir().join(format!("lgpt-paths-{}", std::process::id()));
        let base_str = base.to_str().unwrap().to_string();
        let env = env_of(&[("HOME", base_str.as_str())]);
        let p = Paths::resolve(PathBuf::from("/none"), "", &env);
        p.create_dirs().unwrap();
        let mode = fs::metadata(&p.state_dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o700);
        fs::remove_dir_all(&base).unwrap();
    }
}
