//! The configuration file: typed sections, defaults, env overrides and validation.
//!
//! A missing file means all defaults. Unknown keys are refused with their name, and every
//! value that parses but makes no sense (port 0, a bind that is not an IP address, an
//! unknown provider) is reported as `section.key: value: why`.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The commented config file written by `localgpt config init`; a test keeps it equal to
/// the defaults.
pub const EXAMPLE: &str = include_str!("../config.example.toml");

/// Providers the `provider/model` prefix may name.
pub const KNOWN_PROVIDERS: &[&str] = &["anthropic", "openai", "ollama", "claude-cli"];

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

/// A duration written as `"90s"`, `"30m"`, `"2h30m"`, `"250ms"` or `"0"`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Span(pub Duration);

impl Span {
    pub fn secs(s: u64) -> Span {
        Span(Duration::from_secs(s))
    }
    pub fn millis(ms: u64) -> Span {
        Span(Duration::from_millis(ms))
    }
    pub fn get(self) -> Duration {
        self.0
    }
}

impl FromStr for Span {
    type Err = String;

    fn from_str(s: &str) -> Result<Span, String> {
        let t = s.trim();
        if t == "0" {
            return Ok(Span(Duration::ZERO));
        }
        let parsed: jiff::SignedDuration = t.parse().map_err(|e| {
            format!("invalid duration {s:?} (use e.g. \"90s\", \"30m\", \"2h30m\"): {e}")
        })?;
        if parsed.is_negative() {
            return Err(format!("invalid duration {s:?}: must not be negative"));
        }
        Duration::try_from(parsed)
            .map(Span)
            .map_err(|e| format!("invalid duration {s:?}: {e}"))
    }
}

impl TryFrom<String> for Span {
    type Error = String;
    fn try_from(s: String) -> Result<Span, String> {
        s.parse()
    }
}

impl From<Span> for String {
    fn from(s: Span) -> String {
        let d = s.0;
        if d.is_zero() {
            "0".into()
        } else if d.subsec_millis() != 0 || d.as_secs() == 0 {
            format!("{}ms", d.as_millis())
        } else {
            let secs = d.as_secs();
            let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
            let mut out = String::new();
            if h > 0 {
                out.push_str(&format!("{h}h"));
            }
            if m > 0 {
                out.push_str(&format!("{m}m"));
            }
            if s > 0 {
                out.push_str(&format!("{s}s"));
            }
            out
        }
    }
}

mod memory;

pub use memory::{EMBEDDING_PROVIDERS, EmbeddingsConfig, MemoryConfig};

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
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    pub enabled: bool,
    pub port: u16,
    pub bind: String,
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
            bind: "127.0.0.1".into(),
            auth_token: String::new(),
            workers: 4,
            queue: 64,
            chat_workers: 4,
            chat_queue: 4,
            max_body_bytes: 1024 * 1024,
            max_query_bytes: 4096,
            max_header_bytes: 32 * 1024,
            max_headers: 100,
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
    pub default_model: String,
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
            default_model: "claude-cli/opus".into(),
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
    pub timezone: String,
    /// Model for heartbeat turns; empty: `agent.default_model`.
    pub model: String,
    /// Tools a heartbeat turn may use without anyone approving.
    pub allowed_tools: Vec<String>,
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
            timezone: String::new(),
            model: String::new(),
            allowed_tools: vec![
                "memory_search".into(),
                "memory_get".into(),
                "memory_append".into(),
                "read_file".into(),
                "write_file".into(),
                "edit_file".into(),
            ],
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
    pub require_approval: Vec<String>,
    pub approval_fallback: Fallback,
    pub approval_timeout: Span,
    /// Paths outside the workspace the file tools may touch.
    pub allowed_paths: Vec<String>,
    pub bash_timeout: Span,
    pub output_max_bytes: usize,
    pub web_fetch_max_bytes: usize,
    pub web_fetch_timeout: Span,
    pub web_fetch_allow_private: bool,
}

impl Default for ToolsConfig {
    fn default() -> Self {
        ToolsConfig {
            require_approval: vec!["bash".into(), "write_file".into(), "edit_file".into()],
            approval_fallback: Fallback::Deny,
            approval_timeout: Span::secs(120),
            allowed_paths: Vec::new(),
            bash_timeout: Span::secs(30),
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

/// Splits `provider/model`, checking the provider is one we speak.
pub fn split_model(model: &str) -> Result<(&str, &str), String> {
    let Some((provider, name)) = model.split_once('/') else {
        return Err(format!(
            "model {model:?} must be written provider/model, provider one of: {}",
            KNOWN_PROVIDERS.join(", ")
        ));
    };
    if !KNOWN_PROVIDERS.contains(&provider) {
        return Err(format!(
            "unknown provider {provider:?} in model {model:?}; known providers: {}",
            KNOWN_PROVIDERS.join(", ")
        ));
    }
    if name.trim().is_empty() {
        return Err(format!("model {model:?} names no model after the provider"));
    }
    Ok((provider, name))
}

pub fn is_loopback_bind(bind: &str) -> bool {
    bind.parse::<IpAddr>()
        .map(|ip| ip.is_loopback())
        .unwrap_or(false)
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
            self.server.bind = v;
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
            self.agent.default_model = v;
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
        Ok(())
    }

    /// Checks the values that parse but make no sense.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let s = &self.server;
        let ip: IpAddr = s.bind.parse().map_err(|_| {
            invalid(
                "server.bind",
                &s.bind,
                "must be an IP address such as 127.0.0.1",
            )
        })?;
        if !ip.is_loopback() && s.auth_token.is_empty() {
            return Err(invalid(
                "server.bind",
                &s.bind,
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
        split_model(&self.agent.default_model)
            .map_err(|why| invalid("agent.default_model", &self.agent.default_model, why))?;
        if !self.heartbeat.model.is_empty() {
            split_model(&self.heartbeat.model)
                .map_err(|why| invalid("heartbeat.model", &self.heartbeat.model, why))?;
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
        if !self.heartbeat.timezone.is_empty()
            && jiff::tz::TimeZone::get(&self.heartbeat.timezone).is_err()
        {
            return Err(invalid(
                "heartbeat.timezone",
                &self.heartbeat.timezone,
                "is not a known IANA time zone (e.g. Europe/Paris); leave empty for local time",
            ));
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
        if self.providers.read_timeout.get().is_zero()
            || self.providers.connect_timeout.get().is_zero()
        {
            return Err(invalid(
                "providers.read_timeout",
                String::from(self.providers.read_timeout),
                "provider timeouts must be above zero, or a stalled provider would hang a turn",
            ));
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
            &mut shown.memory.embeddings.api_key,
        ] {
            if !secret.is_empty() {
                *secret = "<redacted>".into();
            }
        }
        toml::to_string_pretty(&shown).unwrap_or_else(|e| format!("# cannot render config: {e}\n"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let c = Config::parse(Path::new("t.toml"), text)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn example_file_is_exactly_the_defaults() {
        let c = parse(EXAMPLE).expect("config.example.toml parses");
        assert_eq!(c, Config::default());
    }

    #[test]
    fn unknown_key_is_named() {
        let e = parse("[server]\nprot = 1\n").unwrap_err().to_string();
        assert!(e.contains("prot"), "{e}");
        let e = parse("[nonsense]\nx = 1\n").unwrap_err().to_string();
        assert!(e.contains("nonsense"), "{e}");
    }

    #[test]
    fn bad_values_name_key_and_value() {
        let e = parse("[server]\nbind = \"localhost:80\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("server.bind") && e.contains("localhost:80"),
            "{e}"
        );
        let e = parse("[server]\nbind = \"0.0.0.0\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("auth_token"), "{e}");
        assert!(parse("[server]\nbind = \"0.0.0.0\"\nauth_token = \"x\"\n").is_ok());
        let e = parse("[agent]\ndefault_model = \"gpt4\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("agent.default_model"), "{e}");
        let e = parse("[heartbeat]\ninterval = \"often\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("often"), "{e}");
        let e = parse("[heartbeat]\ntimezone = \"Mars/Olympus\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("heartbeat.timezone"), "{e}");
        let e = parse("[heartbeat]\ninterval = \"10ms\"\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("heartbeat.interval"), "{e}");
        assert!(parse("[heartbeat]\ninterval = \"0\"\n").is_ok());
        assert!(parse("[heartbeat]\ninterval = \"1s\"\n").is_ok());
        let e = parse("[heartbeat]\nactive_hours = { start = \"8:00\", end = \"22:00\" }\n")
            .unwrap_err()
            .to_string();
        assert!(e.contains("active_hours.start"), "{e}");
        let e = parse("[server]\nport = 70000\n").unwrap_err().to_string();
        assert!(e.contains("70000"), "{e}");
        assert!(parse("[server]\nport = 0\n").is_ok(), "0 picks a free port");
    }

    #[test]
    fn durations() {
        assert_eq!("90s".parse::<Span>().unwrap(), Span::secs(90));
        assert_eq!("2h30m".parse::<Span>().unwrap(), Span::secs(9000));
        assert_eq!("0".parse::<Span>().unwrap(), Span::secs(0));
        assert_eq!("250ms".parse::<Span>().unwrap(), Span::millis(250));
        assert!("-5s".parse::<Span>().is_err());
        assert!("soon".parse::<Span>().is_err());
        assert_eq!(String::from(Span::secs(9000)), "2h30m");
        assert_eq!(String::from(Span::millis(1500)), "1500ms");
    }

    #[test]
    fn env_overrides_and_keys() {
        let mut c = Config::default();
        let env = |k: &str| match k {
            "LOCALGPT_PORT" => Some("4000".to_string()),
            "OPENAI_API_KEY" => Some("sk-env".to_string()),
            "LOCALGPT_WORKSPACE" => Some("/tmp/ws".to_string()),
            _ => None,
        };
        c.apply_env(env).unwrap();
        assert_eq!(c.server.port, 4000);
        assert_eq!(c.providers.openai.api_key, "sk-env");
        assert_eq!(c.memory.workspace, "/tmp/ws");
        let e = c
            .apply_env(|k| (k == "LOCALGPT_PORT").then(|| "x".into()))
            .unwrap_err();
        assert!(e.to_string().contains("LOCALGPT_PORT"));
    }

    #[test]
    fn redaction_hides_secrets() {
        let mut c = Config::default();
        c.server.auth_token = "hunter2".into();
        c.providers.anthropic.api_key = "sk-ant-secret".into();
        let shown = c.redacted_toml();
        assert!(!shown.contains("hunter2") && !shown.contains("sk-ant-secret"));
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn hhmm() {
        assert_eq!(parse_hhmm("08:30"), Some(510));
        assert_eq!(parse_hhmm("23:59"), Some(1439));
        assert_eq!(parse_hhmm("24:00"), None);
        assert_eq!(parse_hhmm("8:30"), None);
    }
}
