//! The system prompt: who the assistant is, how to use tools, and (with `include_memory`)
//! the workspace's memory files within a character budget.

use std::path::Path;

use jiff::ZonedDateTime;

/// Builds the system prompt for a turn at local time `now`.
pub fn system_prompt(
    workspace: &Path,
    now: &ZonedDateTime,
    include_memory: bool,
    budget: usize,
    tools_offered: bool,
) -> String {
    let mut out = format!(
        "You are LocalGPT, a personal AI assistant running on the user's own machine.\n\
         Current local time: {} ({}).\n",
        now.strftime("%Y-%m-%d %H:%M %A"),
        now.time_zone().iana_name().unwrap_or("local")
    );
    if tools_offered {
        out.push_str(
            "\n## Tools\n\
             - Search memory (memory_search) before answering questions about the user's past, plans, preferences or notes.\n\
             - Save what should be remembered with memory_append: lasting facts to \"memory\" (MEMORY.md), events and progress to \"daily\".\n\
             - File paths are relative to the workspace; files outside it are refused.\n\
             - Some tools need the user's approval. If a tool is denied, do not retry it: say what you would have done.\n\
             - Do not repeat an identical tool call; use the result you already have.\n",
        );
    }
    if include_memory && budget > 0 {
        let memory = memory_context(workspace, now, budget);
        if !memory.is_empty() {
            out.push_str(
                "\n## Memory\nThe user's memory files (Markdown, newest daily logs last):\n",
            );
            out.push_str(&memory);
        }
    }
    out
}

/// SOUL.md, USER.md, MEMORY.md, yesterday's and today's daily logs, in that order, each cut
/// to what is left of `budget` (curated files keep their start, daily logs their end).
fn memory_context(workspace: &Path, now: &ZonedDateTime, budget: usize) -> String {
    let today = now.date();
    let mut files: Vec<(String, bool)> = ["SOUL.md", "USER.md", "MEMORY.md"]
        .iter()
        .map(|f| (f.to_string(), false))
        .collect();
    if let Ok(yesterday) = today.yesterday() {
        files.push((crate::memory::daily_log_rel(yesterday), true));
    }
    files.push((crate::memory::daily_log_rel(today), true));

    let mut left = budget;
    let mut out = String::new();
    for (rel, keep_end) in files {
        if left == 0 {
            break;
        }
        let Ok(bytes) = std::fs::read(workspace.join(&rel)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let (shown, cut) = clip(text, left, keep_end);
        left = left.saturating_sub(shown.len());
        out.push_str(&format!("\n### {rel}\n{shown}\n"));
        if cut {
            out.push_str("[cut to fit; use memory_get or memory_search for the rest]\n");
        }
    }
    out
}

/// At most `max` bytes of `text` on char boundaries, from the start or the end.
fn clip(text: &str, max: usize, keep_end: bool) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    if keep_end {
        let mut start = text.len() - max;
        while !text.is_char_boundary(start) {
            start += 1;
        }
        (&text[start..], true)
    } else {
        let mut end = max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        (&text[..end], true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_the_right_end() {
        assert_eq!(clip("abcdef", 3, false), ("abc", true));
        assert_eq!(clip("abcdef", 3, true), ("def", true));
        assert_eq!(clip("abc", 3, true), ("abc", false));
        let (s, _) = clip("ééé", 3, false);
        assert_eq!(s, "é");
    }

    #[test]
    fn memory_within_budget() {
        let dir = std::env::temp_dir().join(format!("lgpt-prompt-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("memory")).unwrap();
        std::fs::write(dir.join("MEMORY.md"), "# Memory\nlikes tea\n".repeat(100)).unwrap();
        let now: ZonedDateTime = "2026-02-14T10:00:00[UTC]".parse().unwrap();
        std::fs::write(dir.join("memory/2026-02-14.md"), "today: dentist at 3pm\n").unwrap();
        let p = system_prompt(&dir, &now, true, 500, true);
        assert!(p.contains("likes tea"));
        assert!(p.contains("[cut to fit"));
        assert!(!p.contains("dentist"), "budget used up by MEMORY.md");
        let p = system_prompt(&dir, &now, true, 100_000, true);
        assert!(p.contains("dentist at 3pm"));
        let p = system_prompt(&dir, &now, false, 100_000, true);
        assert!(!p.contains("likes tea"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
