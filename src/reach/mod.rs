//! Reaching the user where they are: what the daemon does on its own (today, heartbeat
//! runs) goes out through three optional ways, all fed by one [`feed::Feed`]:
//!
//! - [`feed`]: `GET /api/events`, an SSE feed with ids, keepalives and `Last-Event-ID`
//!   resume (the server writes the connection; the feed keeps the backlog and fans out);
//! - [`webhook`]: each alert POSTed as JSON to `notify.webhooks`;
//! - [`telegram`]: a two-way bot for the allowed users, which also passes alerts on.
//!
//! The heartbeat publishes into the feed through its observer hook
//! ([`feed::Feed::heartbeat_observer`]) and never waits on a reader. Nothing here knows the
//! server or the daemon's `App`: the bridge runs turns through a [`Host`].
//!
//! ```no_run
//! # use std::sync::Arc;
//! # use localgpt::reach::{self, Host, Reach};
//! # fn demo(host: Arc<dyn Host>, config: &localgpt::config::Config, state_dir: &std::path::Path) {
//! let reach = Reach::new(config);
//! let running = reach::start(host, &reach, config, state_dir);
//! // ... heartbeat runs are published into reach.feed ...
//! running.stop(std::time::Duration::from_secs(10));
//! # }
//! ```

pub mod feed;
pub mod http;
pub mod telegram;
pub mod webhook;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{Value, json};

use crate::agent::Agent;
use crate::config::Config;
use crate::sessions::SessionStore;
use feed::Feed;

/// What the Telegram bridge needs of the daemon to run a turn.
pub trait Host: Send + Sync + 'static {
    fn agent(&self) -> &Agent;
    fn sessions(&self) -> &SessionStore;
}

/// The feed and the health of the ways out; one per daemon, in `App`.
pub struct Reach {
    pub feed: Arc<Feed>,
    pub telegram: Arc<telegram::Status>,
    pub webhooks: Arc<webhook::Status>,
}

impl Reach {
    pub fn new(config: &Config) -> Reach {
        Reach {
            feed: Arc::new(Feed::new(
                config.events.backlog,
                config.events.max_listeners,
                config.sessions.keepalive.get(),
            )),
            telegram: Arc::new(telegram::Status::new(&config.telegram)),
            webhooks: Arc::new(webhook::Status::default()),
        }
    }

    /// The `telegram`, `events` and `notify` parts of `/api/status`.
    pub fn status_json(&self) -> (Value, Value, Value) {
        let telegram = serde_json::to_value(self.telegram.health()).unwrap_or(Value::Null);
        let events = json!({
            "listeners": self.feed.listeners(),
            "max_listeners": self.feed.max_listeners(),
        });
        let notify = serde_json::to_value(self.webhooks.counts()).unwrap_or(Value::Null);
        (telegram, events, notify)
    }
}

/// The webhook threads and the Telegram bridge, while the daemon runs.
pub struct Running {
    webhooks: Option<webhook::Webhooks>,
    telegram: Option<telegram::Bridge>,
}

/// Starts what the config asks for: webhook threads, the Telegram bridge.
pub fn start(host: Arc<dyn Host>, reach: &Reach, config: &Config, state_dir: &Path) -> Running {
    Running {
        webhooks: webhook::spawn(&config.notify, &reach.feed, reach.webhooks.clone()),
        telegram: telegram::spawn(
            &config.telegram,
            host,
            &reach.feed,
            reach.telegram.clone(),
            state_dir,
        ),
    }
}

impl Running {
    /// Stops both, each waiting up to `grace` for what is in flight.
    pub fn stop(self, grace: Duration) {
        if let Some(t) = self.telegram {
            t.stop(grace);
        }
        if let Some(w) = self.webhooks {
            w.stop(grace);
        }
    }
}
