//! Test harness: starts the real `localgpt` binary (`daemon start --foreground`, the code path
//! systemd runs) on a free loopback port with private temporary dirs, and talks HTTP to it.
#![allow(dead_code)]

pub mod fake_embedder;
pub mod fake_provider;
pub mod fake_telegram;
pub mod http_server;
pub mod stream_client;

use std::fs;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const BIN: &str = env!("CARGO_BIN_EXE_localgpt");

/// A directory removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::SeqCst);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let dir = std::env::temp_dir().join(format!(
            "localgpt-test-{tag}-{}-{n}-{nanos}",
            std::process::id()
        ));
        fs::create_dir_all(&dir).expect("create temp dir");
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// The environment a test daemon or CLI call runs with: everything under one temp dir.
pub struct Home {
    pub dir: TempDir,
}

impl Home {
    pub fn new(tag: &str) -> Home {
        Home {
            dir: TempDir::new(tag),
        }
    }

    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> PathBuf {
        self.root().join("config.toml")
    }

    pub fn workspace(&self) -> PathBuf {
        self.root().join("data").join("workspace")
    }

    pub fn state_dir(&self) -> PathBuf {
        self.root().join("state")
    }

    pub fn cache_dir(&self) -> PathBuf {
        self.root().join("cache")
    }

    /// Writes `config.toml`; `port = 0` is added to `[server]` unless the text sets a port.
    pub fn write_config(&self, toml: &str) {
        let text = if toml.contains("port") {
            toml.to_string()
        } else if toml.contains("[server]") {
            toml.replacen("[server]", "[server]\nport = 0", 1)
        } else {
            format!("[server]\nport = 0\n{toml}")
        };
        fs::write(self.config_path(), text).expect("write config");
    }

    /// A `localgpt` command with this home's environment (and nothing of the caller's).
    pub fn command(&self) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", self.root())
            .env("LOCALGPT_CONFIG", self.config_path())
            .env("LOCALGPT_DATA_DIR", self.root().join("data"))
            .env("LOCALGPT_STATE_DIR", self.state_dir())
            .env("LOCALGPT_CACHE_DIR", self.cache_dir())
            .stdin(Stdio::null());
        cmd
    }

    pub fn pid_file(&self) -> PathBuf {
        self.state_dir().join("run").join("localgpt.pid")
    }

    /// Runs a CLI command to completion: (status, stdout, stderr).
    pub fn run(&self, args: &[&str]) -> (ExitStatus, String, String) {
        let out = self.command().args(args).output().expect("run localgpt");
        (
            out.status,
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    }
}

/// A daemon child process; killed (SIGKILL) on drop if still running.
pub struct Daemon {
    pub home: Home,
    child: Option<Child>,
    pub addr: SocketAddr,
    stderr_path: PathBuf,
}

impl Daemon {
    /// Starts a daemon with `config` (TOML) in a fresh home.
    pub fn start(config: &str) -> Daemon {
        let home = Home::new("daemon");
        home.write_config(config);
        Daemon::start_in(home)
    }

    /// Starts a daemon in an existing home (restarts keep state).
    pub fn start_in(home: Home) -> Daemon {
        Daemon::start_with(home, |_| {})
    }

    /// Starts a daemon, letting the caller add env variables or arguments first.
    pub fn start_with(home: Home, customise: impl FnOnce(&mut Command)) -> Daemon {
        let _ = fs::remove_file(home.pid_file());
        let stderr_path = home.root().join(format!(
            "daemon-stderr-{}.log",
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        let stderr = fs::File::create(&stderr_path).expect("stderr file");
        let mut cmd = home.command();
        cmd.args(["daemon", "start", "--foreground"])
            .stdout(Stdio::null())
            .stderr(stderr);
        customise(&mut cmd);
        let mut child = cmd.spawn().expect("spawn daemon");
        let deadline = Instant::now() + Duration::from_secs(30);
        let addr = loop {
            if let Ok(Some(status)) = child.try_wait() {
                panic!(
                    "daemon exited during start ({status}):\n{}",
                    fs::read_to_string(&stderr_path).unwrap_or_default()
                );
            }
            if let Ok(text) = fs::read_to_string(home.pid_file())
                && let Some(addr) = text.lines().nth(1).and_then(|l| l.trim().parse().ok())
            {
                break addr;
            }
            assert!(
                Instant::now() < deadline,
                "daemon did not start in 30s:\n{}",
                fs::read_to_string(&stderr_path).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(10));
        };
        Daemon {
            home,
            child: Some(child),
            addr,
            stderr_path,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Everything the daemon wrote to stderr so far.
    pub fn stderr(&self) -> String {
        fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Waits until the daemon's log has `needle` (log lines are written up to 50 ms late)
    /// and returns the whole log.
    pub fn wait_log(&self, needle: &str) -> String {
        eventually(
            Duration::from_secs(10),
            &format!("log line {needle:?}"),
            || {
                let log = self.stderr();
                log.contains(needle).then_some(log)
            },
        )
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(|c| c.id()).unwrap_or(0)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.call("GET", path, None, &[])
    }

    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.call("POST", path, Some(body), &[])
    }

    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.call("DELETE", path, None, &[])
    }

    /// One HTTP call with optional body and extra headers; the body parsed as JSON (or a
    /// JSON string holding the raw text).
    pub fn call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Value) {
        let (status, _, text) = self.raw_call(method, path, body, headers);
        let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, value)
    }

    /// One HTTP call over a fresh connection: (status, headers lowercased, body text).
    pub fn raw_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> (u16, Vec<(String, String)>, String) {
        let mut req = format!(
            "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nConnection: close\r\n",
            self.addr.port()
        );
        for (k, v) in headers {
            req.push_str(&format!("{k}: {v}\r\n"));
        }
        if let Some(b) = body {
            req.push_str(&format!(
                "Content-Type: application/json\r\nContent-Length: {}\r\n",
                b.len()
            ));
        }
        req.push_str("\r\n");
        if let Some(b) = body {
            req.push_str(b);
        }
        let raw = self.raw(req.as_bytes(), Duration::from_secs(60));
        parse_response(&raw)
    }

    /// Writes raw bytes on a new connection and reads until the server closes it.
    pub fn raw(&self, bytes: &[u8], timeout: Duration) -> Vec<u8> {
        let mut s = TcpStream::connect(self.addr).expect("connect");
        s.set_read_timeout(Some(timeout)).expect("timeout");
        let _ = s.write_all(bytes);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        out
    }

    /// Sends SIGTERM and waits for the exit status.
    pub fn stop(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status()
            .expect("kill");
        let status = wait_timeout(child, Duration::from_secs(30)).expect("daemon did not stop");
        self.child = None;
        status
    }

    /// Waits for the daemon to exit on its own.
    pub fn wait_exit(&mut self, limit: Duration) -> ExitStatus {
        let child = self.child.as_mut().expect("running");
        let status = wait_timeout(child, limit).expect("the daemon did not exit");
        self.child = None;
        status
    }

    /// Sends SIGKILL (a crash) and waits.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops the daemon (SIGKILL) and gives back its home for a restart.
    pub fn into_home(mut self) -> Home {
        self.kill();

        std::mem::replace(&mut self.home, Home::new("spent"))
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + limit;
    loop {
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        if Instant::now() > deadline {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Splits a raw HTTP/1.1 response (chunked or not) into status, headers and body text.
pub fn parse_response(raw: &[u8]) -> (u16, Vec<(String, String)>, String) {
    let text = String::from_utf8_lossy(raw);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.contains("chunked"));
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_string()
    };
    (status, headers, body)
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 || rest.len() < n {
            out.push_str(&rest[..rest.len().min(n)]);
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// Polls `check` every 20 ms until it returns `Some`, or panics after `limit`.
pub fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}
