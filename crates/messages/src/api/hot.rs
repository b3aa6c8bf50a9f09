//! The answers of recently read messages, kept in memory. A message never
//! changes what its digest names, so its answer can be kept as long as
//! memory allows and never goes stale: a `GET` of a hot digest is a lookup
//! and a copy of a reference-counted buffer, no store call, no hashing.
//!
//! Only answers built from a message that passed its integrity check are
//! kept, so verify-on-read still holds for every byte that comes from the
//! store. Bounded by bytes (`--message-cache-bytes`), evicting by S3-FIFO
//! (`quick_cache`); hits and misses are counted.

use bytes::Bytes;
use http::HeaderValue;
use metrics::{Counter, Gauge};
use quick_cache::Weighter;
use quick_cache::sync::Cache;

use crate::domain::Digest;
use crate::metrics::{CACHE_BYTES, CACHE_LOOKUPS};

/// What one entry costs besides its body: the key, the cache's own slot.
const ENTRY_OVERHEAD: u64 = 96;
/// A guess at a typical answer's size, to size the cache's table up front.
const TYPICAL_ANSWER: u64 = 512;

/// A message's answer, ready to send: its `ETag` and its JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// `"<digest>"`.
    pub etag: HeaderValue,
    /// The JSON body of a `200`.
    pub body: Bytes,
}

impl Answer {
    /// The answer for the verified message `digest` names, its body `body`.
    pub fn new(digest: &Digest, body: Vec<u8>) -> Self {
        let etag = HeaderValue::try_from(format!("\"{digest}\""))
            .unwrap_or_else(|_| HeaderValue::from_static("\"\"")); // hex: always valid
        Self {
            etag,
            body: Bytes::from(body),
        }
    }
}

/// An entry's weight: its body's and `ETag`'s bytes and its overhead.
#[derive(Debug, Clone, Copy)]
struct AnswerBytes;

impl Weighter<Digest, Answer> for AnswerBytes {
    fn weight(&self, _digest: &Digest, answer: &Answer) -> u64 {
        let len = answer.body.len() + answer.etag.len();
        u64::try_from(len).map_or(u64::MAX, |len| len.saturating_add(ENTRY_OVERHEAD))
    }
}

/// The JSON answers of recently read messages, by digest.
pub struct HotMessages {
    /// `None` when turned off (0 bytes).
    cache: Option<Cache<Digest, Answer, AnswerBytes>>,
    hits: Counter,
    misses: Counter,
    bytes: Gauge,
}

impl HotMessages {
    /// A cache holding at most `capacity` bytes of answers; 0 keeps none.
    pub fn new(capacity: u64) -> Self {
        let items = usize::try_from(capacity / TYPICAL_ANSWER)
            .unwrap_or(usize::MAX)
            .clamp(16, 1 << 20);
        Self {
            cache: (capacity > 0).then(|| Cache::with_weighter(items, capacity, AnswerBytes)),
            hits: metrics::counter!(CACHE_LOOKUPS, "result" => "hit"),
            misses: metrics::counter!(CACHE_LOOKUPS, "result" => "miss"),
            bytes: metrics::gauge!(CACHE_BYTES),
        }
    }

    /// The answer kept for `digest`, counting the hit or the miss.
    pub fn get(&self, digest: &Digest) -> Option<Answer> {
        let found = self.cache.as_ref().and_then(|cache| cache.get(digest));
        if found.is_some() {
            self.hits.increment(1);
        } else {
            self.misses.increment(1);
        }
        found
    }

    /// Keeps `answer` (built from a verified message) for `digest`.
    pub fn insert(&self, digest: Digest, answer: Answer) {
        if let Some(cache) = &self.cache {
            cache.insert(digest, answer);
            #[allow(clippy::cast_precision_loss)] // a gauge: bytes as f64 are exact to 2^53
            self.bytes.set(cache.weight() as f64);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(n: u8) -> Digest {
        Digest::of(&[n])
    }

    #[test]
    fn answers_are_kept_up_to_the_byte_bound() {
        let hot = HotMessages::new(64 * 1024);
        assert_eq!(hot.get(&digest(1)), None);
        let one = Answer::new(&digest(1), b"{\"message\":\"one\"}".to_vec());
        assert_eq!(one.etag, format!("\"{}\"", digest(1)).as_str());
        hot.insert(digest(1), one.clone());
        assert_eq!(hot.get(&digest(1)), Some(one));
        for n in 0..=255 {
            hot.insert(digest(n), Answer::new(&digest(n), vec![b'x'; 1024]));
        }
        let cache = hot.cache.as_ref().expect("on");
        assert!(cache.weight() <= 64 * 1024, "{}", cache.weight());
        assert!(cache.len() < 256);
    }

    #[test]
    fn zero_bytes_keeps_nothing() {
        let hot = HotMessages::new(0);
        hot.insert(digest(1), Answer::new(&digest(1), b"{}".to_vec()));
        assert_eq!(hot.get(&digest(1)), None);
    }
}
