//! The HTTP server: one `tiny_http` listener thread hands each request to a lane — a bounded
//! `crossbeam-channel` queue drained by a fixed set of worker threads.
//!
//! Two lanes keep cheap requests away from slow ones: the fast lane serves health, status,
//! memory and sessions; the chat lane serves everything bound by an LLM provider. When a
//! lane's queue is full the listener answers `503 overloaded` at once.
//!
//! The parts: [`lanes`] (queues and workers), [`screen`] (checks before any handler),
//! [`router`], [`handlers`] (plain functions), [`error`] (the one mapping to the envelope),
//! [`render`] (turn events to SSE), [`ws`], and [`conn`] (every tiny_http workaround).

pub mod conn;
pub mod error;
pub mod handlers;
pub mod http;
pub mod lanes;
pub mod render;
pub mod router;
pub mod screen;
pub mod v1;
pub mod ws;

use std::net::{SocketAddr, TcpListener};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, bounded};
use log::{error, info};

use crate::app::App;
use conn::body::{read_body, refuse_undroppable, too_big_to_drop};
use conn::deadlines::{Connections, Limits, Watchdog};
use conn::nudge;
use error::ApiError;
use http::{ApiRequest, ApiResponse};
use lanes::{Admission, Job, LaneHandle, spawn_lane};
use router::{Lane, Route};
use screen::{cors_origin, preflight, screen};

/// What the server's threads share: the daemon's state and the server's own.
pub struct Server {
    pub app: Arc<App>,
    /// Open connections and their deadlines.
    pub conns: Arc<Connections>,
    /// The chat lane's places, which WebSocket turns take too.
    pub chat_lane: Arc<Admission>,
    /// Open WebSocket connections.
    pub websockets: AtomicUsize,
}

/// A running server; [`RunningServer::shutdown`] stops it.
pub struct RunningServer {
    http: Arc<tiny_http::Server>,
    addr: SocketAddr,
    stopping: Arc<AtomicBool>,
    listener: Option<JoinHandle<()>>,
    workers_done: Receiver<()>,
    watchdog: Option<Watchdog>,
}

/// Starts the listener and both lanes on an already bound socket. `fatal` receives a message
/// if the listener dies on its own (the process should then exit non-zero).
pub fn start(
    app: Arc<App>,
    socket: TcpListener,
    fatal: Sender<String>,
) -> std::io::Result<RunningServer> {
    let addr = socket.local_addr()?;
    let cfg = app.config.server.clone();
    // Accepted sockets inherit the listener's SO_SNDTIMEO (it does not affect `accept`):
    // a client that stops reading is cut after `write_timeout` on every connection.
    let write_timeout = Some(cfg.write_timeout.get()).filter(|d| !d.is_zero());
    if let Err(e) = rustix::net::sockopt::set_socket_timeout(
        &socket,
        rustix::net::sockopt::Timeout::Send,
        write_timeout,
    ) {
        log::warn!(
            "cannot set server.write_timeout on the listener ({e}); clients that stop reading hold their thread"
        );
    }
    let watched = socket.try_clone()?;
    let http = tiny_http::Server::from_listener(socket, None)
        .map(Arc::new)
        .map_err(std::io::Error::other)?;
    let conns = Arc::new(Connections::new(
        Limits {
            header_timeout: cfg.header_timeout.get(),
            idle_timeout: cfg.idle_timeout.get(),
            max_stuck: cfg.max_stuck_connections,
        },
        addr.port(),
        fatal.clone(),
    ));
    let watchdog = Watchdog::start(conns.clone(), watched)?;

    // Every worker holds a clone of `done_tx`; when the last one exits the receiver
    // disconnects, which is how shutdown knows the lanes are empty.
    let (done_tx, workers_done) = bounded::<()>(0);
    let srv = Arc::new(Server {
        app,
        conns,
        chat_lane: Admission::new(cfg.chat_workers + cfg.chat_queue),
        websockets: AtomicUsize::new(0),
    });
    let handler: Arc<dyn Fn(Job) + Send + Sync> = {
        let srv = srv.clone();
        Arc::new(move |job| serve(&srv, job))
    };
    let fast_lane = Admission::new(cfg.workers + cfg.queue);
    let fast = spawn_lane("fast", cfg.workers, fast_lane, handler.clone(), &done_tx)?;
    let chat = spawn_lane(
        "chat",
        cfg.chat_workers,
        srv.chat_lane.clone(),
        handler,
        &done_tx,
    )?;
    drop(done_tx);

    let stopping = Arc::new(AtomicBool::new(false));
    let nudger = cfg
        .pool_nudge
        .then(|| nudge::Nudger::start(addr))
        .transpose()?;
    let listener = {
        let (http, stopping, srv) = (http.clone(), stopping.clone(), srv.clone());
        thread::Builder::new()
            .name("listener".into())
            .spawn(move || {
                listen(
                    &srv,
                    &http,
                    &stopping,
                    [fast, chat],
                    nudger.as_ref(),
                    &fatal,
                )
            })?
    };
    Ok(RunningServer {
        http,
        addr,
        stopping,
        listener: Some(listener),
        workers_done,
        watchdog: Some(watchdog),
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
        let finished = matches!(
            self.workers_done.recv_deadline(deadline),
            Err(crossbeam_channel::RecvTimeoutError::Disconnected)
        );
        if let Some(watchdog) = self.watchdog.take() {
            watchdog.stop();
        }
        finished
    }
}

fn listen(
    srv: &Server,
    http: &tiny_http::Server,
    stopping: &AtomicBool,
    lanes: [LaneHandle; 2],
    nudger: Option<&nudge::Nudger>,
    fatal: &Sender<String>,
) {
    let app = &srv.app;
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
        if let Some(nudger) = nudger {
            nudger.saw_request();
        }
        let peer = request.remote_addr().copied();
        srv.conns.request_started(peer.as_ref());
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
                let resp = ApiError::overloaded(what).response_for(job.request.url());
                reply(job.request, resp)
            };
            srv.conns.request_finished(peer.as_ref());
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
fn serve(srv: &Arc<Server>, job: Job) {
    let Job {
        mut request,
        route,
        received,
    } = job;
    let app = &srv.app;
    let peer = request.remote_addr().copied();
    let method = request.method().as_str().to_owned();
    let target = request.url().to_owned();
    let path = target.split('?').next().unwrap_or("").to_owned();
    let headers = http::headers_of(&request);
    let cfg = &app.config.server;
    let cors = cors_origin(cfg, &headers);

    // Before anything else: every answer below drops the request, and with it the body.
    if too_big_to_drop(&request) {
        let status = refuse_undroppable(request, cfg.max_body_bytes);
        srv.conns.request_finished(peer.as_ref());
        log_access(app, &method, &path, status, received);
        return;
    }
    // Set when the events feed took the connection over (busy for its whole life).
    let mut fed = false;
    let status = match screen(cfg, &headers, &target, route) {
        Err(e) => reply_cors(request, e.response_for(&path), cors.as_deref()),
        Ok(Route::Preflight) => reply_cors(request, preflight(), cors.as_deref()),
        Ok(Route::WebSocket) => ws::upgrade(srv, request, &headers),
        Ok(route) => match read_body(&mut request, &headers, cfg.max_body_bytes) {
            Err(e) => reply(request, e.response_for(&path)),
            Ok(body) if route == Route::ChatStream => {
                let api = ApiRequest::new(&method, &target, headers, body);
                handlers::chat::stream(app, request, &api, cors.as_deref())
            }
            Ok(body) if route == Route::Events => {
                let api = ApiRequest::new(&method, &target, headers, body);
                let (status, taken) = handlers::events::open(srv, request, &api, cors.as_deref());
                fed = taken;
                status
            }
            Ok(body) if route == Route::V1ChatCompletions => {
                let api = ApiRequest::new(&method, &target, headers, body);
                v1::chat_completions(app, request, &api, cors.as_deref())
            }
            Ok(body) => {
                let api = ApiRequest::new(&method, &target, headers, body);
                let resp = catch_unwind(AssertUnwindSafe(|| handlers::handle(srv, &route, &api)))
                    .unwrap_or_else(|_| {
                        Err(ApiError::internal(
                            "the request handler failed unexpectedly; see the daemon log",
                        ))
                    })
                    .unwrap_or_else(|e| {
                        // A client error is the client's business; a server error is ours,
                        // logged here once, whatever layer it came from.
                        if e.status >= 500 {
                            error!("{method} {}: {e}", loggable(&path, 512));
                        }
                        e.response_for(&path)
                    });
                reply_cors(request, resp, cors.as_deref())
            }
        },
    };
    // An upgraded connection is the WebSocket's now, and a feed the feed thread's: busy for
    // their whole life.
    if status != 101 && !fed {
        srv.conns.request_finished(peer.as_ref());
    }
    log_access(app, &method, &path, status, received);
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
