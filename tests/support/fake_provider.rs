//! A scripted fake LLM provider: a real HTTP/1.1 server on `127.0.0.1:0` speaking the three
//! wire formats the daemon's providers use, and a fake `claude` executable.
//!
//! The wire format is chosen by the request path: `/v1/chat/completions` or
//! `/chat/completions` → OpenAI SSE, `/v1/messages` → Anthropic SSE, `/api/chat` → Ollama
//! NDJSON. Each request takes the next [`Reply`] from a FIFO (an empty FIFO gives a default
//! text reply). Every request is recorded, and so is every client that went away before
//! its reply was finished (the proof that a cancelled call dropped its connection).
//!
//! ```ignore
//! let fake = FakeProvider::start();
//! fake.push(Reply::text("Hello").pieces(["Hel", "lo"]).usage(12, 2));
//! fake.push(Reply::tool_call("memory_search", json!({"query": "cats"})));
//! fake.push(Reply::fault(Fault::Status(500, "overloaded".into())));
//! let config = fake.providers_config(Duration::from_secs(5));
//! // ... call a provider ...
//! assert_eq!(fake.requests()[0].header("x-api-key"), Some("test-key"));
//! ```

use std::collections::VecDeque;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use localgpt::config::{ProvidersConfig, Span};
use serde_json::{Value, json};

use super::TempDir;

/// The key [`FakeProvider::providers_config`] configures, so tests can look for it in
/// headers (and make sure it is nowhere in error messages).
pub const TEST_KEY: &str = "sk-test-fake-key-0123456789";

/// Text of the reply given when the FIFO is empty.
pub const DEFAULT_REPLY: &str = "This is the fake provider's default reply.";

/// How a reply goes wrong.
#[derive(Clone, Debug)]
pub enum Fault {
    /// This HTTP status with a provider-shaped JSON error body carrying the message.
    Status(u16, String),
    /// Status 200 and the stream's framing, but a payload that is not JSON.
    Garbage,
    /// Not HTTP at all: the connection answers with a line of noise.
    NotHttp,
    /// After the pieces, the connection is closed without the end marker and without the
    /// end of the chunked body: the stream is cut mid-way.
    Cut,
    /// After the pieces, the HTTP body ends properly but the stream's end marker
    /// (`[DONE]`, `message_stop`, `done: true`) never came.
    MissingEnd,
    /// After the pieces, the provider's own mid-stream error with this message (an
    /// Anthropic `error` event, an Ollama `{"error"}` line, an OpenAI `{"error"}` chunk).
    ErrorEvent(String),
    /// Status and headers are sent, then nothing for this long.
    Hang(Duration),
    /// The request is read and the connection closed without any answer.
    CloseImmediately,
}

/// One scripted answer.
#[derive(Clone, Debug)]
pub struct Reply {
    pub pieces: Vec<String>,
    pub tool_calls: Vec<(String, Value)>,
    pub usage: (u64, u64),
    /// Prompt tokens reported as read from the prompt cache, in each wire format's field.
    pub cached: Option<u64>,
    /// OpenAI wire: report `cached` the way llama.cpp's server does, in `timings.cache_n`
    /// (with no `prompt_tokens_details`).
    pub llama_timings: bool,
    pub delay: Duration,
    pub fault: Option<Fault>,
    /// Frames sent before the answer waits for the gate to open.
    pub hold: Option<(usize, Gate)>,
}

/// Holds a reply mid-way until the test opens it: a turn that stays in progress exactly
/// as long as the test needs, instead of a delay the test must finish within.
#[derive(Clone, Debug, Default)]
pub struct Gate(Arc<(Mutex<bool>, Condvar)>);

impl Gate {
    pub fn new() -> Gate {
        Gate::default()
    }

    /// Lets every reply held by this gate go on.
    pub fn open(&self) {
        let (open, changed) = &*self.0;
        *open.lock().unwrap() = true;
        changed.notify_all();
    }

    /// Waits until the gate opens; false if the client went away first.
    fn wait(&self, stream: &TcpStream) -> bool {
        let (open, changed) = &*self.0;
        let mut is_open = open.lock().unwrap();
        while !*is_open {
            if client_gone(stream) {
                return false;
            }
            is_open = changed
                .wait_timeout(is_open, Duration::from_millis(5))
                .unwrap()
                .0;
        }
        true
    }
}

impl Reply {
    /// A text answer sent as one piece (see [`Reply::pieces`]). Usage defaults to (10, 5).
    pub fn text(text: &str) -> Reply {
        Reply {
            pieces: vec![text.to_string()],
            tool_calls: Vec::new(),
            usage: (10, 5),
            cached: None,
            llama_timings: false,
            delay: Duration::ZERO,
            fault: None,
            hold: None,
        }
    }

    /// An answer that only calls one tool (add more with [`Reply::and_tool_call`]).
    pub fn tool_call(name: &str, arguments: Value) -> Reply {
        Reply::text("")
            .and_tool_call(name, arguments)
            .pieces(Vec::<String>::new())
    }

    /// An answer that fails this way (no pieces before the fault).
    pub fn fault(fault: Fault) -> Reply {
        Reply::text("")
            .pieces(Vec::<String>::new())
            .with_fault(fault)
    }

    /// The text deltas, sent in this order, one stream event each.
    pub fn pieces<S: Into<String>>(mut self, pieces: impl IntoIterator<Item = S>) -> Reply {
        self.pieces = pieces.into_iter().map(Into::into).collect();
        self
    }

    /// Another tool call after the text.
    pub fn and_tool_call(mut self, name: &str, arguments: Value) -> Reply {
        self.tool_calls.push((name.to_string(), arguments));
        self
    }

    /// Silence before each piece and each tool-call fragment.
    pub fn delay(mut self, delay: Duration) -> Reply {
        self.delay = delay;
        self
    }

    /// Before the answer's frame number `frames` (counting its pieces and tool-call
    /// fragments, and Anthropic's block starts, from 0), waits until `gate` opens.
    pub fn hold_after(mut self, frames: usize, gate: &Gate) -> Reply {
        self.hold = Some((frames, gate.clone()));
        self
    }

    /// Token counts reported (prompt, completion).
    pub fn usage(mut self, prompt: u64, completion: u64) -> Reply {
        self.usage = (prompt, completion);
        self
    }

    /// Prompt tokens reported as cached: OpenAI `usage.prompt_tokens_details.cached_tokens`,
    /// Anthropic `usage.cache_read_input_tokens`, Ollama `prompt_eval_cached_count`.
    pub fn cached(mut self, tokens: u64) -> Reply {
        self.cached = Some(tokens);
        self
    }

    /// Cached tokens as llama.cpp's server reports them: `timings.cache_n`.
    pub fn llama_cached(mut self, tokens: u64) -> Reply {
        self.cached = Some(tokens);
        self.llama_timings = true;
        self
    }

    /// A fault after the pieces (for `Cut`, `MissingEnd`, `ErrorEvent`) or instead of the
    /// answer (the others).
    pub fn with_fault(mut self, fault: Fault) -> Reply {
        self.fault = Some(fault);
        self
    }
}

/// A request as the fake received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    /// Names lowercased.
    pub headers: Vec<(String, String)>,
    /// The body parsed as JSON (`Null` if it was not JSON).
    pub body: Value,
    pub raw_body: String,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    replies: VecDeque<Reply>,
    requests: Vec<Recorded>,
    disconnects: usize,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn update(&self, f: impl FnOnce(&mut State)) {
        let mut state = self.state.lock().unwrap();
        f(&mut state);
        self.changed.notify_all();
    }
}

/// The fake provider server; stops accepting when dropped.
pub struct FakeProvider {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: Arc<AtomicBool>,
}

impl FakeProvider {
    pub fn start() -> FakeProvider {
        FakeProvider::serve_on(TcpListener::bind("127.0.0.1:0").expect("bind fake provider"))
    }

    /// Starts on the address an earlier fake had, so a daemon configured for it sees its
    /// provider come back (after [`FakeProvider::shut_down`]). Retries the bind briefly.
    pub fn start_on(addr: SocketAddr) -> FakeProvider {
        let deadline = Instant::now() + Duration::from_secs(5);
        loop {
            match TcpListener::bind(addr) {
                Ok(listener) => return FakeProvider::serve_on(listener),
                Err(e) if Instant::now() > deadline => panic!("cannot bind {addr} again: {e}"),
                Err(_) => thread::sleep(Duration::from_millis(10)),
            }
        }
    }

    /// Stops listening and waits until the port refuses connections; returns the address.
    pub fn shut_down(self) -> SocketAddr {
        let addr = self.addr;
        drop(self);
        let deadline = Instant::now() + Duration::from_secs(5);
        while TcpStream::connect(addr).is_ok() {
            assert!(
                Instant::now() < deadline,
                "{addr} still accepts connections"
            );
            thread::sleep(Duration::from_millis(5));
        }
        addr
    }

    fn serve_on(listener: TcpListener) -> FakeProvider {
        let addr = listener.local_addr().expect("fake provider address");
        let shared = Arc::new(Shared::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (shared2, stop2) = (Arc::clone(&shared), Arc::clone(&stop));
        thread::spawn(move || {
            for conn in listener.incoming() {
                if stop2.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let shared = Arc::clone(&shared2);
                thread::spawn(move || serve(conn, &shared));
            }
        });
        FakeProvider { addr, shared, stop }
    }

    /// `http://127.0.0.1:<port>`: the base URL for Anthropic and Ollama.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://127.0.0.1:<port>/v1`: the base URL for OpenAI.
    pub fn openai_url(&self) -> String {
        format!("{}/v1", self.url())
    }

    /// Provider settings pointing every HTTP provider at this fake, with [`TEST_KEY`] as
    /// the OpenAI and Anthropic key.
    pub fn providers_config(&self, read_timeout: Duration) -> ProvidersConfig {
        let mut config = ProvidersConfig {
            connect_timeout: Span::secs(5),
            read_timeout: Span(read_timeout),
            ..ProvidersConfig::default()
        };
        config.openai.base_url = self.openai_url();
        config.openai.api_key = TEST_KEY.into();
        config.anthropic.base_url = self.url();
        config.anthropic.api_key = TEST_KEY.into();
        config.ollama.base_url = self.url();
        config
    }

    /// The `[providers]` part of a daemon's `config.toml` pointing every HTTP provider at
    /// this fake (keys [`TEST_KEY`]); `read_timeout` as TOML writes it, e.g. `"2s"`.
    pub fn providers_toml(&self, read_timeout: &str) -> String {
        format!(
            "[providers]\nconnect_timeout = \"5s\"\nread_timeout = \"{read_timeout}\"\n\n\
             [providers.openai]\napi_key = \"{TEST_KEY}\"\nbase_url = \"{}\"\n\n\
             [providers.anthropic]\napi_key = \"{TEST_KEY}\"\nbase_url = \"{}\"\n\n\
             [providers.ollama]\nbase_url = \"{}\"\n",
            self.openai_url(),
            self.url(),
            self.url()
        )
    }

    /// Queues the answer to a coming request.
    pub fn push(&self, reply: Reply) {
        self.shared.update(|s| s.replies.push_back(reply));
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.shared.state.lock().unwrap().requests.clone()
    }

    pub fn request_count(&self) -> usize {
        self.shared.state.lock().unwrap().requests.len()
    }

    /// Clients that went away before their reply was finished.
    pub fn disconnects(&self) -> usize {
        self.shared.state.lock().unwrap().disconnects
    }

    /// Waits until at least `n` disconnects were seen; false if `limit` passed first (the
    /// fake notices a gone client at its next write or poll, not at once).
    pub fn wait_for_disconnects(&self, n: usize, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        let mut state = self.shared.state.lock().unwrap();
        while state.disconnects < n {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            state = self.shared.changed.wait_timeout(state, left).unwrap().0;
        }
        true
    }
}

impl Drop for FakeProvider {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

/// Scripts a turn that asks to `touch` `marker` with bash (needs approval by default),
/// then answers "ok".
pub fn bash_turn(fake: &FakeProvider, marker: &std::path::Path) {
    fake.push(Reply::tool_call(
        "bash",
        serde_json::json!({"command": format!("touch {}", marker.display())}),
    ));
    fake.push(Reply::text("ok"));
}

/// A URL nothing listens on: a port bound a moment ago and released.
pub fn refused_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    format!("http://127.0.0.1:{port}")
}

#[derive(Clone, Copy, PartialEq)]
enum Wire {
    OpenAi,
    Anthropic,
    Ollama,
}

/// The client closed its side (or the socket broke): checked without blocking.
fn client_gone(stream: &TcpStream) -> bool {
    if stream.set_nonblocking(true).is_err() {
        return true;
    }
    let mut byte = [0u8; 1];
    let gone = match stream.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() != io::ErrorKind::WouldBlock,
    };
    let _ = stream.set_nonblocking(false);
    gone
}

/// Sleeps `d` in small steps; false if the client went away meanwhile.
fn pause(stream: &TcpStream, d: Duration) -> bool {
    let deadline = Instant::now() + d;
    loop {
        if client_gone(stream) {
            return false;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return true;
        }
        thread::sleep(left.min(Duration::from_millis(5)));
    }
}

fn read_request(stream: &TcpStream) -> Option<Recorded> {
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_string();
    let path = parts.next()?.to_string();
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
    }
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.clone())
    };
    let mut body = Vec::new();
    if let Some(len) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.resize(len, 0);
        reader.read_exact(&mut body).ok()?;
    } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        loop {
            let mut size = String::new();
            reader.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            let mut chunk = vec![0; n + 2];
            reader.read_exact(&mut chunk).ok()?;
            if n == 0 {
                break;
            }
            body.extend_from_slice(&chunk[..n]);
        }
    }
    let raw_body = String::from_utf8_lossy(&body).into_owned();
    Some(Recorded {
        method,
        path,
        headers,
        body: serde_json::from_str(&raw_body).unwrap_or(Value::Null),
        raw_body,
    })
}

fn serve(mut stream: TcpStream, shared: &Shared) {
    let Some(request) = read_request(&stream) else {
        return;
    };
    let path = request.path.split('?').next().unwrap_or("").to_string();
    let wire = if path.ends_with("/chat/completions") {
        Some(Wire::OpenAi)
    } else if path.ends_with("/v1/messages") {
        Some(Wire::Anthropic)
    } else if path.ends_with("/api/chat") {
        Some(Wire::Ollama)
    } else {
        None
    };
    let include_usage = request.body["stream_options"]["include_usage"] == true;
    let model = request.body["model"]
        .as_str()
        .unwrap_or("fake-model")
        .to_string();
    let mut reply = None;
    shared.update(|s| {
        s.requests.push(request);
        if wire.is_some() {
            reply = s.replies.pop_front();
        }
    });
    let Some(wire) = wire else {
        let body = json!({"error": {"message": format!("no such path {path}")}}).to_string();
        let _ = write!(
            stream,
            "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        return;
    };
    let reply = reply.unwrap_or_else(|| Reply::text(DEFAULT_REPLY));
    let mut out = Out {
        stream,
        wire,
        delay: reply.delay,
        hold: reply.hold.clone(),
        sent: 0,
    };
    if out.answer(&reply, &model, include_usage).is_err() {
        shared.update(|s| s.disconnects += 1);
    }
}

/// The client went away before the reply was finished.
struct Gone;

/// Writes one reply, each stream frame as its own HTTP chunk, flushed at once.
struct Out {
    stream: TcpStream,
    wire: Wire,
    delay: Duration,
    hold: Option<(usize, Gate)>,
    /// Frames sent through [`Out::frame`] so far.
    sent: usize,
}

impl Out {
    fn head(&mut self, status: u16, reason: &str, extra: &str) -> Result<(), Gone> {
        let content_type = match self.wire {
            Wire::Ollama => "application/x-ndjson",
            _ => "text/event-stream",
        };
        let head = format!(
            "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nCache-Control: no-cache\r\n{extra}Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        );
        self.raw(head.as_bytes())
    }

    fn raw(&mut self, bytes: &[u8]) -> Result<(), Gone> {
        self.stream.write_all(bytes).map_err(|_| Gone)?;
        self.stream.flush().map_err(|_| Gone)
    }

    /// One frame, after the reply's delay (and its gate, when it holds here).
    fn frame(&mut self, text: &str) -> Result<(), Gone> {
        if let Some((at, gate)) = &self.hold
            && *at == self.sent
            && !gate.wait(&self.stream)
        {
            return Err(Gone);
        }
        if !pause(&self.stream, self.delay) {
            return Err(Gone);
        }
        self.sent += 1;
        self.frame_now(text)
    }

    fn frame_now(&mut self, text: &str) -> Result<(), Gone> {
        if client_gone(&self.stream) {
            return Err(Gone);
        }
        self.raw(format!("{:x}\r\n{text}\r\n", text.len()).as_bytes())
    }

    fn sse(&mut self, event: &str, data: &Value) -> Result<(), Gone> {
        match self.wire {
            Wire::Anthropic => self.frame(&format!("event: {event}\ndata: {data}\n\n")),
            _ => self.frame(&format!("data: {data}\n\n")),
        }
    }

    fn end_body(&mut self) {
        // The end marker was delivered; a client closing now is not a disconnect.
        let _ = self.raw(b"0\r\n\r\n");
    }

    fn answer(&mut self, reply: &Reply, model: &str, include_usage: bool) -> Result<(), Gone> {
        match &reply.fault {
            Some(Fault::Status(code, message)) => return self.status(*code, message),
            Some(Fault::NotHttp) => return self.raw(b"SSH-2.0-definitely-not-http\r\n"),
            Some(Fault::CloseImmediately) => {
                let _ = self.stream.shutdown(Shutdown::Both);
                return Ok(());
            }
            Some(Fault::Hang(d)) => {
                self.head(200, "OK", "")?;
                return if pause(&self.stream, *d) {
                    Ok(())
                } else {
                    Err(Gone)
                };
            }
            Some(Fault::Garbage) => {
                self.head(200, "OK", "")?;
                match self.wire {
                    Wire::Ollama => self.frame("<<this is not json>>\n")?,
                    _ => self.frame("data: <<this is not json>>\n\n")?,
                }
                self.end_body();
                return Ok(());
            }
            _ => {}
        }
        self.head(200, "OK", "")?;
        match self.wire {
            Wire::OpenAi => self.openai(reply, model, include_usage),
            Wire::Anthropic => self.anthropic(reply, model),
            Wire::Ollama => self.ollama(reply, model),
        }
    }

    fn status(&mut self, code: u16, message: &str) -> Result<(), Gone> {
        let body = match self.wire {
            Wire::OpenAi => {
                json!({"error": {"message": message, "type": "server_error", "param": null, "code": null}})
            }
            Wire::Anthropic => {
                json!({"type": "error", "error": {"type": "api_error", "message": message}})
            }
            Wire::Ollama => json!({"error": message}),
        }
        .to_string();
        let head = format!(
            "HTTP/1.1 {code} Fake Status\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        self.raw(head.as_bytes())
    }

    /// Runs the fault that comes after the pieces; true if the normal ending should follow.
    fn trailing_fault(&mut self, reply: &Reply) -> Result<bool, Gone> {
        match &reply.fault {
            Some(Fault::Cut) => {
                let _ = self.stream.shutdown(Shutdown::Both);
                Ok(false)
            }
            Some(Fault::MissingEnd) => {
                self.end_body();
                Ok(false)
            }
            Some(Fault::ErrorEvent(message)) => {
                match self.wire {
                    Wire::OpenAi => self.sse(
                        "",
                        &json!({"error": {"message": message, "type": "server_error"}}),
                    )?,
                    Wire::Anthropic => self.sse(
                        "error",
                        &json!({"type": "error", "error": {"type": "overloaded_error", "message": message}}),
                    )?,
                    Wire::Ollama => self.frame(&format!("{}\n", json!({"error": message})))?,
                }
                self.end_body();
                Ok(false)
            }
            _ => Ok(true),
        }
    }

    fn openai(&mut self, reply: &Reply, model: &str, include_usage: bool) -> Result<(), Gone> {
        let chunk = |delta: Value, finish: Value| {
            json!({
                "id": "chatcmpl-fake", "object": "chat.completion.chunk", "created": 0,
                "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            })
        };
        self.frame_now(&format!(
            "data: {}\n\n",
            chunk(json!({"role": "assistant", "content": ""}), Value::Null)
        ))?;
        for piece in &reply.pieces {
            self.sse("", &chunk(json!({"content": piece}), Value::Null))?;
        }
        for (i, (name, arguments)) in reply.tool_calls.iter().enumerate() {
            let first = json!({"tool_calls": [{"index": i, "id": format!("call_{i}"), "type": "function",
                "function": {"name": name, "arguments": ""}}]});
            self.sse("", &chunk(first, Value::Null))?;
            for part in thirds(&arguments.to_string()) {
                let more = json!({"tool_calls": [{"index": i, "function": {"arguments": part}}]});
                self.sse("", &chunk(more, Value::Null))?;
            }
        }
        if !self.trailing_fault(reply)? {
            return Ok(());
        }
        let finish = if reply.tool_calls.is_empty() {
            "stop"
        } else {
            "tool_calls"
        };
        self.frame_now(&format!("data: {}\n\n", chunk(json!({}), json!(finish))))?;
        if include_usage {
            let (p, c) = reply.usage;
            let mut usage = json!({"id": "chatcmpl-fake", "object": "chat.completion.chunk",
                "created": 0, "model": model, "choices": [],
                "usage": {"prompt_tokens": p, "completion_tokens": c, "total_tokens": p + c}});
            match reply.cached {
                Some(n) if reply.llama_timings => {
                    usage["timings"] = json!({"cache_n": n, "prompt_n": p.saturating_sub(n)});
                }
                Some(n) => usage["usage"]["prompt_tokens_details"] = json!({"cached_tokens": n}),
                None => {}
            }
            self.frame_now(&format!("data: {usage}\n\n"))?;
        }
        self.frame_now("data: [DONE]\n\n")?;
        self.end_body();
        Ok(())
    }

    fn anthropic(&mut self, reply: &Reply, model: &str) -> Result<(), Gone> {
        let (p, c) = reply.usage;
        // The API counts cached prompt tokens apart from `input_tokens`.
        let mut usage = json!({"input_tokens": p, "output_tokens": 1});
        if let Some(n) = reply.cached {
            usage = json!({"input_tokens": p.saturating_sub(n), "output_tokens": 1,
                "cache_creation_input_tokens": 0, "cache_read_input_tokens": n});
        }
        self.frame_now(&format!(
            "event: message_start\ndata: {}\n\n",
            json!({"type": "message_start", "message": {"id": "msg_fake", "type": "message",
                "role": "assistant", "content": [], "model": model, "stop_reason": null,
                "stop_sequence": null, "usage": usage}})
        ))?;
        let mut index = 0;
        if !reply.pieces.is_empty() {
            self.sse(
                "content_block_start",
                &json!({"type": "content_block_start", "index": 0,
                    "content_block": {"type": "text", "text": ""}}),
            )?;
            self.frame_now("event: ping\ndata: {\"type\": \"ping\"}\n\n")?;
            for piece in &reply.pieces {
                self.sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": 0,
                        "delta": {"type": "text_delta", "text": piece}}),
                )?;
            }
            self.sse(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": 0}),
            )?;
            index += 1;
        }
        for (i, (name, arguments)) in reply.tool_calls.iter().enumerate() {
            self.sse(
                "content_block_start",
                &json!({"type": "content_block_start", "index": index,
                    "content_block": {"type": "tool_use", "id": format!("toolu_{i}"),
                        "name": name, "input": {}}}),
            )?;
            for part in thirds(&arguments.to_string()) {
                self.sse(
                    "content_block_delta",
                    &json!({"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": part}}),
                )?;
            }
            self.sse(
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            )?;
            index += 1;
        }
        if !self.trailing_fault(reply)? {
            return Ok(());
        }
        let stop = if reply.tool_calls.is_empty() {
            "end_turn"
        } else {
            "tool_use"
        };
        self.frame_now(&format!(
            "event: message_delta\ndata: {}\n\n",
            json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
                "usage": {"output_tokens": c}})
        ))?;
        self.frame_now("event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n")?;
        self.end_body();
        Ok(())
    }

    fn ollama(&mut self, reply: &Reply, model: &str) -> Result<(), Gone> {
        let line = |message: Value| {
            format!(
                "{}\n",
                json!({"model": model, "created_at": "2025-01-01T00:00:00Z",
                    "message": message, "done": false})
            )
        };
        for piece in &reply.pieces {
            self.frame(&line(json!({"role": "assistant", "content": piece})))?;
        }
        if !reply.tool_calls.is_empty() {
            let calls: Vec<Value> = reply
                .tool_calls
                .iter()
                .map(
                    |(name, arguments)| json!({"function": {"name": name, "arguments": arguments}}),
                )
                .collect();
            self.frame(&line(
                json!({"role": "assistant", "content": "", "tool_calls": calls}),
            ))?;
        }
        if !self.trailing_fault(reply)? {
            return Ok(());
        }
        let (p, c) = reply.usage;
        let mut last = json!({"model": model, "created_at": "2025-01-01T00:00:00Z",
            "message": {"role": "assistant", "content": ""}, "done": true,
            "done_reason": "stop", "total_duration": 1000, "prompt_eval_count": p, "eval_count": c});
        if let Some(n) = reply.cached {
            last["prompt_eval_cached_count"] = json!(n);
        }
        self.frame_now(&format!("{last}\n"))?;
        self.end_body();
        Ok(())
    }
}

/// `text` in three pieces (split on character boundaries), as streamed arguments arrive.
fn thirds(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let step = chars.len().div_ceil(3).max(1);
    chars.chunks(step).map(|c| c.iter().collect()).collect()
}

/// A fake `claude` executable: a shell script in its own temp dir that records its
/// arguments and stdin, then runs a scripted body.
pub struct FakeClaude {
    dir: TempDir,
    pub path: PathBuf,
}

impl FakeClaude {
    /// A script whose stdout is these lines, exiting 0.
    pub fn printing(lines: &[String]) -> FakeClaude {
        let mut body = String::from("cat <<'LOCALGPT_FAKE_EOF'\n");
        for line in lines {
            body.push_str(line);
            body.push('\n');
        }
        body.push_str("LOCALGPT_FAKE_EOF\n");
        FakeClaude::script(&body)
    }

    /// A script that writes `stderr` to stderr and exits with `code`, printing nothing.
    pub fn failing(stderr: &str, code: i32) -> FakeClaude {
        FakeClaude::script(&format!(
            "cat >&2 <<'LOCALGPT_FAKE_EOF'\n{stderr}\nLOCALGPT_FAKE_EOF\nexit {code}\n"
        ))
    }

    /// A script running `body` (sh) after recording its arguments and reading stdin.
    pub fn script(body: &str) -> FakeClaude {
        use std::os::unix::fs::PermissionsExt;
        let dir = TempDir::new("fake-claude");
        let path = dir.path().join("claude");
        let d = dir.path().display();
        let text = format!(
            "#!/bin/sh\necho $$ > \"{d}/pid.txt\"\nprintf '%s\\n' \"$@\" > \"{d}/args.txt\"\ncat > \"{d}/stdin.txt\"\n{body}"
        );
        fs::write(&path, text).expect("write fake claude");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod");
        FakeClaude { dir, path }
    }

    /// The `providers.claude_cli.command` value.
    pub fn command(&self) -> String {
        self.path.display().to_string()
    }

    /// What the provider wrote to the script's stdin.
    pub fn stdin(&self) -> String {
        fs::read_to_string(self.dir.path().join("stdin.txt")).unwrap_or_default()
    }

    /// The process id of the script (its own `$$`), once it started.
    pub fn pid(&self) -> Option<u32> {
        read_pid(&self.dir.path().join("pid.txt"))
    }

    /// The directory the script lives in (`$(dirname "$0")` inside it), for files a
    /// scripted body writes.
    pub fn dir(&self) -> &std::path::Path {
        self.dir.path()
    }

    /// The arguments the script was started with.
    pub fn args(&self) -> Vec<String> {
        fs::read_to_string(self.dir.path().join("args.txt"))
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

/// A process id written to a file by a script (`echo $$ > file`).
pub fn read_pid(path: &std::path::Path) -> Option<u32> {
    fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// Whether a process is still alive (and not a zombie awaiting its parent).
pub fn process_alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The stream-json lines of a successful `claude -p` run: a system line, one assistant
/// message per text, and the result with this usage.
pub fn claude_lines(texts: &[&str], usage: (u64, u64)) -> Vec<String> {
    let mut lines = vec![
        json!({"type": "system", "subtype": "init", "session_id": "fake", "tools": [], "model": "opus"})
            .to_string(),
    ];
    for text in texts {
        lines.push(
            json!({"type": "assistant", "message": {"id": "msg_fake", "role": "assistant",
                "content": [{"type": "text", "text": text}],
                "usage": {"input_tokens": 1, "output_tokens": 1}}, "session_id": "fake"})
            .to_string(),
        );
    }
    lines.push(
        json!({"type": "result", "subtype": "success", "is_error": false,
            "result": texts.last().copied().unwrap_or(""), "session_id": "fake",
            "usage": {"input_tokens": usage.0, "output_tokens": usage.1}})
        .to_string(),
    );
    lines
}
