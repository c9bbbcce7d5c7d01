//! Which tool calls need a human decision, and what happens when nobody can give one.

use std::collections::HashMap;
use std::sync::Mutex;

use crossbeam_channel::{Receiver, Sender, bounded};

use crate::config::{Config, Fallback};

/// The verdict on one tool call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Approve,
    /// Not run; the reason is told to the model.
    Deny(String),
}

impl Decision {
    /// What the configured fallback decides for `tool` when no one can answer.
    pub fn fallback(fallback: Fallback, tool: &str, why: &str) -> Decision {
        match fallback {
            Fallback::Approve => Decision::Approve,
            Fallback::Deny => Decision::Deny(format!(
                "tool {tool} was denied: it needs approval and {why} (tools.approval_fallback = \"deny\"). Do not retry it; tell the user what you would have done."
            )),
        }
    }
}

/// The approval rules of one kind of turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Tools offered to the model.
    pub offered: Vec<String>,
    /// Offered tools that need a decision before they run.
    pub require_approval: Vec<String>,
    pub fallback: Fallback,
}

impl Policy {
    /// Chat turns: every tool offered; `tools.require_approval` need a decision.
    pub fn for_chat(config: &Config) -> Policy {
        Policy {
            offered: super::tools::ALL.iter().map(|s| s.to_string()).collect(),
            require_approval: config.tools.require_approval.clone(),
            fallback: config.tools.approval_fallback,
        }
    }

    /// Heartbeat turns: nobody is there, so only `heartbeat.allowed_tools` run freely and
    /// every other tool gets the fallback (deny by default).
    pub fn for_heartbeat(config: &Config) -> Policy {
        let allowed = &config.heartbeat.allowed_tools;
        Policy {
            offered: super::tools::ALL.iter().map(|s| s.to_string()).collect(),
            require_approval: super::tools::ALL
                .iter()
                .filter(|t| !allowed.iter().any(|a| a == *t))
                .map(|s| s.to_string())
                .collect(),
            fallback: config.tools.approval_fallback,
        }
    }

    pub fn needs_approval(&self, tool: &str) -> bool {
        self.require_approval.iter().any(|t| t == tool)
    }
}

/// Approval requests waiting for a client's decision, by request id.
#[derive(Default)]
pub struct Approvals(Mutex<HashMap<String, (String, Sender<Decision>)>>);

/// A registered request; dropping it withdraws the request.
pub struct Pending<'a> {
    approvals: &'a Approvals,
    pub request_id: String,
    pub decision: Receiver<Decision>,
}

impl Approvals {
    /// Opens a request for `session_id`.
    pub fn register(&self, session_id: &str) -> Pending<'_> {
        let request_id = format!("apr_{}", uuid::Uuid::new_v4().simple());
        let (tx, rx) = bounded(1);
        self.lock()
            .insert(request_id.clone(), (session_id.to_string(), tx));
        Pending {
            approvals: self,
            request_id,
            decision: rx,
        }
    }

    /// Delivers a decision; false when no such request is waiting for that session.
    pub fn decide(&self, session_id: &str, request_id: &str, decision: Decision) -> bool {
        let map = self.lock();
        match map.get(request_id) {
            Some((session, tx)) if session == session_id => tx.try_send(decision).is_ok(),
            _ => false,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (String, Sender<Decision>)>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        self.approvals.lock().remove(&self.request_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults() {
        let c = Config::default();
        let chat = Policy::for_chat(&c);
        assert!(chat.needs_approval("bash") && chat.needs_approval("write_file"));
        assert!(!chat.needs_approval("memory_search"));
        let hb = Policy::for_heartbeat(&c);
        assert!(hb.needs_approval("bash") && hb.needs_approval("web_fetch"));
        assert!(!hb.needs_approval("edit_file") && !hb.needs_approval("memory_append"));
        assert!(matches!(
            Decision::fallback(Fallback::Deny, "bash", "x"),
            Decision::Deny(_)
        ));
    }
}
