//! The Telegram bridge: a bot that the allowed users chat with, and that passes on
//! heartbeat alerts.
//!
//! Threads: one long-polls `getUpdates` and sorts what comes in (a stranger's update is
//! dropped with a log line that has no text; a button press is decided at once through
//! the approval registry; a message goes to its chat's worker); one worker per chat runs
//! that chat's turns in order ([`chat`]); one sends heartbeat alerts. Offsets, sessions and
//! unanswered messages persist in [`state`]. Failures are sorted by [`api::BotError`]: an
//! outage is retried with backoff (logged once), a 429 waits what Telegram asks, a refused
//! token stops the bridge with one log line.

pub mod api;
mod chat;
pub mod state;
pub mod text;

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, select, unbounded};
use serde::Serialize;

use super::Host;
use super::feed::{Entry, Event, Feed};
use crate::agent::approval::Decision;
use crate::config::TelegramConfig;
use crate::heartbeat::RunStatus;
use crate::providers::cancel::{CancelCheck, watched};
use crate::sync::lock;
use api::{BotApi, BotError, CallbackQuery, Update};
use state::Store;

/// First wait after a failed poll; doubled up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_secs(1);

/// Longest wait between two polls while Telegram is unreachable.
const MAX_BACKOFF: Duration = Duration::from_secs(60);

/// Tries of one send while Telegram is unreachable or rate limiting, before the message
/// is given up.
const SEND_TRIES: u32 = 5;

/// The file the bridge keeps its state in, inside the state dir.
pub const STATE_FILE: &str = "telegram.json";

/// How the bridge is doing, as `/api/status` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Health {
    /// `off` (no token), `polling`, or `failing`.
    pub state: &'static str,
    /// Why it is failing.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The bot's `@username`, once known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot: Option<String>,
}

/// The bridge's health, shared with the API.
pub struct Status(Mutex<Health>);

impl Status {
    /// `off` without a token, else `polling` until something fails.
    pub fn new(config: &TelegramConfig) -> Status {
        Status(Mutex::new(Health {
            state: if config.enabled() { "polling" } else { "off" },
            reason: None,
            bot: None,
        }))
    }

    pub fn health(&self) -> Health {
        lock(&self.0).clone()
    }

    fn failing(&self) -> bool {
        lock(&self.0).state == "failing"
    }

    fn set(&self, state: &'static str, reason: Option<String>) {
        let mut h = lock(&self.0);
        h.state = state;
        h.reason = reason;
    }
}

/// What every bridge thread shares.
pub(crate) struct Shared {
    api: BotApi,
    store: Store,
    host: Arc<dyn Host>,
    status: Arc<Status>,
    config: TelegramConfig,
    /// Set on shutdown, or when the token was refused.
    stopping: Arc<AtomicBool>,
    /// Disconnects on shutdown: wakes every wait.
    stop: Receiver<()>,
    /// Turns and sends in progress, for a shutdown that waits for them.
    busy: Mutex<usize>,
    idle: Condvar,
}

/// Counts one piece of work in progress while it lives.
pub(crate) struct Busy<'a>(&'a Shared);

impl Drop for Busy<'_> {
    fn drop(&mut self) {
        *lock(&self.0.busy) -= 1;
        self.0.idle.notify_all();
    }
}

impl Shared {
    fn stopping(&self) -> bool {
        self.stopping.load(Ordering::SeqCst)
    }

    /// Asks whether the bridge is stopping, from a thread waiting on Telegram or a model.
    fn cancel_check(&self) -> CancelCheck {
        let stopping = self.stopping.clone();
        Arc::new(move || stopping.load(Ordering::SeqCst))
    }

    fn busy(&self) -> Busy<'_> {
        *lock(&self.busy) += 1;
        Busy(self)
    }

    /// Sleeps `d`; false if the bridge stopped meanwhile.
    fn sleep(&self, d: Duration) -> bool {
        matches!(self.stop.recv_timeout(d), Err(RecvTimeoutError::Timeout)) && !self.stopping()
    }

    fn allowed(&self, user: i64) -> bool {
        self.config.allowed_users.contains(&user)
    }

    /// A refused token: one clear log line, the status says why, everything stops.
    fn fatal(&self, e: &BotError) {
        if self.stopping.swap(true, Ordering::SeqCst) {
            return;
        }
        let why = format!("{e}; the Telegram bridge stopped");
        log::error!("telegram: {why}");
        self.status.set("failing", Some(why));
    }

    /// Polling failed: logged when an outage begins, not at every try.
    fn outage(&self, e: &BotError) {
        let why = e.to_string();
        if !self.status.failing() {
            log::warn!("telegram: {why}; retrying with backoff (not logged again until it works)");
        }
        self.status.set("failing", Some(why));
    }

    fn recovered(&self) {
        if self.status.failing() {
            log::info!("telegram: reachable again; polling");
            self.status.set("polling", None);
        }
    }

    /// Sends one message, waiting out rate limits and short outages; the message id.
    fn send(
        &self,
        chat: i64,
        text: &str,
        keyboard: Option<serde_json::Value>,
    ) -> Result<i64, BotError> {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            let e = match self.api.send_message(chat, text, keyboard.clone()) {
                Ok(id) => return Ok(id),
                Err(e) => e,
            };
            let wait = match &e {
                BotError::RetryAfter(d) => *d,
                BotError::Unavailable(_) => backoff,
                fatal if fatal.is_fatal() => {
                    self.fatal(fatal);
                    return Err(e);
                }
                _ => {
                    log::warn!("telegram: a message to chat {chat} was not sent: {e}");
                    return Err(e);
                }
            };
            if tries >= SEND_TRIES || !self.sleep(wait) {
                log::warn!("telegram: a message to chat {chat} was given up: {e}");
                return Err(e);
            }
            log::debug!("telegram: send to chat {chat} retried after {wait:?}: {e}");
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Sends a short notice, ignoring failure (already logged).
    fn say(&self, chat: i64, text: &str) {
        let _ = self.send(chat, text, None);
    }
}

/// The running bridge; [`Bridge::stop`] ends it.
pub struct Bridge {
    shared: Arc<Shared>,
    /// Dropping it wakes and ends every bridge thread.
    stop: Option<Sender<()>>,
}

/// Starts the bridge when a token is set: the poller, and the alert sender if alerts have
/// somewhere to go. `state_dir` holds [`STATE_FILE`].
pub fn spawn(
    config: &TelegramConfig,
    host: Arc<dyn Host>,
    feed: &Feed,
    status: Arc<Status>,
    state_dir: &Path,
) -> Option<Bridge> {
    if !config.enabled() {
        return None;
    }
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let shared = Arc::new(Shared {
        api: BotApi::new(config),
        store: Store::load(&state_dir.join(STATE_FILE)),
        host,
        status,
        config: config.clone(),
        stopping: Arc::new(AtomicBool::new(false)),
        stop: stop_rx,
        busy: Mutex::new(0),
        idle: Condvar::new(),
    });
    if config.allowed_users.is_empty() {
        log::warn!(
            "telegram: telegram.allowed_users is empty: every message will be ignored (see docs/reach.md to find your user id)"
        );
    }
    match config.alerts_chat() {
        Some(chat) => {
            let alerts = feed.subscribe();
            let s = shared.clone();
            spawn_thread("telegram-alerts", move || send_alerts(&s, &alerts, chat));
        }
        None => log::info!(
            "telegram: no alerts_chat_id and no allowed user: heartbeat alerts are not sent"
        ),
    }
    let s = shared.clone();
    spawn_thread("telegram-poll", move || poll(&s));
    Some(Bridge {
        shared,
        stop: Some(stop_tx),
    })
}

fn spawn_thread(name: &str, f: impl FnOnce() + Send + 'static) {
    if let Err(e) = std::thread::Builder::new().name(name.into()).spawn(f) {
        log::error!("telegram: cannot start thread {name}: {e}");
    }
}

impl Bridge {
    /// Stops taking messages, ends the long poll in flight (what it brings is not taken, so
    /// Telegram sends it again after the restart), asks turns in progress to stop, and
    /// waits up to `grace` for all of it.
    pub fn stop(mut self, grace: Duration) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        self.stop = None;
        let deadline = Instant::now() + grace;
        let mut busy = lock(&self.shared.busy);
        while *busy > 0 {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                log::warn!(
                    "telegram: {} turn(s) still running after {grace:?}; not waiting",
                    *busy
                );
                return;
            }
            busy = self
                .shared
                .idle
                .wait_timeout(busy, left)
                .map(|(g, _)| g)
                .unwrap_or_else(|p| p.into_inner().0);
        }
    }
}

/// Checks the token with `getMe` (for `doctor`): the bot's `@username`.
pub fn probe(config: &TelegramConfig) -> Result<String, BotError> {
    let me = BotApi::new(config).get_me()?;
    Ok(me
        .username
        .map(|u| format!("@{u}"))
        .unwrap_or_else(|| format!("bot {}", me.id)))
}

/// The poller: checks the token, tells chats whose answer a restart cut short, then
/// long-polls until the bridge stops.
fn poll(shared: &Arc<Shared>) {
    // Counted as work, so a stop waits the moment it takes a cancelled poll to end.
    let _alive = shared.busy();
    match shared.api.get_me() {
        Ok(me) => {
            let name = me.username.map(|u| format!("@{u}"));
            log::info!(
                "telegram: polling as {} for {} allowed user(s)",
                name.as_deref().unwrap_or("the bot"),
                shared.config.allowed_users.len()
            );
            lock(&shared.status.0).bot = name;
        }
        Err(e) if e.is_fatal() => return shared.fatal(&e),
        Err(e) => shared.outage(&e),
    }
    for (chat, n) in shared.store.take_interrupted() {
        shared.say(
            chat,
            &format!(
                "I was restarted before I could answer {}. Please send it again.",
                if n == 1 {
                    "your last message"
                } else {
                    "your last messages"
                }
            ),
        );
    }
    let mut workers: HashMap<i64, Sender<chat::Job>> = HashMap::new();
    let mut backoff = FIRST_BACKOFF;
    let wait = shared.config.poll_timeout.get();
    while !shared.stopping() {
        let polled = watched(Some(shared.cancel_check()), || {
            shared.api.get_updates(shared.store.offset(), wait)
        });
        if shared.stopping() {
            // What this poll brought is not taken: Telegram sends it again after a restart.
            return;
        }
        let wait_after = match polled {
            Ok(updates) => {
                shared.recovered();
                backoff = FIRST_BACKOFF;
                for update in updates {
                    // What arrives during shutdown is not taken: it comes again after it.
                    if shared.stopping() {
                        return;
                    }
                    take(shared, &mut workers, update);
                }
                continue;
            }
            Err(e) if e.is_fatal() => return shared.fatal(&e),
            Err(BotError::RetryAfter(d)) => {
                shared.outage(&BotError::RetryAfter(d));
                d
            }
            Err(e) => {
                shared.outage(&e);
                let b = backoff;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                b
            }
        };
        if !shared.sleep(wait_after) {
            return;
        }
    }
}

/// Takes one update: moves the offset past it and passes it on.
fn take(
    shared: &Arc<Shared>,
    workers: &mut HashMap<i64, Sender<chat::Job>>,
    update: Result<Update, i64>,
) {
    let update = match update {
        Ok(u) => u,
        Err(id) => {
            log::debug!("telegram: update {id} could not be read; skipped");
            if id >= 0 {
                shared.store.take(id, None);
            }
            return;
        }
    };
    let id = update.update_id;
    if let Some(message) = update.message {
        let user = message.from.as_ref().map_or(0, |u| u.id);
        if !shared.allowed(user) {
            log::info!("telegram: update from user {user} ignored");
            shared.store.take(id, None);
            return;
        }
        let chat = message.chat.id;
        shared.store.take(id, Some(chat));
        let job = chat::Job {
            update_id: id,
            text: message.text,
        };
        dispatch(shared, workers, chat, job);
    } else if let Some(query) = update.callback_query {
        shared.store.take(id, None);
        if !shared.allowed(query.from.id) {
            log::info!("telegram: update from user {} ignored", query.from.id);
            return;
        }
        decide(shared, &query);
    } else {
        shared.store.take(id, None);
    }
}

/// Hands a message to its chat's worker, starting one for a chat seen the first time.
fn dispatch(
    shared: &Arc<Shared>,
    workers: &mut HashMap<i64, Sender<chat::Job>>,
    chat: i64,
    job: chat::Job,
) {
    let job = match workers.get(&chat) {
        Some(tx) => match tx.send(job) {
            Ok(()) => return,
            // The worker is gone (it panicked): start another.
            Err(e) => e.into_inner(),
        },
        None => job,
    };
    let (tx, rx) = unbounded::<chat::Job>();
    let s = shared.clone();
    spawn_thread("telegram-chat", move || chat::work(&s, chat, &rx));
    if tx.send(job).is_ok() {
        workers.insert(chat, tx);
    }
}

/// A button press: the decision goes to the approval registry under the chat's session.
fn decide(shared: &Shared, query: &CallbackQuery) {
    let data = query.data.as_deref().unwrap_or("");
    let parsed = data
        .split_once(':')
        .and_then(|(verb, id)| Some((Decision::parse(verb)?, id)));
    let Some((decision, request_id)) = parsed else {
        let _ = shared
            .api
            .answer_callback_query(&query.id, "This button does nothing.");
        return;
    };
    let approve = decision == Decision::Approve;
    let message = query.message.as_ref();
    let decided = message
        .and_then(|m| shared.store.session(m.chat.id))
        .is_some_and(|session| {
            shared
                .host
                .agent()
                .approvals
                .decide(&session, request_id, decision)
        });
    let notice = match (decided, approve) {
        (true, true) => "Approved",
        (true, false) => "Denied",
        (false, _) => "This question is no longer waiting",
    };
    if let Err(e) = shared.api.answer_callback_query(&query.id, notice) {
        log::debug!("telegram: answerCallbackQuery: {e}");
    }
    if let Some(m) = message {
        let text = format!("{}\n\n({notice}.)", m.text.as_deref().unwrap_or(""));
        if let Err(e) = shared
            .api
            .edit_message_text(m.chat.id, m.message_id, text.trim_start())
        {
            log::debug!("telegram: editMessageText: {e}");
        }
    }
}

/// Sends every heartbeat alert to `chat` until the bridge stops.
fn send_alerts(shared: &Shared, alerts: &Receiver<Arc<Entry>>, chat: i64) {
    loop {
        select! {
            recv(alerts) -> entry => {
                let Ok(entry) = entry else { return };
                let Event::Heartbeat(hb) = &entry.event;
                if hb.status != RunStatus::Alert {
                    continue;
                }
                let _busy = shared.busy();
                let message = format!("Heartbeat alert:\n\n{}", hb.text.as_deref().unwrap_or(""));
                for piece in text::split(&message, text::MAX_MESSAGE) {
                    if shared.send(chat, &piece, None).is_err() {
                        break;
                    }
                }
            }
            recv(shared.stop) -> _ => return,
        }
    }
}
