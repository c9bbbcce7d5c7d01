//! Turns free user text into FTS5 `MATCH` expressions that can never be a syntax error.
//!
//! FTS5's query language gives meaning to `"`, `-`, `*`, `:`, `^`, `(`, `AND`, `OR`, `NOT`
//! and `NEAR(`. Rather than escape them, the text is reduced to plain terms (runs of letters
//! and digits), each put in double quotes, which FTS5 reads as a literal phrase.

use super::cjk;

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
        (!self.terms.is_empty()).then(|| self.join(" AND ", phrase))
    }

    /// The fallback matching chunks that hold any term; `None` unless there are at least
    /// two terms (with one, it would repeat [`FtsQuery::all_terms`]).
    pub fn any_term(&self) -> Option<String> {
        (self.terms.len() > 1).then(|| self.join(" OR ", phrase))
    }

    /// [`FtsQuery::all_terms`] for an index of schema 1 (served while a new one is built),
    /// which has no `cjk` column.
    pub fn legacy_all_terms(&self) -> Option<String> {
        (!self.terms.is_empty()).then(|| self.join(" AND ", legacy_phrase))
    }

    /// [`FtsQuery::any_term`] for an index of schema 1.
    pub fn legacy_any_term(&self) -> Option<String> {
        (self.terms.len() > 1).then(|| self.join(" OR ", legacy_phrase))
    }

    fn join(&self, op: &str, phrase: fn(&str) -> String) -> String {
        self.terms
            .iter()
            .map(|t| phrase(t))
            .collect::<Vec<_>>()
            .join(op)
    }
}

fn quoted(term: &str) -> String {
    format!("\"{}\"", term.replace('"', "\"\""))
}

/// A term as an FTS5 expression. Plain words are string literals (FTS5 reads them as a
/// phrase and stems them like the text). Pieces in scripts written without spaces match
/// their character pairs in the `cjk` column (see [`cjk`]), so a word is found inside a
/// sentence.
fn phrase(term: &str) -> String {
    let parts = cjk::split_term(term);
    if parts.iter().all(|(ngram, _)| !ngram) {
        return quoted(term);
    }
    let exprs: Vec<String> = parts
        .iter()
        .map(|&(ngram, part)| {
            if ngram {
                cjk::query_phrase(part)
            } else {
                // Glued to another script in the text, so the text's token only starts
                // with it.
                quoted(part) + "*"
            }
        })
        .collect();
    if exprs.len() == 1 {
        exprs.concat()
    } else {
        format!("({})", exprs.join(" AND "))
    }
}

/// A term for schema 1, whose only column holds runs of scripts written without spaces as
/// whole tokens: a word typed alone only matches as the start of such a run.
fn legacy_phrase(term: &str) -> String {
    if term.chars().any(cjk::is_ngram_script) {
        quoted(term) + "*"
    } else {
        quoted(term)
    }
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

    /// A table laid out like the index's (schema 2): text, headings, character pairs.
    fn table() -> Connection {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE VIRTUAL TABLE t USING fts5(content, context, cjk,
                 tokenize='porter unicode61 remove_diacritics 2');",
        )
        .unwrap();
        for text in [
            "rust async notes",
            "东京 Tokyo 東京タワーに行った",
            "Café au lait",
            "and or not",
            "version v1.2.3 released 2026-02-14",
            "Renewal of the passport, running late",
        ] {
            db.execute(
                "INSERT INTO t (content, context, cjk) VALUES (?1, '', ?2)",
                [text, &cjk::index_text(text)],
            )
            .unwrap();
        }
        db
    }

    /// A table like schema 1's: one column, no stemming.
    fn legacy_table() -> Connection {
        let db = Connection::open_in_memory().unwrap();
        db.execute_batch(
            "CREATE VIRTUAL TABLE t USING fts5(content, tokenize='unicode61 remove_diacritics 2');
             INSERT INTO t(content) VALUES ('东京 Tokyo 東京タワーに行った'), ('renewal');",
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
            for expr in [q.legacy_all_terms(), q.legacy_any_term()]
                .into_iter()
                .flatten()
            {
                if let Err(e) = run(&legacy_table(), &expr) {
                    panic!("input {input:?} gave legacy expression {expr:?} which failed: {e}");
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
        assert_eq!(hits("東京タワー"), 1);
        assert_eq!(hits("タワー"), 1, "a CJK word inside a sentence");
        assert_eq!(hits("行った"), 1);
        assert_eq!(hits("京"), 1, "one character");
        assert_eq!(hits("大阪"), 0);
        assert_eq!(hits("東京 tokyo"), 1);
        assert_eq!(hits("renew"), 1, "stemmed: renew finds renewal");
        assert_eq!(hits("runs"), 1, "stemmed: runs finds running");
        assert_eq!(hits("v1.2.3"), 1);
        assert_eq!(hits("2026-02-14"), 1);
        assert_eq!(hits("and or not"), 1, "operator words are plain words");
        assert_eq!(hits("rust tokyo"), 0, "terms are ANDed");
    }

    #[test]
    fn legacy_expressions_match_schema_1_as_before() {
        let db = legacy_table();
        let hits = |text: &str| {
            let q = FtsQuery::parse(text);
            run(&db, &q.legacy_all_terms().unwrap()).unwrap()
        };
        assert_eq!(hits("東京タワー"), 1, "CJK is a prefix match there");
        assert_eq!(hits("renewal"), 1);
        assert_eq!(hits("renew"), 0, "no stemming there");
    }

    #[test]
    fn mixed_script_terms_are_grouped() {
        let q = FtsQuery::parse("iphone用ケース rust");
        assert_eq!(
            q.all_terms().unwrap(),
            r#"("iphone"* AND cjk : "用ケ ケー ース") AND "rust""#
        );
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
