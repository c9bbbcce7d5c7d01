//! `GET /api/ws`: a WebSocket on its own thread (bounded in number), speaking JSON text
//! messages.
//!
//! The connection's thread owns the socket; a turn runs on a thread of its own and hands
//! its events over ([`super::render::ws`]). The connection's thread sleeps in `poll` on the
//! socket (a duplicate of its descriptor, made non-blocking; tiny_http's upgraded stream
//! can be neither split nor given a timeout) and on an eventfd the turn rings, so it
//! takes `approve`, `cancel` and `ping` at any time, even mid-stream, and writes each
//! event the moment it exists. A client that stops reading for `server.write_timeout` is
//! cut and its turn cancelled. A WebSocket turn takes a place in the chat lane.
//!
//! Should the socket's descriptor be out of reach (no `pidfd_getfd`), the connection
//! still works, but reads wait for the turn to end.

use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, TryRecvError, unbounded};
use rustix::event::{EventfdFlags, PollFd, PollFlags, Timespec, eventfd, poll};
use serde_json::{Map, Value, json};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::Server;
use super::error::ApiError;
use super::handlers::chat::params_from;
use super::http::header;
use super::render::ws::{Mailbox, Out, WsSink};
use crate::agent::approval::Decision;
use crate::agent::chat;
use crate::agent::events::TurnEvent;

type Socket = WebSocket<Box<dyn tiny_http::ReadWrite + Send>>;

/// Bytes of messages the client has not taken yet beyond which it is cut (it reads too
/// slowly, or not at all).
const MAX_UNSENT_BYTES: usize = 1024 * 1024;

/// Releases a WebSocket slot when the connection thread ends.
struct Slot(Arc<Server>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.websockets.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Checks the upgrade request, answers 101 and hands the connection to a new thread.
pub fn upgrade(
    srv: &Arc<Server>,
    request: tiny_http::Request,
    headers: &[(String, String)],
) -> u16 {
    let app = &srv.app;
    let header = |name: &str| header(headers, name);
    let is_upgrade = header("Upgrade").is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    // RFC 6455 §4.2.1: version 13, and a key of 16 random bytes in base64.
    let version_ok = header("Sec-WebSocket-Version").is_some_and(|v| v.trim() == "13");
    let key = header("Sec-WebSocket-Key")
        .filter(|k| k.len() == 24 && k.ends_with("==") && is_upgrade && version_ok);
    let Some(key) = key else {
        let e = ApiError::invalid_request(
            "expected a WebSocket upgrade (Upgrade: websocket, Sec-WebSocket-Version: 13, \
             Sec-WebSocket-Key: 16 bytes in base64)",
        );
        let mut resp = crate::server::http::ApiResponse::from(e);
        resp.headers.push(("Sec-WebSocket-Version", "13".into()));
        return super::reply(request, resp);
    };
    let max = app.config.server.max_websockets;
    if srv.websockets.fetch_add(1, Ordering::SeqCst) >= max {
        srv.websockets.fetch_sub(1, Ordering::SeqCst);
        let e = ApiError::overloaded(&format!("server.max_websockets ({max}) connections open"));
        return super::reply(request, e.into());
    }
    let slot = Slot(srv.clone());
    let peer = request.remote_addr().copied();
    let accept = tungstenite::handshake::derive_accept_key(key.as_bytes());
    let mut response = tiny_http::Response::empty(101);
    if let Ok(h) = tiny_http::Header::from_bytes("Sec-WebSocket-Accept", accept.as_bytes()) {
        response.add_header(h);
    }
    let stream = request.upgrade("websocket", response);
    let limit = app.config.server.ws_max_message_bytes;
    // tungstenite reads into a 128 KiB buffer by default, per connection; our messages are
    // small JSON, and idle connections should cost little.
    let config = WebSocketConfig::default()
        .read_buffer_size(16 * 1024)
        .max_message_size(Some(limit))
        .max_frame_size(Some(limit))
        .max_write_buffer_size(MAX_UNSENT_BYTES);
    let socket = WebSocket::from_raw_socket(stream, Role::Server, Some(config));
    // Our own handle on the socket, to wait on it with `poll` while a turn runs.
    let fd = peer.and_then(|p| srv.conns.socket_of(p));
    if fd.is_none() {
        log::warn!(
            "WebSocket from {peer:?}: its socket cannot be watched; during a turn, messages              wait for the turn to end (approve over HTTP works)"
        );
    }
    let srv = srv.clone();
    let spawned = std::thread::Builder::new()
        .name("websocket".into())
        .spawn(move || {
            let _slot = slot;
            let started = Instant::now();
            serve(&srv, socket, fd);
            log::info!(
                "WS /api/ws closed after {:.1}s",
                started.elapsed().as_secs_f64()
            );
        });
    if let Err(e) = spawned {
        log::error!("cannot start a WebSocket thread: {e}");
    }
    101
}

fn error_msg(code: &str, message: &str) -> Value {
    json!({"type": "error", "code": code, "message": message})
}

/// What a read from the client gave.
enum Incoming {
    Json(Map<String, Value>),
    /// Answered with an `error` message; the connection stays.
    Bad(String),
    /// Nothing more to read now (non-blocking socket).
    Later,
    /// The connection is over (close, error); `Some` closes with that code first.
    End(Option<(CloseCode, &'static str)>),
}

fn next(ws: &mut Socket) -> Incoming {
    loop {
        match ws.read() {
            Ok(Message::Text(t)) => {
                return match serde_json::from_str::<Value>(t.as_str()) {
                    Ok(Value::Object(m)) => Incoming::Json(m),
                    Ok(_) => Incoming::Bad("messages must be JSON objects with a \"type\"".into()),
                    Err(e) => Incoming::Bad(format!("message is not valid JSON: {e}")),
                };
            }
            Ok(Message::Binary(_)) => {
                return Incoming::Bad("binary messages are not supported; send JSON text".into());
            }
            // Pings are answered by tungstenite on the next read or write.
            Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => continue,
            Ok(Message::Close(_)) => {
                // tungstenite queued the close reply; send it before the socket is dropped.
                let _ = ws.flush();
                return Incoming::End(None);
            }
            Err(tungstenite::Error::Io(e)) if would_block(&e) => return Incoming::Later,
            Err(tungstenite::Error::Capacity(_)) => {
                return Incoming::End(Some((CloseCode::Size, "message too big")));
            }
            Err(tungstenite::Error::Protocol(_)) => {
                return Incoming::End(Some((CloseCode::Protocol, "protocol error")));
            }
            Err(tungstenite::Error::Utf8(_)) => {
                return Incoming::End(Some((CloseCode::Invalid, "invalid UTF-8")));
            }
            Err(_) => return Incoming::End(None),
        }
    }
}

fn would_block(e: &std::io::Error) -> bool {
    matches!(
        e.kind(),
        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
    )
}

/// The socket as this thread drives it: non-blocking and polled, or (without a
/// descriptor) blocking.
struct Wire {
    /// The socket's duplicate (non-blocking) and the eventfd the turn rings.
    polled: Option<(OwnedFd, OwnedFd)>,
    /// Since when messages wait in tungstenite for the socket to take them.
    unsent_since: Option<Instant>,
    write_timeout: Duration,
}

/// One connection: its socket, its session and the turn it runs, if any.
struct Conn<'s> {
    srv: &'s Server,
    ws: Socket,
    wire: Wire,
    session: Option<String>,
    /// The running turn's end of the mailbox.
    turn: Option<Receiver<Out>>,
    /// The client sent `cancel` (reset for each turn).
    cancel: Arc<AtomicBool>,
    /// The connection is over: a running turn stops.
    gone: Arc<AtomicBool>,
}

/// How handling a message went.
enum Flow<'a> {
    Go,
    /// Start a turn for these chat parameters in this (claimed) session.
    Turn(
        chat::ChatParams,
        chat::Prepared<'a>,
        crate::server::lanes::Ticket,
    ),
    End,
}

fn serve(srv: &Server, ws: Socket, fd: Option<OwnedFd>) {
    let write_timeout = srv.app.config.server.write_timeout.get();
    let polled = fd.and_then(|fd| {
        let bell = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK).ok()?;
        rustix::io::ioctl_fionbio(&fd, true).ok()?;
        Some((fd, bell))
    });
    let cancel = Arc::new(AtomicBool::new(false));
    let gone = Arc::new(AtomicBool::new(false));
    let mut conn = Conn {
        srv,
        ws,
        wire: Wire {
            polled,
            unsent_since: None,
            write_timeout,
        },
        session: None,
        turn: None,
        cancel,
        gone: gone.clone(),
    };
    std::thread::scope(|scope| {
        conn.run(scope);
        gone.store(true, Ordering::SeqCst);
    });
}

impl<'s> Conn<'s> {
    fn run<'scope>(&mut self, scope: &'scope std::thread::Scope<'scope, '_>)
    where
        's: 'scope,
    {
        loop {
            // Everything the client sent that can be read now.
            loop {
                let flow = match next(&mut self.ws) {
                    Incoming::Later => break,
                    Incoming::Json(m) => self.handle(&m),
                    Incoming::Bad(why) => {
                        self.queue(&error_msg("invalid_request", &why));
                        Flow::Go
                    }
                    Incoming::End(Some((code, reason))) => {
                        close(&mut self.ws, code, reason);
                        Flow::End
                    }
                    Incoming::End(None) => Flow::End,
                };
                match flow {
                    Flow::Go => {}
                    Flow::End => return,
                    Flow::Turn(params, prepared, ticket) => {
                        self.start_turn(scope, params, prepared, ticket)
                    }
                }
                if self.wire.polled.is_none() && self.turn.is_some() {
                    break;
                }
            }
            // Everything the turn said.
            if !self.relay() {
                return;
            }
            if !self.flush() {
                return;
            }
            if !self.wait() {
                return;
            }
        }
    }

    /// Acts on one client message.
    fn handle(&mut self, msg: &Map<String, Value>) -> Flow<'s> {
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "ping" => self.queue(&json!({"type": "pong"})),
            "session" | "chat" if self.turn.is_some() => self.queue(&error_msg(
                "conflict",
                "a turn is running on this connection: wait for its done (or error), or send cancel",
            )),
            "session" => {
                let wanted = msg.get("session_id").and_then(Value::as_str);
                match open_session(self.srv, wanted) {
                    Ok(id) => {
                        self.queue(&json!({"type": "connected", "session_id": id}));
                        self.session = Some(id);
                    }
                    Err(e) => self.queue(&error_msg(e.code, &e.message)),
                }
            }
            "chat" => return self.chat(msg),
            "approve" => self.approve(msg),
            "cancel" if self.turn.is_some() => self.cancel.store(true, Ordering::SeqCst),
            "cancel" => self.queue(&error_msg(
                "not_found",
                "nothing to cancel: no turn is running",
            )),
            other => self.queue(&error_msg(
                "invalid_request",
                &format!(
                    "unknown message type {other:?}; use session, chat, approve, cancel or ping"
                ),
            )),
        }
        Flow::Go
    }

    /// A decision for a tool waiting in this connection's session.
    fn approve(&mut self, msg: &Map<String, Value>) {
        let id = msg.get("request_id").and_then(Value::as_str).unwrap_or("");
        let decision = msg.get("decision").and_then(Value::as_str).unwrap_or("");
        let Some(decision) = Decision::parse(decision) else {
            return self.queue(&error_msg(
                "invalid_request",
                &format!("field 'decision' must be \"approve\" or \"deny\", got {decision:?}"),
            ));
        };
        let session = self.session.as_deref().unwrap_or("");
        if !self.srv.app.agent.approvals.decide(session, id, decision) {
            self.queue(&error_msg(
                "not_found",
                &format!("no approval request {id:?} is waiting"),
            ));
        }
    }

    /// Prepares a `chat` message's turn: its session, its model, a place in the chat lane.
    fn chat(&mut self, msg: &Map<String, Value>) -> Flow<'s> {
        let app: &'s crate::app::App = &self.srv.app;
        let mut params = match params_from(msg) {
            Ok(p) => p,
            Err(e) => {
                self.queue(&error_msg(e.code, &e.message));
                return Flow::Go;
            }
        };
        if params.session_id.is_none() {
            params.session_id = self.session.clone();
        }
        let Some(ticket) = self.srv.chat_lane.ticket() else {
            let e = ApiError::overloaded("all chat slots busy");
            self.queue(&error_msg(e.code, &e.message));
            return Flow::Go;
        };
        let prepared = match chat::prepare(&app.agent, &app.sessions, &params, true) {
            Ok(p) => p,
            Err(e) => {
                self.queue_event(&ApiError::from(e).event());
                return Flow::Go;
            }
        };
        let session_id = prepared.session_id().unwrap_or_default().to_string();
        if self.session.as_deref() != Some(&session_id) {
            self.session = Some(session_id.clone());
            self.queue_event(&TurnEvent::Session { session_id });
        }
        Flow::Turn(params, prepared, ticket)
    }

    fn start_turn<'scope>(
        &mut self,
        scope: &'scope std::thread::Scope<'scope, '_>,
        params: chat::ChatParams,
        prepared: chat::Prepared<'s>,
        ticket: crate::server::lanes::Ticket,
    ) where
        's: 'scope,
    {
        let (tx, rx) = unbounded();
        self.cancel.store(false, Ordering::SeqCst);
        self.turn = Some(rx);
        let app: &'s crate::app::App = &self.srv.app;
        let bell = self.wire.polled.as_ref().map(|(_, bell)| bell);
        let (cancel, gone) = (self.cancel.clone(), self.gone.clone());
        let bell = bell.and_then(|b| b.try_clone().ok());
        scope.spawn(move || {
            let mailbox = Mailbox {
                tx,
                bell: bell.as_ref(),
            };
            let mut sink = WsSink {
                mailbox,
                cancel,
                gone,
            };
            let result = chat::run(&app.agent, &app.sessions, &params, prepared, &mut sink);
            let last = match result {
                Ok(answer) => TurnEvent::Done(answer),
                Err(e) => ApiError::from(e).event(),
            };
            // Free before the client can read `done` and send its next turn.
            drop(ticket);
            sink.mailbox.send(Out::Last(last));
        });
    }

    /// Writes what the turn produced; false when the connection is over.
    fn relay(&mut self) -> bool {
        let Some(rx) = self.turn.clone() else {
            return true;
        };
        let blocking = self.wire.polled.is_none();
        loop {
            let out = if blocking {
                rx.recv().map_err(|_| TryRecvError::Disconnected)
            } else {
                rx.try_recv()
            };
            match out {
                Ok(Out::Event(e)) => {
                    self.queue_event(&e);
                    if blocking && !self.flush() {
                        return false;
                    }
                }
                Ok(Out::Last(e)) => {
                    self.queue_event(&e);
                    self.turn = None;
                    return true;
                }
                Err(TryRecvError::Disconnected) => {
                    self.turn = None;
                    return true;
                }
                Err(TryRecvError::Empty) => return true,
            }
        }
    }

    fn queue(&mut self, v: &Value) {
        self.queue_text(v.to_string());
    }

    fn queue_event(&mut self, event: &TurnEvent) {
        match serde_json::to_string(event) {
            Ok(text) => self.queue_text(text),
            Err(e) => log::error!("cannot encode an event: {e}"),
        }
    }

    /// Puts a message in tungstenite's buffer; [`Conn::flush`] sends it.
    fn queue_text(&mut self, text: String) {
        if let Err(e) = self.ws.write(Message::text(text)) {
            match e {
                tungstenite::Error::Io(e) if would_block(&e) => {}
                other => {
                    log::debug!("WebSocket write failed: {other}");
                    self.gone.store(true, Ordering::SeqCst);
                }
            }
        }
    }

    /// Sends what is buffered; false when the client is gone or has not read for
    /// `server.write_timeout`.
    fn flush(&mut self) -> bool {
        if self.gone.load(Ordering::SeqCst) {
            return false;
        }
        match self.ws.flush() {
            Ok(()) => {
                self.wire.unsent_since = None;
                true
            }
            Err(tungstenite::Error::Io(e)) if would_block(&e) => {
                let since = *self.wire.unsent_since.get_or_insert_with(Instant::now);
                let late = !self.wire.write_timeout.is_zero()
                    && since.elapsed() >= self.wire.write_timeout;
                if late {
                    log::info!(
                        "WebSocket client stopped reading for server.write_timeout ({:?}); closing",
                        self.wire.write_timeout
                    );
                }
                !late
            }
            Err(e) => {
                log::debug!("WebSocket flush failed: {e}");
                false
            }
        }
    }

    /// Sleeps until the client sends something, the turn has news, or buffered messages
    /// can go out; false when the connection is over.
    fn wait(&mut self) -> bool {
        let Some((fd, bell)) = &self.wire.polled else {
            // Blocking: the next read waits for the client (no turn runs here).
            return true;
        };
        let mut sock_flags = PollFlags::IN;
        if self.wire.unsent_since.is_some() {
            sock_flags |= PollFlags::OUT;
        }
        let mut fds = [
            PollFd::new(fd, sock_flags),
            PollFd::new(bell, PollFlags::IN),
        ];
        // With messages stuck, wake in time to give up on the client.
        let timeout = self.wire.unsent_since.map(|since| {
            let left = self.wire.write_timeout.saturating_sub(since.elapsed());
            Timespec::try_from(left.max(Duration::from_millis(10))).unwrap_or(Timespec {
                tv_sec: 1,
                tv_nsec: 0,
            })
        });
        match poll(&mut fds, timeout.as_ref()) {
            Ok(_) | Err(rustix::io::Errno::INTR) => {}
            Err(e) => {
                log::warn!("WebSocket poll failed: {e}");
                return false;
            }
        }
        if fds[1].revents().contains(PollFlags::IN) {
            let mut count = [0u8; 8];
            let _ = rustix::io::read(bell, &mut count);
        }
        let hangup = fds[0]
            .revents()
            .intersects(PollFlags::ERR | PollFlags::NVAL);
        !hangup
    }
}

fn close(ws: &mut Socket, code: CloseCode, reason: &'static str) {
    let _ = ws.close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    // Drive the close handshake until the peer answers, goes away, or (non-blocking) has
    // nothing more to say now.
    while ws.read().is_ok() {}
}

fn open_session(srv: &Server, wanted: Option<&str>) -> Result<String, ApiError> {
    let app = &srv.app;
    match wanted {
        Some(id) => match app.sessions.get(id)? {
            Some(s) => Ok(s.session_id),
            None => Err(ApiError::not_found(format!("session {id} not found"))),
        },
        None => Ok(app
            .sessions
            .create(&app.config.agent.default_model.to_string())?
            .session_id),
    }
}
