//! `GET /api/heartbeat`, `POST /api/heartbeat/run`, and the heartbeat part of
//! `/api/status`. Times are RFC 3339 UTC.

use serde_json::{Value, json};

use crate::app::App;
use crate::clock::rfc3339;
use crate::heartbeat::{Run, Trigger};
use crate::server::error::ApiError;
use crate::server::http::{ApiRequest, ApiResponse};

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
        "interval": cfg.interval.to_string(),
        "active_hours": cfg.active_hours.as_ref().map(|h| json!({"start": h.start, "end": h.end})),
        "timezone": app.agent.zone.iana_name(),
        "model": app.heartbeat.model().to_string(),
        "running": s.running.is_some(),
        "running_since": s.running.map(|(since, _)| rfc3339(since)),
        "last_run": s.last_run.as_ref().map(|r| rfc3339(r.time)),
        "next_run": s.next_run.map(rfc3339),
        "last_alert": s.last_alert.as_ref().map(Run::to_json),
        "runs": s.runs.iter().map(Run::to_json).collect::<Vec<_>>(),
    }))
}

/// `POST /api/heartbeat/run` (body optional): runs one cycle now and answers its record;
/// `409 conflict` while another run is in progress.
pub fn run(app: &App, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    req.json_object(true)?;
    let run = app.heartbeat.run_now(&app.agent, Trigger::Api)?;
    Ok(ApiResponse::ok(&run.to_json()))
}
