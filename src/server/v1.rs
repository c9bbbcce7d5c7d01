//! The OpenAI-compatible API (DESIGN §13): `GET /v1/models`, `GET /v1/models/{id}` and
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

use percent_encoding::percent_decode_str;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::agent::approval::Approver;
use crate::agent::chat::{self, ChatParams};
use crate::agent::events::Unattended;
use crate::agent::turn::{ClientTurn, TurnInput};
use crate::app::App;
use crate::config::ModelRef;
use crate::providers::{Message, Role, ToolCall, ToolChoice, ToolSpec, parse_arguments};
use crate::server::error::ApiError;
use crate::server::http::{ApiRequest, ApiResponse};
use crate::server::render::sse::SseStream;
use crate::server::render::v1::{ChunkSink, Meta, completion};

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

/// A `POST /v1/chat/completions` body, read and checked.
struct Completion {
    /// `None`: `localgpt` (the session's model in a session, else `agent.default_model`).
    model: Option<ModelRef>,
    /// The conversation before `incoming`.
    history: Vec<Message>,
    /// The newest messages (after the last assistant message): what this turn answers.
    incoming: Vec<Message>,
    stream: bool,
    include_usage: bool,
    client: ClientTurn,
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message).with_param(param)
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn wrong(param: &str, want: &str, got: &Value) -> ApiError {
    bad(
        param,
        format!("'{param}' must be {want}, got {}", kind(got)),
    )
}

/// A field that is absent or `null` counts as not given.
fn field<'a>(obj: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    obj.get(name).filter(|v| !v.is_null())
}

fn opt_str<'a>(
    obj: &'a Map<String, Value>,
    name: &str,
    at: &str,
) -> Result<Option<&'a str>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s)),
        Some(other) => Err(wrong(at, "a string", other)),
    }
}

fn req_str<'a>(obj: &'a Map<String, Value>, name: &str, at: &str) -> Result<&'a str, ApiError> {
    opt_str(obj, name, at)?.ok_or_else(|| bad(at, format!("missing required field '{at}'")))
}

fn opt_bool(obj: &Map<String, Value>, name: &str) -> Result<Option<bool>, ApiError> {
    match field(obj, name) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(wrong(name, "a boolean", other)),
    }
}

fn object<'a>(v: &'a Value, at: &str) -> Result<&'a Map<String, Value>, ApiError> {
    v.as_object().ok_or_else(|| wrong(at, "an object", v))
}

/// Message content: a string, or an array of `{"type":"text","text":...}` parts.
fn content(msg: &Map<String, Value>, at: &str) -> Result<String, ApiError> {
    let at = format!("{at}.content");
    match field(msg, "content") {
        None => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => {
            let mut text = Vec::with_capacity(parts.len());
            for (j, part) in parts.iter().enumerate() {
                let at = format!("{at}[{j}]");
                let part = object(part, &at)?;
                match req_str(part, "type", &format!("{at}.type"))? {
                    // An assistant's refusal is its words too.
                    "text" => text.push(req_str(part, "text", &format!("{at}.text"))?),
                    "refusal" => text.push(req_str(part, "refusal", &format!("{at}.refusal"))?),
                    other => {
                        return Err(bad(
                            &format!("{at}.type"),
                            format!(
                                "'{at}.type' is {other:?}: only \"text\" content parts are supported"
                            ),
                        ));
                    }
                }
            }
            Ok(text.join("\n"))
        }
        Some(other) => Err(wrong(&at, "a string or an array of content parts", other)),
    }
}

fn tool_calls(msg: &Map<String, Value>, at: &str) -> Result<Vec<ToolCall>, ApiError> {
    let at = format!("{at}.tool_calls");
    let calls = match field(msg, "tool_calls") {
        None => return Ok(Vec::new()),
        Some(Value::Array(calls)) => calls,
        Some(other) => return Err(wrong(&at, "an array", other)),
    };
    let mut out = Vec::with_capacity(calls.len());
    for (j, call) in calls.iter().enumerate() {
        let at = format!("{at}[{j}]");
        let call = object(call, &at)?;
        if let Some(t) = opt_str(call, "type", &format!("{at}.type"))?
            && t != "function"
        {
            return Err(bad(
                &format!("{at}.type"),
                format!("'{at}.type' is {t:?}: only \"function\" tool calls are supported"),
            ));
        }
        let function = object(
            field(call, "function").unwrap_or(&Value::Null),
            &format!("{at}.function"),
        )?;
        let arguments = match field(function, "arguments") {
            None => Value::Object(Map::new()),
            Some(Value::String(text)) => parse_arguments(text),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(other) => {
                return Err(wrong(
                    &format!("{at}.function.arguments"),
                    "a string",
                    other,
                ));
            }
        };
        out.push(ToolCall {
            id: req_str(call, "id", &format!("{at}.id"))?.to_string(),
            name: req_str(function, "name", &format!("{at}.function.name"))?.to_string(),
            arguments,
        });
    }
    Ok(out)
}

/// The conversation: system text apart, then every other message in order.
fn messages(body: &Map<String, Value>) -> Result<(String, Vec<Message>), ApiError> {
    let list = match field(body, "messages") {
        None => return Err(bad("messages", "missing required field 'messages'")),
        Some(Value::Array(list)) if list.is_empty() => {
            return Err(bad("messages", "'messages' must not be empty"));
        }
        Some(Value::Array(list)) => list,
        Some(other) => return Err(wrong("messages", "an array", other)),
    };
    let mut system = Vec::new();
    let mut out: Vec<Message> = Vec::with_capacity(list.len());
    for (i, m) in list.iter().enumerate() {
        let at = format!("messages[{i}]");
        let m = object(m, &at)?;
        match req_str(m, "role", &format!("{at}.role"))? {
            "system" | "developer" => system.push(content(m, &at)?),
            "user" => out.push(Message::user(content(m, &at)?)),
            "assistant" => out.push(Message::assistant(content(m, &at)?, tool_calls(m, &at)?)),
            "tool" => {
                let id = req_str(m, "tool_call_id", &format!("{at}.tool_call_id"))?;
                // The call's name, which Ollama wants with the result.
                let name = out
                    .iter()
                    .rev()
                    .flat_map(|m| m.tool_calls.iter())
                    .find(|c| c.id == id)
                    .map(|c| c.name.clone());
                out.push(Message {
                    role: Role::Tool,
                    content: content(m, &at)?,
                    tool_calls: Vec::new(),
                    tool_call_id: Some(id.to_string()),
                    tool_name: name,
                    is_error: false,
                });
            }
            other => {
                return Err(bad(
                    &format!("{at}.role"),
                    format!(
                        "'{at}.role' is {other:?}: use \"system\", \"developer\", \"user\", \
                         \"assistant\" or \"tool\""
                    ),
                ));
            }
        }
    }
    let system: Vec<String> = system
        .into_iter()
        .filter(|s| !s.trim().is_empty())
        .collect();
    Ok((system.join("\n\n"), out))
}

/// The client's tools, refusing names the daemon's own tools have.
fn client_tools(body: &Map<String, Value>, daemon: &[String]) -> Result<Vec<ToolSpec>, ApiError> {
    let list = match field(body, "tools") {
        None => return Ok(Vec::new()),
        Some(Value::Array(list)) => list,
        Some(other) => return Err(wrong("tools", "an array", other)),
    };
    let mut out: Vec<ToolSpec> = Vec::with_capacity(list.len());
    for (i, t) in list.iter().enumerate() {
        let at = format!("tools[{i}]");
        let t = object(t, &at)?;
        let kind = req_str(t, "type", &format!("{at}.type"))?;
        if kind != "function" {
            return Err(bad(
                &format!("{at}.type"),
                format!("'{at}.type' is {kind:?}: only \"function\" tools are supported"),
            ));
        }
        let f = object(
            field(t, "function").unwrap_or(&Value::Null),
            &format!("{at}.function"),
        )?;
        let name_at = format!("{at}.function.name");
        let name = req_str(f, "name", &name_at)?;
        let well_formed = (1..=64).contains(&name.len())
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
        if !well_formed {
            return Err(bad(
                &name_at,
                format!("'{name_at}' {name:?} must be 1-64 letters, digits, '_' or '-'"),
            ));
        }
        if daemon.iter().any(|d| d == name) {
            return Err(bad(
                &name_at,
                format!(
                    "'{name_at}' {name:?} is the name of one of the daemon's own tools \
                     ({}); give the client's tool another name",
                    daemon.join(", ")
                ),
            ));
        }
        if out.iter().any(|known| known.name == name) {
            return Err(bad(
                &name_at,
                format!("'{name_at}' {name:?} is given twice"),
            ));
        }
        let parameters = match field(f, "parameters") {
            None => serde_json::json!({"type": "object", "properties": {}}),
            Some(v @ Value::Object(_)) => v.clone(),
            Some(other) => {
                return Err(wrong(
                    &format!("{at}.function.parameters"),
                    "an object",
                    other,
                ));
            }
        };
        out.push(ToolSpec {
            name: name.to_string(),
            description: opt_str(f, "description", &format!("{at}.function.description"))?
                .unwrap_or_default()
                .to_string(),
            parameters,
        });
    }
    Ok(out)
}

fn tool_choice(
    body: &Map<String, Value>,
    tools: &[ToolSpec],
    daemon: &[String],
) -> Result<ToolChoice, ApiError> {
    let choice = match field(body, "tool_choice") {
        None => return Ok(ToolChoice::Auto),
        Some(Value::String(s)) => match s.as_str() {
            "auto" => ToolChoice::Auto,
            "none" => ToolChoice::None,
            "required" => ToolChoice::Required,
            other => {
                return Err(bad(
                    "tool_choice",
                    format!(
                        "'tool_choice' is {other:?}: use \"auto\", \"none\", \"required\" or \
                         {{\"type\":\"function\",\"function\":{{\"name\":...}}}}"
                    ),
                ));
            }
        },
        Some(Value::Object(o)) => {
            let f = object(
                field(o, "function").unwrap_or(&Value::Null),
                "tool_choice.function",
            )?;
            ToolChoice::Tool(req_str(f, "name", "tool_choice.function.name")?.to_string())
        }
        Some(other) => return Err(wrong("tool_choice", "a string or an object", other)),
    };
    if let ToolChoice::Tool(name) = &choice
        && !tools.iter().any(|t| &t.name == name)
        && !daemon.iter().any(|d| d == name)
    {
        return Err(bad(
            "tool_choice.function.name",
            format!("'tool_choice.function.name' {name:?} names no tool offered"),
        ));
    }
    Ok(choice)
}

fn number(body: &Map<String, Value>, name: &str) -> Result<Option<f64>, ApiError> {
    match field(body, name) {
        None => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(other) => Err(wrong(name, "a number", other)),
    }
}

fn max_tokens(body: &Map<String, Value>) -> Result<Option<u32>, ApiError> {
    // `max_completion_tokens` is the current name; `max_tokens` the older one.
    for name in ["max_completion_tokens", "max_tokens"] {
        if let Some(v) = field(body, name) {
            return v
                .as_u64()
                .filter(|n| *n >= 1)
                .map(|n| Some(u32::try_from(n).unwrap_or(u32::MAX)))
                .ok_or_else(|| wrong(name, "a positive integer", v));
        }
    }
    Ok(None)
}

fn stop(body: &Map<String, Value>) -> Result<Vec<String>, ApiError> {
    let stops = match field(body, "stop") {
        None => return Ok(Vec::new()),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(list)) => list
            .iter()
            .enumerate()
            .map(|(i, v)| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong(&format!("stop[{i}]"), "a string", v))
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(wrong("stop", "a string or an array of strings", other)),
    };
    Ok(stops.into_iter().filter(|s| !s.is_empty()).collect())
}

/// Reads a completion request, naming the field at fault in every error.
fn parse(body: &Map<String, Value>, daemon: &[String]) -> Result<Completion, ApiError> {
    let model = match opt_str(body, "model", "model")? {
        None | Some(LOCALGPT_MODEL) => None,
        Some(m) => Some(m.parse::<ModelRef>().map_err(|why| {
            ApiError::new(
                400,
                "model_not_found",
                format!(
                    "model {m:?} is not available: use \"{LOCALGPT_MODEL}\" (the default model, \
                     with memory and tools) or a provider/model string ({why})"
                ),
            )
            .with_param("model")
        })?),
    };
    if let Some(n) = field(body, "n")
        && n.as_u64() != Some(1)
    {
        return Err(bad(
            "n",
            "only one choice per completion is supported: 'n' must be 1",
        ));
    }
    let (system, mut history) = messages(body)?;
    let cut = history
        .iter()
        .rposition(|m| m.role == Role::Assistant)
        .map_or(0, |i| i + 1);
    let incoming = history.split_off(cut);
    if incoming.is_empty() {
        return Err(bad(
            "messages",
            "'messages' must end with a user message (or the results of tool calls): there is \
             nothing to answer after the last assistant message",
        ));
    }
    let stream_options = match field(body, "stream_options") {
        None => None,
        Some(v) => Some(object(v, "stream_options")?),
    };
    let include_usage = match stream_options {
        Some(o) => match field(o, "include_usage") {
            None => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => return Err(wrong("stream_options.include_usage", "a boolean", other)),
        },
        None => false,
    };
    let temperature = number(body, "temperature")?;
    if let Some(t) = temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(bad("temperature", "'temperature' must be between 0 and 2"));
    }
    let tools = client_tools(body, daemon)?;
    let tool_choice = tool_choice(body, &tools, daemon)?;
    Ok(Completion {
        model,
        history,
        incoming,
        stream: opt_bool(body, "stream")?.unwrap_or(false),
        include_usage,
        client: ClientTurn {
            system,
            tools,
            max_tokens: max_tokens(body)?,
            temperature,
            stop: stop(body)?,
            tool_choice,
        },
    })
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
    let ready = req
        .json_object(false)
        .and_then(|body| parse(&body, &app.agent.chat_policy.offered))
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
        Err(e) => return reply(request, e, cors, None),
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
            Err(e) => reply(request, e.into(), cors, session_id.as_deref()),
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
fn reply(
    request: tiny_http::Request,
    e: ApiError,
    cors: Option<&str>,
    session: Option<&str>,
) -> u16 {
    log_server_error(&e);
    reply_ok(request, e.response_for(PATH), cors, session)
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::events::{Answer, Finish, Tokens};
    use serde_json::json;

    fn body(v: Value) -> Map<String, Value> {
        match v {
            Value::Object(m) => m,
            _ => unreachable!(),
        }
    }

    fn daemon() -> Vec<String> {
        vec!["memory_search".into(), "bash".into()]
    }

    /// The answer of a finished turn, for tests of the rendering.
    fn answer_for_tests(text: &str, calls: Vec<ToolCall>) -> Answer {
        Answer {
            response: text.into(),
            model: "openai/m".into(),
            tokens: Tokens {
                prompt: 3,
                completion: 2,
                total: 5,
            },
            tools_used: Vec::new(),
            session_id: None,
            finish: if calls.is_empty() {
                Finish::Stop
            } else {
                Finish::ToolCalls
            },
            client_tool_calls: calls,
        }
    }

    fn parsed(v: Value) -> Result<Completion, ApiError> {
        parse(&body(v), &daemon())
    }

    #[test]
    fn messages_split_into_system_history_and_what_is_new() {
        let c = parsed(json!({
            "model": "localgpt",
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": [{"type": "text", "text": "What is"}, {"type": "text", "text": "the weather?"}]},
                {"role": "assistant", "content": null, "tool_calls": [
                    {"id": "call_1", "type": "function", "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
                {"role": "developer", "content": "Use metric units."},
            ],
            "max_tokens": 7, "max_completion_tokens": 9, "temperature": 0.5, "stop": "END",
            "stream": true, "stream_options": {"include_usage": true},
        }))
        .unwrap();
        assert!(c.model.is_none());
        assert_eq!(c.client.system, "Be brief.\n\nUse metric units.");
        assert_eq!(c.history.len(), 2);
        assert_eq!(c.history[0].content, "What is\nthe weather?");
        assert_eq!(
            c.history[1].tool_calls[0].arguments,
            json!({"city": "Oslo"})
        );
        assert_eq!(c.incoming.len(), 1);
        assert_eq!(c.incoming[0].role, Role::Tool);
        assert_eq!(c.incoming[0].tool_name.as_deref(), Some("get_weather"));
        assert_eq!(c.client.max_tokens, Some(9));
        assert_eq!(c.client.temperature, Some(0.5));
        assert_eq!(c.client.stop, ["END"]);
        assert!(c.stream && c.include_usage);
    }

    #[test]
    fn bad_requests_name_the_field() {
        let cases = [
            (json!({}), "messages"),
            (json!({"messages": []}), "messages"),
            (json!({"messages": "hi"}), "messages"),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
                "messages[0].content[0].type",
            ),
            (
                json!({"messages": [{"role": "bot", "content": "x"}]}),
                "messages[0].role",
            ),
            (json!({"messages": [{"content": "x"}]}), "messages[0].role"),
            (
                json!({"messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}),
                "messages",
            ),
            (
                json!({"messages": [{"role": "tool", "content": "x"}]}),
                "messages[0].tool_call_id",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "memory_search"}}]}),
                "tools[0].function.name",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "code_interpreter"}]}),
                "tools[0].type",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "tool_choice": {"type": "function", "function": {"name": "nope"}}}),
                "tool_choice.function.name",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "temperature": 3}),
                "temperature",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}),
                "max_tokens",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "stop": [1]}),
                "stop[0]",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "n": 2}),
                "n",
            ),
            (
                json!({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}),
                "stream",
            ),
        ];
        for (v, param) in cases {
            let e = parsed(v.clone())
                .err()
                .unwrap_or_else(|| panic!("accepted {v}"));
            assert_eq!(e.status, 400, "{v}");
            assert_eq!(e.param.as_deref(), Some(param), "{v}: {}", e.message);
            assert!(e.message.contains(param), "{v}: {}", e.message);
        }
        let e = parsed(json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x"}]}))
            .err()
            .unwrap();
        assert_eq!((e.status, e.code), (400, "model_not_found"));
        assert!(e.message.contains("localgpt"), "{}", e.message);
    }

    #[test]
    fn client_tools_and_choice() {
        let c = parsed(json!({
            "model": "openai/gpt-4o",
            "messages": [{"role": "user", "content": "x"}],
            "tools": [{"type": "function", "function": {"name": "get_weather", "description": "Weather.",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}},
                {"type": "function", "function": {"name": "now"}}],
            "tool_choice": "required",
        }))
        .unwrap();
        assert_eq!(c.model.unwrap().to_string(), "openai/gpt-4o");
        assert_eq!(c.client.tools.len(), 2);
        assert_eq!(c.client.tools[1].parameters["type"], "object");
        assert_eq!(c.client.tool_choice, ToolChoice::Required);
    }

    #[test]
    fn completion_object_has_the_api_shape() {
        let meta = Meta {
            id: "chatcmpl-1".into(),
            created: 5,
            model: "openai/m".into(),
        };
        let text =
            serde_json::to_value(completion(&meta, &answer_for_tests("Hi.", vec![]))).unwrap();
        assert_eq!(text["object"], "chat.completion");
        assert_eq!(text["choices"][0]["message"]["content"], "Hi.");
        assert_eq!(text["choices"][0]["finish_reason"], "stop");
        assert!(text["choices"][0]["message"].get("tool_calls").is_none());
        assert_eq!(
            text["usage"],
            json!({"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5})
        );
        let call = ToolCall {
            id: "call_9".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Oslo"}),
        };
        let calls =
            serde_json::to_value(completion(&meta, &answer_for_tests("", vec![call]))).unwrap();
        let message = &calls["choices"][0]["message"];
        assert_eq!(message["content"], Value::Null);
        assert_eq!(calls["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(
            message["tool_calls"][0],
            json!({"id": "call_9", "type": "function",
                "function": {"name": "get_weather", "arguments": "{\"city\":\"Oslo\"}"}})
        );
    }
}
