//! The HTTP client side of reaching out (webhooks, the Bot API): a `ureq` agent with every
//! timeout set, and transport failures in words that never carry the URL — a webhook's
//! path and a bot token (which sits in every Bot API path) are secrets, and `ureq`'s own
//! error messages can include the request URL.

use std::io::{self, Read};
use std::time::Duration;

use ureq::{Agent, Timeout};

/// Most bytes read from an answer (a `getUpdates` batch of 100 long messages is well
/// under this).
pub const MAX_ANSWER_BYTES: u64 = 4 * 1024 * 1024;

/// An agent with `connect` as its resolve/connect timeout and `read` as the longest
/// silence while sending or receiving. Status codes are answers, not errors. Its reads can
/// be cancelled (`providers::cancel::watched`), so a long poll ends at shutdown.
pub fn agent(connect: Duration, read: Duration) -> Agent {
    let config = Agent::config_builder()
        .timeout_resolve(Some(connect))
        .timeout_connect(Some(connect))
        .timeout_per_read(Some(read))
        .timeout_per_write(Some(read))
        .http_status_as_error(false)
        .user_agent(concat!("localgpt/", env!("CARGO_PKG_VERSION")))
        // Small answers only: keep idle pooled connections cheap.
        .max_response_header_size(32 * 1024)
        .input_buffer_size(16 * 1024)
        .output_buffer_size(16 * 1024)
        .build();
    Agent::with_parts(
        config,
        crate::providers::cancel::Interruptible::default(),
        ureq::unversioned::resolver::DefaultResolver::default(),
    )
}

/// Reads an answer body (up to [`MAX_ANSWER_BYTES`]) as text.
pub fn read_text(body: ureq::Body) -> Result<String, String> {
    let mut text = String::new();
    body.into_with_config()
        .limit(MAX_ANSWER_BYTES)
        .lossy_utf8(true)
        .reader()
        .read_to_string(&mut text)
        .map_err(|e| describe(&ureq::Error::from(e)))?;
    Ok(text)
}

/// What went wrong, in words, without the URL.
pub fn describe(e: &ureq::Error) -> String {
    match e {
        ureq::Error::Timeout(Timeout::Resolve | Timeout::Connect) => {
            "could not connect in time".into()
        }
        ureq::Error::Timeout(_) => "no answer in time".into(),
        ureq::Error::Io(e) => match e.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => "no answer in time".into(),
            io::ErrorKind::ConnectionRefused => "connection refused".into(),
            io::ErrorKind::UnexpectedEof
            | io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe => "the connection was closed without an answer".into(),
            // std reports a failed getaddrinfo as an uncategorised error with this text.
            _ if e.to_string().contains("lookup address") => "cannot resolve the host (DNS)".into(),
            kind => format!("I/O error ({kind})"),
        },
        ureq::Error::HostNotFound => "cannot resolve the host (DNS)".into(),
        ureq::Error::ConnectionFailed => "cannot connect".into(),
        ureq::Error::Tls(_) | ureq::Error::Rustls(_) | ureq::Error::Pem(_) => {
            "TLS handshake failed".into()
        }
        ureq::Error::Protocol(_) => "the answer is not valid HTTP".into(),
        ureq::Error::BadUri(_) | ureq::Error::Http(_) => "the URL is not valid".into(),
        ureq::Error::BodyExceedsLimit(limit) => format!("the answer is larger than {limit} bytes"),
        ureq::Error::StatusCode(code) => format!("HTTP {code}"),
        // Anything else is described by its kind only: its own text may hold the URL.
        _ => "the request failed".into(),
    }
}

/// Longest piece of a peer's own error text put into a message.
pub const MAX_DETAIL_CHARS: usize = 300;

/// `text` cut to [`MAX_DETAIL_CHARS`] characters.
pub fn clip(text: &str) -> String {
    match text.char_indices().nth(MAX_DETAIL_CHARS) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_string(),
    }
}

/// `text` with every occurrence of `secret` replaced, for anything derived from a peer's
/// answer that is about to be logged or shown.
pub fn redact(text: &str, secret: &str) -> String {
    if secret.is_empty() {
        text.to_string()
    } else {
        text.replace(secret, "<redacted>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_described_without_the_url() {
        let agent = agent(Duration::from_secs(2), Duration::from_secs(2));
        // A closed port: refused, and the words carry neither the path nor the host.
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let e = agent
            .post(format!("http://127.0.0.1:{port}/bot123:SECRET/getMe"))
            .send("{}")
            .unwrap_err();
        let words = describe(&e);
        assert!(
            !words.contains("SECRET") && !words.contains("127.0.0.1"),
            "{words}"
        );
        assert_eq!(redact("a 123:SECRET b", "123:SECRET"), "a <redacted> b");
    }
}
