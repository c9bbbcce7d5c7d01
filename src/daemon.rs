//! Running the daemon: the foreground loop (what systemd runs), background start, stop and
//! status, the pid file and readiness notification.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, Write};
use std::net::{SocketAddr, TcpListener};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{bounded, select};
use log::{info, warn};

use crate::app::{App, OpenError};
use crate::client::ClientError;
use crate::config::{Config, ConfigError};
use crate::memory::MemoryError;
use crate::paths::{self, Paths};

/// Exit statuses, documented in the README and used by the systemd unit.
pub mod exit {
    /// A runtime failure (listener died, I/O error).
    pub const FAILURE: i32 = 1;
    /// The command line was wrong (clap's own status).
    pub const USAGE: i32 = 2;
    /// `daemon status`: not running.
    pub const NOT_RUNNING: i32 = 3;
    /// Another instance runs, or the port is taken: restarting will not help.
    pub const UNAVAILABLE: i32 = 69;
    /// The config file is bad: restarting will not help.
    pub const CONFIG: i32 = 78;
}

/// Why the daemon could not run.
#[derive(Debug)]
pub enum DaemonError {
    Config(ConfigError),
    AlreadyRunning {
        pid: Option<u32>,
        pid_file: PathBuf,
    },
    PortInUse(SocketAddr),
    /// A system call failed: what was being done, and the OS's error.
    System {
        doing: String,
        source: io::Error,
    },
    /// The daemon's state (memory, sessions, tool policy) could not be opened.
    Open(OpenError),
    /// The memory index failed (the `memory` commands).
    Memory(MemoryError),
    /// The running daemon could not be reached or refused the request.
    Client(ClientError),
    ListenerFailed(String),
    /// The background daemon exited during start with this status; `log` is what it wrote.
    Exited {
        code: i32,
        log: String,
    },
    /// Something did not happen within its time (the daemon answering, or stopping).
    TimedOut(String),
    /// The command cannot do what was asked in this situation; the message says why.
    Refused(String),
}

/// Maps an `io::Error` to [`DaemonError::System`] saying what was being done.
pub fn sys(doing: impl Into<String>) -> impl FnOnce(io::Error) -> DaemonError {
    let doing = doing.into();
    move |source| DaemonError::System { doing, source }
}

impl DaemonError {
    pub fn exit_code(&self) -> i32 {
        match self {
            DaemonError::Config(_) | DaemonError::Open(OpenError::Config(_)) => exit::CONFIG,
            DaemonError::AlreadyRunning { .. } | DaemonError::PortInUse(_) => exit::UNAVAILABLE,
            DaemonError::Exited { code, .. } => *code,
            DaemonError::System { .. }
            | DaemonError::Open(_)
            | DaemonError::Memory(_)
            | DaemonError::Client(_)
            | DaemonError::ListenerFailed(_)
            | DaemonError::TimedOut(_)
            | DaemonError::Refused(_) => exit::FAILURE,
        }
    }
}

impl fmt::Display for DaemonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DaemonError::Config(e) => write!(f, "bad config: {e}"),
            DaemonError::AlreadyRunning { pid, pid_file } => match pid {
                Some(pid) => write!(
                    f,
                    "localgpt is already running (pid {pid}, pid file {}); stop it with `localgpt daemon stop`",
                    pid_file.display()
                ),
                None => write!(
                    f,
                    "localgpt is already running (pid file {})",
                    pid_file.display()
                ),
            },
            DaemonError::PortInUse(addr) => write!(
                f,
                "cannot listen on {addr}: the address is already in use (another program, or set server.port)"
            ),
            DaemonError::System { doing, source } => write!(f, "{doing}: {source}"),
            DaemonError::Open(OpenError::Config(e)) => write!(f, "bad config: {e}"),
            DaemonError::Open(e) => write!(f, "{e}"),
            DaemonError::Memory(e) => write!(f, "{e}"),
            DaemonError::Client(e) => write!(f, "{e}"),
            DaemonError::ListenerFailed(e) | DaemonError::TimedOut(e) | DaemonError::Refused(e) => {
                write!(f, "{e}")
            }
            DaemonError::Exited { code, log } => {
                write!(f, "the daemon exited during start (status {code}):\n{log}")
            }
        }
    }
}

impl From<ConfigError> for DaemonError {
    fn from(e: ConfigError) -> Self {
        DaemonError::Config(e)
    }
}

impl From<OpenError> for DaemonError {
    fn from(e: OpenError) -> Self {
        DaemonError::Open(e)
    }
}

impl From<MemoryError> for DaemonError {
    fn from(e: MemoryError) -> Self {
        DaemonError::Memory(e)
    }
}

impl From<ClientError> for DaemonError {
    fn from(e: ClientError) -> Self {
        DaemonError::Client(e)
    }
}

/// Loads config and paths the way every command does.
pub fn load(config_flag: Option<&Path>) -> Result<(Config, Paths), ConfigError> {
    let config_file = paths::config_file(config_flag, &paths::process_env);
    let config = Config::load(&config_file)?;
    let paths = Paths::resolve(config_file, &config.memory.workspace, &paths::process_env);
    Ok((config, paths))
}

/// The pid file, locked for the daemon's lifetime: the lock, not the pid, says whether an
/// instance runs, so a stale file left by a crash never blocks a start.
pub struct PidFile {
    file: File,
    path: PathBuf,
}

/// What a pid file tells about a running daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunningInfo {
    pub pid: u32,
    pub addr: Option<SocketAddr>,
}

impl PidFile {
    pub fn acquire(path: &Path) -> Result<PidFile, DaemonError> {
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .map_err(sys(format!("cannot open pid file {}", path.display())))?;
        if file.try_lock().is_err() {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Err(DaemonError::AlreadyRunning {
                pid: text.lines().next().and_then(|l| l.trim().parse().ok()),
                pid_file: path.to_path_buf(),
            });
        }
        let _ = paths::make_private(path);
        let mut pid = PidFile {
            file,
            path: path.to_path_buf(),
        };
        pid.write(None)?;
        Ok(pid)
    }

    /// Records our pid and, once bound, the listening address (line 2).
    pub fn write(&mut self, addr: Option<SocketAddr>) -> Result<(), DaemonError> {
        let text = match addr {
            Some(a) => format!("{}\n{a}\n", std::process::id()),
            None => format!("{}\n", std::process::id()),
        };
        let doing = format!("cannot write pid file {}", self.path.display());
        self.file
            .set_len(0)
            .and_then(|()| self.file.rewind())
            .and_then(|()| self.file.write_all(text.as_bytes()))
            .and_then(|()| self.file.sync_data())
            .map_err(sys(doing))
    }

    /// Whether a live daemon holds the pid file at `path`, and what it wrote there.
    pub fn probe(path: &Path) -> Option<RunningInfo> {
        let mut file = File::open(path).ok()?;
        if file.try_lock_shared().is_ok() {
            return None;
        }
        let mut text = String::new();
        file.read_to_string(&mut text).ok()?;
        let mut lines = text.lines();
        let pid = lines.next()?.trim().parse().ok()?;
        let addr = lines.next().and_then(|l| l.trim().parse().ok());
        Some(RunningInfo { pid, addr })
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Options of `daemon start --foreground`.
#[derive(Debug, Default, Clone)]
pub struct ForegroundOptions {
    pub config: Option<PathBuf>,
    pub verbose: u8,
    /// Log to this file (timestamped) instead of stderr; set by background start.
    pub log_file: Option<PathBuf>,
}

/// Runs the daemon until SIGTERM/SIGINT. This is the one code path of `daemon start
/// --foreground`, of the background child and of the integration tests.
pub fn run_foreground(opts: &ForegroundOptions) -> Result<(), DaemonError> {
    let (config, paths) = load(opts.config.as_deref())?;
    paths
        .create_dirs()
        .map_err(sys("cannot create directories"))?;
    let log_file = opts.log_file.clone();
    crate::logging::init(
        crate::logging::level(&config.logging.level, opts.verbose),
        log_file.as_deref(),
    )
    .map_err(sys("cannot open log file"))?;

    // Installed before anything can see us (the pid file), so an early SIGTERM is a clean
    // stop, not a kill. Signals become channel messages, so the main thread waits on them
    // and on a listener failure together.
    let (signal_tx, signal_rx) = bounded::<i32>(4);
    let mut signals = signal_hook::iterator::Signals::new([
        signal_hook::consts::SIGTERM,
        signal_hook::consts::SIGINT,
    ])
    .map_err(sys("cannot install signal handlers"))?;
    let signal_handle = signals.handle();
    std::thread::Builder::new()
        .name("signals".into())
        .spawn(move || {
            for sig in signals.forever() {
                if signal_tx.send(sig).is_err() {
                    break;
                }
            }
        })
        .map_err(sys("cannot start the signal thread"))?;

    let mut pid_file = PidFile::acquire(&paths.pid_file())?;
    let socket = if config.server.enabled {
        Some(bind(&config)?)
    } else {
        None
    };

    let grace = config.server.shutdown_grace.get();
    let app = Arc::new(App::open(config, paths)?);
    let scanner = app
        .agent
        .memory
        .spawn_scanner(app.config.memory.scan_interval.get());
    let heartbeat = crate::heartbeat::Timer::spawn(app.heartbeat.clone(), app.agent.clone());
    let reach = crate::reach::start(app.clone(), &app.reach, &app.config, &app.paths.state_dir);
    // In the background: a slow or broken MCP server delays nothing.
    app.agent.mcp.start();
    let (fatal_tx, fatal_rx) = bounded::<String>(1);
    let server = match socket {
        Some(socket) => {
            let server = crate::server::start(app.clone(), socket, fatal_tx)
                .map_err(sys("cannot start the HTTP server"))?;
            let addr = server.local_addr();
            pid_file.write(Some(addr))?;
            info!(
                "localgpt {} listening on http://{addr}",
                env!("CARGO_PKG_VERSION")
            );
            Some(server)
        }
        None => {
            info!(
                "localgpt {} running without HTTP listener (server.enabled = false)",
                env!("CARGO_PKG_VERSION")
            );
            None
        }
    };
    notify_systemd("READY=1");

    let outcome = select! {
        recv(signal_rx) -> sig => {
            info!("received signal {}, shutting down", sig.unwrap_or(0));
            Ok(())
        }
        recv(fatal_rx) -> msg => Err(DaemonError::ListenerFailed(
            msg.unwrap_or_else(|_| "HTTP listener stopped".into()),
        )),
    };
    notify_systemd("STOPPING=1");
    signal_handle.close();
    let started = Instant::now();
    // First, so a heartbeat turn in progress (timer or API) starts winding down at once.
    heartbeat.stop(grace);
    if let Some(server) = server {
        if server.shutdown(grace) {
            info!("all requests finished; stopped in {:?}", started.elapsed());
        } else {
            warn!("shutdown grace of {grace:?} ran out with requests still running");
        }
    }
    reach.stop(grace.saturating_sub(started.elapsed()));
    // After the requests: a turn finishing in the grace may still call an MCP tool.
    app.agent.mcp.stop();
    scanner.stop();
    drop(pid_file);
    outcome
}

/// Connections the kernel may hold for the listener before tiny_http accepts them.
const LISTEN_BACKLOG: i32 = 1024;

fn bind(config: &Config) -> Result<TcpListener, DaemonError> {
    let addr = config.server.addr();
    let listener = TcpListener::bind(addr).map_err(|e| match e.kind() {
        io::ErrorKind::AddrInUse => DaemonError::PortInUse(addr),
        _ => sys(format!("cannot listen on {addr}"))(e),
    })?;
    // tiny_http writes a response's head and body separately and never sets TCP_NODELAY:
    // on a keep-alive connection, Nagle then holds the body until the client's delayed ACK,
    // 40 ms per request. Accepted sockets inherit the option from the listener on Linux.
    if let Err(e) = rustix::net::sockopt::set_tcp_nodelay(&listener, true) {
        warn!("cannot set TCP_NODELAY on the listener ({e}); keep-alive requests may be slow");
    }
    // std listens with a backlog of 128: a burst of connects beyond it (300 clients at
    // once in scripts/bench-load.sh) is dropped and retried by the clients a second later.
    // Listening again raises it (the kernel caps it at net.core.somaxconn).
    if let Err(e) = rustix::net::listen(&listener, LISTEN_BACKLOG) {
        warn!("cannot raise the listen backlog ({e}); bursts of connections may wait");
    }
    Ok(listener)
}

/// Tells systemd (Type=notify) about our state; a no-op outside systemd.
fn notify_systemd(state: &str) {
    let Some(socket) = std::env::var_os("NOTIFY_SOCKET") else {
        return;
    };
    let sock = match std::os::unix::net::UnixDatagram::unbound() {
        Ok(s) => s,
        Err(e) => {
            warn!("sd_notify: {e}");
            return;
        }
    };
    let bytes = socket.as_encoded_bytes();
    let sent = if let Some(name) = bytes.strip_prefix(b"@") {
        use std::os::linux::net::SocketAddrExt;
        std::os::unix::net::SocketAddr::from_abstract_name(name)
            .and_then(|addr| sock.send_to_addr(state.as_bytes(), &addr))
    } else {
        sock.send_to(state.as_bytes(), Path::new(&socket))
    };
    if let Err(e) = sent {
        warn!("sd_notify {state}: {e}");
    }
}

/// `daemon start` without `--foreground`: spawns the foreground daemon detached, with its
/// log in the state dir, and returns once it answers `/health`.
pub fn start_background(
    config_flag: Option<&Path>,
    verbose: u8,
) -> Result<RunningInfo, DaemonError> {
    let (config, paths) = load(config_flag)?;
    paths
        .create_dirs()
        .map_err(sys("cannot create directories"))?;
    if let Some(running) = PidFile::probe(&paths.pid_file()) {
        return Err(DaemonError::AlreadyRunning {
            pid: Some(running.pid),
            pid_file: paths.pid_file(),
        });
    }
    let log_path = paths.log_file();
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .map_err(sys(format!("cannot open {}", log_path.display())))?;
    let _ = paths::make_private(&log_path);
    let log_len = log.metadata().map(|m| m.len()).unwrap_or(0);
    let stderr = log.try_clone().map_err(sys("cannot share the log file"))?;
    let exe = std::env::current_exe().map_err(sys("cannot find our own executable"))?;
    let mut cmd = Command::new(exe);
    if let Some(c) = config_flag {
        cmd.arg("--config").arg(c);
    }
    for _ in 0..verbose {
        cmd.arg("-v");
    }
    cmd.args(["daemon", "start", "--foreground", "--log-file"])
        .arg(&log_path)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        // Its own process group: a Ctrl-C in the shell that started it does not reach it.
        .process_group(0);
    let mut child = cmd
        .spawn()
        .map_err(sys("cannot start the daemon process"))?;

    let deadline = Instant::now() + Duration::from_secs(15);
    let client = crate::client::Client::from_config(&config);
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Err(DaemonError::Exited {
                code: status.code().unwrap_or(exit::FAILURE),
                log: log_tail(&log_path, log_len),
            });
        }
        if let Some(info) = PidFile::probe(&paths.pid_file())
            && info.pid == child.id()
        {
            if let Some(addr) = info.addr {
                if client.at(addr).get("/health").is_ok() {
                    return Ok(info);
                }
            } else if !config.server.enabled {
                return Ok(info);
            }
        }
        if Instant::now() > deadline {
            return Err(DaemonError::TimedOut(format!(
                "the daemon did not answer /health within 15s; see {}",
                log_path.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// What the log file gained since `from`, for an error message.
fn log_tail(path: &Path, from: u64) -> String {
    let mut text = String::new();
    if let Ok(mut f) = File::open(path) {
        let _ = f.seek(io::SeekFrom::Start(from));
        let _ = f.take(8192).read_to_string(&mut text);
    }
    text.trim_end().to_string()
}

/// `daemon stop`: SIGTERM, then wait until the pid file's lock is released.
pub fn stop(paths: &Paths, grace: Duration) -> Result<Option<u32>, DaemonError> {
    let Some(info) = PidFile::probe(&paths.pid_file()) else {
        return Ok(None);
    };
    let pid = rustix::process::Pid::from_raw(info.pid as i32)
        .ok_or_else(|| DaemonError::Refused(format!("bad pid {} in pid file", info.pid)))?;
    rustix::process::kill_process(pid, rustix::process::Signal::TERM)
        .map_err(|e| sys(format!("cannot signal pid {}", info.pid))(e.into()))?;
    let deadline = Instant::now() + grace + Duration::from_secs(5);
    // The lock goes with the pid file, a moment before the last log lines are flushed and
    // the process ends: wait for the end, so what follows a stop sees the whole log.
    while PidFile::probe(&paths.pid_file()).is_some() || running(pid) {
        if Instant::now() > deadline {
            return Err(DaemonError::TimedOut(format!(
                "pid {} did not stop within {:?}",
                info.pid,
                grace + Duration::from_secs(5)
            )));
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    Ok(Some(info.pid))
}

/// Whether `pid` is alive (a zombie waiting for its reaper counts as ended).
fn running(pid: rustix::process::Pid) -> bool {
    rustix::process::test_kill_process(pid).is_ok()
        && std::fs::read_to_string(format!("/proc/{}/stat", pid.as_raw_nonzero()))
            .map(|stat| {
                stat.rsplit_once(')')
                    .is_none_or(|(_, rest)| !rest.trim_start().starts_with('Z'))
            })
            .unwrap_or(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pid_file_lock_refuses_second_and_clears() {
        let dir = std::env::temp_dir().join(format!("lgpt-pid-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("x.pid");
        // A stale file (no lock) does not block.
        std::fs::write(&path, "999999\n").unwrap();
        assert_eq!(PidFile::probe(&path), None);
        let mut first = PidFile::acquire(&path).unwrap();
        first.write(Some("127.0.0.1:5".parse().unwrap())).unwrap();
        let info = PidFile::probe(&path).unwrap();
        assert_eq!(info.pid, std::process::id());
        assert_eq!(info.addr, Some("127.0.0.1:5".parse().unwrap()));
        match PidFile::acquire(&path) {
            Err(DaemonError::AlreadyRunning { pid, .. }) => {
                assert_eq!(pid, Some(std::process::id()))
            }
            other => panic!(
                "expected AlreadyRunning, got {other:?}",
                other = other.err()
            ),
        }
        drop(first);
        assert!(!path.exists());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
