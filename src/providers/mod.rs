//! LLM providers: one file per wire protocol, this shared vocabulary, and model routing.
//!
//! Every provider streams: text deltas are handed to a [`DeltaSink`] as they arrive, and the
//! finished [`Completion`] (text, tool calls, token usage) is returned at the end.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::config::{ModelRef, ProviderKind, ProvidersConfig};
use crate::sync::lock;

mod anthropic;
pub mod cancel;
mod claude_cli;
pub(crate) mod http;
mod ollama;
mod openai;
mod stream;

pub use anthropic::Anthropic;
pub use claude_cli::ClaudeCli;
pub use http::{MAX_DETAIL_CHARS, MAX_ERROR_BODY_BYTES, MAX_STREAM_BYTES};
pub use ollama::Ollama;
pub use openai::OpenAi;
pub use stream::MAX_LINE_BYTES;

/// Who said a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
    /// The result of a tool call, answering `tool_call_id`.
    Tool,
}

/// A tool call the model asked for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    /// Always a JSON object (an unparsable argument string becomes `{}` plus an error).
    pub arguments: Value,
}

/// One message of the conversation sent to a provider.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub role: Role,
    #[serde(default)]
    pub content: String,
    /// Assistant messages: the tool calls the model made.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<ToolCall>,
    /// Tool messages: the call this answers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    /// Tool messages: the tool's name (Ollama wants it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_name: Option<String>,
    /// Tool messages: the tool failed.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub is_error: bool,
    /// User messages: what the daemon told the model beside the user's words.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<Context>,
}

/// What the daemon tells the model with a user message besides the user's own words: the
/// time, and what is new in the daily logs. It is kept with the message, so every later
/// request of the conversation repeats it byte for byte and a provider's prompt cache
/// (which reuses only an identical prefix) still holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Context {
    /// What the model reads after the user's words.
    pub text: String,
    /// How far this text showed each daily log, so a later turn shows only what is new.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub shown: Vec<Shown>,
}

/// A part of a daily log that a [`Context`] showed: bytes `from..to` of `file`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shown {
    /// Path relative to the workspace (`memory/2026-02-14.md`).
    pub file: String,
    pub from: u64,
    pub to: u64,
    /// XXH3 of the file's bytes `0..to` as they were, to notice an edit of what was shown.
    pub hash: u64,
    /// The part stands on its own (the whole file, or its end cut to the budget); else it
    /// continues the part shown before it, which ended at `from`.
    pub whole: bool,
}

impl Message {
    pub fn user(text: impl Into<String>) -> Message {
        Message {
            role: Role::User,
            content: text.into(),
            tool_calls: Vec::new(),
            tool_call_id: None,
            tool_name: None,
            is_error: false,
            context: None,
        }
    }

    pub fn assistant(text: impl Into<String>, tool_calls: Vec<ToolCall>) -> Message {
        Message {
            role: Role::Assistant,
            content: text.into(),
            tool_calls,
            tool_call_id: None,
            tool_name: None,
            is_error: false,
            context: None,
        }
    }

    pub fn tool_result(call: &ToolCall, output: impl Into<String>, is_error: bool) -> Message {
        Message {
            role: Role::Tool,
            content: output.into(),
            tool_calls: Vec::new(),
            tool_call_id: Some(call.id.clone()),
            tool_name: Some(call.name.clone()),
            is_error,
            context: None,
        }
    }

    /// The message with its context attached.
    pub fn with_context(mut self, context: Context) -> Message {
        self.context = Some(context);
        self
    }

    /// The text a model reads for this message: the content, then the context (after the
    /// user's words, so a client that resends the conversation without our context still
    /// shares the prefix up to the end of its own text).
    pub fn text_with_context(&self) -> std::borrow::Cow<'_, str> {
        match &self.context {
            Some(c) if !c.text.is_empty() => {
                std::borrow::Cow::Owned(format!("{}\n\n{}", self.content, c.text))
            }
            _ => std::borrow::Cow::Borrowed(&self.content),
        }
    }
}

/// A tool offered to the model.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
}

/// Which tool the model must call, as a client of the OpenAI-compatible API may ask.
/// Providers without such a setting ignore it (Ollama honours only `None`, by offering
/// no tools; the Claude CLI offers none anyway).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum ToolChoice {
    /// The model decides.
    #[default]
    Auto,
    /// No tool call.
    None,
    /// Some tool call.
    Required,
    /// A call to this tool.
    Tool(String),
}

/// One model call.
#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    /// The model name without the provider prefix (`gpt-4o`, not `openai/gpt-4o`).
    pub model: String,
    pub system: String,
    /// How many bytes at the start of `system` every turn shares (identity, tool rules,
    /// curated memory); the rest belongs to one conversation (its summary). Anthropic gets
    /// the two parts as separate, cached system blocks. 0: no such split.
    pub stable_system: usize,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
    /// Sampling temperature; `None` leaves the provider's default.
    pub temperature: Option<f64>,
    /// Sequences that end the answer where they would appear.
    pub stop: Vec<String>,
    /// Only meaningful with `tools`.
    pub tool_choice: ToolChoice,
}

/// Token counts as the provider reported them (0 when it did not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    /// The whole prompt, cached or not.
    pub prompt: u64,
    pub completion: u64,
    /// Prompt tokens the provider took from its prompt cache instead of reading them;
    /// `None` when it does not say.
    pub cached: Option<u64>,
}

impl Usage {
    /// Adds the counts of another model call of the same turn.
    pub fn add(&mut self, other: Usage) {
        self.prompt += other.prompt;
        self.completion += other.completion;
        self.cached = match (self.cached, other.cached) {
            (None, None) => None,
            (a, b) => Some(a.unwrap_or(0) + b.unwrap_or(0)),
        };
    }
}

/// What a finished model call produced.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Completion {
    pub text: String,
    pub tool_calls: Vec<ToolCall>,
    pub usage: Usage,
    /// The provider's own stop reason (`stop`, `end_turn`, `tool_use`, ...), if given.
    pub stop_reason: Option<String>,
}

/// Receives text deltas as they stream; returning `false` cancels the call (the client
/// went away), which drops the provider connection or kills the subprocess.
pub type DeltaSink<'a> = &'a mut dyn FnMut(&str) -> bool;

/// Why a model call failed. Messages name the provider and never contain a key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderError {
    /// Connect or read timed out.
    Timeout { provider: String, detail: String },
    /// Refused, DNS, TLS, HTTP error status, malformed or cut-short answer, missing binary.
    Failed { provider: String, detail: String },
    /// The sink asked to stop.
    Cancelled,
}

impl fmt::Display for ProviderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProviderError::Timeout { provider, detail } => {
                write!(f, "provider {provider} timed out: {detail}")
            }
            ProviderError::Failed { provider, detail } => {
                write!(f, "provider {provider} failed: {detail}")
            }
            ProviderError::Cancelled => write!(f, "the request was cancelled"),
        }
    }
}

impl std::error::Error for ProviderError {}

/// A model backend.
pub trait Provider: Send + Sync {
    /// The provider prefix (`openai`, `anthropic`, `ollama`, `claude-cli`).
    fn name(&self) -> &'static str;

    /// Runs one streamed model call.
    fn complete(&self, req: &ChatRequest, sink: DeltaSink) -> Result<Completion, ProviderError>;
}

/// Builds the provider for `kind`.
pub fn build(config: &ProvidersConfig, kind: ProviderKind) -> Box<dyn Provider> {
    match kind {
        ProviderKind::OpenAi => Box::new(OpenAi::new(config)),
        ProviderKind::Anthropic => Box::new(Anthropic::new(config)),
        ProviderKind::Ollama => Box::new(Ollama::new(config)),
        ProviderKind::ClaudeCli => Box::new(ClaudeCli::new(config)),
    }
}

/// Builds the provider a `provider/model` string names, and returns it with the bare model
/// name (for callers holding text, such as a library user; the daemon holds [`ModelRef`]s).
pub fn for_model(
    config: &ProvidersConfig,
    model: &str,
) -> Result<(Box<dyn Provider>, String), String> {
    let model: ModelRef = model.parse()?;
    Ok((build(config, model.provider()), model.name().to_string()))
}

/// Provider clients, built on first use and kept, so connection pools and TLS setup are
/// reused across turns.
pub struct Providers {
    config: ProvidersConfig,
    built: Mutex<HashMap<ProviderKind, Arc<dyn Provider>>>,
}

impl Providers {
    pub fn new(config: &ProvidersConfig) -> Providers {
        Providers {
            config: config.clone(),
            built: Mutex::new(HashMap::new()),
        }
    }

    /// The client for `model`'s provider.
    pub fn get(&self, model: &ModelRef) -> Arc<dyn Provider> {
        lock(&self.built)
            .entry(model.provider())
            .or_insert_with(|| Arc::from(build(&self.config, model.provider())))
            .clone()
    }
}

/// Tools in the `{"type":"function","function":{name,description,parameters}}` shape that
/// OpenAI's Chat Completions and Ollama's `/api/chat` share.
pub fn function_tools(tools: &[ToolSpec]) -> Value {
    tools
        .iter()
        .map(|t| {
            serde_json::json!({
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters,
                }
            })
        })
        .collect()
}

/// Turns a tool call's argument text into the JSON object tools expect. Text that is not a
/// JSON object (a model's broken or truncated JSON) becomes `{"_raw": text}`, so the tool
/// can report what it got instead of the turn failing; no text at all becomes `{}`.
pub fn parse_arguments(raw: &str) -> Value {
    if raw.trim().is_empty() {
        return Value::Object(Default::default());
    }
    match serde_json::from_str::<Value>(raw) {
        Ok(v @ Value::Object(_)) => v,
        _ => serde_json::json!({ "_raw": raw }),
    }
}

/// A tool call id for providers that send none (Ollama, old OpenAI-compatible servers).
/// Unique, because the agent matches results to calls by id across a whole session.
fn new_call_id() -> String {
    format!("call_{}", &uuid::Uuid::new_v4().simple().to_string()[..24])
}

/// Hands a delta to the sink; `Cancelled` when the sink says stop.
fn emit(sink: &mut dyn FnMut(&str) -> bool, text: &str) -> Result<(), ProviderError> {
    if text.is_empty() || sink(text) {
        Ok(())
    } else {
        Err(ProviderError::Cancelled)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arguments_that_are_not_an_object_keep_the_raw_text() {
        assert_eq!(parse_arguments(""), serde_json::json!({}));
        assert_eq!(parse_arguments(" {\"a\":1} "), serde_json::json!({"a": 1}));
        assert_eq!(
            parse_arguments("{\"a\":"),
            serde_json::json!({"_raw": "{\"a\":"})
        );
        assert_eq!(parse_arguments("[1]"), serde_json::json!({"_raw": "[1]"}));
    }

    #[test]
    fn models_route_by_prefix() {
        let providers = Providers::new(&ProvidersConfig::default());
        for (model, name) in [
            ("openai/gpt-4o", "openai"),
            ("anthropic/claude-sonnet-4-5", "anthropic"),
            ("ollama/llama3.2:3b", "ollama"),
            ("claude-cli/opus", "claude-cli"),
        ] {
            let model: ModelRef = model.parse().unwrap();
            assert_eq!(providers.get(&model).name(), name);
        }
    }

    #[test]
    fn call_ids_are_unique() {
        assert_ne!(new_call_id(), new_call_id());
    }
}
