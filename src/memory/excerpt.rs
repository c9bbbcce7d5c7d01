//! What a search result shows: its chunk with the lines around it, or the part of a long
//! chunk around the match.

use super::index::{Neighbour, RawHit};
use super::query;

/// Text shown in a result with its lines: relative to the chunk's first line from
/// [`excerpt`], absolute (1-based) from [`window`].
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

/// Shows `hit` with the chunks around it (`around`: chunks of the same file near it, in
/// line order), as long as the whole stays within `max` characters: a small chunk (a list
/// item, a line) says more with its neighbours and heading. Chunks before and after are
/// added alternately, nearest first; blank lines between chunks are kept. A chunk longer
/// than `max` is cut around the match instead (see [`excerpt`]).
pub(super) fn window(hit: &RawHit, around: &[Neighbour], terms: &[String], max: usize) -> Excerpt {
    let own = hit.content.trim_end();
    if own.chars().count() > max || around.is_empty() {
        let cut = excerpt(&hit.content, terms, max);
        return Excerpt {
            text: cut.text,
            first_line: hit.line_start + cut.first_line,
            last_line: (hit.line_start + cut.last_line).min(hit.line_end.max(hit.line_start)),
        };
    }
    let mut shown: Vec<&Neighbour> = Vec::new();
    let me = Neighbour {
        id: hit.id,
        line_start: hit.line_start,
        line_end: hit.line_end,
        content: own.to_string(),
    };
    let (mut first, mut last) = (hit.line_start, hit.line_end);
    let mut size = own.chars().count();
    let mut before = around
        .iter()
        .rev()
        .filter(|n| n.line_end < hit.line_start && n.id != hit.id)
        .peekable();
    let mut after = around
        .iter()
        .filter(|n| n.line_start > hit.line_end && n.id != hit.id)
        .peekable();
    let (mut prepend, mut append) = (Vec::new(), Vec::new());
    loop {
        let mut grew = false;
        // Chunks overlapping the shown lines (neighbours of a long passage) are skipped.
        while before.next_if(|n| n.line_end >= first).is_some() {}
        if let Some(n) = before.peek() {
            let add = n.content.trim_end().chars().count() + (first - n.line_end);
            if size + add <= max {
                size += add;
                first = n.line_start;
                prepend.push(*n);
                before.next();
                grew = true;
            }
        }
        while after.next_if(|n| n.line_start <= last).is_some() {}
        if let Some(n) = after.peek() {
            let add = n.content.trim_end().chars().count() + (n.line_start - last);
            if size + add <= max {
                size += add;
                last = n.line_end;
                append.push(*n);
                after.next();
                grew = true;
            }
        }
        if !grew {
            break;
        }
    }
    shown.extend(prepend.into_iter().rev());
    shown.push(&me);
    shown.extend(append);
    let mut text = String::with_capacity(size);
    let mut at = shown
        .first()
        .map(|n| n.line_start)
        .unwrap_or(hit.line_start);
    for (i, n) in shown.iter().enumerate() {
        if i > 0 {
            text.extend(std::iter::repeat_n('\n', n.line_start - at));
        }
        text.push_str(n.content.trim_end());
        at = n.line_end;
    }
    Excerpt {
        text,
        first_line: first,
        last_line: last,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn n(id: i64, a: usize, b: usize, text: &str) -> Neighbour {
        Neighbour {
            id,
            line_start: a,
            line_end: b,
            content: text.into(),
        }
    }

    fn hit(id: i64, a: usize, b: usize, text: &str) -> RawHit {
        RawHit {
            id,
            path: "f.md".into(),
            line_start: a,
            line_end: b,
            content: text.into(),
            rank: -1.0,
        }
    }

    #[test]
    fn a_small_chunk_comes_with_its_neighbours_and_blank_lines() {
        let around = [
            n(1, 1, 1, "# Memory"),
            n(2, 3, 4, "## Pets\nThe cat is Marmalade."),
            n(3, 5, 5, "- The dog is Rex."),
        ];
        let w = window(
            &hit(2, 3, 4, "## Pets\nThe cat is Marmalade."),
            &around,
            &[],
            700,
        );
        assert_eq!(
            w.text,
            "# Memory\n\n## Pets\nThe cat is Marmalade.\n- The dog is Rex."
        );
        assert_eq!((w.first_line, w.last_line), (1, 5));
    }

    #[test]
    fn neighbours_stop_at_the_size_limit_nearest_first() {
        let around: Vec<Neighbour> = (1..=9)
            .map(|i| n(i, i as usize, i as usize, &format!("line {i}")))
            .collect();
        let w = window(&hit(5, 5, 5, "line 5"), &around, &[], 20);
        assert_eq!(w.text, "line 4\nline 5\nline 6");
        assert_eq!((w.first_line, w.last_line), (4, 6));
        // Alone when nothing fits beside it.
        let w = window(&hit(5, 5, 5, "line 5"), &around, &[], 8);
        assert_eq!(
            (w.text.as_str(), w.first_line, w.last_line),
            ("line 5", 5, 5)
        );
    }

    #[test]
    fn a_long_chunk_is_cut_around_the_match() {
        let long = (1..=30)
            .map(|i| format!("filler {i}"))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("filler 20", "the quokka");
        let w = window(
            &hit(1, 11, 40, &long),
            &[n(9, 1, 10, "x")],
            &["quokka".into()],
            60,
        );
        assert!(w.text.starts_with("…the quokka"), "{}", w.text);
        assert_eq!(w.first_line, 30);
    }
}
