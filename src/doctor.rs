//! `localgpt doctor`: checks what a working setup needs and says what to fix. It changes
//! nothing on disk except a probe file it removes again.

use std::net::{TcpStream, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::config::Config;
use crate::daemon::PidFile;
use crate::paths::Paths;

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub ok: bool,
    pub what: String,
    pub detail: String,
}

fn check(ok: bool, what: impl Into<String>, detail: impl Into<String>) -> Check {
    Check {
        ok,
        what: what.into(),
        detail: detail.into(),
    }
}

/// Every check, in the order a user would fix them.
pub fn run(config: &Config, paths: &Paths) -> Vec<Check> {
    let mut out = vec![check(
        true,
        "config",
        if paths.config_file.exists() {
            format!("{} is valid", paths.config_file.display())
        } else {
            format!("{} not found: all defaults", paths.config_file.display())
        },
    )];
    for (name, dir) in [
        ("workspace", &paths.workspace),
        ("state dir", &paths.state_dir),
        ("cache dir", &paths.cache_dir),
    ] {
        out.push(writable(name, dir));
    }
    out.push(daemon(config, paths));
    out.push(provider(config));
    out.push(heartbeat(config, paths));
    out
}

fn writable(name: &str, dir: &Path) -> Check {
    if !dir.is_dir() {
        return check(
            false,
            name,
            format!(
                "{} does not exist (the daemon creates it at start)",
                dir.display()
            ),
        );
    }
    let probe = dir.join(format!(".localgpt-doctor-{}", std::process::id()));
    match std::fs::write(&probe, b"probe") {
        Ok(()) => {
            let _ = std::fs::remove_file(&probe);
            check(true, name, format!("{} is writable", dir.display()))
        }
        Err(e) => check(
            false,
            name,
            format!("{} is not writable: {e}", dir.display()),
        ),
    }
}

fn daemon(config: &Config, paths: &Paths) -> Check {
    let Some(info) = PidFile::probe(&paths.pid_file()) else {
        return check(
            true,
            "daemon",
            "not running (start it with `localgpt daemon start`)",
        );
    };
    let Some(addr) = info.addr else {
        return check(
            true,
            "daemon",
            format!("pid {} running without HTTP listener", info.pid),
        );
    };
    let client =
        crate::client::Client::new(&config.server.auth_token, Some(Duration::from_secs(3)));
    match client.at(addr).get("/health") {
        Ok(_) => check(
            true,
            "daemon",
            format!("pid {} answers on http://{addr}", info.pid),
        ),
        Err(e) => check(
            false,
            "daemon",
            format!("pid {} does not answer on {addr}: {e}", info.pid),
        ),
    }
}

/// Whether the default model's provider can be reached: a key where one is needed, the
/// executable for the CLI, a TCP connection for servers.
fn provider(config: &Config) -> Check {
    let model = &config.agent.default_model;
    let what = format!("provider for {model}");
    let Ok((provider, _)) = crate::config::split_model(model) else {
        return check(false, what, "agent.default_model is not provider/model");
    };
    let p = &config.providers;
    match provider {
        "claude-cli" => match find_in_path(&p.claude_cli.command) {
            Some(found) => check(true, what, format!("{} found", found.display())),
            None => check(
                false,
                what,
                format!(
                    "{:?} is not an executable in PATH: install Claude Code, set providers.claude_cli.command, or choose another agent.default_model",
                    p.claude_cli.command
                ),
            ),
        },
        "anthropic" if p.anthropic.api_key.is_empty() => check(
            false,
            what,
            "no key: set providers.anthropic.api_key or ANTHROPIC_API_KEY",
        ),
        "openai" if p.openai.api_key.is_empty() && p.openai.base_url.contains("api.openai.com") => {
            check(
                false,
                what,
                "no key: set providers.openai.api_key or OPENAI_API_KEY",
            )
        }
        "anthropic" => reachable(what, &p.anthropic.base_url),
        "openai" => reachable(what, &p.openai.base_url),
        _ => reachable(what, &p.ollama.base_url),
    }
}

fn reachable(what: String, base_url: &str) -> Check {
    let rest = base_url.split_once("://").map_or(base_url, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or("");
    let default_port = if base_url.starts_with("https") {
        443
    } else {
        80
    };
    let target = if authority
        .rsplit_once(':')
        .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
    {
        authority.to_string()
    } else {
        format!("{authority}:{default_port}")
    };
    let addr = match target.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => return check(false, what, format!("cannot resolve {authority}")),
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(_) => check(true, what, format!("{base_url} is reachable")),
        Err(e) => check(false, what, format!("{base_url} is not reachable: {e}")),
    }
}

fn find_in_path(command: &str) -> Option<std::path::PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let is_exe = |p: &Path| {
        p.metadata()
            .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
            .unwrap_or(false)
    };
    if command.contains('/') {
        let p = Path::new(command);
        return is_exe(p).then(|| p.to_path_buf());
    }
    std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(command))
            .find(|p| is_exe(p))
    })
}

fn heartbeat(config: &Config, paths: &Paths) -> Check {
    let hb = &config.heartbeat;
    if !hb.enabled || hb.interval.get().is_zero() {
        return check(true, "heartbeat", "off");
    }
    let text =
        std::fs::read_to_string(paths.workspace.join(crate::memory::workspace::HEARTBEAT_MD))
            .unwrap_or_default();
    let every = String::from(hb.interval);
    if crate::memory::workspace::is_effectively_empty(&text) {
        check(
            true,
            "heartbeat",
            format!("every {every}; HEARTBEAT.md has no open tasks (no model calls)"),
        )
    } else {
        check(
            true,
            "heartbeat",
            format!("every {every}; HEARTBEAT.md has tasks"),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_executables() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("/definitely/not/here").is_none());
        assert!(find_in_path("no-such-command-localgpt").is_none());
    }

    #[test]
    fn refused_server_is_reported() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let c = reachable("x".into(), &format!("http://127.0.0.1:{port}/v1"));
        assert!(!c.ok, "{c:?}");
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", live.local_addr().unwrap());
        assert!(reachable("x".into(), &url).ok);
    }
}
