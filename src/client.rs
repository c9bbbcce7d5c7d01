//! A small blocking client the CLI uses to talk to a running daemon.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

/// Why a call to the daemon failed.
#[derive(Debug)]
pub enum ClientError {
    /// No daemon answered (refused, timed out).
    Unreachable(String),
    /// The daemon answered with an error envelope.
    Api {
        status: u16,
        code: String,
        message: String,
    },
}

impl fmt::Display for ClientError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClientError::Unreachable(e) => write!(f, "cannot reach the daemon: {e}"),
            ClientError::Api {
                status,
                code,
                message,
            } => write!(f, "{status} {code}: {message}"),
        }
    }
}

impl std::error::Error for ClientError {}

/// Settings shared by every call: token and timeout.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    token: String,
}

/// A client bound to one daemon address.
pub struct Bound<'a> {
    client: &'a Client,
    base: String,
}

impl Client {
    pub fn from_config(config: &Config) -> Client {
        Client::new(&config.server.auth_token, None)
    }

    /// `timeout` bounds a whole call; `None` for calls that wait on a model.
    pub fn new(token: &str, timeout: Option<Duration>) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(2)))
            .timeout_global(timeout.or(Some(Duration::from_secs(10))))
            .build()
            .new_agent();
        Client {
            agent,
            token: token.to_string(),
        }
    }

    /// A client that waits as long as a model turn may take.
    pub fn patient(config: &Config) -> Client {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(2)))
            .build()
            .new_agent();
        Client {
            agent,
            token: config.server.auth_token.clone(),
        }
    }

    /// Binds to `addr`; an unspecified address (0.0.0.0) is reached over loopback.
    pub fn at(&self, addr: SocketAddr) -> Bound<'_> {
        let ip = match addr.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        Bound {
            client: self,
            base: format!("http://{}", SocketAddr::new(ip, addr.port())),
        }
    }
}

impl Bound<'_> {
    pub fn base(&self) -> &str {
        &self.base
    }

    pub fn get(&self, path: &str) -> Result<Value, ClientError> {
        let mut req = self.client.agent.get(format!("{}{path}", self.base));
        if !self.client.token.is_empty() {
            req = req.header("Authorization", format!("Bearer {}", self.client.token));
        }
        finish(
            req.call()
                .map_err(|e| ClientError::Unreachable(e.to_string())),
        )
    }

    /// POSTs JSON and hands back the response unread, for streaming answers; an error
    /// status is turned into [`ClientError::Api`].
    pub fn post_stream(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let resp = self.post_request(path, body)?;
        if resp.status().as_u16() >= 400 {
            // `finish` turns an error status into the envelope's code and message.
            return Err(match finish(Ok(resp)) {
                Err(e) => e,
                Ok(v) => ClientError::Unreachable(format!("unexpected answer: {v}")),
            });
        }
        Ok(resp)
    }

    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        finish(self.post_request(path, body))
    }

    fn post_request(
        &self,
        path: &str,
        body: &Value,
    ) -> Result<ureq::http::Response<ureq::Body>, ClientError> {
        let mut req = self
            .client
            .agent
            .post(format!("{}{path}", self.base))
            .header("Content-Type", "application/json");
        if !self.client.token.is_empty() {
            req = req.header("Authorization", format!("Bearer {}", self.client.token));
        }
        req.send(body.to_string())
            .map_err(|e| ClientError::Unreachable(e.to_string()))
    }
}

fn finish(
    result: Result<ureq::http::Response<ureq::Body>, ClientError>,
) -> Result<Value, ClientError> {
    let mut resp = result?;
    let status = resp.status().as_u16();
    let text = resp
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_to_string()
        .map_err(|e| ClientError::Unreachable(format!("reading the answer: {e}")))?;
    let value: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    if status >= 400 {
        let err = value.get("error");
        return Err(ClientError::Api {
            status,
            code: err
                .and_then(|e| e.get("code"))
                .and_then(Value::as_str)
                .unwrap_or("error")
                .to_string(),
            message: err
                .and_then(|e| e.get("message"))
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_string(),
        });
    }
    Ok(value)
}
