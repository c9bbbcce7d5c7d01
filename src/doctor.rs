//! `localgpt doctor`: checks what a working setup needs and says how to fix what fails. It
//! changes nothing on disk except probe files it removes again; databases are opened
//! read-only.

use std::net::{TcpListener, TcpStream, ToSocketAddrs};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use serde::Serialize;

use crate::config::{Config, ConfigError, ProviderKind};
use crate::daemon::PidFile;
use crate::paths::Paths;

/// How a check came out. Only `Fail` makes `doctor` exit 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Ok,
    Warn,
    Fail,
}

/// One finding, with a hint when something needs doing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Check {
    pub check: String,
    pub status: Status,
    pub detail: String,
    pub fix: Option<String>,
}

impl Check {
    fn ok(check: impl Into<String>, detail: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status: Status::Ok,
            detail: detail.into(),
            fix: None,
        }
    }

    fn fail(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            check: check.into(),
            status: Status::Fail,
            detail: detail.into(),
            fix: Some(fix.into()),
        }
    }

    fn warn(check: impl Into<String>, detail: impl Into<String>, fix: impl Into<String>) -> Check {
        Check {
            status: Status::Warn,
            ..Check::fail(check, detail, fix)
        }
    }

    pub fn failed(&self) -> bool {
        self.status == Status::Fail
    }
}

/// Every check, in the order a user would fix them. `config` is the loaded config, or the
/// error that kept it from loading (the other checks then run on the defaults).
pub fn run(config: Result<&Config, &ConfigError>, paths: &Paths) -> Vec<Check> {
    let defaults = Config::default();
    let (mut out, config) = match config {
        Ok(c) => (vec![config_check(paths)], c),
        Err(e) => (
            vec![Check::fail(
                "config",
                e.to_string(),
                format!(
                    "correct that key in {}; `localgpt config init --config example.toml` writes every key with its default (the checks below use the defaults)",
                    paths.config_file.display()
                ),
            )],
            &defaults,
        ),
    };
    if let Some(c) = config_secrets(paths) {
        out.push(c);
    }
    for (name, dir, private) in [
        ("workspace", &paths.workspace, false),
        ("state dir", &paths.state_dir, true),
        ("cache dir", &paths.cache_dir, true),
    ] {
        out.push(directory(name, dir, private));
    }
    out.push(database(
        "sessions db",
        &paths.sessions_db(),
        "SELECT count(*) FROM sessions",
        "sessions",
        "stop the daemon and move the file aside (it is your chat history: keep the copy); a new one is created at start",
    ));
    out.push(database(
        "index db",
        &paths.index_db(),
        "SELECT count(*) FROM files",
        "files indexed",
        "it is a cache: `localgpt memory reindex --force`, or stop the daemon and delete it (rebuilt at start)",
    ));
    let running = PidFile::probe(&paths.pid_file());
    out.push(daemon(config, paths, running.as_ref()));
    if running.is_none() {
        out.push(port(config));
    }
    out.push(connections(config, running.as_ref()));
    out.push(provider(config));
    out.push(heartbeat(config, paths));
    out.push(bash_sandbox(config));
    out.push(telegram(&config.telegram));
    out.extend(mcp_servers(config, paths));
    out
}

/// Starts each MCP server once (in parallel, each bounded by `mcp.start_timeout` per
/// step): handshake and tool list, then stops it.
fn mcp_servers(config: &Config, paths: &Paths) -> Vec<Check> {
    let timeout = config.mcp.start_timeout.get();
    // The daemon creates the workspace at start; before that, a server that works in it
    // by default works in the temp dir for this check.
    let workspace = if paths.workspace.is_dir() {
        paths.workspace.clone()
    } else {
        std::env::temp_dir()
    };
    let probes: Vec<_> = config
        .mcp
        .servers
        .iter()
        .map(|(name, server)| {
            let (name, server, workspace) = (name.clone(), server.clone(), workspace.clone());
            std::thread::spawn(move || {
                let probe = crate::mcp::probe(&name, &server, &workspace, timeout);
                (name, server, probe)
            })
        })
        .collect();
    probes
        .into_iter()
        .filter_map(|t| t.join().ok())
        .map(|(name, server, probe)| {
            let what = format!("mcp {name}");
            match probe {
                Ok(p) => {
                    let mut tools = p.tools.join(", ");
                    if tools.is_empty() {
                        tools = "no tools".into();
                    }
                    Check::ok(
                        what,
                        format!(
                            "{} speaks MCP {}; {} tools: {tools}",
                            p.server,
                            p.protocol_version,
                            p.tools.len()
                        ),
                    )
                }
                Err(why) => Check::fail(
                    what,
                    why,
                    format!(
                        "run it by hand ({}) and read what it prints; correct mcp.servers.{name} in the config",
                        server.command.join(" ")
                    ),
                ),
            }
        })
        .collect()
}

fn config_check(paths: &Paths) -> Check {
    let file = &paths.config_file;
    if file.exists() {
        Check::ok("config", format!("{} is valid", file.display()))
    } else {
        Check::ok(
            "config",
            format!("{} not found: all defaults", file.display()),
        )
    }
}

/// A config file holding a key or token must not be readable by other users.
fn config_secrets(paths: &Paths) -> Option<Check> {
    let file = &paths.config_file;
    let text = std::fs::read_to_string(file).ok()?;
    let value: toml::Table = text.parse().ok()?;
    if !holds_secret(&toml::Value::Table(value)) {
        return None;
    }
    let mode = std::fs::metadata(file).ok()?.permissions().mode() & 0o777;
    Some(if mode & 0o077 == 0 {
        Check::ok(
            "config secrets",
            format!("{} is private ({mode:o})", file.display()),
        )
    } else {
        Check::fail(
            "config secrets",
            format!(
                "{} holds a key or token and has mode {mode:o}: other users can read it",
                file.display()
            ),
            format!("chmod 600 {}", file.display()),
        )
    })
}

fn holds_secret(value: &toml::Value) -> bool {
    match value {
        toml::Value::Table(t) => t.iter().any(|(k, v)| {
            ((k == "api_key" || k == "auth_token" || k == "bot_token")
                && v.as_str().is_some_and(|s| !s.is_empty()))
                // An MCP server's environment is where its tokens go.
                || (k == "env" && v.as_table().is_some_and(|t| !t.is_empty()))
                || holds_secret(v)
        }),
        _ => false,
    }
}

/// A directory exists, is ours, is writable, and (for state and cache) is private.
fn directory(name: &str, dir: &Path, private: bool) -> Check {
    let meta = match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => m,
        Ok(_) => {
            return Check::fail(
                name,
                format!("{} is not a directory", dir.display()),
                format!(
                    "move {} away; the daemon creates the directory",
                    dir.display()
                ),
            );
        }
        Err(_) => {
            return Check::warn(
                name,
                format!("{} does not exist yet", dir.display()),
                "start the daemon once (it creates its directories 0700)",
            );
        }
    };
    let uid = rustix::process::geteuid().as_raw();
    if meta.uid() != uid {
        return Check::fail(
            name,
            format!(
                "{} belongs to uid {}, not to you (uid {uid})",
                dir.display(),
                meta.uid()
            ),
            format!("chown -R {uid} {}", dir.display()),
        );
    }
    let probe = dir.join(format!(".localgpt-doctor-{}", std::process::id()));
    if let Err(e) = std::fs::write(&probe, b"probe") {
        return Check::fail(
            name,
            format!("{} is not writable: {e}", dir.display()),
            format!(
                "chmod u+rwx {} (and check the filesystem is not read-only)",
                dir.display()
            ),
        );
    }
    let _ = std::fs::remove_file(&probe);
    let mode = meta.permissions().mode() & 0o777;
    if private && mode & 0o077 != 0 {
        return Check::fail(
            name,
            format!(
                "{} has mode {mode:o}: other users can read your data",
                dir.display()
            ),
            format!("chmod 700 {}", dir.display()),
        );
    }
    Check::ok(name, format!("{} is writable ({mode:o})", dir.display()))
}

/// Opens a database read-only and runs `PRAGMA quick_check` and one count.
fn database(name: &str, file: &Path, count_sql: &str, noun: &str, fix: &str) -> Check {
    if !file.exists() {
        return Check::ok(name, format!("{} not created yet", file.display()));
    }
    use rusqlite::{Connection, OpenFlags};
    let opened = Connection::open_with_flags(
        file,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    );
    let verdict = opened.and_then(|conn| {
        conn.busy_timeout(Duration::from_secs(3))?;
        let quick: String = conn.query_row("PRAGMA quick_check", [], |r| r.get(0))?;
        let count: i64 = conn.query_row(count_sql, [], |r| r.get(0))?;
        Ok((quick, count))
    });
    match verdict {
        Ok((quick, count)) if quick == "ok" => Check::ok(
            name,
            format!("{} is sound ({count} {noun})", file.display()),
        ),
        Ok((quick, _)) => Check::fail(name, format!("{} is damaged: {quick}", file.display()), fix),
        Err(e) => Check::fail(name, format!("{} cannot be read: {e}", file.display()), fix),
    }
}

fn daemon(config: &Config, paths: &Paths, running: Option<&crate::daemon::RunningInfo>) -> Check {
    let pid_file = paths.pid_file();
    let Some(info) = running else {
        if pid_file.exists() {
            return Check::warn(
                "daemon",
                format!(
                    "not running; {} is stale (left by a crash or kill)",
                    pid_file.display()
                ),
                format!(
                    "harmless (a start takes the file over); `rm {}` to tidy up",
                    pid_file.display()
                ),
            );
        }
        return Check::ok(
            "daemon",
            "not running (start it with `localgpt daemon start`)",
        );
    };
    let Some(addr) = info.addr else {
        return Check::ok(
            "daemon",
            format!("pid {} running without HTTP listener", info.pid),
        );
    };
    let client =
        crate::client::Client::new(&config.server.auth_token, Some(Duration::from_secs(3)));
    match client.at(addr).get("/health") {
        Ok(_) => Check::ok(
            "daemon",
            format!("pid {} answers on http://{addr}", info.pid),
        ),
        Err(e) => Check::fail(
            "daemon",
            format!("pid {} does not answer on {addr}: {e}", info.pid),
            format!(
                "`localgpt daemon stop` (or kill {}) and start it again; see {}",
                info.pid,
                paths.log_file().display()
            ),
        ),
    }
}

/// Connection deadlines: whether they can be enforced (they need `pidfd_getfd`), and, from
/// a running daemon, how many connections tiny_http holds stuck for good.
fn connections(config: &Config, running: Option<&crate::daemon::RunningInfo>) -> Check {
    const NAME: &str = "connections";
    let status = running.and_then(|info| info.addr).and_then(|addr| {
        crate::client::Client::new(&config.server.auth_token, Some(Duration::from_secs(3)))
            .at(addr)
            .get("/api/status")
            .ok()
    });
    let Some(status) = status else {
        // No daemon to ask: can this process duplicate its own descriptors?
        return match crate::server::conn::deadlines::probe() {
            Ok(()) => Check::ok(
                NAME,
                "connection deadlines can be enforced here (pidfd_getfd works)",
            ),
            Err(e) => Check::warn(
                NAME,
                format!("connection deadlines cannot be enforced: pidfd_getfd fails ({e})"),
                "Linux 5.6 or later is needed; under a seccomp filter allow pidfd_getfd (the packaged units do)",
            ),
        };
    };
    let c = &status["connections"];
    let stuck = c["stuck"].as_u64().unwrap_or(0);
    if c["enforced"] == false {
        return Check::warn(
            NAME,
            "the daemon does not enforce connection deadlines (pidfd_getfd refused)",
            "Linux 5.6 or later is needed; under a seccomp filter allow pidfd_getfd (the packaged units do)",
        );
    }
    if stuck > 0 {
        return Check::warn(
            NAME,
            format!(
                "{stuck} connections are stuck in tiny_http (HTTP/2.0 request lines), each holding a \
                 thread, two descriptors and ~16 KiB until the daemon restarts"
            ),
            format!(
                "restart the daemon to free them; it restarts itself past \
                 server.max_stuck_connections ({}); a reverse proxy in front never forwards such lines",
                config.server.max_stuck_connections
            ),
        );
    }
    Check::ok(
        NAME,
        format!(
            "{} open, {} closed by a deadline, none stuck",
            c["open"].as_u64().unwrap_or(0),
            c["closed_by_deadline"].as_u64().unwrap_or(0)
        ),
    )
}

/// With no daemon running, whether the configured address can be bound.
fn port(config: &Config) -> Check {
    let s = &config.server;
    if !s.enabled {
        return Check::ok("port", "HTTP server disabled");
    }
    let addr = s.addr();
    match TcpListener::bind(addr) {
        Ok(_) => Check::ok("port", format!("{addr} is free")),
        Err(e) => Check::fail(
            "port",
            format!("{addr} cannot be bound: {e}"),
            format!(
                "stop what listens there (`ss -ltnp 'sport = :{}'`) or set server.port / LOCALGPT_PORT",
                s.port
            ),
        ),
    }
}

/// Whether the default model's provider can be reached: a key where one is needed, the
/// executable for the CLI, a TCP connection for servers.
fn provider(config: &Config) -> Check {
    let model = &config.agent.default_model;
    let what = format!("provider for {model}");
    let p = &config.providers;
    match model.provider() {
        ProviderKind::ClaudeCli => match find_in_path(&p.claude_cli.command) {
            Some(found) => Check::ok(what, format!("{} found", found.display())),
            None => Check::fail(
                what,
                format!("{:?} is not an executable in PATH", p.claude_cli.command),
                "install Claude Code, set providers.claude_cli.command, or choose another agent.default_model",
            ),
        },
        ProviderKind::Anthropic if p.anthropic.api_key.is_empty() => Check::fail(
            what,
            "no API key",
            "set providers.anthropic.api_key or ANTHROPIC_API_KEY",
        ),
        ProviderKind::OpenAi
            if p.openai.api_key.is_empty() && p.openai.base_url.contains("api.openai.com") =>
        {
            Check::fail(
                what,
                "no API key",
                "set providers.openai.api_key or OPENAI_API_KEY",
            )
        }
        ProviderKind::Anthropic => {
            reachable(what, &p.anthropic.base_url, "providers.anthropic.base_url")
        }
        ProviderKind::OpenAi => reachable(what, &p.openai.base_url, "providers.openai.base_url"),
        ProviderKind::Ollama => reachable(
            what,
            &p.ollama.base_url,
            "providers.ollama.base_url (is `ollama serve` running?)",
        ),
    }
}

fn reachable(what: String, base_url: &str, key: &str) -> Check {
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
    let fix = format!("check the network and {key}");
    let addr = match target.to_socket_addrs().map(|mut a| a.next()) {
        Ok(Some(a)) => a,
        _ => return Check::fail(what, format!("cannot resolve {authority}"), fix),
    };
    match TcpStream::connect_timeout(&addr, Duration::from_secs(3)) {
        Ok(_) => Check::ok(what, format!("{base_url} is reachable")),
        Err(e) => Check::fail(what, format!("{base_url} is not reachable: {e}"), fix),
    }
}

fn find_in_path(command: &str) -> Option<std::path::PathBuf> {
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
        return Check::ok("heartbeat", "off");
    }
    let text =
        std::fs::read_to_string(paths.workspace.join(crate::memory::workspace::HEARTBEAT_MD))
            .unwrap_or_default();
    let every = String::from(hb.interval);
    if crate::memory::workspace::is_effectively_empty(&text) {
        Check::ok(
            "heartbeat",
            format!("every {every}; HEARTBEAT.md has no open tasks (no model calls)"),
        )
    } else {
        Check::ok(
            "heartbeat",
            format!("every {every}; HEARTBEAT.md has tasks"),
        )
    }
}

/// Whether the `bash` tool runs confined (Landlock), and `bash_network = false` holds.
fn bash_sandbox(config: &Config) -> Check {
    let status = crate::agent::tools::bash_sandbox_status();
    if !status.confined {
        return Check::warn(
            "bash sandbox",
            status.detail,
            "bash commands can write wherever you can: run Linux 5.13+ with Landlock enabled (`landlock` in the kernel's lsm= list), or keep bash in tools.require_approval",
        );
    }
    if !config.tools.bash_network && !status.network_rules {
        return Check::warn(
            "bash sandbox",
            format!(
                "{}; tools.bash_network = false is NOT enforced",
                status.detail
            ),
            "network rules need Linux 6.7+ (Landlock ABI 4)",
        );
    }
    Check::ok("bash sandbox", status.detail)
}

/// The Telegram bridge: off, or a token `getMe` accepts (a refused one fails).
fn telegram(config: &crate::config::TelegramConfig) -> Check {
    use crate::reach::telegram;
    if !config.enabled() {
        return Check::ok("telegram", "off (no telegram.bot_token)");
    }
    match telegram::probe(config) {
        Ok(bot) if config.allowed_users.is_empty() => Check::warn(
            "telegram",
            format!("{bot} answers, but telegram.allowed_users is empty: every message is ignored"),
            "add your numeric user id to telegram.allowed_users (docs/reach.md says how to find it)",
        ),
        Ok(bot) => Check::ok(
            "telegram",
            format!(
                "{bot} answers; {} allowed user(s)",
                config.allowed_users.len()
            ),
        ),
        Err(e) if e.is_fatal() => Check::fail(
            "telegram",
            e.to_string(),
            "ask @BotFather for the bot's token (/token) and set telegram.bot_token or TELEGRAM_BOT_TOKEN",
        ),
        Err(e) => Check::warn(
            "telegram",
            e.to_string(),
            "check the network and telegram.api_base; the bridge retries on its own",
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(tag: &str) -> std::path::PathBuf {
        let dir = std::env::temp_dir().join(format!(
            "localgpt-doctor-{tag}-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4()
        ));
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

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
        let c = reachable("x".into(), &format!("http://127.0.0.1:{port}/v1"), "k");
        assert!(c.failed(), "{c:?}");
        assert!(c.fix.is_some());
        let live = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", live.local_addr().unwrap());
        assert_eq!(reachable("x".into(), &url, "k").status, Status::Ok);
    }

    #[test]
    fn taken_port_fails_and_free_port_passes() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut config = Config::default();
        config.server.port = taken.local_addr().unwrap().port();
        let c = port(&config);
        assert!(c.failed(), "{c:?}");
        drop(taken);
        assert_eq!(port(&config).status, Status::Ok);
    }

    #[test]
    fn group_readable_private_dir_fails() {
        let dir = temp("mode");
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let c = directory("state dir", &dir, true);
        assert!(
            c.failed() && c.fix.as_deref() == Some(&*format!("chmod 700 {}", dir.display())),
            "{c:?}"
        );
        assert_eq!(directory("workspace", &dir, false).status, Status::Ok);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        assert_eq!(directory("state dir", &dir, true).status, Status::Ok);
        assert_eq!(
            directory("x", &dir.join("missing"), true).status,
            Status::Warn
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn damaged_database_fails_and_sound_one_passes() {
        let dir = temp("db");
        let file = dir.join("t.sqlite");
        {
            let conn = rusqlite::Connection::open(&file).unwrap();
            conn.execute_batch("CREATE TABLE files(x); INSERT INTO files VALUES (1), (2);")
                .unwrap();
        }
        let c = database(
            "index db",
            &file,
            "SELECT count(*) FROM files",
            "files",
            "f",
        );
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.detail.contains("2 files"), "{c:?}");
        std::fs::write(&file, vec![0x5a; 8192]).unwrap();
        let c = database(
            "index db",
            &file,
            "SELECT count(*) FROM files",
            "files",
            "f",
        );
        assert!(c.failed(), "{c:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secrets_are_found_at_any_depth() {
        let t: toml::Table = "[providers.openai]\napi_key = \"sk-x\"".parse().unwrap();
        assert!(holds_secret(&toml::Value::Table(t)));
        let t: toml::Table = "[providers.openai]\napi_key = \"\"\n[server]\nport = 1"
            .parse()
            .unwrap();
        assert!(!holds_secret(&toml::Value::Table(t)));
    }
}
