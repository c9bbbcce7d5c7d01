//! Typed config values: each is parsed once, when the config is loaded, and used typed
//! everywhere after (a model reference is never split again, a zone never looked up again).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;
use std::time::Duration;

use jiff::tz::TimeZone;
use serde::de::Error as _;
use serde::{Deserialize, Deserializer, Serialize, Serializer};

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
        s.to_string()
    }
}

impl fmt::Display for Span {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.is_zero() {
            return f.write_str("0");
        }
        if d.subsec_millis() != 0 || d.as_secs() == 0 {
            return write!(f, "{}ms", d.as_millis());
        }
        let secs = d.as_secs();
        let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
        if h > 0 {
            write!(f, "{h}h")?;
        }
        if m > 0 {
            write!(f, "{m}m")?;
        }
        if s > 0 {
            write!(f, "{s}s")?;
        }
        Ok(())
    }
}

/// The wire protocols a model reference may name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProviderKind {
    Anthropic,
    OpenAi,
    Ollama,
    ClaudeCli,
}

impl ProviderKind {
    pub const ALL: [ProviderKind; 4] = [
        ProviderKind::Anthropic,
        ProviderKind::OpenAi,
        ProviderKind::Ollama,
        ProviderKind::ClaudeCli,
    ];

    /// The prefix in `provider/model`.
    pub fn as_str(self) -> &'static str {
        match self {
            ProviderKind::Anthropic => "anthropic",
            ProviderKind::OpenAi => "openai",
            ProviderKind::Ollama => "ollama",
            ProviderKind::ClaudeCli => "claude-cli",
        }
    }

    fn known() -> String {
        ProviderKind::ALL.map(ProviderKind::as_str).join(", ")
    }
}

/// A model as `provider/model`, with a provider we speak and a model name after it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct ModelRef {
    provider: ProviderKind,
    name: String,
}

impl ModelRef {
    /// `claude-cli/opus`, the API document's default model.
    pub fn default_model() -> ModelRef {
        ModelRef {
            provider: ProviderKind::ClaudeCli,
            name: "opus".into(),
        }
    }

    pub fn provider(&self) -> ProviderKind {
        self.provider
    }

    /// The model name the provider knows (`gpt-4o`, not `openai/gpt-4o`).
    pub fn name(&self) -> &str {
        &self.name
    }
}

impl FromStr for ModelRef {
    type Err = String;

    fn from_str(model: &str) -> Result<ModelRef, String> {
        let Some((prefix, name)) = model.split_once('/') else {
            return Err(format!(
                "model {model:?} must be written provider/model, provider one of: {}",
                ProviderKind::known()
            ));
        };
        let Some(provider) = ProviderKind::ALL.into_iter().find(|p| p.as_str() == prefix) else {
            return Err(format!(
                "unknown provider {prefix:?} in model {model:?}; known providers: {}",
                ProviderKind::known()
            ));
        };
        if name.trim().is_empty() {
            return Err(format!("model {model:?} names no model after the provider"));
        }
        Ok(ModelRef {
            provider,
            name: name.to_string(),
        })
    }
}

impl fmt::Display for ModelRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.provider.as_str(), self.name)
    }
}

impl Serialize for ModelRef {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// The user's time zone: an IANA name, or the system's local zone when the name is empty.
#[derive(Clone, Debug)]
pub struct Zone {
    name: String,
    zone: TimeZone,
}

impl Zone {
    /// The system's local zone.
    pub fn local() -> Zone {
        Zone {
            name: String::new(),
            zone: TimeZone::system(),
        }
    }

    /// The configured name; empty for the local zone.
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn tz(&self) -> &TimeZone {
        &self.zone
    }

    /// The zone's IANA name as resolved (the local zone's when the setting is empty).
    pub fn iana_name(&self) -> &str {
        self.zone.iana_name().unwrap_or("local")
    }
}

impl Default for Zone {
    fn default() -> Zone {
        Zone::local()
    }
}

impl PartialEq for Zone {
    fn eq(&self, other: &Zone) -> bool {
        self.name == other.name
    }
}

impl FromStr for Zone {
    type Err = String;

    fn from_str(name: &str) -> Result<Zone, String> {
        if name.is_empty() {
            return Ok(Zone::local());
        }
        TimeZone::get(name)
            .map(|zone| Zone {
                name: name.to_string(),
                zone,
            })
            .map_err(|_| {
                "is not a known IANA time zone (e.g. Europe/Paris); leave empty for local time"
                    .to_string()
            })
    }
}

impl Serialize for Zone {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.name)
    }
}

/// A tool name in a policy list, or a pattern ending in `*` that matches every tool whose
/// name starts with what comes before it (`"mcp_*"`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ToolPattern(String);

impl ToolPattern {
    /// `*`: every tool.
    pub fn any() -> ToolPattern {
        ToolPattern("*".into())
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_pattern(&self) -> bool {
        self.0.ends_with('*')
    }

    pub fn matches(&self, tool: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => tool.starts_with(prefix),
            None => self.0 == tool,
        }
    }
}

impl FromStr for ToolPattern {
    type Err = String;

    fn from_str(s: &str) -> Result<ToolPattern, String> {
        let body = s.strip_suffix('*').unwrap_or(s);
        let ok_char = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if s.is_empty() || !body.chars().all(ok_char) {
            return Err(format!(
                "{s:?} is not a tool name (letters, digits, '_' and '-', optionally ending in '*')"
            ));
        }
        Ok(ToolPattern(s.to_string()))
    }
}

impl Serialize for ToolPattern {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ToolPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<ToolPattern, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(D::Error::custom)
    }
}

/// Deserializes a typed value from its string, naming `key` and the value on failure (the
/// TOML error shows the line; this says which setting and why).
fn parse_at<'de, D: Deserializer<'de>, T: FromStr<Err = String>>(
    d: D,
    key: &str,
) -> Result<T, D::Error> {
    let s = String::deserialize(d)?;
    s.parse()
        .map_err(|why| D::Error::custom(format!("{key} = {s:?} is invalid: {why}")))
}

pub(super) fn de_bind<'de, D: Deserializer<'de>>(d: D) -> Result<IpAddr, D::Error> {
    parse_at::<D, BindIp>(d, "server.bind").map(|b| b.0)
}

pub(super) fn de_default_model<'de, D: Deserializer<'de>>(d: D) -> Result<ModelRef, D::Error> {
    parse_at(d, "agent.default_model")
}

pub(super) fn de_heartbeat_model<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<ModelRef>, D::Error> {
    parse_at::<D, OptionalModel>(d, "heartbeat.model").map(|m| m.0)
}

pub(super) fn ser_optional_model<S: Serializer>(
    model: &Option<ModelRef>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match model {
        Some(m) => s.collect_str(m),
        None => s.serialize_str(""),
    }
}

pub(super) fn de_timezone<'de, D: Deserializer<'de>>(d: D) -> Result<Zone, D::Error> {
    parse_at(d, "heartbeat.timezone")
}

/// `server.bind`: an IP address, not a host name (a name could resolve anywhere).
struct BindIp(IpAddr);

impl FromStr for BindIp {
    type Err = String;
    fn from_str(s: &str) -> Result<BindIp, String> {
        s.parse()
            .map(BindIp)
            .map_err(|_| "must be an IP address such as 127.0.0.1".to_string())
    }
}

/// A model reference where the empty string means "none".
struct OptionalModel(Option<ModelRef>);

impl FromStr for OptionalModel {
    type Err = String;
    fn from_str(s: &str) -> Result<OptionalModel, String> {
        if s.is_empty() {
            return Ok(OptionalModel(None));
        }
        s.parse().map(|m| OptionalModel(Some(m)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_refs() {
        let m: ModelRef = "openai/org/model-with/slashes".parse().unwrap();
        assert_eq!(m.provider(), ProviderKind::OpenAi);
        assert_eq!(m.name(), "org/model-with/slashes");
        assert_eq!(m.to_string(), "openai/org/model-with/slashes");
        let e = "gemini/pro".parse::<ModelRef>().unwrap_err();
        assert!(
            e.contains("known providers") && e.contains("anthropic"),
            "{e}"
        );
        assert!("gpt-4o".parse::<ModelRef>().is_err());
        assert!("openai/ ".parse::<ModelRef>().is_err());
    }

    #[test]
    fn tool_patterns() {
        let p: ToolPattern = "mcp_*".parse().unwrap();
        assert!(p.is_pattern() && p.matches("mcp_time_now") && !p.matches("bash"));
        let exact: ToolPattern = "bash".parse().unwrap();
        assert!(exact.matches("bash") && !exact.matches("bash2"));
        for bad in ["", "Bash Tool", "a*b", "**"] {
            assert!(bad.parse::<ToolPattern>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zones() {
        assert_eq!("".parse::<Zone>().unwrap().name(), "");
        assert_eq!(
            "Europe/Paris".parse::<Zone>().unwrap().iana_name(),
            "Europe/Paris"
        );
        assert!("Mars/Olympus".parse::<Zone>().is_err());
    }
}
