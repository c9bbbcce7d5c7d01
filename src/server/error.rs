//! The API's error type, the one place every lower layer's failure is given its status and
//! code, and the one place it becomes the JSON envelope (or a stream's `error` event). The
//! same failure gets the same code on every surface.

use std::fmt;

use super::http::ApiResponse;
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
    /// The request field at fault, when one is (OpenAI's `param`).
    pub param: Option<String>,
}

impl ApiError {
    pub fn new(status: u16, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            retry_after: None,
            allow: None,
            param: None,
        }
    }

    /// Names the request field at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> ApiError {
        self.param = Some(param.into());
        self
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

    /// The same failure in OpenAI's shape, for `/v1/*`:
    /// `{"error":{"message","type","param","code"}}`, where `type` is the error class an
    /// OpenAI client knows and `code` is ours.
    pub fn openai_body(&self) -> serde_json::Value {
        let kind = match self.status {
            401 => "authentication_error",
            403 => "permission_error",
            404 => "not_found_error",
            429 => "rate_limit_error",
            503 => "overloaded_error",
            s if s >= 500 => "server_error",
            _ => "invalid_request_error",
        };
        serde_json::json!({"error": {
            "message": self.message,
            "type": kind,
            "param": self.param,
            "code": self.code,
        }})
    }

    /// The response for a request to `path`: OpenAI's shape under `/v1`, the envelope
    /// everywhere else. Every answer that can reach a `/v1` client goes through here.
    pub fn response_for(self, path: &str) -> ApiResponse {
        let openai = is_openai_path(path).then(|| self.openai_body());
        let mut resp = ApiResponse::from(self);
        if let Some(body) = openai {
            resp.body = body.to_string().into_bytes();
        }
        resp
    }

    /// The same failure as a stream's last event.
    pub fn event(&self) -> TurnEvent {
        TurnEvent::Error {
            code: self.code.to_string(),
            message: self.message.clone(),
        }
    }
}

/// Whether `path` (a request target; a query is ignored) is on the OpenAI-compatible API.
pub fn is_openai_path(path: &str) -> bool {
    path == "/v1" || path.starts_with("/v1/") || path.starts_with("/v1?")
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_paths_get_openai_errors_with_the_same_status_and_headers() {
        let e = ApiError::overloaded("all chat slots busy");
        let resp = e.clone().response_for("/v1/chat/completions");
        assert_eq!(resp.status, 503);
        assert!(
            resp.headers
                .iter()
                .any(|(k, v)| *k == "Retry-After" && v == "1")
        );
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(body["error"]["type"], "overloaded_error");
        assert_eq!(body["error"]["code"], "overloaded");
        assert_eq!(body["error"]["param"], serde_json::Value::Null);
        assert_eq!(body["error"]["message"], e.message.as_str());

        let resp = e.response_for("/api/chat");
        let body: serde_json::Value = serde_json::from_slice(&resp.body).unwrap();
        assert_eq!(
            body,
            serde_json::json!({"error": {"code": "overloaded",
            "message": "the server is busy (all chat slots busy); retry shortly"}})
        );

        let bad = ApiError::invalid_request("no").with_param("messages");
        let body = bad.openai_body();
        assert_eq!(body["error"]["type"], "invalid_request_error");
        assert_eq!(body["error"]["param"], "messages");
        assert_eq!(
            ApiError::unauthorized().openai_body()["error"]["type"],
            "authentication_error"
        );
        assert_eq!(
            ApiError::provider("x").openai_body()["error"]["type"],
            "server_error"
        );
    }

    #[test]
    fn only_v1_paths_are_openai_paths() {
        for p in [
            "/v1",
            "/v1/models",
            "/v1/chat/completions",
            "/v1/nope",
            "/v1?x=1",
        ] {
            assert!(is_openai_path(p), "{p}");
        }
        for p in ["/v10", "/api/chat", "/health", "/v1x/models", ""] {
            assert!(!is_openai_path(p), "{p}");
        }
    }
}
