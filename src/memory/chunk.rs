//! Splits a Markdown file into chunks: the small units a search returns and an embedder
//! reads. Each is a block of the file (a list item, a paragraph, a table, a code block; a
//! heading goes with the block under it), cut further only when longer than a chunk, and
//! carries the headings it sits under as its context.
//!
//! Small units rank well on both sides: BM25 is not diluted by unrelated lines, and one
//! vector stands for one thing said (measured with MiniLM on daily logs, one fact a line:
//! vector hit@3 0.97 with single items against 0.47 with 1,600-character chunks; see
//! docs/memory.md). A hit is shown with the lines around it (see `excerpt`).
//!
//! A block longer than a chunk is packed into runs of whole lines of about `chunk_chars`
//! characters and at most `max_tokens` word pieces, neighbours sharing `overlap_lines`
//! lines; each chunk carries 1-based inclusive line numbers.

/// How chunks are cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChunkParams {
    /// Target size of a chunk in characters; a chunk only exceeds it by the length of one
    /// line piece.
    pub chunk_chars: usize,
    /// Lines repeated at the start of the next chunk of a block cut in two, so a passage
    /// cut there is still found whole in one of them.
    pub overlap_lines: usize,
    /// Most word pieces (as [`estimate_tokens`] counts them) in one chunk, so a chunk fits
    /// the embedder's context.
    pub max_tokens: usize,
}

impl ChunkParams {
    /// The params of `config`, with floors that keep a tiny setting from exploding the
    /// chunk count.
    pub fn from_config(config: &crate::config::MemoryConfig) -> ChunkParams {
        ChunkParams {
            chunk_chars: config.chunk_chars.max(64),
            overlap_lines: config.chunk_overlap_lines,
            max_tokens: config.chunk_tokens.max(16),
        }
    }
}

/// One indexed piece of a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    pub line_start: usize,
    pub line_end: usize,
    pub text: String,
    /// The headings above the chunk, outermost first, joined by ` > `; empty when none.
    pub context: String,
}

/// The start of `text` that holds at most `max` word pieces (as [`estimate_tokens`]
/// counts them), cut at a word boundary where one is near: a search's text sent to the
/// embedder must fit its window like a chunk does.
pub fn truncate_tokens(text: &str, max: usize) -> &str {
    if estimate_tokens(text) <= max {
        return text;
    }
    let mut end = 0;
    for (i, c) in text.char_indices() {
        if c.is_whitespace() && estimate_tokens(&text[..i]) > max {
            break;
        }
        end = i + c.len_utf8();
        if !c.is_whitespace() && estimate_tokens(&text[..end]) > max {
            // A run without spaces (CJK, a long token): cut inside it.
            end = i;
            break;
        }
    }
    text[..end].trim_end()
}

impl Chunk {
    /// What an embedder reads for this chunk (see [`embed_text`]).
    pub fn embed_text(&self) -> String {
        embed_text(&self.context, &self.text)
    }

    /// The key of the chunk's vector: a hash of [`Chunk::embed_text`].
    pub fn key(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(self.embed_text().as_bytes())
    }
}

/// What an embedder reads for a chunk: its headings, then its text (less the heading it
/// may start with, which the headings already hold). Nothing from the file's path or name,
/// so a renamed file's chunks keep their vectors.
pub fn embed_text(context: &str, text: &str) -> String {
    let body = match text.split_once('\n') {
        Some((first, rest)) if heading(first).is_some() => rest.trim_start(),
        None if heading(text).is_some() => "",
        _ => text,
    };
    match (context.is_empty(), body.is_empty()) {
        (true, _) => text.to_string(),
        (false, true) => context.to_string(),
        (false, false) => format!("{context}\n{body}"),
    }
}

/// Longest context kept, in characters: deep heading paths say little more after this,
/// and the context takes room from the chunk in an embedder's window.
const MAX_CONTEXT_CHARS: usize = 160;

/// About how many word pieces a BERT-style tokenizer (MiniLM's) makes of `text`: a short
/// English word is one, a long one a piece per 8 letters, punctuation one each, a CJK
/// character one, other non-ASCII letters one per two. Good to a few percent on prose,
/// which is all a chunk bound needs.
pub fn estimate_tokens(text: &str) -> usize {
    let mut tokens = 0;
    let mut word = 0usize;
    let mut other = 0usize;
    let flush = |word: &mut usize, other: &mut usize, tokens: &mut usize| {
        if *word > 0 {
            *tokens += 1 + (*word - 1) / 8;
            *word = 0;
        }
        if *other > 0 {
            *tokens += other.div_ceil(2);
            *other = 0;
        }
    };
    for c in text.chars() {
        if c.is_ascii_alphanumeric() {
            word += 1;
        } else if c.is_alphanumeric() && !super::cjk::is_unsegmented_script(c) {
            other += 1;
        } else {
            flush(&mut word, &mut other, &mut tokens);
            if !c.is_whitespace() {
                tokens += 1;
            }
        }
    }
    flush(&mut word, &mut other, &mut tokens);
    tokens
}

/// A line, or a piece of a line too long to fit a chunk.
struct Unit<'a> {
    line: usize,
    text: &'a str,
    chars: usize,
    tokens: usize,
    /// True when this piece continues the previous unit's line (joined without `\n`).
    continues: bool,
}

/// A run of lines that says one thing: `lines[start..end]`, under `context`.
struct Block {
    start: usize,
    end: usize,
    context: String,
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
    let body_start = front_matter_end(&lines).map(|end| end + 1).unwrap_or(0);
    let mut blocks = Vec::new();
    if body_start > 0 {
        blocks.push(Block {
            start: 0,
            end: body_start,
            context: String::new(),
        });
    }
    split_blocks(&lines, body_start, &mut blocks);
    let max = params.chunk_chars.max(1);
    let mut chunks = Vec::new();
    for block in blocks {
        let mut units = Vec::new();
        for (i, line) in lines[block.start..block.end].iter().enumerate() {
            push_units(
                &mut units,
                block.start + i + 1,
                line,
                max,
                params.max_tokens,
            );
        }
        pack(&units, params, &block.context, &mut chunks);
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

/// The level and text of an ATX heading (`## Title ##`), if `line` is one.
fn heading(line: &str) -> Option<(usize, &str)> {
    let trimmed = line.trim_start();
    if line.len() - trimmed.len() > 3 {
        return None;
    }
    let level = trimmed.bytes().take_while(|&b| b == b'#').count();
    let rest = &trimmed[level..];
    if !(1..=6).contains(&level) || !(rest.is_empty() || rest.starts_with([' ', '\t'])) {
        return None;
    }
    Some((level, rest.trim().trim_end_matches('#').trim_end()))
}

/// True for a line that starts a list item: `- `, `* `, `+ `, `1. `, `1) `.
fn is_list_item(line: &str) -> bool {
    let t = line.trim_start();
    if let Some(rest) = t.strip_prefix(['-', '*', '+']) {
        return rest.is_empty() || rest.starts_with([' ', '\t']);
    }
    let digits = t.bytes().take_while(u8::is_ascii_digit).count();
    (1..=9).contains(&digits)
        && t[digits..].starts_with(['.', ')'])
        && t[digits + 1..].starts_with([' ', '\t'])
}

fn is_fence(line: &str) -> bool {
    let t = line.trim_start();
    t.starts_with("```") || t.starts_with("~~~")
}

/// Splits `lines[from..]` into blocks. A blank line ends a block; a list item or a heading
/// starts one; a heading is kept with the block that follows it (a heading alone says
/// little); a fenced code block is one block, blank lines and all.
fn split_blocks(lines: &[&str], from: usize, out: &mut Vec<Block>) {
    let mut headings: Vec<(usize, String)> = Vec::new();
    // The open block: its first line and whether it holds only a heading so far.
    let mut open: Option<(usize, bool, String)> = None;
    let mut in_fence = false;
    let close = |open: &mut Option<(usize, bool, String)>, mut end: usize, out: &mut Vec<Block>| {
        if let Some((start, _, context)) = open.take() {
            // A heading waiting for its block keeps the blank lines after it; a heading
            // followed by nothing but another heading ends at its own line.
            while end > start + 1 && lines[end - 1].trim().is_empty() {
                end -= 1;
            }
            out.push(Block {
                start,
                end,
                context,
            });
        }
    };
    for (i, line) in lines.iter().enumerate().skip(from) {
        if in_fence {
            in_fence = !is_fence(line);
            continue;
        }
        if line.trim().is_empty() {
            if !matches!(open, Some((_, true, _))) {
                close(&mut open, i, out);
            }
            continue;
        }
        if let Some((level, title)) = heading(line) {
            close(&mut open, i, out);
            headings.retain(|(l, _)| *l < level);
            headings.push((level, title.to_string()));
            open = Some((i, true, context_of(&headings)));
            continue;
        }
        let starts_block = is_list_item(line) || is_fence(line);
        match &mut open {
            Some((_, heading_only @ true, _)) => *heading_only = false,
            Some(_) if starts_block => {
                close(&mut open, i, out);
                open = Some((i, false, context_of(&headings)));
            }
            Some(_) => {}
            None => open = Some((i, false, context_of(&headings))),
        }
        in_fence = is_fence(line);
    }
    close(&mut open, lines.len(), out);
}

fn context_of(headings: &[(usize, String)]) -> String {
    let joined = headings
        .iter()
        .map(|(_, t)| t.as_str())
        .filter(|t| !t.is_empty())
        .collect::<Vec<_>>()
        .join(" > ");
    match joined.char_indices().nth(MAX_CONTEXT_CHARS) {
        Some((at, _)) => joined[..at].to_string(),
        None => joined,
    }
}

/// Adds `line` as one unit, or as several pieces when it is longer than `max` characters
/// or `max_tokens` word pieces (a minified blob, a pasted log line, a paragraph of CJK
/// text on one line), cut at whitespace where one is near.
fn push_units<'a>(
    units: &mut Vec<Unit<'a>>,
    line_no: usize,
    line: &'a str,
    max: usize,
    max_tokens: usize,
) {
    let chars = line.chars().count();
    let tokens = estimate_tokens(line);
    if chars <= max && tokens <= max_tokens {
        units.push(Unit {
            line: line_no,
            text: line,
            chars,
            tokens,
            continues: false,
        });
        return;
    }
    // Dense text (many word pieces per character) gets proportionally shorter pieces.
    let piece_chars = if tokens > max_tokens {
        (chars * max_tokens / tokens.max(1)).clamp(1, max)
    } else {
        max
    };
    let mut rest = line;
    let mut first = true;
    while !rest.is_empty() {
        let (piece, tail) = split_piece(rest, piece_chars);
        units.push(Unit {
            line: line_no,
            text: piece,
            chars: piece.chars().count(),
            tokens: estimate_tokens(piece),
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

/// Greedily packs units into chunks of at most `chunk_chars` and `max_tokens` (always at
/// least one unit), each next chunk starting `overlap_lines` units back. The overlap is
/// capped at half a chunk and at one unit less than the chunk, so every step moves forward.
fn pack(units: &[Unit], params: ChunkParams, context: &str, out: &mut Vec<Chunk>) {
    let max = params.chunk_chars.max(1);
    let mut start = 0;
    while start < units.len() {
        let mut end = start;
        let mut size = 0;
        let mut tokens = 0;
        while end < units.len() {
            let add = units[end].chars + usize::from(end > start);
            if end > start && (size + add > max || tokens + units[end].tokens > params.max_tokens) {
                break;
            }
            size += add;
            tokens += units[end].tokens;
            end += 1;
        }
        let run = &units[start..end];
        if run.iter().any(|u| !u.text.trim().is_empty()) {
            out.push(join(run, context));
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

fn join(run: &[Unit], context: &str) -> Chunk {
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
        context: context.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const P: ChunkParams = ChunkParams {
        chunk_chars: 100,
        overlap_lines: 2,
        max_tokens: 1000,
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
                text: "# Title\n\nhello world".into(),
                context: "Title".into(),
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
            overlap_lines: 0,
            ..P
        };
        let text: String = (1..=40)
            .map(|i| format!("line number {i:02} here\n"))
            .collect();
        let chunks = chunk_bytes(text.as_bytes(), p);
        for pair in chunks.windows(2) {
            assert_eq!(pair[1].line_start, pair[0].line_end + 1);
        }
    }

    #[test]
    fn list_items_and_paragraphs_are_chunks_of_their_own_under_their_headings() {
        let text = "# Memory\n\n## Home\n- Bins go out on Tuesday\n- Wifi: blue-heron\n  (router in the hall)\n\nA paragraph\nover two lines.\n\n## Work\n### On call\n1. Rotation on Monday\n";
        let chunks = chunk_bytes(text.as_bytes(), P);
        let got: Vec<(usize, usize, &str, &str)> = chunks
            .iter()
            .map(|c| {
                (
                    c.line_start,
                    c.line_end,
                    c.text.as_str(),
                    c.context.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, 1, "# Memory", "Memory"),
                (3, 4, "## Home\n- Bins go out on Tuesday", "Memory > Home"),
                (
                    5,
                    6,
                    "- Wifi: blue-heron\n  (router in the hall)",
                    "Memory > Home"
                ),
                (8, 9, "A paragraph\nover two lines.", "Memory > Home"),
                (11, 11, "## Work", "Memory > Work"),
                (
                    12,
                    13,
                    "### On call\n1. Rotation on Monday",
                    "Memory > Work > On call"
                ),
            ]
        );
    }

    #[test]
    fn a_daily_log_is_one_chunk_per_entry() {
        let text = "- 09:15 standup\n- 10:02 renewed the passport\n- 11:40 lunch\n";
        let chunks = chunk_bytes(text.as_bytes(), P);
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].text, "- 10:02 renewed the passport");
        assert_eq!((chunks[1].line_start, chunks[1].line_end), (2, 2));
        assert_eq!(chunks[1].context, "");
    }

    #[test]
    fn a_fenced_code_block_stays_whole_blank_lines_and_all() {
        let text = "Intro\n\n```\nfn a() {}\n\n# not a heading\n- not an item\n```\nafter\n";
        let chunks = chunk_bytes(text.as_bytes(), P);
        assert_eq!(chunks.len(), 2, "{chunks:?}");
        assert_eq!((chunks[1].line_start, chunks[1].line_end), (3, 9));
        assert_eq!(chunks[1].context, "");
    }

    #[test]
    fn dense_text_is_cut_by_word_pieces_not_only_characters() {
        let p = ChunkParams {
            chunk_chars: 1600,
            overlap_lines: 0,
            max_tokens: 50,
        };
        let line = "東京タワーに行った。".repeat(30);
        let chunks = chunk_bytes(line.as_bytes(), p);
        assert!(chunks.len() >= 6, "{}", chunks.len());
        assert!(chunks.iter().all(|c| estimate_tokens(&c.text) <= 50));
        assert_eq!(
            chunks.iter().map(|c| c.text.as_str()).collect::<String>(),
            line
        );
        // English prose of the same length is one chunk.
        let prose = "The quick brown fox jumps over the lazy dog. ".repeat(6);
        assert_eq!(chunk_bytes(prose.as_bytes(), p).len(), 2);
    }

    #[test]
    fn embedded_text_has_the_headings_once() {
        assert_eq!(embed_text("", "- a line"), "- a line");
        assert_eq!(embed_text("Car", "- tyres"), "Car\n- tyres");
        assert_eq!(embed_text("Car", "# Car\n\n- tyres"), "Car\n- tyres");
        assert_eq!(embed_text("Memory > Work", "## Work"), "Memory > Work");
        assert_eq!(embed_text("", "# Title"), "# Title");
    }

    #[test]
    fn long_texts_are_cut_to_the_token_bound() {
        assert_eq!(truncate_tokens("short text", 10), "short text");
        let long = "word ".repeat(100);
        let cut = truncate_tokens(&long, 20);
        assert!(
            estimate_tokens(cut) <= 20 && estimate_tokens(cut) >= 19,
            "{cut:?}"
        );
        let cjk = "東京".repeat(100);
        let cut = truncate_tokens(&cjk, 30);
        assert_eq!(estimate_tokens(cut), 30);
    }

    #[test]
    fn token_estimates() {
        assert_eq!(estimate_tokens(""), 0);
        assert_eq!(estimate_tokens("the cat sat"), 3);
        assert_eq!(estimate_tokens("150,000 km."), 5);
        assert_eq!(estimate_tokens("internationalisation"), 3);
        assert_eq!(estimate_tokens("東京タワー"), 5);
        assert_eq!(estimate_tokens("café"), 2);
    }
}
