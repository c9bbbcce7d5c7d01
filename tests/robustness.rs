//! Robustness: a table of malformed and hostile requests against every route, sent as raw
//! bytes over real sockets, then a seeded random smoke fuzz of the JSON routes. Afterwards
//! the daemon must not have panicked, must still answer, and must not have piled up
//! threads. One daemon per test; every exchange has a read timeout, so a hang fails the
//! case instead of hanging the suite.
//!
//! Left out on purpose: a request line declaring `HTTP/2.0` (or `PRI * HTTP/2.0`, the h2c
//! preface). tiny_http 0.12 answers it with a 505 written through a writer that waits for
//! the very request it is refusing, so its connection thread blocks forever and the client
//! gets nothing. That happens inside tiny_http before our code sees a request; see the
//! README's Security section.

mod support;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use support::Daemon;
use support::fake_provider::FakeProvider;

/// Longest wait for one answer; far above what any case needs, so only a hang reaches it.
const CASE_TIMEOUT: Duration = Duration::from_secs(10);
const MODEL: &str = "openai/gpt-test";

/// A daemon whose chat routes answer from the fake provider at once; `claude-cli/…` models
/// fail fast (no such executable), which gives a real `502 provider_error`.
fn daemon(fake: &FakeProvider) -> Daemon {
    Daemon::start(&format!(
        "[agent]\ndefault_model = \"{MODEL}\"\n[heartbeat]\nenabled = false\n{}\n\
         [providers.claude_cli]\ncommand = \"/nonexistent/localgpt-robustness-claude\"\n",
        fake.providers_toml("5s")
    ))
}

// ---------------------------------------------------------------------------------------
// One exchange over a raw socket
// ---------------------------------------------------------------------------------------

/// A parsed HTTP response.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// Names lowercased.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Why an exchange did not give a well-formed answer.
#[derive(Debug)]
enum Failure {
    /// Nothing within [`CASE_TIMEOUT`].
    Hang(Vec<u8>),
    /// Bytes that are not a complete HTTP response.
    Garbled(String, Vec<u8>),
}

/// Sends `bytes` on a fresh connection and reads one response. With `half_close` the
/// connection is then shut for writing, so tiny_http sees the end of the input instead of
/// waiting for more; without, it stays open as a real client's does while it waits for
/// its answer. `Ok(None)`: the server closed the connection without a byte.
fn exchange(
    addr: SocketAddr,
    bytes: &[u8],
    head_only: bool,
    half_close: bool,
) -> Result<Option<Answer>, Failure> {
    let mut s = TcpStream::connect(addr)
        .map_err(|e| Failure::Garbled(format!("cannot connect: {e}"), Vec::new()))?;
    s.set_read_timeout(Some(CASE_TIMEOUT))
        .expect("read timeout");
    s.set_write_timeout(Some(CASE_TIMEOUT))
        .expect("write timeout");
    // The server may answer and stop reading before everything is sent (413, 431): what
    // it says is what counts.
    let _ = s.write_all(bytes);
    if half_close {
        let _ = s.shutdown(Shutdown::Write);
    }
    let deadline = Instant::now() + CASE_TIMEOUT;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        // A complete answer is enough: abandoned connections (see `refuse_undroppable`)
        // are never closed by the server.
        if let Some(answer) =
            parse(&buf, head_only).map_err(|e| Failure::Garbled(e, buf.clone()))?
        {
            return Ok(Some(answer));
        }
        if Instant::now() > deadline {
            return Err(Failure::Hang(buf));
        }
        match s.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return Err(Failure::Hang(buf));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            // A reset after (or instead of) the answer: judge what arrived.
            Err(_) => break,
        }
    }
    if buf.is_empty() {
        return Ok(None);
    }
    Err(Failure::Garbled(
        "connection closed mid-response".into(),
        buf,
    ))
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// One complete response at the start of `raw` (after any `100 Continue`), `Ok(None)` if
/// more bytes are needed, `Err` if what is there cannot be HTTP.
fn parse(raw: &[u8], head_only: bool) -> Result<Option<Answer>, String> {
    let mut rest = raw;
    loop {
        if rest.len() >= 5 && !rest.starts_with(b"HTTP/") {
            return Err("the answer does not start with HTTP/".into());
        }
        let Some(end) = find(rest, b"\r\n\r\n") else {
            return Ok(None);
        };
        let head = std::str::from_utf8(&rest[..end]).map_err(|_| "head is not UTF-8")?;
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap_or("");
        let mut parts = status_line.splitn(3, ' ');
        let version = parts.next().unwrap_or("");
        let status: u16 = parts
            .next()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| format!("bad status line {status_line:?}"))?;
        if !matches!(version, "HTTP/1.1" | "HTTP/1.0" | "HTTP/0.9") {
            return Err(format!("bad status line {status_line:?}"));
        }
        let mut headers = Vec::new();
        for line in lines {
            let (k, v) = line
                .split_once(':')
                .ok_or_else(|| format!("bad header line {line:?}"))?;
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        }
        let body = &rest[end + 4..];
        if status == 100 {
            rest = body;
            continue;
        }
        let answer = |body: Vec<u8>| {
            Ok(Some(Answer {
                status,
                headers: headers.clone(),
                body,
            }))
        };
        let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        if head_only || status == 101 || status == 204 {
            return answer(Vec::new());
        }
        if header("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            return match dechunk(body)? {
                Some(b) => answer(b),
                None => Ok(None),
            };
        }
        let len: usize = header("content-length")
            .ok_or("an answer without Content-Length or chunked framing")?
            .parse()
            .map_err(|_| "bad Content-Length in the answer")?;
        return if body.len() >= len {
            answer(body[..len].to_vec())
        } else {
            Ok(None)
        };
    }
}

/// A complete chunked body, `None` while the last chunk has not arrived.
fn dechunk(mut rest: &[u8]) -> Result<Option<Vec<u8>>, String> {
    let mut out = Vec::new();
    loop {
        let Some(eol) = find(rest, b"\r\n") else {
            return Ok(None);
        };
        let size = std::str::from_utf8(&rest[..eol])
            .ok()
            .and_then(|s| usize::from_str_radix(s.trim(), 16).ok())
            .ok_or("bad chunk size in the answer")?;
        rest = &rest[eol + 2..];
        if rest.len() < size + 2 {
            return Ok(None);
        }
        if size == 0 {
            return Ok(Some(out));
        }
        out.extend_from_slice(&rest[..size]);
        rest = &rest[size + 2..];
    }
}

/// The body is exactly `{"error":{"code":<code>,"message":<non-empty>}}`.
fn check_envelope(a: &Answer, code: &str) -> Result<(), String> {
    if a.header("content-type") != Some("application/json") {
        return Err(format!(
            "error answer is not JSON: {:?}",
            a.header("content-type")
        ));
    }
    let v: Value = serde_json::from_slice(&a.body).map_err(|e| format!("body not JSON: {e}"))?;
    let ok = v.as_object().is_some_and(|o| o.len() == 1)
        && v["error"].as_object().is_some_and(|o| o.len() == 2)
        && v["error"]["code"] == code
        && v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.trim().is_empty());
    if ok {
        Ok(())
    } else {
        Err(format!("not the envelope with code {code:?}: {v}"))
    }
}

/// A success body: JSON that is not an error, or an SSE stream that ended properly.
fn check_success(a: &Answer) -> Result<(), String> {
    let text = String::from_utf8_lossy(&a.body);
    if a.header("content-type") == Some("text/event-stream") {
        return if text.contains("data: [DONE]") {
            Ok(())
        } else {
            Err(format!("SSE stream without [DONE]: {text}"))
        };
    }
    let v: Value = serde_json::from_slice(&a.body).map_err(|e| format!("body not JSON: {e}"))?;
    if v.get("error").is_some() {
        return Err(format!("a success status with an error body: {v}"));
    }
    Ok(())
}

/// The code each error status has in the spec (and `error.rs`).
fn code_for(status: u16) -> &'static str {
    match status {
        400 => "invalid_request",
        401 => "unauthorized",
        403 => "forbidden",
        404 => "not_found",
        405 => "method_not_allowed",
        409 => "conflict",
        413 => "payload_too_large",
        431 => "request_header_too_large",
        500 => "internal_error",
        502 => "provider_error",
        503 => "overloaded",
        504 => "provider_timeout",
        _ => "<no code for this status>",
    }
}

// ---------------------------------------------------------------------------------------
// The corpus
// ---------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug)]
enum Expect {
    /// Our JSON envelope with this status and `error.code`.
    Api(u16, &'static str),
    /// A handler's success: this status and a JSON body that is not an error (or an SSE
    /// stream that ends with `[DONE]`).
    Ok(u16),
    /// This status and no body: tiny_http's own answer to broken HTTP, which never reaches
    /// our code (400 bad request line or header, 417 unknown `Expect`), or one of our
    /// body-less answers (101 upgrade, 204 preflight, HEAD).
    Bare(u16),
    /// Closed without a byte: tiny_http drops a connection whose request line or headers
    /// are not ASCII, or whose head or small body ends early.
    Closed,
}

struct Case {
    name: String,
    bytes: Vec<u8>,
    expect: Expect,
    /// Shut the connection for writing after the request (see [`exchange`]).
    half_close: bool,
}

#[derive(Default)]
struct Corpus(Vec<Case>);

impl Corpus {
    fn add(&mut self, name: impl Into<String>, bytes: Vec<u8>, expect: Expect) {
        self.0.push(Case {
            name: name.into(),
            bytes,
            expect,
            half_close: true,
        });
    }

    /// A case whose connection stays open for writing, as a client waiting for its answer
    /// keeps it: the answer must come without tiny_http seeing the end of the input.
    fn add_open(&mut self, name: impl Into<String>, bytes: Vec<u8>, expect: Expect) {
        self.add(name, bytes, expect);
        if let Some(case) = self.0.last_mut() {
            case.half_close = false;
        }
    }
}

/// `METHOD target HTTP/1.1` with `Host`, the given header lines and, with a body, its
/// `Content-Length`.
fn http(method: &str, target: &str, headers: &[&str], body: Option<&[u8]>) -> Vec<u8> {
    let mut v = format!("{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n").into_bytes();
    for h in headers {
        v.extend_from_slice(h.as_bytes());
        v.extend_from_slice(b"\r\n");
    }
    if let Some(b) = body {
        v.extend_from_slice(format!("Content-Length: {}\r\n", b.len()).as_bytes());
    }
    v.extend_from_slice(b"\r\n");
    if let Some(b) = body {
        v.extend_from_slice(b);
    }
    v
}

fn post(target: &str, body: &[u8]) -> Vec<u8> {
    http(
        "POST",
        target,
        &["Content-Type: application/json"],
        Some(body),
    )
}

/// A request with a hand-written head (`\r\n` line ends, final blank line included) and a
/// body sent as is.
fn raw(head: &str, body: &[u8]) -> Vec<u8> {
    let mut v = head.as_bytes().to_vec();
    v.extend_from_slice(body);
    v
}

/// Bodies no JSON route accepts: each is `400 invalid_request` wherever a body is parsed.
fn bad_bodies() -> Vec<(&'static str, Vec<u8>)> {
    let mut v: Vec<(&'static str, Vec<u8>)> = [
        ("truncated object", &br#"{"message":"#[..]),
        ("truncated string", br#"{"message":"hi"#),
        ("open brace", b"{"),
        ("close brace", b"}"),
        ("trailing comma", br#"{"message":"hi",}"#),
        ("single quotes", b"{'message':'hi'}"),
        ("trailing garbage", br#"{"message":"hi"}}"#),
        ("two objects", br#"{}{}"#),
        ("array", br#"[{"message":"hi"}]"#),
        ("string", br#""message""#),
        ("null", b"null"),
        ("number", b"42"),
        ("boolean", b"true"),
        ("huge exponent", b"1e999999"),
        ("bare word", b"message=hi"),
        ("invalid UTF-8", b"{\"message\":\"\xff\xfe\"}"),
        ("overlong UTF-8", b"{\"message\":\"\xc0\xaf\"}"),
        ("UTF-8 BOM", b"\xef\xbb\xbf{}"),
        ("raw NUL", b"{\0}"),
        ("lone high surrogate", br#"{"message":"\ud800"}"#),
        ("lone low surrogate", br#"{"message":"\udc00x"}"#),
        ("bad escape", br#"{"message":"\x41"}"#),
        ("control char in string", b"{\"message\":\"a\x01b\"}"),
        ("NaN", br#"{"message":NaN}"#),
        ("Infinity", br#"{"force":Infinity}"#),
        ("hex number", br#"{"force":0x10}"#),
        ("leading zero", br#"{"force":01}"#),
    ]
    .into_iter()
    .map(|(n, b)| (n, b.to_vec()))
    .collect();
    // serde_json stops at 128 levels; far deeper input must not overflow the stack.
    v.push(("10000 open brackets", "[".repeat(10_000).into_bytes()));
    v.push((
        "10000 balanced brackets",
        format!("{}{}", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
    ));
    v.push((
        "10000 nested objects",
        format!("{}1{}", r#"{"a":"#.repeat(10_000), "}".repeat(10_000)).into_bytes(),
    ));
    v.push((
        "deep value in a field",
        format!(
            r#"{{"message":"hi","x":{}{}}}"#,
            "[".repeat(200),
            "]".repeat(200)
        )
        .into_bytes(),
    ));
    v
}

/// The routes that read a JSON body, with what an empty body gets.
fn json_routes(session: &str) -> Vec<(String, Expect)> {
    vec![
        ("/api/chat".into(), Expect::Api(400, "invalid_request")),
        (
            "/api/chat/stream".into(),
            Expect::Api(400, "invalid_request"),
        ),
        ("/api/sessions".into(), Expect::Ok(201)),
        (
            format!("/api/sessions/{session}/approve"),
            Expect::Api(400, "invalid_request"),
        ),
        ("/api/memory/reindex".into(), Expect::Ok(200)),
        ("/api/heartbeat/run".into(), Expect::Ok(200)),
    ]
}

const GET_ROUTES: &[&str] = &[
    "/health",
    "/api/status",
    "/api/openapi.json",
    "/api/memory/stats",
    "/api/sessions",
    "/api/heartbeat",
];

const BAD: Expect = Expect::Api(400, "invalid_request");
const NOT_FOUND: Expect = Expect::Api(404, "not_found");
const WRONG_METHOD: Expect = Expect::Api(405, "method_not_allowed");
/// A valid chunked body: `{}`.
const CHUNKED_OK: &[u8] = b"2\r\n{}\r\n0\r\n\r\n";

/// A 1 TB `Content-Length`: tiny_http would allocate all of it when dropping the request.
const ABSURD_LENGTH: &str = "Content-Length: 1000000000000";

fn corpus(session: &str) -> Corpus {
    let mut c = Corpus::default();
    json_bodies(&mut c, session);
    chat_fields(&mut c);
    other_fields(&mut c, session);
    get_routes(&mut c);
    memory_search(&mut c);
    session_ids(&mut c, session);
    websocket(&mut c);
    request_lines(&mut c);
    header_lines(&mut c);
    framing(&mut c);
    open_connections(&mut c);
    oversized_bodies(&mut c);
    absurd_lengths(&mut c);
    c
}

/// Every JSON route against every broken body, and an empty one.
fn json_bodies(c: &mut Corpus, session: &str) {
    for (target, empty) in json_routes(session) {
        for (name, body) in bad_bodies() {
            c.add(format!("POST {target}: {name}"), post(&target, &body), BAD);
        }
        c.add(
            format!("POST {target}: empty body"),
            post(&target, b""),
            empty,
        );
        c.add(
            format!("POST {target}: whitespace body"),
            post(&target, b" \r\n\t "),
            empty,
        );
        c.add(
            format!("POST {target}: no body at all"),
            http("POST", &target, &[], None),
            empty,
        );
        // GET /api/sessions is the session list; every other JSON route is POST only.
        let get = if target == "/api/sessions" {
            Expect::Ok(200)
        } else {
            WRONG_METHOD
        };
        c.add(
            format!("GET {target}"),
            http("GET", &target, &[], None),
            get,
        );
        c.add(
            format!("PROPFIND {target}"),
            http("PROPFIND", &target, &[], None),
            WRONG_METHOD,
        );
        c.add(
            format!("lowercase post {target}: methods are case-sensitive"),
            http("post", &target, &[], Some(b"{}")),
            WRONG_METHOD,
        );
    }
}

/// Chat fields: wrong types, nulls, huge numbers, path-like session ids.
fn chat_fields(c: &mut Corpus) {
    let long_id = "x".repeat(5000);
    let chat_cases: Vec<(String, Expect)> = vec![
        (r#"{"message":5}"#.into(), BAD),
        (r#"{"message":null}"#.into(), BAD),
        (r#"{"message":""}"#.into(), BAD),
        (r#"{"message":"   "}"#.into(), BAD),
        (r#"{"message":["hi"]}"#.into(), BAD),
        (r#"{"message":{"text":"hi"}}"#.into(), BAD),
        (r#"{"message":true}"#.into(), BAD),
        (r#"{"model":"openai/gpt-test"}"#.into(), BAD),
        (r#"{"message":"hi","model":5}"#.into(), BAD),
        (r#"{"message":"hi","model":"nonsense"}"#.into(), BAD),
        (r#"{"message":"hi","model":"bogus/x"}"#.into(), BAD),
        (r#"{"message":"hi","model":"openai/"}"#.into(), BAD),
        (r#"{"message":"hi","model":"/gpt"}"#.into(), BAD),
        (r#"{"message":"hi","include_memory":"yes"}"#.into(), BAD),
        (r#"{"message":"hi","include_memory":1}"#.into(), BAD),
        (r#"{"message":"hi","include_memory":1e400}"#.into(), BAD),
        (
            r#"{"message":"hi","include_memory":123456789012345678901234567890}"#.into(),
            BAD,
        ),
        (r#"{"message":"hi","session_id":5}"#.into(), BAD),
        (r#"{"message":"hi","session_id":["a"]}"#.into(), BAD),
        (r#"{"message":"hi","message":5}"#.into(), BAD),
        (
            r#"{"message":"hi","session_id":"../../etc/passwd"}"#.into(),
            NOT_FOUND,
        ),
        (
            r#"{"message":"hi","session_id":"%2e%2e%2f"}"#.into(),
            NOT_FOUND,
        ),
        (
            r#"{"message":"hi","session_id":"a\u0000b"}"#.into(),
            NOT_FOUND,
        ),
        (
            r#"{"message":"hi","session_id":"/dev/zero"}"#.into(),
            NOT_FOUND,
        ),
        (
            r#"{"message":"hi","session_id":"' OR 1=1 --"}"#.into(),
            NOT_FOUND,
        ),
        (
            format!(r#"{{"message":"hi","session_id":"{long_id}"}}"#),
            NOT_FOUND,
        ),
        (
            r#"{"message":"hi","session_id":null}"#.into(),
            Expect::Ok(200),
        ),
        (
            r#"{"message":"hi \ud83d\ude00 \u0000 \u2028","include_memory":false}"#.into(),
            Expect::Ok(200),
        ),
        (
            r#"{"message":"hi","unknown":{"deep":[[[[[[[[[[1]]]]]]]]]]}}"#.into(),
            Expect::Ok(200),
        ),
        (
            r#"{"message":"hi","model":"claude-cli/opus"}"#.into(),
            Expect::Api(502, "provider_error"),
        ),
        (
            format!(r#"{{"message":"{}"}}"#, "x".repeat(2 * 1024 * 1024)),
            Expect::Api(413, "payload_too_large"),
        ),
    ];
    for (body, expect) in &chat_cases {
        let short: String = body.chars().take(70).collect();
        // Over SSE a provider failure is an `error` event inside a 200 stream.
        let stream_expect = match expect {
            Expect::Api(502, _) => Expect::Ok(200),
            other => *other,
        };
        c.add(
            format!("POST /api/chat {short}"),
            post("/api/chat", body.as_bytes()),
            *expect,
        );
        c.add(
            format!("POST /api/chat/stream {short}"),
            post("/api/chat/stream", body.as_bytes()),
            stream_expect,
        );
    }
}

/// The other bodies' fields.
fn other_fields(c: &mut Corpus, session: &str) {
    for (target, body, expect) in [
        ("/api/sessions", r#"{"model":5}"#, BAD),
        ("/api/sessions", r#"{"model":"x"}"#, BAD),
        ("/api/sessions", r#"{"model":null}"#, Expect::Ok(201)),
        (
            "/api/sessions",
            r#"{"model":"ollama/x","junk":[1e308]}"#,
            Expect::Ok(201),
        ),
        ("/api/memory/reindex", r#"{"force":"yes"}"#, BAD),
        ("/api/memory/reindex", r#"{"force":1}"#, BAD),
        ("/api/memory/reindex", r#"{"force":null}"#, Expect::Ok(200)),
        ("/api/memory/reindex", r#"{"force":true}"#, Expect::Ok(200)),
        (
            "/api/heartbeat/run",
            r#"{"anything":[1,2,3]}"#,
            Expect::Ok(200),
        ),
    ] {
        c.add(
            format!("POST {target} {body}"),
            post(target, body.as_bytes()),
            expect,
        );
    }
    let approve = format!("/api/sessions/{session}/approve");
    for (body, expect) in [
        (r#"{}"#, BAD),
        (r#"{"request_id":"r1"}"#, BAD),
        (r#"{"decision":"approve"}"#, BAD),
        (r#"{"request_id":"r1","decision":"maybe"}"#, BAD),
        (r#"{"request_id":"r1","decision":true}"#, BAD),
        (r#"{"request_id":5,"decision":"approve"}"#, BAD),
        (r#"{"request_id":null,"decision":"deny"}"#, BAD),
        (r#"{"request_id":"r1","decision":"approve"}"#, NOT_FOUND),
        (r#"{"request_id":"../../x","decision":"deny"}"#, NOT_FOUND),
    ] {
        c.add(
            format!("POST approve {body}"),
            post(&approve, body.as_bytes()),
            expect,
        );
    }
}

/// GET routes: bodies are read and ignored, query strings ignored, wrong methods.
fn get_routes(c: &mut Corpus) {
    for path in GET_ROUTES {
        c.add(
            format!("GET {path}"),
            http("GET", path, &[], None),
            Expect::Ok(200),
        );
        c.add(
            format!("GET {path}/ (trailing slash)"),
            http("GET", &format!("{path}/"), &[], None),
            Expect::Ok(200),
        );
        c.add(
            format!("GET {path} with a garbage body"),
            http("GET", path, &[], Some(b"\xff\x00{[not json")),
            Expect::Ok(200),
        );
        c.add(
            format!("GET {path} with a garbage query"),
            http("GET", &format!("{path}?%zz&%&=&a=%c3&%00=%ff"), &[], None),
            Expect::Ok(200),
        );
        c.add(
            format!("HEAD {path}"),
            http("HEAD", path, &[], None),
            Expect::Bare(200),
        );
        c.add(
            format!("OPTIONS {path} (preflight)"),
            http("OPTIONS", path, &[], None),
            Expect::Bare(204),
        );
        c.add(
            format!("BREW {path}"),
            http("BREW", path, &[], None),
            WRONG_METHOD,
        );
        c.add(
            format!("lowercase get {path}"),
            http("get", path, &[], None),
            WRONG_METHOD,
        );
        c.add(
            format!("PUT {path}"),
            http("PUT", path, &[], Some(b"{}")),
            WRONG_METHOD,
        );
    }
    for (method, path) in [("POST", "/health"), ("DELETE", "/api/status")] {
        c.add(
            format!("{method} {path}"),
            http(method, path, &[], None),
            WRONG_METHOD,
        );
    }
}

/// Memory search: query decoding and parameter checks.
fn memory_search(c: &mut Corpus) {
    let search = |q: &str| format!("/api/memory/search?{q}");
    for (q, expect) in [
        ("q=rust", Expect::Ok(200)),
        ("q=%zz", Expect::Ok(200)),
        ("q=%", Expect::Ok(200)),
        ("q=%c3", Expect::Ok(200)),
        ("q=a%", Expect::Ok(200)),
        ("q=%ff%fe", Expect::Ok(200)),
        ("q=%00", Expect::Ok(200)),
        ("q=a%00b", Expect::Ok(200)),
        ("q=%ed%a0%80", Expect::Ok(200)),
        ("q=%F0%9F%92%A9", Expect::Ok(200)),
        ("q=NEAR(a", Expect::Ok(200)),
        ("q=%22*-:^()%27", Expect::Ok(200)),
        ("q=AND", Expect::Ok(200)),
        ("q=OR+NOT", Expect::Ok(200)),
        ("q=rust&limit=5&limit=x", Expect::Ok(200)),
        ("q=a&q=", Expect::Ok(200)),
        ("q=a;limit=5", Expect::Ok(200)),
        ("", BAD),
        ("q", BAD),
        ("q=", BAD),
        ("q=+++", BAD),
        ("q=%20%09", BAD),
        ("=&&&", BAD),
        ("Q=rust", BAD),
        ("q=rust&limit=0", BAD),
        ("q=rust&limit=101", BAD),
        ("q=rust&limit=-1", BAD),
        ("q=rust&limit=1e3", BAD),
        ("q=rust&limit=5.0", BAD),
        ("q=rust&limit=99999999999999999999999", BAD),
        ("q=rust&limit=%00", BAD),
        ("q=rust&limit=", BAD),
    ] {
        c.add(
            format!("search ?{q}"),
            http("GET", &search(q), &[], None),
            expect,
        );
    }
    c.add(
        "search: q over 1000 characters",
        http(
            "GET",
            &search(&format!("q={}", "a".repeat(1001))),
            &[],
            None,
        ),
        BAD,
    );
    c.add(
        "search: target over server.max_query_bytes",
        http(
            "GET",
            &search(&format!("q={}", "%41".repeat(2000))),
            &[],
            None,
        ),
        BAD,
    );
    c.add(
        "search: raw invalid UTF-8 in the query (tiny_http: request line not ASCII)",
        raw(
            "GET /api/memory/search?q=\u{0} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"",
        )
        .into_iter()
        .map(|b| if b == 0 { 0xff } else { b })
        .collect(),
        Expect::Closed,
    );
    c.add(
        "search: raw space in the query (tiny_http: the version token is wrong)",
        http("GET", "/api/memory/search?q=a b", &[], None),
        Expect::Bare(400),
    );
    c.add(
        "search: POST",
        post("/api/memory/search?q=a", b"{}"),
        WRONG_METHOD,
    );
}

/// Path-like parameters: session ids.
fn session_ids(c: &mut Corpus, session: &str) {
    let real = format!("/api/sessions/{session}");
    c.add(
        "GET the real session",
        http("GET", &real, &[], None),
        Expect::Ok(200),
    );
    for id in [
        "..%2F..%2Fetc%2Fpasswd",
        "%2e%2e%2f%2e%2e%2fetc%2fpasswd",
        "%2e%2e",
        "..",
        ".",
        "%00",
        "a%00b",
        "%ff%fe",
        "%",
        "%zz",
        "'%20OR%201=1--",
        "<script>",
        "~root",
        &"x".repeat(3000),
    ] {
        let short: String = id.chars().take(40).collect();
        c.add(
            format!("GET session {short}"),
            http("GET", &format!("/api/sessions/{id}"), &[], None),
            NOT_FOUND,
        );
        c.add(
            format!("DELETE session {short}"),
            http("DELETE", &format!("/api/sessions/{id}"), &[], None),
            NOT_FOUND,
        );
        c.add(
            format!("approve in session {short}"),
            post(
                &format!("/api/sessions/{id}/approve"),
                br#"{"request_id":"r1","decision":"approve"}"#,
            ),
            NOT_FOUND,
        );
        c.add(
            format!("POST session {short}"),
            http("POST", &format!("/api/sessions/{id}"), &[], Some(b"{}")),
            WRONG_METHOD,
        );
    }
    for path in [
        "/api/sessions/../../etc/passwd",
        "/api/sessions/../status",
        "/api/sessions//approve",
        "/api/sessions/a/b/c",
        "/../../etc/passwd",
        "//api/status",
        "/api/%73tatus",
        "/",
        "/api",
        "/nope",
        "*",
        "http://127.0.0.1/health",
    ] {
        c.add(
            format!("GET {path}"),
            http("GET", path, &[], None),
            NOT_FOUND,
        );
    }
    c.add(
        "GET session: id over server.max_query_bytes",
        http(
            "GET",
            &format!("/api/sessions/{}", "x".repeat(5000)),
            &[],
            None,
        ),
        BAD,
    );
    c.add(
        "GET session: raw invalid UTF-8 in the path (tiny_http: not ASCII)",
        raw(
            "GET /api/sessions/\u{0} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n",
            b"",
        )
        .into_iter()
        .map(|b| if b == 0 { 0xc3 } else { b })
        .collect(),
        Expect::Closed,
    );
    c.add("BREW /nope", http("BREW", "/nope", &[], None), NOT_FOUND);
}

/// The WebSocket route without a proper upgrade.
fn websocket(c: &mut Corpus) {
    c.add(
        "GET /api/ws, no upgrade",
        http("GET", "/api/ws", &[], None),
        BAD,
    );
    c.add(
        "GET /api/ws, upgrade without key",
        http(
            "GET",
            "/api/ws",
            &["Upgrade: websocket", "Connection: Upgrade"],
            None,
        ),
        BAD,
    );
    c.add(
        "GET /api/ws, key without upgrade",
        http(
            "GET",
            "/api/ws",
            &["Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="],
            None,
        ),
        BAD,
    );
    c.add(
        "GET /api/ws, wrong upgrade",
        http(
            "GET",
            "/api/ws",
            &[
                "Upgrade: h2c",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ],
            None,
        ),
        BAD,
    );
    c.add("POST /api/ws", post("/api/ws", b"{}"), WRONG_METHOD);
    c.add(
        "GET /api/ws, a real upgrade that then closes",
        http(
            "GET",
            "/api/ws",
            &[
                "Upgrade: websocket",
                "Connection: Upgrade",
                "Sec-WebSocket-Version: 13",
                "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
            ],
            None,
        ),
        Expect::Bare(101),
    );
}

/// Request lines.
fn request_lines(c: &mut Corpus) {
    let host = "Host: 127.0.0.1\r\n";
    for (name, bytes, expect) in [
        (
            "HTTP/0.9 style (no version): tiny_http 400",
            "GET /health\r\n\r\n".to_string(),
            Expect::Bare(400),
        ),
        (
            "version HTTP/0.9: tiny_http serves it",
            format!("GET /health HTTP/0.9\r\n{host}\r\n"),
            Expect::Ok(200),
        ),
        (
            "version HTTP/1.0",
            format!("GET /health HTTP/1.0\r\n{host}\r\n"),
            Expect::Ok(200),
        ),
        (
            "version HTTP/1.2: tiny_http 400",
            format!("GET /health HTTP/1.2\r\n{host}\r\n"),
            Expect::Bare(400),
        ),
        (
            "version http/1.1 lowercase: tiny_http 400",
            format!("GET /health http/1.1\r\n{host}\r\n"),
            Expect::Bare(400),
        ),
        (
            "extra token after the version: tiny_http ignores it",
            format!("GET /health HTTP/1.1 extra\r\n{host}\r\n"),
            Expect::Ok(200),
        ),
        (
            "two spaces: tiny_http 400",
            format!("GET  /health HTTP/1.1\r\n{host}\r\n"),
            Expect::Bare(400),
        ),
        (
            "leading empty line: tiny_http 400",
            format!("\r\nGET /health HTTP/1.1\r\n{host}\r\n"),
            Expect::Bare(400),
        ),
        (
            "garbage line: tiny_http 400",
            "garbage\r\n\r\n".into(),
            Expect::Bare(400),
        ),
        (
            "control bytes: tiny_http 400",
            "\u{0}\u{1}\u{7f}\r\n\r\n".into(),
            Expect::Bare(400),
        ),
        (
            "method only: tiny_http 400",
            "GET\r\n\r\n".into(),
            Expect::Bare(400),
        ),
        (
            "NUL in the method",
            format!("G\u{0}ET /health HTTP/1.1\r\n{host}\r\n"),
            WRONG_METHOD,
        ),
        (
            "bare LF line ends: tiny_http waits for CRLF, then EOF",
            "GET /health HTTP/1.1\nHost: 127.0.0.1\n\n".into(),
            Expect::Closed,
        ),
        ("nothing at all", String::new(), Expect::Closed),
        (
            "request line cut before CRLF",
            "GET /health HTTP/1.1".into(),
            Expect::Closed,
        ),
        (
            "head cut before the blank line",
            format!("GET /health HTTP/1.1\r\n{host}"),
            Expect::Closed,
        ),
        (
            "a bare LF in the path must not forge a log line",
            format!("GET /x\nFORGED-LOG-LINE HTTP/1.1\r\n{host}\r\n"),
            NOT_FOUND,
        ),
        (
            "a bare CR in the method must not forge a log line",
            format!("G\rFORGED-LOG-LINE /health HTTP/1.1\r\n{host}\r\n"),
            WRONG_METHOD,
        ),
    ] {
        c.add(format!("request line: {name}"), bytes.into_bytes(), expect);
    }
    c.add(
        "request line: TLS ClientHello (not ASCII)",
        b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03garbage\r\n\r\n".to_vec(),
        Expect::Closed,
    );
}

/// Header lines.
fn header_lines(c: &mut Corpus) {
    c.add(
        "header without colon: tiny_http 400",
        http("GET", "/health", &["Bad header"], None),
        Expect::Bare(400),
    );
    c.add(
        "space in a header name: tiny_http 400",
        http("GET", "/health", &["Bad Name: x"], None),
        Expect::Bare(400),
    );
    c.add(
        "space before the colon: tiny_http 400",
        http("POST", "/api/sessions", &["Content-Length : 2"], None),
        Expect::Bare(400),
    );
    c.add(
        "obsolete line folding: tiny_http 400",
        http("GET", "/health", &["X-A: a", "  folded"], None),
        Expect::Bare(400),
    );
    c.add(
        "non-ASCII header value (tiny_http drops the connection)",
        raw(
            "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: \u{0}\r\n\r\n",
            b"",
        )
        .into_iter()
        .map(|b| if b == 0 { 0xff } else { b })
        .collect(),
        Expect::Closed,
    );
    c.add(
        "empty header name: tiny_http accepts it",
        http("GET", "/health", &[": x"], None),
        Expect::Ok(200),
    );
    c.add(
        "unknown Expect: tiny_http 417",
        http("GET", "/health", &["Expect: teapot"], None),
        Expect::Bare(417),
    );
    c.add(
        "Expect: 100-continue",
        http(
            "POST",
            "/api/sessions",
            &["Expect: 100-continue"],
            Some(b"{}"),
        ),
        Expect::Ok(201),
    );
    c.add(
        "two Host headers",
        http("GET", "/api/status", &["Host: evil.example"], None),
        BAD,
    );
    c.add(
        "header injection through Origin (bare LF)",
        http(
            "GET",
            "/health",
            &["Origin: http://x\nSet-Cookie: pwned=1;.localhost"],
            None,
        ),
        Expect::Api(403, "forbidden"),
    );
    c.add(
        "header injection through Origin (bracketed host)",
        http(
            "GET",
            "/health",
            &["Origin: http://[::1]\rSet-Cookie: pwned=1"],
            None,
        ),
        Expect::Api(403, "forbidden"),
    );
    let big = format!("X-Big: {}", "a".repeat(40 * 1024));
    c.add(
        "one 40 KiB header line",
        http("GET", "/health", &[&big], None),
        Expect::Api(431, "request_header_too_large"),
    );
    let huge = format!("Cookie: {}", "b".repeat(1024 * 1024));
    c.add(
        "one 1 MiB header line on a chat route",
        http("POST", "/api/chat", &[&huge], Some(br#"{"message":"hi"}"#)),
        Expect::Api(431, "request_header_too_large"),
    );
    let many: Vec<String> = (0..500).map(|i| format!("X-H{i}: v")).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    c.add(
        "500 header lines",
        http("GET", "/api/status", &many, None),
        Expect::Api(431, "request_header_too_large"),
    );
    let repeated = vec!["Accept: */*"; 300];
    c.add(
        "300 copies of one header",
        http("GET", "/health", &repeated, None),
        Expect::Api(431, "request_header_too_large"),
    );
}

/// Body framing: Content-Length and Transfer-Encoding.
fn framing(c: &mut Corpus) {
    let sessions = "POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\n";
    for (name, head, body, expect) in [
        (
            "Content-Length and Transfer-Encoding",
            "Content-Length: 2\r\nTransfer-Encoding: chunked\r\n",
            CHUNKED_OK,
            BAD,
        ),
        (
            "Transfer-Encoding then Content-Length",
            "Transfer-Encoding: chunked\r\nContent-Length: 13\r\n",
            CHUNKED_OK,
            BAD,
        ),
        (
            "two different Content-Lengths",
            "Content-Length: 2\r\nContent-Length: 3\r\n",
            b"{} ",
            BAD,
        ),
        (
            "two equal Content-Lengths",
            "Content-Length: 2\r\nContent-Length: 2\r\n",
            b"{}",
            Expect::Ok(201),
        ),
        ("Content-Length: abc", "Content-Length: abc\r\n", b"{}", BAD),
        ("Content-Length: -1", "Content-Length: -1\r\n", b"{}", BAD),
        ("Content-Length: +2", "Content-Length: +2\r\n", b"{}", BAD),
        (
            "Content-Length: 2, 2",
            "Content-Length: 2, 2\r\n",
            b"{}",
            BAD,
        ),
        (
            "Content-Length: 2^64",
            "Content-Length: 18446744073709551616\r\n",
            b"{}",
            BAD,
        ),
        ("Content-Length: empty", "Content-Length:\r\n", b"", BAD),
        (
            "Content-Length beyond the body, small (tiny_http reads it first)",
            "Content-Length: 100\r\n",
            b"{}",
            Expect::Closed,
        ),
        (
            "Content-Length beyond the body, large: valid JSON cut short",
            "Content-Length: 5000\r\n",
            br#"{"model":null}"#,
            BAD,
        ),
        (
            "Content-Length below the body: the rest is a broken next request",
            "Content-Length: 2\r\n",
            b"{}garbage",
            Expect::Ok(201),
        ),
        (
            "chunked",
            "Transfer-Encoding: chunked\r\n",
            CHUNKED_OK,
            Expect::Ok(201),
        ),
        (
            "Chunked, any case",
            "Transfer-Encoding: ChUnKeD\r\n",
            CHUNKED_OK,
            Expect::Ok(201),
        ),
        (
            "chunked with an extension",
            "Transfer-Encoding: chunked\r\n",
            b"2;name=value\r\n{}\r\n0\r\n\r\n",
            Expect::Ok(201),
        ),
        (
            "chunk size not hex",
            "Transfer-Encoding: chunked\r\n",
            b"zz\r\n{}\r\n0\r\n\r\n",
            BAD,
        ),
        (
            "chunk size negative",
            "Transfer-Encoding: chunked\r\n",
            b"-2\r\n{}\r\n0\r\n\r\n",
            BAD,
        ),
        (
            "chunk size overflowing 64 bits",
            "Transfer-Encoding: chunked\r\n",
            b"fffffffffffffffffffffff\r\n{}\r\n0\r\n\r\n",
            BAD,
        ),
        (
            "chunk without its CRLF",
            "Transfer-Encoding: chunked\r\n",
            b"2\r\n{}0\r\n\r\n",
            BAD,
        ),
        (
            "chunked body without the last chunk",
            "Transfer-Encoding: chunked\r\n",
            b"2\r\n{}\r\n",
            BAD,
        ),
        (
            "chunk size line never ends",
            "Transfer-Encoding: chunked\r\n",
            b"2",
            BAD,
        ),
        (
            "Transfer-Encoding: gzip",
            "Transfer-Encoding: gzip\r\n",
            b"{}",
            BAD,
        ),
        (
            "Transfer-Encoding: gzip, chunked",
            "Transfer-Encoding: gzip, chunked\r\n",
            CHUNKED_OK,
            BAD,
        ),
        (
            "Transfer-Encoding: chunked, gzip",
            "Transfer-Encoding: chunked, gzip\r\n",
            CHUNKED_OK,
            BAD,
        ),
        (
            "Transfer-Encoding: identity",
            "Transfer-Encoding: identity\r\nContent-Length: 2\r\n",
            b"{}",
            BAD,
        ),
        (
            "two Transfer-Encoding: chunked",
            "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n",
            CHUNKED_OK,
            BAD,
        ),
        (
            "Transfer-Encoding: empty",
            "Transfer-Encoding:\r\n",
            CHUNKED_OK,
            BAD,
        ),
    ] {
        c.add(
            format!("framing: {name}"),
            raw(&format!("{sessions}{head}\r\n"), body),
            expect,
        );
    }
}

/// Connections left open, as a client waiting for its answer leaves them.
fn open_connections(c: &mut Corpus) {
    c.add_open(
        "open: GET /health",
        http("GET", "/health", &[], None),
        Expect::Ok(200),
    );
    c.add_open(
        "open: POST /api/sessions",
        post("/api/sessions", b"{}"),
        Expect::Ok(201),
    );
    // Regression: tiny_http gives a request with `Connection: upgrade` the raw connection
    // as its body; reading it to the end hung every such request (curl --http2 on
    // http:// offers h2c this way) until the client gave up, holding a worker.
    let h2c = [
        "Connection: Upgrade, HTTP2-Settings",
        "Upgrade: h2c",
        "HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA",
    ];
    c.add_open(
        "r_h2c_upgrade_offer_get",
        http("GET", "/health", &h2c, None),
        Expect::Ok(200),
    );
    c.add_open(
        "r_h2c_upgrade_offer_post",
        http("POST", "/api/sessions", &h2c, Some(b"{}")),
        Expect::Ok(201),
    );
    c.add_open(
        "r_h2c_upgrade_offer_chat",
        http("POST", "/api/chat", &h2c, Some(br#"{"message":"hi"}"#)),
        Expect::Ok(200),
    );
    c.add_open(
        "r_h2c_upgrade_offer_search",
        http("GET", "/api/memory/search?q=memory", &h2c, None),
        Expect::Ok(200),
    );
    c.add_open(
        "r_connection_upgrade_with_a_chunked_body",
        raw(
            "POST /api/sessions HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: upgrade\r\n\
             Transfer-Encoding: chunked\r\n\r\n",
            CHUNKED_OK,
        ),
        BAD,
    );
}

/// Oversized bodies.
fn oversized_bodies(c: &mut Corpus) {
    let two_mib = vec![b'x'; 2 * 1024 * 1024];
    c.add(
        "2 MiB body on /api/chat",
        post("/api/chat", &two_mib),
        Expect::Api(413, "payload_too_large"),
    );
    c.add(
        "2 MiB body on GET /health",
        http("GET", "/health", &[], Some(&two_mib)),
        Expect::Api(413, "payload_too_large"),
    );
    let mut chunked_big = Vec::new();
    for _ in 0..512 {
        chunked_big.extend_from_slice(b"1000\r\n");
        chunked_big.extend_from_slice(&[b'y'; 0x1000]);
        chunked_big.extend_from_slice(b"\r\n");
    }
    chunked_big.extend_from_slice(b"0\r\n\r\n");
    c.add(
        "2 MiB chunked body on /api/chat",
        raw(
            "POST /api/chat HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n",
            &chunked_big,
        ),
        Expect::Api(413, "payload_too_large"),
    );
}

/// Regression: a 1 TB Content-Length on a request refused before its body is read.
fn absurd_lengths(c: &mut Corpus) {
    // (the body-size guard only covered routes that read a body).
    let too_large = Expect::Api(413, "payload_too_large");
    c.add(
        "r_absurd_length_unknown_route",
        http("POST", "/nope", &[ABSURD_LENGTH], None),
        too_large,
    );
    c.add(
        "r_absurd_length_wrong_method",
        http("POST", "/health", &[ABSURD_LENGTH], None),
        too_large,
    );
    c.add(
        "r_absurd_length_foreign_host",
        http(
            "POST",
            "/api/chat",
            &["Host: evil.example", ABSURD_LENGTH],
            None,
        ),
        too_large,
    );
    c.add(
        "r_absurd_length_long_target",
        http(
            "POST",
            &format!("/api/chat?{}", "a".repeat(5000)),
            &[ABSURD_LENGTH],
            None,
        ),
        too_large,
    );
    c.add(
        "r_absurd_length_preflight",
        http("OPTIONS", "/api/chat", &[ABSURD_LENGTH], None),
        too_large,
    );
    c.add(
        "r_absurd_length_websocket",
        http("GET", "/api/ws", &[ABSURD_LENGTH], None),
        too_large,
    );
}

/// Runs one case; `Err` says what went wrong.
fn run_case(addr: SocketAddr, case: &Case) -> Result<(), String> {
    let head_only = case.bytes.starts_with(b"HEAD ");
    let got = exchange(addr, &case.bytes, head_only, case.half_close).map_err(|f| match f {
        Failure::Hang(b) => format!(
            "no complete answer within {CASE_TIMEOUT:?}; got {:?}",
            String::from_utf8_lossy(&b[..b.len().min(300)])
        ),
        Failure::Garbled(e, b) => {
            format!("{e}: {:?}", String::from_utf8_lossy(&b[..b.len().min(300)]))
        }
    })?;
    let describe = |a: &Answer| {
        format!(
            "{} {}",
            a.status,
            String::from_utf8_lossy(&a.body[..a.body.len().min(300)])
        )
    };
    match (case.expect, got) {
        (Expect::Closed, None) => Ok(()),
        (Expect::Closed, Some(a)) => Err(format!(
            "expected a closed connection, got {}",
            describe(&a)
        )),
        (_, None) => Err("the connection was closed without an answer".into()),
        (Expect::Api(status, code), Some(a)) => {
            if a.status != status {
                return Err(format!("expected {status} {code}, got {}", describe(&a)));
            }
            check_envelope(&a, code)
        }
        (Expect::Ok(status), Some(a)) => {
            if a.status != status {
                return Err(format!("expected {status}, got {}", describe(&a)));
            }
            check_success(&a)
        }
        (Expect::Bare(status), Some(a)) => {
            if a.status != status || !a.body.is_empty() {
                return Err(format!("expected a bare {status}, got {}", describe(&a)));
            }
            Ok(())
        }
    }
}

/// Threads and open descriptors of a process, from /proc.
fn threads_and_fds(pid: u32) -> (usize, usize) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let threads = status
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(0);
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0);
    (threads, fds)
}

/// What must hold after any amount of abuse.
fn assert_healthy(d: &Daemon, baseline: (usize, usize), what: &str) {
    let (status, body) = d.get("/health");
    assert_eq!(status, 200, "/health after the {what}: {body}");
    let (status, body) = d.get("/api/status");
    assert_eq!(status, 200, "/api/status after the {what}: {body}");
    assert!(body["memory"]["chunks"].is_u64(), "{body}");
    let log = d.stderr();
    assert!(
        !log.contains("panicked"),
        "the daemon panicked during the {what}:\n{log}"
    );
    assert!(
        !log.contains("\nFORGED-LOG-LINE") && !log.contains("\rFORGED-LOG-LINE"),
        "a request forged a log line:\n{log}"
    );
    // Idle tiny_http connection threads linger a few seconds and each abandoned
    // connection keeps one for good; a leak per request would be hundreds.
    let (threads, fds) = threads_and_fds(d.pid());
    eprintln!(
        "after the {what}: {threads} threads (from {}), {fds} descriptors (from {})",
        baseline.0, baseline.1
    );
    assert!(
        threads > 0 && threads <= baseline.0 + 48,
        "threads grew from {} to {threads} during the {what}",
        baseline.0
    );
    assert!(
        fds <= baseline.1 + 96,
        "open descriptors grew from {} to {fds} during the {what}",
        baseline.1
    );
}

#[test]
fn corpus_of_bad_requests_gets_the_right_answers() {
    let fake = FakeProvider::start();
    let d = daemon(&fake);
    let (status, created) = d.post("/api/sessions", "");
    assert_eq!(status, 201, "{created}");
    let session = created["session_id"].as_str().unwrap().to_string();
    let baseline = threads_and_fds(d.pid());

    let corpus = corpus(&session);
    let started = Instant::now();
    let mut failures = Vec::new();
    for case in &corpus.0 {
        if let Err(e) = run_case(d.addr, case) {
            failures.push(format!("{}: {e}", case.name));
        }
    }
    eprintln!(
        "robustness corpus: {} cases in {:.1}s",
        corpus.0.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {} cases failed:\n{}\n--- daemon log tail:\n{}",
        failures.len(),
        corpus.0.len(),
        failures.join("\n"),
        tail(&d.stderr(), 40)
    );
    assert_healthy(&d, baseline, "corpus");
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<String> = text
        .lines()
        .map(|l| l.chars().take(200).collect())
        .collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

// ---------------------------------------------------------------------------------------
// Seeded smoke fuzz
// ---------------------------------------------------------------------------------------

/// Requests per run; `LOCALGPT_FUZZ_ITERATIONS` overrides it for a longer local hunt.
const FUZZ_ITERATIONS: usize = 3000;

/// xorshift64*: tiny, deterministic, good enough to pick mutations.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        // splitmix64 of the seed, so 0 and small seeds start well mixed (never 0).
        let mut z = seed.wrapping_add(0x9e37_79b9_7f4a_7c15);
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        Rng((z ^ (z >> 31)) | 1)
    }

    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }

    fn percent(&mut self, p: usize) -> bool {
        self.below(100) < p
    }
}

const FIELDS: &[&str] = &[
    "message",
    "model",
    "include_memory",
    "session_id",
    "request_id",
    "decision",
    "force",
];

const NUMBERS: &[&str] = &[
    "0",
    "-0",
    "1",
    "-1",
    "3.25",
    "1e308",
    "-1e308",
    "1e999",
    "-1e999",
    "1e-999",
    "18446744073709551615",
    "18446744073709551616",
    "123456789012345678901234567890",
    "0.000000000000000000000000001",
    "1E+2",
    "NaN",
    "Infinity",
    "0x10",
    "01",
    "1.",
    ".5",
    "--1",
];

const STRINGS: &[&str] = &[
    r#""""#,
    r#"" ""#,
    r#""hi""#,
    r#""\u0000""#,
    r#""\ud800""#,
    r#""\udc00\ud800""#,
    r#""\ud83d\ude00""#,
    r#""\uffff\ufffe""#,
    r#""\u202e\u2028""#,
    r#""\\\"\/\b\f\n\r\t""#,
    r#""\x""#,
    r#""openai/gpt-test""#,
    r#""anthropic/claude-test""#,
    r#""ollama/llama-test""#,
    r#""claude-cli/opus""#,
    r#""bogus/x""#,
    r#""openai/""#,
    r#""../../etc/passwd""#,
    r#""%2e%2e%2f""#,
    r#""approve""#,
    r#""deny""#,
    r#""r1""#,
];

/// Percent escapes that are incomplete, invalid, or decode to something awkward.
const ODD_ESCAPES: &[&str] = &["%", "%z", "%c3", "%ed%a0%80", "%00", "+", "%2F"];

const INTERESTING_BYTES: &[u8] = b"{}[]\":,\\0-+.eE \t\r\n\x00\x7f\xff\xc3\xed";

/// Text of a random JSON-ish value (not always valid JSON).
fn value_text(rng: &mut Rng, depth: usize) -> String {
    let kinds = if depth >= 3 { 5 } else { 8 };
    match rng.below(kinds) {
        0 => rng.pick(&["null", "true", "false"]).to_string(),
        1 => rng.pick(NUMBERS).to_string(),
        2 => rng.pick(STRINGS).to_string(),
        3 => {
            // A random string: ASCII, escapes and raw UTF-8, sometimes giant.
            let len = match rng.below(20) {
                0 => 100_000 + rng.below(200_000),
                1 if rng.percent(20) => 1024 * 1024 + rng.below(1024),
                _ => rng.below(40),
            };
            let mut s = String::from("\"");
            while s.len() < len + 1 {
                match rng.below(12) {
                    0 => s.push_str(&format!("\\u{:04x}", rng.below(0x10000))),
                    1 => s.push('é'),
                    2 => s.push('😀'),
                    _ => s.push(char::from(b'a' + rng.below(26) as u8)),
                }
            }
            s.push('"');
            s
        }
        4 => {
            let n = *rng.pick(&[50, 127, 128, 129, 1000, 10_000]);
            let (open, close) = if rng.percent(50) {
                ("[", "]")
            } else {
                (r#"{"a":"#, "}")
            };
            let closed = if rng.percent(70) {
                close.repeat(n)
            } else {
                String::new()
            };
            format!("{}1{closed}", open.repeat(n))
        }
        5 => {
            let n = rng.below(4);
            let items: Vec<String> = (0..n).map(|_| value_text(rng, depth + 1)).collect();
            format!("[{}]", items.join(","))
        }
        _ => object_text(rng, depth + 1),
    }
}

fn object_text(rng: &mut Rng, depth: usize) -> String {
    let n = rng.below(5);
    let items: Vec<String> = (0..n)
        .map(|_| {
            let key = if rng.percent(80) {
                rng.pick(FIELDS).to_string()
            } else {
                format!("k{}", rng.below(100))
            };
            format!("\"{key}\":{}", value_text(rng, depth + 1))
        })
        .collect();
    format!("{{{}}}", items.join(","))
}

/// Flips, inserts, deletes, truncates or duplicates bytes.
fn mutate_bytes(rng: &mut Rng, mut body: Vec<u8>) -> Vec<u8> {
    for _ in 0..1 + rng.below(4) {
        let len = body.len();
        match rng.below(6) {
            0 if len > 0 => {
                let i = rng.below(len);
                body[i] ^= 1 << rng.below(8);
            }
            1 => {
                let i = rng.below(len + 1);
                body.insert(i, *rng.pick(INTERESTING_BYTES));
            }
            2 if len > 0 => {
                body.remove(rng.below(len));
            }
            3 => body.truncate(rng.below(len + 1)),
            4 if len > 0 => {
                let a = rng.below(len);
                let b = a + rng.below(len - a + 1);
                let piece = body[a..b].to_vec();
                let at = rng.below(body.len() + 1);
                body.splice(at..at, piece);
            }
            _ => {
                let i = rng.below(len + 1);
                let text = value_text(rng, 2);
                body.splice(i..i, text.into_bytes());
            }
        }
    }
    body
}

/// A valid body with one field replaced, added or removed.
fn mutate_fields(rng: &mut Rng, seed: &Value) -> Vec<u8> {
    let mut fields: Vec<(String, String)> = seed
        .as_object()
        .map(|o| o.iter().map(|(k, v)| (k.clone(), v.to_string())).collect())
        .unwrap_or_default();
    for _ in 0..1 + rng.below(2) {
        match rng.below(4) {
            0 if !fields.is_empty() => {
                let i = rng.below(fields.len());
                fields.remove(i);
            }
            1 | 2 if !fields.is_empty() => {
                let i = rng.below(fields.len());
                fields[i].1 = value_text(rng, 1);
            }
            _ => fields.push((rng.pick(FIELDS).to_string(), value_text(rng, 1))),
        }
    }
    let items: Vec<String> = fields.iter().map(|(k, v)| format!("\"{k}\":{v}")).collect();
    format!("{{{}}}", items.join(",")).into_bytes()
}

fn fuzz_body(rng: &mut Rng, seeds: &[Value]) -> Vec<u8> {
    let seed = rng.pick(seeds);
    match rng.below(10) {
        0..=3 => mutate_bytes(rng, seed.to_string().into_bytes()),
        4..=6 => mutate_fields(rng, seed),
        7 => value_text(rng, 0).into_bytes(),
        8 => (0..rng.below(64)).map(|_| rng.next() as u8).collect(),
        _ => seed.to_string().into_bytes(),
    }
}

/// A random token for a query value or a path segment: printable ASCII, percent
/// escapes (valid or not), `+`, and sometimes a very long run.
fn fuzz_token(rng: &mut Rng) -> String {
    let len = match rng.below(25) {
        0 => 1001 + rng.below(100),
        1 => 4000 + rng.below(1000),
        _ => rng.below(24),
    };
    let mut s = String::new();
    while s.len() < len {
        match rng.below(8) {
            0 => s.push_str(&format!("%{:02X}", rng.below(256))),
            1 => s.push_str(rng.pick::<&str>(ODD_ESCAPES)),
            2 => s.push(char::from(0x21 + rng.below(0x5e) as u8)),
            _ => s.push(char::from(b'a' + rng.below(26) as u8)),
        }
    }
    s
}

/// A [`fuzz_token`] that stays one path segment.
fn fuzz_segment(rng: &mut Rng) -> String {
    fuzz_token(rng)
        .replace('/', "%2F")
        .replace('?', "%3F")
        .replace('#', "%23")
}

fn fuzz_query(rng: &mut Rng) -> String {
    let n = 1 + rng.below(3);
    let parts: Vec<String> = (0..n)
        .map(|_| {
            let key = match rng.below(10) {
                0..=5 => "q".to_string(),
                6 | 7 => "limit".to_string(),
                _ => fuzz_token(rng),
            };
            let value = if key == "limit" && rng.percent(60) {
                rng.pick(NUMBERS).to_string()
            } else {
                fuzz_token(rng)
            };
            if rng.percent(10) {
                key
            } else {
                format!("{key}={value}")
            }
        })
        .collect();
    parts.join(if rng.percent(90) { "&" } else { "&&" })
}

/// One fuzz request: its bytes and the statuses its route may answer.
fn fuzz_request(rng: &mut Rng, session: &str) -> (String, Vec<u8>, &'static [u16]) {
    let chat_seeds = [
        json!({"message": "hello", "model": MODEL, "include_memory": false}),
        json!({"message": "hi"}),
        json!({"message": "hi", "session_id": session}),
        json!({"message": "hi", "model": "anthropic/claude-test"}),
        json!({"message": "hi", "model": "ollama/llama-test"}),
    ];
    // Chat: a session may still be finishing the previous turn (409); a provider failure
    // is 502/504 as documented. Over SSE provider failures are events inside a 200.
    const CHAT: &[u16] = &[200, 400, 404, 409, 413, 502, 504];
    const STREAM: &[u16] = &[200, 400, 404, 409, 413];
    match rng.below(21) {
        0..=6 => {
            let target = format!("/api/memory/search?{}", fuzz_query(rng));
            (target.clone(), http("GET", &target, &[], None), &[200, 400])
        }
        7..=9 => {
            let body = fuzz_body(rng, &chat_seeds);
            ("POST /api/chat".into(), post("/api/chat", &body), CHAT)
        }
        10 | 11 => {
            let body = fuzz_body(rng, &chat_seeds);
            (
                "POST /api/chat/stream".into(),
                post("/api/chat/stream", &body),
                STREAM,
            )
        }
        12 | 13 => {
            let body = fuzz_body(rng, &[json!({}), json!({"model": MODEL})]);
            (
                "POST /api/sessions".into(),
                post("/api/sessions", &body),
                &[201, 400, 413],
            )
        }
        14 | 15 => {
            let id = if rng.percent(50) {
                session.to_string()
            } else {
                fuzz_segment(rng)
            };
            let target = format!("/api/sessions/{id}/approve");
            let body = fuzz_body(rng, &[json!({"request_id": "r1", "decision": "approve"})]);
            (target.clone(), post(&target, &body), &[400, 404, 413])
        }
        16 => {
            let body = fuzz_body(rng, &[json!({"force": false}), json!({})]);
            (
                "POST /api/memory/reindex".into(),
                post("/api/memory/reindex", &body),
                &[200, 400, 413],
            )
        }
        17 => {
            let body = fuzz_body(rng, &[json!({})]);
            (
                "POST /api/heartbeat/run".into(),
                post("/api/heartbeat/run", &body),
                &[200, 400, 409, 413],
            )
        }
        18 => {
            // Reads back whatever the fuzzed turns stored in the session, or the list.
            let target = if rng.percent(50) {
                format!("/api/sessions/{session}")
            } else {
                "/api/sessions".to_string()
            };
            (target.clone(), http("GET", &target, &[], None), &[200])
        }
        _ => {
            let method = *rng.pick(&["GET", "DELETE"]);
            let target = format!("/api/sessions/{}", fuzz_segment(rng));
            (
                format!("{method} {target}"),
                http(method, &target, &[], None),
                // An empty id is `/api/sessions/`, the session list.
                &[200, 400, 404, 405],
            )
        }
    }
}

#[test]
fn seeded_fuzz_of_the_json_routes() {
    let seed = std::env::var("LOCALGPT_FUZZ_SEED")
        .ok()
        .and_then(|s| s.trim().parse::<u64>().ok())
        // A fixed default keeps CI repeatable; hunt with other seeds by hand.
        .unwrap_or(0x10ca_1697);
    eprintln!("fuzz seed {seed} (rerun with LOCALGPT_FUZZ_SEED={seed})");
    let iterations = std::env::var("LOCALGPT_FUZZ_ITERATIONS")
        .ok()
        .and_then(|s| s.trim().parse::<usize>().ok())
        .unwrap_or(FUZZ_ITERATIONS);
    let mut rng = Rng::new(seed);

    let fake = FakeProvider::start();
    let d = daemon(&fake);
    let (status, created) = d.post("/api/sessions", "");
    assert_eq!(status, 201, "{created}");
    let session = created["session_id"].as_str().unwrap().to_string();
    let baseline = threads_and_fds(d.pid());

    let started = Instant::now();
    for i in 0..iterations {
        let (what, bytes, allowed) = fuzz_request(&mut rng, &session);
        let shown = || {
            let what: String = what.chars().take(200).collect();
            let body = String::from_utf8_lossy(&bytes[..bytes.len().min(400)]).into_owned();
            format!("seed {seed}, iteration {i}, {what}\n--- request (start):\n{body}")
        };
        let answer = match exchange(d.addr, &bytes, false, true) {
            Ok(Some(a)) => a,
            Ok(None) => panic!("closed without an answer; {}", shown()),
            Err(f) => panic!("{f:?}; {}", shown()),
        };
        assert!(
            allowed.contains(&answer.status),
            "status {} not allowed ({allowed:?}): {}; {}",
            answer.status,
            String::from_utf8_lossy(&answer.body[..answer.body.len().min(300)]),
            shown()
        );
        let checked = if answer.status >= 400 {
            check_envelope(&answer, code_for(answer.status))
        } else {
            check_success(&answer)
        };
        if let Err(e) = checked {
            panic!("{e}; {}", shown());
        }
    }
    eprintln!(
        "fuzz: {iterations} requests in {:.1}s ({} reached the fake provider)",
        started.elapsed().as_secs_f64(),
        fake.request_count()
    );
    assert_healthy(&d, baseline, &format!("fuzz (seed {seed})"));
}
