//! Splits a Markdown file into chunks: runs of whole lines of about `chunk_chars`
//! characters, neighbours sharing a few lines, each carrying 1-based inclusive line numbers.

/// How chunks are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    /// Target size of a chunk in characters; a chunk only exceeds it by the length of one
    /// line piece.
    pub chunk_chars: usize,
    /// Lines repeated at the start of the next chunk, so a passage cut in two is still
    /// found whole in one of them.
    pub overlap_lines: usize,
}

impl ChunkParams {
    /// The params of `config`, with a floor that keeps a tiny setting from exploding the
    /// chunk count.
    pub fn from_config(config: &crate::config::MemoryConfig) -> ChunkParams {
        ChunkParams {
            chunk_chars: config.chunk_chars.max(64),
            overlap_lines: config.chunk_overlap_lines,
        }
    }
}

/// One indexed piece of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub line_start: usize,
    pub line_end: usize,
    pub text: String,
}

/// A line, or a piece of a line too long to fit a chunk.
struct Unit<'a> {
    line: usize,
    text: &'a str,
    chars: usize,
    /// True when this piece continues the previous unit's line (joined without `\n`).
    continues: bool,
}

/// The number of lines in `bytes` as an editor counts them: a final line without `\n`
/// counts, an empty file has none.
pub fn count_lines(bytes: &[u8]) -> usize {
    let newlines = bytes.iter().filter(|&&b| b == b'\n').count();
    match bytes.last() {
        None => 0,
        Some(b'\n') => newlines,
        Some(_) => newlines + 1,
    }
}

/// Cuts `bytes` into chunks. Invalid UTF-8 is replaced (never an error), a leading BOM is
/// dropped, `\r\n` counts as one line end, and a YAML front matter block gets chunks of its
/// own so body chunks start at the body. Blank-only chunks are left out.
pub fn chunk_bytes(bytes: &[u8], params: ChunkParams) -> Vec<Chunk> {
    let text = String::from_utf8_lossy(bytes);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let lines: Vec<&str> = split_lines(text);
    let max = params.chunk_chars.max(1);
    let front_matter_end = front_matter_end(&lines);
    let mut chunks = Vec::new();
    let sections = match front_matter_end {
        Some(end) => vec![(0, end + 1), (end + 1, lines.len())],
        None => vec![(0, lines.len())],
    };
    for (from, to) in sections {
        let mut units = Vec::new();
        for (i, line) in lines[from..to].iter().enumerate() {
            push_units(&mut units, from + i + 1, line, max);
        }
        pack(&units, params, &mut chunks);
    }
    chunks
}

fn split_lines(text: &str) -> Vec<&str> {
    if text.is_empty() {
        return Vec::new();
    }
    let body = text.strip_suffix('\n').unwrap_or(text);
    body.split('\n')
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .collect()
}

/// The index of the line closing a front matter block that opens on line 1, if any. The
/// close must come within the first 200 lines: a lone `---` rule further down is a rule.
fn front_matter_end(lines: &[&str]) -> Option<usize> {
    if lines.first().map(|l| l.trim_end()) != Some("---") {
        return None;
    }
    lines
        .iter()
        .enumerate()
        .skip(1)
        .take(200)
        .find(|(_, l)| matches!(l.trim_end(), "---" | "..."))
        .map(|(i, _)| i)
}

/// Adds `line` as one unit, or as several pieces of at most `max` characters when it is
/// longer (a minified blob, a pasted log line), cut at whitespace where one is near.
fn push_units<'a>(units: &mut Vec<Unit<'a>>, line_no: usize, line: &'a str, max: usize) {
    let chars = line.chars().count();
    if chars <= max {
        units.push(Unit {
            line: line_no,
            text: line,
            chars,
            continues: false,
        });
        return;
    }
    let mut rest = line;
    let mut first = true;
    while !rest.is_empty() {
        let (piece, tail) = split_piece(rest, max);
        units.push(Unit {
            line: line_no,
            text: piece,
            chars: piece.chars().count(),
            continues: !first,
        });
        first = false;
        rest = tail;
    }
}

/// Splits off a head of at most `max` characters (and at least one), preferring to end it
/// just after whitespace found in the last fifth, so words are rarely cut in two.
fn split_piece(s: &str, max: usize) -> (&str, &str) {
    let Some((hard, _)) = s.char_indices().nth(max) else {
        return (s, "");
    };
    let min = s
        .char_indices()
        .nth(max - max / 5)
        .map(|(i, _)| i)
        .unwrap_or(0);
    let cut = s[min..hard]
        .rfind(char::is_whitespace)
        .map(|i| {
            let at = min + i;
            at + s[at..].chars().next().map(char::len_utf8).unwrap_or(1)
        })
        .filter(|&at| at > 0)
        .unwrap_or(hard);
    s.split_at(cut)
}

/// Greedily packs units into chunks of at most `chunk_chars` (always at least one unit),
/// each next chunk starting `overlap_lines` units back. The overlap is capped at half a
/// chunk and at one unit less than the chunk, so every step moves forward.
fn pack(units: &[Unit], params: ChunkParams, out: &mut Vec<Chunk>) {
    let max = params.chunk_chars.max(1);
    let mut start = 0;
    while start < units.len() {
        let mut end = start;
        let mut size = 0;
        while end < units.len() {
            let add = units[end].chars + usize::from(end > start);
            if end > start && size + add > max {
                break;
            }
            size += add;
            end += 1;
        }
        let run = &units[start..end];
        if run.iter().any(|u| !u.text.trim().is_empty()) {
            out.push(join(run));
        }
        if end >= units.len() {
            break;
        }
        let mut back = 0;
        let mut back_chars = 0;
        while back < params.overlap_lines && back + 1 < end - start {
            let u = &units[end - 1 - back];
            if back_chars + u.chars > max / 2 {
                break;
            }
            back_chars += u.chars + 1;
            back += 1;
        }
        start = end - back;
    }
}

fn join(run: &[Unit]) -> Chunk {
    let mut text = String::with_capacity(run.iter().map(|u| u.text.len() + 1).sum());
    for (i, u) in run.iter().enumerate() {
        if i > 0 && !u.continues {
            text.push('\n');
        }
        text.push_str(u.text);
    }
    Chunk {
        line_start: run.first().map(|u| u.line).unwrap_or(1),
        line_end: run.last().map(|u| u.line).unwrap_or(1),
        text,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ChunkParams = ChunkParams {
        chunk_chars: 100,
        overlap_lines: 2,
    };

    /// Every line of the file is in some chunk, at the line numbers the chunk claims.
    fn assert_faithful(text: &str, chunks: &[Chunk]) {
        let lines: Vec<&str> = text.lines().collect();
        for c in chunks {
            assert!(c.line_start >= 1 && c.line_start <= c.line_end, "{c:?}");
            let expected = lines[c.line_start - 1..c.line_end].join("\n");
            assert!(
                expected.contains(c.text.as_str()),
                "chunk {c:?} is not lines {}..={}",
                c.line_start,
                c.line_end
            );
        }
        for (i, line) in lines.iter().enumerate() {
            // Lines longer than a chunk are covered piecewise, checked by their own test.
            if line.trim().is_empty() || line.chars().count() > P.chunk_chars {
                continue;
            }
            let n = i + 1;
            assert!(
                chunks
                    .iter()
                    .any(|c| c.line_start <= n && n <= c.line_end && c.text.contains(line)),
                "line {n} {line:?} is in no chunk"
            );
        }
    }

    #[test]
    fn empty_and_blank_files_have_no_chunks() {
        assert!(chunk_bytes(b"", P).is_empty());
        assert!(chunk_bytes(b"\n\n  \n", P).is_empty());
        assert_eq!(count_lines(b""), 0);
        assert_eq!(count_lines(b"a"), 1);
        assert_eq!(count_lines(b"a\n"), 1);
        assert_eq!(count_lines(b"a\nb"), 2);
    }

    #[test]
    fn small_file_is_one_chunk() {
        let c = chunk_bytes(b"# Title\n\nhello world\n", P);
        assert_eq!(
            c,
            vec![Chunk {
                line_start: 1,
                line_end: 3,
                text: "# Title\n\nhello world".into()
            }]
        );
    }

    #[test]
    fn lines_are_packed_with_overlap() {
        let text: String = (1..=40)
            .map(|i| format!("line number {i:02} here\n"))
            .collect();
        let chunks = chunk_bytes(text.as_bytes(), P);
        assert!(chunks.len() > 5, "{}", chunks.len());
        for pair in chunks.windows(2) {
            assert!(pair[0].text.chars().count() <= 100);
            // Two lines shared with the next chunk.
            assert_eq!(pair[1].line_start, pair[0].line_end - 1);
        }
        assert_eq!(chunks.last().unwrap().line_end, 40);
        assert_faithful(&text, &chunks);
    }

    #[test]
    fn crlf_is_one_line_end() {
        let chunks = chunk_bytes(b"one\r\ntwo\r\nthree", P);
        assert_eq!(chunks.len(), 1);
        assert_eq!(chunks[0].text, "one\ntwo\nthree");
        assert_eq!((chunks[0].line_start, chunks[0].line_end), (1, 3));
    }

    #[test]
    fn huge_single_line_is_cut_into_pieces_of_the_same_line() {
        let line = "word ".repeat(10_000);
        let text = format!("before\n{line}\nafter\n");
        let chunks = chunk_bytes(text.as_bytes(), P);
        assert!(chunks.len() >= 500, "{}", chunks.len());
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 100));
        assert!(
            chunks
                .iter()
                .filter(|c| c.text.contains("word"))
                .all(|c| c.line_start <= 2 && c.line_end >= 2)
        );
        assert_eq!(chunks.last().unwrap().line_end, 3);
        assert!(chunks.last().unwrap().text.ends_with("after"));
        // No word is cut in two at a piece boundary.
        assert!(
            chunks
                .iter()
                .flat_map(|c| c.text.split_whitespace())
                .all(|w| ["before", "word", "after"].contains(&w))
        );
        // A line without any whitespace is cut hard, still without looping.
        let blob = "x".repeat(1050);
        let chunks = chunk_bytes(blob.as_bytes(), P);
        assert_eq!(chunks.len(), 11);
        assert!(chunks.iter().all(|c| c.line_start == 1 && c.line_end == 1));
    }

    #[test]
    fn invalid_utf8_is_replaced_not_fatal() {
        let chunks = chunk_bytes(b"caf\xe9 ok\n\xff\xfe\nend", P);
        assert_eq!(chunks.len(), 1);
        assert!(chunks[0].text.starts_with("caf\u{fffd} ok"));
        assert_eq!(chunks[0].line_end, 3);
    }

    #[test]
    fn multibyte_text_is_counted_in_characters() {
        let line = "東京タワーに行った。".repeat(30);
        let chunks = chunk_bytes(line.as_bytes(), P);
        assert_eq!(chunks.len(), 3);
        assert!(chunks.iter().all(|c| c.text.chars().count() <= 100));
        assert_eq!(
            chunks.iter().map(|c| c.text.as_str()).collect::<String>(),
            line
        );
    }

    #[test]
    fn front_matter_is_its_own_chunk_and_line_numbers_stay_right() {
        let text = "---\ntitle: x\ntags: [a]\n---\n# Body\nfirst body line\n";
        let chunks = chunk_bytes(text.as_bytes(), P);
        assert_eq!(chunks.len(), 2);
        assert_eq!((chunks[0].line_start, chunks[0].line_end), (1, 4));
        assert_eq!((chunks[1].line_start, chunks[1].line_end), (5, 6));
        assert_eq!(chunks[1].text, "# Body\nfirst body line");
        // An unclosed block is ordinary text.
        let chunks = chunk_bytes(b"---\nnot front matter\n", P);
        assert_eq!(chunks.len(), 1);
    }

    #[test]
    fn bom_is_dropped() {
        let chunks = chunk_bytes("\u{feff}# Hi\n".as_bytes(), P);
        assert_eq!(chunks[0].text, "# Hi");
    }

    #[test]
    fn long_lines_mixed_with_short_ones_stay_faithful() {
        let mut text = String::new();
        for i in 0..60 {
            let len = (i * 37) % 170;
            text.push_str(&format!("{i} {}\n", "ab ".repeat(len / 3)));
        }
        let chunks = chunk_bytes(text.as_bytes(), P);
        for c in &chunks {
            assert!(c.text.chars().count() <= 100 + 2, "{c:?}");
        }
        assert_faithful(&text, &chunks);
    }

    #[test]
    fn no_overlap_when_disabled() {
        let p = ChunkParams {
            chunk_chars: 100,
            overlap_lines: 0,
        };
        let text: String = (1..=40)
            .map(|i| format!("line number {i:02} here\n"))
            .collect();
        let chunks = chunk_bytes(text.as_bytes(), p);
        for pair in chunks.windows(2) {
            assert_eq!(pair[1].line_start, pair[0].line_end + 1);
        }
    }
}
