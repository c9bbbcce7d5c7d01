//! LLM providers: one file per wire protocol, this shared vocabulary, and model routing.
//!
//! Every provider streams: text deltas are handed to a [`DeltaSink`] as they arrive, and the
//! finished [`Completion`] (text, tool calls, token usage) is returned at the end.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::Value;

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

/// One model call.
#[derive(Debug, Clone)]
pub struct ChatRequest {
    /// The model name without the provider prefix (`gpt-4o`, not `openai/gpt-4o`).
    pub model: String,
    pub system: String,
    pub messages: Vec<Message>,
    pub tools: Vec<ToolSpec>,
    pub max_tokens: u32,
}

/// Token counts as the provider reported them (0 when it did not).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub prompt: u64,
    pub completion: u64,
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
