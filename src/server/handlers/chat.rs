//! Chat routes: `POST /api/chat` (one JSON answer) and `POST /api/chat/stream` (SSE).

use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use serde_json::{Value, json};

use crate::agent::approval::Decision;
use crate::agent::chat::{ChatError, ChatParams, claim, resolve, run_chat, run_claimed};
use crate::agent::tools::{ToolOutput, cap};
use crate::agent::turn::{TurnError, TurnEvents, TurnOutcome, Unattended};
use crate::app::App;
use crate::config::Fallback;
use crate::providers::{ProviderError, ToolCall};
use crate::server::error::ApiError;
use crate::server::http::{ApiRequest, ApiResponse, Fields};
use crate::server::sse::SseStream;

/// Longest tool output sent in a `tool_end` event (the model gets the whole capped output).
const EVENT_OUTPUT_CHARS: usize = 2000;

/// Reads `{message, model?, include_memory?, session_id?}`, naming any bad field.
pub fn parse_params(req: &ApiRequest) -> Result<ChatParams, ApiError> {
    let body = req.json_object(false)?;
    params_from(&body)
}

/// The same fields out of any JSON object (the WebSocket's `chat` message too).
pub fn params_from(body: &serde_json::Map<String, Value>) -> Result<ChatParams, ApiError> {
    let f = Fields(body);
    let message = f.req_str("message")?.to_string();
    let model = f.opt_str("model")?.map(str::to_string);
    if let Some(m) = &model {
        crate::config::split_model(m).map_err(ApiError::invalid_request)?;
    }
    Ok(ChatParams {
        message,
        model,
        include_memory: f.opt_bool("include_memory")?.unwrap_or(true),
        session_id: f.opt_str("session_id")?.map(str::to_string),
    })
}

/// The one mapping from chat failures to API errors.
pub fn chat_error(e: ChatError) -> ApiError {
    match e {
        ChatError::SessionNotFound(id) => ApiError::not_found(format!("session {id} not found")),
        ChatError::SessionBusy(_) => ApiError::conflict(e.to_string()),
        ChatError::Turn(TurnError::BadModel(m)) => ApiError::invalid_request(m),
        ChatError::Turn(TurnError::Provider(ProviderError::Timeout { .. })) => {
            ApiError::provider_timeout(e.to_string())
        }
        // Only reaches a client that is still there (a WebSocket `cancel`); 499 as nginx
        // uses it: the client closed the request.
        ChatError::Turn(TurnError::Provider(ProviderError::Cancelled)) => {
            ApiError::new(499, "cancelled", "the turn was cancelled")
        }
        ChatError::Turn(TurnError::Provider(ProviderError::Failed { .. })) => {
            ApiError::provider(e.to_string())
        }
        ChatError::Store(s) => s.into(),
    }
}

/// The answer body shared by `/api/chat` and the stream's `done` event.
pub fn outcome_json(outcome: &TurnOutcome, session_id: Option<&str>) -> Value {
    let mut v = json!({
        "response": outcome.response,
        "model": outcome.model,
        "tokens": {
            "prompt": outcome.usage.prompt,
            "completion": outcome.usage.completion,
            "total": outcome.usage.prompt + outcome.usage.completion,
        },
        "tools_used": outcome.tools_used,
    });
    if let Some(id) = session_id {
        v["session_id"] = json!(id);
    }
    v
}

/// `POST /api/chat`.
pub fn chat(app: &App, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let params = parse_params(req)?;
    let (model, session_id) = resolve(app, &params, false).map_err(chat_error)?;
    let outcome = run_chat(app, &params, &model, session_id.as_deref(), &mut Unattended)
        .map_err(chat_error)?;
    Ok(ApiResponse::ok(&outcome_json(
        &outcome,
        session_id.as_deref(),
    )))
}

/// `POST /api/chat/stream`: validation errors are plain JSON; once the stream has begun,
/// failures are an `error` event followed by `[DONE]`.
pub fn stream(app: &App, request: tiny_http::Request, req: &ApiRequest, cors: Option<&str>) -> u16 {
    let prepared = parse_params(req).and_then(|p| {
        let (model, session) = resolve(app, &p, true).map_err(chat_error)?;
        let session_id = session.unwrap_or_default();
        let claimed = claim(app, &session_id).map_err(chat_error)?;
        Ok((p, model, session_id, claimed))
    });
    let (params, model, session_id, claimed) = match prepared {
        Ok(v) => v,
        Err(e) => return crate::server::reply_cors(request, e.into(), cors),
    };
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
    stream.event(&json!({"type": "session", "session_id": session_id}));
    let mut events = SseEvents {
        app,
        stream: &stream,
        session_id: &session_id,
        tool_ids: Vec::new(),
    };
    let result = run_claimed(app, &params, &model, &claimed, &mut events);
    // Free the session before the last event: a client may send its next turn the moment
    // it reads `done`.
    drop(claimed);
    match result {
        Ok(outcome) => {
            let mut done = outcome_json(&outcome, Some(&session_id));
            done["type"] = json!("done");
            stream.event(&done);
        }
        Err(e) => {
            let cancelled = matches!(
                e,
                ChatError::Turn(TurnError::Provider(ProviderError::Cancelled))
            );
            let err = chat_error(e);
            if cancelled {
                log::info!("stream for session {session_id} cancelled: the client went away");
            }
            stream.event(&json!({"type": "error", "code": err.code, "message": err.message}));
        }
    }
    stream.finish();
    200
}

/// Sends turn events as SSE and asks the client for approvals.
struct SseEvents<'a> {
    app: &'a App,
    stream: &'a SseStream,
    session_id: &'a str,
    /// Ids of started tool calls, so `tool_end` repeats the `tool_start` id.
    tool_ids: Vec<String>,
}

impl TurnEvents for SseEvents<'_> {
    fn delta(&mut self, text: &str) -> bool {
        self.stream
            .event(&json!({"type": "content", "delta": text}))
    }

    fn tool_start(&mut self, call: &ToolCall) {
        self.tool_ids.push(call.id.clone());
        self.stream.event(&json!({"type": "tool_start", "id": call.id, "name": call.name, "arguments": call.arguments}));
    }

    fn tool_end(&mut self, call: &ToolCall, output: &ToolOutput) {
        self.stream.event(
            &json!({"type": "tool_end", "id": call.id, "name": call.name,
            "output": cap(output.text.clone(), EVENT_OUTPUT_CHARS), "is_error": output.is_error}),
        );
    }

    fn approve(&mut self, call: &ToolCall, _fallback: Fallback) -> Decision {
        wait_for_approval(
            self.app,
            self.session_id,
            call,
            &|v| self.stream.event(v),
            &|| self.stream.is_broken(),
        )
    }

    fn cancelled(&self) -> bool {
        self.stream.is_broken()
    }
}

/// Emits `approval_required` and waits, bounded by `tools.approval_timeout`, for a decision
/// posted to `/api/sessions/{id}/approve`. A timeout or a vanished client denies.
pub fn wait_for_approval(
    app: &App,
    session_id: &str,
    call: &ToolCall,
    send: &dyn Fn(&Value) -> bool,
    gone: &dyn Fn() -> bool,
) -> Decision {
    let pending = app.approvals.register(session_id);
    if !send(
        &json!({"type": "approval_required", "request_id": pending.request_id,
        "tool": call.name, "arguments": call.arguments}),
    ) {
        return Decision::Deny("the client went away".into());
    }
    let timeout = app.config.tools.approval_timeout.get();
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Decision::Deny(format!(
                "tool {} was denied: nobody approved it within tools.approval_timeout ({timeout:?}). Do not retry it.",
                call.name
            ));
        }
        match pending
            .decision
            .recv_timeout(left.min(Duration::from_millis(250)))
        {
            Ok(d) => return d,
            Err(RecvTimeoutError::Timeout) if gone() => {
                return Decision::Deny("the client went away".into());
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                return Decision::Deny("the approval request was withdrawn".into());
            }
        }
    }
}
