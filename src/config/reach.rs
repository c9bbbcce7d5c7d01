//! `[events]`, `[notify]` and `[telegram]`: how the daemon reaches the user (`src/reach/`).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Config, ConfigError, Span, invalid};

/// `GET /api/events`, the feed of what happens without a client asking.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EventsConfig {
    /// Feed listeners open at once (more get 503): one thread serves them all, but each
    /// holds a connection.
    pub max_listeners: usize,
    /// Events kept in memory for a listener that reconnects with `Last-Event-ID`.
    pub backlog: usize,
}

impl Default for EventsConfig {
    fn default() -> Self {
        EventsConfig {
            max_listeners: 16,
            backlog: 100,
        }
    }
}

/// Webhooks told of every heartbeat alert.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NotifyConfig {
    /// URLs each alert is POSTed to as `{"event":"heartbeat_alert","text","time"}`.
    pub webhooks: Vec<String>,
    /// Connect and read timeout of one POST.
    pub timeout: Span,
    /// Further tries after a failed POST before the alert is given up for that URL.
    pub retries: u32,
    /// Wait before the first retry; doubled before each next one.
    pub retry_backoff: Span,
}

impl Default for NotifyConfig {
    fn default() -> Self {
        NotifyConfig {
            webhooks: Vec::new(),
            timeout: Span::secs(10),
            retries: 3,
            retry_backoff: Span::secs(2),
        }
    }
}

/// The Telegram bridge (off while `bot_token` is empty).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TelegramConfig {
    /// From @BotFather; else env `TELEGRAM_BOT_TOKEN`. Never logged or shown.
    pub bot_token: String,
    /// The Bot API server: Telegram's, a self-hosted one, or a test fake.
    pub api_base: String,
    /// Numeric user ids allowed to chat; everyone else is ignored.
    pub allowed_users: Vec<i64>,
    /// Where heartbeat alerts go; 0: the first allowed user.
    pub alerts_chat_id: i64,
    /// How long one `getUpdates` long poll waits for a message.
    pub poll_timeout: Span,
    /// Connect timeout, and read timeout of every call but the long poll (whose read
    /// timeout is `poll_timeout` plus this).
    pub timeout: Span,
}

impl Default for TelegramConfig {
    fn default() -> Self {
        TelegramConfig {
            bot_token: String::new(),
            api_base: "https://api.telegram.org".into(),
            allowed_users: Vec::new(),
            alerts_chat_id: 0,
            poll_timeout: Span::secs(30),
            timeout: Span::secs(10),
        }
    }
}

impl TelegramConfig {
    /// Whether the bridge runs: a token is set.
    pub fn enabled(&self) -> bool {
        !self.bot_token.is_empty()
    }

    /// The chat heartbeat alerts go to: `alerts_chat_id`, else the first allowed user (a
    /// user's private chat with the bot has the user's id); `None` when neither is set.
    pub fn alerts_chat(&self) -> Option<i64> {
        match self.alerts_chat_id {
            0 => self.allowed_users.first().copied(),
            id => Some(id),
        }
    }
}

/// What may be shown of a URL that can carry a secret in its path or query (an ntfy topic,
/// a Home Assistant webhook id): scheme and host only.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return "<redacted>".into();
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let host = &rest[..end];
    // Credentials before the host are a secret too.
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    if end == rest.len() || &rest[end..] == "/" {
        format!("{scheme}://{host}/")
    } else {
        format!("{scheme}://{host}/<redacted>")
    }
}

/// Checks `[events]`, `[notify]` and `[telegram]`.
pub(super) fn validate(config: &Config) -> Result<(), ConfigError> {
    let e = &config.events;
    if e.backlog == 0 || e.backlog > 100_000 {
        return Err(invalid("events.backlog", e.backlog, "must be 1-100000"));
    }
    if e.max_listeners > 10_000 {
        return Err(invalid(
            "events.max_listeners",
            e.max_listeners,
            "must be at most 10000",
        ));
    }
    let n = &config.notify;
    for url in &n.webhooks {
        if !(url.starts_with("http://") || url.starts_with("https://"))
            || url.parse::<ureq::http::Uri>().is_err()
        {
            return Err(invalid(
                "notify.webhooks",
                redact_url(url),
                "every webhook must be an http:// or https:// URL (spaces and the like percent-encoded)",
            ));
        }
    }
    if n.timeout.get().is_zero() {
        return Err(invalid(
            "notify.timeout",
            String::from(n.timeout),
            "must be above zero, or a silent receiver would hold alerts forever",
        ));
    }
    if n.retries > 20 {
        return Err(invalid("notify.retries", n.retries, "must be at most 20"));
    }
    let t = &config.telegram;
    if !(t.api_base.starts_with("http://") || t.api_base.starts_with("https://"))
        || t.api_base.parse::<ureq::http::Uri>().is_err()
    {
        return Err(invalid(
            "telegram.api_base",
            &t.api_base,
            "must start with http:// or https://",
        ));
    }
    // A token is `<bot id>:<secret>`; anything else (a space, a newline) would end up
    // in the request path.
    if t.enabled()
        && !t
            .bot_token
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'/')
    {
        return Err(invalid(
            "telegram.bot_token",
            "<redacted>",
            "is not a bot token (expected 123456:ABC-..., as @BotFather gives it)",
        ));
    }
    let poll = t.poll_timeout.get();
    if poll < Duration::from_secs(1) || poll > Duration::from_secs(600) {
        return Err(invalid(
            "telegram.poll_timeout",
            String::from(t.poll_timeout),
            "must be 1s-10m (a zero poll would ask Telegram in a busy loop)",
        ));
    }
    if t.timeout.get().is_zero() {
        return Err(invalid(
            "telegram.timeout",
            String::from(t.timeout),
            "must be above zero",
        ));
    }
    Ok(())
}
