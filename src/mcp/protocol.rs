//! The MCP requests we make, over a [`Connection`]: the `initialize` handshake with version
//! negotiation, `tools/list` with pagination, `tools/call`, `ping`.
//!
//! We speak the handshake-based ("legacy") revisions of the protocol. Servers written for
//! the stateless 2026-07-28 revision that also serve those revisions (the official SDKs
//! do) answer us as they should; one that serves only 2026-07-28 refuses `initialize`,
//! and its error, which should list the versions it speaks, is what we report.

use std::time::Duration;

use serde_json::{Value, json};

use super::connection::{CallError, Connection};

/// The revisions we speak, newest first. We ask for the first; a server that does not
/// speak it answers with another, which we accept if it is in this list.
pub const PROTOCOL_VERSIONS: &[&str] = &["2025-11-25", "2025-06-18", "2025-03-26", "2024-11-05"];

/// Longest tool description passed on to the model: every turn sends every description,
/// and a small local model reads each one.
const MAX_DESCRIPTION: usize = 2048;

/// Pages of `tools/list` read before we decide a server's cursor never ends.
const MAX_PAGES: usize = 100;

/// What a server told us about itself in the handshake.
#[derive(Debug, Clone, PartialEq)]
pub struct Handshake {
    pub protocol_version: String,
    /// `serverInfo`: name and version, as the server gave them.
    pub server: String,
}

/// A tool as the server lists it.
#[derive(Debug, Clone, PartialEq)]
pub struct ListedTool {
    pub name: String,
    pub description: String,
    /// `inputSchema`, always a JSON object with `"type": "object"`.
    pub input_schema: Value,
}

/// `initialize`, then `notifications/initialized`.
pub fn initialize(
    conn: &Connection,
    timeout: Duration,
    stopping: &dyn Fn() -> bool,
) -> Result<Handshake, String> {
    let params = json!({
        "protocolVersion": PROTOCOL_VERSIONS[0],
        // We offer none of the client features (roots, sampling, elicitation): servers
        // must not ask for them, and we refuse if they do.
        "capabilities": {},
        "clientInfo": {"name": "localgpt", "version": env!("CARGO_PKG_VERSION")},
    });
    let result = conn
        .request("initialize", params, timeout, stopping)
        .map_err(|e| match e {
            CallError::Remote(e) => format!("it refused initialize: {e}"),
            other => format!("initialize failed: {other}"),
        })?;
    let version = result["protocolVersion"].as_str().unwrap_or("");
    if !PROTOCOL_VERSIONS.contains(&version) {
        return Err(format!(
            "it speaks MCP protocol {version:?}; we speak {}",
            PROTOCOL_VERSIONS.join(", ")
        ));
    }
    let info = &result["serverInfo"];
    let server = format!(
        "{} {}",
        info["name"].as_str().unwrap_or("(unnamed)"),
        info["version"].as_str().unwrap_or("")
    )
    .trim_end()
    .to_string();
    if !conn.notify("notifications/initialized", Value::Null) {
        return Err("it stopped reading its input during the handshake".into());
    }
    Ok(Handshake {
        protocol_version: version.to_string(),
        server,
    })
}

/// Every tool, following `nextCursor` page by page.
pub fn list_tools(
    conn: &Connection,
    timeout: Duration,
    stopping: &dyn Fn() -> bool,
) -> Result<Vec<ListedTool>, String> {
    let mut tools = Vec::new();
    let mut cursor: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let params = match &cursor {
            Some(c) => json!({"cursor": c}),
            None => json!({}),
        };
        let page = conn
            .request("tools/list", params, timeout, stopping)
            .map_err(|e| format!("tools/list failed: {e}"))?;
        let Some(listed) = page["tools"].as_array() else {
            return Err("tools/list answered without a tools array".into());
        };
        tools.extend(listed.iter().filter_map(listed_tool));
        match page["nextCursor"].as_str() {
            Some(next) if !next.is_empty() && cursor.as_deref() != Some(next) => {
                cursor = Some(next.to_string())
            }
            _ => return Ok(tools),
        }
    }
    Err(format!("tools/list still had more pages after {MAX_PAGES}"))
}

fn listed_tool(t: &Value) -> Option<ListedTool> {
    let name = t["name"].as_str().filter(|n| !n.is_empty())?.to_string();
    let mut description = t["description"]
        .as_str()
        .or_else(|| t["title"].as_str())
        .unwrap_or("")
        .to_string();
    if description.len() > MAX_DESCRIPTION {
        let mut cut = MAX_DESCRIPTION;
        while !description.is_char_boundary(cut) {
            cut -= 1;
        }
        description.truncate(cut);
        description.push('…');
    }
    let mut input_schema = match &t["inputSchema"] {
        Value::Object(o) => Value::Object(o.clone()),
        _ => json!({}),
    };
    // Providers want an object schema; MCP requires one but not every server says so.
    if input_schema.get("type").is_none() {
        input_schema["type"] = "object".into();
    }
    if input_schema["type"] == "object" && input_schema.get("properties").is_none() {
        input_schema["properties"] = json!({});
    }
    Some(ListedTool {
        name,
        description,
        input_schema,
    })
}

/// `tools/call`; the result object as the server sent it.
pub fn call_tool(
    conn: &Connection,
    tool: &str,
    arguments: &Value,
    timeout: Duration,
    cancelled: &dyn Fn() -> bool,
) -> Result<Value, CallError> {
    let arguments = match arguments {
        Value::Null => json!({}),
        other => other.clone(),
    };
    conn.request(
        "tools/call",
        json!({"name": tool, "arguments": arguments}),
        timeout,
        cancelled,
    )
}

/// A `ping`: whether the server still answers.
pub fn ping(
    conn: &Connection,
    timeout: Duration,
    stopping: &dyn Fn() -> bool,
) -> Result<(), CallError> {
    conn.request("ping", Value::Null, timeout, stopping)
        .map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemas_are_objects() {
        let t = listed_tool(
            &json!({"name": "now", "inputSchema": {"properties": {"tz": {"type": "string"}}}}),
        )
        .unwrap();
        assert_eq!(t.input_schema["type"], "object");
        let t = listed_tool(&json!({"name": "now", "title": "Now"})).unwrap();
        assert_eq!(t.input_schema, json!({"type": "object", "properties": {}}));
        assert_eq!(t.description, "Now");
        assert!(listed_tool(&json!({"name": ""})).is_none());
        assert!(listed_tool(&json!({"description": "x"})).is_none());
    }
}
