//! Chat routes: `POST /api/chat` (one JSON answer) and `POST /api/chat/stream` (SSE).

use serde_json::Value;

use crate::agent::chat::{self, ChatParams};
use crate::agent::events::{TurnEvent, Unattended};
use crate::app::App;
use crate::server::error::ApiError;
use crate::server::http::{ApiRequest, ApiResponse, Fields};
use crate::server::render::sse::{SseSink, SseStream};

/// Reads `{message, model?, include_memory?, session_id?}`, naming any bad field.
pub fn parse_params(req: &ApiRequest) -> Result<ChatParams, ApiError> {
    let body = req.json_object(false)?;
    params_from(&body)
}

/// The same fields out of any JSON object (the WebSocket's `chat` message too).
pub fn params_from(body: &serde_json::Map<String, Value>) -> Result<ChatParams, ApiError> {
    let f = Fields(body);
    let message = f.req_str("message")?.to_string();
    let model = f
        .opt_str("model")?
        .map(|m| m.parse().map_err(ApiError::invalid_request))
        .transpose()?;
    Ok(ChatParams {
        message,
        model,
        include_memory: f.opt_bool("include_memory")?.unwrap_or(true),
        session_id: f.opt_str("session_id")?.map(str::to_string),
    })
}

/// `POST /api/chat`.
pub fn chat(app: &App, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let params = parse_params(req)?;
    let prepared = chat::prepare(&app.agent, &app.sessions, &params, false)?;
    let answer = chat::run(
        &app.agent,
        &app.sessions,
        &params,
        prepared,
        &mut Unattended,
    )?;
    Ok(ApiResponse::ok(&answer))
}

/// `POST /api/chat/stream`: validation errors are plain JSON; once the stream has begun,
/// failures are an `error` event followed by `[DONE]`.
pub fn stream(app: &App, request: tiny_http::Request, req: &ApiRequest, cors: Option<&str>) -> u16 {
    let prepared = parse_params(req).and_then(|p| {
        let prepared = chat::prepare(&app.agent, &app.sessions, &p, true)?;
        Ok((p, prepared))
    });
    let (params, prepared) = match prepared {
        Ok(v) => v,
        Err(e) => return crate::server::reply_cors(request, e.into(), cors),
    };
    let session_id = prepared.session_id().unwrap_or_default().to_string();
    let headers: Vec<(&str, &str)> = match cors {
        Some(o) => vec![("Access-Control-Allow-Origin", o), ("Vary", "Origin")],
        None => Vec::new(),
    };
    let stream = match SseStream::start(request, app.config.sessions.keepalive.get(), &headers) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("stream client went away before the head was sent: {e}");
            return 200;
        }
    };
    stream.event(&TurnEvent::Session {
        session_id: session_id.clone(),
    });
    // `run` frees the session before it returns, so before `done` is sent: a client may
    // send its next turn the moment it reads `done`.
    let result = chat::run(
        &app.agent,
        &app.sessions,
        &params,
        prepared,
        &mut SseSink(&stream),
    );
    match result {
        Ok(answer) => {
            stream.event(&TurnEvent::Done(answer));
        }
        Err(e) => {
            if e.is_cancelled() {
                log::info!("stream for session {session_id} cancelled: the client went away");
            }
            stream.event(&ApiError::from(e).event());
        }
    }
    stream.finish();
    200
}
