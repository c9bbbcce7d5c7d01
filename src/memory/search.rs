//! Search: free user text to the best chunks, scored and cut for display.

use super::excerpt::excerpt;
use super::query::FtsQuery;
use super::{MAX_LIMIT, Memory, MemoryError, SearchHit};

impl Memory {
    /// The best chunks for free user text, best first. Any text is safe: it is reduced to
    /// plain terms (see [`query`](super::query)). Chunks holding every term are preferred; when none
    /// does, chunks holding any term are returned. Text without a searchable term finds
    /// nothing. `limit` is capped at [`MAX_LIMIT`].
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<SearchHit>, MemoryError> {
        let query = FtsQuery::parse(text);
        let limit = limit.min(MAX_LIMIT);
        let Some(all) = query.all_terms() else {
            return Ok(Vec::new());
        };
        if limit == 0 {
            return Ok(Vec::new());
        }
        let mut raw = self.watch(self.index.search(&all, limit))?;
        if raw.is_empty()
            && let Some(any) = query.any_term()
        {
            raw = self.watch(self.index.search(&any, limit))?;
        }
        let best = raw.first().map(|h| h.rank).unwrap_or(-1.0);
        Ok(raw
            .into_iter()
            .map(|h| {
                let cut = excerpt(&h.content, query.terms(), self.result_chars);
                SearchHit {
                    file: h.path,
                    content: cut.text,
                    score: score(h.rank, best),
                    line_start: h.line_start + cut.first_line,
                    line_end: (h.line_start + cut.last_line).min(h.line_end.max(h.line_start)),
                }
            })
            .collect())
    }
}

/// A rank relative to the best one: FTS5's bm25 is negative and lower is better, so the
/// best result scores 1 and every other a fraction of it, never 0.
pub(super) fn score(rank: f64, best: f64) -> f64 {
    if !(rank < 0.0 && best < 0.0) {
        return 1.0;
    }
    let s = (rank / best).clamp(0.0, 1.0);
    ((s * 10_000.0).round() / 10_000.0).max(0.0001)
}
