//! The configuration file: typed sections, defaults, env overrides and validation.
//!
//! A missing file means all defaults. Unknown keys are refused with their name, and every
//! value that parses but makes no sense (port 0, a bind that is not an IP address, an
//! unknown provider) is reported as `section.key: value: why`.

mod memory;
mod reach;
mod values;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use memory::{EMBEDDING_PROVIDERS, EmbeddingsConfig, MemoryConfig};
pub use reach::{EventsConfig, NotifyConfig, TelegramConfig, redact_url};
pub use values::{ModelRef, ProviderKind, Span, ToolPattern, Zone};

/// The commented config file written by `localgpt config init`; a test keeps it equal to
/// the defaults.
pub const EXAMPLE: &str = include_str!("../config.example.toml");

/// Why a config could not be used.
#[derive(Debug)]
pub enum ConfigError {
    /// The file exists but could not be read.
    Read(PathBuf, std::io::Error),
    /// The file is not valid TOML for our schema (unknown key, wrong type).
    Parse(PathBuf, String),
    /// A value parsed but is not acceptable.
    Invalid {
        key: String,
        value: String,
        reason: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read(path, e) => write!(f, "cannot read {}: {e}", path.display()),
            ConfigError::Parse(path, e) => write!(f, "{}: {}", path.display(), e.trim_end()),
            ConfigError::Invalid { key, value, reason } => {
                write!(f, "{key} = {value:?} is invalid: {reason}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

fn invalid(key: &str, value: impl fmt::Display, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        value: value.to_string(),
        reason: reason.into(),
    }
}

/// The whole configuration, one struct per TOML section.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    pub server: ServerConfig,
    pub agent: AgentConfig,
    pub providers: ProvidersConfig,
    pub memory: MemoryConfig,
    pub heartbeat: HeartbeatConfig,
    pub tools: ToolsConfig,
    pub sessions: SessionsConfig,
    pub logging: LoggingConfig,
    pub events: EventsConfig,
    pub notify: NotifyConfig,
    pub telegram: TelegramConfig,
    pub mcp: McpConfig,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub enabled: bool,
    pub port: u16,
    #[serde(deserialize_with = "values::de_bind")]
    pub bind: IpAddr,
    pub auth_token: String,
    /// Workers of the fast lane (health, status, memory, sessions).
    pub workers: usize,
    /// Requests that may wait for a fast-lane worker before new ones get 503.
    pub queue: usize,
    /// Concurrent LLM-bound requests (chat, stream, heartbeat run).
    pub chat_workers: usize,
    /// LLM-bound requests that may wait for a chat worker before new ones get 503.
    pub chat_queue: usize,
    pub max_body_bytes: usize,
    pub max_query_bytes: usize,
    /// Request header lines (names, values and separators) above this get 431.
    pub max_header_bytes: usize,
    /// More request header lines than this get 431.
    pub max_headers: usize,
    /// A request head must be complete this long after its connection opened; zero: no
    /// limit.
    pub header_timeout: Span,
    /// A kept-alive connection whose next request does not come within this is closed.
    pub idle_timeout: Span,
    /// A client that stops reading a response or a stream for this long is cut.
    pub write_timeout: Span,
    /// Connections stuck in tiny_http (an `HTTP/2.0` request line) beyond which the daemon
    /// stops with status 1 for its supervisor to restart it; zero: never.
    pub max_stuck_connections: usize,
    /// Works around tiny_http's pool stranding a connection from a burst; off only to
    /// measure whether it is still needed.
    pub pool_nudge: bool,
    pub shutdown_grace: Span,
    pub max_websockets: usize,
    pub ws_max_message_bytes: usize,
    pub allowed_origins: Vec<String>,
    pub access_log: bool,
    /// Adds `/api/debug/sleep`, `/api/debug/sleep-fast` and `/api/debug/panic` (tests only).
    pub debug_routes: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            enabled: true,
            port: 31327,
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            auth_token: String::new(),
            workers: 4,
            queue: 64,
            chat_workers: 4,
            chat_queue: 4,
            max_body_bytes: 1024 * 1024,
            max_query_bytes: 4096,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
            header_timeout: Span::secs(10),
            idle_timeout: Span::secs(60),
            write_timeout: Span::secs(30),
            max_stuck_connections: 256,
            pool_nudge: true,
            shutdown_grace: Span::secs(10),
            max_websockets: 32,
            ws_max_message_bytes: 256 * 1024,
            allowed_origins: Vec::new(),
            access_log: true,
            debug_routes: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AgentConfig {
    #[serde(deserialize_with = "values::de_default_model")]
    pub default_model: ModelRef,
    pub max_tool_iterations: usize,
    /// Characters of workspace memory put in the system prompt.
    pub memory_context_chars: usize,
    /// Characters of session history kept verbatim before older turns are summarised.
    pub history_chars: usize,
    pub max_tokens: u32,
}

impl Default for AgentConfig {
    fn default() -> Self {
        AgentConfig {
            default_model: ModelRef::default_model(),
            max_tool_iterations: 10,
            memory_context_chars: 24_000,
            history_chars: 48_000,
            max_tokens: 4096,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProvidersConfig {
    pub connect_timeout: Span,
    /// Longest silence allowed between two reads of a provider's stream.
    pub read_timeout: Span,
    pub openai: OpenAiConfig,
    pub anthropic: AnthropicConfig,
    pub ollama: OllamaConfig,
    pub claude_cli: ClaudeCliConfig,
}

impl Default for ProvidersConfig {
    fn default() -> Self {
        ProvidersConfig {
            connect_timeout: Span::secs(10),
            read_timeout: Span::secs(120),
            openai: OpenAiConfig::default(),
            anthropic: AnthropicConfig::default(),
            ollama: OllamaConfig::default(),
            claude_cli: ClaudeCliConfig::default(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OpenAiConfig {
    pub api_key: String,
    pub base_url: String,
}

impl Default for OpenAiConfig {
    fn default() -> Self {
        OpenAiConfig {
            api_key: String::new(),
            base_url: "https://api.openai.com/v1".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AnthropicConfig {
    pub api_key: String,
    pub base_url: String,
}

impl Default for AnthropicConfig {
    fn default() -> Self {
        AnthropicConfig {
            api_key: String::new(),
            base_url: "https://api.anthropic.com".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct OllamaConfig {
    pub base_url: String,
}

impl Default for OllamaConfig {
    fn default() -> Self {
        OllamaConfig {
            base_url: "http://127.0.0.1:11434".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ClaudeCliConfig {
    pub command: String,
}

impl Default for ClaudeCliConfig {
    fn default() -> Self {
        ClaudeCliConfig {
            command: "claude".into(),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ActiveHours {
    pub start: String,
    pub end: String,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HeartbeatConfig {
    pub enabled: bool,
    pub interval: Span,
    pub active_hours: Option<ActiveHours>,
    #[serde(deserialize_with = "values::de_timezone")]
    pub timezone: Zone,
    /// Model for heartbeat turns; empty (`None`): `agent.default_model`.
    #[serde(
        deserialize_with = "values::de_heartbeat_model",
        serialize_with = "values::ser_optional_model"
    )]
    pub model: Option<ModelRef>,
    /// Tools a heartbeat turn may use without anyone approving.
    pub allowed_tools: Vec<ToolPattern>,
    /// Longest a heartbeat turn may take before it is stopped and recorded as failed;
    /// zero: no limit of its own (the provider read timeout still bounds silence).
    pub timeout: Span,
}

impl Default for HeartbeatConfig {
    fn default() -> Self {
        HeartbeatConfig {
            enabled: true,
            interval: Span::secs(30 * 60),
            active_hours: None,
            timezone: Zone::local(),
            model: None,
            allowed_tools: tool_patterns(&[
                "memory_search",
                "memory_get",
                "memory_append",
                "read_file",
                "write_file",
                "edit_file",
            ]),
            timeout: Span::secs(600),
        }
    }
}

/// What happens to a tool needing approval when nobody can answer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Fallback {
    Deny,
    Approve,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ToolsConfig {
    pub require_approval: Vec<ToolPattern>,
    pub approval_fallback: Fallback,
    pub approval_timeout: Span,
    /// Paths outside the workspace the file tools may touch.
    pub allowed_paths: Vec<String>,
    pub bash_timeout: Span,
    /// Whether `bash` commands may bind and connect TCP sockets (enforced by Landlock ABI 4+).
    pub bash_network: bool,
    pub output_max_bytes: usize,
    pub web_fetch_max_bytes: usize,
    pub web_fetch_timeout: Span,
    pub web_fetch_allow_private: bool,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            require_approval: tool_patterns(&["bash", "write_file", "edit_file", "mcp_*"]),
            approval_fallback: Fallback::Deny,
            approval_timeout: Span::secs(120),
            allowed_paths: Vec::new(),
            bash_timeout: Span::secs(30),
            bash_network: true,
            output_max_bytes: 32 * 1024,
            web_fetch_max_bytes: 512 * 1024,
            web_fetch_timeout: Span::secs(20),
            web_fetch_allow_private: false,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SessionsConfig {
    /// Longest a stream may be idle before a `: keepalive` comment is sent.
    pub keepalive: Span,
}

impl Default for SessionsConfig {
    fn default() -> Self {
        SessionsConfig {
            keepalive: Span::secs(15),
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LoggingConfig {
    /// error, warn, info, debug or trace.
    pub level: String,
}

impl Default for LoggingConfig {
    fn default() -> Self {
        LoggingConfig {
            level: "info".into(),
        }
    }
}

/// Model Context Protocol servers whose tools join the model's (`docs/mcp.md`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct McpConfig {
    /// Longest a `tools/call` may take; the call is then cancelled and the model told.
    pub call_timeout: Span,
    /// Longest a server may take to answer `initialize`, `tools/list` or a `ping`; a server
    /// slower than this is restarted.
    pub start_timeout: Span,
    /// How often an idle server is pinged to find one that stopped answering; "0": never.
    pub ping_interval: Span,
    /// By name; each server's tools are offered as `mcp_<name>_<tool>`.
    pub servers: BTreeMap<String, McpServerConfig>,
}

impl Default for McpConfig {
    fn default() -> Self {
        McpConfig {
            call_timeout: Span::secs(60),
            start_timeout: Span::secs(30),
            ping_interval: Span::secs(60),
            servers: BTreeMap::new(),
        }
    }
}

/// One MCP server, run as a child process speaking JSON-RPC on its stdin and stdout.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct McpServerConfig {
    /// The program and its arguments; the program is looked up in `PATH`.
    pub command: Vec<String>,
    /// Environment added to the few variables a server inherits (`PATH`, `HOME`, ...).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Working directory (`~` expanded); empty: the workspace.
    #[serde(default)]
    pub cwd: String,
}

/// Longest MCP server name: room is left in the 64 characters providers allow a tool name.
pub const MCP_SERVER_NAME_MAX: usize = 32;

/// Parses `HH:MM` into minutes after midnight.
pub fn parse_hhmm(s: &str) -> Option<u32> {
    let (h, m) = s.split_once(':')?;
    if h.len() != 2 || m.len() != 2 {
        return None;
    }
    let h: u32 = h.parse().ok()?;
    let m: u32 = m.parse().ok()?;
    (h < 24 && m < 60).then_some(h * 60 + m)
}

/// Defaults written in code are known-good names.
fn tool_patterns(names: &[&str]) -> Vec<ToolPattern> {
    names.iter().filter_map(|n| n.parse().ok()).collect()
}

impl ServerConfig {
    /// The address to listen on.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::new(self.bind, self.port)
    }
}

impl HeartbeatConfig {
    /// The heartbeat's model: `heartbeat.model`, else `default`.
    pub fn model_or<'a>(&'a self, default: &'a ModelRef) -> &'a ModelRef {
        self.model.as_ref().unwrap_or(default)
    }
}

impl Config {
    /// Reads `path`; a missing file gives the defaults. Env overrides and validation are
    /// applied.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let mut config = match std::fs::read_to_string(path) {
            Ok(text) => Config::parse(path, &text)?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Config::default(),
            Err(e) => return Err(ConfigError::Read(path.to_path_buf(), e)),
        };
        config.apply_env(|k| std::env::var(k).ok())?;
        config.memory.embeddings.inherit(&config.providers);
        config.validate()?;
        Ok(config)
    }

    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(path.to_path_buf(), e.to_string()))
    }

    /// Applies `LOCALGPT_*` overrides and provider keys from the usual env variables.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = var("LOCALGPT_WORKSPACE").filter(|v| !v.is_empty()) {
            self.memory.workspace = v;
        }
        if let Some(v) = var("LOCALGPT_BIND").filter(|v| !v.is_empty()) {
            self.server.bind = v.parse().map_err(|_| {
                invalid(
                    "LOCALGPT_BIND",
                    &v,
                    "must be an IP address such as 127.0.0.1",
                )
            })?;
        }
        if let Some(v) = var("LOCALGPT_PORT").filter(|v| !v.is_empty()) {
            self.server.port = v
                .parse()
                .map_err(|_| invalid("LOCALGPT_PORT", &v, "must be a port number 1-65535"))?;
        }
        if let Some(v) = var("LOCALGPT_AUTH_TOKEN").filter(|v| !v.is_empty()) {
            self.server.auth_token = v;
        }
        if let Some(v) = var("LOCALGPT_MODEL").filter(|v| !v.is_empty()) {
            self.agent.default_model = v
                .parse()
                .map_err(|why| invalid("LOCALGPT_MODEL", &v, why))?;
        }
        if let Some(v) = var("LOCALGPT_LOG").filter(|v| !v.is_empty()) {
            self.logging.level = v;
        }
        if self.providers.openai.api_key.is_empty()
            && let Some(v) = var("OPENAI_API_KEY")
        {
            self.providers.openai.api_key = v;
        }
        if self.providers.anthropic.api_key.is_empty()
            && let Some(v) = var("ANTHROPIC_API_KEY")
        {
            self.providers.anthropic.api_key = v;
        }
        if self.telegram.bot_token.is_empty()
            && let Some(v) = var("TELEGRAM_BOT_TOKEN")
        {
            self.telegram.bot_token = v.trim().to_string();
        }
        Ok(())
    }

    /// Checks the values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        if !s.bind.is_loopback() && s.auth_token.is_empty() {
            return Err(invalid(
                "server.bind",
                s.bind,
                "a non-loopback bind needs server.auth_token set (anyone on the network could use the API)",
            ));
        }
        for (key, value, min) in [
            ("server.workers", s.workers, 1),
            ("server.chat_workers", s.chat_workers, 1),
            ("server.max_body_bytes", s.max_body_bytes, 1024),
            ("server.max_query_bytes", s.max_query_bytes, 256),
            ("server.max_header_bytes", s.max_header_bytes, 1024),
            ("server.max_headers", s.max_headers, 8),
            ("server.ws_max_message_bytes", s.ws_max_message_bytes, 1024),
            (
                "agent.max_tool_iterations",
                self.agent.max_tool_iterations,
                1,
            ),
            (
                "agent.memory_context_chars",
                self.agent.memory_context_chars,
                0,
            ),
            ("agent.history_chars", self.agent.history_chars, 1000),
            ("memory.chunk_chars", self.memory.chunk_chars, 200),
            ("memory.result_chars", self.memory.result_chars, 50),
            ("memory.chunk_tokens", self.memory.chunk_tokens, 32),
            ("tools.output_max_bytes", self.tools.output_max_bytes, 256),
        ] {
            if value < min {
                return Err(invalid(key, value, format!("must be at least {min}")));
            }
        }
        if self.memory.chunk_overlap_lines > 20 {
            return Err(invalid(
                "memory.chunk_overlap_lines",
                self.memory.chunk_overlap_lines,
                "must be at most 20",
            ));
        }
        self.memory.embeddings.validate()?;
        if s.queue > 100_000 || s.chat_queue > 10_000 {
            return Err(invalid("server.queue", s.queue, "is unreasonably large"));
        }
        let interval = self.heartbeat.interval;
        if !interval.get().is_zero() && interval.get() < Duration::from_secs(1) {
            return Err(invalid(
                "heartbeat.interval",
                String::from(interval),
                "must be \"0\" (off) or at least 1s, or runs would follow each other back to back",
            ));
        }
        if let Some(h) = &self.heartbeat.active_hours {
            for (key, v) in [
                ("heartbeat.active_hours.start", &h.start),
                ("heartbeat.active_hours.end", &h.end),
            ] {
                if parse_hhmm(v).is_none() {
                    return Err(invalid(key, v, "must be HH:MM (00:00-23:59)"));
                }
            }
        }
        if !matches!(
            self.logging.level.to_ascii_lowercase().as_str(),
            "error" | "warn" | "info" | "debug" | "trace" | "off"
        ) {
            return Err(invalid(
                "logging.level",
                &self.logging.level,
                "must be one of error, warn, info, debug, trace, off",
            ));
        }
        for (key, url) in [
            ("providers.openai.base_url", &self.providers.openai.base_url),
            (
                "providers.anthropic.base_url",
                &self.providers.anthropic.base_url,
            ),
            ("providers.ollama.base_url", &self.providers.ollama.base_url),
        ] {
            if !(url.starts_with("http://") || url.starts_with("https://")) {
                return Err(invalid(key, url, "must start with http:// or https://"));
            }
        }
        if self.providers.claude_cli.command.trim().is_empty() {
            return Err(invalid(
                "providers.claude_cli.command",
                "",
                "must name an executable",
            ));
        }
        reach::validate(self)?;
        if self.providers.read_timeout.get().is_zero()
            || self.providers.connect_timeout.get().is_zero()
        {
            return Err(invalid(
                "providers.read_timeout",
                String::from(self.providers.read_timeout),
                "provider timeouts must be above zero, or a stalled provider would hang a turn",
            ));
        }
        self.validate_mcp()
    }

    fn validate_mcp(&self) -> Result<(), ConfigError> {
        let m = &self.mcp;
        for (key, span) in [
            ("mcp.call_timeout", m.call_timeout),
            ("mcp.start_timeout", m.start_timeout),
        ] {
            if span.get().is_zero() {
                return Err(invalid(
                    key,
                    String::from(span),
                    "must be above zero, or a server that never answers would hang a turn",
                ));
            }
        }
        for (name, server) in &m.servers {
            let key = format!("mcp.servers.{name}");
            let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
            if name.is_empty() || name.len() > MCP_SERVER_NAME_MAX || !name.chars().all(ok_char) {
                return Err(invalid(
                    &key,
                    name,
                    format!(
                        "a server name is 1-{MCP_SERVER_NAME_MAX} letters, digits, '_' or '-' (it becomes part of the tool names mcp_<server>_<tool>)"
                    ),
                ));
            }
            if server.command.first().is_none_or(|p| p.trim().is_empty()) {
                return Err(invalid(
                    &format!("{key}.command"),
                    format!("{:?}", server.command),
                    "must name a program, e.g. [\"mcp-server-time\", \"--local-timezone\", \"UTC\"]",
                ));
            }
            if let Some(bad) = server
                .env
                .keys()
                .find(|k| k.is_empty() || k.contains('=') || k.contains('\0'))
            {
                return Err(invalid(
                    &format!("{key}.env"),
                    bad,
                    "is not an environment variable name",
                ));
            }
        }
        Ok(())
    }

    /// The config as TOML with every secret replaced by `<redacted>`.
    pub fn redacted_toml(&self) -> String {
        let mut shown = self.clone();
        for secret in [
            &mut shown.server.auth_token,
            &mut shown.providers.openai.api_key,
            &mut shown.providers.anthropic.api_key,
            &mut shown.telegram.bot_token,
            &mut shown.memory.embeddings.api_key,
        ] {
            if !secret.is_empty() {
                *secret = "<redacted>".into();
            }
        }
        for url in &mut shown.notify.webhooks {
            *url = redact_url(url);
        }
        // MCP servers take their tokens through the environment.
        for server in shown.mcp.servers.values_mut() {
            for value in server.env.values_mut() {
                *value = "<redacted>".into();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

#[cfg(test)]
mod tests;
