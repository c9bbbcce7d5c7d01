//! Search: free user text to the best chunks, ranked lexically (BM25 over stemmed words),
//! by meaning (the vectors of an embedder) or by both, then shown with the lines around
//! them.

use std::fmt;
use std::str::FromStr;

use log::debug;
use serde::Serialize;

use super::chunk::truncate_tokens;
use super::embed::EmbedState;
use super::embedder::EmbedError;
use super::excerpt::{Excerpt, excerpt, window};
use super::fusion::{Fusion, fuse};
use super::index::RawHit;
use super::query::FtsQuery;
use super::vectors::{normalised, similarity};
use super::{MAX_LIMIT, Memory, MemoryError, SearchHit};

/// Candidates taken from each ranking before they are merged: a chunk ranked 40th by one
/// side and 3rd by the other must still be seen.
const CANDIDATES: usize = 50;

/// Vectors ranked exactly per result wanted, after the sign bits picked them (see
/// [`vectors`](super::vectors)), and the least: enough that the sign bits' rough order
/// does not lose the real nearest.
const OVERSAMPLE: usize = 10;
const MIN_RESCORED: usize = 200;

/// Lines on each side of a hit looked at for the context it is shown with.
const CONTEXT_LINES: usize = 40;

/// How a search ranks chunks (`mode` on `GET /api/memory/search`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SearchMode {
    /// Both rankings merged (the default when embeddings are configured).
    Hybrid,
    /// BM25 over the words (stemmed), the only mode without embeddings.
    Lexical,
    /// Similarity of meaning only.
    Vector,
}

impl SearchMode {
    pub const NAMES: &'static str = "hybrid, lexical or vector";

    pub fn as_str(self) -> &'static str {
        match self {
            SearchMode::Hybrid => "hybrid",
            SearchMode::Lexical => "lexical",
            SearchMode::Vector => "vector",
        }
    }
}

impl fmt::Display for SearchMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SearchMode {
    type Err = String;

    fn from_str(s: &str) -> Result<SearchMode, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hybrid" => Ok(SearchMode::Hybrid),
            "lexical" => Ok(SearchMode::Lexical),
            "vector" => Ok(SearchMode::Vector),
            _ => Err(format!("mode must be {}, got {s:?}", SearchMode::NAMES)),
        }
    }
}

/// What a search found and how.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SearchOutcome {
    /// The mode that ran: the one asked for, or `lexical` when vectors could not be used
    /// (no embedder, embedder down, chunks still being embedded).
    pub mode: SearchMode,
    pub hits: Vec<SearchHit>,
}

impl Memory {
    /// The best chunks for free user text, best first, in the default mode (see
    /// [`Memory::search_with`]).
    pub fn search(&self, text: &str, limit: usize) -> Result<Vec<SearchHit>, MemoryError> {
        Ok(self.search_with(text, limit, None)?.hits)
    }

    /// The mode a search runs in when none is asked for: hybrid with embeddings configured,
    /// else lexical.
    pub fn default_mode(&self) -> SearchMode {
        if self.embedding.is_some() {
            SearchMode::Hybrid
        } else {
            SearchMode::Lexical
        }
    }

    /// The best chunks for free user text, best first, each shown with the lines around
    /// it. Any text is safe: it is reduced to plain terms (see [`query`](super::query)).
    /// Lexically, chunks holding every term are preferred; when none does, chunks holding
    /// any term are returned. Text without a searchable term finds nothing. `limit` is
    /// capped at [`MAX_LIMIT`].
    ///
    /// `mode` `None` is [`Memory::default_mode`]. A vector or hybrid search that cannot use
    /// vectors (embedder down or slow, chunks not all embedded yet) answers lexically and
    /// says so in [`SearchOutcome::mode`]; it is never an error.
    pub fn search_with(
        &self,
        text: &str,
        limit: usize,
        mode: Option<SearchMode>,
    ) -> Result<SearchOutcome, MemoryError> {
        let wanted = mode.unwrap_or_else(|| self.default_mode());
        let query = FtsQuery::parse(text);
        let limit = limit.min(MAX_LIMIT);
        if query.is_empty() || limit == 0 {
            return Ok(SearchOutcome {
                mode: SearchMode::Lexical,
                hits: Vec::new(),
            });
        }
        let vector = match wanted {
            SearchMode::Lexical => None,
            _ => self.vector_candidates(text, limit.max(CANDIDATES))?,
        };
        let Some(vector) = vector else {
            let (raw, legacy) = self.watch(self.index.search_query(&query, limit))?;
            let best = raw.first().map(|h| h.rank).unwrap_or(-1.0);
            let scored = raw
                .into_iter()
                .map(|h| {
                    let s = score(h.rank, best);
                    (h, s)
                })
                .collect();
            return Ok(SearchOutcome {
                mode: SearchMode::Lexical,
                hits: self.show(scored, &query, legacy)?,
            });
        };
        let (ranked, legacy) = if wanted == SearchMode::Vector {
            let best = vector.first().map(|(_, s)| *s).unwrap_or(1.0);
            let ranked = vector
                .into_iter()
                .take(limit)
                .map(|(h, s)| (h, relative(s as f64, best as f64)))
                .collect();
            (ranked, false)
        } else {
            let (lexical, legacy) =
                self.watch(self.index.search_query(&query, limit.max(CANDIDATES)))?;
            let fusion = self
                .embedding
                .as_ref()
                .map(|e| e.fusion)
                .unwrap_or(Fusion::Weighted { vector_weight: 0.7 });
            let fused = fuse(lexical, vector, fusion, limit);
            let best = fused.first().map(|(_, s)| *s).unwrap_or(1.0);
            let ranked = fused
                .into_iter()
                .map(|(h, s)| (h, relative(s, best)))
                .collect();
            (ranked, legacy)
        };
        Ok(SearchOutcome {
            mode: wanted,
            hits: self.show(ranked, &query, legacy)?,
        })
    }

    /// The `k` chunks nearest in meaning to `text`, best first with their similarity, or
    /// `None` when vectors cannot be used now.
    fn vector_candidates(
        &self,
        text: &str,
        k: usize,
    ) -> Result<Option<Vec<(RawHit, f32)>>, MemoryError> {
        let Some(emb) = &self.embedding else {
            return Ok(None);
        };
        self.prepare_vectors();
        if emb.state() != EmbedState::Ready || self.index.is_legacy() {
            return Ok(None);
        }
        let query = match emb
            .embedder
            .embed_query(truncate_tokens(text, self.params.max_tokens))
        {
            Ok(v) => v,
            Err(EmbedError::Refused(why)) => {
                // This text (the embedder answers others): lexical for this search only.
                debug!("memory: the embedder refused a search's text ({why})");
                return Ok(None);
            }
            Err(e) => {
                emb.note_query_failure(&e);
                return Ok(None);
            }
        };
        let query = normalised(&query);
        let candidates = {
            let store = emb.store.read().unwrap_or_else(|p| p.into_inner());
            if store.dim() != query.len() {
                debug!(
                    "memory: the query vector has {} dimensions, the stored ones {}",
                    query.len(),
                    store.dim()
                );
                return Ok(None);
            }
            store.candidates(&query, (k * OVERSAMPLE).max(MIN_RESCORED))
        };
        let stored = self.watch(self.index.vectors_of(emb.embedder.model(), &candidates))?;
        let mut nearest: Vec<(u64, f32)> = stored
            .iter()
            .map(|(h, scale, q)| (*h, similarity(&query, *scale, q)))
            .collect();
        nearest.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        nearest.truncate(k);
        let sims: std::collections::HashMap<u64, f32> = nearest.iter().copied().collect();
        let hashes: Vec<u64> = nearest.iter().map(|(h, _)| *h).collect();
        let chunks = self.watch(self.index.chunks_with_hashes(&hashes))?;
        let mut out: Vec<(RawHit, f32)> = chunks
            .into_iter()
            .map(|(h, hit)| (hit, sims.get(&h).copied().unwrap_or(0.0)))
            .collect();
        out.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.id.cmp(&b.0.id)));
        out.truncate(k);
        Ok(Some(out))
    }

    /// Turns ranked chunks into results: each shown with the lines around it, cut to
    /// `memory.result_chars`.
    fn show(
        &self,
        ranked: Vec<(RawHit, f64)>,
        query: &FtsQuery,
        legacy: bool,
    ) -> Result<Vec<SearchHit>, MemoryError> {
        ranked
            .into_iter()
            .map(|(h, score)| {
                let cut = if legacy {
                    relative_lines(&h, excerpt(&h.content, query.terms(), self.result_chars))
                } else {
                    let from = h.line_start.saturating_sub(CONTEXT_LINES).max(1);
                    let around = self.watch(self.index.neighbours(
                        &h.path,
                        from,
                        h.line_end + CONTEXT_LINES,
                    ))?;
                    window(&h, &around, query.terms(), self.result_chars)
                };
                Ok(SearchHit {
                    file: h.path,
                    content: cut.text,
                    score,
                    line_start: cut.first_line,
                    line_end: cut.last_line,
                })
            })
            .collect()
    }
}

/// An excerpt of a chunk with its lines made absolute.
fn relative_lines(h: &RawHit, cut: Excerpt) -> Excerpt {
    Excerpt {
        text: cut.text,
        first_line: h.line_start + cut.first_line,
        last_line: (h.line_start + cut.last_line).min(h.line_end.max(h.line_start)),
    }
}

/// A rank relative to the best one: FTS5's bm25 is negative and lower is better, so the
/// best result scores 1 and every other a fraction of it, never 0.
pub(super) fn score(rank: f64, best: f64) -> f64 {
    if !(rank < 0.0 && best < 0.0) {
        return 1.0;
    }
    round((rank / best).clamp(0.0, 1.0))
}

/// A score where higher is better, relative to the best one, in (0, 1].
fn relative(s: f64, best: f64) -> f64 {
    if best.is_nan() || best <= 0.0 {
        return 1.0;
    }
    round((s / best).clamp(0.0, 1.0))
}

fn round(s: f64) -> f64 {
    ((s * 10_000.0).round() / 10_000.0).max(0.0001)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_parse_and_name_the_choices() {
        assert_eq!("hybrid".parse::<SearchMode>(), Ok(SearchMode::Hybrid));
        assert_eq!("Lexical".parse::<SearchMode>(), Ok(SearchMode::Lexical));
        assert_eq!("vector".parse::<SearchMode>(), Ok(SearchMode::Vector));
        let e = "fuzzy".parse::<SearchMode>().unwrap_err();
        assert!(e.contains("hybrid, lexical or vector"), "{e}");
        assert_eq!(
            serde_json::to_value(SearchMode::Hybrid).unwrap(),
            serde_json::json!("hybrid")
        );
    }

    #[test]
    fn relative_scores() {
        assert_eq!(relative(0.5, 1.0), 0.5);
        assert_eq!(relative(2.0, 2.0), 1.0);
        assert_eq!(relative(0.0, 2.0), 0.0001);
        assert_eq!(relative(1.0, 0.0), 1.0);
    }
}
