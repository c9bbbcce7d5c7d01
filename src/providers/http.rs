//! The HTTP side shared by the providers that speak HTTP: one configured `ureq` agent, the
//! POST that opens a streamed answer, and the mapping of every transport failure to a
//! [`ProviderError`] that names the provider and the reason.
//!
//! `ureq` 3 sets no timeouts by default, so every agent built here carries the configured
//! connect timeout (DNS and TCP/TLS setup) and read timeout (the longest silence between two
//! reads, including the wait for the response headers).

use std::io::{self, Read};

use serde_json::Value;
use ureq::{Agent, BodyReader, Timeout};

use super::ProviderError;
use crate::config::{ProvidersConfig, Span};

/// Most bytes read from one streamed answer. `Body::into_with_config` starts unlimited;
/// this bounds what a misbehaving server can make us read while still being far above any
/// real completion (a long answer is a few hundred KiB of SSE).
pub const MAX_STREAM_BYTES: u64 = 64 * 1024 * 1024;

/// Most bytes read from an error answer (status 4xx/5xx) to find the provider's message.
pub const MAX_ERROR_BODY_BYTES: u64 = 64 * 1024;

/// Longest provider message or body excerpt put into an error detail.
pub const MAX_DETAIL_CHARS: usize = 500;

/// A streamed response body.
pub type StreamBody = BodyReader<'static>;

/// An HTTP client for one provider.
pub struct Http {
    agent: Agent,
    provider: &'static str,
    connect_timeout: Span,
    read_timeout: Span,
    /// The settings a timeout message names.
    settings: TimeoutSettings,
}

/// The names of the config settings behind an agent's connect and read timeouts, for
/// messages that tell the user what to change.
#[derive(Debug, Clone, Copy)]
pub struct TimeoutSettings {
    pub connect: &'static str,
    pub read: &'static str,
}

impl Http {
    pub fn new(provider: &'static str, config: &ProvidersConfig) -> Http {
        Http::with_timeouts(
            provider,
            config.connect_timeout,
            config.read_timeout,
            TimeoutSettings {
                connect: "providers.connect_timeout",
                read: "providers.read_timeout",
            },
        )
    }

    /// An agent with timeouts of its own (the embedder's), named by `settings` in errors.
    pub fn with_timeouts(
        provider: &'static str,
        connect_timeout: Span,
        read_timeout: Span,
        settings: TimeoutSettings,
    ) -> Http {
        let connect = Some(connect_timeout.get());
        let read = Some(read_timeout.get());
        let config = Agent::config_builder()
            .timeout_resolve(connect)
            .timeout_connect(connect)
            .timeout_per_read(read)
            .timeout_per_write(read)
            // Status errors carry the provider's own message in the body; read it ourselves.
            .http_status_as_error(false)
            .user_agent(concat!("localgpt/", env!("CARGO_PKG_VERSION")))
            // ureq's 128 KiB buffers per connection are sized for bulk transfers; a
            // provider's headers and stream lines are small, and pooled idle connections
            // keep their buffers.
            .max_response_header_size(32 * 1024)
            .input_buffer_size(32 * 1024)
            .output_buffer_size(32 * 1024)
            .build();
        // Reads wait in slices, so a cancelled turn ends its call promptly (cancel.rs).
        let agent = Agent::with_parts(
            config,
            super::cancel::Interruptible::default(),
            ureq::unversioned::resolver::DefaultResolver::default(),
        );
        Http {
            agent,
            provider,
            connect_timeout,
            read_timeout,
            settings,
        }
    }

    /// POSTs `body` as JSON and returns the streamed answer once a 2xx status arrived.
    ///
    /// Header values (API keys among them) never appear in an error.
    pub fn post_stream(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        body: &Value,
    ) -> Result<StreamBody, ProviderError> {
        let mut request = self
            .agent
            .post(url)
            .header("content-type", "application/json");
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        log::debug!("{}: POST {}", self.provider, shown_url(url));
        let response = request
            .send(body.to_string())
            .map_err(|e| self.transport_error(url, e, false))?;
        let status = response.status();
        let body = response.into_body();
        if status.is_success() {
            return Ok(body.into_with_config().limit(MAX_STREAM_BYTES).reader());
        }
        let mut text = String::new();
        // A body that cannot be read fully still gives the status; keep what arrived.
        let _ = body
            .into_with_config()
            .limit(MAX_ERROR_BODY_BYTES)
            .lossy_utf8(true)
            .reader()
            .read_to_string(&mut text);
        let reason = status.canonical_reason().unwrap_or("error");
        let message = error_message(&text);
        let detail = if message.is_empty() {
            format!("HTTP {} {reason} from {}", status.as_u16(), shown_url(url))
        } else {
            format!(
                "HTTP {} {reason} from {}: {message}",
                status.as_u16(),
                shown_url(url)
            )
        };
        Err(self.failed(detail))
    }

    /// Adds a hint to an authentication failure when no key is configured: the provider's
    /// own "unauthorized" does not say where our key comes from.
    pub fn hint_missing_key(&self, e: ProviderError, key: &str, setting: &str) -> ProviderError {
        match e {
            ProviderError::Failed { provider, detail }
                if key.is_empty()
                    && (detail.starts_with("HTTP 401") || detail.starts_with("HTTP 403")) =>
            {
                ProviderError::Failed {
                    provider,
                    detail: format!("{detail} (no API key is configured: set {setting})"),
                }
            }
            other => other,
        }
    }

    /// A `Failed` error of this provider.
    pub fn failed(&self, detail: impl Into<String>) -> ProviderError {
        ProviderError::Failed {
            provider: self.provider.to_string(),
            detail: detail.into(),
        }
    }

    /// Maps an error met while reading the stream (after the status arrived).
    pub fn read_error(&self, url: &str, e: io::Error) -> ProviderError {
        self.transport_error(url, ureq::Error::from(e), true)
    }

    /// Maps a ureq error: every timeout to `Timeout`, everything else to `Failed` with the
    /// reason in words. `streaming`: the answer had begun.
    fn transport_error(&self, url: &str, e: ureq::Error, streaming: bool) -> ProviderError {
        let shown = shown_url(url);
        let timeout = |phase: Timeout| -> ProviderError {
            let detail = match phase {
                Timeout::Resolve | Timeout::Connect => format!(
                    "could not connect to {shown} within {} ({})",
                    String::from(self.connect_timeout),
                    self.settings.connect
                ),
                _ => format!(
                    "no data from {shown} for {} ({})",
                    String::from(self.read_timeout),
                    self.settings.read
                ),
            };
            ProviderError::Timeout {
                provider: self.provider.to_string(),
                detail,
            }
        };
        let detail = match e {
            ureq::Error::Timeout(phase) => return timeout(phase),
            ureq::Error::Io(e) => match e.kind() {
                io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => {
                    return timeout(Timeout::PerRead);
                }
                io::ErrorKind::ConnectionRefused => format!("connection refused by {shown}"),
                io::ErrorKind::UnexpectedEof
                | io::ErrorKind::ConnectionReset
                | io::ErrorKind::ConnectionAborted
                | io::ErrorKind::BrokenPipe => {
                    if streaming {
                        format!("{shown} closed the connection mid-answer (stream cut)")
                    } else {
                        format!("{shown} closed the connection without answering")
                    }
                }
                io::ErrorKind::InvalidData => format!("malformed answer from {shown}: {e}"),
                // std reports a failed getaddrinfo as an uncategorised error with this text.
                _ if !streaming && e.to_string().contains("lookup address") => {
                    format!("cannot resolve the host of {shown} (DNS): {e}")
                }
                _ => format!("I/O error talking to {shown}: {e}"),
            },
            ureq::Error::HostNotFound => format!("cannot resolve the host of {shown} (DNS)"),
            ureq::Error::ConnectionFailed => format!("cannot connect to {shown}"),
            e @ (ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_)) => {
                format!("TLS error with {shown}: {e}")
            }
            ureq::Error::Protocol(e) => format!("malformed HTTP answer from {shown}: {e}"),
            ureq::Error::BadUri(_) | ureq::Error::Http(_) => {
                format!("cannot build a request to {shown}: check the provider's base_url")
            }
            ureq::Error::BodyExceedsLimit(limit) => {
                format!("the answer from {shown} is larger than {limit} bytes")
            }
            e => format!("request to {shown} failed: {e}"),
        };
        self.failed(detail)
    }
}

/// The provider's own error message from an error body: `{"error":{"message":..}}`
/// (OpenAI, Anthropic), `{"error":"..."}` (Ollama), `{"message":..}` or `{"detail":..}`
/// (assorted compatible servers), else the start of the raw text.
pub fn error_message(body: &str) -> String {
    let text = body.trim();
    if let Ok(v) = serde_json::from_str::<Value>(text) {
        let error = &v["error"];
        let message = error["message"]
            .as_str()
            .or_else(|| error.as_str())
            .or_else(|| v["message"].as_str())
            .or_else(|| v["detail"].as_str());
        if let Some(message) = message {
            let kind = error["type"].as_str().filter(|k| !k.is_empty());
            return match kind {
                Some(kind) => clip(&format!("{message} ({kind})")),
                None => clip(message),
            };
        }
    }
    clip(text)
}

/// Cuts `text` to [`MAX_DETAIL_CHARS`] characters.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// The URL for messages, without any `user:password@` part.
pub fn shown_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => format!("{scheme}://{}", &rest[at + 1..]),
        None => url.to_string(),
    }
}

/// Joins a configured base URL and an API path without doubling the slash.
pub fn join_url(base: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn provider_error_messages_are_found_in_each_shape() {
        assert_eq!(
            error_message(r#"{"error":{"message":"Rate limit","type":"requests","code":null}}"#),
            "Rate limit (requests)"
        );
        assert_eq!(
            error_message(
                r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            ),
            "Overloaded (overloaded_error)"
        );
        assert_eq!(
            error_message(r#"{"error":"model not found"}"#),
            "model not found"
        );
        assert_eq!(error_message(r#"{"detail":"Not Found"}"#), "Not Found");
        assert_eq!(
            error_message("  <html>bad gateway</html>\n"),
            "<html>bad gateway</html>"
        );
        assert_eq!(error_message(""), "");
        let long = "é".repeat(MAX_DETAIL_CHARS + 10);
        assert_eq!(error_message(&long).chars().count(), MAX_DETAIL_CHARS + 1);
    }

    #[test]
    fn urls_are_shown_without_credentials() {
        assert_eq!(
            shown_url("https://user:pw@example.com/v1/chat"),
            "https://example.com/v1/chat"
        );
        assert_eq!(
            shown_url("http://127.0.0.1:1/a@b"),
            "http://127.0.0.1:1/a@b"
        );
    }

    #[test]
    fn urls_join_with_one_slash() {
        assert_eq!(join_url("http://h/v1/", "/chat"), "http://h/v1/chat");
        assert_eq!(join_url("http://h/v1", "chat"), "http://h/v1/chat");
    }
}
