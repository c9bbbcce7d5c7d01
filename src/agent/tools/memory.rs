//! Memory tools: search the index, read lines of a memory file, append a note.

use serde_json::{Value, json};

use super::{ToolContext, ToolOutput, str_arg, uint_arg};
use crate::durable;

pub fn search(ctx: &ToolContext, args: &Value) -> Result<ToolOutput, String> {
    let query = str_arg(args, "query")?;
    let limit = uint_arg(args, "limit")?.unwrap_or(5).clamp(1, 20) as usize;
    let hits = ctx
        .memory
        .search(query, limit)
        .map_err(|e| format!("memory search failed: {e}"))?;
    if hits.is_empty() {
        return Ok(ToolOutput::ok(format!("no memory matches {query:?}")));
    }
    let results: Vec<Value> = hits
        .iter()
        .map(|h| {
            json!({"file": h.file, "line_start": h.line_start, "line_end": h.line_end,
                   "score": (h.score * 1000.0).round() / 1000.0, "content": h.content})
        })
        .collect();
    Ok(ToolOutput::ok(
        serde_json::to_string_pretty(&results).unwrap_or_default(),
    ))
}

pub fn get(ctx: &ToolContext, args: &Value) -> Result<ToolOutput, String> {
    let file = str_arg(args, "file")?;
    let path = ctx.guard.resolve(file)?;
    let bytes = std::fs::read(&path).map_err(|e| format!("cannot read {file}: {e}"))?;
    let text = String::from_utf8_lossy(&bytes);
    let start = uint_arg(args, "line_start")?.unwrap_or(1).max(1) as usize;
    let end = uint_arg(args, "line_end")?
        .map(|e| e as usize)
        .unwrap_or(start + 199);
    if end < start {
        return Err(format!("line_end ({end}) is before line_start ({start})"));
    }
    let lines: Vec<String> = text
        .lines()
        .enumerate()
        .skip(start - 1)
        .take(end - start + 1)
        .map(|(i, l)| format!("{:>5}  {l}", i + 1))
        .collect();
    if lines.is_empty() {
        return Ok(ToolOutput::ok(format!(
            "{file} has {} lines; nothing at {start}-{end}",
            text.lines().count()
        )));
    }
    Ok(ToolOutput::ok(lines.join("\n")))
}

pub fn append(ctx: &ToolContext, args: &Value) -> Result<ToolOutput, String> {
    let text = str_arg(args, "text")?.trim();
    if text.is_empty() {
        return Err("text is empty".into());
    }
    let target = match args.get("target") {
        None | Some(Value::Null) => "daily",
        Some(Value::String(s)) => s.as_str(),
        Some(_) => return Err("target must be \"daily\" or \"memory\"".into()),
    };
    let now = crate::clock::local(ctx.clock.now(), ctx.zone.tz());
    let workspace = ctx.memory.workspace();
    let (path, entry) = match target {
        "daily" => {
            let rel = crate::memory::daily_log_rel(now.date());
            let entry = format!("- {} {text}\n", now.strftime("%H:%M"));
            (workspace.join(rel), entry)
        }
        "memory" => (workspace.join("MEMORY.md"), format!("\n{text}\n")),
        other => return Err(format!("target {other:?} must be \"daily\" or \"memory\"")),
    };
    append_entry(ctx, &path, &entry)?;
    Ok(ToolOutput::ok(format!(
        "appended to {}",
        ctx.guard.show(&path)
    )))
}

/// Appends `entry` to a workspace Markdown file on its own line, then indexes it.
pub fn append_entry(ctx: &ToolContext, path: &std::path::Path, entry: &str) -> Result<(), String> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    }
    // Start on a fresh line even when the file does not end with one.
    let needs_newline = last_byte(path).is_some_and(|b| b != b'\n');
    let data = if needs_newline {
        format!("\n{entry}")
    } else {
        entry.to_string()
    };
    durable::append(path, data.as_bytes())
        .map_err(|e| format!("cannot append to {}: {e}", path.display()))?;
    if let Err(e) = ctx.memory.refresh_file(path) {
        log::warn!("cannot index {}: {e}", path.display());
    }
    Ok(())
}

fn last_byte(path: &std::path::Path) -> Option<u8> {
    use std::io::{Read, Seek, SeekFrom};
    let mut f = std::fs::File::open(path).ok()?;
    f.seek(SeekFrom::End(-1)).ok()?;
    let mut b = [0u8; 1];
    f.read_exact(&mut b).ok()?;
    Some(b[0])
}
