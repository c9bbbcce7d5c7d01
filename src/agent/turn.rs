//! One agent turn: prompt, model call, tool loop, until the model answers in words. Every
//! step is told to the turn's [`TurnSink`] as a [`TurnEvent`].

use std::collections::HashSet;

use super::approval::{Approver, Decision, Policy, Waited};
use super::events::{Answer, EVENT_OUTPUT_CHARS, Finish, ToolUse, TurnEvent, TurnSink};
use super::tools::{self, ToolOutput};
use super::{Agent, AgentError};
use crate::config::ModelRef;
use crate::providers::{
    ChatRequest, Message, ProviderError, Role, ToolCall, ToolChoice, ToolSpec, Usage, cancel,
};

/// What a turn is asked to do.
#[derive(Debug, Clone)]
pub struct TurnInput {
    pub model: ModelRef,
    /// What this turn adds to the conversation, in order: the user's message, or (on the
    /// OpenAI-compatible API) the results of the client's own tool calls.
    pub incoming: Vec<Message>,
    pub include_memory: bool,
    /// Earlier messages of the session, oldest first.
    pub history: Vec<Message>,
    /// The summary of the session's older messages, if any were summarised.
    pub summary: Option<String>,
    pub policy: Policy,
    pub approver: Approver,
    /// What a client of the OpenAI-compatible API adds (empty for every other surface).
    pub client: ClientTurn,
}

/// A client's own part in a turn: its instructions, its tools and its model settings.
#[derive(Debug, Clone, Default)]
pub struct ClientTurn {
    /// The client's system text, put after the daemon's own system prompt.
    pub system: String,
    /// Tools the client runs itself, offered beside the daemon's (their names must differ).
    /// A call to one ends the turn: the answer hands it back in
    /// [`Answer::client_tool_calls`] with [`Finish::ToolCalls`], and the client continues
    /// with the results as [`TurnInput::incoming`].
    pub tools: Vec<ToolSpec>,
    /// Overrides `agent.max_tokens`.
    pub max_tokens: Option<u32>,
    pub temperature: Option<f64>,
    pub stop: Vec<String>,
    /// `None` holds for the whole turn; `Required` and `Tool` bind only the first model
    /// call, so a forced call to a daemon tool cannot loop until the iteration limit.
    pub tool_choice: ToolChoice,
}

impl ClientTurn {
    fn offers(&self, tool: &str) -> bool {
        self.tools.iter().any(|t| t.name == tool)
    }

    /// The tool choice for model call number `round` of the turn.
    fn choice(&self, round: usize) -> ToolChoice {
        match &self.tool_choice {
            ToolChoice::None => ToolChoice::None,
            _ if round > 0 => ToolChoice::Auto,
            other => other.clone(),
        }
    }
}

/// Runs one turn to its end.
pub fn run_turn(
    agent: &Agent,
    input: TurnInput,
    sink: &mut dyn TurnSink,
) -> Result<Answer, AgentError> {
    let started = std::time::Instant::now();
    let model = input.model.to_string();
    let outcome = turn(agent, input, sink);
    if let Ok(answer) = &outcome {
        let t = &answer.tokens;
        let cached = t.cached.map_or("-".to_string(), |n| n.to_string());
        log::debug!(
            "turn {model} prompt {} cached {cached} completion {} {:.1}ms",
            t.prompt,
            t.completion,
            started.elapsed().as_secs_f64() * 1000.0
        );
    }
    outcome
}

fn turn(
    agent: &Agent,
    mut input: TurnInput,
    sink: &mut dyn TurnSink,
) -> Result<Answer, AgentError> {
    let provider = agent.providers.get(&input.model);
    let settings = &agent.settings;
    let registry = agent.registry();
    let mut specs = registry.specs();
    specs.extend(input.client.tools.iter().cloned());
    let now = crate::clock::local(agent.clock.now(), agent.zone.tz());
    let workspace = agent.memory.workspace();
    // Stable first, volatile last (see `prompt`): the time and the daily logs go with the
    // new message, after everything a provider may have cached.
    let (mut system, logs_budget) = super::prompt::system_prompt(
        workspace,
        input.include_memory,
        settings.memory_context_chars,
        !specs.is_empty(),
    );
    let stable_system = system.len();
    let context = super::prompt::turn_context(
        workspace,
        &now,
        input.include_memory,
        logs_budget,
        &input.history,
    );
    if let Some(summary) = &input.summary {
        system.push_str("\n## Earlier in this conversation (summary)\n");
        system.push_str(summary);
        system.push('\n');
    }
    if !input.client.system.trim().is_empty() {
        system.push_str("\n## Instructions from the client application\n");
        system.push_str(input.client.system.trim());
        system.push('\n');
    }

    let mut messages = std::mem::take(&mut input.history);
    // The context goes with the user's message (a turn that only carries a client's tool
    // results has none; the time it would tell has not moved much).
    let mut incoming = std::mem::take(&mut input.incoming);
    if let Some(user) = incoming.iter_mut().rev().find(|m| m.role == Role::User) {
        user.context = Some(context);
    }
    for m in incoming {
        sink.message(&m);
        messages.push(m);
    }
    let mut usage = Usage::default();
    let mut tools_used = Vec::new();
    let mut seen: HashSet<String> = HashSet::new();
    let mut last_text = String::new();
    let model = input.model.to_string();
    let answer = |response: String, usage: Usage, tools_used: Vec<ToolUse>, finish| Answer {
        response,
        model: model.clone(),
        tokens: usage.into(),
        tools_used,
        session_id: None,
        finish,
        client_tool_calls: Vec::new(),
    };

    for round in 0..settings.max_tool_iterations {
        if sink.cancelled() {
            return Err(ProviderError::Cancelled.into());
        }
        let request = ChatRequest {
            model: input.model.name().to_string(),
            system: system.clone(),
            stable_system,
            messages: messages.clone(),
            tools: specs.clone(),
            max_tokens: input.client.max_tokens.unwrap_or(settings.max_tokens),
            temperature: input.client.temperature,
            stop: input.client.stop.clone(),
            tool_choice: input.client.choice(round),
        };
        let check = sink.cancel_check();
        let completion = cancel::watched(check, || {
            provider.complete(&request, &mut |d| {
                sink.emit(TurnEvent::Content {
                    delta: d.to_string(),
                })
            })
        });
        // A call cut short because the turn was cancelled is a cancellation, whatever
        // the transport made of it.
        let completion = match completion {
            Err(_) if sink.cancelled() => return Err(ProviderError::Cancelled.into()),
            other => other?,
        };
        usage.add(completion.usage);
        last_text = completion.text.clone();
        let reply = Message::assistant(completion.text, completion.tool_calls.clone());
        sink.message(&reply);
        messages.push(reply);
        if completion.tool_calls.is_empty() {
            let finish = Finish::of_stop_reason(completion.stop_reason.as_deref());
            return Ok(answer(last_text, usage, tools_used, finish));
        }
        let (client_calls, own_calls): (Vec<ToolCall>, Vec<ToolCall>) = completion
            .tool_calls
            .into_iter()
            .partition(|c| input.client.offers(&c.name));

        let mut all_repeats = true;
        for call in &own_calls {
            if sink.cancelled() {
                return Err(ProviderError::Cancelled.into());
            }
            let key = format!("{}\u{0}{}", call.name, call.arguments);
            let repeat = !seen.insert(key);
            all_repeats &= repeat;
            tools_used.push(ToolUse {
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            sink.emit(TurnEvent::ToolStart {
                id: call.id.clone(),
                name: call.name.clone(),
                arguments: call.arguments.clone(),
            });
            let output = if repeat {
                ToolOutput::error(
                    "this exact call was already made in this turn; its result is above. Use it instead of calling again.",
                )
            } else if !specs.iter().any(|s| s.name == call.name) {
                ToolOutput::error(format!("tool {} is not available here", call.name))
            } else if input.policy.needs_approval(&call.name) {
                match decide(agent, &input, call, sink) {
                    Decision::Approve => registry.run(call, &|| sink.cancelled()),
                    Decision::Deny(why) => ToolOutput::error(why),
                }
            } else {
                registry.run(call, &|| sink.cancelled())
            };
            sink.emit(TurnEvent::ToolEnd {
                id: call.id.clone(),
                name: call.name.clone(),
                output: tools::cap(output.text.clone(), EVENT_OUTPUT_CHARS),
                is_error: output.is_error,
            });
            let result = Message::tool_result(call, output.text, output.is_error);
            sink.message(&result);
            messages.push(result);
        }
        // The daemon's own calls of this answer have run; the client runs the rest, and
        // its results continue the conversation in its next request.
        if !client_calls.is_empty() {
            let mut done = answer(last_text, usage, tools_used, Finish::ToolCalls);
            done.client_tool_calls = client_calls;
            return Ok(done);
        }
        if all_repeats {
            log::info!("turn stopped in round {round}: the model repeated identical tool calls");
            let response = join_note(
                &last_text,
                "[stopped: the model kept repeating the same tool call]",
            );
            return Ok(answer(response, usage, tools_used, Finish::Stop));
        }
    }
    let response = join_note(
        &last_text,
        &format!(
            "[stopped: reached agent.max_tool_iterations ({}) before a final answer]",
            settings.max_tool_iterations
        ),
    );
    Ok(answer(response, usage, tools_used, Finish::Length))
}

/// Asks whoever can decide on `call`: the client through the approval registry (bounded by
/// `tools.approval_timeout`), or the fallback when nobody can.
fn decide(agent: &Agent, input: &TurnInput, call: &ToolCall, sink: &mut dyn TurnSink) -> Decision {
    let session_id = match &input.approver {
        Approver::Nobody(why) => return Decision::fallback(input.policy.fallback, &call.name, why),
        Approver::Client { session_id } => session_id,
    };
    let pending = agent.approvals.register(session_id);
    let asked = sink.emit(TurnEvent::ApprovalRequired {
        request_id: pending.request_id.clone(),
        tool: call.name.clone(),
        arguments: call.arguments.clone(),
    });
    if !asked {
        return Decision::Deny("the client went away".into());
    }
    let timeout = agent.approval_timeout;
    match sink.await_decision(&pending, timeout) {
        Waited::Decided(d) => d,
        Waited::Gone => Decision::Deny("the client went away or cancelled the turn".into()),
        Waited::TimedOut => {
            sink.emit(TurnEvent::Error {
                code: "approval_timeout".into(),
                message: format!("approval {} timed out and was denied", pending.request_id),
            });
            Decision::Deny(format!(
                "tool {} was denied: nobody approved it within tools.approval_timeout ({timeout:?}). Do not retry it.",
                call.name
            ))
        }
    }
}

fn join_note(text: &str, note: &str) -> String {
    if text.trim().is_empty() {
        note.to_string()
    } else {
        format!("{}\n\n{note}", text.trim_end())
    }
}
