//! One allowed chat: its messages in order, each a turn in the chat's session (or a
//! command), answered as plain text; "typing…" while the model works; tools that need
//! approval asked with buttons.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crossbeam_channel::{Receiver, RecvTimeoutError, bounded, select};
use serde_json::{Value, json};

use super::Shared;
use super::text::{HELP, MAX_MESSAGE, split};
use crate::agent::AgentError;
use crate::agent::approval::{Pending, Waited};
use crate::agent::chat::{self, ChatParams};
use crate::agent::events::{TurnEvent, TurnSink};

/// Telegram shows "typing…" for about five seconds; renewed a little sooner.
const TYPING_EVERY: Duration = Duration::from_secs(4);

/// Longest rendering of a tool's arguments in an approval question.
const MAX_ARGUMENTS_CHARS: usize = 1500;

/// A message for a chat's worker.
pub struct Job {
    pub update_id: i64,
    /// `None` for a message that is not text (a photo, a sticker).
    pub text: Option<String>,
}

/// Serves one chat's messages, one at a time, until the bridge stops.
pub fn work(shared: &Shared, chat: i64, jobs: &Receiver<Job>) {
    loop {
        select! {
            recv(jobs) -> job => {
                let Ok(job) = job else { return };
                let _busy = shared.busy();
                let text = job.text.as_deref();
                // A bug in one turn must not leave the chat without its worker.
                if catch_unwind(AssertUnwindSafe(|| handle(shared, chat, text))).is_err() {
                    log::error!("telegram: a turn in chat {chat} panicked");
                    shared.say(chat, "Sorry, something went wrong; see the daemon log.");
                }
                shared.store.answered(chat, job.update_id);
            }
            recv(shared.stop) -> _ => return,
        }
    }
}

/// The command a message starts with (`/new`, `/new@MyBot` → `new`), if any.
fn command(text: &str) -> Option<&str> {
    let word = text.trim().strip_prefix('/')?.split_whitespace().next()?;
    Some(word.split('@').next().unwrap_or(word))
}

fn handle(shared: &Shared, chat: i64, text: Option<&str>) {
    let Some(text) = text.filter(|t| !t.trim().is_empty()) else {
        shared.say(chat, "I can only read text messages.");
        return;
    };
    match command(text) {
        Some("help" | "start") => shared.say(chat, HELP),
        Some("new") => match new_session(shared, chat) {
            Ok(_) => shared.say(
                chat,
                "New conversation started. (What I keep in memory stays.)",
            ),
            Err(e) => shared.say(chat, &format!("Sorry, I could not start one: {e}")),
        },
        Some(other) => shared.say(chat, &format!("I do not know /{other}.\n\n{HELP}")),
        None => turn(shared, chat, text),
    }
}

/// Starts a session for `chat` and remembers it.
fn new_session(shared: &Shared, chat: i64) -> Result<String, AgentError> {
    let agent = shared.host.agent();
    let model = agent.settings.default_model.to_string();
    let session = shared.host.sessions().create(&model)?;
    shared.store.set_session(chat, &session.session_id);
    log::info!(
        "telegram: chat {chat} now talks in session {}",
        session.session_id
    );
    Ok(session.session_id)
}

fn turn(shared: &Shared, chat: i64, text: &str) {
    let agent = shared.host.agent();
    let sessions = shared.host.sessions();
    let session = match shared.store.session(chat) {
        Some(s) => Ok(s),
        None => new_session(shared, chat),
    };
    let mut params = ChatParams {
        message: text.to_string(),
        model: None,
        include_memory: true,
        session_id: session.ok(),
    };
    let mut prepared = chat::prepare(agent, sessions, &params, false);
    if let Err(AgentError::SessionNotFound(_)) = prepared {
        // Deleted over the API: carry on in a new one.
        params.session_id = new_session(shared, chat).ok();
        prepared = chat::prepare(agent, sessions, &params, false);
    }
    let prepared = match prepared {
        Ok(p) if p.session.is_some() => p,
        Ok(_) => {
            shared.say(
                chat,
                "Sorry, I cannot open a conversation right now; see the daemon log.",
            );
            return;
        }
        Err(e) => {
            shared.say(chat, &format!("Sorry, that did not work: {e}"));
            return;
        }
    };
    let waiting = AtomicBool::new(false);
    let (stop_typing, typing_stopped) = bounded::<()>(0);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| typing(shared, chat, &waiting, &typing_stopped));
        let mut sink = Sink {
            shared,
            chat,
            waiting: &waiting,
            asked: Vec::new(),
        };
        let result = chat::run(agent, sessions, &params, prepared, &mut sink);
        drop(stop_typing);
        result
    });
    match result {
        Ok(answer) => {
            let pieces = split(&answer.response, MAX_MESSAGE);
            if pieces.is_empty() {
                shared.say(chat, "(The model gave no text answer.)");
            }
            for piece in pieces {
                if shared.send(chat, &piece, None).is_err() {
                    break;
                }
            }
        }
        Err(e) if e.is_cancelled() && shared.stopping() => shared.say(
            chat,
            "I was stopped before I could answer (the assistant is restarting). Please send your message again in a moment.",
        ),
        Err(e) => shared.say(chat, &format!("Sorry, that did not work: {e}")),
    }
}

/// Keeps "typing…" showing while the turn runs, except while a question waits for the
/// user's button.
fn typing(shared: &Shared, chat: i64, waiting: &AtomicBool, stopped: &Receiver<()>) {
    loop {
        if !waiting.load(Ordering::SeqCst)
            && let Err(e) = shared.api.send_typing(chat)
        {
            log::debug!("telegram: typing in chat {chat}: {e}");
        }
        if !matches!(
            stopped.recv_timeout(TYPING_EVERY),
            Err(RecvTimeoutError::Timeout)
        ) {
            return;
        }
    }
}

/// The question for a tool call, and its buttons (the request id rides in the button data;
/// `approve:apr_<32 hex>` is well within Telegram's 64 bytes).
fn question(request_id: &str, tool: &str, arguments: &Value) -> (String, Value) {
    let mut args = serde_json::to_string_pretty(arguments).unwrap_or_default();
    if let Some((at, _)) = args.char_indices().nth(MAX_ARGUMENTS_CHARS) {
        args.truncate(at);
        args.push('…');
    }
    let text = format!("May I run {tool}?\n\n{args}");
    let keyboard = json!([[
        {"text": "Approve", "callback_data": format!("approve:{request_id}")},
        {"text": "Deny", "callback_data": format!("deny:{request_id}")},
    ]]);
    (text, keyboard)
}

/// A turn's events in a chat: only the questions matter; the answer is sent whole at the
/// end (Telegram messages are not streamed).
struct Sink<'a> {
    shared: &'a Shared,
    chat: i64,
    waiting: &'a AtomicBool,
    /// Questions sent: (request id, message id, text).
    asked: Vec<(String, i64, String)>,
}

impl TurnSink for Sink<'_> {
    fn emit(&mut self, event: TurnEvent) -> bool {
        match event {
            TurnEvent::ApprovalRequired {
                request_id,
                tool,
                arguments,
            } => {
                let (text, keyboard) = question(&request_id, &tool, &arguments);
                match self.shared.send(self.chat, &text, Some(keyboard)) {
                    Ok(message_id) => self.asked.push((request_id, message_id, text)),
                    // Nobody can be asked: the tool is denied.
                    Err(_) => return false,
                }
            }
            TurnEvent::Error { code, message } if code == "approval_timeout" => {
                if let Some((_, message_id, text)) = self
                    .asked
                    .iter()
                    .find(|(id, _, _)| message.contains(id.as_str()))
                {
                    let note = format!("{text}\n\n(No answer in time: denied.)");
                    let _ = self
                        .shared
                        .api
                        .edit_message_text(self.chat, *message_id, &note);
                }
            }
            _ => {}
        }
        !self.cancelled()
    }

    fn cancelled(&self) -> bool {
        self.shared.stopping()
    }

    fn cancel_check(&self) -> Option<crate::providers::cancel::CancelCheck> {
        Some(self.shared.cancel_check())
    }

    fn can_approve(&self) -> bool {
        true
    }

    /// Waits on the approval registry, where the button press arrives (`tools.approval_timeout`
    /// applies).
    fn await_decision(&mut self, pending: &Pending<'_>, timeout: Duration) -> Waited {
        self.waiting.store(true, Ordering::SeqCst);
        let waited = pending.wait(timeout, &|| self.cancelled());
        self.waiting.store(false, Ordering::SeqCst);
        waited
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_recognised() {
        assert_eq!(command("/new"), Some("new"));
        assert_eq!(command("  /help@MyBot please"), Some("help"));
        assert_eq!(command("hello /new"), None);
        assert_eq!(command("/"), None);
    }

    #[test]
    fn questions_carry_the_request_id_in_the_buttons() {
        let id = format!("apr_{}", "0".repeat(32));
        let (text, keyboard) = question(&id, "bash", &json!({"command": "ls"}));
        assert!(text.contains("bash") && text.contains("\"ls\""));
        let approve = keyboard[0][0]["callback_data"].as_str().unwrap();
        assert_eq!(approve, format!("approve:{id}"));
        assert!(approve.len() <= 64);
        assert_eq!(keyboard[0][1]["callback_data"], format!("deny:{id}"));
    }
}
