//! The vectors of one embedding model, held in memory for search by meaning.
//!
//! Each vector is L2-normalised and quantised to one signed byte per dimension with a
//! scale of its own (`v ≈ scale · q`), so 100,000 MiniLM vectors (384 dimensions) take
//! 38 MiB in one flat array instead of 154 MiB of `f32`. A search scores every vector
//! against the query (a dot product over bytes that the compiler vectorises), which at
//! that size takes a few milliseconds and needs no index structure to keep up to date.

use std::collections::HashMap;

/// Quantises `v` (normalised first) to bytes and the scale that restores it.
pub fn quantise(v: &[f32]) -> (f32, Vec<i8>) {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if !norm.is_finite() || norm == 0.0 {
        return (0.0, vec![0; v.len()]);
    }
    let max = v.iter().fold(0.0f32, |m, x| m.max((x / norm).abs()));
    if max == 0.0 {
        return (0.0, vec![0; v.len()]);
    }
    let scale = max / 127.0;
    let q = v
        .iter()
        .map(|x| (x / norm / scale).round().clamp(-127.0, 127.0) as i8)
        .collect();
    (scale, q)
}

/// The vectors of one model, keyed by the hash of the text they embed.
#[derive(Debug, Default)]
pub struct VectorStore {
    dim: usize,
    hashes: Vec<u64>,
    scales: Vec<f32>,
    data: Vec<i8>,
    slots: HashMap<u64, usize>,
}

impl VectorStore {
    /// Dimensions of the vectors held; 0 while empty.
    pub fn dim(&self) -> usize {
        self.dim
    }

    pub fn len(&self) -> usize {
        self.hashes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.hashes.is_empty()
    }

    pub fn contains(&self, hash: u64) -> bool {
        self.slots.contains_key(&hash)
    }

    /// Adds (or replaces) the vector of `hash`. A vector of another size than those held
    /// is refused (false): a store holds one model's vectors.
    pub fn insert(&mut self, hash: u64, scale: f32, q: &[i8]) -> bool {
        if self.dim == 0 {
            self.dim = q.len();
        }
        if q.len() != self.dim || q.is_empty() {
            return false;
        }
        match self.slots.get(&hash) {
            Some(&slot) => {
                self.scales[slot] = scale;
                self.data[slot * self.dim..(slot + 1) * self.dim].copy_from_slice(q);
            }
            None => {
                self.slots.insert(hash, self.hashes.len());
                self.hashes.push(hash);
                self.scales.push(scale);
                self.data.extend_from_slice(q);
            }
        }
        true
    }

    /// Keeps only the vectors whose hash `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        let dim = self.dim;
        let mut w = 0;
        for r in 0..self.hashes.len() {
            if keep(self.hashes[r]) {
                if w != r {
                    self.hashes[w] = self.hashes[r];
                    self.scales[w] = self.scales[r];
                    self.data.copy_within(r * dim..(r + 1) * dim, w * dim);
                }
                w += 1;
            }
        }
        self.hashes.truncate(w);
        self.scales.truncate(w);
        self.data.truncate(w * dim);
        self.slots = self
            .hashes
            .iter()
            .enumerate()
            .map(|(i, &h)| (h, i))
            .collect();
        if w == 0 {
            self.dim = 0;
        }
    }

    /// Empties the store.
    pub fn clear(&mut self) {
        *self = VectorStore::default();
    }

    /// Memory the store takes, roughly, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.data.capacity()
            + self.hashes.capacity() * 8
            + self.scales.capacity() * 4
            + self.slots.capacity() * 24
    }

    /// The `k` vectors most similar to `query` (cosine), best first, as (hash, similarity).
    /// A query of another size than the vectors held finds nothing.
    pub fn nearest(&self, query: &[f32], k: usize) -> Vec<(u64, f32)> {
        if self.dim == 0 || query.len() != self.dim || k == 0 {
            return Vec::new();
        }
        let (qscale, q) = quantise(query);
        if qscale == 0.0 {
            return Vec::new();
        }
        let q: Vec<i16> = q.iter().map(|&v| i16::from(v)).collect();
        // The k best so far, worst first, as (score, slot).
        let mut best: Vec<(f32, usize)> = Vec::with_capacity(k + 1);
        for (slot, row) in self.data.chunks_exact(self.dim).enumerate() {
            let score = dot(&q, row) as f32 * self.scales[slot] * qscale;
            if best.len() < k {
                best.push((score, slot));
                if best.len() == k {
                    best.sort_by(|a, b| a.0.total_cmp(&b.0));
                }
            } else if score > best[0].0 {
                let at = best.partition_point(|e| e.0 < score);
                best.insert(at, (score, slot));
                best.remove(0);
            }
        }
        best.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        best.into_iter()
            .map(|(score, slot)| (self.hashes[slot], score))
            .collect()
    }
}

/// Integer dot product; i16 × i16 products summed in i32 never overflow at these sizes
/// (127² · 4096 < 2³¹), and the loop vectorises.
fn dot(q: &[i16], row: &[i8]) -> i32 {
    q.iter()
        .zip(row)
        .map(|(&a, &b)| i32::from(a) * i32::from(b))
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
        v.iter().map(|x| x / n).collect()
    }

    #[test]
    fn quantised_dot_products_stay_close_to_the_real_ones() {
        let a = unit(&[0.3, -0.2, 0.9, 0.1, -0.5, 0.05, 0.0, 0.7]);
        let b = unit(&[0.25, -0.1, 0.8, 0.3, -0.4, 0.0, 0.1, 0.6]);
        let real: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let mut store = VectorStore::default();
        let (s, q) = quantise(&b);
        assert!(store.insert(7, s, &q));
        let got = store.nearest(&a, 1);
        assert_eq!(got[0].0, 7);
        assert!((got[0].1 - real).abs() < 0.01, "{} vs {real}", got[0].1);
    }

    #[test]
    fn nearest_ranks_best_first_and_keeps_k() {
        let mut store = VectorStore::default();
        for (hash, v) in [
            (1u64, [1.0, 0.0, 0.0]),
            (2, [0.7, 0.7, 0.0]),
            (3, [0.0, 1.0, 0.0]),
            (4, [0.0, 0.0, 1.0]),
            (5, [0.9, 0.1, 0.0]),
        ] {
            let (s, q) = quantise(&v);
            assert!(store.insert(hash, s, &q));
        }
        let got: Vec<u64> = store
            .nearest(&[1.0, 0.05, 0.0], 3)
            .into_iter()
            .map(|(h, _)| h)
            .collect();
        assert_eq!(got, [1, 5, 2]);
        assert_eq!(store.nearest(&[1.0, 0.0, 0.0], 10).len(), 5);
        assert!(store.nearest(&[1.0, 0.0], 3).is_empty(), "another size");
        let (s, q) = quantise(&[1.0, 2.0]);
        assert!(!store.insert(9, s, &q), "another size is refused");
    }

    #[test]
    fn replace_retain_and_clear() {
        let mut store = VectorStore::default();
        for h in 0..10u64 {
            let (s, q) = quantise(&[h as f32 + 1.0, 1.0]);
            store.insert(h, s, &q);
        }
        let (s, q) = quantise(&[0.0, 1.0]);
        store.insert(3, s, &q);
        assert_eq!(store.len(), 10);
        store.retain(|h| h % 2 == 1);
        assert_eq!(store.len(), 5);
        assert!(store.contains(3) && !store.contains(4));
        assert_eq!(store.nearest(&[0.0, 1.0], 1)[0].0, 3);
        store.retain(|_| false);
        assert_eq!(store.dim(), 0);
        store.clear();
        assert!(store.is_empty());
        assert_eq!(quantise(&[0.0, 0.0]).0, 0.0);
    }
}
