//! Substring search for scripts written without spaces between words (Chinese, Japanese,
//! Thai, …) and for Korean, whose words carry their particles.
//!
//! FTS5's `unicode61` tokenizer makes one token of a whole run of such text, so a word
//! inside a sentence is found only as its start. The index therefore also stores every run
//! as overlapping character pairs (`東京タワー` → `東京 京タ タワ ワー`) followed by its single
//! characters, in a column of its own; a query word becomes the phrase of its pairs, which
//! matches wherever the word occurs. (FTS5's `trigram` tokenizer would need a table of its
//! own and cannot find the many two-character words of Chinese and Japanese.)

/// True for characters whose words are found by character pairs.
pub fn is_ngram_script(c: char) -> bool {
    is_unsegmented_script(c) || is_hangul(c)
}

/// True for scripts written without spaces between words.
pub fn is_unsegmented_script(c: char) -> bool {
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

fn is_hangul(c: char) -> bool {
    matches!(c as u32, 0x1100..=0x11FF | 0x3130..=0x318F | 0xAC00..=0xD7AF)
}

/// The runs of such characters in `text`.
fn runs(text: &str) -> impl Iterator<Item = Vec<char>> + '_ {
    text.split(|c: char| !(c.is_alphanumeric() && is_ngram_script(c)))
        .filter(|r| !r.is_empty())
        .map(|r| r.chars().collect())
}

/// What the index's `cjk` column holds for `text`: each run's character pairs, then every
/// single character (so a one-character word is found too). Empty for text without such
/// characters, which is nearly all text for most users.
pub fn index_text(text: &str) -> String {
    let mut pairs = String::new();
    let mut singles = String::new();
    for run in runs(text) {
        for w in run.windows(2) {
            pairs.extend(w);
            pairs.push(' ');
        }
        for c in run {
            singles.push(c);
            singles.push(' ');
        }
    }
    pairs.push_str(&singles);
    pairs.truncate(pairs.trim_end().len());
    pairs
}

/// The FTS5 expression finding `run` (characters of these scripts only) anywhere in the
/// `cjk` column.
pub fn query_phrase(run: &str) -> String {
    let chars: Vec<char> = run.chars().collect();
    let tokens: Vec<String> = if chars.len() == 1 {
        vec![run.to_string()]
    } else {
        chars.windows(2).map(|w| w.iter().collect()).collect()
    };
    format!("cjk : \"{}\"", tokens.join(" "))
}

/// Splits a query term into its pieces in these scripts and in others, in order.
pub fn split_term(term: &str) -> Vec<(bool, &str)> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut kind = None;
    for (i, c) in term.char_indices() {
        let k = is_ngram_script(c);
        if kind.is_some_and(|prev| prev != k) {
            out.push((kind.unwrap_or(false), &term[start..i]));
            start = i;
        }
        kind = Some(k);
    }
    if let Some(k) = kind {
        out.push((k, &term[start..]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_become_pairs_then_singles() {
        assert_eq!(index_text("no cjk here"), "");
        assert_eq!(
            index_text("東京タワーに行った"),
            "東京 京タ タワ ワー ーに に行 行っ った 東 京 タ ワ ー に 行 っ た"
        );
        assert_eq!(index_text("猫 and 犬。"), "猫 犬");
        assert_eq!(
            index_text("한국어를 배워요"),
            "한국 국어 어를 배워 워요 한 국 어 를 배 워 요"
        );
    }

    #[test]
    fn query_phrases() {
        assert_eq!(query_phrase("タワー"), "cjk : \"タワ ワー\"");
        assert_eq!(query_phrase("猫"), "cjk : \"猫\"");
        assert_eq!(
            split_term("iphone用ケース"),
            [(false, "iphone"), (true, "用ケース")]
        );
        assert_eq!(split_term("東京"), [(true, "東京")]);
        assert_eq!(split_term("rust"), [(false, "rust")]);
    }
}
