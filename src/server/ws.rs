//! `GET /api/ws`: a WebSocket on its own thread (bounded in number), speaking JSON text
//! messages.
//!
//! tiny_http's upgraded stream can be neither split nor given a timeout, so one thread
//! reads and writes and the loop is request-driven: it reads a client message and handles
//! it to the end. During a turn the socket is read only while a tool waits for approval;
//! that is where `approve`, `cancel` and `ping` are taken. A client that closes the
//! connection mid-turn cancels it (the next write fails).

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use serde_json::{Map, Value, json};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Message, WebSocket};

use super::error::ApiError;
use super::handlers::chat::params_from;
use super::http::header;
use crate::agent::approval::{Decision, Pending, Waited};
use crate::agent::chat;
use crate::agent::events::{TurnEvent, TurnSink};
use crate::app::App;

type Socket = WebSocket<Box<dyn tiny_http::ReadWrite + Send>>;

/// Releases a WebSocket slot when the connection thread ends.
struct Slot(Arc<App>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.websockets.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Checks the upgrade request, answers 101 and hands the connection to a new thread.
pub fn upgrade(app: &Arc<App>, request: tiny_http::Request, headers: &[(String, String)]) -> u16 {
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
    if app.websockets.fetch_add(1, Ordering::SeqCst) >= max {
        app.websockets.fetch_sub(1, Ordering::SeqCst);
        let e = ApiError::overloaded(&format!("server.max_websockets ({max}) connections open"));
        return super::reply(request, e.into());
    }
    let slot = Slot(app.clone());
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
        .max_frame_size(Some(limit));
    let socket = WebSocket::from_raw_socket(stream, Role::Server, Some(config));
    let app = app.clone();
    let spawned = std::thread::Builder::new()
        .name("websocket".into())
        .spawn(move || {
            let _slot = slot;
            let started = Instant::now();
            serve(&app, socket);
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

fn send(ws: &mut Socket, v: &Value) -> bool {
    ws.send(Message::text(v.to_string())).is_ok()
}

/// Sends a turn event as one text message.
fn send_event(ws: &mut Socket, event: &TurnEvent) -> bool {
    match serde_json::to_string(event) {
        Ok(text) => ws.send(Message::text(text)).is_ok(),
        Err(e) => {
            log::error!("cannot encode an event: {e}");
            true
        }
    }
}

fn error_msg(code: &str, message: &str) -> Value {
    json!({"type": "error", "code": code, "message": message})
}

/// A client message: a JSON object with a `type`.
enum Incoming {
    Json(Map<String, Value>),
    /// Answered with an `error` message; the connection stays.
    Bad(String),
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

fn close(ws: &mut Socket, code: CloseCode, reason: &'static str) {
    let _ = ws.close(Some(CloseFrame {
        code,
        reason: reason.into(),
    }));
    // Drive the close handshake until the peer answers or goes away.
    while ws.read().is_ok() {}
}

fn serve(app: &App, mut ws: Socket) {
    let mut session: Option<String> = None;
    loop {
        let msg = match next(&mut ws) {
            Incoming::Json(m) => m,
            Incoming::Bad(why) => {
                if !send(&mut ws, &error_msg("invalid_request", &why)) {
                    return;
                }
                continue;
            }
            Incoming::End(Some((code, reason))) => return close(&mut ws, code, reason),
            Incoming::End(None) => return,
        };
        let kind = msg.get("type").and_then(Value::as_str).unwrap_or("");
        let ok = match kind {
            "ping" => send(&mut ws, &json!({"type": "pong"})),
            "session" => {
                let wanted = msg.get("session_id").and_then(Value::as_str);
                match open_session(app, wanted) {
                    Ok(id) => {
                        let sent = send(&mut ws, &json!({"type": "connected", "session_id": id}));
                        session = Some(id);
                        sent
                    }
                    Err(e) => send(&mut ws, &error_msg(e.code, &e.message)),
                }
            }
            "chat" => chat(app, &mut ws, &mut session, &msg),
            "approve" | "cancel" => send(
                &mut ws,
                &error_msg(
                    "not_found",
                    &format!("nothing to {kind}: no tool is waiting for approval"),
                ),
            ),
            other => send(
                &mut ws,
                &error_msg(
                    "invalid_request",
                    &format!(
                        "unknown message type {other:?}; use session, chat, approve, cancel or ping"
                    ),
                ),
            ),
        };
        if !ok {
            return;
        }
    }
}

fn open_session(app: &App, wanted: Option<&str>) -> Result<String, ApiError> {
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

/// Runs a `chat` message's turn, streaming events; false when the connection is gone.
fn chat(
    app: &App,
    ws: &mut Socket,
    session: &mut Option<String>,
    msg: &Map<String, Value>,
) -> bool {
    let mut params = match params_from(msg) {
        Ok(p) => p,
        Err(e) => return send(ws, &error_msg(e.code, &e.message)),
    };
    if params.session_id.is_none() {
        params.session_id = session.clone();
    }
    let prepared = match chat::prepare(&app.agent, &app.sessions, &params, true) {
        Ok(p) => p,
        Err(e) => return send_event(ws, &ApiError::from(e).event()),
    };
    let session_id = prepared.session_id().unwrap_or_default().to_string();
    if session.as_deref() != Some(&session_id) {
        *session = Some(session_id.clone());
        if !send_event(
            ws,
            &TurnEvent::Session {
                session_id: session_id.clone(),
            },
        ) {
            return false;
        }
    }
    let mut sink = WsSink {
        ws,
        session_id: &session_id,
        approvals: &app.agent.approvals,
        gone: false,
        cancel: false,
    };
    let result = chat::run(&app.agent, &app.sessions, &params, prepared, &mut sink);
    if sink.gone {
        return false;
    }
    match result {
        Ok(answer) => send_event(ws, &TurnEvent::Done(answer)),
        Err(e) => send_event(ws, &ApiError::from(e).event()),
    }
}

/// A turn's events as WebSocket messages; the client decides on tools with `approve`
/// messages (or over HTTP), and may `cancel` while a tool waits.
struct WsSink<'a> {
    ws: &'a mut Socket,
    session_id: &'a str,
    approvals: &'a crate::agent::approval::Approvals,
    /// The connection failed.
    gone: bool,
    /// The client sent `cancel`.
    cancel: bool,
}

impl WsSink<'_> {
    fn send(&mut self, v: &Value) {
        if !self.gone {
            self.gone = !send(self.ws, v);
        }
    }
}

impl TurnSink for WsSink<'_> {
    fn emit(&mut self, event: TurnEvent) -> bool {
        if !self.gone {
            self.gone = !send_event(self.ws, &event);
        }
        !self.gone
    }

    fn cancelled(&self) -> bool {
        self.gone || self.cancel
    }

    fn can_approve(&self) -> bool {
        true
    }

    /// Reads the client's messages until it decides, cancels or leaves. The approval
    /// timeout is applied when the client next speaks (see the module note).
    fn await_decision(&mut self, pending: &Pending<'_>, timeout: std::time::Duration) -> Waited {
        let asked = Instant::now();
        loop {
            let msg = match next(self.ws) {
                Incoming::Json(m) => m,
                Incoming::Bad(why) => {
                    self.send(&error_msg("invalid_request", &why));
                    continue;
                }
                Incoming::End(end) => {
                    if let Some((code, reason)) = end {
                        close(self.ws, code, reason);
                    }
                    self.gone = true;
                    return Waited::Gone;
                }
            };
            // A decision posted over HTTP meanwhile counts too.
            if let Some(d) = pending.try_decision() {
                return Waited::Decided(d);
            }
            if asked.elapsed() > timeout {
                return Waited::TimedOut;
            }
            match msg.get("type").and_then(Value::as_str).unwrap_or("") {
                "approve" => {
                    let id = msg.get("request_id").and_then(Value::as_str).unwrap_or("");
                    if id != pending.request_id {
                        self.send(&error_msg(
                            "not_found",
                            &format!("no approval request {id:?} is waiting"),
                        ));
                        continue;
                    }
                    let decision = msg.get("decision").and_then(Value::as_str).unwrap_or("");
                    match Decision::parse(decision) {
                        Some(d) => {
                            self.approvals.decide(self.session_id, id, d);
                            if let Some(d) = pending.try_decision() {
                                return Waited::Decided(d);
                            }
                        }
                        None => self.send(&error_msg(
                            "invalid_request",
                            &format!(
                                "field 'decision' must be \"approve\" or \"deny\", got {decision:?}"
                            ),
                        )),
                    }
                }
                "cancel" => {
                    self.cancel = true;
                    return Waited::Gone;
                }
                "ping" => self.send(&json!({"type": "pong"})),
                _ => self.send(&error_msg(
                    "conflict",
                    "a turn is waiting for approval: send approve or cancel",
                )),
            }
            if self.gone {
                return Waited::Gone;
            }
        }
    }
}
