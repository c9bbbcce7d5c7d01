//! The vectors of one embedding model, for search by meaning, in two tiers.
//!
//! The database holds every vector L2-normalised and quantised to one signed byte per
//! dimension with a scale of its own (`v ≈ scale · q`): 388 bytes for MiniLM's 384
//! dimensions instead of 1,536. Memory holds only each vector's signs, one bit per
//! dimension (48 bytes), so 100,000 chunks take about 7 MiB here instead of 38 MiB (or
//! 154 MiB as `f32`). A search ranks every vector by how many signs it shares with the
//! query (Hamming distance, a few popcounts per vector), reads the byte vectors of the best
//! few hundred from the database, and ranks those by their real cosine similarity.
//! Measured on the recall set (docs/memory.md): the same top 3 as ranking every byte
//! vector, at a fraction of the memory and time.

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

/// The cosine similarity of a normalised query and a quantised vector.
pub fn similarity(query: &[f32], scale: f32, q: &[i8]) -> f32 {
    if query.len() != q.len() {
        return f32::MIN;
    }
    query
        .iter()
        .zip(q)
        .map(|(a, &b)| a * f32::from(b))
        .sum::<f32>()
        * scale
}

/// `v` scaled to length 1 (unchanged when it is all zeros).
pub fn normalised(v: &[f32]) -> Vec<f32> {
    let norm = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if norm > 0.0 && norm.is_finite() {
        v.iter().map(|x| x / norm).collect()
    } else {
        v.to_vec()
    }
}

/// The sign bits of the vectors of one model, keyed by the hash of the text they embed.
#[derive(Debug, Default)]
pub struct VectorStore {
    dim: usize,
    /// `u64` words per vector.
    words: usize,
    hashes: Vec<u64>,
    codes: Vec<u64>,
    slots: HashMap<u64, u32>,
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

    /// Adds (or replaces) the vector of `hash`, given as stored (see [`quantise`]). A
    /// vector of another size than those held is refused (false): a store holds one
    /// model's vectors.
    pub fn insert(&mut self, hash: u64, q: &[i8]) -> bool {
        if self.dim == 0 {
            self.dim = q.len();
            self.words = q.len().div_ceil(64);
        }
        if q.len() != self.dim || q.is_empty() {
            return false;
        }
        let code = signs(q.iter().map(|&x| x > 0), self.words);
        match self.slots.get(&hash) {
            Some(&slot) => {
                let at = slot as usize * self.words;
                self.codes[at..at + self.words].copy_from_slice(&code);
            }
            None => {
                self.slots.insert(hash, self.hashes.len() as u32);
                self.hashes.push(hash);
                self.codes.extend_from_slice(&code);
            }
        }
        true
    }

    /// Keeps only the vectors whose hash `keep` accepts.
    pub fn retain(&mut self, mut keep: impl FnMut(u64) -> bool) {
        let words = self.words;
        let mut w = 0;
        for r in 0..self.hashes.len() {
            if keep(self.hashes[r]) {
                if w != r {
                    self.hashes[w] = self.hashes[r];
                    self.codes
                        .copy_within(r * words..(r + 1) * words, w * words);
                }
                w += 1;
            }
        }
        self.hashes.truncate(w);
        self.codes.truncate(w * words);
        self.hashes.shrink_to_fit();
        self.codes.shrink_to_fit();
        self.slots = self
            .hashes
            .iter()
            .enumerate()
            .map(|(i, &h)| (h, i as u32))
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
        self.codes.capacity() * 8 + self.hashes.capacity() * 8 + self.slots.capacity() * 13
    }

    /// The hashes of the (about) `n` vectors sharing the most signs with `query`, best
    /// first: the candidates to rank exactly. Empty for a query of another size.
    pub fn candidates(&self, query: &[f32], n: usize) -> Vec<u64> {
        if self.dim == 0 || query.len() != self.dim || n == 0 {
            return Vec::new();
        }
        let code = signs(query.iter().map(|&x| x > 0.0), self.words);
        let distances: Vec<u16> = self
            .codes
            .chunks_exact(self.words)
            .map(|c| {
                c.iter()
                    .zip(&code)
                    .map(|(a, b)| (a ^ b).count_ones() as u16)
                    .sum()
            })
            .collect();
        // Distances are small integers: a histogram finds the cut without sorting all.
        let mut histogram = vec![0usize; self.dim + 2];
        for &d in &distances {
            histogram[d as usize] += 1;
        }
        let mut cut = 0;
        let mut taken = 0;
        while cut < histogram.len() && taken + histogram[cut] <= n {
            taken += histogram[cut];
            cut += 1;
        }
        let mut picked: Vec<(u16, usize)> = distances
            .iter()
            .enumerate()
            .filter(|(_, d)| (**d as usize) <= cut)
            .map(|(slot, d)| (*d, slot))
            .collect();
        picked.sort_unstable();
        picked.truncate(n);
        picked
            .into_iter()
            .map(|(_, slot)| self.hashes[slot])
            .collect()
    }
}

fn signs(bits: impl Iterator<Item = bool>, words: usize) -> Vec<u64> {
    let mut code = vec![0u64; words];
    for (i, set) in bits.enumerate() {
        if set {
            code[i / 64] |= 1 << (i % 64);
        }
    }
    code
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unit(v: &[f32]) -> Vec<f32> {
        normalised(v)
    }

    #[test]
    fn quantised_similarity_stays_close_to_the_real_one() {
        let a = unit(&[0.3, -0.2, 0.9, 0.1, -0.5, 0.05, 0.0, 0.7]);
        let b = unit(&[0.25, -0.1, 0.8, 0.3, -0.4, 0.0, 0.1, 0.6]);
        let real: f32 = a.iter().zip(&b).map(|(x, y)| x * y).sum();
        let (s, q) = quantise(&b);
        assert!((similarity(&a, s, &q) - real).abs() < 0.01);
        assert_eq!(quantise(&[0.0, 0.0]).0, 0.0);
        assert_eq!(similarity(&a, s, &q[..3]), f32::MIN, "another size");
    }

    #[test]
    fn candidates_share_the_most_signs_first() {
        let mut store = VectorStore::default();
        for (hash, v) in [
            (1u64, [1.0, 1.0, 1.0, 1.0]),
            (2, [1.0, 1.0, 1.0, -1.0]),
            (3, [1.0, 1.0, -1.0, -1.0]),
            (4, [-1.0, -1.0, -1.0, -1.0]),
        ] {
            let (_, q) = quantise(&v);
            assert!(store.insert(hash, &q));
        }
        assert_eq!(store.candidates(&[0.5, 0.2, 0.1, 0.3], 2), [1, 2]);
        assert_eq!(store.candidates(&[0.5, 0.2, 0.1, 0.3], 10), [1, 2, 3, 4]);
        assert!(store.candidates(&[1.0, 0.0], 2).is_empty(), "another size");
        let (_, q) = quantise(&[1.0, 2.0]);
        assert!(!store.insert(9, &q), "another size is refused");
    }

    #[test]
    fn long_vectors_use_several_words() {
        let mut store = VectorStore::default();
        let mut a = vec![0.1f32; 130];
        let b = vec![0.1f32; 130];
        a[129] = -0.1;
        store.insert(1, &quantise(&a).1);
        store.insert(2, &quantise(&b).1);
        assert_eq!(store.candidates(&b, 1), [2]);
        assert_eq!(store.candidates(&a, 1), [1]);
    }

    #[test]
    fn replace_retain_and_clear() {
        let mut store = VectorStore::default();
        for h in 0..10u64 {
            let (_, q) = quantise(&[h as f32 - 4.5, 1.0]);
            store.insert(h, &q);
        }
        store.insert(3, &quantise(&[1.0, 1.0]).1);
        assert_eq!(store.len(), 10);
        store.retain(|h| h % 2 == 1);
        assert_eq!(store.len(), 5);
        assert!(store.contains(3) && !store.contains(4));
        assert_eq!(store.candidates(&[1.0, 1.0], 5).len(), 5);
        store.retain(|_| false);
        assert_eq!(store.dim(), 0);
        store.clear();
        assert!(store.is_empty());
    }
}
