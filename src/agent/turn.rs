//! One agent turn: prompt, model call, tool loop, until the model answers in words.

use std::collections::HashSet;
use std::fmt;

use serde::Serialize;
use serde_json::Value;

use super::approval::{Decision, Policy};
use super::tools::{self, ToolOutput};
use crate::app::App;
use crate::config::Fallback;
use crate::providers::{ChatRequest, Message, ProviderError, ToolCall, Usage};

/// What a turn is asked to do.
#[derive(Debug, Clone)]
pub struct TurnInput {
    /// `provider/model`.
    pub model: String,
    pub message: String,
    pub include_memory: bool,
    /// Earlier messages of the session, oldest first.
    pub history: Vec<Message>,
    /// The summary of the session's older messages, if any were summarised.
    pub summary: Option<String>,
    pub policy: Policy,
}

/// A tool the turn used, as the API reports it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ToolUse {
    pub name: String,
    pub arguments: Value,
}

/// What a finished turn produced.
#[derive(Debug, Clone)]
pub struct TurnOutcome {
    pub response: String,
    pub model: String,
    pub usage: Usage,
    pub tools_used: Vec<ToolUse>,
}

/// Why a turn did not finish.
#[derive(Debug, Clone, PartialEq)]
pub enum TurnError {
    /// The model string names no provider we know.
    BadModel(String),
    Provider(ProviderError),
}

impl fmt::Display for TurnError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TurnError::BadModel(m) => write!(f, "{m}"),
            TurnError::Provider(e) => write!(f, "{e}"),
        }
    }
}

impl From<ProviderError> for TurnError {
    fn from(e: ProviderError) -> Self {
        TurnError::Provider(e)
    }
}

/// Hears what a turn does as it happens; the streaming routes forward it to the client.
/// Every method has a default suited to a caller nobody watches (plain `POST /api/chat`).
pub trait TurnEvents {
    /// A text delta from the model; `false` cancels the turn.
    fn delta(&mut self, _text: &str) -> bool {
        true
    }
    fn tool_start(&mut self, _call: &ToolCall) {}
    fn tool_end(&mut self, _call: &ToolCall, _output: &ToolOutput) {}
    /// A tool needs a decision. By default nobody can answer, so the fallback applies.
    fn approve(&mut self, call: &ToolCall, fallback: Fallback) -> Decision {
        Decision::fallback(fallback, &call.name, "nobody can approve it on this route")
    }
    /// Checked between steps: a client that went away stops the turn.
    fn cancelled(&self) -> bool {
        false
    }
    /// A message joined the conversation (the user's, the model's, a tool result), in order.
    fn message(&mut self, _msg: &Message) {}
}

/// A listener that ignores everything (the fallback decides approvals).
pub struct Unattended;

impl TurnEvents for Unattended {}

/// Runs one turn to its end.
pub fn run_turn(
    app: &App,
    input: TurnInput,
    events: &mut dyn TurnEvents,
) -> Result<TurnOutcome, TurnError> {
    let (provider, model_name) = app
        .providers
        .get(&input.model)
        .map_err(TurnError::BadModel)?;
    let agent = &app.config.agent;
    let offered: Vec<&str> = input.policy.offered.iter().map(String::as_str).collect();
    let specs = tools::specs(&offered);
    let now = crate::clock::local(jiff::Timestamp::now(), &app.zone);
    let mut system = super::prompt::system_prompt(
        app.memory.workspace(),
        &now,
        input.include_memory,
        agent.memory_context_chars,
        !specs.is_empty(),
    );
    if let Some(summary) = &input.summary {
        system.push_str("\n## Earlier in this conversation (summary)\n");
        system.push_str(summary);
        system.push('\n');
    }

    let mut messages = input.history;
    let user = Message::user(input.message);
    events.message(&user);
    messages.push(user);
    let mut usage = Usage::default();
    let mut tools_used = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut last_text = String::new();

    for round in 0..agent.max_tool_iterations {
        if events.cancelled() {
            return Err(ProviderError::Cancelled.into());
        }
        let request = ChatRequest {
            model: model_name.clone(),
            system: system.clone(),
            messages: messages.clone(),
            tools: specs.clone(),
            max_tokens: agent.max_tokens,
        };
        let completion = provider.complete(&request, &mut |d| events.delta(d))?;
        usage.prompt += completion.usage.prompt;
        usage.completion += completion.usage.completion;
        last_text = completion.text.clone();
        let reply = Message::assistant(completion.text, completion.tool_calls.clone());
        events.message(&reply);
        messages.push(reply);
        if completion.tool_calls.is_empty() {
            return Ok(finish(input.model, last_text, usage, tools_used));
        }

        let mut all_repeats = true;
        for call in &completion.tool_calls {
            if events.cancelled() {
                return Err(ProviderError::Cancelled.into());
            }
            let key = format!("{}\u{0}{}", call.name, call.arguments);
            let repeat = !seen.insert(key);
            all_repeats &= repeat;
            tools_used.push(ToolUse {
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            events.tool_start(call);
            let output = if repeat {
                ToolOutput::error(
                    "this exact call was already made in this turn; its result is above. Use it instead of calling again.",
                )
            } else if !input.policy.offered.iter().any(|t| t == &call.name) {
                ToolOutput::error(format!("tool {} is not available here", call.name))
            } else if input.policy.needs_approval(&call.name) {
                match events.approve(call, input.policy.fallback) {
                    Decision::Approve => tools::run(&app.tools, call),
                    Decision::Deny(why) => ToolOutput::error(why),
                }
            } else {
                tools::run(&app.tools, call)
            };
            events.tool_end(call, &output);
            let result = Message::tool_result(call, output.text, output.is_error);
            events.message(&result);
            messages.push(result);
        }
        if all_repeats {
            log::info!("turn stopped in round {round}: the model repeated identical tool calls");
            let response = join_note(
                &last_text,
                "[stopped: the model kept repeating the same tool call]",
            );
            return Ok(finish(input.model, response, usage, tools_used));
        }
    }
    let response = join_note(
        &last_text,
        &format!(
            "[stopped: reached agent.max_tool_iterations ({}) before a final answer]",
            agent.max_tool_iterations
        ),
    );
    Ok(finish(input.model, response, usage, tools_used))
}

fn join_note(text: &str, note: &str) -> String {
    if text.trim().is_empty() {
        note.to_string()
    } else {
        format!("{}\n\n{note}", text.trim_end())
    }
}

fn finish(model: String, response: String, usage: Usage, tools_used: Vec<ToolUse>) -> TurnOutcome {
    TurnOutcome {
        response,
        model,
        usage,
        tools_used,
    }
}
