//! The Telegram Bot API over `ureq`: the few methods the bridge uses, their answers, and
//! their failures sorted by what to do about them.
//!
//! Every call is `POST {api_base}/bot{token}/{method}` with a JSON body, answered
//! `{"ok": true, "result": ...}` or `{"ok": false, "error_code", "description",
//! "parameters": {"retry_after"}}`. The token is part of every URL, so no URL and no
//! transport error text from `ureq` ever leaves this file; failures are described in words.

use std::fmt;
use std::time::Duration;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::TelegramConfig;
use crate::reach::http;

/// Wait asked for by a 429 without `retry_after` (it always has one in practice).
const DEFAULT_RETRY_AFTER: Duration = Duration::from_secs(5);

/// Longest wait a 429 may impose on us; a larger `retry_after` is capped (a broken fake
/// or proxy must not park the bridge for a day).
const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);

/// Why a call failed, by what the bridge does about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BotError {
    /// 401: the token was refused. Nothing will work until it is fixed.
    Unauthorized(String),
    /// 404: no such bot at `api_base` (a malformed token, or a wrong `api_base`).
    NotFound(String),
    /// 429: asked to wait this long before the next call.
    RetryAfter(Duration),
    /// 409: another program takes this bot's updates (a second instance, or a webhook).
    Conflict(String),
    /// Network failure, timeout, 5xx, or an answer that is not the Bot API's: try later.
    Unavailable(String),
    /// Another 4xx: this request was refused (chat not found, message too long); trying
    /// it again would fail again.
    Rejected(String),
}

impl BotError {
    /// Whether the token or `api_base` is wrong: the bridge stops.
    pub fn is_fatal(&self) -> bool {
        matches!(self, BotError::Unauthorized(_) | BotError::NotFound(_))
    }
}

impl fmt::Display for BotError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BotError::Unauthorized(d) => write!(
                f,
                "the bot token was refused ({d}); set telegram.bot_token (or TELEGRAM_BOT_TOKEN) to the token @BotFather gave"
            ),
            BotError::NotFound(d) => write!(
                f,
                "no bot answers at telegram.api_base with this token ({d}); check telegram.api_base and telegram.bot_token"
            ),
            BotError::RetryAfter(d) => write!(f, "rate limited by Telegram for {}s", d.as_secs()),
            BotError::Conflict(d) => write!(
                f,
                "another program takes this bot's updates ({d}); stop the other instance or delete the bot's webhook"
            ),
            BotError::Unavailable(d) => write!(f, "Telegram is unreachable: {d}"),
            BotError::Rejected(d) => write!(f, "Telegram refused the request: {d}"),
        }
    }
}

/// A Telegram user (the sender of a message or a button press).
#[derive(Debug, Clone, Deserialize)]
pub struct User {
    pub id: i64,
    #[serde(default)]
    pub username: Option<String>,
}

/// The chat a message belongs to.
#[derive(Debug, Clone, Deserialize)]
pub struct Chat {
    pub id: i64,
}

/// A message (only the fields the bridge reads).
#[derive(Debug, Clone, Deserialize)]
pub struct Message {
    pub message_id: i64,
    #[serde(default)]
    pub from: Option<User>,
    pub chat: Chat,
    #[serde(default)]
    pub text: Option<String>,
}

/// A press on an inline keyboard button.
#[derive(Debug, Clone, Deserialize)]
pub struct CallbackQuery {
    pub id: String,
    pub from: User,
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub data: Option<String>,
}

/// One update. Kinds the bridge does not ask for (edits, channel posts) have neither field.
#[derive(Debug, Clone, Deserialize)]
pub struct Update {
    pub update_id: i64,
    #[serde(default)]
    pub message: Option<Message>,
    #[serde(default)]
    pub callback_query: Option<CallbackQuery>,
}

/// A client of one bot.
pub struct BotApi {
    agent: ureq::Agent,
    base: String,
    token: String,
    timeout: Duration,
}

impl BotApi {
    pub fn new(config: &TelegramConfig) -> BotApi {
        let timeout = config.timeout.get();
        BotApi {
            agent: http::agent(timeout, timeout),
            base: config.api_base.trim_end_matches('/').to_string(),
            token: config.bot_token.clone(),
            timeout,
        }
    }

    /// `text` with the token hidden, for anything built from a peer's words.
    pub fn redact(&self, text: &str) -> String {
        http::redact(text, &self.token)
    }

    /// The bot itself: checks the token.
    pub fn get_me(&self) -> Result<User, BotError> {
        let v = self.call("getMe", &json!({}), self.timeout)?;
        serde_json::from_value(v).map_err(|e| BotError::Unavailable(format!("getMe: {e}")))
    }

    /// Updates from `offset` on, waiting up to `wait` for one to come (long polling).
    /// Updates that cannot be read are returned as their id alone (`Err`), so the offset
    /// still moves past them.
    pub fn get_updates(
        &self,
        offset: i64,
        wait: Duration,
    ) -> Result<Vec<Result<Update, i64>>, BotError> {
        let body = json!({
            "offset": offset,
            "timeout": wait.as_secs(),
            "allowed_updates": ["message", "callback_query"],
        });
        // The read timeout must outlast the poll, or every quiet poll would look like a
        // dead connection.
        let v = self.call("getUpdates", &body, wait + self.timeout)?;
        let Value::Array(items) = v else {
            return Err(BotError::Unavailable(
                "getUpdates: result is not a list".into(),
            ));
        };
        Ok(items
            .into_iter()
            .map(|item| {
                let id = item["update_id"].as_i64().unwrap_or(-1);
                serde_json::from_value::<Update>(item).map_err(|_| id)
            })
            .collect())
    }

    /// Sends plain text (no parse mode: nothing can fail to parse), with an inline
    /// keyboard when `keyboard` is given; returns the message id.
    pub fn send_message(
        &self,
        chat_id: i64,
        text: &str,
        keyboard: Option<Value>,
    ) -> Result<i64, BotError> {
        let mut body = json!({"chat_id": chat_id, "text": text});
        if let Some(rows) = keyboard {
            body["reply_markup"] = json!({"inline_keyboard": rows});
        }
        let v = self.call("sendMessage", &body, self.timeout)?;
        Ok(v["message_id"].as_i64().unwrap_or(0))
    }

    /// Replaces a message's text (and drops its keyboard).
    pub fn edit_message_text(
        &self,
        chat_id: i64,
        message_id: i64,
        text: &str,
    ) -> Result<(), BotError> {
        let body = json!({"chat_id": chat_id, "message_id": message_id, "text": text});
        self.call("editMessageText", &body, self.timeout).map(drop)
    }

    /// Shows "typing…" in the chat for about five seconds.
    pub fn send_typing(&self, chat_id: i64) -> Result<(), BotError> {
        let body = json!({"chat_id": chat_id, "action": "typing"});
        self.call("sendChatAction", &body, self.timeout).map(drop)
    }

    /// Ends the spinner on a pressed button, with a short notice.
    pub fn answer_callback_query(&self, id: &str, text: &str) -> Result<(), BotError> {
        let body = json!({"callback_query_id": id, "text": text});
        self.call("answerCallbackQuery", &body, self.timeout)
            .map(drop)
    }

    fn call(&self, method: &str, body: &Value, read_timeout: Duration) -> Result<Value, BotError> {
        let url = format!("{}/bot{}/{method}", self.base, self.token);
        let response = self
            .agent
            .post(&url)
            .config()
            .timeout_per_read(Some(read_timeout))
            .build()
            .header("content-type", "application/json")
            .send(body.to_string())
            .map_err(|e| BotError::Unavailable(format!("{method}: {}", http::describe(&e))))?;
        let status = response.status().as_u16();
        let text = http::read_text(response.into_body())
            .map_err(|why| BotError::Unavailable(format!("{method}: {why}")))?;
        answer(method, status, &text).map_err(|e| match e {
            BotError::Unavailable(d) => BotError::Unavailable(self.redact(&d)),
            BotError::Rejected(d) => BotError::Rejected(self.redact(&d)),
            other => other,
        })
    }
}

/// Reads a Bot API answer: its `result`, or the failure it reports.
fn answer(method: &str, status: u16, text: &str) -> Result<Value, BotError> {
    let v: Value = match serde_json::from_str(text) {
        Ok(v) => v,
        Err(_) if status >= 400 => return Err(by_status(method, status, "", None)),
        Err(_) => {
            return Err(BotError::Unavailable(format!(
                "{method}: the answer (HTTP {status}) is not Bot API JSON"
            )));
        }
    };
    if v["ok"] == Value::Bool(true) {
        return Ok(v["result"].clone());
    }
    let code = v["error_code"]
        .as_u64()
        .and_then(|c| u16::try_from(c).ok())
        .unwrap_or(status);
    let description = v["description"].as_str().unwrap_or("");
    let retry_after = v["parameters"]["retry_after"].as_u64();
    Err(by_status(method, code, description, retry_after))
}

fn by_status(method: &str, code: u16, description: &str, retry_after: Option<u64>) -> BotError {
    let detail = if description.is_empty() {
        format!("{method}: HTTP {code}")
    } else {
        format!("{method}: {}", http::clip(description))
    };
    match code {
        401 => BotError::Unauthorized(detail),
        404 => BotError::NotFound(detail),
        409 => BotError::Conflict(detail),
        429 => BotError::RetryAfter(
            retry_after
                .map(Duration::from_secs)
                .unwrap_or(DEFAULT_RETRY_AFTER)
                .min(MAX_RETRY_AFTER),
        ),
        400..=499 => BotError::Rejected(detail),
        _ => BotError::Unavailable(detail),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_sorted_by_what_to_do() {
        assert_eq!(
            answer("getMe", 200, r#"{"ok":true,"result":{"id":1}}"#),
            Ok(json!({"id": 1}))
        );
        let limited = r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 7","parameters":{"retry_after":7}}"#;
        assert_eq!(
            answer("sendMessage", 429, limited),
            Err(BotError::RetryAfter(Duration::from_secs(7)))
        );
        let refused = r#"{"ok":false,"error_code":401,"description":"Unauthorized"}"#;
        let e = answer("getUpdates", 401, refused).unwrap_err();
        assert!(e.is_fatal(), "{e}");
        assert!(e.to_string().contains("bot_token"), "{e}");
        assert!(matches!(
            answer("getUpdates", 502, "<html>Bad Gateway</html>"),
            Err(BotError::Unavailable(_))
        ));
        assert!(matches!(
            answer("sendMessage", 400, r#"{"ok":false,"error_code":400,"description":"Bad Request: chat not found"}"#),
            Err(BotError::Rejected(d)) if d.contains("chat not found")
        ));
        assert!(matches!(
            answer("getMe", 200, "not json"),
            Err(BotError::Unavailable(_))
        ));
    }
}
