//! A turn in OpenAI's Chat Completions shapes: [`ChunkSink`] renders its events as
//! `chat.completion.chunk`s on an SSE stream, and [`completion`] a finished turn as one
//! `chat.completion` object.
//!
//! Only what an OpenAI client can use goes out: the model's text, and the calls to the
//! client's own tools (at the end, once the turn knows them). The daemon's own tool calls
//! run inside the turn and are not shown; the client only sees the text around them.

use serde::Serialize;

use super::sse::SseStream;
use crate::agent::events::{Answer, Finish, Tokens, TurnEvent, TurnSink};
use crate::providers::ToolCall;
use crate::server::error::ApiError;

/// What every object of one completion shares.
#[derive(Debug, Clone)]
pub struct Meta {
    /// `chatcmpl-…`.
    pub id: String,
    /// Unix seconds.
    pub created: i64,
    /// `provider/model`.
    pub model: String,
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    /// Present when the provider said how much of the prompt came from its cache.
    #[serde(skip_serializing_if = "Option::is_none")]
    prompt_tokens_details: Option<PromptDetails>,
}

#[derive(Serialize)]
struct PromptDetails {
    cached_tokens: u64,
}

impl From<Tokens> for Usage {
    fn from(t: Tokens) -> Usage {
        Usage {
            prompt_tokens: t.prompt,
            completion_tokens: t.completion,
            total_tokens: t.total,
            prompt_tokens_details: t
                .cached
                .map(|cached_tokens| PromptDetails { cached_tokens }),
        }
    }
}

#[derive(Serialize)]
struct Function<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    /// Always present, as a JSON text (clients concatenate the pieces).
    arguments: String,
}

/// A tool call whole (`message.tool_calls[]`) or as a stream delta (`delta.tool_calls[]`).
#[derive(Serialize)]
struct ToolCallOut<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    index: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    kind: Option<&'static str>,
    function: Function<'a>,
}

fn whole_call(call: &ToolCall) -> ToolCallOut<'_> {
    ToolCallOut {
        index: None,
        id: Some(&call.id),
        kind: Some("function"),
        function: Function {
            name: Some(&call.name),
            arguments: call.arguments.to_string(),
        },
    }
}

#[derive(Serialize)]
struct Message<'a> {
    role: &'static str,
    /// `null` for an answer that only calls tools, as the API does.
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
    refusal: Option<&'a str>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: usize,
    message: Message<'a>,
    logprobs: Option<()>,
    finish_reason: Finish,
}

#[derive(Serialize)]
struct Completion<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    choices: [Choice<'a>; 1],
    usage: Usage,
    system_fingerprint: Option<()>,
}

/// A finished turn as a `chat.completion` object.
pub fn completion<'a>(meta: &'a Meta, answer: &'a Answer) -> impl Serialize + 'a {
    let calls = &answer.client_tool_calls;
    Completion {
        id: &meta.id,
        object: "chat.completion",
        created: meta.created,
        model: &meta.model,
        choices: [Choice {
            index: 0,
            message: Message {
                role: "assistant",
                content: (!answer.response.is_empty() || calls.is_empty())
                    .then_some(&*answer.response),
                tool_calls: calls.iter().map(whole_call).collect(),
                refusal: None,
            },
            logprobs: None,
            finish_reason: answer.finish,
        }],
        usage: answer.tokens.into(),
        system_fingerprint: None,
    }
}

#[derive(Serialize, Default)]
struct Delta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    tool_calls: Vec<ToolCallOut<'a>>,
}

#[derive(Serialize)]
struct ChunkChoice<'a> {
    index: usize,
    delta: Delta<'a>,
    logprobs: Option<()>,
    finish_reason: Option<Finish>,
}

#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: i64,
    model: &'a str,
    system_fingerprint: Option<()>,
    choices: Vec<ChunkChoice<'a>>,
    /// Absent unless the client asked for usage; then `null` on every chunk but the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<Option<Usage>>,
}

/// Renders a turn onto an open SSE stream as `chat.completion.chunk`s. Nobody on this
/// stream can approve a tool, so the configured fallback decides.
pub struct ChunkSink<'a> {
    stream: &'a SseStream,
    meta: &'a Meta,
    include_usage: bool,
    /// Some of the model's text has gone out.
    wrote_text: bool,
    /// One of the daemon's tools ran since: the next text starts a new paragraph, or the
    /// model's words before and after the tool would run together.
    after_tool: bool,
}

impl<'a> ChunkSink<'a> {
    /// Sends the first chunk (the assistant's role); false if the client is gone.
    pub fn start(stream: &'a SseStream, meta: &'a Meta, include_usage: bool) -> (Self, bool) {
        let sink = ChunkSink {
            stream,
            meta,
            include_usage,
            wrote_text: false,
            after_tool: false,
        };
        let ok = sink.send(
            Delta {
                role: Some("assistant"),
                content: Some(""),
                ..Delta::default()
            },
            None,
        );
        (sink, ok)
    }

    fn chunk<'b>(&'b self, choices: Vec<ChunkChoice<'b>>, usage: Option<Usage>) -> Chunk<'b> {
        Chunk {
            id: &self.meta.id,
            object: "chat.completion.chunk",
            created: self.meta.created,
            model: &self.meta.model,
            system_fingerprint: None,
            choices,
            usage: self.include_usage.then_some(usage),
        }
    }

    fn send(&self, delta: Delta<'_>, finish: Option<Finish>) -> bool {
        let choice = ChunkChoice {
            index: 0,
            delta,
            logprobs: None,
            finish_reason: finish,
        };
        self.stream.event(&self.chunk(vec![choice], None))
    }

    /// Sends the end of the answer: the client tool calls as deltas (`index` on each; `id`,
    /// `type` and `function.name` on the first of a call), the chunk with `finish_reason`
    /// and the usage chunk when asked for. False if the client is gone.
    pub fn finish(&self, answer: &Answer) -> bool {
        for (index, call) in answer.client_tool_calls.iter().enumerate() {
            let head = ToolCallOut {
                index: Some(index),
                function: Function {
                    name: Some(&call.name),
                    arguments: String::new(),
                },
                ..whole_call(call)
            };
            let body = ToolCallOut {
                index: Some(index),
                id: None,
                kind: None,
                function: Function {
                    name: None,
                    arguments: call.arguments.to_string(),
                },
            };
            for part in [head, body] {
                let delta = Delta {
                    tool_calls: vec![part],
                    ..Delta::default()
                };
                if !self.send(delta, None) {
                    return false;
                }
            }
        }
        if !self.send(Delta::default(), Some(answer.finish)) {
            return false;
        }
        !self.include_usage || {
            let last = self.chunk(Vec::new(), Some(answer.tokens.into()));
            self.stream.event(&last)
        }
    }

    /// Sends a failure in OpenAI's shape (the SDKs raise it as an API error).
    pub fn fail(&self, error: &ApiError) -> bool {
        self.stream.event(&error.openai_body())
    }
}

impl TurnSink for ChunkSink<'_> {
    fn emit(&mut self, event: TurnEvent) -> bool {
        match event {
            TurnEvent::Content { delta } => {
                let text = if self.after_tool && self.wrote_text {
                    format!("\n\n{delta}")
                } else {
                    delta
                };
                self.after_tool = false;
                self.wrote_text = true;
                self.send(
                    Delta {
                        content: Some(&text),
                        ..Delta::default()
                    },
                    None,
                )
            }
            TurnEvent::ToolEnd { .. } => {
                self.after_tool = true;
                !self.stream.is_broken()
            }
            _ => !self.stream.is_broken(),
        }
    }

    fn cancelled(&self) -> bool {
        self.stream.is_broken()
    }

    fn cancel_check(&self) -> Option<crate::providers::cancel::CancelCheck> {
        Some(self.stream.broken_check())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::events::Tokens;
    use serde_json::{Value, json};

    /// The answer of a finished turn, for tests of the rendering.
    fn answer_for_tests(text: &str, calls: Vec<ToolCall>) -> Answer {
        Answer {
            response: text.into(),
            model: "openai/m".into(),
            tokens: Tokens {
                prompt: 3,
                completion: 2,
                total: 5,
                cached: None,
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
