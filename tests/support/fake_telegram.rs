//! A fake Telegram Bot API server: real HTTP on loopback, the methods the bridge uses, and
//! honest long polling (`getUpdates` is held until an update is queued or its `timeout`
//! passes). It forgets no update: `getUpdates` answers every queued update from `offset`
//! on, so a bridge that lost its offset would be handed old messages again.
//!
//! ```ignore
//! let tg = FakeTelegram::start();
//! // config: tg.toml(&[42], "")
//! tg.message(42, "hello");
//! let replies = tg.wait_sent(42, 1);
//! tg.fail_next("sendMessage", 429, Some(1));
//! ```

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use super::http_server::{HttpServer, Request};

/// The token the fake accepts.
pub const TOKEN: &str = "123456:TEST-SECRET-TOKEN-q8Zr";

/// How long the `wait_*` helpers wait before the test fails.
const WAIT: Duration = Duration::from_secs(30);

/// One Bot API call as the fake received it.
#[derive(Clone, Debug)]
pub struct Call {
    pub method: String,
    pub body: Value,
    pub at: Instant,
    /// The HTTP status it was answered with (0 while a long poll is held).
    pub status: u16,
    /// The `result` of a successful answer.
    pub result: Value,
}

impl Call {
    pub fn text(&self) -> &str {
        self.body["text"].as_str().unwrap_or("")
    }
}

#[derive(Default)]
struct State {
    updates: Vec<Value>,
    next_update: i64,
    next_message: i64,
    calls: Vec<Call>,
    /// (method, status, retry_after) answered to the next call of that method.
    faults: VecDeque<(String, u16, Option<u64>)>,
    /// Sent messages by id: (chat, text), for button presses.
    messages: Vec<(i64, i64, String)>,
}

#[derive(Default)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

/// The fake server; stops accepting when dropped.
pub struct FakeTelegram {
    server: HttpServer,
    shared: Arc<Shared>,
}

impl FakeTelegram {
    /// A fake accepting [`TOKEN`].
    pub fn start() -> FakeTelegram {
        FakeTelegram::with_token(TOKEN)
    }

    /// A fake that accepts only `token` (so a daemon configured with [`TOKEN`] is refused
    /// with 401 when `token` differs).
    pub fn with_token(token: &str) -> FakeTelegram {
        let shared = Arc::new(Shared::default());
        {
            let mut s = shared.state.lock().unwrap();
            s.next_update = 1000;
            s.next_message = 1;
        }
        let token = token.to_string();
        let handler_shared = shared.clone();
        let server = HttpServer::start(move |req| answer(&handler_shared, &token, req));
        FakeTelegram { server, shared }
    }

    pub fn api_base(&self) -> String {
        self.server.url()
    }

    /// A `[telegram]` section for this fake with [`TOKEN`], these allowed users and any
    /// `extra` keys.
    pub fn toml(&self, allowed: &[i64], extra: &str) -> String {
        format!(
            "[telegram]\nbot_token = \"{TOKEN}\"\napi_base = \"{}\"\nallowed_users = {allowed:?}\n\
             poll_timeout = \"5s\"\ntimeout = \"5s\"\n{extra}\n",
            self.api_base()
        )
    }

    fn queue(&self, update: impl FnOnce(i64) -> Value) -> i64 {
        let mut s = self.shared.state.lock().unwrap();
        let id = s.next_update;
        s.next_update += 1;
        s.updates.push(update(id));
        self.shared.changed.notify_all();
        id
    }

    /// `user` writes `text` in their private chat with the bot (chat id = user id).
    pub fn message(&self, user: i64, text: &str) -> i64 {
        self.queue(|id| {
            json!({"update_id": id, "message": {
                "message_id": id, "date": 0, "text": text,
                "from": {"id": user, "is_bot": false, "first_name": "Test"},
                "chat": {"id": user, "type": "private"},
            }})
        })
    }

    /// `user` presses a button with `data` under the bot's message `message_id`.
    pub fn press(&self, user: i64, message_id: i64, data: &str) -> i64 {
        let (chat, text) = {
            let s = self.shared.state.lock().unwrap();
            s.messages
                .iter()
                .find(|(id, _, _)| *id == message_id)
                .map(|(_, chat, text)| (*chat, text.clone()))
                .expect("a message the bot sent")
        };
        self.queue(|id| {
            json!({"update_id": id, "callback_query": {
                "id": format!("cb{id}"), "data": data, "chat_instance": "1",
                "from": {"id": user, "is_bot": false, "first_name": "Test"},
                "message": {"message_id": message_id, "date": 0, "text": text,
                            "chat": {"id": chat, "type": "private"}},
            }})
        })
    }

    /// The next call of `method` is answered `status` (with `retry_after` for a 429).
    pub fn fail_next(&self, method: &str, status: u16, retry_after: Option<u64>) {
        let mut s = self.shared.state.lock().unwrap();
        s.faults
            .push_back((method.to_string(), status, retry_after));
    }

    /// Every call of `method` so far.
    pub fn calls(&self, method: &str) -> Vec<Call> {
        let s = self.shared.state.lock().unwrap();
        s.calls
            .iter()
            .filter(|c| c.method == method)
            .cloned()
            .collect()
    }

    /// Messages delivered to `chat` (answered 200).
    pub fn sent(&self, chat: i64) -> Vec<Call> {
        self.calls("sendMessage")
            .into_iter()
            .filter(|c| c.status == 200 && c.body["chat_id"] == json!(chat))
            .collect()
    }

    /// Waits until `check` over every call so far returns `Some`.
    pub fn wait<T>(&self, what: &str, check: impl Fn(&[Call]) -> Option<T>) -> T {
        let deadline = Instant::now() + WAIT;
        let mut s = self.shared.state.lock().unwrap();
        loop {
            if let Some(v) = check(&s.calls) {
                return v;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "timed out waiting for: {what}");
            s = self.shared.changed.wait_timeout(s, left).unwrap().0;
        }
    }

    /// Waits until `n` messages were delivered to `chat`; returns them.
    pub fn wait_sent(&self, chat: i64, n: usize) -> Vec<Call> {
        self.wait(&format!("{n} message(s) to chat {chat}"), |calls| {
            let sent: Vec<Call> = calls
                .iter()
                .filter(|c| {
                    c.method == "sendMessage" && c.status == 200 && c.body["chat_id"] == json!(chat)
                })
                .cloned()
                .collect();
            (sent.len() >= n).then_some(sent)
        })
    }

    /// Waits until the bridge polls with an offset past `update_id`: it has taken it.
    pub fn wait_taken(&self, update_id: i64) {
        self.wait(&format!("a poll past update {update_id}"), |calls| {
            calls
                .iter()
                .any(|c| c.method == "getUpdates" && c.body["offset"].as_i64() > Some(update_id))
                .then_some(())
        });
    }
}

fn error(status: u16, description: &str, retry_after: Option<u64>) -> (u16, String) {
    let mut body = json!({"ok": false, "error_code": status, "description": description});
    if let Some(secs) = retry_after {
        body["parameters"] = json!({"retry_after": secs});
    }
    (status, body.to_string())
}

fn ok(result: Value) -> (u16, String) {
    (200, json!({"ok": true, "result": result}).to_string())
}

fn answer(shared: &Shared, token: &str, req: &Request) -> (u16, String) {
    let body: Value = serde_json::from_str(&req.body).unwrap_or(Value::Null);
    let (given, method) = req
        .path
        .strip_prefix("/bot")
        .and_then(|rest| rest.split_once('/'))
        .unwrap_or(("", ""));
    let method = method.to_string();
    // Recorded as it arrives (a long poll answers much later), its status set once known.
    let (index, fault) = {
        let mut s = shared.state.lock().unwrap();
        s.calls.push(Call {
            method: method.clone(),
            body: body.clone(),
            at: Instant::now(),
            status: 0,
            result: Value::Null,
        });
        let at = s.faults.iter().position(|(m, _, _)| *m == method);
        let fault = if given == token {
            at.and_then(|i| s.faults.remove(i))
        } else {
            None
        };
        shared.changed.notify_all();
        (s.calls.len() - 1, fault)
    };
    let (status, text) = if given != token {
        error(401, "Unauthorized", None)
    } else {
        match fault {
            Some((_, status, retry_after)) => {
                let what = if status == 429 {
                    format!(
                        "Too Many Requests: retry after {}",
                        retry_after.unwrap_or(0)
                    )
                } else {
                    "Internal Server Error".to_string()
                };
                error(status, &what, retry_after)
            }
            None => serve(shared, &method, &body),
        }
    };
    let result = serde_json::from_str::<Value>(&text)
        .map(|v| v["result"].clone())
        .unwrap_or(Value::Null);
    let mut s = shared.state.lock().unwrap();
    s.calls[index].status = status;
    s.calls[index].result = result;
    shared.changed.notify_all();
    (status, text)
}

fn serve(shared: &Shared, method: &str, body: &Value) -> (u16, String) {
    match method {
        "getMe" => {
            ok(json!({"id": 123456, "is_bot": true, "first_name": "Test", "username": "test_bot"}))
        }
        "getUpdates" => {
            let offset = body["offset"].as_i64().unwrap_or(0);
            let wait = Duration::from_secs(body["timeout"].as_u64().unwrap_or(0));
            let deadline = Instant::now() + wait;
            let mut s = shared.state.lock().unwrap();
            loop {
                let ready: Vec<Value> = s
                    .updates
                    .iter()
                    .filter(|u| u["update_id"].as_i64().unwrap_or(0) >= offset)
                    .take(100)
                    .cloned()
                    .collect();
                let left = deadline.saturating_duration_since(Instant::now());
                if !ready.is_empty() || left.is_zero() {
                    return ok(Value::Array(ready));
                }
                s = shared.changed.wait_timeout(s, left).unwrap().0;
            }
        }
        "sendMessage" => {
            let mut s = shared.state.lock().unwrap();
            let id = s.next_message;
            s.next_message += 1;
            let chat = body["chat_id"].as_i64().unwrap_or(0);
            let text = body["text"].as_str().unwrap_or("").to_string();
            if text.is_empty() || text.encode_utf16().count() > 4096 {
                return error(400, "Bad Request: message text is empty or too long", None);
            }
            s.messages.push((id, chat, text.clone()));
            ok(
                json!({"message_id": id, "date": 0, "text": text, "chat": {"id": chat, "type": "private"}}),
            )
        }
        "sendChatAction" | "answerCallbackQuery" | "editMessageText" => ok(json!(true)),
        _ => error(404, "Not Found", None),
    }
}
