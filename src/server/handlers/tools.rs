//! `GET /api/tools`: every tool the model can be offered now, where it comes from and
//! whether a chat turn must ask before running it.

use serde_json::{Value, json};

use crate::app::App;
use crate::server::http::ApiResponse;

pub fn list(app: &App) -> ApiResponse {
    let agent = &app.agent;
    let tools: Vec<Value> = agent
        .registry()
        .entries()
        .into_iter()
        .map(|e| {
            json!({
                "name": e.spec.name,
                "source": e.source.to_string(),
                "requires_approval": agent.chat_policy.needs_approval(&e.spec.name),
                "description": e.spec.description,
            })
        })
        .collect();
    ApiResponse::ok(&json!({ "tools": tools }))
}

/// `/api/status`'s `mcp`: each configured server by name.
pub fn mcp_status(app: &App) -> Value {
    let servers: serde_json::Map<String, Value> = app
        .agent
        .mcp
        .status()
        .into_iter()
        .map(|s| {
            let name = s.name.clone();
            (name, serde_json::to_value(s).unwrap_or(Value::Null))
        })
        .collect();
    Value::Object(servers)
}
