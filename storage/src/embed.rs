//! Embedders turn text into vectors. The built-in default is a deterministic hashed n-gram
//! embedder: it needs no model download and works offline, but it only captures shared words and
//! word pieces, not meaning. It is documented as a fallback; learned models plug in behind the
//! same trait.

use std::sync::Arc;

use crate::error::Result;

pub trait Embedder: Send + Sync {
    /// Stable identifier recorded with each namespace (`hash`, `builtin-minilm`, ...).
    fn provider(&self) -> &str;
    fn dimension(&self) -> usize;
    /// Embed a batch; every output has `dimension()` entries and unit length.
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>>;
    /// The token window: what a text holds beyond it does not reach its vector (the text
    /// index still holds all of it). `None`: no window.
    fn max_tokens(&self) -> Option<usize> {
        None
    }
    /// The tokens of `text` as this embedder counts them, and whether the count is an
    /// estimate. `None`: this embedder does not count.
    fn count_tokens(&self, _text: &str) -> Option<(usize, bool)> {
        None
    }
}

/// What an embedder leaves out of a text's vector (`None`: nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Truncation {
    pub content_tokens: usize,
    pub embedded_tokens: usize,
    pub max_tokens: usize,
    pub estimated: bool,
}

/// Whether `text` is longer than the embedder's window, and by how much.
pub fn truncation(e: &dyn Embedder, text: &str) -> Option<Truncation> {
    let max = e.max_tokens()?;
    let (n, estimated) = e.count_tokens(text)?;
    (n > max).then_some(Truncation { content_tokens: n, embedded_tokens: max, max_tokens: max, estimated })
}

pub type SharedEmbedder = Arc<dyn Embedder>;

/// Hashed n-gram features (word unigrams, word bigrams, character trigrams) folded into
/// `dimension` buckets with a sign hash, then L2-normalised.
///
/// The hash is FNV-1a, fixed here forever: stored vectors must keep matching query vectors
/// across releases.
#[derive(Clone, Debug)]
pub struct HashEmbedder {
    dimension: usize,
}

impl HashEmbedder {
    pub const PROVIDER: &'static str = "hash";
    /// Words of a text that reach its vector (like the model's window; the rest is in the
    /// text index only).
    pub const MAX_WORDS: usize = 256;

    pub fn new(dimension: usize) -> Self {
        HashEmbedder { dimension: dimension.max(1) }
    }

    fn add(&self, v: &mut [f32], feature: &[u8], weight: f32) {
        let h = fnv1a(feature);
        let bucket = (h % self.dimension as u64) as usize;
        let sign = if (h >> 63) & 1 == 1 { -1.0 } else { 1.0 };
        v[bucket] += sign * weight;
    }

    pub fn embed_one(&self, text: &str) -> Vec<f32> {
        let mut v = vec![0f32; self.dimension];
        let mut words = words(text);
        words.truncate(Self::MAX_WORDS);
        for w in &words {
            self.add(&mut v, w.as_bytes(), 1.0);
            let padded: Vec<char> = format!("<{w}>").chars().collect();
            if padded.len() > 4 {
                for tri in padded.windows(3) {
                    let s: String = tri.iter().collect();
                    self.add(&mut v, format!("#3{s}").as_bytes(), 0.35);
                }
            }
        }
        for pair in words.windows(2) {
            self.add(&mut v, format!("{} {}", pair[0], pair[1]).as_bytes(), 0.5);
        }
        normalize(&mut v);
        v
    }
}

impl Embedder for HashEmbedder {
    fn provider(&self) -> &str {
        Self::PROVIDER
    }
    fn dimension(&self) -> usize {
        self.dimension
    }
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>> {
        Ok(texts.iter().map(|t| self.embed_one(t)).collect())
    }
    fn max_tokens(&self) -> Option<usize> {
        Some(Self::MAX_WORDS)
    }
    fn count_tokens(&self, text: &str) -> Option<(usize, bool)> {
        Some((words(text).len(), true))
    }
}

/// Lower-cased alphanumeric words.
pub fn words(text: &str) -> Vec<String> {
    text.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).map(|w| w.to_lowercase()).collect()
}

pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in bytes {
        h ^= *b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// Scale to unit length; a zero vector stays zero.
pub fn normalize(v: &mut [f32]) {
    let n = v.iter().map(|x| x * x).sum::<f32>().sqrt();
    if n > 0.0 {
        v.iter_mut().for_each(|x| *x /= n);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cos(a: &[f32], b: &[f32]) -> f32 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    #[test]
    fn deterministic_unit_vectors() {
        let e = HashEmbedder::new(384);
        let a = e.embed_one("The user prefers dark roast coffee");
        assert_eq!(a, e.embed_one("The user prefers dark roast coffee"));
        assert_eq!(a.len(), 384);
        assert!((cos(&a, &a) - 1.0).abs() < 1e-5);
    }

    #[test]
    fn overlapping_text_is_closer() {
        let e = HashEmbedder::new(384);
        let q = e.embed_one("coffee preferences");
        let near = e.embed_one("user prefers dark roast coffee");
        let far = e.embed_one("the meeting is scheduled for tuesday");
        assert!(cos(&q, &near) > cos(&q, &far));
    }

    #[test]
    fn words_beyond_the_window_do_not_reach_the_vector_and_are_reported() {
        let e = HashEmbedder::new(64);
        let head: String = (0..HashEmbedder::MAX_WORDS).map(|i| format!("w{i} ")).collect();
        assert_eq!(e.embed_one(&head), e.embed_one(&format!("{head} tail words here")));
        assert_eq!(truncation(&e, &head), None);
        let t = truncation(&e, &format!("{head} one more")).expect("cut");
        assert_eq!((t.content_tokens, t.embedded_tokens, t.max_tokens, t.estimated), (258, 256, 256, true));
    }

    #[test]
    fn fnv_is_frozen() {
        // Stored vectors depend on this value never changing.
        assert_eq!(fnv1a(b"loci"), 0xce14_f3ad_70f6_e97c);
    }
}
