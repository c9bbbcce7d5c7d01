//! Line framing shared by the streaming providers: Server-Sent Events (OpenAI, Anthropic)
//! and newline-delimited JSON (Ollama, the Claude CLI).
//!
//! Both readers pull whatever bytes the transport has (a `read` never waits for a full
//! buffer), so a delta is handed on as soon as its line is complete. Lines end in `\n`,
//! `\r\n` or a lone `\r`, and a line split across reads is joined before it is returned.

use std::io::{self, Read};

/// Longest line accepted from a provider. A server that sends an endless line without a
/// newline would otherwise grow the buffer until memory runs out.
pub const MAX_LINE_BYTES: usize = 4 * 1024 * 1024;

/// Bytes asked of the transport per read.
const READ_CHUNK: usize = 8 * 1024;

/// Most bytes read after a stream's end marker to reach the end of the HTTP body. Reading
/// to the end hands the connection back to ureq's pool (the next call skips the TCP and
/// TLS handshakes); a server that keeps talking after its end marker is not waited for.
const DRAIN_LIMIT: usize = 64 * 1024;

/// Splits a byte stream into lines.
struct Lines<R> {
    inner: R,
    buf: Vec<u8>,
    /// Start of the unconsumed part of `buf`.
    pos: usize,
    /// Bytes after `pos` already searched for a line end, so a long line is scanned once.
    scanned: usize,
    /// The previous line ended in `\r`; a `\n` right after it belongs to that line end.
    after_cr: bool,
    eof: bool,
}

/// One line, and whether a line end followed it (false only for a fragment cut at EOF).
struct Line {
    text: String,
    terminated: bool,
}

impl<R: Read> Lines<R> {
    fn new(inner: R) -> Lines<R> {
        Lines {
            inner,
            buf: Vec::new(),
            pos: 0,
            scanned: 0,
            after_cr: false,
            eof: false,
        }
    }

    /// Reads what is left of the body (bounded by [`DRAIN_LIMIT`]), ignoring it.
    fn drain(&mut self) {
        if self.eof {
            return;
        }
        let mut scratch = [0u8; 4096];
        let mut total = 0;
        while total < DRAIN_LIMIT {
            match self.inner.read(&mut scratch) {
                Ok(0) | Err(_) => return,
                Ok(n) => total += n,
            }
        }
    }

    fn next_line(&mut self) -> io::Result<Option<Line>> {
        loop {
            if self.after_cr && self.pos < self.buf.len() {
                if self.buf[self.pos] == b'\n' {
                    self.pos += 1;
                }
                self.after_cr = false;
            }
            let pending = &self.buf[self.pos..];
            let found = pending[self.scanned..]
                .iter()
                .position(|&b| b == b'\n' || b == b'\r');
            if let Some(offset) = found {
                let end = self.scanned + offset;
                self.scanned = 0;
                let text = String::from_utf8_lossy(&pending[..end]).into_owned();
                self.after_cr = pending[end] == b'\r';
                self.pos += end + 1;
                return Ok(Some(Line {
                    text,
                    terminated: true,
                }));
            }
            if self.eof {
                if pending.is_empty() {
                    return Ok(None);
                }
                let text = String::from_utf8_lossy(pending).into_owned();
                self.pos = self.buf.len();
                self.scanned = 0;
                return Ok(Some(Line {
                    text,
                    terminated: false,
                }));
            }
            self.scanned = pending.len();
            if pending.len() > MAX_LINE_BYTES {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a line of the stream is longer than {MAX_LINE_BYTES} bytes"),
                ));
            }
            self.fill()?;
        }
    }

    /// Reads more bytes, first dropping the consumed prefix so the buffer stays small.
    fn fill(&mut self) -> io::Result<()> {
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.pos = 0;
        }
        let start = self.buf.len();
        self.buf.resize(start + READ_CHUNK, 0);
        let read = loop {
            match self.inner.read(&mut self.buf[start..]) {
                Ok(n) => break Ok(n),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Err(e),
            }
        };
        match read {
            Ok(n) => {
                self.buf.truncate(start + n);
                if n == 0 {
                    self.eof = true;
                }
                Ok(())
            }
            Err(e) => {
                self.buf.truncate(start);
                Err(e)
            }
        }
    }
}

/// Reads newline-delimited JSON (or any text) one non-blank line at a time.
pub struct LineReader<R> {
    lines: Lines<R>,
}

impl<R: Read> LineReader<R> {
    pub fn new(inner: R) -> LineReader<R> {
        LineReader {
            lines: Lines::new(inner),
        }
    }

    /// Consumes the rest of the stream after its end marker (see [`DRAIN_LIMIT`]).
    pub fn finish(mut self) {
        self.lines.drain();
    }

    /// The next non-blank line without its line end; `None` at the end of the stream.
    ///
    /// A last line without a line end is still returned: if it was cut short, parsing it
    /// fails and says so.
    pub fn next_line(&mut self) -> io::Result<Option<String>> {
        while let Some(line) = self.lines.next_line()? {
            if !line.text.trim().is_empty() {
                return Ok(Some(line.text));
            }
        }
        Ok(None)
    }
}

/// One Server-Sent Event.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SseEvent {
    /// The `event:` field; empty when the server sent none.
    pub event: String,
    /// The `data:` lines joined with `\n`.
    pub data: String,
}

/// Reads Server-Sent Events as the HTML standard frames them: `field: value` lines, a
/// blank line ends an event, `:` starts a comment, several `data:` lines are joined with
/// `\n`, unknown fields are ignored.
pub struct SseReader<R> {
    lines: Lines<R>,
}

impl<R: Read> SseReader<R> {
    pub fn new(inner: R) -> SseReader<R> {
        SseReader {
            lines: Lines::new(inner),
        }
    }

    /// Consumes the rest of the stream after its end marker (see [`DRAIN_LIMIT`]).
    pub fn finish(mut self) {
        self.lines.drain();
    }

    /// The next event that carries data; `None` at the end of the stream.
    ///
    /// At the end of the stream an event whose lines all arrived but whose closing blank
    /// line did not is still returned (some servers end that way); a fragment of a line cut
    /// mid-way is dropped, so the caller sees the stream end without its end marker.
    pub fn next_event(&mut self) -> io::Result<Option<SseEvent>> {
        let mut event = String::new();
        let mut data: Option<String> = None;
        loop {
            let Some(line) = self.lines.next_line()? else {
                return Ok(data.map(|data| SseEvent { event, data }));
            };
            if !line.terminated {
                continue;
            }
            if line.text.is_empty() {
                match data.take() {
                    Some(data) => return Ok(Some(SseEvent { event, data })),
                    // An event without data is not dispatched, by the standard.
                    None => {
                        event.clear();
                        continue;
                    }
                }
            }
            if line.text.starts_with(':') {
                continue;
            }
            let (field, value) = match line.text.split_once(':') {
                Some((field, value)) => (field, value.strip_prefix(' ').unwrap_or(value)),
                None => (line.text.as_str(), ""),
            };
            match field {
                "event" => event = value.to_string(),
                "data" => match &mut data {
                    Some(d) => {
                        d.push('\n');
                        d.push_str(value);
                    }
                    None => data = Some(value.to_string()),
                },
                // `id` and `retry` only matter to reconnecting browsers.
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A reader that hands out its input in the given pieces, one per `read`, the way a
    /// socket delivers a stream.
    struct Pieces(std::collections::VecDeque<Vec<u8>>);

    impl Pieces {
        fn new(pieces: &[&str]) -> Pieces {
            Pieces(pieces.iter().map(|p| p.as_bytes().to_vec()).collect())
        }
    }

    impl Read for Pieces {
        fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
            let Some(mut piece) = self.0.pop_front() else {
                return Ok(0);
            };
            let n = piece.len().min(out.len());
            out[..n].copy_from_slice(&piece[..n]);
            if n < piece.len() {
                self.0.push_front(piece.split_off(n));
            }
            Ok(n)
        }
    }

    fn events(pieces: &[&str]) -> Vec<SseEvent> {
        let mut reader = SseReader::new(Pieces::new(pieces));
        let mut out = Vec::new();
        while let Some(e) = reader.next_event().unwrap() {
            out.push(e);
        }
        out
    }

    fn ev(event: &str, data: &str) -> SseEvent {
        SseEvent {
            event: event.into(),
            data: data.into(),
        }
    }

    #[test]
    fn sse_events_split_across_reads_are_joined() {
        let got = events(&[
            "da",
            "ta: {\"a\":",
            "1}\n",
            "\n",
            "data: two\n\nda",
            "ta: three\n\n",
        ]);
        assert_eq!(
            got,
            vec![ev("", "{\"a\":1}"), ev("", "two"), ev("", "three")]
        );
    }

    #[test]
    fn sse_crlf_and_lone_cr_line_ends() {
        let got = events(&[
            "event: x\r\ndata: a\r\n\r\n",
            "data: b\r",
            "\r",
            "data: c\r\n",
            "\r\n",
        ]);
        assert_eq!(got, vec![ev("x", "a"), ev("", "b"), ev("", "c")]);
    }

    #[test]
    fn sse_crlf_split_between_reads_is_one_line_end() {
        let got = events(&["data: a\r", "\ndata: b\r", "\n\r", "\n"]);
        assert_eq!(got, vec![ev("", "a\nb")]);
    }

    #[test]
    fn sse_comments_unknown_fields_and_empty_events_are_skipped() {
        let got = events(&[
            ": keepalive\n\n",
            "id: 7\nretry: 100\nweird\n\n",
            "event: ping\n\n",
            "event: message_stop\ndata: {}\n\n",
        ]);
        assert_eq!(got, vec![ev("message_stop", "{}")]);
    }

    #[test]
    fn sse_multi_line_data_is_joined_with_newlines() {
        let got = events(&["data: line one\ndata:line two\ndata\n\n"]);
        assert_eq!(got, vec![ev("", "line one\nline two\n")]);
    }

    #[test]
    fn sse_only_one_space_after_the_colon_is_stripped() {
        let got = events(&["data:  two spaces\n\n"]);
        assert_eq!(got, vec![ev("", " two spaces")]);
    }

    #[test]
    fn sse_complete_event_without_closing_blank_line_is_kept_at_eof() {
        let got = events(&["data: a\n\ndata: [DONE]\n"]);
        assert_eq!(got, vec![ev("", "a"), ev("", "[DONE]")]);
    }

    #[test]
    fn sse_fragment_cut_mid_line_is_dropped() {
        let got = events(&["data: a\n\ndata: {\"choi"]);
        assert_eq!(got, vec![ev("", "a")]);
    }

    #[test]
    fn sse_overlong_line_is_an_error_not_a_memory_blowup() {
        let long = "x".repeat(MAX_LINE_BYTES + READ_CHUNK * 2);
        let mut reader = SseReader::new(Pieces::new(&["data: ", &long]));
        let e = reader.next_event().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    }

    #[test]
    fn ndjson_lines_split_across_reads_with_crlf_and_blank_lines() {
        let mut reader = LineReader::new(Pieces::new(&[
            "{\"a\":",
            "1}\r\n\r\n",
            "\n{\"b\":2}\n{\"c\"",
            ":3}",
        ]));
        let mut got = Vec::new();
        while let Some(line) = reader.next_line().unwrap() {
            got.push(line);
        }
        assert_eq!(got, vec!["{\"a\":1}", "{\"b\":2}", "{\"c\":3}"]);
    }

    #[test]
    fn read_errors_pass_through() {
        struct Broken;
        impl Read for Broken {
            fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
                Err(io::Error::new(io::ErrorKind::TimedOut, "slow"))
            }
        }
        let e = LineReader::new(Broken).next_line().unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
