//! `openai/<model>`: the Chat Completions API, streamed as Server-Sent Events.
//!
//! `providers.openai.base_url` makes this any OpenAI-compatible server (llama.cpp, vLLM,
//! LM Studio, OpenRouter); such a server may need no key, and then no `Authorization`
//! header is sent.
//!
//! The stream is `data: {chunk}` events ending with `data: [DONE]`. Text arrives in
//! `choices[0].delta.content`; a tool call arrives in fragments under
//! `delta.tool_calls[]`, keyed by `index`: the first fragment carries `id` and
//! `function.name`, later ones carry pieces of the `function.arguments` string. With
//! `stream_options.include_usage` the token counts come in a last chunk with no choices;
//! prompt tokens served from the prompt cache are `usage.prompt_tokens_details.cached_tokens`
//! (OpenAI, and llama.cpp's server, which also sends `timings.cache_n`).

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use super::http::{Http, clip, error_message, join_url, shown_url};
use super::stream::SseReader;
use super::{
    ChatRequest, Completion, DeltaSink, Message, Provider, ProviderError, Role, ToolCall,
    ToolChoice, emit, new_call_id, parse_arguments,
};
use crate::config::ProvidersConfig;

/// Where the key comes from, for the hint on an authentication failure without one.
const KEY_SETTING: &str = "providers.openai.api_key or env OPENAI_API_KEY";

/// The Chat Completions provider.
pub struct OpenAi {
    http: Http,
    base_url: String,
    api_key: String,
}

impl OpenAi {
    pub fn new(config: &ProvidersConfig) -> OpenAi {
        OpenAi {
            http: Http::new("openai", config),
            base_url: config.openai.base_url.clone(),
            api_key: config.openai.api_key.clone(),
        }
    }
}

impl Provider for OpenAi {
    fn name(&self) -> &'static str {
        "openai"
    }

    fn complete(&self, req: &ChatRequest, sink: DeltaSink) -> Result<Completion, ProviderError> {
        let url = join_url(&self.base_url, "chat/completions");
        let authorization = format!("Bearer {}", self.api_key);
        let mut headers = vec![("accept", "text/event-stream")];
        if !self.api_key.is_empty() {
            headers.push(("authorization", authorization.as_str()));
        }
        let body = request_body(req, is_openai_itself(&self.base_url));
        let stream = self
            .http
            .post_stream(&url, &headers, &body)
            .map_err(|e| self.http.hint_missing_key(e, &self.api_key, KEY_SETTING))?;
        let mut events = SseReader::new(stream);
        let mut answer = Answer::default();
        loop {
            let event = events
                .next_event()
                .map_err(|e| self.http.read_error(&url, e))?;
            let Some(event) = event else {
                return Err(self.http.failed(format!(
                    "the stream from {} ended before [DONE] (stream cut)",
                    shown_url(&url)
                )));
            };
            if event.data.trim() == "[DONE]" {
                break;
            }
            let chunk: Chunk = serde_json::from_str(&event.data).map_err(|e| {
                self.http.failed(format!(
                    "malformed stream data from {}: {e}: {}",
                    shown_url(&url),
                    clip(&event.data)
                ))
            })?;
            answer.absorb(chunk, &mut *sink, &self.http)?;
        }
        events.finish();
        Ok(answer.finish())
    }
}

/// OpenAI's own API wants `max_completion_tokens` (its reasoning models refuse
/// `max_tokens`), while compatible servers mostly know only `max_tokens`.
fn is_openai_itself(base_url: &str) -> bool {
    let rest = base_url
        .split_once("://")
        .map_or(base_url, |(_, rest)| rest);
    let host = rest.split(['/', ':']).next().unwrap_or("");
    host.eq_ignore_ascii_case("api.openai.com")
}

/// The JSON body of a streamed Chat Completions request.
fn request_body(req: &ChatRequest, max_completion_tokens: bool) -> Value {
    let mut messages = Vec::with_capacity(req.messages.len() + 1);
    if !req.system.is_empty() {
        messages.push(json!({"role": "system", "content": req.system}));
    }
    messages.extend(req.messages.iter().map(message_json));
    let mut body = json!({
        "model": req.model,
        "messages": messages,
        "stream": true,
        "stream_options": {"include_usage": true},
    });
    if req.max_tokens > 0 {
        let key = if max_completion_tokens {
            "max_completion_tokens"
        } else {
            "max_tokens"
        };
        body[key] = json!(req.max_tokens);
    }
    if let Some(t) = req.temperature {
        body["temperature"] = json!(t);
    }
    if !req.stop.is_empty() {
        body["stop"] = json!(req.stop);
    }
    if !req.tools.is_empty() {
        body["tools"] = super::function_tools(&req.tools);
        let choice = match &req.tool_choice {
            ToolChoice::Auto => Value::Null,
            ToolChoice::None => json!("none"),
            ToolChoice::Required => json!("required"),
            ToolChoice::Tool(name) => json!({"type": "function", "function": {"name": name}}),
        };
        if !choice.is_null() {
            body["tool_choice"] = choice;
        }
    }
    body
}

fn message_json(m: &Message) -> Value {
    match m.role {
        Role::User => json!({"role": "user", "content": m.text_with_context()}),
        Role::Assistant if m.tool_calls.is_empty() => {
            json!({"role": "assistant", "content": m.content})
        }
        Role::Assistant => {
            let calls: Vec<Value> = m
                .tool_calls
                .iter()
                .map(|c| {
                    json!({
                        "id": c.id,
                        "type": "function",
                        "function": {"name": c.name, "arguments": c.arguments.to_string()},
                    })
                })
                .collect();
            // The API's own form for a turn that only calls tools is `content: null`.
            let content = if m.content.is_empty() {
                Value::Null
            } else {
                json!(m.content)
            };
            json!({"role": "assistant", "content": content, "tool_calls": calls})
        }
        Role::Tool => {
            // Chat Completions has no error flag on tool results; say it in the text.
            let content = if m.is_error {
                format!("[tool error] {}", m.content)
            } else {
                m.content.clone()
            };
            json!({
                "role": "tool",
                "tool_call_id": m.tool_call_id.clone().unwrap_or_default(),
                "content": content,
            })
        }
    }
}

// The chunk shapes, each field optional: compatible servers send `null` or leave out
// fields freely, and fields we do not know are ignored.

#[derive(Deserialize)]
struct Chunk {
    choices: Option<Vec<Choice>>,
    usage: Option<ChunkUsage>,
    error: Option<Value>,
    /// llama.cpp's server: its own counts, with the prompt tokens reused from its cache.
    timings: Option<Timings>,
}

#[derive(Deserialize)]
struct Choice {
    delta: Option<Delta>,
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct Delta {
    content: Option<String>,
    tool_calls: Option<Vec<ToolCallDelta>>,
}

#[derive(Deserialize)]
struct ToolCallDelta {
    index: Option<usize>,
    id: Option<String>,
    function: Option<FunctionDelta>,
}

#[derive(Deserialize)]
struct FunctionDelta {
    name: Option<String>,
    arguments: Option<String>,
}

#[derive(Deserialize)]
struct ChunkUsage {
    prompt_tokens: Option<u64>,
    completion_tokens: Option<u64>,
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Deserialize)]
struct PromptDetails {
    cached_tokens: Option<u64>,
}

#[derive(Deserialize)]
struct Timings {
    cache_n: Option<u64>,
}

/// A tool call being assembled from its fragments.
#[derive(Default)]
struct PartialCall {
    id: String,
    name: String,
    arguments: String,
}

/// The answer being assembled from the chunks.
#[derive(Default)]
struct Answer {
    completion: Completion,
    calls: BTreeMap<usize, PartialCall>,
    /// `timings.cache_n`, used when the usage does not say what was cached.
    cache_n: Option<u64>,
}

impl Answer {
    fn absorb(
        &mut self,
        chunk: Chunk,
        sink: &mut dyn FnMut(&str) -> bool,
        http: &Http,
    ) -> Result<(), ProviderError> {
        if let Some(error) = chunk.error {
            let text = json!({ "error": error }).to_string();
            return Err(http.failed(format!("error in the stream: {}", error_message(&text))));
        }
        for choice in chunk.choices.unwrap_or_default() {
            if let Some(delta) = choice.delta {
                if let Some(text) = delta.content {
                    self.completion.text.push_str(&text);
                    emit(sink, &text)?;
                }
                for (position, fragment) in
                    delta.tool_calls.unwrap_or_default().into_iter().enumerate()
                {
                    // Servers that omit `index` send each call whole, in order.
                    let index = fragment.index.unwrap_or(position);
                    let call = self.calls.entry(index).or_default();
                    if let Some(id) = fragment.id.filter(|id| !id.is_empty()) {
                        call.id = id;
                    }
                    if let Some(function) = fragment.function {
                        if let Some(name) = function.name.filter(|n| !n.is_empty()) {
                            call.name = name;
                        }
                        if let Some(piece) = function.arguments {
                            call.arguments.push_str(&piece);
                        }
                    }
                }
            }
            if let Some(reason) = choice.finish_reason {
                self.completion.stop_reason = Some(reason);
            }
        }
        if let Some(usage) = chunk.usage {
            self.completion.usage.prompt = usage.prompt_tokens.unwrap_or(0);
            self.completion.usage.completion = usage.completion_tokens.unwrap_or(0);
            self.completion.usage.cached =
                usage.prompt_tokens_details.and_then(|d| d.cached_tokens);
        }
        if let Some(cache_n) = chunk.timings.and_then(|t| t.cache_n) {
            self.cache_n = Some(cache_n);
        }
        Ok(())
    }

    fn finish(mut self) -> Completion {
        if self.completion.usage.cached.is_none() {
            self.completion.usage.cached = self.cache_n;
        }
        self.completion.tool_calls = self
            .calls
            .into_values()
            .map(|call| ToolCall {
                id: if call.id.is_empty() {
                    new_call_id()
                } else {
                    call.id
                },
                name: call.name,
                arguments: parse_arguments(&call.arguments),
            })
            .collect();
        self.completion
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::ToolSpec;

    fn http() -> Http {
        Http::new("openai", &ProvidersConfig::default())
    }

    fn feed(answer: &mut Answer, data: &str) -> Result<(), ProviderError> {
        let chunk: Chunk = serde_json::from_str(data).unwrap();
        answer.absorb(chunk, &mut |_| true, &http())
    }

    #[test]
    fn tool_call_fragments_assemble_by_index() {
        let mut a = Answer::default();
        for data in [
            r#"{"choices":[{"index":0,"delta":{"role":"assistant","content":null,"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"read_file","arguments":""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","function":{"name":"bash","arguments":"{\"cmd\""}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"{\"path\":"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"\"a.md\"}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"function":{"arguments":":\"ls"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}],"usage":null}"#,
            r#"{"choices":[],"usage":{"prompt_tokens":12,"completion_tokens":7,"total_tokens":19}}"#,
        ] {
            feed(&mut a, data).unwrap();
        }
        let c = a.finish();
        assert_eq!(c.stop_reason.as_deref(), Some("tool_calls"));
        assert_eq!((c.usage.prompt, c.usage.completion), (12, 7));
        assert_eq!(c.usage.cached, None);
        assert_eq!(c.tool_calls.len(), 2);
        assert_eq!(c.tool_calls[0].id, "call_a");
        assert_eq!(c.tool_calls[0].arguments, json!({"path": "a.md"}));
        assert_eq!(c.tool_calls[1].name, "bash");
        assert_eq!(c.tool_calls[1].arguments, json!({"_raw": "{\"cmd\":\"ls"}));
    }

    #[test]
    fn cached_prompt_tokens_from_the_usage_or_llama_cpp_timings() {
        let mut a = Answer::default();
        feed(&mut a, r#"{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":8,"prompt_tokens_details":{"cached_tokens":19}},"timings":{"cache_n":18,"prompt_n":1}}"#).unwrap();
        assert_eq!(a.finish().usage.cached, Some(19));
        let mut a = Answer::default();
        feed(
            &mut a,
            r#"{"choices":[],"usage":{"prompt_tokens":20,"completion_tokens":8}}"#,
        )
        .unwrap();
        feed(
            &mut a,
            r#"{"choices":[],"timings":{"cache_n":5,"prompt_n":15}}"#,
        )
        .unwrap();
        assert_eq!(a.finish().usage.cached, Some(5));
    }

    #[test]
    fn error_chunk_mid_stream_fails_with_its_message() {
        let mut a = Answer::default();
        let e = feed(&mut a, r#"{"error":{"message":"context length exceeded"}}"#).unwrap_err();
        assert!(e.to_string().contains("context length exceeded"), "{e}");
    }

    #[test]
    fn request_body_has_the_api_shape() {
        let call = ToolCall {
            id: "call_1".into(),
            name: "bash".into(),
            arguments: json!({"cmd": "ls"}),
        };
        let req = ChatRequest {
            model: "gpt-4o".into(),
            system: "be brief".into(),
            messages: vec![
                Message::user("hi"),
                Message::assistant("", vec![call.clone()]),
                Message::tool_result(&call, "no such dir", true),
            ],
            tools: vec![ToolSpec {
                name: "bash".into(),
                description: "run".into(),
                parameters: json!({"type": "object"}),
            }],
            max_tokens: 100,
            ..Default::default()
        };
        let body = request_body(&req, false);
        assert_eq!(body["max_tokens"], 100);
        assert_eq!(
            body["messages"][0],
            json!({"role": "system", "content": "be brief"})
        );
        assert_eq!(body["messages"][2]["content"], Value::Null);
        assert_eq!(
            body["messages"][2]["tool_calls"][0]["function"]["arguments"],
            "{\"cmd\":\"ls\"}"
        );
        assert_eq!(body["messages"][3]["tool_call_id"], "call_1");
        assert_eq!(
            body["tools"][0]["function"]["parameters"],
            json!({"type": "object"})
        );
        assert_eq!(request_body(&req, true)["max_completion_tokens"], 100);
    }

    #[test]
    fn a_user_messages_context_follows_its_words() {
        let context = crate::providers::Context {
            text: "<context>\nLocal time: 10:00\n</context>".into(),
            shown: Vec::new(),
        };
        let m = Message::user("hello").with_context(context);
        assert_eq!(
            message_json(&m),
            json!({"role": "user", "content": "hello\n\n<context>\nLocal time: 10:00\n</context>"})
        );
    }

    #[test]
    fn client_options_are_sent_in_the_api_shape() {
        let mut req = ChatRequest {
            model: "m".into(),
            messages: vec![Message::user("hi")],
            temperature: Some(0.25),
            stop: vec!["END".into()],
            tool_choice: ToolChoice::Tool("get_weather".into()),
            ..Default::default()
        };
        // Without tools a tool choice would be refused by the API: it is left out.
        let body = request_body(&req, false);
        assert_eq!(body["temperature"], 0.25);
        assert_eq!(body["stop"], json!(["END"]));
        assert!(body.get("tool_choice").is_none() && body.get("max_tokens").is_none());
        req.tools = vec![ToolSpec {
            name: "get_weather".into(),
            description: String::new(),
            parameters: json!({"type": "object"}),
        }];
        let body = request_body(&req, false);
        assert_eq!(
            body["tool_choice"],
            json!({"type": "function", "function": {"name": "get_weather"}})
        );
        req.tool_choice = ToolChoice::Required;
        assert_eq!(request_body(&req, false)["tool_choice"], "required");
        req.tool_choice = ToolChoice::Auto;
        assert!(request_body(&req, false).get("tool_choice").is_none());
    }

    #[test]
    fn only_the_official_host_gets_max_completion_tokens() {
        assert!(is_openai_itself("https://api.openai.com/v1"));
        assert!(!is_openai_itself("http://127.0.0.1:8080/v1"));
        assert!(!is_openai_itself("https://openrouter.ai/api/v1"));
    }
}
