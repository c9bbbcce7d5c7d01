//! Handlers: plain functions from the shared state and a request to a response.

pub mod chat;
pub mod events;
pub mod heartbeat;
pub mod memory;
pub mod sessions;
pub mod tools;

use std::time::Duration;

use serde_json::json;

use super::Server;
use super::error::ApiError;
use super::http::{ApiRequest, ApiResponse};
use super::router::Route;

/// Answers one non-streaming route.
pub fn handle(srv: &Server, route: &Route, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let app = &srv.app;
    match route {
        // The one route a supervisor polls: a fixed body, nothing built per request.
        Route::Health => Ok(ApiResponse {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: br#"{"status":"ok"}"#.to_vec(),
        }),
        Route::Status => Ok(ApiResponse::ok(&status(srv))),
        Route::MemorySearch => memory::search(app, req),
        Route::MemoryStats => memory::stats(app),
        Route::MemoryReindex => memory::reindex(app, req),
        Route::OpenApi => Ok(ApiResponse {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: include_str!("../openapi.json").as_bytes().to_vec(),
        }),
        Route::Chat => chat::chat(app, req),
        Route::SessionCreate => sessions::create(app, req),
        Route::SessionList => sessions::list(app),
        Route::SessionGet(id) => sessions::get(app, id),
        Route::SessionDelete(id) => sessions::delete(app, id),
        Route::SessionApprove(id) => sessions::approve(app, id, req),
        Route::HeartbeatGet => Ok(heartbeat::get(app)),
        Route::HeartbeatRun => heartbeat::run(app, req),
        Route::Tools => Ok(tools::list(app)),
        Route::V1Models => super::v1::models(app),
        Route::V1Model(id) => super::v1::model_get(app, id),
        Route::DebugSleep | Route::DebugSleepFast => debug_sleep(req),
        Route::DebugPanic => panic!("deliberate panic from /api/debug/panic"),
        // Served by the server module itself: they need the raw connection.
        Route::ChatStream
        | Route::Events
        | Route::V1ChatCompletions
        | Route::WebSocket
        | Route::Preflight => Err(ApiError::internal(format!(
            "{route:?} reached the plain handler table"
        ))),
    }
}

fn status(srv: &Server) -> serde_json::Value {
    let app = &srv.app;
    let counts = app.agent.memory.counts();
    let (telegram, events, notify) = app.reach.status_json();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "model": app.config.agent.default_model.to_string(),
        "memory": {"files_indexed": counts.files, "chunks": counts.chunks},
        "embeddings": app.agent.memory.embeddings_status(),
        "heartbeat": heartbeat::status_json(app),
        "connections": srv.conns.counts(),
        "telegram": telegram,
        "events": events,
        "notify": notify,
        "mcp": tools::mcp_status(app),
    })
}

/// Holds a worker of the route's lane for `ms` milliseconds (tests and diagnostics).
fn debug_sleep(req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let ms: u64 = match req.query("ms") {
        None => 1000,
        Some(v) => v
            .parse()
            .ok()
            .filter(|ms| *ms <= 60_000)
            .ok_or_else(|| ApiError::invalid_request("ms must be an integer 0-60000"))?,
    };
    std::thread::sleep(Duration::from_millis(ms));
    Ok(ApiResponse::ok(&json!({"slept_ms": ms})))
}
