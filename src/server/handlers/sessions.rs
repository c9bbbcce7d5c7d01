//! Session routes: create, list, read, delete, and approve a pending tool call.

use serde_json::json;

use crate::agent::approval::Decision;
use crate::app::App;
use crate::config::ModelRef;
use crate::server::error::ApiError;
use crate::server::http::{ApiRequest, ApiResponse, Fields};

fn not_found(id: &str) -> ApiError {
    ApiError::not_found(format!("session {id} not found"))
}

/// `POST /api/sessions` with an optional `{model}`.
pub fn create(app: &App, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let body = req.json_object(true)?;
    let model: ModelRef = match Fields(&body).opt_str("model")? {
        Some(m) => m.parse().map_err(ApiError::invalid_request)?,
        None => app.config.agent.default_model.clone(),
    };
    let s = app.sessions.create(&model.to_string())?;
    Ok(ApiResponse::json(
        201,
        &json!({"session_id": s.session_id, "model": s.model, "created_at": s.created_at}),
    ))
}

/// `GET /api/sessions`.
pub fn list(app: &App) -> Result<ApiResponse, ApiError> {
    let sessions = app.sessions.list()?;
    Ok(ApiResponse::ok(&json!({"sessions": sessions})))
}

/// `GET /api/sessions/{id}`.
pub fn get(app: &App, id: &str) -> Result<ApiResponse, ApiError> {
    let info = app.sessions.get(id)?.ok_or_else(|| not_found(id))?;
    let messages = app.sessions.messages(id)?;
    let mut v = serde_json::to_value(&info).unwrap_or_default();
    v["messages"] = json!(messages);
    Ok(ApiResponse::ok(&v))
}

/// `DELETE /api/sessions/{id}`.
pub fn delete(app: &App, id: &str) -> Result<ApiResponse, ApiError> {
    if app.sessions.delete(id)? {
        Ok(ApiResponse::ok(&json!({"deleted": true, "session_id": id})))
    } else {
        Err(not_found(id))
    }
}

/// `POST /api/sessions/{id}/approve` with `{request_id, decision: "approve"|"deny"}`.
pub fn approve(app: &App, id: &str, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let body = req.json_object(false)?;
    let f = Fields(&body);
    let request_id = f.req_str("request_id")?;
    let decision = parse_decision(f.req_str("decision")?)?;
    if app.sessions.get(id)?.is_none() {
        return Err(not_found(id));
    }
    let approved = decision == Decision::Approve;
    if !app.agent.approvals.decide(id, request_id, decision) {
        return Err(ApiError::not_found(format!(
            "no approval request {request_id} is waiting in session {id} (answered, timed out, or never asked)"
        )));
    }
    Ok(ApiResponse::ok(&json!({
        "session_id": id,
        "request_id": request_id,
        "decision": if approved { "approve" } else { "deny" },
    })))
}

/// `"approve"` or `"deny"`, the decision a client may send.
fn parse_decision(s: &str) -> Result<Decision, ApiError> {
    Decision::parse(s).ok_or_else(|| {
        ApiError::invalid_request(format!(
            "field 'decision' must be \"approve\" or \"deny\", got {s:?}"
        ))
    })
}
