//! The OpenAI-compatible API (docs/openai.md): `GET /v1/models`, `GET /v1/models/{id}` and
//! `POST /v1/chat/completions`, plain or streamed, so any OpenAI client gets the daemon's
//! memory and tools behind the standard interface.
//!
//! The request's `messages` are the conversation; the daemon adds its memory context and
//! runs its own tools inside the turn (tools needing approval get the configured fallback:
//! nobody here can approve). The client's `tools` are offered too, and a call to one ends
//! the completion with `finish_reason: "tool_calls"`; the client's next request carries the
//! results as `role: "tool"` messages and the turn goes on. With `X-Session-Id` the
//! conversation is a stored session instead: only the request's newest messages (after
//! its last assistant message) are taken, and everything the turn adds is persisted.
//!
//! Errors on `/v1/*` are OpenAI's shape (`ApiError::response_for`).

mod request;

use percent_encoding::percent_decode_str;
use serde::Serialize;

use crate::agent::approval::Approver;
use crate::agent::chat::{self, ChatParams};
use crate::agent::events::Unattended;
use crate::agent::turn::TurnInput;
use crate::app::App;
use crate::config::ModelRef;
use crate::server::error::ApiError;
use crate::server::http::{ApiRequest, ApiResponse};
use crate::server::render::sse::SseStream;
use crate::server::render::v1::{ChunkSink, Meta, completion};
use request::parse;

/// The model id that stands for the daemon's default model (with memory and tools).
pub const LOCALGPT_MODEL: &str = "localgpt";

/// The path errors of `POST /v1/chat/completions` are rendered for.
const PATH: &str = "/v1/chat/completions";

/// The header that binds a completion to a stored session.
const SESSION_HEADER: &str = "X-Session-Id";

/// Why a tool needing approval gets the fallback here.
const NOBODY: &str = "nobody can approve it on the OpenAI-compatible API";

#[derive(Serialize)]
struct Model {
    id: String,
    object: &'static str,
    created: i64,
    owned_by: &'static str,
}

#[derive(Serialize)]
struct ModelList {
    object: &'static str,
    data: Vec<Model>,
}

/// `localgpt` and every model string the config names, without repeats.
fn models_of(app: &App) -> Vec<Model> {
    // Models have no creation date here; the daemon's start is a stable stand-in.
    let created = app.agent.clock.now().as_second() - app.started.elapsed().as_secs() as i64;
    let mut out = vec![Model {
        id: LOCALGPT_MODEL.into(),
        object: "model",
        created,
        owned_by: "localgpt",
    }];
    let configured = [
        Some(&app.config.agent.default_model),
        app.config.heartbeat.model.as_ref(),
    ];
    for m in configured.into_iter().flatten() {
        let id = m.to_string();
        if out.iter().all(|known| known.id != id) {
            out.push(model(id, m, created));
        }
    }
    out
}

fn model(id: String, m: &ModelRef, created: i64) -> Model {
    Model {
        id,
        object: "model",
        created,
        owned_by: m.provider().as_str(),
    }
}

/// `GET /v1/models`.
pub fn models(app: &App) -> Result<ApiResponse, ApiError> {
    Ok(ApiResponse::ok(&ModelList {
        object: "list",
        data: models_of(app),
    }))
}

/// `GET /v1/models/{id}`: a listed model, or any `provider/model` string the daemon can
/// route (chat completions take those too).
pub fn model_get(app: &App, id: &str) -> Result<ApiResponse, ApiError> {
    // SDKs may send the `/` of `openai/gpt-4o` escaped.
    let id = percent_decode_str(id).decode_utf8_lossy().into_owned();
    let mut known = models_of(app);
    if let Some(i) = known.iter().position(|m| m.id == id) {
        return Ok(ApiResponse::ok(&known.swap_remove(i)));
    }
    let created = known.first().map_or(0, |m| m.created);
    match id.parse::<ModelRef>() {
        Ok(m) => Ok(ApiResponse::ok(&model(id, &m, created))),
        Err(_) => Err(ApiError::not_found(format!(
            "model {id:?} does not exist: GET /v1/models lists the configured ones, and any \
             provider/model string works"
        ))
        .with_param("model")),
    }
}

/// `POST /v1/chat/completions`: one `chat.completion`, or with `stream: true` an SSE stream
/// of `chat.completion.chunk`s ending with `data: [DONE]`. Errors found before the answer
/// begins are plain responses; later ones are an error event in OpenAI's shape.
pub fn chat_completions(
    app: &App,
    request: tiny_http::Request,
    req: &ApiRequest,
    cors: Option<&str>,
) -> u16 {
    let session_id = req.header(SESSION_HEADER).map(str::to_string);
    // The daemon's own tool names: a client tool may not take one of them.
    let daemon_tools: Vec<String> = app
        .agent
        .registry()
        .specs()
        .into_iter()
        .map(|s| s.name)
        .collect();
    let ready = req
        .json_object(false)
        .and_then(|body| parse(&body, &daemon_tools))
        .and_then(|c| {
            let params = ChatParams {
                message: String::new(),
                model: c.model.clone(),
                include_memory: true,
                session_id: session_id.clone(),
            };
            let prepared = chat::prepare(&app.agent, &app.sessions, &params, false)?;
            Ok((c, prepared))
        });
    let (c, prepared) = match ready {
        Ok(v) => v,
        Err(e) => return reply(request, e, cors),
    };
    let meta = Meta {
        id: format!("chatcmpl-{}", uuid::Uuid::new_v4().simple()),
        created: app.agent.clock.now().as_second(),
        model: prepared.model.to_string(),
    };
    let input = TurnInput {
        model: prepared.model.clone(),
        incoming: c.incoming,
        include_memory: true,
        history: c.history,
        summary: None,
        policy: app.agent.chat_policy.clone(),
        approver: Approver::Nobody(NOBODY),
        client: c.client,
    };
    if !c.stream {
        let outcome = chat::run_input(&app.agent, &app.sessions, prepared, input, &mut Unattended);
        return match outcome {
            Ok(answer) => {
                let resp = ApiResponse::ok(&completion(&meta, &answer));
                reply_ok(request, resp, cors, answer.session_id.as_deref())
            }
            Err(e) => reply(request, e.into(), cors),
        };
    }
    let mut headers: Vec<(&str, &str)> = Vec::new();
    if let Some(o) = cors {
        headers.extend([("Access-Control-Allow-Origin", o), ("Vary", "Origin")]);
    }
    let bound = prepared.session_id().map(str::to_string);
    if let Some(id) = &bound {
        headers.push((SESSION_HEADER, id));
    }
    let stream = match SseStream::start(request, app.config.sessions.keepalive.get(), &headers) {
        Ok(s) => s,
        Err(e) => {
            log::debug!("completion client went away before the head was sent: {e}");
            return 200;
        }
    };
    let (mut sink, started) = ChunkSink::start(&stream, &meta, c.include_usage);
    if started {
        let outcome = chat::run_input(&app.agent, &app.sessions, prepared, input, &mut sink);
        match outcome {
            Ok(answer) => {
                sink.finish(&answer);
            }
            Err(e) => {
                if e.is_cancelled() {
                    log::info!("completion {} cancelled: the client went away", meta.id);
                }
                let e = ApiError::from(e);
                log_server_error(&e);
                sink.fail(&e);
            }
        }
    }
    stream.finish();
    200
}

fn log_server_error(e: &ApiError) {
    if e.status >= 500 {
        log::error!("POST {PATH}: {e}");
    }
}

/// Answers an error in OpenAI's shape.
fn reply(request: tiny_http::Request, e: ApiError, cors: Option<&str>) -> u16 {
    log_server_error(&e);
    reply_ok(request, e.response_for(PATH), cors, None)
}

fn reply_ok(
    request: tiny_http::Request,
    mut resp: ApiResponse,
    cors: Option<&str>,
    session: Option<&str>,
) -> u16 {
    if let Some(id) = session {
        resp = resp.with_header(SESSION_HEADER, id);
    }
    crate::server::reply_cors(request, resp, cors)
}
