//! The volatile end of the prompt: the context told with each new user message — the local
//! time, and what the conversation has not yet seen of yesterday's and today's daily logs.
//!
//! A log is shown whole the first time (or after an edit of what was shown); later turns
//! show only the lines added since. Each context records how far it showed each log
//! ([`Shown`]), and is kept with its message, so the conversation itself says what the model
//! has read.

use std::collections::HashMap;
use std::path::Path;

use jiff::ZonedDateTime;
use xxhash_rust::xxh3::xxh3_64;

use crate::providers::{Context, Message, Shown};

/// The context for a new user message at `now`: the local time, and with `logs` the news
/// of yesterday's and today's daily logs since `earlier` (the conversation so far) showed
/// them, within `budget` bytes of log text (today's log has the first claim).
pub fn turn_context(
    workspace: &Path,
    now: &ZonedDateTime,
    logs: bool,
    budget: usize,
    earlier: &[Message],
) -> Context {
    let mut text = format!(
        "<context>\nLocal time: {} ({})\n",
        now.strftime("%A %Y-%m-%d %H:%M"),
        now.time_zone().iana_name().unwrap_or("local")
    );
    let mut shown = Vec::new();
    if logs && budget > 0 {
        let today = now.date();
        let mut files = vec![(crate::memory::daily_log_rel(today), "today's log")];
        if let Ok(yesterday) = today.yesterday() {
            files.push((crate::memory::daily_log_rel(yesterday), "yesterday's log"));
        }
        let seen = seen(earlier);
        let mut left = budget;
        let mut parts = Vec::new();
        for (rel, label) in files {
            let bytes = match std::fs::read(workspace.join(&rel)) {
                Ok(bytes) => bytes,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
                Err(e) => {
                    log::warn!("cannot read {rel} for the prompt: {e}");
                    continue;
                }
            };
            if let Some(part) = news(&rel, label, &bytes, seen.get(rel.as_str()), &mut left) {
                parts.push(part);
            }
        }
        // Oldest first, as the logs were written.
        for (part, record) in parts.into_iter().rev() {
            text.push_str(&part);
            shown.push(record);
        }
    }
    text.push_str("</context>");
    Context { text, shown }
}

/// How far the conversation has shown each log: the end and the hash of what was shown.
/// A part that does not continue the one before it (whose message was summarised away)
/// leaves the log unseen, so it is shown whole again.
fn seen(earlier: &[Message]) -> HashMap<&str, (u64, u64)> {
    let mut seen: HashMap<&str, Option<(u64, u64)>> = HashMap::new();
    let parts = earlier
        .iter()
        .filter_map(|m| m.context.as_ref())
        .flat_map(|c| &c.shown);
    for part in parts {
        let chain = seen.entry(part.file.as_str()).or_insert(None);
        *chain = if part.whole || chain.is_some_and(|(to, _)| to == part.from) {
            Some((part.to, part.hash))
        } else {
            None
        };
    }
    seen.into_iter()
        .filter_map(|(file, chain)| chain.map(|c| (file, c)))
        .collect()
}

fn is_blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// What `bytes` (the log `rel` now) adds to what was seen of it, as a part of the context
/// text and its record; `None` when there is nothing new (or no budget left).
fn news(
    rel: &str,
    label: &str,
    bytes: &[u8],
    seen: Option<&(u64, u64)>,
    left: &mut usize,
) -> Option<(String, Shown)> {
    let len = bytes.len();
    let hash_to = |to: usize| xxh3_64(&bytes[..to]);
    let record = |from: usize, whole: bool| Shown {
        file: rel.to_string(),
        from: from as u64,
        to: len as u64,
        hash: hash_to(len),
        whole,
    };
    let unchanged = |&(to, hash): &(u64, u64)| {
        usize::try_from(to).is_ok_and(|to| to <= len && hash_to(to) == hash)
    };
    let (from, heading) = match seen {
        Some(&(to, hash)) if unchanged(&(to, hash)) => {
            let to = to as usize;
            if is_blank(&bytes[to..]) {
                return None;
            }
            (to, format!("{label}, new since last shown"))
        }
        Some(_) if is_blank(bytes) => {
            let part = format!("### {rel} ({label}) is now empty\n");
            return Some((part, record(0, true)));
        }
        Some(_) => (0, format!("{label}, changed; it now reads")),
        None if is_blank(bytes) => return None,
        None => (0, label.to_string()),
    };
    if *left == 0 {
        return None;
    }
    let piece = &bytes[from..];
    let start = clip_end(piece, *left);
    *left = left.saturating_sub(piece.len() - start);
    let body = String::from_utf8_lossy(&piece[start..]);
    let mut part = format!("### {rel} ({heading})\n");
    if start > 0 {
        part.push_str("[the start is cut to fit; memory_get reads it]\n");
    }
    part.push_str(body.trim_start_matches(['\n', '\r']).trim_end());
    part.push('\n');
    // A part cut at its start stands on its own: it does not continue the one before.
    let whole = from == 0 || start > 0;
    Some((part, record(from + start, whole)))
}

/// Where to start `bytes` so that at most `max` of them remain: 0 when all fit, else at the
/// start of a line (or at least of a character).
fn clip_end(bytes: &[u8], max: usize) -> usize {
    if bytes.len() <= max {
        return 0;
    }
    let mut start = bytes.len() - max;
    if let Some(nl) = bytes[start..].iter().position(|&b| b == b'\n')
        && start + nl + 1 < bytes.len()
    {
        return start + nl + 1;
    }
    while start < bytes.len() && bytes[start] & 0xC0 == 0x80 {
        start += 1;
    }
    start
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Workspace(std::path::PathBuf);

    impl Workspace {
        fn new() -> Workspace {
            let dir = std::env::temp_dir().join(format!(
                "lgpt-context-{}-{}",
                std::process::id(),
                uuid::Uuid::new_v4().simple()
            ));
            std::fs::create_dir_all(dir.join("memory")).unwrap();
            Workspace(dir)
        }

        fn write(&self, rel: &str, text: &str) {
            std::fs::write(self.0.join(rel), text).unwrap();
        }

        fn append(&self, rel: &str, text: &str) {
            use std::io::Write;
            let mut f = std::fs::OpenOptions::new()
                .append(true)
                .create(true)
                .open(self.0.join(rel))
                .unwrap();
            f.write_all(text.as_bytes()).unwrap();
        }
    }

    impl Drop for Workspace {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn at(time: &str) -> ZonedDateTime {
        format!("{time}[Europe/Paris]").parse().unwrap()
    }

    /// A conversation that saw these contexts.
    fn said(contexts: &[&Context]) -> Vec<Message> {
        contexts
            .iter()
            .map(|c| Message::user("hi").with_context((*c).clone()))
            .collect()
    }

    #[test]
    fn logs_are_shown_once_then_only_what_is_new() {
        let ws = Workspace::new();
        ws.write("memory/2026-02-13.md", "- 18:00 watered the plants\n");
        ws.write("memory/2026-02-14.md", "- 09:00 dentist at 15:00\n");
        let first = turn_context(&ws.0, &at("2026-02-14T10:05:00"), true, 10_000, &[]);
        let t = &first.text;
        assert!(t.starts_with("<context>\nLocal time: Saturday 2026-02-14 10:05 (Europe/Paris)\n"));
        assert!(
            t.find("watered").unwrap() < t.find("dentist").unwrap(),
            "{t}"
        );
        assert_eq!(first.shown.len(), 2);

        // Nothing changed: the time only.
        let second = turn_context(
            &ws.0,
            &at("2026-02-14T10:06:00"),
            true,
            10_000,
            &said(&[&first]),
        );
        assert_eq!(
            second.text,
            "<context>\nLocal time: Saturday 2026-02-14 10:06 (Europe/Paris)\n</context>"
        );

        // An append shows only the new line.
        ws.append("memory/2026-02-14.md", "- 10:07 bought milk\n");
        let third = turn_context(
            &ws.0,
            &at("2026-02-14T10:08:00"),
            true,
            10_000,
            &said(&[&first, &second]),
        );
        assert!(
            third
                .text
                .contains("new since last shown)\n- 10:07 bought milk\n"),
            "{}",
            third.text
        );
        assert!(!third.text.contains("dentist"));
        let fourth_earlier = said(&[&first, &second, &third]);
        let fourth = turn_context(
            &ws.0,
            &at("2026-02-14T10:09:00"),
            true,
            10_000,
            &fourth_earlier,
        );
        assert!(!fourth.text.contains("###"), "{}", fourth.text);

        // An edit of what was shown shows the whole log again.
        ws.write(
            "memory/2026-02-14.md",
            "- 09:00 dentist moved to 16:00\n- 10:07 bought milk\n",
        );
        let fifth = turn_context(
            &ws.0,
            &at("2026-02-14T10:10:00"),
            true,
            10_000,
            &fourth_earlier,
        );
        assert!(
            fifth
                .text
                .contains("changed; it now reads)\n- 09:00 dentist moved"),
            "{}",
            fifth.text
        );

        // The next day: yesterday's log is known, today's is new (and empty).
        let next_day = turn_context(
            &ws.0,
            &at("2026-02-15T00:01:00"),
            true,
            10_000,
            &said(&[&first, &second, &third, &fifth]),
        );
        assert_eq!(
            next_day.text,
            "<context>\nLocal time: Sunday 2026-02-15 00:01 (Europe/Paris)\n</context>"
        );
    }

    #[test]
    fn a_chain_broken_by_a_summary_shows_the_log_whole() {
        let ws = Workspace::new();
        ws.write("memory/2026-02-14.md", "- 09:00 dentist\n");
        let first = turn_context(&ws.0, &at("2026-02-14T10:00:00"), true, 10_000, &[]);
        ws.append("memory/2026-02-14.md", "- 10:01 milk\n");
        let second = turn_context(
            &ws.0,
            &at("2026-02-14T10:02:00"),
            true,
            10_000,
            &said(&[&first]),
        );
        assert!(!second.shown[0].whole);
        // The first message was folded into the summary; only the second is left.
        let third = turn_context(
            &ws.0,
            &at("2026-02-14T10:03:00"),
            true,
            10_000,
            &said(&[&second]),
        );
        assert!(
            third.text.contains("- 09:00 dentist\n- 10:01 milk"),
            "{}",
            third.text
        );
    }

    #[test]
    fn budget_keeps_the_end_of_a_log_and_today_first() {
        let ws = Workspace::new();
        ws.write("memory/2026-02-13.md", &"- old line\n".repeat(50));
        ws.write(
            "memory/2026-02-14.md",
            &format!("{}- last line\n", "- x\n".repeat(50)),
        );
        let c = turn_context(&ws.0, &at("2026-02-14T10:00:00"), true, 40, &[]);
        assert!(c.text.contains("[the start is cut"), "{}", c.text);
        assert!(c.text.contains("- last line"));
        assert!(
            !c.text.contains("old line"),
            "budget went to today's log first"
        );
        assert!(c.shown[0].whole && c.shown[0].from > 0);
        // Seen as far as shown: nothing new next time.
        let again = turn_context(&ws.0, &at("2026-02-14T10:01:00"), true, 40, &said(&[&c]));
        assert!(!again.text.contains("###"), "{}", again.text);
        let none = turn_context(&ws.0, &at("2026-02-14T10:00:00"), false, 40, &[]);
        assert!(none.shown.is_empty() && !none.text.contains("###"));
    }

    #[test]
    fn clip_end_starts_at_a_line_or_char() {
        assert_eq!(clip_end(b"abc", 5), 0);
        assert_eq!(clip_end(b"aaaa\nbb\ncc", 6), 5);
        assert_eq!(clip_end(b"aaaa\nbb\ncc", 4), 8);
        let e = "ééé".as_bytes();
        assert_eq!(clip_end(e, 3), 4);
    }
}
