//! Reading a `POST /v1/chat/completions` body: OpenAI's request fields checked one by one,
//! every error naming the field at fault (`param`).

use serde_json::{Map, Value};

use super::LOCALGPT_MODEL;
use crate::agent::turn::ClientTurn;
use crate::config::ModelRef;
use crate::providers::{Message, Role, ToolCall, ToolChoice, ToolSpec, parse_arguments};
use crate::server::error::ApiError;
use crate::server::http::json_kind;

/// A `POST /v1/chat/completions` body, read and checked.
pub struct Completion {
    /// `None`: `localgpt` (the session's model in a session, else `agent.default_model`).
    pub model: Option<ModelRef>,
    /// The conversation before `incoming`.
    pub history: Vec<Message>,
    /// The newest messages (after the last assistant message): what this turn answers.
    pub incoming: Vec<Message>,
    pub stream: bool,
    pub include_usage: bool,
    pub client: ClientTurn,
}

fn bad(param: &str, message: impl Into<String>) -> ApiError {
    ApiError::invalid_request(message).with_param(param)
}

fn wrong(param: &str, want: &str, got: &Value) -> ApiError {
    bad(
        param,
        format!("'{param}' must be {want}, got {}", json_kind(got)),
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
                    context: None,
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
pub fn parse(body: &Map<String, Value>, daemon: &[String]) -> Result<Completion, ApiError> {
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

#[cfg(test)]
mod tests {
    use super::*;
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
}
