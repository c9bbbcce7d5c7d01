//! The HTTP server: one `tiny_http` listener thread hands each request to a lane — a bounded
//! `crossbeam-channel` queue drained by a fixed set of worker threads.
//!
//! Two lanes keep cheap requests away from slow ones: the fast lane serves health, status,
//! memory and sessions; the chat lane serves everything bound by an LLM provider. When a
//! lane's queue is full the listener answers `503 overloaded` at once.

pub mod error;
pub mod handlers;
pub mod http;
mod nudge;
pub mod render;
pub mod router;
pub mod ws;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use log::{error, info};
use subtle::ConstantTimeEq;

use crate::app::App;
use error::ApiError;
use http::{ApiRequest, ApiResponse};
use router::{Lane, Route};

/// A request waiting for a worker.
struct Job {
    request: tiny_http::Request,
    route: Result<Route, ApiError>,
    received: Instant,
}

/// A running server; [`RunningServer::shutdown`] stops it.
pub struct RunningServer {
    http: Arc<tiny_http::Server>,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
    workers_done: Receiver<()>,
}

/// Starts the listener and both lanes on an already bound socket. `fatal` receives a message
/// if the listener dies on its own (the process should then exit non-zero).
pub fn start(
    app: Arc<App>,
    socket: TcpListener,
    fatal: Sender<String>,
) -> std::io::Result<RunningServer> {
    let addr = socket.local_addr()?;
    let http = tiny_http::Server::from_listener(socket, None)
        .map(Arc::new)
        .map_err(std::io::Error::other)?;
    let cfg = &app.config.server;

    // Every worker holds a clone of `done_tx`; when the last one exits the receiver
    // disconnects, which is how shutdown knows the lanes are empty.
    let (done_tx, workers_done) = bounded::<()>(0);
    let fast = spawn_lane("fast", cfg.workers, cfg.queue, &app, &done_tx)?;
    let chat = spawn_lane("chat", cfg.chat_workers, cfg.chat_queue, &app, &done_tx)?;
    drop(done_tx);

    let stopping = Arc::new(AtomicBool::new(false));
    let nudger = nudge::Nudger::start(addr)?;
    let listener = {
        let (http, stopping, app) = (http.clone(), stopping.clone(), app.clone());
        thread::Builder::new()
            .name("listener".into())
            .spawn(move || listen(&app, &http, &stopping, [fast, chat], &nudger, &fatal))?
    };
    Ok(RunningServer {
        http,
        addr,
        stopping,
        listener: Some(listener),
        workers_done,
    })
}

impl RunningServer {
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops intake, then waits up to `grace` for in-flight requests. Returns whether every
    /// worker finished in time.
    pub fn shutdown(mut self, grace: Duration) -> bool {
        self.stopping.store(true, Ordering::SeqCst);
        self.http.unblock();
        if let Some(listener) = self.listener.take() {
            let _ = listener.join();
        }
        let deadline = Instant::now() + grace;
        // Disconnected means every worker has exited; a timeout means some are still busy.
        matches!(
            self.workers_done.recv_deadline(deadline),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        )
    }
}

/// A pool of workers and the requests admitted to it.
struct LaneHandle {
    tx: Sender<Job>,
    /// Jobs a free worker takes before any in `tx` (`/health`: a liveness probe must not
    /// wait behind a queue of searches).
    urgent: Sender<Job>,
    /// Requests admitted and not yet finished (running or waiting).
    load: Arc<AtomicUsize>,
    /// `workers + queue`: what the lane holds before it answers 503.
    capacity: usize,
}

impl LaneHandle {
    /// Hands `job` to the lane; gives it back when the lane is full. Admission counts
    /// requests rather than channel slots: a burst must not be refused just because idle
    /// workers have not yet woken up to take what was sent a moment ago.
    fn admit(&self, job: Job) -> Option<Job> {
        if self.load.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.load.fetch_sub(1, Ordering::SeqCst);
            return Some(job);
        }
        let tx = match job.route {
            Ok(Route::Health) => &self.urgent,
            _ => &self.tx,
        };
        match tx.try_send(job) {
            Ok(()) => None,
            Err(TrySendError::Full(job) | TrySendError::Disconnected(job)) => {
                self.load.fetch_sub(1, Ordering::SeqCst);
                Some(job)
            }
        }
    }
}

fn spawn_lane(
    name: &'static str,
    workers: usize,
    queue: usize,
    app: &Arc<App>,
    done: &Sender<()>,
) -> std::io::Result<LaneHandle> {
    let capacity = workers + queue;
    // Admission keeps at most `capacity` jobs in flight, so the channel never fills.
    let (tx, rx) = bounded::<Job>(capacity);
    let (urgent, urgent_rx) = bounded::<Job>(capacity);
    let load = Arc::new(AtomicUsize::new(0));
    for i in 0..workers {
        let (rx, urgent_rx) = (rx.clone(), urgent_rx.clone());
        let (app, done, load) = (app.clone(), done.clone(), load.clone());
        thread::Builder::new()
            .name(format!("{name}-{i}"))
            .spawn(move || {
                while let Some(job) = next_job(&urgent_rx, &rx) {
                    // Handlers catch their own panics; this catches the streaming routes'
                    // too, so the worker and the lane's count survive anything.
                    let _ = catch_unwind(AssertUnwindSafe(|| serve(&app, job)));
                    load.fetch_sub(1, Ordering::SeqCst);
                }
                drop(done);
            })?;
    }
    Ok(LaneHandle {
        tx,
        urgent,
        load,
        capacity,
    })
}

/// The next job for a worker: an urgent one when there is one. `None` once both channels
/// are closed and empty.
fn next_job(urgent: &Receiver<Job>, normal: &Receiver<Job>) -> Option<Job> {
    if let Ok(job) = urgent.try_recv() {
        return Some(job);
    }
    crossbeam_channel::select! {
        recv(urgent) -> job => job.ok().or_else(|| normal.recv().ok()),
        recv(normal) -> job => job.ok().or_else(|| urgent.recv().ok()),
    }
}

fn listen(
    app: &App,
    http: &tiny_http::Server,
    stopping: &AtomicBool,
    lanes: [LaneHandle; 2],
    nudger: &nudge::Nudger,
    fatal: &Sender<String>,
) {
    let debug = app.config.server.debug_routes;
    loop {
        let request = match http.recv() {
            Ok(r) => r,
            Err(e) => {
                if !stopping.load(Ordering::SeqCst) {
                    // tiny_http's accept thread has stopped for good (e.g. out of file
                    // descriptors): exit so a supervisor can restart us.
                    error!("HTTP listener failed: {e}");
                    let _ = fatal.send(format!("HTTP listener failed: {e}"));
                }
                break;
            }
        };
        let received = Instant::now();
        nudger.saw_request();
        let path = request.url().split('?').next().unwrap_or("");
        let route = router::route(request.method().as_str(), path, debug);
        let lane = match &route {
            Ok(r) => r.lane(),
            Err(_) => Lane::Fast,
        };
        let job = Job {
            request,
            route,
            received,
        };
        let handle = match lane {
            Lane::Fast => &lanes[0],
            Lane::Chat => &lanes[1],
        };
        if let Some(job) = handle.admit(job) {
            let what = match lane {
                Lane::Fast => "request queue full",
                Lane::Chat => "all chat slots busy",
            };
            let status = if too_big_to_drop(&job.request) {
                refuse_undroppable(job.request, app.config.server.max_body_bytes)
            } else {
                reply(job.request, ApiError::overloaded(what).into())
            };
            log_access(app, "-", what, status, received);
        }
    }
    // Dropping the senders lets workers finish what is queued and exit.
}

fn log_access(app: &App, method: &str, path: &str, status: u16, since: Instant) {
    if app.config.server.access_log {
        info!(
            "{} {} {status} {:.1}ms",
            loggable(method, 32),
            loggable(path, 512),
            since.elapsed().as_secs_f64() * 1000.0
        );
    }
}

/// Text from a request as it may go into a log line: control characters escaped (a bare
/// LF or CR in a request line would otherwise forge or overwrite log lines) and at most
/// `max` characters (tiny_http reads request lines of any length).
fn loggable(text: &str, max: usize) -> String {
    let mut out = String::new();
    for (i, c) in text.chars().enumerate() {
        if i == max {
            out.push('…');
            break;
        }
        if c.is_control() {
            out.extend(c.escape_default());
        } else {
            out.push(c);
        }
    }
    out
}

/// Serves one request on a worker thread.
fn serve(app: &Arc<App>, job: Job) {
    let Job {
        mut request,
        route,
        received,
    } = job;
    let method = request.method().as_str().to_owned();
    let target = request.url().to_owned();
    let path = target.split('?').next().unwrap_or("").to_owned();
    let headers: Vec<(String, String)> = request
        .headers()
        .iter()
        .map(|h| {
            (
                h.field.as_str().as_str().to_owned(),
                h.value.as_str().to_owned(),
            )
        })
        .collect();
    let cors = cors_origin(app, &headers);

    // Before anything else: every answer below drops the request, and with it the body.
    if too_big_to_drop(&request) {
        let status = refuse_undroppable(request, app.config.server.max_body_bytes);
        log_access(app, &method, &path, status, received);
        return;
    }
    let status = match screen(app, &headers, &target, route) {
        Err(e) => reply_cors(request, e.into(), cors.as_deref()),
        Ok(Route::Preflight) => reply_cors(request, preflight(), cors.as_deref()),
        Ok(Route::WebSocket) => ws::upgrade(app, request),
        Ok(route) => match read_body(&mut request, app.config.server.max_body_bytes) {
            Err(e) => reply(request, e.into()),
            Ok(body) if route == Route::ChatStream => {
                let api = ApiRequest::new(&method, &target, headers, body);
                handlers::chat::stream(app, request, &api, cors.as_deref())
            }
            Ok(body) => {
                let api = ApiRequest::new(&method, &target, headers, body);
                let resp = catch_unwind(AssertUnwindSafe(|| handlers::handle(app, &route, &api)))
                    .unwrap_or_else(|_| {
                        Err(ApiError::internal(
                            "the request handler failed unexpectedly; see the daemon log",
                        ))
                    })
                    .unwrap_or_else(ApiResponse::from);
                reply_cors(request, resp, cors.as_deref())
            }
        },
    };
    log_access(app, &method, &path, status, received);
}

/// Host, Origin, length and token checks that every route passes before its handler.
fn screen(
    app: &App,
    headers: &[(String, String)],
    target: &str,
    route: Result<Route, ApiError>,
) -> Result<Route, ApiError> {
    let cfg = &app.config.server;
    let header = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    check_header_size(headers, cfg)?;
    check_framing(headers)?;
    if headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("Host"))
        .count()
        > 1
    {
        // Which one would a proxy have routed by? The loopback check below reads the first.
        return Err(ApiError::invalid_request(
            "more than one Host header; send exactly one",
        ));
    }
    if cfg.bind.is_loopback()
        && let Some(host) = header("Host")
        && !is_loopback_host(host)
    {
        return Err(ApiError::forbidden(format!(
            "Host {host:?} is not a loopback name; this server only answers requests for localhost"
        )));
    }
    if let Some(origin) = header("Origin")
        && !origin_allowed(origin, &cfg.allowed_origins)
    {
        return Err(ApiError::forbidden(format!(
            "Origin {origin:?} is not allowed; add it to server.allowed_origins to permit it"
        )));
    }
    if target.len() > cfg.max_query_bytes {
        return Err(ApiError::invalid_request(format!(
            "request target is longer than server.max_query_bytes ({} bytes)",
            cfg.max_query_bytes
        )));
    }
    let route = route?;
    if !cfg.auth_token.is_empty() && !route.is_public() {
        let given = header("Authorization")
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        if !bool::from(given.trim().as_bytes().ct_eq(cfg.auth_token.as_bytes())) {
            return Err(ApiError::unauthorized());
        }
    }
    Ok(route)
}

/// Caps the header lines (DESIGN §10). tiny_http has read them all into memory by now (it
/// has no limit of its own), so this bounds what the rest of the server copies, logs and
/// answers, not tiny_http's read.
fn check_header_size(
    headers: &[(String, String)],
    cfg: &crate::config::ServerConfig,
) -> Result<(), ApiError> {
    let bytes: usize = headers.iter().map(|(k, v)| k.len() + v.len() + 4).sum();
    if headers.len() > cfg.max_headers || bytes > cfg.max_header_bytes {
        return Err(ApiError::request_header_too_large(format!(
            "the request has {} header lines of {bytes} bytes; the limits are \
             server.max_headers ({}) and server.max_header_bytes ({})",
            headers.len(),
            cfg.max_headers,
            cfg.max_header_bytes
        )));
    }
    Ok(())
}

/// Refuses a request whose body length is ambiguous. tiny_http takes `Transfer-Encoding`
/// over `Content-Length`, decodes any transfer coding as chunked, believes the first of
/// several lengths and reads an unparsable one as "no body", whose bytes it then serves as
/// the next request. A proxy in front may well decide otherwise (request smuggling), so
/// only one plain decimal `Content-Length` or exactly `Transfer-Encoding: chunked` pass.
fn check_framing(headers: &[(String, String)]) -> Result<(), ApiError> {
    let values = |name: &'static str| {
        headers
            .iter()
            .filter(move |(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let lengths: Vec<&str> = values("Content-Length").collect();
    let codings: Vec<&str> = values("Transfer-Encoding")
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    if !codings.is_empty() {
        if !lengths.is_empty() {
            return Err(ApiError::invalid_request(
                "the request has both Content-Length and Transfer-Encoding; send one",
            ));
        }
        if !matches!(codings.as_slice(), [c] if c.eq_ignore_ascii_case("chunked")) {
            return Err(ApiError::invalid_request(format!(
                "unsupported Transfer-Encoding {:?}; only \"chunked\" is accepted",
                codings.join(", ")
            )));
        }
    }
    if let Some(first) = lengths.first() {
        let plain = first.bytes().all(|b| b.is_ascii_digit()) && first.parse::<usize>().is_ok();
        if !plain || lengths.iter().any(|l| l != first) {
            return Err(ApiError::invalid_request(format!(
                "Content-Length must be one decimal number of bytes, got {lengths:?}"
            )));
        }
    }
    Ok(())
}

/// Declared bodies above this are never dropped: when tiny_http 0.12 drops a request with
/// unread body it allocates a buffer of the whole remaining declared length at once, and a
/// `Content-Length` of a terabyte aborts the process. Below it the allocation is harmless
/// (lazily mapped and filled only by bytes the client really sends).
const UNDROPPABLE_BODY: usize = 64 * 1024 * 1024;

/// True when dropping `request` could allocate its whole declared body (see
/// [`UNDROPPABLE_BODY`]): such a request is answered only by [`refuse_undroppable`].
fn too_big_to_drop(request: &tiny_http::Request) -> bool {
    request.body_length().is_some_and(|n| n > UNDROPPABLE_BODY)
}

/// Answers 413 to a request declaring an absurd body, and deliberately leaks the
/// connection (its socket and tiny_http's thread for it) instead of dropping the request.
/// Only a hostile client sends this; leaking one connection beats crashing the daemon.
fn refuse_undroppable(request: tiny_http::Request, max: usize) -> u16 {
    static LEAKED: AtomicUsize = AtomicUsize::new(0);
    let n = LEAKED.fetch_add(1, Ordering::Relaxed) + 1;
    log::warn!(
        "refused a request declaring a {}-byte body; its connection is abandoned ({n} so far)",
        request.body_length().unwrap_or(0)
    );
    let resp = ApiResponse::from(ApiError::payload_too_large(max));
    let body = resp.body.clone();
    // `upgrade` writes the head and hands over the connection without dropping the body
    // reader, but it sends neither a length nor the body, and tiny_http's `add_header`
    // discards a `Content-Length`. Without one the client reads the body until the
    // connection closes, which this one never does: so the length rides in on the
    // protocol name (written verbatim as the `Upgrade` header, never acted on by a client
    // of a non-101 answer), and the body is written on the raw stream.
    let protocol = format!("none\r\nContent-Length: {}", body.len());
    let mut stream = request.upgrade(&protocol, resp.into_tiny());
    if let Err(e) = stream.write_all(&body).and_then(|()| stream.flush()) {
        log::debug!("client went away before the 413 was sent: {e}");
    }
    std::mem::forget(stream);
    413
}

fn read_body(request: &mut tiny_http::Request, max: usize) -> Result<Vec<u8>, ApiError> {
    if request.body_length().is_some_and(|len| len > max) {
        return Err(ApiError::payload_too_large(max));
    }
    let header = |name: &'static str| {
        request
            .headers()
            .iter()
            .find(|h| h.field.equiv(name))
            .map(|h| h.value.as_str())
    };
    let chunked = header("Transfer-Encoding").is_some();
    // For a request whose (first) `Connection` header says "upgrade", as curl's h2c offer
    // does, tiny_http hands over the raw connection as the body, whatever its framing:
    // read exactly the declared length, or nothing, never "until the client closes",
    // which a client waiting for its answer never does.
    let raw = header("Connection").is_some_and(|v| v.to_ascii_lowercase().contains("upgrade"));
    let limit = match request.body_length() {
        Some(declared) => declared as u64,
        None if chunked && raw => {
            return Err(ApiError::invalid_request(
                "a chunked body cannot come with Connection: upgrade; send Content-Length",
            ));
        }
        None if chunked => max as u64 + 1,
        None => return Ok(Vec::new()),
    };
    let mut body = Vec::new();
    request
        .as_reader()
        .take(limit)
        .read_to_end(&mut body)
        .map_err(|e| ApiError::invalid_request(format!("cannot read the request body: {e}")))?;
    if body.len() > max {
        return Err(ApiError::payload_too_large(max));
    }
    // A connection closed early must not pass for a complete (if valid) request.
    if let Some(declared) = request.body_length()
        && body.len() < declared
    {
        return Err(ApiError::invalid_request(format!(
            "the request body ended after {} of the {declared} bytes its Content-Length declared",
            body.len()
        )));
    }
    Ok(body)
}

fn preflight() -> ApiResponse {
    ApiResponse::empty(204)
        .with_header("Access-Control-Allow-Methods", "GET, POST, DELETE, OPTIONS")
        .with_header(
            "Access-Control-Allow-Headers",
            "Authorization, Content-Type",
        )
        .with_header("Access-Control-Max-Age", "600")
}

/// The origin to echo in `Access-Control-Allow-Origin`, when the request has an allowed one.
fn cors_origin(app: &App, headers: &[(String, String)]) -> Option<String> {
    let origin = headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case("Origin"))
        .map(|(_, v)| v)?;
    origin_allowed(origin, &app.config.server.allowed_origins).then(|| origin.clone())
}

pub(crate) fn reply_cors(
    request: tiny_http::Request,
    resp: ApiResponse,
    origin: Option<&str>,
) -> u16 {
    match origin {
        Some(o) => reply(
            request,
            resp.with_header("Access-Control-Allow-Origin", o)
                .with_header("Vary", "Origin"),
        ),
        None => reply(request, resp),
    }
}

/// Sends a complete response; a client that went away is not an error worth more than a
/// debug line.
pub(crate) fn reply(request: tiny_http::Request, resp: ApiResponse) -> u16 {
    let status = resp.status;
    if let Err(e) = request.respond(resp.into_tiny()) {
        log::debug!("client went away before the response was sent: {e}");
    }
    status
}

/// True for `localhost`, `*.localhost` and loopback IP literals, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    // Only what a host and port are made of. Anything else (whitespace, a control
    // character, a bare CR or LF) is no host at all, and an allowed `Origin` is echoed in
    // a header as it came.
    if !host
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
    {
        return false;
    }
    let name = if let Some(rest) = host.strip_prefix('[') {
        // [::1] or [::1]:port, and nothing else after the bracket.
        let Some((ip, after)) = rest.split_once(']') else {
            return false;
        };
        let port_ok = after.is_empty()
            || after
                .strip_prefix(':')
                .is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()));
        if !port_ok {
            return false;
        }
        ip
    } else {
        match host.rsplit_once(':') {
            Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        }
    };
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost"
        || name.ends_with(".localhost")
        || name
            .parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// A browser origin is allowed when it is a local page or listed in config.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    if allowed.iter().any(|a| a == origin) {
        return true;
    }
    let Some(rest) = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
    else {
        return false;
    };
    !rest.contains('/') && is_loopback_host(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for h in [
            "localhost",
            "localhost:31327",
            "127.0.0.1:80",
            "[::1]:31327",
            "127.1.2.3",
            "a.localhost",
        ] {
            assert!(is_loopback_host(h), "{h}");
        }
        for h in [
            "example.com",
            "evil.com:31327",
            "192.168.1.2",
            "localhost.evil.com",
            "[2001:db8::1]:80",
            "",
            "[::1]x",
            "[::1]:",
            "[::1",
            "local host",
            "localhost\0",
        ] {
            assert!(!is_loopback_host(h), "{h}");
        }
    }

    /// Regression: an `Origin` with a bare CR or LF whose tail looked loopback was allowed
    /// and echoed in `Access-Control-Allow-Origin`, splitting the response's headers.
    #[test]
    fn r_origin_with_line_breaks_is_not_echoed() {
        for origin in [
            "http://x\nSet-Cookie: pwned=1;.localhost",
            "http://x\rSet-Cookie: a=1;.localhost",
            "http://[::1]\r\nSet-Cookie: pwned=1",
            "http://[::1]\nX: 1",
            "http://localhost:3000\n",
        ] {
            assert!(!origin_allowed(origin, &[]), "{origin:?}");
            assert!(!is_loopback_host(&origin[7..]), "{origin:?}");
        }
        assert!(origin_allowed("http://[::1]:3000", &[]));
        assert!(origin_allowed("http://localhost.:8080", &[]));
    }

    /// Regression: a bare LF in a request line started a forged line in the access log.
    #[test]
    fn r_request_text_cannot_forge_log_lines() {
        assert_eq!(loggable("/api/status", 512), "/api/status");
        assert_eq!(
            loggable("/x\n[ERROR] forged\rG\0", 512),
            "/x\\n[ERROR] forged\\rG\\u{0}"
        );
        assert_eq!(loggable("/ééé", 2), "/é…");
    }

    #[test]
    fn header_caps() {
        let cfg = crate::config::ServerConfig {
            max_headers: 3,
            max_header_bytes: 64,
            ..Default::default()
        };
        let h = |n: usize, len: usize| -> Vec<(String, String)> {
            (0..n)
                .map(|i| (format!("X-{i}"), "v".repeat(len)))
                .collect()
        };
        assert!(check_header_size(&h(3, 10), &cfg).is_ok());
        let e = check_header_size(&h(4, 1), &cfg).unwrap_err();
        assert_eq!((e.status, e.code), (431, "request_header_too_large"));
        assert!(e.message.contains("server.max_headers"), "{}", e.message);
        assert_eq!(check_header_size(&h(1, 100), &cfg).unwrap_err().status, 431);
    }

    fn framing(headers: &[(&str, &str)]) -> Result<(), ApiError> {
        let headers: Vec<(String, String)> = headers
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        check_framing(&headers)
    }

    /// Regression: tiny_http served bodies framed ambiguously (Content-Length with
    /// Transfer-Encoding, two lengths, `Content-Length: abc`, `Transfer-Encoding: gzip,
    /// chunked`) by guessing, and a proxy may guess differently.
    #[test]
    fn r_ambiguous_body_framing_is_refused() {
        for ok in [
            &[][..],
            &[("Content-Length", "0")],
            &[("content-length", "17")],
            &[("Content-Length", "2"), ("Content-Length", "2")],
            &[("Transfer-Encoding", "chunked")],
            &[("transfer-encoding", "Chunked")],
        ] {
            assert!(framing(ok).is_ok(), "{ok:?}");
        }
        for bad in [
            &[("Content-Length", "2"), ("Transfer-Encoding", "chunked")][..],
            &[("Content-Length", "2"), ("Content-Length", "3")],
            &[("Content-Length", "abc")],
            &[("Content-Length", "")],
            &[("Content-Length", "-1")],
            &[("Content-Length", "+2")],
            &[("Content-Length", "2, 2")],
            &[("Content-Length", "18446744073709551616")],
            &[("Transfer-Encoding", "gzip")],
            &[("Transfer-Encoding", "")],
            &[("Transfer-Encoding", "gzip, chunked")],
            &[("Transfer-Encoding", "chunked, chunked")],
            &[
                ("Transfer-Encoding", "chunked"),
                ("Transfer-Encoding", "chunked"),
            ],
            &[("Transfer-Encoding", "identity")],
        ] {
            let e = framing(bad).expect_err(&format!("{bad:?}"));
            assert_eq!(e.status, 400);
        }
    }

    #[test]
    fn origins() {
        assert!(origin_allowed("http://localhost:3000", &[]));
        assert!(origin_allowed("http://127.0.0.1", &[]));
        assert!(!origin_allowed("https://evil.example", &[]));
        assert!(!origin_allowed("null", &[]));
        assert!(origin_allowed(
            "https://app.example",
            &["https://app.example".into()]
        ));
    }
}
