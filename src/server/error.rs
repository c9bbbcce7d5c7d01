//! The API's error type, the one place every lower layer's failure is given its status and
//! code, and the one place it becomes the JSON envelope (or a stream's `error` event). The
//! same failure gets the same code on every surface.

use std::fmt;

use crate::agent::AgentError;
use crate::agent::events::TurnEvent;
use crate::heartbeat::Busy;
use crate::providers::ProviderError;
use crate::sessions::StoreError;

/// An error answered to an API client as `{"error":{"code","message"}}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
    /// Seconds for a `Retry-After` header (503).
    pub retry_after: Option<u32>,
    /// Methods for an `Allow` header (405).
    pub allow: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
        }
    }

    pub fn invalid_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "invalid_request", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(
            401,
            "unauthorized",
            "missing or wrong bearer token: send 'Authorization: Bearer <server.auth_token>'",
        )
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "forbidden", message)
    }

    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(404, "not_found", message)
    }

    pub fn method_not_allowed(method: &str, path: &str, allow: &[&str]) -> ApiError {
        let allow = allow.join(", ");
        let mut e = ApiError::new(
            405,
            "method_not_allowed",
            format!("{method} is not allowed on {path}; use {allow}"),
        );
        e.allow = Some(allow);
        e
    }

    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(409, "conflict", message)
    }

    pub fn payload_too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "payload_too_large",
            format!("request body is larger than server.max_body_bytes ({limit} bytes)"),
        )
    }

    pub fn request_header_too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(431, "request_header_too_large", message)
    }

    pub fn overloaded(what: &str) -> ApiError {
        let mut e = ApiError::new(
            503,
            "overloaded",
            format!("the server is busy ({what}); retry shortly"),
        );
        e.retry_after = Some(1);
        e
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "internal_error", message)
    }

    /// A database or file the daemon keeps could not be used (damaged, deleted, disk
    /// full): not a bug, and the message names the file.
    pub fn storage(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "storage_error", message)
    }

    pub fn provider(message: impl Into<String>) -> ApiError {
        ApiError::new(502, "provider_error", message)
    }

    pub fn provider_timeout(message: impl Into<String>) -> ApiError {
        ApiError::new(504, "provider_timeout", message)
    }

    /// The turn was cancelled (a WebSocket `cancel`); 499 as nginx uses it: the client
    /// closed the request. Only a client that is still there sees it.
    pub fn cancelled() -> ApiError {
        ApiError::new(499, "cancelled", "the turn was cancelled")
    }

    /// The JSON envelope body.
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"error": {"code": self.code, "message": self.message}})
    }

    /// The same failure as a stream's last event.
    pub fn event(&self) -> TurnEvent {
        TurnEvent::Error {
            code: self.code.to_string(),
            message: self.message.clone(),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> ApiError {
        ApiError::storage(e.to_string())
    }
}

impl From<AgentError> for ApiError {
    fn from(e: AgentError) -> ApiError {
        match e {
            AgentError::SessionNotFound(_) => ApiError::not_found(e.to_string()),
            AgentError::SessionBusy(_) => ApiError::conflict(e.to_string()),
            AgentError::BadModel(m) => ApiError::invalid_request(m),
            AgentError::Provider(ProviderError::Timeout { .. }) => {
                ApiError::provider_timeout(e.to_string())
            }
            AgentError::Provider(ProviderError::Cancelled) => ApiError::cancelled(),
            AgentError::Provider(ProviderError::Failed { .. }) => ApiError::provider(e.to_string()),
            AgentError::Storage(s) => s.into(),
        }
    }
}

impl From<Busy> for ApiError {
    fn from(busy: Busy) -> ApiError {
        ApiError::conflict(busy.to_string())
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}
