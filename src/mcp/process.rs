//! A server's child process: started in its own process group with a short list of
//! inherited environment variables, its stderr copied into our log (capped), and stopped
//! the way the MCP stdio transport asks: close its stdin, wait briefly, then SIGTERM and
//! SIGKILL to the whole group (a server started through `npx` or `uvx` is several
//! processes).

use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStderr, ChildStdin, ChildStdout, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions};

use crate::config::McpServerConfig;

/// Variables a server inherits from the daemon; everything else it is given in its `env`
/// table. Provider keys and the API token stay with the daemon.
const INHERITED_ENV: &[&str] = &[
    "HOME", "LOGNAME", "USER", "PATH", "SHELL", "TERM", "LANG", "LANGUAGE", "TZ", "TMPDIR",
];

/// After its stdin closes, how long a server gets to exit on its own.
pub const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// After SIGTERM, how long the group gets before SIGKILL.
const TERM_WAIT: Duration = Duration::from_secs(2);

/// Longest stderr line copied to the log; the rest of the line is cut.
const STDERR_LINE_BYTES: usize = 2048;
/// Stderr copied to the log per minute, in lines and bytes; beyond either, lines are
/// counted and dropped until the minute is over (a chatty server must not flood journald).
const STDERR_LINES_PER_MINUTE: usize = 60;
const STDERR_BYTES_PER_MINUTE: usize = 16 * 1024;

/// A running server process (the leader of its own process group).
pub struct Process {
    name: String,
    child: Child,
}

/// The pipes of a started process.
pub struct Pipes {
    pub stdin: ChildStdin,
    pub stdout: ChildStdout,
}

/// The working directory of a server: `cwd` (with `~` expanded), else the workspace.
pub fn working_dir(config: &McpServerConfig, workspace: &Path) -> PathBuf {
    if config.cwd.is_empty() {
        workspace.to_path_buf()
    } else {
        crate::paths::expand_tilde(&config.cwd, &crate::paths::process_env)
    }
}

/// Starts the server `name`; its stderr goes to our log from a thread of its own.
pub fn spawn(
    name: &str,
    config: &McpServerConfig,
    workspace: &Path,
) -> Result<(Process, Pipes), String> {
    let Some((program, args)) = config.command.split_first() else {
        return Err("mcp.servers.<name>.command is empty".into());
    };
    let cwd = working_dir(config, workspace);
    if !cwd.is_dir() {
        return Err(format!(
            "its working directory {} is not a directory (mcp.servers.{name}.cwd)",
            cwd.display()
        ));
    }
    let mut cmd = Command::new(program);
    cmd.args(args)
        .env_clear()
        .current_dir(&cwd)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Its own group: a Ctrl-C meant for the daemon's terminal does not reach it, and
        // stopping it reaches every process it started.
        .process_group(0);
    for (key, value) in std::env::vars_os() {
        let inherited = key
            .to_str()
            .is_some_and(|k| INHERITED_ENV.contains(&k) || k.starts_with("LC_"));
        if inherited {
            cmd.env(key, value);
        }
    }
    cmd.envs(&config.env);
    let mut child = cmd
        .spawn()
        .map_err(|e| format!("cannot start {program:?}: {e}"))?;
    let (Some(stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        let _ = child.kill();
        let _ = child.wait();
        return Err("its pipes could not be set up".into());
    };
    let log_name = name.to_string();
    if let Err(e) = thread::Builder::new()
        .name(format!("mcp-{name}-err"))
        .spawn(move || copy_stderr(&log_name, stderr))
    {
        log::warn!("mcp[{name}]: stderr is not logged: {e}");
    }
    let process = Process {
        name: name.to_string(),
        child,
    };
    Ok((process, Pipes { stdin, stdout }))
}

impl Process {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether the process has exited, leaving it unreaped: while it is a zombie its pid,
    /// which is also its group's id, cannot be given to another process.
    fn exited(&self) -> bool {
        let Some(pid) = Pid::from_raw(self.child.id() as i32) else {
            return true;
        };
        matches!(
            rustix::process::waitid(
                WaitId::Pid(pid),
                WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
            ),
            Ok(Some(_)) | Err(_)
        )
    }

    fn wait_exit(&self, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        loop {
            if self.exited() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal_group(&self, signal: Signal) {
        if let Some(pid) = Pid::from_raw(self.child.id() as i32)
            && let Err(e) = rustix::process::kill_process_group(pid, signal)
            && e != rustix::io::Errno::SRCH
        {
            log::warn!("mcp[{}]: cannot signal its process group: {e}", self.name);
        }
    }

    /// Stops the process: `close_input` closes its stdin; it gets `close_wait` to exit,
    /// then its group gets SIGTERM, then SIGKILL. Whatever else is left in the group is
    /// killed before the leader is reaped. Returns how it ended.
    pub fn stop(mut self, close_input: impl FnOnce(), close_wait: Duration) -> String {
        close_input();
        if !self.wait_exit(close_wait) {
            log::info!(
                "mcp[{}]: still running {close_wait:?} after its input closed; sending SIGTERM",
                self.name
            );
            self.signal_group(Signal::TERM);
            if !self.wait_exit(TERM_WAIT) {
                log::warn!(
                    "mcp[{}]: still running {TERM_WAIT:?} after SIGTERM; sending SIGKILL",
                    self.name
                );
                self.signal_group(Signal::KILL);
            }
        }
        // Children it left behind in its group (the leader, unreaped, still holds the id).
        self.signal_group(Signal::KILL);
        match self.child.wait() {
            Ok(status) => describe(status),
            Err(e) => format!("cannot be waited for: {e}"),
        }
    }
}

/// "exited with status 3", "was killed by signal 9".
fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(sig)) => format!("was killed by signal {sig}"),
        _ => format!("ended ({status})"),
    }
}

/// Copies stderr lines into the log as `mcp[<name>]: …`, within the per-minute caps.
fn copy_stderr(name: &str, stderr: ChildStderr) {
    let mut input = BufReader::new(stderr);
    let mut cap = StderrCap::new(Instant::now());
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input
            .by_ref()
            .take(STDERR_LINE_BYTES as u64)
            .read_until(b'\n', &mut buf)
        {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        let cut = buf.last() != Some(&b'\n');
        if cut && super::connection::skip_line(&mut input).is_err() {
            break;
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end();
        if text.is_empty() {
            continue;
        }
        match cap.admit(Instant::now(), text.len()) {
            Admit::Log { dropped } => {
                if dropped > 0 {
                    log::info!("mcp[{name}]: ({dropped} stderr lines were dropped)");
                }
                let more = if cut { " …" } else { "" };
                log::info!("mcp[{name}]: {text}{more}");
            }
            Admit::DropFirst => log::info!(
                "mcp[{name}]: stderr over {STDERR_LINES_PER_MINUTE} lines or {STDERR_BYTES_PER_MINUTE} bytes a minute; dropping the rest of this minute"
            ),
            Admit::Drop => {}
        }
    }
}

/// The per-minute stderr allowance.
struct StderrCap {
    window: Instant,
    lines: usize,
    bytes: usize,
    dropped: usize,
}

#[derive(Debug, PartialEq)]
enum Admit {
    /// Log the line; `dropped` lines were dropped in the window before.
    Log {
        dropped: usize,
    },
    /// The first line over the allowance: say so once.
    DropFirst,
    Drop,
}

impl StderrCap {
    fn new(now: Instant) -> StderrCap {
        StderrCap {
            window: now,
            lines: 0,
            bytes: 0,
            dropped: 0,
        }
    }

    fn admit(&mut self, now: Instant, len: usize) -> Admit {
        let mut dropped = 0;
        if now.duration_since(self.window) >= Duration::from_secs(60) {
            dropped = std::mem::take(&mut self.dropped);
            *self = StderrCap::new(now);
        }
        if self.lines < STDERR_LINES_PER_MINUTE && self.bytes + len <= STDERR_BYTES_PER_MINUTE {
            self.lines += 1;
            self.bytes += len;
            return Admit::Log { dropped };
        }
        self.dropped += 1;
        if self.dropped == 1 {
            Admit::DropFirst
        } else {
            Admit::Drop
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stderr_is_capped_per_minute() {
        let t0 = Instant::now();
        let mut cap = StderrCap::new(t0);
        for _ in 0..STDERR_LINES_PER_MINUTE {
            assert_eq!(cap.admit(t0, 10), Admit::Log { dropped: 0 });
        }
        assert_eq!(cap.admit(t0, 10), Admit::DropFirst);
        assert_eq!(cap.admit(t0, 10), Admit::Drop);
        let later = t0 + Duration::from_secs(61);
        assert_eq!(cap.admit(later, 10), Admit::Log { dropped: 2 });
        let mut bytes = StderrCap::new(t0);
        assert_eq!(
            bytes.admit(t0, STDERR_BYTES_PER_MINUTE),
            Admit::Log { dropped: 0 }
        );
        assert_eq!(bytes.admit(t0, 1), Admit::DropFirst);
    }
}
