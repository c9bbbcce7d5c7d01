//! The `bash` tool: a shell command in the workspace, with a timeout and an output cap,
//! confined by Landlock where the kernel has it (see `sandbox.rs`): it writes only in the
//! workspace, `tools.allowed_paths` and a private temp dir that is removed afterwards.

use std::fs;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::sandbox::{self, Policy};
use super::{ToolContext, ToolOutput, str_arg};

/// Runs `bash -c command` in the workspace, confined (see the module doc).
pub fn run(ctx: &ToolContext, args: &Value) -> Result<ToolOutput, String> {
    let command = str_arg(args, "command")?;
    if command.trim().is_empty() {
        return Err("command is empty".into());
    }
    let tmp = PrivateTmp::create()?;
    let workspace = ctx.memory.workspace();
    let mut writable = vec![workspace.to_path_buf(), tmp.0.clone()];
    writable.extend(
        ctx.config
            .allowed_paths
            .iter()
            .map(|p| crate::paths::expand_tilde(p, &crate::paths::process_env)),
    );
    let policy = Policy {
        writable,
        network: ctx.config.bash_network,
    };
    let mut cmd = Command::new("bash");
    cmd.arg("-c")
        .arg(command)
        .current_dir(workspace)
        // The shared temp dir is outside the sandbox: point the usual variables at ours.
        .env("TMPDIR", &tmp.0)
        .env("TMP", &tmp.0)
        .env("TEMP", &tmp.0)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group, so a timeout kills the command's children too.
        .process_group(0);
    let mut child = sandbox::spawn(cmd, &policy).map_err(|e| format!("cannot start bash: {e}"))?;
    run_to_end(&mut child, ctx)
}

fn run_to_end(child: &mut std::process::Child, ctx: &ToolContext) -> Result<ToolOutput, String> {
    let timeout = ctx.config.bash_timeout.get();
    let cap = ctx.config.output_max_bytes;

    // Drain both pipes on threads so a chatty command never blocks on a full pipe; keep
    // only the first `cap` bytes of each.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        thread::spawn(move || {
            let mut kept = Vec::new();
            if let Some(mut p) = pipe {
                let mut buf = [0u8; 8192];
                while let Ok(n) = p.read(&mut buf) {
                    if n == 0 {
                        break;
                    }
                    let room = cap.saturating_sub(kept.len());
                    kept.extend_from_slice(&buf[..n.min(room)]);
                }
            }
            kept
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn Read + Send>),
    );

    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() >= deadline => {
                if let Some(pid) = rustix::process::Pid::from_raw(child.id() as i32) {
                    let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
                }
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
            Ok(None) => thread::sleep(Duration::from_millis(10)),
            Err(e) => return Err(format!("waiting for bash failed: {e}")),
        }
    };
    let stdout = String::from_utf8_lossy(&out.join().unwrap_or_default()).into_owned();
    let stderr = String::from_utf8_lossy(&err.join().unwrap_or_default()).into_owned();
    let mut text = stdout;
    if !stderr.is_empty() {
        if !text.is_empty() && !text.ends_with('\n') {
            text.push('\n');
        }
        text.push_str("[stderr]\n");
        text.push_str(&stderr);
    }
    match status {
        None => Ok(ToolOutput::error(format!(
            "{text}\n[killed: the command ran longer than tools.bash_timeout ({timeout:?})]"
        ))),
        Some(s) if s.success() => Ok(ToolOutput::ok(if text.is_empty() {
            "(no output, exit status 0)".to_string()
        } else {
            text
        })),
        Some(s) => Ok(ToolOutput::error(format!(
            "{text}\n[exit status {}]",
            s.code()
                .map(|c| c.to_string())
                .unwrap_or_else(|| "killed by a signal".into())
        ))),
    }
}

/// A temp dir only this command may write to (mode 0700), removed when the call ends.
struct PrivateTmp(PathBuf);

impl PrivateTmp {
    fn create() -> Result<PrivateTmp, String> {
        let dir = std::env::temp_dir().join(format!("localgpt-bash-{}", uuid::Uuid::new_v4()));
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(|e| format!("cannot create a temp dir for bash in {}: {e}", parent(&dir)))?;
        Ok(PrivateTmp(dir))
    }
}

fn parent(dir: &Path) -> String {
    dir.parent().unwrap_or(dir).display().to_string()
}

impl Drop for PrivateTmp {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.0)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            log::warn!("could not remove bash's temp dir {}: {e}", self.0.display());
        }
    }
}
