//! A chat turn inside a session: history in, every new message persisted as it happens,
//! older history summarised when it outgrows its budget.

use super::approval::{Approver, Policy};
use super::events::{Answer, TurnEvent, TurnSink};
use super::tools::cap;
use super::turn::{ClientTurn, TurnInput, run_turn};
use super::{Agent, AgentError};
use crate::config::{Fallback, ModelRef, ProviderKind, ToolPattern};
use crate::providers::cancel::CancelCheck;
use crate::providers::{ChatRequest, Message, Role};
use crate::sessions::{Claim, SessionStore, StoreError, StoredMessage};

/// What a client asked for.
#[derive(Debug, Clone)]
pub struct ChatParams {
    pub message: String,
    /// `None` for the session's model, else the default.
    pub model: Option<ModelRef>,
    pub include_memory: bool,
    pub session_id: Option<String>,
}

/// A chat ready to run: its model chosen and its session (if any) found and claimed, so a
/// stream can answer `404`/`409` before its head is sent.
pub struct Prepared<'a> {
    pub model: ModelRef,
    pub session: Option<Claim<'a>>,
}

impl Prepared<'_> {
    pub fn session_id(&self) -> Option<&str> {
        self.session.as_ref().map(Claim::id)
    }
}

/// Resolves the model and session of `params`; creates a session when `create` is set and
/// none was named.
pub fn prepare<'a>(
    agent: &Agent,
    sessions: &'a SessionStore,
    params: &ChatParams,
    create: bool,
) -> Result<Prepared<'a>, AgentError> {
    let stored = match &params.session_id {
        Some(id) => Some(
            sessions
                .get(id)?
                .ok_or_else(|| AgentError::SessionNotFound(id.clone()))?,
        ),
        None => None,
    };
    let model = match (&params.model, &stored) {
        (Some(m), _) => m.clone(),
        (None, Some(s)) => s
            .model
            .parse()
            .map_err(|why| AgentError::BadModel(format!("session {}: {why}", s.session_id)))?,
        (None, None) => agent.settings.default_model.clone(),
    };
    let id = match stored {
        Some(s) => Some(s.session_id),
        None if create => Some(sessions.create(&model.to_string())?.session_id),
        None => None,
    };
    let session = match id {
        Some(id) => Some(sessions.claim(&id).ok_or(AgentError::SessionBusy(id))?),
        None => None,
    };
    Ok(Prepared { model, session })
}

/// Runs the prepared chat. The session is free again when this returns, so a client may
/// send its next turn the moment it reads the answer.
pub fn run(
    agent: &Agent,
    sessions: &SessionStore,
    params: &ChatParams,
    prepared: Prepared<'_>,
    sink: &mut dyn TurnSink,
) -> Result<Answer, AgentError> {
    let input = TurnInput {
        model: prepared.model.clone(),
        incoming: vec![Message::user(params.message.clone())],
        include_memory: params.include_memory,
        history: Vec::new(),
        summary: None,
        policy: agent.chat_policy.clone(),
        approver: Approver::Nobody(NOBODY),
        client: ClientTurn::default(),
    };
    run_input(agent, sessions, prepared, input, sink)
}

/// Why a tool needing approval gets the fallback on a route where nobody watches.
const NOBODY: &str = "nobody can approve it on this route";

/// Runs `input` as the prepared chat. In a session, the session's history (summarised when
/// it outgrew its budget) replaces `input.history`, every new message is persisted, and a
/// sink that can approve decides on tools; without one, `input` runs as it is.
pub fn run_input(
    agent: &Agent,
    sessions: &SessionStore,
    prepared: Prepared<'_>,
    mut input: TurnInput,
    sink: &mut dyn TurnSink,
) -> Result<Answer, AgentError> {
    let Prepared { model, session } = prepared;
    let Some(claim) = session else {
        return run_turn(agent, input, sink);
    };
    let id = claim.id().to_string();
    let (summary, history) =
        prepare_history(agent, sessions, &id, &model, input.include_memory, &*sink)?;
    if sink.can_approve() {
        input.approver = Approver::Client {
            session_id: id.clone(),
        };
    }
    input.history = history;
    input.summary = summary;
    let mut persisting = Persisting {
        inner: sink,
        sessions,
        session_id: &id,
        failed: None,
    };
    let outcome = run_turn(agent, input, &mut persisting);
    let failed = persisting.failed;
    drop(claim);
    if let Some(e) = failed {
        return Err(AgentError::Storage(e));
    }
    let mut answer = outcome?;
    answer.session_id = Some(id);
    Ok(answer)
}

/// Forwards events and commits each new message to the session as it is produced.
struct Persisting<'a> {
    inner: &'a mut dyn TurnSink,
    sessions: &'a SessionStore,
    session_id: &'a str,
    failed: Option<StoreError>,
}

impl TurnSink for Persisting<'_> {
    fn emit(&mut self, event: TurnEvent) -> bool {
        self.inner.emit(event)
    }

    fn cancelled(&self) -> bool {
        self.failed.is_some() || self.inner.cancelled()
    }

    fn can_approve(&self) -> bool {
        self.inner.can_approve()
    }

    fn cancel_check(&self) -> Option<crate::providers::cancel::CancelCheck> {
        self.inner.cancel_check()
    }

    fn await_decision(
        &mut self,
        pending: &super::approval::Pending<'_>,
        timeout: std::time::Duration,
    ) -> super::approval::Waited {
        self.inner.await_decision(pending, timeout)
    }

    fn message(&mut self, msg: &Message) {
        if self.failed.is_none()
            && let Err(e) = self.sessions.append(self.session_id, msg)
        {
            log::error!("cannot save a message of session {}: {e}", self.session_id);
            self.failed = Some(e);
        }
        self.inner.message(msg)
    }
}

fn size(m: &StoredMessage) -> usize {
    m.content.len()
        + m.context.as_ref().map_or(0, |c| c.text.len())
        + m.tool_calls
            .iter()
            .map(|c| c.name.len() + c.arguments.to_string().len())
            .sum::<usize>()
}

/// The session's history for the next turn. When it is larger than `agent.history_chars`,
/// the older part (cut at a user message, so tool calls keep their results) is folded into
/// the session's summary by the model, and the summary is kept. Before that, a silent turn
/// over the whole history lets the model save to memory what should outlast the details.
fn prepare_history(
    agent: &Agent,
    sessions: &SessionStore,
    id: &str,
    model: &ModelRef,
    include_memory: bool,
    sink: &dyn TurnSink,
) -> Result<(Option<String>, Vec<Message>), AgentError> {
    let ctx = sessions.context(id)?;
    let budget = agent.settings.history_chars;
    let total: usize = ctx.messages.iter().map(size).sum();
    let summary_of = |s: &str| (!s.is_empty()).then(|| s.to_string());
    let all = |ctx: &crate::sessions::SessionContext| {
        ctx.messages.iter().map(StoredMessage::to_message).collect()
    };
    if total <= budget {
        return Ok((summary_of(&ctx.summary), all(&ctx)));
    }
    // Keep the newest messages within half the budget, starting at a user message.
    let mut kept = 0;
    let mut cut = ctx.messages.len();
    for (i, m) in ctx.messages.iter().enumerate().rev() {
        kept += size(m);
        if kept > budget / 2 {
            break;
        }
        if m.role == Role::User {
            cut = i;
        }
    }
    if cut == 0 {
        return Ok((summary_of(&ctx.summary), all(&ctx)));
    }
    let older = &ctx.messages[..cut];
    flush_memory(agent, model, include_memory, &ctx, sink)?;
    let summary = summarise(agent, model, &ctx.summary, older)?;
    sessions.set_summary(id, &summary, older[older.len() - 1].id)?;
    log::info!(
        "session {id}: summarised {} older messages into {} characters",
        older.len(),
        summary.len()
    );
    Ok((
        Some(summary),
        ctx.messages[cut..]
            .iter()
            .map(StoredMessage::to_message)
            .collect(),
    ))
}

fn summarise(
    agent: &Agent,
    model: &ModelRef,
    previous: &str,
    older: &[StoredMessage],
) -> Result<String, AgentError> {
    let provider = agent.providers.get(model);
    let mut transcript = String::new();
    if !previous.is_empty() {
        transcript.push_str(&format!("Summary so far:\n{previous}\n\nLater messages:\n"));
    }
    for m in older {
        let who = match m.role {
            Role::User => "User",
            Role::Assistant => "Assistant",
            Role::Tool => "Tool result",
        };
        let text = cap(m.content.clone(), 4000);
        transcript.push_str(&format!("{who}: {text}\n"));
        for c in &m.tool_calls {
            transcript.push_str(&format!("(called {} with {})\n", c.name, c.arguments));
        }
    }
    let request = ChatRequest {
        model: model.name().to_string(),
        system: "You condense conversations. Write a faithful summary of the conversation below: \
                 facts learned about the user, decisions, open tasks, and what each tool call found. \
                 Keep names, numbers and dates exact. Answer with the summary only."
            .into(),
        messages: vec![Message::user(transcript)],
        tools: Vec::new(),
        max_tokens: agent.settings.max_tokens,
        ..Default::default()
    };
    let done = provider.complete(&request, &mut |_| true)?;
    Ok(done.text.trim().to_string())
}

/// The message of the silent turn before a summary.
pub const FLUSH_REQUEST: &str = "[From LocalGPT, not from the user] The older part of this \
conversation is about to be condensed into a short summary, and its details will be gone. \
Save now, with memory_append, what should last and is not saved yet: facts about the user, \
decisions, plans, open tasks (target \"memory\" for lasting facts, \"daily\" for today's \
events). Then answer only: done.";

/// Runs the silent turn that lets the model save what should last before older turns are
/// summarised: the whole history as the last turn sent it (so the provider's prompt cache
/// serves it), the same tools offered, but only `memory_append` runs. Nothing of it is
/// kept in the session or shown to the client. Skipped when it could save nothing; a
/// failure is logged and the summary goes ahead.
fn flush_memory(
    agent: &Agent,
    model: &ModelRef,
    include_memory: bool,
    ctx: &crate::sessions::SessionContext,
    sink: &dyn TurnSink,
) -> Result<(), AgentError> {
    if let Some(why) = flush_skipped(agent, model) {
        log::debug!("no memory flush before the summary: {why}");
        return Ok(());
    }
    let input = TurnInput {
        model: model.clone(),
        incoming: vec![Message::user(FLUSH_REQUEST)],
        include_memory,
        history: ctx.messages.iter().map(StoredMessage::to_message).collect(),
        summary: (!ctx.summary.is_empty()).then(|| ctx.summary.clone()),
        policy: flush_policy(),
        approver: Approver::Nobody("only memory_append runs while a conversation is condensed"),
        client: ClientTurn::default(),
    };
    match run_turn(agent, input, &mut Silent(sink)) {
        Ok(answer) => {
            let saved = answer
                .tools_used
                .iter()
                .filter(|t| t.name == "memory_append")
                .count();
            log::info!("memory flush before the summary: {saved} memory_append call(s)");
            Ok(())
        }
        Err(e) if e.is_cancelled() => Err(e),
        Err(e) => {
            log::warn!("memory flush before the summary failed (summarising anyway): {e}");
            Ok(())
        }
    }
}

/// Why a flush could save nothing, if so.
fn flush_skipped(agent: &Agent, model: &ModelRef) -> Option<&'static str> {
    if model.provider() == ProviderKind::ClaudeCli {
        Some("the claude-cli provider is offered no tools")
    } else if agent.chat_policy.needs_approval("memory_append") {
        Some("memory_append needs approval (tools.require_approval), and nobody can give it")
    } else if !writable(agent.memory.workspace()) {
        Some("the workspace is read-only")
    } else {
        None
    }
}

/// Every tool is offered as in any turn, so the request keeps the prefix the provider
/// cached, but only `memory_append` runs.
fn flush_policy() -> Policy {
    Policy {
        require_approval: vec![ToolPattern::any()],
        exempt: "memory_append".parse().into_iter().collect(),
        fallback: Fallback::Deny,
    }
}

/// Whether a file can be created where the daily logs go (a read-only mount, or a folder
/// of someone else's, cannot). The probe is named like a temp file of
/// [`crate::durable::write_atomic`], so a crash leaves nothing the sweep misses.
fn writable(workspace: &std::path::Path) -> bool {
    let logs = workspace.join("memory");
    let dir = if logs.is_dir() {
        logs.as_path()
    } else {
        workspace
    };
    let probe = dir.join(format!(
        ".write-probe.tmp-{}-{}",
        std::process::id(),
        uuid::Uuid::new_v4().simple()
    ));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&probe)
    {
        Ok(_) => {
            let _ = std::fs::remove_file(&probe);
            true
        }
        Err(_) => false,
    }
}

/// A turn nobody sees: its messages are not kept and its events go nowhere, but the client
/// going away still stops it.
struct Silent<'a>(&'a dyn TurnSink);

impl TurnSink for Silent<'_> {
    fn emit(&mut self, _event: TurnEvent) -> bool {
        !self.0.cancelled()
    }

    fn cancelled(&self) -> bool {
        self.0.cancelled()
    }

    fn cancel_check(&self) -> Option<CancelCheck> {
        self.0.cancel_check()
    }
}
