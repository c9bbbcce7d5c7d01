//! Handlers: plain functions from the shared state and a request to a response.

pub mod chat;
pub mod heartbeat;
pub mod memory;
pub mod sessions;

use std::time::Duration;

use serde_json::json;

use super::error::ApiError;
use super::http::{ApiRequest, ApiResponse};
use super::router::Route;
use crate::app::App;

/// Answers one non-streaming route.
pub fn handle(app: &App, route: &Route, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    match route {
        // The one route a supervisor polls: a fixed body, nothing built per request.
        Route::Health => Ok(ApiResponse {
            status: 200,
            content_type: "application/json",
            headers: Vec::new(),
            body: br#"{"status":"ok"}"#.to_vec(),
        }),
        Route::Status => Ok(ApiResponse::ok(&status(app))),
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
        Route::DebugSleep | Route::DebugSleepFast => debug_sleep(req),
        Route::DebugPanic => panic!("deliberate panic from /api/debug/panic"),
        // Served by the server module itself: they need the raw connection.
        Route::ChatStream | Route::WebSocket | Route::Preflight => Err(ApiError::internal(
            format!("{route:?} reached the plain handler table"),
        )),
    }
}

fn status(app: &App) -> serde_json::Value {
    let counts = app.memory.counts();
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_seconds": app.started.elapsed().as_secs(),
        "model": app.config.agent.default_model,
        "memory": {"files_indexed": counts.files, "chunks": counts.chunks},
        "embeddings": app.memory.embeddings_status(),
        "heartbeat": heartbeat::status_json(app),
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
