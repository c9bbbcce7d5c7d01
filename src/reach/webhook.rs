//! Webhooks (`notify.webhooks`): each heartbeat alert POSTed as
//! `{"event":"heartbeat_alert","text","time"}` to every configured URL.
//!
//! One thread per URL, fed by its own queue from the events feed, so a receiver that is
//! down (and retried with backoff) delays neither the heartbeat nor the other receivers.
//! A failing receiver is logged once when it starts failing and once when it works again
//! (with the number of alerts it missed), not once per try. URLs are logged by host only:
//! their path is often the secret (an ntfy topic, a Home Assistant webhook id).

use std::sync::Arc;
use std::sync::Mutex;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded, select};
use serde::Serialize;
use serde_json::json;

use super::feed::{Entry, Event, Feed};
use super::http;
use crate::config::{NotifyConfig, redact_url};
use crate::heartbeat::RunStatus;
use crate::sync::lock;

/// How the webhooks are doing, for `/api/status`.
#[derive(Debug, Default, Clone, Serialize)]
pub struct Counts {
    /// Configured URLs.
    pub webhooks: usize,
    /// URLs whose last delivery failed.
    pub failing: usize,
    /// Alerts delivered, over all URLs.
    pub delivered: u64,
    /// Alerts given up after every retry, over all URLs.
    pub dropped: u64,
}

/// Shared counters of every webhook thread.
#[derive(Default)]
pub struct Status(Mutex<Counts>);

impl Status {
    pub fn counts(&self) -> Counts {
        lock(&self.0).clone()
    }

    fn update(&self, f: impl FnOnce(&mut Counts)) {
        f(&mut lock(&self.0));
    }
}

/// The running webhook threads; [`Webhooks::stop`] ends them.
pub struct Webhooks {
    /// Dropping it tells the threads to finish.
    stop: Option<Sender<()>>,
    done: Receiver<()>,
    threads: Vec<JoinHandle<()>>,
}

/// The JSON a receiver gets for an alert.
pub fn payload(text: &str, time: &str) -> String {
    json!({"event": "heartbeat_alert", "text": text, "time": time}).to_string()
}

/// Starts one thread per configured URL; `None` when there is none.
pub fn spawn(config: &NotifyConfig, feed: &Feed, status: Arc<Status>) -> Option<Webhooks> {
    if config.webhooks.is_empty() {
        return None;
    }
    status.update(|c| c.webhooks = config.webhooks.len());
    let (stop_tx, stop_rx) = bounded::<()>(0);
    let (done_tx, done_rx) = bounded::<()>(0);
    let mut threads = Vec::new();
    for (i, url) in config.webhooks.iter().enumerate() {
        let target = Target {
            url: url.clone(),
            shown: redact_url(url),
            agent: http::agent(config.timeout.get(), config.timeout.get()),
            retries: config.retries,
            backoff: config.retry_backoff.get(),
            failing: false,
            missed: 0,
            status: status.clone(),
        };
        let alerts = feed.subscribe();
        let (stop, done) = (stop_rx.clone(), done_tx.clone());
        let spawned = std::thread::Builder::new()
            .name(format!("webhook-{i}"))
            .spawn(move || {
                target.serve(&alerts, &stop);
                drop(done);
            });
        match spawned {
            Ok(t) => threads.push(t),
            Err(e) => log::error!(
                "cannot start the thread of webhook {}: {e}",
                redact_url(url)
            ),
        }
    }
    log::info!(
        "webhooks: heartbeat alerts go to {}",
        config
            .webhooks
            .iter()
            .map(|u| redact_url(u))
            .collect::<Vec<_>>()
            .join(", ")
    );
    Some(Webhooks {
        stop: Some(stop_tx),
        done: done_rx,
        threads,
    })
}

impl Webhooks {
    /// Stops retrying, tries each queued alert once more, and waits up to `grace` for the
    /// threads (a POST in flight ends at `notify.timeout`).
    pub fn stop(mut self, grace: Duration) {
        self.stop = None;
        let finished = matches!(
            self.done.recv_timeout(grace),
            Err(RecvTimeoutError::Disconnected)
        );
        if finished {
            for t in self.threads.drain(..) {
                let _ = t.join();
            }
        } else {
            log::warn!("webhooks: deliveries still running after {grace:?}; not waiting for them");
        }
    }
}

/// One URL and its delivery loop.
struct Target {
    url: String,
    shown: String,
    agent: ureq::Agent,
    retries: u32,
    backoff: Duration,
    /// The last delivery failed; the outage has been logged.
    failing: bool,
    /// Alerts given up during the current outage.
    missed: u64,
    status: Arc<Status>,
}

/// An alert worth a POST, if `entry` is one.
fn alert(entry: &Entry) -> Option<String> {
    match &entry.event {
        Event::Heartbeat(hb) if hb.status == RunStatus::Alert => {
            Some(payload(hb.text.as_deref().unwrap_or(""), &hb.time))
        }
        Event::Heartbeat(_) => None,
    }
}

impl Target {
    fn serve(mut self, alerts: &Receiver<Arc<Entry>>, stop: &Receiver<()>) {
        loop {
            select! {
                recv(alerts) -> entry => {
                    let Ok(entry) = entry else { return };
                    if let Some(body) = alert(&entry) {
                        self.deliver(&body, Some(stop));
                    }
                }
                recv(stop) -> _ => break,
            }
        }
        // Shutting down: what is queued gets one try each, no backoff.
        while let Ok(entry) = alerts.try_recv() {
            if let Some(body) = alert(&entry) {
                self.deliver(&body, None);
            }
        }
    }

    /// POSTs `body`, retrying with doubling backoff (cut short when `stop` fires; no
    /// retries at all without one). Returns whether it was delivered.
    fn deliver(&mut self, body: &str, stop: Option<&Receiver<()>>) -> bool {
        let mut wait = self.backoff;
        let tries = if stop.is_some() { self.retries + 1 } else { 1 };
        for attempt in 1..=tries {
            let began = Instant::now();
            match self.post(body) {
                Ok(()) => {
                    self.delivered(began);
                    return true;
                }
                Err(why) => {
                    if !self.failing {
                        self.failing = true;
                        self.status.update(|c| c.failing += 1);
                        log::warn!(
                            "webhook {}: {why}; retrying with backoff (not logged again until it works)",
                            self.shown
                        );
                    } else {
                        log::debug!("webhook {}: try {attempt} failed: {why}", self.shown);
                    }
                }
            }
            if attempt == tries {
                break;
            }
            let Some(stop) = stop else { break };
            if !matches!(stop.recv_timeout(wait), Err(RecvTimeoutError::Timeout)) {
                break;
            }
            wait = wait.saturating_mul(2);
        }
        self.missed += 1;
        self.status.update(|c| c.dropped += 1);
        false
    }

    fn delivered(&mut self, began: Instant) {
        self.status.update(|c| {
            c.delivered += 1;
            if self.failing {
                c.failing -= 1;
            }
        });
        if self.failing {
            self.failing = false;
            log::info!(
                "webhook {}: delivering again ({} alert(s) missed during the outage)",
                self.shown,
                self.missed
            );
            self.missed = 0;
        } else {
            log::debug!(
                "webhook {}: alert delivered in {} ms",
                self.shown,
                began.elapsed().as_millis()
            );
        }
    }

    fn post(&self, body: &str) -> Result<(), String> {
        let response = self
            .agent
            .post(&self.url)
            .header("content-type", "application/json")
            .send(body)
            .map_err(|e| http::describe(&e))?;
        let status = response.status();
        // Read what little the receiver says, so the connection can be reused.
        let _ = http::read_text(response.into_body());
        if status.is_success() {
            Ok(())
        } else {
            Err(format!(
                "HTTP {} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_the_documented_json() {
        let v: serde_json::Value =
            serde_json::from_str(&payload("Water the \"plants\"", "2026-02-14T10:30:00Z")).unwrap();
        assert_eq!(
            v,
            json!({"event": "heartbeat_alert", "text": "Water the \"plants\"", "time": "2026-02-14T10:30:00Z"})
        );
    }
}
