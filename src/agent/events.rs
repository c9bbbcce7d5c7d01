//! What a turn tells the world as it runs: one typed event stream, produced by the turn and
//! rendered by thin adapters (SSE, WebSocket, `/v1` chunks, the terminal client).
//!
//! The JSON shape of every event (`{"type": ..., ...}`) is the wire format of the stream
//! routes; the terminal client decodes the same type.

use serde::{Deserialize, Serialize};
use serde_json::Value;

use std::time::Duration;

use super::approval::{Pending, Waited};
use crate::providers::cancel::CancelCheck;
use crate::providers::{Message, ToolCall, Usage};

/// Longest tool output carried by a `tool_end` event (the model gets the whole capped
/// output; a client watching the stream needs only its start).
pub const EVENT_OUTPUT_CHARS: usize = 2000;

/// One thing that happened in a turn, as clients see it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TurnEvent {
    /// The session the turn runs in (sent first).
    Session { session_id: String },
    /// A piece of the model's answer as it streams.
    Content { delta: String },
    ToolStart {
        id: String,
        name: String,
        arguments: Value,
    },
    /// `output` is cut to [`EVENT_OUTPUT_CHARS`].
    ToolEnd {
        id: String,
        name: String,
        output: String,
        is_error: bool,
    },
    /// A tool waits for the client's decision on `request_id`.
    ApprovalRequired {
        request_id: String,
        tool: String,
        arguments: Value,
    },
    /// The turn's answer (the last event of a turn that succeeded).
    Done(Answer),
    /// A failure: the last event of a turn that failed, or (code `approval_timeout`) a
    /// notice that the turn goes on without the tool.
    Error { code: String, message: String },
}

/// Token counts of a turn, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tokens {
    pub prompt: u64,
    pub completion: u64,
    pub total: u64,
    /// Of `prompt`, the tokens the provider took from its prompt cache; present when the
    /// provider reports it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cached: Option<u64>,
}

impl From<Usage> for Tokens {
    fn from(u: Usage) -> Tokens {
        Tokens {
            prompt: u.prompt,
            completion: u.completion,
            total: u.prompt + u.completion,
            cached: u.cached,
        }
    }
}

/// A tool the turn used, as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolUse {
    pub name: String,
    pub arguments: Value,
}

/// Why a turn's answer ended (OpenAI's `finish_reason`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Finish {
    /// The model finished (or the turn stopped a model repeating itself).
    #[default]
    Stop,
    /// A token limit cut the answer, or `agent.max_tool_iterations` ended the turn.
    Length,
    /// The model called the client's own tools: [`Answer::client_tool_calls`].
    ToolCalls,
    /// The provider withheld or refused the answer.
    ContentFilter,
}

impl Finish {
    /// The finish of a model answer without tool calls, from the provider's own stop
    /// reason (OpenAI's `finish_reason`, Anthropic's `stop_reason`, Ollama's `done_reason`).
    pub fn of_stop_reason(reason: Option<&str>) -> Finish {
        match reason {
            Some("length" | "max_tokens" | "model_context_window_exceeded") => Finish::Length,
            Some("content_filter" | "refusal") => Finish::ContentFilter,
            _ => Finish::Stop,
        }
    }
}

/// A finished turn: the body of `POST /api/chat` and of the `done` event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Answer {
    pub response: String,
    /// `provider/model`.
    pub model: String,
    pub tokens: Tokens,
    pub tools_used: Vec<ToolUse>,
    /// Set when the turn ran in a session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// Why the answer ended; only the OpenAI-compatible API reports it.
    #[serde(skip)]
    pub finish: Finish,
    /// Calls to the client's own tools (see `ClientTurn::tools`) that ended the turn, for
    /// the client to run; only the OpenAI-compatible API has them.
    #[serde(skip)]
    pub client_tool_calls: Vec<ToolCall>,
}

/// Where a turn's events go. Every method has a default suited to a caller nobody watches
/// (plain `POST /api/chat`, the heartbeat).
pub trait TurnSink {
    /// Hands an event to the client; `false` when the client is gone, which stops the turn.
    fn emit(&mut self, _event: TurnEvent) -> bool {
        true
    }

    /// Checked between steps and while a tool waits for approval: a client that went away
    /// or asked to cancel stops the turn.
    fn cancelled(&self) -> bool {
        false
    }

    /// The same question as [`TurnSink::cancelled`], answerable from the thread waiting on
    /// the provider, so a silent provider does not hold a cancelled turn.
    fn cancel_check(&self) -> Option<CancelCheck> {
        None
    }

    /// Whether someone watching these events can decide on tools that need approval.
    fn can_approve(&self) -> bool {
        false
    }

    /// Waits for the client's decision on `pending`, which arrives through the approval
    /// registry, for at most `timeout`.
    fn await_decision(&mut self, pending: &Pending<'_>, timeout: Duration) -> Waited {
        pending.wait(timeout, &|| self.cancelled())
    }

    /// A message joined the conversation (the user's, the model's, a tool result), in
    /// order; sessions persist it here.
    fn message(&mut self, _msg: &Message) {}
}

/// A sink that ignores everything.
pub struct Unattended;

impl TurnSink for Unattended {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_providers_stop_reason_maps_to_a_finish() {
        for (reason, finish) in [
            (None, Finish::Stop),
            (Some("stop"), Finish::Stop),
            (Some("end_turn"), Finish::Stop),
            (Some("stop_sequence"), Finish::Stop),
            (Some("length"), Finish::Length),
            (Some("max_tokens"), Finish::Length),
            (Some("content_filter"), Finish::ContentFilter),
            (Some("refusal"), Finish::ContentFilter),
            (Some("success"), Finish::Stop),
        ] {
            assert_eq!(Finish::of_stop_reason(reason), finish, "{reason:?}");
        }
        assert_eq!(
            serde_json::to_value(Finish::ToolCalls).unwrap(),
            "tool_calls"
        );
    }
}
