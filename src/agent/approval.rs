//! Which tool calls need a human decision, the one registry where decisions arrive, and
//! what happens when nobody can give one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender, bounded};

use crate::config::{Fallback, ToolPattern};
use crate::sync::lock;

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

    /// A client's decision as the API spells it: `"approve"` or `"deny"` (and their
    /// common synonyms); `None` for anything else.
    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "approve" | "approved" | "allow" => Some(Decision::Approve),
            "deny" | "denied" | "reject" => Some(Decision::Deny(
                "the user denied this tool call. Do not retry it; answer without it.".into(),
            )),
            _ => None,
        }
    }
}

/// The approval rules of one kind of turn. Rules are names and patterns, not lists of
/// tools, so they hold for MCP tools that appear after the daemon started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    /// Tools that need a decision before they run...
    pub require_approval: Vec<ToolPattern>,
    /// ...unless they match one of these.
    pub exempt: Vec<ToolPattern>,
    pub fallback: Fallback,
}

impl Policy {
    /// Chat turns: tools matching `tools.require_approval` need a decision.
    pub fn for_chat(require: &[ToolPattern], fallback: Fallback) -> Policy {
        Policy {
            require_approval: require.to_vec(),
            exempt: Vec::new(),
            fallback,
        }
    }

    /// Heartbeat turns: nobody is there, so only tools matching `heartbeat.allowed_tools`
    /// run freely and every other tool gets the fallback (deny by default).
    pub fn for_heartbeat(allowed: &[ToolPattern], fallback: Fallback) -> Policy {
        Policy {
            require_approval: vec![ToolPattern::any()],
            exempt: allowed.to_vec(),
            fallback,
        }
    }

    pub fn needs_approval(&self, tool: &str) -> bool {
        self.require_approval.iter().any(|p| p.matches(tool))
            && !self.exempt.iter().any(|p| p.matches(tool))
    }
}

/// Who can decide on a tool call in a turn.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Approver {
    /// A client watching the turn's events: requests are registered under this session
    /// and decided through [`Approvals::decide`] (by `POST /api/sessions/{id}/approve`
    /// or the client's own channel).
    Client { session_id: String },
    /// Nobody can answer; the fallback applies, for this reason.
    Nobody(&'static str),
}

/// How waiting for a decision ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Waited {
    Decided(Decision),
    TimedOut,
    /// The client went away or cancelled the turn.
    Gone,
}

type Entry = (String, Sender<Decision>);

/// Approval requests waiting for a client's decision, by request id.
#[derive(Default)]
pub struct Approvals(Mutex<HashMap<String, Entry>>);

/// A registered request; dropping it withdraws the request.
pub struct Pending<'a> {
    approvals: &'a Approvals,
    pub request_id: String,
    decision: Receiver<Decision>,
}

impl Approvals {
    /// Opens a request for `session_id`.
    pub fn register(&self, session_id: &str) -> Pending<'_> {
        let request_id = format!("apr_{}", uuid::Uuid::new_v4().simple());
        let (tx, rx) = bounded(1);
        lock(&self.0).insert(request_id.clone(), (session_id.to_string(), tx));
        Pending {
            approvals: self,
            request_id,
            decision: rx,
        }
    }

    /// Delivers a decision; false when no such request is waiting for that session.
    pub fn decide(&self, session_id: &str, request_id: &str, decision: Decision) -> bool {
        match lock(&self.0).get(request_id) {
            Some((session, tx)) if session == session_id => tx.try_send(decision).is_ok(),
            _ => false,
        }
    }
}

/// How often a waiting approval looks whether its client is still there.
const GONE_CHECK: Duration = Duration::from_millis(250);

impl Pending<'_> {
    /// Waits up to `timeout` for the decision, giving up early once `gone()` says the
    /// client left.
    pub fn wait(&self, timeout: Duration, gone: &dyn Fn() -> bool) -> Waited {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Waited::TimedOut;
            }
            match self.decision.recv_timeout(left.min(GONE_CHECK)) {
                Ok(d) => return Waited::Decided(d),
                Err(RecvTimeoutError::Timeout) if gone() => return Waited::Gone,
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return Waited::Gone,
            }
        }
    }
}

impl Drop for Pending<'_> {
    fn drop(&mut self) {
        lock(&self.approvals.0).remove(&self.request_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    #[test]
    fn defaults() {
        let c = Config::default();
        let chat = Policy::for_chat(&c.tools.require_approval, c.tools.approval_fallback);
        assert!(chat.needs_approval("bash") && chat.needs_approval("write_file"));
        assert!(
            chat.needs_approval("mcp_time_now"),
            "mcp_* is in the default list"
        );
        assert!(!chat.needs_approval("memory_search"));
        let hb = Policy::for_heartbeat(&c.heartbeat.allowed_tools, c.tools.approval_fallback);
        assert!(hb.needs_approval("bash") && hb.needs_approval("web_fetch"));
        assert!(
            hb.needs_approval("mcp_time_now"),
            "tools that came later are not allowed"
        );
        assert!(!hb.needs_approval("edit_file") && !hb.needs_approval("memory_search"));
        assert!(matches!(
            Decision::fallback(Fallback::Deny, "bash", "x"),
            Decision::Deny(_)
        ));
    }

    #[test]
    fn patterns_need_approval() {
        let p = Policy::for_chat(&["mcp_*".parse().unwrap()], Fallback::Deny);
        assert!(p.needs_approval("mcp_time_now") && !p.needs_approval("bash"));
        let hb = Policy::for_heartbeat(&["mcp_time_*".parse().unwrap()], Fallback::Deny);
        assert!(!hb.needs_approval("mcp_time_now") && hb.needs_approval("mcp_git_log"));
    }

    #[test]
    fn a_decision_reaches_only_its_session() {
        let approvals = Approvals::default();
        let pending = approvals.register("s1");
        assert!(!approvals.decide("s2", &pending.request_id, Decision::Approve));
        assert!(approvals.decide("s1", &pending.request_id, Decision::Approve));
        assert_eq!(
            pending.wait(Duration::from_secs(5), &|| false),
            Waited::Decided(Decision::Approve)
        );
        let id = pending.request_id.clone();
        drop(pending);
        assert!(!approvals.decide("s1", &id, Decision::Approve), "withdrawn");
        let p = approvals.register("s1");
        assert_eq!(p.wait(Duration::ZERO, &|| false), Waited::TimedOut);
        assert_eq!(p.wait(Duration::from_secs(5), &|| true), Waited::Gone);
    }
}
