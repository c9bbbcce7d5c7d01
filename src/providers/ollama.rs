//! `ollama/<model>`: Ollama's native chat API (`POST {base_url}/api/chat`, `stream: true`).
//!
//! The answer is newline-delimited JSON: `done: false` lines carry `message.content`
//! deltas, and tool calls as whole objects in `message.tool_calls` (arguments already an
//! object, usually no id); the last line has `done: true` with `prompt_eval_count` and
//! `eval_count` (and, from newer servers, `prompt_eval_cached_count`: the prompt tokens
//! reused from its cache). A line `{"error": "..."}` aborts the answer.

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Http, clip, join_url, shown_url};
use super::stream::LineReader;
use super::{
    ChatRequest, Completion, DeltaSink, Message, Provider, ProviderError, Role, ToolCall,
    ToolChoice, emit, new_call_id, parse_arguments,
};
use crate::config::ProvidersConfig;

/// The Ollama provider. Ollama takes no key.
pub struct Ollama {
    http: Http,
    base_url: String,
}

impl Ollama {
    pub fn new(config: &ProvidersConfig) -> Ollama {
        Ollama {
            http: Http::new("ollama", config),
            base_url: config.ollama.base_url.clone(),
        }
    }
}

impl Provider for Ollama {
    fn name(&self) -> &'static str {
        "ollama"
    }

    fn complete(&self, req: &ChatRequest, sink: DeltaSink) -> Result<Completion, ProviderError> {
        let url = join_url(&self.base_url, "api/chat");
        let stream = self.http.post_stream(&url, &[], &request_body(req))?;
        let mut lines = LineReader::new(stream);
        let mut completion = Completion::default();
        loop {
            let line = lines
                .next_line()
                .map_err(|e| self.http.read_error(&url, e))?;
            let Some(line) = line else {
                return Err(self.http.failed(format!(
                    "the stream from {} ended before done:true (stream cut)",
                    shown_url(&url)
                )));
            };
            let chunk: Chunk = serde_json::from_str(&line).map_err(|e| {
                self.http.failed(format!(
                    "malformed stream line from {}: {e}: {}",
                    shown_url(&url),
                    clip(&line)
                ))
            })?;
            if let Some(error) = chunk.error {
                return Err(self
                    .http
                    .failed(format!("error in the stream: {}", clip(&error))));
            }
            if let Some(message) = chunk.message {
                if let Some(text) = message.content {
                    completion.text.push_str(&text);
                    emit(&mut *sink, &text)?;
                }
                for call in message.tool_calls.unwrap_or_default() {
                    completion.tool_calls.push(tool_call(call));
                }
            }
            if chunk.done {
                completion.usage.prompt = chunk.prompt_eval_count.unwrap_or(0);
                completion.usage.completion = chunk.eval_count.unwrap_or(0);
                completion.usage.cached = chunk.prompt_eval_cached_count;
                completion.stop_reason = chunk.done_reason;
                lines.finish();
                return Ok(completion);
            }
        }
    }
}

/// The JSON body of a streamed `/api/chat` request.
fn request_body(req: &ChatRequest) -> Value {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        messages.push(json!({"role": "system", "content": req.system}));
    }
    messages.extend(req.messages.iter().map(message_json));
    let mut body = json!({
        "model": req.model,
        "messages": messages,
        "stream": true,
    });
    let mut options = serde_json::Map::new();
    if req.max_tokens > 0 {
        options.insert("num_predict".into(), json!(req.max_tokens));
    }
    if let Some(t) = req.temperature {
        options.insert("temperature".into(), json!(t));
    }
    if !req.stop.is_empty() {
        options.insert("stop".into(), json!(req.stop));
    }
    if !options.is_empty() {
        body["options"] = Value::Object(options);
    }
    // Ollama has no tool choice; "none" is kept by offering no tools, the others cannot be.
    if !req.tools.is_empty() && req.tool_choice != ToolChoice::None {
        body["tools"] = super::function_tools(&req.tools);
    }
    body
}

fn message_json(m: &Message) -> Value {
    match m.role {
        Role::User => json!({"role": "user", "content": m.text_with_context()}),
        Role::Assistant => {
            let mut message = json!({"role": "assistant", "content": m.content});
            if !m.tool_calls.is_empty() {
                message["tool_calls"] = m
                    .tool_calls
                    .iter()
                    .map(|c| json!({"function": {"name": c.name, "arguments": c.arguments}}))
                    .collect();
            }
            message
        }
        Role::Tool => {
            // Ollama has no error flag on tool results; say it in the text.
            let content = if m.is_error {
                format!("[tool error] {}", m.content)
            } else {
                m.content.clone()
            };
            json!({
                "role": "tool",
                "content": content,
                "tool_name": m.tool_name.clone().unwrap_or_default(),
            })
        }
    }
}

#[derive(Deserialize)]
struct Chunk {
    message: Option<ChunkMessage>,
    #[serde(default)]
    done: bool,
    done_reason: Option<String>,
    prompt_eval_count: Option<u64>,
    prompt_eval_cached_count: Option<u64>,
    eval_count: Option<u64>,
    error: Option<String>,
}

#[derive(Deserialize)]
struct ChunkMessage {
    content: Option<String>,
    tool_calls: Option<Vec<ChunkToolCall>>,
}

#[derive(Deserialize)]
struct ChunkToolCall {
    id: Option<String>,
    function: ChunkFunction,
}

#[derive(Deserialize)]
struct ChunkFunction {
    #[serde(default)]
    name: String,
    #[serde(default)]
    arguments: Value,
}

fn tool_call(call: ChunkToolCall) -> ToolCall {
    let arguments = match call.function.arguments {
        v @ Value::Object(_) => v,
        // Some versions and models send the arguments as a JSON string.
        Value::String(text) => parse_arguments(&text),
        Value::Null => json!({}),
        other => json!({ "_raw": other.to_string() }),
    };
    ToolCall {
        id: call
            .id
            .filter(|id| !id.is_empty())
            .unwrap_or_else(new_call_id),
        name: call.function.name,
        arguments,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tool_calls_get_ids_and_object_arguments() {
        let chunk: Chunk = serde_json::from_str(
            r#"{"model":"m","message":{"role":"assistant","content":"","tool_calls":[
                {"function":{"name":"memory_search","arguments":{"query":"cats"}}},
                {"function":{"name":"bash","arguments":"{\"cmd\":"}}]},"done":false}"#,
        )
        .unwrap();
        let calls: Vec<ToolCall> = chunk
            .message
            .unwrap()
            .tool_calls
            .unwrap()
            .into_iter()
            .map(tool_call)
            .collect();
        assert!(calls[0].id.starts_with("call_"));
        assert_ne!(calls[0].id, calls[1].id);
        assert_eq!(calls[0].arguments, json!({"query": "cats"}));
        assert_eq!(calls[1].arguments, json!({"_raw": "{\"cmd\":"}));
    }

    #[test]
    fn client_options_go_into_options() {
        let mut req = ChatRequest {
            model: "llama3.2".into(),
            messages: vec![Message::user("hi")],
            tools: vec![crate::providers::ToolSpec {
                name: "memory_search".into(),
                description: String::new(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 50,
            temperature: Some(0.0),
            stop: vec!["\n\n".into()],
            tool_choice: ToolChoice::Auto,
            ..Default::default()
        };
        let body = request_body(&req);
        assert_eq!(
            body["options"],
            json!({"num_predict": 50, "temperature": 0.0, "stop": ["\n\n"]})
        );
        assert!(body["tools"].is_array());
        req.tool_choice = ToolChoice::None;
        assert!(request_body(&req).get("tools").is_none());
    }

    #[test]
    fn tool_results_carry_the_tool_name() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "memory_search".into(),
            arguments: json!({"query": "cats"}),
        };
        let req = ChatRequest {
            model: "llama3.2".into(),
            system: String::new(),
            messages: vec![
                Message::user("find cats"),
                Message::assistant("", vec![call.clone()]),
                Message::tool_result(&call, "3 results", false),
            ],
            tools: vec![],
            max_tokens: 0,
            ..Default::default()
        };
        let body = request_body(&req);
        assert!(body.get("tools").is_none() && body.get("options").is_none());
        assert_eq!(body["messages"][0]["role"], "user");
        assert_eq!(
            body["messages"][1]["tool_calls"][0]["function"]["arguments"],
            json!({"query": "cats"})
        );
        assert_eq!(
            body["messages"][2],
            json!({"role": "tool", "content": "3 results", "tool_name": "memory_search"})
        );
    }
}
