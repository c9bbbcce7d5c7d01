//! Where things live on disk: XDG locations, their env overrides, and the files inside.
//!
//! Order of precedence for each location: `--config` (config file only), then the
//! `LOCALGPT_*` variables, then the directories systemd hands a service
//! (`$CONFIGURATION_DIRECTORY`, `$STATE_DIRECTORY`, `$CACHE_DIRECTORY`, `$RUNTIME_DIRECTORY`,
//! set by `ConfigurationDirectory=` and friends in the unit), then the XDG locations.
//! systemd has no data directory, so under a unit with `StateDirectory=` the workspace lives
//! in the state directory: it is the one place such a service may keep things for good.

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

/// The first directory of a systemd `*_DIRECTORY` variable. systemd joins several with `:`
/// when the unit names more than one (`StateDirectory=localgpt other`); the first is ours.
/// It always passes absolute paths, so anything else is not from systemd and is ignored.
fn systemd_dir(env: EnvLookup, var: &str) -> Option<PathBuf> {
    let value = env(var)?;
    let first = value.split(':').next()?;
    first.starts_with('/').then(|| PathBuf::from(first))
}

fn xdg(env: EnvLookup, var: &str, fallback: &str) -> PathBuf {
    env(var)
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .unwrap_or_else(|| home(env).join(fallback))
}

/// The config file: `--config`, else `LOCALGPT_CONFIG`, else `config.toml` in systemd's
/// `$CONFIGURATION_DIRECTORY`, else XDG.
pub fn config_file(flag: Option<&Path>, env: EnvLookup) -> PathBuf {
    if let Some(p) = flag {
        return p.to_path_buf();
    }
    if let Some(p) = env("LOCALGPT_CONFIG") {
        return expand_tilde(&p, env);
    }
    if let Some(dir) = systemd_dir(env, "CONFIGURATION_DIRECTORY") {
        return dir.join("config.toml");
    }
    xdg(env, "XDG_CONFIG_HOME", ".config")
        .join("localgpt")
        .join("config.toml")
}

impl Paths {
    /// Resolves every location; `workspace_setting` is `memory.workspace` from the config
    /// (already overridden by `LOCALGPT_WORKSPACE`), empty for the default.
    pub fn resolve(config_file: PathBuf, workspace_setting: &str, env: EnvLookup) -> Paths {
        let pick = |var: &str, systemd_var: &str, xdg_var: &str, fallback: &str| {
            env(var)
                .map(|p| expand_tilde(&p, env))
                .or_else(|| systemd_dir(env, systemd_var))
                .unwrap_or_else(|| xdg(env, xdg_var, fallback).join("localgpt"))
        };
        let data_dir = pick(
            "LOCALGPT_DATA_DIR",
            "STATE_DIRECTORY",
            "XDG_DATA_HOME",
            ".local/share",
        );
        let state_dir = pick(
            "LOCALGPT_STATE_DIR",
            "STATE_DIRECTORY",
            "XDG_STATE_HOME",
            ".local/state",
        );
        let cache_dir = pick(
            "LOCALGPT_CACHE_DIR",
            "CACHE_DIRECTORY",
            "XDG_CACHE_HOME",
            ".cache",
        );
        let runtime_dir = if env("LOCALGPT_STATE_DIR").is_some() {
            // With a state dir override (tests, several instances) the pid file follows it,
            // so two instances with different state never see each other's pid file.
            state_dir.join("run")
        } else if let Some(run) = systemd_dir(env, "RUNTIME_DIRECTORY") {
            run
        } else if let Some(run) = env("XDG_RUNTIME_DIR") {
            PathBuf::from(run).join("localgpt")
        } else {
            state_dir.join("run")
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
    fn systemd_directories_are_honoured() {
        // What a system unit with DynamicUser= and the *Directory= settings passes.
        let env = env_of(&[
            ("HOME", "/"),
            ("STATE_DIRECTORY", "/var/lib/localgpt"),
            ("CACHE_DIRECTORY", "/var/cache/localgpt"),
            ("CONFIGURATION_DIRECTORY", "/etc/localgpt"),
            ("RUNTIME_DIRECTORY", "/run/localgpt"),
        ]);
        let cfg = config_file(None, &env);
        assert_eq!(cfg, PathBuf::from("/etc/localgpt/config.toml"));
        let p = Paths::resolve(cfg, "", &env);
        assert_eq!(p.state_dir, PathBuf::from("/var/lib/localgpt"));
        assert_eq!(p.data_dir, PathBuf::from("/var/lib/localgpt"));
        assert_eq!(p.workspace, PathBuf::from("/var/lib/localgpt/workspace"));
        assert_eq!(p.cache_dir, PathBuf::from("/var/cache/localgpt"));
        assert_eq!(p.pid_file(), PathBuf::from("/run/localgpt/localgpt.pid"));
        assert_eq!(
            p.sessions_db(),
            PathBuf::from("/var/lib/localgpt/sessions.sqlite")
        );
        assert_eq!(
            p.index_db(),
            PathBuf::from("/var/cache/localgpt/memory-index.sqlite")
        );
    }

    #[test]
    fn systemd_directory_lists_give_their_first_entry() {
        let env = env_of(&[
            ("HOME", "/home/u"),
            ("STATE_DIRECTORY", "/var/lib/localgpt:/var/lib/other"),
            ("CACHE_DIRECTORY", "/var/cache/localgpt:/var/cache/other"),
            ("CONFIGURATION_DIRECTORY", "/etc/localgpt:/etc/other"),
        ]);
        let cfg = config_file(None, &env);
        assert_eq!(cfg, PathBuf::from("/etc/localgpt/config.toml"));
        let p = Paths::resolve(cfg, "", &env);
        assert_eq!(p.state_dir, PathBuf::from("/var/lib/localgpt"));
        assert_eq!(p.cache_dir, PathBuf::from("/var/cache/localgpt"));
    }

    #[test]
    fn relative_or_empty_systemd_directories_are_ignored() {
        let env = env_of(&[
            ("HOME", "/home/u"),
            ("STATE_DIRECTORY", "var/lib/localgpt"),
            ("CACHE_DIRECTORY", ":/var/cache/localgpt"),
            ("CONFIGURATION_DIRECTORY", "etc"),
        ]);
        let cfg = config_file(None, &env);
        assert_eq!(cfg, PathBuf::from("/home/u/.config/localgpt/config.toml"));
        let p = Paths::resolve(cfg, "", &env);
        assert_eq!(p.state_dir, PathBuf::from("/home/u/.local/state/localgpt"));
        assert_eq!(p.cache_dir, PathBuf::from("/home/u/.cache/localgpt"));
        assert_eq!(p.data_dir, PathBuf::from("/home/u/.local/share/localgpt"));
    }

    #[test]
    fn explicit_settings_beat_systemd_directories() {
        let env = env_of(&[
            ("HOME", "/home/u"),
            ("STATE_DIRECTORY", "/var/lib/localgpt"),
            ("CACHE_DIRECTORY", "/var/cache/localgpt"),
            ("CONFIGURATION_DIRECTORY", "/etc/localgpt"),
            ("RUNTIME_DIRECTORY", "/run/localgpt"),
            ("LOCALGPT_CONFIG", "/srv/lg.toml"),
            ("LOCALGPT_DATA_DIR", "/srv/data"),
            ("LOCALGPT_STATE_DIR", "/srv/state"),
            ("LOCALGPT_CACHE_DIR", "/srv/cache"),
        ]);
        assert_eq!(
            config_file(Some(Path::new("/flag.toml")), &env),
            PathBuf::from("/flag.toml")
        );
        let cfg = config_file(None, &env);
        assert_eq!(cfg, PathBuf::from("/srv/lg.toml"));
        let p = Paths::resolve(cfg.clone(), "", &env);
        assert_eq!(p.data_dir, PathBuf::from("/srv/data"));
        assert_eq!(p.workspace, PathBuf::from("/srv/data/workspace"));
        assert_eq!(p.state_dir, PathBuf::from("/srv/state"));
        assert_eq!(p.cache_dir, PathBuf::from("/srv/cache"));
        assert_eq!(p.pid_file(), PathBuf::from("/srv/state/run/localgpt.pid"));

        // memory.workspace (or LOCALGPT_WORKSPACE) moves only the workspace.
        let env = env_of(&[("HOME", "/"), ("STATE_DIRECTORY", "/var/lib/localgpt")]);
        let p = Paths::resolve(cfg, "/srv/notes", &env);
        assert_eq!(p.workspace, PathBuf::from("/srv/notes"));
        assert_eq!(p.state_dir, PathBuf::from("/var/lib/localgpt"));
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
