//! The prompt, laid out stable first and volatile last, because a provider's prompt cache
//! (llama.cpp's slot, Anthropic's and OpenAI's prompt caching) reuses only a byte-identical
//! prefix of the request:
//!
//! 1. the system prompt: identity, tool rules and the curated memory files (SOUL.md,
//!    USER.md, MEMORY.md) — the same for every turn, every session and the heartbeat until
//!    one of those files changes; then the session's summary, once older turns were condensed;
//! 2. the tool schemas, in a fixed order (the providers send them beside the system prompt);
//! 3. the history, each user message with the [`Context`] it was first sent with;
//! 4. the new user message, and after its words its context: the local time and what is new
//!    in yesterday's and today's daily logs since this conversation last showed them.
//!
//! So a new turn, a minute or day boundary, or a write to today's log changes no byte before
//! the new message.

use std::path::Path;

mod context;

pub use context::turn_context;

/// The curated memory files, in prompt order.
const CURATED: [&str; 3] = ["SOUL.md", "USER.md", "MEMORY.md"];

/// Builds the stable system prompt. Returns it with what is left of `budget` (characters
/// of memory) for the daily logs of the turn's context.
pub fn system_prompt(
    workspace: &Path,
    include_memory: bool,
    budget: usize,
    tools_offered: bool,
) -> (String, usize) {
    let mut out = String::from(
        "You are LocalGPT, a personal AI assistant running on the user's own machine.\n\
         Each user message ends with a <context> block that LocalGPT adds, not the user: the \
         current local time and what is new in the user's daily logs. Use it when it helps; \
         do not mention it unless asked.\n",
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
    if !include_memory || budget == 0 {
        return (out, 0);
    }
    let (memory, left) = curated_memory(workspace, budget);
    if !memory.is_empty() {
        out.push_str(
            "\n## Memory\nThe user's curated memory files (Markdown); the daily logs come in the <context> blocks:\n",
        );
        out.push_str(&memory);
    }
    (out, left)
}

/// SOUL.md, USER.md and MEMORY.md, each cut to what is left of `budget` (keeping its
/// start), and what is left after them.
fn curated_memory(workspace: &Path, budget: usize) -> (String, usize) {
    let mut left = budget;
    let mut out = String::new();
    for rel in CURATED {
        if left == 0 {
            break;
        }
        let Ok(bytes) = std::fs::read(workspace.join(rel)) else {
            continue;
        };
        let text = String::from_utf8_lossy(&bytes);
        let text = text.trim();
        if text.is_empty() {
            continue;
        }
        let (shown, cut) = clip_start(text, left);
        left = left.saturating_sub(shown.len());
        out.push_str(&format!("\n### {rel}\n{shown}\n"));
        if cut {
            out.push_str("[cut to fit; use memory_get or memory_search for the rest]\n");
        }
    }
    (out, left)
}

/// At most `max` bytes from the start of `text`, on a char boundary.
fn clip_start(text: &str, max: usize) -> (&str, bool) {
    if text.len() <= max {
        return (text, false);
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    (&text[..end], true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clip_keeps_the_start_on_a_char_boundary() {
        assert_eq!(clip_start("abcdef", 3), ("abc", true));
        assert_eq!(clip_start("abc", 3), ("abc", false));
        assert_eq!(clip_start("ééé", 3), ("é", true));
    }

    #[test]
    fn curated_memory_within_budget_and_no_clock() {
        let dir = std::env::temp_dir().join(format!(
            "lgpt-prompt-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        std::fs::create_dir_all(dir.join("memory")).unwrap();
        std::fs::write(dir.join("MEMORY.md"), "# Memory\nlikes tea\n".repeat(100)).unwrap();
        std::fs::write(dir.join("memory/2026-02-14.md"), "today: dentist at 3pm\n").unwrap();
        let (p, left) = system_prompt(&dir, true, 500, true);
        assert!(p.contains("likes tea"));
        assert!(p.contains("[cut to fit"));
        assert_eq!(left, 0, "budget used up by MEMORY.md");
        let (p, left) = system_prompt(&dir, true, 100_000, true);
        assert!(!p.contains("dentist"), "daily logs belong to the context");
        assert!(left > 90_000);
        assert!(!p.contains("2026"), "no date in the stable part: {p}");
        let (p, left) = system_prompt(&dir, false, 100_000, true);
        assert!(!p.contains("likes tea"));
        assert_eq!(left, 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
