//! The tools the model may call: their JSON schemas and how each runs.
//!
//! A tool never fails the turn: every error becomes a tool result the model reads
//! (`is_error = true`), so the model can correct itself.

mod bash;
mod files;
mod memory;
mod sandbox;
mod web;

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{Value, json};

use crate::clock::Clock;
use crate::config::{ToolsConfig, Zone};
use crate::mcp;
use crate::memory::Memory;
use crate::providers::{ToolCall, ToolSpec};

pub use files::PathGuard;
pub use memory::append_entry;
pub use sandbox::{SandboxStatus, bash_sandbox_status};

/// What a tool run produced.
#[derive(Debug, Clone, PartialEq)]
pub struct ToolOutput {
    pub text: String,
    pub is_error: bool,
}

impl ToolOutput {
    pub fn ok(text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            text: text.into(),
            is_error: false,
        }
    }

    pub fn error(text: impl Into<String>) -> ToolOutput {
        ToolOutput {
            text: text.into(),
            is_error: true,
        }
    }
}

/// Everything a tool may touch.
pub struct ToolContext {
    pub memory: Arc<Memory>,
    pub guard: PathGuard,
    pub config: ToolsConfig,
    /// The user's zone, for the daily log's date.
    pub zone: Zone,
    pub clock: Arc<dyn Clock>,
}

impl ToolContext {
    pub fn new(
        memory: Arc<Memory>,
        config: &ToolsConfig,
        zone: Zone,
        clock: Arc<dyn Clock>,
    ) -> ToolContext {
        let allowed: Vec<PathBuf> = config
            .allowed_paths
            .iter()
            .map(|p| crate::paths::expand_tilde(p, &crate::paths::process_env))
            .collect();
        ToolContext {
            guard: PathGuard::new(memory.workspace(), &allowed),
            memory,
            config: config.clone(),
            zone,
            clock,
        }
    }
}

/// Every tool name, in the order they are offered.
pub const ALL: &[&str] = &[
    "memory_search",
    "memory_get",
    "memory_append",
    "read_file",
    "write_file",
    "edit_file",
    "bash",
    "web_fetch",
];

/// Where a tool comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Builtin,
    /// A tool of this MCP server.
    Mcp(String),
}

impl std::fmt::Display for Source {
    /// `builtin` or `mcp:<server>`, as `GET /api/tools` shows it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Source::Builtin => f.write_str("builtin"),
            Source::Mcp(server) => write!(f, "mcp:{server}"),
        }
    }
}

/// One tool the model can be offered.
#[derive(Debug, Clone, PartialEq)]
pub struct Entry {
    pub spec: ToolSpec,
    pub source: Source,
}

/// Every tool there is now: the built-ins in their fixed order, then the MCP servers'
/// tools sorted by name. Built for each turn (MCP tools come and go with their servers);
/// the order stays put, so the prompt's tool block only changes when the tools do.
pub struct Registry<'a> {
    builtin: &'a ToolContext,
    mcp: &'a mcp::Servers,
}

impl<'a> Registry<'a> {
    pub fn new(builtin: &'a ToolContext, mcp: &'a mcp::Servers) -> Registry<'a> {
        Registry { builtin, mcp }
    }

    /// Every tool with its schema and source, in offering order.
    pub fn entries(&self) -> Vec<Entry> {
        let builtin = specs(ALL).into_iter().map(|spec| Entry {
            spec,
            source: Source::Builtin,
        });
        let mcp = self.mcp.tools().into_iter().map(|t| Entry {
            spec: ToolSpec {
                name: t.name,
                description: t.description,
                parameters: t.input_schema,
            },
            source: Source::Mcp(t.server),
        });
        builtin.chain(mcp).collect()
    }

    /// The schemas offered to the model, in offering order.
    pub fn specs(&self) -> Vec<ToolSpec> {
        self.entries().into_iter().map(|e| e.spec).collect()
    }

    /// Runs one call, built-in or MCP; the output is capped at `tools.output_max_bytes`.
    /// An MCP call gives up soon after `cancelled()` turns true (the turn was cancelled).
    pub fn run(&self, call: &ToolCall, cancelled: &dyn Fn() -> bool) -> ToolOutput {
        if ALL.contains(&call.name.as_str()) || !call.name.starts_with("mcp_") {
            return run(self.builtin, call);
        }
        let out = self.mcp.call(&call.name, &call.arguments, cancelled);
        ToolOutput {
            text: cap(out.text, self.builtin.config.output_max_bytes),
            is_error: out.is_error,
        }
    }
}

/// The schemas of the tools in `names` (unknown names are skipped).
pub fn specs(names: &[&str]) -> Vec<ToolSpec> {
    names.iter().filter_map(|n| spec(n)).collect()
}

fn spec(name: &str) -> Option<ToolSpec> {
    let (description, parameters) = match name {
        "memory_search" => (
            "Search the user's long-term memory (Markdown files in the workspace) by keywords. Returns the best matching passages with file and line range.",
            json!({"type": "object", "properties": {
                "query": {"type": "string", "description": "Keywords to look for"},
                "limit": {"type": "integer", "minimum": 1, "maximum": 20, "description": "Results to return (default 5)"}
            }, "required": ["query"]}),
        ),
        "memory_get" => (
            "Read lines of a memory file (path relative to the workspace, e.g. MEMORY.md or memory/2026-02-14.md).",
            json!({"type": "object", "properties": {
                "file": {"type": "string"},
                "line_start": {"type": "integer", "minimum": 1, "description": "First line, 1-based (default 1)"},
                "line_end": {"type": "integer", "minimum": 1, "description": "Last line, inclusive (default: 200 lines after the start)"}
            }, "required": ["file"]}),
        ),
        "memory_append" => (
            "Remember something: append a note to today's daily log (target \"daily\", the default) or to the curated long-term MEMORY.md (target \"memory\").",
            json!({"type": "object", "properties": {
                "text": {"type": "string"},
                "target": {"type": "string", "enum": ["daily", "memory"]}
            }, "required": ["text"]}),
        ),
        "read_file" => (
            "Read a text file inside the workspace (or an allowed path).",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "offset": {"type": "integer", "minimum": 0, "description": "Line to start from, 0-based"},
                "limit": {"type": "integer", "minimum": 1, "description": "Lines to read"}
            }, "required": ["path"]}),
        ),
        "write_file" => (
            "Create or replace a file inside the workspace (or an allowed path) with the given content.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "content": {"type": "string"}
            }, "required": ["path", "content"]}),
        ),
        "edit_file" => (
            "Replace one exact occurrence of old_text with new_text in a file. Fails when old_text is missing or occurs more than once.",
            json!({"type": "object", "properties": {
                "path": {"type": "string"},
                "old_text": {"type": "string"},
                "new_text": {"type": "string"}
            }, "required": ["path", "old_text", "new_text"]}),
        ),
        "bash" => (
            "Run a shell command (bash -c) in the workspace directory. Output is capped; long commands are killed at the timeout.",
            json!({"type": "object", "properties": {
                "command": {"type": "string"}
            }, "required": ["command"]}),
        ),
        "web_fetch" => (
            "Fetch a web page or file over HTTP(S) and return its text (capped in size).",
            json!({"type": "object", "properties": {
                "url": {"type": "string"}
            }, "required": ["url"]}),
        ),
        _ => return None,
    };
    Some(ToolSpec {
        name: name.to_string(),
        description: description.to_string(),
        parameters,
    })
}

/// Runs one tool call. Unknown tools and bad arguments are tool errors, not failures.
pub fn run(ctx: &ToolContext, call: &ToolCall) -> ToolOutput {
    let args = &call.arguments;
    let out = match call.name.as_str() {
        "memory_search" => memory::search(ctx, args),
        "memory_get" => memory::get(ctx, args),
        "memory_append" => memory::append(ctx, args),
        "read_file" => files::read(ctx, args),
        "write_file" => files::write(ctx, args),
        "edit_file" => files::edit(ctx, args),
        "bash" => bash::run(ctx, args),
        "web_fetch" => web::fetch(ctx, args),
        other => Err(format!(
            "unknown tool {other:?}; available tools: {}",
            ALL.join(", ")
        )),
    };
    let mut out = match out {
        Ok(o) => o,
        Err(e) => ToolOutput::error(e),
    };
    out.text = cap(out.text, ctx.config.output_max_bytes);
    out
}

/// Cuts `text` to at most `max` bytes on a char boundary, saying so.
pub fn cap(mut text: String, max: usize) -> String {
    if text.len() <= max {
        return text;
    }
    let total = text.len();
    let mut cut = max;
    while !text.is_char_boundary(cut) {
        cut -= 1;
    }
    text.truncate(cut);
    text.push_str(&format!(
        "\n[output truncated: {total} bytes, showing the first {cut}]"
    ));
    text
}

/// A required string argument.
fn str_arg<'a>(args: &'a Value, name: &str) -> Result<&'a str, String> {
    match args.get(name) {
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(format!("argument '{name}' must be a string")),
        None => Err(format!("missing required argument '{name}'")),
    }
}

/// An optional non-negative integer argument.
fn uint_arg(args: &Value, name: &str) -> Result<Option<u64>, String> {
    match args.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_u64()
            .or_else(|| {
                v.as_f64()
                    .filter(|f| *f >= 0.0 && f.fract() == 0.0)
                    .map(|f| f as u64)
            })
            .map(Some)
            .ok_or_else(|| format!("argument '{name}' must be a non-negative integer")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_tool_has_a_schema() {
        let all = specs(ALL);
        assert_eq!(all.len(), ALL.len());
        for s in &all {
            assert_eq!(s.parameters["type"], "object", "{}", s.name);
            assert!(s.parameters["required"].is_array(), "{}", s.name);
        }
    }

    #[test]
    fn cap_respects_char_boundaries() {
        let s = "héllo wörld".repeat(10);
        let c = cap(s.clone(), 7);
        assert!(c.starts_with("héllo"));
        assert!(c.contains("truncated"));
        assert_eq!(cap("short".into(), 100), "short");
    }

    #[test]
    fn integer_arguments() {
        let v = json!({"a": 3, "b": 2.0, "c": -1, "d": "x"});
        assert_eq!(uint_arg(&v, "a"), Ok(Some(3)));
        assert_eq!(uint_arg(&v, "b"), Ok(Some(2)));
        assert!(uint_arg(&v, "c").is_err());
        assert!(uint_arg(&v, "d").is_err());
        assert_eq!(uint_arg(&v, "e"), Ok(None));
    }
}
