//! The `bash` tool: a shell command in the workspace, with a timeout and an output cap.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::{ToolContext, ToolOutput, str_arg};

pub fn run(ctx: &ToolContext, args: &Value) -> Result<ToolOutput, String> {
    let command = str_arg(args, "command")?;
    if command.trim().is_empty() {
        return Err("command is empty".into());
    }
    let timeout = ctx.config.bash_timeout.get();
    let cap = ctx.config.output_max_bytes;
    let mut child = Command::new("bash")
        .arg("-c")
        .arg(command)
        .current_dir(ctx.memory.workspace())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        // Own process group, so a timeout kills the command's children too.
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start bash: {e}"))?;

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
