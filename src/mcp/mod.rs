//! Tools from Model Context Protocol servers: each configured server is a child process
//! speaking JSON-RPC 2.0 on its stdin and stdout, one message a line; its tools are offered
//! to the model as `mcp_<server>_<tool>`.
//!
//! The parts: [`rpc`] (messages), [`connection`] (a reader and a writer thread per server,
//! requests matched by id, timeouts, cancellation), [`process`] (the child, its process
//! group, its stderr), [`protocol`] (handshake, tool listing, calls), [`supervisor`] (a
//! thread per server: start, watch, restart with backoff), [`content`] (results as text),
//! [`names`] (the names tools are offered under). [`Servers`] ties them together.
//!
//! Blocking and synchronous throughout: a tool call waits on a channel with a timeout,
//! looking every few milliseconds whether its turn was cancelled.
//!
//! ```no_run
//! # use localgpt::{config::McpConfig, mcp::Servers};
//! # fn demo(config: &McpConfig) {
//! let servers = Servers::new(config, std::path::Path::new("/tmp"));
//! servers.start(); // in the background: a slow server delays nothing
//! for tool in servers.tools() {
//!     println!("{} from {}", tool.name, tool.server);
//! }
//! let out = servers.call("mcp_time_get_current_time", &serde_json::json!({}), &|| false);
//! println!("{} (error: {})", out.text, out.is_error);
//! servers.stop();
//! # }
//! ```

pub mod connection;
pub mod content;
pub mod names;
pub mod process;
pub mod protocol;
pub mod rpc;
mod supervisor;

use std::collections::HashSet;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use serde::Serialize;
use serde_json::Value;

use crate::config::{McpConfig, McpServerConfig, Span};
use crate::sync::lock;
use connection::{CallError, Connection, Event};
use supervisor::{Server, Settings};

/// Where a server is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    /// Being started (first start, or again after a failure).
    Starting,
    /// Handshake done, tools listed: its tools can be called.
    Ready,
    /// It could not start, exited or stopped answering; it is started again after a
    /// backoff.
    Failed,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Starting => "starting",
            State::Ready => "ready",
            State::Failed => "failed",
        }
    }
}

/// One server as `/api/status` shows it under `mcp.<name>`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServerStatus {
    #[serde(skip)]
    pub name: String,
    pub state: State,
    /// Why it failed; kept while it is started again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Tools it offers (as last listed).
    pub tools: usize,
    /// Starts after the first.
    pub restarts: u64,
    /// The protocol revision agreed in the handshake.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protocol_version: Option<String>,
    /// Its `serverInfo`: name and version.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// A tool of a server, under the name the model sees.
#[derive(Debug, Clone, PartialEq)]
pub struct McpTool {
    /// `mcp_<server>_<tool>`, sanitised and at most 64 characters.
    pub name: String,
    pub server: String,
    /// The tool's own name at its server.
    pub tool: String,
    pub description: String,
    /// The tool's `inputSchema`.
    pub input_schema: Value,
}

/// What a call produced, as text for the model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub text: String,
    pub is_error: bool,
}

impl Outcome {
    fn error(text: impl Into<String>) -> Outcome {
        Outcome {
            text: text.into(),
            is_error: true,
        }
    }
}

/// Every configured server, in name order.
pub struct Servers {
    settings: Settings,
    servers: Vec<Arc<Server>>,
    threads: Mutex<Vec<JoinHandle<()>>>,
}

impl Servers {
    /// Nothing starts until [`Servers::start`]. A server's working directory defaults to
    /// `workspace`.
    pub fn new(config: &McpConfig, workspace: &Path) -> Servers {
        Servers {
            settings: Settings {
                call_timeout: config.call_timeout.get(),
                start_timeout: config.start_timeout.get(),
                ping_interval: config.ping_interval.get(),
                workspace: workspace.to_path_buf(),
            },
            servers: config
                .servers
                .iter()
                .map(|(name, c)| Arc::new(Server::new(name, c)))
                .collect(),
            threads: Mutex::new(Vec::new()),
        }
    }

    /// The configured server names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.servers.iter().map(|s| s.name.as_str()).collect()
    }

    /// Starts every server in the background, each on its own supervisor thread (calling
    /// it again does nothing).
    pub fn start(&self) {
        let mut threads = lock(&self.threads);
        for server in &self.servers {
            let Some(inbox) = server.take_inbox() else {
                continue;
            };
            let (s, settings) = (server.clone(), self.settings.clone());
            match std::thread::Builder::new()
                .name(format!("mcp-{}", server.name))
                .spawn(move || supervisor::supervise(s, settings, inbox))
            {
                Ok(t) => threads.push(t),
                Err(e) => {
                    let mut live = server.live();
                    live.state = State::Failed;
                    live.reason = Some(format!("cannot start its supervisor thread: {e}"));
                }
            }
        }
    }

    /// Stops every server (stdin closed, a short wait, then the process group killed) and
    /// waits for their supervisors.
    pub fn stop(&self) {
        for server in &self.servers {
            server.stop();
        }
        for t in lock(&self.threads).drain(..) {
            let _ = t.join();
        }
    }

    /// Each server's state, in name order.
    pub fn status(&self) -> Vec<ServerStatus> {
        self.servers
            .iter()
            .map(|s| {
                let live = s.live();
                ServerStatus {
                    name: s.name.clone(),
                    state: live.state,
                    reason: live.reason.clone(),
                    tools: live.tools.len(),
                    restarts: live.restarts,
                    protocol_version: live.handshake.as_ref().map(|h| h.protocol_version.clone()),
                    server: live.handshake.as_ref().map(|h| h.server.clone()),
                }
            })
            .collect()
    }

    /// Every known tool, sorted by name (a stable order keeps the prompt's tool block the
    /// same from turn to turn). A server that is restarting keeps its last list.
    pub fn tools(&self) -> Vec<McpTool> {
        let mut taken = HashSet::new();
        let mut out = Vec::new();
        for server in &self.servers {
            let listed = server.live().tools.clone();
            let own: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
            let names = names::assign(&server.name, &own, &mut taken);
            out.extend(listed.iter().zip(names).map(|(t, name)| McpTool {
                name,
                server: server.name.clone(),
                tool: t.name.clone(),
                description: t.description.clone(),
                input_schema: t.input_schema.clone(),
            }));
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        out
    }

    /// Calls the tool the model knows as `name`. Every failure (server down, timeout, the
    /// server's own error) is an error outcome for the model, never a panic or a hang:
    /// the call ends within `mcp.call_timeout`, or soon after `cancelled()` turns true.
    pub fn call(&self, name: &str, arguments: &Value, cancelled: &dyn Fn() -> bool) -> Outcome {
        if !(arguments.is_object() || arguments.is_null()) {
            return Outcome::error(format!(
                "the arguments of {name} must be a JSON object, not {arguments}"
            ));
        }
        let Some(tool) = self.tools().into_iter().find(|t| t.name == name) else {
            return Outcome::error(format!(
                "there is no MCP tool {name} (MCP servers: {})",
                self.names().join(", ")
            ));
        };
        let Some(server) = self.servers.iter().find(|s| s.name == tool.server) else {
            return Outcome::error(format!("MCP server {} is gone", tool.server));
        };
        let conn: Arc<Connection> = {
            let live = server.live();
            match &live.conn {
                Some(c) => c.clone(),
                None => {
                    let why = live
                        .reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default();
                    return Outcome::error(format!(
                        "MCP server {} is not available ({}{why}); it is started again on its own. Answer without {name} for now.",
                        server.name,
                        live.state.as_str()
                    ));
                }
            }
        };
        let timeout = self.settings.call_timeout;
        match protocol::call_tool(&conn, &tool.tool, arguments, timeout, cancelled) {
            Ok(result) => {
                let (text, is_error) = content::render(&result);
                Outcome { text, is_error }
            }
            Err(CallError::Timeout(t)) => {
                server.suspect(conn.generation());
                Outcome::error(format!(
                    "{name} did not finish within mcp.call_timeout ({}); the call was cancelled",
                    Span(t)
                ))
            }
            Err(CallError::Cancelled) => Outcome::error(format!("{name} was cancelled")),
            Err(CallError::Closed) => Outcome::error(format!(
                "MCP server {} stopped during the call; it is started again on its own. Answer without {name} for now.",
                server.name
            )),
            Err(CallError::Remote(e)) => {
                Outcome::error(format!("MCP server {} refused the call: {e}", server.name))
            }
        }
    }
}

impl Drop for Servers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// What `doctor` learns by starting a server once.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub protocol_version: String,
    pub server: String,
    /// The names its tools would be offered under.
    pub tools: Vec<String>,
}

/// Starts server `name`, shakes hands, lists its tools and stops it; each step within
/// `timeout`.
pub fn probe(
    name: &str,
    config: &McpServerConfig,
    workspace: &Path,
    timeout: Duration,
) -> Result<Probe, String> {
    let (process, pipes) = process::spawn(name, config, workspace)?;
    let (events, _inbox) = crossbeam_channel::unbounded::<Event>();
    let conn = match Connection::open(name, 1, pipes.stdin, pipes.stdout, events) {
        Ok(c) => c,
        Err(e) => {
            process.stop(|| {}, Duration::ZERO);
            return Err(format!("cannot start its reader threads: {e}"));
        }
    };
    let never = || false;
    let outcome = protocol::initialize(&conn, timeout, &never).and_then(|hs| {
        let listed = protocol::list_tools(&conn, timeout, &never)?;
        let own: Vec<&str> = listed.iter().map(|t| t.name.as_str()).collect();
        Ok(Probe {
            protocol_version: hs.protocol_version,
            server: hs.server,
            tools: names::assign(name, &own, &mut HashSet::new()),
        })
    });
    let ended = process.stop(|| conn.close_input(), process::CLOSE_WAIT);
    outcome.map_err(|why| format!("{why} (the process {ended})"))
}
