//! A chat turn inside a session: history in, every new message persisted as it happens,
//! older history summarised when it outgrows its budget.

use std::collections::HashSet;
use std::fmt;
use std::sync::Mutex;

use super::approval::{Decision, Policy};
use super::tools::ToolOutput;
use super::turn::{TurnError, TurnEvents, TurnInput, TurnOutcome, run_turn};
use crate::app::App;
use crate::config::Fallback;
use crate::providers::{ChatRequest, Message, ProviderError, Role, ToolCall};
use crate::sessions::{StoreError, StoredMessage};

/// What a client asked for.
#[derive(Debug, Clone)]
pub struct ChatParams {
    pub message: String,
    /// `provider/model`, or `None` for the session's model, else the default.
    pub model: Option<String>,
    pub include_memory: bool,
    pub session_id: Option<String>,
}

/// Why a chat did not produce an answer.
#[derive(Debug)]
pub enum ChatError {
    SessionNotFound(String),
    SessionBusy(String),
    Turn(TurnError),
    Store(StoreError),
}

impl fmt::Display for ChatError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ChatError::SessionNotFound(id) => write!(f, "session {id} not found"),
            ChatError::SessionBusy(id) => write!(
                f,
                "session {id} is already running a turn; wait for it to finish"
            ),
            ChatError::Turn(e) => write!(f, "{e}"),
            ChatError::Store(e) => write!(f, "{e}"),
        }
    }
}

impl From<StoreError> for ChatError {
    fn from(e: StoreError) -> Self {
        ChatError::Store(e)
    }
}

impl From<TurnError> for ChatError {
    fn from(e: TurnError) -> Self {
        ChatError::Turn(e)
    }
}

/// Sessions with a turn in progress; a second concurrent turn on one session is refused.
#[derive(Default)]
pub struct BusySessions(Mutex<HashSet<String>>);

/// Marks a session busy until dropped.
pub struct BusyGuard<'a> {
    set: &'a BusySessions,
    id: String,
}

impl BusySessions {
    pub fn claim(&self, id: &str) -> Option<BusyGuard<'_>> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(id.to_string()).then(|| BusyGuard {
            set: self,
            id: id.to_string(),
        })
    }
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.id);
    }
}

/// Resolves the model and session of a request before anything is streamed, so a bad
/// model or unknown session is a plain HTTP error. Creates a session when `create` is set
/// and none was named.
pub fn resolve(
    app: &App,
    params: &ChatParams,
    create: bool,
) -> Result<(String, Option<String>), ChatError> {
    let session = match &params.session_id {
        Some(id) => Some(
            app.sessions
                .get(id)?
                .ok_or_else(|| ChatError::SessionNotFound(id.clone()))?,
        ),
        None => None,
    };
    let model = params
        .model
        .clone()
        .or_else(|| session.as_ref().map(|s| s.model.clone()))
        .unwrap_or_else(|| app.config.agent.default_model.clone());
    crate::config::split_model(&model).map_err(|m| ChatError::Turn(TurnError::BadModel(m)))?;
    let session_id = match session {
        Some(s) => Some(s.session_id),
        None if create => Some(app.sessions.create(&model)?.session_id),
        None => None,
    };
    Ok((model, session_id))
}

/// Runs a turn for `params` (already resolved to `model` and `session_id`).
pub fn run_chat(
    app: &App,
    params: &ChatParams,
    model: &str,
    session_id: Option<&str>,
    events: &mut dyn TurnEvents,
) -> Result<TurnOutcome, ChatError> {
    let Some(id) = session_id else {
        let input = TurnInput {
            model: model.to_string(),
            message: params.message.clone(),
            include_memory: params.include_memory,
            history: Vec::new(),
            summary: None,
            policy: Policy::for_chat(&app.config),
        };
        return Ok(run_turn(app, input, events)?);
    };
    let busy = claim(app, id)?;
    run_claimed(app, params, model, &busy, events)
}

/// Marks session `id` busy for a turn, or says it is in one already.
pub fn claim<'a>(app: &'a App, id: &str) -> Result<BusyGuard<'a>, ChatError> {
    app.busy
        .claim(id)
        .ok_or_else(|| ChatError::SessionBusy(id.to_string()))
}

/// Runs a turn in the session the caller has claimed (so a stream can answer `409`
/// before its head is sent).
pub fn run_claimed(
    app: &App,
    params: &ChatParams,
    model: &str,
    claimed: &BusyGuard<'_>,
    events: &mut dyn TurnEvents,
) -> Result<TurnOutcome, ChatError> {
    let id = claimed.id.as_str();
    let (summary, history) = prepare_history(app, id, model)?;
    let input = TurnInput {
        model: model.to_string(),
        message: params.message.clone(),
        include_memory: params.include_memory,
        history,
        summary,
        policy: Policy::for_chat(&app.config),
    };
    let mut persisting = Persisting {
        inner: events,
        app,
        session_id: id,
        failed: None,
    };
    let outcome = run_turn(app, input, &mut persisting);
    if let Some(e) = persisting.failed {
        return Err(ChatError::Store(e));
    }
    Ok(outcome?)
}

/// Forwards events and commits each new message to the session as it is produced.
struct Persisting<'a> {
    inner: &'a mut dyn TurnEvents,
    app: &'a App,
    session_id: &'a str,
    failed: Option<StoreError>,
}

impl TurnEvents for Persisting<'_> {
    fn delta(&mut self, text: &str) -> bool {
        self.inner.delta(text)
    }
    fn tool_start(&mut self, call: &ToolCall) {
        self.inner.tool_start(call)
    }
    fn tool_end(&mut self, call: &ToolCall, output: &ToolOutput) {
        self.inner.tool_end(call, output)
    }
    fn approve(&mut self, call: &ToolCall, fallback: Fallback) -> Decision {
        self.inner.approve(call, fallback)
    }
    fn cancelled(&self) -> bool {
        self.failed.is_some() || self.inner.cancelled()
    }
    fn message(&mut self, msg: &Message) {
        if self.failed.is_none()
            && let Err(e) = self.app.sessions.append(self.session_id, msg)
        {
            log::error!("cannot save a message of session {}: {e}", self.session_id);
            self.failed = Some(e);
        }
        self.inner.message(msg)
    }
}

fn size(m: &StoredMessage) -> usize {
    m.content.len()
        + m.tool_calls
            .iter()
            .map(|c| c.name.len() + c.arguments.to_string().len())
            .sum::<usize>()
}

/// The session's history for the next turn. When it is larger than `agent.history_chars`,
/// the older part (cut at a user message, so tool calls keep their results) is folded into
/// the session's summary by the model, and the summary is kept.
fn prepare_history(
    app: &App,
    id: &str,
    model: &str,
) -> Result<(Option<String>, Vec<Message>), ChatError> {
    let ctx = app.sessions.context(id)?;
    let budget = app.config.agent.history_chars;
    let total: usize = ctx.messages.iter().map(size).sum();
    let summary_of = |s: &str| (!s.is_empty()).then(|| s.to_string());
    if total <= budget {
        return Ok((
            summary_of(&ctx.summary),
            ctx.messages.iter().map(StoredMessage::to_message).collect(),
        ));
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
        return Ok((
            summary_of(&ctx.summary),
            ctx.messages.iter().map(StoredMessage::to_message).collect(),
        ));
    }
    let older = &ctx.messages[..cut];
    let summary = summarise(app, model, &ctx.summary, older)?;
    app.sessions
        .set_summary(id, &summary, older[older.len() - 1].id)?;
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
    app: &App,
    model: &str,
    previous: &str,
    older: &[StoredMessage],
) -> Result<String, ChatError> {
    let (provider, name) = app
        .providers
        .get(model)
        .map_err(|m| ChatError::Turn(TurnError::BadModel(m)))?;
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
        let text = crate::agent::tools::cap(m.content.clone(), 4000);
        transcript.push_str(&format!("{who}: {text}\n"));
        for c in &m.tool_calls {
            transcript.push_str(&format!("(called {} with {})\n", c.name, c.arguments));
        }
    }
    let request = ChatRequest {
        model: name,
        system: "You condense conversations. Write a faithful summary of the conversation below: \
                 facts learned about the user, decisions, open tasks, and what each tool call found. \
                 Keep names, numbers and dates exact. Answer with the summary only."
            .into(),
        messages: vec![Message::user(transcript)],
        tools: Vec::new(),
        max_tokens: app.config.agent.max_tokens,
    };
    let done = provider
        .complete(&request, &mut |_| true)
        .map_err(|e: ProviderError| ChatError::Turn(TurnError::Provider(e)))?;
    Ok(done.text.trim().to_string())
}
