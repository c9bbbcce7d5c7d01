//! One live JSON-RPC connection to a server process: a writer thread that owns its stdin
//! (so no caller ever blocks on a full pipe), a reader thread that matches responses to
//! waiting requests by id and answers the server's own requests, and requests that wait
//! with a timeout and give up when their caller is cancelled.

use std::collections::HashMap;
use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{ChildStdin, ChildStdout};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, TrySendError, bounded};
use serde_json::{Value, json};

use super::rpc::{self, Incoming, RemoteError};
use crate::sync::lock;

/// Longest message line read from a server. Tool results carrying images run to a few MiB
/// of base64; a longer line is dropped (its request then times out) rather than held.
pub const MAX_LINE_BYTES: usize = 16 * 1024 * 1024;

/// Messages that may wait for the writer thread; beyond this the server is not reading.
const OUTBOX: usize = 256;

/// Unreadable messages logged per connection; a server that writes junk to stdout must
/// not flood the log.
const INVALID_LOGGED: usize = 5;

/// How often a waiting request looks whether its caller was cancelled.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// What the reader thread tells the server's supervisor, tagged with the connection's
/// generation so news from a connection already replaced is ignored.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    ListChanged(u64),
    /// The server's output ended (it exited or closed stdout); the text says how.
    Closed(u64, String),
    /// A call timed out: the supervisor checks with a ping whether the server still answers.
    Suspect(u64),
    /// The daemon is stopping.
    Stop,
}

/// Why a request got no result.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// No answer within the timeout (the request was cancelled at the server).
    Timeout(Duration),
    /// The caller gave up (the turn was cancelled, or the daemon is stopping).
    Cancelled,
    /// The connection ended before the answer came.
    Closed,
    /// The server answered with an error.
    Remote(RemoteError),
}

impl fmt::Display for CallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CallError::Timeout(t) => write!(f, "no answer within {t:?}"),
            CallError::Cancelled => f.write_str("cancelled"),
            CallError::Closed => f.write_str("the server's connection closed"),
            CallError::Remote(e) => write!(f, "{e}"),
        }
    }
}

enum Out {
    Line(Vec<u8>),
    /// Close the server's stdin: the polite way to ask a stdio server to exit.
    Close,
}

type Waiter = Sender<Result<Value, RemoteError>>;

struct Pending {
    /// False once the reader has ended: nothing will answer any more.
    open: bool,
    waiting: HashMap<u64, Waiter>,
}

/// A connection to one server process.
pub struct Connection {
    name: Arc<str>,
    generation: u64,
    out: Sender<Out>,
    pending: Arc<Mutex<Pending>>,
    next_id: AtomicU64,
}

impl Connection {
    /// Starts the writer and reader threads over a server's pipes. News for the supervisor
    /// goes to `events`.
    pub fn open(
        name: &str,
        generation: u64,
        stdin: ChildStdin,
        stdout: ChildStdout,
        events: Sender<Event>,
    ) -> std::io::Result<Connection> {
        let name: Arc<str> = Arc::from(name);
        let (out, outbox) = bounded::<Out>(OUTBOX);
        let pending = Arc::new(Mutex::new(Pending {
            open: true,
            waiting: HashMap::new(),
        }));
        let writer_name = name.clone();
        thread::Builder::new()
            .name(format!("mcp-{name}-out"))
            .spawn(move || write_loop(&writer_name, stdin, outbox))?;
        let reader = Reader {
            name: name.clone(),
            generation,
            invalid: 0,
            out: out.clone(),
            pending: pending.clone(),
            events,
        };
        thread::Builder::new()
            .name(format!("mcp-{name}-in"))
            .spawn(move || reader.run(stdout))?;
        Ok(Connection {
            name,
            generation,
            out,
            pending,
            next_id: AtomicU64::new(1),
        })
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    /// Requests waiting for an answer.
    pub fn in_flight(&self) -> usize {
        lock(&self.pending).waiting.len()
    }

    /// Sends a request and waits for its answer, at most `timeout`, giving up early once
    /// `cancelled()` says so. A request given up is cancelled at the server
    /// (`notifications/cancelled`), except `initialize`, which must not be.
    pub fn request(
        &self,
        method: &str,
        params: Value,
        timeout: Duration,
        cancelled: &dyn Fn() -> bool,
    ) -> Result<Value, CallError> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = bounded(1);
        {
            let mut p = lock(&self.pending);
            if !p.open {
                return Err(CallError::Closed);
            }
            p.waiting.insert(id, tx);
        }
        if !self.send(rpc::request(id, method, params)) {
            lock(&self.pending).waiting.remove(&id);
            return Err(CallError::Closed);
        }
        let outcome = wait(&rx, timeout, cancelled);
        if let Err(e @ (CallError::Timeout(_) | CallError::Cancelled)) = &outcome {
            lock(&self.pending).waiting.remove(&id);
            if method != "initialize" {
                let reason = match e {
                    CallError::Cancelled => "the caller cancelled the request".to_string(),
                    _ => format!("no answer within {timeout:?}"),
                };
                self.notify(
                    "notifications/cancelled",
                    json!({"requestId": id, "reason": reason}),
                );
            }
        }
        outcome
    }

    /// Sends a notification; false when the connection cannot take it.
    pub fn notify(&self, method: &str, params: Value) -> bool {
        self.send(rpc::notification(method, params))
    }

    /// Closes the server's stdin once everything queued before has been written.
    pub fn close_input(&self) {
        let _ = self.out.try_send(Out::Close);
    }

    fn send(&self, line: Vec<u8>) -> bool {
        match self.out.try_send(Out::Line(line)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) => {
                log::warn!(
                    "mcp[{}]: the server is not reading its input; message dropped",
                    self.name
                );
                false
            }
            Err(TrySendError::Disconnected(_)) => false,
        }
    }
}

fn wait(
    rx: &Receiver<Result<Value, RemoteError>>,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<Value, CallError> {
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(CallError::Timeout(timeout));
        }
        match rx.recv_timeout(left.min(CANCEL_POLL)) {
            Ok(Ok(v)) => return Ok(v),
            Ok(Err(e)) => return Err(CallError::Remote(e)),
            Err(RecvTimeoutError::Timeout) if cancelled() => return Err(CallError::Cancelled),
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => return Err(CallError::Closed),
        }
    }
}

fn write_loop(name: &str, mut stdin: ChildStdin, outbox: Receiver<Out>) {
    for msg in outbox {
        let Out::Line(line) = msg else { break };
        if let Err(e) = stdin.write_all(&line).and_then(|()| stdin.flush()) {
            log::debug!("mcp[{name}]: writing to the server failed: {e}");
            break;
        }
    }
    // Dropping stdin here closes the pipe: the server reads end-of-file.
}

struct Reader {
    name: Arc<str>,
    generation: u64,
    /// Unreadable messages seen so far.
    invalid: usize,
    out: Sender<Out>,
    pending: Arc<Mutex<Pending>>,
    events: Sender<Event>,
}

impl Reader {
    fn run(mut self, stdout: ChildStdout) {
        let mut input = BufReader::new(stdout);
        let mut line = Vec::new();
        let why = loop {
            line.clear();
            match read_line(&mut input, &mut line) {
                Ok(Line::End) => break "its output ended".to_string(),
                Ok(Line::TooLong(n)) => log::warn!(
                    "mcp[{}]: dropped a message of {n}+ bytes (limit {MAX_LINE_BYTES})",
                    self.name
                ),
                Ok(Line::Full) => {
                    let text = trim_eol(&line);
                    if !text.iter().all(u8::is_ascii_whitespace) {
                        for msg in rpc::parse_line(text) {
                            self.dispatch(msg);
                        }
                    }
                }
                Err(e) => break format!("reading its output failed: {e}"),
            }
        };
        // Nothing will answer now: every waiting request learns so at once.
        {
            let mut p = lock(&self.pending);
            p.open = false;
            p.waiting.clear();
        }
        let _ = self.events.send(Event::Closed(self.generation, why));
    }

    fn dispatch(&mut self, msg: Incoming) {
        match msg {
            Incoming::Response { id, outcome } => match lock(&self.pending).waiting.remove(&id) {
                Some(waiter) => {
                    let _ = waiter.try_send(outcome);
                }
                // An answer to a request we gave up on: the spec says to ignore it.
                None => log::debug!("mcp[{}]: late answer to request {id} ignored", self.name),
            },
            Incoming::Request { id, method, .. } => {
                let answer = if method == "ping" {
                    rpc::result(&id, json!({}))
                } else {
                    // We declare no client capabilities (sampling, roots, elicitation).
                    rpc::error(
                        &id,
                        rpc::METHOD_NOT_FOUND,
                        &format!("method not found: {method}"),
                    )
                };
                let _ = self.out.try_send(Out::Line(answer));
            }
            Incoming::Notification { method, params } => match method.as_str() {
                "notifications/tools/list_changed" => {
                    let _ = self.events.send(Event::ListChanged(self.generation));
                }
                "notifications/message" => log::debug!(
                    "mcp[{}]: {} {}",
                    self.name,
                    params["level"].as_str().unwrap_or("log"),
                    params["data"]
                ),
                _ => {}
            },
            Incoming::Invalid(why) => {
                self.invalid += 1;
                if self.invalid <= INVALID_LOGGED {
                    log::warn!("mcp[{}]: unreadable message ignored: {why}", self.name);
                }
                if self.invalid == INVALID_LOGGED {
                    log::warn!(
                        "mcp[{}]: further unreadable messages are ignored without a word",
                        self.name
                    );
                }
            }
        }
    }
}

enum Line {
    Full,
    TooLong(usize),
    End,
}

/// Reads up to and including the next newline, at most [`MAX_LINE_BYTES`]; a longer line is
/// read to its end and discarded.
fn read_line(input: &mut impl BufRead, buf: &mut Vec<u8>) -> std::io::Result<Line> {
    let n = input
        .by_ref()
        .take(MAX_LINE_BYTES as u64 + 1)
        .read_until(b'\n', buf)?;
    if n == 0 {
        return Ok(Line::End);
    }
    if buf.len() > MAX_LINE_BYTES && buf.last() != Some(&b'\n') {
        let skipped = buf.len() + skip_line(input)?;
        buf.clear();
        return Ok(Line::TooLong(skipped));
    }
    Ok(Line::Full)
}

/// Consumes input up to and including the next newline (or the end) without keeping it;
/// returns how many bytes that was.
pub(super) fn skip_line(input: &mut impl BufRead) -> std::io::Result<usize> {
    let mut skipped = 0;
    loop {
        let (done, used) = {
            let chunk = input.fill_buf()?;
            match chunk.iter().position(|b| *b == b'\n') {
                _ if chunk.is_empty() => (true, 0),
                Some(i) => (true, i + 1),
                None => (false, chunk.len()),
            }
        };
        input.consume(used);
        skipped += used;
        if done {
            return Ok(skipped);
        }
    }
}

fn trim_eol(line: &[u8]) -> &[u8] {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    line.strip_suffix(b"\r").unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlong_lines_are_skipped_to_the_next() {
        let mut data = vec![b'x'; MAX_LINE_BYTES + 10];
        data.extend_from_slice(b"\n{\"ok\":1}\n");
        let mut input = BufReader::new(&data[..]);
        let mut buf = Vec::new();
        assert!(matches!(
            read_line(&mut input, &mut buf).unwrap(),
            Line::TooLong(n) if n == MAX_LINE_BYTES + 11
        ));
        buf.clear();
        assert!(matches!(
            read_line(&mut input, &mut buf).unwrap(),
            Line::Full
        ));
        assert_eq!(trim_eol(&buf), b"{\"ok\":1}");
        buf.clear();
        assert!(matches!(
            read_line(&mut input, &mut buf).unwrap(),
            Line::End
        ));
    }
}
