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
use crate::mcp;
use crate::memory::Memory;
use crate::providers::{ProviderError, Providers};
use crate::sessions::StoreError;
use approval::{Approvals, Policy};
use tools::{Registry, ToolContext};

/// Everything a turn uses, built once at start and shared by every surface.
pub struct Agent {
    pub settings: AgentConfig,
    pub providers: Providers,
    pub tools: ToolContext,
    /// The configured MCP servers; started and stopped by the daemon.
    pub mcp: mcp::Servers,
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
        let servers: Vec<&str> = config.mcp.servers.keys().map(String::as_str).collect();
        check_tool_names(
            "tools.require_approval",
            &config.tools.require_approval,
            tools::ALL,
            &servers,
        )?;
        check_tool_names(
            "heartbeat.allowed_tools",
            &config.heartbeat.allowed_tools,
            tools::ALL,
            &servers,
        )?;
        let fallback: Fallback = config.tools.approval_fallback;
        let zone = config.heartbeat.timezone.clone();
        Ok(Agent {
            settings: config.agent.clone(),
            providers: Providers::new(&config.providers),
            tools: ToolContext::new(memory.clone(), &config.tools, zone.clone(), clock.clone()),
            mcp: mcp::Servers::new(&config.mcp, memory.workspace()),
            chat_policy: Policy::for_chat(&config.tools.require_approval, fallback),
            unattended_policy: Policy::for_heartbeat(&config.heartbeat.allowed_tools, fallback),
            approval_timeout: config.tools.approval_timeout.get(),
            approvals: Approvals::default(),
            memory,
            clock,
            zone,
        })
    }
}

impl Agent {
    /// Every tool there is now, built-in and MCP.
    pub fn registry(&self) -> Registry<'_> {
        Registry::new(&self.tools, &self.mcp)
    }
}

/// Refuses a tool name that matches no tool: a misspelt name must not silently leave a
/// tool unapproved. `tools` are the built-ins; MCP tools are not known before their
/// servers answer, so a name of the form `mcp_<server>_<tool>` is accepted when `<server>`
/// is configured, and a pattern when it can match such a name (`mcp_*` always can: it is
/// in the default list and means every MCP tool there will be).
pub fn check_tool_names(
    key: &str,
    names: &[ToolPattern],
    tools: &[&str],
    servers: &[&str],
) -> Result<(), ConfigError> {
    for name in names {
        if tools.iter().any(|t| name.matches(t)) || names_mcp_tool(name, servers) {
            continue;
        }
        let reason = if name.as_str().starts_with("mcp_") {
            if servers.is_empty() {
                "names an MCP tool, but no MCP server is configured ([mcp.servers.<name>])"
                    .to_string()
            } else {
                format!(
                    "names no configured MCP server; tools are named mcp_<server>_<tool>, the servers are: {}",
                    servers.join(", ")
                )
            }
        } else {
            format!("names no tool; the tools are: {}", tools.join(", "))
        };
        return Err(ConfigError::Invalid {
            key: key.to_string(),
            value: name.as_str().to_string(),
            reason,
        });
    }
    Ok(())
}

/// Whether `name` can match a tool of one of `servers`.
fn names_mcp_tool(name: &ToolPattern, servers: &[&str]) -> bool {
    match name.as_str().strip_suffix('*') {
        Some(prefix) => {
            "mcp_".starts_with(prefix)
                || servers.iter().any(|s| {
                    let p = mcp::names::prefix(s);
                    p.starts_with(prefix) || prefix.starts_with(&p)
                })
        }
        None => servers.iter().any(|s| {
            name.as_str()
                .strip_prefix(&mcp::names::prefix(s))
                .is_some_and(|tool| !tool.is_empty())
        }),
    }
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
        let e = check_tool_names("tools.require_approval", &names, tools::ALL, &[]).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("tools.require_approval") && text.contains("Bash"),
            "{text}"
        );
        let ok: Vec<ToolPattern> = vec!["bash".parse().unwrap(), "mcp_*".parse().unwrap()];
        assert!(check_tool_names("k", &ok, tools::ALL, &[]).is_ok());
        let nothing: Vec<ToolPattern> = vec!["zzz*".parse().unwrap()];
        assert!(check_tool_names("k", &nothing, tools::ALL, &[]).is_err());
    }

    #[test]
    fn mcp_names_need_a_configured_server() {
        let check = |name: &str, servers: &[&str]| {
            let names: Vec<ToolPattern> = vec![name.parse().unwrap()];
            check_tool_names("tools.require_approval", &names, tools::ALL, servers)
        };
        let servers = &["time", "git-hub"];
        for ok in [
            "mcp_*",
            "mcp*",
            "*",
            "mcp_time_*",
            "mcp_ti*",
            "mcp_time_get_current_time",
            "mcp_git-hub_list_issues",
            "mcp_git-hub_li*",
        ] {
            assert!(check(ok, servers).is_ok(), "{ok}");
        }
        for bad in [
            "mcp_nope*",
            "mcp_nope_tool",
            "mcp_time_",
            "mcp_times_x",
            "mcp_time",
        ] {
            let e = check(bad, servers).unwrap_err().to_string();
            assert!(e.contains("time, git-hub"), "{bad}: {e}");
        }
        assert!(
            check("mcp_*", &[]).is_ok(),
            "the default list works without servers"
        );
        let e = check("mcp_time_now", &[]).unwrap_err().to_string();
        assert!(e.contains("no MCP server is configured"), "{e}");
    }
}
