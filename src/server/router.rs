//! Maps a method and path to a [`Route`], and a route to the lane that serves it.

use super::error::ApiError;

/// Every endpoint the daemon answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    Health,
    Status,
    OpenApi,
    MemorySearch,
    MemoryStats,
    MemoryReindex,
    Chat,
    ChatStream,
    SessionCreate,
    SessionList,
    SessionGet(String),
    SessionDelete(String),
    SessionApprove(String),
    HeartbeatGet,
    HeartbeatRun,
    /// The events feed (SSE; the connection goes to the feed thread).
    Events,
    /// Every tool, built-in and MCP.
    Tools,
    WebSocket,
    /// `GET /v1/models` (OpenAI-compatible).
    V1Models,
    /// `GET /v1/models/{id}`; the id may contain `/` (`openai/gpt-4o`).
    V1Model(String),
    /// `POST /v1/chat/completions`, plain or streamed.
    V1ChatCompletions,
    /// A CORS preflight for any known path.
    Preflight,
    DebugSleep,
    /// Holds a fast-lane worker (tests fill the fast lane with it).
    DebugSleepFast,
    DebugPanic,
}

/// Which pool of workers serves a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Cheap work that must never wait behind a model.
    Fast,
    /// Work bound by an LLM provider (or made slow on purpose).
    Chat,
}

impl Route {
    pub fn lane(&self) -> Lane {
        match self {
            Route::Chat
            | Route::ChatStream
            | Route::V1ChatCompletions
            | Route::HeartbeatRun
            | Route::DebugSleep => Lane::Chat,
            // Reindex is disk-bound, not model-bound, but a full rebuild of a large workspace
            // takes seconds: keep it out of the fast lane.
            Route::MemoryReindex => Lane::Chat,
            _ => Lane::Fast,
        }
    }

    /// Routes that answer without a bearer token.
    pub fn is_public(&self) -> bool {
        matches!(self, Route::Health | Route::Preflight)
    }
}

/// Every public endpoint as (method, path template); `{id}` stands for a path parameter.
/// `GET /api/openapi.json` must describe exactly these (a test checks).
pub const ENDPOINTS: &[(&str, &str)] = &[
    ("GET", "/health"),
    ("GET", "/api/status"),
    ("GET", "/api/openapi.json"),
    ("GET", "/api/memory/search"),
    ("GET", "/api/memory/stats"),
    ("POST", "/api/memory/reindex"),
    ("POST", "/api/chat"),
    ("POST", "/api/chat/stream"),
    ("GET", "/api/sessions"),
    ("POST", "/api/sessions"),
    ("GET", "/api/sessions/{id}"),
    ("DELETE", "/api/sessions/{id}"),
    ("POST", "/api/sessions/{id}/approve"),
    ("GET", "/api/heartbeat"),
    ("POST", "/api/heartbeat/run"),
    ("GET", "/api/events"),
    ("GET", "/api/tools"),
    ("GET", "/api/ws"),
    ("GET", "/v1/models"),
    ("GET", "/v1/models/{id}"),
    ("POST", "/v1/chat/completions"),
];

/// Finds the route for `method` and `path` (no query string).
pub fn route(method: &str, path: &str, debug_routes: bool) -> Result<Route, ApiError> {
    // HEAD is GET without a body (tiny_http drops the body for HEAD).
    let m = if method == "HEAD" { "GET" } else { method };
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    let found: Option<(&[&str], Option<Route>)> = match segments.as_slice() {
        ["health"] => Some((&["GET"], (m == "GET").then_some(Route::Health))),
        ["api", "status"] => Some((&["GET"], (m == "GET").then_some(Route::Status))),
        ["api", "openapi.json"] => Some((&["GET"], (m == "GET").then_some(Route::OpenApi))),
        ["api", "memory", "search"] => {
            Some((&["GET"], (m == "GET").then_some(Route::MemorySearch)))
        }
        ["api", "memory", "stats"] => Some((&["GET"], (m == "GET").then_some(Route::MemoryStats))),
        ["api", "memory", "reindex"] => {
            Some((&["POST"], (m == "POST").then_some(Route::MemoryReindex)))
        }
        ["api", "chat"] => Some((&["POST"], (m == "POST").then_some(Route::Chat))),
        ["api", "chat", "stream"] => Some((&["POST"], (m == "POST").then_some(Route::ChatStream))),
        ["api", "sessions"] => Some((
            &["GET", "POST"],
            match m {
                "GET" => Some(Route::SessionList),
                "POST" => Some(Route::SessionCreate),
                _ => None,
            },
        )),
        ["api", "sessions", id] if !id.is_empty() => Some((
            &["GET", "DELETE"],
            match m {
                "GET" => Some(Route::SessionGet(id.to_string())),
                "DELETE" => Some(Route::SessionDelete(id.to_string())),
                _ => None,
            },
        )),
        ["api", "sessions", id, "approve"] if !id.is_empty() => Some((
            &["POST"],
            (m == "POST").then(|| Route::SessionApprove(id.to_string())),
        )),
        ["api", "heartbeat"] => Some((&["GET"], (m == "GET").then_some(Route::HeartbeatGet))),
        ["api", "heartbeat", "run"] => {
            Some((&["POST"], (m == "POST").then_some(Route::HeartbeatRun)))
        }
        ["api", "events"] => Some((&["GET"], (m == "GET").then_some(Route::Events))),
        ["api", "tools"] => Some((&["GET"], (m == "GET").then_some(Route::Tools))),
        ["api", "ws"] => Some((&["GET"], (m == "GET").then_some(Route::WebSocket))),
        ["v1", "models"] => Some((&["GET"], (m == "GET").then_some(Route::V1Models))),
        ["v1", "models", id @ ..] if id.iter().all(|s| !s.is_empty()) => {
            Some((&["GET"], (m == "GET").then(|| Route::V1Model(id.join("/")))))
        }
        ["v1", "chat", "completions"] => {
            Some((&["POST"], (m == "POST").then_some(Route::V1ChatCompletions)))
        }
        ["api", "debug", "sleep"] if debug_routes => {
            Some((&["POST"], (m == "POST").then_some(Route::DebugSleep)))
        }
        ["api", "debug", "sleep-fast"] if debug_routes => {
            Some((&["POST"], (m == "POST").then_some(Route::DebugSleepFast)))
        }
        ["api", "debug", "panic"] if debug_routes => {
            Some((&["GET"], (m == "GET").then_some(Route::DebugPanic)))
        }
        _ => None,
    };
    match found {
        Some((_, Some(route))) => Ok(route),
        Some(_) if method == "OPTIONS" => Ok(Route::Preflight),
        Some((allow, None)) => Err(ApiError::method_not_allowed(method, path, allow)),
        None => Err(ApiError::not_found(format!(
            "no such endpoint: {path} (see GET /api/openapi.json for the list)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_routes() {
        assert_eq!(route("GET", "/health", false), Ok(Route::Health));
        assert_eq!(route("HEAD", "/health", false), Ok(Route::Health));
        assert_eq!(route("GET", "/api/status/", false), Ok(Route::Status));
        assert_eq!(
            route("DELETE", "/api/sessions/abc", false),
            Ok(Route::SessionDelete("abc".into()))
        );
        assert_eq!(
            route("POST", "/api/sessions/abc/approve", false),
            Ok(Route::SessionApprove("abc".into()))
        );
        assert_eq!(route("OPTIONS", "/api/chat", false), Ok(Route::Preflight));
        assert_eq!(
            route("GET", "/v1/models/openai/gpt-4o", false),
            Ok(Route::V1Model("openai/gpt-4o".into()))
        );
        assert_eq!(route("GET", "/v1/models/", false), Ok(Route::V1Models));
        assert_eq!(
            route("GET", "/v1/models//x", false).unwrap_err().status,
            404
        );
        assert_eq!(
            route("POST", "/v1/chat/completions", false),
            Ok(Route::V1ChatCompletions)
        );
        assert_eq!(
            route("GET", "/v1/chat/completions", false)
                .unwrap_err()
                .status,
            405
        );
    }

    #[test]
    fn unknown_and_wrong_method() {
        assert_eq!(route("GET", "/nope", false).unwrap_err().status, 404);
        assert_eq!(
            route("GET", "/api/debug/panic", false).unwrap_err().status,
            404
        );
        let e = route("POST", "/health", false).unwrap_err();
        assert_eq!(e.status, 405);
        assert_eq!(e.allow.as_deref(), Some("GET"));
        assert_eq!(
            route("PUT", "/api/sessions", false).unwrap_err().status,
            405
        );
    }

    #[test]
    fn openapi_describes_every_endpoint_and_no_other() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("openapi.json")).expect("openapi.json is JSON");
        let mut documented = Vec::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                documented.push((method.to_uppercase(), path.clone()));
            }
        }
        documented.sort();
        let mut served: Vec<(String, String)> = ENDPOINTS
            .iter()
            .map(|(m, p)| (m.to_string(), p.to_string()))
            .collect();
        served.sort();
        assert_eq!(documented, served);
        for (method, path) in ENDPOINTS {
            let concrete = path.replace("{id}", "abc");
            assert!(
                route(method, &concrete, false).is_ok(),
                "{method} {path} must route"
            );
        }
    }

    #[test]
    fn lanes() {
        assert_eq!(Route::Health.lane(), Lane::Fast);
        assert_eq!(Route::MemorySearch.lane(), Lane::Fast);
        // Admission only: the feed thread serves the stream, not the worker.
        assert_eq!(Route::Events.lane(), Lane::Fast);
        assert_eq!(Route::Chat.lane(), Lane::Chat);
        assert_eq!(Route::ChatStream.lane(), Lane::Chat);
        assert_eq!(Route::V1ChatCompletions.lane(), Lane::Chat);
        assert_eq!(Route::V1Models.lane(), Lane::Fast);
    }
}
