//! `GET /api/heartbeat`, `POST /api/heartbeat/run`, and the heartbeat part of
//! `/api/status`. Times are RFC 3339 UTC.

use serde_json::{Value, json};

use crate::app::App;
use crate::clock::rfc3339;
use crate::heartbeat::{Run, Trigger};
use crate::server::error::ApiError;
use crate::server::http::{ApiRequest, ApiResponse};

/// A run record as the API (and `localgpt daemon heartbeat --json`) shows it.
pub fn run_json(run: &Run) -> Value {
    json!({
        "time": rfc3339(run.time),
        "status": run.status.as_str(),
        "trigger": run.trigger.as_str(),
        "reason": run.reason,
        "preview": run.preview,
        "duration_ms": run.duration_ms,
        "model_called": run.model_called,
        "model": run.model,
    })
}

/// `heartbeat{enabled, last_run, next_run}` of `/api/status`.
pub fn status_json(app: &App) -> Value {
    let s = app.heartbeat.snapshot();
    json!({
        "enabled": s.enabled,
        "last_run": s.last_run.map(|r| rfc3339(r.time)),
        "next_run": s.next_run.map(rfc3339),
    })
}

/// `GET /api/heartbeat`: the settings, the run in progress, and the recent runs (newest
/// first).
pub fn get(app: &App) -> ApiResponse {
    let s = app.heartbeat.snapshot();
    let cfg = &app.config.heartbeat;
    ApiResponse::ok(&json!({
        "enabled": s.enabled,
        "interval": String::from(cfg.interval),
        "active_hours": cfg.active_hours.as_ref().map(|h| json!({"start": h.start, "end": h.end})),
        "timezone": app.zone.iana_name().unwrap_or("local"),
        "model": app.heartbeat.model(&app.config),
        "running": s.running.is_some(),
        "running_since": s.running.map(|(since, _)| rfc3339(since)),
        "last_run": s.last_run.as_ref().map(|r| rfc3339(r.time)),
        "next_run": s.next_run.map(rfc3339),
        "last_alert": s.last_alert.as_ref().map(run_json),
        "runs": s.runs.iter().map(run_json).collect::<Vec<_>>(),
    }))
}

/// `POST /api/heartbeat/run` (body optional): runs one cycle now and answers its record;
/// `409 conflict` while another run is in progress.
pub fn run(app: &App, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    req.json_object(true)?;
    let run = app
        .heartbeat
        .run_now(app, Trigger::Api)
        .map_err(|busy| ApiError::conflict(busy.to_string()))?;
    Ok(ApiResponse::ok(&run_json(&run)))
}
