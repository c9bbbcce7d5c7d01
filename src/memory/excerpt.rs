//! The part of a chunk a search result shows.

use super::query;

/// Part of a chunk shown in a result, with its lines relative to the chunk's first line.
pub(super) struct Excerpt {
    pub text: String,
    pub first_line: usize,
    pub last_line: usize,
}

/// Cuts `text` to at most `max` characters around the first term found: blank lines at
/// either end are dropped, and a long chunk is shown from the line holding the match
/// (or shortly before the match, on a very long line), with `…` where it was cut.
pub(super) fn excerpt(text: &str, terms: &[String], max: usize) -> Excerpt {
    let lead = text.len() - text.trim_start().len();
    let start = text[..lead].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let end = text.trim_end().len().max(start);
    let body = &text[start..end];
    let first_line = newlines(&text[..start]);
    if body.chars().count() <= max {
        return Excerpt {
            text: body.to_string(),
            first_line,
            last_line: first_line + newlines(body),
        };
    }
    let room = max.saturating_sub(2).max(1);
    let at = query::first_match(body, terms).unwrap_or(0);
    let line_start = body[..at].rfind('\n').map(|i| i + 1).unwrap_or(0);
    let from = if body[line_start..at].chars().count() <= max / 3 {
        line_start
    } else {
        let back = max / 4;
        body[..at]
            .char_indices()
            .rev()
            .nth(back.saturating_sub(1))
            .map(|(i, _)| i)
            .unwrap_or(line_start)
    };
    let mut to = body[from..]
        .char_indices()
        .nth(room)
        .map(|(i, _)| from + i)
        .unwrap_or(body.len());
    if to < body.len()
        && let Some(ws) = body[from..to].rfind(char::is_whitespace)
        && ws >= (to - from) * 4 / 5
    {
        to = from + ws;
    }
    let mut shown = String::with_capacity(to - from + 8);
    if from > 0 {
        shown.push('…');
    }
    shown.push_str(body[from..to].trim_end());
    if to < body.len() {
        shown.push('…');
    }
    let first = first_line + newlines(&body[..from]);
    Excerpt {
        text: shown,
        first_line: first,
        last_line: first + newlines(body[from..to].trim_end()),
    }
}

fn newlines(s: &str) -> usize {
    s.bytes().filter(|&b| b == b'\n').count()
}
