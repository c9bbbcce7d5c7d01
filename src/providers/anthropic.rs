//! `anthropic/<model>`: the Messages API (`POST {base_url}/v1/messages`, `stream: true`).
//!
//! The stream is a sequence of typed events: `message_start` (input token count),
//! `content_block_start` (a text block, or a `tool_use` block with its id and name),
//! `content_block_delta` (`text_delta` text, or `input_json_delta` pieces of the tool
//! input's JSON), `content_block_stop`, `message_delta` (stop reason, output token count),
//! `message_stop`; `ping` keeps the connection alive and `error` aborts the answer.
//!
//! Prompt caching: the API caches a request's prefix (tools, then system, then messages)
//! up to each block marked `cache_control: {"type": "ephemeral"}`, at most four marks a
//! request, and a later request reads it back if its prefix up to a mark is byte for byte
//! the same. We mark the stable system block (shared by every session and the heartbeat),
//! the conversation's own system block (its summary), the end of the history before the
//! newest user message, and the end of the request (what the next call will repeat).
//! `usage.cache_read_input_tokens` counts what was read from the cache.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use super::http::{Http, clip, error_message, join_url, shown_url};
use super::stream::SseReader;
use super::{
    ChatRequest, Completion, DeltaSink, Message, Provider, ProviderError, Role, ToolCall,
    ToolChoice, emit, new_call_id, parse_arguments,
};
use crate::config::ProvidersConfig;

/// Where the key comes from, for the hint on an authentication failure without one.
const KEY_SETTING: &str = "providers.anthropic.api_key or env ANTHROPIC_API_KEY";

/// The Messages API version this code speaks.
const API_VERSION: &str = "2023-06-01";

/// `max_tokens` is required by the API; used when the request leaves it at 0.
const DEFAULT_MAX_TOKENS: u32 = 4096;

/// The cache mark the API knows: a five-minute cache, refreshed by every read.
fn ephemeral() -> Value {
    json!({"type": "ephemeral"})
}

/// The Messages API provider.
pub struct Anthropic {
    http: Http,
    base_url: String,
    api_key: String,
}

impl Anthropic {
    pub fn new(config: &ProvidersConfig) -> Anthropic {
        Anthropic {
            http: Http::new("anthropic", config),
            base_url: config.anthropic.base_url.clone(),
            api_key: config.anthropic.api_key.clone(),
        }
    }
}

impl Provider for Anthropic {
    fn name(&self) -> &'static str {
        "anthropic"
    }

    fn complete(&self, req: &ChatRequest, sink: DeltaSink) -> Result<Completion, ProviderError> {
        let url = join_url(&self.base_url, "v1/messages");
        let mut headers = vec![
            ("anthropic-version", API_VERSION),
            ("accept", "text/event-stream"),
        ];
        // A gateway in front of the API may hold the key itself; send none rather than "".
        if !self.api_key.is_empty() {
            headers.push(("x-api-key", self.api_key.as_str()));
        }
        let stream = self
            .http
            .post_stream(&url, &headers, &request_body(req))
            .map_err(|e| self.http.hint_missing_key(e, &self.api_key, KEY_SETTING))?;
        let mut events = SseReader::new(stream);
        let mut answer = Answer::default();
        loop {
            let event = events
                .next_event()
                .map_err(|e| self.http.read_error(&url, e))?;
            let Some(event) = event else {
                return Err(self.http.failed(format!(
                    "the stream from {} ended before message_stop (stream cut)",
                    shown_url(&url)
                )));
            };
            let data: Value = serde_json::from_str(&event.data).map_err(|e| {
                self.http.failed(format!(
                    "malformed stream data from {}: {e}: {}",
                    shown_url(&url),
                    clip(&event.data)
                ))
            })?;
            if answer.absorb(&event.event, &data, &mut *sink, &self.http)? {
                break;
            }
        }
        events.finish();
        Ok(answer.finish())
    }
}

/// The JSON body of a streamed Messages request.
fn request_body(req: &ChatRequest) -> Value {
    let max_tokens = if req.max_tokens > 0 {
        req.max_tokens
    } else {
        DEFAULT_MAX_TOKENS
    };
    let mut body = json!({
        "model": req.model,
        "max_tokens": max_tokens,
        "stream": true,
        "messages": messages_json(&req.messages),
    });
    if !req.system.is_empty() {
        body["system"] = system_blocks(&req.system, req.stable_system);
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if !req.stop.is_empty() {
        body["stop_sequences"] = json!(req.stop);
    }
    if !req.tools.is_empty() {
        let choice = match &req.tool_choice {
            ToolChoice::Auto => Value::Null,
            ToolChoice::None => json!({"type": "none"}),
            ToolChoice::Required => json!({"type": "any"}),
            ToolChoice::Tool(name) => json!({"type": "tool", "name": name}),
        };
        if !choice.is_null() {
            body["tool_choice"] = choice;
        }
        body["tools"] = req
            .tools
            .iter()
            .map(|t| {
                json!({
                    "name": t.name,
                    "description": t.description,
                    "input_schema": t.parameters,
                })
            })
            .collect();
    }
    body
}

/// The system prompt as text blocks, each marked for caching: the part every turn shares
/// (the first `stable` bytes), then the rest, which is the conversation's own.
fn system_blocks(system: &str, stable: usize) -> Value {
    let (shared, own) = match system.get(..stable) {
        Some(shared) if stable > 0 => (shared, &system[stable..]),
        _ => (system, ""),
    };
    [shared, own]
        .into_iter()
        .filter(|text| !text.is_empty())
        .map(|text| json!({"type": "text", "text": text, "cache_control": ephemeral()}))
        .collect()
}

/// Our messages as Messages API turns: tool results become `tool_result` blocks in a user
/// turn, tool calls become `tool_use` blocks, and neighbours with the same role are merged
/// because the API requires user and assistant turns to alternate. A user message's
/// context is a text block after its words. The last block of the history (the turn before
/// the newest user message) and the last block of all are marked for caching: the cache
/// looks back only about twenty blocks from a mark, and a turn with tool calls adds more.
fn messages_json(messages: &[Message]) -> Vec<Value> {
    let mut turns: Vec<(&'static str, Vec<Value>)> = Vec::new();
    let mut newest_user_turn = None;
    for m in messages {
        let (role, blocks) = match m.role {
            Role::User => {
                let context = m.context.as_ref().map_or("", |c| c.text.as_str());
                let blocks: Vec<Value> = [text_block(&m.content), text_block(context)]
                    .into_iter()
                    .flatten()
                    .collect();
                ("user", blocks)
            }
            Role::Assistant => {
                let mut blocks: Vec<Value> = text_block(&m.content).into_iter().collect();
                blocks.extend(m.tool_calls.iter().map(|c| {
                    json!({"type": "tool_use", "id": c.id, "name": c.name, "input": c.arguments})
                }));
                ("assistant", blocks)
            }
            Role::Tool => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content,
                    "is_error": m.is_error,
                })],
            ),
        };
        // The API refuses empty turns; a message with nothing in it is left out.
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, existing)) if *last == role => existing.extend(blocks),
            _ => turns.push((role, blocks)),
        }
        if m.role == Role::User {
            newest_user_turn = Some(turns.len() - 1);
        }
    }
    for (_, blocks) in &mut turns {
        // In a user turn the tool results must come before any text.
        blocks.sort_by_key(|b| b["type"] != "tool_result");
    }
    let history_end = newest_user_turn.and_then(|t| t.checked_sub(1));
    let last = turns.len().checked_sub(1);
    for marked in [history_end, last].into_iter().flatten() {
        if let Some(block) = turns[marked].1.last_mut() {
            block["cache_control"] = ephemeral();
        }
    }
    turns
        .into_iter()
        .map(|(role, blocks)| json!({"role": role, "content": blocks}))
        .collect()
}

/// A text block, or none for empty text (the API refuses empty text blocks).
fn text_block(text: &str) -> Option<Value> {
    (!text.is_empty()).then(|| json!({"type": "text", "text": text}))
}

/// A tool_use block being assembled.
struct PartialCall {
    id: String,
    name: String,
    /// The `input` of `content_block_start`, used when no `input_json_delta` follows.
    input: Value,
    json: String,
}

/// The answer being assembled from the events.
#[derive(Default)]
struct Answer {
    completion: Completion,
    calls: BTreeMap<u64, PartialCall>,
    done: Vec<ToolCall>,
}

fn count(v: &Value) -> u64 {
    v.as_u64().unwrap_or(0)
}

impl Answer {
    /// Takes one event; `true` once `message_stop` arrived.
    fn absorb(
        &mut self,
        event: &str,
        data: &Value,
        sink: &mut dyn FnMut(&str) -> bool,
        http: &Http,
    ) -> Result<bool, ProviderError> {
        let kind = data["type"].as_str().unwrap_or(event);
        match kind {
            "message_start" => {
                let usage = &data["message"]["usage"];
                // Cached prompt tokens are reported apart from `input_tokens`; the prompt's
                // size is their sum.
                self.completion.usage.prompt = count(&usage["input_tokens"])
                    + count(&usage["cache_creation_input_tokens"])
                    + count(&usage["cache_read_input_tokens"]);
                self.completion.usage.completion = count(&usage["output_tokens"]);
                self.completion.usage.cached = usage["cache_read_input_tokens"].as_u64();
            }
            "content_block_start" => {
                let block = &data["content_block"];
                let index = count(&data["index"]);
                match block["type"].as_str() {
                    Some("text") => {
                        let text = block["text"].as_str().unwrap_or("");
                        self.completion.text.push_str(text);
                        emit(sink, text)?;
                    }
                    Some("tool_use") => {
                        self.calls.insert(
                            index,
                            PartialCall {
                                id: block["id"].as_str().unwrap_or("").to_string(),
                                name: block["name"].as_str().unwrap_or("").to_string(),
                                input: block["input"].clone(),
                                json: String::new(),
                            },
                        );
                    }
                    // Thinking and server-tool blocks are not part of the answer text.
                    _ => {}
                }
            }
            "content_block_delta" => {
                let delta = &data["delta"];
                match delta["type"].as_str() {
                    Some("text_delta") => {
                        let text = delta["text"].as_str().unwrap_or("");
                        self.completion.text.push_str(text);
                        emit(sink, text)?;
                    }
                    Some("input_json_delta") => {
                        if let Some(call) = self.calls.get_mut(&count(&data["index"])) {
                            call.json
                                .push_str(delta["partial_json"].as_str().unwrap_or(""));
                        }
                    }
                    _ => {}
                }
            }
            "content_block_stop" => {
                if let Some(call) = self.calls.remove(&count(&data["index"])) {
                    self.done.push(finish_call(call));
                }
            }
            "message_delta" => {
                if let Some(reason) = data["delta"]["stop_reason"].as_str() {
                    self.completion.stop_reason = Some(reason.to_string());
                }
                let usage = &data["usage"];
                if let Some(output) = usage["output_tokens"].as_u64() {
                    self.completion.usage.completion = output;
                }
                if let Some(input) = usage["input_tokens"].as_u64().filter(|&n| n > 0) {
                    self.completion.usage.prompt = input
                        + count(&usage["cache_creation_input_tokens"])
                        + count(&usage["cache_read_input_tokens"]);
                }
                if let Some(read) = usage["cache_read_input_tokens"].as_u64() {
                    self.completion.usage.cached = Some(read);
                }
            }
            "message_stop" => return Ok(true),
            "error" => {
                return Err(http.failed(format!(
                    "error in the stream: {}",
                    error_message(&data.to_string())
                )));
            }
            // `ping` and event types added later.
            _ => {}
        }
        Ok(false)
    }

    fn finish(mut self) -> Completion {
        // A block the stream never closed is still a call the model made.
        let open: Vec<PartialCall> = std::mem::take(&mut self.calls).into_values().collect();
        self.done.extend(open.into_iter().map(finish_call));
        self.completion.tool_calls = self.done;
        self.completion
    }
}

fn finish_call(call: PartialCall) -> ToolCall {
    let arguments = if call.json.trim().is_empty() {
        match call.input {
            v @ Value::Object(_) => v,
            _ => json!({}),
        }
    } else {
        parse_arguments(&call.json)
    };
    ToolCall {
        id: if call.id.is_empty() {
            new_call_id()
        } else {
            call.id
        },
        name: call.name,
        arguments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ToolSpec;

    #[test]
    fn tool_use_input_assembles_from_json_deltas() {
        let http = Http::new("anthropic", &ProvidersConfig::default());
        let mut a = Answer::default();
        let mut seen = String::new();
        let mut sink = |t: &str| {
            seen.push_str(t);
            true
        };
        for data in [
            json!({"type":"message_start","message":{"usage":{"input_tokens":10,"cache_read_input_tokens":5,"output_tokens":1}}}),
            json!({"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}),
            json!({"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Let me look."}}),
            json!({"type":"content_block_stop","index":0}),
            json!({"type":"content_block_start","index":1,"content_block":{"type":"tool_use","id":"toolu_1","name":"read_file","input":{}}}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"{\"path\": "}}),
            json!({"type":"ping"}),
            json!({"type":"content_block_delta","index":1,"delta":{"type":"input_json_delta","partial_json":"\"MEMORY.md\"}"}}),
            json!({"type":"content_block_stop","index":1}),
            json!({"type":"message_delta","delta":{"stop_reason":"tool_use"},"usage":{"output_tokens":30}}),
        ] {
            assert!(!a.absorb("", &data, &mut sink, &http).unwrap());
        }
        assert!(
            a.absorb(
                "message_stop",
                &json!({"type":"message_stop"}),
                &mut sink,
                &http
            )
            .unwrap()
        );
        let c = a.finish();
        assert_eq!(seen, "Let me look.");
        assert_eq!(c.text, "Let me look.");
        assert_eq!((c.usage.prompt, c.usage.completion), (15, 30));
        assert_eq!(c.usage.cached, Some(5));
        assert_eq!(c.stop_reason.as_deref(), Some("tool_use"));
        assert_eq!(c.tool_calls[0].id, "toolu_1");
        assert_eq!(c.tool_calls[0].arguments, json!({"path": "MEMORY.md"}));
    }

    #[test]
    fn error_event_fails_with_its_message() {
        let http = Http::new("anthropic", &ProvidersConfig::default());
        let data =
            json!({"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}});
        let e = Answer::default()
            .absorb("error", &data, &mut |_| true, &http)
            .unwrap_err();
        assert!(e.to_string().contains("Overloaded"), "{e}");
    }

    #[test]
    fn conversation_becomes_alternating_turns_with_tool_blocks() {
        let a = ToolCall {
            id: "toolu_a".into(),
            name: "bash".into(),
            arguments: json!({"cmd": "ls"}),
        };
        let b = ToolCall {
            id: "toolu_b".into(),
            name: "read_file".into(),
            arguments: json!({"path": "x"}),
        };
        let req = ChatRequest {
            model: "claude-sonnet-4-5".into(),
            system: "sys".into(),
            messages: vec![
                Message::user("first"),
                Message::user("second"),
                Message::assistant("checking", vec![a.clone(), b.clone()]),
                Message::tool_result(&a, "file.txt", false),
                Message::tool_result(&b, "denied", true),
                Message::user("thanks"),
                Message::assistant("", vec![]),
            ],
            tools: vec![ToolSpec {
                name: "bash".into(),
                description: "run a command".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 0,
            temperature: Some(0.5),
            stop: vec!["END".into()],
            tool_choice: ToolChoice::Required,
            ..Default::default()
        };
        let body = request_body(&req);
        assert_eq!(
            body["system"],
            json!([{"type": "text", "text": "sys", "cache_control": {"type": "ephemeral"}}])
        );
        assert_eq!(body["temperature"], 0.5);
        assert_eq!(body["stop_sequences"], json!(["END"]));
        assert_eq!(body["tool_choice"], json!({"type": "any"}));
        assert_eq!(body["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(body["tools"][0]["input_schema"], json!({"type": "object"}));
        let turns = body["messages"].as_array().unwrap();
        let roles: Vec<&str> = turns.iter().map(|t| t["role"].as_str().unwrap()).collect();
        assert_eq!(roles, ["user", "assistant", "user"]);
        assert_eq!(turns[0]["content"].as_array().unwrap().len(), 2);
        assert_eq!(turns[1]["content"][1]["type"], "tool_use");
        assert_eq!(turns[1]["content"][1]["input"], json!({"cmd": "ls"}));
        let results = turns[2]["content"].as_array().unwrap();
        assert_eq!(results[0]["type"], "tool_result");
        assert_eq!(results[0]["tool_use_id"], "toolu_a");
        assert_eq!(results[1]["is_error"], true);
        assert_eq!(
            results[2],
            json!({"type": "text", "text": "thanks", "cache_control": {"type": "ephemeral"}})
        );
        // The history ends with the turn before the newest user message.
        assert_eq!(turns[1]["content"][2]["cache_control"]["type"], "ephemeral");
        assert!(turns[1]["content"][1].get("cache_control").is_none());
        assert!(turns[0]["content"][1].get("cache_control").is_none());
    }

    #[test]
    fn stable_system_and_context_blocks_are_marked_within_four() {
        use crate::providers::Context;
        let context = |text: &str| Context {
            text: text.into(),
            shown: Vec::new(),
        };
        let req = ChatRequest {
            model: "claude-sonnet-4-5".into(),
            system: "identity and rules\n## Summary\nearlier".into(),
            stable_system: "identity and rules\n".len(),
            messages: vec![
                Message::user("one").with_context(context("<context>10:00</context>")),
                Message::assistant("first answer", vec![]),
                Message::user("two").with_context(context("<context>10:01</context>")),
            ],
            ..Default::default()
        };
        let body = request_body(&req);
        let system = body["system"].as_array().unwrap();
        assert_eq!(system.len(), 2);
        assert_eq!(system[0]["text"], "identity and rules\n");
        assert_eq!(system[1]["text"], "## Summary\nearlier");
        let turns = body["messages"].as_array().unwrap();
        assert_eq!(
            turns[0]["content"],
            json!([{"type": "text", "text": "one"}, {"type": "text", "text": "<context>10:00</context>"}])
        );
        assert_eq!(
            turns[2]["content"][0],
            json!({"type": "text", "text": "two"})
        );
        assert_eq!(turns[2]["content"][1]["cache_control"]["type"], "ephemeral");
        assert_eq!(turns[1]["content"][0]["cache_control"]["type"], "ephemeral");
        assert_eq!(body.to_string().matches("cache_control").count(), 4);
    }
}
