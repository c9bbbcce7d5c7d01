//! Hybrid ranking: one list of chunks from the lexical ranking (BM25) and the vector
//! ranking (cosine similarity), each chunk scored by where it stands in both.

use std::collections::HashMap;

use super::index::RawHit;

/// How the two rankings are combined.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Fusion {
    /// Reciprocal rank fusion: `w / (k + rank)` summed over the rankings a chunk is in.
    /// Uses positions only, so BM25's unbounded scores and cosine's narrow band need no
    /// calibration against each other.
    Rrf { vector_weight: f64 },
    /// Scores normalised to the best of each ranking, then weighted:
    /// `w · sim / best_sim + (1 − w) · bm25 / best_bm25`.
    Weighted { vector_weight: f64 },
}

/// RRF's `k`: the usual 60 flattens the head of each ranking so that one ranking's first
/// place does not outweigh agreement between both.
pub const RRF_K: f64 = 60.0;

/// Merges `lexical` (best first, `rank` = FTS5 bm25, lower is better) and `vector` (best
/// first, with cosine similarity) into the best `limit` chunks, best first, each with its
/// fused score (higher is better).
pub fn fuse(
    lexical: Vec<RawHit>,
    vector: Vec<(RawHit, f32)>,
    fusion: Fusion,
    limit: usize,
) -> Vec<(RawHit, f64)> {
    let best_bm25 = lexical.first().map(|h| h.rank).unwrap_or(-1.0);
    let best_sim = vector.first().map(|(_, s)| *s).unwrap_or(1.0);
    let mut merged: HashMap<i64, (RawHit, f64, usize)> = HashMap::new();
    for (pos, hit) in lexical.into_iter().enumerate() {
        let part = match fusion {
            Fusion::Rrf { vector_weight } => (1.0 - vector_weight) / (RRF_K + pos as f64 + 1.0),
            Fusion::Weighted { vector_weight } => {
                (1.0 - vector_weight) * relative(hit.rank, best_bm25)
            }
        };
        merged.insert(hit.id, (hit, part, pos));
    }
    for (pos, (hit, sim)) in vector.into_iter().enumerate() {
        let part = match fusion {
            Fusion::Rrf { vector_weight } => vector_weight / (RRF_K + pos as f64 + 1.0),
            Fusion::Weighted { vector_weight } => {
                vector_weight
                    * if best_sim > 0.0 {
                        (sim / best_sim).max(0.0) as f64
                    } else {
                        0.0
                    }
            }
        };
        merged
            .entry(hit.id)
            .and_modify(|e| {
                e.1 += part;
                e.2 = e.2.min(pos);
            })
            .or_insert((hit, part, pos));
    }
    let mut out: Vec<(RawHit, f64, usize)> = merged.into_values().collect();
    out.sort_by(|a, b| {
        b.1.total_cmp(&a.1)
            .then(a.2.cmp(&b.2))
            .then(a.0.id.cmp(&b.0.id))
    });
    out.truncate(limit);
    out.into_iter().map(|(h, s, _)| (h, s)).collect()
}

/// A bm25 rank (negative, lower is better) relative to the best one, in (0, 1].
fn relative(rank: f64, best: f64) -> f64 {
    if rank < 0.0 && best < 0.0 {
        (rank / best).clamp(0.0, 1.0)
    } else {
        1.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hit(id: i64, rank: f64) -> RawHit {
        RawHit {
            id,
            path: format!("f{id}.md"),
            line_start: 1,
            line_end: 1,
            content: String::new(),
            rank,
        }
    }

    fn ids(v: &[(RawHit, f64)]) -> Vec<i64> {
        v.iter().map(|(h, _)| h.id).collect()
    }

    #[test]
    fn agreement_between_both_rankings_wins() {
        let lexical = vec![hit(1, -9.0), hit(2, -5.0), hit(3, -4.0)];
        let vector = vec![(hit(4, 0.0), 0.8), (hit(2, 0.0), 0.7), (hit(5, 0.0), 0.6)];
        for fusion in [
            Fusion::Rrf { vector_weight: 0.5 },
            Fusion::Weighted { vector_weight: 0.5 },
        ] {
            let got = fuse(lexical.clone(), vector.clone(), fusion, 3);
            assert_eq!(got[0].0.id, 2, "{fusion:?}: {:?}", ids(&got));
            assert_eq!(got.len(), 3);
            assert!(got.windows(2).all(|w| w[0].1 >= w[1].1));
        }
    }

    #[test]
    fn weights_at_the_ends_keep_one_ranking() {
        let lexical = vec![hit(1, -9.0), hit(2, -5.0)];
        let vector = vec![(hit(3, 0.0), 0.9), (hit(4, 0.0), 0.5)];
        let lex_only = fuse(
            lexical.clone(),
            vector.clone(),
            Fusion::Rrf { vector_weight: 0.0 },
            2,
        );
        assert_eq!(ids(&lex_only), [1, 2]);
        let vec_only = fuse(lexical, vector, Fusion::Weighted { vector_weight: 1.0 }, 2);
        assert_eq!(ids(&vec_only), [3, 4]);
    }

    #[test]
    fn one_side_empty_is_the_other_side() {
        let got = fuse(
            Vec::new(),
            vec![(hit(7, 0.0), 0.4), (hit(8, 0.0), 0.2)],
            Fusion::Rrf { vector_weight: 0.5 },
            10,
        );
        assert_eq!(ids(&got), [7, 8]);
        let got = fuse(
            vec![hit(1, -2.0)],
            Vec::new(),
            Fusion::Weighted { vector_weight: 0.5 },
            10,
        );
        assert_eq!(ids(&got), [1]);
    }
}
