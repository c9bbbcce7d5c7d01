//! `claude-cli/<model>`: the Claude Code CLI run as a subprocess,
//! `claude -p --output-format stream-json --verbose --model <model>`.
//!
//! The prompt (system prompt and the conversation flattened to text) goes to stdin; stdout
//! is one JSON object per line: `{"type":"system",...}` at the start, one
//! `{"type":"assistant","message":{"content":[...]}}` per model message, and a final
//! `{"type":"result","subtype":"success"|"error_...","is_error":..,"result":..,"usage":..}`.
//!
//! Tools are not offered to this provider: the CLI runs its own tools under its own
//! permission rules, so [`ChatRequest::tools`] is ignored and the answer never holds tool
//! calls. The CLI takes no sampling settings either: `temperature`, `stop` and
//! `tool_choice` are ignored.
//!
//! The configured read timeout bounds every silence of the child (a child that prints
//! nothing for that long is killed), and a cancelled call kills it. The child runs in its
//! own process group so that whatever it started goes with it.

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::http::clip;
use super::stream::LineReader;
use super::{ChatRequest, Completion, DeltaSink, Provider, ProviderError, Role, emit};
use crate::config::{ProvidersConfig, Span};

/// Most stderr bytes kept for an error message; the rest is read and dropped so a chatty
/// child never blocks on a full pipe.
pub const MAX_STDERR_BYTES: usize = 64 * 1024;

/// How long, after the child exited, its stderr may take to reach end of file (a process
/// it left behind may hold the pipe open; we then report what arrived).
const STDERR_WAIT: Duration = Duration::from_secs(2);

/// Attempts to start the executable while it is "text file busy": a file written just
/// before (an installer, a test's fake) can briefly be open for writing in a process that
/// another thread is forking.
const SPAWN_ATTEMPTS: u32 = 5;

/// How long the child may take to exit after printing its result line before it is
/// killed (the answer is complete by then).
const EXIT_GRACE: Duration = Duration::from_secs(2);

/// Interval of the exit-status poll once stdout has closed.
const EXIT_POLL: Duration = Duration::from_millis(10);

/// The Claude Code CLI provider.
pub struct ClaudeCli {
    command: String,
    read_timeout: Span,
}

impl ClaudeCli {
    pub fn new(config: &ProvidersConfig) -> ClaudeCli {
        ClaudeCli {
            command: config.claude_cli.command.clone(),
            read_timeout: config.read_timeout,
        }
    }

    fn failed(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::Failed {
            provider: "claude-cli".into(),
            detail: detail.into(),
        }
    }

    fn timeout(&self, what: &str) -> ProviderError {
        ProviderError::Timeout {
            provider: "claude-cli".into(),
            detail: format!(
                "`{}` {what} for {} (providers.read_timeout); it was stopped",
                self.command,
                String::from(self.read_timeout)
            ),
        }
    }

    fn spawn(&self, model: &str) -> Result<Running, ProviderError> {
        let mut attempt = 1;
        loop {
            let spawned = Command::new(&self.command)
                .args(["-p", "--output-format", "stream-json", "--verbose"])
                .args(["--model", model])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .process_group(0)
                .spawn();
            match spawned {
                Ok(child) => {
                    return Ok(Running {
                        child,
                        ended: false,
                    });
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::ExecutableFileBusy
                        && attempt < SPAWN_ATTEMPTS =>
                {
                    attempt += 1;
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                    return Err(self.failed(format!(
                        "cannot run `{}`: executable not found (install Claude Code, or set \
                         providers.claude_cli.command to its path)",
                        self.command
                    )));
                }
                Err(e) => {
                    return Err(self.failed(format!("cannot run `{}`: {e}", self.command)));
                }
            }
        }
    }
}

impl Provider for ClaudeCli {
    fn name(&self) -> &'static str {
        "claude-cli"
    }

    fn complete(&self, req: &ChatRequest, sink: DeltaSink) -> Result<Completion, ProviderError> {
        let mut running = self.spawn(&req.model)?;
        let child = &mut running.child;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            return Err(self.failed("the child's pipes were not set up"));
        };

        // The prompt is written from its own thread: a long prompt fills the pipe, and the
        // child may write (and block on) stdout before it has read all of stdin.
        let prompt = prompt_text(req);
        thread::spawn(move || {
            // A child that exits early closes the pipe; its status and stderr tell why.
            let _ = stdin.write_all(prompt.as_bytes());
        });
        let stderr_text = Arc::new(Mutex::new(Vec::new()));
        let stderr_done = collect_stderr(stderr, Arc::clone(&stderr_text));
        let (line_tx, lines) = mpsc::sync_channel(64);
        thread::spawn(move || {
            let mut reader = LineReader::new(stdout);
            loop {
                let line = reader.next_line();
                let end = !matches!(line, Ok(Some(_)));
                if line_tx.send(line).is_err() || end {
                    break;
                }
            }
        });

        let mut completion = Completion::default();
        let mut result: Option<Value> = None;
        let wait = self.read_timeout.get();
        loop {
            let line = match lines.recv_timeout(wait) {
                Ok(Ok(Some(line))) => line,
                Ok(Ok(None)) | Err(RecvTimeoutError::Disconnected) => break,
                Ok(Err(e)) => {
                    return Err(
                        self.failed(format!("cannot read the output of `{}`: {e}", self.command))
                    );
                }
                Err(RecvTimeoutError::Timeout) => return Err(self.timeout("printed nothing")),
            };
            let Ok(event) = serde_json::from_str::<Value>(&line) else {
                // Not ours (a wrapper script's chatter); the result line decides the outcome.
                log::debug!("claude-cli: skipping a non-JSON output line");
                continue;
            };
            match event["type"].as_str() {
                Some("assistant") => {
                    let text = message_text(&event["message"]);
                    if text.is_empty() {
                        continue;
                    }
                    // Each assistant line is a whole message; keep them apart as paragraphs.
                    if !completion.text.is_empty() {
                        completion.text.push_str("\n\n");
                        emit(&mut *sink, "\n\n")?;
                    }
                    completion.text.push_str(&text);
                    emit(&mut *sink, &text)?;
                }
                Some("result") => {
                    result = Some(event);
                    break;
                }
                _ => {}
            }
        }

        // With the result in hand a child that lingers is only given a moment to exit.
        let status = running.wait(if result.is_some() { EXIT_GRACE } else { wait });
        let _ = stderr_done.recv_timeout(STDERR_WAIT);
        let stderr = stderr_text
            .lock()
            .map(|bytes| String::from_utf8_lossy(&bytes).trim().to_string())
            .unwrap_or_default();

        let Some(result) = result else {
            let Some(status) = status else {
                return Err(self.timeout("closed its output but kept running"));
            };
            let why = if status.success() {
                format!("`{}` exited without a result line", self.command)
            } else {
                format!("`{}` failed ({status})", self.command)
            };
            return Err(self.failed(if stderr.is_empty() {
                why
            } else {
                format!("{why}: {}", clip(&stderr))
            }));
        };
        let subtype = result["subtype"].as_str().unwrap_or("").to_string();
        let is_error = result["is_error"].as_bool().unwrap_or(false)
            || (!subtype.is_empty() && subtype != "success");
        let result_text = result["result"].as_str().unwrap_or("").to_string();
        if is_error {
            let message = [result_text.as_str(), stderr.as_str()]
                .into_iter()
                .find(|t| !t.is_empty())
                .unwrap_or("no message");
            return Err(self.failed(format!(
                "`{}` reported an error ({}): {}",
                self.command,
                if subtype.is_empty() {
                    "error"
                } else {
                    &subtype
                },
                clip(message)
            )));
        }
        // A run whose text came only in the result line still answers.
        if completion.text.is_empty() && !result_text.is_empty() {
            emit(&mut *sink, &result_text)?;
            completion.text = result_text;
        }
        let usage = &result["usage"];
        let count = |key: &str| usage[key].as_u64().unwrap_or(0);
        completion.usage.prompt = count("input_tokens")
            + count("cache_creation_input_tokens")
            + count("cache_read_input_tokens");
        completion.usage.completion = count("output_tokens");
        completion.usage.cached = usage["cache_read_input_tokens"].as_u64();
        completion.stop_reason = (!subtype.is_empty()).then_some(subtype);
        Ok(completion)
    }
}

/// A child that is killed with its process group unless it was waited for.
struct Running {
    child: Child,
    ended: bool,
}

impl Running {
    /// Waits up to `limit` for the exit status; `None` (and the child killed) if it is
    /// still running then.
    fn wait(&mut self, limit: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + limit;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => {
                    self.ended = true;
                    return Some(status);
                }
                Ok(None) if Instant::now() < deadline => thread::sleep(EXIT_POLL),
                _ => {
                    self.kill();
                    return None;
                }
            }
        }
    }

    fn kill(&mut self) {
        // The group id is the child's pid, which cannot be reused before it is reaped below.
        let group = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.ended = true;
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.ended {
            self.kill();
        }
    }
}

/// Reads the child's stderr into `into` (up to [`MAX_STDERR_BYTES`]); the receiver hears
/// once the pipe is closed.
fn collect_stderr(
    mut stderr: impl Read + Send + 'static,
    into: Arc<Mutex<Vec<u8>>>,
) -> mpsc::Receiver<()> {
    let (done_tx, done) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stderr.read(&mut buf) {
            if n == 0 {
                break;
            }
            if let Ok(mut kept) = into.lock() {
                let room = MAX_STDERR_BYTES.saturating_sub(kept.len());
                kept.extend_from_slice(&buf[..n.min(room)]);
            }
        }
        let _ = done_tx.send(());
    });
    done
}

/// The text of an assistant message's `text` blocks.
fn message_text(message: &Value) -> String {
    let Some(blocks) = message["content"].as_array() else {
        return message["content"].as_str().unwrap_or("").to_string();
    };
    blocks
        .iter()
        .filter(|b| b["type"] == "text")
        .filter_map(|b| b["text"].as_str())
        .collect()
}

/// The system prompt and the conversation as one text for the CLI's stdin. A lone user
/// message goes as it is; a longer history is written as labelled turns.
fn prompt_text(req: &ChatRequest) -> String {
    let mut out = String::new();
    if !req.system.is_empty() {
        out.push_str("<system>\n");
        out.push_str(&req.system);
        out.push_str("\n</system>\n\n");
    }
    if let [only] = req.messages.as_slice()
        && only.role == Role::User
    {
        out.push_str(&only.text_with_context());
        return out;
    }
    for m in &req.messages {
        match m.role {
            Role::User => out.push_str(&format!("User: {}\n\n", m.text_with_context())),
            Role::Assistant => {
                out.push_str(&format!("Assistant: {}\n", m.content));
                for call in &m.tool_calls {
                    out.push_str(&format!(
                        "[called tool {} with {}]\n",
                        call.name, call.arguments
                    ));
                }
                out.push('\n');
            }
            Role::Tool => {
                let name = m.tool_name.as_deref().unwrap_or("tool");
                let label = if m.is_error { "error" } else { "result" };
                out.push_str(&format!("[tool {name} {label}]\n{}\n\n", m.content));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::{Message, ToolCall};

    fn request(system: &str, messages: Vec<Message>) -> ChatRequest {
        ChatRequest {
            model: "opus".into(),
            system: system.into(),
            messages,
            tools: vec![],
            max_tokens: 0,
            ..Default::default()
        }
    }

    #[test]
    fn a_lone_message_is_sent_as_is_after_the_system_prompt() {
        let text = prompt_text(&request("be kind", vec![Message::user("hello")]));
        assert_eq!(text, "<system>\nbe kind\n</system>\n\nhello");
        assert_eq!(prompt_text(&request("", vec![Message::user("hi")])), "hi");
    }

    #[test]
    fn a_history_is_written_as_labelled_turns() {
        let call = ToolCall {
            id: "c".into(),
            name: "bash".into(),
            arguments: serde_json::json!({"cmd": "ls"}),
        };
        let text = prompt_text(&request(
            "",
            vec![
                Message::user("list"),
                Message::assistant("", vec![call.clone()]),
                Message::tool_result(&call, "a.md", false),
                Message::assistant("There is a.md.", vec![]),
                Message::user("thanks"),
            ],
        ));
        assert!(text.starts_with("User: list\n\nAssistant: \n[called tool bash with"));
        assert!(text.contains("[tool bash result]\na.md"));
        assert!(text.ends_with("Assistant: There is a.md.\n\nUser: thanks\n\n"));
    }

    #[test]
    fn assistant_text_blocks_are_joined() {
        let message = serde_json::json!({"content": [
            {"type": "text", "text": "a"},
            {"type": "tool_use", "name": "Bash"},
            {"type": "text", "text": "b"},
        ]});
        assert_eq!(message_text(&message), "ab");
    }
}
