//! The agent: what a turn needs (providers, tools, memory, the clock and the user's zone),
//! the turn itself, its event stream, prompt assembly and tool approval.
//!
//! Nothing here knows about HTTP: the server, the heartbeat and the CLI each hand a turn
//! its input and a [`events::TurnSink`] and render what comes back.

pub mod approval;
pub mod chat;
pub mod events;
pub mod prompt;
pub mod tools;
pub mod turn;

use std::fmt;
use std::sync::Arc;

use crate::clock::Clock;
use crate::config::{AgentConfig, Config, ConfigError, Fallback, ToolPattern, Zone};
use crate::memory::Memory;
use crate::providers::{ProviderError, Providers};
use crate::sessions::StoreError;
use approval::{Approvals, Policy};
use tools::ToolContext;

/// Everything a turn uses, built once at start and shared by every surface.
pub struct Agent {
    pub settings: AgentConfig,
    pub providers: Providers,
    pub tools: ToolContext,
    pub memory: Arc<Memory>,
    pub clock: Arc<dyn Clock>,
    /// The user's zone (`heartbeat.timezone`, else local): the date of the daily log, the
    /// time the model is told.
    pub zone: Zone,
    /// The one registry where approval decisions arrive, whatever the client's channel.
    pub approvals: Approvals,
    /// What chat turns offer and what needs approval there.
    pub chat_policy: Policy,
    /// What a turn nobody watches (the heartbeat) may run without approval.
    pub unattended_policy: Policy,
    /// How long a tool waits for a client's decision.
    pub approval_timeout: std::time::Duration,
}

impl Agent {
    /// Builds the agent over an open memory. Every tool name the config mentions must name
    /// a tool (a misspelt name must not silently let a tool run unapproved).
    pub fn new(
        config: &Config,
        memory: Arc<Memory>,
        clock: Arc<dyn Clock>,
    ) -> Result<Agent, ConfigError> {
        let names = tools::ALL;
        check_tool_names(
            "tools.require_approval",
            &config.tools.require_approval,
            names,
        )?;
        check_tool_names(
            "heartbeat.allowed_tools",
            &config.heartbeat.allowed_tools,
            names,
        )?;
        let fallback: Fallback = config.tools.approval_fallback;
        let zone = config.heartbeat.timezone.clone();
        Ok(Agent {
            settings: config.agent.clone(),
            providers: Providers::new(&config.providers),
            tools: ToolContext::new(memory.clone(), &config.tools, zone.clone(), clock.clone()),
            chat_policy: Policy::for_chat(names, &config.tools.require_approval, fallback),
            unattended_policy: Policy::for_heartbeat(
                names,
                &config.heartbeat.allowed_tools,
                fallback,
            ),
            approval_timeout: config.tools.approval_timeout.get(),
            approvals: Approvals::default(),
            memory,
            clock,
            zone,
        })
    }
}

/// Refuses a tool name that matches no tool. A pattern (`prefix*`) must match at least one
/// tool too, except `mcp_…*`, whose tools come and go with their servers.
pub fn check_tool_names(
    key: &str,
    names: &[ToolPattern],
    tools: &[&str],
) -> Result<(), ConfigError> {
    for name in names {
        let mcp = name.is_pattern() && name.as_str().starts_with("mcp_");
        if !mcp && !tools.iter().any(|t| name.matches(t)) {
            return Err(ConfigError::Invalid {
                key: key.to_string(),
                value: name.as_str().to_string(),
                reason: format!("names no tool; the tools are: {}", tools.join(", ")),
            });
        }
    }
    Ok(())
}

/// Why a turn or a chat did not produce an answer.
#[derive(Debug)]
pub enum AgentError {
    /// The provider failed, timed out, or the turn was cancelled.
    Provider(ProviderError),
    /// A model string given with the request, or stored with a session, names no model
    /// we can use.
    BadModel(String),
    SessionNotFound(String),
    /// The session is in another turn.
    SessionBusy(String),
    /// The session store failed.
    Storage(StoreError),
}

impl AgentError {
    pub fn is_cancelled(&self) -> bool {
        matches!(self, AgentError::Provider(ProviderError::Cancelled))
    }
}

impl fmt::Display for AgentError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AgentError::Provider(e) => write!(f, "{e}"),
            AgentError::BadModel(m) => write!(f, "{m}"),
            AgentError::SessionNotFound(id) => write!(f, "session {id} not found"),
            AgentError::SessionBusy(id) => write!(
                f,
                "session {id} is already running a turn; wait for it to finish"
            ),
            AgentError::Storage(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AgentError {}

impl From<ProviderError> for AgentError {
    fn from(e: ProviderError) -> Self {
        AgentError::Provider(e)
    }
}

impl From<StoreError> for AgentError {
    fn from(e: StoreError) -> Self {
        AgentError::Storage(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_a_misspelt_tool_name_is_refused() {
        // "Bash" used to be accepted and matched nothing, so `bash` ran unapproved.
        let names: Vec<ToolPattern> = vec!["Bash".parse().unwrap()];
        let e = check_tool_names("tools.require_approval", &names, tools::ALL).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("tools.require_approval") && text.contains("Bash"),
            "{text}"
        );
        let ok: Vec<ToolPattern> = vec!["bash".parse().unwrap(), "mcp_*".parse().unwrap()];
        assert!(check_tool_names("k", &ok, tools::ALL).is_ok());
        let nothing: Vec<ToolPattern> = vec!["zzz*".parse().unwrap()];
        assert!(check_tool_names("k", &nothing, tools::ALL).is_err());
    }
}
