//! Turns free user text into FTS5 `MATCH` expressions that can never be a syntax error.
//!
//! FTS5's query language gives meaning to `"`, `-`, `*`, `:`, `^`, `(`, `AND`, `OR`, `NOT`
//! and `NEAR(`. Rather than escape them, the text is reduced to plain terms (runs of letters
//! and digits), each put in double quotes, which FTS5 reads as a literal phrase.

/// Terms beyond this many are ignored: each one is another posting list to merge, and a
/// pasted paragraph says nothing more with its fortieth word.
pub const MAX_TERMS: usize = 32;

/// Common English words that match almost every chunk: searching for them costs the most
/// and ranks nothing. Dropped unless nothing else is left.
const STOP_WORDS: &[&str] = &[
    "a",
    "about",
    "above",
    "after",
    "again",
    "against",
    "all",
    "am",
    "an",
    "and",
    "any",
    "are",
    "as",
    "at",
    "be",
    "because",
    "been",
    "before",
    "being",
    "below",
    "between",
    "both",
    "but",
    "by",
    "can",
    "could",
    "did",
    "do",
    "does",
    "doing",
    "down",
    "during",
    "each",
    "few",
    "for",
    "from",
    "further",
    "had",
    "has",
    "have",
    "having",
    "he",
    "her",
    "here",
    "hers",
    "herself",
    "him",
    "himself",
    "his",
    "how",
    "i",
    "if",
    "in",
    "into",
    "is",
    "it",
    "its",
    "itself",
    "just",
    "me",
    "more",
    "most",
    "my",
    "myself",
    "no",
    "nor",
    "not",
    "now",
    "of",
    "off",
    "on",
    "once",
    "only",
    "or",
    "other",
    "our",
    "ours",
    "ourselves",
    "out",
    "over",
    "own",
    "same",
    "she",
    "should",
    "so",
    "some",
    "such",
    "than",
    "that",
    "the",
    "their",
    "theirs",
    "them",
    "themselves",
    "then",
    "there",
    "these",
    "they",
    "this",
    "those",
    "through",
    "to",
    "too",
    "under",
    "until",
    "up",
    "very",
    "was",
    "we",
    "were",
    "what",
    "when",
    "where",
    "which",
    "while",
    "who",
    "whom",
    "why",
    "will",
    "with",
    "would",
    "you",
    "your",
    "yours",
    "yourself",
    "yourselves",
];

/// The searchable terms of a user's query.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FtsQuery {
    terms: Vec<String>,
}

impl FtsQuery {
    /// Extracts terms: split on anything that is not a letter or digit (Unicode-aware),
    /// lowercased, deduplicated, stop words dropped unless they are all there is.
    pub fn parse(text: &str) -> FtsQuery {
        let mut all: Vec<String> = Vec::new();
        for word in text.split(|c: char| !c.is_alphanumeric()) {
            if word.is_empty() {
                continue;
            }
            let term = word.to_lowercase();
            if !all.contains(&term) {
                all.push(term);
            }
        }
        let content: Vec<String> = all
            .iter()
            .filter(|t| !STOP_WORDS.contains(&t.as_str()))
            .cloned()
            .collect();
        let mut terms = if content.is_empty() { all } else { content };
        terms.truncate(MAX_TERMS);
        FtsQuery { terms }
    }

    /// The terms searched for, in the order given.
    pub fn terms(&self) -> &[String] {
        &self.terms
    }

    /// True when the text held nothing searchable (only punctuation, say).
    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }

    /// The expression matching chunks that hold every term; `None` when there are none.
    pub fn all_terms(&self) -> Option<String> {
        (!self.terms.is_empty()).then(|| self.join(" AND "))
    }

    /// The fallback matching chunks that hold any term; `None` unless there are at least
    /// two terms (with one, it would repeat [`FtsQuery::all_terms`]).
    pub fn any_term(&self) -> Option<String> {
        (self.terms.len() > 1).then(|| self.join(" OR "))
    }

    fn join(&self, op: &str) -> String {
        self.terms
            .iter()
            .map(|t| phrase(t))
            .collect::<Vec<_>>()
            .join(op)
    }
}

/// A term as an FTS5 string literal. Scripts written without spaces (Chinese, Japanese,
/// Thai) come out of the `unicode61` tokenizer as whole runs of text, so a word typed alone
/// only matches as the start of such a run: for them the phrase is a prefix query.
fn phrase(term: &str) -> String {
    let quoted = format!("\"{}\"", term.replace('"', "\"\""));
    if term.chars().any(is_unsegmented_script) {
        quoted + "*"
    } else {
        quoted
    }
}

fn is_unsegmented_script(c: char) -> bool {
    matches!(c as u32,
        0x3040..=0x30FF      // Hiragana, Katakana
        | 0x3400..=0x4DBF    // CJK extension A
        | 0x4E00..=0x9FFF    // CJK unified ideographs
        | 0xF900..=0xFAFF    // CJK compatibility ideographs
        | 0x20000..=0x2FA1F  // CJK extensions B-F and supplement
        | 0x0E00..=0x0E7F    // Thai
        | 0x0E80..=0x0EFF    // Lao
        | 0x1000..=0x109F    // Myanmar
        | 0x1780..=0x17FF // Khmer
    )
}

/// The case-insensitive byte offset of the first term found in `text`, for choosing which
/// part of a long chunk to show. ASCII case folding keeps offsets valid; other scripts
/// match as typed.
pub fn first_match(text: &str, terms: &[String]) -> Option<usize> {
    let folded = text.to_ascii_lowercase();
    terms
        .iter()
        .filter_map(|t| folded.find(t.as_str()).or_else(|| text.find(t.as_str())))
        .min()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rusqlite::Connection;

    /// Inputs that are FTS5 syntax errors (or worse) when passed to MATCH unquoted.
    fn adversarial() -> Vec<String> {
        let mut inputs: Vec<String> = FIXED.iter().map(|s| s.to_string()).collect();
        inputs.push("x".repeat(500));
        inputs.push("\"a\" ".repeat(100));
        inputs
    }

    const FIXED: &[&str] = &[
        "\"",
        "\"\"",
        "\"unbalanced",
        "a\"b",
        "-",
        "-rust",
        "rust -async",
        "*",
        "rust*",
        "*rust",
        ":",
        "content:rust",
        "col:",
        "^rust",
        "(",
        ")",
        "(rust",
        "rust)",
        "((()))",
        "NEAR(",
        "NEAR(rust async)",
        "NEAR(rust async, 2)",
        "rust NEAR/2 async",
        "AND",
        "OR",
        "NOT",
        "rust AND",
        "OR rust",
        "NOT rust",
        "rust AND OR NOT async",
        "and or not",
        "{rust async}",
        "+rust",
        "rust + async",
        "'single quotes'",
        "back\\slash",
        "semi;colon",
        "drop table chunks; --",
        "rust' OR '1'='1",
        "🦀 rust 🦀",
        "🦀",
        "東京タワー",
        "東京 タワー",
        "한국어 검색",
        "ภาษาไทย",
        "café résumé naïve",
        "Ünïcödé",
        "ﬁnance",
        "\u{0301}",
        "a\u{0301}",
        "\u{0345}",
        "\u{200b}zero\u{200b}width",
        "tab\tnew\nline",
        "\u{0}",
        "nul\u{0}byte",
        "%_%",
        "2026-02-14",
        "v1.2.3",
        "C++ & C#",
        "a b c d e f g h i j k l m n o p q r s t u v w x y z aa bb cc dd ee ff gg hh ii jj kk",
        "",
        "   ",
        "!!!???",
        "\u{fffd}",
    ];

    fn table() -> Connection {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE VIRTUAL TABLE t USING fts5(content, tokenize='unicode61 remove_diacritics 2');
             INSERT INTO t(content) VALUES
               ('rust async notes'), ('东京 Tokyo 東京タワーに行った'), ('Café au lait'),
               ('and or not'), ('version v1.2.3 released 2026-02-14');",
        )
        .unwrap();
        db
    }

    fn run(db: &Connection, expr: &str) -> rusqlite::Result<usize> {
        let mut stmt = db.prepare("SELECT rowid FROM t WHERE t MATCH ?1 ORDER BY rank")?;
        let rows = stmt.query_map([expr], |r| r.get::<_, i64>(0))?;
        // FTS syntax errors surface while stepping, as an `Err` row.
        Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?.len())
    }

    #[test]
    fn adversarial_inputs_never_make_an_fts_error() {
        let db = table();
        for input in &adversarial() {
            let q = FtsQuery::parse(input);
            for expr in [q.all_terms(), q.any_term()].into_iter().flatten() {
                if let Err(e) = run(&db, &expr) {
                    panic!("input {input:?} gave expression {expr:?} which failed: {e}");
                }
            }
        }
    }

    #[test]
    fn the_same_inputs_unquoted_do_fail() {
        // Guards the corpus: it really holds FTS syntax, so the test above proves something.
        let db = table();
        let failing = adversarial()
            .iter()
            .filter(|i| !i.trim().is_empty())
            .filter(|i| run(&db, i).is_err())
            .count();
        assert!(failing >= 25, "only {failing} raw inputs fail");
    }

    #[test]
    fn terms_are_split_lowercased_deduplicated() {
        let q = FtsQuery::parse("Rust: ASYNC-await (rust) \"tokio\"*");
        assert_eq!(q.terms(), ["rust", "async", "await", "tokio"]);
        assert_eq!(
            q.all_terms().unwrap(),
            r#""rust" AND "async" AND "await" AND "tokio""#
        );
        assert_eq!(
            q.any_term().unwrap(),
            r#""rust" OR "async" OR "await" OR "tokio""#
        );
    }

    #[test]
    fn stop_words_are_dropped_unless_alone() {
        assert_eq!(
            FtsQuery::parse("what is the rust borrow checker").terms(),
            ["rust", "borrow", "checker"]
        );
        assert_eq!(FtsQuery::parse("and or not").terms(), ["and", "or", "not"]);
        let q = FtsQuery::parse("the");
        assert_eq!(q.all_terms().unwrap(), r#""the""#);
        assert_eq!(q.any_term(), None);
    }

    #[test]
    fn nothing_searchable_is_empty_not_an_error() {
        for input in ["", "   ", "!!!", "()-*:", "\"\""] {
            let q = FtsQuery::parse(input);
            assert!(q.is_empty(), "{input:?}");
            assert_eq!(q.all_terms(), None);
        }
    }

    #[test]
    fn matching_works_through_the_quoting() {
        let db = table();
        let hits = |text: &str| {
            let q = FtsQuery::parse(text);
            run(&db, &q.all_terms().unwrap()).unwrap()
        };
        assert_eq!(hits("RUST notes"), 1);
        assert_eq!(hits("cafe"), 1, "diacritics are folded");
        assert_eq!(hits("東京タワー"), 1, "CJK is a prefix match");
        assert_eq!(hits("v1.2.3"), 1);
        assert_eq!(hits("2026-02-14"), 1);
        assert_eq!(hits("and or not"), 1, "operator words are plain words");
        assert_eq!(hits("rust tokyo"), 0, "terms are ANDed");
    }

    #[test]
    fn term_count_is_capped() {
        let text: String = (0..100).map(|i| format!("w{i} ")).collect();
        assert_eq!(FtsQuery::parse(&text).terms().len(), MAX_TERMS);
    }

    #[test]
    fn first_match_is_case_insensitive() {
        let terms = vec!["rust".to_string(), "tokio".to_string()];
        assert_eq!(first_match("About Tokio and RUST", &terms), Some(6));
        assert_eq!(first_match("nothing here", &terms), None);
    }
}
